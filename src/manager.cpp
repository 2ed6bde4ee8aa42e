// calypso::Manager and the ManagerImpl behind it.
#include "manager_impl.hpp"

#include "log.hpp"
#include "routine_registry.hpp"
#include "shared_vars.hpp"

#include <calypso/error.hpp>

#include <cstring>

namespace calypso {
namespace {
std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }
}  // namespace

ManagerImpl::ManagerImpl(const Config& config)
    : config_(config),
      region_(dsm::Region::map(config.region_address, config.region_size, config.page_size,
                               dsm::Access::read)),
      home_(region_),
      heap_(round_up(shared_vars_size(), config.page_size), config.region_size),
      never_used_from_(round_up(shared_vars_size(), config.page_size)),
      loop_(config, region_, home_),
      faults_(region_.base(), region_.size(), home_) {
  set_shared_base(region_.base());
  loop_.note_used(never_used_from_);
}

void* ManagerImpl::allocate(std::size_t bytes, std::size_t align) {
  if (align == 0 || (align & (align - 1)) != 0) throw Error("calypso: alignment must be a power of two");
  // Large blocks start on a page so that they share no page with their neighbours.
  if (bytes >= config_.page_size) align = std::max(align, config_.page_size);
  auto offset = heap_.allocate(bytes, align);
  if (!offset) {
    throw Error("calypso: the shared heap is full (" + std::to_string(heap_.bytes_in_use()) +
                " bytes in use, " + std::to_string(bytes) +
                " more asked); raise CALYPSO_REGION_SIZE");
  }
  std::byte* p = region_.base() + *offset;
  // Memory never handed out is still zero; reused memory is cleared through the user view,
  // which also records the pages as written for the workers' caches.
  if (*offset < never_used_from_) std::memset(p, 0, std::min(bytes, never_used_from_ - *offset));
  if (*offset + bytes > never_used_from_) prefault(std::max(*offset, never_used_from_), *offset + bytes);
  never_used_from_ = std::max(never_used_from_, *offset + bytes);
  loop_.note_used(never_used_from_);
  return p;
}

// Allocates the home memory of a block handed out for the first time (through the
// runtime view: nothing counts as written), so that neither the program's first writes
// nor the collation of the first results into it wait for the kernel to allocate and
// zero pages: matmul's C and mandelbrot's image are first written by collation, on the
// manager's share of the CPUs, while the step runs. Within CALYPSO_PREFAULT in all, as
// the workers on joining; best effort.
void ManagerImpl::prefault(std::size_t from, std::size_t to) {
  const std::size_t page = config_.page_size;
  const std::size_t first = (from + page - 1) / page, end = std::min((to + page - 1) / page, config_.prefault / page);
  if (first >= end) return;
  if (const int err = region_.populate(static_cast<dsm::PageNumber>(first), static_cast<dsm::PageNumber>(end - first));
      err != 0) {
    LOG_INFO("could not allocate %zu home pages ahead (%s): they are allocated when first written", end - first,
             std::strerror(err));
  }
}

void ManagerImpl::deallocate(void* p) noexcept {
  if (p == nullptr) return;
  const auto offset = static_cast<std::size_t>(static_cast<std::byte*>(p) - region_.base());
  const std::optional<std::size_t> bytes = region_.contains(p) ? heap_.block_bytes(offset) : std::nullopt;
  if (!bytes) {
    LOG_ERROR("deallocate(%p): not a block of the shared heap (ignored)", p);
    return;
  }
  // Handed out again, the block would be cleared and written: frozen pages never change.
  const std::size_t page = config_.page_size, end = offset + *bytes;
  for (std::size_t q = offset / page; q < region_.pages() && q * page < end; ++q) {
    if (home_.frozen(static_cast<dsm::PageNumber>(q))) {
      LOG_WARN("deallocate(%p): the block holds frozen memory, so it stays allocated", p);
      return;
    }
  }
  heap_.release(offset);
}

