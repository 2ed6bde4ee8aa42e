// Reads the CALYPSO_* environment once, with a clear error for every bad value.
#include "config.hpp"

#include "rank_launch.hpp"

#include <calypso/error.hpp>

#include <sched.h>

#include <cstring>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <stdexcept>

namespace calypso {
namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? v : nullptr;
}

[[noreturn]] void bad(const char* name, const char* value, const char* expected) {
  throw Error(std::string(name) + "=" + value + ": expected " + expected);
}

// Decimal, or hexadecimal after 0x (addresses, keys): digits only. Not strtoull's base 0,
// which reads 010 as 8, nor its tolerance of a leading space, a sign (-1 wraps) or, in
// base 16, a second 0x. Sets end past the digits; false without digits or on overflow.
bool parse_number(const char* text, unsigned long long& n, const char*& end) {
  const bool hex = text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
  const char* digits = hex ? text + 2 : text;
  const std::size_t count = std::strspn(digits, hex ? "0123456789abcdefABCDEF" : "0123456789");
  if (count == 0) return false;
  char* stop = nullptr;
  errno = 0;
  n = std::strtoull(digits, &stop, hex ? 16 : 10);
  if (errno != 0 || stop != digits + count) return false;
  end = stop;
  return true;
}

std::string hex(std::uint64_t n) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(n));
  return text;
}

// as_hex: the limits in the message are addresses, said as they are written.
template <class T>
void read_uint(const char* name, T& out, std::uint64_t lo, std::uint64_t hi, bool as_hex = false) {
  const char* v = env(name);
  if (v == nullptr) return;
  unsigned long long n = 0;
  const char* end = v;
  if (!parse_number(v, n, end) || *end != '\0' || n < lo || n > hi) {
    std::string expected = "an integer in [";
    expected += as_hex ? hex(lo) : std::to_string(lo);
    expected += ", ";
    expected += as_hex ? hex(hi) : std::to_string(hi);
    expected += "]";
    bad(name, v, expected.c_str());
  }
  out = static_cast<T>(n);
}

// A 0/1 switch; out keeps its default when the variable is unset.
void read_flag(const char* name, bool& out) {
  std::uint32_t v = out ? 1 : 0;
  read_uint(name, v, 0, 1);
  out = v != 0;
}

void read_ms(const char* name, std::chrono::milliseconds& out, std::uint64_t lo) {
  std::uint64_t ms = static_cast<std::uint64_t>(out.count());
  read_uint(name, ms, lo, 86'400'000);
  out = std::chrono::milliseconds(ms);
}

void read_size(const char* name, std::size_t& out) {
  const char* v = env(name);
  if (v != nullptr && !parse_size(v, out)) bad(name, v, "a size such as 4096, 16K, 512M or 2G");
}

void read_string(const char* name, std::string& out) {
  if (const char* v = env(name)) out = v;
}

std::uint64_t random_job_key() {
  std::random_device rd;
  std::uint64_t key = 0;
  while (key == 0) key = (std::uint64_t{rd()} << 32) | rd();
  return key;
}

void read_role(Config& c) {
  const char* v = env("CALYPSO_ROLE");
  if (v == nullptr || std::string(v) == "manager") return;
  if (std::string(v) != "worker") bad("CALYPSO_ROLE", v, "manager or worker");
  c.role = Role::worker;
}

void read_stats(Config& c) {
  const char* v = env("CALYPSO_STATS");
  if (v == nullptr) return;
  std::string s(v);
  if (s == "0" || s == "off") c.stats = StatsFormat::off;
  else if (s == "1" || s == "text") c.stats = StatsFormat::text;
  else if (s == "json") c.stats = StatsFormat::json;
  else bad("CALYPSO_STATS", v, "off, text or json");
}

void read_schedule(Config& c) {
  const char* v = env("CALYPSO_SCHEDULE");
  if (v == nullptr || std::string(v) == "eager") return;
  if (std::string(v) != "static") bad("CALYPSO_SCHEDULE", v, "eager or static");
  c.static_schedule = true;
}

// An auto|on|off switch: the value, checked, or nullptr when the variable is unset.
const char* read_auto_on_off(const char* name) {
  const char* v = env(name);
  if (v == nullptr) return nullptr;
  const std::string s(v);
  if (s != "auto" && s != "on" && s != "off") bad(name, v, "auto, on or off");
  return v;
}

