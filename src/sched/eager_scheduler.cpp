// Eager scheduling; see eager_scheduler.hpp.
#include "sched/eager_scheduler.hpp"

#include <algorithm>

namespace calypso::sched {

EagerScheduler::EagerScheduler(std::uint32_t segments, std::uint32_t max_attempts)
    : segs_(segments), max_attempts_(max_attempts), remaining_(segments) {}

std::optional<Pick> EagerScheduler::start(std::uint32_t segment, WorkerId w) {
  Seg& s = segs_[segment];
  s.runners.push_back(w);
  s.last_start = ++clock_;
  return Pick{segment, ++s.attempts};
}

std::optional<Pick> EagerScheduler::next_for(WorkerId w) {
  while (next_unstarted_ < segs_.size() && segs_[next_unstarted_].attempts > 0) ++next_unstarted_;
  if (next_unstarted_ < segs_.size()) return start(next_unstarted_++, w);
  std::optional<std::uint32_t> best;
  for (std::uint32_t i = 0; i < segs_.size(); ++i) {
    const Seg& s = segs_[i];
    if (s.done || std::find(s.runners.begin(), s.runners.end(), w) != s.runners.end()) continue;
    if (!best) { best = i; continue; }
    const Seg& b = segs_[*best];
    if (s.runners.size() < b.runners.size() ||
        (s.runners.size() == b.runners.size() && s.last_start < b.last_start)) {
      best = i;
    }
  }
  if (!best) return std::nullopt;
  return start(*best, w);
}

bool EagerScheduler::complete(std::uint32_t segment, WorkerId w) {
  Seg& s = segs_[segment];
  std::erase(s.runners, w);
  if (s.done) return false;
  s.done = true;
  --remaining_;
  return true;
}

bool EagerScheduler::abandon(std::uint32_t segment, WorkerId w, bool counts_as_failure) {
  Seg& s = segs_[segment];
  std::erase(s.runners, w);
  if (s.done || !counts_as_failure) return false;
  return ++s.failures >= max_attempts_;
}

}  // namespace calypso::sched
