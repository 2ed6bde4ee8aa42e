// Tests of collating differential memory at the manager (dsm/collation.hpp), against a
// real shared region.
//
// Result bodies are built the way workers build them (diff_encode of a page against the
// step's snapshot, framed by ResultEntry). validate() must accept well-formed bodies and
// refuse every malformed one without touching memory; apply() must write through the
// runtime view only and report the pages it wrote; two segments writing different bytes
// of one word must both keep their writes; and the checking mode must report two
// segments writing different values to one byte (address and both segments), and only
// that. prefault() must map a result's untouched pages without writing them.
#include "dsm/collation.hpp"
#include "dsm/diff.hpp"
#include "dsm/region.hpp"
#include "dsm/result_format.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace calypso::dsm {
namespace {

using Bytes = std::vector<std::byte>;
constexpr std::size_t kPage = 16384;
constexpr std::size_t kSize = 4 << 20;

std::uintptr_t address_for(int k) { return 0x3d0000000000ULL + (std::uintptr_t{0x70} + k) * (std::uintptr_t{1} << 32); }

// A region whose contents at the start of the step (the snapshot) are a known pattern.
struct Step {
  explicit Step(int k, Access user = Access::read)
      : region(Region::map(address_for(k), kSize, kPage, user)) {
    std::mt19937_64 rng(k);
    for (std::size_t i = 0; i < kSize; ++i) region.runtime_view()[i] = std::byte(rng() & 0xff);
    snapshot.assign(region.runtime_view(), region.runtime_view() + kSize);
  }
  bool memory_is(const Bytes& expected) const { return std::memcmp(region.runtime_view(), expected.data(), kSize) == 0; }
  Region region;
  Bytes snapshot;
};

// One segment's writes and its result body: byte writes against the snapshot, encoded page by page.
class Writes {
 public:
  explicit Writes(const Bytes& snapshot) : snapshot_(snapshot) {}
  Writes& write(PageNumber page, std::size_t offset, std::byte value) {
    auto [it, fresh] = pages_.try_emplace(page);
    if (fresh) it->second.assign(snapshot_.begin() + page * kPage, snapshot_.begin() + (page + 1) * kPage);
    it->second[offset] = value;
    return *this;
  }
  Bytes body() const {
    Bytes out;
    for (const auto& [page, current] : pages_) {
      Bytes diff(diff_max_encoded_size(kPage));
      const std::size_t n = diff_encode(current.data(), snapshot_.data() + page * kPage, kPage, diff.data());
      if (n == 0) continue;
      append_entry(out, page, {diff.data(), n});
    }
    return out;
  }
  // Applies this segment's writes to a plain copy of memory.
  void apply_to(Bytes& memory) const {
    for (const auto& [page, current] : pages_) {
      for (std::size_t i = 0; i < kPage; ++i) {
        if (current[i] != snapshot_[page * kPage + i]) memory[page * kPage + i] = current[i];
      }
    }
  }
  static void append_entry(Bytes& out, PageNumber page, std::span<const std::byte> diff) {
    ResultEntry e{page, static_cast<std::uint32_t>(diff.size())};
    const auto* p = reinterpret_cast<const std::byte*>(&e);
    out.insert(out.end(), p, p + sizeof e);
    out.insert(out.end(), diff.begin(), diff.end());
  }

