// Processes started by a cluster launcher (srun, mpirun, mpiexec) instead of calypso-run:
// every process runs the same program, and finds its role and the manager's address
// itself. Rank 0 is the manager, every other rank a worker; the manager writes the job
// address (with its key) into a file in CALYPSO_RENDEZVOUS, a directory every process
// of the job can read (a shared file system across hosts), and the workers wait for it
// there. Opt-in: only with CALYPSO_RENDEZVOUS set and CALYPSO_ROLE unset; and Slurm's
// variables count only in a task of a job step (a batch script or salloc shell has
// SLURM_PROCID too). Pure logic over the environment (tests pass a map).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace calypso {

struct Config;

struct RankLaunch {
  std::string launcher;       // what the ranks came from, for messages: "srun", "Open MPI", ...
  std::uint32_t rank = 0;     // 0: the manager
  std::uint32_t size = 0;     // processes in the job: the manager and size - 1 workers
  std::uint32_t local_size = 0;   // processes on this host, 0 if the launcher does not say
  std::string job;            // names this run's address file: unique to the run
  std::string address_file;   // CALYPSO_RENDEZVOUS/calypso-JOB.address
};

// The environment as a lookup: the value, or nullptr if unset or empty.
using EnvLookup = std::function<const char*(const char*)>;

// The rank launch this process is part of, or nothing when CALYPSO_RENDEZVOUS is unset
// or CALYPSO_ROLE is set (calypso-run, or the user, chose). Throws calypso::Error, saying
// what to do, when CALYPSO_RENDEZVOUS is set but the launcher gave no rank, a size
// below 2, an inconsistent rank, or no job id (CALYPSO_JOB_NAME then names the run; it
// also overrides the launcher's, e.g. for two programs in one step).
std::optional<RankLaunch> find_rank_launch(const EnvLookup& env);

// Slurm's SLURM_STEP_TASKS_PER_NODE ("2(x3),1": 2 tasks on each of 3 nodes, then 1): the
// tasks on node `node` (SLURM_NODEID), 0 if it does not say or cannot be read.
std::uint32_t tasks_on_node(const std::string& tasks_per_node, std::uint32_t node);

// Sets what the rank implies: the role, the address file (the manager writes it, a
// worker waits for it), the workers to expect and this host's Calypso processes (what
// CALYPSO_EXPECT_WORKERS and CALYPSO_WORKERS would say; explicit values win).
void apply_rank_launch(const RankLaunch& r, Config& c);

}  // namespace calypso
