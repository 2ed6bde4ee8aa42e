// Span scans of the diff encoder; see span_scan.hpp.
//
// Each span is an OR of xors with no early exit, so the loads stream like memcmp's and
// never wait on what earlier spans held (a cold page's reads stay in parallel). Where a
// span changed, its word bits are taken at once, from registers or L1. The vector
// kernels are written with intrinsics because compiled from plain loops (GCC 12 with
// target clones) they were 20-40% slower than memcmp on a page in L1: GCC reduced
// every span's OR to a scalar through a chain of lane extracts before its branch, and in
// the AVX2 copy it kept all 32 loaded vectors of a span live across that branch for the
// word bits, spilling half of them to the stack. vptest / vptestmq answer the branch in
// one instruction.
#include "dsm/span_scan.hpp"

#include <array>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CALYPSO_X86_SCANS 1
#endif

namespace calypso::dsm::detail {
namespace {

constexpr std::size_t kWordBytes = 8;
constexpr std::size_t kSpanBytes = kSpanWords * kWordBytes;

std::uint64_t scan_portable(const std::byte* cur, const std::byte* twin, std::size_t first,
                            std::size_t spans, std::uint64_t* word_bits) noexcept {
  std::uint64_t bits = 0;
  for (std::size_t s = 0; s < spans; ++s) {
    const std::size_t w0 = first + s * kSpanWords;
    std::uint64_t acc = 0;
    for (std::size_t i = 0; i < kSpanWords; ++i) acc |= xor_at(cur, twin, w0 + i);
    if (acc == 0) continue;
    bits |= std::uint64_t{1} << s;
    std::uint64_t w = 0;
    for (std::size_t i = 0; i < kSpanWords; ++i) w |= std::uint64_t{xor_at(cur, twin, w0 + i) != 0} << i;
    word_bits[s] = w;
  }
  return bits;
}

#if CALYPSO_X86_SCANS
// A span is 8 vectors; their xors stay in registers (32 of them) for the word bits.
[[gnu::target("avx512f,avx512bw")]] std::uint64_t scan_avx512(const std::byte* cur, const std::byte* twin,
                                                      std::size_t first, std::size_t spans,
                                                      std::uint64_t* word_bits) noexcept {
  const std::byte* c = cur + first * kWordBytes;
  const std::byte* t = twin + first * kWordBytes;
  std::uint64_t bits = 0;
  for (std::size_t s = 0; s < spans; ++s, c += kSpanBytes, t += kSpanBytes) {
    __m512i x[8];
    for (int i = 0; i < 8; ++i)
      x[i] = _mm512_xor_si512(_mm512_loadu_si512(c + 64 * i), _mm512_loadu_si512(t + 64 * i));
    const __m512i acc = _mm512_or_si512(_mm512_or_si512(_mm512_or_si512(x[0], x[1]), _mm512_or_si512(x[2], x[3])),
                                        _mm512_or_si512(_mm512_or_si512(x[4], x[5]), _mm512_or_si512(x[6], x[7])));
    if (_mm512_test_epi64_mask(acc, acc) == 0) continue;
    bits |= std::uint64_t{1} << s;
    __mmask8 m[8];
    for (int i = 0; i < 8; ++i) m[i] = _mm512_test_epi64_mask(x[i], x[i]);
    // Eight 8-bit masks joined in mask registers (the first is the lowest byte).
    const __mmask16 m01 = _mm512_kunpackb(m[1], m[0]), m23 = _mm512_kunpackb(m[3], m[2]);
    const __mmask16 m45 = _mm512_kunpackb(m[5], m[4]), m67 = _mm512_kunpackb(m[7], m[6]);
    const __mmask64 all = _mm512_kunpackd(_mm512_kunpackw(m67, m45), _mm512_kunpackw(m23, m01));
    word_bits[s] = _cvtmask64_u64(all);
  }
  return bits;
}

[[gnu::target("avx2")]] inline __m256i load(const std::byte* p) noexcept {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// A span is 16 vectors: too many to keep beside the OR, so a changed span (rare where
// speed matters) is read again, from L1.
[[gnu::target("avx2")]] std::uint64_t scan_avx2(const std::byte* cur, const std::byte* twin,
                                                 std::size_t first, std::size_t spans,
                                                 std::uint64_t* word_bits) noexcept {
  const std::byte* c = cur + first * kWordBytes;
  const std::byte* t = twin + first * kWordBytes;
  std::uint64_t bits = 0;
  for (std::size_t s = 0; s < spans; ++s, c += kSpanBytes, t += kSpanBytes) {
    __m256i a = _mm256_setzero_si256(), b = _mm256_setzero_si256();
    for (int i = 0; i < 16; i += 2) {   // two chains of ORs
      a = _mm256_or_si256(a, _mm256_xor_si256(load(c + 32 * i), load(t + 32 * i)));
      b = _mm256_or_si256(b, _mm256_xor_si256(load(c + 32 * i + 32), load(t + 32 * i + 32)));
    }
    const __m256i acc = _mm256_or_si256(a, b);
    if (_mm256_testz_si256(acc, acc)) continue;
    bits |= std::uint64_t{1} << s;
    // Reload rather than let the compiler keep the 32 loads above live across the branch.
    asm volatile("" ::: "memory");
    std::uint64_t w = 0;
    for (int i = 0; i < 16; ++i) {
      const __m256i same = _mm256_cmpeq_epi64(load(c + 32 * i), load(t + 32 * i));
      const auto changed = static_cast<unsigned>(~_mm256_movemask_pd(_mm256_castsi256_pd(same))) & 0xfu;
      w |= std::uint64_t{changed} << (4 * i);
    }
    word_bits[s] = w;
  }
  return bits;
}
#endif

struct Kernel {
  std::uint64_t (*scan)(const std::byte*, const std::byte*, std::size_t, std::size_t, std::uint64_t*) noexcept;
  const char* name;
};

// The implementations this CPU runs, best first; the portable one always.
struct Supported {
  std::array<Kernel, 3> list;
  std::size_t count = 0;
  const Kernel* begin() const noexcept { return list.data(); }
  const Kernel* end() const noexcept { return list.data() + count; }
};

Supported supported_kernels() noexcept {
  Supported s;
#if CALYPSO_X86_SCANS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512bw")) s.list[s.count++] = {scan_avx512, "avx512"};
  if (__builtin_cpu_supports("avx2")) s.list[s.count++] = {scan_avx2, "avx2"};
#endif
  s.list[s.count++] = {scan_portable, "portable"};
  return s;
}

Kernel& kernel() noexcept {
  static Kernel k = *supported_kernels().begin();
  return k;
}

}  // namespace

std::uint64_t changed_span_bits(const std::byte* cur, const std::byte* twin, std::size_t first,
                                std::size_t spans, std::uint64_t* word_bits) noexcept {
  return kernel().scan(cur, twin, first, spans, word_bits);
}

const char* span_scan_kernel() noexcept { return kernel().name; }

bool use_span_scan_kernel(std::string_view name) noexcept {
  for (const Kernel& k : supported_kernels()) {
    if (name == k.name) {
      kernel() = k;
      return true;
    }
  }
  return false;
}

}  // namespace calypso::dsm::detail
