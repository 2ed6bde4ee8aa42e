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
#pragma once

#include "sched/protocol.hpp"

#include <chrono>
#include <cstdint>
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

// The move that evens out the next step, if one is due: the segment of the worker that
// finished last, among those whose expected time fits kEvenGap times into the gap
// between their finishing times, next to a segment of the worker that finished first
// if one is (neighbours share pages at their borders), else the last such; none unless
// the last owns two segments more than the first. Only workers in `alive` with a kept
// run count.
std::optional<OwnerMove> evening_move(std::span<const KeptRun> runs, std::span<const WorkerId> alive);

}  // namespace calypso::sched
