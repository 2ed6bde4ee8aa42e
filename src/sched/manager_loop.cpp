// The manager's event loop; see manager_loop.hpp. Everything here runs on the loop
// thread except the three entry points at the bottom (run_step, shutdown, stats), which
// the program's thread calls and which talk to the loop through mutex_ and an eventfd.
#include "sched/manager_loop.hpp"

#include "build_id.hpp"
#include "log.hpp"
#include "sched/job_address.hpp"

#include <calypso/error.hpp>

#include <algorithm>
#include <cstring>
#include <sys/epoll.h>
#include <sys/eventfd.h>
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
  return e;
}

UniqueFd make_epoll(int ep_fd, int wakeup_fd, int timer_fd) {
  UniqueFd epoll(epoll_create1(EPOLL_CLOEXEC));
  if (epoll.get() < 0) throw Error(std::string("calypso: epoll_create1: ") + std::strerror(errno));
  for (int fd : {ep_fd, wakeup_fd, timer_fd}) {
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
      collation_(region, config.check_conflicts),
      ep_(net::Endpoint::open(endpoint_config(config))),
      wakeup_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      timer_(make_timer(config.heartbeat)) {
  epoll_ = make_epoll(ep_.wait_fd(), wakeup_.get(), timer_.get());
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
    epoll_event evs[4];
    int n = epoll_wait(epoll_.get(), evs, 4, ep_.wait_fd() < 0 ? 10 : -1);
    for (int i = 0; i < n; ++i) {
      std::uint64_t count;
      if (evs[i].data.fd == timer_.get()) {
        if (read(timer_.get(), &count, sizeof count) > 0) on_tick();
      } else if (evs[i].data.fd == wakeup_.get()) {
        [[maybe_unused]] auto r = read(wakeup_.get(), &count, sizeof count);
      }
    }
  }
}

// Drains the endpoint, then keeps looking for CALYPSO_POLL_US after the last event:
// workers that just got a page or an assignment often answer within that window, and
// catching it saves two VM wake-ups per message. Bounded, so an idle manager sleeps.
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
      return;
    }
  }
}

void ManagerLoop::on_event(const net::Event& e) {
  if (e.kind == net::Event::Kind::peer_error) {
    for (auto& [id, w] : workers_) {
      if (w.peer == e.peer && w.state != WorkerState::gone) lose(id, w, "its connection failed", true);
    }
    return;
  }
  std::string why;
  auto m = decode(e.data, why);
  if (!m) {
    LOG_WARN("dropped a message that is not Calypso-DSM protocol: %s", why.c_str());
    return;
  }
  on_message(*m);
}

void ManagerLoop::on_message(const Message& m) {
  LOG_DEBUG("%s from worker %u (%u bytes)", to_string(m.type()), m.header.worker, m.header.body_bytes);
  if (m.type() == MsgType::hello) return on_hello(m);
  auto it = workers_.find(m.header.worker);
  if (it == workers_.end() || it->second.state == WorkerState::gone) {
    LOG_DEBUG("ignored %s from unknown or departed worker %u", to_string(m.type()), m.header.worker);
    return;
  }
  WorkerId id = it->first;
  Worker& w = it->second;
  w.last_seen = Clock::now();
  if (w.state == WorkerState::suspected) {
    LOG_WARN("worker %u (%s pid %u) is back after being suspected", id, w.host.c_str(), w.pid);
    w.state = WorkerState::alive;
    if (w.counted_failure && step_ && w.counted_failure->first == step_->id) {
      step_->sched.forgive(w.counted_failure->second);
    }
    w.counted_failure.reset();
    if (w.parked) dispatch();
  }
  switch (m.type()) {
    case MsgType::request_work: return on_request_work(id, w);
    case MsgType::page_request: return on_page_request(m, id, w);
    case MsgType::result_chunk: return on_result_chunk(m, id, w);
    case MsgType::heartbeat: return;
    case MsgType::leave: return lose(id, w, "it left", false);
    default: return violation(id, std::string("unexpected ") + to_string(m.type()));
  }
}

