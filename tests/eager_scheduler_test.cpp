// Tests of the eager scheduler (sched/eager_scheduler.hpp), which is pure logic.
//
// Directed tests pin down each rule of the policy: unstarted segments first and in
// order; then re-runs of unfinished segments, fewest runners first and oldest start
// next, never one the asking worker already runs; the first completion wins; failures
// are counted and stop a segment at max_attempts; an abandoned segment is handed out
// again. A seeded random simulation of several workers that complete, abandon and
// stall at random then checks the property the manager relies on: every segment is
// completed exactly once, whatever the interleaving.
#include "sched/eager_scheduler.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <set>
#include <utility>
#include <vector>

namespace calypso::sched {
namespace {

// An eager scheduler of one segment per entry of `preferred`, with re-runs once a run
// is late at 1.5x (50 ms before any completion) and the given expected times: the set-up
// of the timing tests.
EagerScheduler timed(const std::vector<WorkerId>& preferred,
                     std::vector<EagerScheduler::Clock::duration> expected) {
  EagerScheduler s(static_cast<std::uint32_t>(preferred.size()), 3, EagerScheduler::Policy::eager,
                   preferred);
  s.set_rerun_delay(1.5, std::chrono::milliseconds(50));
  s.set_expected(std::move(expected));
  return s;
}

// Picks the next segment for w and fails the test if there is none.
Pick must_pick(EagerScheduler& s, WorkerId w) {
  std::optional<Pick> p = s.next_for(w);
  EXPECT_TRUE(p.has_value()) << "worker " << w << " got no work";
  return p.value_or(Pick{~0u, 0});
}

TEST(EagerScheduler, UnstartedSegmentsGoFirstInOrder) {
  EagerScheduler s(5, 3);
  for (std::uint32_t i = 0; i < 5; ++i) {
    Pick p = must_pick(s, 10 + i);
    EXPECT_EQ(p.segment, i);
    EXPECT_EQ(p.attempt, 1u);
    EXPECT_EQ(s.attempts(i), 1u);
  }
  EXPECT_FALSE(s.all_done());
}

TEST(EagerScheduler, OneWorkerGetsEveryUnstartedSegmentBeforeAnyRerun) {
  // A worker that may run several segments at once still gets new ones before re-runs.
  EagerScheduler s(3, 3);
  EXPECT_EQ(must_pick(s, 1).segment, 0u);
  EXPECT_EQ(must_pick(s, 1).segment, 1u);
  EXPECT_EQ(must_pick(s, 1).segment, 2u);
  // Everything unfinished is running on worker 1 itself: nothing left for it.
  EXPECT_FALSE(s.next_for(1).has_value());
}

TEST(EagerScheduler, ZeroSegmentsIsDoneAtOnce) {
  EagerScheduler s(0, 3);
  EXPECT_TRUE(s.all_done());
  EXPECT_FALSE(s.next_for(1).has_value());
}

TEST(EagerScheduler, RerunPicksOldestStartAmongEquallyRunSegments) {
  EagerScheduler s(4, 3);
  for (WorkerId w = 1; w <= 4; ++w) EXPECT_EQ(must_pick(s, w).segment, w - 1);
  EXPECT_TRUE(s.complete(0, 1));
  // Segments 1..3 each have one runner; 1 was started first.
  Pick p = must_pick(s, 1);
  EXPECT_EQ(p.segment, 1u);
  EXPECT_EQ(p.attempt, 2u);
  // Now 1 has two runners, 2 and 3 one each; 2 is older.
  p = must_pick(s, 5);
  EXPECT_EQ(p.segment, 2u);
  EXPECT_EQ(p.attempt, 2u);
  p = must_pick(s, 6);
  EXPECT_EQ(p.segment, 3u);
}

TEST(EagerScheduler, FewestRunnersWinsOverAnOlderStart) {
  EagerScheduler s(2, 3);
  EXPECT_EQ(must_pick(s, 1).segment, 0u);  // t=1
  EXPECT_EQ(must_pick(s, 2).segment, 1u);  // t=2
  EXPECT_EQ(must_pick(s, 3).segment, 0u);  // t=3, tie on runners: 0 is older
  EXPECT_EQ(must_pick(s, 4).segment, 1u);  // t=4, 1 has fewer runners
  EXPECT_FALSE(s.abandon(1, 2, false));
  // 0: two runners, last started at t=3; 1: one runner, last started at t=4.
  EXPECT_EQ(must_pick(s, 5).segment, 1u);
  // Now both have two runners and 0's last start (t=3) is older than 1's (t=5).
  EXPECT_EQ(must_pick(s, 6).segment, 0u);
}

TEST(EagerScheduler, NeverHandsAWorkerASegmentItIsRunning) {
  EagerScheduler s(1, 3);
  EXPECT_EQ(must_pick(s, 1).segment, 0u);
  EXPECT_FALSE(s.next_for(1).has_value());
  Pick p = must_pick(s, 2);
  EXPECT_EQ(p.segment, 0u);
  EXPECT_EQ(p.attempt, 2u);
  EXPECT_FALSE(s.next_for(1).has_value());
  EXPECT_FALSE(s.next_for(2).has_value());
  EXPECT_EQ(must_pick(s, 3).attempt, 3u);
  // Once worker 1 gives its copy up it may get the segment again.
  EXPECT_FALSE(s.abandon(0, 1, false));
  p = must_pick(s, 1);
  EXPECT_EQ(p.segment, 0u);
  EXPECT_EQ(p.attempt, 4u);
}

TEST(EagerScheduler, FirstCompletionWins) {
  EagerScheduler s(2, 3);
  must_pick(s, 1);
  must_pick(s, 2);
  must_pick(s, 3);  // re-run of segment 0
  EXPECT_FALSE(s.done(0));
  EXPECT_TRUE(s.complete(0, 3));
  EXPECT_TRUE(s.done(0));
  EXPECT_FALSE(s.complete(0, 1));  // late duplicate
  EXPECT_FALSE(s.complete(0, 3));  // same worker again
  EXPECT_FALSE(s.all_done());
  EXPECT_TRUE(s.complete(1, 2));
  EXPECT_TRUE(s.all_done());
  EXPECT_FALSE(s.complete(1, 7));  // a worker that never ran it
  EXPECT_TRUE(s.all_done());
  EXPECT_FALSE(s.next_for(1).has_value());
  EXPECT_FALSE(s.next_for(99).has_value());
}

TEST(EagerScheduler, ACompletedSegmentIsNeverRerun) {
  EagerScheduler s(3, 3);
  for (WorkerId w = 1; w <= 3; ++w) must_pick(s, w);
  EXPECT_TRUE(s.complete(1, 2));
  for (WorkerId w = 10; w < 20; ++w) {
    std::optional<Pick> p = s.next_for(w);
    ASSERT_TRUE(p.has_value());
    EXPECT_NE(p->segment, 1u);
  }
}

TEST(EagerScheduler, ResultOfAnAbandonedRunStillCounts) {
  // A worker suspected dead may deliver its result later; it is the first, so it wins.
  EagerScheduler s(1, 3);
  must_pick(s, 1);
  EXPECT_FALSE(s.abandon(0, 1, true));
  EXPECT_TRUE(s.complete(0, 1));
  EXPECT_TRUE(s.all_done());
}

TEST(EagerScheduler, AbandonCountsFailuresUpToMaxAttempts) {
  EagerScheduler s(1, 3);
  for (std::uint32_t i = 1; i <= 2; ++i) {
    must_pick(s, i);
    EXPECT_FALSE(s.abandon(0, i, true)) << "failure " << i;
    EXPECT_EQ(s.failures(0), i);
  }
  must_pick(s, 3);
  EXPECT_TRUE(s.abandon(0, 3, true));
  EXPECT_EQ(s.failures(0), 3u);
  EXPECT_FALSE(s.done(0));
}

// Each further run of a segment at max_attempts would kill one more worker (audit of
// session 41: 6 workers, max_attempts 3, all 6 died before the step failed).
TEST(EagerScheduler, ASegmentAtMaxAttemptsIsNotOfferedUntilAFailureIsForgiven) {
  EagerScheduler s(1, 2);
  must_pick(s, 1);
  EXPECT_FALSE(s.abandon(0, 1, true));
  must_pick(s, 2);
  EXPECT_TRUE(s.abandon(0, 2, true));
  for (WorkerId w = 3; w <= 5; ++w) {
    EXPECT_FALSE(s.next_for(w).has_value()) << "worker " << w;
    EXPECT_FALSE(s.next_rerun_at(w).has_value()) << "worker " << w;
  }
  EXPECT_EQ(s.exhausted(), std::optional<std::uint32_t>{0});
  s.forgive(0);   // the second worker was only suspected, and is back
  EXPECT_FALSE(s.exhausted().has_value());
  Pick p = must_pick(s, 3);
  EXPECT_EQ(p.segment, 0u);
  EXPECT_EQ(p.attempt, 3u);
}

// Copies of a late re-run went to every idle worker; for a segment that kills its
// worker, each copy was one more death.
TEST(EagerScheduler, ASegmentThatKilledItsWorkerRunsOnOneWorkerAtATime) {
  using namespace std::chrono_literals;
  const auto t0 = EagerScheduler::Clock::time_point{} + 1h;
  EagerScheduler s(2, 5);
  s.set_rerun_delay(1.5, 10ms);
  ASSERT_EQ(s.next_for(1, t0)->segment, 0u);
  ASSERT_EQ(s.next_for(2, t0)->segment, 1u);
  ASSERT_TRUE(s.complete(1, 2, t0 + 1ms));
  EXPECT_FALSE(s.abandon(0, 1, true));
  auto p = s.next_for(3, t0 + 2ms);   // the re-run, at once: its worker died
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->segment, 0u);
  for (WorkerId w = 4; w <= 6; ++w) {
    EXPECT_FALSE(s.next_for(w, t0 + 1s).has_value()) << "worker " << w << ": late, but it killed a worker";
  }
  EXPECT_FALSE(s.abandon(0, 3, false));   // its worker left politely: still one at a time
  EXPECT_TRUE(s.next_for(4, t0 + 1s).has_value());
  EXPECT_FALSE(s.next_for(5, t0 + 2s).has_value());
}

TEST(EagerScheduler, AbandonWithoutFailureDoesNotCount) {
  EagerScheduler s(1, 1);
  for (WorkerId w = 1; w <= 5; ++w) {
    must_pick(s, w);
    EXPECT_FALSE(s.abandon(0, w, false));  // a worker that left politely
  }
  EXPECT_EQ(s.failures(0), 0u);
  must_pick(s, 6);
  EXPECT_TRUE(s.abandon(0, 6, true));  // max_attempts = 1: the first failure is fatal
}

TEST(EagerScheduler, AbandonAfterCompletionIsNotAFailure) {
  EagerScheduler s(1, 1);
  must_pick(s, 1);
  must_pick(s, 2);
  EXPECT_TRUE(s.complete(0, 2));
  EXPECT_FALSE(s.abandon(0, 1, true));
  EXPECT_EQ(s.failures(0), 0u);
}

TEST(EagerScheduler, AbandonedSegmentIsAvailableAgain) {
  EagerScheduler s(2, 5);
  EXPECT_EQ(must_pick(s, 1).segment, 0u);
  EXPECT_EQ(must_pick(s, 2).segment, 1u);
  EXPECT_TRUE(s.complete(1, 2));
  EXPECT_FALSE(s.abandon(0, 1, true));
  Pick p = must_pick(s, 3);
  EXPECT_EQ(p.segment, 0u);
  EXPECT_EQ(p.attempt, 2u);
  EXPECT_EQ(s.attempts(0), 2u);
  // One run at a time after a death; the worker that failed it may run it again too
  // (its crash may have been unrelated).
  EXPECT_FALSE(s.next_for(1).has_value());
  EXPECT_FALSE(s.abandon(0, 3, false));
  EXPECT_EQ(must_pick(s, 1).segment, 0u);
}

TEST(EagerScheduler, AbandonedSegmentPreferredOverARunningOne) {
  EagerScheduler s(2, 5);
  EXPECT_EQ(must_pick(s, 1).segment, 0u);
  EXPECT_EQ(must_pick(s, 2).segment, 1u);
  EXPECT_FALSE(s.abandon(1, 2, true));
  // 0 has a runner and is older; 1 has none.
  EXPECT_EQ(must_pick(s, 3).segment, 1u);
}

// A random interleaving of several workers. Each worker may run up to two segments at
// once (a worker that asks for more work while a copy of a segment is still running,
// e.g. a stalled one, must not get a second copy of it).
TEST(EagerScheduler, RandomSimulationCompletesEverySegmentExactlyOnce) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    const std::uint32_t segments = 1 + static_cast<std::uint32_t>(rng() % 60);
    const WorkerId workers = 1 + static_cast<WorkerId>(rng() % 6);
    EagerScheduler s(segments, 1000000);
    std::vector<std::set<std::uint32_t>> running(workers + 1);
    std::vector<std::uint32_t> applied(segments, 0), handed(segments, 0), failures(segments, 0);

