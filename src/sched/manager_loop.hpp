// The manager's event loop: one thread that owns the manager's endpoint and turns
// everything that happens (messages, send failures, the suspicion timer, a parallel step
// or shutdown requested by the program's thread) into events of one loop. The program's
// thread (sequential steps) hands it a step and sleeps until the step is merged.
//
// Protocol state per worker (docs/PROTOCOL.md): alive-idle (parked, waiting for work),
// alive-running (a segment, and up to CALYPSO_PIPELINE - 1 more queued behind it),
// suspected (silent too long; its segments re-run; any message brings it back), gone
// (left, refused, or excluded: ignored).
#pragma once

#include "config.hpp"
#include "dsm/collation.hpp"
#include "dsm/home_memory.hpp"
#include "dsm/region.hpp"
#include "net/endpoint.hpp"
#include "routine_registry.hpp"
#include "sched/eager_scheduler.hpp"
#include "sched/local_home.hpp"
#include "sched/ownership.hpp"
#include "sched/protocol.hpp"
#include "sched/result_ring.hpp"
#include "sched/result_buffers.hpp"
#include "sched/launcher_notices.hpp"
#include "sched/stop_signals.hpp"
#include "unique_fd.hpp"

#include <calypso/manager.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace calypso::sched {

struct StepSpec {
  struct Routine {
    RoutineId id;
    std::uint32_t count;
    std::vector<std::byte> args;
  };
  std::vector<Routine> routines;
  std::vector<dsm::PageNumber> sequential_writes;   // pages the program wrote since last step
  std::vector<std::uint32_t> frozen;   // (first, count) runs the program froze since last step
};

class ManagerLoop {
 public:
  using Clock = std::chrono::steady_clock;

  ManagerLoop(const Config& config, const dsm::Region& region, const dsm::HomeMemory& home);
  ~ManagerLoop();
  ManagerLoop(const ManagerLoop&) = delete;
  ManagerLoop& operator=(const ManagerLoop&) = delete;

  std::string job_address() const;
  // Program thread: runs one parallel step; throws calypso::Error if it fails.
  void run_step(StepSpec spec);
  // Program thread: tells every worker the job is over and stops the loop.
  void shutdown(int code);
  Stats stats() const;
  std::size_t live_workers() const;
  // Largest argument block of a routine: an assignment is one message, and leaves at
  // least kNoticeRoom for its write notices.
  std::size_t max_args_bytes() const { return ep_.max_message() - kNoticeRoom; }
  static constexpr std::size_t kNoticeRoom = 64 * 1024;
  // Program thread: waits until n workers are alive and have allocated the memory behind
  // the region in use now (`prepare`), or the timeout passes; returns how many are.
  std::size_t wait_for_workers(std::size_t n, std::chrono::milliseconds timeout);
  // When a wait that goes on says so (a warning: what it waits for, and for how long).
  static constexpr std::chrono::seconds kWaitNoteAfter{5}, kWaitNoteEvery{15};
  // Program thread: the region's prefix in use grew to `bytes` (an allocation).
  void note_used(std::size_t bytes) { used_bytes_.store(bytes, std::memory_order_relaxed); }

