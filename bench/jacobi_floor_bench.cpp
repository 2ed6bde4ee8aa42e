// A lower bound on what a twin-based DSM spends on jacobi here: each thread sweeps its
// rows in 128-row segments and, after each, compares every written 16 KiB page with its
// twin (diff_encode, as finish_segment does) and brings the twin up to date
// (diff_apply), with none of the runtime around it (no faults, protection changes,
// messages, boundary rows, collation or barrier). Two threads with half the grid each
// hold what two workers hold; against one thread's plain sweep of the whole grid that
// bounds the DSM's jacobi at 2 workers from below (the target for it: 1.00 of the
// sequential time). A run is jacobi's: 2048 x 2048, 200 sweeps from the example's start.
//
// Suggested run: jacobi_floor_bench --benchmark_repetitions=5
#include "aligned_array.hpp"
#include "recording_reporter.hpp"

#include <benchmark/benchmark.h>

#include "dsm/diff.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
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
constexpr double kSweepBytes = double{kN} * kN * sizeof(double);   // the whole grid

using Grid = AlignedArray<double>;

Grid make_grid(std::size_t cells) { return aligned_array<double>(cells, kPage); }

// One thread's rows [first, first + rows) of the full grid, with the row above and the
// row below, in two grids and their twins. Where two threads' rows meet, the row beyond
// stays at its start value (no exchange): it changes little of what the sweeps write.
class ThreadRows {
 public:
  ThreadRows(int first, int rows)
      : first_(first), rows_(rows), cells_(static_cast<std::size_t>(rows + 2) * kN),
        grid_{make_grid(cells_), make_grid(cells_)}, twin_{make_grid(cells_), make_grid(cells_)},
        out_(diff_max_encoded_size(kPage)) {
    restart();
  }

  // The example's start: twins equal to their grids, as after the workers' first fetch.
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
  }

  // One sweep of these rows, segment by segment; with `compare`, each segment's pages
  // are then compared with their twins, which take the changed words.
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
        const int i = first_ - 1 + r;
        if (i <= 0 || i >= kN - 1) continue;   // not written: never compared
        auto* page = reinterpret_cast<std::byte*>(to + static_cast<std::size_t>(r) * kN);
        auto* old = reinterpret_cast<std::byte*>(twin + static_cast<std::size_t>(r) * kN);
        const std::size_t n = diff_encode(page, old, kPage, out_.data());
        if (n != 0) diff_apply(std::span(out_).first(n), old);
      }
    }
    from_ = 1 - from_;
  }

  std::size_t rows() const { return static_cast<std::size_t>(rows_); }

 private:
  int first_, rows_;
  std::size_t cells_;
  Grid grid_[2], twin_[2];
  std::vector<std::byte> out_;
  int from_ = 0;
};

// Each benchmark's own rows per thread (a plain sweep must not leave a compared run
// stale twins), built on first use: the memory is ~128 MiB per benchmark.
ThreadRows& thread_rows(bool compare, int threads, int index) {
  static std::unique_ptr<ThreadRows> rows[2][kMaxThreads + 1][kMaxThreads];
  static std::once_flag once[2][kMaxThreads + 1][kMaxThreads];
  std::call_once(once[compare][threads][index], [&] {
    const int n = kN / threads;
    rows[compare][threads][index] = std::make_unique<ThreadRows>(index * n, n);
  });
  return *rows[compare][threads][index];
}

// One iteration: this thread's share of one sweep; a run is the example's 200 sweeps
// from its start (restart is outside the timing: before the loop). Bytes: the cells of
// the new grid written, summed over the threads; Google Benchmark divides them by the
// threads' mean wall time, so with two threads there is no barrier and no waiting for
// the slower one, as a step of the DSM has: one more reason this is a lower bound.
void bm_sweep(benchmark::State& state, bool compare) {
  ThreadRows& rows = thread_rows(compare, state.threads(), state.thread_index());
  rows.restart();
  for (auto _ : state) rows.sweep(compare);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * rows.rows() * kPage));
}

std::string name(bool compare, int threads) {
  return std::string(compare ? "sweep+compare" : "sweep") + "/" + std::to_string(threads) + "t";
}

void print_table(const RecordingReporter& r) {
  const double seq = r.value(name(false, 1));
  if (seq <= 0) return;
  std::printf("\ntime of a sweep of the whole grid (sd: over repetitions), and its ratio to one thread's plain"
              " sweep:\n");
  for (bool compare : {false, true}) {
    for (int threads = 1; threads <= kMaxThreads; ++threads) {
      const double v = r.value(name(compare, threads));
      if (v <= 0) continue;
      std::printf("  %-16s %5.2f ms a sweep (sd %4.2f), %4.2f  %s\n", name(compare, threads).c_str(),
                  kSweepBytes / v * 1e3, kSweepBytes * r.spread(name(compare, threads)) / (v * v) * 1e3, seq / v,
                  compare && threads == 2 ? "(a lower bound at 2 workers; jacobi's target: 1.00)" : "(info)");
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
          ->Iterations(kSweeps)
          ->UseRealTime();
    }
  }
  return run_benchmarks(RecordingReporter::Metric::bytes_per_second, print_table);
}
