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
  if (policy_ == Policy::eager) {
    for (auto& [owner, q] : queues_) heavy_first(q);
  }
}

// A worker's own segments run in index order (neighbours share boundary rows in the
// caches), except that those expected to take well over the queue's typical time go
// first, longest first. Why: the step ends when its last segment does, and a long one
// at the end of a queue cannot be shared out, while short ones at the end are what an
// idle worker can steal (Jacobi, 2 workers: the last block ends with the bottom rows,
// whose diff is 10x the others'; the other worker waited ~3 ms for it every sweep).
void EagerScheduler::heavy_first(std::deque<std::uint32_t>& queue) const {
  std::vector<Clock::duration> times;
  for (std::uint32_t s : queue) {
    if (segs_[s].expected.count() <= 0) return;   // nothing known: keep the order
    times.push_back(segs_[s].expected);
  }
  if (times.size() < 2) return;
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  const Clock::duration typical = times[times.size() / 2];
  const auto heavy = [&](std::uint32_t s) { return segs_[s].expected > kHeavyFactor * typical; };
  auto rest = std::stable_partition(queue.begin(), queue.end(), heavy);
  std::stable_sort(queue.begin(), rest,
                   [&](std::uint32_t a, std::uint32_t b) { return segs_[a].expected > segs_[b].expected; });
}

