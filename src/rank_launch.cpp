#include "rank_launch.hpp"

#include "config.hpp"

#include <calypso/error.hpp>

#include <cstdlib>
#include <cstring>

namespace calypso {
namespace {

// A launcher's variables: the rank and size every process gets, the processes on this
// host where it says, and what names the run (job and step). Checked in this order: an
// mpirun or mpiexec inside a Slurm allocation starts its ranks through srun, so they
// have Slurm's variables too (of the daemon srun started), and the MPI ones hold.
struct Launcher {
  const char* name;
  const char* rank;
  const char* size;
  const char* local_size;
  const char* job[2];
};
constexpr Launcher kLaunchers[] = {
    {"Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE",
     {"PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid"}},
    {"MPICH (Hydra)", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS", {"PMI_KVSNAME", nullptr}},
    {"srun", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", {"SLURM_JOB_ID", "SLURM_STEP_ID"}},
};

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

}  // namespace

std::optional<RankLaunch> find_rank_launch(const EnvLookup& env) {
  const char* dir = env("CALYPSO_RENDEZVOUS");
  if (dir == nullptr || env("CALYPSO_ROLE") != nullptr) return std::nullopt;
  for (const Launcher& l : kLaunchers) {
    const char* rank_text = env(l.rank);
    if (rank_text == nullptr) continue;
    RankLaunch r;
    r.launcher = l.name;
    const auto rank = number(rank_text);
    const auto size = number(env(l.size));
    if (!rank || !size) {
      throw Error(std::string("calypso: CALYPSO_RENDEZVOUS is set and ") + l.rank + "=" + rank_text + ", but " +
                  l.size + (env(l.size) ? std::string("=") + env(l.size) : std::string(" is unset")) +
                  ": the launcher's rank and size must be numbers");
    }
    if (*rank >= *size) {
      throw Error(std::string("calypso: ") + l.rank + "=" + rank_text + " is not below " + l.size + "=" +
                  env(l.size));
    }
    if (*size < 2) {
      throw Error(std::string("calypso: started as 1 process by ") + l.name +
                  " with CALYPSO_RENDEZVOUS set: rank 0 is the manager and the others its workers, so start "
                  "2 or more (e.g. srun -n 3, mpirun -n 3)");
    }
    r.rank = *rank;
    r.size = *size;
    r.local_size = number(env(l.local_size)).value_or(0);
    if (const char* name = env("CALYPSO_JOB_NAME")) {
      r.job = name;
    } else if (const char* id = env(l.job[0])) {
      r.job = id;
      if (l.job[1] != nullptr) {
        if (const char* step = env(l.job[1])) r.job += std::string(".") + step;
      }
    } else {
      throw Error(std::string("calypso: ") + l.name + " gives no job id (" + l.job[0] +
                  " is unset): set CALYPSO_JOB_NAME to a name unique to this run, the same in every process, "
                  "for its address file in CALYPSO_RENDEZVOUS");
    }
    r.address_file = std::string(dir) + "/calypso-" + file_part(r.job) + ".address";
    return r;
  }
  throw Error("calypso: CALYPSO_RENDEZVOUS is set, but this process has no rank from a launcher "
              "(OMPI_COMM_WORLD_RANK, PMI_RANK or SLURM_PROCID): start the program with srun, mpirun "
              "or mpiexec, or start it with calypso-run and unset CALYPSO_RENDEZVOUS");
}

void apply_rank_launch(const RankLaunch& r, Config& c) {
  if (r.rank == 0) {
    c.role = Role::manager;
    c.address_file = r.address_file;
    if (c.expect_workers == 0) c.expect_workers = r.size - 1;
    // Workers beside the manager: the others on this host, where the launcher says.
    if (c.workers == 0 && r.local_size > 1) c.workers = r.local_size - 1;
  } else {
    c.role = Role::worker;
    c.manager_file = r.address_file;
    if (c.workers == 0 && r.local_size > 0) c.workers = r.local_size;
  }
  c.rendezvous = true;
}

}  // namespace calypso
