// What stands behind calypso::Manager in the manager process: the region and its home
// memory, the shared heap, and the event loop that runs parallel steps.
#pragma once

#include "config.hpp"
#include "dsm/fault_handler.hpp"
#include "dsm/heap.hpp"
#include "dsm/home_memory.hpp"
#include "dsm/region.hpp"
#include "sched/manager_loop.hpp"

#include <calypso/manager.hpp>

#include <atomic>

namespace calypso {

class ManagerImpl {
 public:
  explicit ManagerImpl(const Config& config);

  void* allocate(std::size_t bytes, std::size_t align);
  void deallocate(void* p) noexcept;
  std::size_t freeze(const void* p, std::size_t bytes);
  void run_step(std::vector<Task> tasks);
  std::size_t workers() const { return loop_.live_workers(); }
  std::size_t wait_for_workers(std::size_t n, std::chrono::milliseconds timeout) {
    return loop_.wait_for_workers(n == 0 ? config_.job_workers() : n, timeout);
  }
  Stats stats() const { return loop_.stats(); }
  std::string job_address() const { return loop_.job_address(); }
  void shutdown(int code) { loop_.shutdown(code); }

 private:
  void prefault(std::size_t from, std::size_t to);   // home memory of fresh heap bytes

  const Config& config_;
  dsm::Region region_;
  dsm::HomeMemory home_;
  dsm::Heap heap_;
  std::size_t never_used_from_;   // heap offsets at or above this were never handed out
  std::vector<std::uint32_t> frozen_pending_;   // (first, count) runs frozen since the last step
  std::atomic<bool> stepping_{false};           // a parallel() is running (run_step)
  sched::ManagerLoop loop_;
  // Installed after the loop's endpoint is open: libfabric's shm provider installs a
  // SIGSEGV handler of its own (it unlinks its queues, then chains) when an endpoint
  // opens, and ours must see the region's faults first.
  dsm::FaultHandler faults_;
};

}  // namespace calypso
