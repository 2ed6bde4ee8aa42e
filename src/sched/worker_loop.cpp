// The worker's side of the protocol; see worker_loop.hpp.
#include "sched/worker_loop.hpp"

#include "build_id.hpp"
#include "dsm/page_cache.hpp"
#include "log.hpp"
#include "net/listen_probe.hpp"
#include "net/stall_watch.hpp"
#include "private_file.hpp"
#include "routine_registry.hpp"
#include "sched/job_address.hpp"
#include "sched/local_messages.hpp"
#include "shared_vars.hpp"

#include <calypso/error.hpp>

#include "sched/fault_injection.hpp"

#include <algorithm>
#include <array>
#include <csetjmp>
#include <cstdlib>
#include <fstream>
#include <string_view>
#include <thread>
#include <csignal>
#include <cstring>
#include <poll.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sched.h>
#include <unistd.h>

namespace calypso::sched {
namespace {

// Page kinds of a fetch group read directly (RMA or local): every page is data (zero
// pages are told apart only by page_data messages).
constexpr std::array<std::uint8_t, 64> kAllData = [] {
  std::array<std::uint8_t, 64> a{};
  a.fill(1);
  return a;
}();

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// CPU time of the calling thread: beside wall time it tells a slow segment (cache
// misses, faults) from one whose thread waited for a CPU or for the network.
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

using namespace std::chrono_literals;

// Where a segment that has to be given up (its step is over) jumps back to. Only the
// thread running segments uses it.
sigjmp_buf g_abort_point;
void abort_segment_hook() { siglongjmp(g_abort_point, 1); }

// The process's worker (there is one), for what a signal handler must do before the
// process ends.
WorkerLoop* g_worker = nullptr;

net::EndpointConfig endpoint_config(const std::string& provider, std::size_t recv_depth, bool rma = false) {
  net::EndpointConfig e;
  e.provider = provider;
  e.max_message = std::size_t{1} << 20;
  e.recv_depth = recv_depth;
  e.rma = rma;
  e.send_depth = 4;
  return e;
}

// The provider is known before the manager's address when the launcher started this
// worker together with the manager (CALYPSO_MANAGER_FILE): opening the endpoints first
// overlaps libfabric's start-up (about 0.3 s here) with the manager's.
std::string provider_of(const Config& c) {
  return c.manager_address.empty() ? c.provider : JobAddress::parse(c.manager_address).provider;
}

// SIGTERM is taken by the heartbeat thread through a signalfd (it can talk to the
// manager at any moment; the segment thread may be deep in user code). Blocked before
// any thread starts (libfabric starts some), so it is blocked in all of them, and a
// SIGTERM that comes during start-up waits for the heartbeat thread instead of killing.
UniqueFd block_sigterm() {
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &term, nullptr);
  UniqueFd fd(signalfd(-1, &term, SFD_CLOEXEC | SFD_NONBLOCK));
  if (fd.get() < 0) throw Error("calypso: signalfd failed");
  return fd;
}

}  // namespace

WorkerLoop::WorkerLoop(const Config& config)
    : config_(config),
      sigterm_(block_sigterm()),
      ep_(net::Endpoint::open(endpoint_config(provider_of(config), 8, config.wants_rma(provider_of(config))))),
      hb_ep_(net::Endpoint::open(endpoint_config(provider_of(config), 2))) {
  g_worker = this;
  why_started();   // taken out of the environment now, before a routine could start a program
  JobAddress job = wait_for_job();
  manager_address_ = job.to_string();
  manager_endpoint_ = net::Address::from_string(job.endpoint);
  manager_ = ep_.add_peer(manager_endpoint_);
  hb_manager_ = hb_ep_.add_peer(manager_endpoint_);
  join(executable_identity());
  if (why_started() != StartReason::first) {
    LOG_WARN("joined again, as a new worker, after %s", why_started() == StartReason::given_up
                                                            ? "the manager had given this one up"
                                                            : "nothing was heard from the manager for a while");
  }
  hb_stop_ = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (hb_stop_.get() < 0) throw Error("calypso: eventfd failed");
  hb_thread_ = std::thread([this] { heartbeat_loop(); });
  std::atexit(&WorkerLoop::exit_by_program);
}

void WorkerLoop::exit_by_program() {
  if (g_worker == nullptr) return;   // (no WorkerLoop any more: an exit like any other)
  log::raw("calypso: the program called exit() in a worker (a routine must return, and main must leave "
           "the worker to rt.run()): the worker cannot go on; its segment runs elsewhere. Worker exiting "
           "with status 70\n");
  g_worker->exit_now(70);   // flushes what the program printed, and removes the queue files
}

// The thread that runs segments (and the threads it starts later) under SCHED_BATCH
// (CALYPSO_WORKER_BATCH; by default when this host's Calypso processes outnumber its
// CPUs): same CPU share, but its wake-ups never preempt a running thread. The manager's
// loop is on every worker's critical path (assignments, collation, the next step), and
// on a host where workers take every core, a worker woken by its assignment used to
// preempt it: a jacobi run (2 workers, 2 cores) had the manager's loop preempted 301 times,
// 130 ms in all in a 1 s run, and one step in ten handing out the second worker's first
// assignment ~1 ms late; with batch workers, 61 times and 3 ms (docs/PERFORMANCE.md,
// session 38). The heartbeat thread, started before, keeps the normal policy. A refusal
// (a seccomp filter, an old kernel) leaves the normal policy, which only costs time.
void WorkerLoop::run_as_batch() {
  sched_param none{};
  if (sched_setscheduler(0, SCHED_BATCH, &none) != 0) {
    LOG_DEBUG("SCHED_BATCH refused (%s): segments run under the normal policy", std::strerror(errno));
  }
}

JobAddress WorkerLoop::wait_for_job() {
  const Config& c = config_;
  if (!c.manager_address.empty()) return JobAddress::parse(c.manager_address);
  // Start-up only, and bounded: not worth an inotify (which a shared file system would
  // not serve anyway). A rank launch's file is on one that other hosts write: looked at
  // less often, and waited for longer (its manager may start last, and a client's cache
  // of the directory may hide the new file for a while).
  const auto wait = c.rendezvous ? 120s : 60s;
  const auto pause = c.rendezvous ? 50ms : 5ms;
  for (auto deadline = std::chrono::steady_clock::now() + wait; std::chrono::steady_clock::now() < deadline;) {
    leave_if_terminated();
    std::ifstream f(c.manager_file);
    std::string address;
    if (f >> address) {
      // A rank launch's file is in a directory others may write: one that is not this
      // user's own, readable by them only, may have been planted to draw the workers to
      // another "manager" (private_file.hpp).
      if (const std::string refused = c.rendezvous ? refuse_unless_private(c.manager_file) : ""; !refused.empty()) {
        throw Error("calypso: refusing the job address in " + c.manager_file + ": " + refused +
                    ". Is CALYPSO_RENDEZVOUS a directory others can write?");
      }
      return JobAddress::parse(address);
    }
    std::this_thread::sleep_for(pause);
  }
  throw Error("calypso: the manager did not publish its address in " + c.manager_file + " within " +
              std::to_string(std::chrono::duration_cast<std::chrono::seconds>(wait).count()) + " s" +
              (c.rendezvous ? " (rank 0 is the manager: did it start, and is CALYPSO_RENDEZVOUS the same "
                              "directory, shared, in every process?)"
                            : ""));
}

