// Tests of the shared heap's allocator (dsm/heap.hpp).
//
// Blocks must honour their alignment, stay inside the heap and never overlap a live
// block; this is checked on a seeded random sequence of allocations and frees against a
// reference set of intervals. Freeing must coalesce, so that once everything is freed
// (in any order) the whole heap can be handed out as one block again. Frees of offsets
// that are not live blocks are refused, and a heap that cannot satisfy a request says so.
// Large blocks are staggered (a gap in front of each), never at the cost of a request.
#include "dsm/heap.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <vector>

namespace calypso::dsm {
namespace {

// Live blocks as the test sees them: offset -> bytes asked for.
class Reference {
 public:
  // Fails the test if [offset, offset+bytes) overlaps a live block.
  void add(std::size_t offset, std::size_t bytes) {
    auto next = live_.lower_bound(offset);
    if (next != live_.end()) {
      EXPECT_LE(offset + bytes, next->first) << "block at " << offset << " overlaps the one at " << next->first;
    }
    if (next != live_.begin()) {
      auto prev = std::prev(next);
      EXPECT_LE(prev->first + prev->second, offset) << "block at " << offset << " overlaps the one at " << prev->first;
    }
    live_[offset] = bytes;
  }
  std::size_t take(std::size_t index) {
    auto it = live_.begin();
    std::advance(it, static_cast<long>(index));
    std::size_t offset = it->first;
    live_.erase(it);
    return offset;
  }
  std::size_t size() const { return live_.size(); }
  std::size_t bytes() const {
    std::size_t n = 0;
    for (auto& [o, b] : live_) n += b;
    return n;
  }

