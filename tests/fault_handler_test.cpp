// Tests of the SIGSEGV handler (dsm/fault_handler.hpp) and the worker's page cache
// (dsm/page_cache.hpp).
//
// Faults outside the shared region are the program's own: forked children show that
// they still kill the process with SIGSEGV, or reach the handler the program installed
// before, exactly as without the library. Faults inside the region reach the target.
// The page cache is driven by real faults against a test double of the manager (a
// PageSource serving a private "home" copy and counting fetches): reads fetch whole
// groups once, writes make twins, the diffs of a segment reproduce exactly what it
// wrote when applied to home, the region reads the snapshot again afterwards, write
// notices force a re-fetch, and a "stale" answer turns into an abort of the segment.
#include "dsm/diff.hpp"
#include "dsm/fault_handler.hpp"
#include "dsm/page_cache.hpp"
#include "dsm/region.hpp"
#include "dsm/result_format.hpp"

#include <calypso/error.hpp>

#include "child_process.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <fcntl.h>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace calypso::dsm {
namespace {

constexpr std::size_t kPage = 16384;
constexpr PageNumber kPages = 64;
constexpr std::size_t kSize = kPage * kPages;
constexpr PageNumber kGroup = 5;   // pages per fetch: 64 is not a multiple, the last group is short

// Distinct addresses per test: a region outlives nothing, but a mistake should not
// turn into a clash that hides the real failure.
std::uintptr_t address_for(int k) { return 0x3d0000000000ULL + (std::uintptr_t{0x60} + k) * (std::uintptr_t{1} << 32); }

using calypso::test::kSegv;
using calypso::test::run_in_child;

// libinfinipath, pulled in with libfabric, installs a SIGSEGV handler at load time that
// prints a backtrace and exits 1. Children that model "a program without handlers"
// start from the default disposition.
void default_sigsegv() { signal(SIGSEGV, SIG_DFL); }

// Accesses that may fault. The fence after each one tells the compiler that the signal
// handler may have changed any memory (counters, statistics) meanwhile.
std::byte load(const std::byte* p) {
  const std::byte v = *static_cast<const volatile std::byte*>(p);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  return v;
}
void store(std::byte* p, std::byte v) {
  *static_cast<volatile std::byte*>(p) = v;
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

// A null pointer the compiler cannot see (a visible null dereference may become a trap).
volatile std::uintptr_t g_zero = 0;
void touch(std::uintptr_t address) { (void)*reinterpret_cast<volatile const char*>(address); }
void touch_null() { touch(g_zero); }

// A target that must never be asked: exits 3 if it is.
class NeverTarget final : public FaultTarget {
 public:
  FaultOutcome on_fault(void*, bool) noexcept override { _exit(3); }
};

// Previously installed handlers: record what they saw and exit with a telling status.
volatile sig_atomic_t g_flag = 0;
void previous_siginfo(int sig, siginfo_t* info, void*) {
  g_flag = 1;
  _exit(sig == SIGSEGV && info->si_addr == nullptr && g_flag == 1 ? 42 : 41);
}
void previous_plain(int sig) { _exit(sig == SIGSEGV ? 43 : 44); }

TEST(FaultHandler, ForeignFaultStillKillsWithSigsegv) {
  EXPECT_EQ(run_in_child([] {
              default_sigsegv();
              Region r = Region::map(address_for(0), kSize, kPage, Access::none);
              NeverTarget target;
              FaultHandler h(r.base(), r.size(), target);
              touch_null();
            }),
            kSegv);
}

TEST(FaultHandler, ForeignFaultReachesPreviousSiginfoHandler) {
  EXPECT_EQ(run_in_child([] {
              struct sigaction sa {};
              sa.sa_sigaction = &previous_siginfo;
              sa.sa_flags = SA_SIGINFO;
              sigemptyset(&sa.sa_mask);
              sigaction(SIGSEGV, &sa, nullptr);
              Region r = Region::map(address_for(1), kSize, kPage, Access::none);
              NeverTarget target;
              FaultHandler h(r.base(), r.size(), target);
              touch_null();
            }),
            "exit 42");
}

TEST(FaultHandler, ForeignFaultReachesPreviousPlainHandler) {
  EXPECT_EQ(run_in_child([] {
              signal(SIGSEGV, &previous_plain);
              Region r = Region::map(address_for(2), kSize, kPage, Access::none);
              NeverTarget target;
              FaultHandler h(r.base(), r.size(), target);
              touch_null();
            }),
            "exit 43");
}

TEST(FaultHandler, ForeignFaultEndsTheProcessWithSigsegv) {
  // libfabric loads libinfinipath, whose handler turns a crash into "exit 1" and leaves a
  // *.btr file in the working directory (hence the scratch directory). The DSM handler
  // does not forward to it, so that a program's own bug ends it with SIGSEGV, as it would
  // without libfabric. A handler the program installed itself is still called (above).
  char tmpl[] = "/tmp/calypso-fault-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string without = run_in_child([&] {
    if (chdir(dir.c_str()) != 0) _exit(6);
    touch_null();
  });
  const std::string with = run_in_child([&] {
    if (chdir(dir.c_str()) != 0) _exit(6);
    Region r = Region::map(address_for(3), kSize, kPage, Access::none);
    NeverTarget target;
    FaultHandler h(r.base(), r.size(), target);
    touch_null();
  });
  std::filesystem::remove_all(dir);
  EXPECT_NE(without, "exit 0");
  EXPECT_NE(without, "exit 6");
  EXPECT_EQ(with, "signal 11");
}