    std::uint64_t steps = 0;
    while (!s.all_done()) {
      ASSERT_LT(++steps, 1000000u) << "simulation does not terminate";
      const WorkerId w = 1 + static_cast<WorkerId>(rng() % workers);
      auto& mine = running[w];
      const unsigned action = static_cast<unsigned>(rng() % 10);
      if (mine.empty() || (action < 3 && mine.size() < 2)) {
        std::optional<Pick> p = s.next_for(w);
        if (!p) {
          // Only allowed if every unfinished segment is running on w, or, once a run of
          // it ended with a death, on another worker (one at a time).
          for (std::uint32_t i = 0; i < segments; ++i) {
            if (s.done(i)) continue;
            bool elsewhere = false;
            for (WorkerId v = 1; v <= workers; ++v) elsewhere |= v != w && running[v].count(i) > 0;
            ASSERT_TRUE(mine.count(i) || (failures[i] > 0 && elsewhere)) << "segment " << i << " withheld from " << w;
          }
          continue;
        }
        ASSERT_LT(p->segment, segments);
        ASSERT_FALSE(s.done(p->segment)) << "done segment handed out";
        ASSERT_FALSE(mine.count(p->segment)) << "worker got a segment it is running";
        ASSERT_EQ(p->attempt, ++handed[p->segment]);
        mine.insert(p->segment);
        continue;
      }
      auto it = mine.begin();
      std::advance(it, static_cast<long>(rng() % mine.size()));
      const std::uint32_t seg = *it;
      if (action < 8) {
        const bool first = !s.done(seg);
        EXPECT_EQ(s.complete(seg, w), first);
        if (first) ++applied[seg];
        mine.erase(it);
      } else {
        const bool failure = action == 9;
        const bool was_done = s.done(seg);
        EXPECT_FALSE(s.abandon(seg, w, failure));
        if (failure && !was_done) ++failures[seg];
        EXPECT_EQ(s.failures(seg), failures[seg]);
        mine.erase(it);
      }
      // Unstarted segments are handed out in order: a started one implies all before it.
      for (std::uint32_t i = 1; i < segments; ++i) {
        if (s.attempts(i) > 0) {
          ASSERT_GT(s.attempts(i - 1), 0u);
        }
      }
    }
    for (std::uint32_t i = 0; i < segments; ++i) {
      EXPECT_EQ(applied[i], 1u) << "segment " << i;
      EXPECT_TRUE(s.done(i));
      EXPECT_EQ(s.attempts(i), handed[i]);
    }
    // Late results of copies still running are all discarded.
    for (WorkerId w = 1; w <= workers; ++w) {
      for (std::uint32_t seg : running[w]) EXPECT_FALSE(s.complete(seg, w));
    }
  }
}

