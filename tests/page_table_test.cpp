// Tests of the shared region (dsm/region.hpp) and the page table (dsm/page_table.hpp).
//
// The region must land at the fixed address asked for, its two views must alias one
// memory, and a clash with an existing mapping must be reported with the setting that
// fixes it. The page table must set real protections (checked in /proc/self/maps and by
// touching pages in forked children, which must die from SIGSEGV exactly where access is
// denied), report dirty pages sorted, and safe_page_size must keep the worst-case number
// of mappings under the kernel's limit.
#include "dsm/page_table.hpp"
#include "dsm/region.hpp"

#include <calypso/error.hpp>

#include "child_process.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <fcntl.h>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace calypso::dsm {
namespace {

constexpr std::size_t kPage = 16384;
constexpr std::size_t kSize = 4 << 20;

// Each test maps its own region so that no two tests (or test files) share an address.
std::uintptr_t address_for(int k) { return 0x3d0000000000ULL + (std::uintptr_t{0x50} + k) * (std::uintptr_t{1} << 32); }

// Children here model "a program without handlers": plain SIGSEGV disposition.
template <class Fn>
std::string run_in_child(Fn fn) { return calypso::test::run_in_child(fn, true); }
using calypso::test::kSegv;

void read_byte(const std::byte* p) { (void)*static_cast<const volatile std::byte*>(p); }
void write_byte(std::byte* p) { *static_cast<volatile std::byte*>(p) = std::byte{1}; }

// The protection string ("rw-p", "---s", ...) of the mapping that holds address, from
// /proc/self/maps, and the mapping's bounds.
struct MapsEntry {
  std::uintptr_t begin = 0, end = 0;
  std::string perms;
};
MapsEntry maps_entry(const void* address) {
  const auto a = reinterpret_cast<std::uintptr_t>(address);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    MapsEntry e;
    char dash = 0;
    std::istringstream in(line);
    in >> std::hex >> e.begin >> dash >> e.end >> e.perms;
    if (a >= e.begin && a < e.end) return e;
  }
  return {};
}

TEST(Region, MapsAtTheFixedAddressAndViewsAlias) {
  Region r = Region::map(address_for(0), kSize, kPage, Access::read);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(r.base()), address_for(0));
  ASSERT_NE(r.runtime_view(), nullptr);
  EXPECT_NE(r.runtime_view(), r.base());
  EXPECT_EQ(r.size(), kSize);
  EXPECT_EQ(r.page_size(), kPage);
  EXPECT_EQ(r.pages(), kSize / kPage);

  // Starts zero-filled.
  for (std::size_t i = 0; i < kSize; i += 4093) ASSERT_EQ(r.base()[i], std::byte{0}) << i;
  // Written through the runtime view, read through the (read-only) user view.
  for (std::size_t i = 0; i < kSize; i += 4093) r.runtime_view()[i] = std::byte(i % 251 + 1);
  for (std::size_t i = 0; i < kSize; i += 4093) ASSERT_EQ(r.base()[i], std::byte(i % 251 + 1)) << i;
  // And the other way round once the user view is writable.
  ASSERT_EQ(r.protect(0, r.pages(), Access::read_write), 0);
  r.base()[kSize - 1] = std::byte{0x5a};
  EXPECT_EQ(r.runtime_view()[kSize - 1], std::byte{0x5a});

  EXPECT_EQ(maps_entry(r.base()).perms, "rw-s");
  EXPECT_EQ(maps_entry(r.runtime_view()).perms, "rw-s");
}

TEST(Region, HelpersAgreeWithTheLayout) {
  Region r = Region::map(address_for(1), kSize, kPage, Access::none);
  EXPECT_TRUE(r.contains(r.base()));
  EXPECT_TRUE(r.contains(r.base() + kSize - 1));
  EXPECT_FALSE(r.contains(r.base() + kSize));
  EXPECT_FALSE(r.contains(r.base() - 1));
  EXPECT_FALSE(r.contains(nullptr));
  EXPECT_EQ(r.page_of(r.base() + 3 * kPage + 17), 3u);
  EXPECT_EQ(r.user_page(5), r.base() + 5 * kPage);
  EXPECT_EQ(r.runtime_page(5), r.runtime_view() + 5 * kPage);
}

TEST(Region, ClashWithAnExistingMappingNamesTheSetting) {
  Region r = Region::map(address_for(2), kSize, kPage, Access::read_write);
  r.base()[0] = std::byte{7};
  try {
    Region again = Region::map(address_for(2), kSize, kPage, Access::read_write);
    FAIL() << "second mapping over the same range succeeded";
  } catch (const calypso::Error& e) {
    EXPECT_NE(std::string(e.what()).find("CALYPSO_REGION_ADDRESS"), std::string::npos) << e.what();
  }
  // A partial overlap is a clash too.
  EXPECT_THROW(Region::map(address_for(2) + kSize - kPage, kSize, kPage, Access::read), calypso::Error);
  // The first region is untouched.
  EXPECT_EQ(r.base()[0], std::byte{7});
  EXPECT_EQ(maps_entry(r.base()).perms, "rw-s");
}