 private:
  enum class WorkerState : std::uint8_t { alive, suspected, gone };
  // A result arriving in chunks. Providers may deliver a peer's messages out of order,
  // so chunks are placed by offset and a worker may have several results in flight.
  struct ResultKey {
    StepId step;
    std::uint32_t segment, attempt;
    auto operator<=>(const ResultKey&) const = default;
  };
  // Unfinished results nobody wants that a worker may have: a real one has at most
  // CALYPSO_PIPELINE (16) in flight and finishes each.
  static constexpr std::size_t kMaxUnwantedPartials = 64;
  // A result nobody wants any more (its step is over, or its segment is done) is still
  // counted to its end, without keeping its bytes: the worker is idle only once it has
  // sent the whole of it.
  struct Assembly {
    std::uint64_t received = 0;
    std::uint64_t total = 0;
    bool discard = false;
    ResultBuffers::Bytes bytes;
    Clock::time_point last_chunk;   // a wanted result whose rest stops coming: see on_tick
  };
  struct Worker {
    net::PeerId peer = net::kNoPeer;
    net::PeerId heartbeat_peer = net::kNoPeer;   // its heartbeat endpoint: we ping it
    // A worker on this host with a message channel: a pidfd of its process in epoll_,
    // readable once it has exited. Its channel takes messages until its ring is full, so
    // without this a killed worker would be found only by missing heartbeats.
    UniqueFd exit_watch;
    WorkerState state = WorkerState::alive;
    Clock::time_point last_seen;
    bool parked = false;                    // asked for work and holds none
    bool send_stuck = false;                // the last send to it timed out (see post)
    // The region's bytes in use it last said it has allocated (`prepared`); none yet
    // while it allocates what `welcome` said: it does not count as live until then.
    std::optional<std::uint64_t> prepared;
    bool preparing = false;                 // a `prepare` to it is unanswered
    // Assignments of the open step sent and not answered yet, oldest first: the first
    // not `arriving` is the one it runs, the others wait in its queue (CALYPSO_PIPELINE).
    // With CALYPSO_PIPELINE > 1, one whose result has begun to arrive in several chunks
    // is run: it no longer takes a pipeline slot, so the next assignment goes out while
    // the rest of a large result is in flight (Jacobi's 1.9 MB results took 1-2 ms, with
    // the worker idle), but it stays held until the result is complete, so that losing
    // the worker re-runs it.
    struct Held {
      std::uint64_t seq;
      std::uint32_t segment;
      bool arriving = false;
    };
    std::vector<Held> running;
    // Assignments it has yet to finish running (not arriving).
    std::size_t holding() const {
      return static_cast<std::size_t>(std::count_if(running.begin(), running.end(),
                                                    [](const Held& h) { return !h.arriving; }));
    }
    const Held* current() const {   // the one it runs now, if any
      auto it = std::find_if(running.begin(), running.end(), [](const Held& h) { return !h.arriving; });
      return it == running.end() ? nullptr : &*it;
    }
    std::uint64_t next_seq = 1;             // of its next assignment
    // The segments whose runs were counted as failures when this worker was suspected
    // (step, segment): forgiven if the worker comes back.
    std::vector<std::pair<StepId, std::uint32_t>> counted_failures;
    // It sent a result of a short segment (kResultShortRun): from then on it may hold
    // results back (see lose()).
    bool bunches = false;
    std::uint64_t synced_version = 0;       // memory version its cache reflects
    std::size_t frozen_sent = 0;            // words of frozen_runs_ its assignments carried
    std::map<ResultKey, Assembly> assemblies;
    // Pages it reported reading (read_set), and in which step: a noticed page read in
    // the last kPushWindow steps is pushed with its next assignment instead.
    std::unordered_map<dsm::PageNumber, StepId> reads;
    std::string host;
    std::uint32_t pid = 0;
    // Its endpoints' addresses, as its hello gave them: a later hello naming one of them
    // (on_hello), and telling a worker given up that speaks again so (tell_given_up).
    std::vector<std::byte> address, heartbeat_address;
    // Gone because silent for CALYPSO_MANAGER_TIMEOUT_MS (on_tick): if it speaks again
    // (stopped that long, then continued), it is told it was given up, at most once a
    // second. Not a worker that left, failed, or whose address a newcomer took.
    bool given_up = false;
    std::optional<Clock::time_point> told_given_up;
    // On this host (CALYPSO_LOCAL_RESULTS): its result ring, opened when it joined.
    std::optional<RingReader> ring;
  };
  // A complete result: in a buffer of its own (it came in messages), or lent from the
  // worker's result ring, read where the worker wrote it (its room is freed when the
  // result is dropped: for a kept one, when its step ends).
  struct StepResult {
    ResultBuffers::Bytes bytes;
    std::optional<RingReader::Loan> loan;
    std::span<const std::byte> body() const noexcept {
      return loan ? loan->bytes() : std::span<const std::byte>(bytes);
    }
    // A lent result becomes a copy in a buffer of its own (from `buffers`), and its loan
    // ends; one in a buffer already stays as it is.
    void own_copy(ResultBuffers& buffers);
  };
  struct OpenStep {
    StepId id = 0;
    StepSpec spec;
    EagerScheduler sched{0, 1};
    std::vector<std::uint32_t> routine_of, index_of;   // global segment -> routine, index
    std::vector<StepResult> results;
    std::vector<WorkerId> accepted_from;               // who produced each kept result
    // Who was sent each run of a segment: only that worker may answer for the run (a
    // result naming a run it was never sent would complete the segment with writes the
    // segment never made). First runs by segment; re-runs, rarer, listed.
    std::vector<WorkerId> first_run_by;
    std::vector<std::tuple<std::uint32_t, std::uint32_t, WorkerId>> reruns_by;   // segment, attempt, worker
    bool was_sent(std::uint32_t segment, std::uint32_t attempt, WorkerId w) const {
      if (attempt == 1) return first_run_by[segment] == w;
      return std::find(reruns_by.begin(), reruns_by.end(), std::tuple{segment, attempt, w}) != reruns_by.end();
    }
    Clock::time_point started;
    std::optional<Clock::time_point> no_workers_since;
    // A segment that reached CALYPSO_MAX_ATTEMPTS failures, and since when. The step
    // fails only if the count still stands a suspicion period later: a suspected
    // worker that comes back meanwhile takes its failure back.
    std::optional<std::pair<std::uint32_t, Clock::time_point>> doomed;
  };
  // One memory version: the pages it changed, and for a parallel step, which worker was
  // the only writer of each page (kNoWorker if several, or the program) and whose kept
  // results those were, so that a worker can replay its own diffs instead of refetching.
  struct Version {
    std::vector<dsm::PageNumber> pages;              // sorted, unique
    std::vector<WorkerId> sole_writer;               // parallel to pages (may be empty)
    StepId step = 0;                                 // 0: a sequential step
    std::map<WorkerId, std::vector<std::uint32_t>> kept;   // worker -> its kept segments
  };
  struct Notices {
    std::vector<std::uint32_t> invalidate, own_segments, own_pages, pushed;
    StepId own_step = 0;
    bool invalidate_all = false;
  };

