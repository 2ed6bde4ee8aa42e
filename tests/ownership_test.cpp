// Tests of evening_move (sched/ownership.hpp), which is pure logic: between steps, one
// segment changes owner only when its worker finished last, by more than kEvenGap times
// the segment's expected time, and owns two segments more than the worker that finished
// first; a bordering segment is preferred.
#include "sched/ownership.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <vector>

namespace calypso::sched {
namespace {

using namespace std::chrono_literals;

// A step of equal 1 ms segments: the first `a` kept from worker 1, the rest from worker
// 2, each worker's finishing at the given time (its other segments earlier).
std::vector<KeptRun> step(unsigned a, unsigned b, std::chrono::nanoseconds done1, std::chrono::nanoseconds done2) {
  std::vector<KeptRun> runs;
  for (unsigned i = 0; i < a; ++i) runs.push_back({1, i + 1 == a ? done1 : 1ms, 1ms});
  for (unsigned i = 0; i < b; ++i) runs.push_back({2, i + 1 == b ? done2 : 1ms, 1ms});
  return runs;
}

const std::vector<WorkerId> kBoth{1, 2};

TEST(Ownership, ASegmentMoreThanItsShareMovesToTheWorkerThatWaited) {
  // 9 against 7, and worker 1 finished 2 ms after worker 2.
  const auto runs = step(9, 7, 9ms, 7ms);
  const auto move = evening_move(runs, kBoth);
  ASSERT_TRUE(move);
  EXPECT_EQ(move->to, 2u);
  EXPECT_EQ(move->segment, 8u) << "worker 1's segment next to worker 2's block";
}

TEST(Ownership, NothingMovesWithoutBothSigns) {
  EXPECT_FALSE(evening_move(step(8, 8, 9ms, 7ms), kBoth)) << "equal shares, a noisy finish";
  EXPECT_FALSE(evening_move(step(9, 7, 8ms, 7ms), kBoth)) << "1 ms apart, under 1.5 x 1 ms";
  EXPECT_FALSE(evening_move(step(9, 7, 7ms, 9ms), kBoth)) << "the worker with more finished first";
  EXPECT_FALSE(evening_move(step(9, 8, 9ms, 7ms), kBoth)) << "one more: a move would only swap";
  const std::vector<WorkerId> only1{1};
  EXPECT_FALSE(evening_move(step(9, 7, 9ms, 7ms), only1)) << "moved to a worker not alive";
}

TEST(Ownership, ASegmentTooLongForTheGapStays) {
  auto runs = step(9, 7, 9ms, 7ms);
  for (KeptRun& r : runs) {
    if (r.runner == 1) r.expected = 2ms;   // 1.5 x 2 ms > the 2 ms gap
  }
  EXPECT_FALSE(evening_move(runs, kBoth));
  runs[3].expected = 1ms;   // the one that fits, though not at the border
  const auto move = evening_move(runs, kBoth);
  ASSERT_TRUE(move);
  EXPECT_EQ(move->segment, 3u);
}

}  // namespace
}  // namespace calypso::sched
