// Tests of the byte masks of masked diff runs (dsm/byte_masks.hpp), in every
// implementation this CPU runs (AVX-512, AVX2, portable), against the plain definition:
// the data is a copy of the words, mask bit b of word i is set iff byte b of that word
// differs, padding is zero, and applying writes exactly the masked bytes. The words sit at the very end of a page
// followed by an inaccessible page, so an implementation that reads or writes one byte
// past its run dies of SIGSEGV here.
#include "dsm/byte_masks.hpp"
#include "dsm/diff.hpp"

#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace calypso::dsm {
namespace {

using Bytes = std::vector<std::byte>;

// At least `bytes` of read-write memory followed by a PROT_NONE guard page.
class Guarded {
 public:
  explicit Guarded(std::size_t bytes = 8192) {
    const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    usable_ = (bytes + page - 1) / page * page;
    void* p = mmap(nullptr, usable_ + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap failed");
    base_ = static_cast<std::byte*>(p);
    if (mprotect(base_ + usable_, page, PROT_NONE) != 0) throw std::runtime_error("mprotect failed");
    total_ = usable_ + page;
  }
  ~Guarded() { munmap(base_, total_); }
  Guarded(const Guarded&) = delete;
  Guarded& operator=(const Guarded&) = delete;
  // The last `bytes` bytes before the guard page.
  std::byte* tail(std::size_t bytes) { return base_ + usable_ - bytes; }

 private:
  std::size_t usable_ = 0, total_ = 0;
  std::byte* base_ = nullptr;
};

class ByteMasks : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!detail::use_byte_mask_kernel(GetParam())) GTEST_SKIP() << GetParam() << " not on this CPU";
  }
  void TearDown() override {   // back to what the CPU would pick
    for (const char* k : {"avx512", "avx2", "portable"})
      if (detail::use_byte_mask_kernel(k)) break;
  }
};

std::size_t padded(std::size_t count) { return (count + 7) / 8 * 8; }

// cur and twin of count words that differ in random bytes (each word in at least one).
void random_words(std::byte* cur, std::byte* twin, std::size_t count, std::mt19937_64& rng) {
  for (std::size_t i = 0; i < count * 8; ++i) twin[i] = std::byte(rng() & 0xff);
  std::memcpy(cur, twin, count * 8);
  for (std::size_t w = 0; w < count; ++w) {
    const unsigned pattern = 1 + rng() % 255;   // which bytes of the word change
    for (unsigned b = 0; b < 8; ++b)
      if (pattern & (1u << b)) cur[w * 8 + b] ^= std::byte(1 + rng() % 255);
  }
}

// Every run length, with each word changed in random bytes, and with every byte of
// every word changed (then the kernel says so: the run needs no masks).
TEST_P(ByteMasks, CopyGivesTheWordsOneBitPerChangedByteAndZeroPadding) {
  std::mt19937_64 rng(11);
  Guarded cur_mem, twin_mem, data_mem, mask_mem;
  for (const bool every_byte : {false, true}) {
    for (std::size_t count = 1; count <= 70; ++count) {
      std::byte* cur = cur_mem.tail(count * 8);
      std::byte* twin = twin_mem.tail(count * 8);
      std::byte* data = data_mem.tail(count * 8);
      std::byte* masks = mask_mem.tail(padded(count));
      random_words(cur, twin, count, rng);
      if (every_byte) {
        for (std::size_t i = 0; i < count * 8; ++i) cur[i] = ~twin[i];
      }
      std::memset(masks, 0xee, padded(count));   // the padding must be written as zero
      std::memset(data, 0xee, count * 8);
      bool all = true;
      for (std::size_t i = 0; i < count * 8; ++i) all = all && cur[i] != twin[i];
      EXPECT_EQ(copy_with_byte_masks(cur, twin, count, data, masks), all) << "count " << count;
      ASSERT_EQ(std::memcmp(data, cur, count * 8), 0) << "count " << count;
      for (std::size_t w = 0; w < count; ++w) {
        unsigned expected = 0;
        for (unsigned b = 0; b < 8; ++b) expected |= unsigned{cur[w * 8 + b] != twin[w * 8 + b]} << b;
        ASSERT_EQ(std::to_integer<unsigned>(masks[w]), expected) << "count " << count << " word " << w;
      }
      for (std::size_t i = count; i < padded(count); ++i)
        ASSERT_EQ(masks[i], std::byte{0}) << "count " << count << " padding byte " << i;
    }
  }
}

TEST_P(ByteMasks, ApplyWritesExactlyTheMaskedBytes) {
  std::mt19937_64 rng(12);
  Guarded dst_mem, data_mem, mask_mem;
  for (std::size_t count = 1; count <= 70; ++count) {
    std::byte* dst = dst_mem.tail(count * 8);
    std::byte* data = data_mem.tail(count * 8);
    std::byte* masks = mask_mem.tail(padded(count));
    for (std::size_t i = 0; i < count * 8; ++i) {
      dst[i] = std::byte(rng() & 0xff);
      data[i] = std::byte(rng() & 0xff);
    }
    std::memset(masks, 0, padded(count));
    for (std::size_t w = 0; w < count; ++w) masks[w] = std::byte(1 + rng() % 255);
    Bytes expected(dst, dst + count * 8);
    for (std::size_t i = 0; i < count * 8; ++i)
      if (std::to_integer<unsigned>(masks[i / 8]) & (1u << (i % 8))) expected[i] = data[i];
    apply_byte_masks(dst, data, masks, count);
    ASSERT_EQ(Bytes(dst, dst + count * 8), expected) << "count " << count;
  }
}