WorkerLoop::~WorkerLoop() {
  g_worker = nullptr;
  std::uint64_t one = 1;
  [[maybe_unused]] auto r = write(hb_stop_.get(), &one, sizeof one);
  if (hb_thread_.joinable()) hb_thread_.join();
}

void WorkerLoop::join(const std::string& identity) {
  JobAddress job = JobAddress::parse(manager_address_);
  auto addr = ep_.local_address();
  auto hb_addr = hb_ep_.local_address();
  Hello h{};
  h.job_key = job.job_key;
  h.pid = static_cast<std::uint32_t>(getpid());
  h.identity_bytes = static_cast<std::uint32_t>(identity.size());
  h.address_bytes = static_cast<std::uint32_t>(addr.bytes.size());
  h.heartbeat_address_bytes = static_cast<std::uint32_t>(hb_addr.bytes.size());
  gethostname(h.host, sizeof h.host - 1);
  if (config_.local_results > 0) {   // a fresh ring: the manager takes it from position 0
    ring_.reset();
    try {
      ring_.emplace(config_.local_results);
    } catch (const std::exception& e) {
      LOG_INFO("results go in messages: %s", e.what());
    }
  }
  if (ring_) h.results = ring_->offer();
  // Our message channel (CALYPSO_LOCAL_MESSAGES), handed to ep_ if the manager takes it
  // (Welcome::local_messages: it runs on this host).
  std::optional<net::LocalChannel> channel;
  if (config_.local_messages) {
    try {
      channel.emplace(net::LocalChannel::create(ep_.max_message()));
      h.messages = offer_of(*channel);
    } catch (const std::exception& e) {
      LOG_INFO("messages go through the network: %s", e.what());
    }
  }
  Encoder e(MsgType::hello, kNoWorker, h);
  e.append(identity.data(), identity.size()).append(addr.bytes).append(hb_addr.bytes);
  auto bytes = e.bytes();
  // The first send also makes the connection: nothing listening, or no route, ends it.
  // In slices, so that a SIGTERM meanwhile (calypso-run stopping a job whose manager
  // died at start) is taken within 200 ms, not after the whole wait: a send that runs
  // out of patience posted nothing, so it may simply go again.
  // tcp;ofi_rxm does not report a refused connection, so after a second without one
  // the kernel is asked whether anything listens there at all (net/listen_probe.hpp): a
  // stale address, or a manager that has died, is said at once, not after the wait.
  const auto reach = std::min<std::chrono::milliseconds>(10s, config_.manager_timeout);
  const bool tcp = manager_address_.starts_with("tcp/");
  auto probe_at = std::chrono::steady_clock::now() + 1s;
  net::SendStatus sent = net::SendStatus::again;
  for (auto until = std::chrono::steady_clock::now() + reach;
       sent == net::SendStatus::again && std::chrono::steady_clock::now() < until;) {
    sent = ep_.send(manager_, bytes, 200ms);
    leave_if_terminated();
    if (sent != net::SendStatus::again || !tcp || std::chrono::steady_clock::now() < probe_at) continue;
    probe_at = std::chrono::steady_clock::now() + 2s;
    const net::ListenProbe p = net::probe_listener(manager_endpoint_, 200ms);
    if (p.answer == net::ListenProbe::Answer::refused) {
      throw Error("calypso: cannot reach the manager at " + manager_address_ + ": nothing listens at " + p.where +
                  " (connection refused): the job has ended, or the address is wrong");
    }
  }
  if (sent != net::SendStatus::ok) {
    throw Error("calypso: cannot reach the manager at " + manager_address_ + " (no connection within " +
                std::to_string(reach.count()) + " ms): is the job still running, and is that address "
                "reachable from this host?");
  }
  // A manager that has just ended its job may take the hello and never answer: wait no
  // longer than for a silent manager later on.
  const auto patience = config_.manager_timeout;
  for (auto deadline = std::chrono::steady_clock::now() + patience; std::chrono::steady_clock::now() < deadline;) {
    leave_if_terminated();
    std::vector<std::byte> raw = receive(200ms);
    std::string why;
    auto m = raw.empty() ? std::nullopt : decode(raw, why);
    if (!m) continue;
    if (m->type() == MsgType::refuse) {
      auto r = fixed_part<Refuse>(*m, why);
      auto text = tail<Refuse>(*m);
      const std::string reason(reinterpret_cast<const char*>(text.data()),
                               std::min<std::size_t>(text.size(), r ? r->reason_bytes : 0));
      if (r && r->code == RefuseCode::job_ending) throw JobEnded("calypso: the job ended before this worker joined");
      throw Error("calypso: the manager refused this worker: " + reason);
    }
    if (m->type() != MsgType::welcome) continue;
    auto w = fixed_part<Welcome>(*m, why);
    if (!w) throw Error("calypso: malformed welcome from the manager: " + why);   // (no id to leave with)
    id_ = w->worker;
    try {
      take_welcome(*w, tail<Welcome>(*m), channel);
    } catch (const std::exception& e) {
      // Joined, and cannot serve: the manager would only see silence, on another host
      // perhaps, so it is told why (its log names this worker and the reason).
      send_leave(ep_, manager_, e.what());
      throw;
    }
    return;
  }
  throw Error("calypso: no answer from the manager at " + manager_address_ + " within " +
              std::to_string(patience.count()) + " ms (CALYPSO_MANAGER_TIMEOUT_MS)");
}

