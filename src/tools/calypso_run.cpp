// calypso-run: start a Calypso-DSM program on a manager and N local workers (and workers
// on other hosts, --hosts, through ssh), or add workers to a job that is already running
// (--join). Returns the manager's exit code and leaves no process behind, on success, on
// error, and on Ctrl-C.
#include "launcher.hpp"
#include "private_file.hpp"
#include "unique_fd.hpp"

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <getopt.h>
#include <poll.h>
#include <iostream>
#include <sstream>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

using namespace std::chrono_literals;
using calypso::tools::Launcher;

// --hosts: a host that runs `workers` workers, started there through CALYPSO_RSH.
struct RemoteHost {
  std::string name;
  int workers = 1;
};

struct Options {
  int workers = 2;
  bool workers_given = false;
  int expect = -1;   // --expect: the job's workers on every host; -1: not given
  std::string provider = "tcp";
  std::string join;
  std::string bind;
  std::string pid_file;
  std::string address_file;
  std::vector<RemoteHost> hosts;
  bool watch_stdin = false;   // --watch-stdin (with --join): stop the workers when stdin closes
  std::vector<std::string> program;
  int remote_workers() const {
    int n = 0;
    for (const auto& h : hosts) n += h.workers;
    return n;
  }
};

void usage(FILE* out) {
  std::fprintf(out,
      "usage: calypso-run [-n N] [--hosts HOST[:N],...] [--expect M] [--provider tcp|shm|verbs]\n"
      "                   [--bind HOST[:PORT]] PROGRAM [ARGS...]\n"
      "       calypso-run --join ADDRESS|- [-n N] PROGRAM [ARGS...]\n"
      "\n"
      "Starts PROGRAM as the manager and N workers (default 2) on this host.\n"
      "  -n, --workers N      number of local workers (0 allowed: join them later; default 0\n"
      "                       with --hosts)\n"
      "      --hosts LIST     also start N workers (default 1) on each HOST of the list, through\n"
      "                       CALYPSO_RSH (default: ssh -o BatchMode=yes), with this calypso-run's\n"
      "                       path, PROGRAM's absolute path, the working directory and the\n"
      "                       CALYPSO_* and FI_* settings; the manager must listen on an address\n"
      "                       they reach (--bind)\n"
      "      --expect M       the job's workers on all hosts, N and those that join (default\n"
      "                       N): what the scheduling baseline (CALYPSO_SCHEDULE=static)\n"
      "                       and the program's wait_for_workers() wait for\n"
      "  -p, --provider NAME  libfabric provider: tcp (default, or CALYPSO_PROVIDER if set),\n"
      "                       shm (one host), verbs\n"
      "  -b, --bind HOST[:PORT]  address the manager listens on (tcp/verbs)\n"
      "  -j, --join ADDRESS   start N (default 1) workers for a running job; ADDRESS is\n"
      "                       what the manager printed (PROVIDER/ENDPOINT/KEY); - reads it\n"
      "                       from standard input (not shown by ps)\n"
      "      --watch-stdin    with --join: stop the workers when standard input closes (what\n"
      "                       --hosts uses: the remote workers end with the calypso-run that\n"
      "                       started them)\n"
      "      --pid-file FILE  write 'manager PID' and 'worker PID' lines (for tools)\n"
      "      --address-file FILE  write the job address there once it is known\n"
      "  -h, --help           this text\n");
}

int worker_count(const char* option, const char* arg, long least) {
  char* end = nullptr;
  const long n = std::strtol(arg, &end, 10);
  if (*end != '\0' || end == arg || n < least || n > 1024) {
    std::fprintf(stderr, "calypso-run: %s %s: expected a number of workers in [%ld, 1024]\n", option, arg, least);
    std::exit(2);
  }
  return static_cast<int>(n);
}

// --hosts a,b:4,c: names as the remote shell command takes them (no spaces, quotes or
// option-like leading '-'), each with 1 to 1024 workers.
std::vector<RemoteHost> parse_hosts(const std::string& list) {
  std::vector<RemoteHost> hosts;
  std::size_t at = 0;
  for (;;) {
    const std::size_t comma = list.find(',', at);
    const std::string item = list.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    RemoteHost h;
    const std::size_t colon = item.rfind(':');
    h.name = item.substr(0, colon);
    if (colon != std::string::npos) h.workers = worker_count("--hosts", item.substr(colon + 1).c_str(), 1);
    if (h.name.empty() || h.name[0] == '-' || h.name.find_first_of(" \t'\"\\;&|$`<>()") != std::string::npos) {
      std::fprintf(stderr, "calypso-run: --hosts %s: '%s' is not a host name (HOST[:N],HOST[:N],...)\n",
                   list.c_str(), item.c_str());
      std::exit(2);
    }
    hosts.push_back(h);
    if (comma == std::string::npos) return hosts;
    at = comma + 1;
  }
}

