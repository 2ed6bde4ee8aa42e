// Inline part of the diff codec (included at the bottom of diff.hpp): the run-walking
// helpers shared by diff.cpp, and diff_for_each_byte, which is a template because the
// conflict checker passes a lambda and wants it inlined.
//
// Everything here assumes a diff that diff_validate accepted.
#pragma once

#include <bit>
#include <cstring>

namespace calypso::dsm {
namespace detail {

inline RunHeader read_run_header(const std::byte* p) noexcept {
  RunHeader h;
  std::memcpy(&h, p, sizeof h);  // memcpy: the network buffer need not be aligned
  return h;
}

inline std::uint64_t read_u64(const std::byte* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Mask bytes for `written` words, padding included, so that the next header stays
// 8-byte aligned.
inline std::size_t mask_bytes(std::size_t written) noexcept { return (written + 7) & ~std::size_t{7}; }

// One run as it lies on the wire: which covered words it writes, where their data and
// masks are, and where the next run starts.
struct RunView {
  RunHeader h;
  std::uint64_t written;     // a sparse run's bitmap (bit i: word word_offset + i); 0 for
                             // a plain run, which writes all word_count words
  std::size_t count;         // words whose data the run carries
  const std::byte* data;
  const std::byte* masks;    // nullptr when unmasked
  const std::byte* next;
  bool sparse() const noexcept { return (h.flags & kRunSparse) != 0; }
};

// The run at p, of a diff that diff_validate accepted.
inline RunView read_run(const std::byte* p) noexcept {
  RunView r;
  r.h = read_run_header(p);
  const std::byte* body = p + sizeof(RunHeader);
  if (r.sparse()) {
    r.written = read_u64(body);
    r.count = static_cast<std::size_t>(std::popcount(r.written));
    r.data = body + 8;
  } else {
    r.written = 0;
    r.count = r.h.word_count;
    r.data = body;
  }
  const std::byte* end = r.data + r.count * 8;
  r.masks = (r.h.flags & kRunMasked) != 0 ? end : nullptr;
  r.next = r.masks != nullptr ? end + mask_bytes(r.count) : end;
  return r;
}

// Calls fn(word index within the run, i-th written word) for each written word, in order.
template <class Fn>
void for_each_written_word(const RunView& r, Fn&& fn) {
  if (!r.sparse()) {
    for (std::size_t i = 0; i < r.count; ++i) fn(i, i);
    return;
  }
  std::size_t i = 0;
  for (std::uint64_t b = r.written; b != 0; b &= b - 1, ++i)
    fn(static_cast<std::size_t>(std::countr_zero(b)), i);
}

}  // namespace detail

template <class Fn>
void diff_for_each_byte(std::span<const std::byte> diff, Fn&& fn) {
  const std::byte* p = diff.data();
  const std::byte* const end = p + diff.size();
  while (p < end) {
    const detail::RunView r = detail::read_run(p);
    const std::size_t first_byte = std::size_t{r.h.word_offset} * 8;
    detail::for_each_written_word(r, [&](std::size_t word, std::size_t i) {
      const unsigned mask = r.masks != nullptr ? std::to_integer<unsigned>(r.masks[i]) : 0xffu;
      for (std::size_t b = 0; b < 8; ++b)
        if ((mask >> b) & 1u) fn(first_byte + word * 8 + b, r.data[i * 8 + b]);
    });
    p = r.next;
  }
}

}  // namespace calypso::dsm
