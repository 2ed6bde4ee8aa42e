// A second thread kept for work that one thread hands out and then waits for (the
// manager's collation at the end of a step). Starting a std::thread per step cost the
// caller ~60 us, and the thread ran ~90 us after that (jacobi at 2 workers: 200 steps,
// ~0.5 ms of collation each, both workers waiting for it); handing a job to this one
// costs the caller ~20 us, and it runs ~45 us after that. It sleeps on a condition
// variable in between, so nothing spins while idle. Started at the first post().
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace calypso::dsm {

class HelperThread {
 public:
  HelperThread() = default;
  // Lets a posted job run to its end, then stops and joins the thread.
  ~HelperThread();
  HelperThread(const HelperThread&) = delete;
  HelperThread& operator=(const HelperThread&) = delete;

  // Runs job on the helper thread and returns at once; false (job not taken) for an
  // empty job, while a job is still posted or running, or when no thread can be
  // started: the caller then does the work itself. job must not throw.
  bool post(std::function<void()> job);
  // Returns once the job post() took has returned (at once when none was taken).
  void wait() noexcept;

 private:
  void run() noexcept;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::function<void()> job_;   // under mutex_: posted, not yet taken by the thread
  bool busy_ = false;           // under mutex_: a job was posted and has not returned
  bool stopping_ = false;       // under mutex_
  std::thread thread_;          // joined by the destructor, before the members above go
};

}  // namespace calypso::dsm
