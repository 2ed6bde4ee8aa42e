// The manager: runs the program's sequential steps, owns the shared heap, and runs
// parallel steps (CSL's parbegin .. parend) on the workers.
#pragma once

#include <calypso/routine.hpp>
#include <calypso/segment.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <vector>

namespace calypso {

// Most segments one parallel step may have, all its routines together (parallel()
// throws calypso::Error beyond): the manager keeps a few hundred bytes for each while
// the step runs, and a segment far shorter than a message costs more than it does.
inline constexpr std::uint32_t kMaxSegmentsPerStep = std::uint32_t{1} << 24;

// One routine of a parallel step, with its parallelism and its arguments (by copy).
class Task {
 public:
  template <class A>
  Task(void (*fn)(const Segment&, const A&), std::uint32_t count, const A& args)
      : fn_(reinterpret_cast<detail::AnyFn>(fn)), count_(count), args_(sizeof(A)) {
    static_assert(std::is_trivially_copyable_v<A>, "routine arguments must be trivially copyable");
    std::memcpy(args_.data(), &args, sizeof(A));
  }
  Task(void (*fn)(const Segment&), std::uint32_t count)
      : fn_(reinterpret_cast<detail::AnyFn>(fn)), count_(count) {}

  detail::AnyFn function() const { return fn_; }
  std::uint32_t count() const { return count_; }
  const std::vector<std::byte>& args() const { return args_; }

 private:
  detail::AnyFn fn_;
  std::uint32_t count_;
  std::vector<std::byte> args_;
};

// Counters of the whole run so far (manager's view).
struct Stats {
  std::uint64_t parallel_steps = 0;
  std::uint64_t segments = 0;            // segments completed (each counted once)
  std::uint64_t attempts = 0;            // segment runs handed to workers
  std::uint64_t reexecutions = 0;        // attempts beyond the first of a segment
  std::uint64_t results_discarded = 0;   // complete results that arrived after another
  std::uint64_t pages_fetched = 0;       // pages served to workers
  std::uint64_t pages_pushed = 0;        // pages sent with assignments instead of notices
  std::uint64_t diff_bytes = 0;          // diff bytes applied
  std::uint64_t bundled_results = 0;     // results that came in one message with others
  std::uint64_t ring_results = 0;        // results taken from a local worker's memory (CALYPSO_LOCAL_RESULTS)
  std::uint64_t local_messages = 0;      // messages from local workers through shared memory (CALYPSO_LOCAL_MESSAGES)
  std::uint64_t workers_joined = 0;
  std::uint64_t workers_lost = 0;        // died, left or were suspected
  double parallel_seconds = 0;           // time inside parallel steps
  double collation_seconds = 0;          // of which: applying results at step ends
};

class ManagerImpl;

// The program's handle on the job, in the manager process. Use it from one thread (or
// one at a time): parallel() while another thread's parallel() runs throws
// calypso::Error.
class Manager {
 public:
  // Shared heap: memory at the same address in every process, zero-filled.
  // Throws calypso::Error when the region is full.
  void* allocate(std::size_t bytes, std::size_t align = alignof(std::max_align_t));
  void deallocate(void* p) noexcept;
  template <class T>
  T* alloc(std::size_t n = 1) {
    static_assert(std::is_trivially_copyable_v<T>, "shared heap objects must be trivially copyable");
    // n beyond what memory can hold: allocate refuses SIZE_MAX (not a wrapped product).
    return static_cast<T*>(allocate(n > SIZE_MAX / sizeof(T) ? SIZE_MAX : n * sizeof(T), alignof(T) < 64 ? 64 : alignof(T)));
  }

  // Promises that shared memory in [p, p+bytes) never changes again in this run (input
  // data: matrices, meshes, tables), and returns how many bytes that covers: the pages
  // wholly inside the range (a page it shares with other data at either end is not
  // frozen). Workers then keep their copies of these pages for good, and workers on this
  // host map the manager's own memory instead of copying it (CALYPSO_SHARE_FROZEN): one
  // physical copy for every process. A write to frozen memory is an error: from the
  // program's own code it ends the run with a message, from a routine it fails the step
  // (calypso::Error from parallel()). Freezing twice is harmless; there is no thaw, and
  // a heap block holding frozen pages is never handed out again. Throws calypso::Error
  // if the range is not inside shared memory.
  std::size_t freeze(const void* p, std::size_t bytes);
  template <class T>
  std::size_t freeze(const T* p, std::size_t n) {
    // n beyond what memory can hold: the byte version refuses it (not a wrapped product).
    return freeze(static_cast<const void*>(p), n > SIZE_MAX / sizeof(T) ? SIZE_MAX : n * sizeof(T));
  }

  // A parallel step of one routine with `count` segments. Returns when every segment's
  // writes are merged into shared memory. Throws calypso::Error if the step fails.
  template <class A>
  void parallel(void (*fn)(const Segment&, const A&), std::uint32_t count, const A& args) {
    run_step({Task(fn, count, args)});
  }
  void parallel(void (*fn)(const Segment&), std::uint32_t count) { run_step({Task(fn, count)}); }
  // A parallel step holding several routines (CSL's parbegin with several routine
  // statements). Segment indices are per routine.
  void parallel(std::initializer_list<Task> tasks) { run_step(std::vector<Task>(tasks)); }

  std::size_t workers() const;   // workers alive and done joining
  // Waits until at least n workers (n = 0: calypso-run --expect, else -n) are alive
  // and have allocated the memory behind the shared data allocated so far (up to
  // CALYPSO_PREFAULT), or the timeout passes, or fewer are and nothing more can come
  // (none that joined is still allocating or suspected, and those that joined, those
  // calypso-run saw die before joining and those refused for running another
  // executable with this job's key make n); returns how many are ready. Parallel
  // steps never need it (they run with whoever is there); it lets a program time its
  // work without the workers' start-up.
  std::size_t wait_for_workers(std::size_t n = 0, std::chrono::milliseconds timeout = std::chrono::seconds(60));
  Stats stats() const;

  explicit Manager(ManagerImpl& impl) : impl_(impl) {}

 private:
  void run_step(std::vector<Task> tasks);
  ManagerImpl& impl_;
};

}  // namespace calypso