// Re-runs wait until a running segment is late: 1.5x the mean completed duration,
// or the grace before any completed. A segment whose runner died is re-run at once.
TEST(EagerScheduler, ReRunsWaitUntilTheSegmentIsLate) {
  using namespace std::chrono_literals;
  const auto t0 = EagerScheduler::Clock::time_point{} + 1h;
  EagerScheduler s(3, 3);
  s.set_rerun_delay(1.5, 50ms);
  ASSERT_EQ(s.next_for(1, t0)->segment, 0u);
  ASSERT_EQ(s.next_for(2, t0)->segment, 1u);
  // Nothing completed yet: worker 1 idles until the grace has passed.
  EXPECT_TRUE(s.complete(0, 1, t0 + 10ms));   // mean duration now 10 ms
  ASSERT_EQ(s.next_for(1, t0 + 10ms)->segment, 2u);
  EXPECT_TRUE(s.complete(2, 1, t0 + 20ms));   // took 10 ms too: mean 10 ms
  EXPECT_FALSE(s.next_for(1, t0 + 14ms));     // segment 1 has run 14 ms < 15 ms
  ASSERT_TRUE(s.next_rerun_at(1));
  EXPECT_EQ(*s.next_rerun_at(1), t0 + 15ms);
  EXPECT_FALSE(s.next_rerun_at(2)) << "worker 2 runs the only unfinished segment itself";
  auto p = s.next_for(1, t0 + 15ms);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->segment, 1u);
  EXPECT_EQ(p->attempt, 2u);
}

