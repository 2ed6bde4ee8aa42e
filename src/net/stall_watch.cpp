// The watch thread behind ProviderCall (see stall_watch.hpp for why it exists).
#include "net/stall_watch.hpp"

#include <dlfcn.h>
#include <execinfo.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace calypso::net {

// `calls` is written only by its thread: odd while that thread is inside a call. The
// rest belongs to the watch thread, under the watch's mutex.
struct CallSlot {
  std::atomic<std::uint64_t> calls{0};
  std::atomic<const char*> what{nullptr};   // the call it is in or was last in
  clockid_t cpu{};                // the thread's CPU-time clock
  pthread_t thread{};             // to sample where it is, if it gets stuck
  std::uint64_t seen = 0;         // the odd `calls` seen at the last look, 0: none
  timespec cpu_when_seen{};
};

namespace {

// Set once by close_provider_calls (or a process giving up): the process is about to end.
std::atomic<bool> closing{false};

// Where a thread is: each signal sent to it stores its instruction pointer here, and the
// first, if want_stack, also its call stack (glibc's backtrace, loaded in advance by
// prepare_sampling so that the handler does not load it). Installed by a process that
// is giving up, and by one that is asked; backtrace is not async-signal-safe, so only a
// thread inside a provider call (where it runs no unwinder of its own) gives its stack.
constexpr int kSamples = 6;
constexpr int kFrames = 12;
std::atomic<std::uintptr_t> sampled_ip[kSamples];
void* stack[kFrames];
int stack_depth = 0;
std::atomic<bool> want_stack{false};
std::atomic<int> samples_taken{0};

// Both of the watch's signals: a handler that gets the siginfo and the interrupted
// context, restarting the calls it interrupts. False if the kernel refuses.
bool install_handler(int sig, void (*handler)(int, siginfo_t*, void*)) {
  struct sigaction sa{};
  sa.sa_sigaction = handler;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  return sigaction(sig, &sa, nullptr) == 0;
}

void prepare_sampling() {
  void* frames[2];
  [[maybe_unused]] const int n = backtrace(frames, 2);
}

void store_sample(int, siginfo_t*, void* context) {
  const int i = samples_taken.load(std::memory_order_relaxed);
  if (i >= kSamples) return;
  std::uintptr_t ip = 0;
#if defined(__x86_64__)
  ip = static_cast<std::uintptr_t>(static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RIP]);
#elif defined(__aarch64__)
  ip = static_cast<std::uintptr_t>(static_cast<ucontext_t*>(context)->uc_mcontext.pc);
#else
  (void)context;
#endif
  if (i == 0 && want_stack.load(std::memory_order_relaxed)) stack_depth = backtrace(stack, kFrames);
  sampled_ip[i].store(ip, std::memory_order_relaxed);
  samples_taken.store(i + 1, std::memory_order_release);
}

// " libfabric.so.1+0x2a3f0 (fi_x+0x10)": the file and offset, which name the code even
// in a stripped library, and the nearest exported symbol.
std::string describe(std::uintptr_t ip) {
  Dl_info info{};
  char one[256];
  if (ip != 0 && dladdr(reinterpret_cast<void*>(ip), &info) != 0 && info.dli_fname != nullptr) {
    const char* file = std::strrchr(info.dli_fname, '/');
    file = file ? file + 1 : info.dli_fname;
    const auto off = static_cast<std::size_t>(ip - reinterpret_cast<std::uintptr_t>(info.dli_fbase));
    if (info.dli_sname != nullptr) {
      std::snprintf(one, sizeof one, " %s+0x%zx (%s+0x%zx)", file, off, info.dli_sname,
                    static_cast<std::size_t>(ip - reinterpret_cast<std::uintptr_t>(info.dli_saddr)));
    } else {
      std::snprintf(one, sizeof one, " %s+0x%zx", file, off);
    }
  } else {
    std::snprintf(one, sizeof one, " 0x%zx", static_cast<std::size_t>(ip));
  }
  return one;
}

