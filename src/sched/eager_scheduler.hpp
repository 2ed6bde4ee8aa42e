// Eager scheduling of one parallel step (pure logic, no I/O; unit tested on its own).
//
// Any idle worker may run any unfinished segment, in this order:
//   1. an unstarted segment it is *preferred* for (it ran it in the last step, so its
//      cache holds what the segment touches), lowest index first, except that those
//      expected to take much longer than the others go first (see set_expected);
//   2. an unstarted segment nobody is preferred for, in order;
//   3. an unstarted segment preferred for another worker, taken from the back of the
//      longest such queue (stealing keeps fast workers busy and slow ones' caches warm),
//      unless durations from the last step say the owner will be done with it and the
//      rest of its work before a cold run of it would be (see worth_stealing);
//   4. a re-run of a started, unfinished segment running elsewhere (fewest copies
//      running, then one still waiting in its worker's queue behind another, which
//      will end last, then the oldest), never one it is running itself; with a re-run delay
//      (see set_rerun_delay) only once that segment is *late*, or while this worker's
//      pace says its copy would end well before the original (see overtakes). A
//      segment whose runner died or left has no runner and is re-run at once.
// The first completion of a segment wins. A segment whose run ended with the death of
// its worker runs on one worker at a time from then on; after max_attempts such deaths
// it fails the step, and is not offered again meanwhile.
//
// Policy::fixed stops after step 1: every worker runs exactly its own block and nothing
// else, as classic DSMs (TreadMarks) do. It exists as a baseline for benchmarks.
#pragma once

#include "sched/protocol.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <vector>

namespace calypso::sched {

struct Pick {
  std::uint32_t segment;
  std::uint32_t attempt;   // 1 for the first run of the segment, 2 for the second, ...
};

class EagerScheduler {
 public:
  enum class Policy : std::uint8_t { eager, fixed };
  using Clock = std::chrono::steady_clock;

  // preferred[s] is the worker preferred for segment s, or kNoWorker (may be empty).
  EagerScheduler(std::uint32_t segments, std::uint32_t max_attempts, Policy policy = Policy::eager,
                 const std::vector<WorkerId>& preferred = {});

  // Re-runs of running segments wait until the run is late: it has lasted `factor`
  // times the mean duration of this step's completed segments, or `before_any` while
  // none has completed. Why: on a busy machine a copy started at once competes with
  // the original for a core and fetches the original's pages, while a slow or stopped
  // worker's segment is still taken over soon. factor 0 (the default): at once.
  void set_rerun_delay(double factor, Clock::duration before_any);
  static constexpr std::chrono::milliseconds kLateSlack{5};
  // How long each segment is expected to take, from its runs (the same routine, index
  // and count) in earlier steps (zero: unknown). A segment with a known duration is late at `factor`
  // times that rather than times this step's mean: in iterative codes segments differ
  // (Jacobi's first and last ship 10x the data of the others) but repeat step to step.
  // With Policy::eager, a worker's preferred segments that are expected to take more
  // than kHeavyFactor times the typical (median) one of its queue move to its front,
  // longest first (see heavy_first).
  void set_expected(std::vector<Clock::duration> expected);
  static constexpr int kHeavyFactor = 2;
  // How long segment's completed run took, from the start of its first run (so a
  // re-run's includes the wait before it; zero while not done).
  Clock::duration took(std::uint32_t segment) const { return segs_[segment].took; }
  // When segment's kept run completed (meaningful once done).
  Clock::time_point completed_at(std::uint32_t segment) const {
    return segs_[segment].first_start + segs_[segment].took;
  }
  // What segment is expected to take in the next step that runs it, from took() and the
  // expectation it had (`before`, zero: none). It decays from the longest recent run
  // rather than following the last one: Jacobi's segments alternate between two grids
  // and a noisy host's runs jitter, and a run shorter than the next turns the next one
  // late and re-run. A re-run does not raise it: its time includes the wait before it
  // was started. A cold first run does (its segment's next run is on the same worker,
  // warm); keeping it out measured no better (jacobi, 2 workers, tcp-net and shm,
  // normal and slow worker: 0.00-0.10 higher ratios, within the noise; session 37).
  Clock::duration next_expected(std::uint32_t segment, Clock::duration before) const;
  // Mean of took() over this step's completed segments (zero while none is).
  Clock::duration mean_took() const { return completed_ == 0 ? Clock::duration{} : completed_time_ / completed_; }