TEST(Region, MoveKeepsTheMapping) {
  Region a = Region::map(address_for(3), kSize, kPage, Access::read_write);
  a.base()[1] = std::byte{9};
  Region b(std::move(a));
  EXPECT_EQ(a.base(), nullptr);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  EXPECT_EQ(b.base()[1], std::byte{9});
  EXPECT_EQ(b.runtime_view()[1], std::byte{9});
}

TEST(Region, UnmapsOnDestruction) {
  {
    Region r = Region::map(address_for(4), kSize, kPage, Access::read);
    EXPECT_FALSE(maps_entry(r.base()).perms.empty());
  }
  EXPECT_TRUE(maps_entry(reinterpret_cast<void*>(address_for(4))).perms.empty());
  // And the range can be mapped again.
  Region again = Region::map(address_for(4), kSize, kPage, Access::read);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(again.base()), address_for(4));
}

TEST(PageTable, SetChangesProtection) {
  Region r = Region::map(address_for(5), kSize, kPage, Access::read_write);
  PageTable t(r, PageState::dirty);
  ASSERT_EQ(t.set(2, 1, PageState::invalid), 0);
  ASSERT_EQ(t.set(4, 3, PageState::clean), 0);
  EXPECT_EQ(t.state(1), PageState::dirty);
  EXPECT_EQ(t.state(2), PageState::invalid);
  EXPECT_EQ(t.state(3), PageState::dirty);
  for (PageNumber p = 4; p < 7; ++p) EXPECT_EQ(t.state(p), PageState::clean);
  EXPECT_EQ(t.state(7), PageState::dirty);

  // The kernel agrees, range by range.
  MapsEntry none = maps_entry(r.user_page(2));
  EXPECT_EQ(none.perms, "---s");
  EXPECT_EQ(none.begin, reinterpret_cast<std::uintptr_t>(r.user_page(2)));
  EXPECT_EQ(none.end, reinterpret_cast<std::uintptr_t>(r.user_page(3)));
  MapsEntry ro = maps_entry(r.user_page(5));
  EXPECT_EQ(ro.perms, "r--s");
  EXPECT_EQ(ro.begin, reinterpret_cast<std::uintptr_t>(r.user_page(4)));
  EXPECT_EQ(ro.end, reinterpret_cast<std::uintptr_t>(r.user_page(7)));
  EXPECT_EQ(maps_entry(r.user_page(3)).perms, "rw-s");
  // The runtime view never changes.
  EXPECT_EQ(maps_entry(r.runtime_page(2)).perms, "rw-s");
  r.runtime_page(2)[0] = std::byte{1};

  // And access really is denied or allowed accordingly.
  EXPECT_EQ(run_in_child([&] { read_byte(r.user_page(2)); }), kSegv) << "read of an invalid page";
  EXPECT_EQ(run_in_child([&] { read_byte(r.user_page(2) + kPage - 1); }), kSegv);
  EXPECT_EQ(run_in_child([&] { read_byte(r.user_page(5)); }), "exit 0") << "read of a clean page";
  EXPECT_EQ(run_in_child([&] { write_byte(r.user_page(5)); }), kSegv) << "write of a clean page";
  EXPECT_EQ(run_in_child([&] { write_byte(r.user_page(3)); }), "exit 0") << "write of a dirty page";
  EXPECT_EQ(run_in_child([&] { write_byte(r.user_page(1) + kPage - 1); }), "exit 0");

  // Back to dirty: writable again, and the mappings merge back into one.
  ASSERT_EQ(t.set(0, r.pages(), PageState::dirty), 0);
  EXPECT_EQ(run_in_child([&] { write_byte(r.user_page(2)); }), "exit 0");
  MapsEntry all = maps_entry(r.base());
  EXPECT_EQ(all.begin, reinterpret_cast<std::uintptr_t>(r.base()));
  EXPECT_EQ(all.end, reinterpret_cast<std::uintptr_t>(r.base()) + kSize);
}

TEST(PageTable, InitialStateIsRecordedNotApplied) {
  // The table starts in the state the caller mapped the region with.
  Region r = Region::map(address_for(6), kSize, kPage, Access::none);
  PageTable t(r, PageState::invalid);
  for (PageNumber p = 0; p < r.pages(); ++p) ASSERT_EQ(t.state(p), PageState::invalid);
  EXPECT_EQ(t.dirty_count(), 0u);
  EXPECT_TRUE(t.take_dirty().empty());
  EXPECT_EQ(run_in_child([&] { read_byte(r.base()); }), kSegv);
}

