// Tests of the diff codec (dsm/diff.hpp).
//
// Encoding is checked against a byte-by-byte reference on many random pages, so that
// every shortcut of the fast encoder (skipping unchanged spans, bit scans for runs, the
// one-word fast path, run splitting, masks dropped for fully changed runs) is held to
// the plain definition: a diff writes exactly the bytes that differ. Merging tests check the
// property the masks exist for, and the validation tests check that a hostile diff can never make
// apply write outside its page.
#include "dsm/diff.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <random>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

namespace calypso::dsm {

// Lets failing expectations print "bad_order" rather than a raw byte.
inline void PrintTo(DiffStatus s, std::ostream* os) { *os << to_string(s); }

namespace {

using Bytes = std::vector<std::byte>;
constexpr std::size_t kPage = 4096;

// Random bytes; the generator is seeded per test so failures reproduce.
Bytes random_bytes(std::size_t n, std::mt19937_64& rng) {
  Bytes b(n);
  for (auto& x : b) x = std::byte(rng() & 0xff);
  return b;
}

// A byte that differs from old: a test that means to change a byte must change it.
std::byte other_byte(std::byte old, std::mt19937_64& rng) {
  return old ^ std::byte(1 + rng() % 255);
}

// Encodes into a buffer of exactly diff_max_encoded_size bytes, so that an encoder that
// writes past its promise trips the sanitizers or the size check.
Bytes encode(const Bytes& cur, const Bytes& twin) {
  Bytes out(diff_max_encoded_size(cur.size()));
  const std::size_t n = diff_encode(cur.data(), twin.data(), cur.size(), out.data());
  EXPECT_LE(n, out.size());
  out.resize(n);
  return out;
}

struct ByteWrite {
  std::size_t offset;
  std::byte value;
  bool operator==(const ByteWrite&) const = default;
};

std::vector<ByteWrite> reference_writes(const Bytes& cur, const Bytes& twin) {
  std::vector<ByteWrite> w;
  for (std::size_t i = 0; i < cur.size(); ++i)
    if (cur[i] != twin[i]) w.push_back({i, cur[i]});
  return w;
}

std::vector<ByteWrite> reported_writes(const Bytes& diff) {
  std::vector<ByteWrite> w;
  diff_for_each_byte(diff, [&](std::size_t off, std::byte v) { w.push_back({off, v}); });
  return w;
}

// The whole contract of encode, checked against the byte-by-byte definition: the diff is
// valid, reports exactly the changed bytes, and applying it writes exactly those bytes
// (a page full of unrelated values keeps every other byte).
void check_round_trip(const Bytes& cur, const Bytes& twin, std::mt19937_64& rng) {
  const Bytes diff = encode(cur, twin);
  ASSERT_EQ(diff_validate(diff, cur.size()), DiffStatus::ok);
  const auto expected = reference_writes(cur, twin);
  EXPECT_EQ(diff.empty(), expected.empty());
  ASSERT_EQ(reported_writes(diff), expected);

  Bytes page = twin;
  diff_apply(diff, page.data());
  ASSERT_EQ(page, cur);
  Bytes bounded = twin;
  ASSERT_TRUE(diff_apply_bounded(diff, bounded.data(), bounded.size()));
  ASSERT_EQ(bounded, cur);

  Bytes other = random_bytes(cur.size(), rng);
  Bytes want = other;
  for (const auto& w : expected) want[w.offset] = w.value;
  diff_apply(diff, other.data());
  ASSERT_EQ(other, want);
}

// How a chosen word is changed: the patterns that decide masked vs unmasked runs.
enum class WordChange { whole, one_byte, alternate_bytes, random_bytes };

void change_word(Bytes& page, std::size_t word, WordChange how, std::mt19937_64& rng) {
  std::byte* w = page.data() + word * 8;
  switch (how) {
    case WordChange::whole:
      for (int b = 0; b < 8; ++b) w[b] = other_byte(w[b], rng);
      break;
    case WordChange::one_byte: {
      const std::size_t b = rng() % 8;
      w[b] = other_byte(w[b], rng);
      break;
    }
    case WordChange::alternate_bytes:
      for (int b = static_cast<int>(rng() % 2); b < 8; b += 2) w[b] = other_byte(w[b], rng);
      break;
    case WordChange::random_bytes:
      for (int b = 0; b < 8; ++b)
        if (rng() % 2 != 0) w[b] = other_byte(w[b], rng);
      break;
  }
}

WordChange random_change(std::mt19937_64& rng) { return static_cast<WordChange>(rng() % 4); }

// Changes about density_permille of the words of a copy of twin.
Bytes scatter_changes(const Bytes& twin, unsigned density_permille, std::mt19937_64& rng) {
  Bytes cur = twin;
  for (std::size_t w = 0; w < twin.size() / 8; ++w)
    if (rng() % 1000 < density_permille) change_word(cur, w, random_change(rng), rng);
  return cur;
}

class DiffRoundTrip : public ::testing::TestWithParam<std::size_t> {};

TEST_P(DiffRoundTrip, UnchangedPageEncodesToNothing) {
  std::mt19937_64 rng(1);
  const Bytes twin = random_bytes(GetParam(), rng);
  EXPECT_TRUE(encode(twin, twin).empty());
}

TEST_P(DiffRoundTrip, OneWordOrOneByteAnywhere) {
  std::mt19937_64 rng(2);
  const std::size_t page = GetParam();
  const Bytes twin = random_bytes(page, rng);
  for (int iter = 0; iter < 200; ++iter) {
    Bytes cur = twin;
    const std::size_t word = iter < 2 ? (iter == 0 ? 0 : page / 8 - 1) : rng() % (page / 8);
    change_word(cur, word, iter % 2 != 0 ? WordChange::one_byte : WordChange::whole, rng);
    check_round_trip(cur, twin, rng);
  }
}

TEST_P(DiffRoundTrip, RandomDensities) {
  std::mt19937_64 rng(3);
  const std::size_t page = GetParam();
  for (unsigned density : {0u, 10u, 100u, 500u, 1000u}) {
    for (int iter = 0; iter < 20; ++iter) {
      const Bytes twin = random_bytes(page, rng);
      check_round_trip(scatter_changes(twin, density, rng), twin, rng);
    }
  }
}

TEST_P(DiffRoundTrip, EveryBytePatternOverWholePage) {
  std::mt19937_64 rng(4);
  const std::size_t page = GetParam();
  for (auto how : {WordChange::whole, WordChange::one_byte, WordChange::alternate_bytes,
                   WordChange::random_bytes}) {
    const Bytes twin = random_bytes(page, rng);
    Bytes cur = twin;
    for (std::size_t w = 0; w < page / 8; ++w) change_word(cur, w, how, rng);
    check_round_trip(cur, twin, rng);
  }
}

// Runs that start and end at every offset around the encoder's 64-word spans, where it
// moves from vector scans to bit scans and back.
// Spans are 64 words; the encoder scans 4096 words (32 KiB) at a time, so runs also
// cross that boundary on the larger pages (the first span of the next chunk may be all
// that changed there, or the run may end in it).
TEST_P(DiffRoundTrip, RunsAroundSpanBoundaries) {
  std::mt19937_64 rng(5);
  const Bytes twin = random_bytes(GetParam(), rng);
  std::vector<std::size_t> firsts;
  for (std::size_t first = 56; first < 136; ++first) firsts.push_back(first);
  for (std::size_t first = 4030; first < 4100 && first < GetParam() / 8; ++first) firsts.push_back(first);
  for (std::size_t first : firsts) {
    for (std::size_t len : {1u, 2u, 7u, 8u, 9u, 33u, 63u, 64u, 65u, 129u}) {
      Bytes cur = twin;
      if (first + len > GetParam() / 8) continue;
      for (std::size_t w = first; w < first + len; ++w) change_word(cur, w, WordChange::whole, rng);
      check_round_trip(cur, twin, rng);
      const std::size_t restored = (first + len / 2) * 8 + rng() % 8;
      cur[restored] = twin[restored];  // one partial word makes the run masked
      check_round_trip(cur, twin, rng);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(PageSizes, DiffRoundTrip, ::testing::Values(4096u, 16384u, 65536u));

std::vector<RunHeader> run_headers(const Bytes& diff) {
  std::vector<RunHeader> runs;
  for (const std::byte* p = diff.data(); p < diff.data() + diff.size();) {
    const detail::RunView r = detail::read_run(p);
    runs.push_back(r.h);
    p = r.next;
  }
  return runs;
}

// A 1 MiB page has 131072 words: a fully changed page needs three runs, as does a run
// that crosses the 65535-word limit; the split runs touch and must still validate.
TEST(DiffLargePage, RunsLongerThanLimitAreSplit) {
  constexpr std::size_t kMiB = 1 << 20;
  std::mt19937_64 rng(6);
  const Bytes twin = random_bytes(kMiB, rng);
  Bytes cur = twin;
  for (std::size_t w = 0; w < kMiB / 8; ++w) change_word(cur, w, WordChange::whole, rng);
  check_round_trip(cur, twin, rng);
  const auto runs = run_headers(encode(cur, twin));
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0].word_count, 65535);
  EXPECT_EQ(runs[1].word_offset, 65535u);
  EXPECT_EQ(runs[2].word_count, 2);
  EXPECT_EQ(runs[0].flags, 0);

  Bytes partial = twin;
  for (std::size_t w = 1000; w < 1000 + 70000; ++w)
    change_word(partial, w, w == 67000 ? WordChange::one_byte : WordChange::whole, rng);
  check_round_trip(partial, twin, rng);
  const auto split = run_headers(encode(partial, twin));
  ASSERT_EQ(split.size(), 2u);
  EXPECT_EQ(split[0].flags, 0);
  EXPECT_EQ(split[1].flags, kRunMasked);  // word 67000 lies in the second piece
  for (unsigned density : {10u, 500u})
    check_round_trip(scatter_changes(twin, density, rng), twin, rng);
}

// The runtime only uses multiples of 4096, but the codec needs just a multiple of 8:
// pages that end in a partial 64-word span take the encoder's tail path.
TEST(DiffOddSizes, PartialLastSpan) {
  std::mt19937_64 rng(11);
  for (std::size_t page : {8u, 72u, 504u, 520u, 4104u, 33280u}) {
    for (unsigned density : {0u, 10u, 300u, 1000u}) {
      const Bytes twin = random_bytes(page, rng);
      check_round_trip(scatter_changes(twin, density, rng), twin, rng);
    }
    const Bytes twin = random_bytes(page, rng);
    Bytes cur = twin;
    change_word(cur, page / 8 - 1, WordChange::one_byte, rng);
    check_round_trip(cur, twin, rng);
  }
}

TEST(DiffSize, MaxEncodedSizeCoversWorstCase) {
  std::mt19937_64 rng(7);
  for (std::size_t page : {4096u, 16384u}) {
    const Bytes twin = random_bytes(page, rng);
    Bytes cur = twin;
    // Every other word, one byte each: one masked run per changed word.
    for (std::size_t w = 0; w < page / 8; w += 2) change_word(cur, w, WordChange::one_byte, rng);
    EXPECT_LE(encode(cur, twin).size(), diff_max_encoded_size(page));
    check_round_trip(cur, twin, rng);
  }
}

// ---- byte-exact merging -------------------------------------------------------------

Bytes apply_all(Bytes page, std::initializer_list<const Bytes*> diffs) {
  for (const Bytes* d : diffs) diff_apply(*d, page.data());
  return page;
}

TEST(DiffMerge, DifferentBytesOfOneWordBothSurvive) {
  std::mt19937_64 rng(8);
  const Bytes twin = random_bytes(kPage, rng);
  Bytes a = twin, b = twin, merged = twin;
  for (std::size_t off : {40u + 1, 40u + 6, 4088u})
    a[off] = merged[off] = other_byte(twin[off], rng);
  for (std::size_t off : {40u + 2, 40u + 7, 4095u})
    b[off] = merged[off] = other_byte(twin[off], rng);
  const Bytes da = encode(a, twin), db = encode(b, twin);
  EXPECT_EQ(apply_all(twin, {&da, &db}), merged);
  EXPECT_EQ(apply_all(twin, {&db, &da}), merged);
}

TEST(DiffMerge, RandomDisjointByteSetsCommute) {
  std::mt19937_64 rng(9);
  for (int iter = 0; iter < 100; ++iter) {
    const Bytes twin = random_bytes(kPage, rng);
    Bytes a = twin, b = twin, merged = twin;
    const unsigned density = 1 + static_cast<unsigned>(rng() % 4) * 30;  // percent of bytes
    for (std::size_t i = 0; i < kPage; ++i) {
      if (rng() % 100 >= density) continue;
      Bytes& side = rng() % 2 != 0 ? a : b;
      side[i] = merged[i] = other_byte(twin[i], rng);
    }
    const Bytes da = encode(a, twin), db = encode(b, twin);
    ASSERT_EQ(apply_all(twin, {&da, &db}), merged);
    ASSERT_EQ(apply_all(twin, {&db, &da}), merged);
  }
}

// diff_swap over a diff of (cur, twin) exchanges the two pages entirely: bytes outside
// the diff's runs are equal in both. Densities from one word to every byte.
TEST(DiffSwap, ExchangesPageAndTwin) {
  std::mt19937_64 rng(10);
  for (int iter = 0; iter < 200; ++iter) {
    const Bytes twin = random_bytes(kPage, rng);
    Bytes cur = twin;
    const unsigned density = iter == 0 ? 0 : static_cast<unsigned>(rng() % 101);   // percent of bytes
    for (std::size_t i = 0; i < kPage; ++i) {
      if (rng() % 100 < density) cur[i] = other_byte(twin[i], rng);
    }
    if (iter == 1) cur[kPage - 1] = other_byte(twin[kPage - 1], rng);
    const Bytes d = encode(cur, twin);
    Bytes a = cur, b = twin;
    diff_swap(d, a.data(), b.data());
    ASSERT_EQ(a, twin) << "iteration " << iter;
    ASSERT_EQ(b, cur) << "iteration " << iter;
  }
}

// ---- sparse runs --------------------------------------------------------------------

// Every 10th word changed: each 64-word span holds 6-7 isolated words. The first goes as
// a plain run, the others as one sparse run (header + bitmap + the words) instead of a
// run per word.
TEST(DiffSparse, ScatteredWordsAfterTheFirstOfASpanGoAsOneSparseRun) {
  std::mt19937_64 rng(12);
  const Bytes twin = random_bytes(kPage, rng);
  Bytes cur = twin;
  std::size_t changed = 0;
  for (std::size_t w = 3; w < kPage / 8; w += 10, ++changed) change_word(cur, w, WordChange::whole, rng);
  check_round_trip(cur, twin, rng);
  const Bytes diff = encode(cur, twin);
  const auto runs = run_headers(diff);
  const std::size_t spans = kPage / 8 / 64;
  ASSERT_EQ(runs.size(), 2 * spans);
  for (std::size_t i = 0; i < runs.size(); ++i) {
    EXPECT_EQ(runs[i].flags, i % 2 == 0 ? 0 : kRunSparse) << "run " << i;
    if (i % 2 == 0) {
      EXPECT_EQ(runs[i].word_count, 1) << "run " << i;
    }
  }
  // Per span 16 for the plain run and its word, 16 for the sparse run's framing, 8 per
  // further word (a run per word: 16 per word).
  EXPECT_EQ(diff.size(), spans * 32 + (changed - spans) * 8);
}

// Partly changed scattered words travel with their masks, and merging keeps the bytes
// another segment wrote in the same words.
TEST(DiffSparse, MaskedScatteredWordsMergeByteExactly) {
  std::mt19937_64 rng(13);
  const Bytes twin = random_bytes(kPage, rng);
  Bytes a = twin, b = twin, merged = twin;
  for (std::size_t w = 0; w < kPage / 8; w += 5) {
    const std::size_t off = w * 8;
    a[off + 1] = merged[off + 1] = other_byte(twin[off + 1], rng);
    b[off + 6] = merged[off + 6] = other_byte(twin[off + 6], rng);
  }
  const Bytes da = encode(a, twin), db = encode(b, twin);
  const auto runs = run_headers(da);
  ASSERT_EQ(runs.size(), 2 * (kPage / 8 / 64));
  for (std::size_t i = 0; i < runs.size(); ++i)
    EXPECT_EQ(runs[i].flags, i % 2 == 0 ? kRunMasked : kRunSparse | kRunMasked) << "run " << i;
  check_round_trip(a, twin, rng);
  EXPECT_EQ(apply_all(twin, {&da, &db}), merged);
  EXPECT_EQ(apply_all(twin, {&db, &da}), merged);
  Bytes x = a, y = twin;
  diff_swap(da, x.data(), y.data());
  EXPECT_EQ(x, twin);
  EXPECT_EQ(y, a);
}

// Up to two runs in a span stay plain runs; from three on, the runs after the first go
// as one sparse run, wherever they start.
TEST(DiffSparse, ChosenFromThreeRunsInASpan) {
  std::mt19937_64 rng(14);
  const Bytes twin = random_bytes(kPage, rng);
  Bytes two = twin;
  for (std::size_t w : {70u, 71u, 90u}) change_word(two, w, WordChange::whole, rng);
  for (const RunHeader& h : run_headers(encode(two, twin))) EXPECT_EQ(h.flags & kRunSparse, 0);
  Bytes three = two;
  change_word(three, 120, WordChange::whole, rng);   // 70-71, 90, 120: three runs
  const auto runs = run_headers(encode(three, twin));
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].flags, 0);
  EXPECT_EQ(runs[0].word_offset, 70u);
  EXPECT_EQ(runs[0].word_count, 2);
  EXPECT_EQ(runs[1].flags, kRunSparse);
  EXPECT_EQ(runs[1].word_offset, 90u);
  EXPECT_EQ(runs[1].word_count, 31);
  check_round_trip(three, twin, rng);
  // A long plain run that ends inside a span counts as that span's first run: the
  // scattered words after it there go as one sparse run, to the span's last change; the
  // next span starts with a plain run again.
  Bytes mixed = twin;
  for (std::size_t w = 10; w < 130; ++w) change_word(mixed, w, WordChange::whole, rng);
  for (std::size_t w : {135u, 140u, 150u, 191u, 192u}) change_word(mixed, w, WordChange::one_byte, rng);
  check_round_trip(mixed, twin, rng);
  const auto parts = run_headers(encode(mixed, twin));
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].word_offset, 10u);
  EXPECT_EQ(parts[0].word_count, 120);
  EXPECT_EQ(parts[0].flags, 0);
  EXPECT_EQ(parts[1].word_offset, 135u);
  EXPECT_EQ(parts[1].word_count, 57);
  EXPECT_EQ(parts[1].flags, kRunSparse | kRunMasked);
  EXPECT_EQ(parts[2].word_offset, 192u);
  EXPECT_EQ(parts[2].word_count, 1);
  EXPECT_EQ(parts[2].flags, kRunMasked);
}