  void loop();
  void drain_endpoint();
  void on_event(const net::Event& e);
  void on_launcher_notices();
  bool from_the_worker_it_names(const Message& m, net::PeerId from);
  // inner: a message of a bundle (on_bundle), taken without the checks done for the bundle.
  void on_message(const Message& m, bool inner = false);
  void on_hello(const Message& m, net::PeerId from);
  static std::string leave_reason(const Message& m);
  void on_exit(WorkerId id);   // its exit_watch fired
  static constexpr std::uint64_t kExitTag = std::uint64_t{1} << 40;   // epoll data: exit_watch
  void on_request_work(const Message& m, WorkerId id, Worker& w);
  void on_prepared(const Message& m, WorkerId id, Worker& w);
  void prepare_if_behind(WorkerId id, Worker& w);   // sends a prepare of prepare_target_
  void on_page_request(const Message& m, WorkerId id, Worker& w);
  void on_read_set(const Message& m, WorkerId id, Worker& w);
  void on_result_chunk(const Message& m, WorkerId id, Worker& w);
  void on_result(WorkerId id, Worker& w, const ResultKey& key, StepResult result);
  void on_bundle(const Message& m, WorkerId id);
  bool ran(WorkerId id, Worker& w, std::uint32_t segment);
  void on_tick();
  void ping_workers();
  void release(Worker& w);
  void update_live();
  void take_commands();
  // `shutdown` to every worker (each send waiting at most `patience` to be taken), then
  // 200 ms for them to leave.
  void tell_workers_job_over(int code, std::chrono::milliseconds patience = std::chrono::milliseconds(200));
  void tell_given_up(WorkerId id, Worker& w);
  void on_stop_signal();

  void open_step(StepSpec spec);
  void start_step(OpenStep s);
  std::vector<WorkerId> preferred_workers(const OpenStep& s) const;
  std::vector<WorkerId> alive_workers() const;   // in id order
  void dispatch();
  // Assignments a busy worker holds: CALYPSO_PIPELINE, or more while this step's segments
  // are short (see kShortSegment), about kQueuedWork of them, so that a worker that
  // ships several results in one bundle finds as many new segments waiting.
  std::size_t pipeline_depth() const;
  static constexpr std::chrono::microseconds kQueuedWork{2000};
  static constexpr std::size_t kMaxPipeline = 32;
  struct Outgoing {
    Encoder message;
    std::uint64_t seq;   // its Worker::Held
  };
  // The assignment, for dispatch() to send (bundled with the others for w).
  Outgoing assign(WorkerId id, Worker& w, const Pick& p);
  // Sends the batch, several as one bundle; false if sending failed (w lost). made: an
  // assignment made but not in the batch, taken back too if sending fails.
  bool flush(WorkerId id, Worker& w, std::vector<Outgoing>& batch,
             std::optional<std::uint64_t> made = std::nullopt);
  static constexpr std::size_t kBundleBytes = 64 * 1024;
  Notices notices_for(WorkerId id, const Worker& w, std::size_t args_bytes) const;
  // Moves noticed pages that w read lately from n.invalidate to n.pushed, as many as
  // fit in room bytes (page number and data each) and CALYPSO_PUSH_PAGES.
  void choose_pushes(const Worker& w, Notices& n, std::size_t room) const;
  static constexpr StepId kPushWindow = 4;            // steps a reported read counts
  static constexpr std::size_t kMaxReadsKept = 16384; // per worker
  void finish_step();
  void fail_step(const std::string& why);
  void end_step(std::optional<std::string> error);
  void lose(WorkerId id, Worker& w, const char* why, bool counts_as_failure);
  void refuse(const std::vector<std::byte>& address, const std::string& why, RefuseCode code = RefuseCode::error);
  bool send(WorkerId id, Worker& w, Encoder& e);
  // One message to w, without acting on a failure (send's policy is lose_after_send).
  net::SendStatus post(Worker& w, std::span<const std::byte> message);
  // Loses w after a failed send, naming why.
  void lose_after_send(WorkerId id, Worker& w, net::SendStatus status);
  void violation(WorkerId id, const std::string& what);
  std::string segment_name(std::uint32_t segment) const;
  std::uint64_t version() const { return log_base_ + log_.size(); }
  void record_version(Version v);
  Version collate_step();