TEST(PageTable, SetEachGroupsRunsAndTakeDirtyIsSorted) {
  Region r = Region::map(address_for(7), kSize, kPage, Access::read);
  PageTable t(r, PageState::clean);
  const std::vector<PageNumber> pages = {9, 2, 3, 4, 200 % r.pages(), 0};
  ASSERT_EQ(t.set_each(pages, PageState::dirty), 0);
  ASSERT_EQ(t.set(17, 1, PageState::dirty), 0);
  ASSERT_EQ(t.set(1, 1, PageState::dirty), 0);
  ASSERT_EQ(t.set(9, 1, PageState::dirty), 0);  // already dirty: not listed twice
  EXPECT_EQ(t.dirty_count(), 8u);
  std::vector<PageNumber> expect = {0, 1, 2, 3, 4, 9, 17, 200 % r.pages()};
  std::sort(expect.begin(), expect.end());
  EXPECT_EQ(t.take_dirty(), expect);
  for (PageNumber p : expect) EXPECT_EQ(t.state(p), PageState::dirty) << "taken pages stay dirty";
  EXPECT_EQ(maps_entry(r.user_page(3)).perms, "rw-s");
  EXPECT_EQ(maps_entry(r.user_page(5)).perms, "r--s");
  EXPECT_EQ(t.dirty_count(), 0u);
  EXPECT_TRUE(t.take_dirty().empty());
  // A page dirty already is not reported again until it changes state.
  ASSERT_EQ(t.set(3, 1, PageState::dirty), 0);
  EXPECT_TRUE(t.take_dirty().empty());
  ASSERT_EQ(t.set(5, 2, PageState::dirty), 0);
  EXPECT_EQ(t.take_dirty(), (std::vector<PageNumber>{5, 6}));
}

TEST(PageTable, PageDirtiedTwiceIsListedOnce) {
  // dirty -> clean -> dirty between two take_dirty() calls.
  Region r = Region::map(address_for(8), kSize, kPage, Access::read);
  PageTable t(r, PageState::clean);
  ASSERT_EQ(t.set(4, 1, PageState::dirty), 0);
  ASSERT_EQ(t.set(4, 1, PageState::clean), 0);
  ASSERT_EQ(t.set(4, 1, PageState::dirty), 0);
  std::vector<PageNumber> dirty = t.take_dirty();
  if (dirty.size() != 1) {
  }
  EXPECT_EQ(dirty, (std::vector<PageNumber>{4}));
}

TEST(PageTable, SetReportsMprotectErrors) {
  // Page size not a multiple of the system page: mprotect refuses an unaligned start.
  Region odd = Region::map(address_for(10), kSize, 100, Access::read);
  PageTable u(odd, PageState::clean);
  EXPECT_NE(u.set(1, 1, PageState::dirty), 0);
  EXPECT_EQ(u.state(1), PageState::clean) << "state must not change when mprotect fails";
  EXPECT_EQ(u.dirty_count(), 0u);
}

TEST(SafePageSize, KeepsMappingsUnderTheLimit) {
  std::size_t max_maps = 0;
  std::ifstream("/proc/sys/vm/max_map_count") >> max_maps;
  ASSERT_GT(max_maps, 0u);

  const std::size_t p512 = safe_page_size(std::size_t{512} << 20, 4096);
  EXPECT_GE(p512, 8192u);
  EXPECT_LT((std::size_t{512} << 20) / p512, max_maps);

  const std::size_t p1g = safe_page_size(std::size_t{1} << 30, 16384);
  EXPECT_GE(p1g, 16384u);
  EXPECT_LT((std::size_t{1} << 30) / p1g, max_maps);

  for (std::size_t size : {std::size_t{1} << 20, std::size_t{1} << 32, std::size_t{1} << 40}) {
    const std::size_t p = safe_page_size(size, 4096);
    EXPECT_EQ(p & (p - 1), 0u) << "power of two";
    EXPECT_GE(p, 4096u);
    EXPECT_LT(size / p, max_maps) << size;
  }
  // Small regions keep the page size asked for.
  EXPECT_EQ(safe_page_size(std::size_t{64} << 20, 4096), 4096u);
  EXPECT_EQ(safe_page_size(std::size_t{64} << 20, 65536), 65536u);
  // Not needlessly large: half the answer would come near the limit.
  EXPECT_GE((std::size_t{512} << 20) / (p512 / 2), max_maps / 2);
}

}  // namespace
}  // namespace calypso::dsm
