// Child processes of calypso-run; see launcher.hpp.
#include "launcher.hpp"

#include <algorithm>
#include <dirent.h>
#include <fcntl.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace calypso::tools {
namespace {
sigset_t waited_signals() {
  sigset_t s;
  sigemptyset(&s);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaddset(&s, sig);
  return s;
}
// libfabric's shm provider keeps each endpoint's queues in /dev/shm/<pid>:<n>:<m>. A
// process that is killed cannot remove them; its parent can, once it has reaped it.
void remove_shm_files_of(pid_t pid) {
  DIR* d = opendir("/dev/shm");
  if (d == nullptr) return;
  const std::string prefix = std::to_string(pid) + ":";
  while (dirent* e = readdir(d)) {
    if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) {
      unlinkat(dirfd(d), e->d_name, 0);
    }
  }
  closedir(d);
}

}  // namespace

Launcher::Launcher() {
  sigset_t s = waited_signals();
  sigprocmask(SIG_BLOCK, &s, nullptr);
}

Launcher::~Launcher() { terminate_all(std::chrono::milliseconds(2000)); }

pid_t Launcher::spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                      int inherit_fd, int stdin_fd) {
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);          // never outlive the launcher
    if (getppid() != parent) _exit(127);       // it died before prctl took effect
    sigset_t s = waited_signals();
    sigprocmask(SIG_UNBLOCK, &s, nullptr);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    if (inherit_fd >= 0) fcntl(inherit_fd, F_SETFD, 0);   // not closed by execvp
    if (stdin_fd >= 0 && dup2(stdin_fd, 0) < 0) _exit(127);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    std::fprintf(stderr, "calypso-run: cannot start %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  children_.push_back(pid);
  return pid;
}

std::vector<ChildExit> Launcher::wait(std::chrono::milliseconds timeout, int& interrupted) {
  std::vector<ChildExit> exits;
  sigset_t s = waited_signals();
  timespec ts{static_cast<time_t>(timeout.count() / 1000), static_cast<long>(timeout.count() % 1000) * 1'000'000};
  int sig = sigtimedwait(&s, nullptr, &ts);
  if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) interrupted = sig;
  int status = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    std::erase(children_, pid);
    remove_shm_files_of(pid);
    if (status != 0) ++failed_;
    exits.push_back({pid, status});
  }
  return exits;
}

void Launcher::terminate_all(std::chrono::milliseconds grace) {
  for (pid_t p : children_) kill(p, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (!children_.empty() && std::chrono::steady_clock::now() < deadline) {
    int ignored = 0;
    wait(std::chrono::milliseconds(20), ignored);
  }
  for (pid_t p : children_) kill(p, SIGKILL);
  for (pid_t p : children_) {
    waitpid(p, nullptr, 0);
    remove_shm_files_of(p);
  }
  children_.clear();
}

bool Launcher::running(pid_t pid) const {
  return std::find(children_.begin(), children_.end(), pid) != children_.end();
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  }
  return "stopped";
}

int shell_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace calypso::tools
