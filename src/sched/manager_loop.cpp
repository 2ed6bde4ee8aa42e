// The manager's event loop (messages, membership, timers); the step lifecycle is in
// manager_steps.cpp. See manager_loop.hpp. Everything here runs on the loop
// thread except the three entry points at the bottom (run_step, shutdown, stats), which
// the program's thread calls and which talk to the loop through mutex_ and an eventfd.
#include "sched/manager_loop.hpp"

#include "build_id.hpp"
#include "log.hpp"
#include "sched/job_address.hpp"
#include "sched/local_messages.hpp"

#include <calypso/error.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>

namespace calypso::sched {
namespace {

net::EndpointConfig endpoint_config(const Config& c) {
  net::EndpointConfig e;
  e.provider = c.provider;
  if (!c.bind.empty()) {
    auto colon = c.bind.rfind(':');
    e.node = c.bind.substr(0, colon);
    if (colon != std::string::npos) e.service = c.bind.substr(colon + 1);
  }
  e.max_message = std::size_t{1} << 20;
  e.recv_depth = 64;
  e.send_depth = 64;
  e.rma = c.wants_rma(c.provider);
  return e;
}

UniqueFd make_epoll(std::initializer_list<int> fds) {
  UniqueFd epoll(epoll_create1(EPOLL_CLOEXEC));
  if (epoll.get() < 0) throw Error(std::string("calypso: epoll_create1: ") + std::strerror(errno));
  for (int fd : fds) {
    if (fd < 0) continue;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      throw Error(std::string("calypso: epoll_ctl: ") + std::strerror(errno));
    }
  }
  return epoll;
}

UniqueFd make_timer(std::chrono::milliseconds period) {
  UniqueFd t(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (t.get() < 0) throw Error(std::string("calypso: timerfd_create: ") + std::strerror(errno));
  itimerspec spec{};
  spec.it_interval.tv_sec = period.count() / 1000;
  spec.it_interval.tv_nsec = (period.count() % 1000) * 1'000'000;
  spec.it_value = spec.it_interval;
  timerfd_settime(t.get(), 0, &spec, nullptr);
  return t;
}

}  // namespace

ManagerLoop::ManagerLoop(const Config& config, const dsm::Region& region, const dsm::HomeMemory& home)
    : config_(config),
      region_(region),
      home_(home),
      collation_(region, config.check_conflicts, home.frozen_flags()),
      ep_(net::Endpoint::open(endpoint_config(config))),
      wakeup_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      timer_(make_timer(config.heartbeat)),
      ever_written_(region.pages(), false) {
  late_timer_ = UniqueFd(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (late_timer_.get() < 0) throw Error(std::string("calypso: timerfd_create: ") + std::strerror(errno));
  if (config_.launcher_fd != 0) launcher_notices_ = LauncherNotices::adopt(static_cast<int>(config_.launcher_fd));
  epoll_ = make_epoll({ep_.wait_fd(), wakeup_.get(), timer_.get(), late_timer_.get(), launcher_notices_.fd(),
                       stop_signals_.fd()});
  char host[65] = {};
  if (gethostname(host, sizeof host - 1) == 0) hostname_ = host;
  if (ep_.supports_read()) {
    try {
      home_mr_ = ep_.expose(region_.runtime_page(0), region_.size());
      control_mr_ = ep_.expose(control_.address(), ControlWord::kBytes);
    } catch (const std::exception& e) {   // pages then travel in messages
      LOG_WARN("RMA page reads disabled: %s", e.what());
      home_mr_ = {};
      control_mr_ = {};
    }
  }
  thread_ = std::thread([this] { loop(); });
}

ManagerLoop::~ManagerLoop() {
  {
    std::lock_guard lock(mutex_);
    if (!shutdown_code_) shutdown_code_ = 0;
  }
  std::uint64_t one = 1;
  [[maybe_unused]] auto r = write(wakeup_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

std::string ManagerLoop::job_address() const {
  return JobAddress{config_.provider, ep_.local_address().to_string(), config_.job_key}.to_string();
}

// ---- the loop -------------------------------------------------------------------------

void ManagerLoop::loop() {
  for (;;) {
    drain_endpoint();
    update_live();
    take_commands();
    {
      std::lock_guard lock(mutex_);
      if (stopped_) return;
    }
    if (!ep_.ready_to_sleep()) continue;
    epoll_event evs[16];
    int n = epoll_wait(epoll_.get(), evs, 16, ep_.wait_fd() < 0 ? 10 : -1);
    for (int i = 0; i < n; ++i) {
      std::uint64_t count;
      if ((evs[i].data.u64 & kExitTag) != 0) {
        on_exit(static_cast<WorkerId>(evs[i].data.u64 & ~kExitTag));
      } else if (evs[i].data.fd == timer_.get()) {
        if (read(timer_.get(), &count, sizeof count) > 0) on_tick();
      } else if (evs[i].data.fd == late_timer_.get()) {
        if (read(late_timer_.get(), &count, sizeof count) > 0) dispatch();   // a segment got late
      } else if (evs[i].data.fd == wakeup_.get()) {
        [[maybe_unused]] auto r = read(wakeup_.get(), &count, sizeof count);
      } else if (evs[i].data.fd == launcher_notices_.fd()) {   // (-1 when none: never an event's)
        on_launcher_notices();
      } else if (evs[i].data.fd == stop_signals_.fd()) {
        on_stop_signal();
      }
    }
  }
}

// A worker calypso-run started has exited. One that joined is this loop's to find (its
// pidfd, its silence); one that never did is known only here, and a wait_for_workers()
// must not wait its timeout out for it. Its hello may still be on its way (sent just
// before it died): on_hello takes it off the list. One packet, one pid; the socket's end
// (the launcher is gone) stops the watch.
void ManagerLoop::on_launcher_notices() {
  const LauncherNotices::Read r = launcher_notices_.read();
  if (r.closed) {
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, launcher_notices_.fd(), nullptr);
    launcher_notices_ = {};
  }
  if (r.remote_failed) {
    // Counted as workers that will not join, each under a name no hello can give.
    const std::string shell = "(remote shell " + std::to_string(r.remote_failed->shell_pid) + ")";
    LOG_WARN("%u worker%s calypso-run was to start on another host will not join: its remote shell failed",
             r.remote_failed->workers, r.remote_failed->workers == 1 ? "" : "s");
    for (std::uint32_t i = 0; i < std::min<std::uint32_t>(r.remote_failed->workers, 1024); ++i) {
      never_joining_set_.insert({shell, i});
    }
  }
  if (!r.exited) return;
  const std::uint32_t pid = *r.exited;
  const bool joined = std::any_of(workers_.begin(), workers_.end(), [&](const auto& entry) {
    return entry.second.pid == pid && entry.second.host == hostname_;
  });
  if (!joined) {
    LOG_INFO("a worker calypso-run started (pid %u) exited before it joined", pid);
    never_joining_set_.insert({hostname_, pid});
  }
}

// SIGTERM, SIGINT or SIGHUP (stop_signals.hpp): calypso-run stops the workers of this
// host, but only the manager can tell those of other hosts, which would otherwise wait
// CALYPSO_MANAGER_TIMEOUT_MS for it and then fail. Then the process ends by the signal.
void ManagerLoop::on_stop_signal() {
  const int sig = stop_signals_.taken();
  if (sig == 0) return;
  LOG_WARN("stopped by signal %d (%s): the workers are told the job is over", sig, strsignal(sig));
  tell_workers_job_over(128 + sig, std::chrono::milliseconds(20));
  // A rank launch's address file is the manager's to remove (rank_launch.hpp); the
  // Runtime that would, at its end, is not reached from here.
  if (config_.rendezvous) ::unlink(config_.address_file.c_str());
  StopSignals::die_by(sig);
}

// Drains the endpoint, then keeps looking for CALYPSO_POLL_US after the last event:
// workers that just got a page or an assignment often answer within that window, and
// catching it saves two VM wake-ups per message. Bounded, so an idle manager sleeps;
// 0 by default when the manager has no CPU to spare (default_poll_window).
void ManagerLoop::drain_endpoint() {
  auto handle = [this](const net::Event& e) { on_event(e); };
  const auto start = Clock::now();
  auto until = start + config_.poll_window;
  bool any = false;
  // At most 5 ms at a time, so that timers and the program's requests are never starved
  // by a steady stream of messages.
  while (Clock::now() - start < std::chrono::milliseconds(5)) {
    if (ep_.poll(handle) > 0) {
      any = true;
      until = Clock::now() + config_.poll_window;
    } else if (!any || Clock::now() >= until) {
      break;
    }
  }
  if (any) {
    std::lock_guard lock(mutex_);
    stats_.local_messages = ep_.local_messages();
  }
}

void ManagerLoop::on_event(const net::Event& e) {
  if (e.kind == net::Event::Kind::peer_error) {
    // A broken channel is not a network's hiccup: the worker cannot come back.
    const bool broken = e.error == net::Endpoint::kBrokenChannel;
    for (auto& [id, w] : workers_) {
      if (w.peer != e.peer || w.state == WorkerState::gone) continue;
      if (broken) lose(id, w, "its message channel broke", false);
      else lose(id, w, "its connection failed", true);
    }
    return;
  }
  std::string why;
  auto m = decode(e.data, why);
  if (!m) {
    LOG_WARN("dropped a message that is not Calypso-DSM protocol: %s", why.c_str());
    return;
  }
  if (m->type() == MsgType::hello) return on_hello(*m, e.peer);
  if (!from_the_worker_it_names(*m, e.peer)) return;
  on_message(*m);
}

// A message names its worker in its header. Where the network names the sender (tcp and
// verbs: FI_SOURCE; local channels), a message from one worker's endpoint that names
// another worker is dropped, and the worker it names is not blamed: it did not send it.
// Else a worker that misbehaves could answer another's runs with its own diffs, or tell
// the manager the other left. A sender the network cannot name (FI_ADDR_NOTAVAIL) is
// taken at its word, as before: rxm names a connection by the address it came from,
// which on a host with several interfaces need not be the one the worker advertised,
// and a connection made again after trouble was seen to read so too (the rogue test's
// noise identity). So a process that never joined is not stopped by this: the job key
// is what keeps it out. A hello names no worker (on_hello).
bool ManagerLoop::from_the_worker_it_names(const Message& m, net::PeerId from) {
  if (from == net::kNoPeer) return true;
  auto it = workers_.find(m.header.worker);
  // Nobody's, or a departed worker's (its addresses forgotten): on_message ignores it.
  if (it == workers_.end() || it->second.state == WorkerState::gone) return true;
  const Worker& w = it->second;
  if (from == w.peer || from == w.heartbeat_peer) return true;
  LOG_WARN("dropped a %s that says it is worker %u's but came from another endpoint", to_string(m.type()),
           it->first);
  return false;
}

void ManagerLoop::on_message(const Message& m, bool inner) {
  LOG_DEBUG("%s from worker %u (%u bytes)", to_string(m.type()), m.header.worker, m.header.body_bytes);
  auto it = workers_.find(m.header.worker);
  if (it == workers_.end() || it->second.state == WorkerState::gone) {
    LOG_DEBUG("ignored %s from unknown or departed worker %u", to_string(m.type()), m.header.worker);
    if (it != workers_.end() && it->second.given_up && !inner) tell_given_up(it->first, it->second);
    return;
  }
  WorkerId id = it->first;
  Worker& w = it->second;
  // A bundle's own arrival shows the worker alive (below); its messages were written
  // before anything that happened while they are taken, so they revive nothing.
  if (inner) {
    if (w.state != WorkerState::alive) return;
  } else {
    w.last_seen = Clock::now();
    if (m.type() == MsgType::bundle) in_bundle_ = true;   // a revival's dispatch waits too
  }
  if (!inner && w.state == WorkerState::suspected) {
    LOG_WARN("worker %u (%s pid %u) is back after being suspected", id, w.host.c_str(), w.pid);
    w.state = WorkerState::alive;
    for (auto [step, segment] : w.counted_failures) {
      if (step_ && step == step_->id) step_->sched.forgive(segment);
    }
    w.counted_failures.clear();
    w.frozen_sent = 0;   // assignments taken back may have held frozen runs (twice is harmless)
    // A wait_for_workers() while it was suspected sent it no prepare.
    prepare_if_behind(id, w);
    dispatch();
  }
  switch (m.type()) {
    case MsgType::request_work: return on_request_work(m, id, w);
    case MsgType::prepared: return on_prepared(m, id, w);
    case MsgType::page_request: return on_page_request(m, id, w);
    case MsgType::read_set: return on_read_set(m, id, w);
    case MsgType::result_chunk: return on_result_chunk(m, id, w);
    case MsgType::heartbeat: return;
    case MsgType::leave: return lose(id, w, leave_reason(m).c_str(), false);
    case MsgType::bundle: return on_bundle(m, id);
    default: return violation(id, std::string("unexpected ") + to_string(m.type()));
  }
}

// "it left", and the reason a worker that could not go on gives (its take_welcome
// failed: a region it cannot map, say, on a host whose output the user may not see): at
// most kMaxLeaveReason bytes, anything but printable ASCII shown as '?'.
std::string ManagerLoop::leave_reason(const Message& m) {
  std::string why = "it left";
  if (m.body.empty()) return why;
  why += ": ";
  for (std::byte b : m.body.first(std::min(m.body.size(), kMaxLeaveReason))) {
    const auto c = static_cast<unsigned char>(b);
    why += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?';
  }
  return why;
}

void ManagerLoop::on_hello(const Message& m, net::PeerId from) {
  std::string why;
  auto h = parse_hello(m, why);
  if (!h) {
    LOG_WARN("dropped a malformed hello: %s", why.c_str());
    return;
  }
  std::vector<std::byte> address(h->address.begin(), h->address.end());
  if (h->identity != executable_identity()) {
    // One meant for this job (its key) will not join; a stray of another job is not ours.
    if (h->fixed.job_key == config_.job_key) never_joining_set_.insert({std::string(h->fixed.host), h->fixed.pid});
    return refuse(address, "the worker runs a different executable (identity " + h->identity +
                               ", the manager's is " + executable_identity() + ")");
  }
  if (h->fixed.job_key != config_.job_key) return refuse(address, "wrong job key");
  if (shutting_down_) return refuse(address, "the job is ending", RefuseCode::job_ending);
  // A worker sends one hello, from endpoints nobody had. One whose addresses include a
  // joined worker's cannot share that worker's handle (the provider gives an address one
  // handle however often it is added: the manager's sends to the old worker would reach
  // the newcomer, and forgetting its address later would take the newcomer's pending
  // sends with it). If the network says the hello came from that worker's address, a
  // new process listens there (the kernel handed the port out again), so the old one has
  // gone: it is lost now, its run counted as failed as a silent worker's. Otherwise (its
  // heartbeat endpoint, or a sender the network does not name) it may be a forgery, and
  // a forged hello must not cost a worker: the newcomer is refused.
  std::vector<std::byte> hb_address(h->heartbeat_address.begin(), h->heartbeat_address.end());
  for (auto& [old, w] : workers_) {
    if (w.state == WorkerState::gone) continue;
    const bool named = from != net::kNoPeer && (w.peer == from || w.heartbeat_peer == from);
    const bool shared = named || address == w.address || address == w.heartbeat_address ||
                        hb_address == w.address || hb_address == w.heartbeat_address;
    if (!shared) continue;
    if (!named) {   // the newcomer may start again (it gets other ports)
      return refuse(address, "an address in its hello is worker " + std::to_string(old) +
                                 "'s, which the manager still has (start it again)");
    }
    lose(old, w, "a new worker now has its network address (its process has gone)", true);
    w.state = WorkerState::gone;   // it cannot come back: its address goes now
    w.heartbeat_address.clear();   // nor be told anything there (tell_given_up)
    release(w);
  }
  WorkerId id = next_worker_++;
  Worker& w = workers_[id];
  try {
    w.peer = ep_.add_peer(net::Address{address});
    w.heartbeat_peer = ep_.add_peer(net::Address{hb_address});
  } catch (const std::exception& e) {
    workers_.erase(id);
    LOG_WARN("refused a hello with a bad address: %s", e.what());
    return;
  }
  w.last_seen = Clock::now();
  w.address = address;
  w.heartbeat_address = std::move(hb_address);
  w.host = h->fixed.host;
  w.pid = h->fixed.pid;
  never_joining_set_.erase({w.host, w.pid});   // its exit's notice overtook its hello
  w.synced_version = version();   // its cache is empty: nothing to invalidate
  Welcome wel{id, static_cast<std::uint32_t>(region_.page_size()),
              reinterpret_cast<std::uint64_t>(region_.base()), region_.size(), config_.fetch_pages,
              static_cast<std::uint32_t>(config_.heartbeat.count()),
              static_cast<std::uint32_t>(config_.manager_timeout.count()), 0, 0, 0, 0, 0, 0, 0,
              used_bytes_.load(std::memory_order_relaxed), LocalOffer{}, 0, 0};
  const bool same_host = !hostname_.empty() && w.host == hostname_;
  if (config_.local_reads && same_host) {
    wel.local = make_local_offer(region_.fd(), control_);   // it may read home memory itself
  }
  // Only the worker's own file: a ring named in another process would have the manager
  // write into it.
  if (config_.local_results > 0 && same_host && h->fixed.results.pid != 0 && h->fixed.results.pid == h->fixed.pid) {
    std::string why;
    if (auto ring = RingReader::open(h->fixed.results, why)) w.ring.emplace(std::move(*ring));
    else LOG_INFO("worker %u's results come in messages: %s", id, why.c_str());
  }
  wel.local_results = w.ring ? 1 : 0;
  // The same proof of one host as for the ring: the worker's own files, opened by pid.
  // The pidfd first: the files then prove it is the worker's process (a pid reused in
  // between would not hold them).
  std::optional<net::LocalChannel> channel;
  UniqueFd exit_watch;
  if (config_.local_messages && same_host && h->fixed.messages.nonce != 0) {
    exit_watch = UniqueFd(static_cast<int>(syscall(SYS_pidfd_open, h->fixed.pid, 0)));
    std::string why;
    channel = open_offered_channel(h->fixed.pid, h->fixed.messages, ep_.max_message(), why);
    if (!channel) LOG_INFO("worker %u's messages go through the network: %s", id, why.c_str());
  }
  wel.local_messages = channel ? 1 : 0;
  std::vector<std::uint32_t> runs;   // pages written so far, as (first, count)
  for (dsm::PageNumber p = 0; p < ever_written_.size();) {
    if (!ever_written_[p]) {
      ++p;
      continue;
    }
    dsm::PageNumber q = p + 1;
    while (q < ever_written_.size() && ever_written_[q]) ++q;
    runs.push_back(p);
    runs.push_back(q - p);
    p = q;
  }
  // A fragmented written set that would not fit a message is sent as "everything":
  // the worker then fetches every page, as without this list.
  if (runs.size() * sizeof(std::uint32_t) > ep_.max_message() / 2) runs = {0, static_cast<std::uint32_t>(region_.pages())};
  wel.written_runs = static_cast<std::uint32_t>(runs.size() / 2);
  if (home_mr_ && control_mr_) {
    wel.rma = kRmaReads | (ep_.serves_reads_in_order() ? kRmaReadsInOrder : 0);
    wel.home_address = home_mr_.remote().address;
    wel.home_key = home_mr_.remote().key;
    wel.control_address = control_mr_.remote().address;
    wel.control_key = control_mr_.remote().key;
  }
  Encoder e(MsgType::welcome, id, wel);
  e.append(runs.data(), runs.size() * sizeof(std::uint32_t));
  if (!send(id, w, e)) return;
  if (channel) {
    ep_.attach_local(w.peer, std::move(*channel));   // after the welcome: see Welcome
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kExitTag | id;
    // Without a pidfd (a kernel before 5.3), missing heartbeats still find it.
    if (exit_watch.get() >= 0 && epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, exit_watch.get(), &ev) == 0) {
      w.exit_watch = std::move(exit_watch);
    }
  }
  LOG_INFO("worker %u joined (%s pid %u)", id, w.host.c_str(), w.pid);
  {
    std::lock_guard lock(mutex_);
    ++stats_.workers_joined;
  }
  if (pending_static_ && workers_.size() >= config_.job_workers()) {
    OpenStep s = std::move(*pending_static_);
    pending_static_.reset();
    start_step(std::move(s));
  }
}

void ManagerLoop::refuse(const std::vector<std::byte>& address, const std::string& why, RefuseCode code) {
  if (code == RefuseCode::job_ending) {
    LOG_INFO("refused a worker: %s", why.c_str());   // it started too late to help: no fault
  } else {
    LOG_WARN("refused a worker: %s", why.c_str());
  }
  try {
    net::PeerId peer = ep_.add_peer(net::Address{address});
    Refuse r{static_cast<std::uint32_t>(why.size()), code};
    Encoder e(MsgType::refuse, kNoWorker, r);
    e.append(why.data(), why.size());
    auto bytes = e.bytes();
    ep_.send(peer, bytes, std::chrono::milliseconds(100));
  } catch (const std::exception& e) {
    LOG_WARN("could not tell the refused worker: %s", e.what());
  }
}

// request_work comes once after joining, and when a worker has nothing left to run after
// giving up a segment whose step ended (it then sends no result). It names the last
// assignment the worker took: the ones up to it that are still open here were dropped
// (run elsewhere now); later ones are still on their way to it.
void ManagerLoop::on_request_work(const Message& m, WorkerId id, Worker& w) {
  std::string why;
  auto r = fixed_part<RequestWork>(m, why);
  if (!r) return violation(id, why);
  std::erase_if(w.running, [&](const Worker::Held& h) {
    if (h.seq > r->consumed || h.arriving) return false;   // arriving: sent, not dropped
    if (step_) step_->sched.abandon(h.segment, id, false);
    return true;
  });
  w.parked = w.holding() == 0;
  dispatch();
}

void ManagerLoop::on_prepared(const Message& m, WorkerId id, Worker& w) {
  std::string why;
  auto p = fixed_part<Prepare>(m, why);
  if (!p) return violation(id, why);
  w.prepared = std::max(w.prepared.value_or(0), p->used_bytes);
  w.preparing = false;
  prepare_if_behind(id, w);   // it answered an older one
}

// A live worker that has answered its welcome but not yet prepare_target_, and has no
// prepare unanswered, gets one.
void ManagerLoop::prepare_if_behind(WorkerId id, Worker& w) {
  if (w.state != WorkerState::alive || w.preparing || !w.prepared || *w.prepared >= prepare_target_) return;
  Encoder e(MsgType::prepare, id, Prepare{prepare_target_});
  w.preparing = send(id, w, e);
}

// w has finished running `segment` (its result is arriving or complete): the next one
// it holds starts now, and w is idle if it holds no other. False if it was not held
// or already marked.
bool ManagerLoop::ran(WorkerId id, Worker& w, std::uint32_t segment) {
  auto it = std::find_if(w.running.begin(), w.running.end(),
                         [&](const Worker::Held& h) { return h.segment == segment; });
  if (it == w.running.end() || it->arriving) return false;
  it->arriving = true;
  if (const Worker::Held* next = w.current()) step_->sched.started(next->segment, id);
  w.parked = w.holding() == 0;
  return true;
}

void ManagerLoop::on_read_set(const Message& m, WorkerId id, Worker& w) {
  std::string why;
  StepId step = 0;
  auto pages = parse_read_set(m, step, why);
  if (!pages) return violation(id, why);
  for (dsm::PageNumber p : *pages) {
    if (p >= region_.pages()) return violation(id, "read_set names a page outside the region");
  }
  // The manager's step count, not the worker's word: a read counts from now.
  const StepId now = next_step_ - 1;
  for (dsm::PageNumber p : *pages) w.reads[p] = now;
  if (w.reads.size() > kMaxReadsKept) {
    std::erase_if(w.reads, [&](const auto& r) { return r.second + kPushWindow < now; });
    if (w.reads.size() > kMaxReadsKept) w.reads.clear();
  }
}

void ManagerLoop::on_page_request(const Message& m, WorkerId id, Worker& w) {
  std::string why;
  auto r = fixed_part<PageRequest>(m, why);
  if (!r) return violation(id, why);
  PageData reply{r->step, r->first, r->count, PageStatus::ok, 0};
  scratch_.clear();
  if (!step_ || r->step != step_->id) {
    reply.status = PageStatus::stale;
  } else if (r->count == 0) {
    reply.status = PageStatus::bad_range;
    violation(id, "page request for no pages");
  } else if (r->count > 64 || std::size_t{r->count} * region_.page_size() > kMaxFetchBytes) {
    // The reply would not fit a message (workers keep their fetches within this).
    reply.status = PageStatus::bad_range;
    violation(id, "page request for " + std::to_string(r->count) + " pages, more than one reply can hold");
  } else if (!home_.copy_pages(r->first, r->count, scratch_)) {
    reply.status = PageStatus::bad_range;
    violation(id, "page request outside the region");
  }
  Encoder e(MsgType::page_data, id, reply);
  if (reply.status == PageStatus::ok) e.append(scratch_);
  if (send(id, w, e) && reply.status == PageStatus::ok) {
    std::lock_guard lock(mutex_);
    stats_.pages_fetched += r->count;
  }
}

void ManagerLoop::on_result_chunk(const Message& m, WorkerId id, Worker& w) {
  std::string why;
  auto c = fixed_part<ResultChunk>(m, why);
  if (!c) return violation(id, why);
  auto data = tail<ResultChunk>(m);
  const std::uint64_t limit = std::uint64_t{region_.size()} * 2 + (1u << 20);
  const bool in_ring = (c->flags & kResultInRing) != 0;
  if (in_ring) {
    if (!w.ring || !data.empty() || c->total_bytes == 0 || c->total_bytes > w.ring->capacity()) {
      return violation(id, "result in a ring the manager does not hold, or larger than the ring");
    }
  } else if (c->total_bytes > limit || c->offset > c->total_bytes || data.size() > c->total_bytes - c->offset) {
    return violation(id, "result chunk out of bounds");
  }
  const bool first = in_ring || c->offset == 0;   // of the result's messages
  if (first && (c->flags & kResultShortRun) != 0) w.bunches = true;
  if (first && c->pages_read > 0) {
    std::lock_guard lock(mutex_);
    stats_.pages_fetched += c->pages_read;
  }
  ResultKey key{c->step, c->segment, c->attempt};
  const bool unwanted = !step_ || key.step != step_->id || key.segment >= step_->sched.size() ||
                        step_->sched.done(key.segment);
  // A run it was never sent: taken, it would complete the segment (an empty result
  // passes as "wrote nothing") with writes the segment never made.
  if (!unwanted && !step_->was_sent(key.segment, key.attempt, id)) {
    return violation(id, "result for " + segment_name(key.segment) + ", attempt " + std::to_string(key.attempt) +
                             ", which it was never sent");
  }
  if (in_ring) {   // the whole result, read where it lies (an unwanted one: its room freed)
    StepResult r;
    if (!unwanted) r.loan = w.ring->borrow(c->offset, c->total_bytes);
    if (unwanted ? !w.ring->skip(c->offset, c->total_bytes) : !r.loan) {
      // Its run is over, and the worker is not to be trusted (lose() re-runs the segment).
      LOG_WARN("worker %u named a result its ring cannot hold, or that was taken", id);
      return lose(id, w, "it named a result its ring cannot hold", false);
    }
    {
      std::lock_guard lock(mutex_);
      ++stats_.ring_results;
    }
    if (config_.check_conflicts) r.own_copy(result_buffers_);   // the checker walks diffs as validated
    return on_result(id, w, key, std::move(r));   // discards an unwanted one
  }
  bool began_arriving = false;
  auto [it, fresh] = w.assemblies.try_emplace(key);
  Assembly& a = it->second;
  if (fresh && unwanted && std::count_if(w.assemblies.begin(), w.assemblies.end(), [](const auto& entry) {
                             return entry.second.discard;
                           }) >= static_cast<std::ptrdiff_t>(kMaxUnwantedPartials)) {
    // A worker finishes every result it begins, and has at most CALYPSO_PIPELINE of them
    // in flight: these are no worker's, and each would be kept while the worker lives.
    w.assemblies.erase(it);
    violation(id, "more than " + std::to_string(kMaxUnwantedPartials) + " unfinished results nobody wants");
    return lose(id, w, "it began more results than it was sent", false);
  }
  if (fresh) {
    a.total = c->total_bytes;
    a.discard = unwanted;
    if (!a.discard) {
      a.bytes = result_buffers_.take(c->total_bytes);
      step_->sched.arriving(key.segment, id);
      // With CALYPSO_PIPELINE=1 (one assignment at a time) the next waits for the result.
      if (config_.pipeline > 1 && data.size() < c->total_bytes) began_arriving = ran(id, w, key.segment);
    }
  }
  // Chunks that do not make one result: the result is lost, and the worker with it, as
  // for a malformed result. Only dropping the assembly would leave the segment's run
  // marked arriving (never late, so never re-run) for as long as the worker lives.
  if (a.total != c->total_bytes) {
    violation(id, "result chunks disagree on the result's size");
    return lose(id, w, "it sent result chunks that disagree", false);
  }
  a.last_chunk = Clock::now();
  if (!data.empty() && !a.discard) std::memcpy(a.bytes.data() + c->offset, data.data(), data.size());
  a.received += data.size();
  if (a.received > c->total_bytes) {
    violation(id, "result chunks overlap");
    return lose(id, w, "it sent result chunks that overlap", false);
  }
  if (a.received < c->total_bytes) {
    if (began_arriving) dispatch();   // last: it may lose workers and their assemblies
    return;
  }
  StepResult r{std::move(a.bytes), std::nullopt};
  w.assemblies.erase(it);
  on_result(id, w, key, std::move(r));
}

void ManagerLoop::StepResult::own_copy(ResultBuffers& buffers) {
  if (!loan) return;
  bytes = buffers.take(loan->bytes().size());
  std::memcpy(bytes.data(), loan->bytes().data(), bytes.size());
  loan.reset();
}

// A complete result also means the worker is idle again: it sends no separate request,
// whether or not the result is still wanted (its step may be over).
void ManagerLoop::on_result(WorkerId id, Worker& w, const ResultKey& key, StepResult result) {
  // The worker is idle once it holds no other assignment (one queued behind this
  // result, or sent after it asked again, keeps it busy).
  if (step_ && key.step == step_->id) {
    ran(id, w, key.segment);
    std::erase_if(w.running, [&](const Worker::Held& h) { return h.segment == key.segment; });
  }
  w.parked = w.holding() == 0;
  if (!step_ || key.step != step_->id || key.segment >= step_->sched.size()) {
    {
      std::lock_guard lock(mutex_);
      ++stats_.results_discarded;   // late: the step it belongs to is over
    }
    return dispatch();
  }
  if (step_->sched.done(key.segment)) {
    step_->sched.complete(key.segment, id);
    {
      std::lock_guard lock(mutex_);
      ++stats_.results_discarded;
    }
    return dispatch();
  }
  if (std::string why = collation_.validate(result.body()); !why.empty()) {
    violation(id, "malformed result for " + segment_name(key.segment) + ": " + why);
    // Its run of the segment is over (w.running was cleared above, so lose() would not
    // see it): another worker may start it at once.
    step_->sched.abandon(key.segment, id, false);
    return lose(id, w, "it sent a malformed result", false);
  }
  // The program's error, not the worker's: its routine changed memory that it had frozen.
  // Every run of the segment would, so the step fails at once, and nothing is applied.
  // (The program, the only one to freeze, waits in run_step while a step is open.)
  const auto page = frozen_runs_.empty() ? std::nullopt : dsm::Collation::frozen_change(result.body(), home_.frozen_flags());
  if (page) {
    char at[32];
    std::snprintf(at, sizeof at, "%p", static_cast<void*>(region_.user_page(*page)));
    return fail_step(segment_name(key.segment) + " changed shared memory that the program had frozen with "
                     "Manager::freeze (the page at " + at + ")");
  }
  step_->sched.complete(key.segment, id);
  step_->results[key.segment] = std::move(result);
  step_->accepted_from[key.segment] = id;
  {
    std::lock_guard lock(mutex_);
    ++stats_.segments;
  }
  if (step_->sched.all_done()) return finish_step();   // the last result has no time to gain
  dispatch();
  // After the dispatch, so that no worker waits while the kernel maps pages (in a
  // bundle, after its one dispatch). A failed assignment may have ended the step there.
  if (!step_) return;
  if (in_bundle_) prefault_due_.push_back({step_->id, key.segment});
  else collation_.prefault(step_->results[key.segment].body());
}

void ManagerLoop::on_tick() {
  const auto now = Clock::now();
  ping_workers();
  for (auto& [id, w] : workers_) {
    // Unwanted results whose rest stopped coming (a worker lost halfway through one and
    // back sends the rest of it, which starts a new one): nothing waits for them, and
    // they must not count towards kMaxUnwantedPartials for good.
    std::erase_if(w.assemblies, [&](const auto& entry) {
      return entry.second.discard && now - entry.second.last_chunk > 2 * config_.suspect_after;
    });
    if (w.state == WorkerState::alive && now - w.last_seen > config_.suspect_after) {
      lose(id, w, "it has been silent too long (CALYPSO_SUSPECT_MS)", true);   // -> suspected
    } else if (w.state == WorkerState::alive &&
               std::any_of(w.assemblies.begin(), w.assemblies.end(), [&](const auto& entry) {
                 return !entry.second.discard && now - entry.second.last_chunk > 2 * config_.suspect_after;
               })) {
      // A result begun and not finished, from a worker that is otherwise heard from
      // (its heartbeats keep it alive): its run is never late, so without this its
      // segment would wait for it for good. Twice the suspicion period, so that a link
      // cut that stalls both is found as silence first (which clears assemblies).
      lose(id, w, "its result stopped arriving halfway (2 x CALYPSO_SUSPECT_MS without a chunk)", false);
    } else if (w.state == WorkerState::suspected && now - w.last_seen > config_.manager_timeout) {
      // Silent for as long as a worker waits for us before giving up: if it is alive and
      // cut off, it has left by now. Its endpoint resources can go.
      LOG_INFO("worker %u silent for CALYPSO_MANAGER_TIMEOUT_MS: gone", id);
      w.state = WorkerState::gone;
      w.given_up = true;
      release(w);
    }
  }
  update_live();
  if (!step_) return;
  if (auto d = step_->doomed) {
    const std::uint32_t seg = d->first;
    if (step_->sched.done(seg) || step_->sched.failures(seg) < config_.max_attempts) step_->doomed.reset();
  }
  // Another segment may have reached the limit meanwhile: it is offered to nobody, so
  // it must be watched here, or its step would wait for good.
  if (!step_->doomed) {
    if (auto seg = step_->sched.exhausted()) step_->doomed = std::pair{*seg, now};
  }
  if (auto d = step_->doomed) {
    const std::uint32_t seg = d->first;
    if (now - d->second > config_.suspect_after) {
      const auto deaths = step_->sched.failures(seg);
      return fail_step(segment_name(seg) + " failed: " + std::to_string(deaths) +
                       (deaths == 1 ? " worker died or was lost" : " workers died or were lost") +
                       " while running it (CALYPSO_MAX_ATTEMPTS=" + std::to_string(config_.max_attempts) + ")");
    }
  }
  if (live_workers() > 0) {
    step_->no_workers_since.reset();
  } else if (!step_->no_workers_since) {
    step_->no_workers_since = now;
  } else if (now - *step_->no_workers_since > config_.no_worker_timeout) {
    fail_step("no live worker for " + std::to_string(config_.no_worker_timeout.count()) +
              " ms (CALYPSO_NO_WORKER_TIMEOUT_MS); start workers with calypso-run --join");
  }
}

// Workers watch the manager as it watches them: a worker that hears nothing for
// CALYPSO_MANAGER_TIMEOUT_MS decides the manager is gone and exits. Pings never wait: a peer
// that does not take them is dealt with by its own silence.
void ManagerLoop::ping_workers() {
  for (auto& [id, w] : workers_) {
    if (w.state == WorkerState::gone) continue;
    Encoder e(MsgType::heartbeat, id, Empty{});
    auto bytes = e.bytes();
    ep_.send(w.heartbeat_peer, bytes, std::chrono::milliseconds(0));
  }
}

// ---- workers ----------------------------------------------------------------------------

void ManagerLoop::lose(WorkerId id, Worker& w, const char* why, bool counts_as_failure) {
  if (w.state == WorkerState::gone) return;
  if (w.state == WorkerState::suspected && counts_as_failure) return;   // already handled
  LOG_WARN("lost worker %u (%s pid %u): %s", id, w.host.c_str(), w.pid, why);
  w.preparing = false;   // a prepare to it may be lost: one goes again if it comes back
  // A suspected worker keeps its outstanding work request: if it comes back while idle,
  // it is still waiting for an assignment.
  w.state = counts_as_failure ? WorkerState::suspected : WorkerState::gone;
  if (w.state == WorkerState::gone) w.parked = false;
  w.assemblies.clear();
  // Its kept results of the open step stay kept, but no longer in its ring, which it can
  // write until the step ends: a worker given up may be one that misbehaves.
  for (std::uint32_t s = 0; step_ && s < step_->results.size(); ++s) {
    if (step_->accepted_from[s] == id) step_->results[s].own_copy(result_buffers_);
  }
  const std::vector<Worker::Held> held = std::exchange(w.running, {});
  {
    std::lock_guard lock(mutex_);
    ++stats_.workers_lost;
  }
  if (w.state == WorkerState::gone) release(w);
  if (step_) step_->sched.disown(id);
  // Only the segment it was running counts as a failed run; the ones queued behind it
  // never started, and one whose result was arriving is re-run without blame. That is
  // the first one without a result, except from a worker that may hold results back
  // (it has sent a result of a short segment, and it remembers such segments for good:
  // worker_loop.cpp ship): then the first ones may be results it held, and the one it
  // ran is any of the first kMaxHeldResults + 1, so each counts. (A segment that kills
  // every worker is then still named after CALYPSO_MAX_ATTEMPTS deaths; one merely
  // queued behind it is counted too, but is re-run and done long before a third death.)
  const std::size_t suspects = w.bunches ? kMaxHeldResults + 1 : 1;
  w.counted_failures.clear();
  std::size_t counted = 0;
  for (std::size_t i = 0; step_ && i < held.size(); ++i) {
    const std::uint32_t seg = held[i].segment;
    const bool failed = counts_as_failure && !held[i].arriving && counted < suspects;
    counted += !held[i].arriving;
    if (failed && !step_->sched.done(seg)) w.counted_failures.emplace_back(step_->id, seg);
    // The suspicion period runs from the latest death (a failure taken back and counted
    // again restarts it); a second segment at the limit is found by on_tick.
    if (step_->sched.abandon(seg, id, failed) && (!step_->doomed || step_->doomed->first == seg)) {
      step_->doomed = std::pair{seg, Clock::now()};
    }
  }
  dispatch();
}

// Messages it sent before it died are taken first (they may hold results); it is then
// lost as a worker that stops answering is (unless the job is ending: workers exit
// then), and its pidfd closed (it stays readable).
void ManagerLoop::on_exit(WorkerId id) {
  auto it = workers_.find(id);
  if (it == workers_.end()) return;
  if (!shutting_down_) {
    drain_endpoint();
    if (it->second.state != WorkerState::gone) lose(id, it->second, "its process exited", true);
  }
  it->second.exit_watch.reset();
}

// A worker the manager gave up (gone: silent for CALYPSO_MANAGER_TIMEOUT_MS, its work
// done elsewhere) has spoken again: a process that was stopped and continued, or a host
// whose link came back late. It is not taken back (its pending results and cache are
// of a past the job has left), but told, so that it starts again as a new worker (a new
// process image: sched/start_again.hpp), joining with a hello like any other, instead of
// waiting a further CALYPSO_MANAGER_TIMEOUT_MS for a manager that ignores it and then
// reporting the manager lost. Its address was forgotten (release): it is added again
// for the send.
void ManagerLoop::tell_given_up(WorkerId id, Worker& w) {
  const auto now = Clock::now();
  if (w.told_given_up && now - *w.told_given_up < std::chrono::seconds(1)) return;
  if (w.heartbeat_address.empty()) return;
  if (!w.told_given_up) LOG_WARN("worker %u (%s pid %u), given up, spoke again: told so (it starts again as a new worker)", id, w.host.c_str(), w.pid);
  w.told_given_up = now;
  // Its address only for this send: a peer kept would hold a send slot for good if the
  // worker is gone by now (remove_peer gives it back).
  try {
    const net::PeerId peer = ep_.add_peer(net::Address{w.heartbeat_address});
    Encoder e(MsgType::shutdown, id, Shutdown{0, kShutdownGivenUp});
    auto bytes = e.bytes();
    ep_.send(peer, bytes, std::chrono::milliseconds(0));
    ep_.remove_peer(peer);
  } catch (const std::exception& e) {
    LOG_DEBUG("could not tell given-up worker %u: %s", id, e.what());
  }
}

// Forgets a departed worker's addresses, and with them any send still waiting for it
// (a dead peer never completes them, and they hold send buffers).
void ManagerLoop::release(Worker& w) {
  w.exit_watch.reset();   // closing it takes it out of epoll_
  for (net::PeerId* p : {&w.peer, &w.heartbeat_peer}) {
    if (*p != net::kNoPeer) ep_.remove_peer(*p);
    *p = net::kNoPeer;
  }
  w.ring.reset();   // its descriptor and the ring's memory
}

void ManagerLoop::update_live() {
  std::size_t live = 0, ready = 0, preparing = 0, suspected = 0;
  for (const auto& [id, w] : workers_) {
    suspected += w.state == WorkerState::suspected;
    if (w.state != WorkerState::alive) continue;
    const bool is_ready = w.prepared && *w.prepared >= prepare_target_;
    live += w.prepared.has_value();
    ready += is_ready;
    preparing += !is_ready;
  }
  const std::size_t joined = workers_.size(), died = never_joining_set_.size();
  std::lock_guard lock(mutex_);
  // wait_for_workers() may be waiting for this.
  if (live != live_ || ready != ready_ || preparing != preparing_ || suspected != suspected_ || joined != joined_ ||
      died != never_joining_ || ready_counted_for_ != prepare_target_) {
    cv_.notify_all();
  }
  live_ = live;
  ready_ = ready;
  preparing_ = preparing;
  suspected_ = suspected;
  joined_ = joined;
  never_joining_ = died;
  ready_counted_for_ = prepare_target_;
}

// A bundle is its messages, taken in order (parse_bundle checked all of them first).
// on_message set in_bundle_: dispatch() waits for the last of them.
void ManagerLoop::on_bundle(const Message& m, WorkerId id) {
  std::string why;
  auto inner = parse_bundle(m, why);
  std::uint64_t results = 0;
  if (!inner) {
    violation(id, why);
  } else {
    for (std::span<const std::byte> bytes : *inner) {
      auto one = decode(bytes, why);
      if (!one) continue;   // (parse_bundle decoded each already; it refuses nested bundles)
      results += one->type() == MsgType::result_chunk;
      on_message(*one, true);
    }
  }
  if (results > 1) {   // not a result with its own read set
    std::lock_guard lock(mutex_);
    stats_.bundled_results += results;
  }
  in_bundle_ = false;
  if (std::exchange(dispatch_due_, false)) dispatch();
  for (auto [step, segment] : prefault_due_) {
    if (step_ && step_->id == step) collation_.prefault(step_->results[segment].body());
  }
  prefault_due_.clear();
}

bool ManagerLoop::send(WorkerId id, Worker& w, Encoder& e) {
  const net::SendStatus status = post(w, e.bytes());
  if (status != net::SendStatus::ok) lose_after_send(id, w, status);
  return status == net::SendStatus::ok;
}

// The loop waits for a send, and so does every other worker meanwhile: up to 2 s for a
// worker that is not known to be stuck (a first connection may need that long), 20 ms
// (a moment's congestion) for one whose last send timed out, until a send to it goes
// through again. Else a worker that stops taking messages but keeps sending (it comes
// back after each suspicion) held the loop 2 s a message: the rogue test's noise
// identity did so 15 times in a row on a busy host, and the real workers heard nothing
// for CALYPSO_MANAGER_TIMEOUT_MS and left.
net::SendStatus ManagerLoop::post(Worker& w, std::span<const std::byte> message) {
  std::span<const std::byte> parts[] = {message};
  const auto patience = w.send_stuck ? std::chrono::milliseconds(20) : std::chrono::milliseconds(2000);
  const net::SendStatus status = ep_.send(w.peer, parts, patience);
  if (status == net::SendStatus::again) w.send_stuck = true;
  if (status == net::SendStatus::ok) w.send_stuck = false;
  return status;
}

void ManagerLoop::lose_after_send(WorkerId id, Worker& w, net::SendStatus status) {
  lose(id, w, status == net::SendStatus::again ? "it does not take messages" : "its connection failed", true);
}

void ManagerLoop::violation(WorkerId id, const std::string& what) {
  LOG_WARN("protocol violation by worker %u: %s (ignored)", id, what.c_str());
}

std::string ManagerLoop::segment_name(std::uint32_t segment) const {
  const auto& r = step_->spec.routines[step_->routine_of[segment]];
  return "segment " + std::to_string(step_->index_of[segment]) + " of routine '" +
         RoutineRegistry::instance().name(r.id) + "'";
}

// ---- called from the program's thread ------------------------------------------------------

void ManagerLoop::run_step(StepSpec spec) {
  std::unique_lock lock(mutex_);
  pending_step_ = std::move(spec);
  step_outcome_.reset();
  std::uint64_t one = 1;
  [[maybe_unused]] auto r = write(wakeup_.get(), &one, sizeof one);
  cv_.wait(lock, [this] { return step_outcome_.has_value() || stopped_; });
  if (stopped_ && !step_outcome_) throw Error("calypso: the manager loop stopped during a step");
  std::optional<std::string> error = std::move(*step_outcome_);
  step_outcome_.reset();
  if (error) throw Error("calypso: parallel step failed: " + *error);
}

void ManagerLoop::shutdown(int code) {
  {
    std::lock_guard lock(mutex_);
    shutdown_code_ = code;
  }
  std::uint64_t one = 1;
  [[maybe_unused]] auto r = write(wakeup_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
  stop_signals_.release();   // nothing reads them now: the program's (a pending one acts)
}

Stats ManagerLoop::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

// The workers allocate the memory behind the region in use now (`prepare`), so that the
// steps the program times next do not pay for it.
std::size_t ManagerLoop::wait_for_workers(std::size_t n, std::chrono::milliseconds timeout) {
  const std::uint64_t target = used_bytes_.load(std::memory_order_relaxed);
  std::unique_lock lock(mutex_);
  ready_target_ = std::max(ready_target_, target);
  std::uint64_t one = 1;
  [[maybe_unused]] auto r = write(wakeup_.get(), &one, sizeof one);
  // Fewer than n may be ready when nothing more can come: no worker that joined is still
  // allocating or suspected (it may come back), and the workers that joined, whatever
  // became of them, and those that will not join (never_joining_set_: dead before
  // joining, or refused for another executable) make n. Else it waits, up to the timeout.
  auto settled = [&] {
    if (stopped_) return true;
    if (ready_counted_for_ < target) return false;
    return ready_ >= n || (preparing_ == 0 && suspected_ == 0 && joined_ + never_joining_ >= n);
  };
  // A wait for workers on other hosts may be long, and nothing else is printed during
  // it: say what it waits for after a few seconds, and again now and then.
  const auto start = Clock::now(), deadline = start + timeout;
  for (auto note = start + kWaitNoteAfter; !cv_.wait_until(lock, std::min(note, deadline), settled);
       note += kWaitNoteEvery) {
    if (Clock::now() >= deadline) break;
    const auto waited = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start).count();
    LOG_WARN("waiting for %zu workers (%lld s so far): %zu ready, %zu joined, %zu will not join; the program "
             "goes on without the rest after %lld s (wait_for_workers' timeout)",
             n, static_cast<long long>(waited), ready_, joined_, never_joining_,
             static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(timeout).count()));
  }
  return ready_counted_for_ >= target ? ready_ : 0;
}

std::size_t ManagerLoop::live_workers() const {
  std::lock_guard lock(mutex_);
  return live_;
}

}  // namespace calypso::sched
