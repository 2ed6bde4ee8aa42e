// Inline part of the diff codec (included at the bottom of diff.hpp): the run-walking
// helpers shared by diff.cpp, and diff_for_each_byte, which is a template because the
// conflict checker passes a lambda and wants it inlined.
//
// Everything here assumes a diff that diff_validate accepted.
#pragma once

#include <cstring>

namespace calypso::dsm {
namespace detail {

inline RunHeader read_run_header(const std::byte* p) noexcept {
  RunHeader h;
  std::memcpy(&h, p, sizeof h);  // memcpy: the network buffer need not be aligned
  return h;
}

// Mask bytes of a run, padding included, so that the next header stays 8-byte aligned.
inline std::size_t run_mask_bytes(const RunHeader& h) noexcept {
  if ((h.flags & kRunMasked) == 0) return 0;
  return (std::size_t{h.word_count} + 7) & ~std::size_t{7};
}

// Bytes a run occupies on the wire after its header.
inline std::size_t run_body_bytes(const RunHeader& h) noexcept {
  return std::size_t{h.word_count} * 8 + run_mask_bytes(h);
}

}  // namespace detail

template <class Fn>
void diff_for_each_byte(std::span<const std::byte> diff, Fn&& fn) {
  std::size_t pos = 0;
  while (pos < diff.size()) {
    const RunHeader h = detail::read_run_header(diff.data() + pos);
    const std::byte* data = diff.data() + pos + sizeof(RunHeader);
    const std::byte* masks = data + std::size_t{h.word_count} * 8;
    const bool masked = (h.flags & kRunMasked) != 0;
    const std::size_t first_byte = std::size_t{h.word_offset} * 8;
    for (std::size_t i = 0; i < std::size_t{h.word_count} * 8; ++i) {
      const unsigned mask = masked ? std::to_integer<unsigned>(masks[i / 8]) : 0xffu;
      if ((mask >> (i % 8)) & 1u) fn(first_byte + i, data[i]);
    }
    pos += sizeof(RunHeader) + detail::run_body_bytes(h);
  }
}

}  // namespace calypso::dsm
