// Throughput of the diff codec against the hardware limits it is judged by, measured in
// the same run: encode vs memcmp(page, twin) and apply vs memcpy, each with the page
// hot in cache and cold (cycling through 256 MiB of page pairs, far beyond L2/L3).
//
// Targets (from the issue): encoding a sparsely changed page (no change, one changed
// word) reaches 0.8 of memcmp throughput, hot and cold; applying a fully changed page
// reaches 0.8 of memcpy. The table printed at the end gives each ratio with PASS/MISS;
// 10%, 100% and masked (every word, 6 of its 8 bytes) changes are shown for information. Benchmarks never fail on time.
//
// Suggested run: diff_bench --benchmark_min_time=0.05 --benchmark_repetitions=5
#include "aligned_array.hpp"
#include "recording_reporter.hpp"

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "dsm/diff.hpp"
#include "page_changes.hpp"

namespace {

using calypso::dsm::diff_apply;
using calypso::dsm::diff_encode;
using calypso::dsm::diff_max_encoded_size;

constexpr std::size_t kPage = 4096;
constexpr std::size_t kColdPages = (128u << 20) / kPage;  // per region; twin + current = 256 MiB


using PageRegion = AlignedArray<std::byte>;

PageRegion allocate_pages(std::size_t pages) { return aligned_array<std::byte>(pages * kPage, kPage); }

// The pages every benchmark works on. Rebuilding 128 MiB is slow, so the current pages
// are only rewritten when a benchmark asks for a different kind of change.
class Arena {
 public:
  Arena()
      : twin_(allocate_pages(kColdPages)),
        cur_(allocate_pages(kColdPages)),
        scratch_(allocate_pages(kColdPages)),
        out_(diff_max_encoded_size(kPage)) {
    std::mt19937_64 rng(42);
    for (std::size_t i = 0; i < kColdPages * kPage; i += 8) {
      const std::uint64_t v = rng();
      std::memcpy(twin_.get() + i, &v, 8);
    }
    std::memcpy(scratch_.get(), twin_.get(), kColdPages * kPage);
  }

  const std::byte* twin(std::size_t page) const { return twin_.get() + page * kPage; }
  const std::byte* cur(std::size_t page) const { return cur_.get() + page * kPage; }
  std::byte* scratch(std::size_t page) { return scratch_.get() + page * kPage; }
  std::byte* out() { return out_.data(); }

  void prepare(Change c) {
    if (prepared_ == c) return;
    std::memcpy(cur_.get(), twin_.get(), kColdPages * kPage);
    std::mt19937_64 rng(7);
    for (std::size_t p = 0; p < kColdPages; ++p) change_page(cur_.get() + p * kPage, kPage, c, kPage / 16, rng);   // one word: mid-page
    prepared_ = c;
    diffs_.clear();
  }

  // Diffs of every page changed as c says (full or masked: each page's diff has the
  // same length), packed, for the apply benchmarks.
  std::span<const std::byte> diff(Change c, std::size_t page) {
    if (diffs_.empty() || prepared_ != c) encode_all(c);
    return {diffs_.data() + page * diff_bytes_, diff_bytes_};
  }

 private:
  void encode_all(Change c) {
    prepare(c);
    diff_bytes_ = diff_encode(cur(0), twin(0), kPage, out());
    diffs_.resize(kColdPages * diff_bytes_);
    for (std::size_t p = 0; p < kColdPages; ++p) {   // via out(): diff_encode may write past n
      const std::size_t n = diff_encode(cur(p), twin(p), kPage, out());
      std::memcpy(diffs_.data() + p * diff_bytes_, out(), n);
    }
  }

  PageRegion twin_, cur_, scratch_;
  std::vector<std::byte> out_;
  std::vector<std::byte> diffs_;
  std::size_t diff_bytes_ = 0;
  std::optional<Change> prepared_;
};

Arena& arena() {
  static Arena a;
  return a;
}

// Hot runs reuse page 0; cold runs walk all pages in address order, as the runtime
// encodes dirty pages at the end of a segment.
std::size_t next_page(bool cold, std::size_t p) { return cold ? (p + 1) % kColdPages : 0; }

void finish(benchmark::State& state) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * kPage);
}