// ---- validation ---------------------------------------------------------------------

// Builds diffs by hand, including ones the encoder would never produce.
class DiffBuilder {
 public:
  DiffBuilder& run(std::uint32_t offset, std::uint16_t count, std::uint16_t flags = 0,
                   std::vector<std::uint8_t> masks = {}) {
    const RunHeader h{offset, count, flags};
    append(&h, sizeof h);
    for (std::size_t i = 0; i < count; ++i) append_word(0x1111111111111111ull * (i + 1));
    if (flags & kRunMasked) {
      if (masks.empty()) masks.assign(count, 0xff);
      masks.resize((masks.size() + 7) / 8 * 8, 0);
      append(masks.data(), masks.size());
    }
    return *this;
  }
  // A sparse run: header, bitmap, a word per bitmap bit, masks per written word.
  DiffBuilder& sparse(std::uint32_t offset, std::uint16_t count, std::uint64_t bitmap,
                      std::uint16_t flags = kRunSparse, std::vector<std::uint8_t> masks = {}) {
    const RunHeader h{offset, count, flags};
    append(&h, sizeof h);
    append_word(bitmap);
    const int written = std::popcount(bitmap);
    for (int i = 0; i < written; ++i) append_word(0x2222222222222222ull * static_cast<std::uint64_t>(i + 1));
    if (flags & kRunMasked) {
      if (masks.empty()) masks.assign(static_cast<std::size_t>(written), 0x0f);
      masks.resize((masks.size() + 7) / 8 * 8, 0);
      append(masks.data(), masks.size());
    }
    return *this;
  }
  DiffBuilder& append_word(std::uint64_t w) { return append(&w, sizeof w); }
  DiffBuilder& append(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    bytes_.insert(bytes_.end(), b, b + n);
    return *this;
  }
  Bytes bytes() const { return bytes_; }