 private:
  const Bytes& snapshot_;
  std::map<PageNumber, Bytes> pages_;
};

// A byte different from b.
std::byte flip(std::byte b) { return b ^ std::byte{0x5a}; }

// A hand-made run: header, words, optional mask bytes padded to 8.
Bytes run(std::uint32_t word_offset, std::uint16_t words, std::uint16_t flags, std::size_t mask_bytes = 0,
          std::byte mask = std::byte{1}) {
  Bytes out(sizeof(RunHeader) + std::size_t{words} * 8 + mask_bytes, std::byte{0x11});
  RunHeader h{word_offset, words, flags};
  std::memcpy(out.data(), &h, sizeof h);
  std::fill(out.end() - static_cast<long>(mask_bytes), out.end(), std::byte{0});
  for (std::size_t i = 0; i < std::min<std::size_t>(words, mask_bytes); ++i) {
    out[sizeof(RunHeader) + std::size_t{words} * 8 + i] = mask;
  }
  return out;
}

TEST(Collation, ValidateAcceptsWellFormedBodies) {
  Step s(0);
  Collation c(s.region, false);
  EXPECT_EQ(c.validate({}), "");
  Writes seg(s.snapshot);
  seg.write(0, 0, flip(s.snapshot[0]))
      .write(3, 100, flip(s.snapshot[3 * kPage + 100]))
      .write(3, 101, flip(s.snapshot[3 * kPage + 101]))
      .write(s.region.pages() - 1, kPage - 1, flip(s.snapshot[kSize - 1]));
  for (std::size_t i = 0; i < kPage; i += 3) seg.write(7, i, flip(s.snapshot[7 * kPage + i]));
  const Bytes body = seg.body();
  ASSERT_FALSE(body.empty());
  EXPECT_EQ(c.validate(body), "");
  // An entry with an empty diff ("page unchanged") is well formed too.
  Bytes with_empty = body;
  Writes::append_entry(with_empty, 9, {});
  EXPECT_EQ(c.validate(with_empty), "");
  EXPECT_TRUE(s.memory_is(s.snapshot)) << "validate must not write";
}

// A result that changes a frozen page is found before anything is applied; an empty
// diff for one (a page twinned but left unchanged) changes nothing and passes.
TEST(Collation, FrozenChangeNamesTheFirstFrozenPageADiffChanges) {
  Step s(22);
  Writes seg(s.snapshot);
  seg.write(2, 5, flip(s.snapshot[2 * kPage + 5])).write(6, 7, flip(s.snapshot[6 * kPage + 7]));
  Bytes body = seg.body();
  std::vector<std::uint8_t> frozen(s.region.pages(), 0);   // as HomeMemory::frozen_flags
  auto freeze = [&](PageNumber first, PageNumber count) { std::fill_n(frozen.begin() + first, count, 1); };
  EXPECT_EQ(Collation::frozen_change(body, frozen), std::nullopt) << "nothing frozen yet";
  Writes::append_entry(body, 4, {});
  freeze(4, 1);
  EXPECT_EQ(Collation::frozen_change(body, frozen), std::nullopt) << "an empty diff changes nothing";
  freeze(6, 3);
  EXPECT_EQ(Collation::frozen_change(body, frozen), std::optional<PageNumber>(6));
  freeze(1, 2);
  EXPECT_EQ(Collation::frozen_change(body, frozen), std::optional<PageNumber>(2));
  EXPECT_TRUE(s.memory_is(s.snapshot)) << "frozen_change must not write";
}

TEST(Collation, ValidateRejectsMalformedBodiesWithoutTouchingMemory) {
  Step s(1);
  Collation c(s.region, true);
  Writes seg(s.snapshot);
  seg.write(2, 40, flip(s.snapshot[2 * kPage + 40]));
  const Bytes good = seg.body();
  ASSERT_EQ(c.validate(good), "");
  const Bytes good_run = run(5, 1, 0);

  struct Case {
    const char* what;
    Bytes body;
    std::string reason;   // part of the expected explanation
  };
  std::vector<Case> cases;
  {
    Bytes b;
    Writes::append_entry(b, s.region.pages(), good_run);
    cases.push_back({"page just past the region", b, "outside the region"});
    b.clear();
    Writes::append_entry(b, 0xffffffffu, good_run);
    cases.push_back({"page far outside", b, "outside the region"});
  }
  cases.push_back({"truncated entry header", Bytes(sizeof(ResultEntry) - 1), "truncated entry header"});
  {
    Bytes b = good;
    b.resize(b.size() + 4);
    cases.push_back({"good entry then half a header", b, "truncated entry header"});
  }
  {
    Bytes b;
    Writes::append_entry(b, 1, good_run);
    ResultEntry e{1, static_cast<std::uint32_t>(good_run.size() + 8)};
    std::memcpy(b.data(), &e, sizeof e);
    cases.push_back({"entry runs past the end", b, "past the end"});
    e.diff_bytes = 0xffffffffu;
    std::memcpy(b.data(), &e, sizeof e);
    cases.push_back({"entry length huge", b, "past the end"});
  }
  {
    Bytes b;
    Bytes d = good_run;
    d.resize(d.size() - 4);
    Writes::append_entry(b, 1, d);
    cases.push_back({"diff length not a multiple of 8", b, to_string(DiffStatus::truncated)});
  }
  {
    Bytes b;
    Writes::append_entry(b, 1, run(0, 0, 0));
    cases.push_back({"run of zero words", b, to_string(DiffStatus::bad_order)});
  }
  {
    Bytes b;
    Writes::append_entry(b, 1, run(kPage / 8, 1, 0));
    cases.push_back({"run starts past the page", b, to_string(DiffStatus::out_of_range)});
  }
  {
    Bytes b;
    Writes::append_entry(b, 1, run(kPage / 8 - 1, 2, 0));
    cases.push_back({"run ends past the page", b, to_string(DiffStatus::out_of_range)});
  }
  {
    Bytes b;
    Bytes d = run(10, 1, 0);
    Bytes d2 = run(10, 1, 0);
    d.insert(d.end(), d2.begin(), d2.end());
    Writes::append_entry(b, 1, d);
    cases.push_back({"overlapping runs", b, to_string(DiffStatus::bad_order)});
  }
  {
    Bytes b;
    Writes::append_entry(b, 1, run(10, 1, 2));
    cases.push_back({"unknown flag", b, to_string(DiffStatus::bad_flags)});
  }
  {
    Bytes b;
    Writes::append_entry(b, 1, run(10, 1, kRunMasked, 8, std::byte{0}));
    cases.push_back({"mask byte of zero", b, to_string(DiffStatus::bad_flags)});
  }
  for (const Case& k : cases) {
    // The bad entry after a good one: nothing of the good one may be applied either.
    Bytes body = good;
    body.insert(body.end(), k.body.begin(), k.body.end());
    EXPECT_NE(c.validate(k.body).find(k.reason), std::string::npos) << k.what << ": " << c.validate(k.body);
    EXPECT_NE(c.validate(body).find(k.reason), std::string::npos) << k.what << " (after a good entry)";
    EXPECT_NE(c.validate(body), "") << k.what;
  }
  EXPECT_TRUE(s.memory_is(s.snapshot)) << "a rejected body changed memory";
  // The hand-made good run really is good, so the cases above fail for their own reason.
  Bytes b;
  Writes::append_entry(b, 1, good_run);
  EXPECT_EQ(c.validate(b), "");
  Writes::append_entry(b, 2, run(10, 1, kRunMasked, 8));
  EXPECT_EQ(c.validate(b), "") << "a masked run is well formed";
}

TEST(Collation, ApplyWritesThroughTheRuntimeViewAndReportsPages) {
  // The user view is inaccessible: apply must never touch it (that would crash the test).
  Step s(2, Access::none);
  Collation c(s.region, false);
  Writes seg(s.snapshot);
  seg.write(4, 7, flip(s.snapshot[4 * kPage + 7]))
      .write(9, 0, flip(s.snapshot[9 * kPage]))
      .write(9, kPage - 1, flip(s.snapshot[10 * kPage - 1]))
      .write(200, 5000, flip(s.snapshot[200 * kPage + 5000]));
  const Bytes body = seg.body();
  ASSERT_EQ(c.validate(body), "");
  std::vector<PageNumber> written = {77};   // apply appends
  EXPECT_FALSE(c.apply(body, {0, 1}, written));
  EXPECT_EQ(written, (std::vector<PageNumber>{77, 4, 9, 200}));
  Bytes expected = s.snapshot;
  seg.apply_to(expected);
  EXPECT_TRUE(s.memory_is(expected));
  // And the user view shows it once readable.
  ASSERT_EQ(s.region.protect(0, s.region.pages(), Access::read), 0);
  EXPECT_EQ(std::memcmp(s.region.base(), expected.data(), kSize), 0);
}

// Pages of the runtime view that the kernel holds (mincore), from first for count pages.
std::vector<bool> resident(const Region& r, PageNumber first, PageNumber count) {
  const std::size_t system_page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec(count * kPage / system_page);
  EXPECT_EQ(mincore(r.runtime_page(first), count * kPage, vec.data()), 0);
  std::vector<bool> out(count);
  for (PageNumber i = 0; i < count; ++i) out[i] = (vec[i * kPage / system_page] & 1) != 0;
  return out;
}

// With shared-memory transparent huge pages forced on, mapping one page maps its 2 MiB
// neighbourhood too: then only "at least these pages" can be checked.
bool shmem_huge_pages_forced() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
  std::string line;
  std::getline(f, line);
  return line.find("[always]") != std::string::npos || line.find("[force]") != std::string::npos;
}

