// Whole-system tests: real manager and worker processes started by calypso-run, talking
// over real libfabric endpoints (tcp;ofi_rxm and shm) and taking real page faults.
// Paths to the built programs come from Meson (see tests/meson.build).
#include "config.hpp"
#include "dsm/region.hpp"
#include "job_runner.hpp"
#include "net/endpoint.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <dirent.h>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sys/stat.h>
#include <unistd.h>
#include <sstream>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <tuple>

using calypso::test::Job;
using calypso::test::run;
using namespace std::chrono_literals;

namespace {

const std::string kRun = CALYPSO_RUN_PATH;
const std::string kProbe = PROBE_PATH;
const std::string kSilentManager = SILENT_MANAGER_PATH;
const std::string kShmLockHolder = SHM_LOCK_HOLDER_PATH;
const std::string kRogue = ROGUE_PATH;
const std::string kBigShared = BIG_SHARED_PATH;
const std::string kExamples = EXAMPLES_DIR;

std::vector<std::string> job(int workers, const std::string& provider, std::vector<std::string> program) {
  std::vector<std::string> argv{kRun, "-n", std::to_string(workers), "--provider", provider};
  argv.insert(argv.end(), program.begin(), program.end());
  return argv;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::size_t count(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
  return n;
}

// The sum of the numbers just before each occurrence of needle (counters in the
// CALYPSO_STATS lines).
unsigned long long sum_before(const std::string& haystack, const std::string& needle) {
  unsigned long long sum = 0;
  for (auto at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) {
    const auto from = haystack.find_last_not_of("0123456789", at - 1);
    sum += std::stoull(haystack.substr(from + 1, at - from - 1));
  }
  return sum;
}

std::string temp_dir() {
  char dir[] = "/tmp/calypso-itest.XXXXXX";
  return mkdtemp(dir);
}

// ---- the four examples, 1..3 workers, every provider ------------------------------------

using ExampleCase = std::tuple<std::string, int, std::string>;   // example, workers, provider

class Examples : public ::testing::TestWithParam<ExampleCase> {};

std::vector<std::string> example_args(const std::string& name) {
  if (name == "matmul") return {kExamples + "/matmul", "160", "24"};
  if (name == "jacobi") return {kExamples + "/jacobi", "192", "12", "8"};
  if (name == "nbody") return {kExamples + "/nbody", "384", "6", "12", "2"};
  return {kExamples + "/mandelbrot", "256", "300", "24"};
}

// With 3 workers pages, results and messages go through the network (RMA and messages),
// as across hosts; with 1 and 2 through shared memory (local reads, result rings and
// message channels, the default on one host).
TEST_P(Examples, ResultIsBitIdenticalToSequential) {
  auto [name, workers, provider] = GetParam();
  const bool local = workers != 3;
  auto r = run(job(workers, provider, example_args(name)),
               {{"CALYPSO_LOCAL_READS", local ? "1" : "0"}, {"CALYPSO_LOCAL_RESULTS", local ? "16M" : "0"},
                {"CALYPSO_LOCAL_MESSAGES", local ? "1" : "0"}}, 120s);
  EXPECT_FALSE(r.timed_out) << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, name + ": verified")) << r.output;
}

INSTANTIATE_TEST_SUITE_P(
    AllProviders, Examples,
    ::testing::Combine(::testing::Values("matmul", "jacobi", "mandelbrot", "nbody"), ::testing::Values(1, 2, 3),
                       ::testing::Values("tcp", "shm")),
    [](const auto& info) {
      return std::get<0>(info.param) + "_" + std::to_string(std::get<1>(info.param)) + "w_" +
             std::get<2>(info.param);
    });

// One assignment at a time, or several queued per worker; and with immediate re-runs, so
// that most segments run twice and many results arrive after their step has ended (the
// manager must count them to their end to know the worker is idle again).
class Pipeline : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(Depths, Pipeline, ::testing::Values("1", "4"));

TEST_P(Pipeline, AnyDepthWithImmediateReRunsGivesTheExactAnswer) {
  auto r = run(job(3, "tcp", {kExamples + "/jacobi", "256", "40", "12"}),
               {{"CALYPSO_PIPELINE", GetParam()}, {"CALYPSO_RERUN_AFTER_PCT", "0"}, {"CALYPSO_STATS", "text"}},
               120s);
  EXPECT_FALSE(r.timed_out) << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "jacobi: verified")) << r.output;
  EXPECT_FALSE(contains(r.output, " 0 re-executions")) << "the test meant to cause re-runs: " << r.output;
}

// ---- semantics -----------------------------------------------------------------------------

class Providers : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(AllProviders, Providers, ::testing::Values("tcp", "shm"));

TEST_P(Providers, AdjacentBytesOfOneWordBothSurvive) {
  auto r = run(job(2, GetParam(), {kProbe, "adjacent"}));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe adjacent: ok")) << r.output;
}

TEST_P(Providers, SegmentsReadTheStepSnapshotAndSeeSequentialWrites) {
  auto r = run(job(3, GetParam(), {kProbe, "snapshot", "6"}));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe snapshot: ok")) << r.output;
}

// The manager's "N pages pushed" (workers print their own counts too), if printed.
std::optional<unsigned long> pages_pushed(const std::string& output) {
  const auto line = output.find("calypso stats:");
  if (line == std::string::npos) return std::nullopt;
  const auto at = output.find(" pages pushed", line);
  if (at == std::string::npos) return std::nullopt;
  const auto from = output.rfind(' ', at - 1) + 1;
  return std::stoul(output.substr(from, at - from));
}

// Every worker's "S s in segments (C s on the CPU; ..." from CALYPSO_STATS=text.
std::vector<std::pair<double, double>> segment_times(const std::string& output) {
  std::vector<std::pair<double, double>> found;
  for (std::size_t at = output.find(" s in segments ("); at != std::string::npos;
       at = output.find(" s in segments (", at + 1)) {
    const auto from = output.rfind(' ', at - 1) + 1;
    double cpu = -1;
    if (std::sscanf(output.c_str() + at, " s in segments (%lf s on the CPU;", &cpu) != 1) cpu = -1;
    found.emplace_back(std::stod(output.substr(from, at - from)), cpu);
  }
  return found;
}

// Jacobi's workers read the rows next to their blocks, which the other worker wrote in
// the step before: after a worker reported reading them, the manager pushes their new
// bytes with its next assignment instead of a write notice.
TEST_P(Providers, PagesAWorkerReadsArePushedWithItsNotices) {
  auto r = run(job(2, GetParam(), {kExamples + "/jacobi", "512", "40", "8"}), {{"CALYPSO_STATS", "text"}});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "jacobi: verified")) << r.output;
  ASSERT_TRUE(pages_pushed(r.output)) << r.output;
  EXPECT_GT(*pages_pushed(r.output), 0u) << r.output;
  // Each worker says how long its segments took and how much of that it ran on a CPU:
  // never more than the time itself (1 ms of clock granularity allowed).
  const auto times = segment_times(r.output);
  EXPECT_EQ(times.size(), 2u) << r.output;
  for (auto [wall, cpu] : times) {
    EXPECT_GT(cpu, 0.0) << r.output;
    EXPECT_LE(cpu, wall + 0.001) << r.output;
  }
  // CALYPSO_PUSH_PAGES=0: notices only, the same answer.
  auto off = run(job(2, GetParam(), {kExamples + "/jacobi", "512", "40", "8"}),
                 {{"CALYPSO_STATS", "text"}, {"CALYPSO_PUSH_PAGES", "0"}});
  EXPECT_EQ(off.exit_code, 0) << off.output;
  EXPECT_TRUE(contains(off.output, "jacobi: verified")) << off.output;
  EXPECT_EQ(pages_pushed(off.output), std::optional<unsigned long>{0}) << off.output;
}

TEST_P(Providers, OneStepHoldsSeveralRoutines) {
  auto r = run(job(2, GetParam(), {kProbe, "multi"}));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe multi: ok")) << r.output;
}

// Workers run segments under SCHED_BATCH with CALYPSO_WORKER_BATCH=on (their wake-ups do
// not preempt the manager's loop), and under the normal policy with off. (auto chooses
// by the host's CPUs: config_test.)
TEST(Scheduling, WorkersRunSegmentsAsBatchOrNormalAsTold) {
  auto batch = run(job(2, "tcp", {kProbe, "policy"}), {{"CALYPSO_WORKER_BATCH", "on"}});
  EXPECT_EQ(batch.exit_code, 0) << batch.output;
  EXPECT_TRUE(contains(batch.output, "probe policy: batch")) << batch.output;
  auto normal = run(job(2, "tcp", {kProbe, "policy"}), {{"CALYPSO_WORKER_BATCH", "off"}});
  EXPECT_EQ(normal.exit_code, 0) << normal.output;
  EXPECT_TRUE(contains(normal.output, "probe policy: normal")) << normal.output;
}

TEST_P(Providers, DeclaredSharedVariablesLiveInTheRegion) {
  auto r = run(job(2, GetParam(), {kProbe, "shared"}));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe shared: ok")) << r.output;
}

// Names of the shm queue files in /dev/shm that belong to pid.
std::vector<std::string> shm_files_of(int pid) {
  std::vector<std::string> found;
  const std::string prefix = std::to_string(pid) + ":";
  if (DIR* d = opendir("/dev/shm")) {
    while (dirent* e = readdir(d))
      if (std::string(e->d_name).rfind(prefix, 0) == 0) found.push_back(e->d_name);
    closedir(d);
  }
  return found;
}

// A process that dies without closing its endpoints leaves its shm queue files behind
// (/dev/shm/<pid>:<n>:<m>; n is the uid in some libfabric versions, 0 in others, so
// both are planted); when its pid is reused, the new process's first endpoint finds
// them. Here each process plants such files under its own pid (the shell wrapper's pid
// is the pid the probe gets from exec), and both manager and worker must still start
// and finish. (That nothing is left afterwards is calypso-run's doing for its children;
// see the next test for a worker without it.)
TEST(Startup, StaleShmQueueFileOfAReusedPidIsTakenOver) {
  const std::string plant =
      "echo \"planted /dev/shm/$$:\"; for f in /dev/shm/$$:0:0 /dev/shm/$$:0:1 /dev/shm/$$:$(id -u):0 "
      "/dev/shm/$$:$(id -u):1; do truncate -s 16M $f || exit 1; done; exec \"$0\" \"$@\"";
  auto r = run(job(1, "shm", {"/bin/sh", "-c", plant, kProbe, "adjacent"}),
               {{"CALYPSO_NO_WORKER_TIMEOUT_MS", "10000"}}, 60s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe adjacent: ok")) << r.output;
  std::istringstream lines(r.output);
  int planted = 0;
  for (std::string line; std::getline(lines, line);) {
    const std::string tag = "planted /dev/shm/";
    if (line.rfind(tag, 0) != 0) continue;
    ++planted;
    const std::string pid = line.substr(tag.size(), line.find(':') - tag.size());
    for (const std::string& f : shm_files_of(std::stoi(pid))) {
      ADD_FAILURE() << "/dev/shm/" << f << " left behind\n" << r.output;
      std::remove(("/dev/shm/" + f).c_str());   // never leave a planted file
    }
  }
  EXPECT_EQ(planted, 2) << r.output;   // the manager and the worker
}

TEST(Semantics, ConflictingWritesResolveBySegmentIndex) {
  auto r = run(job(2, "tcp", {kProbe, "conflict"}));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe conflict: byte is 4")) << r.output;
}

TEST(Semantics, ConflictCheckerNamesAddressRoutineAndBothSegments) {
  auto r = run(job(2, "tcp", {kProbe, "conflict"}), {{"CALYPSO_CHECK_CONFLICTS", "1"}});
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "write conflict at 0x")) << r.output;
  EXPECT_TRUE(contains(r.output, "segment 0 of routine 'clash' and segment 1 of routine 'clash'")) << r.output;
}