 private:
  Bytes bytes_;
};

DiffStatus validate(const Bytes& d) { return diff_validate(d, kPage); }

TEST(DiffValidate, AcceptsWellFormedDiffs) {
  EXPECT_EQ(validate({}), DiffStatus::ok);
  EXPECT_EQ(validate(DiffBuilder().run(0, 1).run(1, 2).run(511, 1).bytes()), DiffStatus::ok);
  EXPECT_EQ(
      validate(DiffBuilder().run(3, 9, kRunMasked, {1, 2, 4, 8, 16, 32, 64, 128, 255}).bytes()),
      DiffStatus::ok);
  EXPECT_EQ(validate(DiffBuilder().run(0, 512).bytes()), DiffStatus::ok);
  EXPECT_EQ(validate(DiffBuilder().run(0, 2).sparse(2, 3, 0b101).sparse(5, 64, (1ull << 63) | 1).bytes()),
            DiffStatus::ok);
  EXPECT_EQ(validate(DiffBuilder().sparse(500, 12, 0b100000000011, kRunSparse | kRunMasked).bytes()),
            DiffStatus::ok);
  EXPECT_EQ(validate(DiffBuilder().sparse(511, 1, 1).bytes()), DiffStatus::ok);
  EXPECT_STREQ(to_string(DiffStatus::ok), "ok");
  EXPECT_STREQ(to_string(DiffStatus::bad_flags), "bad_flags");
}

