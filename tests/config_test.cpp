// Tests of reading the CALYPSO_* environment (config.hpp): the poll window, which
// depends on the machine and the Calypso processes on it unless the user sets CALYPSO_POLL_US, and
// the clear error for a bad value, and how numbers are read.
#include "config.hpp"

#include <calypso/error.hpp>
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>   // environ

namespace calypso {
namespace {

using std::chrono::microseconds;

// Sets or clears one variable for the life of the object.
class EnvVar {
 public:
  EnvVar(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) {
      old_ = old;
      had_ = true;
    }
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

// Every test starts from an environment without CALYPSO_* settings (an inherited
// CALYPSO_SCHEDULE=static, say, would change what a manager accepts).
class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry = *e;
      if (entry.rfind("CALYPSO_", 0) == 0) names_.push_back(entry.substr(0, entry.find('=')));
    }
    for (const auto& n : names_) cleared_.push_back(std::make_unique<EnvVar>(n.c_str(), nullptr));
  }

 private:
  std::vector<std::string> names_;   // outlives cleared_, which points into it
  std::vector<std::unique_ptr<EnvVar>> cleared_;
};

TEST(PollWindow, PollsOnlyWithACpuToSpare) {
  EXPECT_EQ(default_poll_window(2, 3), microseconds(0));    // calypso-run -n 2 on 2 CPUs: 2 workers, a manager
  EXPECT_EQ(default_poll_window(2, 2), microseconds(50));   // a CPU each
  EXPECT_EQ(default_poll_window(1, 2), microseconds(0));
  EXPECT_EQ(default_poll_window(1, 1), microseconds(50));   // everything else on other hosts
  EXPECT_EQ(default_poll_window(32, 9), microseconds(50));
  EXPECT_EQ(default_poll_window(4, 0xffffffffffffffffull), microseconds(0));
}