  // Next segment for an idle worker, or nullopt if every segment is done, already
  // running on this worker, not late yet (see next_rerun_at), or only stealable where
  // stealing would not pay.
  std::optional<Pick> next_for(WorkerId w, Clock::time_point now = Clock::now());
  // Next segment for a worker that is busy but may queue one more (CALYPSO_PIPELINE):
  // rules 1 and 2 only. Stealing and re-runs are for a worker with nothing else to do:
  // a stolen segment runs on a cold cache (Jacobi: 2-4x slower here, 9-18x over tcp), worth it only when
  // the thief would otherwise wait.
  std::optional<Pick> next_ahead_for(WorkerId w, Clock::time_point now = Clock::now());
  // When next_for(w) may offer w a re-run that is not late yet; nullopt if none will.
  std::optional<Clock::time_point> next_rerun_at(WorkerId w) const;
  // A segment that waited in w's queue (CALYPSO_PIPELINE) starts running now: its run
  // is timed from here, so that queueing does not make it look late.
  void started(std::uint32_t segment, WorkerId w, Clock::time_point now = Clock::now());
  // The first bytes of w's result for segment have arrived: the run is over and only
  // its transfer is left, so it is never late any more (a re-run could not finish first).
  void arriving(std::uint32_t segment, WorkerId w);
  // A complete result for segment from w. True if it is the first (apply it).
  bool complete(std::uint32_t segment, WorkerId w, Clock::time_point now = Clock::now());
  // w stopped running segment without a result (it died, left, or was suspected).
  // Returns true if the segment has now failed max_attempts times.
  bool abandon(std::uint32_t segment, WorkerId w, bool counts_as_failure);
  // w is gone or suspected: its unstarted preferred segments become anybody's (rule 2),
  // not something to steal only when worth it. (Policy::fixed: no effect; a lost
  // worker's block is never done, as in a classic DSM.)
  void disown(WorkerId w);
  // A segment run away from the worker that ran it last runs on a cold cache: its run
  // is counted as cold_factor times its expected time, for stealing and for being late
  // (Jacobi's segments: ~1 ms warm, 2-4 ms fetching their rows; judged by the warm
  // time, every stolen one became late and was run a third time, cold again). At least
  // kColdRunFactor; the manager moves it towards what cold runs took in earlier steps
  // (cold_factor_seen): with every page and result through the network (tcp-net),
  // jacobi's took 9-18x, and stealing by the factor 2 moved ~57 segments a run, each
  // ending later than its owner would have, 1.44-1.51 s -> 1.54-1.66 s. A thief that
  // owns no segment in the step steals by kColdRunFactor (see steal_unstarted).
  static constexpr double kColdRunFactor = 2;
  static constexpr double kMaxColdRunFactor = 16;
  void set_cold_factor(double factor) { cold_factor_ = std::clamp(factor, kColdRunFactor, kMaxColdRunFactor); }
  // Completed cold first runs of this step: their time over their expected time, taken
  // together (nullopt: none with an expected time).
  std::optional<double> cold_factor_seen() const;
  // The factor for the next step, from this step's and what its cold runs took: half way
  // to what they took, or, after a step without one, 1% less (a high factor stops
  // stealing, so it would see none and never fall), within [kColdRunFactor,
  // kMaxColdRunFactor].
  double next_cold_factor() const;
  static constexpr double kColdFactorSink = 0.99;   // per step without a cold run
  // A worker's pace: how long its segments take, from its own completed first runs on a
  // warm cache in this step (as a multiple of their expected times where those are
  // known, else their mean). Judged only once both workers have kPaceRuns such runs.
  static constexpr std::uint32_t kPaceRuns = 2;
  // A worker whose run was counted as a failure turned out to be alive (it was only
  // suspected): the failure is taken back. Suspicion is a hint, not a verdict.
  void forgive(std::uint32_t segment);