// Sets this worker up as the welcome says: its geometry, the region, the local paths
// offered, and the memory allocated ahead. `runs`: the welcome's written-page list.
void WorkerLoop::take_welcome(const Welcome& w, std::span<const std::byte> runs,
                              std::optional<net::LocalChannel>& channel) {
  if (!valid_page_size(w.page_size)) {
    throw Error("calypso: malformed welcome from the manager: page size " + std::to_string(w.page_size));
  }
  outbox_.emplace(id_);
  // A fetch stays within kMaxFetchBytes, read-ahead included: its page_data reply must
  // fit a message (64 pages of 16 KiB would not). 64: CALYPSO_FETCH_PAGES' range.
  const auto most = static_cast<std::uint32_t>(std::min<std::size_t>(64, kMaxFetchBytes / w.page_size));
  fetch_pages_ = std::clamp<std::uint32_t>(w.fetch_pages, 1, most);
  fetch_ahead_ = std::clamp<std::uint32_t>(config_.fetch_ahead, fetch_pages_, most);
  if ((w.rma & kRmaReads) != 0 && ep_.supports_read()) setup_rma(w);
  if (w.local_results == 0) ring_.reset();   // not taken (another host, or off there)
  if (ring_) LOG_INFO("sending results through shared memory on this host");
  // Memory allocated ahead, as for the region (CALYPSO_PREFAULT, prepare()).
  if (const int err = ring_ && config_.prefault > 0 ? ring_->populate() : 0; err != 0) {
    LOG_INFO("result ring allocated as results reach it: %s", std::strerror(err));
  }
  // Everything the manager sent after the welcome is in the channel, and it takes
  // everything we send from now on from there (see Endpoint::attach_local).
  if (channel && w.local_messages == 1) {
    ep_.attach_local(manager_, std::move(*channel));
    LOG_INFO("exchanging messages with the manager through shared memory on this host");
  }
  heartbeat_ = std::chrono::milliseconds(w.heartbeat_ms);
  manager_timeout_ = std::chrono::milliseconds(std::max(w.manager_timeout_ms, 2 * w.heartbeat_ms));
  region_.emplace(dsm::Region::map(w.region_address, w.region_size, w.page_size, dsm::Access::none));
  set_shared_base(region_->base());
  cache_.emplace(*region_, *this, fetch_pages_, config_.write_ahead, fetch_ahead_);
  if (runs.size() != std::size_t{w.written_runs} * 2 * sizeof(std::uint32_t)) {
    throw Error("calypso: malformed welcome from the manager: written-page list of the wrong length");
  }
  for (std::size_t i = 0; i < w.written_runs; ++i) {
    std::uint32_t run[2];
    std::memcpy(run, runs.data() + i * sizeof run, sizeof run);
    cache_->mark_written(run[0], run[1]);   // clipped to the region
  }
  if (config_.local_reads) {
    std::string local_why;
    if (auto home = LocalHome::open(w.local, region_->size(), local_why)) local_.emplace(std::move(*home));
    if (local_) {
      if (staging_.empty()) staging_.resize(std::size_t{fetch_ahead_} * w.page_size);
      LOG_INFO("reading pages from the manager's memory on this host");
      if (config_.share_frozen) cache_->share_home(local_->region_fd());
    } else {
      LOG_INFO("reading pages through the network: %s", local_why.c_str());
    }
  }
  faults_.emplace(region_->base(), region_->size(), *cache_, &abort_segment_hook,
                  &WorkerLoop::release_queues_of_worker);
  log::set_prefix("worker " + std::to_string(id_));
  LOG_INFO("joined the job");
  if (const int err = prepare(w.used_bytes); err != 0) {
    LOG_INFO("could not allocate the region in use ahead (%s): pages are allocated as they are touched",
             std::strerror(err));
  } else {
    LOG_INFO("allocated the region in use ahead: %.1f MiB in %.3f s",
             static_cast<double>(times_.prefault_bytes) / (1 << 20), times_.prefault);
  }
}

// `leave`, with the reason as its body (at most kMaxLeaveReason bytes; none on SIGTERM),
// from `ep` (the heartbeat endpoint once its thread runs, the main one before), and a
// moment for it to leave the process before the endpoint disappears with it.
void WorkerLoop::send_leave(net::Endpoint& ep, net::PeerId manager, std::string_view why) {
  Encoder e(MsgType::leave, id_, Empty{});
  e.append(why.data(), std::min(why.size(), kMaxLeaveReason));
  auto bytes = e.bytes();
  ep.send(manager, bytes, 1000ms);
  for (auto until = std::chrono::steady_clock::now() + 100ms; std::chrono::steady_clock::now() < until;) {
    ep.poll([](const net::Event&) {});
    ep.wait(10ms);
  }
}

// Allocates the memory behind the part of the region the program has in use (on joining,
// and when the manager's wait_for_workers() says it grew), then says so: the kernel's
// page allocation and zeroing happen at start-up, in one call, rather than in the first
// segments' page faults (matmul: ~14% of its segments' CPU time). The runtime view's
// pages stay invalid for the cache, and populating a page that holds data leaves it as
// it is, so this is safe at any time. Best effort: a kernel without MADV_POPULATE_WRITE
// (before 5.14), or too little memory, leaves them to the faults, and the answer is the
// same. It logs nothing: a segment's page fault may answer a prepare (stdio is not
// async-signal-safe); join() reports the first one. Returns the errno of the allocation,
// 0 if it worked or there was nothing to do.
int WorkerLoop::prepare(std::uint64_t used_bytes) {
  const std::size_t page = region_->page_size();
  const std::uint64_t bytes = std::min<std::uint64_t>({used_bytes, config_.prefault, region_->size()});
  const auto pages = static_cast<dsm::PageNumber>((bytes + page - 1) / page);
  int err = 0;
  if (pages > prefaulted_pages_) {
    const auto began = std::chrono::steady_clock::now();
    err = region_->populate(prefaulted_pages_, pages - prefaulted_pages_);
    if (err == 0) {
      times_.prefault += seconds_since(began);
      times_.prefault_bytes += std::uint64_t{pages - prefaulted_pages_} * page;
      prefaulted_pages_ = pages;
    }
  }
  Encoder e(MsgType::prepared, id_, Prepare{used_bytes});
  std::span<const std::byte> parts[] = {e.bytes()};
  to_manager(parts, "that its memory is allocated");
  return err;
}

void WorkerLoop::take_in(const net::Event& e) {
  if (e.kind == net::Event::Kind::message) inbox_.emplace_back(e.data.begin(), e.data.end());
  else LOG_WARN("send to the manager failed (error %d)", e.error);
}

bool WorkerLoop::known_short(const AssignView& a) const {
  auto it = short_runs_.find({a.fixed.routine, a.fixed.count});
  return it != short_runs_.end() && a.fixed.index < it->second.size() && it->second[a.fixed.index];
}