TEST_F(ConfigTest, PollWindowFollowsTheLocalProcessesUnlessTheUserSetsIt) {
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

TEST_F(ConfigTest, AJoinedWorkerDoesNotCountTheManager) {
  // As many joined workers as this process has CPUs: each has one, so they poll; started
  // beside the manager (its address in a local file), the same number do not.
  const std::string n = std::to_string(usable_cpus());
  EnvVar workers("CALYPSO_WORKERS", n.c_str());
  EnvVar role("CALYPSO_ROLE", "worker");
  {
    EnvVar joined("CALYPSO_MANAGER", "tcp/00/00");
    EXPECT_EQ(Config::from_environment().poll_window, microseconds(50));
  }
  {
    EnvVar local("CALYPSO_MANAGER_FILE", "/nonexistent/address");   // only read
    EXPECT_EQ(Config::from_environment().poll_window, microseconds(0));
  }
}

// Config::from_environment() with name=value must fail, naming the variable.
void expect_refused(const char* name, const char* value) {
  EnvVar v(name, value);
  try {
    Config::from_environment();
    ADD_FAILURE() << name << "=" << value << " was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
  }
}

TEST_F(ConfigTest, ABadNumberIsRefusedByName) {
  expect_refused("CALYPSO_POLL_US", "fast");
  expect_refused("CALYPSO_POLL_US", "10001");
  for (const char* v : {"abc", "-1", " 2", "+2", "2x", "0x", "99999999999999999999", "18446744073709551617",
                        "-18446744073709551615", "1048577", "0x0x10", "0x 1"}) {
    expect_refused("CALYPSO_WORKERS", v);
  }
  expect_refused("CALYPSO_REGION_ADDRESS", "0x3c000000000g");
  {  // an address's limits are said in hex, as addresses are written
    EnvVar v("CALYPSO_REGION_ADDRESS", "0x1000");
    try {
      Config::from_environment();
      ADD_FAILURE() << "0x1000 accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("[0x100000000, 0x400000000000]"), std::string::npos) << e.what();
    }
  }
  {  // pages are at most 512K: one and its header must fit a message
    EnvVar v("CALYPSO_PAGE_SIZE", "1M");
    EXPECT_THROW(Config::from_environment(), Error);
  }
  expect_refused("CALYPSO_BUNDLE", "2");
  expect_refused("CALYPSO_BUNDLE", "yes");
  for (const char* v : {"", "lots", "-1", "-16K", " 2M", "+2M", "2T", "0x", "0xg", "0x0x10", "0X0x1M"}) {
    if (*v != '\0') expect_refused("CALYPSO_PREFAULT", v);   // "" counts as unset
    std::size_t out = 7;
    EXPECT_FALSE(parse_size(v, out)) << v;
  }
}

TEST_F(ConfigTest, SizesAreDecimalOrHexWithAUnit) {
  EXPECT_EQ(Config::from_environment().prefault, std::size_t{256} << 20);
  const std::pair<const char*, std::size_t> cases[] = {
      {"0", 0}, {"010M", std::size_t{10} << 20}, {"0x10K", std::size_t{16} << 10}, {"4096", 4096},
      {"2G", std::size_t{2} << 30}, {"64MiB", std::size_t{64} << 20}};
  for (const auto& [text, want] : cases) {
    EnvVar v("CALYPSO_PREFAULT", text);
    EXPECT_EQ(Config::from_environment().prefault, want) << text;
  }
}

TEST_F(ConfigTest, BundlingIsOnUnlessTurnedOff) {
  EXPECT_TRUE(Config::from_environment().bundle);
  EnvVar v("CALYPSO_BUNDLE", "0");
  EXPECT_FALSE(Config::from_environment().bundle);
}

// auto: batch workers when this host's Calypso processes outnumber its CPUs.
TEST_F(ConfigTest, WorkersRunAsBatchWhenTheyShareCpusWithTheManagerOrAsTold) {
  EXPECT_TRUE(default_worker_batch(2, 3));    // 2 workers and the manager on 2 CPUs
  EXPECT_FALSE(default_worker_batch(2, 2));   // 1 worker and the manager
  EXPECT_FALSE(default_worker_batch(64, 9));
  {
    EnvVar many("CALYPSO_WORKERS", "100000");
    EXPECT_TRUE(Config::from_environment().worker_batch);
    EnvVar off("CALYPSO_WORKER_BATCH", "off");
    EXPECT_FALSE(Config::from_environment().worker_batch);
  }
  {
    EnvVar on("CALYPSO_WORKER_BATCH", "on");
    EXPECT_TRUE(Config::from_environment().worker_batch);
  }
  expect_refused("CALYPSO_WORKER_BATCH", "1");
  expect_refused("CALYPSO_WORKER_BATCH", "batch");
}

TEST_F(ConfigTest, TheJobsWorkersAreTheExpectedOnesWhereGiven) {
  EXPECT_EQ(Config::from_environment().job_workers(), 0u);
  EnvVar here("CALYPSO_WORKERS", "2");
  EXPECT_EQ(Config::from_environment().job_workers(), 2u);
  {
    EnvVar all("CALYPSO_EXPECT_WORKERS", "5");
    EXPECT_EQ(Config::from_environment().job_workers(), 5u);
    EXPECT_EQ(Config::from_environment().workers, 2u);
  }
  expect_refused("CALYPSO_EXPECT_WORKERS", "1");   // fewer than started here
  expect_refused("CALYPSO_EXPECT_WORKERS", "many");
  // A worker joining from another host counts that host's workers: not checked there.
  EnvVar worker("CALYPSO_ROLE", "worker");
  EnvVar manager("CALYPSO_MANAGER", "tcp/00/00");   // not contacted: only read
  EnvVar fewer("CALYPSO_EXPECT_WORKERS", "1");
  EXPECT_EQ(Config::from_environment().workers, 2u);
}

// A manager started by hand, or by srun or mpirun, gets a key of its own: with 0, any
// process that reaches its port could join. One given (calypso-run's) is kept.
TEST_F(ConfigTest, AManagerWithoutAKeyMakesOne) {
  const std::uint64_t first = Config::from_environment().job_key, second = Config::from_environment().job_key;
  EXPECT_NE(first, 0u);
  EXPECT_NE(first, second);
  {
    EnvVar given("CALYPSO_JOB_KEY", "0x1234");
    EXPECT_EQ(Config::from_environment().job_key, 0x1234u);
  }
  EnvVar worker("CALYPSO_ROLE", "worker");
  EnvVar manager("CALYPSO_MANAGER", "tcp/00/00");
  EXPECT_EQ(Config::from_environment().job_key, 0u) << "a worker's key comes with the job address";
}

TEST_F(ConfigTest, NumbersAreDecimalOrHex) {
  {
    EnvVar v("CALYPSO_WORKERS", "010");   // not octal
    EXPECT_EQ(Config::from_environment().workers, 10u);
  }
  {
    EnvVar v("CALYPSO_WORKERS", "0");   // as if unset: -n 0 is a legitimate launch
    EXPECT_EQ(Config::from_environment().workers, 0u);
  }
  {
    EnvVar v("CALYPSO_REGION_ADDRESS", "0x3e0000000000");
    EXPECT_EQ(Config::from_environment().region_address, 0x3e0000000000ull);
  }
}

}  // namespace
}  // namespace calypso
