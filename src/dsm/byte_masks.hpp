// Byte masks of a masked diff run (diff.hpp): mask byte i has bit b set iff byte b of
// word i changed. Eight mask bytes read as a little-endian uint64 are then one bit per
// byte of 64 bytes of page, in memory order: exactly an AVX-512 byte mask. So both
// directions run 64 bytes per step where the CPU has AVX-512BW (32 with AVX2), picked
// once, at the first call; other CPUs get the portable word-at-a-time code.
//
// Jacobi-like pages need this: a double that moves a little keeps its high bytes, so
// nearly every run of such a page is masked, and word-at-a-time masks cost about ten
// times a memcpy of the same words.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace calypso::dsm {

// Encodes the data and masks of a run of count words in one pass: copies the words at
// cur to data, and writes their masks against twin to masks (count bytes, then zeros up
// to a multiple of 8: the wire format's padding). Returns true when every byte of every
// word changed, so the run can go without its masks. Reads only those words. count 0
// writes nothing and returns true.
bool copy_with_byte_masks(const std::byte* cur, const std::byte* twin, std::size_t count,
                          std::byte* data, std::byte* masks) noexcept;

// Writes into dst the bytes of the count words at data whose mask bits are set; the
// other bytes of dst keep their value. masks holds count bytes plus zero padding to a
// multiple of 8 (as diff_validate accepts them). Reads and writes only those words.
void apply_byte_masks(std::byte* dst, const std::byte* data, const std::byte* masks,
                      std::size_t count) noexcept;

namespace detail {

inline constexpr std::uint64_t kLow7 = 0x7f7f7f7f7f7f7f7full;
inline constexpr std::uint64_t kHigh1 = 0x8080808080808080ull;

// High bit of each byte set iff that byte of x is nonzero. The low 7 bits are added
// separately so that no carry crosses into the next byte.
inline std::uint64_t nonzero_byte_high_bits(std::uint64_t x) noexcept {
  return (((x & kLow7) + kLow7) | x) & kHigh1;
}

// The mask byte of one word's xor: bit b set iff byte b is nonzero. The multiply
// gathers the eight high bits (shifted to bits 0, 8, ..., 56) into the top byte; its
// partial products never collide, so there are no carries.
inline std::uint8_t nonzero_byte_mask(std::uint64_t x) noexcept {
  return static_cast<std::uint8_t>(((nonzero_byte_high_bits(x) >> 7) * 0x0102040810204080ull) >> 56);
}

// Inverse of nonzero_byte_mask: byte b is 0xff iff bit b of mask is set.
inline std::uint64_t expand_byte_mask(std::uint8_t mask) noexcept {
  const std::uint64_t one_bit_per_byte = (mask * 0x0101010101010101ull) & 0x8040201008040201ull;
  return (nonzero_byte_high_bits(one_bit_per_byte) >> 7) * 0xff;
}

// Which implementation runs: "avx512", "avx2" or "portable".
const char* byte_mask_kernel() noexcept;
// For tests and benchmarks: run name instead (one the CPU supports; false otherwise).
// Not thread-safe: call while no diff is being encoded or applied.
bool use_byte_mask_kernel(std::string_view name) noexcept;
}  // namespace detail

}  // namespace calypso::dsm