TEST(Memory, EveryOtherPageOf512MiBInOneSegmentStaysUnderMaxMapCount) {
  auto r = run(job(1, "tcp", {kProbe, "sparse", "512"}), {{"CALYPSO_REGION_SIZE", "1G"}}, 300s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe sparse: ok (65536 pages written)")) << r.output;
}

// Segments far shorter than a message: a worker holds their results while more
// assignments are already there and ships several in one message; the manager answers
// with one message of assignments. Every segment still counts once, and the answer is
// exact. ("results bundled" counts results that came with other results.)
std::optional<unsigned long> bundled_results(const std::string& output) {
  const auto at = output.find(" results bundled)");
  if (at == std::string::npos) return std::nullopt;
  const auto from = output.rfind(' ', at - 1) + 1;
  return std::stoul(output.substr(from, at - from));
}

TEST_P(Providers, TinySegmentsShareMessagesAndStayExact) {
  auto r = run(job(2, GetParam(), {kProbe, "tiny", "3000"}), {}, 120s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(contains(r.output, "probe tiny: ok (3000 segments, ")) << r.output;
  auto bundled = bundled_results(r.output);
  ASSERT_TRUE(bundled.has_value()) << r.output;
  EXPECT_GT(*bundled, 0u) << "no result came bundled:\n" << r.output;
  EXPECT_LE(*bundled, 2u * 3000u) << "only steps 2 and 3 can bundle:\n" << r.output;
}

// The same with pages fetched by message (as on verbs): bundles of assignments that
// come while a segment waits for its pages are kept, none is lost or skipped.
TEST_P(Providers, TinySegmentsWithPagesInMessagesLoseNoAssignment) {
  auto r = run(job(2, GetParam(), {kProbe, "tiny", "3000"}),
               {{"CALYPSO_RMA_FETCH", "off"}, {"CALYPSO_LOCAL_READS", "0"}}, 120s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe tiny: ok (3000 segments, ")) << r.output;
  EXPECT_FALSE(contains(r.output, "protocol violation")) << r.output;
  EXPECT_FALSE(contains(r.output, "missing for")) << r.output;
  EXPECT_FALSE(contains(r.output, "dropped")) << r.output;
}

// Every worker's "F page fetches, L of them read from the manager's memory, R with RMA (T
// of these with the control word in the same round trip)" (CALYPSO_STATS=text).
struct FetchCounts {
  unsigned long fetches = 0, local = 0, rma = 0, together = 0;
};
std::vector<FetchCounts> fetch_counts(const std::string& output) {
  std::vector<FetchCounts> found;
  const std::string tag = " s waiting for ";
  for (auto at = output.find(tag); at != std::string::npos; at = output.find(tag, at + 1)) {
    FetchCounts c;
    if (std::sscanf(output.c_str() + at + tag.size(),
                    "%lu page fetches, %lu of them read from the manager's memory, %lu with RMA (%lu of these",
                    &c.fetches, &c.local, &c.rma, &c.together) == 4) {
      found.push_back(c);
    }
  }
  return found;
}

// Workers on the manager's host read pages from its memory (its region's memfd, through
// /proc), not through the network; with CALYPSO_LOCAL_READS=0 through RMA (on tcp the page
// and the control word in one round trip: the manager's endpoint serves reads in order),
// and with CALYPSO_RMA_FETCH=off in messages. The answers are the same, and so are pushed
// pages and re-runs.
TEST_P(Providers, WorkersOnTheManagersHostReadItsMemory) {
  const bool tcp = GetParam() == "tcp";
  for (auto [local, rma] : {std::pair{"1", "auto"}, {"0", "auto"}, {"0", "off"}}) {
    for (const auto& program : {example_args("jacobi"), example_args("matmul")}) {
      auto r = run(job(2, GetParam(), program),
                   {{"CALYPSO_LOCAL_READS", local}, {"CALYPSO_RMA_FETCH", rma}, {"CALYPSO_STATS", "text"}}, 120s);
      EXPECT_EQ(r.exit_code, 0) << r.output;
      EXPECT_TRUE(contains(r.output, ": verified")) << r.output;
      const auto counts = fetch_counts(r.output);
      ASSERT_EQ(counts.size(), 2u) << r.output;
      FetchCounts sum;
      for (const auto& c : counts) {
        sum.fetches += c.fetches;
        sum.local += c.local;
        sum.rma += c.rma;
        sum.together += c.together;
      }
      EXPECT_GT(sum.fetches, 0u) << r.output;
      if (*local == '1') {
        EXPECT_GT(sum.local, 0u) << r.output;
        EXPECT_EQ(sum.rma, 0u) << r.output;
      } else {
        EXPECT_EQ(sum.local, 0u) << r.output;
        if (std::string(rma) == "off") {
          EXPECT_EQ(sum.rma, 0u) << r.output;
        } else {
          EXPECT_EQ(sum.rma, sum.fetches) << r.output;
          const bool in_order = tcp && calypso::net::Endpoint::tcp_may_serve_reads_in_order();
          EXPECT_EQ(sum.together, in_order ? sum.rma : 0u) << r.output;
        }
      }
    }
  }
}

// Workers on the manager's host put results of 16 KiB or more into their result rings
// and the manager copies them out; with CALYPSO_LOCAL_RESULTS=0 they come in messages,
// and with a ring too small for a few of them, some each way. The answers are the same.
TEST_P(Providers, WorkersOnTheManagersHostHandResultsOverInMemory) {
  const std::vector<std::string> jacobi{kExamples + "/jacobi", "512", "20", "8"};   // 8-80 KB results
  const std::vector<std::string> matmul{kExamples + "/matmul", "384", "16"};         // 72 KB results
  for (const char* ring : {"16M", "0", "256K"}) {
    for (const auto& program : {jacobi, matmul}) {
      auto r = run(job(2, GetParam(), program), {{"CALYPSO_LOCAL_RESULTS", ring}, {"CALYPSO_STATS", "text"}},
                   120s);
      EXPECT_EQ(r.exit_code, 0) << r.output;
      EXPECT_TRUE(contains(r.output, ": verified")) << r.output;
      ASSERT_TRUE(contains(r.output, " results and ")) << r.output;
      const auto taken = sum_before(r.output, " results and ");
      if (std::string(ring) == "0") EXPECT_EQ(taken, 0u) << r.output;
      else EXPECT_GT(taken, 0u) << r.output;
      // Jacobi's workers replay their own accepted results at the next sweep; those
      // that went through a ring large enough are read back from it, not copied.
      const auto from_ring = sum_before(r.output, " of them read back from the result ring");
      if (std::string(ring) == "0") {
        EXPECT_EQ(from_ring, 0u) << r.output;
      } else if (std::string(ring) == "16M" && program == jacobi) {
        EXPECT_GT(from_ring, 0u) << r.output;
      }
      EXPECT_FALSE(contains(r.output, "protocol violation")) << r.output;
    }
  }
}

// Workers on the manager's host exchange every message with it through a channel in
// shared memory (CALYPSO_LOCAL_MESSAGES); with 0, through the provider. Same answers.
TEST_P(Providers, WorkersOnTheManagersHostExchangeMessagesInMemory) {
  const std::vector<std::string> jacobi{kExamples + "/jacobi", "512", "20", "8"};
  const std::vector<std::string> matmul{kExamples + "/matmul", "384", "16"};
  for (const char* channel : {"1", "0"}) {
    for (const auto& program : {jacobi, matmul}) {
      auto r = run(job(2, GetParam(), program),
                   {{"CALYPSO_LOCAL_MESSAGES", channel}, {"CALYPSO_STATS", "text"}, {"CALYPSO_LOG", "info"}}, 120s);
      EXPECT_EQ(r.exit_code, 0) << r.output;
      EXPECT_TRUE(contains(r.output, ": verified")) << r.output;
      ASSERT_TRUE(contains(r.output, " messages through shared memory")) << r.output;
      const auto taken = sum_before(r.output, " messages through shared memory");
      // At least a message with results from each worker at each step (results may
      // share one): 20 steps of jacobi, 1 of matmul.
      if (std::string(channel) == "1") EXPECT_GE(taken, program == jacobi ? 40u : 2u) << r.output;
      else EXPECT_EQ(taken, 0u) << r.output;
      EXPECT_EQ(contains(r.output, "exchanging messages with the manager through shared memory"),
                std::string(channel) == "1") << r.output;
      EXPECT_FALSE(contains(r.output, "protocol violation")) << r.output;
    }
  }
}

// Manager::freeze: workers on the manager's host map frozen input instead of copying it
// (CALYPSO_SHARE_FROZEN; with 0 they copy it); either way a routine that changes it
// fails its step and changes nothing, and the next step runs. matmul freezes A and B.
TEST_P(Providers, FrozenInputIsSharedOnTheManagersHostAndNeverChanges) {
  const std::vector<std::string> matmul{kExamples + "/matmul", "384", "16"};
  for (const char* share : {"1", "0"}) {
    for (const auto& program : {std::vector<std::string>{kProbe, "frozen"}, matmul}) {
      auto r = run(job(2, GetParam(), program), {{"CALYPSO_SHARE_FROZEN", share}, {"CALYPSO_STATS", "text"}}, 120s);
      EXPECT_EQ(r.exit_code, 0) << r.output;
      ASSERT_TRUE(contains(r.output, " frozen pages mapped from the manager's memory")) << r.output;
      const auto mapped = sum_before(r.output, " frozen pages mapped from the manager's memory");
      if (program == matmul) {
        EXPECT_TRUE(contains(r.output, ": verified")) << r.output;
        // 384 x 384 doubles: B alone is 72 pages of 16 KiB (more of smaller pages), and
        // every worker that runs a segment reads all of it.
        if (std::string(share) == "1") {
          EXPECT_GE(mapped, 72u) << r.output;
        }
      } else {
        EXPECT_TRUE(contains(r.output, "probe frozen: ok")) << r.output;
        EXPECT_TRUE(contains(r.output, "segment 1 of routine 'write_frozen' changed shared memory that the "
                                       "program had frozen")) << r.output;
        // Every segment reads all 4 MiB of the input.
        if (std::string(share) == "1") {
          EXPECT_GE(mapped, (4u << 20) / 16384) << r.output;
        }
      }
      if (std::string(share) == "0") {
        EXPECT_EQ(mapped, 0u) << r.output;
      }
      EXPECT_FALSE(contains(r.output, "protocol violation")) << r.output;
    }
  }
}

// Assignments of 600 KB each: never two in one message of more than 1 MiB.
TEST_P(Providers, LargeAssignmentsAreNeverBundledPastTheMessageSize) {
  auto r = run(job(2, GetParam(), {kProbe, "bigargs"}), {}, 120s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe bigargs: ok")) << r.output;
}

// Runs a job in which the first worker to reach the injection point `inject` kills
// itself, and checks that the job still succeeded and that the death happened.
calypso::test::JobResult run_with_one_death(std::vector<std::string> argv, const std::string& inject,
                                            std::map<std::string, std::string> env = {}) {
  std::string dir = temp_dir();
  env.insert({{"CALYPSO_INJECT", inject}, {"CALYPSO_INJECT_ONCE", dir + "/died"}, {"CALYPSO_SUSPECT_MS", "1000"}});
  auto r = run(std::move(argv), env, 180s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "fault injection: worker kills itself")) << r.output;
  EXPECT_TRUE(contains(r.output, "killed by signal 9")) << r.output;
  std::remove((dir + "/died").c_str());
  rmdir(dir.c_str());
  return r;
}

// A worker that dies holding results it has not sent: those segments run again
// elsewhere (the manager never saw them), and the answer is exact.
TEST_P(Providers, WorkerKilledWhileHoldingResultsChangesNothingButTime) {
  auto r = run_with_one_death(job(2, GetParam(), {kProbe, "tiny", "3000"}), "held-result");
  EXPECT_TRUE(contains(r.output, "probe tiny: ok (3000 segments, ")) << r.output;
}

// ---- failures --------------------------------------------------------------------------------

// On shm the worker's heartbeat thread may be inside libfabric's shm provider, holding a
// queue's lock, when the worker kills itself: the known limitation of libfabric 1.17 in
// the README, which the stall watch then reports (seen once in ~100 runs). Such a run is
// repeated once, saying so; a second one fails the test.
TEST_P(Providers, WorkerKilledInTheMiddleOfASegmentChangesNothingButTime) {
  std::string dir = temp_dir();
  auto r = run(job(2, GetParam(), {kProbe, "kill-once", dir}), {{"CALYPSO_SUSPECT_MS", "1000"}});
  if (GetParam() == std::string("shm") && contains(r.output, "call into libfabric's shm provider (")) {
    std::printf("the shm provider's lock was held by the killed worker (known limitation); once more:\n%s\n",
                r.output.c_str());
    std::remove((dir + "/killed").c_str());
    r = run(job(2, GetParam(), {kProbe, "kill-once", dir}), {{"CALYPSO_SUSPECT_MS", "1000"}});
  }
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe kill-once: ok")) << r.output;
  EXPECT_TRUE(contains(r.output, "killed by signal 9")) << r.output;
  std::remove((dir + "/killed").c_str());
  rmdir(dir.c_str());
}

// Waits (up to 60 s) until the job has printed `text`; false if it never does.
bool wait_for_output(const Job& j, const std::string& text) {
  for (auto deadline = std::chrono::steady_clock::now() + 60s; std::chrono::steady_clock::now() < deadline;) {
    if (contains(j.output_so_far(), text)) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

// Reads "role pid" lines until want of them are there.
std::vector<std::pair<std::string, int>> read_pids(const std::string& file, std::size_t want) {
  std::vector<std::pair<std::string, int>> out;
  for (auto deadline = std::chrono::steady_clock::now() + 30s;
       out.size() < want && std::chrono::steady_clock::now() < deadline;) {
    out.clear();
    std::ifstream f(file);
    std::string role;
    int pid;
    while (f >> role >> pid) out.emplace_back(role, pid);
    std::this_thread::sleep_for(50ms);
  }
  return out;
}

// A worker SIGKILLed from outside while megabytes of pages and diffs are in flight both
// ways. tcp only: on shm a SIGKILL that lands inside libfabric's send path can leave
// the manager's queue lock held (a provider limitation, see the README), so shm gets the
// deterministic death points below instead. On this host (a message channel, the
// default) the manager sees the process exit at once (its pidfd), not heartbeats missed.
TEST(Failures, WorkerKilledDuringLargeTransfersChangesNothingButTime) {
  std::string dir = temp_dir();
  const std::string pids = dir + "/pids";
  // 1200 sweeps take ~3.9 s here (one worker after the kill). The kill is timed from
  // both workers' joining, not from the launch: 400 sweeps killed 1 s after the launch
  // once ended ~0.8 s after the kill.
  Job j({kRun, "-n", "2", "--provider", "tcp", "--pid-file", pids, kExamples + "/jacobi",
         "1024", "1200", "16"},
        {{"CALYPSO_SUSPECT_MS", "800"}, {"CALYPSO_LOG", "info"}});
  auto all = read_pids(pids, 3);
  ASSERT_EQ(all.size(), 3u);
  const int worker = all[1].second;
  ASSERT_TRUE(wait_for_output(j, "worker 1 joined")) << j.output_so_far();
  ASSERT_TRUE(wait_for_output(j, "worker 2 joined")) << j.output_so_far();
  std::this_thread::sleep_for(300ms);   // inside the sweeps
  ASSERT_EQ(kill(worker, SIGKILL), 0);
  auto r = j.wait(120s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "jacobi: verified")) << r.output;
  EXPECT_TRUE(contains(r.output, "killed by signal 9")) << r.output;
  EXPECT_TRUE(contains(r.output, "its process exited")) << r.output;
  EXPECT_FALSE(contains(r.output, "silent too long")) << r.output;
  std::remove(pids.c_str());
  rmdir(dir.c_str());
}

// The residents the probe printed: "probe prefault: worker PID resident N KiB".
std::vector<long> residents(const std::string& output) {
  std::vector<long> kib;
  const std::string tag = "probe prefault: worker ";
  for (auto at = output.find(tag); at != std::string::npos; at = output.find(tag, at + 1)) {
    long pid = 0, n = 0;
    if (std::sscanf(output.c_str() + at + tag.size(), "%ld resident %ld KiB", &pid, &n) == 2) kib.push_back(n);
  }
  return kib;
}

// A worker allocates the region's part in use (96 MiB here, that no segment touches)
// before it counts as ready: when wait_for_workers() returns, it is resident (shared
// memory: the region's memfd). The manager allocates a block's home memory in alloc().
// Up to CALYPSO_PREFAULT (16M: 16 of the 96 MiB), and not at all with 0. A worker on
// the manager's host allocates its result ring (CALYPSO_LOCAL_RESULTS, 16 MiB) too,
// unless CALYPSO_PREFAULT is 0.
TEST(Memory, WorkersAllocateTheRegionInUseBeforeTheyAreReady) {
  std::string dir = temp_dir();
  const std::string pids = dir + "/pids";
  const long region_kib = 96 << 10, part_kib = 16 << 10, ring_kib = 16 << 10;
  for (const char* setting : {"", "16M", "0"}) {
    std::map<std::string, std::string> env{{"CALYPSO_STATS", "text"}};
    if (*setting != '\0') env["CALYPSO_PREFAULT"] = setting;
    auto r = run({kRun, "-n", "2", "--pid-file", pids, kProbe, "prefault", "96", pids}, env);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ASSERT_TRUE(contains(r.output, "probe prefault: ok")) << r.output;
    auto kib = residents(r.output);
    ASSERT_EQ(kib.size(), 2u) << r.output;
    long manager = -1;
    if (auto at = r.output.find("probe prefault: manager resident "); at != std::string::npos) {
      manager = std::atol(r.output.c_str() + at + std::string("probe prefault: manager resident ").size());
    }
    ASSERT_GE(manager, 0) << r.output;
    kib.push_back(manager);
    for (long k : kib) {
      if (*setting == '\0') {
        EXPECT_GE(k, region_kib) << "default (256M) " << r.output;
      } else if (std::string(setting) == "16M") {
        EXPECT_GE(k, part_kib - 64) << setting << " " << r.output;   // the manager's starts after a page
        EXPECT_LT(k, 2 * part_kib + ring_kib) << setting << " " << r.output;
      } else {
        EXPECT_LT(k, part_kib) << setting << " " << r.output;
      }
    }
    const std::string said = *setting == '\0' ? "allocating 96.0 MiB ahead"
                             : std::string(setting) == "16M" ? "allocating 16.0 MiB ahead"
                                                             : "allocating 0.0 MiB ahead";
    EXPECT_EQ(count(r.output, said), 2u) << said << " " << r.output;
  }
  std::remove(pids.c_str());
  rmdir(dir.c_str());
}

TEST(Failures, WorkerKilledFromOutsideMidStep) {
  std::string dir = temp_dir();
  const std::string pids = dir + "/pids";
  Job j({kRun, "-n", "2", "--pid-file", pids, kProbe, "pids", "30", "40"}, {{"CALYPSO_SUSPECT_MS", "800"}});
  // Wait until the job is running, then SIGKILL one worker.
  auto all = read_pids(pids, 3);
  ASSERT_EQ(all.size(), 3u);
  ASSERT_TRUE(wait_for_output(j, "probe pids: started with 2 workers")) << j.output_so_far();
  std::this_thread::sleep_for(1000ms);   // well inside the ~4 s job
  ASSERT_EQ(kill(all[1].second, SIGKILL), 0);
  auto r = j.wait(120s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe pids: ok")) << r.output;
  EXPECT_TRUE(contains(r.output, "killed by signal 9")) << r.output;
  std::remove(pids.c_str());
  rmdir(dir.c_str());
}

// The manager killed by a signal cannot say so itself: calypso-run does, and stops the
// job with the signal's exit code.
TEST(Failures, AManagerKilledBySignalIsReported) {
  std::string dir = temp_dir();
  const std::string pids = dir + "/pids";
  Job j({kRun, "-n", "1", "--pid-file", pids, kProbe, "pids", "200", "50"}, {});
  auto all = read_pids(pids, 2);
  ASSERT_EQ(all.size(), 2u);
  ASSERT_EQ(all[0].first, "manager");
  ASSERT_TRUE(wait_for_output(j, "probe pids: started with 1 workers")) << j.output_so_far();
  ASSERT_EQ(kill(all[0].second, SIGKILL), 0);
  auto r = j.wait(60s);
  EXPECT_EQ(r.exit_code, 128 + SIGKILL) << r.output;
  EXPECT_TRUE(contains(r.output, "the manager (pid " + std::to_string(all[0].second) + ") was killed by signal 9"))
      << r.output;
  std::remove(pids.c_str());
  rmdir(dir.c_str());
}

// A worker stopped for longer than CALYPSO_MANAGER_TIMEOUT_MS is given up; continued,
// it speaks again, and the manager tells it so: it starts again as a new worker, in the
// same process, and runs segments for the rest of the job. (It used to take the pings
// queued while it was stopped for the manager's voice, wait a further timeout for a
// manager that ignored it, and report the manager lost, exit 3; then, from session 43,
// to exit 0, leaving the host's capacity unused to the end.)
TEST(Failures, AWorkerGivenUpStartsAgainAsANewWorker) {
  std::string dir = temp_dir();
  const std::string pids = dir + "/pids";
  Job j({kRun, "-n", "2", "--pid-file", pids, kProbe, "pids", "80", "20"},
        {{"CALYPSO_SUSPECT_MS", "500"}, {"CALYPSO_MANAGER_TIMEOUT_MS", "3000"}, {"CALYPSO_STATS", "text"}});
  auto all = read_pids(pids, 3);
  ASSERT_EQ(all.size(), 3u);
  ASSERT_TRUE(wait_for_output(j, "probe pids: started with 2 workers")) << j.output_so_far();
  ASSERT_EQ(kill(all[1].second, SIGSTOP), 0);
  std::this_thread::sleep_for(5000ms);   // suspected after 0.5 s, gone after 3 s
  ASSERT_EQ(kill(all[1].second, SIGCONT), 0);
  auto r = j.wait(120s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe pids: ok")) << r.output;
  EXPECT_TRUE(contains(r.output, "given up, spoke again: told so")) << r.output;
  EXPECT_TRUE(contains(r.output, "the manager gave this worker up")) << r.output;   // the worker's side
  EXPECT_TRUE(contains(r.output, "joined again, as a new worker, after the manager had given this one up")) << r.output;
  // The same process (calypso-run started no other), joined again as worker 3, ran segments before the job ended.
  EXPECT_TRUE(contains(r.output, "3 workers joined, 1 lost")) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(calypso\[worker 3\]: [1-9][0-9]* segments)"))) << r.output;
  EXPECT_FALSE(contains(r.output, "lost the manager")) << r.output;
  EXPECT_FALSE(contains(r.output, "exited with status")) << r.output;
  std::remove(pids.c_str());
  rmdir(dir.c_str());
}

// The same among bunched short segments, two steps after one where they ran short (a
// step of long segments between): a worker that dies may have held results of segments
// before it (no bundle of several results need have reached the manager yet), yet the
// segment is named, and the step fails long before the no-worker timeout.
TEST(Failures, BunchedSegmentThatKillsEveryWorkerIsStillNamed) {
  auto r = run(job(3, "tcp", {kProbe, "crash-bunched"}),
               {{"CALYPSO_SUSPECT_MS", "500"}, {"CALYPSO_MAX_ATTEMPTS", "3"},
                {"CALYPSO_NO_WORKER_TIMEOUT_MS", "120000"}},
               90s);
  EXPECT_FALSE(r.timed_out) << r.output;
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe crash-bunched: warmed up")) << r.output;
  EXPECT_TRUE(contains(r.output, "segment 200 of routine 'crash_bunched' failed")) << r.output;
}

// And takes no more workers with it than that: after a death the segment runs on one
// worker at a time, and after the last on none. (Six workers: all six died before the
// step failed.) Copies of a late run are kept out (a re-run delay of 1000x), so that the
// count does not depend on how soon this host reports a death: a copy started before the
// first death is seen is one more (eager_scheduler_test spaces them).
TEST(Failures, SegmentThatKillsEveryWorkerFailsTheRunAfterBoundedAttempts) {
  auto r = run(job(6, "tcp", {kProbe, "crash-always"}),
               {{"CALYPSO_SUSPECT_MS", "500"}, {"CALYPSO_MAX_ATTEMPTS", "2"}, {"CALYPSO_RERUN_AFTER_PCT", "100000"}},
               60s);
  EXPECT_FALSE(r.timed_out) << r.output;
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "segment 2 of routine 'crash_always' failed")) << r.output;
  EXPECT_EQ(count(r.output, "was killed by signal 9"), 2u) << r.output;
}

// Also when the program wrote the memory just before it froze it (the page was writable).
TEST(Failures, AProgramThatWritesFrozenMemoryEndsWithAMessage) {
  for (const char* how : {"fresh", "filled"}) {
    auto r = run(job(1, "tcp", {kProbe, "frozen-write", how}), {}, 60s);
    EXPECT_NE(r.exit_code, 0) << how << r.output;
    EXPECT_TRUE(contains(r.output, "the program wrote shared memory that it had frozen with Manager::freeze"))
        << how << r.output;
    EXPECT_FALSE(contains(r.output, "went on")) << how << r.output;
  }
}

TEST(Failures, NullDereferenceInARoutineCrashesTheWorkerWithSigsegv) {
  auto r = run(job(1, "tcp", {kProbe, "null"}),
               {{"CALYPSO_SUSPECT_MS", "500"}, {"CALYPSO_MAX_ATTEMPTS", "1"}}, 60s);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "killed by signal 11")) << r.output;
  EXPECT_TRUE(contains(r.output, "routine 'deref_null'")) << r.output;
}

// Death at every interesting point of a segment, injected deterministically: only the
// first worker to reach the point dies; the answer must be exact.
// Every death point on both providers; on shm this is also the deterministic test of a
// worker dying with megabytes in flight (1.5 MiB results, page reads), see
// net/fragments.hpp.
class DeathPoints : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};
INSTANTIATE_TEST_SUITE_P(Failures, DeathPoints,
                         ::testing::Combine(::testing::Values("before-fetch", "mid-fetch", "mid-result", "after-result"),
                                            ::testing::Values("tcp", "shm")),
                         [](const auto& info) {
                           std::string n = std::get<0>(info.param) + "_" + std::get<1>(info.param);
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// On tcp pages, results and messages go through the network (RMA and messages), as
// across hosts; on shm through shared memory (local reads, result rings and message
// channels, the default on one host: mid-result is then a death between writing the
// result into the ring and naming it).
TEST_P(DeathPoints, AnswerIsExactAndMemoryNeverHalfUpdated) {
  const auto& [point, provider] = GetParam();
  const bool local = provider != "tcp";
  auto r = run_with_one_death(job(2, provider, {kProbe, "big"}), point + "@1",
                              {{"CALYPSO_LOCAL_READS", local ? "1" : "0"}, {"CALYPSO_LOCAL_RESULTS", local ? "16M" : "0"},
                {"CALYPSO_LOCAL_MESSAGES", local ? "1" : "0"}});
  EXPECT_TRUE(contains(r.output, "probe big: ok")) << r.output;
}

TEST(Failures, UnknownInjectionPointIsRefused) {
  auto r = run(job(1, "tcp", {kProbe, "adjacent"}), {{"CALYPSO_INJECT", "sometimes"}}, 60s);
  EXPECT_TRUE(contains(r.output, "CALYPSO_INJECT=sometimes: expected")) << r.output;
  EXPECT_NE(r.exit_code, 0);
  // A segment that is not a number is refused too, not read as segment 0.
  auto bad_segment = run(job(1, "tcp", {kProbe, "adjacent"}), {{"CALYPSO_INJECT", "mid-result@x"}}, 60s);
  EXPECT_TRUE(contains(bad_segment.output, "CALYPSO_INJECT=mid-result@x: '@' must be followed by a segment index"))
      << bad_segment.output;
  EXPECT_NE(bad_segment.exit_code, 0);
}


// A worker that no calypso-run started (by hand, or by another launcher) ends with
// _exit and so never closes its endpoints; it still removes its shm queue files, both
// when the manager ends the job and when it leaves on SIGTERM.
TEST(Startup, AWorkerStartedWithoutCalypsoRunLeavesNoShmFiles) {
  for (const bool sigterm : {false, true}) {
    SCOPED_TRACE(sigterm ? "worker leaves on SIGTERM" : "manager ends the job");
    std::string dir = temp_dir();
    const std::string address = dir + "/address";
    std::vector<std::string> program{kProbe, "adjacent"};
    if (sigterm) program = {kProbe, "long", "20000"};
    std::vector<std::string> argv{kRun, "-n", "0", "--provider", "shm", "--address-file", address};
    argv.insert(argv.end(), program.begin(), program.end());
    // The no-worker clock starts with the step, before the worker has joined: 5 s leaves
    // a slow host room to start it.
    Job manager(argv, {{"CALYPSO_NO_WORKER_TIMEOUT_MS", "5000"}, {"CALYPSO_LOG", "info"}});
    const std::string addr = calypso::test::wait_for_file(address, 30s);
    ASSERT_FALSE(addr.empty()) << manager.output_so_far();
    Job worker({program[0]}, {{"CALYPSO_ROLE", "worker"}, {"CALYPSO_MANAGER", addr}});
    if (sigterm) {
      ASSERT_TRUE(wait_for_output(manager, "joined")) << manager.output_so_far();
      std::this_thread::sleep_for(500ms);
      ASSERT_EQ(::kill(worker.pid(), SIGTERM), 0);
    }
    auto w = worker.wait(60s);
    auto m = manager.wait(60s);
    EXPECT_EQ(w.exit_code, 0) << w.output;
    if (!sigterm) {
      EXPECT_EQ(m.exit_code, 0) << m.output;
    }
    const auto left = shm_files_of(worker.pid());
    EXPECT_TRUE(left.empty()) << left.size() << " file(s) left, e.g. /dev/shm/" << left.front();
    for (const auto& f : left) std::remove(("/dev/shm/" + f).c_str());
    std::remove(address.c_str());
    rmdir(dir.c_str());
  }
}

TEST(Failures, SigtermHandsWorkBackAndTheWorkerExitsZero) {
  std::string dir = temp_dir();
  const std::string pids = dir + "/pids";
  Job j({kRun, "-n", "2", "--pid-file", pids, kProbe, "pids", "30", "40"}, {{"CALYPSO_SUSPECT_MS", "60000"}});
  auto all = read_pids(pids, 3);
  ASSERT_EQ(all.size(), 3u);
  ASSERT_TRUE(wait_for_output(j, "probe pids: started with 2 workers")) << j.output_so_far();
  std::this_thread::sleep_for(1000ms);
  ASSERT_EQ(kill(all[1].second, SIGTERM), 0);
  auto r = j.wait(120s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe pids: ok")) << r.output;
  EXPECT_TRUE(contains(r.output, "it left")) << r.output;
  EXPECT_TRUE(contains(r.output, "worker leaving (SIGTERM)")) << r.output;
  EXPECT_FALSE(contains(r.output, "calypso-run: worker (pid")) << "the leaving worker exited non-zero:\n" << r.output;
  std::remove(pids.c_str());
  rmdir(dir.c_str());
}

TEST(Failures, StoppedWorkerIsSuspectedThenTakenBack) {
  std::string dir = temp_dir();
  const std::string pids = dir + "/pids";
  Job j({kRun, "-n", "2", "--pid-file", pids, kProbe, "pids", "40", "40"},
        {{"CALYPSO_SUSPECT_MS", "700"}, {"CALYPSO_HEARTBEAT_MS", "100"}});
  auto all = read_pids(pids, 3);
  ASSERT_EQ(all.size(), 3u);
  ASSERT_TRUE(wait_for_output(j, "probe pids: started with 2 workers")) << j.output_so_far();
  std::this_thread::sleep_for(500ms);
  ASSERT_EQ(kill(all[1].second, SIGSTOP), 0);
  std::this_thread::sleep_for(2500ms);
  ASSERT_EQ(kill(all[1].second, SIGCONT), 0);
  auto r = j.wait(120s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe pids: ok (2 distinct")) << r.output;
  EXPECT_TRUE(contains(r.output, "silent too long")) << r.output;
  EXPECT_TRUE(contains(r.output, "is back after being suspected")) << r.output;
  std::remove(pids.c_str());
  rmdir(dir.c_str());
}

TEST(Failures, RepeatedStallsOfALiveWorkerNeverFailTheStep) {
  // One worker, one 6 s segment, stopped three times for longer than the suspicion
  // timeout: each time it is suspected (a counted failure) and comes back (forgiven).
  std::string dir = temp_dir();
  const std::string pids = dir + "/pids";
  Job j({kRun, "-n", "1", "--pid-file", pids, kProbe, "long", "6000"},
        {{"CALYPSO_SUSPECT_MS", "500"}, {"CALYPSO_HEARTBEAT_MS", "100"}, {"CALYPSO_MAX_ATTEMPTS", "3"}});
  auto all = read_pids(pids, 2);
  ASSERT_EQ(all.size(), 2u);
  std::this_thread::sleep_for(1000ms);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(kill(all[1].second, SIGSTOP), 0);
    std::this_thread::sleep_for(1200ms);
    ASSERT_EQ(kill(all[1].second, SIGCONT), 0);
    std::this_thread::sleep_for(600ms);
  }
  auto r = j.wait(120s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe long: ok")) << r.output;
  EXPECT_TRUE(contains(r.output, "is back after being suspected")) << r.output;
  std::remove(pids.c_str());
  rmdir(dir.c_str());
}

// A worker of the same executable (so it passes the identity check) that speaks the
// protocol itself and misbehaves: garbage, every message type with random bodies,
// bundles that break their rules, page requests and read sets outside the region,
// results for runs it was never sent (empty ones would pass as "wrote nothing"), for
// steps that are not open and out of bounds, malformed results of its own runs, result
// chunks that disagree or overlap, and a result begun and never finished while it keeps
// beating, and, first, results and a `leave` in the real workers' names, and an identity
// that dies silently and a new one at its address (see tests/rogue.cpp). The manager must neither crash nor hang, must lose no real worker,
// and every byte of the program's array must be as its segments wrote it after every
// step.
TEST(Failures, ARogueWorkerChangesNothing) {
  std::string dir = temp_dir();
  const std::string address = dir + "/address";
  // One assignment at a time: a second one sent to the rogue while it forges results
  // would make its forgery a result of its own run, which the manager rightly takes.
  // Workers that hear nothing from the manager for 5 s leave: the deaf identity must not
  // hold the manager's loop that long.
  const std::map<std::string, std::string> env{
      {"CALYPSO_SUSPECT_MS", "1000"}, {"CALYPSO_PIPELINE", "1"}, {"CALYPSO_MANAGER_TIMEOUT_MS", "5000"}};
  Job manager({kRun, "-n", "2", "--provider", "tcp", "--address-file", address, kRogue, dir}, env);
  const std::string addr = calypso::test::wait_for_file(address, 30s);
  ASSERT_FALSE(addr.empty()) << manager.output_so_far();
  Job rogue({kRogue, dir}, {{"CALYPSO_ROLE", "worker"}, {"CALYPSO_MANAGER", addr}, {"CALYPSO_TEST_ROGUE", "1"},
                            {"CALYPSO_LOCAL_MESSAGES", "0"}, {"CALYPSO_LOCAL_RESULTS", "0"}});
  auto m = manager.wait(120s);
  auto r = rogue.wait(30s);
  EXPECT_FALSE(m.timed_out) << m.output << r.output;
  EXPECT_EQ(m.exit_code, 0) << m.output << r.output;
  EXPECT_TRUE(contains(m.output, "rogue: ok")) << m.output << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "rogue worker: done (13 identities)")) << r.output;
  // A silent worker and a new one at its address (address_reuse): the old one is lost
  // at the new hello, and the new one gets work.
  EXPECT_TRUE(contains(m.output, "a new worker now has its network address")) << m.output;
  EXPECT_TRUE(contains(r.output, "a second identity works at the address of the first")) << r.output;
  // It spoke for the real workers (impersonation): the manager knew it was not them, and
  // no real worker was lost as one that left. (A real worker may be suspected on a busy
  // host: that is not asserted on.) The deaf identity's sends did time out.
  EXPECT_TRUE(contains(m.output, "that says it is worker")) << m.output;
  EXPECT_TRUE(contains(m.output, "it does not take messages")) << m.output;
  std::istringstream lines(m.output);
  for (std::string line; std::getline(lines, line);) {
    if (contains(line, "lost worker") && contains(line, ": it left")) {
      EXPECT_TRUE(contains(line, " pid " + std::to_string(rogue.pid()) + ")")) << line;
    }
  }
  for (const char* said : {"not Calypso-DSM protocol", "protocol violation", "page request outside the region",
                           "read_set names a page outside the region", "result chunk out of bounds",
                           "result in a ring the manager does not hold", "bundle: an entry names another worker",
                           "which it was never sent", "it sent a malformed result", "it sent result chunks that disagree",
                           "it sent result chunks that overlap", "its result stopped arriving halfway",
                           "it began more results than it was sent"}) {
    EXPECT_TRUE(contains(m.output, said)) << "the manager never said \"" << said << "\"\n" << m.output;
  }
  for (const char* crash : {"terminate called", "Aborted", "Segmentation", "core dumped", "calypso-run: worker (pid"}) {
    EXPECT_FALSE(contains(m.output + r.output, crash)) << m.output << r.output;
  }
  for (const char* f : {"/address", "/info", "/done", "/end"}) std::remove((dir + f).c_str());
  rmdir(dir.c_str());
}

TEST(Failures, WorkersNoticeALostManagerAndExit) {
  std::string dir = temp_dir();
  const std::string pids = dir + "/pids", address = dir + "/address", wpids = dir + "/wpids";
  Job manager({kRun, "-n", "0", "--pid-file", pids, "--address-file", address, kProbe, "pids", "200", "50"},
              {{"CALYPSO_SUSPECT_MS", "1000"}, {"CALYPSO_MANAGER_TIMEOUT_MS", "2000"},
               {"CALYPSO_LOG", "info"}});
  std::string addr = calypso::test::wait_for_file(address, 30s);
  ASSERT_FALSE(addr.empty());
  Job workers({kRun, "--join", addr, "-n", "2", "--pid-file", wpids, kProbe}, {});
  auto w = read_pids(wpids, 2);
  ASSERT_EQ(w.size(), 2u);
  // Both welcomed (a worker still waiting for its welcome would time out instead).
  ASSERT_TRUE(wait_for_output(manager, "worker 1 joined")) << manager.output_so_far();
  ASSERT_TRUE(wait_for_output(manager, "worker 2 joined")) << manager.output_so_far();
  std::this_thread::sleep_for(300ms);
  auto m = read_pids(pids, 1);
  ASSERT_EQ(m.size(), 1u);
  ASSERT_EQ(kill(m[0].second, SIGKILL), 0);
  auto r = workers.wait(30s);   // bounded: the test fails if they linger
  EXPECT_FALSE(r.timed_out) << r.output;
  EXPECT_TRUE(contains(r.output, "lost the manager")) << r.output;
  for (const auto& [role, pid] : w) EXPECT_NE(kill(pid, 0), 0) << "worker " << pid << " is still running";
  manager.wait(30s);
  for (const char* f : {"/pids", "/address", "/wpids"}) std::remove((dir + f).c_str());
  rmdir(dir.c_str());
}

TEST(Failures, AWorkerJoiningAManagerThatNeverAnswersGivesUpAfterItsTimeout) {
  // As when a job ends just as a worker joins it: the manager's endpoint takes the hello,
  // and no welcome ever comes.
  std::string dir = temp_dir();
  const std::string address = dir + "/address";
  Job manager({kSilentManager, "tcp", address, "60"}, {});
  std::string addr = calypso::test::wait_for_file(address, 30s);
  ASSERT_FALSE(addr.empty()) << manager.output_so_far();
  auto r = run({kRun, "--join", addr, kProbe}, {{"CALYPSO_MANAGER_TIMEOUT_MS", "1500"}}, 30s);
  EXPECT_FALSE(r.timed_out) << r.output;
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "no answer from the manager at " + addr + " within 1500 ms "
                                 "(CALYPSO_MANAGER_TIMEOUT_MS)")) << r.output;
  std::remove(address.c_str());
  rmdir(dir.c_str());
}

TEST(Failures, ProcessesStuckOnAnShmLockHeldByTheDeadGiveUpAndSayWhy) {
  // libfabric 1.17's shm leaves a queue's spinlock held when its holder is SIGKILLed
  // inside the critical section, and every later sender spins in the provider. The helper
  // takes the manager's queue lock and exits, as such a process would. Without the stall
  // watch the workers spin until they are killed, and nothing says why.
  std::string dir = temp_dir();
  const std::string address = dir + "/address";
  Job job({kRun, "-n", "2", "--provider", "shm", "--address-file", address, kProbe, "pids", "400", "50"},
          {{"CALYPSO_NO_WORKER_TIMEOUT_MS", "10000"}});
  std::string addr = calypso::test::wait_for_file(address, 30s);
  ASSERT_FALSE(addr.empty()) << job.output_so_far();
  ASSERT_TRUE(wait_for_output(job, "probe pids: started with 2 workers")) << job.output_so_far();
  std::this_thread::sleep_for(300ms);   // the workers are busy
  auto held = run({kShmLockHolder, addr}, {}, 10s);
  if (held.exit_code == 77) GTEST_SKIP() << held.output;
  ASSERT_EQ(held.exit_code, 0) << held.output;
  // The workers give up after 3 s of CPU time; the manager, with no worker left, 10 s
  // after it has suspected them.
  auto r = job.wait(60s);
  EXPECT_FALSE(r.timed_out) << r.output;
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_EQ(count(r.output, "of CPU time inside one call into libfabric's shm provider (fi_inject; at "), 2u)
      << r.output;
  EXPECT_EQ(count(r.output, "exited with status 3"), 2u) << r.output;
  // Each names the queue whose lock it waits for, held while its creator lives, and asks
  // that creator, the manager, where its threads are.
  std::istringstream lines(r.output);
  int naming_the_held_lock = 0;
  for (std::string line; std::getline(lines, line);) {
    naming_the_held_lock += contains(line, "has spent") && contains(line, " alive, lock held)");
  }
  EXPECT_EQ(naming_the_held_lock, 2) << r.output;
  EXPECT_GE(count(r.output, ", asked by process "), 1u) << r.output;
  std::remove(address.c_str());
  rmdir(dir.c_str());
}

// ---- membership ------------------------------------------------------------------------------

TEST(Membership, WorkerJoiningMidRunGetsWork) {
  std::string dir = temp_dir();
  const std::string address = dir + "/address";
  Job first({kRun, "-n", "1", "--address-file", address, kProbe, "pids", "40", "40"}, {});
  std::string addr = calypso::test::wait_for_file(address, 30s);
  ASSERT_FALSE(addr.empty()) << first.output_so_far();
  auto joined = run({kRun, "--join", addr, kProbe}, {}, 120s);
  auto r = first.wait(120s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(joined.exit_code, 0) << joined.output;
  EXPECT_TRUE(contains(r.output, "probe pids: ok (2 distinct workers ran segments)")) << r.output;
  std::remove(address.c_str());
  rmdir(dir.c_str());
}

TEST(Membership, WorkerFromAnotherExecutableIsRefused) {
  std::string dir = temp_dir();
  const std::string address = dir + "/address";
  Job first({kRun, "-n", "1", "--address-file", address, kProbe, "pids", "20", "40"}, {});
  std::string addr = calypso::test::wait_for_file(address, 30s);
  ASSERT_FALSE(addr.empty()) << first.output_so_far();
  auto joined = run({kRun, "--join", addr, kExamples + "/matmul"}, {}, 60s);
  auto r = first.wait(120s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(joined.exit_code, 0) << joined.output;
  EXPECT_TRUE(contains(joined.output, "refused")) << joined.output;
  EXPECT_TRUE(contains(joined.output, "different executable")) << joined.output;
  std::remove(address.c_str());
  rmdir(dir.c_str());
}

// A worker refused for good (another executable) will not join: a program waiting for
// the job's workers (--expect 2) goes on with the one that came instead of waiting out
// its 120 s timeout (the job's 60 s limit would end it first). The probe's local worker
// does not die here: DIR/died exists already.
TEST(Membership, ARefusedWorkerIsNotWaitedFor) {
  const std::string dir = temp_dir();
  const std::string address = dir + "/address";
  std::ofstream(dir + "/died") << "";
  Job first({kRun, "-n", "1", "--expect", "2", "--address-file", address, kProbe, "early-death", dir}, {});
  std::string addr = calypso::test::wait_for_file(address, 30s);
  ASSERT_FALSE(addr.empty()) << first.output_so_far();
  auto joined = run({kRun, "--join", addr, kExamples + "/matmul"}, {}, 60s);
  auto r = first.wait(60s);
  EXPECT_FALSE(r.timed_out) << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe early-death: ok (1 ready")) << r.output;
  EXPECT_TRUE(contains(joined.output, "different executable")) << joined.output;
  for (const char* f : {"/address", "/died"}) std::remove((dir + f).c_str());
  rmdir(dir.c_str());
}

// A wait for workers that goes on says what it waits for (after 5 s, then every 15 s),
// and a worker that joins then ends it.
TEST(Membership, ALongWaitForWorkersSaysWhatItWaitsFor) {
  const std::string dir = temp_dir();
  const std::string address = dir + "/address";
  std::ofstream(dir + "/died") << "";   // no worker of this probe dies
  Job first({kRun, "-n", "1", "--expect", "2", "--address-file", address, kProbe, "early-death", dir}, {});
  std::string addr = calypso::test::wait_for_file(address, 30s);
  ASSERT_FALSE(addr.empty()) << first.output_so_far();
  // (The seconds may read 5 or more on a busy host, and the worker may not be ready yet.)
  const std::string note = "waiting for 2 workers (";
  using Clock = std::chrono::steady_clock;
  for (auto until = Clock::now() + 40s; !contains(first.output_so_far(), note) && Clock::now() < until;) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(contains(first.output_so_far(), note)) << first.output_so_far();
  EXPECT_TRUE(contains(first.output_so_far(), " s so far): ")) << first.output_so_far();
  EXPECT_TRUE(contains(first.output_so_far(), "1 joined, 0 will not join; the program goes on without the rest after 120 s"))
      << first.output_so_far();
  auto joined = run({kRun, "--join", addr, kProbe, "early-death", dir}, {}, 60s);
  auto r = first.wait(60s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe early-death: ok (2 ready")) << r.output;
  EXPECT_EQ(joined.exit_code, 0) << joined.output;
  for (const char* f : {"/address", "/died"}) std::remove((dir + f).c_str());
  rmdir(dir.c_str());
}

// Stopping the job (SIGTERM to calypso-run, as Ctrl-C or a batch system would) stops the
// workers of its host; the manager tells those that joined from elsewhere (here a
// second calypso-run --join) before it goes, so they exit 0 at once instead of waiting
// CALYPSO_MANAGER_TIMEOUT_MS (20 s) and failing with "lost the manager".
TEST(Membership, StoppingTheJobTellsWorkersThatJoinedFromElsewhere) {
  const std::string dir = temp_dir();
  const std::string address = dir + "/address";
  Job first({kRun, "-n", "0", "--address-file", address, kProbe, "pids", "400", "50"}, {});
  std::string addr = calypso::test::wait_for_file(address, 30s);
  ASSERT_FALSE(addr.empty()) << first.output_so_far();
  Job joined({kRun, "--join", addr, kProbe}, {{"CALYPSO_LOG", "info"}});
  using Clock = std::chrono::steady_clock;
  for (auto until = Clock::now() + 30s; !contains(joined.output_so_far(), "joined the job") && Clock::now() < until;) {
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(contains(joined.output_so_far(), "joined the job")) << joined.output_so_far();
  kill(first.pid(), SIGTERM);
  auto r = first.wait(30s);
  auto j = joined.wait(10s);
  EXPECT_EQ(r.exit_code, 128 + SIGTERM) << r.output;
  EXPECT_TRUE(contains(r.output, "stopped by signal 15")) << r.output;
  EXPECT_FALSE(j.timed_out) << j.output;
  EXPECT_EQ(j.exit_code, 0) << j.output;
  EXPECT_TRUE(contains(j.output, "the manager was stopped (signal 15)")) << j.output;
  EXPECT_FALSE(contains(j.output, "lost the manager")) << j.output;
  std::remove(address.c_str());
  rmdir(dir.c_str());
}

// ---- resources -------------------------------------------------------------------------------

// utime + stime of a process, in clock ticks; -1 if it is gone.
long cpu_ticks(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (stat.find(')') == std::string::npos) return -1;
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return utime + stime;
}

TEST(Resources, IdleManagerAndWorkersUseNoCpuOnTcp) {
  std::string dir = temp_dir();
  const std::string pids = dir + "/pids", marker = dir + "/start";
  // Idle for 6 s: the window measured below ends ~2.3 s after the marker, and a loaded
  // host must not let the processes exit inside it.
  Job j({kRun, "-n", "2", "--pid-file", pids, kProbe, "idle", "6000", marker}, {});
  ASSERT_FALSE(calypso::test::wait_for_file(marker, 60s).empty()) << j.output_so_far();
  std::vector<int> all;
  {
    std::ifstream f(pids);
    std::string role;
    int pid;
    while (f >> role >> pid) all.push_back(pid);
  }
  ASSERT_EQ(all.size(), 3u);
  std::this_thread::sleep_for(300ms);   // let the step's last messages settle
  std::vector<long> before;
  for (int pid : all) before.push_back(cpu_ticks(pid));
  std::this_thread::sleep_for(2000ms);
  const long hz = sysconf(_SC_CLK_TCK);
  for (std::size_t i = 0; i < all.size(); ++i) {
    const long after = cpu_ticks(all[i]);
    ASSERT_GE(before[i], 0) << "process " << all[i] << " exited before the idle window";
    ASSERT_GE(after, 0) << "process " << all[i] << " exited inside the idle window";
    // 2 s of idling: a spinning process would use ~200 ticks (at 100 Hz); allow 10%.
    EXPECT_LT(after - before[i], hz / 5) << "process " << all[i] << " is busy while idle";
  }
  auto r = j.wait(60s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::remove(pids.c_str());
  std::remove(marker.c_str());
  rmdir(dir.c_str());
}

// ---- launcher --------------------------------------------------------------------------------

TEST(Launcher, BadArgumentsGetAClearErrorAndStartNothing) {
  auto r = run({kRun, "-n", "many", kProbe});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.output, "expected a number of workers")) << r.output;
  r = run({kRun});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.output, "usage")) << r.output;
  r = run({kRun, "-n", "2", "--expect", "1", kProbe});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.output, "--expect 1 is fewer than the 2 workers")) << r.output;
  r = run({kRun, "--join", "tcp/00/00", "--expect", "2", kProbe});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.output, "--expect is the manager's")) << r.output;
}

// -n 0 --expect 2: the program's wait_for_workers() waits for the two that join later
// (without --expect it would return at once with none, and time their start-up).
TEST(Launcher, ExpectedWorkersAreWaitedForWhenTheyJoinLater) {
  std::string dir = temp_dir();
  const std::string address = dir + "/address";
  Job manager({kRun, "-n", "0", "--expect", "2", "--address-file", address, kProbe, "pids", "10", "20"}, {});
  const std::string addr = calypso::test::wait_for_file(address, 30s);
  ASSERT_FALSE(addr.empty()) << manager.output_so_far();
  std::this_thread::sleep_for(500ms);
  Job workers({kRun, "--join", addr, "-n", "2", kProbe}, {});
  auto m = manager.wait(60s);
  EXPECT_EQ(m.exit_code, 0) << m.output;
  EXPECT_TRUE(contains(m.output, "probe pids: started with 2 workers")) << m.output;
  EXPECT_FALSE(workers.wait(30s).timed_out);
  std::remove(address.c_str());
  rmdir(dir.c_str());
}

// CALYPSO_PROVIDER in the environment chooses the provider unless --provider is given.
TEST(Launcher, TakesTheProviderFromTheEnvironmentUnlessGivenOne) {
  const std::vector<std::string> program{kExamples + "/mandelbrot", "64", "10", "4"};
  std::vector<std::string> argv{kRun, "-n", "1"};
  argv.insert(argv.end(), program.begin(), program.end());
  auto r = run(argv, {{"CALYPSO_PROVIDER", "shm"}}, 60s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "job address shm/")) << r.output;
  r = run(job(1, "tcp", program), {{"CALYPSO_PROVIDER", "shm"}}, 60s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "job address tcp/")) << r.output;
}