TEST(DiffValidate, Truncated) {
  const Bytes good = DiffBuilder().run(0, 2).run(5, 3, kRunMasked).bytes();
  const std::size_t last_run_bytes = 8 + 3 * 8 + 8;
  for (std::size_t cut = 1; cut < good.size(); ++cut) {
    if (cut == last_run_bytes) continue;  // dropping a whole run leaves a valid diff
    const Bytes bad(good.begin(), good.end() - static_cast<std::ptrdiff_t>(cut));
    EXPECT_EQ(validate(bad), DiffStatus::truncated) << "cut " << cut;
  }
  Bytes odd = good;
  odd.resize(odd.size() + 4);
  EXPECT_EQ(validate(odd), DiffStatus::truncated);
}

// A sparse run is checked like any run (its covered words in range and in order) and
// its bitmap must match the words it claims to cover: exact ends, nothing past them.
TEST(DiffValidate, SparseRuns) {
  EXPECT_EQ(validate(DiffBuilder().sparse(0, 3, 0b100).bytes()), DiffStatus::bad_flags);   // bit 0 clear
  EXPECT_EQ(validate(DiffBuilder().sparse(0, 3, 0b001).bytes()), DiffStatus::bad_flags);   // end bit clear
  EXPECT_EQ(validate(DiffBuilder().sparse(0, 3, 0b1101).bytes()), DiffStatus::bad_flags);  // bit past the end
  EXPECT_EQ(validate(DiffBuilder().sparse(0, 3, 0).bytes()), DiffStatus::bad_flags);
  EXPECT_EQ(validate(DiffBuilder().sparse(0, 65, 1).bytes()), DiffStatus::bad_flags);      // more than 64 words
  EXPECT_EQ(validate(DiffBuilder().sparse(0, 0, 1).bytes()), DiffStatus::bad_order);
  EXPECT_EQ(validate(DiffBuilder().sparse(510, 3, 0b101).bytes()), DiffStatus::out_of_range);
  EXPECT_EQ(validate(DiffBuilder().run(0, 4).sparse(3, 2, 0b11).bytes()), DiffStatus::bad_order);
  EXPECT_EQ(validate(DiffBuilder().sparse(0, 8, 0x81).run(7, 1).bytes()), DiffStatus::bad_order);
  EXPECT_EQ(validate(DiffBuilder().sparse(0, 2, 0b11, kRunSparse | kRunMasked, {0x0f, 0}).bytes()),
            DiffStatus::bad_flags);
  // Cut anywhere: the bitmap, a word or the masks missing.
  const Bytes good = DiffBuilder().sparse(0, 10, 0b1000010001, kRunSparse | kRunMasked).bytes();
  for (std::size_t cut = 1; cut < good.size(); ++cut) {
    const Bytes bad(good.begin(), good.end() - static_cast<std::ptrdiff_t>(cut));
    EXPECT_EQ(validate(bad), bad.empty() ? DiffStatus::ok : DiffStatus::truncated) << "cut " << cut;
  }
  // What a valid sparse run writes: its bitmap's words, nothing between them.
  const Bytes d = DiffBuilder().sparse(8, 5, 0b10001).bytes();
  Bytes page(kPage, std::byte{0});
  diff_apply(d, page.data());
  for (std::size_t w = 0; w < kPage / 8; ++w) {
    std::uint64_t v;
    std::memcpy(&v, page.data() + w * 8, 8);
    EXPECT_EQ(v, w == 8 ? 0x2222222222222222ull : w == 12 ? 0x4444444444444444ull : 0u) << "word " << w;
  }
}