std::size_t ManagerImpl::freeze(const void* p, std::size_t bytes) {
  if (bytes == 0) return 0;
  if (!region_.contains(p) ||
      bytes > region_.size() - static_cast<std::size_t>(static_cast<const std::byte*>(p) - region_.base())) {
    throw Error("calypso: freeze() was given memory that is not inside shared memory");
  }
  const std::size_t page = config_.page_size;
  const auto offset = static_cast<std::size_t>(static_cast<const std::byte*>(p) - region_.base());
  const std::size_t first = (offset + page - 1) / page, end = (offset + bytes) / page;
  // Free heap memory would be cleared when handed out: only memory in use may be frozen.
  const std::size_t vars_end = round_up(shared_vars_size(), page);
  if (first < end && !(end * page <= vars_end || heap_.covers(std::max(first * page, vars_end), end * page))) {
    throw Error("calypso: freeze() was given memory that is not allocated (it must lie in heap blocks or "
                "shared variables)");
  }
  // Runs of pages not frozen yet (freezing twice is harmless, and sends nothing again).
  auto frozen = [&](std::size_t q) { return home_.frozen(static_cast<dsm::PageNumber>(q)); };
  for (std::size_t q = first; q < end;) {
    if (frozen(q)) {
      ++q;
      continue;
    }
    std::size_t r = q + 1;
    while (r < end && !frozen(r)) ++r;
    if (const int err = home_.freeze(static_cast<dsm::PageNumber>(q), static_cast<dsm::PageNumber>(r - q)); err != 0) {
      throw Error(std::string("calypso: mprotect failed while freezing memory: ") + std::strerror(err));
    }
    frozen_pending_.push_back(static_cast<std::uint32_t>(q));
    frozen_pending_.push_back(static_cast<std::uint32_t>(r - q));
    q = r;
  }
  return first < end ? (end - first) * page : 0;
}

void ManagerImpl::run_step(std::vector<Task> tasks) {
  // One step at a time: the loop holds one open step, and a second thread's step would
  // take its place while the first thread waits for good.
  if (stepping_.exchange(true)) {
    throw Error("calypso: parallel() called while another thread's parallel() runs: a Manager runs one step at a "
                "time; call it from one thread (or one at a time)");
  }
  struct Done {
    std::atomic<bool>& flag;
    ~Done() { flag = false; }
  } done{stepping_};
  std::uint64_t segments = 0;
  for (const Task& t : tasks) segments += t.count();
  if (segments > kMaxSegmentsPerStep) {
    throw Error("calypso: a step of " + std::to_string(segments) + " segments; at most " +
                std::to_string(kMaxSegmentsPerStep) + " (the manager keeps ~250 bytes of state per segment while "
                "the step runs): give each segment more work");
  }
  sched::StepSpec spec;
  for (const Task& t : tasks) {
    auto id = RoutineRegistry::instance().find(t.function());
    if (!id) throw Error("calypso: parallel() was given a routine that is not registered; add CALYPSO_ROUTINE(name) next to it");
    if (RoutineRegistry::instance().get(*id)->args_size != t.args().size()) {
      throw Error("calypso: routine '" + RoutineRegistry::instance().name(*id) + "' called with arguments of the wrong size");
    }
    if (t.args().size() > loop_.max_args_bytes()) {
      throw Error("calypso: routine '" + RoutineRegistry::instance().name(*id) + "' called with " +
                  std::to_string(t.args().size()) + " bytes of arguments; at most " +
                  std::to_string(loop_.max_args_bytes()) +
                  " travel with an assignment (put larger data in shared memory and pass a pointer)");
    }
    spec.routines.push_back({*id, t.count(), t.args()});
  }
  spec.sequential_writes = home_.take_written();
  spec.frozen = std::move(frozen_pending_);
  frozen_pending_.clear();
  loop_.run_step(std::move(spec));
}

// ---- public API --------------------------------------------------------------------------

void* Manager::allocate(std::size_t bytes, std::size_t align) { return impl_.allocate(bytes, align); }
void Manager::deallocate(void* p) noexcept { impl_.deallocate(p); }
std::size_t Manager::freeze(const void* p, std::size_t bytes) { return impl_.freeze(p, bytes); }
void Manager::run_step(std::vector<Task> tasks) { impl_.run_step(std::move(tasks)); }
std::size_t Manager::workers() const { return impl_.workers(); }
std::size_t Manager::wait_for_workers(std::size_t n, std::chrono::milliseconds timeout) {
  return impl_.wait_for_workers(n, timeout);
}
Stats Manager::stats() const { return impl_.stats(); }

}  // namespace calypso