TEST(Launcher, BadConfigurationIsReportedByName) {
  auto r = run(job(1, "tcp", {kProbe, "adjacent"}), {{"CALYPSO_PAGE_SIZE", "banana"}}, 60s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.output, "CALYPSO_PAGE_SIZE=banana")) << r.output;
  // A statistics file that cannot be written is found at the start, not dropped at the end.
  auto stats = run(job(1, "tcp", {kExamples + "/mandelbrot", "64", "10", "4"}),
                   {{"CALYPSO_STATS", "text"}, {"CALYPSO_STATS_FILE", "/nonexistent-dir/stats"}}, 60s);
  EXPECT_NE(stats.exit_code, 0);
  EXPECT_TRUE(contains(stats.output, "CALYPSO_STATS_FILE=/nonexistent-dir/stats: cannot open it for writing"))
      << stats.output;
}

// Geometry the message path cannot carry is refused up front, by name; what it can
// carry, it carries: the largest fetch groups and pages, every page by message. (A
// fetch of 64 pages of 16 KiB, or a page of 1 MiB, made a reply larger than a message,
// and the manager aborted.)
TEST(Launcher, PageGeometryIsRefusedOrCarriedNeverAborts) {
  const std::map<std::string, std::string> by_message = {{"CALYPSO_RMA_FETCH", "off"}, {"CALYPSO_LOCAL_READS", "0"}};
  for (auto [name, value] : {std::pair{"CALYPSO_FETCH_PAGES", "64"}, std::pair{"CALYPSO_PAGE_SIZE", "512K"}}) {
    auto env = by_message;
    env[name] = value;
    auto r = run(job(2, "tcp", {kExamples + "/jacobi", "512", "10", "8"}), env, 60s);
    EXPECT_EQ(r.exit_code, 0) << name << "=" << value << r.output;
    EXPECT_TRUE(contains(r.output, "verified")) << name << "=" << value << r.output;
  }
  // The examples catch calypso::Error from the runtime, as a program should.
  const std::vector<std::string> small = {kExamples + "/mandelbrot", "64", "10", "4"};
  auto big_page = run(job(1, "tcp", small), {{"CALYPSO_PAGE_SIZE", "1M"}}, 60s);
  EXPECT_NE(big_page.exit_code, 0);
  EXPECT_TRUE(contains(big_page.output, "expected a power of two between 4K and 512K")) << big_page.output;
  // A region whose pages, to stay under this host's vm.max_map_count, would have to be
  // larger than a fetch may be (the runtime's own rule, dsm::safe_page_size).
  std::size_t region = std::size_t{1} << 30;
  while (calypso::dsm::safe_page_size(region, 16 << 10) <= calypso::kMaxFetchBytes) region *= 2;
  const std::string too_big = std::to_string(region >> 20) + "M";
  auto big_region = run(job(1, "tcp", small), {{"CALYPSO_REGION_SIZE", too_big}}, 60s);
  EXPECT_NE(big_region.exit_code, 0);
  EXPECT_TRUE(contains(big_region.output, "raise the limit (sysctl vm.max_map_count")) << big_region.output;
  EXPECT_FALSE(contains(big_page.output + big_region.output, "terminate called")) << "aborted";
}

