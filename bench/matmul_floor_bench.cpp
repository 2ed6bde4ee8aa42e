// What this machine allows matmul at two workers, with no DSM at all: the example's
// loop (i-k-j over n = 1024 doubles) on one thread over all rows, against two threads
// with half the rows each. matmul streams all of B (8 MiB) once per row of C, so it is
// bound by the bandwidth of the shared last-level cache rather than by arithmetic, and
// two cores need not make it twice as fast. Two variants of the two threads:
//   shared  both threads read one A and one B, as threads of one process would;
//   private each thread reads its own copy of A and B, as two workers do (each holds
//           the pages it fetched in its own memory): twice the bytes compete for the
//           cache.
// The ratio of each to one thread is a lower bound on the DSM's matmul at 2 workers
// (target: 0.60 of the sequential time); it also has no faults, diffs or collation.
//
// Suggested run: matmul_floor_bench --benchmark_repetitions=5
#include "aligned_array.hpp"
#include "matmul_kernel.hpp"
#include "recording_reporter.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

namespace {

constexpr int kN = 1024;                                  // the example's default
constexpr std::size_t kCells = std::size_t{kN} * kN;
constexpr std::size_t kPage = 16384;                      // the runtime's default page
constexpr double kProduct = double{kCells} * sizeof(double);   // C's bytes

using Matrix = AlignedArray<double>;

// A, B (the example's values) and C, page-aligned as the runtime's pages are.
struct Operands {
  Matrix a = aligned_array<double>(kCells, kPage);
  Matrix b = aligned_array<double>(kCells, kPage);
  Matrix c = aligned_array<double>(kCells, kPage);
  Operands() {
    example::fill_operands(a.get(), b.get(), kCells);
    std::fill_n(c.get(), kCells, 0.0);   // mapped before the timing, as the workers' C is
  }
};

// One set of operands for the shared variants, one per thread for the private one; built
// on first use (24 MiB each).
Operands& operands(bool private_copy, int thread) {
  static std::unique_ptr<Operands> sets[3];
  static std::once_flag once[3];
  const int slot = private_copy ? 1 + thread : 0;
  std::call_once(once[slot], [&] { sets[slot] = std::make_unique<Operands>(); });
  return *sets[slot];
}

// One iteration: this thread's rows of the whole product. Bytes: those of C's rows
// computed, summed over the threads; Google Benchmark divides them by the threads' mean
// wall time (its time per iteration counts every thread's iterations, so it would halve
// a two-thread product's time). The slower thread is not waited for, as a step waits for
// its last segment: one more reason this is a lower bound.
void bm_multiply(benchmark::State& state, bool private_copy) {
  Operands& m = operands(private_copy, state.thread_index());
  const int rows = kN / state.threads();
  const int begin = rows * state.thread_index();
  for (auto _ : state) {
    example::multiply_block(m.a.get(), m.b.get(), m.c.get(), kN, begin, begin + rows);
    benchmark::DoNotOptimize(m.c[static_cast<std::size_t>(begin) * kN]);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * rows * kN * sizeof(double));
}

const char* name(int threads, bool private_copy) {
  if (threads == 1) return "multiply/1t";
  return private_copy ? "multiply/2t/private" : "multiply/2t/shared";
}

void print_table(const RecordingReporter& r) {
  const double one = r.value(name(1, false));
  if (one <= 0) return;
  std::printf("\ntime of the whole 1024 x 1024 product (sd: over repetitions), and its ratio to one thread:\n");
  for (auto [threads, private_copy] : {std::pair{1, false}, {2, false}, {2, true}}) {
    const double v = r.value(name(threads, private_copy));   // bytes of C a second
    if (v <= 0) continue;
    std::printf("  %-20s %6.1f ms (sd %4.1f), %4.2f  %s\n", name(threads, private_copy), kProduct / v * 1e3,
                kProduct * r.spread(name(threads, private_copy)) / (v * v) * 1e3, one / v,
                private_copy ? "(a lower bound at 2 workers; matmul's target: 0.60)" : "(info)");
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RegisterBenchmark(name(1, false), bm_multiply, false)->Iterations(5)->UseRealTime();
  for (bool private_copy : {false, true}) {
    benchmark::RegisterBenchmark(name(2, private_copy), bm_multiply, private_copy)
        ->Threads(2)
        ->Iterations(5)
        ->UseRealTime();
  }
  return run_benchmarks(RecordingReporter::Metric::bytes_per_second, print_table);
}
