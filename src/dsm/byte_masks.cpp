// Byte masks of masked diff runs, 64 or 32 bytes per step where the CPU allows; see
// byte_masks.hpp. The kernels below assume count >= 1.
#include "dsm/byte_masks.hpp"

#include <array>
#include <cstdint>
#include <cstring>
#include <string_view>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CALYPSO_X86_MASKS 1
#endif

namespace calypso::dsm {
namespace {

std::uint64_t load_u64(const std::byte* p) noexcept {
  std::uint64_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}

using detail::expand_byte_mask;
using detail::nonzero_byte_mask;

// Zeroes the 8 bytes that hold the last mask bytes and the padding; the mask bytes are
// written over them afterwards.
void clear_padding(std::byte* masks, std::size_t count) noexcept {
  const std::uint64_t zero = 0;
  std::memcpy(masks + (count - 1) / 8 * 8, &zero, 8);
}

// Words [0, count) one at a time, without the padding; true if every byte changed.
bool copy_words(const std::byte* cur, const std::byte* twin, std::size_t count,
                std::byte* data, std::byte* masks) noexcept {
  std::uint8_t all = 0xff;
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t c = load_u64(cur + 8 * i);
    std::memcpy(data + 8 * i, &c, 8);
    const std::uint8_t m = nonzero_byte_mask(c ^ load_u64(twin + 8 * i));
    masks[i] = std::byte{m};
    all &= m;
  }
  return all == 0xff;
}

bool copy_portable(const std::byte* cur, const std::byte* twin, std::size_t count,
                   std::byte* data, std::byte* masks) noexcept {
  clear_padding(masks, count);
  return copy_words(cur, twin, count, data, masks);
}

void apply_portable(std::byte* dst, const std::byte* data, const std::byte* masks,
                    std::size_t count) noexcept {
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t m = expand_byte_mask(std::to_integer<std::uint8_t>(masks[i]));
    const std::uint64_t v = (load_u64(dst + 8 * i) & ~m) | (load_u64(data + 8 * i) & m);
    std::memcpy(dst + 8 * i, &v, 8);
  }
}

#if CALYPSO_X86_MASKS
// The bytes of the first `words` of 8 words (all when words >= 8).
[[gnu::target("avx512f,avx512bw")]] __mmask64 first_words(std::size_t words) noexcept {
  return words >= 8 ? ~__mmask64{0} : (__mmask64{1} << (8 * words)) - 1;
}

// Eight words per step; the last, partial step loads and stores with a byte mask,
// which neither touches memory past the run nor faults there. Its mask word lands in
// the padding (zero past the run, since the masked-off bytes load as zero).
[[gnu::target("avx512f,avx512bw")]] bool copy_avx512(const std::byte* cur, const std::byte* twin,
                                                     std::size_t count, std::byte* data,
                                                     std::byte* masks) noexcept {
  __mmask64 all = ~__mmask64{0};
  for (std::size_t i = 0; i < count; i += 8) {
    const __mmask64 k = first_words(count - i);
    const __m512i c = _mm512_maskz_loadu_epi8(k, cur + 8 * i);
    const __m512i x = _mm512_xor_si512(c, _mm512_maskz_loadu_epi8(k, twin + 8 * i));
    _mm512_mask_storeu_epi8(data + 8 * i, k, c);
    const std::uint64_t m = _mm512_test_epi8_mask(x, x);
    std::memcpy(masks + i, &m, 8);
    all &= m | ~k;
  }
  return all == ~__mmask64{0};
}

// The eight mask bytes are the store's byte mask: bytes not written are never touched.
// Mask bytes past the run are padding (zero), so the last step writes only run bytes.
[[gnu::target("avx512f,avx512bw")]] void apply_avx512(std::byte* dst, const std::byte* data,
                                                      const std::byte* masks,
                                                      std::size_t count) noexcept {
  for (std::size_t i = 0; i < count; i += 8) {
    const __mmask64 k = load_u64(masks + i);
    _mm512_mask_storeu_epi8(dst + 8 * i, k, _mm512_maskz_loadu_epi8(k, data + 8 * i));
  }
}

