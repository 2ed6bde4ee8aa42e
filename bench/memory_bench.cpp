// How fast can a worker find what a segment changed? At a segment's end every written
// page is compared with its twin (diff_encode), and for Jacobi almost every word turns
// out unchanged, so the pass is a read of page and twin at whatever speed the memory
// holding them gives. This benchmark measures that pass on unchanged 16 KiB pages (the
// default page size) over working sets from 2 x 4 MiB to 2 x 256 MiB, on one thread and
// on two at once (this machine's two cores, as with two workers), and prints each size's
// rate against the smallest's. The cliff it shows is where the data stops fitting in the
// last-level cache: the sequential Jacobi (two 32 MiB grids) runs inside it, while the
// DSM's memory for the same grids (the manager's 64 MiB, and each worker's copies and
// twins) does not. Information only: there is no target.
//
// Suggested run: memory_bench --benchmark_min_time=0.05 --benchmark_repetitions=3
#include "aligned_array.hpp"
#include "recording_reporter.hpp"

#include <benchmark/benchmark.h>

#include "dsm/diff.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

namespace {

using calypso::dsm::diff_encode;
using calypso::dsm::diff_max_encoded_size;

constexpr std::size_t kPage = 16384;
constexpr std::size_t kMiB = std::size_t{1} << 20;
constexpr std::size_t kSizesMiB[] = {4, 16, 32, 64, 128, 256};   // per side
constexpr int kMaxThreads = 2;

// One thread's pages and twins, equal word for word, filled once at the largest size
// (page contents from a generator, so that no page is the kernel's shared zero page).
class Arena {
 public:
  explicit Arena(unsigned seed)
      : bytes_(kSizesMiB[std::size(kSizesMiB) - 1] * kMiB),
        pages_(aligned_array<std::byte>(bytes_, kPage)),
        twins_(aligned_array<std::byte>(bytes_, kPage)),
        out_(diff_max_encoded_size(kPage)) {
    std::mt19937_64 rng(seed);
    for (std::size_t i = 0; i < bytes_; i += 8) {
      const std::uint64_t v = rng();
      std::memcpy(pages_.get() + i, &v, 8);
    }
    std::memcpy(twins_.get(), pages_.get(), bytes_);
  }
  const std::byte* page(std::size_t i) const { return pages_.get() + i * kPage; }
  const std::byte* twin(std::size_t i) const { return twins_.get() + i * kPage; }
  std::byte* out() { return out_.data(); }

 private:
  std::size_t bytes_;
  AlignedArray<std::byte> pages_, twins_;
  std::vector<std::byte> out_;
};

Arena& arena(int thread) {
  static std::unique_ptr<Arena> arenas[kMaxThreads];
  static std::once_flag once[kMaxThreads];
  std::call_once(once[thread], [&] { arenas[thread] = std::make_unique<Arena>(42 + thread); });
  return *arenas[thread];
}

// Pages in address order, as finish_segment walks them, wrapping at the working set.
void bm_compare(benchmark::State& state, std::size_t mib) {
  Arena& a = arena(state.thread_index());
  const std::size_t pages = mib * kMiB / kPage;
  std::size_t p = 0;
  for (auto _ : state) {
    if (diff_encode(a.page(p), a.twin(p), kPage, a.out()) != 0) {
      state.SkipWithError("page and twin differ");
      break;
    }
    p = p + 1 == pages ? 0 : p + 1;
  }
  // Both page and twin are read: count both.
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 2 * kPage);
}

// The reporter keys results by the registered name; Threads() adds its part elsewhere.
std::string name(std::size_t mib, int threads) {
  return "compare/2x" + std::to_string(mib) + "MiB/" + std::to_string(threads) + "t";
}

void print_table(const RecordingReporter& r) {
  std::printf("\ncomparing unchanged 16 KiB pages with their twins, by working set (page + twin"
              " areas of each thread), GB/s read (both threads together for 2; sd: over repetitions):\n");
  for (int threads = 1; threads <= kMaxThreads; ++threads) {
    const double base = r.value(name(kSizesMiB[0], threads));
    for (std::size_t mib : kSizesMiB) {
      const double v = r.value(name(mib, threads));
      if (v <= 0 || base <= 0) continue;
      std::printf("  %d thread%s, 2 x %3zu MiB each: %6.1f GB/s (sd %4.1f), %4.2f of 2 x %zu MiB  (info)\n",
                  threads, threads > 1 ? "s" : " ", mib, v / 1e9, r.spread(name(mib, threads)) / 1e9, v / base,
                  kSizesMiB[0]);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  for (int threads = 1; threads <= kMaxThreads; ++threads) {
    for (std::size_t mib : kSizesMiB) {
      // Wall time: with two threads, what both read in the time they take together.
      benchmark::RegisterBenchmark(name(mib, threads).c_str(), bm_compare, mib)
          ->Threads(threads)
          ->UseRealTime();
    }
  }
  return run_benchmarks(RecordingReporter::Metric::bytes_per_second, print_table);
}