// Two segments from kT0 on workers 1 and 2, max_attempts 3, re-runs at 1.5x: worker 2's
// completes after 10 ms, so worker 1's segment 0 is late at kT0 + 15 ms.
const EagerScheduler::Clock::time_point kT0 = EagerScheduler::Clock::time_point{} + std::chrono::hours(1);
EagerScheduler one_late_at_15ms() {
  using namespace std::chrono_literals;
  EagerScheduler s(2, 3);
  s.set_rerun_delay(1.5, 50ms);
  EXPECT_EQ(s.next_for(1, kT0)->segment, 0u);
  EXPECT_EQ(s.next_for(2, kT0)->segment, 1u);
  EXPECT_TRUE(s.complete(1, 2, kT0 + 10ms));
  return s;
}

// A third copy waits until the second is late, timed from the second's start; before,
// every idle worker got a copy of a late segment the moment it asked.
TEST(EagerScheduler, FurtherCopiesWaitUntilTheNewestCopyIsLate) {
  using namespace std::chrono_literals;
  const auto t0 = kT0;
  EagerScheduler s = one_late_at_15ms();
  auto copy = s.next_for(2, t0 + 15ms);
  ASSERT_TRUE(copy);
  EXPECT_EQ(copy->segment, 0u);
  EXPECT_FALSE(s.next_for(3, t0 + 16ms)) << "the copy started 1 ms ago";
  EXPECT_EQ(*s.next_rerun_at(3), t0 + 30ms);
  EXPECT_FALSE(s.next_for(4, t0 + 29ms));
  auto third = s.next_for(3, t0 + 30ms);
  ASSERT_TRUE(third);
  EXPECT_EQ(third->attempt, 3u);
}

// With the original gone (it left politely), the copy left is timed from its own start.
TEST(EagerScheduler, ACopyLeftAloneIsTimedFromItsOwnStart) {
  using namespace std::chrono_literals;
  const auto t0 = kT0;
  EagerScheduler s = one_late_at_15ms();
  ASSERT_EQ(s.next_for(2, t0 + 20ms)->segment, 0u);
  EXPECT_FALSE(s.abandon(0, 1, false));
  EXPECT_FALSE(s.next_for(3, t0 + 21ms)) << "the copy started 1 ms ago";
  EXPECT_EQ(*s.next_rerun_at(3), t0 + 35ms);
}

TEST(EagerScheduler, BeforeAnyCompletionTheGraceApplies) {
  using namespace std::chrono_literals;
  const auto t0 = EagerScheduler::Clock::time_point{} + 1h;
  EagerScheduler s(1, 3);
  s.set_rerun_delay(1.5, 50ms);
  ASSERT_TRUE(s.next_for(1, t0));
  EXPECT_FALSE(s.next_for(2, t0 + 49ms));
  EXPECT_EQ(*s.next_rerun_at(2), t0 + 50ms);
  EXPECT_TRUE(s.next_for(2, t0 + 50ms));
}

TEST(EagerScheduler, SegmentOfADeadWorkerIsReRunAtOnce) {
  using namespace std::chrono_literals;
  const auto t0 = EagerScheduler::Clock::time_point{} + 1h;
  EagerScheduler s(1, 3);
  s.set_rerun_delay(1.5, 50ms);
  ASSERT_TRUE(s.next_for(1, t0));
  EXPECT_FALSE(s.abandon(0, 1, true));
  auto p = s.next_for(2, t0 + 1ms);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->attempt, 2u);
}

TEST(EagerScheduler, FixedPolicyNeverOffersReRuns) {
  EagerScheduler s(2, 3, EagerScheduler::Policy::fixed, {1, 2});
  ASSERT_TRUE(s.next_for(1));
  EXPECT_FALSE(s.next_for(1));
  EXPECT_FALSE(s.next_rerun_at(1));
}

// A busy worker queues only its own or nobody's unstarted segments; stealing and re-runs
// wait until it is idle.
TEST(EagerScheduler, AheadTakesOwnAndUnownedButNeverStealsOrReRuns) {
  EagerScheduler s(4, 3, EagerScheduler::Policy::eager, {1, kNoWorker, 2, 2});
  EXPECT_EQ(s.next_ahead_for(1)->segment, 0u);
  EXPECT_EQ(s.next_ahead_for(1)->segment, 1u) << "nobody's segment may be queued";
  EXPECT_FALSE(s.next_ahead_for(1)) << "worker 2's segments are stolen only by an idle worker";
  auto p = s.next_for(1);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->segment, 3u) << "idle: steals from the back of worker 2's queue";
  EXPECT_EQ(s.next_ahead_for(2)->segment, 2u);
  EXPECT_FALSE(s.next_ahead_for(3)) << "only re-runs are left";
  EXPECT_TRUE(s.next_for(3)) << "which an idle worker gets (no re-run delay set)";
}