void ManagerLoop::on_hello(const Message& m) {
  std::string why;
  auto h = parse_hello(m, why);
  if (!h) {
    LOG_WARN("dropped a malformed hello: %s", why.c_str());
    return;
  }
  std::vector<std::byte> address(h->address.begin(), h->address.end());
  if (h->identity != executable_identity()) {
    return refuse(address, "the worker runs a different executable (identity " + h->identity +
                               ", the manager's is " + executable_identity() + ")");
  }
  if (h->fixed.job_key != config_.job_key) return refuse(address, "wrong job key");
  if (shutting_down_) return refuse(address, "the job is ending");
  WorkerId id = next_worker_++;
  Worker& w = workers_[id];
  try {
    w.peer = ep_.add_peer(net::Address{address});
    w.heartbeat_peer = ep_.add_peer(net::Address{{h->heartbeat_address.begin(), h->heartbeat_address.end()}});
  } catch (const std::exception& e) {
    workers_.erase(id);
    {
    LOG_WARN("refused a hello with a bad address: %s", e.what());
    return;
  }
  }
  w.last_seen = Clock::now();
  w.host = h->fixed.host;
  w.pid = h->fixed.pid;
  w.synced_version = version();   // its cache is empty: nothing to invalidate
  Welcome wel{id, static_cast<std::uint32_t>(region_.page_size()),
              reinterpret_cast<std::uint64_t>(region_.base()), region_.size(), config_.fetch_pages,
              static_cast<std::uint32_t>(config_.heartbeat.count()),
              static_cast<std::uint32_t>(config_.manager_timeout.count()), 0};
  Encoder e(MsgType::welcome, id, wel);
  if (!send(id, w, e)) return;
  LOG_INFO("worker %u joined (%s pid %u)", id, w.host.c_str(), w.pid);
  {
    std::lock_guard lock(mutex_);
    ++stats_.workers_joined;
  }
  if (pending_static_ && workers_.size() >= config_.workers) {
    OpenStep s = std::move(*pending_static_);
    pending_static_.reset();
    start_step(std::move(s));
  }
}

void ManagerLoop::refuse(const std::vector<std::byte>& address, const std::string& why) {
  LOG_WARN("refused a worker: %s", why.c_str());
  try {
    net::PeerId peer = ep_.add_peer(net::Address{address});
    Refuse r{static_cast<std::uint32_t>(why.size()), 0};
    Encoder e(MsgType::refuse, kNoWorker, r);
    e.append(why.data(), why.size());
    auto bytes = e.bytes();
    ep_.send(peer, bytes, std::chrono::milliseconds(100));
  } catch (const std::exception& e) {
    LOG_WARN("could not tell the refused worker: %s", e.what());
  }
}

// request_work comes once after joining, and after a worker gave up a segment whose step
// ended (it then sends no result).
void ManagerLoop::on_request_work(WorkerId id, Worker& w) {
  if (w.running && step_) step_->sched.abandon(*w.running, id, false);
  w.running.reset();
  w.parked = true;
  dispatch();
}

