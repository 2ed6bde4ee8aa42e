#include "rank_launch.hpp"

#include "config.hpp"

#include <calypso/error.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace calypso {
namespace {

// A job id: a variable, and one whose value is appended after a dot when set (a step).
struct JobId {
  const char* name;
  const char* step = nullptr;
};

// A launcher's variables: the rank and size every process gets, the processes on this
// host where it says, and what names the run. Checked in this order: an mpirun or
// mpiexec inside a Slurm allocation starts its ranks through srun, so they have Slurm's
// variables too (of the daemon srun started), and the MPI ones hold; srun's PMI-2
// plugin (srun --mpi=pmi2) sets PMI_RANK, PMI_SIZE and PMI_JOBID but no PMI_KVSNAME.
struct Launcher {
  const char* name;
  const char* rank;
  std::vector<const char*> size;         // the first one set
  const char* local_size;                // nullptr: computed (srun) or unknown
  std::vector<JobId> job;                // the first one set
};

const std::vector<Launcher>& launchers() {
  static const std::vector<Launcher> all{
      {"Open MPI", "OMPI_COMM_WORLD_RANK", {"OMPI_COMM_WORLD_SIZE"}, "OMPI_COMM_WORLD_LOCAL_SIZE",
       {{"PMIX_NAMESPACE"}, {"OMPI_MCA_ess_base_jobid"}}},
      {"PMI (MPICH's Hydra, srun --mpi=pmi2)", "PMI_RANK", {"PMI_SIZE"}, "MPI_LOCALNRANKS",
       {{"PMI_KVSNAME"}, {"PMI_JOBID"}, {"SLURM_JOB_ID", "SLURM_STEP_ID"}}},
      {"srun", "SLURM_PROCID", {"SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"}, nullptr, {{"SLURM_JOB_ID", "SLURM_STEP_ID"}}},
  };
  return all;
}

std::optional<std::uint32_t> number(const char* v) {
  if (v == nullptr || std::strspn(v, "0123456789") != std::strlen(v) || std::strlen(v) > 9) return std::nullopt;
  return static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
}

// A job id as part of a file name: anything but letters, digits, '.', '-' and '_' is '_'.
std::string file_part(const std::string& s) {
  std::string out;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '-' || c == '_';
    out += ok ? c : '_';
  }
  return out;
}

// Whether this process is a task of a Slurm job step that srun started. A batch script
// or an salloc shell has SLURM_PROCID and SLURM_NTASKS of the allocation too, but no
// step of its own: its step id is missing, or one of Slurm's special steps (batch,
// extern, interactive: the ids from 0xfffffffa up, or their names).
bool srun_task(const EnvLookup& env) {
  const char* step = env("SLURM_STEP_ID");
  if (step == nullptr) step = env("SLURM_STEPID");
  const auto id = number(step);
  return id && *id < 0xfffffffau;
}

}  // namespace

std::uint32_t tasks_on_node(const std::string& tasks_per_node, std::uint32_t node) {
  // "2(x3),1": 2 tasks on each of 3 nodes, then 1.
  std::size_t at = 0;
  std::uint32_t first = 0;   // the first node this item covers
  while (at < tasks_per_node.size()) {
    const std::size_t comma = tasks_per_node.find(',', at);
    const std::string item = tasks_per_node.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    const std::size_t paren = item.find("(x");
    const auto tasks = number(item.substr(0, paren).c_str());
    std::optional<std::uint32_t> repeat = 1u;
    if (paren != std::string::npos) {
      if (item.size() < paren + 4 || item.back() != ')') return 0;
      repeat = number(item.substr(paren + 2, item.size() - paren - 3).c_str());
    }
    if (!tasks || !repeat || *repeat == 0) return 0;
    if (node < first + *repeat) return *tasks;
    first += *repeat;
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return 0;
}

std::optional<RankLaunch> find_rank_launch(const EnvLookup& env) {
  const char* dir = env("CALYPSO_RENDEZVOUS");
  if (dir == nullptr || env("CALYPSO_ROLE") != nullptr) return std::nullopt;
  for (const Launcher& l : launchers()) {
    const char* rank_text = env(l.rank);
    if (rank_text == nullptr) continue;
    if (std::strcmp(l.name, "srun") == 0 && !srun_task(env)) continue;   // an allocation's shell, not a task
    const char* size_name = l.size.front();
    const char* size_text = nullptr;
    for (const char* s : l.size) {
      if ((size_text = env(s)) != nullptr) {
        size_name = s;
        break;
      }
    }
    const auto rank = number(rank_text);
    const auto size = number(size_text);
    if (!rank || !size) {
      throw Error(std::string("calypso: CALYPSO_RENDEZVOUS is set and ") + l.rank + "=" + rank_text + ", but " +
                  size_name + (size_text ? std::string("=") + size_text : std::string(" is unset")) +
                  ": the launcher's rank and size must be numbers");
    }
    if (*rank >= *size) {
      throw Error(std::string("calypso: ") + l.rank + "=" + rank_text + " is not below " + size_name + "=" + size_text);
    }
    if (*size < 2) {
      throw Error(std::string("calypso: started as 1 process by ") + l.name +
                  " with CALYPSO_RENDEZVOUS set: rank 0 is the manager and the others its workers, so start "
                  "2 or more (e.g. srun -n 3, mpirun -n 3)");
    }
    RankLaunch r;
    r.launcher = l.name;
    r.rank = *rank;
    r.size = *size;
    if (l.local_size != nullptr) {
      r.local_size = number(env(l.local_size)).value_or(0);
    } else if (const char* per_node = env("SLURM_STEP_TASKS_PER_NODE")) {
      // The step's own layout (SLURM_NTASKS_PER_NODE is the allocation's request).
      if (const auto node = number(env("SLURM_NODEID"))) r.local_size = tasks_on_node(per_node, *node);
    }
    if (const char* name = env("CALYPSO_JOB_NAME")) r.job = name;
    for (const JobId& j : l.job) {
      if (!r.job.empty()) break;
      if (const char* id = env(j.name)) {
        r.job = id;
        if (j.step != nullptr) {
          if (const char* step = env(j.step)) r.job += std::string(".") + step;
        }
      }
    }
    if (r.job.empty()) {
      throw Error(std::string("calypso: ") + l.name + " gives no job id (" + l.job.front().name +
                  " is unset): set CALYPSO_JOB_NAME to a name unique to this run, the same in every process, "
                  "for its address file in CALYPSO_RENDEZVOUS");
    }
    r.address_file = std::string(dir) + "/calypso-" + file_part(r.job) + ".address";
    return r;
  }
  throw Error("calypso: CALYPSO_RENDEZVOUS is set, but this process has no rank from a launcher "
              "(OMPI_COMM_WORLD_RANK, PMI_RANK, or SLURM_PROCID in a task srun started): start the program with "
              "srun, mpirun or mpiexec, or start it with calypso-run and unset CALYPSO_RENDEZVOUS");
}

void apply_rank_launch(const RankLaunch& r, Config& c) {
  if (r.rank == 0) {
    c.role = Role::manager;
    c.address_file = r.address_file;
    if (c.expect_workers == 0) c.expect_workers = r.size - 1;
    // Workers beside the manager: the others on this host, where the launcher says (never
    // more than the job has).
    if (c.workers == 0 && r.local_size > 1) c.workers = std::min(r.local_size - 1, c.expect_workers);
  } else {
    c.role = Role::worker;
    c.manager_file = r.address_file;
    if (c.workers == 0 && r.local_size > 0) c.workers = r.local_size;
  }
  c.rendezvous = true;
}

}  // namespace calypso
