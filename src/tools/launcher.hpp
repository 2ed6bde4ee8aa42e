// Process supervision for calypso-run: starts the manager and workers as children,
// forwards their output (they inherit stdout/stderr), and makes sure that no child
// outlives the launcher, whether the job ends, fails, or is interrupted.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace calypso::tools {

struct ChildExit {
  pid_t pid;
  int status;   // as from waitpid
};

class Launcher {
 public:
  Launcher();    // blocks SIGINT/SIGTERM/SIGHUP/SIGCHLD: they are waited for, not handled
  ~Launcher();   // terminates and reaps every child still running

  // Starts program with args and the extra environment; the child dies with the launcher.
  // inherit_fd (>= 0): a close-on-exec descriptor the program keeps open under its number.
  // stdin_fd (>= 0): the child's standard input.
  pid_t spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
              int inherit_fd = -1, int stdin_fd = -1);

  // Waits up to timeout for a child to exit or a termination signal. Returns the exits
  // collected (maybe none); sets interrupted to the signal number if one came.
  std::vector<ChildExit> wait(std::chrono::milliseconds timeout, int& interrupted);

  // SIGTERM to every running child, SIGKILL to those still there after grace; reaps all.
  void terminate_all(std::chrono::milliseconds grace);
  bool running(pid_t pid) const;
  std::size_t children() const { return children_.size(); }
  // Children wait() reaped that exited non-zero or by a signal.
  std::size_t failed_children() const { return failed_; }

 private:
  std::vector<pid_t> children_;
  std::size_t failed_ = 0;
};

// "exited with status 3", "was killed by signal 9 (Killed)"
std::string describe_exit(int status);
// Exit code a shell would report for this status.
int shell_code(int status);

}  // namespace calypso::tools
