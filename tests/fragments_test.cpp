// Unit tests of the fragment reassembly used on shm (net/fragments.hpp): pure logic.
#include "net/fragments.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

namespace calypso::net {
namespace {

std::vector<std::byte> message(std::size_t n, unsigned seed) {
  std::vector<std::byte> m(n);
  std::mt19937 rng(seed);
  for (auto& b : m) b = std::byte(rng());
  return m;
}

// Cuts msg the way the endpoint does: header + up to `payload` bytes per fragment.
std::vector<std::vector<std::byte>> cut(std::span<const std::byte> msg, std::uint64_t stream,
                                        std::uint32_t seq, std::size_t payload) {
  std::vector<std::vector<std::byte>> out;
  std::size_t off = 0;
  do {
    const std::size_t n = std::min(payload, msg.size() - off);
    FragmentHeader h{stream, seq, static_cast<std::uint32_t>(off),
                     static_cast<std::uint32_t>(msg.size()), kFragmentMagic};
    std::vector<std::byte> f(sizeof h + n);
    std::memcpy(f.data(), &h, sizeof h);
    const std::span<const std::byte> parts[] = {msg};
    copy_range(parts, off, n, f.data() + sizeof h);
    out.push_back(std::move(f));
    off += n;
  } while (off < msg.size());
  return out;
}

// Byte-wise equality (GCC 12 -O3 warns falsely on vector<std::byte>::operator==).
bool same(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}
std::vector<std::byte> copy(std::span<const std::byte> s) { return {s.begin(), s.end()}; }

TEST(CopyRange, AcrossParts) {
  const auto a = message(10, 1), b = message(7, 2);
  const std::span<const std::byte> parts[] = {a, {}, b};
  std::vector<std::byte> all(a);
  all.insert(all.end(), b.begin(), b.end());
  for (std::size_t off = 0; off <= all.size(); ++off) {
    for (std::size_t n = 0; off + n <= all.size(); ++n) {
      std::vector<std::byte> got(n);
      copy_range(parts, off, n, got.data());
      ASSERT_TRUE(n == 0 || std::memcmp(got.data(), all.data() + off, n) == 0) << off << "+" << n;
    }
  }
}

TEST(Reassembler, SingleFragmentIsReturnedInPlace) {
  Reassembler r(1 << 20, 4);
  const auto m = message(100, 3);
  const auto f = cut(m, 7, 0, 4072);
  ASSERT_EQ(f.size(), 1u);
  const auto out = r.add(f[0]);
  ASSERT_EQ(out.verdict, Reassembler::Verdict::complete);
  EXPECT_EQ(out.message.data(), f[0].data() + sizeof(FragmentHeader));
  EXPECT_TRUE(same(out.message, m));
  EXPECT_EQ(r.pending(), 0u);
}

TEST(Reassembler, EmptyMessage) {
  Reassembler r(1 << 20, 4);
  const auto f = cut({}, 1, 0, 4072);
  const auto out = r.add(f[0]);
  ASSERT_EQ(out.verdict, Reassembler::Verdict::complete);
  EXPECT_TRUE(out.message.empty());
}

// Several senders' messages, fragments shuffled together: each comes out whole, once.
TEST(Reassembler, InterleavedShuffledStreams) {
  Reassembler r(1 << 20, 64);
  std::vector<std::vector<std::byte>> msgs;
  std::vector<std::vector<std::byte>> frags;
  for (unsigned i = 0; i < 12; ++i) {
    msgs.push_back(message(1 + i * 9000, i));
    for (auto& f : cut(msgs.back(), 100 + i % 3, i, 4072)) frags.push_back(std::move(f));
  }
  std::shuffle(frags.begin(), frags.end(), std::mt19937(5));
  std::vector<std::vector<std::byte>> got;
  for (const auto& f : frags) {
    const auto out = r.add(f);
    ASSERT_NE(out.verdict, Reassembler::Verdict::malformed) << out.why;
    if (out.verdict == Reassembler::Verdict::complete) got.push_back(copy(out.message));
  }
  EXPECT_EQ(r.pending(), 0u);
  ASSERT_EQ(got.size(), msgs.size());
  auto by_size = [](const auto& a, const auto& b) { return a.size() < b.size(); };   // sizes differ
  std::sort(got.begin(), got.end(), by_size);
  for (std::size_t i = 0; i < msgs.size(); ++i) EXPECT_TRUE(same(got[i], msgs[i])) << i;
}

TEST(Reassembler, RefusesMalformedAndKeepsGoing) {
  Reassembler r(16 * 1024, 4);
  const auto m = message(10000, 9);
  auto f = cut(m, 1, 0, 4072);
  auto bad_magic = f[0];
  bad_magic[20] = std::byte{0};
  EXPECT_EQ(r.add(bad_magic).verdict, Reassembler::Verdict::malformed);
  EXPECT_EQ(r.add(std::span(f[0]).first(10)).verdict, Reassembler::Verdict::malformed);
  const auto huge = cut(message(20000, 1), 2, 0, 4072);
  EXPECT_EQ(r.add(huge[0]).verdict, Reassembler::Verdict::malformed);   // > max_message
  auto outside = f[2];
  FragmentHeader h;
  std::memcpy(&h, outside.data(), sizeof h);
  h.offset = 9000;   // + 1856 bytes > 10000
  std::memcpy(outside.data(), &h, sizeof h);
  EXPECT_EQ(r.add(outside).verdict, Reassembler::Verdict::malformed);
  EXPECT_EQ(r.pending(), 0u);
  // The real fragments still make the message.
  EXPECT_EQ(r.add(f[0]).verdict, Reassembler::Verdict::partial);
  EXPECT_EQ(r.add(f[1]).verdict, Reassembler::Verdict::partial);
  const auto out = r.add(f[2]);
  ASSERT_EQ(out.verdict, Reassembler::Verdict::complete);
  EXPECT_TRUE(same(out.message, m));
}

TEST(Reassembler, FragmentsThatDisagreeDropTheMessage) {
  Reassembler r(1 << 20, 4);
  const auto a = cut(message(10000, 1), 1, 0, 4072);
  const auto b = cut(message(12000, 1), 1, 0, 4072);   // same stream and seq, other size
  EXPECT_EQ(r.add(a[0]).verdict, Reassembler::Verdict::partial);
  EXPECT_EQ(r.add(b[1]).verdict, Reassembler::Verdict::malformed);
  EXPECT_EQ(r.pending(), 0u);
}

// Two senders that happen to use the same stream and number: where the provider names
// them, their fragments stay two messages, and neither's can complete the other's.
TEST(Reassembler, FragmentsFromTwoSourcesAreTwoMessages) {
  Reassembler r(1 << 20, 8);
  const auto m1 = message(10000, 7), m2 = message(10000, 8);
  const auto f1 = cut(m1, 42, 3, 4096), f2 = cut(m2, 42, 3, 4096);
  ASSERT_EQ(f1.size(), 3u);
  std::vector<std::vector<std::byte>> got;
  for (std::size_t i = 0; i < f1.size(); ++i) {
    for (auto [f, source] : {std::pair{&f1[i], 1ull}, std::pair{&f2[i], 2ull}}) {
      const auto out = r.add(*f, source);
      ASSERT_NE(out.verdict, Reassembler::Verdict::malformed) << out.why;
      if (out.verdict == Reassembler::Verdict::complete) got.push_back(copy(out.message));
    }
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(same(got[0], m1));
  EXPECT_TRUE(same(got[1], m2));
  EXPECT_EQ(r.pending(), 0u);
}

// A sender that died halfway leaves a partial message; at most max_pending are kept,
// the oldest dropped first, and newer messages still complete.
TEST(Reassembler, DropsTheOldestPartialWhenFull) {
  Reassembler r(1 << 20, 3);
  std::vector<std::vector<std::vector<std::byte>>> fs;
  for (std::uint32_t s = 0; s < 5; ++s) fs.push_back(cut(message(9000, s), 1, s, 4072));
  for (std::uint32_t s = 0; s < 5; ++s) {
    EXPECT_EQ(r.add(fs[s][0]).verdict, Reassembler::Verdict::partial);
  }
  EXPECT_EQ(r.pending(), 3u);
  EXPECT_EQ(r.dropped(), 2u);
  // Message 0 was dropped: its remaining fragments start it anew and it cannot complete.
  EXPECT_EQ(r.add(fs[0][1]).verdict, Reassembler::Verdict::partial);
  EXPECT_EQ(r.add(fs[0][2]).verdict, Reassembler::Verdict::partial);
  // Message 4 is still there and completes.
  EXPECT_EQ(r.add(fs[4][1]).verdict, Reassembler::Verdict::partial);
  const auto out = r.add(fs[4][2]);
  ASSERT_EQ(out.verdict, Reassembler::Verdict::complete);
  EXPECT_TRUE(same(out.message, message(9000, 4)));
  for (int i = 0; i < 100; ++i) {   // bounded state under churn
    const auto f = cut(message(9000, 50), 2, 1000 + i, 4072);
    r.add(f[0]);
  }
  EXPECT_LE(r.pending(), 3u);
}

}  // namespace
}  // namespace calypso::net
