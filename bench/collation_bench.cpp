// Collation at the manager: how many bytes of diff per second Collation::apply writes
// into home memory, against memcpy of the same number of bytes, measured in the same run.
//
// Target (from the issue): report the diff bytes applied per second; there is no pass
// mark, so the ratio to memcpy throughput is printed for information. Result bodies (as
// PageCache::finish_segment makes them: ResultEntry + diff per page) cover every page of
// a 128 MiB region of 16 KiB pages (the runtime's default), four times the L3 cache,
// with three kinds of change per page: every word (full), 10% of the words scattered
// (scattered_10pct) and one word (one_word; 128 passes over the region, each writing
// other lines). One iteration applies one body of 64 pages; the bodies are applied in
// turn, so both the diffs and the written lines come from memory, not from the cache.
// memcpy/<change> copies the same bodies into a buffer as large, in the same order.
// validate/<change> (the check every result gets on arrival) and apply_checked/<change>
// (apply in conflict-checking mode) are shown for information.
//
// Suggested run: collation_bench --benchmark_min_time=0.05 --benchmark_repetitions=5
#include <benchmark/benchmark.h>

#include "page_changes.hpp"
#include "recording_reporter.hpp"

#include "dsm/collation.hpp"
#include "dsm/diff.hpp"
#include "dsm/region.hpp"
#include "dsm/result_format.hpp"

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

namespace {

using calypso::dsm::Access;
using calypso::dsm::Collation;
using calypso::dsm::diff_encode;
using calypso::dsm::diff_max_encoded_size;
using calypso::dsm::PageNumber;
using calypso::dsm::Region;
using calypso::dsm::ResultEntry;
using calypso::dsm::SegmentTag;

constexpr std::size_t kPage = 16384;
constexpr PageNumber kPages = 8192;        // 128 MiB
constexpr PageNumber kBodyPages = 64;      // pages per result body (one iteration)
constexpr std::uintptr_t kRegionAddress = 0x3e3000000000;

constexpr Change kChanges[] = {Change::one_word, Change::scattered_10pct, Change::full,
                               Change::masked};

// One changed word touches one cache line of the page. Successive rounds pick different
// lines (none twice within kOneWordRounds), so that the lines written are not still
// cached from the previous pass over the region.
std::size_t one_word_of(PageNumber p, std::size_t round) {
  constexpr std::size_t kLines = kPage / 64;
  return ((round + std::size_t{p} * 37) % kLines) * 8 + (p % 8);
}

// Passes over the region, each with its own bodies: one changed word per page writes only
// 512 KiB of lines per pass, so that kind gets 128 passes (64 MiB of distinct lines).
constexpr std::size_t kOneWordRounds = 128;
std::size_t rounds(Change c) { return c == Change::one_word ? kOneWordRounds : 1; }

// The result bodies of one kind of change, packed one after the other.
struct Bodies {
  std::vector<std::byte> bytes;
  std::vector<std::size_t> start;   // count() + 1 offsets into bytes

