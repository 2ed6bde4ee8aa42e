// Tests of HelperThread (dsm/helper_thread.hpp), the collation's kept second thread: a
// posted job runs on another thread and wait() returns after it; a second job is refused
// while one runs (the caller then does it itself); the thread is reused from job to job
// and is stopped and joined by the destructor, with or without a job ever posted, after
// letting a posted job run to its end; an empty job is refused.
#include "dsm/helper_thread.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

namespace calypso::dsm {
namespace {

TEST(HelperThread, RunsThePostedJobOnAnotherThreadAndWaitsForIt) {
  HelperThread helper;
  std::thread::id ran_on;
  std::atomic<bool> done{false};
  ASSERT_TRUE(helper.post([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));   // wait() must not return early
    ran_on = std::this_thread::get_id();
    done = true;
  }));
  helper.wait();
  EXPECT_TRUE(done.load());
  EXPECT_NE(ran_on, std::this_thread::get_id());
}

TEST(HelperThread, RefusesASecondJobWhileOneRuns) {
  HelperThread helper;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> runs{0};
  ASSERT_TRUE(helper.post([&] {
    released.wait();
    ++runs;
  }));
  EXPECT_FALSE(helper.post([&] { ++runs; }));
  release.set_value();
  helper.wait();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_TRUE(helper.post([&] { ++runs; }));   // free again
  helper.wait();
  EXPECT_EQ(runs.load(), 2);
}

TEST(HelperThread, KeepsOneThreadFromJobToJob) {
  HelperThread helper;
  std::thread::id first;
  ASSERT_TRUE(helper.post([&] { first = std::this_thread::get_id(); }));
  helper.wait();
  for (int i = 0; i < 200; ++i) {
    std::thread::id now;
    ASSERT_TRUE(helper.post([&] { now = std::this_thread::get_id(); }));
    helper.wait();
    ASSERT_EQ(now, first) << "job " << i;
  }
}

TEST(HelperThread, WaitWithoutAJobReturnsAndTheDestructorJoins) {
  {
    HelperThread idle;   // never started
    idle.wait();
  }
  std::atomic<bool> done{false};
  {
    HelperThread helper;
    ASSERT_TRUE(helper.post([&] { done = true; }));
    helper.wait();
  }   // joined here: a thread left running would make the test binary abort at exit
  EXPECT_TRUE(done.load());
}

TEST(HelperThread, TheDestructorLetsAPostedJobFinish) {
  std::atomic<bool> done{false};
  {
    HelperThread helper;
    ASSERT_TRUE(helper.post([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      done = true;
    }));
  }   // no wait(): the destructor must not drop or cut the job
  EXPECT_TRUE(done.load());
}

TEST(HelperThread, RefusesAnEmptyJob) {
  HelperThread helper;
  EXPECT_FALSE(helper.post({}));
  helper.wait();   // nothing taken: returns at once
  bool ran = false;
  EXPECT_TRUE(helper.post([&] { ran = true; }));
  helper.wait();
  EXPECT_TRUE(ran);
}

}  // namespace
}  // namespace calypso::dsm