// A program shorter than its workers' start-up: workers that come to join a job that
// is ending exit 0 with a note, and the launcher reports no failure. (They were refused
// like a worker of another executable: exit 1, "worker (pid N) exited with status 1".)
TEST(Launcher, WorkersTooLateForAShortJobAreNoFailure) {
  std::size_t late = 0;
  for (int i = 0; i < 3; ++i) {
    auto r = run(job(6, "tcp", {kProbe, "adjacent"}), {}, 60s);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(contains(r.output, "probe adjacent: ok")) << r.output;
    EXPECT_FALSE(contains(r.output, "exited with status")) << r.output;
    EXPECT_FALSE(contains(r.output, "refused")) << r.output;
    late += count(r.output, "the job ended before this worker joined");
  }
  std::printf("workers too late to join, in 3 runs: %zu\n", late);   // (the race is the host's)
}

// A worker calypso-run started that dies before it joins is seen only by calypso-run,
// which tells the manager (CALYPSO_LAUNCHER_FD): the program's wait for 2 workers ends
// with the one that came, not at its 120 s timeout (the job's 60 s limit would end it
// first), and the step runs on that one.
TEST(Launcher, AWorkerThatDiesBeforeJoiningIsNotWaitedFor) {
  const std::string dir = temp_dir();
  auto r = run(job(2, "tcp", {kProbe, "early-death", dir}), {{"CALYPSO_LOG", "info"}}, 60s);
  EXPECT_FALSE(r.timed_out) << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe early-death: ok (1 ready")) << r.output;
  EXPECT_TRUE(contains(r.output, "exited before it joined")) << r.output;
  std::remove((dir + "/died").c_str());
  rmdir(dir.c_str());
}

// A worker that joined and cannot go on (here: something of its own where the region
// must go) tells the manager why as it leaves: the manager's log names the reason, which
// for a worker on another host would otherwise be only in that host's output. The
// program goes on with the other worker.
TEST(Launcher, AWorkerThatCannotGoOnSaysWhyToTheManager) {
  const std::string dir = temp_dir();
  auto r = run(job(2, "tcp", {kProbe, "occupied", dir}), {}, 60s);
  EXPECT_FALSE(r.timed_out) << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe early-death: ok (1 ready")) << r.output;
  EXPECT_TRUE(contains(r.output, "it left: calypso: cannot map the shared region at")) << r.output;
  std::remove((dir + "/first").c_str());
  rmdir(dir.c_str());
}

// A worker given a job address where nothing listens (a job that has ended, a wrong
// port) says so once the kernel refuses a connection there, not after its whole wait
// (tcp;ofi_rxm itself only answers "again").
TEST(Launcher, JoiningWhereNothingListensSaysSo) {
  std::string endpoint;
  {
    calypso::net::EndpointConfig c;
    c.node = "127.0.0.1";
    endpoint = calypso::net::Endpoint::open(c).local_address().to_string();
  }   // closed: its port refuses
  auto r = run({kRun, "--join", "tcp/" + endpoint + "/0123456789abcdef", kProbe, "adjacent"}, {}, 60s);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "nothing listens at 127.0.0.1:")) << r.output;
  EXPECT_TRUE(contains(r.output, "(connection refused): the job has ended, or the address is wrong")) << r.output;
}