TEST(Collation, PrefaultMapsTheResultsPagesOnceAndWritesNothing) {
  // A fresh region: no page has been touched, all read as zero.
  Region region = Region::map(address_for(21), kSize, kPage, Access::none);
  const Bytes zeros(kSize, std::byte{0});
  Collation c(region, false);
  Writes seg(zeros);
  seg.write(3, 1, std::byte{7}).write(4, 2, std::byte{8}).write(5, 3, std::byte{9}).write(9, 4, std::byte{10});
  const Bytes body = seg.body();
  ASSERT_EQ(c.validate(body), "");
  ASSERT_EQ(resident(region, 0, 12), std::vector<bool>(12, false));

  const std::size_t mapped = c.prefault(body);
  if (mapped == 0) GTEST_SKIP() << "this kernel has no MADV_POPULATE_WRITE (Linux < 5.14)";
  EXPECT_EQ(mapped, 4u);
  const std::vector<bool> got = resident(region, 0, 12);
  for (PageNumber p : {3, 4, 5, 9}) EXPECT_TRUE(got[p]) << "page " << p;
  if (!shmem_huge_pages_forced()) {
    std::vector<bool> want(12, false);
    want[3] = want[4] = want[5] = want[9] = true;
    EXPECT_EQ(got, want);
  }
  EXPECT_EQ(c.prefault(body), 0u);   // already mapped: no second call into the kernel
  EXPECT_EQ(std::memcmp(region.runtime_view(), zeros.data(), kSize), 0);   // mapped, not written

  std::vector<PageNumber> written;
  EXPECT_FALSE(c.apply(body, {0, 0}, written));
  Bytes expected = zeros;
  seg.apply_to(expected);
  EXPECT_EQ(std::memcmp(region.runtime_view(), expected.data(), kSize), 0);
}

