// Benchmark support: a console reporter that also remembers one metric of every benchmark
// (the median when repetitions ran, with its standard deviation), for the ratio tables
// the benchmarks print after running. Benchmarks are looked up by the name they were
// registered with; run_benchmarks, at the bottom, is the tail of every benchmark's main.
//
// Metrics: CPU time per iteration (so that a run sharing a 2-core machine is not skewed
// by being preempted: diff, fault and write-tracking benchmarks), wall time per
// iteration (when both sides mostly wait: fetch), or the bytes_per_second counter
// (collation, and the memory and jacobi-floor benchmarks, whose two threads' rates add).
#pragma once

#include <benchmark/benchmark.h>

#include <map>
#include <string>
#include <vector>

class RecordingReporter : public benchmark::ConsoleReporter {
 public:
  enum class Metric { cpu_time, real_time, bytes_per_second };
  explicit RecordingReporter(Metric m = Metric::cpu_time) : metric_(m) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      double v = 0;
      switch (metric_) {
        case Metric::cpu_time: v = r.GetAdjustedCPUTime(); break;
        case Metric::real_time: v = r.GetAdjustedRealTime(); break;
        case Metric::bytes_per_second: {
          const auto it = r.counters.find("bytes_per_second");
          if (it == r.counters.end()) continue;
          v = it->second.value;
          break;
        }
      }
      const std::string name = r.run_name.function_name;
      if (r.run_type == Run::RT_Aggregate && r.aggregate_name == "median") medians_[name] = v;
      else if (r.run_type == Run::RT_Aggregate && r.aggregate_name == "stddev") stddevs_[name] = v;
      else if (r.run_type == Run::RT_Iteration) singles_[name] = v;
    }
  }

  // The metric (ns per iteration, or bytes per second); 0 when the benchmark did not run.
  double value(const std::string& name) const {
    if (auto it = medians_.find(name); it != medians_.end()) return it->second;
    if (auto it = singles_.find(name); it != singles_.end()) return it->second;
    return 0;
  }
  double time(const std::string& name) const { return value(name); }
  // Its standard deviation over the repetitions; 0 without repetitions.
  double spread(const std::string& name) const {
    const auto it = stddevs_.find(name);
    return it == stddevs_.end() ? 0 : it->second;
  }

 private:
  Metric metric_;
  std::map<std::string, double> medians_, singles_, stddevs_;
};

// The tail of every micro benchmark's main: runs the registered benchmarks, recording
// `metric`, then prints the ratio table from what was recorded.
template <class PrintTable>
int run_benchmarks(RecordingReporter::Metric metric, PrintTable print_table) {
  RecordingReporter reporter(metric);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  print_table(reporter);
  return 0;
}