Options parse(int argc, char** argv) {
  Options o;
  // The environment's choice stands unless --provider overrides it: calypso-run passes
  // the provider on to the manager and workers, and silently replacing a
  // CALYPSO_PROVIDER=shm the user set with tcp would surprise.
  if (const char* p = std::getenv("CALYPSO_PROVIDER"); p != nullptr && *p != '\0') o.provider = p;
  static const option longs[] = {
      {"workers", required_argument, nullptr, 'n'}, {"provider", required_argument, nullptr, 'p'},
      {"bind", required_argument, nullptr, 'b'},    {"join", required_argument, nullptr, 'j'},
      {"pid-file", required_argument, nullptr, 'P'}, {"help", no_argument, nullptr, 'h'},
      {"address-file", required_argument, nullptr, 'A'}, {"expect", required_argument, nullptr, 'E'},
      {"hosts", required_argument, nullptr, 'H'},   {"watch-stdin", no_argument, nullptr, 'W'},
      {nullptr, 0, nullptr, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "+n:p:b:j:h", longs, nullptr)) != -1) {
    switch (c) {
      case 'n':
        o.workers = worker_count("-n", optarg, 0);
        o.workers_given = true;
        break;
      case 'E': o.expect = worker_count("--expect", optarg, 1); break;
      case 'p': o.provider = optarg; break;
      case 'b': o.bind = optarg; break;
      case 'j': o.join = optarg; break;
      case 'P': o.pid_file = optarg; break;
      case 'A': o.address_file = optarg; break;
      case 'H': o.hosts = parse_hosts(optarg); break;
      case 'W': o.watch_stdin = true; break;
      case 'h': usage(stdout); std::exit(0);
      default: usage(stderr); std::exit(2);
    }
  }
  for (int i = optind; i < argc; ++i) o.program.emplace_back(argv[i]);
  if (o.program.empty()) {
    usage(stderr);
    std::exit(2);
  }
  if (!o.join.empty() && !o.workers_given) o.workers = 1;
  if (o.watch_stdin && o.join.empty()) {
    std::fprintf(stderr, "calypso-run: --watch-stdin goes with --join\n");
    std::exit(2);
  }
  if (!o.hosts.empty() && !o.join.empty()) {
    std::fprintf(stderr, "calypso-run: --hosts starts a job's workers elsewhere: give it where the job starts, not "
                         "with --join\n");
    std::exit(2);
  }
  if (!o.hosts.empty() && o.provider == "shm") {
    std::fprintf(stderr, "calypso-run: --hosts with the shm provider: shm reaches only this host (use tcp or verbs)\n");
    std::exit(2);
  }
  if (!o.hosts.empty() && !o.workers_given) o.workers = 0;   // the manager's host: only what -n asks
  if (!o.join.empty() && o.workers == 0) {
    std::fprintf(stderr, "calypso-run: --join with -n 0 would start no worker: give -n 1 or more\n");
    std::exit(2);
  }
  if (o.expect >= 0 && !o.join.empty()) {
    std::fprintf(stderr, "calypso-run: --expect is the manager's: give it where the job starts, not with --join\n");
    std::exit(2);
  }
  if (o.expect >= 0 && o.expect < o.workers + o.remote_workers()) {
    std::fprintf(stderr, "calypso-run: --expect %d is fewer than the %d workers -n and --hosts start (-n, default 2)\n",
                 o.expect, o.workers + o.remote_workers());
    std::exit(2);
  }
  return o;
}

class PidFile {
 public:
  explicit PidFile(const std::string& path) : path_(path) {
    if (!path.empty()) std::ofstream(path, std::ios::trunc);
  }
  void add(const char* role, pid_t pid) {
    if (path_.empty()) return;
    std::ofstream(path_, std::ios::app) << role << " " << pid << "\n";
  }

 private:
  std::string path_;
};