TEST(DiffValidate, OutOfRange) {
  EXPECT_EQ(validate(DiffBuilder().run(512, 1).bytes()), DiffStatus::out_of_range);
  EXPECT_EQ(validate(DiffBuilder().run(511, 2).bytes()), DiffStatus::out_of_range);
  EXPECT_EQ(validate(DiffBuilder().run(0xffffffffu, 1).bytes()), DiffStatus::out_of_range);
  EXPECT_EQ(validate(DiffBuilder().run(0, 513).bytes()), DiffStatus::out_of_range);
  EXPECT_EQ(diff_validate(DiffBuilder().run(512, 1).bytes(), 8192), DiffStatus::ok);
}

TEST(DiffValidate, OverlappingUnorderedOrEmptyRuns) {
  EXPECT_EQ(validate(DiffBuilder().run(0, 4).run(2, 1).bytes()), DiffStatus::bad_order);
  EXPECT_EQ(validate(DiffBuilder().run(0, 4).run(3, 4).bytes()), DiffStatus::bad_order);
  EXPECT_EQ(validate(DiffBuilder().run(10, 1).run(5, 1).bytes()), DiffStatus::bad_order);
  EXPECT_EQ(validate(DiffBuilder().run(10, 1).run(10, 1).bytes()), DiffStatus::bad_order);
  EXPECT_EQ(validate(DiffBuilder().run(10, 0).bytes()), DiffStatus::bad_order);
}

