// Test support: run a function in a forked child and report how the child ended, for
// tests whose subject is a crash (a fault nobody handles, a protection that must hold).
#pragma once

#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

namespace calypso::test {

const std::string kSegv = "signal " + std::to_string(SIGSEGV);

// How a forked child that runs fn ended: "exit N" or "signal N". With default_sigsegv,
// the child first drops the SIGSEGV handler it inherited (libinfinipath, loaded with
// libfabric, installs one that prints a backtrace and exits 1), so it dies the plain way.
template <class Fn>
std::string run_in_child(Fn fn, bool default_sigsegv = false) {
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    alarm(10);  // a child that hangs must not hang the test
    // Its dying words (backtraces, "fatal fault") are expected; keep the log readable.
    if (int null = open("/dev/null", O_WRONLY); null >= 0) dup2(null, STDERR_FILENO);
    if (default_sigsegv) signal(SIGSEGV, SIG_DFL);
    fn();
    _exit(0);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return "waitpid failed";
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "unknown";
}

}  // namespace calypso::test
