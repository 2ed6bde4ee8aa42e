// A watch on provider calls that can spin for ever.
//
// libfabric 1.17's shm provider guards each process's queue with a spinlock in shared
// memory, taken by every sender, by RMA reads and by the owner's own progress. A
// process killed inside that critical section leaves the lock held, and every later
// caller spins inside fi_inject, fi_read or fi_cq_read: no timeout of ours can fire,
// because the call never returns. Calypso cannot free the lock (the queue behind it may
// be half-updated), but it can stop spinning and say why: every call into an shm
// endpoint is bracketed by a ProviderCall, and a watch thread that wakes once a second
// ends the process (exit code 3, its shm queue files removed) once a thread has spent
// kStuckCpu of CPU time inside one call.
//
// The message says where: the call, samples of the stuck thread's place and stack, and
// each shm queue the process has mapped with its creator and lock as the queue's header
// shows them. Before it exits, the process asks those creators (SIGRTMIN+5, caught by
// every process with a watched queue) to print where their own threads are, so that the
// holder of the lock, if alive, names itself too.
//
// CPU time, not wall time: a thread that is stopped (SIGSTOP), preempted or asleep in
// the kernel uses none, while a spinning one uses all it gets; no call that completes
// uses more than milliseconds.
#pragma once

#include <chrono>
#include <string>

namespace calypso::net {

inline constexpr std::chrono::seconds kStuckCpu{3};

struct CallSlot;   // a thread's calls, read by the watch thread (stall_watch.cpp)

// Brackets one provider call (calls do not nest); on a watched endpoint it costs plain
// stores to the calling thread's slot and one sequentially consistent store and load
// (against close_provider_calls). The slot is registered on the thread's first watched
// call, which is never in a signal handler: the worker's first call is its hello.
// `what` names the call in the message of a process that gives up: a string literal.
class ProviderCall {
 public:
  ProviderCall(bool watched, const char* what) noexcept;
  ~ProviderCall();
  ProviderCall(const ProviderCall&) = delete;
  ProviderCall& operator=(const ProviderCall&) = delete;

 private:
  CallSlot* slot_;
};

// Before a process with watched endpoints ends without closing them (_exit from one
// thread while another may be inside the provider): from now on a thread about to enter
// a watched call waits for the end instead, and this returns once no other thread is
// inside one, or after `patience` if one is stuck there. The shm provider's progress
// holds the process's own queue lock, and a process that ended inside it would leave
// that lock held: the next sender to it, the manager, would spin for ever (CI caught a
// worker ending so at the end of a job). It takes the watch's mutex: from a signal
// handler only if the handler interrupted code that cannot hold it (a routine's).
void close_provider_calls(std::chrono::milliseconds patience) noexcept;

// Held by a watched endpoint: starts the watch thread (once per process) and names the
// endpoint's queue file, which the process removes if it has to give up.
class WatchedQueue {
 public:
  explicit WatchedQueue(std::string queue_file);
  ~WatchedQueue();
  WatchedQueue(const WatchedQueue&) = delete;
  WatchedQueue& operator=(const WatchedQueue&) = delete;

 private:
  std::string queue_file_;
};

}  // namespace calypso::net
