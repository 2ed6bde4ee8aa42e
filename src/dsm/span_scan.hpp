// The scan under every diff encode (diff.cpp): which 512-byte spans of a stretch of a
// dirty page differ from its twin, and which words of each span that does. It reads
// the whole stretch, so it is what makes encoding a page with little change cost about
// one memcmp of it. It runs 64 bytes per step where the CPU has AVX-512BW (32 with AVX2),
// picked once, at the first call; other CPUs get portable code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace calypso::dsm::detail {

// Words per span: one bit per word in a uint64.
inline constexpr std::size_t kSpanWords = 64;

// XOR of 8-byte word i of two pages (unaligned reads; the wire format is little-endian).
inline std::uint64_t xor_at(const std::byte* cur, const std::byte* twin, std::size_t i) noexcept {
  std::uint64_t a, b;
  std::memcpy(&a, cur + i * 8, sizeof a);
  std::memcpy(&b, twin + i * 8, sizeof b);
  return a ^ b;
}

// For the `spans` spans (at most 64) of kSpanWords 8-byte words from word `first` of
// cur and twin: bit s of the result is set iff some word of span s differs, and then
// word_bits[s] gets bit i set iff word first + s * kSpanWords + i differs. The other
// entries of word_bits are left alone. Reads exactly those spans.
std::uint64_t changed_span_bits(const std::byte* cur, const std::byte* twin, std::size_t first,
                                std::size_t spans, std::uint64_t* word_bits) noexcept;

// Which implementation runs: "avx512", "avx2" or "portable".
const char* span_scan_kernel() noexcept;
// For tests and benchmarks: run name instead (one the CPU supports; false otherwise).
// Not thread-safe: call while no diff is being encoded.
bool use_span_scan_kernel(std::string_view name) noexcept;

}  // namespace calypso::dsm::detail
