// Tests of the worker's assignment queue (sched/assign_queue.hpp), which is pure logic:
// assignments come out in sequence order whatever order they arrive in, a gap stalls
// the queue until it is filled or skipped, and what was skipped or seen before is dropped.
#include "sched/assign_queue.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

namespace calypso::sched {
namespace {

using namespace std::chrono_literals;

AssignQueue::Bytes message(std::uint8_t tag) { return AssignQueue::Bytes{std::byte{tag}}; }

std::uint8_t tag_of(const std::optional<AssignQueue::Bytes>& m) {
  EXPECT_TRUE(m.has_value());
  return m && !m->empty() ? static_cast<std::uint8_t>((*m)[0]) : 0;
}

TEST(AssignQueue, InOrderArrivalsComeOutAtOnce) {
  AssignQueue q;
  EXPECT_FALSE(q.next());
  EXPECT_EQ(q.consumed(), 0u);
  ASSERT_TRUE(q.add(1, message(1)));
  EXPECT_EQ(tag_of(q.next()), 1);
  ASSERT_TRUE(q.add(2, message(2)));
  ASSERT_TRUE(q.add(3, message(3)));
  EXPECT_EQ(tag_of(q.next()), 2);
  EXPECT_EQ(tag_of(q.next()), 3);
  EXPECT_FALSE(q.next());
  EXPECT_EQ(q.consumed(), 3u);
  EXPECT_TRUE(q.empty());
}

TEST(AssignQueue, AnEarlyArrivalWaitsForItsPredecessor) {
  AssignQueue q;
  const auto t0 = AssignQueue::Clock::now();
  ASSERT_TRUE(q.add(2, message(2), t0));
  EXPECT_EQ(q.ready_count(), 0u);
  EXPECT_FALSE(q.next()) << "2 must not overtake 1";
  EXPECT_FALSE(q.stalled(50ms, t0 + 10ms));
  EXPECT_TRUE(q.stalled(50ms, t0 + 60ms));
  ASSERT_TRUE(q.add(1, message(1), t0 + 60ms));
  EXPECT_EQ(q.ready_count(), 2u);
  ASSERT_TRUE(q.add(4, message(4), t0 + 60ms));
  EXPECT_EQ(q.ready_count(), 2u) << "3 is missing: 4 cannot be taken yet";
  EXPECT_FALSE(q.stalled(50ms, t0 + 60ms)) << "the next one is here: nothing is missing";
  EXPECT_EQ(tag_of(q.next()), 1);
  EXPECT_EQ(tag_of(q.next()), 2);
  EXPECT_EQ(q.consumed(), 2u);
}

TEST(AssignQueue, ShuffledArrivalsComeOutInOrder) {
  std::mt19937 rng(7);
  for (int round = 0; round < 50; ++round) {
    std::vector<std::uint64_t> seqs(40);
    std::iota(seqs.begin(), seqs.end(), 1);
    std::shuffle(seqs.begin(), seqs.end(), rng);
    AssignQueue q;
    std::vector<std::uint8_t> out;
    for (std::uint64_t s : seqs) {
      ASSERT_TRUE(q.add(s, message(static_cast<std::uint8_t>(s))));
      while (auto m = q.next()) out.push_back(tag_of(m));
    }
    ASSERT_EQ(out.size(), 40u);
    for (std::size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i], i + 1);
    EXPECT_EQ(q.consumed(), 40u);
  }
}

TEST(AssignQueue, SkippingAGapDropsWhatArrivesLate) {
  AssignQueue q;
  ASSERT_TRUE(q.add(1, message(1)));
  EXPECT_EQ(tag_of(q.next()), 1);
  ASSERT_TRUE(q.add(4, message(4)));
  ASSERT_TRUE(q.add(5, message(5)));
  EXPECT_FALSE(q.next());
  EXPECT_EQ(q.skip_gap(), 2u) << "2 and 3 are given up";
  EXPECT_EQ(q.consumed(), 3u);
  EXPECT_EQ(tag_of(q.next()), 4);
  EXPECT_FALSE(q.add(2, message(2))) << "a skipped assignment must not run";
  EXPECT_FALSE(q.add(3, message(3)));
  EXPECT_EQ(tag_of(q.next()), 5);
  EXPECT_FALSE(q.next());
  EXPECT_EQ(q.skip_gap(), 0u) << "nothing waits: nothing to skip";
}

TEST(AssignQueue, DuplicatesAndReplaysAreDropped) {
  AssignQueue q;
  ASSERT_TRUE(q.add(2, message(2)));
  EXPECT_FALSE(q.add(2, message(9))) << "the first copy stays";
  ASSERT_TRUE(q.add(1, message(1)));
  EXPECT_EQ(tag_of(q.next()), 1);
  EXPECT_EQ(tag_of(q.next()), 2);
  EXPECT_FALSE(q.add(1, message(1))) << "already run";
  EXPECT_FALSE(q.add(0, message(0))) << "sequence numbers start at 1";
  EXPECT_TRUE(q.empty());
}

}  // namespace
}  // namespace calypso::sched