// The whole codec on pages where every word changes in some bytes only (masked runs of
// every length), and with scattered partial changes: apply(encode) rebuilds the page.
TEST_P(ByteMasks, DiffRoundTripOfPartlyChangedWords) {
  std::mt19937_64 rng(13);
  constexpr std::size_t kPage = 16384;
  for (int round = 0; round < 50; ++round) {
    Bytes twin(kPage), cur;
    for (auto& b : twin) b = std::byte(rng() & 0xff);
    cur = twin;
    const unsigned density = 1 + rng() % 100;   // percent of words changed
    for (std::size_t w = 0; w < kPage / 8; ++w) {
      if (rng() % 100 >= density) continue;
      const unsigned pattern = 1 + rng() % 255;
      for (unsigned b = 0; b < 8; ++b)
        if (pattern & (1u << b)) cur[w * 8 + b] ^= std::byte(1 + rng() % 255);
    }
    Bytes out(diff_max_encoded_size(kPage));
    out.resize(diff_encode(cur.data(), twin.data(), kPage, out.data()));
    ASSERT_EQ(diff_validate(out, kPage), DiffStatus::ok);
    Bytes rebuilt = twin;
    diff_apply(out, rebuilt.data());
    ASSERT_EQ(rebuilt, cur) << "round " << round << ", density " << density << "%";
  }
}

// diff_encode may use all of diff_max_encoded_size as scratch (masks of a run that
// turn out to be unneeded), never more: the output buffer ends at a guard page. The
// pages are what was the worst case before sparse runs (every other word changed in
// some bytes, now mostly sparse runs, then a long run of fully changed words whose masks
// are written and dropped), every word changed, spans whose runs after the first go as
// one sparse run of nearly all their words (masked, and unmasked with masks written and
// dropped), and random ones. Since sparse runs the encoder stays well below the bound
// (about 9.3 bytes per word at most), so this guards the bound, not a tight fit.
TEST_P(ByteMasks, EncodeStaysWithinMaxEncodedSize) {
  std::mt19937_64 rng(14);
  for (const std::size_t page : {std::size_t{4096}, std::size_t{16384}, std::size_t{65536}}) {
    const std::size_t max = diff_max_encoded_size(page);
    Guarded out_mem(max);
    std::byte* out = out_mem.tail(max);
    for (int shape = 0; shape < 8; ++shape) {
      Bytes twin(page), cur;
      for (auto& b : twin) b = std::byte(rng() & 0xff);
      cur = twin;
      const std::size_t words = page / 8;
      for (std::size_t w = 0; w < words; ++w) {
        bool change = false, every_byte = false;
        switch (shape) {
          case 0: change = w % 2 == 0; break;                          // every other word, 1 byte
          case 1: change = w % 2 == 0 || w >= words / 2; every_byte = w >= words / 2; break;
          case 2: change = true; every_byte = true; break;             // one unmasked run
          case 3: change = true; break;                                // one masked run
          case 6: change = w % 64 != 1 && w % 64 != 3; break;        // sparse, masked
          case 7: change = w % 64 != 1 && w % 64 != 3; every_byte = true; break;
          default: change = rng() % 3 != 0; every_byte = rng() % 2 == 0; break;
        }
        if (!change) continue;
        if (every_byte)
          for (std::size_t b = 0; b < 8; ++b) cur[w * 8 + b] = ~twin[w * 8 + b];
        else
          cur[w * 8] = ~twin[w * 8];
      }
      const std::size_t n = diff_encode(cur.data(), twin.data(), page, out);
      ASSERT_LE(n, max);
      Bytes rebuilt = twin;
      diff_apply(std::span<const std::byte>(out, n), rebuilt.data());
      ASSERT_EQ(rebuilt, cur) << "page " << page << ", shape " << shape;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, ByteMasks, ::testing::Values("avx512", "avx2", "portable"),
                         [](const auto& info) { return info.param; });

TEST(ByteMaskKernel, TheBestTheCpuRunsIsChosen) {
  const std::string chosen = detail::byte_mask_kernel();
  EXPECT_TRUE(chosen == "avx512" || chosen == "avx2" || chosen == "portable") << chosen;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512bw")) {
    EXPECT_EQ(chosen, "avx512");
  } else if (__builtin_cpu_supports("avx2")) {
    EXPECT_EQ(chosen, "avx2");
  }
#endif
  EXPECT_FALSE(detail::use_byte_mask_kernel("sse9"));
  EXPECT_EQ(std::string(detail::byte_mask_kernel()), chosen);
}

}  // namespace
}  // namespace calypso::dsm