// calypso-run --hosts starts workers elsewhere through a remote shell (CALYPSO_RSH, ssh
// by default; here a stand-in that runs the command on this host, as ssh has the remote
// shell run it): -n defaults to 0 there, and the job expects every host's workers.
TEST(Launcher, HostsStartWorkersThroughTheRemoteShell) {
  const std::map<std::string, std::string> rsh{{"CALYPSO_RSH", FAKE_RSH_PATH}};
  auto r = run({kRun, "--hosts", "first:2,second", kProbe, "pids", "20", "5"}, rsh, 90s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "starting 2 workers on first")) << r.output;
  EXPECT_TRUE(contains(r.output, "starting 1 worker on second")) << r.output;
  EXPECT_TRUE(contains(r.output, "probe pids: started with 3 workers")) << r.output;
  EXPECT_TRUE(contains(r.output, "probe pids: ok (3 distinct workers")) << r.output;
  // A host whose remote shell fails is named; the job goes on with the others.
  auto failed = run({kRun, "-n", "1", "--hosts", "nowhere", kProbe, "adjacent"}, {{"CALYPSO_RSH", "/bin/false"}}, 90s);
  EXPECT_EQ(failed.exit_code, 0) << failed.output;
  EXPECT_TRUE(std::regex_search(failed.output,
                                std::regex(R"(the workers on nowhere \(remote shell pid [0-9]+\) exited with status 1)")))
      << failed.output;
  // A host ssh cannot reach starts none of its workers: the program does not wait for
  // them (bounded well below wait_for_workers' 60 s).
  auto unreachable = run({kRun, "-n", "1", "--hosts", "unreachable:2", kProbe, "pids", "20", "5"}, rsh, 40s);
  EXPECT_FALSE(unreachable.timed_out) << unreachable.output;
  EXPECT_EQ(unreachable.exit_code, 0) << unreachable.output;
  EXPECT_TRUE(contains(unreachable.output, "the remote shell could not connect")) << unreachable.output;
  EXPECT_TRUE(contains(unreachable.output, "2 workers calypso-run was to start on another host will not join"))
      << unreachable.output;
  EXPECT_TRUE(contains(unreachable.output, "probe pids: started with 1 workers")) << unreachable.output;
  // Misuse is refused before anything starts.
  auto shm = run({kRun, "--provider", "shm", "--hosts", "a", kProbe, "adjacent"}, rsh, 30s);
  EXPECT_EQ(shm.exit_code, 2) << shm.output;
  EXPECT_TRUE(contains(shm.output, "shm reaches only this host")) << shm.output;
  auto name = run({kRun, "--hosts", "a,b;c", kProbe, "adjacent"}, rsh, 30s);
  EXPECT_EQ(name.exit_code, 2) << name.output;
  EXPECT_TRUE(contains(name.output, "'b;c' is not a host name")) << name.output;
}

