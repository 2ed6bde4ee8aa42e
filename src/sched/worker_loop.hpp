// A worker process: joins the manager, then loops asking for work, running segments and
// shipping their diffs. Page faults of the running segment fetch pages from the manager
// on the same thread (no helper thread runs beside user code while it computes, which
// would make every protection change a cross-core TLB shoot-down); a separate heartbeat
// thread wakes only to tell the manager this worker is alive.
#pragma once

#include "config.hpp"
#include "dsm/fault_handler.hpp"
#include "dsm/page_cache.hpp"
#include "dsm/region.hpp"
#include "net/endpoint.hpp"
#include "net/local_channel.hpp"
#include "sched/assign_queue.hpp"
#include "sched/job_address.hpp"
#include "sched/local_home.hpp"
#include "sched/protocol.hpp"
#include "sched/result_ring.hpp"
#include "sched/start_again.hpp"
#include "unique_fd.hpp"

#include <calypso/error.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace calypso::sched {

// Thrown by the constructor when the job ended before this worker could join: it was
// started too late to help, which is not a failure (the process exits 0).
struct JobEnded : Error {
  using Error::Error;
};

class WorkerLoop final : public dsm::PageSource {
 public:
  // Connects to the manager named by config.manager_address and maps the region the
  // manager describes. Throws calypso::Error if refused or unreachable.
  explicit WorkerLoop(const Config& config);
  ~WorkerLoop();
  WorkerLoop(const WorkerLoop&) = delete;
  WorkerLoop& operator=(const WorkerLoop&) = delete;

  // Serves segments until the manager ends the job; returns the process's exit code.
  int run();

  dsm::FetchResult fetch(dsm::PageNumber first, dsm::PageNumber count) noexcept override;

 private:
  std::vector<std::byte> receive(std::chrono::milliseconds timeout);
  std::optional<Message> expect(std::vector<std::byte>& storage, MsgType type,
                                std::chrono::milliseconds timeout);
  void join(const std::string& identity);
  void take_welcome(const Welcome& w, std::span<const std::byte> runs, std::optional<net::LocalChannel>& channel);
  void send_leave(net::Endpoint& ep, net::PeerId manager, std::string_view why);
  bool run_segment(const AssignView& a);   // true if a result was sent
  void apply_notices(const AssignView& a);
  // The running segment's result: its body, and whether that is in ring_'s room.
  std::pair<std::span<const std::byte>, bool> finish_result(std::uint32_t segment);
  void keep_result(std::uint32_t segment, std::span<const std::byte> body, bool in_ring,
                   std::optional<std::uint64_t> ring_at);
  // body is in result_, or (in_ring) in the room ring_->reserve gave. Both return the
  // ring position the result went to, if it went there.
  std::optional<std::uint64_t> ship(const AssignView& a, std::span<const std::byte> body, bool in_ring,
                                    bool short_run);
  std::optional<std::uint64_t> send_result(const AssignView& a, std::span<const std::byte> body, bool in_ring,
                                           std::uint32_t flags);
  void flush_outbox();
  std::size_t assignments_here();
  int prepare(std::uint64_t used_bytes);   // allocate the region in use; say `prepared`
  void take_in(const net::Event& e);   // a received message into inbox_
  // Holding results (ship) is for segments shorter than kShortSegment (protocol.hpp),
  // and only across segments that ran short here before (run_segment).
  bool known_short(const AssignView& a) const;
  void note_run(const AssignView& a, bool short_run);
  static constexpr std::size_t kHoldBytes = 32 * 1024;
  static constexpr std::chrono::milliseconds kHoldFor{1};
  void setup_rma(const Welcome& w);
  bool read_local(dsm::PageNumber first, dsm::PageNumber count, dsm::FetchResult& out) noexcept;
  bool take_direct_read(StepId open, std::span<const std::byte> pages, dsm::PageNumber count,
                        dsm::FetchResult& out) noexcept;
  bool read_pages(dsm::PageNumber first, dsm::PageNumber count, dsm::FetchResult& out) noexcept;
  void send_request();   // request_work, naming the last assignment taken
  void to_manager(std::span<const std::span<const std::byte>> parts, const char* what);
  void take_message(std::vector<std::byte> raw, const char* when);
  bool run_assignment(const std::vector<std::byte>& raw);   // true if a result was sent
  void drop_cache();
  // How long an assignment waits for a missing predecessor before the worker gives up
  // on it (reordering by the provider takes microseconds; a lost one never comes).
  static constexpr std::chrono::milliseconds kAssignGapPatience{200};
  static constexpr std::size_t kMaxRemembered = 4096;   // segments in wrote_
  void heartbeat_loop();
  void heartbeat_once(std::chrono::steady_clock::time_point& last_heard);
  [[noreturn]] void leave();
  void on_shutdown(const Message& m);   // exits, unless a given-up notice for another id
  [[noreturn]] void start_again_as_new_worker(StartReason why, const char* saying, const char* failing, int code);
  JobAddress wait_for_job();   // CALYPSO_MANAGER, or the address file calypso-run fills
  static void run_as_batch();  // CALYPSO_WORKER_BATCH
  void leave_if_terminated();
  [[noreturn]] void exit_now(int code);
  static void flush_output() noexcept;
  static void release_queues_of_worker() noexcept;   // its shm queue files (exit paths)
  // atexit: a worker ends by exit_now (_exit) only, so exit() means the program's own
  // code exited (a routine, or main after the Runtime): say so, and fail (status 70).
  static void exit_by_program();

