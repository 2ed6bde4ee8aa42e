// What the distance between two arrays used together costs, and what the shared heap's
// staggering of large blocks (dsm/heap.hpp) buys: jacobi's sweep from one 2048 x 2048
// grid of doubles into another, one thread, the second grid
//   adjacent  exactly 32 MiB after the first, where the heap put it before it staggered
//             large blocks (element i of both grids then agree in their low 25 bits);
//   one_row   16 KiB (a row) further: row i of the new grid agrees with row i+1 of the
//             old one, which the sweep reads at the same time;
//   heap      where the heap puts it now (two 32 MiB blocks asked of a dsm::Heap with
//             the default 16 KiB page alignment).
// The table gives each layout's sweep rate against the adjacent layout's, in the same
// run (higher is better). Nothing here is a target; it is the evidence for the heap's
// policy, rerun on any machine.
//
// Suggested run: layout_bench --benchmark_repetitions=5
#include "aligned_array.hpp"
#include "recording_reporter.hpp"

#include <benchmark/benchmark.h>

#include "dsm/heap.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace {

constexpr int kN = 2048;
constexpr std::size_t kGridBytes = std::size_t{kN} * kN * sizeof(double);   // 32 MiB
constexpr std::size_t kPage = 16384;                                         // the default page
constexpr int kSweeps = 10;                                                  // one iteration

// The second grid's distance from the first under the heap's current policy.
std::size_t heap_distance() {
  calypso::dsm::Heap heap(0, 4 * kGridBytes);
  const auto a = heap.allocate(kGridBytes, kPage);
  const auto b = heap.allocate(kGridBytes, kPage);
  return a && b ? *b - *a : kGridBytes;
}

struct Layout {
  const char* name;
  std::size_t distance;   // bytes from the first grid to the second
};

Layout layouts[] = {{"adjacent", kGridBytes}, {"one_row", kGridBytes + kPage}, {"heap", 0}};

void init(double* g) {
  for (int i = 0; i < kN; ++i) {
    for (int j = 0; j < kN; ++j) {
      const bool edge = i == 0 || j == 0 || i == kN - 1 || j == kN - 1;
      g[static_cast<std::size_t>(i) * kN + j] = edge ? (i == 0 ? 100.0 : 10.0 * j / kN) : 0.0;
    }
  }
}

void sweep(const double* from, double* to) {
  for (int i = 1; i < kN - 1; ++i) {
    const double* up = from + static_cast<std::size_t>(i - 1) * kN;
    const double* mid = from + static_cast<std::size_t>(i) * kN;
    const double* down = from + static_cast<std::size_t>(i + 1) * kN;
    double* out = to + static_cast<std::size_t>(i) * kN;
    for (int j = 1; j < kN - 1; ++j) out[j] = 0.25 * (up[j] + down[j] + mid[j - 1] + mid[j + 1]);
  }
}

// One buffer for every layout (allocated once, page-aligned, the largest distance plus a
// grid), so that the layouts differ only in where the second grid starts.
double* buffer() {
  static AlignedArray<double> memory = [] {
    std::size_t most = 0;
    for (const Layout& l : layouts) most = std::max(most, l.distance);
    return aligned_array<double>((most + kGridBytes) / sizeof(double), kPage);
  }();
  return memory.get();
}

void bm_sweep(benchmark::State& state, const Layout& layout) {
  double* a = buffer();
  double* b = a + layout.distance / sizeof(double);
  init(a);
  init(b);
  for (auto _ : state) {
    for (int s = 0; s < kSweeps; ++s) {
      sweep(a, b);
      std::swap(a, b);
    }
    benchmark::DoNotOptimize(a[kN + 1]);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * kSweeps *
                          static_cast<std::int64_t>(kGridBytes));
}

void print_table(const RecordingReporter& r) {
  const double adjacent = r.value(std::string("sweep/") + layouts[0].name);
  if (adjacent <= 0) return;
  std::printf("\nsweep rate against the adjacent layout (grids exactly 32 MiB apart), same run:\n");
  for (const Layout& l : layouts) {
    const double v = r.value(std::string("sweep/") + l.name);
    if (v <= 0) continue;
    std::printf("  %-9s second grid %9zu bytes after the first (32 MiB + %6zu): %4.2f  (info)\n", l.name,
                l.distance, l.distance - kGridBytes, v / adjacent);
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  layouts[2].distance = heap_distance();
  for (const Layout& l : layouts) {
    benchmark::RegisterBenchmark((std::string("sweep/") + l.name).c_str(), bm_sweep, l)->UseRealTime();
  }
  return run_benchmarks(RecordingReporter::Metric::bytes_per_second, print_table);
}