TEST(EagerScheduler, FixedPolicyQueuesOnlyItsOwnBlock) {
  EagerScheduler s(3, 3, EagerScheduler::Policy::fixed, {1, kNoWorker, 2});
  EXPECT_EQ(s.next_ahead_for(1)->segment, 0u);
  EXPECT_FALSE(s.next_ahead_for(1));
}

// A queued segment is timed from when it starts, not from when it was queued; a
// segment with a known duration is late at 1.5x that duration (at least 5 ms over it).
TEST(EagerScheduler, QueuedSegmentsAndKnownDurationsSetWhenARunIsLate) {
  using namespace std::chrono_literals;
  const auto t0 = EagerScheduler::Clock::time_point{} + 1h;
  EagerScheduler s = timed({1, 1}, {20ms, 2ms});
  ASSERT_EQ(s.next_for(1, t0)->segment, 0u);
  ASSERT_EQ(s.next_ahead_for(1, t0)->segment, 1u);
  EXPECT_EQ(*s.next_rerun_at(2), t0 + 7ms) << "segment 1: 2 ms + 5 ms slack, counted from its queueing";
  EXPECT_TRUE(s.complete(1, 1, t0 + 1ms));
  EXPECT_EQ(*s.next_rerun_at(2), t0 + 30ms) << "segment 0: 1.5 x its 20 ms";
  EXPECT_EQ(s.took(1), 1ms);
  EagerScheduler q = timed({1, 1}, {20ms, 20ms});
  ASSERT_EQ(q.next_for(1, t0)->segment, 0u);
  ASSERT_EQ(q.next_ahead_for(1, t0)->segment, 1u);
  EXPECT_TRUE(q.complete(0, 1, t0 + 20ms));
  q.started(1, 1, t0 + 20ms);   // it waited in the queue until now
  EXPECT_FALSE(q.next_for(2, t0 + 45ms)) << "segment 1 started at 20 ms and may take 30";
  EXPECT_EQ(*q.next_rerun_at(2), t0 + 50ms);
  auto p = q.next_for(2, t0 + 50ms);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->segment, 1u) << "late: re-run";
}

// A late segment still waiting in a slow worker's queue ends after the one that worker
// is running: an idle worker re-runs the waiting one first. Once the slow worker starts
// it, it is a running segment like any other.
TEST(EagerScheduler, ReRunsTheSegmentWaitingBehindALateOneFirst) {
  using namespace std::chrono_literals;
  const auto t0 = EagerScheduler::Clock::time_point{} + 1h;
  EagerScheduler s = timed({1, 1, 2}, {10ms, 10ms, 10ms});
  ASSERT_EQ(s.next_for(1, t0)->segment, 0u);
  ASSERT_EQ(s.next_ahead_for(1, t0)->segment, 1u) << "1 waits behind 0";
  ASSERT_EQ(s.next_for(2, t0)->segment, 2u);
  EXPECT_TRUE(s.complete(2, 2, t0 + 10ms));
  EXPECT_FALSE(s.next_for(2, t0 + 10ms)) << "nothing is late yet";
  auto p = s.next_for(2, t0 + 30ms);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->segment, 1u) << "both 0 and 1 are late; 1 ends last";
  EXPECT_EQ(p->attempt, 2u);
  auto q = s.next_for(3, t0 + 30ms);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->segment, 0u) << "fewest runners still comes first";

  EagerScheduler r = timed({1, 1}, {10ms, 10ms});
  ASSERT_EQ(r.next_for(1, t0)->segment, 0u);
  ASSERT_EQ(r.next_ahead_for(1, t0)->segment, 1u);
  EXPECT_TRUE(r.complete(0, 1, t0 + 5ms));
  r.started(1, 1, t0 + 5ms);
  auto late = r.next_for(2, t0 + 30ms);
  ASSERT_TRUE(late);
  EXPECT_EQ(late->segment, 1u) << "started: late at 5 + 15 ms, re-run";
}

// With last step's durations known, an idle worker steals only what the owner would
// not have done, with the rest of its work, before a cold run (twice the segment's time)
// could be: otherwise the step ends no sooner and the segment's cache moves.
TEST(EagerScheduler, StealsOnlyWhatTheOwnerCouldNotFinishFirst) {
  using namespace std::chrono_literals;
  const auto t0 = EagerScheduler::Clock::time_point{} + 1h;
  for (std::uint32_t queued : {1u, 2u}) {
    SCOPED_TRACE(queued);
    // Segment 0 is worker 1's; worker 2 owns 1, 2 and `queued` more.
    std::vector<WorkerId> prefs{1, 2, 2};
    for (std::uint32_t i = 0; i < queued; ++i) prefs.push_back(2);
    EagerScheduler s = timed(prefs, std::vector<EagerScheduler::Clock::duration>(prefs.size(), 10ms));
    ASSERT_EQ(s.next_for(1, t0)->segment, 0u);
    ASSERT_EQ(s.next_for(2, t0)->segment, 1u);
    ASSERT_EQ(s.next_ahead_for(2, t0)->segment, 2u);
    EXPECT_TRUE(s.complete(0, 1, t0 + 1ms));
    // Worker 2 has 9 + 9 ms left on 1 and 2, plus 10 ms per queued segment.
    auto p = s.next_for(1, t0 + 1ms);
    if (queued == 1) {
      EXPECT_FALSE(p) << "28 ms of work left, 18 without segment 3: less than its cold 20 ms";
    } else {
      ASSERT_TRUE(p) << "38 ms left, 28 without segment 4";
      EXPECT_EQ(p->segment, 4u) << "from the back of the queue";
    }
  }
}