TEST(DiffValidate, BadFlagsAndMasks) {
  EXPECT_EQ(validate(DiffBuilder().run(0, 1, 4).bytes()), DiffStatus::bad_flags);
  EXPECT_EQ(validate(DiffBuilder().run(0, 1, 0x8000).bytes()), DiffStatus::bad_flags);
  EXPECT_EQ(validate(DiffBuilder().run(0, 2, kRunMasked, {0xff, 0}).bytes()),
            DiffStatus::bad_flags);
  Bytes padded = DiffBuilder().run(0, 1, kRunMasked, {0x0f}).bytes();
  padded.back() = std::byte{1};  // last padding byte of the mask word
  EXPECT_EQ(validate(padded), DiffStatus::bad_flags);
}

// Random mutations of valid diffs. Whatever validate accepts, apply must keep within
// the page; what it rejects is never applied (as the real receiver does).
TEST(DiffValidate, FuzzedDiffsNeverWriteOutsideThePage) {
  constexpr std::size_t kGuard = 256;
  constexpr std::byte kGuardByte{0xa5};
  std::mt19937_64 rng(10);
  int accepted = 0, rejected = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    const Bytes twin = random_bytes(kPage, rng);
    Bytes diff = encode(scatter_changes(twin, 1 + rng() % 100, rng), twin);
    for (int m = 1 + static_cast<int>(rng() % 3); m > 0 && !diff.empty(); --m) {
      switch (rng() % 4) {
        case 0: diff[rng() % diff.size()] ^= std::byte(1u << (rng() % 8)); break;
        case 1: diff[rng() % diff.size()] = std::byte(rng() & 0xff); break;
        case 2: diff.resize(rng() % diff.size()); break;
        default: diff.resize(diff.size() + 8 * (1 + rng() % 2), std::byte(rng() & 0xff)); break;
      }
    }
    if (diff_validate(diff, kPage) != DiffStatus::ok) {
      ++rejected;
      continue;
    }
    ++accepted;
    Bytes buffer(kGuard + kPage + kGuard, kGuardByte);
    diff_apply(diff, buffer.data() + kGuard);
    ASSERT_TRUE(std::all_of(buffer.begin(), buffer.begin() + kGuard,
                            [&](std::byte b) { return b == kGuardByte; }));
    ASSERT_TRUE(std::all_of(buffer.end() - kGuard, buffer.end(),
                            [&](std::byte b) { return b == kGuardByte; }));
    diff_for_each_byte(diff, [](std::size_t off, std::byte) { ASSERT_LT(off, kPage); });
    Bytes a(kGuard + kPage + kGuard, kGuardByte), b(kGuard + kPage + kGuard, kGuardByte);
    diff_swap(diff, a.data() + kGuard, b.data() + kGuard);
    for (const Bytes* side : {&a, &b}) {
      ASSERT_TRUE(std::all_of(side->begin(), side->begin() + kGuard, [&](std::byte x) { return x == kGuardByte; }));
      ASSERT_TRUE(std::all_of(side->end() - kGuard, side->end(), [&](std::byte x) { return x == kGuardByte; }));
    }
  }
  // Both branches must be exercised for the test to mean anything.
  EXPECT_GT(accepted, 100);
  EXPECT_GT(rejected, 100);
}

