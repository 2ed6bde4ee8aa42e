// Word-level diffs between a page and its twin: the unit of data a worker ships to the
// manager at the end of a segment.
//
// Wire format (all little-endian, everything 8-byte aligned, total length a multiple of 8):
//   a sequence of runs, in strictly increasing word order, never overlapping or touching
//   out of the page. A run covers words [word_offset, word_offset + word_count) and is
//     RunHeader { u32 word_offset; u16 word_count (>=1); u16 flags }      8 bytes
//     if (flags & kRunSparse): u64 bitmap, bit i set iff covered word i is written;
//       word_count <= 64, bits 0 and word_count-1 set, none above      8 bytes
//     the written words' new data, in order: word_count words, or one per bitmap bit
//     if (flags & kRunMasked): a mask byte per written word, zero-padded to a multiple of 8
//   Mask byte i belongs to written word i; bit b set means byte b of that word was
//   written (byte order = memory order). Unmasked runs overwrite whole words.
//
// Masks are what make merging byte-exact: two segments that change different bytes of
// one 8-byte word each ship only their bytes, so applying both keeps both writes.
// Sparse runs carry scattered writes: one header and bitmap for up to 64 words instead of
// a header per isolated word (10%-scattered writes: about 30% fewer bytes).
// An empty diff (length 0) means "page unchanged".
//
// Hot path: encode/validate/apply never allocate or throw.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace calypso::dsm {

inline constexpr std::uint16_t kRunMasked = 1;
inline constexpr std::uint16_t kRunSparse = 2;
inline constexpr std::size_t kSparseRunMaxWords = 64;

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
  bad_flags,      // unknown flag bits, a mask byte of 0 / padding not zero, or a sparse
                  // run's bitmap that does not match its word count
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

// diff_apply for a diff that may change while it is read (a result read where a worker
// wrote it, in its result ring, which a buggy worker could write again): each run's
// header is read once and checked against the page and the rest of the diff before it
// is used, so that whatever the bytes are, nothing outside page[0, page_bytes) is
// written and nothing outside diff is read. For a diff that diff_validate accepted and
// that does not change, the same as diff_apply; else stops at the first run that does
// not fit and returns false (the runs before it applied).
bool diff_apply_bounded(std::span<const std::byte> diff, std::byte* page, std::size_t page_bytes) noexcept;

// Exchanges, word by word, the contents of a and b over the words the diff writes (one
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
