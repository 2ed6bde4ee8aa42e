// Who owns which segment in the next step. A segment's owner is the worker whose result
// was kept (its pages are warm there), so a steal moves a segment for good. Between
// workers of the same speed that leaves one with a segment more than its share for as
// long as the run lasts: stealing it back within a step costs a cold run, which the
// learned cold factor rightly refuses for one segment's worth of backlog (jacobi 2048 x
// 200, 2 workers: one steal at step 119 left 9 segments against 7 for the remaining 82
// steps, each step then ending a segment's time later). So, between steps, one segment
// moves from the worker that finished last to the one that finished first when they
// finished further apart than kEvenGap times its expected time and the last owns at
// least two segments more: one cold run, once.
// Not to a slower worker: with one worker held to half a CPU (a cgroup quota, so fast in
// one step and stalled in the next), the rule above moved a segment to it whenever it
// happened to finish first, and the fast worker stole the segment back cold in the next
// step (jacobi 2048 x 200, 2 workers, shm, slow worker: same-run ratio 2.25-2.27 without
// evening, 2.51-2.63 with it). So each worker's time per kept segment is followed over
// steps (OwnerPaces), and a move needs the receiver to be about as fast as the giver.
// Nor on one step's say: with every page and result through tcp, where a cold run costs
// 9-18 warm ones, a worker held to half a CPU read as fast as the other per segment, and
// moves went both ways, 13 in a 200-step jacobi run. A move is made once Evening::kSteps
// steps in a row have called for it; an imbalance that evening is for lasts
// for the rest of the run.
#pragma once

#include "sched/protocol.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>

namespace calypso::sched {

struct KeptRun {
  WorkerId runner = kNoWorker;           // whose result was kept
  std::chrono::nanoseconds done_at{};    // when it completed, since the step began
  std::chrono::nanoseconds expected{};   // what the segment is expected to take next
};

struct OwnerMove {
  std::uint32_t segment;   // position in the step
  WorkerId to;
};

inline constexpr double kEvenGap = 1.5;
// A receiver whose time per segment is above the giver's by more than this factor gets
// nothing: a move to a worker that is not as fast would have to be stolen back.
inline constexpr double kEvenPaceSlack = 1.25;

// Each worker's time per kept segment in a step (when its last kept run completed,
// since the step began, over how many it kept), smoothed over steps: a worker slowed by
// a CPU quota is fast in some steps and stalled in others, and one step's figure says
// little. Workers no longer alive are forgotten.
class OwnerPaces {
 public:
  static constexpr double kWeight = 0.25;   // of the newest step

  void observe(std::span<const KeptRun> runs, std::span<const WorkerId> alive);
  std::optional<double> seconds_per_segment(WorkerId w) const;

 private:
  std::map<WorkerId, double> seconds_per_segment_;
};

// The move that evens out the next step, if one is due: the segment of the worker that
// finished last, among those whose expected time fits kEvenGap times into the gap
// between their finishing times, next to a segment of the worker that finished first
// if one is (neighbours share pages at their borders), else the last such; none unless
// the last owns two segments more than the first, nor when `paces` has the first more
// than kEvenPaceSlack times slower per segment than the last. Only workers in `alive`
// with a kept run count.
std::optional<OwnerMove> evening_move(std::span<const KeptRun> runs, std::span<const WorkerId> alive,
                                      const OwnerPaces& paces);

// The manager's side of it, step after step: the paces, and how many steps in a row
// have called for a move from the same worker to the same other one.
class Evening {
 public:
  static constexpr std::uint32_t kSteps = 3;

  // After a step: the move to make now, if any (the kSteps-th call in a row for it).
  std::optional<OwnerMove> after_step(std::span<const KeptRun> runs, std::span<const WorkerId> alive);
  const OwnerPaces& paces() const noexcept { return paces_; }

 private:
  OwnerPaces paces_;
  WorkerId from_ = kNoWorker;
  WorkerId to_ = kNoWorker;
  std::uint32_t streak_ = 0;
};

}  // namespace calypso::sched