// What cold runs took is measured (stolen first runs only, against their expected time),
// and a larger cold factor makes stealing pay only from a longer backlog.
TEST(EagerScheduler, ColdRunsAreMeasuredAndAHigherColdFactorStealsLess) {
  using namespace std::chrono_literals;
  const auto t0 = EagerScheduler::Clock::time_point{} + 1h;
  // Worker 1 runs and completes its segment 0 while worker 2 runs 1 and queues 2.
  const auto owner_busy = [&](EagerScheduler& x) {
    ASSERT_EQ(x.next_for(1, t0)->segment, 0u);
    ASSERT_EQ(x.next_for(2, t0)->segment, 1u);
    ASSERT_EQ(x.next_ahead_for(2, t0)->segment, 2u);
    EXPECT_TRUE(x.complete(0, 1, t0 + 1ms));
  };
  // Segment 0 is worker 1's; worker 2 owns 1 to 4: 38 ms of work left once 1 and 2 run.
  EagerScheduler s = timed({1, 2, 2, 2, 2}, {10ms, 10ms, 10ms, 10ms, 10ms});
  ASSERT_NO_FATAL_FAILURE(owner_busy(s));
  EXPECT_FALSE(s.cold_factor_seen()) << "a warm run says nothing about cold ones";
  auto p = s.next_for(1, t0 + 1ms);
  ASSERT_TRUE(p) << "28 ms left without segment 4, more than its cold 20 ms";
  ASSERT_EQ(p->segment, 4u);
  EXPECT_TRUE(s.complete(4, 1, t0 + 61ms));
  ASSERT_TRUE(s.cold_factor_seen());
  EXPECT_DOUBLE_EQ(*s.cold_factor_seen(), 6.0) << "60 ms against 10 expected";

  // The same start, counting cold runs as 6x: 28 ms left is less than a cold 60 ms.
  EagerScheduler t = timed({1, 2, 2, 2, 2}, {10ms, 10ms, 10ms, 10ms, 10ms});
  t.set_cold_factor(6);
  ASSERT_NO_FATAL_FAILURE(owner_busy(t));
  EXPECT_FALSE(t.next_for(1, t0 + 1ms)) << "stole at a cold factor of 6";
  // Never below the default: with one queued segment, 18 ms left without it is more
  // than a cold run at 0.5x (5 ms) but less than at 2x (20 ms).
  EagerScheduler u = timed({1, 2, 2, 2}, {10ms, 10ms, 10ms, 10ms});
  u.set_cold_factor(0.5);
  ASSERT_NO_FATAL_FAILURE(owner_busy(u));
  EXPECT_FALSE(u.next_for(1, t0 + 1ms)) << "a factor below 2 was not taken as 2";
  // A worker that owns nothing in the step (it joined) steals by the default factor.
  EagerScheduler v = timed({1, 1, 1, 1}, {10ms, 10ms, 10ms, 10ms});
  v.set_cold_factor(6);
  ASSERT_EQ(v.next_for(1, t0)->segment, 0u);
  ASSERT_EQ(v.next_ahead_for(1, t0)->segment, 1u);
  auto newcomer = v.next_for(3, t0 + 1ms);
  ASSERT_TRUE(newcomer) << "28 ms left without segment 3, more than 2 x 10 ms";
  EXPECT_EQ(newcomer->segment, 3u);
}

// Only a cold run that completes as the segment's only attempt is a sample: a re-run's
// time includes the wait before it.
TEST(EagerScheduler, ReRunsAreNoSampleOfColdRuns) {
  using namespace std::chrono_literals;
  const auto t0 = EagerScheduler::Clock::time_point{} + 1h;
  // Worker 2's segment, stolen at once by worker 1 (worker 2 runs nothing): a cold run.
  EagerScheduler s = timed({2}, {10ms});
  ASSERT_EQ(s.next_for(1, t0)->segment, 0u);
  auto copy = s.next_for(2, t0 + 40ms);   // late at 1.5 x 2 x 10 ms
  ASSERT_TRUE(copy);
  EXPECT_EQ(copy->attempt, 2u);
  EXPECT_TRUE(s.complete(0, 2, t0 + 45ms));
  EXPECT_FALSE(s.cold_factor_seen()) << "a re-run was taken for a cold first run";
}

// The next step's expectation follows a first run up, cold or not, decays by a quarter
// at most, and is not raised by a re-run, whose time includes the wait before it.
TEST(EagerScheduler, FirstRunsRaiseTheExpectationAndReRunsDoNot) {
  using namespace std::chrono_literals;
  const auto t0 = EagerScheduler::Clock::time_point{} + 1h;
  // Segment 0 is worker 1's, 1 and 2 are worker 2's; worker 2 is busy, so worker 1
  // steals 2 (10 ms left at worker 2 without it, more than a cold 2 x 4 ms).
  EagerScheduler s = timed({1, 2, 2}, {10ms, 10ms, 4ms});
  ASSERT_EQ(s.next_for(1, t0)->segment, 0u);
  ASSERT_EQ(s.next_for(2, t0)->segment, 1u);
  EXPECT_TRUE(s.complete(0, 1, t0 + 30ms));
  auto stolen = s.next_for(1, t0 + 30ms);
  ASSERT_TRUE(stolen);
  ASSERT_EQ(stolen->segment, 2u);
  EXPECT_TRUE(s.complete(2, 1, t0 + 70ms));
  EXPECT_TRUE(s.complete(1, 2, t0 + 80ms));
  EXPECT_EQ(s.next_expected(0, 10ms), 30ms) << "a warm only run raises it";
  EXPECT_EQ(s.next_expected(1, 200ms), 150ms) << "it decays by a quarter a step at most";
  EXPECT_EQ(s.next_expected(2, 4ms), 40ms) << "the thief runs it warm next: a cold run counts";
  // Worker 2's segment, stolen at once by idle worker 1, late at 1.5 x 2 x 10 ms and
  // run again by worker 2, which completes it 45 ms after the first start.
  EagerScheduler r = timed({2}, {10ms});
  ASSERT_EQ(r.next_for(1, t0)->segment, 0u);
  ASSERT_EQ(r.next_for(2, t0 + 40ms)->attempt, 2u);
  EXPECT_TRUE(r.complete(0, 2, t0 + 45ms));
  EXPECT_EQ(r.next_expected(0, 10ms), 10ms) << "a re-run's 45 ms raised it";
  EXPECT_EQ(r.next_expected(0, 0ms), 45ms) << "with nothing known, any run is the guess";
}

