// Eager scheduling; see eager_scheduler.hpp.
#include "sched/eager_scheduler.hpp"

#include <algorithm>

namespace calypso::sched {

EagerScheduler::EagerScheduler(std::uint32_t segments, std::uint32_t max_attempts, Policy policy,
                               const std::vector<WorkerId>& preferred)
    : segs_(segments), max_attempts_(max_attempts), policy_(policy), owned_(segments, false),
      preferred_(segments, kNoWorker), remaining_(segments) {
  for (std::uint32_t s = 0; s < segments && s < preferred.size(); ++s) {
    if (preferred[s] == kNoWorker) continue;
    owned_[s] = true;
    preferred_[s] = preferred[s];
    queues_[preferred[s]].push_back(s);
  }
}

void EagerScheduler::set_rerun_delay(double factor, Clock::duration before_any) {
  rerun_factor_ = factor;
  before_any_ = before_any;
}

void EagerScheduler::set_expected(std::vector<Clock::duration> expected) {
  for (std::size_t i = 0; i < segs_.size() && i < expected.size(); ++i) segs_[i].expected = expected[i];
}

std::optional<Pick> EagerScheduler::start(std::uint32_t segment, WorkerId w, Clock::time_point now) {
  Seg& s = segs_[segment];
  if (s.runners.empty()) {   // a fresh run (first, or after deaths)
    s.first_start = now;
    s.cold = preferred_[segment] != kNoWorker && preferred_[segment] != w;
    s.queued = false;
  }
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

std::optional<std::uint32_t> EagerScheduler::unowned_unstarted() {
  while (next_unstarted_ < segs_.size() && (owned_[next_unstarted_] || segs_[next_unstarted_].attempts > 0)) {
    ++next_unstarted_;
  }
  if (next_unstarted_ < segs_.size()) return next_unstarted_++;
  return std::nullopt;
}

std::optional<std::uint32_t> EagerScheduler::steal_unstarted(WorkerId w, Clock::time_point now) {
  // Owners with unstarted segments, longest queue first; the first one worth it.
  std::vector<std::pair<WorkerId, std::deque<std::uint32_t>*>> owners;
  for (auto& [owner, q] : queues_) {
    while (!q.empty() && segs_[q.back()].attempts > 0) q.pop_back();
    if (owner != w && !q.empty()) owners.emplace_back(owner, &q);
  }
  std::stable_sort(owners.begin(), owners.end(),
                   [](const auto& a, const auto& b) { return a.second->size() > b.second->size(); });
  for (auto& [owner, q] : owners) {
    if (!worth_stealing(owner, *q, now)) continue;
    std::uint32_t s = q->back();
    q->pop_back();
    return s;
  }
  return std::nullopt;
}

// Stealing the back of owner's queue pays if the owner would still be busy, after
// giving it up, for at least as long as the thief's cold run of it: its queued
// segments plus what is left of the ones it runs, by the expected times. Any unknown
// time, a late run, or an owner that runs nothing unfinished of this step (it may be
// busy for who knows how long with a copy that lost, or with an older step's
// assignment): steal. Stealing what would not pay also moves the segment's
// preference, and its pages, to the thief, and in the next step the owner steals it
// back: two cold runs instead of none. A refused thief is woken when the owner's
// result arrives or its run gets late (next_rerun_at covers that run).
bool EagerScheduler::worth_stealing(WorkerId owner, const std::deque<std::uint32_t>& queue,
                                    Clock::time_point now) const {
  const Clock::duration d = segs_[queue.back()].expected;
  if (d.count() <= 0) return true;
  Clock::duration backlog{};
  for (std::uint32_t s : queue) {
    if (segs_[s].attempts > 0) continue;
    if (segs_[s].expected.count() <= 0) return true;
    backlog += segs_[s].expected;
  }
  bool running = false;
  for (const Seg& s : segs_) {
    if (s.done || !runs(s, owner)) continue;
    if (s.expected.count() <= 0 || now >= late_at(s)) return true;
    running = true;
    backlog += std::max(Clock::duration{}, s.expected - (now - s.first_start));
  }
  return !running || backlog - d >= kColdRunFactor * d;
}

void EagerScheduler::disown(WorkerId w) {
  if (policy_ == Policy::fixed) return;   // a fixed block stays its worker's, come what may
  auto it = queues_.find(w);
  if (it == queues_.end()) return;
  for (std::uint32_t s : it->second) {
    owned_[s] = false;
    next_unstarted_ = std::min(next_unstarted_, s);
  }
  queues_.erase(it);
}

// Started (an unstarted one is rules 1-3's), unfinished, not just arriving, and not
// already run by w. A started segment with no runner left (its worker died) qualifies.
bool EagerScheduler::rerun_candidate(const Seg& s, WorkerId w) {
  return s.attempts > 0 && !s.done && !s.arriving && !runs(s, w);
}

EagerScheduler::Clock::time_point EagerScheduler::late_at(const Seg& s) const {
  if (rerun_factor_ <= 0 || s.runners.empty()) return s.first_start;
  Clock::duration d;
  if (s.expected.count() > 0) {
    d = s.cold ? kColdRunFactor * s.expected : s.expected;
  } else if (completed_ == 0) {
    return s.first_start + before_any_;
  } else {
    d = completed_time_ / completed_;
  }
  // At least kLateSlack over the expected time: a sub-millisecond segment is not late
  // because its worker lost the core for a time slice (a re-run would refetch its pages).
  const auto late = std::max(std::chrono::duration_cast<Clock::duration>(d * rerun_factor_), d + kLateSlack);
  return s.first_start + late;
}

std::optional<EagerScheduler::Clock::time_point> EagerScheduler::next_rerun_at(WorkerId w) const {
  if (policy_ == Policy::fixed) return std::nullopt;
  std::optional<Clock::time_point> first;
  for (const Seg& s : segs_) {
    if (!rerun_candidate(s, w)) continue;
    const auto t = late_at(s);
    if (!first || t < *first) first = t;
  }
  return first;
}

std::optional<std::uint32_t> EagerScheduler::rerun_for(WorkerId w, Clock::time_point now) const {
  std::optional<std::uint32_t> best;
  for (std::uint32_t i = 0; i < segs_.size(); ++i) {
    const Seg& s = segs_[i];
    if (!rerun_candidate(s, w) || now < late_at(s)) continue;
    if (!best) { best = i; continue; }
    // Fewest runners first; then one still waiting in a slow worker's queue, which ends
    // after the segment that worker runs (mandelbrot's slow worker: re-running the
    // running one instead lost the race by a few ms, and the queued one ended the
    // step 70 ms later); then the oldest start.
    const Seg& b = segs_[*best];
    if (s.runners.size() != b.runners.size()) {
      if (s.runners.size() < b.runners.size()) best = i;
    } else if (s.queued != b.queued) {
      if (s.queued) best = i;
    } else if (s.last_start < b.last_start) {
      best = i;
    }
  }
  return best;
}

std::optional<Pick> EagerScheduler::next_for(WorkerId w, Clock::time_point now) {
  if (auto s = unstarted_for(w)) return start(*s, w, now);   // rules 1 and 2
  if (policy_ == Policy::fixed) return std::nullopt;
  if (auto s = steal_unstarted(w, now)) return start(*s, w, now);
  if (auto s = rerun_for(w, now)) return start(*s, w, now);
  return std::nullopt;
}

std::optional<std::uint32_t> EagerScheduler::unstarted_for(WorkerId w) {
  if (auto s = own_unstarted(w)) return s;
  if (policy_ == Policy::fixed) return std::nullopt;
  return unowned_unstarted();
}

std::optional<Pick> EagerScheduler::next_ahead_for(WorkerId w, Clock::time_point now) {
  const std::optional<std::uint32_t> s = unstarted_for(w);
  if (!s) return std::nullopt;
  auto pick = start(*s, w, now);
  segs_[*s].queued = true;   // until started()
  return pick;
}

void EagerScheduler::started(std::uint32_t segment, WorkerId w, Clock::time_point now) {
  Seg& s = segs_[segment];
  if (!s.done && s.runners.size() == 1 && s.runners.front() == w) {
    s.first_start = now;
    s.queued = false;
  }
}

void EagerScheduler::arriving(std::uint32_t segment, WorkerId w) {
  Seg& s = segs_[segment];
  if (runs(s, w)) s.arriving = true;
}

bool EagerScheduler::complete(std::uint32_t segment, WorkerId w, Clock::time_point now) {
  Seg& s = segs_[segment];
  std::erase(s.runners, w);
  if (s.done) return false;
  s.took = now - s.first_start;
  completed_time_ += s.took;
  ++completed_;
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
  if (s.runners.empty()) s.queued = false;
  s.arriving = false;   // a transfer cut short (the sender died): re-run it
  if (s.done || !counts_as_failure) return false;
  return ++s.failures >= max_attempts_;
}

}  // namespace calypso::sched
