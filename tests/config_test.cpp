// Tests of reading the CALYPSO_* environment (config.hpp): the poll window, which
// depends on the machine and the local workers unless the user sets CALYPSO_POLL_US, and
// the clear error for a bad value.
#include "config.hpp"

#include <calypso/error.hpp>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace calypso {
namespace {

using std::chrono::microseconds;

// Sets or clears one variable for the life of the object.
class EnvVar {
 public:
  EnvVar(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    if (value != nullptr) setenv(name, value, 1);
    else unsetenv(name);
  }
  ~EnvVar() {
    if (had_) setenv(name_, old_.c_str(), 1);
    else unsetenv(name_);
  }
  EnvVar(const EnvVar&) = delete;
  EnvVar& operator=(const EnvVar&) = delete;

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

TEST(PollWindow, PollsOnlyWithACpuToSpare) {
  EXPECT_EQ(default_poll_window(2, 2), microseconds(0));    // calypso-run -n 2 on 2 CPUs
  EXPECT_EQ(default_poll_window(2, 3), microseconds(0));
  EXPECT_EQ(default_poll_window(2, 1), microseconds(50));   // a CPU each for manager and worker
  EXPECT_EQ(default_poll_window(1, 1), microseconds(0));
  EXPECT_EQ(default_poll_window(1, 0), microseconds(50));   // the workers are on other hosts
  EXPECT_EQ(default_poll_window(32, 8), microseconds(50));
  EXPECT_EQ(default_poll_window(4, 0xffffffffu), microseconds(0));   // no overflow
}

TEST(PollWindow, FollowsTheLocalWorkersUnlessTheUserSetsIt) {
  EnvVar role("CALYPSO_ROLE", nullptr);
  EnvVar poll("CALYPSO_POLL_US", nullptr);
  {
    // More local workers than any machine has CPUs: no CPU to spare, whatever runs this.
    EnvVar workers("CALYPSO_WORKERS", "100000");
    EXPECT_EQ(Config::from_environment().poll_window, microseconds(0));
    EnvVar worker("CALYPSO_ROLE", "worker");
    EnvVar manager("CALYPSO_MANAGER", "tcp/00/00");   // not contacted: only read
    EXPECT_EQ(Config::from_environment().poll_window, microseconds(0));
  }
  {
    EnvVar workers("CALYPSO_WORKERS", nullptr);   // a manager alone polls
    EXPECT_EQ(Config::from_environment().poll_window, microseconds(50));
  }
  {
    EnvVar workers("CALYPSO_WORKERS", "100000");
    EnvVar set("CALYPSO_POLL_US", "20");
    EXPECT_EQ(Config::from_environment().poll_window, microseconds(20));
  }
}

TEST(PollWindow, ABadValueIsRefusedByName) {
  EnvVar role("CALYPSO_ROLE", nullptr);
  EnvVar poll("CALYPSO_POLL_US", "fast");
  try {
    Config::from_environment();
    FAIL() << "CALYPSO_POLL_US=fast was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("CALYPSO_POLL_US"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace calypso