TEST(Collation, DifferentBytesOfOneWordBothSurvive) {
  for (bool checking : {false, true}) {
    for (bool a_first : {true, false}) {
      SCOPED_TRACE(std::string(checking ? "checking" : "plain") + (a_first ? ", A first" : ", B first"));
      Step s(3);
      Collation c(s.region, checking);
      c.begin_step();
      const std::size_t word = 6 * kPage + 800;   // 8-byte aligned
      Writes a(s.snapshot), b(s.snapshot);
      a.write(6, 800, flip(s.snapshot[word])).write(6, 803, flip(s.snapshot[word + 3]));
      b.write(6, 801, flip(s.snapshot[word + 1])).write(6, 807, flip(s.snapshot[word + 7]));
      std::vector<PageNumber> written;
      const Bytes ba = a.body(), bb = b.body();
      ASSERT_EQ(c.validate(ba), "");
      ASSERT_EQ(c.validate(bb), "");
      EXPECT_FALSE(c.apply(a_first ? ba : bb, {0, a_first ? 0u : 1u}, written));
      EXPECT_FALSE(c.apply(a_first ? bb : ba, {0, a_first ? 1u : 0u}, written));
      const std::byte* m = s.region.runtime_view() + word;
      EXPECT_EQ(m[0], flip(s.snapshot[word]));
      EXPECT_EQ(m[1], flip(s.snapshot[word + 1]));
      EXPECT_EQ(m[2], s.snapshot[word + 2]);
      EXPECT_EQ(m[3], flip(s.snapshot[word + 3]));
      for (int i = 4; i < 7; ++i) EXPECT_EQ(m[i], s.snapshot[word + i]);
      EXPECT_EQ(m[7], flip(s.snapshot[word + 7]));
      Bytes expected = s.snapshot;
      a.apply_to(expected);
      b.apply_to(expected);
      EXPECT_TRUE(s.memory_is(expected));
    }
  }
}

TEST(Collation, RandomFalseSharingMergesByteExactly) {
  Step s(4);
  Collation c(s.region, true);
  c.begin_step();
  std::mt19937_64 rng(4);
  // Eight segments share pages 10..13 byte by byte: each byte has at most one writer.
  constexpr int kSegments = 8;
  std::vector<Writes> segs(kSegments, Writes(s.snapshot));
  for (PageNumber p = 10; p < 14; ++p) {
    for (std::size_t i = 0; i < kPage; ++i) {
      const int owner = static_cast<int>(rng() % (kSegments + 2));   // some bytes unwritten
      if (owner < kSegments) segs[owner].write(p, i, flip(s.snapshot[p * kPage + i]));
    }
  }
  Bytes expected = s.snapshot;
  std::vector<PageNumber> written;
  for (int k = 0; k < kSegments; ++k) {
    const Bytes body = segs[k].body();
    ASSERT_EQ(c.validate(body), "") << "segment " << k;
    EXPECT_FALSE(c.apply(body, {0, static_cast<std::uint32_t>(k)}, written)) << "segment " << k;
    segs[k].apply_to(expected);
  }
  EXPECT_TRUE(s.memory_is(expected));
  EXPECT_EQ(written.size(), 4u * kSegments);
}