// The manager hears from the launcher which of its workers have exited (a socket it
// inherits: CALYPSO_LAUNCHER_FD), so that a program waiting for its workers
// (wait_for_workers) does not wait out its timeout for one that died before it joined,
// which only the launcher can see. Each exit is one packet: the worker's pid, 4 bytes.
// A socket rather than a pipe: a send after the manager is gone must fail with EPIPE
// (MSG_NOSIGNAL), not raise SIGPIPE in the launcher. Its end tells the manager the
// launcher is gone.
class ExitNotices {
 public:
  ExitNotices() {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
      std::fprintf(stderr, "calypso-run: socketpair: %s; the manager will not hear of workers that die before "
                           "joining (wait_for_workers waits its timeout for them)\n", std::strerror(errno));
      return;
    }
    // Above 2, so that a launcher started with a standard stream closed cannot hand the
    // manager its stdin as the socket.
    const calypso::UniqueFd a(fds[0]), b(fds[1]);
    read_ = calypso::UniqueFd(fcntl(a.get(), F_DUPFD_CLOEXEC, 3));
    write_ = calypso::UniqueFd(fcntl(b.get(), F_DUPFD_CLOEXEC, 3));
  }
  int read_end() const { return write_.get() >= 0 ? read_.get() : -1; }
  void close_read_end() { read_.reset(); }   // once the manager has it
  // A notice that cannot go (the manager has gone, or has not read hundreds) is dropped.
  void exited(pid_t worker) const {
    const auto pid = static_cast<std::int32_t>(worker);
    if (write_.get() >= 0) send(write_.get(), &pid, sizeof pid, MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  // --hosts: the remote shell `shell` failed before any of its `workers` could start.
  void remote_failed(pid_t shell, int workers) const {
    const std::int32_t notice[2] = {static_cast<std::int32_t>(shell), workers};
    if (write_.get() >= 0) send(write_.get(), notice, sizeof notice, MSG_NOSIGNAL | MSG_DONTWAIT);
  }

 private:
  calypso::UniqueFd read_, write_;
};

// Whether a remote shell's exit says none of its workers started: ssh could not connect
// (255), or the command was not found or could not run there (127, 126). The remote
// calypso-run's own codes are 0, 1, 2 and 128 + a signal.
bool never_started(int status) {
  if (!WIFEXITED(status)) return false;
  const int code = WEXITSTATUS(status);
  return code == 255 || code == 127 || code == 126;
}

// --hosts: the remote shell command (CALYPSO_RSH) that started each host's workers, by
// its pid: the host, and our end of its standard input, held open for the whole job (the
// remote calypso-run stops its workers when it closes: --watch-stdin).
struct RemoteStart {
  std::string host;
  int workers = 0;
  calypso::UniqueFd input;
};
using RemoteStarts = std::map<pid_t, RemoteStart>;

// The remote start a child is, or nullptr (a local worker).
const RemoteStart* remote_start(const RemoteStarts* remote, pid_t pid) {
  if (remote == nullptr) return nullptr;
  const auto it = remote->find(pid);
  return it != remote->end() ? &it->second : nullptr;
}

void report(const calypso::tools::ChildExit& e, const RemoteStart* from = nullptr) {
  if (WIFEXITED(e.status) && WEXITSTATUS(e.status) == 0) return;
  if (from != nullptr) {
    const int code = WIFEXITED(e.status) ? WEXITSTATUS(e.status) : -1;
    std::fprintf(stderr, "calypso-run: the workers on %s (remote shell pid %d) %s%s\n", from->host.c_str(),
                 e.pid, calypso::tools::describe_exit(e.status).c_str(),
                 code == 255 ? ": the remote shell could not connect, or run calypso-run there (is it at the same path?)"
                 : code == 127 ? ": calypso-run or the program was not found there (same paths on every host?)"
                               : "");
    return;
  }
  std::fprintf(stderr, "calypso-run: worker (pid %d) %s\n", e.pid, calypso::tools::describe_exit(e.status).c_str());
}

// Collects exits for up to timeout: reports workers', returns true when the manager's
// came (its status in manager_status). sig is set on SIGINT/SIGTERM/SIGHUP. The manager
// hears of local workers' exits; a remote shell's pid is not a worker's.
bool collect(Launcher& l, pid_t manager, std::chrono::milliseconds timeout, int& manager_status, int& sig,
             const ExitNotices* notices = nullptr, const RemoteStarts* remote = nullptr) {
  bool manager_done = false;
  for (const auto& e : l.wait(timeout, sig)) {
    if (e.pid == manager) {
      manager_status = e.status;
      manager_done = true;
    } else {
      const RemoteStart* from = remote_start(remote, e.pid);
      report(e, from);
      if (notices == nullptr) continue;
      if (from == nullptr) {
        notices->exited(e.pid);
      } else if (never_started(e.status)) {
        notices->remote_failed(e.pid, from->workers);   // a program waiting for them need not
      }
    }
  }
  return manager_done;
}

// Waits for the manager to write its address; empty if it died, took too long, or the
// launcher was interrupted.
std::string wait_for_address(Launcher& l, pid_t manager, const std::string& file, int& manager_status, int& sig,
                             const ExitNotices& notices) {
  for (auto deadline = std::chrono::steady_clock::now() + 60s; std::chrono::steady_clock::now() < deadline;) {
    std::ifstream f(file);
    std::string address;
    if (f >> address) return address;
    if (collect(l, manager, 20ms, manager_status, sig, &notices) || sig != 0) return {};
  }
  std::fprintf(stderr, "calypso-run: the manager did not publish its address within 60 s\n");
  return {};
}

// When every worker started here has gone and one of them failed, the manager keeps
// waiting (it cannot tell a job that lost its workers from one whose workers come with
// --join), so say once what it waits for instead of leaving a silent pause. Not at the
// first sight of it: a manager that is ending refuses workers that join late, and they
// exit before it does.
int supervise(Launcher& l, pid_t manager, const Options& o, const ExitNotices& notices, const RemoteStarts& remote) {
  bool said = false;
  int rounds_alone = 0;
  for (;;) {
    int sig = 0, status = 0;
    if (collect(l, manager, 1000ms, status, sig, &notices, &remote)) {
      // Its own output says why it returned non-zero; a signal it cannot have printed.
      if (WIFSIGNALED(status)) {
        std::fprintf(stderr, "calypso-run: the manager (pid %d) %s; stopping the job\n", manager,
                     calypso::tools::describe_exit(status).c_str());
      }
      return calypso::tools::shell_code(status);
    }
    if (sig != 0) {
      std::fprintf(stderr, "calypso-run: interrupted by signal %d; stopping the job\n", sig);
      return 128 + sig;
    }
    const bool alone = o.workers + o.remote_workers() > 0 && l.children() == 1 && l.failed_children() > 0;
    rounds_alone = alone ? rounds_alone + 1 : 0;
    if (!said && rounds_alone > 1) {
      said = true;
      std::fprintf(stderr,
                   "calypso-run: every worker started here (%d) has exited; the manager waits for workers "
                   "added with --join and fails the step after CALYPSO_NO_WORKER_TIMEOUT_MS "
                   "without one\n",
                   o.workers + o.remote_workers());
    }
  }
}

// What every worker calypso-run starts gets; the caller adds how to reach the manager.
// CALYPSO_WORKERS: how many it starts on this host (the poll window's default).
// IPATH_NO_BACKTRACE: keep libinfinipath (loaded by libfabric) from installing a crash handler.
std::map<std::string, std::string> worker_env(const Options& o) {
  return {{"CALYPSO_ROLE", "worker"}, {"IPATH_NO_BACKTRACE", "1"}, {"CALYPSO_WORKERS", std::to_string(o.workers)}};
}

// A word as a remote shell reads it back: in single quotes, each ' as '\''.
std::string shell_word(const std::string& w) {
  std::string out = "'";
  for (char c : w) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The settings remote workers take from this environment: CALYPSO_* and FI_*, but not
// those that say which process this is and where its manager is (the remote calypso-run
// sets them), nor files of this host.
bool forwarded(const std::string& name) {
  static const char* const kOwn[] = {"CALYPSO_ROLE",          "CALYPSO_MANAGER",       "CALYPSO_MANAGER_FILE",
                                     "CALYPSO_ADDRESS_FILE",  "CALYPSO_LAUNCHER_FD",   "CALYPSO_JOB_KEY",
                                     "CALYPSO_WORKERS",       "CALYPSO_EXPECT_WORKERS", "CALYPSO_BIND",
                                     "CALYPSO_RENDEZVOUS",    "CALYPSO_JOB_NAME",      "CALYPSO_STARTED_AGAIN",
                                     "CALYPSO_RSH",           "CALYPSO_STATS_FILE"};
  if (!name.starts_with("CALYPSO_") && !name.starts_with("FI_")) return false;
  for (const char* own : kOwn) {
    if (name == own) return false;
  }
  return true;
}

// --hosts: starts each host's workers with `calypso-run --join - -n N PROGRAM ARGS` run
// by CALYPSO_RSH (default ssh in batch mode: a password prompt would hang the job), from
// this calypso-run's path, PROGRAM's absolute path and this working directory (a shared
// file system, or the same installation on every host), with this environment's
// settings. The job address holds the key: it goes to the command's standard input, not
// its command line, which any user of either host could read with ps. Returns the remote
// shells' pids, for reports.
RemoteStarts start_remote(Launcher& l, const Options& o, const std::string& address, PidFile& pids) {
  RemoteStarts started;
  const char* rsh_text = std::getenv("CALYPSO_RSH");
  std::vector<std::string> rsh;
  {
    std::istringstream words(rsh_text != nullptr && *rsh_text != '\0' ? rsh_text : "ssh -o BatchMode=yes");
    for (std::string w; words >> w;) rsh.push_back(w);
  }
  char self[4096] = {};
  if (readlink("/proc/self/exe", self, sizeof self - 1) <= 0) std::snprintf(self, sizeof self, "calypso-run");
  char cwd[4096] = {};
  if (getcwd(cwd, sizeof cwd) == nullptr) std::snprintf(cwd, sizeof cwd, ".");
  std::string program = o.program[0];
  if (program.find('/') != std::string::npos && program[0] != '/') program = std::string(cwd) + "/" + program;
  std::string settings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string var = *e;
    if (forwarded(var.substr(0, var.find('=')))) settings += " " + shell_word(var);
  }
  for (const RemoteHost& h : o.hosts) {
    // A working directory missing there is said, not fatal: workers seldom read files.
    // (The directory goes to printf as a quoted word, never inside double quotes, where
    // a $( ) in its name would run.)
    std::string command = "cd " + shell_word(cwd) +
                          " 2>/dev/null || printf 'calypso-run: no directory %s on %s; its workers run in %s\\n' " +
                          shell_word(cwd) + " \"$(hostname)\" \"$(pwd)\" >&2; exec env" + settings + " " +
                          shell_word(self) + " --join - --watch-stdin -n " + std::to_string(h.workers) + " -- " +
                          shell_word(program);
    for (std::size_t i = 1; i < o.program.size(); ++i) command.append(" ").append(shell_word(o.program[i]));
    std::vector<std::string> argv = rsh;
    argv.push_back(h.name);
    argv.push_back(command);
    // A socket, not a pipe: a remote shell that is already gone makes the send fail
    // (MSG_NOSIGNAL), where a pipe would raise SIGPIPE here.
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      std::fprintf(stderr, "calypso-run: socketpair: %s; no workers start on %s\n", std::strerror(errno), h.name.c_str());
      continue;
    }
    calypso::UniqueFd ours(fds[0]);
    const calypso::UniqueFd theirs(fds[1]);
    const pid_t pid = l.spawn(argv, {}, -1, theirs.get());
    const std::string line = address + "\n";
    send(ours.get(), line.data(), line.size(), MSG_NOSIGNAL);
    started[pid] = RemoteStart{h.name, h.workers, std::move(ours)};
    pids.add("remote", pid);
    std::fprintf(stderr, "calypso-run: starting %d worker%s on %s (%s)\n", h.workers, h.workers == 1 ? "" : "s",
                 h.name.c_str(), rsh[0].c_str());
  }
  return started;
}