  const Config& config_;
  const dsm::Region& region_;
  const dsm::HomeMemory& home_;
  dsm::Collation collation_;
  net::Endpoint ep_;
  // Page reads that bypass the event loop, by RMA (when the endpoint has them) and by
  // workers on this host (local_home.hpp): they read home memory, then this control
  // word, which holds the open step's id and is cleared before collation changes home
  // memory, so they know whether the pages were the snapshot (docs/PROTOCOL.md).
  // Declared after ep_: deregistered before it closes.
  ControlWord control_;
  net::Registration home_mr_, control_mr_;
  void set_control(StepId open_step) noexcept { control_.set(open_step); }
  std::string hostname_;   // a worker whose hello names it gets a LocalOffer
  UniqueFd epoll_, wakeup_, timer_;
  UniqueFd late_timer_;   // one-shot: when a parked worker may re-run a late segment
  LauncherNotices launcher_notices_;   // calypso-run's notices of its workers' exits
  StopSignals stop_signals_;   // SIGTERM, SIGINT, SIGHUP: the workers are told first
  // Workers that will not join, as (host, pid): those calypso-run saw die before they
  // joined (its host is ours), and those refused for running another executable with
  // this job's key. A wait_for_workers() counts them (once each).
  std::set<std::pair<std::string, std::uint32_t>> never_joining_set_;
  void arm_late_timer();

  std::map<WorkerId, Worker> workers_;
  WorkerId next_worker_ = 1;
  StepId next_step_ = 1;
  std::optional<OpenStep> step_;
  std::optional<OpenStep> pending_static_;   // static schedule: waiting for its workers
  std::optional<dsm::Conflict> conflict_;     // first conflict found while collating
  bool shutting_down_ = false;                // late joiners are refused
  // The kept run of each (routine, index, count) in the last step that ran it.
  struct LastRun {
    WorkerId runner;           // whose result was kept: preferred next time (warm cache)
    Clock::duration took;      // expected duration: recent runs, see finish_step (set_expected)
  };
  using RunKey = std::tuple<RoutineId, std::uint32_t, std::uint32_t>;   // routine, index, count
  static RunKey run_key(const OpenStep& s, std::uint32_t segment);
  void even_out_owners(std::span<const KeptRun> kept);
  std::map<RunKey, LastRun> last_run_;
  Evening evening_;   // which segment changes owner between steps (ownership.hpp)
  // What a segment's run away from its last worker costs, as a multiple of its warm time:
  // learned from the cold runs of earlier steps (EagerScheduler::next_cold_factor).
  double cold_factor_ = EagerScheduler::kColdRunFactor;
  std::vector<bool> ever_written_;   // per page: written by anyone since the start (Welcome)
  std::deque<Version> log_;
  // Every page run the program froze, in order, as (first, count) u32 pairs: each worker
  // learns them with its assignments (Worker::frozen_sent), all of them from its first.
  std::vector<std::uint32_t> frozen_runs_;
  std::uint64_t log_base_ = 0;
  std::vector<std::byte> scratch_;
  // While a bundle's messages are taken, dispatch() waits for the last of them, so that
  // the assignments answering several results go out as one bundle too.
  bool in_bundle_ = false;
  bool dispatch_due_ = false;
  std::vector<std::pair<StepId, std::uint32_t>> prefault_due_;   // kept results to map
  ResultBuffers result_buffers_;      // the last step's result buffers, for the next one's

  std::atomic<std::size_t> used_bytes_{0};   // note_used(), read for each welcome

  mutable std::mutex mutex_;          // guards everything below
  std::condition_variable cv_;
  std::optional<StepSpec> pending_step_;
  std::optional<std::optional<std::string>> step_outcome_;   // set when the step ends
  std::optional<int> shutdown_code_;
  bool stopped_ = false;
  Stats stats_;
  std::size_t live_ = 0;                // alive and prepared for what welcome said
  std::size_t ready_ = 0;               // alive and prepared for ready_target_
  // For wait_for_workers(), besides ready_: workers that joined (ever), alive ones not yet
  // ready, suspected ones (they may come back), and those that will not join (died
  // before joining, or refused).
  std::size_t joined_ = 0, preparing_ = 0, suspected_ = 0, never_joining_ = 0;
  std::uint64_t ready_target_ = 0;      // what wait_for_workers() last asked for
  std::uint64_t ready_counted_for_ = 0; // the target ready_ was counted against
  // Loop thread only (below the mutex's fields for want of a better place): the target
  // the loop has sent `prepare` for.
  std::uint64_t prepare_target_ = 0;

  std::thread thread_;
};

}  // namespace calypso::sched
