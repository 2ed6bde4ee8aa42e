// The SIGSEGV handler. It is thin on purpose: a fault inside the shared region goes to
// the process's FaultTarget (worker page cache or manager home memory); any other fault
// is the program's own bug and is forwarded to the handler that was there before, so the
// program crashes exactly as it would without the library.
#pragma once

#include <cstddef>

namespace calypso::dsm {

enum class FaultOutcome : unsigned char {
  resolved,   // retry the access
  abort,      // give up the running segment (its step is over): call the abort hook
  fatal,      // cannot continue (manager lost, mprotect failed): message already written
};

class FaultTarget {
 public:
  virtual FaultOutcome on_fault(void* address, bool is_write) noexcept = 0;

 protected:
  ~FaultTarget() = default;
};

// Installs the handler for [base, base+size) while alive. One at a time per process.
// abort_hook is called (from the handler) on FaultOutcome::abort; it must not return
// (it siglongjmps back to the worker loop). before_fatal_exit is called (from the
// handler, so it must be async-signal-safe) before a fatal fault ends the process with
// _exit(70): the worker removes its shm queue files there.
class FaultHandler {
 public:
  FaultHandler(void* base, std::size_t size, FaultTarget& target, void (*abort_hook)() = nullptr,
               void (*before_fatal_exit)() = nullptr);
  ~FaultHandler();
  FaultHandler(const FaultHandler&) = delete;
  FaultHandler& operator=(const FaultHandler&) = delete;
};

}  // namespace calypso::dsm