// A step large enough to be applied by two threads leaves memory exactly as applying the
// bodies one by one in segment order: overlapping segments (later ones win where they
// write the same byte differently), pages of both parities, and the pages reported per
// body.
TEST(Collation, ApplyAllInParallelEqualsInOrder) {
  Step s(20);
  Collation c(s.region, false);
  c.begin_step();
  std::mt19937_64 rng(20);
  constexpr int kSegments = 6;
  std::vector<Writes> segs(kSegments, Writes(s.snapshot));
  for (int k = 0; k < kSegments; ++k) {
    for (PageNumber p = 0; p < s.region.pages(); ++p) {
      if (rng() % 3 == 0) continue;
      for (int w = 0; w < 200; ++w) {
        segs[k].write(p, rng() % kPage, std::byte(rng() & 0xff));
      }
    }
  }
  std::vector<Bytes> bodies;
  std::size_t total = 0;
  for (const auto& seg : segs) {
    bodies.push_back(seg.body());
    total += bodies.back().size();
  }
  ASSERT_GT(total, std::size_t{1} << 20) << "the test must be large enough to run in parallel";
  Bytes expected = s.snapshot;
  for (int k = 0; k < kSegments; ++k) {
    segs[k].apply_to(expected);
    ASSERT_EQ(c.validate(bodies[k]), "");
  }
  std::vector<std::span<const std::byte>> views(bodies.begin(), bodies.end());
  std::vector<SegmentTag> tags(kSegments);
  std::vector<std::vector<PageNumber>> written;
  EXPECT_FALSE(c.apply_all(views, tags, written));
  EXPECT_TRUE(s.memory_is(expected));
  ASSERT_EQ(written.size(), static_cast<std::size_t>(kSegments));
  for (int k = 0; k < kSegments; ++k) {
    std::vector<PageNumber> one;
    Step t(21 + k);   // a scratch region: apply() reports the pages of one body
    Collation c2(t.region, false);
    c2.apply(bodies[k], {}, one);
    EXPECT_EQ(written[k], one) << "segment " << k;
  }
}

// Step after step on one Collation, as the manager does: its kept helper thread takes
// stripes every time, and each step's outcome equals applying its bodies in order.
TEST(Collation, ParallelStepsAfterStepsEqualInOrder) {
  Step s(30);
  Collation c(s.region, false);
  std::mt19937_64 rng(30);
  for (int step = 0; step < 5; ++step) {
    c.begin_step();
    const Bytes before(s.region.runtime_view(), s.region.runtime_view() + kSize);
    constexpr int kSegments = 4;
    std::vector<Writes> segs(kSegments, Writes(before));
    for (int k = 0; k < kSegments; ++k) {
      for (PageNumber p = 0; p < s.region.pages(); ++p) {
        if (rng() % 4 == 0) continue;
        for (int w = 0; w < 300; ++w) segs[k].write(p, rng() % kPage, std::byte(rng() & 0xff));
      }
    }
    std::vector<Bytes> bodies;
    std::size_t total = 0;
    Bytes expected = before;
    for (const auto& seg : segs) {
      bodies.push_back(seg.body());
      total += bodies.back().size();
      seg.apply_to(expected);
      ASSERT_EQ(c.validate(bodies.back()), "");
    }
    ASSERT_GT(total, std::size_t{1} << 20) << "the step must be large enough to run in parallel";
    std::vector<std::span<const std::byte>> views(bodies.begin(), bodies.end());
    std::vector<SegmentTag> tags(kSegments);
    std::vector<std::vector<PageNumber>> written;
    EXPECT_FALSE(c.apply_all(views, tags, written));
    ASSERT_TRUE(s.memory_is(expected)) << "step " << step;
  }
  EXPECT_EQ(c.cut_short(), 0u);
}