// A lost worker's unstarted segments are anybody's at once, whatever their durations.
TEST(EagerScheduler, ADisownedQueueIsFreeForAll) {
  using namespace std::chrono_literals;
  const auto t0 = EagerScheduler::Clock::time_point{} + 1h;
  EagerScheduler s = timed({1, 2, 2, 2}, {10ms, 10ms, 10ms, 10ms});
  ASSERT_EQ(s.next_for(2, t0)->segment, 1u);
  ASSERT_EQ(s.next_for(1, t0)->segment, 0u);
  EXPECT_TRUE(s.complete(0, 1, t0 + 1ms));
  EXPECT_FALSE(s.next_for(1, t0 + 1ms)) << "29 ms left at worker 2, 19 without segment 3";
  s.disown(2);
  auto p = s.next_for(1, t0 + 1ms);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->segment, 2u);
  EXPECT_EQ(s.next_ahead_for(1, t0 + 1ms)->segment, 3u) << "no longer anybody's: rule 2";
  // The fixed policy keeps a block with its worker, lost or not.
  EagerScheduler f(2, 3, EagerScheduler::Policy::fixed, {1, 2});
  f.disown(2);
  ASSERT_EQ(f.next_for(1)->segment, 0u);
  EXPECT_FALSE(f.next_for(1)) << "the fixed policy gave away a lost worker's block";
}

// A refusal holds only while the owner works on this step on time: once its run is
// late, or once it runs nothing unfinished (its copy lost to a re-run, or it is busy
// with an older step's assignment), the thief steals.
TEST(EagerScheduler, StealsFromAnOwnerThatIsLateOrNotOnThisStep) {
  using namespace std::chrono_literals;
  const auto t0 = EagerScheduler::Clock::time_point{} + 1h;
  EagerScheduler s = timed({1, 2, 2, 3}, {10ms, 10ms, 10ms, 10ms});
  ASSERT_EQ(s.next_for(2, t0)->segment, 1u);
  ASSERT_EQ(s.next_for(3, t0)->segment, 3u);
  ASSERT_EQ(s.next_for(1, t0)->segment, 0u);
  EXPECT_TRUE(s.complete(0, 1, t0 + 1ms));
  EXPECT_FALSE(s.next_for(1, t0 + 1ms)) << "worker 2: 9 ms on segment 1, then 10 ms of segment 2";
  auto p = s.next_for(1, t0 + 15ms);
  ASSERT_TRUE(p) << "segment 1 is late at 15 ms: worker 2 is slow or stuck";
  EXPECT_EQ(p->segment, 2u);
  EagerScheduler q = timed({1, 2, 2}, {10ms, 10ms, 10ms});
  ASSERT_EQ(q.next_for(2, t0)->segment, 1u);
  ASSERT_EQ(q.next_for(1, t0)->segment, 0u);
  EXPECT_TRUE(q.complete(0, 1, t0 + 1ms));
  EXPECT_FALSE(q.next_for(1, t0 + 1ms));
  EXPECT_TRUE(q.complete(1, 3, t0 + 2ms)) << "a copy elsewhere wins; worker 2 still computes its own";
  p = q.next_for(1, t0 + 2ms);
  ASSERT_TRUE(p) << "worker 2 runs nothing unfinished: it may be busy for any time";
  EXPECT_EQ(p->segment, 2u);
}

// A run away from the worker that ran the segment last is cold: it is late only at
// twice the usual time (a warm copy elsewhere would not be quicker by much).
TEST(EagerScheduler, AColdRunIsLateLater) {
  using namespace std::chrono_literals;
  const auto t0 = EagerScheduler::Clock::time_point{} + 1h;
  EagerScheduler s = timed({1, 2}, {20ms, 20ms});
  s.disown(2);
  ASSERT_EQ(s.next_for(1, t0)->segment, 0u);
  ASSERT_EQ(s.next_ahead_for(1, t0)->segment, 1u);
  EXPECT_EQ(*s.next_rerun_at(3), t0 + 30ms) << "segment 0, warm: 1.5 x 20 ms";
  EXPECT_TRUE(s.complete(0, 1, t0 + 20ms));
  s.started(1, 1, t0 + 20ms);
  EXPECT_EQ(*s.next_rerun_at(3), t0 + 80ms) << "segment 1, cold: 1.5 x 2 x 20 ms from its start";
}