// Four words per step: 32 compare results give the four mask bytes.
[[gnu::target("avx2")]] bool copy_avx2(const std::byte* cur, const std::byte* twin,
                                       std::size_t count, std::byte* data,
                                       std::byte* masks) noexcept {
  clear_padding(masks, count);
  std::uint32_t all = ~0u;
  std::size_t i = 0;
  for (; i + 4 <= count; i += 4) {
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cur + 8 * i));
    const __m256i x =
        _mm256_xor_si256(c, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(twin + 8 * i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(data + 8 * i), c);
    const std::uint32_t m = ~static_cast<std::uint32_t>(
        _mm256_movemask_epi8(_mm256_cmpeq_epi8(x, _mm256_setzero_si256())));
    std::memcpy(masks + i, &m, 4);
    all &= m;
  }
  const bool rest = copy_words(cur + 8 * i, twin + 8 * i, count - i, data + 8 * i, masks + i);
  return all == ~0u && rest;
}

// Four mask bytes become a 32-byte select: each byte picks its mask byte (a shuffle
// within each 128-bit lane), keeps its own bit, and compares to it.
[[gnu::target("avx2")]] void apply_avx2(std::byte* dst, const std::byte* data,
                                        const std::byte* masks, std::size_t count) noexcept {
  const __m256i pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  std::size_t i = 0;
  for (; i + 4 <= count; i += 4) {
    std::uint32_t m;
    std::memcpy(&m, masks + i, 4);
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(m)), pick);
    const __m256i select = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    auto* d = reinterpret_cast<__m256i*>(dst + 8 * i);
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(data + 8 * i));
    _mm256_storeu_si256(d, _mm256_blendv_epi8(_mm256_loadu_si256(d), v, select));
  }
  apply_portable(dst + 8 * i, data + 8 * i, masks + i, count - i);
}
#endif

struct Kernels {
  bool (*copy)(const std::byte*, const std::byte*, std::size_t, std::byte*, std::byte*) noexcept;
  void (*apply)(std::byte*, const std::byte*, const std::byte*, std::size_t) noexcept;
  const char* name;
};

// The implementations this CPU runs, best first; the portable one always.
struct Supported {
  std::array<Kernels, 3> list;
  std::size_t count = 0;
  const Kernels* begin() const noexcept { return list.data(); }
  const Kernels* end() const noexcept { return list.data() + count; }
};

Supported supported_kernels() noexcept {
  Supported s;
#if CALYPSO_X86_MASKS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512bw")) s.list[s.count++] = {copy_avx512, apply_avx512, "avx512"};
  if (__builtin_cpu_supports("avx2")) s.list[s.count++] = {copy_avx2, apply_avx2, "avx2"};
#endif
  s.list[s.count++] = {copy_portable, apply_portable, "portable"};
  return s;
}

Kernels& kernels() noexcept {
  static Kernels k = *supported_kernels().begin();
  return k;
}

}  // namespace

bool copy_with_byte_masks(const std::byte* cur, const std::byte* twin, std::size_t count,
                          std::byte* data, std::byte* masks) noexcept {
  return count == 0 || kernels().copy(cur, twin, count, data, masks);   // (no padding word)
}

void apply_byte_masks(std::byte* dst, const std::byte* data, const std::byte* masks,
                      std::size_t count) noexcept {
  kernels().apply(dst, data, masks, count);
}

namespace detail {

const char* byte_mask_kernel() noexcept { return kernels().name; }

bool use_byte_mask_kernel(std::string_view name) noexcept {
  for (const Kernels& k : supported_kernels()) {
    if (name == k.name) {
      kernels() = k;
      return true;
    }
  }
  return false;
}

}  // namespace detail
}  // namespace calypso::dsm