void read_log(Config& c) {
  const char* v = env("CALYPSO_LOG");
  if (v == nullptr) return;
  std::string s(v);
  const char* names[] = {"error", "warn", "info", "debug"};
  for (int i = 0; i < 4; ++i) {
    if (s == names[i]) { c.log_level = i; return; }
  }
  bad("CALYPSO_LOG", v, "error, warn, info or debug");
}

void check(const Config& c) {
  if (!valid_page_size(c.page_size)) {
    throw Error("CALYPSO_PAGE_SIZE=" + std::to_string(c.page_size) +
                ": expected a power of two between 4K and 512K");
  }
  if (c.region_size < c.page_size || c.region_size % c.page_size != 0) {
    throw Error("CALYPSO_REGION_SIZE must be a non-zero multiple of CALYPSO_PAGE_SIZE");
  }
  if (c.local_results % 4096 != 0 || c.local_results > (std::size_t{1} << 32)) {
    throw Error("CALYPSO_LOCAL_RESULTS=" + std::to_string(c.local_results) +
                ": expected 0 (off) or a multiple of 4K up to 4G");
  }
  if (c.region_address % (std::size_t{1} << 21) != 0) {
    throw Error("CALYPSO_REGION_ADDRESS must be aligned to 2 MiB");
  }
  if (c.role == Role::worker && c.manager_address.empty() && c.manager_file.empty()) {
    throw Error("CALYPSO_ROLE=worker needs CALYPSO_MANAGER (the job address) or "
                "CALYPSO_MANAGER_FILE; start workers with calypso-run");
  }
  // The manager's alone: a worker joining from elsewhere counts its own host's workers.
  if (c.role == Role::manager && c.expect_workers != 0 && c.expect_workers < c.workers) {
    throw Error("CALYPSO_EXPECT_WORKERS=" + std::to_string(c.expect_workers) + " is fewer than CALYPSO_WORKERS=" +
                std::to_string(c.workers) + " (the workers started on this host)");
  }
  if (c.role == Role::manager && c.static_schedule && c.job_workers() == 0) {
    throw Error("CALYPSO_SCHEDULE=static needs CALYPSO_WORKERS or CALYPSO_EXPECT_WORKERS "
                "(calypso-run -n or --expect sets them)");
  }
  if (c.suspect_after <= c.heartbeat) {
    throw Error("CALYPSO_SUSPECT_MS must be larger than CALYPSO_HEARTBEAT_MS");
  }
}

}  // namespace

unsigned usable_cpus() {
  // A dynamic set: a fixed cpu_set_t holds 1024 CPUs, and the call fails on larger hosts.
  struct Free {
    void operator()(cpu_set_t* set) const noexcept { CPU_FREE(set); }
  };
  for (int n = 1024; n <= (1 << 20); n *= 4) {
    std::unique_ptr<cpu_set_t, Free> set(CPU_ALLOC(n));
    if (!set) break;
    const std::size_t size = CPU_ALLOC_SIZE(n);
    if (sched_getaffinity(0, size, set.get()) == 0) return static_cast<unsigned>(CPU_COUNT_S(size, set.get()));
    if (errno != EINVAL) break;   // EINVAL: the mask is larger than this set
  }
  return 1;
}

std::chrono::microseconds default_poll_window(unsigned cpus, std::uint64_t local_processes) {
  return cpus >= local_processes ? std::chrono::microseconds(50) : std::chrono::microseconds(0);
}

bool default_worker_batch(unsigned cpus, std::uint64_t local_processes) { return local_processes > cpus; }

bool parse_size(const std::string& text, std::size_t& out) {
  unsigned long long n = 0;
  const char* end = nullptr;
  if (!parse_number(text.c_str(), n, end)) return false;   // digits as read_uint takes them
  std::string suffix(end);
  unsigned shift = 0;
  if (suffix == "K" || suffix == "k" || suffix == "KiB") shift = 10;
  else if (suffix == "M" || suffix == "m" || suffix == "MiB") shift = 20;
  else if (suffix == "G" || suffix == "g" || suffix == "GiB") shift = 30;
  else if (!suffix.empty()) return false;
  if (n > (~0ull >> shift)) return false;
  out = static_cast<std::size_t>(n << shift);
  return true;
}

