// The step half of the manager's event loop: opening a parallel step, handing segments
// to idle workers (with their write notices), and collating the kept results when every
// segment is done. Runs on the loop thread; see manager_loop.hpp.
#include "sched/manager_loop.hpp"

#include "log.hpp"

#include <calypso/error.hpp>

#include <sys/timerfd.h>

#include <algorithm>
#include <cstdio>

namespace calypso::sched {


void ManagerLoop::take_commands() {
  std::optional<StepSpec> spec;
  std::optional<int> code;
  std::uint64_t target = 0;
  {
    std::lock_guard lock(mutex_);
    spec.swap(pending_step_);
    code = shutdown_code_;
    target = ready_target_;
  }
  if (target > prepare_target_) {   // wait_for_workers(): workers that joined before
    prepare_target_ = target;
    for (auto& [id, w] : workers_) prepare_if_behind(id, w);
    update_live();   // the waiting program counts against the new target now, not at the next event
  }
  if (spec) open_step(std::move(*spec));
  if (!code) return;
  tell_workers_job_over(*code);
  std::lock_guard lock(mutex_);
  stopped_ = true;
}

void ManagerLoop::tell_workers_job_over(int code, std::chrono::milliseconds patience) {
  shutting_down_ = true;
  for (auto& [id, w] : workers_) {
    if (w.state == WorkerState::gone) continue;
    Encoder e(MsgType::shutdown, id, Shutdown{code, 0});
    auto bytes = e.bytes();
    // Also to the heartbeat endpoint: a worker busy in a segment reads only that one.
    for (net::PeerId p : {w.peer, w.heartbeat_peer}) ep_.send(p, bytes, patience);
  }
  // Give the shutdown messages a moment to leave before the endpoint closes.
  for (auto deadline = Clock::now() + std::chrono::milliseconds(200); Clock::now() < deadline;) {
    drain_endpoint();
    ep_.wait(std::chrono::milliseconds(20));
  }
}

void ManagerLoop::open_step(StepSpec spec) {
  frozen_runs_.insert(frozen_runs_.end(), spec.frozen.begin(), spec.frozen.end());
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
  if (config_.static_schedule && workers_.size() < config_.job_workers()) {
    pending_static_ = std::move(s);   // opened when the job's workers have joined (job_workers())
    // It waits for them however long: a classic DSM's fixed set of processes. Say so,
    // since a host that never joins then holds the job.
    LOG_INFO("step %llu waits for %u workers to join (static schedule; %zu have)",
             static_cast<unsigned long long>(pending_static_->id), config_.job_workers(), workers_.size());
    return;
  }
  start_step(std::move(s));
}

void ManagerLoop::start_step(OpenStep s) {
  const auto n = static_cast<std::uint32_t>(s.routine_of.size());
  s.sched = EagerScheduler(n, config_.max_attempts,
                           config_.static_schedule ? EagerScheduler::Policy::fixed : EagerScheduler::Policy::eager,
                           preferred_workers(s));
  s.sched.set_rerun_delay(config_.rerun_after_pct / 100.0, std::chrono::milliseconds(50));
  std::vector<Clock::duration> expected(n);
  for (std::uint32_t g = 0; g < n; ++g) {
    if (auto it = last_run_.find(run_key(s, g)); it != last_run_.end()) expected[g] = it->second.took;
  }
  s.sched.set_expected(std::move(expected));
  s.sched.set_cold_factor(cold_factor_);
  s.results.resize(n);
  s.accepted_from.assign(n, kNoWorker);
  s.first_run_by.assign(n, kNoWorker);
  s.started = Clock::now();
  step_ = std::move(s);
  set_control(step_->id);   // direct readers (RMA, local): home memory is this step's snapshot
  collation_.begin_step();
  LOG_DEBUG("step %llu begins: %u segments", static_cast<unsigned long long>(step_->id), n);
  if (n == 0) return finish_step();
  dispatch();
}

ManagerLoop::RunKey ManagerLoop::run_key(const OpenStep& s, std::uint32_t segment) {
  const auto& r = s.spec.routines[s.routine_of[segment]];
  return {r.id, s.index_of[segment], r.count};
}

std::vector<WorkerId> ManagerLoop::alive_workers() const {
  std::vector<WorkerId> alive;
  for (const auto& [id, w] : workers_) {
    if (w.state == WorkerState::alive) alive.push_back(id);
  }
  return alive;
}

// See ownership.hpp: one segment may change owner between steps.
void ManagerLoop::even_out_owners(std::span<const KeptRun> kept) {
  const std::optional<OwnerMove> move = evening_.after_step(kept, alive_workers());
  if (!move) return;
  const WorkerId from = kept[move->segment].runner;
  LOG_DEBUG("step %llu: segment %u moves from worker %u (%.2f ms a segment) to worker %u (%.2f ms), which "
            "finished earlier",
            static_cast<unsigned long long>(step_->id), move->segment, from,
            1e3 * evening_.paces().seconds_per_segment(from).value_or(0), move->to,
            1e3 * evening_.paces().seconds_per_segment(move->to).value_or(0));
  last_run_[run_key(*step_, move->segment)].runner = move->to;
}

// Eager: the worker whose result was kept last time, if it is alive. Static: blocks of
// consecutive segments over the live workers in id order, and nothing else.
std::vector<WorkerId> ManagerLoop::preferred_workers(const OpenStep& s) const {
  const std::vector<WorkerId> alive = alive_workers();
  std::vector<WorkerId> first_joined;
  for (const auto& [id, w] : workers_) {
    if (first_joined.size() < config_.job_workers()) first_joined.push_back(id);
  }
  const auto n = s.routine_of.size();
  std::vector<WorkerId> out(n, kNoWorker);
  for (std::size_t g = 0; g < n; ++g) {
    if (config_.static_schedule) {
      // A fixed set of processes, as in a classic DSM: the first job_workers() to join,
      // alive or not (a dead one's block is never done, and the step never ends).
      out[g] = first_joined[g * first_joined.size() / n];
      continue;
    }
    auto it = last_run_.find(run_key(s, g));
    if (it != last_run_.end() && std::find(alive.begin(), alive.end(), it->second.runner) != alive.end()) {
      out[g] = it->second.runner;
    } else if (!alive.empty()) {
      // Never run (or its runner is gone): blocks of consecutive segments per worker, so
      // that neighbours, which usually share pages at their borders (Jacobi's rows),
      // run on the same worker; stealing still evens out the load.
      out[g] = alive[g * alive.size() / n];
    }
  }
  return out;
}

// An idle worker gets any work (next_for); a busy one gets unstarted segments queued
// behind the one it runs, up to CALYPSO_PIPELINE in all, so that it starts the next as
// soon as it has shipped a result. A worker busy with a finished step's segment (not
// parked, holding nothing of this step) gets work when it reports.
void ManagerLoop::dispatch() {
  if (!step_) return;
  if (in_bundle_) {
    dispatch_due_ = true;
    return;
  }
  const std::size_t depth = pipeline_depth();
  for (auto& [id, w] : workers_) {
    if (w.state != WorkerState::alive || (!w.parked && w.running.empty())) continue;
    std::vector<Outgoing> batch;
    std::size_t bytes = sizeof(Header);   // of the bundle the batch would make
    // Adds the assignment just made; a batch that it would take past kBundleBytes (or
    // the largest message) goes first.
    auto add = [&](Outgoing o) {
      const std::size_t framed = 8 + (o.message.bytes().size() + 7) / 8 * 8;
      if (!batch.empty() && bytes + framed > std::min(kBundleBytes, ep_.max_message())) {
        bytes = sizeof(Header);
        if (!flush(id, w, batch, o.seq)) return false;
      }
      batch.push_back(std::move(o));
      bytes += framed;
      return true;
    };
    if (w.parked) {
      auto pick = step_->sched.next_for(id);
      if (!pick) continue;
      add(assign(id, w, *pick));
    }
    while (w.state == WorkerState::alive && w.holding() > 0 && w.holding() < depth) {
      auto pick = step_->sched.next_ahead_for(id);
      if (!pick) break;
      if (!add(assign(id, w, *pick))) break;
    }
    flush(id, w, batch);
    if (!step_) return;   // a failed send lost the worker and ended the step
  }
  arm_late_timer();
}

std::size_t ManagerLoop::pipeline_depth() const {
  const auto mean = step_->sched.mean_took();
  if (!config_.bundle || config_.pipeline <= 1 || mean <= Clock::duration::zero() || mean >= kShortSegment) {
    return config_.pipeline;
  }
  const auto fit = static_cast<std::size_t>(kQueuedWork / std::chrono::duration_cast<std::chrono::microseconds>(mean + std::chrono::microseconds(1)));
  return std::clamp<std::size_t>(fit, config_.pipeline, std::max<std::size_t>(config_.pipeline, kMaxPipeline));
}

// One assignment goes as it is (Jacobi's carry pushed pages: no copy into a bundle);
// with CALYPSO_BUNDLE=0 each goes alone. If a send fails, the assignments that did not
// leave are taken back (no failed run: the worker never had them) before the worker is
// lost.
bool ManagerLoop::flush(WorkerId id, Worker& w, std::vector<Outgoing>& batch, std::optional<std::uint64_t> made) {
  if (batch.empty()) return true;
  std::size_t sent = 0;
  net::SendStatus status = net::SendStatus::ok;
  if (w.state != WorkerState::alive) {
    status = net::SendStatus::peer_failed;
  } else if (batch.size() == 1 || !config_.bundle) {
    for (; sent < batch.size() && (status = post(w, batch[sent].message.bytes())) == net::SendStatus::ok; ++sent) {
    }
  } else {
    Bundler b(id);
    for (Outgoing& o : batch) b.add(o.message.bytes());
    if ((status = post(w, b.finish())) == net::SendStatus::ok) sent = batch.size();
  }
  std::vector<Outgoing> unsent(std::make_move_iterator(batch.begin() + static_cast<std::ptrdiff_t>(sent)),
                               std::make_move_iterator(batch.end()));
  batch.clear();
  if (status == net::SendStatus::ok) return true;
  std::erase_if(w.running, [&](const Worker::Held& h) {
    const bool taken_back = h.seq == made ||
        std::any_of(unsent.begin(), unsent.end(), [&](const Outgoing& o) { return o.seq == h.seq; });
    if (taken_back && step_) step_->sched.abandon(h.segment, id, false);
    return taken_back;
  });
  if (w.state == WorkerState::alive) lose_after_send(id, w, status);
  return false;
}

// Parked workers that have nothing to do until a running segment is late: wake the
// loop then (dispatch() re-arms it; an expiry with nothing late is harmless).
void ManagerLoop::arm_late_timer() {
  std::optional<Clock::time_point> when;
  for (auto& [id, w] : workers_) {
    if (w.state != WorkerState::alive || !w.parked) continue;
    auto t = step_->sched.next_rerun_at(id);
    if (t && (!when || *t < *when)) when = t;
  }
  itimerspec spec{};
  if (when) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(when->time_since_epoch()).count();
    spec.it_value.tv_sec = ns / 1'000'000'000;
    spec.it_value.tv_nsec = std::max<long long>(ns % 1'000'000'000, 1);   // 0 would disarm
  }
  timerfd_settime(late_timer_.get(), TFD_TIMER_ABSTIME, &spec, nullptr);
}

ManagerLoop::Outgoing ManagerLoop::assign(WorkerId id, Worker& w, const Pick& p) {
  const auto& routine = step_->spec.routines[step_->routine_of[p.segment]];
  Notices n = notices_for(id, w, routine.args.size());
  // Frozen runs it has not had, as many as leave room for the notices (the rest come
  // with its next assignment; until then it copies those pages, as before the freeze).
  const std::size_t words = n.invalidate.size() + n.own_segments.size() + n.own_pages.size();
  const std::size_t notices_end = sizeof(Header) + sizeof(Assign) + routine.args.size() + words * sizeof(std::uint32_t);
  const std::size_t frozen = std::min(frozen_runs_.size() - w.frozen_sent,
                                      (ep_.max_message() - std::min(ep_.max_message(), notices_end)) / 8 * 2);
  const std::size_t used = notices_end - sizeof(Header) + frozen * sizeof(std::uint32_t);
  if (!n.invalidate_all && sizeof(Header) + used < ep_.max_message()) {
    choose_pushes(w, n, ep_.max_message() - sizeof(Header) - used);
  }
  Assign a{step_->id, p.segment, p.attempt, routine.id, step_->index_of[p.segment], routine.count,
           static_cast<std::uint32_t>(routine.args.size()), static_cast<std::uint32_t>(n.invalidate.size()),
           n.invalidate_all ? 1u : 0u, static_cast<std::uint32_t>(n.own_segments.size()),
           static_cast<std::uint32_t>(n.own_pages.size()), static_cast<std::uint32_t>(n.pushed.size()),
           static_cast<std::uint32_t>(n.pushed.size() * region_.page_size()), n.own_step, w.next_seq,
           static_cast<std::uint32_t>(frozen / 2), 0};
  Encoder e(MsgType::assign, id, a);
  e.reserve(used + n.pushed.size() * region_.page_size());   // pushed numbers came out of `words`
  e.append(routine.args);
  for (const auto* list : {&n.invalidate, &n.own_segments, &n.own_pages, &n.pushed}) {
    e.append(list->data(), list->size() * sizeof(std::uint32_t));
  }
  e.append(frozen_runs_.data() + w.frozen_sent, frozen * sizeof(std::uint32_t));
  w.frozen_sent += frozen;
  // Home memory holds this step's snapshot while the step is open: the version that
  // this assignment's notices bring the worker to.
  for (dsm::PageNumber page : n.pushed) e.append(region_.runtime_page(page), region_.page_size());
  LOG_DEBUG("assignment %llu to worker %u: segment %u of step %llu, attempt %u", static_cast<unsigned long long>(w.next_seq),
            id, p.segment, static_cast<unsigned long long>(step_->id), p.attempt);
  w.parked = false;
  const std::uint64_t seq = w.next_seq++;
  w.running.push_back({seq, p.segment});
  if (p.attempt == 1) step_->first_run_by[p.segment] = id;
  else step_->reruns_by.emplace_back(p.segment, p.attempt, id);
  w.synced_version = version();
  {
    std::lock_guard lock(mutex_);
    ++stats_.attempts;
    if (p.attempt > 1) ++stats_.reexecutions;
    stats_.pages_pushed += n.pushed.size();
  }
  return {std::move(e), seq};
}

// Write notices for a worker whose cache reflects w.synced_version. When it is exactly
// one parallel step behind, the pages only its own kept results wrote are not dropped:
// it replays its own diffs onto them (it still has them), which is what lets a worker
// that gets the same segments step after step fetch only the pages others wrote.
ManagerLoop::Notices ManagerLoop::notices_for(WorkerId id, const Worker& w, std::size_t args_bytes) const {
  Notices n;
  if (w.synced_version < log_base_) {
    n.invalidate_all = true;
    return n;
  }
  // The notices, the arguments and the fixed part fit one message (more: drop everything).
  const std::size_t cap = (ep_.max_message() - 4096 - args_bytes) / sizeof(std::uint32_t);
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

void ManagerLoop::choose_pushes(const Worker& w, Notices& n, std::size_t room) const {
  if (w.reads.empty() || !step_ || config_.push_pages == 0) return;
  const std::size_t cost = region_.page_size() + sizeof(std::uint32_t);
  const std::size_t most = std::min<std::size_t>(config_.push_pages, room / cost);
  std::vector<std::uint32_t> keep;
  keep.reserve(n.invalidate.size());
  for (std::uint32_t p : n.invalidate) {
    auto it = w.reads.find(p);
    if (n.pushed.size() < most && it != w.reads.end() && it->second + kPushWindow >= step_->id) {
      n.pushed.push_back(p);
    } else {
      keep.push_back(p);
    }
  }
  n.invalidate.swap(keep);
}

void ManagerLoop::record_version(Version v) {
  for (dsm::PageNumber p : v.pages) {
    if (p < ever_written_.size()) ever_written_[p] = true;
  }
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
  const std::size_t n = step_->results.size();
  std::vector<std::span<const std::byte>> bodies;
  bodies.reserve(n);
  for (const StepResult& r : step_->results) bodies.push_back(r.body());
  std::vector<dsm::SegmentTag> tags(n);
  for (std::uint32_t s = 0; s < n; ++s) tags[s] = {step_->routine_of[s], step_->index_of[s]};
  std::vector<std::vector<dsm::PageNumber>> written_by;
  if (auto c = collation_.apply_all(bodies, tags, written_by); c && !conflict_) conflict_ = c;
  std::vector<std::pair<dsm::PageNumber, WorkerId>> writes;   // (page, writer), then sorted
  for (std::uint32_t s = 0; s < n; ++s) {
    const WorkerId from = step_->accepted_from[s];
    v.kept[from].push_back(s);
    for (dsm::PageNumber p : written_by[s]) writes.emplace_back(p, from);
  }
  std::sort(writes.begin(), writes.end());
  for (const auto& [page, who] : writes) {
    if (!v.pages.empty() && v.pages.back() == page) {
      if (v.sole_writer.back() != who) v.sole_writer.back() = kNoWorker;
      continue;
    }
    v.pages.push_back(page);
    v.sole_writer.push_back(who);
  }
  return v;
}

void ManagerLoop::finish_step() {
  set_control(0);   // before collation changes home memory (see control_)
  std::uint64_t bytes = 0;
  for (const auto& r : step_->results) bytes += r.body().size();
  conflict_.reset();
  const auto collation_start = Clock::now();
  const std::uint64_t cut_before = collation_.cut_short();
  record_version(collate_step());
  if (collation_.cut_short() != cut_before) {
    LOG_WARN("step %llu: a result changed in its worker's ring after it was checked; the change was "
             "applied only as far as it read as checked (a worker writing over its own results?)",
             static_cast<unsigned long long>(step_->id));
  }
  LOG_DEBUG("step %llu collated: %llu result bytes", static_cast<unsigned long long>(step_->id),
            static_cast<unsigned long long>(bytes));
  {
    std::lock_guard lock(mutex_);
    stats_.collation_seconds += std::chrono::duration<double>(Clock::now() - collation_start).count();
  }
  const auto n = static_cast<std::uint32_t>(step_->results.size());
  std::vector<KeptRun> kept(n);
  for (std::uint32_t s = 0; s < n; ++s) {
    auto& last = last_run_[run_key(*step_, s)];
    last = {step_->accepted_from[s], step_->sched.next_expected(s, last.took)};
    kept[s] = {last.runner, step_->sched.completed_at(s) - step_->started, last.took};
  }
  if (!config_.static_schedule) even_out_owners(kept);
  cold_factor_ = step_->sched.next_cold_factor();
  if (auto seen = step_->sched.cold_factor_seen()) {
    LOG_DEBUG("step %llu: cold runs took %.1fx their warm time; counted as %.1fx from now on",
              static_cast<unsigned long long>(step_->id), *seen, cold_factor_);
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
  set_control(0);
  // Buffers to the next step; results lent from rings end here, which frees their room.
  std::vector<ResultBuffers::Bytes> buffers;
  buffers.reserve(step_->results.size());
  for (StepResult& r : step_->results) {
    if (!r.loan) buffers.push_back(std::move(r.bytes));
  }
  result_buffers_.keep(std::move(buffers));
  step_.reset();
  for (auto& [id, w] : workers_) {
    w.running.clear();
    for (auto& [key, a] : w.assemblies) {   // counted to their end: see Assembly
      a.discard = true;
      a.bytes = {};
    }
  }
  std::lock_guard lock(mutex_);
  ++stats_.parallel_steps;
  stats_.parallel_seconds += seconds;
  step_outcome_ = std::move(error);
  cv_.notify_all();
}

}  // namespace calypso::sched
