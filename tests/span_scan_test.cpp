// Tests of the diff encoder's span scan (dsm/span_scan.hpp), in every implementation
// this CPU runs (AVX-512BW, AVX2, portable), against the plain definition: span s is
// marked iff one of its 64 words differs, and then its word bits name exactly those
// words; entries of unchanged spans are left alone. The stretch ends right before an
// inaccessible page, so a kernel that reads past its spans dies of SIGSEGV here.
#include "dsm/span_scan.hpp"

#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace calypso::dsm {
namespace {

using detail::kSpanWords;
constexpr std::uint64_t kUntouched = 0x5eed5eed5eed5eedull;

// `bytes` of read-write memory whose end touches a PROT_NONE guard page.
class Guarded {
 public:
  explicit Guarded(std::size_t bytes) {
    const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    usable_ = (bytes + page - 1) / page * page;
    total_ = usable_ + page;
    void* p = mmap(nullptr, total_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap failed");
    base_ = static_cast<std::byte*>(p);
    if (mprotect(base_ + usable_, page, PROT_NONE) != 0) throw std::runtime_error("mprotect failed");
    tail_ = base_ + usable_ - bytes;
  }
  ~Guarded() { munmap(base_, total_); }
  Guarded(const Guarded&) = delete;
  Guarded& operator=(const Guarded&) = delete;
  std::byte* data() { return tail_; }

 private:
  std::size_t usable_ = 0, total_ = 0;
  std::byte* base_ = nullptr;
  std::byte* tail_ = nullptr;
};

struct Expected {
  std::uint64_t spans = 0;
  std::vector<std::uint64_t> word_bits;
};

Expected reference(const std::byte* cur, const std::byte* twin, std::size_t first, std::size_t spans) {
  Expected e;
  e.word_bits.assign(64, kUntouched);
  for (std::size_t s = 0; s < spans; ++s) {
    std::uint64_t bits = 0;
    for (std::size_t i = 0; i < kSpanWords; ++i) {
      const std::size_t off = (first + s * kSpanWords + i) * 8;
      if (std::memcmp(cur + off, twin + off, 8) != 0) bits |= std::uint64_t{1} << i;
    }
    if (bits != 0) {
      e.spans |= std::uint64_t{1} << s;
      e.word_bits[s] = bits;
    }
  }
  return e;
}

class SpanScan : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!detail::use_span_scan_kernel(GetParam())) GTEST_SKIP() << GetParam() << " not on this CPU";
  }
  void TearDown() override {   // back to what the CPU would pick
    for (const char* k : {"avx512", "avx2", "portable"})
      if (detail::use_span_scan_kernel(k)) break;
  }

  // Scans spans from word `first` of two stretches that end at their guard pages.
  void check(std::size_t first, std::size_t spans, const std::vector<std::size_t>& changed_bytes,
             const char* what) {
    const std::size_t bytes = (first + spans * kSpanWords) * 8;
    Guarded cur(bytes), twin(bytes);
    std::mt19937_64 rng(bytes + spans);
    for (std::size_t i = 0; i < bytes; ++i) twin.data()[i] = std::byte(rng());
    std::memcpy(cur.data(), twin.data(), bytes);
    for (std::size_t b : changed_bytes) cur.data()[b] ^= std::byte{0x01};
    const Expected want = reference(cur.data(), twin.data(), first, spans);
    std::vector<std::uint64_t> got(64, kUntouched);
    const std::uint64_t spans_got = detail::changed_span_bits(cur.data(), twin.data(), first, spans, got.data());
    EXPECT_EQ(spans_got, want.spans) << what;
    EXPECT_EQ(got, want.word_bits) << what;
  }
};

TEST_P(SpanScan, NoChangeMarksNothing) {
  check(0, 8, {}, "one page, unchanged");
  check(0, 64, {}, "32 KiB, unchanged");
}

TEST_P(SpanScan, EveryWordPosition) {
  // Each word of a span in turn, in the first, a middle and the last span; a change in
  // any byte of the word counts (low, middle and high byte).
  for (std::size_t span : {0u, 3u, 7u})
    for (std::size_t w = 0; w < kSpanWords; ++w)
      for (std::size_t byte : {0u, 3u, 7u})
        check(0, 8, {(span * kSpanWords + w) * 8 + byte},
              ("span " + std::to_string(span) + " word " + std::to_string(w)).c_str());
}

TEST_P(SpanScan, StartsAtAnyWordAndEndsAtItsLastSpan) {
  // A scan from an odd word (an unaligned start) over 1 to 64 spans; the stretch before
  // `first` changed too and must not be looked at.
  std::mt19937_64 rng(7);
  for (std::size_t spans : {1u, 2u, 5u, 63u, 64u}) {
    const std::size_t first = 1 + rng() % 100;
    std::vector<std::size_t> changed;
    for (std::size_t b = 0; b < first * 8; b += 8) changed.push_back(b);   // before the scan
    for (int i = 0; i < 40; ++i) changed.push_back(first * 8 + rng() % (spans * kSpanWords * 8));
    check(first, spans, changed, ("spans " + std::to_string(spans)).c_str());
  }
}

TEST_P(SpanScan, DenseAndScatteredChanges) {
  std::mt19937_64 rng(11);
  for (int density : {1, 10, 50, 100}) {
    std::vector<std::size_t> changed;
    for (std::size_t w = 0; w < 64 * kSpanWords; ++w)
      if (static_cast<int>(rng() % 100) < density) changed.push_back(w * 8 + rng() % 8);
    check(0, 64, changed, ("density " + std::to_string(density) + "%").c_str());
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, SpanScan, ::testing::Values("avx512", "avx2", "portable"),
                         [](const auto& info) { return info.param; });

TEST(SpanScanChoice, UnknownKernelIsRefusedAndChangesNothing) {
  const std::string chosen = detail::span_scan_kernel();
  EXPECT_FALSE(detail::use_span_scan_kernel("sse9"));
  EXPECT_EQ(std::string(detail::span_scan_kernel()), chosen);
}

}  // namespace
}  // namespace calypso::dsm