int run_job(const Options& o) {
  Launcher launcher;
  PidFile pids(o.pid_file);
  char dir_template[] = "/tmp/calypso-run.XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    std::perror("calypso-run: mkdtemp");
    return 1;
  }
  const std::string dir = dir_template, address_file = dir + "/address";
  // IPATH_NO_BACKTRACE: see worker_env(). CALYPSO_JOB_KEY 0: none given, so the manager
  // makes a fresh one for this job whatever the environment holds (config.cpp).
  std::map<std::string, std::string> env{{"CALYPSO_ROLE", "manager"}, {"CALYPSO_PROVIDER", o.provider}, {"IPATH_NO_BACKTRACE", "1"},
                                         {"CALYPSO_ADDRESS_FILE", address_file}, {"CALYPSO_JOB_KEY", "0"}};
  if (!o.bind.empty()) env["CALYPSO_BIND"] = o.bind;
  env["CALYPSO_WORKERS"] = std::to_string(o.workers);
  // Always set, as CALYPSO_WORKERS is: a value left in the environment must not change
  // what wait_for_workers() waits for in a job that did not ask.
  env["CALYPSO_EXPECT_WORKERS"] = std::to_string(o.expect >= 0 ? o.expect : o.workers + o.remote_workers());
  ExitNotices notices;
  if (notices.read_end() >= 0) env["CALYPSO_LAUNCHER_FD"] = std::to_string(notices.read_end());
  pid_t manager = launcher.spawn(o.program, env, notices.read_end());
  notices.close_read_end();
  pids.add("manager", manager);
  // Workers start now and wait for the address file themselves, so that their start-up
  // (libfabric's initialisation costs about 0.3 s) overlaps the manager's.
  std::map<std::string, std::string> wenv = worker_env(o);
  wenv["CALYPSO_PROVIDER"] = o.provider;
  wenv["CALYPSO_MANAGER_FILE"] = address_file;
  for (int i = 0; i < o.workers; ++i) pids.add("worker", launcher.spawn(o.program, wenv));
  int manager_status = -1, sig = 0;
  std::string address = wait_for_address(launcher, manager, address_file, manager_status, sig, notices);
  int rc = sig != 0 ? 128 + sig : manager_status != -1 ? calypso::tools::shell_code(manager_status) : 1;
  RemoteStarts remote;   // (their inputs close when the job is over, after the workers were told)
  if (!address.empty()) {
    std::fprintf(stderr, "calypso-run: job address %s (add workers with calypso-run --join)\n", address.c_str());
    if (!o.address_file.empty()) {
      const std::string why = calypso::write_private_file(o.address_file, address + "\n");   // the key is in it
      if (!why.empty()) std::fprintf(stderr, "calypso-run: cannot write --address-file %s: %s\n", o.address_file.c_str(), why.c_str());
    }
    remote = start_remote(launcher, o, address, pids);
    rc = supervise(launcher, manager, o, notices, remote);
    // The manager told the workers to exit; give them a moment before SIGTERM.
    for (auto until = std::chrono::steady_clock::now() + 1000ms;
         launcher.children() > 0 && std::chrono::steady_clock::now() < until && sig == 0;) {
      collect(launcher, manager, 20ms, manager_status, sig, nullptr, &remote);
    }
  }
  launcher.terminate_all(3000ms);
  std::remove(address_file.c_str());
  rmdir(dir.c_str());
  return rc;
}