  std::size_t count() const { return start.size() - 1; }
  std::span<const std::byte> body(std::size_t i) const {
    return std::span(bytes).subspan(start[i], start[i + 1] - start[i]);
  }
};

// The twin's contents do not matter to apply: one random page serves every page.
Bodies make_bodies(Change c) {
  Bodies out;
  std::mt19937_64 rng(7);
  std::vector<std::byte> twin(kPage), cur(kPage), diff(diff_max_encoded_size(kPage));
  for (std::size_t i = 0; i < kPage; i += 8) {
    const std::uint64_t v = rng();
    std::memcpy(twin.data() + i, &v, 8);
  }
  cur = twin;
  for (std::size_t round = 0; round < rounds(c); ++round) {
    for (PageNumber p = 0; p < kPages; ++p) {
      if (p % kBodyPages == 0) out.start.push_back(out.bytes.size());
      change_page(cur.data(), kPage, c, one_word_of(p, round), rng);
      const std::size_t n = diff_encode(cur.data(), twin.data(), kPage, diff.data());
      if (c == Change::one_word) flip_word(cur.data(), one_word_of(p, round));   // undo
      else std::memcpy(cur.data(), twin.data(), kPage);
      const ResultEntry e{p, static_cast<std::uint32_t>(n)};
      const auto* head = reinterpret_cast<const std::byte*>(&e);
      out.bytes.insert(out.bytes.end(), head, head + sizeof e);
      out.bytes.insert(out.bytes.end(), diff.begin(), diff.begin() + static_cast<std::ptrdiff_t>(n));
    }
  }
  out.start.push_back(out.bytes.size());
  return out;
}

// Built once per kind of change, on first use.
const Bodies& bodies(Change c) {
  static std::optional<Bodies> made[static_cast<int>(Change::masked) + 1];
  auto& b = made[static_cast<int>(c)];
  if (!b) b = make_bodies(c);
  return *b;
}

// The home region, every page touched once so that applying never allocates a page.
const Region& region() {
  static Region r = [] {
    Region m = Region::map(kRegionAddress, std::size_t{kPages} * kPage, kPage, Access::read);
    std::memset(m.runtime_view(), 0, m.size());
    return m;
  }();
  return r;
}

void finish(benchmark::State& state, std::size_t bytes) {
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.SetItemsProcessed(state.iterations() * kBodyPages);   // pages
}

void bm_apply(benchmark::State& state, Change c, bool check) {
  const Bodies& b = bodies(c);
  Collation collation(region(), check);
  std::vector<PageNumber> written;
  written.reserve(kBodyPages);
  std::size_t bytes = 0;
  std::size_t i = 0;
  for (auto _ : state) {
    const auto body = b.body(i);
    written.clear();
    benchmark::DoNotOptimize(collation.apply(body, SegmentTag{0, static_cast<std::uint32_t>(i)}, written));
    bytes += body.size();
    i = (i + 1) % b.count();
  }
  finish(state, bytes);
}

void bm_validate(benchmark::State& state, Change c) {
  const Bodies& b = bodies(c);
  Collation collation(region(), false);
  std::size_t bytes = 0;
  std::size_t i = 0;
  for (auto _ : state) {
    const auto body = b.body(i);
    if (!collation.validate(body).empty()) {
      state.SkipWithError("a body did not validate");
      break;
    }
    bytes += body.size();
    i = (i + 1) % b.count();
  }
  finish(state, bytes);
}

void bm_memcpy(benchmark::State& state, Change c) {
  const Bodies& b = bodies(c);
  const auto scratch = std::make_unique_for_overwrite<std::byte[]>(b.bytes.size());
  std::memset(scratch.get(), 0, b.bytes.size());
  std::size_t bytes = 0;
  std::size_t i = 0;
  for (auto _ : state) {
    const auto body = b.body(i);
    std::memcpy(scratch.get() + b.start[i], body.data(), body.size());
    benchmark::ClobberMemory();
    bytes += body.size();
    i = (i + 1) % b.count();
  }
  finish(state, bytes);
}

void print_table(const RecordingReporter& r) {
  std::printf("\ndiff bytes applied per second vs memcpy of the same bytes (cold; median when repeated):\n");
  for (Change c : kChanges) {
    const std::string change = change_name(c);
    const double copy = r.value("memcpy/" + change);
    if (copy <= 0) continue;
    for (const char* what : {"apply", "validate", "apply_checked"}) {
      const double rate = r.value(std::string(what) + "/" + change);
      if (rate <= 0) continue;
      std::printf("%-30s %7.2f GB/s, %5.2f of memcpy (%.2f GB/s)  (info)\n",
                  (std::string(what) + "/" + change + ":").c_str(), rate / 1e9, rate / copy, copy / 1e9);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  for (Change c : kChanges) {
    const std::string change = change_name(c);
    benchmark::RegisterBenchmark(("memcpy/" + change).c_str(), bm_memcpy, c);
    benchmark::RegisterBenchmark(("apply/" + change).c_str(), bm_apply, c, false);
    benchmark::RegisterBenchmark(("validate/" + change).c_str(), bm_validate, c);
    benchmark::RegisterBenchmark(("apply_checked/" + change).c_str(), bm_apply, c, true);
  }
  return run_benchmarks(RecordingReporter::Metric::bytes_per_second, print_table);
}
