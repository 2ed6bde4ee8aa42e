// The watch thread behind ProviderCall (see stall_watch.hpp for why it exists).
#include "net/stall_watch.hpp"

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <thread>
#include <vector>

namespace calypso::net {

// `calls` is written only by its thread: odd while that thread is inside a call. The
// rest belongs to the watch thread, under the watch's mutex.
struct CallSlot {
  std::atomic<std::uint64_t> calls{0};
  clockid_t cpu{};                // the thread's CPU-time clock
  std::uint64_t seen = 0;         // the odd `calls` seen at the last look, 0: none
  timespec cpu_when_seen{};
};

namespace {

double seconds_between(const timespec& a, const timespec& b) {
  return static_cast<double>(b.tv_sec - a.tv_sec) + 1e-9 * static_cast<double>(b.tv_nsec - a.tv_nsec);
}

class Watch {
 public:
  static Watch& get() {
    static Watch w;
    return w;
  }

  ~Watch() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    alive_.store(false);
  }

  static bool alive() { return alive_.load(); }

  void add(CallSlot* s) {
    std::lock_guard lock(mu_);
    slots_.push_back(s);
  }
  void remove(CallSlot* s) {
    std::lock_guard lock(mu_);
    std::erase(slots_, s);
  }

  void add_queue(const std::string& name) {
    std::lock_guard lock(mu_);
    queues_.push_back(name);
    if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
  }
  void remove_queue(const std::string& name) {
    std::lock_guard lock(mu_);
    if (auto it = std::find(queues_.begin(), queues_.end(), name); it != queues_.end()) queues_.erase(it);
  }

 private:
  Watch() { alive_.store(true); }

  // Wakes once a second: a thread seen inside the same call at two looks has its CPU
  // time inside that call measured between them.
  void run() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, std::chrono::seconds(1));
      if (stop_) return;
      for (CallSlot* s : slots_) look_at(*s);
    }
  }

  void look_at(CallSlot& s) {
    const std::uint64_t c = s.calls.load(std::memory_order_acquire);
    timespec now{};
    if (c % 2 == 0 || clock_gettime(s.cpu, &now) != 0) {
      s.seen = 0;
      return;
    }
    if (s.seen != c) {
      s.seen = c;
      s.cpu_when_seen = now;
      return;
    }
    const double spent = seconds_between(s.cpu_when_seen, now);
    if (spent >= static_cast<double>(kStuckCpu.count())) give_up(spent);
  }

  // Under the mutex, from the watch thread: the stuck thread holds no lock of ours.
  [[noreturn]] void give_up(double spent) {
    char text[512];
    const int n = std::snprintf(
        text, sizeof text,
        "calypso: process %d has spent %.1f s of CPU time inside one call into libfabric's shm "
        "provider and gives up: a process killed while it held the lock of an shm queue leaves "
        "that lock held for good (libfabric 1.17); choose --provider tcp where processes may be "
        "killed\n",
        static_cast<int>(getpid()), spent);
    if (n > 0) [[maybe_unused]] auto w = ::write(STDERR_FILENO, text, std::min<std::size_t>(n, sizeof text - 1));
    for (const auto& q : queues_) ::shm_unlink(q.c_str());
    _exit(3);
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<CallSlot*> slots_;
  std::vector<std::string> queues_;
  std::thread thread_;
  bool stop_ = false;
  static inline std::atomic<bool> alive_{false};
};

// Owns the calling thread's slot; leaves the watch when the thread ends.
struct ThreadSlot {
  CallSlot slot;
  bool registered = false;
  ~ThreadSlot() {
    if (registered && Watch::alive()) Watch::get().remove(&slot);
  }
};

CallSlot* this_thread_slot() noexcept {
  thread_local ThreadSlot t;
  if (!t.registered) {
    if (pthread_getcpuclockid(pthread_self(), &t.slot.cpu) != 0) return nullptr;
    try {
      Watch::get().add(&t.slot);
    } catch (...) {   // out of memory: this thread goes unwatched
      return nullptr;
    }
    t.registered = true;
  }
  return &t.slot;
}

}  // namespace

ProviderCall::ProviderCall(bool watched) noexcept : slot_(watched ? this_thread_slot() : nullptr) {
  if (slot_) slot_->calls.store(slot_->calls.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

ProviderCall::~ProviderCall() {
  if (slot_) slot_->calls.store(slot_->calls.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

WatchedQueue::WatchedQueue(std::string queue_file) : queue_file_(std::move(queue_file)) {
  Watch::get().add_queue(queue_file_);
}

WatchedQueue::~WatchedQueue() {
  if (Watch::alive()) Watch::get().remove_queue(queue_file_);
}

}  // namespace calypso::net
