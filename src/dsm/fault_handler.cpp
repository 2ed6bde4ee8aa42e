// SIGSEGV handling: claim faults in the region, forward the rest.
//
// Forwarding: if the previous disposition was SIG_DFL (or SIG_IGN, which would loop
// forever on a fault), the handler restores SIG_DFL and returns, so the faulting
// instruction runs again and the kernel kills the process with SIGSEGV as usual.
#include "dsm/fault_handler.hpp"

#include "log.hpp"

#include <calypso/error.hpp>

#include <csignal>
#include <dlfcn.h>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ucontext.h>
#include <unistd.h>

namespace calypso::dsm {
namespace {

struct State {
  std::uintptr_t base = 0;
  std::size_t size = 0;
  FaultTarget* target = nullptr;
  void (*abort_hook)() = nullptr;
  void (*before_fatal_exit)() = nullptr;
  struct sigaction previous {};
};
State g_state;

bool is_write_fault(void* ucontext) {
#if defined(__x86_64__)
  auto* uc = static_cast<ucontext_t*>(ucontext);
  return (uc->uc_mcontext.gregs[REG_ERR] & 2) != 0;
#else
  (void)ucontext;
  return false;  // unknown: the page cache then treats a fault on a readable page as a write
#endif
}

void forward(int sig, siginfo_t* info, void* ucontext) {
  const struct sigaction& prev = g_state.previous;
  if ((prev.sa_flags & SA_SIGINFO) != 0 && prev.sa_sigaction != nullptr) {
    prev.sa_sigaction(sig, info, ucontext);
  } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
    prev.sa_handler(sig);
  } else {
    signal(SIGSEGV, SIG_DFL);  // re-executing the access now kills the process
  }
}

void on_sigsegv(int sig, siginfo_t* info, void* ucontext) {
  auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
  if (g_state.target == nullptr || addr - g_state.base >= g_state.size) {
    forward(sig, info, ucontext);
    return;
  }
  switch (g_state.target->on_fault(info->si_addr, is_write_fault(ucontext))) {
    case FaultOutcome::resolved:
      return;
    case FaultOutcome::abort:
      if (g_state.abort_hook != nullptr) g_state.abort_hook();
      [[fallthrough]];
    case FaultOutcome::fatal:
      log::raw("calypso: fatal fault in the shared region; exiting\n");
      if (g_state.before_fatal_exit != nullptr) g_state.before_fatal_exit();
      _exit(70);
  }
}

// libfabric's psm provider loads libinfinipath, which installs a SIGSEGV handler that
// prints a backtrace, writes a .btr file into the working directory and exits with 1
// (unless IPATH_NO_BACKTRACE is set). Forwarding to it would turn a program's own crash
// into "exit 1"; the program did not ask for it, so it is treated as the default action.
bool installed_by_fabric_library(const struct sigaction& sa) {
  void* fn = (sa.sa_flags & SA_SIGINFO) != 0 ? reinterpret_cast<void*>(sa.sa_sigaction)
                                              : reinterpret_cast<void*>(sa.sa_handler);
  Dl_info info{};
  if (fn == nullptr || dladdr(fn, &info) == 0 || info.dli_fname == nullptr) return false;
  return std::strstr(info.dli_fname, "infinipath") != nullptr || std::strstr(info.dli_fname, "libpsm") != nullptr;
}

}  // namespace

FaultHandler::FaultHandler(void* base, std::size_t size, FaultTarget& target, void (*abort_hook)(),
                           void (*before_fatal_exit)()) {
  if (g_state.target != nullptr) throw Error("calypso: a fault handler is already installed");
  struct sigaction sa {};
  sa.sa_sigaction = &on_sigsegv;
  // No SA_NODEFER: a fault inside the handler itself is a runtime bug and should kill at once.
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  g_state.base = reinterpret_cast<std::uintptr_t>(base);
  g_state.size = size;
  g_state.target = &target;
  g_state.abort_hook = abort_hook;
  g_state.before_fatal_exit = before_fatal_exit;
  if (sigaction(SIGSEGV, &sa, &g_state.previous) != 0) {
    g_state.target = nullptr;
    throw Error(std::string("calypso: sigaction(SIGSEGV) failed: ") + std::strerror(errno));
  }
  if (installed_by_fabric_library(g_state.previous)) {
    g_state.previous = {};
    g_state.previous.sa_handler = SIG_DFL;
  }
}

FaultHandler::~FaultHandler() {
  sigaction(SIGSEGV, &g_state.previous, nullptr);
  g_state = State{};
}

}  // namespace calypso::dsm
