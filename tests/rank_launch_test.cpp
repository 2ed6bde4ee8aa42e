// Role and address file of a process started by srun, mpirun or mpiexec (rank_launch.hpp):
// pure logic over the environment, given here as a map.
#include "config.hpp"
#include "rank_launch.hpp"

#include <calypso/error.hpp>

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace {

using calypso::Config;
using calypso::Error;
using calypso::find_rank_launch;
using calypso::RankLaunch;
using calypso::Role;

using Env = std::map<std::string, std::string>;

std::optional<RankLaunch> find(const Env& env) {
  return find_rank_launch([&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() || it->second.empty() ? nullptr : it->second.c_str();
  });
}

// env with some variables set anew (built, not assigned: GCC 12 at -O3 warns wrongly
// of overlapping copies when a short literal is assigned to a map's string).
Env with(Env env, const Env& changes) {
  for (const auto& [name, value] : changes) {
    env.erase(name);
    env.emplace(name, value);
  }
  return env;
}

std::string error_of(const Env& env) {
  try {
    find(env);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A task of `srun -n 4` on two nodes, two tasks each, in an allocation asked for with
// --ntasks-per-node=8 (SLURM_NTASKS_PER_NODE is the allocation's, not the step's).
const Env kSrun{{"CALYPSO_RENDEZVOUS", "/shared/run"}, {"SLURM_PROCID", "2"}, {"SLURM_NTASKS", "16"},
                {"SLURM_STEP_NUM_TASKS", "4"}, {"SLURM_JOB_ID", "1234"}, {"SLURM_STEP_ID", "0"},
                {"SLURM_NTASKS_PER_NODE", "8"}, {"SLURM_STEP_TASKS_PER_NODE", "2(x2)"}, {"SLURM_NODEID", "1"}};

TEST(RankLaunch, OnlyWithARendezvousAndNoRoleChosen) {
  Env no_dir = kSrun;
  no_dir.erase("CALYPSO_RENDEZVOUS");
  EXPECT_FALSE(find(no_dir)) << "a program run inside an allocation must not take a rank";
  // calypso-run sets it for every process it starts
  EXPECT_FALSE(find(with(kSrun, {{"CALYPSO_ROLE", "worker"}})));
}

TEST(RankLaunch, SrunRanks) {
  auto r = find(kSrun);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->launcher, "srun");
  EXPECT_EQ(r->rank, 2u);
  EXPECT_EQ(r->size, 4u) << "the step's tasks, not the allocation's";
  EXPECT_EQ(r->local_size, 2u) << "the step's tasks on this node";
  EXPECT_EQ(r->job, "1234.0");
  EXPECT_EQ(r->address_file, "/shared/run/calypso-1234.0.address");
}

TEST(RankLaunch, MpiVariablesWinOverTheSrunThatStartedTheirDaemons) {
  auto r = find(with(kSrun, {{"OMPI_COMM_WORLD_RANK", "0"},
                            {"OMPI_COMM_WORLD_SIZE", "8"},
                            {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"},
                            {"PMIX_NAMESPACE", "prterun-node1-4711@1"}}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->launcher, "Open MPI");
  EXPECT_EQ(r->rank, 0u);
  EXPECT_EQ(r->size, 8u);
  EXPECT_EQ(r->local_size, 4u);
  // What a file name cannot hold becomes '_'.
  EXPECT_EQ(r->address_file, "/shared/run/calypso-prterun-node1-4711_1.address");

  Env hydra{{"CALYPSO_RENDEZVOUS", "/d"}, {"PMI_RANK", "1"}, {"PMI_SIZE", "3"}, {"CALYPSO_JOB_NAME", "run/7"}};
  r = find(hydra);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->launcher, "PMI (MPICH's Hydra, srun --mpi=pmi2)");
  EXPECT_EQ(r->rank, 1u);
  EXPECT_EQ(r->local_size, 0u) << "not said";
  EXPECT_EQ(r->address_file, "/d/calypso-run_7.address");
}

TEST(RankLaunch, SrunsPmi2PluginGivesPmiVariablesWithItsOwnJobId) {
  auto r = find(with(kSrun, {{"PMI_RANK", "2"}, {"PMI_SIZE", "4"}, {"PMI_JOBID", "1234.0"}, {"PMI_FD", "5"}}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->launcher, "PMI (MPICH's Hydra, srun --mpi=pmi2)");
  EXPECT_EQ(r->address_file, "/shared/run/calypso-1234.0.address");
  // Without PMI_JOBID, Slurm's own job and step.
  r = find(with(kSrun, {{"PMI_RANK", "2"}, {"PMI_SIZE", "4"}}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->job, "1234.0");
}

// A batch script or an salloc shell has the allocation's SLURM_PROCID and SLURM_NTASKS,
// but is no task of a step: a program run there directly takes no rank.
TEST(RankLaunch, AnAllocationsShellIsNoTask) {
  Env shell = kSrun;
  shell.erase("SLURM_STEP_ID");
  EXPECT_NE(error_of(shell).find("no rank from a launcher"), std::string::npos) << error_of(shell);
  for (const char* special : {"4294967294", "4294967290", "batch", "interactive"}) {
    EXPECT_NE(error_of(with(kSrun, {{"SLURM_STEP_ID", special}})).find("no rank from a launcher"), std::string::npos)
        << special;
  }
  EXPECT_TRUE(find(with(shell, {{"SLURM_STEPID", "3"}}))) << "the older name of the step id counts too";
}

TEST(RankLaunch, SlurmsTasksPerNodeAreReadForThisNode) {
  EXPECT_EQ(calypso::tasks_on_node("2(x3),1", 0), 2u);
  EXPECT_EQ(calypso::tasks_on_node("2(x3),1", 2), 2u);
  EXPECT_EQ(calypso::tasks_on_node("2(x3),1", 3), 1u);
  EXPECT_EQ(calypso::tasks_on_node("2(x3),1", 4), 0u) << "beyond the list";
  EXPECT_EQ(calypso::tasks_on_node("4", 0), 4u);
  EXPECT_EQ(calypso::tasks_on_node("3,5", 1), 5u);
  for (const char* junk : {"", "x", "2(x", "2(x0)", "2(xa)", "(x2)"}) EXPECT_EQ(calypso::tasks_on_node(junk, 0), 0u) << junk;
}

TEST(RankLaunch, TheJobNameOverridesTheLaunchersJobId) {
  auto r = find(with(kSrun, {{"CALYPSO_JOB_NAME", "second-program"}}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->address_file, "/shared/run/calypso-second-program.address");
}

TEST(RankLaunch, ErrorsSayWhatToDo) {
  EXPECT_NE(error_of({{"CALYPSO_RENDEZVOUS", "/d"}}).find("no rank from a launcher"), std::string::npos);
  const Env one = with(kSrun, {{"SLURM_PROCID", "0"}, {"SLURM_STEP_NUM_TASKS", "1"}});
  EXPECT_NE(error_of(one).find("start 2 or more"), std::string::npos) << error_of(one);
  const Env beyond = with(kSrun, {{"SLURM_PROCID", "4"}});
  EXPECT_NE(error_of(beyond).find("is not below SLURM_STEP_NUM_TASKS=4"), std::string::npos) << error_of(beyond);
  const Env garbled = with(kSrun, {{"SLURM_STEP_NUM_TASKS", "4x"}});
  EXPECT_NE(error_of(garbled).find("must be numbers"), std::string::npos) << error_of(garbled);
  Env no_size = kSrun;
  no_size.erase("SLURM_STEP_NUM_TASKS");
  no_size.erase("SLURM_NTASKS");
  EXPECT_NE(error_of(no_size).find("SLURM_STEP_NUM_TASKS is unset"), std::string::npos) << error_of(no_size);
  Env no_job{{"CALYPSO_RENDEZVOUS", "/d"}, {"PMI_RANK", "1"}, {"PMI_SIZE", "3"}};
  EXPECT_NE(error_of(no_job).find("set CALYPSO_JOB_NAME"), std::string::npos) << error_of(no_job);
}

TEST(RankLaunch, RankZeroManagesTheOthersWork) {
  const Env zero = with(kSrun, {{"SLURM_PROCID", "0"}});
  Config manager;
  apply_rank_launch(*find(zero), manager);
  EXPECT_EQ(manager.role, Role::manager);
  EXPECT_EQ(manager.address_file, "/shared/run/calypso-1234.0.address");
  EXPECT_EQ(manager.expect_workers, 3u) << "every other rank";
  EXPECT_EQ(manager.workers, 1u) << "the other process on its host";
  Config crowded;   // more tasks on its node than the job has workers: never more than those
  apply_rank_launch(*find(with(zero, {{"SLURM_STEP_TASKS_PER_NODE", "8"}, {"SLURM_NODEID", "0"}})), crowded);
  EXPECT_EQ(crowded.workers, 3u);
  EXPECT_TRUE(manager.rendezvous);

  Config worker;
  apply_rank_launch(*find(kSrun), worker);
  EXPECT_EQ(worker.role, Role::worker);
  EXPECT_EQ(worker.manager_file, "/shared/run/calypso-1234.0.address");
  EXPECT_EQ(worker.workers, 2u);

  Config explicit_expect;
  explicit_expect.expect_workers = 5;   // CALYPSO_EXPECT_WORKERS wins
  apply_rank_launch(*find(zero), explicit_expect);
  EXPECT_EQ(explicit_expect.expect_workers, 5u);
}

}  // namespace
