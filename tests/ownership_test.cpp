// Tests of evening_move, OwnerPaces and Evening (sched/ownership.hpp), pure logic: between steps, one
// segment changes owner only when its worker finished last, by more than kEvenGap times
// the segment's expected time, and owns two segments more than the worker that finished
// first; a bordering segment is preferred; never to a worker that is slower per segment
// over the last steps (OwnerPaces), and only once Evening::kSteps steps in a row call for it.
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
const OwnerPaces kNoPaces;   // nothing observed yet: finishing times and counts decide

TEST(Ownership, ASegmentMoreThanItsShareMovesToTheWorkerThatWaited) {
  // 9 against 7, and worker 1 finished 2 ms after worker 2.
  const auto runs = step(9, 7, 9ms, 7ms);
  const auto move = evening_move(runs, kBoth, kNoPaces);
  ASSERT_TRUE(move);
  EXPECT_EQ(move->to, 2u);
  EXPECT_EQ(move->segment, 8u) << "worker 1's segment next to worker 2's block";
}

TEST(Ownership, NothingMovesWithoutBothSigns) {
  EXPECT_FALSE(evening_move(step(8, 8, 9ms, 7ms), kBoth, kNoPaces)) << "equal shares, a noisy finish";
  EXPECT_FALSE(evening_move(step(9, 7, 8ms, 7ms), kBoth, kNoPaces)) << "1 ms apart, under 1.5 x 1 ms";
  EXPECT_FALSE(evening_move(step(9, 7, 7ms, 9ms), kBoth, kNoPaces)) << "the worker with more finished first";
  EXPECT_FALSE(evening_move(step(9, 8, 9ms, 7ms), kBoth, kNoPaces)) << "one more: a move would only swap";
  const std::vector<WorkerId> only1{1};
  EXPECT_FALSE(evening_move(step(9, 7, 9ms, 7ms), only1, kNoPaces)) << "moved to a worker not alive";
}

TEST(Ownership, ASegmentTooLongForTheGapStays) {
  auto runs = step(9, 7, 9ms, 7ms);
  for (KeptRun& r : runs) {
    if (r.runner == 1) r.expected = 2ms;   // 1.5 x 2 ms > the 2 ms gap
  }
  EXPECT_FALSE(evening_move(runs, kBoth, kNoPaces));
  runs[3].expected = 1ms;   // the one that fits, though not at the border
  const auto move = evening_move(runs, kBoth, kNoPaces);
  ASSERT_TRUE(move);
  EXPECT_EQ(move->segment, 3u);
}

TEST(Ownership, PacesAreEachWorkersTimePerKeptSegmentSmoothedOverSteps) {
  OwnerPaces paces;
  EXPECT_FALSE(paces.seconds_per_segment(1));
  paces.observe(step(8, 8, 8ms, 16ms), kBoth);   // 1 ms and 2 ms a segment
  ASSERT_TRUE(paces.seconds_per_segment(1));
  EXPECT_NEAR(*paces.seconds_per_segment(1), 0.001, 1e-9);
  EXPECT_NEAR(*paces.seconds_per_segment(2), 0.002, 1e-9);
  paces.observe(step(8, 8, 8ms, 8ms), kBoth);   // worker 2 fast for once
  EXPECT_NEAR(*paces.seconds_per_segment(2), 0.002 + OwnerPaces::kWeight * (0.001 - 0.002), 1e-9);
  paces.observe(step(8, 8, 8ms, 8ms), std::vector<WorkerId>{1});
  EXPECT_FALSE(paces.seconds_per_segment(2)) << "a worker no longer alive is forgotten";
}

TEST(Ownership, NoSegmentMovesToASlowerWorkerThatHappenedToFinishFirst) {
  // Worker 2 runs at half speed (a CPU quota): the fast worker 1 has stolen its way to
  // 11 segments against 5, and both finish together, step after step.
  OwnerPaces paces;
  for (int i = 0; i < 6; ++i) paces.observe(step(11, 5, 11ms, 10ms), kBoth);
  // Then one step in which the quota left worker 2 alone: it finished 6 ms early.
  const auto lucky = step(11, 5, 11ms, 5ms);
  ASSERT_TRUE(evening_move(lucky, kBoth, kNoPaces)) << "finishing times and counts alone would move one";
  paces.observe(lucky, kBoth);
  EXPECT_FALSE(evening_move(lucky, kBoth, paces)) << "worker 2 is still ~1.8x slower per segment";
  // Between workers of the same speed the move still happens.
  OwnerPaces equal;
  for (int i = 0; i < 6; ++i) equal.observe(step(9, 7, 9ms, 7ms), kBoth);
  const auto move = evening_move(step(9, 7, 9ms, 7ms), kBoth, equal);
  ASSERT_TRUE(move);
  EXPECT_EQ(move->to, 2u);
}

TEST(Ownership, AMoveIsMadeOnlyWhenStepsInARowCallForIt) {
  Evening evening;
  const auto uneven = step(9, 7, 9ms, 7ms);   // calls for worker 1's segment 8 to go to 2
  for (std::uint32_t i = 1; i < Evening::kSteps; ++i) EXPECT_FALSE(evening.after_step(uneven, kBoth)) << i;
  const auto move = evening.after_step(uneven, kBoth);
  ASSERT_TRUE(move);
  EXPECT_EQ(move->to, 2u);
  EXPECT_EQ(move->segment, 8u);
  EXPECT_FALSE(evening.after_step(uneven, kBoth)) << "after a move the count starts again";

  // A step that calls for nothing, or for the other direction, breaks the streak.
  Evening swinging;
  const auto other_way = step(7, 9, 7ms, 9ms);
  for (int i = 0; i < 4; ++i) {
    EXPECT_FALSE(swinging.after_step(uneven, kBoth)) << i;
    EXPECT_FALSE(swinging.after_step(other_way, kBoth)) << i;
  }
  Evening broken;
  for (std::uint32_t i = 1; i < Evening::kSteps; ++i) EXPECT_FALSE(broken.after_step(uneven, kBoth));
  EXPECT_FALSE(broken.after_step(step(8, 8, 8ms, 8ms), kBoth));
  EXPECT_FALSE(broken.after_step(uneven, kBoth)) << "counted from one again";
}

}  // namespace
}  // namespace calypso::sched