// Where the stuck thread spins and how it got there, so that a stall seen once (in CI,
// say) names the provider's code. The thread is interrupted a few times, 20 ms apart; a
// thread that does not answer (it left the call) adds nothing.
std::string where_thread_is(pthread_t thread, bool with_stack) {
  samples_taken.store(0, std::memory_order_relaxed);
  stack_depth = 0;
  want_stack.store(with_stack, std::memory_order_relaxed);
  const int sig = SIGRTMIN + 4;
  if (!install_handler(sig, store_sample)) return "";
  for (int k = 0; k < kSamples; ++k) {
    if (pthread_kill(thread, sig) != 0) break;
    for (int wait = 0; wait < 20 && samples_taken.load(std::memory_order_acquire) <= k; ++wait) {
      ::usleep(1000);
    }
    ::usleep(20'000);
  }
  const int n = samples_taken.load(std::memory_order_acquire);
  std::string out;
  for (int k = 0; k < n;) {   // a spinning thread is mostly at one place: each once, counted
    const std::uintptr_t ip = sampled_ip[k].load(std::memory_order_relaxed);
    int same = 1;
    while (k + same < n && sampled_ip[k + same].load(std::memory_order_relaxed) == ip) ++same;
    out += describe(ip);
    if (same > 1) out += " x" + std::to_string(same);
    k += same;
  }
  if (n > 0 && stack_depth > 3) {
    out += "; called from";
    // Frame 0 is the handler, 1 the signal trampoline, 2 the sampled function itself.
    for (int f = 3; f < stack_depth; ++f) {
      out += describe(reinterpret_cast<std::uintptr_t>(stack[f]) - 1);   // inside the call
    }
  }
  return out;
}

// The shm queues this process has mapped, as libfabric 1.17 lays out their header
// (struct smr_region: the creator's pid at byte 4, the queue's spinlock at byte 24), so
// that a process that gives up says whose lock it waits for: a queue whose lock is held
// while its creator is gone, or a mapped file that is no longer the one its name opens
// (deleted or replaced), tells a stale queue from a live holder. Read from the mapping
// itself, which is what the provider reads; nothing is written.
struct MappedQueue {
  std::string name;
  int creator = 0;      // the pid in the file's name (queue_creator)
  int header_pid = 0;
  std::uint32_t lock = 0;
  ino_t inode = 0;
  bool deleted = false;
};

constexpr std::size_t kHeaderPid = 4;
constexpr std::size_t kHeaderLock = 24;

// The creator's pid if `name` is an shm queue's ("<pid>:<n>:<m>"), else 0: other files
// in /dev/shm (a program's own shm_open files, semaphores) are not read.
int queue_creator(const std::string& name) {
  int pid = 0, n = 0, m = 0, used = 0;
  if (std::sscanf(name.c_str(), "%d:%d:%d%n", &pid, &n, &m, &used) != 3 ||
      used != static_cast<int>(name.size()) || pid <= 0) {
    return 0;
  }
  return pid;
}

// Copies from this process's own memory without touching it directly: a mapped file
// truncated since would raise SIGBUS in a plain copy; this read fails instead.
bool read_own(std::uintptr_t from, void* to, std::size_t bytes) {
  iovec local{to, bytes};
  iovec remote{reinterpret_cast<void*>(from), bytes};
  return ::process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == static_cast<ssize_t>(bytes);
}

std::vector<MappedQueue> mapped_queues() {
  std::vector<MappedQueue> out;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  std::set<std::pair<std::string, unsigned long>> seen;
  while (std::getline(maps, line)) {
    // "start-end perms offset dev inode path"
    std::istringstream in(line);
    std::string perms, dev, path, rest;
    std::uintptr_t begin = 0, end = 0;
    unsigned long long offset = 0;
    unsigned long inode = 0;
    char dash = 0;
    in >> std::hex >> begin >> dash >> end >> perms >> offset >> dev >> std::dec >> inode >> path;
    if (!in || path.rfind("/dev/shm/", 0) != 0 || perms.empty() || perms[0] != 'r' || offset != 0) continue;
    MappedQueue q;
    q.name = path.substr(9);
    q.creator = queue_creator(q.name);
    if (q.creator == 0 || end - begin < kHeaderLock + sizeof q.lock) continue;
    if (!seen.insert({q.name, inode}).second) continue;
    q.deleted = std::getline(in, rest) && rest.find("(deleted)") != std::string::npos;
    if (!read_own(begin + kHeaderPid, &q.header_pid, sizeof q.header_pid) ||
        !read_own(begin + kHeaderLock, &q.lock, sizeof q.lock)) {
      continue;
    }
    q.inode = static_cast<ino_t>(inode);
    out.push_back(std::move(q));
  }
  return out;
}

// What a free spinlock's word holds here (glibc's x86-64 lock counts down from 1, its
// generic one up from 0): a word that differs is held.
std::uint32_t free_lock_word() {
  static_assert(sizeof(pthread_spinlock_t) == sizeof(std::uint32_t));
  pthread_spinlock_t lock;
  pthread_spin_init(&lock, PTHREAD_PROCESS_SHARED);
  const auto word = static_cast<std::uint32_t>(lock);
  pthread_spin_destroy(&lock);
  return word;
}

bool process_alive(int pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

// "; shm queues mapped: 812:0:0 (creator 812 alive, lock free) ..."
std::string describe_queues(const std::vector<MappedQueue>& queues) {
  if (queues.empty()) return "";
  std::string out = "; shm queues mapped:";
  const std::uint32_t free_word = free_lock_word();
  for (const auto& q : queues) {
    struct stat now{};
    const std::string path = "/dev/shm/" + q.name;
    const bool replaced = !q.deleted && (::stat(path.c_str(), &now) != 0 || now.st_ino != q.inode);
    char one[200];
    std::snprintf(one, sizeof one, " %s (creator %d %s, lock %s%s)", q.name.c_str(), q.header_pid,
                  process_alive(q.header_pid) ? "alive" : "gone", q.lock == free_word ? "free" : "held",
                  q.deleted ? ", file deleted" : replaced ? ", file replaced" : "");
    out += one;
  }
  return out;
}

// A process that gives up asks the other processes whose queues it has mapped to say
// where their own threads are (the holder of the lock it spins on may be one of them).
// The request is a real-time signal whose handler only wakes the watch thread; it is
// sent only to a process whose /proc status shows the handler installed, so that a pid
// reused by another program is never killed by it.
int request_signal() { return SIGRTMIN + 5; }
std::atomic<int> request_efd{-1};
std::atomic<bool> requested{false};
std::atomic<int> requested_by{0};   // the last asker (0: from another pid namespace)

void note_request(int, siginfo_t* info, void*) {
  const int saved = errno;
  requested_by.store(info->si_pid, std::memory_order_relaxed);
  requested.store(true, std::memory_order_release);
  const std::uint64_t one = 1;
  [[maybe_unused]] auto w = ::write(request_efd.load(std::memory_order_relaxed), &one, sizeof one);
  errno = saved;
}

bool catches_request_signal(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("SigCgt:", 0) != 0) continue;
    unsigned long long mask = 0;
    return std::sscanf(line.c_str() + 7, "%llx", &mask) == 1 && ((mask >> (request_signal() - 1)) & 1);
  }
  return false;
}

