// Tests of the manager's recycled result buffers (sched/result_buffers.hpp): a buffer
// comes back at the size asked for, from the kept buffer of least capacity that holds
// it, keeping its bytes (no zero fill) and its memory; a result that grew a little since
// the last step still fits; only the last step's buffers are kept.
#include "sched/result_buffers.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <vector>

namespace calypso::sched {
namespace {

using Bytes = ResultBuffers::Bytes;

Bytes filled(std::size_t n, std::byte v) { return Bytes(n, v); }

TEST(ResultBuffers, NothingKeptGivesANewBufferOfTheSize) {
  ResultBuffers pool;
  Bytes b = pool.take(100);
  EXPECT_EQ(b.size(), 100u);
  EXPECT_EQ(pool.kept(), 0u);
}

TEST(ResultBuffers, TakesTheSmallestThatFitsWithoutTouchingItsBytes) {
  ResultBuffers pool;
  std::vector<Bytes> step;
  step.push_back(filled(300, std::byte{3}));
  step.push_back(filled(100, std::byte{1}));
  step.push_back(filled(200, std::byte{2}));
  const std::byte* memory_of_200 = step[2].data();
  pool.keep(std::move(step));
  EXPECT_EQ(pool.kept(), 3u);

  Bytes b = pool.take(150);
  ASSERT_EQ(b.size(), 150u);
  EXPECT_EQ(b.data(), memory_of_200) << "the 200-byte buffer, not a new one";
  EXPECT_EQ(b[0], std::byte{2}) << "no zero fill";
  EXPECT_EQ(b[149], std::byte{2});
  EXPECT_EQ(pool.kept(), 2u);

  EXPECT_EQ(pool.take(300)[299], std::byte{3}) << "an exact fit";
  Bytes big = pool.take(1000);
  EXPECT_EQ(big.size(), 1000u) << "nothing that large: a new buffer";
  EXPECT_EQ(pool.kept(), 1u) << "the 100-byte one is still there";
}

TEST(ResultBuffers, AResultThatGrewALittleReusesLastStepsBuffer) {
  ResultBuffers pool;
  std::vector<Bytes> step;
  step.push_back(pool.take(1000));
  const std::byte* memory = step[0].data();
  pool.keep(std::move(step));
  Bytes b = pool.take(1100);
  EXPECT_EQ(b.size(), 1100u);
  EXPECT_EQ(b.data(), memory);
}

TEST(ResultBuffers, ResizingNeverZeroFills) {
  ResultBuffers::Bytes b(8, std::byte{7});
  b.resize(2);
  b.resize(8);
  EXPECT_EQ(b[7], std::byte{7}) << "the allocator leaves new elements uninitialised";
}

TEST(ResultBuffers, OnlyTheLastStepsBuffersAreKept) {
  ResultBuffers pool;
  std::vector<Bytes> first;
  first.push_back(filled(64, std::byte{1}));
  first.push_back(filled(64, std::byte{1}));
  pool.keep(std::move(first));
  std::vector<Bytes> second;
  second.push_back(filled(32, std::byte{2}));
  second.emplace_back();   // a segment with no result bytes: nothing to keep
  pool.keep(std::move(second));
  EXPECT_EQ(pool.kept(), 1u);
  EXPECT_EQ(pool.take(32)[0], std::byte{2});
  EXPECT_EQ(pool.kept(), 0u);
}

}  // namespace
}  // namespace calypso::sched
