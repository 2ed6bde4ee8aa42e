// The worker's queue of assignments, in the order the manager sent them.
//
// The manager keeps up to CALYPSO_PIPELINE assignments in flight per worker, so the
// next segment is already there when one ends (no round trip between segments). Each
// assignment carries write notices relative to the one before it, so they must be
// applied in the order sent, and providers may deliver a peer's messages out of order
// (an eager message can overtake a rendezvous one): every assignment has a sequence
// number, and one that arrives early waits here for its predecessors.
//
// A predecessor that never comes (the manager's send failed while it suspected us) would
// stall the queue: after a while the worker skips the gap, and since the skipped notices
// are lost it then drops its whole cache (PageCache::invalidate_all). An assignment that
// arrives after it was skipped is dropped; the worker's next work request tells the
// manager, which re-runs it (docs/PROTOCOL.md). Pure logic, unit tested.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace calypso::sched {

class AssignQueue {
 public:
  using Clock = std::chrono::steady_clock;
  using Bytes = std::vector<std::byte>;

  // Holds assignment `seq` (raw message). False if it came too late (already skipped)
  // or twice: it is dropped.
  bool add(std::uint64_t seq, Bytes message, Clock::time_point now = Clock::now());
  // The next assignment in order, if it is here.
  std::optional<Bytes> next();
  // True if assignments wait for a predecessor that has been missing for `patience`.
  bool stalled(Clock::duration patience, Clock::time_point now = Clock::now()) const;
  // Gives up on the missing ones: the lowest waiting assignment becomes the next.
  // Returns how many sequence numbers were skipped.
  std::uint64_t skip_gap();

  // Highest sequence number taken in order or skipped: everything up to it has been
  // received, run or given up (what a work request reports to the manager).
  std::uint64_t consumed() const noexcept { return next_ - 1; }
  bool empty() const noexcept { return waiting_.empty(); }
  // How many next() would return one after the other, without a gap.
  std::size_t ready_count() const noexcept;
  std::size_t size() const noexcept { return waiting_.size(); }

 private:
  struct Waiting {
    Bytes message;
    Clock::time_point since;
  };
  std::uint64_t next_ = 1;   // sequence numbers start at 1
  std::map<std::uint64_t, Waiting> waiting_;
};

}  // namespace calypso::sched
