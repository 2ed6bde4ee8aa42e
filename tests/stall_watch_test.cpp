// Tests of the stall watch (net/stall_watch.hpp) in forked children: a thread that
// spends its CPU time inside one watched call ends the process with code 3 and says
// why; one that waits inside a call as long, using no CPU, is left alone, and so is one
// that spins across many short calls. The real case, a lock left held in libfabric's shm, is in
// integration_test (ProcessesStuckOnAnShmLockHeldByTheDeadGiveUpAndSayWhy).
#include "net/stall_watch.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace calypso::net {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Burns CPU until `until`; bounded, so a watch that never fires fails the test instead
// of hanging it.
void spin_until(Clock::time_point until) {
  std::atomic<std::uint64_t> n{0};
  while (Clock::now() < until) n.fetch_add(1, std::memory_order_relaxed);
}

const char* kQueue = "/calypso-stall-watch-test-no-such-queue";

TEST(StallWatch, ThreadSpinningInsideOneCallEndsTheProcessAndSaysWhy) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        WatchedQueue q(kQueue);
        const ProviderCall call(true, "a test's spin");
        spin_until(Clock::now() + 20s);
        _exit(0);
      },
      // Names the call and where the thread was (a file and an offset, sampled).
      ::testing::ExitedWithCode(3),
      "CPU time inside one call into libfabric's shm provider \\(a test's spin; at "
      "[^ ?]+\\+0x[0-9a-f]+.*\\) and gives up");
}

// A process that gives up asks the processes whose shm queues it has mapped where their
// threads are (the holder of the lock may be one of them); here the process asks itself,
// as a peer would, while its thread waits inside a call.
TEST(StallWatch, AskedByAStalledProcessItSaysWhereItsThreadsAre) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        WatchedQueue q(kQueue);
        const ProviderCall call(true, "a test's wait");
        ::kill(getpid(), SIGRTMIN + 5);
        std::this_thread::sleep_for(1500ms);   // the answer samples this thread
        _exit(0);
      },
      ::testing::ExitedWithCode(0),
      "process [0-9]+, asked by process [0-9]+, which gives up: a thread inside a test's wait "
      "\\(at [^ ?]+\\+0x[0-9a-f]+");
}

// A process that ends while another of its threads is inside the shm provider may leave
// its queue lock held (the provider's progress holds it). close_provider_calls waits for
// such a thread to come out and keeps it out: here a thread spends nearly all its time
// inside watched calls, so without the gate it would almost surely be inside one.
TEST(StallWatch, ClosingTheCallsWaitsForTheThreadInsideAndKeepsItOut) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        WatchedQueue q(kQueue);
        std::atomic<bool> inside{false};
        std::atomic<std::uint64_t> entered{0};
        std::thread busy([&] {
          for (;;) {
            const ProviderCall call(true, "a test's call");
            inside.store(true);
            entered.fetch_add(1);
            spin_until(Clock::now() + 2ms);
            inside.store(false);
          }
        });
        while (entered.load() < 10) std::this_thread::yield();
        close_provider_calls(2000ms);
        const bool was_inside = inside.load();
        const std::uint64_t calls = entered.load();
        std::this_thread::sleep_for(50ms);
        const bool kept_out = !inside.load() && entered.load() == calls;
        busy.detach();
        _exit(!was_inside && kept_out ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

// A thread stuck inside a call (a lock held by the dead) does not keep the process from
// ending: the gate waits only as long as it is told.
TEST(StallWatch, ClosingTheCallsGivesUpOnAThreadStuckInside) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        WatchedQueue q(kQueue);
        std::atomic<bool> in{false};
        std::thread stuck([&] {
          const ProviderCall call(true, "a test's stuck call");
          in.store(true);
          std::this_thread::sleep_for(20s);
        });
        while (!in.load()) std::this_thread::yield();
        const auto t0 = Clock::now();
        close_provider_calls(200ms);
        const bool bounded = Clock::now() - t0 < 2s;
        stuck.detach();
        _exit(bounded ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "still inside a call into the shm provider as the process ends");
}

TEST(StallWatch, WaitingInsideACallUsesNoCpuAndIsLeftAlone) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        WatchedQueue q(kQueue);
        const ProviderCall call(true, "test");
        std::this_thread::sleep_for(kStuckCpu + 2500ms);   // two looks of the watch and more
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(StallWatch, SpinningAcrossManyShortCallsIsLeftAlone) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        WatchedQueue q(kQueue);
        const auto until = Clock::now() + kStuckCpu + 2500ms;
        while (Clock::now() < until) {
          const ProviderCall call(true, "test");
          spin_until(Clock::now() + 1ms);
        }
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(StallWatch, UnwatchedCallsAreNotTimed) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        WatchedQueue q(kQueue);
        const ProviderCall call(false, "test");
        spin_until(Clock::now() + kStuckCpu + 2500ms);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace calypso::net
