// Eager scheduling; see eager_scheduler.hpp.
#include "sched/eager_scheduler.hpp"

#include <algorithm>

namespace calypso::sched {

EagerScheduler::EagerScheduler(std::uint32_t segments, std::uint32_t max_attempts, Policy policy,
                               const std::vector<WorkerId>& preferred)
    : segs_(segments), max_attempts_(max_attempts), policy_(policy), owned_(segments, false),
      remaining_(segments) {
  for (std::uint32_t s = 0; s < segments && s < preferred.size(); ++s) {
    if (preferred[s] == kNoWorker) continue;
    owned_[s] = true;
    queues_[preferred[s]].push_back(s);
  }
}

std::optional<Pick> EagerScheduler::start(std::uint32_t segment, WorkerId w) {
  Seg& s = segs_[segment];
  s.runners.push_back(w);
  s.last_start = ++clock_;
  return Pick{segment, ++s.attempts};
}

std::optional<std::uint32_t> EagerScheduler::own_unstarted(WorkerId w) {
  auto it = queues_.find(w);
  if (it == queues_.end()) return std::nullopt;
  auto& q = it->second;
  while (!q.empty() && segs_[q.front()].attempts > 0) q.pop_front();
  if (q.empty()) return std::nullopt;
  std::uint32_t s = q.front();
  q.pop_front();
  return s;
}

std::optional<std::uint32_t> EagerScheduler::steal_unstarted(WorkerId w) {
  while (next_unstarted_ < segs_.size() && (owned_[next_unstarted_] || segs_[next_unstarted_].attempts > 0)) {
    ++next_unstarted_;
  }
  if (next_unstarted_ < segs_.size()) return next_unstarted_++;
  std::deque<std::uint32_t>* longest = nullptr;
  for (auto& [owner, q] : queues_) {
    while (!q.empty() && segs_[q.back()].attempts > 0) q.pop_back();
    if (owner != w && !q.empty() && (longest == nullptr || q.size() > longest->size())) longest = &q;
  }
  if (longest == nullptr) return std::nullopt;
  std::uint32_t s = longest->back();
  longest->pop_back();
  return s;
}

std::optional<std::uint32_t> EagerScheduler::rerun_for(WorkerId w) const {
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
  return best;
}

std::optional<Pick> EagerScheduler::next_for(WorkerId w) {
  if (auto s = own_unstarted(w)) return start(*s, w);
  if (policy_ == Policy::fixed) return std::nullopt;
  if (auto s = steal_unstarted(w)) return start(*s, w);
  if (auto s = rerun_for(w)) return start(*s, w);
  return std::nullopt;
}

bool EagerScheduler::complete(std::uint32_t segment, WorkerId w) {
  Seg& s = segs_[segment];
  std::erase(s.runners, w);
  if (s.done) return false;
  s.done = true;
  --remaining_;
  return true;
}

void EagerScheduler::forgive(std::uint32_t segment) {
  Seg& s = segs_[segment];
  if (s.failures > 0) --s.failures;
}

bool EagerScheduler::abandon(std::uint32_t segment, WorkerId w, bool counts_as_failure) {
  Seg& s = segs_[segment];
  std::erase(s.runners, w);
  if (s.done || !counts_as_failure) return false;
  return ++s.failures >= max_attempts_;
}

}  // namespace calypso::sched
