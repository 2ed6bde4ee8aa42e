// calypso::Runtime: decides the role from the configuration and runs it.
#include <calypso/runtime.hpp>

#include "config.hpp"
#include "dsm/region.hpp"
#include "log.hpp"
#include "manager_impl.hpp"
#include "sched/fault_injection.hpp"
#include "sched/start_again.hpp"
#include "sched/worker_loop.hpp"
#include "shared_vars.hpp"
#include "private_file.hpp"

#include <calypso/error.hpp>

#include <malloc.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sys/resource.h>
#include <unistd.h>

namespace calypso {

struct Runtime::Impl {
  struct Close {
    void operator()(std::FILE* f) const noexcept { std::fclose(f); }
  };
  Config config;
  // CALYPSO_STATS_FILE, opened when the manager starts: a path that cannot be written
  // is a bad setting, found before the run rather than silently at its end.
  std::unique_ptr<std::FILE, Close> stats_file;
  std::unique_ptr<ManagerImpl> manager;
  std::unique_ptr<sched::WorkerLoop> worker;
  bool owns_the_process = false;   // it set g_runtime_exists (cleared when it goes)
  ~Impl();
};

namespace {

void publish_address(const Config& c, const std::string& address) {
  if (c.address_file.empty()) {
    std::fprintf(stderr,
                 "calypso: manager waiting for workers; start them with\n"
                 "  calypso-run --join %s PROGRAM [ARGS...]\n", address.c_str());
    return;
  }
  // Readable by its owner only: the address holds the job key, and a rendezvous
  // directory may be one that others can read (private_file.hpp).
  const std::string why = write_private_file(c.address_file, address + "\n");
  if (!why.empty()) {
    throw Error("calypso: cannot write the job address to " + c.address_file + " (" + why + ")" +
                (c.rendezvous ? ": CALYPSO_RENDEZVOUS must name a directory this process can write"
                              : " (CALYPSO_ADDRESS_FILE)"));
  }
}

long peak_rss_kib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

void print_stats(const Config& c, std::FILE* out, const Stats& s) {
  if (c.stats == StatsFormat::off) return;
  // One argument list for both formats, which take the counters in the same order.
  const bool json = c.stats == StatsFormat::json;
  std::fprintf(out,
               json ? "{\"parallel_steps\":%llu,\"segments\":%llu,\"attempts\":%llu,\"reexecutions\":%llu,"
                      "\"results_discarded\":%llu,\"pages_fetched\":%llu,\"pages_pushed\":%llu,\"diff_bytes\":%llu,"
                      "\"bundled_results\":%llu,\"ring_results\":%llu,\"local_messages\":%llu,\"workers_joined\":%llu,\"workers_lost\":%llu,"
                      "\"parallel_seconds\":%.6f,\"collation_seconds\":%.6f,\"manager_peak_rss_kib\":%ld}\n"
                    : "calypso stats: %llu steps, %llu segments, %llu attempts (%llu re-executions, "
                      "%llu results discarded), %llu pages fetched, %llu pages pushed, %llu diff bytes, %llu results "
                      "bundled, %llu results and %llu messages through shared memory, %llu workers joined, %llu lost, %.3f s in "
                      "parallel steps (%.3f s applying results), manager peak RSS %ld KiB\n",
               (unsigned long long)s.parallel_steps, (unsigned long long)s.segments,
               (unsigned long long)s.attempts, (unsigned long long)s.reexecutions,
               (unsigned long long)s.results_discarded, (unsigned long long)s.pages_fetched,
               (unsigned long long)s.pages_pushed, (unsigned long long)s.diff_bytes,
               (unsigned long long)s.bundled_results, (unsigned long long)s.ring_results,
               (unsigned long long)s.local_messages,
               (unsigned long long)s.workers_joined, (unsigned long long)s.workers_lost,
               s.parallel_seconds, s.collation_seconds, peak_rss_kib());
  if (std::fflush(out) != 0 || std::ferror(out)) {
    std::fprintf(stderr, "calypso: could not write the statistics to CALYPSO_STATS_FILE=%s\n", c.stats_file.c_str());
  }
}

}  // namespace

namespace {
std::atomic<bool> g_runtime_exists{false};   // one Runtime per process at a time
}  // namespace

Runtime::Impl::~Impl() {
  // A rank launch's address file is the manager's (rank_launch.hpp); calypso-run removes
  // the one it asked for with its directory.
  if (manager && config.rendezvous) ::unlink(config.address_file.c_str());
  manager.reset();
  worker.reset();
  if (owns_the_process) g_runtime_exists = false;
}

Runtime::Runtime(int, char**) : impl_(std::make_unique<Impl>()) {
  // The region is at one fixed address, and the fault handler and Shared<> variables are
  // the process's: a second Runtime could only collide with the first.
  if (g_runtime_exists.exchange(true)) {
    throw Error("calypso: a process has one calypso::Runtime at a time, and one exists already");
  }
  impl_->owns_the_process = true;
  Config& c = impl_->config;
  try {
    c = Config::from_environment();
    sched::configure_fault_injection();   // every role checks it, so a typo stops the manager too
  } catch (const Error& e) {
    // A worker has no caller to hand the error to: say why and stop.
    const char* role = std::getenv("CALYPSO_ROLE");
    if (role == nullptr || std::string(role) != "worker") throw;
    std::fprintf(stderr, "calypso[worker]: %s\n", e.what());
    std::exit(1);
  }
  log::set_level(c.log_level);
  // Before libfabric starts (it reads its variables once): tcp;ofi_rxm preposts
  // FI_OFI_RXM_MSG_RX_SIZE bounce buffers of 16 KiB per endpoint, 4096 by default, which
  // is 64 MiB per endpoint and was half of every process's memory. Our traffic has few
  // messages in flight per peer. A value the user set wins. (The eager buffer size, the
  // same for every process, is set where endpoints are opened: net/endpoint.cpp.)
  setenv("FI_OFI_RXM_MSG_RX_SIZE", c.role == Role::manager ? "1024" : "256", 0);
  if (c.role == Role::manager) {
    log::set_prefix("manager");
    if (c.stats != StatsFormat::off && !c.stats_file.empty()) {
      impl_->stats_file.reset(std::fopen(c.stats_file.c_str(), "w"));
      if (!impl_->stats_file) {
        throw Error("CALYPSO_STATS_FILE=" + c.stats_file + ": cannot open it for writing (" +
                    std::strerror(errno) + ")");
      }
    }
    // Workers take the geometry from the manager's welcome, so only the manager decides.
    if (shared_vars_size() > c.region_size) {
      throw Error("calypso: the program's Shared<> variables take " + std::to_string(shared_vars_size() >> 20) +
                  " MiB, more than the region (CALYPSO_REGION_SIZE=" + std::to_string(c.region_size >> 20) +
                  " MiB): raise CALYPSO_REGION_SIZE, or put large data in the shared heap (m.alloc)");
    }
    const std::size_t page = dsm::safe_page_size(c.region_size, c.page_size);
    if (page > kMaxFetchBytes) {
      throw Error("CALYPSO_REGION_SIZE=" + std::to_string(c.region_size >> 20) + " MiB would need pages of " +
                  std::to_string(page >> 10) + " KiB to stay under vm.max_map_count, and pages are at most " +
                  std::to_string(kMaxFetchBytes >> 10) + " KiB: use a smaller region, or raise the limit "
                  "(sysctl vm.max_map_count=N, as root)");
    }
    if (page != c.page_size) {
      LOG_WARN("page size raised from %zu to %zu bytes so that a %zu MiB region can never "
               "need more than vm.max_map_count mappings", c.page_size, page, c.region_size >> 20);
      c.page_size = page;
    }
    // calypso::Error is the one exception type a program sees (error.hpp); the
    // endpoint and the region report theirs in their own types.
    try {
      impl_->manager = std::make_unique<ManagerImpl>(c);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error(std::string("calypso: the manager could not start: ") + e.what());
    }
    publish_address(c, impl_->manager->job_address());
  } else {
    log::set_prefix("worker");
    // What the program holds open now is its own, for a new image to keep should this
    // worker start again (sched/start_again.hpp): noted before libfabric opens anything.
    sched::note_inherited_descriptors();
    // The process is the runtime's. Every segment allocates and frees buffers of up to
    // megabytes (results, messages); with glibc's defaults those come from fresh mmaps
    // or a trimmed heap each time, and the kernel zeroes every page again (measured:
    // page clearing took twice the CPU time of jacobi's sweep). Keep freed memory.
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    // A worker that cannot join has nothing to hand back to the program: say why and stop.
    try {
      impl_->worker = std::make_unique<sched::WorkerLoop>(c);
    } catch (const sched::JobEnded& e) {
      std::fprintf(stderr, "%s\n", e.what());
      std::exit(0);
    } catch (const std::exception& e) {
      // A worker that lost its manager and started again to try once more ends as a
      // lost manager does when that try fails (sched/start_again.hpp).
      if (sched::why_started() == sched::StartReason::lost_manager) {
        std::string why = e.what();
        if (why.starts_with("calypso: ")) why.erase(0, 9);
        std::fprintf(stderr, "calypso: lost the manager (nothing heard for CALYPSO_MANAGER_TIMEOUT_MS; joining again: "
                     "%s); worker exiting\n", why.c_str());
        std::exit(3);
      }
      std::fprintf(stderr, "%s\n", e.what());
      std::exit(1);
    }
  }
}

Runtime::~Runtime() = default;

bool Runtime::is_manager() const { return impl_->manager != nullptr; }

int Runtime::run(const std::function<int(Manager&)>& main) {
  if (impl_->worker) {
    // A worker ends inside run() (the job's end, a lost manager); an error escaping it
    // is said here, not left to the program's main (whose return would look like an
    // exit() of its own).
    try {
      return impl_->worker->run();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "calypso: the worker stopped on an error: %s\n", e.what());
      std::fflush(stderr);
      _exit(1);
    }
  }
  Manager m(*impl_->manager);
  int rc = 1;
  try {
    rc = main(m);
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
  }
  impl_->manager->shutdown(rc);
  print_stats(impl_->config, impl_->stats_file ? impl_->stats_file.get() : stderr, m.stats());
  return rc;
}

}  // namespace calypso