// diff_apply_bounded takes diffs nobody validated (a result read where a worker wrote
// it, which may change underneath): whatever they hold, it writes nothing outside the
// page and reads nothing past the diff, which here ends right before an inaccessible
// page (a read past it would crash the test). A diff that validates is applied in full,
// as diff_apply does.
TEST(DiffApplyBounded, UncheckedDiffsStayInsideThePageAndTheDiff) {
  constexpr std::size_t kGuard = 256;
  constexpr std::byte kGuardByte{0xa5};
  const std::size_t sys_page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t room = 4 * kPage;   // more than any diff below
  const std::size_t span = (room + sys_page - 1) / sys_page * sys_page;
  void* m = mmap(nullptr, span + sys_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(m, MAP_FAILED);
  auto* base = static_cast<std::byte*>(m);
  ASSERT_EQ(mprotect(base + span, sys_page, PROT_NONE), 0);
  std::mt19937_64 rng(11);
  int valid = 0, refused = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    const Bytes twin = random_bytes(kPage, rng);
    Bytes diff = encode(scatter_changes(twin, 1 + rng() % 200, rng), twin);
    for (int n = static_cast<int>(rng() % 4); n > 0 && !diff.empty(); --n) {
      switch (rng() % 4) {
        case 0: diff[rng() % diff.size()] ^= std::byte(1u << (rng() % 8)); break;
        case 1: diff[rng() % diff.size()] = std::byte(rng() & 0xff); break;
        case 2: diff.resize(rng() % diff.size()); break;
        default: diff.resize(diff.size() + 1 + rng() % 16, std::byte(rng() & 0xff)); break;
      }
    }
    ASSERT_LE(diff.size(), room);
    std::byte* at = base + span - diff.size();   // the diff ends at the inaccessible page
    if (!diff.empty()) std::memcpy(at, diff.data(), diff.size());
    const std::span<const std::byte> in_place(at, diff.size());
    Bytes buffer(kGuard + kPage + kGuard, kGuardByte);
    std::copy(twin.begin(), twin.end(), buffer.begin() + kGuard);
    const bool applied = diff_apply_bounded(in_place, buffer.data() + kGuard, kPage);
    ASSERT_TRUE(std::all_of(buffer.begin(), buffer.begin() + kGuard, [&](std::byte b) { return b == kGuardByte; }));
    ASSERT_TRUE(std::all_of(buffer.end() - kGuard, buffer.end(), [&](std::byte b) { return b == kGuardByte; }));
    if (diff_validate(diff, kPage) == DiffStatus::ok) {
      ++valid;
      ASSERT_TRUE(applied);
      Bytes want = twin;
      diff_apply(diff, want.data());
      ASSERT_TRUE(std::equal(want.begin(), want.end(), buffer.begin() + kGuard));
    } else if (!applied) {
      ++refused;
    }
  }
  munmap(m, span + sys_page);
  EXPECT_GT(valid, 100);
  EXPECT_GT(refused, 100);
}

}  // namespace
}  // namespace calypso::dsm