// The variables of the launchers a rank launch reads, empty (which counts as unset), so
// that a test run inside an allocation or under mpirun sees only its own.
std::map<std::string, std::string> without_launcher_variables() {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string name = std::string(*e).substr(0, std::string(*e).find('='));
    for (const char* prefix : {"SLURM_", "OMPI_", "PMI_", "PMIX_", "MPI_LOCALNRANKS", "CALYPSO_"}) {
      if (name.rfind(prefix, 0) == 0) env[name] = "";
    }
  }
  return env;
}

// What --hosts relies on when the calypso-run that started remote workers dies (ssh then
// closes their standard input, and sends no hang-up): calypso-run --join - --watch-stdin
// stops its workers when its standard input closes.
TEST(Launcher, AJoinWatchingItsInputStopsItsWorkersWhenItCloses) {
  const std::string dir = temp_dir(), address = dir + "/address";
  Job manager({kRun, "-n", "0", "--address-file", address, kProbe, "pids", "400", "20"}, {});
  ASSERT_FALSE(calypso::test::wait_for_file(address, 30s).empty()) << manager.output_so_far();
  struct stat st {};
  ASSERT_EQ(stat(address.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "--address-file holds the job key";
  auto r = run({"/bin/sh", "-c", "(cat \"$0\"; sleep 3) | \"$1\" --join - --watch-stdin \"$2\"", address, kRun, kProbe},
               {}, 60s);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "standard input closed")) << r.output;
  EXPECT_TRUE(contains(r.output, "worker leaving (SIGTERM)")) << r.output;
  EXPECT_TRUE(wait_for_output(manager, "it left")) << manager.output_so_far();
  std::remove(address.c_str());
  rmdir(dir.c_str());
}