// One write(2), no allocation: also for the messages of a process out of memory.
void write_stderr(std::string_view text) noexcept {
  [[maybe_unused]] auto w = ::write(STDERR_FILENO, text.data(), text.size());
}

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
    wake();
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

  // See close_provider_calls. False if a thread stayed inside a call for `patience`.
  bool wait_until_no_call(std::chrono::milliseconds patience, const CallSlot* own) {
    return wait_until(patience, [&] {
      std::lock_guard lock(mu_);
      return !another_inside(own);
    });
  }

  // Polls `done` (which may take the mutex) until it holds, for at most `patience`.
  template <class Done>
  static bool wait_until(std::chrono::milliseconds patience, Done done) {
    const auto until = std::chrono::steady_clock::now() + patience;
    for (;;) {
      if (done()) return true;
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  // Under the mutex: a thread other than `skip` is inside a call.
  bool another_inside(const CallSlot* skip) const {
    for (const CallSlot* s : slots_) {
      if (s != skip && s->calls.load(std::memory_order_seq_cst) % 2 == 1) return true;
    }
    return false;
  }

  void add_queue(const std::string& name) {
    std::lock_guard lock(mu_);
    queues_.push_back(name);
    if (!thread_.joinable()) start();
  }
  void remove_queue(const std::string& name) {
    std::lock_guard lock(mu_);
    if (auto it = std::find(queues_.begin(), queues_.end(), name); it != queues_.end()) queues_.erase(it);
  }

 private:
  Watch() { alive_.store(true); }

  // Under the mutex. The eventfd wakes the thread early: to stop, or on another stalled
  // process's request. Without one (out of descriptors) the watch still looks once a
  // second and answers no requests.
  void start() {
    prepare_sampling();
    efd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd_ >= 0) {
      request_efd.store(efd_, std::memory_order_relaxed);
      install_handler(request_signal(), note_request);
    }
    thread_ = std::thread([this] { run(); });
  }

  void wake() {
    const std::uint64_t one = 1;
    if (efd_ >= 0) [[maybe_unused]] auto w = ::write(efd_, &one, sizeof one);
  }

  // Wakes once a second: a thread seen inside the same call at two looks has its CPU
  // time inside that call measured between them.
  void run() {
    std::unique_lock lock(mu_);
    auto next_look = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (!stop_) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next_look - std::chrono::steady_clock::now());
      lock.unlock();
      if (efd_ >= 0) {
        pollfd p{efd_, POLLIN, 0};
        ::poll(&p, 1, static_cast<int>(std::max<long>(left.count(), 0)));
        std::uint64_t n = 0;
        [[maybe_unused]] auto r = ::read(efd_, &n, sizeof n);
      } else {
        std::this_thread::sleep_for(left);
      }
      lock.lock();
      if (stop_) return;
      if (requested.exchange(false, std::memory_order_acquire)) answer(requested_by.load(std::memory_order_relaxed));
      if (std::chrono::steady_clock::now() < next_look) continue;
      next_look = std::chrono::steady_clock::now() + std::chrono::seconds(1);
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
    if (spent >= static_cast<double>(kStuckCpu.count())) give_up(s, spent);
  }

  // Another process gave up and asks where this one's threads are: each thread that has
  // made watched calls, whether it is inside one now, and where it is.
  void answer(int by) noexcept {
    try {
      answer_or_throw(by);
    } catch (...) {   // out of memory: this process stays healthy, unanswered
    }
  }
  void answer_or_throw(int by) {
    std::string text = "calypso: process " + std::to_string(getpid()) + ", asked by process " +
                       std::to_string(by) + ", which gives up:";
    const char* sep = " ";
    for (CallSlot* s : slots_) {
      const std::uint64_t c = s->calls.load(std::memory_order_acquire);
      const char* what = s->what.load(std::memory_order_relaxed);
      text += sep;
      text += c % 2 ? "a thread inside " : "a thread last in ";
      text += what ? what : "?";
      text += " (at" + where_thread_is(s->thread, c % 2 == 1) + ")";
      sep = "; ";
    }
    text += describe_queues(mapped_queues()) + "\n";
    write_stderr(text);
  }

  // Under the mutex, from the watch thread: the stuck thread holds no lock of ours.
  [[noreturn]] void give_up(CallSlot& s, double spent) {
    // The other threads must not end inside the provider either (close_provider_calls);
    // the stuck one cannot be helped. Shut first, so that none enters while we report.
    closing.store(true, std::memory_order_seq_cst);
    try {
      const char* what = s.what.load(std::memory_order_relaxed);
      const std::string where = where_thread_is(s.thread, true);
      const auto queues = mapped_queues();
      char head[160];
      std::snprintf(head, sizeof head,
                    "calypso: process %d has spent %.1f s of CPU time inside one call into libfabric's shm "
                    "provider (",
                    static_cast<int>(getpid()), spent);
      write_stderr(head + std::string(what ? what : "?") + "; at" + (where.empty() ? " ?" : where) +
                   describe_queues(queues) +
                   ") and gives up: a process killed while it held the lock of an shm queue leaves that "
                   "lock held for good (libfabric 1.17); choose --provider tcp where processes may be "
                   "killed\n");
      if (ask_peers(queues)) ::usleep(1'500'000);   // their answers, before the launcher stops them
    } catch (...) {   // out of memory: end without the details
      write_stderr("calypso: a thread is stuck inside a call into libfabric's shm provider; giving up\n");
    }
    wait_until(std::chrono::milliseconds(300), [&] { return !another_inside(&s); });   // mutex held
    for (const auto& q : queues_) ::shm_unlink(q.c_str());
    _exit(3);
  }

  // True if any process was asked.
  static bool ask_peers(const std::vector<MappedQueue>& queues) {
    std::set<int> asked;
    for (const auto& q : queues) {
      const int pid = q.header_pid;
      if (pid != q.creator || pid == getpid() || asked.contains(pid) || !process_alive(pid) ||
          !catches_request_signal(pid)) {
        continue;
      }
      if (::kill(pid, request_signal()) == 0) asked.insert(pid);
    }
    return !asked.empty();
  }

  std::mutex mu_;
  int efd_ = -1;   // never closed: a signal may still write to it as the process ends
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