TEST(FaultHandler, FaultsJustOutsideTheRegionAreForeign) {
  for (bool after : {false, true}) {
    EXPECT_EQ(run_in_child([after] {
                default_sigsegv();
                Region r = Region::map(address_for(4), kSize, kPage, Access::none);
                // Guard pages on both sides, so that the touched addresses are mapped but denied.
                const std::uintptr_t below = address_for(4) - kPage, above = address_for(4) + kSize;
                for (std::uintptr_t g : {below, above}) {
                  void* p = mmap(reinterpret_cast<void*>(g), kPage, PROT_NONE,
                                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
                  if (p != reinterpret_cast<void*>(g)) _exit(5);
                }
                NeverTarget target;
                FaultHandler h(r.base(), r.size(), target);
                touch(after ? above : below + kPage - 1);
              }),
              kSegv)
        << (after ? "first byte after the region" : "last byte before the region");
  }
}

// A target that opens the faulting page and records what it saw.
class OpeningTarget final : public FaultTarget {
 public:
  explicit OpeningTarget(const Region& r) : region_(r) {}
  FaultOutcome on_fault(void* address, bool is_write) noexcept override {
    last_address = address;
    last_write = is_write;
    ++faults;
    if (region_.protect(region_.page_of(address), 1, Access::read_write) != 0) return FaultOutcome::fatal;
    return FaultOutcome::resolved;
  }
  void* last_address = nullptr;
  bool last_write = false;
  int faults = 0;

 private:
  const Region& region_;
};

TEST(FaultHandler, FaultsInTheRegionReachTheTarget) {
  Region r = Region::map(address_for(5), kSize, kPage, Access::none);
  r.runtime_page(7)[100] = std::byte{0x77};
  OpeningTarget target(r);
  {
    FaultHandler h(r.base(), r.size(), target);
    EXPECT_EQ(load(r.user_page(7) + 100), std::byte{0x77});
    EXPECT_EQ(target.faults, 1);
    EXPECT_EQ(target.last_address, r.user_page(7) + 100);
#if defined(__x86_64__)
    EXPECT_FALSE(target.last_write);
#endif
    store(r.user_page(9) + kPage - 1, std::byte{1});
    EXPECT_EQ(target.faults, 2);
    EXPECT_EQ(target.last_address, r.user_page(9) + kPage - 1);
#if defined(__x86_64__)
    EXPECT_TRUE(target.last_write);
#endif
    EXPECT_EQ(r.runtime_page(9)[kPage - 1], std::byte{1});
    // An open page does not fault again.
    store(r.user_page(7), std::byte{2});
    EXPECT_EQ(target.faults, 2);
  }
}

TEST(FaultHandler, OneAtATimeAndRestoresThePreviousDisposition) {
  struct sigaction before {};
  ASSERT_EQ(sigaction(SIGSEGV, nullptr, &before), 0);
  Region r = Region::map(address_for(6), kSize, kPage, Access::none);
  OpeningTarget target(r);
  {
    FaultHandler h(r.base(), r.size(), target);
    struct sigaction during {};
    ASSERT_EQ(sigaction(SIGSEGV, nullptr, &during), 0);
    EXPECT_NE(during.sa_flags & SA_SIGINFO, 0);
    EXPECT_NE(reinterpret_cast<void*>(during.sa_sigaction), reinterpret_cast<void*>(before.sa_sigaction));
    EXPECT_THROW(FaultHandler(r.base(), r.size(), target), calypso::Error);
  }
  struct sigaction after {};
  ASSERT_EQ(sigaction(SIGSEGV, nullptr, &after), 0);
  EXPECT_EQ(reinterpret_cast<void*>(after.sa_sigaction), reinterpret_cast<void*>(before.sa_sigaction));
  EXPECT_EQ(after.sa_flags & SA_SIGINFO, before.sa_flags & SA_SIGINFO);
  // And a new one may be installed.
  FaultHandler again(r.base(), r.size(), target);
}

class OutcomeTarget final : public FaultTarget {
 public:
  explicit OutcomeTarget(FaultOutcome o) : outcome_(o) {}
  FaultOutcome on_fault(void*, bool) noexcept override { return outcome_; }

 private:
  FaultOutcome outcome_;
};
void abort_hook_exits() { _exit(55); }

TEST(FaultHandler, AbortCallsTheHookAndFatalExits) {
  EXPECT_EQ(run_in_child([] {
              Region r = Region::map(address_for(7), kSize, kPage, Access::none);
              OutcomeTarget target(FaultOutcome::abort);
              FaultHandler h(r.base(), r.size(), target, &abort_hook_exits);
              touch(reinterpret_cast<std::uintptr_t>(r.base()) + 5);
            }),
            "exit 55");
  EXPECT_EQ(run_in_child([] {
              Region r = Region::map(address_for(8), kSize, kPage, Access::none);
              OutcomeTarget target(FaultOutcome::fatal);
              FaultHandler h(r.base(), r.size(), target, &abort_hook_exits);
              touch(reinterpret_cast<std::uintptr_t>(r.base()) + 5);
            }),
            "exit 70");
}

// The manager, as seen by the page cache: serves pages of a private home copy.
class HomeSource final : public PageSource {
 public:
  HomeSource() : home(kSize), kinds_(kPages), data_(kSize) {
    std::mt19937_64 rng(99);
    for (auto& b : home) b = std::byte(rng() & 0xff);
    for (PageNumber p : {3u, 7u, 11u}) std::memset(home.data() + p * kPage, 0, kPage);
  }

  // Runs in the SIGSEGV handler: no allocation.
  FetchResult fetch(PageNumber first, PageNumber count) noexcept override {
    ++calls;
    last_first = first;
    last_count = count;
    if (status != FetchStatus::ok) return {status, {}, {}};
    std::size_t pages_with_data = 0;
    for (PageNumber i = 0; i < count; ++i) {
      const std::byte* src = home.data() + std::size_t{first + i} * kPage;
      const bool zero = std::all_of(src, src + kPage, [](std::byte b) { return b == std::byte{0}; });
      kinds_[i] = zero ? 0 : 1;
      if (!zero) std::memcpy(data_.data() + pages_with_data++ * kPage, src, kPage);
    }
    const std::size_t kinds = short_kinds ? count - 1 : count;
    return {FetchStatus::ok, {kinds_.data(), kinds}, {data_.data(), pages_with_data * kPage}};
  }

  std::byte* home_page(PageNumber p) { return home.data() + std::size_t{p} * kPage; }

  std::vector<std::byte> home;
  FetchStatus status = FetchStatus::ok;
  bool short_kinds = false;   // answer with one kind byte too few
  int calls = 0;
  PageNumber last_first = ~0u, last_count = 0;

 private:
  std::vector<std::uint8_t> kinds_;
  std::vector<std::byte> data_;
};

// A worker's DSM: region, source, cache and handler, torn down in reverse order.
struct Worker {
  explicit Worker(int k, PageNumber fetch_ahead = 0)
      : region(Region::map(address_for(k), kSize, kPage, Access::none)),
        cache(region, source, kGroup, 16, fetch_ahead),
        handler(region.base(), region.size(), cache) {
    cache.mark_written(0, kPages);   // home has data everywhere: nothing is known-zero
  }

  std::byte* at(PageNumber p, std::size_t offset = 0) const { return region.user_page(p) + offset; }
  std::byte read(PageNumber p, std::size_t offset = 0) const { return load(at(p, offset)); }
  void write(PageNumber p, std::size_t offset, std::byte v) const { store(at(p, offset), v); }
  bool page_is_home(PageNumber p) {
    const bool same = std::memcmp(at(p), source.home_page(p), kPage) == 0;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    return same;
  }

  Region region;
  HomeSource source;
  PageCache cache;
  FaultHandler handler;
};

TEST(PageCache, ReadFetchesTheGroupOnce) {
  Worker w(10);
  EXPECT_EQ(w.read(12, 5), w.source.home_page(12)[5]);
  EXPECT_EQ(w.source.calls, 1);
  EXPECT_EQ(w.source.last_first, 10u);
  EXPECT_EQ(w.source.last_count, kGroup);
  EXPECT_EQ(w.cache.stats().fetches, 1u);
  EXPECT_EQ(w.cache.stats().read_faults, 1u);
  EXPECT_EQ(w.cache.stats().pages_fetched, kGroup);
  // The whole group is in, and equal to home; no further fetch.
  for (PageNumber p = 10; p < 15; ++p) EXPECT_TRUE(w.page_is_home(p)) << p;
  EXPECT_EQ(w.source.calls, 1);
  EXPECT_EQ(w.cache.stats().read_faults, 1u);
  // The next group is fetched separately.
  EXPECT_EQ(w.read(15), w.source.home_page(15)[0]);
  EXPECT_EQ(w.source.calls, 2);
  EXPECT_EQ(w.source.last_first, 15u);
  // The last group is short.
  EXPECT_TRUE(w.page_is_home(kPages - 1));
  EXPECT_EQ(w.source.calls, 3);
  EXPECT_EQ(w.source.last_first, 60u);
  EXPECT_EQ(w.source.last_count, 4u);
  // Everything reads as home; each group was fetched exactly once.
  for (PageNumber p = 0; p < kPages; ++p) ASSERT_TRUE(w.page_is_home(p)) << p;
  EXPECT_EQ(w.source.calls, static_cast<int>((kPages + kGroup - 1) / kGroup));
  EXPECT_EQ(w.cache.stats().pages_fetched, kPages);
  EXPECT_EQ(w.cache.stats().write_faults, 0u);
}

// Read-ahead: a read fault where the previous fetch of a stream ended doubles that
// stream's fetch (up to fetch_ahead pages, never over a page already held); two
// interleaved streams are followed separately; a jump elsewhere starts small again.
TEST(PageCache, SequentialReadsFetchAheadPerStream) {
  Worker w(16, 20);
  auto fetched = [&](PageNumber first, PageNumber count) {
    EXPECT_EQ(w.source.last_first, first);
    EXPECT_EQ(w.source.last_count, count);
  };
  w.read(0);
  fetched(0, 5);
  w.read(40);   // a second stream
  fetched(40, 5);
  w.read(5);
  fetched(5, 10);
  w.read(45);
  fetched(45, 10);
  w.read(15);
  fetched(15, 20);
  w.read(35);   // capped at 20, and stops at page 40, which is held
  fetched(35, 5);
  w.read(55);
  fetched(55, 9);   // stream 2 doubles to 20, but the region ends at 64
  EXPECT_EQ(w.source.calls, 7);
  for (PageNumber p = 0; p < kPages; ++p) ASSERT_TRUE(w.page_is_home(p)) << p;
  EXPECT_EQ(w.source.calls, 7) << "every page was fetched exactly once";
  EXPECT_EQ(w.cache.stats().pages_fetched, kPages);
}

TEST(PageCache, ReadAheadStartsSmallAfterAJump) {
  Worker w(17, 20);
  w.read(0);
  w.read(5);
  EXPECT_EQ(w.source.last_count, 10u);
  w.read(30);   // not where a stream ended
  EXPECT_EQ(w.source.last_first, 30u);
  EXPECT_EQ(w.source.last_count, 5u);
}

// A page nobody has written is cleared, not fetched, with its never-written neighbours,
// until a notice (or the join-time list) says it was written.
TEST(PageCache, KnownZeroPagesAreNotFetched) {
  Region r = Region::map(address_for(20), kSize, kPage, Access::none);
  HomeSource source;
  PageCache cache(r, source, kGroup, 16, 8);
  FaultHandler handler(r.base(), r.size(), cache);
  cache.mark_written(10, 5);   // home pages 10..14 were written before we joined
  std::memset(source.home_page(3), 0, kPage);   // (home data elsewhere is never read)
  std::memset(r.runtime_page(30), 0x5a, kPage);   // a stale local copy must be cleared
  EXPECT_EQ(load(r.user_page(30) + 7), std::byte{0});
  EXPECT_EQ(source.calls, 0);
  EXPECT_EQ(cache.stats().zero_pages, 8u) << "page 30 and the 7 after it, up to fetch_ahead";
  EXPECT_EQ(load(r.user_page(12) + 5), source.home_page(12)[5]);
  EXPECT_EQ(source.calls, 1) << "a written page is fetched";
  const PageNumber notice[] = {31, 50};
  cache.invalidate(notice);
  EXPECT_EQ(load(r.user_page(31) + 1), source.home_page(31)[1]) << "noticed: now fetched";
  EXPECT_EQ(source.calls, 2);
  EXPECT_EQ(load(r.user_page(50)), source.home_page(50)[0]);
  EXPECT_EQ(source.calls, 3);
  cache.invalidate_all();
  EXPECT_EQ(load(r.user_page(40)), source.home_page(40)[0]) << "after invalidate_all nothing is known-zero";
  EXPECT_EQ(source.calls, 4);
}

TEST(PageCache, ZeroPagesAreClearedNotShipped) {
  Worker w(11);
  // Leave garbage where the zero page will land: the cache must clear it.
  std::memset(w.region.runtime_page(7), 0xaa, kPage);
  std::memset(w.region.runtime_page(6), 0xaa, kPage);
  EXPECT_EQ(w.read(7, 123), std::byte{0});
  EXPECT_TRUE(w.page_is_home(7));
  EXPECT_TRUE(w.page_is_home(6));   // a data page beside it in the group
  EXPECT_TRUE(w.page_is_home(5));
  EXPECT_EQ(w.source.calls, 1);
}

// Applies a segment's body to a copy of home, checking its framing on the way; returns
// the pages it names.
std::vector<PageNumber> apply_body(const std::vector<std::byte>& body, std::vector<std::byte>& memory) {
  std::vector<PageNumber> pages;
  std::size_t at = 0;
  while (at < body.size()) {
    ResultEntry e;
    EXPECT_GE(body.size() - at, sizeof e);
    if (body.size() - at < sizeof e) break;
    std::memcpy(&e, body.data() + at, sizeof e);
    at += sizeof e;
    EXPECT_LT(e.page, kPages);
    EXPECT_GT(e.diff_bytes, 0u) << "unchanged pages are not shipped";
    EXPECT_LE(e.diff_bytes, body.size() - at);
    if (e.page >= kPages || e.diff_bytes > body.size() - at) break;
    std::span<const std::byte> diff(body.data() + at, e.diff_bytes);
    EXPECT_EQ(diff_validate(diff, kPage), DiffStatus::ok) << "page " << e.page;
    diff_apply(diff, memory.data() + std::size_t{e.page} * kPage);
    pages.push_back(e.page);
    at += e.diff_bytes;
  }
  return pages;
}

// Pages made writable up front take no write fault, ship exactly what was written, and
// the ones left unchanged are not remembered as written; invalid and held pages are
// left to the fault path.
TEST(PageCache, PreparedWritesTakeNoFaultAndShipOnlyChanges) {
  Worker w(18);
  for (PageNumber p = 20; p < 30; ++p) w.read(p);   // clean
  const std::uint64_t faults = w.cache.stats().write_faults;
  const std::uint64_t copies = w.cache.stats().twin_copies;
  w.cache.prepare_writes(std::vector<PageNumber>{22, 21, 23, 24, 40, 22});   // 40: invalid
  EXPECT_EQ(w.cache.stats().write_faults, faults);
  EXPECT_EQ(w.cache.stats().twin_copies, copies + 4) << "one twin each for 21-24, none for 40";
  const std::byte v21 = ~w.source.home_page(21)[5], v24 = ~w.source.home_page(24)[9];
  w.write(21, 5, v21);
  w.write(24, 9, v24);
  w.write(23, 0, w.source.home_page(23)[0]);   // written, unchanged
  EXPECT_EQ(w.cache.stats().write_faults, faults) << "prepared pages must not fault";
  w.write(26, 1, ~w.source.home_page(26)[1]);   // not prepared: faults as usual
  EXPECT_EQ(w.cache.stats().write_faults, faults + 1);
  EXPECT_EQ(w.cache.stats().twin_copies, copies + 5) << "a segment's first write fault twins one page";
  std::vector<std::byte> body;
  EXPECT_EQ(w.cache.finish_segment(body, 0), 3u);
  std::vector<std::byte> applied = w.source.home;
  EXPECT_EQ(apply_body(body, applied), (std::vector<PageNumber>{21, 24, 26}));
  EXPECT_EQ(applied[21 * kPage + 5], v21);
  EXPECT_EQ(applied[24 * kPage + 9], v24);
  EXPECT_EQ(w.cache.written(), (std::vector<PageNumber>{21, 24, 26}))
      << "prepared pages that stayed the same are not counted as written";
  for (PageNumber p : {21u, 22u, 23u, 24u, 26u}) EXPECT_TRUE(w.page_is_home(p)) << p;
}

// A result written into room (a worker's result ring) is byte for byte the one appended
// to a vector, and leaves the pages as that does; too little room is refused before
// anything changes.
TEST(PageCache, FinishingIntoRoomWritesTheSameBodyAsIntoAVector) {
  Worker w(19);
  std::vector<std::byte> expected = w.source.home;
  auto writes = [&] {
    for (std::size_t i = 0; i < 64; ++i) w.write(20, i * 97 % kPage, ~w.source.home_page(20)[i * 97 % kPage]);
    w.write(22, 0, ~w.source.home_page(22)[0]);
    w.write(23, 5, w.source.home_page(23)[5]);   // written, unchanged: no entry
    for (std::size_t i = 0; i < kPage; i += 8) w.write(25, i, std::byte{0x25});   // the whole page
  };
  writes();
  for (PageNumber p : {20u, 22u, 23u, 25u}) std::memcpy(&expected[p * kPage], w.at(p), kPage);
  const std::size_t bound = w.cache.result_bound();
  EXPECT_GE(bound, 4 * (sizeof(ResultEntry) + diff_max_encoded_size(kPage)));
  std::vector<std::byte> small(bound - 1);
  EXPECT_THROW(w.cache.finish_segment(std::span(small), 0), calypso::Error);
  EXPECT_EQ(w.cache.result_bound(), bound) << "a refused finish changes nothing";
  EXPECT_EQ(w.read(25, 8), std::byte{0x25});
  std::vector<std::byte> room(bound, std::byte{0x5a});
  const PageCache::Finished f = w.cache.finish_segment(std::span(room), 0);
  EXPECT_EQ(f.changed_pages, 3u);
  ASSERT_LE(f.body_bytes, room.size());
  EXPECT_EQ(w.cache.result_bound(), 0u);
  for (PageNumber p : {20u, 22u, 23u, 25u}) EXPECT_TRUE(w.page_is_home(p)) << p;
  const std::vector<std::byte> in_room(room.begin(), room.begin() + static_cast<std::ptrdiff_t>(f.body_bytes));
  std::vector<std::byte> applied = w.source.home;
  EXPECT_EQ(apply_body(in_room, applied), (std::vector<PageNumber>{20, 22, 25}));
  EXPECT_TRUE(applied == expected);
  writes();   // the same segment again, into a vector
  std::vector<std::byte> body;
  EXPECT_EQ(w.cache.finish_segment(body, 0), f.changed_pages);
  EXPECT_TRUE(body == in_room);
  for (PageNumber p : {20u, 22u, 23u, 25u}) EXPECT_TRUE(w.page_is_home(p)) << p;
}

TEST(PageCache, SegmentDiffsReproduceItsWritesAndTheSnapshotReturns) {
  Worker w(12);
  std::vector<std::byte> expected = w.source.home;
  std::mt19937_64 rng(7);
  std::map<PageNumber, int> changed;
  auto write = [&](PageNumber p, std::size_t off, std::byte v) {
    w.write(p, off, v);
    if (expected[p * kPage + off] != v) ++changed[p];
    expected[p * kPage + off] = v;
  };
  EXPECT_EQ(w.read(20), w.source.home_page(20)[0]);          // clean first, written later
  write(20, 8, ~w.source.home_page(20)[8]);
  write(26, 0, ~w.source.home_page(26)[0]);                  // write to a never-fetched page...
  write(26, kPage - 1, ~w.source.home_page(26)[kPage - 1]);
  write(3, 4096, std::byte{0x33});                           // ...and to a zero page
  write(40, 17, w.source.home_page(40)[17]);                 // same value: faults, ships nothing
  for (int i = 0; i < 300; ++i) {                            // scattered single bytes
    const PageNumber p = 44 + static_cast<PageNumber>(rng() % 6);
    write(p, rng() % kPage, std::byte(rng() & 0xff));
  }
  for (PageNumber p : {20u, 26u, 3u, 40u}) EXPECT_EQ(std::memcmp(w.at(p), &expected[p * kPage], kPage), 0);
  EXPECT_GE(w.cache.stats().write_faults + w.cache.stats().read_faults, 5u);

  std::vector<std::byte> body;
  const std::size_t n = w.cache.finish_segment(body, 0);
  std::vector<std::byte> applied = w.source.home;
  std::vector<PageNumber> pages = apply_body(body, applied);
  EXPECT_EQ(n, pages.size());
  EXPECT_EQ(pages.size(), changed.size());
  for (PageNumber p : pages) EXPECT_TRUE(changed.count(p)) << "page " << p << " shipped but not changed";
  EXPECT_TRUE(std::is_sorted(pages.begin(), pages.end()));
  EXPECT_TRUE(std::adjacent_find(pages.begin(), pages.end()) == pages.end()) << "a page shipped twice";
  EXPECT_TRUE(applied == expected) << "diffs applied to home differ from what the segment wrote";

  // The region is back at the snapshot, without asking the manager again.
  const int calls = w.source.calls;
  for (PageNumber p : {20u, 26u, 3u, 40u, 44u, 45u, 46u, 47u, 48u, 49u}) EXPECT_TRUE(w.page_is_home(p)) << p;
  EXPECT_EQ(w.source.calls, calls);
  // The next segment's first write faults (and twins) again, and ships only its own write.
  const std::uint64_t write_faults = w.cache.stats().write_faults;
  w.write(20, 8, std::byte{0x20} ^ w.source.home_page(20)[8]);
  EXPECT_EQ(w.cache.stats().write_faults, write_faults + 1);
  body.clear();
  EXPECT_EQ(w.cache.finish_segment(body, 0), 1u);
  applied = w.source.home;
  EXPECT_EQ(apply_body(body, applied), (std::vector<PageNumber>{20}));
  for (std::size_t i = 0; i < kSize; ++i) {
    if (i == 20 * kPage + 8) continue;
    ASSERT_EQ(applied[i], w.source.home[i]) << "byte " << i;
  }
  EXPECT_TRUE(w.page_is_home(20));
}

// After a segment, its written pages keep its writes (no restore copy). At the next
// step, a page that only an accepted result of ours wrote is current as it is; one that
// two of our segments wrote is rebuilt from the snapshot and both diffs in order; pages
// nobody listed go back to the snapshot.
TEST(PageCache, KeptPagesAreCurrentAfterTheirAcceptedSegment) {
  Worker w(18);
  const std::byte a = ~w.source.home_page(20)[8], b = ~w.source.home_page(21)[8],
                  c = ~w.source.home_page(21)[100], d = ~w.source.home_page(40)[0];
  // Segment 5 writes 20 and 21; segment 7 (same step) writes 21 again and 40.
  w.write(20, 8, a);
  w.write(21, 8, b);
  std::vector<std::byte> body5, body7;
  EXPECT_EQ(w.cache.finish_segment(body5, 5), 2u);
  EXPECT_EQ(w.read(21, 8), w.source.home_page(21)[8]) << "segment 7 must read the snapshot";
  w.write(21, 100, c);
  w.write(40, 0, d);
  EXPECT_EQ(w.cache.finish_segment(body7, 7), 2u);
  // The manager accepted both: its memory gets them in segment order.
  std::vector<std::byte> home = w.source.home;
  apply_body(body5, home);
  apply_body(body7, home);
  w.source.home = home;
  const int calls = w.source.calls;
  const PageNumber own[] = {20, 21, 40};
  const std::uint32_t segments[] = {5, 7};
  const std::span<const std::byte> bodies[] = {body5, body7};
  w.cache.replay(own, segments, bodies);
  w.cache.settle_kept();
  for (PageNumber p : {20u, 21u, 40u}) EXPECT_TRUE(w.page_is_home(p)) << p;
  EXPECT_EQ(w.read(21, 8), b);
  EXPECT_EQ(w.read(21, 100), c);
  EXPECT_EQ(w.source.calls, calls) << "replayed pages are fetched again";
  // The next step writes them again. Page 20's twin already equals the page (only
  // segment 5 wrote it), so it is not copied: the diffs must still hold exactly the new
  // writes, for it and for 21 (two writers: twinned afresh).
  const std::byte e = ~a, f = ~b;
  w.write(20, 8, e);
  w.write(21, 8, f);
  std::vector<std::byte> body9;
  EXPECT_EQ(w.cache.finish_segment(body9, 9), 2u);
  std::vector<std::byte> after = w.source.home;
  EXPECT_EQ(apply_body(body9, after), (std::vector<PageNumber>{20, 21}));
  for (std::size_t i = 0; i < kSize; ++i) {
    if (i == 20 * kPage + 8) ASSERT_EQ(after[i], e);
    else if (i == 21 * kPage + 8) ASSERT_EQ(after[i], f);
    else ASSERT_EQ(after[i], w.source.home[i]) << "byte " << i << " shipped but not written";
  }
  for (PageNumber p : {20u, 21u}) EXPECT_TRUE(w.page_is_home(p)) << "back at the snapshot: " << p;
}

// Pages whose snapshot is all zeros (known-zero, or fetched as a zero page) are written
// without a twin: their diffs are taken against zeros, and they go back to zeros after
// the segment and on abort. Once a replay makes one non-zero it is twinned as usual:
// diffing it against zeros would ship the snapshot's own words as writes, undoing other
// segments' writes to the same page.
TEST(PageCache, PagesWithAZeroSnapshotNeedNoTwin) {
  Region r = Region::map(address_for(25), kSize, kPage, Access::none);
  HomeSource source;
  PageCache cache(r, source, kGroup, 16, 8);
  FaultHandler handler(r.base(), r.size(), cache);
  cache.mark_written(0, 32);   // 32.. never written at home; 3 is a zero page at home
  std::memset(source.home_page(32), 0, kSize - 32 * kPage);
  std::memset(r.runtime_page(41), 0x5a, kPage);   // a stale local copy must not leak
  std::vector<std::byte> expected = source.home;
  auto write = [&](PageNumber p, std::size_t off, std::byte v) {
    store(r.user_page(p) + off, v);
    expected[p * kPage + off] = v;
  };
  for (PageNumber p = 40; p < 44; ++p) {
    for (std::size_t off = p; off < kPage; off += 8 * (p - 38)) write(p, off, std::byte(off * 7 + p));
  }
  write(3, 100, std::byte{0x33});
  EXPECT_GE(cache.stats().zero_twins, 5u);   // and clean zero pages after them (write-ahead)
  std::vector<std::byte> body;
  EXPECT_EQ(cache.finish_segment(body, 1), 5u);
  std::vector<std::byte> applied = source.home;
  EXPECT_EQ(apply_body(body, applied), (std::vector<PageNumber>{3, 40, 41, 42, 43}));
  EXPECT_TRUE(applied == expected) << "diffs against zeros differ from what the segment wrote";
  for (PageNumber p : {3u, 40u, 41u, 42u, 43u}) {
    for (std::size_t off = 0; off < kPage; off += 8) ASSERT_EQ(load(r.user_page(p) + off), std::byte{0}) << p;
  }
  // Another segment writes 41 and is given up: 41 is zeros again.
  store(r.user_page(41) + 9, std::byte{0x99});
  cache.abort_segment();
  EXPECT_EQ(load(r.user_page(41) + 9), std::byte{0});
  // The manager accepted segment 1; the next step replays it. Page 41 now holds data,
  // so a write to it is twinned and ships that write alone.
  source.home = applied;
  const PageNumber own[] = {3, 40, 41, 42, 43};
  const std::uint32_t segments[] = {1};
  const std::span<const std::byte> bodies[] = {body};
  cache.replay(own, segments, bodies);
  cache.settle_kept();
  EXPECT_EQ(std::memcmp(r.user_page(41), source.home_page(41), kPage), 0);
  // Page 50, cleared as known-zero, gets a pushed copy with data: diffed against that.
  EXPECT_EQ(load(r.user_page(50)), std::byte{0});
  std::vector<std::byte> pushed(kPage, std::byte{0x21});
  const PageNumber push[] = {50};
  cache.accept_pushed(push, pushed);
  std::memcpy(source.home_page(50), pushed.data(), kPage);
  // One write to a page that is twinned as usual ships that byte alone.
  const std::uint64_t zero_twins = cache.stats().zero_twins;
  auto ships_only = [&](PageNumber p, std::size_t offset, std::byte v, const char* why) {
    store(r.user_page(p) + offset, v);
    EXPECT_EQ(cache.stats().zero_twins, zero_twins) << why;
    std::vector<std::byte> shipped;
    EXPECT_EQ(cache.finish_segment(shipped, 2), 1u);
    std::vector<std::byte> after = source.home;
    EXPECT_EQ(apply_body(shipped, after), (std::vector<PageNumber>{p}));
    for (std::size_t i = 0; i < kSize; ++i) {
      ASSERT_EQ(after[i], i == p * kPage + offset ? v : source.home[i]) << "byte " << i;
    }
  };
  ships_only(50, 3, std::byte{0x77}, "a pushed page was diffed against zeros");
  cache.settle_kept();
  ships_only(41, 9, std::byte{0x99}, "a replayed page was diffed against zeros");
}

// A pushed page replaces a notice: the first access faults, but is served from the
// pushed bytes without asking the manager, and is reported as read; a later notice
// drops the pushed copy again. Pushed pages that make no sense are refused whole.
TEST(PageCache, PushedPagesAreReadWithoutAFetch) {
  Worker w(24);
  EXPECT_TRUE(w.page_is_home(40));   // held (a fetch of the group 40..44)
  const int calls = w.source.calls;
  (void)w.cache.take_reads();
  // The manager's copies of 40 and 41 change; it pushes them with the next assignment.
  w.source.home_page(40)[3] = ~w.source.home_page(40)[3];
  w.source.home_page(41)[5] = ~w.source.home_page(41)[5];
  const PageNumber pushed[] = {40, 41};
  std::vector<std::byte> data(w.source.home_page(40), w.source.home_page(40) + 2 * kPage);
  w.cache.accept_pushed(pushed, data);
  EXPECT_EQ(w.read(40, 3), w.source.home_page(40)[3]);
  EXPECT_TRUE(w.page_is_home(41));
  EXPECT_EQ(w.source.calls, calls) << "a pushed page was fetched";
  EXPECT_EQ(w.cache.stats().pushed_pages, 2u);
  EXPECT_EQ(w.cache.stats().pushed_used, 2u);
  std::vector<PageNumber> reads = w.cache.take_reads();
  std::sort(reads.begin(), reads.end());
  EXPECT_EQ(reads, (std::vector<PageNumber>{40, 41}));
  // A write to a pushed page diffs against the pushed bytes.
  w.cache.accept_pushed(std::span(pushed, 1), std::span(data).first(kPage));
  const std::byte v = ~w.source.home_page(40)[9];
  w.write(40, 9, v);
  std::vector<std::byte> body;
  EXPECT_EQ(w.cache.finish_segment(body, 1), 1u);
  std::vector<std::byte> after = w.source.home;
  EXPECT_EQ(apply_body(body, after), (std::vector<PageNumber>{40}));
  for (std::size_t i = 40 * kPage; i < 41 * kPage; ++i) {
    ASSERT_EQ(after[i], i == 40 * kPage + 9 ? v : w.source.home[i]) << i;
  }
  w.cache.settle_kept();
  // Pushed, then noticed before it was read: the next read fetches.
  w.cache.accept_pushed(std::span(pushed).subspan(1), std::span(data).subspan(kPage));
  const PageNumber notice[] = {41};
  w.cache.invalidate(notice);
  w.source.home_page(41)[5] = std::byte{0x5a};
  EXPECT_EQ(w.read(41, 5), std::byte{0x5a});
  EXPECT_EQ(w.source.calls, calls + 1);
  // Refused: data of the wrong size, a page outside the region.
  EXPECT_THROW(w.cache.accept_pushed(pushed, std::span(data).first(kPage)), Error);
  const PageNumber outside[] = {kPages};
  EXPECT_THROW(w.cache.accept_pushed(outside, std::span(data).first(kPage)), Error);
  EXPECT_EQ(w.read(41, 5), std::byte{0x5a}) << "a refused push changed a page";
}

TEST(PageCache, KeptPagesNobodyListedGoBackToTheSnapshot) {
  Worker w(19);
  w.write(30, 1, ~w.source.home_page(30)[1]);
  std::vector<std::byte> body;
  EXPECT_EQ(w.cache.finish_segment(body, 3), 1u);
  // Our result was not accepted (another copy won and wrote the same): no replay for
  // it; a notice drops it, or, if nothing was said, the snapshot comes back.
  w.cache.settle_kept();
  const int calls = w.source.calls;
  EXPECT_TRUE(w.page_is_home(30));
  EXPECT_EQ(w.source.calls, calls);
  w.write(31, 1, ~w.source.home_page(31)[1]);
  body.clear();
  EXPECT_EQ(w.cache.finish_segment(body, 4), 1u);
  const PageNumber notice[] = {31};
  w.cache.invalidate(notice);
  w.source.home_page(31)[1] = std::byte{0x42};   // the winner's value
  w.cache.settle_kept();
  EXPECT_EQ(w.read(31, 1), std::byte{0x42});
  EXPECT_EQ(w.source.calls, calls + 1);
}

TEST(PageCache, SegmentWithoutWritesShipsNothing) {
  Worker w(13);
  EXPECT_TRUE(w.page_is_home(30));
  std::vector<std::byte> body;
  EXPECT_EQ(w.cache.finish_segment(body, 0), 0u);
  EXPECT_TRUE(body.empty());
}

// Write-ahead: sequential write faults un-protect 1, 2, 4, 8 ... pages at a time, and a
// segment's first write fault keeps the streak the last finished segment reached (one
// fault for the next segment's 8 pages instead of four); the pages taken ahead but not
// written ship nothing. An aborted segment starts the next one from 1 again.
TEST(PageCache, WriteAheadCarriesOverToTheNextSegment) {
  Worker w(32);
  for (PageNumber p = 0; p < kPages; ++p) w.read(p);   // all clean
  auto write_run = [&](PageNumber first, PageNumber count) {
    const std::uint64_t before = w.cache.stats().write_faults;
    for (PageNumber p = first; p < first + count; ++p) w.write(p, 7, ~w.source.home_page(p)[7]);
    return w.cache.stats().write_faults - before;
  };
  EXPECT_EQ(write_run(8, 8), 4u);   // 8; 9-10; 11-14; 15-22
  std::vector<std::byte> body;
  EXPECT_EQ(w.cache.finish_segment(body, 0), 8u);
  std::vector<std::byte> applied = w.source.home;
  EXPECT_EQ(apply_body(body, applied).size(), 8u) << "pages taken ahead, not written, ship nothing";

  EXPECT_EQ(write_run(24, 8), 1u) << "the next segment starts with the streak of 8";
  body.clear();
  EXPECT_EQ(w.cache.finish_segment(body, 1), 8u);
  applied = w.source.home;
  EXPECT_EQ(apply_body(body, applied), (std::vector<PageNumber>{24, 25, 26, 27, 28, 29, 30, 31}));

  EXPECT_EQ(write_run(40, 2), 1u);
  w.cache.abort_segment();
  EXPECT_EQ(write_run(48, 8), 4u) << "after an abort the streak starts from 1";
  body.clear();
  EXPECT_EQ(w.cache.finish_segment(body, 2), 8u);
}

TEST(PageCache, AbortedSegmentRestoresTheSnapshot) {
  Worker w(14);
  w.write(33, 100, ~w.source.home_page(33)[100]);
  w.write(34, 100, ~w.source.home_page(34)[100]);
  EXPECT_FALSE(w.page_is_home(33));
  w.cache.abort_segment();
  EXPECT_TRUE(w.page_is_home(33));
  EXPECT_TRUE(w.page_is_home(34));
  std::vector<std::byte> body;
  EXPECT_EQ(w.cache.finish_segment(body, 0), 0u);
  EXPECT_TRUE(body.empty());
}

TEST(PageCache, InvalidateForcesARefetch) {
  Worker w(15);
  EXPECT_TRUE(w.page_is_home(22));
  EXPECT_EQ(w.source.calls, 1);
  // The manager's copy changes (a write notice will say so).
  w.source.home_page(22)[9] = ~w.source.home_page(22)[9];
  w.source.home_page(23)[9] = ~w.source.home_page(23)[9];
  EXPECT_FALSE(w.page_is_home(22)) << "cached copy is kept until invalidated";
  EXPECT_EQ(w.source.calls, 1);
  const PageNumber notice[] = {22, 1000};   // an out-of-range notice is ignored
  w.cache.invalidate(notice);
  EXPECT_TRUE(w.page_is_home(22));
  EXPECT_EQ(w.source.calls, 2);
  EXPECT_EQ(w.source.last_first, 20u);
  // Only the invalidated page was re-installed: 23 was not in the notice.
  EXPECT_FALSE(w.page_is_home(23));
  EXPECT_EQ(w.cache.stats().pages_fetched, kGroup + 1);

  w.cache.invalidate_all();
  EXPECT_TRUE(w.page_is_home(23));
  EXPECT_EQ(w.source.calls, 3);
}

TEST(PageCache, RefetchNeverOverwritesPagesItHolds) {
  Worker w(16);
  EXPECT_TRUE(w.page_is_home(30));                      // group 30..34 clean
  const std::byte mine = ~w.source.home_page(31)[0];
  w.write(31, 0, mine);                                 // 31 dirty
  const PageNumber notice[] = {32};
  w.cache.invalidate(notice);
  w.source.home_page(31)[0] = std::byte{1};             // the manager's copies change
  w.source.home_page(32)[0] = ~w.source.home_page(32)[0];
  EXPECT_TRUE(w.page_is_home(32));                      // refetched
  EXPECT_EQ(w.source.calls, 2);
  EXPECT_EQ(w.read(31), mine) << "the segment's own write was overwritten by a fetch";
}

TEST(PageCache, StaleAnswerAbortsFailedAnswerIsFatal) {
  // on_fault is called directly: a real fault would run the abort hook.
  Region r = Region::map(address_for(17), kSize, kPage, Access::none);
  HomeSource source;
  PageCache cache(r, source, kGroup);
  cache.mark_written(0, kPages);
  source.status = FetchStatus::stale;
  EXPECT_EQ(cache.on_fault(r.user_page(8), false), FaultOutcome::abort);
  EXPECT_EQ(cache.on_fault(r.user_page(8), true), FaultOutcome::abort);
  source.status = FetchStatus::failed;
  EXPECT_EQ(cache.on_fault(r.user_page(8), false), FaultOutcome::fatal);
  source.status = FetchStatus::ok;
  source.short_kinds = true;
  EXPECT_EQ(cache.on_fault(r.user_page(8), false), FaultOutcome::fatal);
  EXPECT_EQ(cache.stats().fetches, 0u);
  EXPECT_EQ(cache.stats().pages_fetched, 0u);
  // Nothing was installed: the page is still inaccessible in the user view.
  std::byte* page = r.user_page(8);
  EXPECT_EQ(run_in_child([page] {
              default_sigsegv();
              (void)*static_cast<volatile std::byte*>(page);
            }),
            kSegv);
  // A good answer resolves the fault and opens the page for reading.
  source.short_kinds = false;
  EXPECT_EQ(cache.on_fault(r.user_page(8) + 1, false), FaultOutcome::resolved);
  EXPECT_EQ(std::memcmp(r.user_page(8), source.home_page(8), kPage), 0);
  EXPECT_EQ(cache.stats().fetches, 1u);
}

// Frozen pages on the manager's host: a read fault maps the manager's own memory (the
// memfd stands in for it here) instead of copying it; a write takes a private copy
// first and never reaches the manager's memory; a notice or a drop puts the worker's own
// memory back. Pages that are not frozen are fetched as before.
TEST(PageCache, FrozenPagesAreMappedFromHomeAndWrittenPrivately) {
  Worker w(31);
  const int home_fd = memfd_create("test-home", MFD_CLOEXEC);
  ASSERT_GE(home_fd, 0);
  ASSERT_EQ(pwrite(home_fd, w.source.home.data(), kSize, 0), static_cast<ssize_t>(kSize));
  // Read-only, as a worker opens the manager's memfd: making a mapped page writable
  // would fail (and end the process) instead of writing the manager's memory.
  const int home_ro = open(("/proc/self/fd/" + std::to_string(home_fd)).c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(home_ro, 0);
  w.cache.freeze(8, 8);   // pages 8..15
  w.cache.share_home(home_ro);
  auto home_byte = [&](PageNumber p, std::size_t off) {
    std::byte b{};
    EXPECT_EQ(pread(home_fd, &b, 1, static_cast<off_t>(p * kPage + off)), 1);
    return b;
  };
  EXPECT_EQ(w.read(9, 5), w.source.home_page(9)[5]);
  EXPECT_EQ(w.source.calls, 0) << "a frozen page was fetched";
  EXPECT_EQ(w.cache.stats().pages_mapped, 7u);   // 9..15: the frozen run from the fault on
  EXPECT_TRUE(w.page_is_home(15));
  // A mapping, not a copy: the memfd's bytes show through (the manager never changes
  // frozen pages; the test does, to tell a mapping from a copy).
  const std::byte changed = ~w.source.home_page(10)[77];
  ASSERT_EQ(pwrite(home_fd, &changed, 1, static_cast<off_t>(10 * kPage + 77)), 1);
  EXPECT_EQ(w.read(10, 77), changed);
  ASSERT_EQ(pwrite(home_fd, w.source.home_page(10) + 77, 1, static_cast<off_t>(10 * kPage + 77)), 1);
  // Prepared writes leave mapped pages alone; a write to one copies it privately (one
  // fetch), ships that byte alone, and the manager's memory does not change.
  const PageNumber prepare[] = {12};
  w.cache.prepare_writes(prepare);
  const std::byte v = ~w.source.home_page(12)[40];
  w.write(12, 40, v);
  EXPECT_EQ(w.source.calls, 1);
  EXPECT_EQ(home_byte(12, 40), w.source.home_page(12)[40]) << "a write went to the manager's memory";
  EXPECT_EQ(w.read(13, 40), w.source.home_page(13)[40]);   // its neighbours stay mapped
  std::vector<std::byte> body;
  EXPECT_EQ(w.cache.finish_segment(body, 0), 1u);
  std::vector<std::byte> after = w.source.home;
  EXPECT_EQ(apply_body(body, after), (std::vector<PageNumber>{12}));
  EXPECT_EQ(after, [&] { auto a = w.source.home; a[12 * kPage + 40] = v; return a; }()) << "more than one byte";
  EXPECT_EQ(w.read(12, 40), w.source.home_page(12)[40]);   // back to the snapshot
  // Sequential writes un-protect the pages after the faulting one (write-ahead), but
  // never a mapped one: 7, then 8 (frozen, not yet mapped: written, so copied), and
  // 9, mapped, stays read-only (made writable it would be the manager's memory).
  const std::byte v7 = ~w.source.home_page(7)[1], v8 = ~w.source.home_page(8)[2];
  w.write(7, 1, v7);
  w.write(8, 2, v8);
  EXPECT_EQ(home_byte(8, 2), w.source.home_page(8)[2]);
  body.clear();
  EXPECT_EQ(w.cache.finish_segment(body, 1), 2u);
  after = w.source.home;
  EXPECT_EQ(apply_body(body, after), (std::vector<PageNumber>{7, 8}));
  EXPECT_EQ(w.read(9, 5), w.source.home_page(9)[5]);
  // A pushed copy of a mapped page replaces the mapping (the manager never pushes
  // frozen pages; a push must still win over a mapping).
  std::vector<std::byte> pushed_bytes(kPage, std::byte{0x5a});
  const PageNumber push[] = {13};
  w.cache.accept_pushed(push, pushed_bytes);
  EXPECT_EQ(w.read(13, 100), std::byte{0x5a});
  EXPECT_EQ(home_byte(13, 100), w.source.home_page(13)[100]);
  std::memcpy(w.source.home_page(13), pushed_bytes.data(), kPage);   // as the manager's now
  // A notice for a mapped page puts the worker's memory back; the next read maps again.
  const PageNumber notice[] = {14};
  w.cache.invalidate(notice);
  EXPECT_EQ(w.read(14, 1), w.source.home_page(14)[1]);
  EXPECT_EQ(w.cache.stats().pages_mapped, 8u);   // 14 alone: 15 is still mapped
  // Dropping everything, then reading: mapped again, nothing fetched; a page that is
  // not frozen is fetched as before.
  const int calls = w.source.calls;
  w.cache.invalidate_all();
  EXPECT_EQ(w.read(11, 3), w.source.home_page(11)[3]);
  EXPECT_EQ(w.source.calls, calls);
  EXPECT_EQ(w.cache.stats().pages_mapped, 13u);   // 11..15
  EXPECT_EQ(w.read(20, 3), w.source.home_page(20)[3]);
  EXPECT_EQ(w.source.calls, calls + 1);
  close(home_ro);
  close(home_fd);
}

}  // namespace
}  // namespace calypso::dsm