TEST(Collation, CheckingModeReportsConflictingWrites) {
  Step s(5);
  Collation c(s.region, true);
  c.begin_step();
  const PageNumber page = 5;
  const std::size_t off = 1001;
  const std::byte old = s.snapshot[page * kPage + off];
  Writes a(s.snapshot), b(s.snapshot);
  a.write(page, off, old ^ std::byte{0x11});
  b.write(page - 1, 3, flip(s.snapshot[(page - 1) * kPage + 3]))   // an unrelated first entry
      .write(page, off, old ^ std::byte{0x22});
  std::vector<PageNumber> written;
  EXPECT_FALSE(c.apply(a.body(), {0, 3}, written));
  std::optional<Conflict> conflict = c.apply(b.body(), {1, 7}, written);
  ASSERT_TRUE(conflict);
  EXPECT_EQ(conflict->address, reinterpret_cast<std::uintptr_t>(s.region.user_page(page)) + off);
  EXPECT_EQ(conflict->first.routine, 0u);
  EXPECT_EQ(conflict->first.index, 3u);
  EXPECT_EQ(conflict->second.routine, 1u);
  EXPECT_EQ(conflict->second.index, 7u);
  // Applied all the same, in order: the later segment's value is in memory.
  EXPECT_EQ(s.region.runtime_view()[page * kPage + off], old ^ std::byte{0x22});
}

TEST(Collation, CheckingModeIgnoresAgreeingWritesAndDifferentBytes) {
  Step s(6);
  Collation c(s.region, true);
  c.begin_step();
  const std::size_t at = 20 * kPage + 64;
  Writes a(s.snapshot), b(s.snapshot), d(s.snapshot);
  a.write(20, 64, flip(s.snapshot[at]));
  b.write(20, 64, flip(s.snapshot[at]));        // same byte, same value
  d.write(20, 65, flip(s.snapshot[at + 1]));    // neighbouring byte of the same word
  std::vector<PageNumber> written;
  EXPECT_FALSE(c.apply(a.body(), {0, 0}, written));
  EXPECT_FALSE(c.apply(b.body(), {0, 1}, written));
  EXPECT_FALSE(c.apply(d.body(), {0, 2}, written));
}

TEST(Collation, ConflictsAreNotReportedWithoutCheckingOrAcrossSteps) {
  Step s(7);
  const std::size_t at = 30 * kPage + 9;
  Writes a(s.snapshot), b(s.snapshot);
  a.write(30, 9, s.snapshot[at] ^ std::byte{1});
  b.write(30, 9, s.snapshot[at] ^ std::byte{2});
  std::vector<PageNumber> written;
  {
    Collation plain(s.region, false);
    EXPECT_FALSE(plain.apply(a.body(), {0, 0}, written));
    EXPECT_FALSE(plain.apply(b.body(), {0, 1}, written));
  }
  Collation c(s.region, true);
  c.begin_step();
  EXPECT_FALSE(c.apply(a.body(), {0, 0}, written));
  c.begin_step();   // a new step: the previous step's writers are forgotten
  EXPECT_FALSE(c.apply(b.body(), {0, 1}, written));
  // Within one step the same pair conflicts.
  c.begin_step();
  EXPECT_FALSE(c.apply(a.body(), {0, 0}, written));
  EXPECT_TRUE(c.apply(b.body(), {0, 1}, written));
}

TEST(Collation, ThirdWriterConflictsWithTheValueInMemory) {
  Step s(8);
  Collation c(s.region, true);
  c.begin_step();
  const std::size_t at = 40 * kPage + 4000;
  const std::byte x = s.snapshot[at] ^ std::byte{0x40}, y = s.snapshot[at] ^ std::byte{0x41};
  Writes a(s.snapshot), b(s.snapshot), d(s.snapshot);
  a.write(40, 4000, x);
  b.write(40, 4000, x);
  d.write(40, 4000, y);
  std::vector<PageNumber> written;
  EXPECT_FALSE(c.apply(a.body(), {0, 0}, written));
  EXPECT_FALSE(c.apply(b.body(), {0, 1}, written));
  auto conflict = c.apply(d.body(), {0, 2}, written);
  ASSERT_TRUE(conflict);
  EXPECT_EQ(conflict->address, reinterpret_cast<std::uintptr_t>(s.region.user_page(40)) + 4000);
  EXPECT_LT(conflict->first.index, 2u);
  EXPECT_EQ(conflict->second.index, 2u);
}

}  // namespace
}  // namespace calypso::dsm