void ManagerLoop::on_page_request(const Message& m, WorkerId id, Worker& w) {
  std::string why;
  auto r = fixed_part<PageRequest>(m, why);
  if (!r) return violation(id, why);
  PageData reply{r->step, r->first, r->count, PageStatus::ok, 0};
  scratch_.clear();
  if (!step_ || r->step != step_->id) {
    reply.status = PageStatus::stale;
  } else if (r->count > 64 || !home_.copy_pages(r->first, r->count, scratch_)) {
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
  if (c->total_bytes > limit || c->offset > c->total_bytes || data.size() > c->total_bytes - c->offset) {
    return violation(id, "result chunk out of bounds");
  }
  ResultKey key{c->step, c->segment, c->attempt};
  auto [it, fresh] = w.assemblies.try_emplace(key);
  Assembly& a = it->second;
  if (fresh) a.bytes.resize(c->total_bytes);
  if (a.bytes.size() != c->total_bytes) {
    w.assemblies.erase(it);
    return violation(id, "result chunks disagree on the result's size");
  }
  if (!data.empty()) std::memcpy(a.bytes.data() + c->offset, data.data(), data.size());
  a.received += data.size();
  if (a.received > c->total_bytes) {
    w.assemblies.erase(it);
    return violation(id, "result chunks overlap");
  }
  if (a.received < c->total_bytes) return;
  std::vector<std::byte> bytes = std::move(a.bytes);
  w.assemblies.erase(it);
  on_result(id, w, key, std::move(bytes));
}

// A complete result also means the worker is idle again: it sends no separate request,
// whether or not the result is still wanted (its step may be over).
void ManagerLoop::on_result(WorkerId id, Worker& w, const ResultKey& key, std::vector<std::byte> bytes) {
  // If the worker has meanwhile been given another segment (it asked again while this
  // result was still in flight), it is busy with that one: leave it be.
  const bool for_current = step_ && key.step == step_->id && w.running == key.segment;
  if (!w.running || for_current) {
    w.running.reset();
    w.parked = true;
  }
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
  if (std::string why = collation_.validate(bytes); !why.empty()) {
    violation(id, "malformed result for " + segment_name(key.segment) + ": " + why);
    return lose(id, w, "it sent a malformed result", false);
  }
  step_->sched.complete(key.segment, id);
  step_->results[key.segment] = std::move(bytes);
  step_->accepted_from[key.segment] = id;
  {
    std::lock_guard lock(mutex_);
    ++stats_.segments;
  }
  if (step_->sched.all_done()) return finish_step();
  dispatch();
}

void ManagerLoop::on_tick() {
  const auto now = Clock::now();
  ping_workers();
  for (auto& [id, w] : workers_) {
    if (w.state == WorkerState::alive && now - w.last_seen > config_.suspect_after) {
      lose(id, w, "it has been silent too long (CALYPSO_SUSPECT_MS)", true);   // -> suspected
    } else if (w.state == WorkerState::suspected && now - w.last_seen > config_.manager_timeout) {
      // Silent for as long as a worker waits for us before giving up: if it is alive and
      // cut off, it has left by now. Its endpoint resources can go.
      LOG_INFO("worker %u silent for CALYPSO_MANAGER_TIMEOUT_MS: gone", id);
      w.state = WorkerState::gone;
      release(w);
    }
  }
  update_live();
  if (!step_) return;
  if (auto d = step_->doomed) {
    const std::uint32_t seg = d->first;
    if (step_->sched.done(seg) || step_->sched.failures(seg) < config_.max_attempts) {
      step_->doomed.reset();
    } else if (now - d->second > config_.suspect_after) {
      return fail_step(segment_name(seg) + " failed: " + std::to_string(step_->sched.failures(seg)) +
                       " workers died or were lost while running it (CALYPSO_MAX_ATTEMPTS=" +
                       std::to_string(config_.max_attempts) + ")");
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
// CALYPSO_SUSPECT_MS decides the manager is gone and exits. Pings never wait: a peer
// that does not take them is dealt with by its own silence.
void ManagerLoop::ping_workers() {
  for (auto& [id, w] : workers_) {
    if (w.state == WorkerState::gone) continue;
    Encoder e(MsgType::heartbeat, id, Empty{});
    auto bytes = e.bytes();
    ep_.send(w.heartbeat_peer, bytes, std::chrono::milliseconds(0));
  }
}

// ---- steps ------------------------------------------------------------------------------

void ManagerLoop::take_commands() {
  std::optional<StepSpec> spec;
  std::optional<int> code;
  {
    std::lock_guard lock(mutex_);
    spec.swap(pending_step_);
    code = shutdown_code_;
  }
  if (spec) open_step(std::move(*spec));
  if (!code) return;
  shutting_down_ = true;
  for (auto& [id, w] : workers_) {
    if (w.state == WorkerState::gone) continue;
    Encoder e(MsgType::shutdown, id, Shutdown{*code, 0});
    auto bytes = e.bytes();
    // Also to the heartbeat endpoint: a worker busy in a segment reads only that one.
    for (net::PeerId p : {w.peer, w.heartbeat_peer}) ep_.send(p, bytes, std::chrono::milliseconds(200));
  }
  // Give the shutdown messages a moment to leave before the endpoint closes.
  for (auto deadline = Clock::now() + std::chrono::milliseconds(200); Clock::now() < deadline;) {
    drain_endpoint();
    ep_.wait(std::chrono::milliseconds(20));
  }
  std::lock_guard lock(mutex_);
  stopped_ = true;
}

void ManagerLoop::open_step(StepSpec spec) {
  if (!spec.sequential_writes.empty()) {
    Version v;
    v.pages = std::move(spec.sequential_writes);
    v.sole_writer.assign(v.pages.size(), kNoWorker);
    record_version(std::move(v));
  }
  OpenStep s;
  s.id = next_step_++;
  for (std::uint32_t r = 0; r < spec.routines.size(); ++r) {
    for (std::uint32_t i = 0; i < spec.routines[r].count; ++i) {
      s.routine_of.push_back(r);
      s.index_of.push_back(i);
    }
  }
  s.spec = std::move(spec);
  if (config_.static_schedule && workers_.size() < config_.workers) {
    pending_static_ = std::move(s);   // opened when CALYPSO_WORKERS workers have joined
    return;
  }
  start_step(std::move(s));
}

void ManagerLoop::start_step(OpenStep s) {
  const auto n = static_cast<std::uint32_t>(s.routine_of.size());
  s.sched = EagerScheduler(n, config_.max_attempts,
                           config_.static_schedule ? EagerScheduler::Policy::fixed : EagerScheduler::Policy::eager,
                           preferred_workers(s));
  s.results.resize(n);
  s.accepted_from.assign(n, kNoWorker);
  s.started = Clock::now();
  step_ = std::move(s);
  collation_.begin_step();
  if (n == 0) return finish_step();
  dispatch();
}

// Eager: the worker whose result was kept last time, if it is alive. Static: blocks of
// consecutive segments over the live workers in id order, and nothing else.
std::vector<WorkerId> ManagerLoop::preferred_workers(const OpenStep& s) const {
  std::vector<WorkerId> alive, first_joined;
  for (const auto& [id, w] : workers_) {
    if (w.state == WorkerState::alive) alive.push_back(id);
    if (first_joined.size() < config_.workers) first_joined.push_back(id);
  }
  const auto n = s.routine_of.size();
  std::vector<WorkerId> out(n, kNoWorker);
  for (std::size_t g = 0; g < n; ++g) {
    if (config_.static_schedule) {
      // A fixed set of processes, as in a classic DSM: the first CALYPSO_WORKERS to join,
      // alive or not (a dead one's block is never done, and the step never ends).
      out[g] = first_joined[g * first_joined.size() / n];
      continue;
    }
    const auto& r = s.spec.routines[s.routine_of[g]];
    auto it = last_runner_.find({r.id, s.index_of[g], r.count});
    if (it != last_runner_.end() && std::find(alive.begin(), alive.end(), it->second) != alive.end()) {
      out[g] = it->second;
    }
  }
  return out;
}

void ManagerLoop::dispatch() {
  if (!step_) return;
  for (auto& [id, w] : workers_) {
    if (w.state != WorkerState::alive || !w.parked) continue;
    auto pick = step_->sched.next_for(id);
    if (!pick) continue;
    assign(id, w, *pick);
    if (!step_) return;   // the assignment failed and ended the step
  }
}

void ManagerLoop::assign(WorkerId id, Worker& w, const Pick& p) {
  const auto& routine = step_->spec.routines[step_->routine_of[p.segment]];
  Notices n = notices_for(id, w);
  Assign a{step_->id, p.segment, p.attempt, routine.id, step_->index_of[p.segment], routine.count,
           static_cast<std::uint32_t>(routine.args.size()), static_cast<std::uint32_t>(n.invalidate.size()),
           n.invalidate_all ? 1u : 0u, static_cast<std::uint32_t>(n.own_segments.size()),
           static_cast<std::uint32_t>(n.own_pages.size()), n.own_step};
  Encoder e(MsgType::assign, id, a);
  e.append(routine.args);
  for (const auto* list : {&n.invalidate, &n.own_segments, &n.own_pages}) {
    e.append(list->data(), list->size() * sizeof(std::uint32_t));
  }
  w.parked = false;
  w.running = p.segment;
  w.synced_version = version();
  {
    std::lock_guard lock(mutex_);
    ++stats_.attempts;
    if (p.attempt > 1) ++stats_.reexecutions;
  }
  send(id, w, e);
}

// Write notices for a worker whose cache reflects w.synced_version. When it is exactly
// one parallel step behind, the pages only its own kept results wrote are not dropped:
// it replays its own diffs onto them (it still has them), which is what lets a worker
// that gets the same segments step after step fetch only the pages others wrote.
ManagerLoop::Notices ManagerLoop::notices_for(WorkerId id, const Worker& w) const {
  Notices n;
  if (w.synced_version < log_base_) {
    n.invalidate_all = true;
    return n;
  }
  const std::size_t cap = (ep_.max_message() - 4096) / sizeof(std::uint32_t);
  const std::size_t first = w.synced_version - log_base_;
  for (std::size_t v = first; v < log_.size() && n.invalidate.size() <= cap; ++v) {
    const Version& e = log_[v];
    auto kept = e.kept.find(id);
    if (v + 1 == log_.size() && v == first && kept != e.kept.end()) {
      n.own_step = e.step;
      n.own_segments = kept->second;
      for (std::size_t i = 0; i < e.pages.size(); ++i) {
        (e.sole_writer[i] == id ? n.own_pages : n.invalidate).push_back(e.pages[i]);
      }
    } else {
      n.invalidate.insert(n.invalidate.end(), e.pages.begin(), e.pages.end());
    }
  }
  std::sort(n.invalidate.begin(), n.invalidate.end());
  n.invalidate.erase(std::unique(n.invalidate.begin(), n.invalidate.end()), n.invalidate.end());
  if (n.invalidate.size() + n.own_pages.size() + n.own_segments.size() > cap) {
    n = Notices{};
    n.invalidate_all = true;
  }
  return n;
}

void ManagerLoop::record_version(Version v) {
  log_.push_back(std::move(v));
  // Keep the log short: a worker further behind than this gets "invalidate all".
  while (log_.size() > 256) {
    log_.pop_front();
    ++log_base_;
  }
}

// Applies the kept results in segment order and describes the new memory version.
ManagerLoop::Version ManagerLoop::collate_step() {
  Version v;
  v.step = step_->id;
  std::map<dsm::PageNumber, WorkerId> writer;
  std::vector<dsm::PageNumber> written;
  for (std::uint32_t s = 0; s < step_->results.size(); ++s) {
    dsm::SegmentTag tag{step_->routine_of[s], step_->index_of[s]};
    written.clear();
    if (auto c = collation_.apply(step_->results[s], tag, written); c && !conflict_) conflict_ = c;
    const WorkerId from = step_->accepted_from[s];
    v.kept[from].push_back(s);
    for (dsm::PageNumber p : written) {
      auto [it, fresh] = writer.try_emplace(p, from);
      if (!fresh && it->second != from) it->second = kNoWorker;
    }
  }
  for (const auto& [page, who] : writer) {
    v.pages.push_back(page);
    v.sole_writer.push_back(who);
  }
  return v;
}

void ManagerLoop::finish_step() {
  std::uint64_t bytes = 0;
  for (const auto& r : step_->results) bytes += r.size();
  conflict_.reset();
  record_version(collate_step());
  for (std::uint32_t s = 0; s < step_->results.size(); ++s) {
    const auto& r = step_->spec.routines[step_->routine_of[s]];
    last_runner_[{r.id, step_->index_of[s], r.count}] = step_->accepted_from[s];
  }
  {
    std::lock_guard lock(mutex_);
    stats_.diff_bytes += bytes;
  }
  const std::optional<dsm::Conflict> conflict = conflict_;
  if (!conflict) return end_step(std::nullopt);
  char where[64];
  std::snprintf(where, sizeof where, "0x%llx", static_cast<unsigned long long>(conflict->address));
  const auto& routines = step_->spec.routines;
  end_step("write conflict at " + std::string(where) + ": segment " +
           std::to_string(conflict->first.index) + " of routine '" +
           RoutineRegistry::instance().name(routines[conflict->first.routine].id) + "' and segment " +
           std::to_string(conflict->second.index) + " of routine '" +
           RoutineRegistry::instance().name(routines[conflict->second.routine].id) +
           "' wrote different values to the same byte (the higher segment's value was kept)");
}

void ManagerLoop::fail_step(const std::string& why) { end_step(why); }

void ManagerLoop::end_step(std::optional<std::string> error) {
  const double seconds = std::chrono::duration<double>(Clock::now() - step_->started).count();
  step_.reset();
  for (auto& [id, w] : workers_) {
    w.running.reset();
    w.assemblies.clear();
  }
  std::lock_guard lock(mutex_);
  ++stats_.parallel_steps;
  stats_.parallel_seconds += seconds;
  step_outcome_ = std::move(error);
  cv_.notify_all();
}

// ---- workers ----------------------------------------------------------------------------

void ManagerLoop::lose(WorkerId id, Worker& w, const char* why, bool counts_as_failure) {
  if (w.state == WorkerState::gone) return;
  if (w.state == WorkerState::suspected && counts_as_failure) return;   // already handled
  LOG_WARN("lost worker %u (%s pid %u): %s", id, w.host.c_str(), w.pid, why);
  // A suspected worker keeps its outstanding work request: if it comes back while idle,
  // it is still waiting for an assignment.
  w.state = counts_as_failure ? WorkerState::suspected : WorkerState::gone;
  if (w.state == WorkerState::gone) w.parked = false;
  w.assemblies.clear();
  std::optional<std::uint32_t> seg = std::exchange(w.running, std::nullopt);
  {
    std::lock_guard lock(mutex_);
    ++stats_.workers_lost;
  }
  if (w.state == WorkerState::gone) release(w);
  if (step_ && seg && counts_as_failure) w.counted_failure = std::pair{step_->id, *seg};
  if (step_ && seg && step_->sched.abandon(*seg, id, counts_as_failure) && !step_->doomed) {
    step_->doomed = std::pair{*seg, Clock::now()};
  }
  dispatch();
}

// Forgets a departed worker's addresses, and with them any send still waiting for it
// (a dead peer never completes them, and they hold send buffers).
void ManagerLoop::release(Worker& w) {
  for (net::PeerId* p : {&w.peer, &w.heartbeat_peer}) {
    if (*p != net::kNoPeer) ep_.remove_peer(*p);
    *p = net::kNoPeer;
  }
}

void ManagerLoop::update_live() {
  std::size_t n = 0;
  for (const auto& [id, w] : workers_) n += w.state == WorkerState::alive;
  std::lock_guard lock(mutex_);
  live_ = n;
}

bool ManagerLoop::send(WorkerId id, Worker& w, Encoder& e) {
  auto bytes = e.bytes();
  switch (ep_.send(w.peer, bytes, std::chrono::milliseconds(2000))) {
    case net::SendStatus::ok: return true;
    case net::SendStatus::again: lose(id, w, "it does not take messages", true); return false;
    case net::SendStatus::peer_failed: lose(id, w, "its connection failed", true); return false;
  }
  return false;
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
}

Stats ManagerLoop::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

std::size_t ManagerLoop::live_workers() const {
  std::lock_guard lock(mutex_);
  return live_;
}

}  // namespace calypso::sched