void WorkerLoop::note_run(const AssignView& a, bool short_run) {
  if (a.fixed.count > kMaxShortRunBits) return;   // never bunched (rather than 2 MiB+ here)
  auto it = short_runs_.find({a.fixed.routine, a.fixed.count});
  if (it == short_runs_.end()) {
    while (short_run_bits_ + a.fixed.count > kMaxShortRunBits) {   // forget another routine's
      short_run_bits_ -= short_runs_.begin()->second.size();
      short_runs_.erase(short_runs_.begin());
    }
    it = short_runs_.try_emplace({a.fixed.routine, a.fixed.count}, a.fixed.count, false).first;
    short_run_bits_ += a.fixed.count;
  }
  it->second[a.fixed.index] = short_run;
}

std::vector<std::byte> WorkerLoop::receive(std::chrono::milliseconds timeout) {
  auto take = [this] {
    std::vector<std::byte> m = std::move(inbox_.front());
    inbox_.pop_front();
    return m;
  };
  auto collect = [this](const net::Event& e) { take_in(e); };
  if (!inbox_.empty()) return take();
  ep_.poll(collect);
  // When a reply is due (a page, the next assignment), look for it for a few
  // microseconds before sleeping: a blocking wait costs two wake-ups (~35 us each on
  // these VMs), more than the round trip itself. Bounded, so never an idle spin.
  for (auto until = std::chrono::steady_clock::now() + config_.poll_window;
       inbox_.empty() && std::chrono::steady_clock::now() < until;) {
    ep_.poll(collect);
  }
  if (inbox_.empty() && ep_.wait(timeout)) ep_.poll(collect);
  return inbox_.empty() ? std::vector<std::byte>{} : take();
}

int WorkerLoop::run() {
  if (config_.worker_batch) run_as_batch();
  bool request = true;   // a result doubles as the request for more work
  unsigned idle_seconds = 0;
  for (;;) {
    if (auto next = assigns_.next()) {
      request = !run_assignment(*next) || request;
      idle_seconds = 0;
      continue;
    }
    flush_outbox();   // held results go out before this worker waits for anything
    // Nothing to run. An assignment waiting for a predecessor that does not come (the
    // manager lost it while it suspected us) is taken after a while, with the whole
    // cache dropped, since the notices that came with the lost one are gone.
    if (assigns_.stalled(kAssignGapPatience)) {
      LOG_WARN("assignment(s) %llu missing for %lld ms: skipped; dropping every cached page",
               static_cast<unsigned long long>(assigns_.consumed() + 1),
               static_cast<long long>(kAssignGapPatience.count()));
      assigns_.skip_gap();
      drop_cache();
      continue;
    }
    if (request && assigns_.empty()) send_request();
    request = false;
    const auto t = std::chrono::steady_clock::now();
    std::vector<std::byte> raw = receive(assigns_.empty() ? 1000ms : kAssignGapPatience);
    times_.wait += seconds_since(t);
    if (raw.empty()) {
      // Nothing for 5 s: ask again. Requests are idempotent, and this heals every way
      // a request can be lost (a result cut short by the end of its step or by a
      // suspicion, an assignment that never left the manager). Not sooner: a request
      // while the manager is merely busy makes it re-run our segment elsewhere.
      if (assigns_.empty() && ++idle_seconds % 5 == 0) send_request();
      continue;
    }
    idle_seconds = 0;
    take_message(std::move(raw), "while idle");
  }
}

// An assignment goes to the queue (in order, see assign_queue.hpp); a shutdown ends the
// process; anything else is not expected now.
void WorkerLoop::take_message(std::vector<std::byte> raw, const char* when) {
  std::string why;
  auto m = decode(raw, why);
  if (!m) {
    LOG_WARN("dropped a malformed message: %s", why.c_str());
    return;
  }
  if (m->type() == MsgType::shutdown) return on_shutdown(*m);   // returns only if not ours
  if (m->type() == MsgType::bundle) {
    auto inner = parse_bundle(*m, why);
    if (!inner) {
      LOG_WARN("dropped a malformed message: %s", why.c_str());
      return;
    }
    for (std::span<const std::byte> one : *inner) take_message({one.begin(), one.end()}, when);
    return;
  }
  if (m->type() == MsgType::prepare) {
    if (auto p = fixed_part<Prepare>(*m, why)) prepare(p->used_bytes);
    else LOG_WARN("protocol violation: %s (ignored)", why.c_str());
    return;
  }
  if (m->type() != MsgType::assign) {
    LOG_WARN("protocol violation: %s %s (ignored)", to_string(m->type()), when);
    return;
  }
  auto a = fixed_part<Assign>(*m, why);
  if (!a) {
    LOG_WARN("protocol violation: %s (ignored)", why.c_str());
    return;
  }
  if (!assigns_.add(a->seq, std::move(raw))) {
    LOG_WARN("dropped assignment %llu: it came after it was given up, or twice",
             static_cast<unsigned long long>(a->seq));
  }
}

bool WorkerLoop::run_assignment(const std::vector<std::byte>& raw) {
  std::string why;
  auto m = decode(raw, why);
  auto a = m ? parse_assign(*m, why) : std::nullopt;
  if (!a) {
    // Its write notices are lost with it, and later assignments build on them.
    LOG_WARN("protocol violation: %s (ignored; dropping every cached page)", why.c_str());
    drop_cache();
    return false;
  }
  return run_segment(*a);
}

void WorkerLoop::drop_cache() {
  cache_->invalidate_all();
  kept_.clear();
}

void WorkerLoop::send_request() {
  Encoder e(MsgType::request_work, id_, RequestWork{assigns_.consumed()});
  std::span<const std::byte> parts[] = {e.bytes()};
  to_manager(parts, "a work request");
}

// The main endpoint's sends: a worker that cannot reach its manager for a minute has
// nothing left to do.
void WorkerLoop::to_manager(std::span<const std::span<const std::byte>> parts, const char* what) {
  if (ep_.send(manager_, parts, 60s) != net::SendStatus::ok) {
    LOG_ERROR("cannot send %s to the manager; exiting", what);
    exit_now(3);
  }
}