thread_local ThreadSlot own_thread_slot;

CallSlot* this_thread_slot() noexcept {
  ThreadSlot& t = own_thread_slot;
  if (!t.registered) {
    t.slot.thread = pthread_self();
    if (pthread_getcpuclockid(t.slot.thread, &t.slot.cpu) != 0) return nullptr;
    try {
      Watch::get().add(&t.slot);
    } catch (...) {   // out of memory: this thread goes unwatched
      return nullptr;
    }
    t.registered = true;
  }
  return &t.slot;
}

// The calling thread's slot if it has one, without making one.
const CallSlot* own_slot() noexcept { return own_thread_slot.registered ? &own_thread_slot.slot : nullptr; }

// A thread that meets the closed gate never enters the provider again: it waits here
// until the process ends (pause returns only after a signal handler, then waits again).
[[noreturn]] void wait_for_the_end() noexcept {
  for (;;) ::pause();
}

}  // namespace

// Dekker's pattern with close_provider_calls: the slot turns odd, then the thread looks
// at the gate, while the closer shuts the gate, then looks at the slots (both stores and
// loads sequentially consistent). Either this thread sees the gate shut and backs out,
// or the closer sees it inside and waits for it to come out.
ProviderCall::ProviderCall(bool watched, const char* what) noexcept
    : slot_(watched ? this_thread_slot() : nullptr) {
  if (!slot_) return;
  slot_->what.store(what, std::memory_order_relaxed);
  const std::uint64_t c = slot_->calls.load(std::memory_order_relaxed);
  slot_->calls.store(c + 1, std::memory_order_seq_cst);
  if (closing.load(std::memory_order_seq_cst)) {
    slot_->calls.store(c + 2, std::memory_order_seq_cst);
    wait_for_the_end();
  }
}

ProviderCall::~ProviderCall() {
  if (slot_) slot_->calls.store(slot_->calls.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

void close_provider_calls(std::chrono::milliseconds patience) noexcept {
  closing.store(true, std::memory_order_seq_cst);
  if (!Watch::alive()) return;
  try {
    if (!Watch::get().wait_until_no_call(patience, own_slot())) {
      write_stderr("calypso: a thread is still inside a call into the shm provider as the process ends\n");
    }
  } catch (...) {   // the mutex failed to lock (std::system_error): end anyway
  }
}

WatchedQueue::WatchedQueue(std::string queue_file) : queue_file_(std::move(queue_file)) {
  Watch::get().add_queue(queue_file_);
}

WatchedQueue::~WatchedQueue() {
  if (Watch::alive()) Watch::get().remove_queue(queue_file_);
}

}  // namespace calypso::net