std::optional<Pick> EagerScheduler::start(std::uint32_t segment, WorkerId w, Clock::time_point now) {
  Seg& s = segs_[segment];
  if (s.runners.empty()) {   // a fresh run (first, or after deaths)
    s.first_start = now;
    s.cold = cold_on(segment, w);
    s.queued = false;
  }
  s.runners.push_back(w);
  s.starts.push_back(now);
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
  // A worker that owns nothing in this step (it joined, or came back after being
  // suspected) judges by the default factor: it has nothing else to do, and what it
  // steals is its own, warm, in the next step.
  const double factor = queues_.contains(w) ? cold_factor_ : kColdRunFactor;
  for (auto& [owner, q] : owners) {
    if (!worth_stealing(owner, *q, now, factor)) continue;
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
                                    Clock::time_point now, double factor) const {
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
  return !running || backlog - d >= std::chrono::duration_cast<Clock::duration>(d * factor);
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
// A segment whose run ended with its worker's death runs on one worker at a time, and
// not at all once that happened max_attempts times: it may be what kills them. Copies
// of its late re-run went to every idle worker, and a segment that kills every worker
// that runs it took all of them (6 of 6 at max_attempts 3; session 41).
bool EagerScheduler::rerun_candidate(const Seg& s, WorkerId w) const {
  if (s.attempts == 0 || s.done || s.arriving || runs(s, w)) return false;
  return s.failures == 0 || (s.runners.empty() && s.failures < max_attempts_);
}

// Timed from the start of the newest run going: a segment that has a copy is late again
// only once that copy is. (Timed from the first run's start, every idle worker that asked
// got a copy at once, and a segment that kills its worker took six of six workers before
// the first death was seen; session 41.) With one run, that run's start.
EagerScheduler::Clock::time_point EagerScheduler::late_at(const Seg& s) const {
  if (rerun_factor_ <= 0 || s.runners.empty()) return s.first_start;
  const Clock::time_point from = *std::max_element(s.starts.begin(), s.starts.end());
  Clock::duration d;
  if (s.expected.count() > 0) {
    d = s.cold ? cold(s.expected) : s.expected;
  } else if (completed_ == 0) {
    return from + before_any_;
  } else {
    d = completed_time_ / completed_;
  }
  // At least kLateSlack over the expected time: a sub-millisecond segment is not late
  // because its worker lost the core for a time slice (a re-run would refetch its pages).
  const auto late = std::max(std::chrono::duration_cast<Clock::duration>(d * rerun_factor_), d + kLateSlack);
  return from + late;
}

std::optional<EagerScheduler::Clock::duration> EagerScheduler::predicted(const Seg& s, WorkerId w) const {
  const auto it = pace_.find(w);
  if (it == pace_.end()) return std::nullopt;
  const Pace& p = it->second;
  if (s.expected.count() > 0) {
    if (p.runs < kPaceRuns || p.expected.count() <= 0) return std::nullopt;
    return std::chrono::duration_cast<Clock::duration>(s.expected * (static_cast<double>(p.took.count()) /
                                                                    static_cast<double>(p.expected.count())));
  }
  if (p.plain_runs < kPaceRuns) return std::nullopt;
  return p.plain_took / p.plain_runs;
}

// An idle worker w may re-run a segment that is not late yet if, at the two workers'
// paces in this step, w's copy (cold_factor times as long on a cold cache, as is a cold
// original) would end before the
// original by a quarter of the copy's time plus 1 ms, or, once the original runs past
// its pace, if the copy takes that much less than the runner's typical run. Why: a
// worker slowed down as a whole (a shared or older machine, one stopped half of the
// time, one held to half a CPU) runs every segment
// late by the same factor; at the end of a step the fast worker would otherwise wait
// until the slow one's last segment looks late (1.5x the typical time plus 5 ms)
// before starting on it (matmul 1024, one worker at half speed: ~15 ms of ~250). At
// equal paces no copy ever ends sooner, so none is started; and a slower worker never
// copies a faster one's segment. Only a segment run by one worker qualifies: a second
// copy of a re-run would race it, not the slow original.
bool EagerScheduler::overtakes(std::uint32_t segment, WorkerId w, Clock::time_point now) const {
  const Seg& s = segs_[segment];
  if (s.runners.size() != 1) return false;
  const std::optional<Clock::duration> theirs = predicted(s, s.runners.front());
  const std::optional<Clock::duration> ours = predicted(s, w);
  if (!theirs || !ours) return false;
  const Clock::duration copy = cold_on(segment, w) ? cold(*ours) : *ours;
  // A queued segment starts after the one its worker runs: counting from now is the
  // earliest it could end.
  const Clock::time_point original = (s.queued ? now : s.starts.front()) + (s.cold ? cold(*theirs) : *theirs);
  const Clock::duration margin = copy / 4 + std::chrono::milliseconds(1);
  if (now + copy + margin < original) return true;
  // Running past its pace: when it ends is unknown, and a worker whose whole copy takes
  // clearly less than the runner's typical run has nothing better to do than race it.
  // (matmul 1024, one worker held to half a CPU: its runs took 10-30 ms against the
  // other's 5-7, and the other sat idle at the end of the step for an overdue one.)
  return !s.queued && now >= original && copy + margin < *theirs;
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
    if (!rerun_candidate(s, w) || (now < late_at(s) && !overtakes(i, w, now))) continue;
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
    s.starts.front() = now;
    s.queued = false;
  }
}

void EagerScheduler::arriving(std::uint32_t segment, WorkerId w) {
  Seg& s = segs_[segment];
  if (runs(s, w)) s.arriving = true;
}

bool EagerScheduler::complete(std::uint32_t segment, WorkerId w, Clock::time_point now) {
  Seg& s = segs_[segment];
  drop_runner(s, w);
  if (s.done) return false;
  s.took = now - s.first_start;
  if (s.attempts == 1 && s.cold && s.expected.count() > 0) {   // what a cold run costs
    cold_took_ += s.took;
    cold_expected_ += s.expected;
  }
  if (s.attempts == 1 && !s.cold) {   // w's own warm first run: its pace
    Pace& p = pace_[w];
    if (s.expected.count() > 0) {
      p.took += s.took;
      p.expected += s.expected;
      ++p.runs;
    } else {
      p.plain_took += s.took;
      ++p.plain_runs;
    }
  }
  completed_time_ += s.took;
  ++completed_;
  s.done = true;
  --remaining_;
  return true;
}

EagerScheduler::Clock::duration EagerScheduler::next_expected(std::uint32_t segment, Clock::duration before) const {
  const Seg& s = segs_[segment];
  Clock::duration took = s.took;
  if (s.attempts > 1 && before.count() > 0) took = std::min(took, before);
  return std::max(took, before * 3 / 4);
}

std::optional<double> EagerScheduler::cold_factor_seen() const {
  if (cold_expected_.count() <= 0) return std::nullopt;
  return std::chrono::duration<double>(cold_took_) / std::chrono::duration<double>(cold_expected_);
}

double EagerScheduler::next_cold_factor() const {
  const std::optional<double> seen = cold_factor_seen();
  return std::clamp(seen ? (cold_factor_ + *seen) / 2 : cold_factor_ * kColdFactorSink, kColdRunFactor, kMaxColdRunFactor);
}

std::optional<std::uint32_t> EagerScheduler::exhausted() const {
  for (std::uint32_t i = 0; i < segs_.size(); ++i) {
    if (!segs_[i].done && segs_[i].failures >= max_attempts_) return i;
  }
  return std::nullopt;
}

void EagerScheduler::forgive(std::uint32_t segment) {
  Seg& s = segs_[segment];
  if (s.failures > 0) --s.failures;
}

bool EagerScheduler::abandon(std::uint32_t segment, WorkerId w, bool counts_as_failure) {
  Seg& s = segs_[segment];
  drop_runner(s, w);
  if (s.runners.empty()) s.queued = false;
  s.arriving = false;   // a transfer cut short (the sender died): re-run it
  if (s.done || !counts_as_failure) return false;
  return ++s.failures >= max_attempts_;
}

}  // namespace calypso::sched