bool WorkerLoop::run_segment(const AssignView& a) {
  // Held results wait only for segments that ran short here before: one that never did
  // may take long, or kill this worker, and the manager blames a death on the oldest
  // segment it has no result for, which must then be the one that was running.
  if (!held_.empty() &&
      (!known_short(a) || std::chrono::steady_clock::now() - held_since_ >= kHoldFor)) {
    flush_outbox();
  }
  // Notices first, whatever happens to the segment: later assignments build on them.
  auto t = std::chrono::steady_clock::now();
  apply_notices(a);
  times_.notices += seconds_since(t);
  const detail::RoutineInfo* routine = RoutineRegistry::instance().get(a.fixed.routine);
  if (routine == nullptr || routine->args_size != a.args.size()) {
    LOG_ERROR("assignment names routine %u, which this executable does not have", a.fixed.routine);
    return false;
  }
  step_ = a.fixed.step;
  segment_index_ = a.fixed.index;
  fetches_in_segment_ = 0;
  pages_read_ = 0;
  Segment seg{a.fixed.index, a.fixed.count};
  std::vector<std::byte> args(a.args.begin(), a.args.end());
  const SegmentKey key{a.fixed.routine, a.fixed.index, a.fixed.count,
                       std::hash<std::string_view>{}({reinterpret_cast<const char*>(args.data()), args.size()})};
  t = std::chrono::steady_clock::now();
  if (auto it = wrote_.find(key); it != wrote_.end()) cache_->prepare_writes(it->second);
  times_.prepare += seconds_since(t);
  if (sigsetjmp(g_abort_point, 1) != 0) {
    cache_->abort_segment();   // our step is over: nobody wants this result
    LOG_DEBUG("gave up segment %u of step %llu: the step is over", a.fixed.index,
              static_cast<unsigned long long>(a.fixed.step));
    return false;
  }
  LOG_DEBUG("segment %u of step %llu starts", a.fixed.index, static_cast<unsigned long long>(a.fixed.step));
  t = std::chrono::steady_clock::now();
  const double cpu = thread_cpu_seconds();
  routine->call(routine->fn, seg, args.data());
  const double ran = seconds_since(t);
  times_.segment += ran;
  times_.segment_cpu += thread_cpu_seconds() - cpu;
  LOG_DEBUG("segment %u computed", a.fixed.index);
  t = std::chrono::steady_clock::now();
  const auto [body, in_ring] = finish_result(a.fixed.segment);
  if (wrote_.size() >= kMaxRemembered) wrote_.clear();
  wrote_[key] = cache_->written();
  times_.finish += seconds_since(t);
  t = std::chrono::steady_clock::now();
  const bool short_run = ran < std::chrono::duration<double>(kShortSegment).count();
  note_run(a, short_run);
  const std::optional<std::uint64_t> at = ship(a, body, in_ring, config_.bundle && short_run);
  LOG_DEBUG("segment %u sent: %zu bytes", a.fixed.index, body.size());
  keep_result(a.fixed.segment, body, in_ring, at);
  times_.send += seconds_since(t);
  ++times_.segments;
  return true;
}

// Into the ring's room where there is some, so that the result is not copied on its way
// there (Jacobi: ~5 MB of diffs a step); a small one is then sent from there.
std::pair<std::span<const std::byte>, bool> WorkerLoop::finish_result(std::uint32_t segment) {
  result_.clear();
  const std::size_t bound = cache_->result_bound();
  const std::span<std::byte> room = ring_ && bound >= kRingMinBytes ? ring_->reserve(bound) : std::span<std::byte>{};
  if (!room.empty()) return {room.first(cache_->finish_segment(room, segment).body_bytes), true};
  cache_->finish_segment(result_, segment);
  return {result_, false};
}

void WorkerLoop::keep_result(std::uint32_t segment, std::span<const std::byte> body, bool in_ring,
                             std::optional<std::uint64_t> ring_at) {
  if (ring_at) {
    kept_[segment] = KeptResult{{}, ring_at, body.size()};
  } else if (in_ring) {   // small, sent in messages from the room, which is not kept
    kept_[segment] = KeptResult{{body.begin(), body.end()}, std::nullopt, 0};
  } else {
    // Moved, not copied (Jacobi's first and last segments ship 2 MiB when the ring is
    // full or off); the next result grows a fresh buffer to the size this one needed.
    const std::size_t size = result_.size();
    kept_[segment] = KeptResult{std::move(result_), std::nullopt, 0};
    result_ = {};
    result_.reserve(size);
  }
}

void WorkerLoop::apply_notices(const AssignView& a) {
  for (std::size_t i = 0; i + 1 < a.frozen.size(); i += 2) cache_->freeze(a.frozen[i], a.frozen[i + 1]);
  if (a.fixed.invalidate_all != 0) {
    cache_->invalidate_all();
  } else {
    if (!a.own_pages.empty() && a.fixed.own_step == kept_step_) {
      std::vector<std::span<const std::byte>> bodies;
      std::uint64_t from_ring = 0;
      for (std::uint32_t s : a.own_segments) {
        const auto it = kept_.find(s);
        if (it == kept_.end()) break;
        if (!it->second.ring_at) {
          bodies.emplace_back(it->second.body);
        } else if (auto in_ring = ring_ ? ring_->written(*it->second.ring_at, it->second.ring_bytes) : std::nullopt) {
          bodies.push_back(*in_ring);
          ++from_ring;
        } else {
          break;   // written over since (a full ring)
        }
      }
      if (bodies.size() == a.own_segments.size()) {
        cache_->replay(a.own_pages, a.own_segments, bodies);
        times_.replays += bodies.size();
        times_.ring_replays += from_ring;
      } else {
        cache_->invalidate(a.own_pages);   // we no longer have them all: fetch instead
        ++times_.refetches;
      }
    } else {
      cache_->invalidate(a.own_pages);
    }
    cache_->invalidate(a.notices);
    if (!a.pushed.empty()) {
      try {
        cache_->accept_pushed(a.pushed, a.pushed_data);
      } catch (const std::exception& e) {
        LOG_WARN("protocol violation: %s (dropping every cached page)", e.what());
        drop_cache();
      }
    }
  }
  if (kept_step_ != a.fixed.step) {   // a new step: the previous one's results are done with
    cache_->settle_kept();   // pages our results wrote that nobody listed: unchanged
    kept_.clear();
    kept_step_ = a.fixed.step;
  }
}

