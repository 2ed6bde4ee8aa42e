#include "sched/stop_signals.hpp"

#include <atomic>
#include <iterator>
#include <pthread.h>
#include <cstdint>
#include <csignal>
#include <cstdlib>
#include <sys/eventfd.h>
#include <unistd.h>

namespace calypso::sched {
namespace {

constexpr int kSignals[] = {SIGTERM, SIGINT, SIGHUP};

// One manager per process (one Runtime): the handler's state is the process's.
std::atomic<int> g_event_fd{-1};
std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "used from a signal handler");

extern "C" void on_stop_signal(int sig) {
  int none = 0;
  if (!g_signal.compare_exchange_strong(none, sig)) {
    if (none == sig) StopSignals::die_by(sig);   // the same again: now
    return;
  }
  const int fd = g_event_fd.load();
  if (fd >= 0) {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto r = write(fd, &one, sizeof one);
  }
}

}  // namespace

StopSignals::StopSignals() : event_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (event_.get() < 0) return;   // then the signals keep their default action
  g_signal = 0;
  g_event_fd = event_.get();
  for (int i = 0; i < static_cast<int>(std::size(kSignals)); ++i) {
    struct sigaction old {};
    if (sigaction(kSignals[i], nullptr, &old) != 0) continue;
    if ((old.sa_flags & SA_SIGINFO) != 0 || old.sa_handler != SIG_DFL) continue;   // the program's
    struct sigaction ours {};
    ours.sa_handler = on_stop_signal;
    sigemptyset(&ours.sa_mask);
    ours.sa_flags = SA_RESTART;
    if (sigaction(kSignals[i], &ours, nullptr) == 0) installed_ |= 1 << i;
  }
  if (installed_ == 0) event_.reset();
}

void StopSignals::release() {
  if (installed_ == 0) return;
  for (int i = 0; i < static_cast<int>(std::size(kSignals)); ++i) {
    if ((installed_ & (1 << i)) == 0) continue;
    struct sigaction now {};
    if (sigaction(kSignals[i], nullptr, &now) == 0 && (now.sa_flags & SA_SIGINFO) == 0 &&
        now.sa_handler == on_stop_signal) {
      std::signal(kSignals[i], SIG_DFL);
    }
  }
  installed_ = 0;
  g_event_fd = -1;   // before the descriptor closes (its number may be reused)
  if (const int sig = g_signal.load(); sig != 0) die_by(sig);   // came after the loop stopped
}

int StopSignals::taken() {
  std::uint64_t count = 0;
  if (event_.get() >= 0) {
    [[maybe_unused]] auto r = read(event_.get(), &count, sizeof count);
  }
  return g_signal.load();
}

void StopSignals::die_by(int sig) {
  std::signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  raise(sig);
  _exit(128 + sig);   // (not reached: the default action of these signals ends the process)
}

}  // namespace calypso::sched