// A job started as a cluster launcher starts one (srun here: every process the same
// program, its rank in SLURM_PROCID), without calypso-run: rank 0 becomes the manager and
// puts the job address in CALYPSO_RENDEZVOUS, readable by its owner only (it holds the
// job key); the other ranks find it there, join, and run the job's segments; the file is
// gone when the job is over.
TEST(RankLaunch, RanksStartedAsSrunStartsThemRunAJobWithoutCalypsoRun) {
  const std::string dir = temp_dir();
  std::map<std::string, std::string> common = without_launcher_variables();
  common.insert({{"CALYPSO_RENDEZVOUS", dir},
                 {"SLURM_STEP_NUM_TASKS", "3"},
                 {"SLURM_JOB_ID", "4242"},
                 {"SLURM_STEP_ID", "0"},
                 {"IPATH_NO_BACKTRACE", "1"}});
  auto rank = [&](int r) {
    auto env = common;
    env.emplace("SLURM_PROCID", std::to_string(r));
    return env;
  };
  const std::vector<std::string> argv{kProbe, "pids", "40", "5"};
  Job manager(argv, rank(0));
  const std::string file = dir + "/calypso-4242.0.address";
  ASSERT_FALSE(calypso::test::wait_for_file(file, 30s).empty()) << manager.output_so_far();
  struct stat st {};
  ASSERT_EQ(stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the address holds the job key";
  Job first(argv, rank(1)), second(argv, rank(2));
  auto m = manager.wait(90s);
  EXPECT_EQ(m.exit_code, 0) << m.output;
  EXPECT_TRUE(contains(m.output, "probe pids: started with 2 workers")) << m.output;
  EXPECT_TRUE(contains(m.output, "probe pids: ok (2 distinct workers")) << m.output;
  for (Job* w : {&first, &second}) {
    auto r = w->wait(30s);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_FALSE(r.timed_out) << r.output;
  }
  EXPECT_NE(stat(file.c_str(), &st), 0) << "the manager removes its address file";
  rmdir(dir.c_str());
}

// And one that has no rank, or would be alone, is told what to do instead.
TEST(RankLaunch, WithoutRanksItSaysWhatToDo) {
  const std::string dir = temp_dir();
  auto clean = [](std::map<std::string, std::string> env) {
    for (const auto& [name, value] : without_launcher_variables()) env.emplace(name, value);
    return env;
  };
  auto none = run({kProbe, "pids", "4", "5"}, clean({{"CALYPSO_RENDEZVOUS", dir}}), 30s);
  EXPECT_NE(none.exit_code, 0) << none.output;   // calypso::Error from the Runtime (the probe lets it escape)
  EXPECT_TRUE(contains(none.output, "has no rank from a launcher")) << none.output;
  auto alone = run({kProbe, "pids", "4", "5"},
                   clean({{"CALYPSO_RENDEZVOUS", dir}, {"PMI_RANK", "0"}, {"PMI_SIZE", "1"}, {"CALYPSO_JOB_NAME", "x"}}),
                   30s);
  EXPECT_NE(alone.exit_code, 0) << alone.output;
  EXPECT_TRUE(contains(alone.output, "start 2 or more")) << alone.output;
  // A worker whose manager never comes says where it looked (bounded by SIGTERM here:
  // it waits 120 s on a shared file system).
  Job orphan({kProbe, "pids", "4", "5"},
             clean({{"CALYPSO_RENDEZVOUS", dir}, {"PMI_RANK", "1"}, {"PMI_SIZE", "2"}, {"CALYPSO_JOB_NAME", "y"}}));
  std::this_thread::sleep_for(1500ms);
  kill(orphan.pid(), SIGTERM);
  auto r = orphan.wait(30s);
  EXPECT_FALSE(r.timed_out) << r.output;
  EXPECT_TRUE(contains(r.output, "worker leaving (SIGTERM) before it joined")) << r.output;
  // An address file planted by another hand (not its user's own 0600 file) is refused.
  const std::string planted = dir + "/calypso-z.address";
  std::ofstream(planted) << "tcp/0200abcd7f0000010000000000000000/0123456789abcdef\n";
  chmod(planted.c_str(), 0644);
  auto refused = run({kProbe, "pids", "4", "5"},
                     clean({{"CALYPSO_RENDEZVOUS", dir}, {"PMI_RANK", "1"}, {"PMI_SIZE", "2"}, {"CALYPSO_JOB_NAME", "z"}}),
                     30s);
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_TRUE(contains(refused.output, "refusing the job address in " + planted)) << refused.output;
  EXPECT_TRUE(contains(refused.output, "mode 0644")) << refused.output;
  std::remove(planted.c_str());
  rmdir(dir.c_str());
}

// A rank-launched manager stopped by a signal (scancel, a time limit) removes its address
// file too: the next run must not find a stale one.
TEST(RankLaunch, AStoppedManagerRemovesItsAddressFile) {
  const std::string dir = temp_dir();
  auto env = without_launcher_variables();
  env.insert({{"CALYPSO_RENDEZVOUS", dir}, {"PMI_RANK", "0"}, {"PMI_SIZE", "2"}, {"CALYPSO_JOB_NAME", "stopped"},
              {"IPATH_NO_BACKTRACE", "1"}});
  Job manager({kProbe, "pids", "4", "5"}, env);
  const std::string file = dir + "/calypso-stopped.address";
  ASSERT_FALSE(calypso::test::wait_for_file(file, 30s).empty()) << manager.output_so_far();
  ASSERT_EQ(kill(manager.pid(), SIGTERM), 0);
  auto r = manager.wait(30s);
  EXPECT_EQ(r.exit_code, 128 + SIGTERM) << r.output;
  struct stat st {};
  EXPECT_NE(stat(file.c_str(), &st), 0) << "left behind";
  std::remove(file.c_str());
  rmdir(dir.c_str());
}

// Misuse, each refused or failed by name, and none a hang: two threads calling
// parallel() at once (one is refused; it hung), a step of more than kMaxSegmentsPerStep
// segments (refused up front; 2^32 - 1 grew the manager past 8 GB), and a routine that
// calls exit(0) (the worker says so and exits 70, which calypso-run reports; it exited 0
// unreported). Three workers and two attempts: the third worker outlives that step.
TEST(Launcher, MisuseIsRefusedOrFailedByName) {
  auto r = run(job(3, "tcp", {kProbe, "misuse"}), {{"CALYPSO_MAX_ATTEMPTS", "2"}, {"CALYPSO_SUSPECT_MS", "500"}}, 90s);
  EXPECT_FALSE(r.timed_out) << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "probe misuse: ok")) << r.output;
  EXPECT_TRUE(contains(r.output, "routine 'exit_zero' failed")) << r.output;
  EXPECT_TRUE(contains(r.output, "the program called exit() in a worker")) << r.output;
  EXPECT_TRUE(contains(r.output, "exited with status 70")) << r.output;
}