// The read set goes first: the result may end the step. A short segment's result that
// fits one message waits in the outbox while at least two assignments wait here, up to
// kMaxHeldResults results, kHoldBytes or kHoldFor since the first, and they all go in one
// send (see flush_outbox); the manager answers them with one bundle of assignments.
// Others go at once, the held ones before them. Two, not one: the results go while one
// segment is still left to run, which covers the round trip to the manager's answer
// (with CALYPSO_PIPELINE=2 and nothing more queued, holding would idle the worker
// every second segment).
std::optional<std::uint64_t> WorkerLoop::ship(const AssignView& a, std::span<const std::byte> body, bool in_ring,
                                               bool short_run) {
  std::vector<dsm::PageNumber> pages = cache_->take_reads();
  if (!pages.empty()) {
    Encoder e(MsgType::read_set, id_, ReadSet{a.fixed.step, static_cast<std::uint32_t>(pages.size()), 0});
    e.append(pages.data(), pages.size() * sizeof(dsm::PageNumber));
    outbox_->add(e.bytes());
  }
  const std::uint32_t flags = short_run ? kResultShortRun : 0;
  if (!short_run || body.size() > kHoldBytes) {
    flush_outbox();
    return send_result(a, body, in_ring, flags);
  }
  ResultChunk c{a.fixed.step, a.fixed.segment, a.fixed.attempt, body.size(), 0, pages_read_, flags};
  Encoder e(MsgType::result_chunk, id_, c);
  e.append(body);
  if (held_.empty()) held_since_ = std::chrono::steady_clock::now();
  outbox_->add(e.bytes());
  held_.push_back(segment_index_);
  if (held_.size() < kMaxHeldResults && outbox_->bytes() < kHoldBytes &&
      std::chrono::steady_clock::now() - held_since_ < kHoldFor && assignments_here() >= 2) {
    maybe_inject(InjectPoint::held_result, segment_index_);
    return std::nullopt;
  }
  flush_outbox();
  return std::nullopt;
}

void WorkerLoop::flush_outbox() {
  if (outbox_->messages() == 0) return;
  std::span<const std::byte> parts[] = {outbox_->finish()};
  to_manager(parts, held_.empty() ? "a read set" : "results");
  outbox_->clear();
  for (std::uint32_t index : held_) maybe_inject(InjectPoint::after_result, index);
  held_.clear();
}

// Takes in what has arrived, without waiting: how many assignments wait in order?
std::size_t WorkerLoop::assignments_here() {
  ep_.poll([this](const net::Event& e) { take_in(e); });
  while (!inbox_.empty()) {
    std::vector<std::byte> m = std::move(inbox_.front());
    inbox_.pop_front();
    take_message(std::move(m), "while busy");
  }
  return assigns_.ready_count();
}

std::optional<std::uint64_t> WorkerLoop::send_result(const AssignView& a, std::span<const std::byte> body,
                                                     bool in_ring, std::uint32_t flags) {
  if (ring_ && body.size() >= kRingMinBytes) {
    // (Put, if not written there: else the ring is full, and it goes in messages below.)
    if (const auto at = in_ring ? ring_->commit(body.size()) : ring_->put(body)) {
      ResultChunk c{a.fixed.step, a.fixed.segment, a.fixed.attempt, body.size(), *at, pages_read_,
                    flags | kResultInRing};
      Encoder e(MsgType::result_chunk, id_, c);
      // Alone, not joined to the outbox's bundle: the manager must see ring results named
      // in the order they were written (RingReader::borrow), and ofi_rxm delivers a small
      // message sent after a large one (rendezvous) first. Joined, it broke that order
      // (Depths/Pipeline, tcp) and saved 8 of ~45 sends a Jacobi step, no measurable time.
      std::span<const std::byte> parts[] = {e.bytes()};
      maybe_inject(InjectPoint::mid_result, segment_index_);   // written, not yet named
      to_manager(parts, "a result");
      maybe_inject(InjectPoint::after_result, segment_index_);
      return at;
    }
  }
  const std::size_t room = ep_.max_message() - sizeof(Header) - sizeof(ResultChunk);
  std::uint64_t offset = 0;
  do {
    const std::size_t n = std::min<std::size_t>(room, body.size() - offset);
    ResultChunk c{a.fixed.step, a.fixed.segment, a.fixed.attempt, body.size(), offset,
                  offset == 0 ? pages_read_ : 0, flags};
    Encoder e(MsgType::result_chunk, id_, c);
    std::span<const std::byte> parts[] = {e.bytes_with_tail(n), std::span(body).subspan(offset, n)};
    to_manager(parts, "a result");
    offset += n;
    if (offset < body.size()) maybe_inject(InjectPoint::mid_result, segment_index_);
  } while (offset < body.size());
  maybe_inject(InjectPoint::after_result, segment_index_);
  return std::nullopt;
}

void WorkerLoop::setup_rma(const Welcome& w) {
  try {
    staging_.resize(std::size_t{fetch_ahead_} * w.page_size + sizeof(std::uint64_t));
    staging_mr_ = ep_.expose(staging_.data(), staging_.size());
    home_mem_ = {w.home_address, w.home_key, w.region_size};
    control_mem_ = {w.control_address, w.control_key, sizeof(std::uint64_t)};
    rma_ = true;
    rma_in_order_ = (w.rma & kRmaReadsInOrder) != 0;
  } catch (const std::exception& e) {
    LOG_WARN("RMA page reads unavailable (%s); pages come in messages", e.what());
  }
}

// Runs inside the SIGSEGV handler of the segment's thread: reports failure as a value.
dsm::FetchResult WorkerLoop::fetch(dsm::PageNumber first, dsm::PageNumber count) noexcept {
  dsm::FetchResult out;
  // Held results do not wait for pages: a segment that ran short here before may fetch
  // this time. (send does not allocate; this is the fault handler's thread.)
  if (!held_.empty()) flush_outbox();
  ++fetches_in_segment_;
  if (fetches_in_segment_ == 1) maybe_inject(InjectPoint::before_fetch, segment_index_);
  if (fetches_in_segment_ == 2) maybe_inject(InjectPoint::mid_fetch, segment_index_);
  // Counted as it ends, as the ways it went are: statistics printed while a fetch is
  // still on its way (the job ended under a slow worker) then count it nowhere, rather
  // than as a fetch that went no way (integration_test caught 8 RMA reads of 9 fetches).
  struct Timer {   // clock_gettime is async-signal-safe (vDSO)
    Times& times;
    bool rma = false, together = false;   // how it went, counted with it
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    ~Timer() {
      times.fetch += seconds_since(start);
      ++times.fetches;
      times.rma_fetches += rma;
      times.rma_together += together;
    }
  } timer{times_};
  if (local_ && !local_failed_) {
    if (read_local(first, count, out)) return out;
    // Not fatal: the network still reaches the same memory. (write(2): a page fault.)
    log::raw("calypso: reading the manager's memory on this host failed; "
             "pages come through the network from now on\n");
    local_failed_ = true;
  }
  if (rma_) {
    if (read_pages(first, count, out)) {
      timer.rma = true;
      timer.together = rma_in_order_;
      return out;
    }
    LOG_WARN("an RMA page read failed; pages come in messages from now on");
    rma_ = false;
  }
  Encoder e(MsgType::page_request, id_, PageRequest{step_, first, count});
  auto bytes = e.bytes();
  if (ep_.send(manager_, bytes, 60s) != net::SendStatus::ok) return out;
  for (int idle = 0; idle < 600;) {
    fetch_reply_ = receive(100ms);
    if (fetch_reply_.empty()) { ++idle; continue; }
    std::string why;
    auto m = decode(fetch_reply_, why);
    if (!m) continue;
    if (m->type() == MsgType::shutdown) {
      on_shutdown(*m);   // returns only if not ours
      continue;
    }
    if (m->type() == MsgType::assign || m->type() == MsgType::bundle || m->type() == MsgType::prepare) {
      // Assignments are for after this segment: never drop one. A prepare is answered
      // at once (it only allocates memory; data stays as it is).
      take_message(std::move(fetch_reply_), "while waiting for pages");
      continue;
    }
    auto d = m->type() == MsgType::page_data ? fixed_part<PageData>(*m, why) : std::nullopt;
    if (!d || d->step != step_ || d->first != first) {
      LOG_WARN("protocol violation: %s while waiting for pages (ignored)", to_string(m->type()));
      continue;
    }
    if (d->status == PageStatus::stale) { out.status = dsm::FetchStatus::stale; return out; }
    auto rest = tail<PageData>(*m);
    if (d->status != PageStatus::ok || d->count != count || rest.size() < count) return out;
    out.kinds = std::span(reinterpret_cast<const std::uint8_t*>(rest.data()), count);
    out.data = rest.subspan(count);
    std::size_t full = 0;
    for (auto k : out.kinds) full += k != 0;
    if (out.data.size() != full * region_->page_size()) return out;
    out.status = dsm::FetchStatus::ok;
    return out;
  }
  LOG_ERROR("no page from the manager for 60 s");
  return out;
}

