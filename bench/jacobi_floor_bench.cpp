// The least work a twin-based DSM does for Jacobi, without the runtime around it: each
// worker sweeps its rows of the new grid segment by segment and, after each segment,
// compares every written 16 KiB page with its twin (diff_encode, as finish_segment does)
// and brings the twin up to date with the diff (diff_apply; the runtime's restore and
// replay write those words twice). No faults, no messages, no results to ship, no
// collation, no third copy at the manager. On two threads, one per core, each with its
// own half of the grid as two workers have, that work against a plain sweep of the whole
// grid on one thread is a floor for the DSM's jacobi at 2 workers on this machine: the
// runtime adds to it. The target for jacobi is 1.00 of the sequential time.
//
// The grid is jacobi's (2048 x 2048 doubles, a row per 16 KiB page, 128-row segments,
// the same boundary values); each thread's half has fixed edges where the halves meet,
// which changes little of what the sweeps write. After 200 sweeps, the example's run,
// the grids start again, outside the timing, so that the share of changed words stays
// the example's.
//
// Suggested run: jacobi_floor_bench --benchmark_min_time=0.5 --benchmark_repetitions=3
#include "recording_reporter.hpp"

#include <benchmark/benchmark.h>

#include "dsm/diff.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <span>
#include <string>
#include <vector>

namespace {

using calypso::dsm::diff_apply;
using calypso::dsm::diff_encode;
using calypso::dsm::diff_max_encoded_size;

constexpr int kN = 2048;                      // jacobi's grid
constexpr int kSegmentRows = 128;             // 16 segments over the grid
constexpr int kSweeps = 200;                  // jacobi's run
constexpr std::size_t kPage = 16384;          // the default page: one row
constexpr int kMaxThreads = 2;
static_assert(kN * sizeof(double) == kPage);

struct AlignedFree {
  void operator()(double* p) const { ::operator delete[](p, std::align_val_t{kPage}); }
};
using Grid = std::unique_ptr<double[], AlignedFree>;

Grid make_grid(std::size_t cells) { return Grid(new (std::align_val_t{kPage}) double[cells]); }

// One thread's rows [first, first + rows) of the full grid, with the row above and the
// row below (edges: fixed), in two grids and their twins.
class Half {
 public:
  Half(int first, int rows)
      : first_(first), rows_(rows), cells_(static_cast<std::size_t>(rows + 2) * kN),
        grid_{make_grid(cells_), make_grid(cells_)}, twin_{make_grid(cells_), make_grid(cells_)},
        out_(diff_max_encoded_size(kPage)) {
    restart();
  }

  // Both grids (and their twins) hold the example's initial values.
  void restart() {
    for (int g = 0; g < 2; ++g) {
      for (int r = 0; r < rows_ + 2; ++r) {
        const int i = first_ - 1 + r;   // row of the full grid
        for (int j = 0; j < kN; ++j) {
          const bool edge = i <= 0 || j == 0 || i >= kN - 1 || j == kN - 1;
          grid_[g][static_cast<std::size_t>(r) * kN + j] = edge && i >= 0 ? (i == 0 ? 100.0 : 10.0 * j / kN) : 0.0;
        }
      }
      std::memcpy(twin_[g].get(), grid_[g].get(), cells_ * sizeof(double));
    }
    from_ = 0;
    sweeps_ = 0;
  }

  // One sweep of this half, segment by segment; with `compare`, each segment's pages are
  // then compared with their twins, which take the changed words.
  void sweep(bool compare) {
    const double* from = grid_[from_].get();
    double* to = grid_[1 - from_].get();
    double* twin = twin_[1 - from_].get();
    for (int s = 0; s < rows_; s += kSegmentRows) {
      const int end = std::min(s + kSegmentRows, rows_);
      for (int r = s + 1; r <= end; ++r) {   // local row r = full row first_ - 1 + r
        const int i = first_ - 1 + r;
        if (i <= 0 || i >= kN - 1) continue;
        const double* up = from + static_cast<std::size_t>(r - 1) * kN;
        const double* mid = from + static_cast<std::size_t>(r) * kN;
        const double* down = from + static_cast<std::size_t>(r + 1) * kN;
        double* out = to + static_cast<std::size_t>(r) * kN;
        for (int j = 1; j < kN - 1; ++j) out[j] = 0.25 * (up[j] + down[j] + mid[j - 1] + mid[j + 1]);
      }
      if (!compare) continue;
      for (int r = s + 1; r <= end; ++r) {
        auto* page = reinterpret_cast<std::byte*>(to + static_cast<std::size_t>(r) * kN);
        auto* old = reinterpret_cast<std::byte*>(twin + static_cast<std::size_t>(r) * kN);
        const std::size_t n = diff_encode(page, old, kPage, out_.data());
        if (n != 0) diff_apply(std::span(out_).first(n), old);
      }
    }
    from_ = 1 - from_;
    ++sweeps_;
  }

  bool run_over() const { return sweeps_ == kSweeps; }
  std::size_t rows() const { return static_cast<std::size_t>(rows_); }

 private:
  int first_, rows_;
  std::size_t cells_;
  Grid grid_[2], twin_[2];
  std::vector<std::byte> out_;
  int from_ = 0, sweeps_ = 0;
};

// Halves by thread count and index, made once.
Half& half(int threads, int index) {
  static std::unique_ptr<Half> halves[kMaxThreads + 1][kMaxThreads];
  static std::once_flag once[kMaxThreads + 1][kMaxThreads];
  std::call_once(once[threads][index], [&] {
    const int rows = kN / threads;
    halves[threads][index] = std::make_unique<Half>(index * rows, rows);
  });
  return *halves[threads][index];
}

// One iteration: this thread's share of one sweep. Bytes: the cells of the new grid
// written (GB/s summed over the threads: the whole grid's sweep rate).
void bm_sweep(benchmark::State& state, bool compare) {
  Half& h = half(state.threads(), state.thread_index());
  for (auto _ : state) {
    h.sweep(compare);
    if (h.run_over()) {
      state.PauseTiming();
      h.restart();
      state.ResumeTiming();
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * h.rows() * kPage));
}

std::string name(bool compare, int threads) {
  return std::string(compare ? "sweep+compare" : "sweep") + "/" + std::to_string(threads) + "t";
}

void print_table(const RecordingReporter& r) {
  const double seq = r.value(name(false, 1));
  if (seq <= 0) return;
  std::printf("\ntime of a sweep of the whole grid, against one thread's plain sweep (sd: over repetitions):\n");
  for (bool compare : {false, true}) {
    for (int threads = 1; threads <= kMaxThreads; ++threads) {
      const double v = r.value(name(compare, threads));
      if (v <= 0) continue;
      std::printf("  %-16s %4.2f  %s\n", name(compare, threads).c_str(), seq / v,
                  compare && threads == 2 ? "(the 2-worker floor; jacobi's target: 1.00)" : "(info)");
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  for (bool compare : {false, true}) {
    for (int threads = 1; threads <= kMaxThreads; ++threads) {
      // Wall time: with two threads, the grid's sweep rate is what both do together.
      benchmark::RegisterBenchmark(name(compare, threads).c_str(), bm_sweep, compare)
          ->Threads(threads)
          ->UseRealTime();
    }
  }
  return run_benchmarks(RecordingReporter::Metric::bytes_per_second, print_table);
}
