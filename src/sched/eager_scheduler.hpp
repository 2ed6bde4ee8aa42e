// Eager scheduling of one parallel step (pure logic, no I/O; unit tested on its own).
//
// Any idle worker may run any unfinished segment: unstarted segments go first, in
// order; once none are left, an idle worker re-runs an unfinished segment that is
// running elsewhere (the one with the fewest copies running, then the oldest), never one
// it is running itself. The first completion of a segment wins. A segment whose runs
// keep ending with the death of their worker fails the step after max_attempts such
// deaths, so a routine that crashes workers cannot loop forever.
#pragma once

#include "sched/protocol.hpp"

#include <cstdint>
#include <optional>
#include <vector>

namespace calypso::sched {

struct Pick {
  std::uint32_t segment;
  std::uint32_t attempt;   // 1 for the first run of the segment, 2 for the second, ...
};

class EagerScheduler {
 public:
  EagerScheduler(std::uint32_t segments, std::uint32_t max_attempts);

  // Next segment for an idle worker, or nullopt if every segment is done or already
  // running on this worker.
  std::optional<Pick> next_for(WorkerId w);
  // A complete result for segment from w. True if it is the first (apply it).
  bool complete(std::uint32_t segment, WorkerId w);
  // w stopped running segment without a result (it died, left, or was suspected).
  // Returns true if the segment has now failed max_attempts times.
  bool abandon(std::uint32_t segment, WorkerId w, bool counts_as_failure);

  bool done(std::uint32_t segment) const { return segs_[segment].done; }
  bool all_done() const { return remaining_ == 0; }
  std::uint32_t failures(std::uint32_t segment) const { return segs_[segment].failures; }
  std::uint32_t attempts(std::uint32_t segment) const { return segs_[segment].attempts; }
  std::uint32_t size() const { return static_cast<std::uint32_t>(segs_.size()); }

 private:
  struct Seg {
    bool done = false;
    std::uint32_t attempts = 0;
    std::uint32_t failures = 0;
    std::uint64_t last_start = 0;
    std::vector<WorkerId> runners;
  };
  std::optional<Pick> start(std::uint32_t segment, WorkerId w);

  std::vector<Seg> segs_;
  std::uint32_t max_attempts_;
  std::uint32_t next_unstarted_ = 0;
  std::uint32_t remaining_;
  std::uint64_t clock_ = 0;
};

}  // namespace calypso::sched