 private:
  std::map<std::size_t, std::size_t> live_;
};

// What Manager::freeze may freeze: memory that live blocks cover without a gap.
TEST(Heap, CoversOnlyLiveBlocksWithoutGaps) {
  Heap h(0, 1 << 20);
  const auto a = h.allocate(4096, 4096), b = h.allocate(4096, 4096), c = h.allocate(100, 64);
  ASSERT_TRUE(a && b && c);
  ASSERT_EQ(*b, *a + 4096) << "small blocks are not staggered";
  EXPECT_TRUE(h.covers(*a, *a + 8192));
  EXPECT_TRUE(h.covers(*a + 100, *a + 200));
  EXPECT_TRUE(h.covers(*a, *a));   // empty
  EXPECT_FALSE(h.covers(*c, *c + 113)) << "past the last block (100 bytes, rounded to 112)";
  EXPECT_FALSE(h.covers(*c + 120, *c + 200)) << "free memory after a block";
  EXPECT_EQ(h.block_bytes(*b), std::optional<std::size_t>(4096));
  EXPECT_EQ(h.block_bytes(*b + 1), std::nullopt);
  ASSERT_TRUE(h.release(*b));
  EXPECT_FALSE(h.covers(*a, *a + 8192)) << "a released block in the middle";
  EXPECT_TRUE(h.covers(*a, *a + 4096));
}

TEST(Heap, HonoursAlignment) {
  // An odd start makes every alignment above 1 do some work.
  const std::size_t begin = 4096 + 8, end = begin + (1 << 20);
  Heap h(begin, end);
  Reference ref;
  for (int round = 0; round < 3; ++round) {
    for (std::size_t align = 1; align <= 65536; align *= 2) {
      for (std::size_t bytes : {std::size_t{1}, std::size_t{24}, std::size_t{100}}) {
        auto off = h.allocate(bytes, align);
        ASSERT_TRUE(off) << "align " << align;
        EXPECT_EQ(*off % align, 0u) << "align " << align;
        EXPECT_GE(*off, begin);
        EXPECT_LE(*off + bytes, end);
        ref.add(*off, bytes);
      }
    }
  }
}

TEST(Heap, ZeroBytesStillGivesDistinctBlocks) {
  Heap h(0, 4096);
  auto a = h.allocate(0, 8);
  auto b = h.allocate(0, 8);
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);
  EXPECT_GT(h.bytes_in_use(), 0u);
}

TEST(Heap, RandomAllocAndFreeNeverOverlap) {
  const std::size_t begin = 64, end = begin + (4 << 20);
  std::mt19937_64 rng(12345);
  Heap h(begin, end);
  Reference ref;
  int failures = 0;
  for (int i = 0; i < 20000; ++i) {
    if (ref.size() > 0 && rng() % 5 < 2) {
      std::size_t off = ref.take(rng() % ref.size());
      ASSERT_TRUE(h.release(off)) << "live block at " << off;
      ASSERT_FALSE(h.release(off)) << "double free of " << off << " accepted";
      continue;
    }
    const std::size_t bytes = 1 + rng() % (rng() % 8 == 0 ? 65536 : 512);
    const std::size_t align = std::size_t{1} << (rng() % 13);
    auto off = h.allocate(bytes, align);
    if (!off) {
      ++failures;
      continue;
    }
    ASSERT_EQ(*off % align, 0u);
    ASSERT_GE(*off, begin);
    ASSERT_LE(*off + bytes, end);
    ref.add(*off, bytes);
    ASSERT_FALSE(HasFailure()) << "step " << i;
    ASSERT_GE(h.bytes_in_use(), ref.bytes());
  }
  EXPECT_LT(failures, 2000) << "heap refuses far too often for its size";
  while (ref.size() > 0) ASSERT_TRUE(h.release(ref.take(rng() % ref.size())));
  EXPECT_EQ(h.bytes_in_use(), 0u);
  // Everything coalesced: the whole range is one free block again.
  auto all = h.allocate(end - begin, 1);
  ASSERT_TRUE(all);
  EXPECT_EQ(*all, begin);
}

TEST(Heap, FreeInAnyOrderCoalescesToOneBlock) {
  constexpr std::size_t kBlock = 1024, kBlocks = 6, kBegin = 4096;
  std::vector<std::size_t> order(kBlocks);
  std::iota(order.begin(), order.end(), 0);
  int permutations = 0;
  do {
    Heap h(kBegin, kBegin + kBlocks * kBlock);
    std::vector<std::size_t> blocks;
    for (std::size_t i = 0; i < kBlocks; ++i) {
      auto off = h.allocate(kBlock, 16);
      ASSERT_TRUE(off);
      EXPECT_EQ(*off, kBegin + i * kBlock) << "first fit in address order";
      blocks.push_back(*off);
    }
    EXPECT_FALSE(h.allocate(1, 1)) << "heap is full";
    for (std::size_t i : order) ASSERT_TRUE(h.release(blocks[i]));
    auto whole = h.allocate(kBlocks * kBlock, 16);
    ASSERT_TRUE(whole);
    EXPECT_EQ(*whole, kBegin);
    ++permutations;
  } while (std::next_permutation(order.begin(), order.end()) && permutations < 200);
}

TEST(Heap, AlignmentSlackIsReusable) {
  // The gap left in front of an aligned block must go back to the free list.
  Heap h(16, 16 + 8192);
  auto a = h.allocate(64, 4096);  // leaves [16, 4096) free
  ASSERT_TRUE(a);
  EXPECT_EQ(*a, 4096u);
  auto b = h.allocate(4000, 16);
  ASSERT_TRUE(b);
  EXPECT_EQ(*b, 16u);
  ASSERT_TRUE(h.release(*a));
  ASSERT_TRUE(h.release(*b));
  auto all = h.allocate(8192, 16);
  ASSERT_TRUE(all);
  EXPECT_EQ(*all, 16u);
}

// Two large arrays of the same power-of-two size must not be exactly their size apart
// (see heap.hpp); every large block leaves a gap, a different one from the block before.
TEST(Heap, LargeBlocksAreStaggered) {
  constexpr std::size_t kPage = 16 << 10, kGrid = std::size_t{32} << 20;
  const std::size_t begin = kPage, end = begin + (std::size_t{1} << 30);
  Heap h(begin, end);
  std::vector<std::size_t> blocks;
  for (int i = 0; i < 9; ++i) {
    auto off = h.allocate(kGrid, kPage);
    ASSERT_TRUE(off);
    ASSERT_EQ(*off % kPage, 0u);
    blocks.push_back(*off);
  }
  EXPECT_EQ(blocks[0], begin + Heap::stagger_gap(0));
  for (std::size_t i = 1; i < blocks.size(); ++i) {
    const std::size_t gap = blocks[i] - blocks[i - 1] - kGrid;
    EXPECT_EQ(gap, Heap::stagger_gap(i)) << "block " << i;
    EXPECT_GT(gap, 0u);
    EXPECT_NE(Heap::stagger_gap(i), Heap::stagger_gap(i - 1));
  }
  // Small blocks are not staggered: they go first fit, into the gaps too.
  auto small = h.allocate(4096, 64);
  ASSERT_TRUE(small);
  EXPECT_EQ(*small, begin);
}

// Staggering costs a large block at most its largest gap; a block that does not fit
// after its gap still fits without one.
TEST(Heap, StaggeringCostsAtMostTheLargestGapABlock) {
  constexpr std::size_t kBlock = Heap::kStaggerFrom, kBlocks = 8, kBegin = 4096;
  constexpr std::size_t kMaxGap = 7 * Heap::kStaggerStep;
  for (std::size_t g = 0; g < 7; ++g) EXPECT_LE(Heap::stagger_gap(g), kMaxGap);
  Heap roomy(kBegin, kBegin + kBlocks * (kBlock + kMaxGap));
  for (std::size_t i = 0; i < kBlocks; ++i) ASSERT_TRUE(roomy.allocate(kBlock, 16)) << "block " << i;
  Heap exact(kBegin, kBegin + kBlock);
  auto only = exact.allocate(kBlock, 16);
  ASSERT_TRUE(only) << "no room for the gap: placed without it";
  EXPECT_EQ(*only, kBegin);
}

TEST(Heap, ReleaseOfANonBlockIsRefused) {
  Heap h(0, 1 << 16);
  auto a = h.allocate(256, 64);
  auto b = h.allocate(256, 64);
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(h.release(*a + 16)) << "inside a block";
  EXPECT_FALSE(h.release(*b + 256)) << "just past a block";
  EXPECT_FALSE(h.release(1 << 15)) << "free memory";
  EXPECT_FALSE(h.release(1 << 20)) << "outside the heap";
  const std::size_t in_use = h.bytes_in_use();
  EXPECT_TRUE(h.release(*a));
  EXPECT_FALSE(h.release(*a)) << "double free";
  EXPECT_LT(h.bytes_in_use(), in_use);
  EXPECT_TRUE(h.release(*b));
  EXPECT_EQ(h.bytes_in_use(), 0u);
}

TEST(Heap, ExhaustionReturnsNullopt) {
  constexpr std::size_t kSize = 1 << 16;
  Heap h(0, kSize);
  EXPECT_FALSE(h.allocate(kSize + 1, 1));
  std::size_t n = 0;
  while (h.allocate(1000, 8)) ++n;
  EXPECT_EQ(n, kSize / 1008) << "blocks are rounded up to 16 bytes";
  EXPECT_FALSE(h.allocate(kSize % 1008 + 1, 1));
  EXPECT_TRUE(h.allocate(kSize % 1008, 1));
  EXPECT_FALSE(h.allocate(1, 1));
  EXPECT_LE(h.bytes_in_use(), kSize);

  Heap slack(16, 16 + kSize);
  EXPECT_FALSE(slack.allocate(kSize - 16, 4096)) << "fits, but not once aligned";
  EXPECT_TRUE(slack.allocate(kSize - 16, 16));

  Heap empty(100, 100);
  EXPECT_FALSE(empty.allocate(1, 1));
  Heap inverted(200, 100);
  EXPECT_FALSE(inverted.allocate(1, 1));
}

TEST(Heap, HugeRequestsAreRefused) {
  constexpr std::size_t kMax = std::numeric_limits<std::size_t>::max();
  Heap h(16, 16 + (1 << 20));
  EXPECT_FALSE(h.allocate(kMax, 16));
  EXPECT_FALSE(h.allocate(kMax - 7, 16));
  EXPECT_FALSE(h.allocate(kMax - 20, 4096)) << "alignment gap + size wraps";
  EXPECT_EQ(h.bytes_in_use(), 0u);
}

}  // namespace
}  // namespace calypso::dsm