// Copies the pages from the manager's memory on this host, then reads its control word:
// the same rule as read_pages() below. The copy goes to staging_ first: the manager may
// change home memory once the word is read. False if the copy failed.
bool WorkerLoop::read_local(dsm::PageNumber first, dsm::PageNumber count, dsm::FetchResult& out) noexcept {
  const std::size_t ps = region_->page_size();
  const std::size_t bytes = std::size_t{count} * ps;
  if (count > kAllData.size() || bytes > staging_.size() ||
      !local_->read(std::size_t{first} * ps, std::span(staging_).first(bytes))) {
    return false;
  }
  // open_step()'s fence keeps the copy before its read of the word.
  if (take_direct_read(local_->open_step(), std::span(staging_).first(bytes), count, out)) ++times_.local_fetches;
  return true;
}

// The snapshot rule of a direct read (RMA or local), once the pages are copied and the
// control word read after them: the pages are the step's if the word still names it.
// True if they are (out is then ok), false if stale.
bool WorkerLoop::take_direct_read(StepId open, std::span<const std::byte> pages, dsm::PageNumber count,
                                  dsm::FetchResult& out) noexcept {
  if (open != step_) {
    out.status = dsm::FetchStatus::stale;
    return false;
  }
  out.kinds = std::span(kAllData).first(count);
  out.data = pages;
  out.status = dsm::FetchStatus::ok;
  pages_read_ += count;
  return true;
}

// Reads the pages, then the manager's control word: if the step is still open then,
// it was open during the page read, so the pages are this step's snapshot (the manager
// clears the word before it changes home memory). Where the manager serves our reads in
// posting order (its welcome says so: tcp), both go at once and the word is still read
// after the pages, in one round trip; elsewhere the word is read once the pages are in.
// False if a read failed.
bool WorkerLoop::read_pages(dsm::PageNumber first, dsm::PageNumber count, dsm::FetchResult& out) noexcept {
  const std::size_t ps = region_->page_size();
  if (count > kAllData.size() || std::size_t{count} * ps + sizeof(std::uint64_t) > staging_.size()) return false;
  const auto pages = std::span(staging_).first(std::size_t{count} * ps);
  const auto word = std::span(staging_).last(sizeof(std::uint64_t));
  if (rma_in_order_) {
    const net::Endpoint::ReadPart parts[] = {{home_mem_, std::uint64_t{first} * ps, pages, &staging_mr_},
                                             {control_mem_, 0, word, &staging_mr_}};
    if (ep_.read_together(manager_, parts, 60s) != net::SendStatus::ok) return false;
  } else if (ep_.read(manager_, home_mem_, std::uint64_t{first} * ps, pages, staging_mr_, 60s) != net::SendStatus::ok ||
             ep_.read(manager_, control_mem_, 0, word, staging_mr_, 60s) != net::SendStatus::ok) {
    return false;
  }
  std::uint64_t open = 0;
  std::memcpy(&open, word.data(), sizeof open);
  take_direct_read(open, pages, count, out);
  return true;
}

void WorkerLoop::on_shutdown(const Message& m) {
  // The job's exit code is the manager's; a worker that served it to the end succeeded.
  // One stopped by a signal is worth a line, on a host where nothing else would say so.
  std::string why;
  const auto s = fixed_part<Shutdown>(m, why);
  // A given-up notice for another id is not ours (our address was once that worker's).
  const bool given_up = s && (s->flags & kShutdownGivenUp) != 0;
  if (given_up && m.header.worker != id_) return;
  // Both threads may read the shutdown (the heartbeat endpoint hears it too): the first
  // prints the stats and exits (or starts again); the second waits for that, so the line
  // comes once and whole. Only a while: the first may be stuck (a segment thread that
  // faulted inside a stdio call holds its lock), and then the second leaves without it.
  if (ending_.test_and_set()) {
    std::this_thread::sleep_for(2s);
    exit_now(0);
  }
  if (given_up) {
    start_again_as_new_worker(StartReason::given_up,
                              "calypso: the manager gave this worker up (nothing heard from it for "
                              "CALYPSO_MANAGER_TIMEOUT_MS: stopped, or cut off) and others did its work; it starts "
                              "again as a new worker\n",
                              "the worker cannot start again", 0);
  }
  if (s && s->code > 128 && s->code < 128 + 65) {
    LOG_WARN("the manager was stopped (signal %d): the job is over", s->code - 128);
  }
  LOG_INFO("the manager ended the job");
  if (config_.stats != StatsFormat::off) {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    const Times& t = times_;
    std::fprintf(stderr,
                 "calypso[worker %u]: %llu segments: %.3f s in segments (%.3f s on the CPU; "
                 "%.3f s waiting for %llu page fetches, %llu of them read from the manager's memory, "
                 "%llu with RMA (%llu of these with the control word in the same round trip); "
                 "%llu pages pushed, %llu of them read; %llu frozen pages mapped from the manager's "
                 "memory; %llu read and %llu write faults), %.3f s twinning "
                 "expected writes (%llu pages copied into twins in all), %.3f s finishing (diffs), "
                 "%.3f s sending results, %.3f s on write notices (%llu own results replayed, "
                 "%llu of them read back from the result ring; %llu times refetched instead), "
                 "%.3f s waiting for work, %.3f s allocating %.1f MiB ahead; peak RSS %ld KiB\n",
                 id_, static_cast<unsigned long long>(t.segments), t.segment, t.segment_cpu, t.fetch,
                 static_cast<unsigned long long>(t.fetches), static_cast<unsigned long long>(t.local_fetches),
                 static_cast<unsigned long long>(t.rma_fetches), static_cast<unsigned long long>(t.rma_together),
                 static_cast<unsigned long long>(cache_->stats().pushed_pages),
                 static_cast<unsigned long long>(cache_->stats().pushed_used),
                 static_cast<unsigned long long>(cache_->stats().pages_mapped),
                 static_cast<unsigned long long>(cache_->stats().read_faults),
                 static_cast<unsigned long long>(cache_->stats().write_faults), t.prepare,
                 static_cast<unsigned long long>(cache_->stats().twin_copies), t.finish, t.send,
                 t.notices, static_cast<unsigned long long>(t.replays), static_cast<unsigned long long>(t.ring_replays),
                 static_cast<unsigned long long>(t.refetches), t.wait, t.prefault,
                 static_cast<double>(t.prefault_bytes) / (1 << 20),
                 u.ru_maxrss);
  }
  exit_now(0);
}