namespace calypso::dsm {
namespace {

// A body read where a worker wrote it may change after validate() (collation.hpp). What
// it then says past the point where it stops reading as validated is not applied: not a
// page outside the region, not a change to a frozen page, not a run outside its page,
// and in the parallel path not a page missing from `written`. What came before is.
TEST(Collation, ABodyThatChangedAfterValidateTouchesOnlyWhatItListed) {
  Step s(50);
  std::vector<std::uint8_t> frozen(s.region.pages(), 0);
  frozen[3] = 1;
  Collation c(s.region, false, frozen);
  c.begin_step();
  const auto page_body = [&](PageNumber p, std::size_t offset) {
    return Writes(s.snapshot).write(p, offset, flip(s.snapshot[p * kPage + offset])).body();
  };
  Bytes expected = s.snapshot;
  Writes(s.snapshot).write(1, 8, flip(s.snapshot[kPage + 8])).apply_to(expected);
  Writes(s.snapshot).write(2, 16, flip(s.snapshot[2 * kPage + 16])).apply_to(expected);
  Bytes frozen_change = page_body(1, 8);   // page 1, then frozen page 3, then page 5
  for (PageNumber p : {PageNumber{3}, PageNumber{5}}) {
    const Bytes more = page_body(p, 24);
    frozen_change.insert(frozen_change.end(), more.begin(), more.end());
  }
  Bytes outside = page_body(2, 16);   // page 2, then a page past the region, then page 6
  const Bytes bad_page = page_body(6, 32);
  Bytes past = bad_page;
  const PageNumber beyond = s.region.pages() + 7;
  std::memcpy(past.data(), &beyond, sizeof beyond);
  outside.insert(outside.end(), past.begin(), past.end());
  outside.insert(outside.end(), bad_page.begin(), bad_page.end());
  Bytes wild;   // page 4's one run, its header pointing past the page
  Writes::append_entry(wild, 4, run(static_cast<std::uint32_t>(kPage / 8 - 1), 2, 0));
  ASSERT_EQ(c.validate(frozen_change), "");   // refused on arrival by frozen_change() instead
  ASSERT_EQ(Collation::frozen_change(frozen_change, frozen), PageNumber{3});
  ASSERT_NE(c.validate(outside), "");
  ASSERT_NE(c.validate(wild), "");
  const std::vector<std::span<const std::byte>> views{frozen_change, outside, wild};
  const std::vector<SegmentTag> tags(3);
  std::vector<std::vector<PageNumber>> written;
  EXPECT_FALSE(c.apply_all(views, tags, written));
  EXPECT_TRUE(s.memory_is(expected));
  EXPECT_EQ(written[0], std::vector<PageNumber>{1});
  EXPECT_EQ(written[1], std::vector<PageNumber>{2});
  EXPECT_EQ(c.cut_short(), 3u);
}

// The same in the parallel path (over 1 MiB of diffs): a frozen page's change at the end
// of one body is neither applied nor listed, and everything before it is.
TEST(Collation, ABodyThatChangedAfterValidateIsCutShortInParallelToo) {
  Step s(51);
  std::vector<std::uint8_t> frozen(s.region.pages(), 0);
  const PageNumber last = s.region.pages() - 1;
  frozen[last] = 1;
  Collation c(s.region, false, frozen);
  c.begin_step();
  std::mt19937_64 rng(51);
  Writes big(s.snapshot);
  for (PageNumber p = 0; p < last; ++p) {
    for (int w = 0; w < 400; ++w) big.write(p, rng() % kPage, std::byte(rng() & 0xff));
  }
  Bytes body = big.body();
  ASSERT_GT(body.size(), std::size_t{1} << 20);
  Bytes expected = s.snapshot;
  big.apply_to(expected);
  const Bytes tail = Writes(s.snapshot).write(last, 0, flip(s.snapshot[last * kPage])).body();
  body.insert(body.end(), tail.begin(), tail.end());
  const std::vector<std::span<const std::byte>> views{body};
  const std::vector<SegmentTag> tags(1);
  std::vector<std::vector<PageNumber>> written;
  EXPECT_FALSE(c.apply_all(views, tags, written));
  EXPECT_TRUE(s.memory_is(expected));
  ASSERT_EQ(written.size(), 1u);
  EXPECT_EQ(written[0].size(), static_cast<std::size_t>(last));
  EXPECT_EQ(std::count(written[0].begin(), written[0].end(), last), 0);
  EXPECT_EQ(c.cut_short(), 1u);   // once per body
}

}  // namespace
}  // namespace calypso::dsm