  const Config& config_;
  // First, before libfabric starts any thread: SIGTERM blocked in every thread and
  // read from this signalfd by the heartbeat thread (a SIGTERM during start-up waits).
  UniqueFd sigterm_;                       // signalfd: SIGTERM means "leave gracefully"
  std::string manager_address_;            // the job address, once known
  net::Address manager_endpoint_;          // its endpoint part, as the provider takes it
  // Where RMA page reads land (a fetch group, then the control word). Declared before
  // ep_: a read that gave up may still complete into it until the endpoint closes.
  std::vector<std::byte> staging_;
  net::Endpoint ep_;
  // Heartbeats go out on their own endpoint, used only by the heartbeat thread. Both
  // endpoints open before the fault handler is installed (see ManagerImpl::faults_).
  net::Endpoint hb_ep_;
  net::PeerId hb_manager_ = net::kNoPeer;
  net::PeerId manager_ = net::kNoPeer;
  WorkerId id_ = kNoWorker;
  std::uint32_t fetch_pages_ = 1;
  std::uint32_t fetch_ahead_ = 1;   // most pages one (read-ahead) fetch takes
  std::chrono::milliseconds heartbeat_{200};
  std::deque<std::vector<std::byte>> inbox_;
  AssignQueue assigns_;   // assignments received, taken in the manager's order
  std::optional<dsm::Region> region_;
  std::optional<dsm::PageCache> cache_;
  std::optional<dsm::FaultHandler> faults_;
  StepId step_ = 0;
  std::vector<std::byte> fetch_reply_;
  // RMA page reads (Welcome::rma): the manager's home memory and control word, and the
  // registration of staging_ (after ep_: deregistered before the endpoint closes).
  bool rma_ = false;
  bool rma_in_order_ = false;   // the manager serves our reads in posting order
  net::RemoteMemory home_mem_, control_mem_;
  net::Registration staging_mr_;
  // On the manager's host (Welcome::local, CALYPSO_LOCAL_READS): its home memory (read
  // with pread) and control word (mapped); pages come from there before RMA or messages,
  // until a read fails.
  std::optional<LocalHome> local_;
  bool local_failed_ = false;
  // Its result ring (CALYPSO_LOCAL_RESULTS), offered in hello and kept only if the
  // manager took it (Welcome::local_results): for results of at least kRingMinBytes.
  std::optional<ResultRing> ring_;
  static constexpr std::size_t kRingMinBytes = 16 << 10;
  std::uint32_t pages_read_ = 0;          // in the running segment, for the result
  std::vector<std::byte> result_;
  std::optional<Bundler> outbox_;          // messages to the manager waiting to go together
  std::vector<std::uint32_t> held_;        // Segment::index of the results in it
  std::chrono::steady_clock::time_point held_since_;
  // By routine and count, a bit per index: its last run here was short.
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::vector<bool>> short_runs_;
  std::size_t short_run_bits_ = 0;
  static constexpr std::size_t kMaxShortRunBits = std::size_t{1} << 24;   // 2 MiB
  // This step's results, by segment: if the manager keeps them, the worker replays its
  // own diffs at the next step instead of refetching the pages (see Assign::own_pages).
  // A result that went through the ring is read from there, if still intact.
  struct KeptResult {
    std::vector<std::byte> body;            // empty when in the ring
    std::optional<std::uint64_t> ring_at;   // its position there
    std::size_t ring_bytes = 0;
  };
  std::map<std::uint32_t, KeptResult> kept_;
  StepId kept_step_ = 0;
  // What each segment wrote the last time this worker ran it, by routine, index, count
  // and arguments (Jacobi alternates two argument sets): made writable up front next
  // time (PageCache::prepare_writes). Forgotten wholesale when it grows past a bound.
  struct SegmentKey {
    std::uint32_t routine;   // RoutineId
    std::uint32_t index, count;
    std::size_t args_hash;
    auto operator<=>(const SegmentKey&) const = default;
  };
  std::map<SegmentKey, std::vector<dsm::PageNumber>> wrote_;

  // Where a worker's time goes, printed at exit with CALYPSO_STATS (seconds).
  struct Times {
    double notices = 0;    // invalidating / replaying pages before a segment
    double segment = 0;    // the routine, its faults and fetches included
    double segment_cpu = 0;   // of which: this thread on a CPU (the rest: preempted or waiting)
    double fetch = 0;      // of which: waiting for pages
    double prepare = 0;    // twinning the pages a segment is expected to write
    double finish = 0;     // diff encoding and restoring written pages
    double send = 0;       // shipping results
    double wait = 0;       // waiting for an assignment
    double prefault = 0;   // allocating the region in use ahead (CALYPSO_PREFAULT)
    std::uint64_t segments = 0, fetches = 0, local_fetches = 0, rma_fetches = 0, rma_together = 0,
                  prefault_bytes = 0;
    // Write notices naming our own accepted results: replayed (of which read back from
    // the result ring), or refetched because we no longer held them all.
    std::uint64_t replays = 0, ring_replays = 0, refetches = 0;
  } times_;

  std::chrono::milliseconds manager_timeout_{3000};
  dsm::PageNumber prefaulted_pages_ = 0;   // the region's first pages prepare() allocated
  std::uint32_t segment_index_ = 0;        // of the running segment (fault injection)
  std::uint32_t fetches_in_segment_ = 0;
  std::atomic_flag ending_;                // set by the first thread to act on a shutdown
  UniqueFd hb_stop_;                       // eventfd: ends the heartbeat thread
  std::thread hb_thread_;
};

}  // namespace calypso::sched