void bm_encode(benchmark::State& state, Change c, bool cold) {
  Arena& a = arena();
  a.prepare(c);
  std::size_t p = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(diff_encode(a.cur(p), a.twin(p), kPage, a.out()));
    p = next_page(cold, p);
  }
  finish(state);
}

void bm_memcmp(benchmark::State& state, bool cold) {
  Arena& a = arena();
  a.prepare(Change::none);  // equal pages: memcmp reads all of both
  std::size_t p = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(std::memcmp(a.cur(p), a.twin(p), kPage));
    p = next_page(cold, p);
  }
  finish(state);
}

void bm_memcpy(benchmark::State& state, bool cold) {
  Arena& a = arena();
  std::size_t p = 0;
  for (auto _ : state) {
    std::memcpy(a.scratch(p), a.twin(p), kPage);
    benchmark::ClobberMemory();
    p = next_page(cold, p);
  }
  finish(state);
}

void bm_apply(benchmark::State& state, Change c, bool cold) {
  Arena& a = arena();
  a.diff(c, 0);
  std::size_t p = 0;
  for (auto _ : state) {
    diff_apply(a.diff(c, p), a.scratch(p));
    benchmark::ClobberMemory();
    p = next_page(cold, p);
  }
  finish(state);
}

const char* temp(bool cold) { return cold ? "cold" : "hot"; }

constexpr Change kChanges[] = {Change::none, Change::one_word, Change::scattered_10pct,
                               Change::full, Change::masked};

// Grouped so that the 128 MiB of current pages is rebuilt as rarely as possible.
void register_all() {
  for (bool cold : {false, true}) {
    const std::string t = temp(cold);
    benchmark::RegisterBenchmark(("memcmp/" + t).c_str(), bm_memcmp, cold);
    for (Change c : kChanges) {
      const std::string name = std::string("encode/") + change_name(c) + "/" + t;
      benchmark::RegisterBenchmark(name.c_str(), bm_encode, c, cold);
    }
    for (Change c : {Change::full, Change::masked})
      benchmark::RegisterBenchmark((std::string("apply/") + change_name(c) + "/" + t).c_str(), bm_apply, c, cold);
    benchmark::RegisterBenchmark(("memcpy/" + t).c_str(), bm_memcpy, cold);
  }
}


// Throughput ratio = baseline time / measured time (both move one page per iteration).
void print_ratio(const RecordingReporter& r, const std::string& name, const std::string& baseline,
                 const char* what, bool has_target) {
  const double t = r.time(name), base = r.time(baseline);
  if (t <= 0 || base <= 0) return;
  const double ratio = base / t;
  const char* verdict = !has_target ? "(info)" : ratio >= 0.8 ? "PASS (>= 0.80)" : "MISS (< 0.80)";
  std::printf("%-30s %5.2f of %s throughput  %s\n", (name + ":").c_str(), ratio, what, verdict);
}

void print_table(const RecordingReporter& r) {
  std::printf("\nratios (CPU time per page; the median when repetitions are run):\n");
  for (const char* t : {"hot", "cold"}) {
    for (Change c : kChanges) {
      const bool sparse = c == Change::none || c == Change::one_word;
      print_ratio(r, std::string("encode/") + change_name(c) + "/" + t,
                  std::string("memcmp/") + t, "memcmp", sparse);
    }
  }
  for (const char* t : {"hot", "cold"}) {
    print_ratio(r, std::string("apply/full/") + t, std::string("memcpy/") + t, "memcpy", true);
    print_ratio(r, std::string("apply/masked/") + t, std::string("memcpy/") + t, "memcpy", false);
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_all();
  return run_benchmarks(RecordingReporter::Metric::cpu_time, print_table);
}