// --watch-stdin: whether standard input has reached its end (or failed). Whatever else
// comes is read and dropped.
bool input_closed() {
  pollfd p{0, POLLIN, 0};
  if (poll(&p, 1, 0) != 1) return false;
  char junk[256];
  const ssize_t n = read(0, junk, sizeof junk);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

int join_job(const Options& o) {
  Launcher launcher;
  PidFile pids(o.pid_file);
  std::map<std::string, std::string> env = worker_env(o);
  std::string address = o.join;
  if (address == "-" && (!std::getline(std::cin, address) || address.empty())) {
    std::fprintf(stderr, "calypso-run: --join -: no job address on standard input\n");
    return 2;
  }
  env["CALYPSO_MANAGER"] = address;   // the address names the provider
  for (int i = 0; i < o.workers; ++i) pids.add("worker", launcher.spawn(o.program, env));
  int rc = 0;
  while (launcher.children() > 0) {
    int sig = 0;
    for (const auto& e : launcher.wait(1000ms, sig)) {
      report(e);
      if (!(WIFEXITED(e.status) && WEXITSTATUS(e.status) == 0)) rc = 1;
    }
    if (sig != 0) {
      launcher.terminate_all(3000ms);
      return 128 + sig;
    }
    if (o.watch_stdin && input_closed()) {
      std::fprintf(stderr, "calypso-run: standard input closed (the calypso-run that started these workers has "
                           "gone): stopping them\n");
      launcher.terminate_all(3000ms);
      return 1;
    }
  }
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  return o.join.empty() ? run_job(o) : join_job(o);
}