// Shared<> variables larger than the region are refused by name (they ran past its end:
// a segfault in every worker, or "the shared heap is full").
TEST(Launcher, SharedVariablesLargerThanTheRegionAreRefused) {
  auto r = run(job(1, "tcp", {kBigShared}), {{"CALYPSO_REGION_SIZE", "1M"}}, 60s);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "Shared<> variables take 2 MiB, more than the region")) << r.output;
  EXPECT_FALSE(contains(r.output, "big_shared: ran")) << r.output;
  EXPECT_FALSE(contains(r.output, "terminate called")) << r.output;
  auto fits = run(job(1, "tcp", {kBigShared}), {{"CALYPSO_REGION_SIZE", "8M"}}, 60s);
  EXPECT_EQ(fits.exit_code, 0) << fits.output;
  EXPECT_TRUE(contains(fits.output, "big_shared: ran (0)")) << fits.output;
}

// CALYPSO_LAUNCHER_FD is calypso-run's to set: a standard stream's number, or a
// descriptor that is not an open socket, is refused by name at start-up.
TEST(Launcher, ALauncherDescriptorThatIsNoSocketIsRefused) {
  Job direct({kProbe, "adjacent"}, {{"CALYPSO_LAUNCHER_FD", "2"}});
  auto d = direct.wait(30s);
  EXPECT_NE(d.exit_code, 0) << d.output;
  EXPECT_TRUE(contains(d.output, "CALYPSO_LAUNCHER_FD=2")) << d.output;
  Job closed({kProbe, "adjacent"}, {{"CALYPSO_LAUNCHER_FD", "900"}});
  auto c = closed.wait(30s);
  EXPECT_NE(c.exit_code, 0) << c.output;
  EXPECT_TRUE(contains(c.output, "is not an open socket")) << c.output;
}

// An endpoint that cannot open reaches the program as a calypso::Error (the example
// catches it, says why and returns 2), not as an uncaught exception that aborts.
TEST(Launcher, ManagerThatCannotOpenItsEndpointSaysWhy) {
  auto r = run({kExamples + "/mandelbrot", "64", "10", "4"},
               {{"CALYPSO_PROVIDER", "no-such-provider"}}, 60s);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "the manager could not start")) << r.output;
  EXPECT_TRUE(contains(r.output, "no-such-provider")) << r.output;
}

TEST(Launcher, SaysWhatTheManagerWaitsForOnceEveryLocalWorkerIsGone) {
  // 4 s: the clock starts with the step, before the worker has joined (~0.4 s here).
  auto r = run(job(1, "tcp", {kProbe, "crash-always"}), {{"CALYPSO_NO_WORKER_TIMEOUT_MS", "4000"}},
               60s);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "every worker started here (1) has exited")) << r.output;
  EXPECT_TRUE(contains(r.output, "no live worker for 4000 ms")) << r.output;
}

TEST(Launcher, InterruptStopsEveryProcess) {
  std::string dir = temp_dir();
  const std::string pids = dir + "/pids";
  Job j({kRun, "-n", "2", "--pid-file", pids, kProbe, "pids", "200", "50"}, {});
  std::vector<int> all;
  for (auto deadline = std::chrono::steady_clock::now() + 30s; all.size() < 3 && std::chrono::steady_clock::now() < deadline;) {
    all.clear();
    std::ifstream f(pids);
    std::string role;
    int pid;
    while (f >> role >> pid) all.push_back(pid);
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(all.size(), 3u);
  std::this_thread::sleep_for(500ms);
  kill(j.pid(), SIGINT);
  auto r = j.wait(30s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 130) << r.output;
  for (int pid : all) EXPECT_NE(kill(pid, 0), 0) << "process " << pid << " outlived the launcher";
  std::remove(pids.c_str());
  rmdir(dir.c_str());
}

}  // namespace