// A worker's own segments run in index order, except those expected to take over twice
// the queue's typical time, which go first, longest first; with any time unknown, and
// under the fixed policy, the order is the index order.
TEST(EagerScheduler, LongSegmentsOfAQueueGoFirst) {
  using namespace std::chrono_literals;
  const auto order = [](EagerScheduler s, WorkerId w) {
    std::vector<std::uint32_t> got;
    while (auto p = s.next_ahead_for(w)) got.push_back(p->segment);
    return got;
  };
  EXPECT_EQ(order(timed({1, 1, 1, 1, 1}, {1ms, 1ms, 5ms, 1ms, 9ms}), 1),
            (std::vector<std::uint32_t>{4, 2, 0, 1, 3}));
  EXPECT_EQ(order(timed({1, 1, 1}, {1ms, 1500us, 1ms}), 1), (std::vector<std::uint32_t>{0, 1, 2}))
      << "1.5x the typical time is not long";
  EXPECT_EQ(order(timed({1, 1, 1}, {1ms, 0ms, 9ms}), 1), (std::vector<std::uint32_t>{0, 1, 2}));
  EagerScheduler fixed(3, 3, EagerScheduler::Policy::fixed, {1, 1, 1});
  fixed.set_expected({1ms, 1ms, 9ms});
  EXPECT_EQ(order(std::move(fixed), 1), (std::vector<std::uint32_t>{0, 1, 2}));
}

// Worker 1 runs segments in `fast`, worker 2 in `slow` (no expected times: one step, as
// matmul); worker 2 starts the last one, segment 6, at t0 + 2 slow. With 5 and 10 ms,
// worker 1 has run out of work by then and the step's mean is 6.7 ms, so segment 6 is
// late only at t0 + 31.7 ms.
EagerScheduler paced(EagerScheduler::Clock::time_point t0, std::chrono::milliseconds fast,
                     std::chrono::milliseconds slow) {
  EagerScheduler s(7, 3);
  s.set_rerun_delay(1.5, std::chrono::milliseconds(50));
  const auto step = [&](std::uint32_t seg, WorkerId w, auto at) {
    EXPECT_EQ(s.next_for(w, t0 + at)->segment, seg);
  };
  step(0, 1, 0 * fast);
  step(1, 2, 0 * slow);
  EXPECT_TRUE(s.complete(0, 1, t0 + fast));
  step(2, 1, fast);
  EXPECT_TRUE(s.complete(2, 1, t0 + 2 * fast));
  step(3, 1, 2 * fast);
  EXPECT_TRUE(s.complete(1, 2, t0 + slow));
  step(4, 2, slow);
  EXPECT_TRUE(s.complete(3, 1, t0 + 3 * fast));
  step(5, 1, 3 * fast);
  EXPECT_TRUE(s.complete(5, 1, t0 + 4 * fast));
  EXPECT_TRUE(s.complete(4, 2, t0 + 2 * slow));
  step(6, 2, 2 * slow);
  return s;
}

// A worker whose pace says its copy would end well before a slower worker's run (by a
// quarter of the copy's time and 1 ms) re-runs it before it is late, and so does one
// whose copy takes that much less than a run that has gone past its pace; a slower
// worker never copies a faster one's run early, and equal paces never do.
TEST(EagerScheduler, AFasterWorkerOvertakesASlowerOnesRun) {
  using namespace std::chrono_literals;
  const auto t0 = EagerScheduler::Clock::time_point{} + 1h;
  {
    EagerScheduler s = paced(t0, 5ms, 10ms);
    auto p = s.next_for(1, t0 + 20ms);
    ASSERT_TRUE(p) << "its copy ends at 27.25 ms, the original at 30";
    EXPECT_EQ(p->segment, 6u);
    EXPECT_EQ(p->attempt, 2u);
  }
  {
    EagerScheduler s = paced(t0, 5ms, 10ms);
    EXPECT_FALSE(s.next_for(1, t0 + 23ms)) << "its copy would end at 30.25 ms";
    EXPECT_FALSE(s.next_for(1, t0 + 29ms)) << "its copy would end at 36.25 ms";
    auto p = s.next_for(1, t0 + 30ms);
    ASSERT_TRUE(p) << "the original runs past its pace (10 ms), the copy takes 7.25 ms";
    EXPECT_EQ(p->segment, 6u);
  }
  {
    // Paces 8 and 10 ms: a copy takes 11 ms with its margin, more than the runner's run,
    // so it waits for the original until it is late.
    EagerScheduler s = paced(t0, 8ms, 10ms);
    EXPECT_FALSE(s.next_for(1, t0 + 31ms)) << "past its pace, but a copy takes 11 ms with its margin";
  }
  {
    EagerScheduler s = paced(t0, 5ms, 5ms);
    EXPECT_FALSE(s.next_for(1, t0 + 10ms)) << "equal paces";
  }
  {
    // Worker 1 is the slow one: its copy of worker 2's run (5 ms, started at t0 + 10 ms)
    // would end at 23.5 ms, the run at 15; the run is late at 23.3 ms.
    EagerScheduler s = paced(t0, 10ms, 5ms);
    EXPECT_FALSE(s.next_for(1, t0 + 10ms));
    EXPECT_FALSE(s.next_for(1, t0 + 23ms));
  }
}

// Once a result is arriving its run is over: a re-run could not finish first.
TEST(EagerScheduler, ASegmentWhoseResultIsArrivingIsNeverLate) {
  using namespace std::chrono_literals;
  const auto t0 = EagerScheduler::Clock::time_point{} + 1h;
  EagerScheduler s(1, 3);
  s.set_rerun_delay(1.5, 50ms);
  ASSERT_TRUE(s.next_for(1, t0));
  s.arriving(0, 1);
  EXPECT_FALSE(s.next_for(2, t0 + 1h));
  EXPECT_FALSE(s.next_rerun_at(2));
  EXPECT_FALSE(s.abandon(0, 1, true)) << "the transfer was cut short";
  EXPECT_TRUE(s.next_for(2, t0 + 1h)) << "so the segment runs again";
}

}  // namespace
}  // namespace calypso::sched
