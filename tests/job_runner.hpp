// Test support: runs calypso-run (and so real manager and worker processes) as a child
// in its own process group, captures its output, and bounds its run time. Whatever
// happens, every process it started is gone when run() returns.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace calypso::test {

struct JobResult {
  int exit_code = -1;      // shell-style: 128+signal if killed
  bool timed_out = false;
  std::string output;      // stdout and stderr, interleaved
};

class Job {
 public:
  // Starts argv with extra environment; output goes to a temporary file.
  Job(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env);
  ~Job();   // kills the whole process group if still running
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  JobResult wait(std::chrono::seconds timeout);
  std::string output_so_far() const;
  int pid() const { return pid_; }

 private:
  int pid_ = -1;
  std::string out_path_;
  bool reaped_ = false;
};

inline JobResult run(const std::vector<std::string>& argv,
                     const std::map<std::string, std::string>& env = {},
                     std::chrono::seconds timeout = std::chrono::seconds(120)) {
  Job j(argv, env);
  return j.wait(timeout);
}

// Waits until path exists and is non-empty; returns its first line or "" on timeout.
std::string wait_for_file(const std::string& path, std::chrono::seconds timeout);

}  // namespace calypso::test
