// Every tunable of the runtime, read once from CALYPSO_* environment variables (the
// launcher sets the role and addresses; users set the rest). The README documents each
// variable in one table; keep that table and this file in step.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace calypso {

enum class Role : std::uint8_t { manager, worker };
enum class StatsFormat : std::uint8_t { off, text, json };

// The most page bytes one fetch asks for, and so the largest page: a page_data reply
// (pages, their kinds and a header) must fit one message (1 MiB, endpoint.hpp), also on
// the message path that verbs and every fallback take.
inline constexpr std::size_t kMaxFetchBytes = std::size_t{512} << 10;
// A DSM page size the runtime takes: a power of two from 4K to kMaxFetchBytes. (The
// manager checks CALYPSO_PAGE_SIZE with it, a worker the page size its welcome names.)
constexpr bool valid_page_size(std::size_t bytes) {
  return bytes >= 4096 && bytes <= kMaxFetchBytes && (bytes & (bytes - 1)) == 0;
}

struct Config {
  Role role = Role::manager;
  std::string manager_address;      // CALYPSO_MANAGER (worker): the job address
  std::string manager_file;         // CALYPSO_MANAGER_FILE (worker): wait for the address here
  std::string provider = "tcp";     // CALYPSO_PROVIDER
  std::string bind;                 // CALYPSO_BIND: host[:port] the manager listens on
  std::string address_file;         // CALYPSO_ADDRESS_FILE: manager writes its address here
  bool rendezvous = false;          // started by srun/mpirun with CALYPSO_RENDEZVOUS (rank_launch.hpp):
                                    // the address file is the manager's to remove, a worker's wait longer
  std::uint32_t launcher_fd = 0;    // CALYPSO_LAUNCHER_FD (manager): calypso-run's notices of
                                    // its workers' exits (a socket); 0: none
  std::uint64_t job_key = 0;        // CALYPSO_JOB_KEY: workers must present it
  std::uintptr_t region_address = 0x3c0000000000;   // CALYPSO_REGION_ADDRESS
  std::size_t region_size = std::size_t{512} << 20;  // CALYPSO_REGION_SIZE
  std::size_t page_size = 16 << 10;                  // CALYPSO_PAGE_SIZE
  std::size_t prefault = std::size_t{256} << 20;     // CALYPSO_PREFAULT: region bytes allocated ahead
  std::uint32_t fetch_pages = 4;                     // CALYPSO_FETCH_PAGES
  std::uint32_t write_ahead = 16;                    // CALYPSO_WRITE_AHEAD
  std::uint32_t fetch_ahead = 32;                    // CALYPSO_FETCH_AHEAD
  std::uint32_t push_pages = 16;                     // CALYPSO_PUSH_PAGES
  std::uint32_t rerun_after_pct = 150;               // CALYPSO_RERUN_AFTER_PCT
  std::uint32_t pipeline = 2;                        // CALYPSO_PIPELINE: assignments in flight per worker
  std::string rma_fetch = "auto";                    // CALYPSO_RMA_FETCH: auto|on|off
  bool local_reads = true;                           // CALYPSO_LOCAL_READS: workers on the manager's host
  std::size_t local_results = std::size_t{16} << 20; // CALYPSO_LOCAL_RESULTS: result ring per local worker, 0 off
  bool share_frozen = true;                          // CALYPSO_SHARE_FROZEN: local workers map frozen pages
  bool local_messages = true;                        // CALYPSO_LOCAL_MESSAGES: messages through shared memory on one host
  // Whether endpoints on this provider ask for RMA page reads. They beat a page_data
  // round trip on shm (one cross-memory copy) and on tcp;ofi_rxm (no copies through
  // the manager's event loop; measured: half the fetch time). Not by default on verbs:
  // registering the whole region there would pin it; "on" asks anyway.
  bool wants_rma(const std::string& on_provider) const {
    return rma_fetch == "on" || (rma_fetch == "auto" && on_provider != "verbs");
  }
  std::chrono::milliseconds heartbeat{200};          // CALYPSO_HEARTBEAT_MS
  std::chrono::milliseconds suspect_after{3000};     // CALYPSO_SUSPECT_MS
  std::chrono::milliseconds no_worker_timeout{60000};// CALYPSO_NO_WORKER_TIMEOUT_MS
  std::uint32_t max_attempts = 3;                    // CALYPSO_MAX_ATTEMPTS
  bool check_conflicts = false;                      // CALYPSO_CHECK_CONFLICTS
  bool bundle = true;                                // CALYPSO_BUNDLE: short segments share messages
  bool worker_batch = false;                         // CALYPSO_WORKER_BATCH=auto|on|off, resolved here
  bool static_schedule = false;                      // CALYPSO_SCHEDULE=static (baseline)
  std::uint32_t workers = 0;                         // CALYPSO_WORKERS: calypso-run -n (this host's)
  std::uint32_t expect_workers = 0;                  // CALYPSO_EXPECT_WORKERS: calypso-run --expect
  // The job's workers on every host: what the baseline's blocks and wait_for_workers()
  // count on.
  std::uint32_t job_workers() const noexcept { return expect_workers != 0 ? expect_workers : workers; }
  std::chrono::milliseconds manager_timeout{20000};  // CALYPSO_MANAGER_TIMEOUT_MS
  std::chrono::microseconds poll_window{50};         // CALYPSO_POLL_US, else default_poll_window()
  StatsFormat stats = StatsFormat::off;              // CALYPSO_STATS
  std::string stats_file;                            // CALYPSO_STATS_FILE (default stderr)
  int log_level = 1;                                 // CALYPSO_LOG: 0 error .. 3 debug

  // Reads and validates the environment; throws calypso::Error naming the variable.
  static Config from_environment();
};

// Parses "512M", "16K", "1G", "4096". Returns false on junk.
bool parse_size(const std::string& text, std::size_t& out);

// The poll window when CALYPSO_POLL_US is not set. Polling after an event (the manager)
// or for an awaited reply (a worker) catches a quick answer without two wake-ups, and
// costs nothing while every process has a CPU of its own. When the Calypso processes on
// the host (the workers calypso-run started there, and the manager if it runs there)
// outnumber the CPUs, each polled microsecond is taken from another of them (README,
// CALYPSO_POLL_US, has the measurements). So 50 us when the CPUs this process may run on
// are at least the local processes, else 0.
std::chrono::microseconds default_poll_window(unsigned cpus, std::uint64_t local_processes);

// Whether workers run segments under SCHED_BATCH when CALYPSO_WORKER_BATCH is auto: when
// the Calypso processes on the host (as for default_poll_window) outnumber the CPUs, so
// that a worker woken by its next assignment would find the manager's loop on a CPU it
// could take (sched/worker_loop.cpp, run_as_batch, has why and the measurements).
bool default_worker_batch(unsigned cpus, std::uint64_t local_processes);

// CPUs this process may run on: its affinity mask, which taskset and cpuset limits
// (docker --cpuset-cpus) narrow. CPU quotas (docker --cpus) are not seen.
unsigned usable_cpus();

}  // namespace calypso