// A SIGTERM that comes before the heartbeat thread runs: there is no work to hand back.
void WorkerLoop::leave_if_terminated() {
  pollfd p{sigterm_.get(), POLLIN, 0};
  if (::poll(&p, 1, 0) != 1) return;
  log::raw("calypso: worker leaving (SIGTERM) before it joined\n");
  exit_now(0);
}

// The worker ends from whichever thread learns it must, while the other may be deep in
// a routine, so it never unwinds: it removes what its endpoints keep outside the
// process (shm queue files; calypso-run would clean up only after its own children)
// and leaves at once.
void WorkerLoop::exit_now(int code) {
  release_queues_of_worker();
  flush_output();
  _exit(code);
}

// Only streams whose lock is free: the other thread may have faulted inside a stdio
// call, holding its stream, and the closed gate now keeps it from ever going on.
void WorkerLoop::flush_output() noexcept {
  for (FILE* f : {stdout, stderr}) {
    if (ftrylockfile(f) != 0) continue;
    fflush_unlocked(f);
    funlockfile(f);
  }
}

// Also the fault handler's last act before a fatal exit (a bug in a routine): no thread
// may end inside the shm provider, whose progress holds our queue's lock (the manager's
// next send to us would spin on it for ever; net/stall_watch.hpp), and then the names
// fixed when the endpoints opened are unlinked. Safe from that handler: it interrupted
// a routine, which holds no lock of the watch.
void WorkerLoop::release_queues_of_worker() noexcept {
  if (g_worker == nullptr) return;
  net::close_provider_calls(std::chrono::milliseconds(500));
  g_worker->ep_.release_before_exit();
  g_worker->hb_ep_.release_before_exit();
}

// The heartbeat thread: tells the manager this worker lives, watches that the manager
// does, and turns SIGTERM into a graceful leave. It sleeps in poll() between beats.
void WorkerLoop::heartbeat_loop() {
  auto last_heard = std::chrono::steady_clock::now();
  auto next_beat = last_heard;
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_beat) {
      heartbeat_once(last_heard);
      next_beat = now + heartbeat_;
    }
    pollfd fds[3] = {{hb_stop_.get(), POLLIN, 0}, {sigterm_.get(), POLLIN, 0}, {hb_ep_.wait_fd(), POLLIN, 0}};
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_beat - now);
    const bool can_sleep = hb_ep_.ready_to_sleep();
    poll(fds, 3, can_sleep ? static_cast<int>(std::max<long>(1, wait.count())) : 0);
    if (fds[0].revents != 0) return;
    if (fds[1].revents != 0) leave();
    hb_ep_.poll([&](const net::Event& ev) {
      if (ev.kind != net::Event::Kind::message) return;
      std::string why;
      auto m = decode(ev.data, why);
      if (!m) return;
      last_heard = std::chrono::steady_clock::now();
      if (m->type() == MsgType::shutdown) on_shutdown(*m);
    });
  }
}

void WorkerLoop::heartbeat_once(std::chrono::steady_clock::time_point& last_heard) {
  if (std::chrono::steady_clock::now() - last_heard > manager_timeout_) {
    start_again_as_new_worker(StartReason::lost_manager,
                              "calypso: nothing heard from the manager for CALYPSO_MANAGER_TIMEOUT_MS; the worker "
                              "tries to join again as a new one (its link may have been cut)\n",
                              "lost the manager, and the worker cannot start again", 3);
  }
  Encoder e(MsgType::heartbeat, id_, Empty{});
  auto bytes = e.bytes();
  hb_ep_.send(hb_manager_, bytes, std::chrono::milliseconds(0));
}

// Starts this worker again as a new one (sched/start_again.hpp), after saying `saying`:
//  - given up: the manager gave this worker up and has said so; the job runs on, and the
//    manager answers, so this host can work for it again;
//  - lost manager: nothing heard from it for CALYPSO_MANAGER_TIMEOUT_MS: it died, or its
//    host is cut off, or the link was cut and is back while TCP still waits out its
//    backed-off retransmissions (seconds after a cut of ten); new connections go at
//    once where the old ones wait, and a manager still running takes the new worker.
//    One that is not taken ends as before (status 3; Runtime), so a dead manager costs
//    one try, not a loop; one that was taken may try again after a later loss.
// Not if it was asked to stop meanwhile: a SIGTERM waiting in the mask leaves instead.
// If the process cannot start again, it says `failing` and exits with `code`.
void WorkerLoop::start_again_as_new_worker(StartReason why, const char* saying, const char* failing, int code) {
  sigset_t pending;
  if (sigpending(&pending) == 0 && sigismember(&pending, SIGTERM) == 1) leave();
  log::raw(saying);
  release_queues_of_worker();
  flush_output();
  const std::string error = start_again(why, manager_address_);
  log::raw(("calypso: " + std::string(failing) + " (" + error + "); worker exiting\n").c_str());
  exit_now(code);
}

// SIGTERM: tell the manager to reassign our segment now, then go. Exit status 0: leaving
// on request is not a failure.
void WorkerLoop::leave() {
  send_leave(hb_ep_, hb_manager_, {});
  log::raw("calypso: worker leaving (SIGTERM); its work goes to the others\n");
  exit_now(0);
}

}  // namespace calypso::sched
