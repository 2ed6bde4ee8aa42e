// A second thread kept for work that one thread hands out and then waits for (the
// manager's collation at the end of a step). Starting a thread per step cost the caller
// ~60 us and the thread ran ~90 us later (jacobi at 2 workers: 200 steps, ~0.5 ms of
// collation each, both workers waiting for it); waking this one costs the caller ~20 us
// and it runs ~45 us later. It sleeps on a condition variable in between, so nothing
// spins while idle. Started at the first post().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

namespace calypso::dsm {

class HelperThread {
 public:
  HelperThread() = default;
  ~HelperThread();   // stops and joins the thread
  HelperThread(const HelperThread&) = delete;
  HelperThread& operator=(const HelperThread&) = delete;

  // Runs job on the helper thread and returns at once; false (job not taken) when no
  // thread can be started, or a job is still running: the caller then does it itself.
  // job must not throw.
  bool post(std::function<void()> job);
  // Returns once the job post() took has returned.
  void wait();

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable cv_;
  std::function<void()> job_;   // under mutex_; cleared by the helper when done
  bool busy_ = false;           // a job was posted and has not finished
  bool stopping_ = false;
  std::thread thread_;          // last: started after the members it uses exist
};

}  // namespace calypso::dsm
