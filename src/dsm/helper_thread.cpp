// The collation helper's thread; see helper_thread.hpp.
#include "dsm/helper_thread.hpp"

#include <exception>
#include <utility>

namespace calypso::dsm {

HelperThread::~HelperThread() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool HelperThread::post(std::function<void()> job) {
  if (!job) return false;
  {
    std::lock_guard lock(mutex_);
    if (busy_ || stopping_) return false;
    if (!thread_.joinable()) {
      try {
        thread_ = std::thread([this] { run(); });
      } catch (const std::exception&) {   // std::system_error, std::bad_alloc
        return false;
      }
    }
    job_ = std::move(job);
    busy_ = true;
  }
  cv_.notify_all();
  return true;
}

void HelperThread::wait() noexcept {
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [this] { return !busy_; });
}

void HelperThread::run() noexcept {
  std::unique_lock lock(mutex_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || job_; });
    if (!job_) return;   // stopping, nothing left to run
    std::function<void()> job = std::move(job_);
    job_ = nullptr;
    lock.unlock();
    job();
    job = nullptr;   // the job's state goes before wait() returns
    lock.lock();
    busy_ = false;
    cv_.notify_all();
  }
}

}  // namespace calypso::dsm