Config Config::from_environment() {
  Config c;
  read_role(c);
  read_string("CALYPSO_MANAGER", c.manager_address);
  read_string("CALYPSO_MANAGER_FILE", c.manager_file);
  read_string("CALYPSO_PROVIDER", c.provider);
  read_string("CALYPSO_BIND", c.bind);
  read_string("CALYPSO_ADDRESS_FILE", c.address_file);
  read_uint("CALYPSO_LAUNCHER_FD", c.launcher_fd, 3, 1 << 20);
  read_uint("CALYPSO_JOB_KEY", c.job_key, 0, ~0ull);
  read_uint("CALYPSO_REGION_ADDRESS", c.region_address, 1ull << 32, 1ull << 46, true);
  read_size("CALYPSO_REGION_SIZE", c.region_size);
  read_size("CALYPSO_PAGE_SIZE", c.page_size);
  read_size("CALYPSO_PREFAULT", c.prefault);
  read_uint("CALYPSO_FETCH_PAGES", c.fetch_pages, 1, 64);
  read_uint("CALYPSO_WRITE_AHEAD", c.write_ahead, 1, 64);
  read_uint("CALYPSO_FETCH_AHEAD", c.fetch_ahead, 1, 64);
  read_uint("CALYPSO_PUSH_PAGES", c.push_pages, 0, 64);
  read_uint("CALYPSO_RERUN_AFTER_PCT", c.rerun_after_pct, 0, 100000);
  read_uint("CALYPSO_PIPELINE", c.pipeline, 1, 16);
  if (const char* v = read_auto_on_off("CALYPSO_RMA_FETCH")) c.rma_fetch = v;
  read_ms("CALYPSO_HEARTBEAT_MS", c.heartbeat, 10);
  read_ms("CALYPSO_SUSPECT_MS", c.suspect_after, 50);
  read_ms("CALYPSO_NO_WORKER_TIMEOUT_MS", c.no_worker_timeout, 100);
  read_ms("CALYPSO_MANAGER_TIMEOUT_MS", c.manager_timeout, 100);
  read_uint("CALYPSO_WORKERS", c.workers, 0, 1 << 20);
  read_uint("CALYPSO_EXPECT_WORKERS", c.expect_workers, 0, 1 << 20);
  if (auto ranks = find_rank_launch(env)) apply_rank_launch(*ranks, c);
  // The key is what keeps others' processes out of the job (they can reach its port): a
  // manager that was given none (by hand, or by srun or mpirun) makes one. 0 is "none".
  if (c.role == Role::manager && c.job_key == 0) c.job_key = random_job_key();
  // The manager shares this host with the workers calypso-run started beside it (their
  // address comes in a local file); workers joined with --join have it elsewhere. A
  // rank's worker counts the launcher's processes on its host (the manager among them,
  // if there).
  const bool manager_here = c.role == Role::manager || (!c.manager_file.empty() && !c.rendezvous);
  const unsigned cpus = usable_cpus();
  const std::uint64_t local_processes = c.workers + (manager_here ? 1u : 0u);
  std::uint64_t poll_us = static_cast<std::uint64_t>(default_poll_window(cpus, local_processes).count());
  read_uint("CALYPSO_POLL_US", poll_us, 0, 10000);
  c.poll_window = std::chrono::microseconds(poll_us);
  c.worker_batch = default_worker_batch(cpus, local_processes);
  if (const char* v = read_auto_on_off("CALYPSO_WORKER_BATCH"); v != nullptr && std::string(v) != "auto") {
    c.worker_batch = std::string(v) == "on";
  }
  read_uint("CALYPSO_MAX_ATTEMPTS", c.max_attempts, 1, 1000);
  read_flag("CALYPSO_CHECK_CONFLICTS", c.check_conflicts);
  read_flag("CALYPSO_LOCAL_READS", c.local_reads);
  read_size("CALYPSO_LOCAL_RESULTS", c.local_results);
  read_flag("CALYPSO_SHARE_FROZEN", c.share_frozen);
  read_flag("CALYPSO_LOCAL_MESSAGES", c.local_messages);
  read_flag("CALYPSO_BUNDLE", c.bundle);
  read_stats(c);
  read_schedule(c);
  read_string("CALYPSO_STATS_FILE", c.stats_file);
  read_log(c);
  check(c);
  return c;
}

}  // namespace calypso
