// Word-level diffs between a page and its twin: the unit of data a worker ships to the
// manager at the end of a segment.
//
// Wire format (all little-endian, everything 8-byte aligned, total length a multiple of 8):
//   a sequence of runs, in strictly increasing word order, never overlapping or touching
//   out of the page. Each run is
//     RunHeader { u32 word_offset; u16 word_count (>=1); u16 flags }      8 bytes
//     word_count * 8 bytes of new data
//     if (flags & kRunMasked): word_count mask bytes, zero-padded to a multiple of 8
//   Mask byte i belongs to word i of the run; bit b set means byte b of that word was
//   written (byte order = memory order). Unmasked runs overwrite whole words.
//
// Masks are what make merging byte-exact: two segments that change different bytes of
// one 8-byte word each ship only their bytes, so applying both keeps both writes.
// An empty diff (length 0) means "page unchanged".
//
// Hot path: encode/validate/apply never allocate or throw.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace calypso::dsm {

inline constexpr std::uint16_t kRunMasked = 1;

struct RunHeader {
  std::uint32_t word_offset;
  std::uint16_t word_count;
  std::uint16_t flags;
};
static_assert(sizeof(RunHeader) == 8);

enum class DiffStatus : std::uint8_t {
  ok,
  truncated,      // a run runs past the end of the buffer, or length not a multiple of 8
  out_of_range,   // a run touches words outside the page
  bad_order,      // runs overlap or are not in increasing order, or word_count == 0
  bad_flags,      // unknown flag bits, or a mask byte of 0 / padding not zero
};
const char* to_string(DiffStatus s) noexcept;

// Largest possible encoding of one page of page_bytes (a multiple of 8).
std::size_t diff_max_encoded_size(std::size_t page_bytes) noexcept;

// Encodes current vs twin into out (room for diff_max_encoded_size bytes).
// Returns the length of the diff; 0 when the page did not change. Bytes of out past that
// length (within diff_max_encoded_size) may be written too, as scratch: encode into a
// buffer of the full size, never straight into a slot of the diff's exact length.
std::size_t diff_encode(const std::byte* current, const std::byte* twin,
                        std::size_t page_bytes, std::byte* out) noexcept;

// Checks a diff received from the network against a page of page_bytes.
DiffStatus diff_validate(std::span<const std::byte> diff, std::size_t page_bytes) noexcept;

// Applies a diff that diff_validate accepted. Touches only the written bytes.
void diff_apply(std::span<const std::byte> diff, std::byte* page) noexcept;

// Exchanges, word by word, the contents of a and b over the words the diff covers (one
// that diff_encode(a, b) made, so bytes outside its masks are equal in both anyway).
// The worker uses it to put the snapshot back into a page and its writes into the twin
// at the cost of the changed words only (PageCache::finish_segment).
void diff_swap(std::span<const std::byte> diff, std::byte* a, std::byte* b) noexcept;

// Calls fn(byte_offset, new_byte) for every byte the (validated) diff writes, in order.
// Used by the conflict checker; not on the fast path.
template <class Fn>
void diff_for_each_byte(std::span<const std::byte> diff, Fn&& fn);

}  // namespace calypso::dsm

#include "dsm/diff_inl.hpp"
