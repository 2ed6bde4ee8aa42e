// Benchmark support: a console reporter that also remembers each benchmark's CPU time per
// iteration (the median when repetitions ran, CPU rather than wall time so that a run
// sharing a 2-core machine is not skewed by being preempted), for the ratio tables the
// benchmarks print after running.
#pragma once

#include <benchmark/benchmark.h>

#include <map>
#include <string>
#include <vector>

class RecordingReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      const std::string name = r.run_name.str();
      if (r.run_type == Run::RT_Aggregate && r.aggregate_name == "median")
        medians_[name] = r.GetAdjustedCPUTime();
      else if (r.run_type == Run::RT_Iteration)
        singles_[name] = r.GetAdjustedCPUTime();
    }
  }

  // CPU time per iteration (ns); 0 when the benchmark did not run (filtered out).
  double time(const std::string& name) const {
    if (auto it = medians_.find(name); it != medians_.end()) return it->second;
    if (auto it = singles_.find(name); it != singles_.end()) return it->second;
    return 0;
  }

 private:
  std::map<std::string, double> medians_, singles_;
};