  // The lowest unfinished segment that has failed max_attempts times, which is offered
  // to nobody: the step fails unless a failure is taken back (see forgive).
  std::optional<std::uint32_t> exhausted() const;

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
    Clock::time_point first_start{};
    Clock::duration expected{}, took{};
    bool arriving = false;   // a runner's result is on its way
    bool cold = false;       // the current run is not on the worker that ran it last
    bool queued = false;     // its first run waits behind another in its worker's queue
    std::vector<WorkerId> runners;
    std::vector<Clock::time_point> starts;   // when each of runners' runs started (late_at)
  };
  static void drop_runner(Seg& s, WorkerId w) {
    const auto it = std::find(s.runners.begin(), s.runners.end(), w);
    if (it == s.runners.end()) return;
    s.starts.erase(s.starts.begin() + (it - s.runners.begin()));
    s.runners.erase(it);
  }
  // A run of segment on w is on a cold cache: another worker ran it last.
  bool cold_on(std::uint32_t segment, WorkerId w) const {
    return preferred_[segment] != kNoWorker && preferred_[segment] != w;
  }
  static bool runs(const Seg& s, WorkerId w) {
    return std::find(s.runners.begin(), s.runners.end(), w) != s.runners.end();
  }
  // Completed first runs of one worker in this step (see kPaceRuns).
  struct Pace {
    Clock::duration took{}, expected{};   // runs of segments with an expected time
    std::uint32_t runs = 0;
    Clock::duration plain_took{};         // runs of segments without one
    std::uint32_t plain_runs = 0;
  };
  std::optional<Clock::duration> predicted(const Seg& s, WorkerId w) const;
  bool overtakes(std::uint32_t segment, WorkerId w, Clock::time_point now) const;
  Clock::time_point late_at(const Seg& s) const;
  bool rerun_candidate(const Seg& s, WorkerId w) const;
  std::optional<Pick> start(std::uint32_t segment, WorkerId w, Clock::time_point now);
  void heavy_first(std::deque<std::uint32_t>& queue) const;
  std::optional<std::uint32_t> own_unstarted(WorkerId w);
  std::optional<std::uint32_t> unowned_unstarted();
  std::optional<std::uint32_t> unstarted_for(WorkerId w);   // rules 1 and 2
  std::optional<std::uint32_t> steal_unstarted(WorkerId w, Clock::time_point now);
  bool worth_stealing(WorkerId owner, const std::deque<std::uint32_t>& queue, Clock::time_point now,
                      double factor) const;
  std::optional<std::uint32_t> rerun_for(WorkerId w, Clock::time_point now) const;
  // d as long as a cold run of a segment that takes d warm.
  Clock::duration cold(Clock::duration d) const {
    return std::chrono::duration_cast<Clock::duration>(d * cold_factor_);
  }

  std::vector<Seg> segs_;
  std::uint32_t max_attempts_;
  Policy policy_;
  std::vector<bool> owned_;                             // segment has a preferred worker
  std::vector<WorkerId> preferred_;                     // as given (kNoWorker: none)
  std::map<WorkerId, std::deque<std::uint32_t>> queues_;   // preferred unstarted segments
  std::map<WorkerId, Pace> pace_;
  std::uint32_t next_unstarted_ = 0;
  std::uint32_t remaining_;
  std::uint64_t clock_ = 0;
  double rerun_factor_ = 0;
  Clock::duration before_any_{};
  Clock::duration completed_time_{};   // sum over first completions
  std::uint32_t completed_ = 0;
  double cold_factor_ = kColdRunFactor;
  Clock::duration cold_took_{}, cold_expected_{};   // completed cold first runs
};

}  // namespace calypso::sched
