// Tests of the result ring (result_ring.hpp) within one process: the "worker" side is a
// ResultRing of this process, opened by a RingReader through /proc/self's pid as the
// manager opens a worker's.
#include "sched/result_ring.hpp"

#include <calypso/error.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace calypso::sched {
namespace {

constexpr std::size_t kCapacity = 64 << 10;

std::vector<std::byte> pattern(std::size_t n, int seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>(i * 13 + seed);
  return v;
}

RingReader open_reader(const RingOffer& offer) {
  std::string why;
  auto r = RingReader::open(offer, why);
  EXPECT_TRUE(r) << why;
  if (!r) throw std::runtime_error(why);
  return std::move(*r);
}

// What the manager did before it read results in place: borrow the result at `at`,
// copy it out, end the loan (which frees its room).
bool take_into(RingReader& reader, std::uint64_t at, std::span<std::byte> dst) {
  auto loan = reader.borrow(at, dst.size());
  if (!loan) return false;
  EXPECT_EQ(loan->bytes().size(), dst.size());
  std::memcpy(dst.data(), loan->bytes().data(), dst.size());
  return true;
}

// The manager takes the result at `at` and finds body there.
void expect_taken(RingReader& reader, std::uint64_t at, const std::vector<std::byte>& body) {
  std::vector<std::byte> out(body.size());
  ASSERT_TRUE(take_into(reader, at, out)) << at;
  EXPECT_EQ(out, body) << at;
}

TEST(ResultRing, TheManagerTakesWhatTheWorkerPut) {
  ResultRing ring(kCapacity);
  const RingOffer offer = ring.offer();
  EXPECT_EQ(offer.pid, static_cast<std::uint32_t>(getpid()));
  EXPECT_EQ(offer.capacity, kCapacity);
  RingReader reader = open_reader(offer);
  for (int i = 0; i < 20; ++i) {   // around the ring several times
    const auto body = pattern(10000 + 777 * i, i);
    const auto at = ring.put(body);
    ASSERT_TRUE(at) << i;
    std::vector<std::byte> out(body.size());
    ASSERT_TRUE(take_into(reader, *at, out)) << i;
    EXPECT_EQ(out, body) << i;
    EXPECT_LE(*at % kCapacity + body.size(), kCapacity) << "a result never wraps";
  }
}

// populate() allocates the whole ring up front (the memfd's blocks), and the ring
// works as before afterwards.
TEST(ResultRing, PopulateAllocatesTheRingAhead) {
  ResultRing ring(kCapacity);
  const RingOffer offer = ring.offer();
  struct stat st {};
  ASSERT_EQ(fstat(offer.fd, &st), 0);
  EXPECT_LT(static_cast<std::size_t>(st.st_blocks) * 512, kCapacity);   // header only, if that
  ASSERT_EQ(ring.populate(), 0);
  ASSERT_EQ(fstat(offer.fd, &st), 0);
  EXPECT_GE(static_cast<std::size_t>(st.st_blocks) * 512, kCapacity);
  RingReader reader = open_reader(offer);
  const auto body = pattern(5000, 3);
  const auto at = ring.put(body);
  ASSERT_TRUE(at);
  std::vector<std::byte> out(body.size());
  ASSERT_TRUE(take_into(reader, *at, out));
  EXPECT_EQ(out, body);
}

TEST(ResultRing, AFullRingRefusesUntilTheManagerTakes) {
  ResultRing ring(kCapacity);
  RingReader reader = open_reader(ring.offer());
  const auto a = ring.put(pattern(40 << 10, 1));
  ASSERT_TRUE(a);
  const auto b_body = pattern(20 << 10, 2);
  const auto b = ring.put(b_body);
  ASSERT_TRUE(b);
  // 4 KiB left at the end; 8 KiB would have to wrap to the start, still a's.
  EXPECT_FALSE(ring.put(pattern(8 << 10, 3)));
  EXPECT_FALSE(ring.put(pattern(kCapacity + 1, 3)));   // larger than the ring
  EXPECT_FALSE(ring.put({}));
  std::vector<std::byte> out(40 << 10);
  ASSERT_TRUE(take_into(reader, *a, out));
  const auto c_body = pattern(8 << 10, 3);
  const auto c = ring.put(c_body);   // now it fits, at the start
  ASSERT_TRUE(c);
  EXPECT_EQ(*c % kCapacity, 0u);
  expect_taken(reader, *b, b_body);
  expect_taken(reader, *c, c_body);
}

// A result written in place: reserve room for the most it can take, write fewer bytes,
// commit those. Uncommitted room is no result: the next reserve or put takes it again.
TEST(ResultRing, AResultWrittenInPlaceIsTakenAsAPutOne) {
  ResultRing ring(kCapacity);
  RingReader reader = open_reader(ring.offer());
  std::span<std::byte> room = ring.reserve(30 << 10);
  ASSERT_EQ(room.size(), std::size_t{30} << 10);
  const auto dropped = pattern(room.size(), 1);
  std::memcpy(room.data(), dropped.data(), dropped.size());   // never committed
  room = ring.reserve(30 << 10);
  ASSERT_EQ(room.size(), std::size_t{30} << 10);
  const auto a_body = pattern(10000, 2);
  std::memcpy(room.data(), a_body.data(), a_body.size());
  EXPECT_FALSE(ring.commit(room.size() + 1)) << "more than the room";
  EXPECT_FALSE(ring.commit(0));
  const auto a_at = ring.commit(a_body.size());
  ASSERT_TRUE(a_at);
  const std::uint64_t a = *a_at;
  EXPECT_EQ(a, 0u) << "the dropped room was taken again";
  EXPECT_FALSE(ring.commit(a_body.size())) << "committed once only";
  const auto b_body = pattern(5000, 3);
  const auto b = ring.put(b_body);
  ASSERT_TRUE(b);
  EXPECT_EQ(*b, a_body.size()) << "the next result starts where the committed one ends";
  EXPECT_TRUE(ring.reserve(kCapacity - 10000).empty()) << "more than is free";
  EXPECT_FALSE(ring.commit(100)) << "no room was given";
  EXPECT_TRUE(ring.reserve(0).empty());
  EXPECT_TRUE(ring.reserve(kCapacity + 1).empty());
  expect_taken(reader, a, a_body);
  expect_taken(reader, *b, b_body);
}

// The worker reads its own results back (to replay them) while nothing has been written
// over them since, taken by the manager or not; never once their room was given out
// again, even if only reserved.
TEST(ResultRing, AWorkerReadsItsResultsBackUntilTheirRoomIsGivenOutAgain) {
  ResultRing ring(kCapacity);
  RingReader reader = open_reader(ring.offer());
  const auto a_body = pattern(20 << 10, 1);
  const auto a = ring.put(a_body);
  ASSERT_TRUE(a);
  auto back = ring.written(*a, a_body.size());
  ASSERT_TRUE(back);
  EXPECT_TRUE(std::equal(back->begin(), back->end(), a_body.begin(), a_body.end()));
  EXPECT_FALSE(ring.written(*a, a_body.size() + 8)) << "past what was committed";
  EXPECT_FALSE(ring.written(*a, 0));
  std::vector<std::byte> out(a_body.size());
  ASSERT_TRUE(take_into(reader, *a, out));
  ASSERT_TRUE(ring.written(*a, a_body.size())) << "taken, not written over";
  const auto b = ring.put(pattern(40 << 10, 2));   // 20-60 KiB
  ASSERT_TRUE(b);
  EXPECT_TRUE(ring.written(*a, a_body.size()));
  out.resize(40 << 10);
  ASSERT_TRUE(take_into(reader, *b, out));
  // 4 KiB left at the end: room for 8 KiB starts over at 0, a's room.
  ASSERT_FALSE(ring.reserve(8 << 10).empty());
  EXPECT_FALSE(ring.written(*a, a_body.size())) << "its room was given out again";
  EXPECT_TRUE(ring.written(*b, 40 << 10));
}

TEST(ResultRing, TheManagerRefusesPositionsTheWorkerCouldNotHaveWritten) {
  ResultRing ring(kCapacity);
  RingReader reader = open_reader(ring.offer());
  const auto a = ring.put(pattern(8192, 1));
  ASSERT_TRUE(a);
  std::vector<std::byte> out(8192);
  ASSERT_TRUE(take_into(reader, *a, out));
  EXPECT_FALSE(take_into(reader, *a, out)) << "already taken";
  std::vector<std::byte> big(kCapacity + 1);
  EXPECT_FALSE(take_into(reader, 8192, big)) << "larger than the ring";
  EXPECT_FALSE(take_into(reader, kCapacity - 4096, out)) << "across the end";
  EXPECT_FALSE(take_into(reader, 8192 + kCapacity, out)) << "beyond what was free";
  EXPECT_FALSE(take_into(reader, 8192, std::span(out).first(0))) << "empty";
  const auto b_body = pattern(4096, 2);
  const auto b = ring.put(b_body);   // refusals freed nothing and moved nothing
  ASSERT_TRUE(b);
  EXPECT_EQ(*b, 8192u);
  std::vector<std::byte> out_b(4096);
  ASSERT_TRUE(take_into(reader, *b, out_b));
  EXPECT_EQ(out_b, b_body);
}

TEST(ResultRing, AnUnwantedResultIsSkippedAsCheckedAsATakenOne) {
  ResultRing ring(kCapacity);
  RingReader reader = open_reader(ring.offer());
  const auto a = ring.put(pattern(40 << 10, 1));
  ASSERT_TRUE(a);
  EXPECT_FALSE(ring.put(pattern(30 << 10, 2)));   // full until a is consumed
  EXPECT_FALSE(reader.skip(kCapacity - 4096, 40 << 10)) << "across the end";
  EXPECT_FALSE(reader.skip(*a, 0)) << "empty";
  ASSERT_TRUE(reader.skip(*a, 40 << 10));
  EXPECT_FALSE(reader.skip(*a, 40 << 10)) << "already consumed";
  EXPECT_TRUE(ring.put(pattern(30 << 10, 2))) << "skipping frees the room";
}

TEST(ResultRing, PositionsNearTheEndOfTheCounterDoNotWrap) {
  ResultRing ring(kCapacity);
  RingReader reader = open_reader(ring.offer());
  std::vector<std::byte> out(4096);
  EXPECT_FALSE(take_into(reader, ~std::uint64_t{0} - 100, out));
  EXPECT_FALSE(take_into(reader, ~std::uint64_t{0} - (~std::uint64_t{0} % kCapacity), out));
  EXPECT_FALSE(reader.skip(~std::uint64_t{0} - 4095, 4096));
  const auto body = pattern(4096, 9);
  const auto at = ring.put(body);   // nothing was consumed by the refusals
  ASSERT_TRUE(at);
  EXPECT_EQ(*at, 0u);
  ASSERT_TRUE(take_into(reader, *at, out));
  EXPECT_EQ(out, body);
}

TEST(ResultRing, AManagerTakesOnlyAFreshRing) {
  ResultRing ring(kCapacity);
  const RingOffer offer = ring.offer();
  RingReader first = open_reader(offer);
  std::vector<std::byte> out(4096);
  ASSERT_TRUE(take_into(first, *ring.put(pattern(4096, 1)), out));
  std::string why;
  EXPECT_FALSE(RingReader::open(offer, why)) << "a second reader would start from 0 where the worker does not";
  EXPECT_NE(why.find("not fresh"), std::string::npos) << why;
}

TEST(ResultRing, AResultOutlivesItsWorkersRing) {
  std::optional<ResultRing> ring(std::in_place, kCapacity);
  RingReader reader = open_reader(ring->offer());
  const auto body = pattern(30000, 5);
  const auto at = ring->put(body);
  ASSERT_TRUE(at);
  ring.reset();   // the worker dies: the manager holds the file
  std::vector<std::byte> out(body.size());
  ASSERT_TRUE(take_into(reader, *at, out));
  EXPECT_EQ(out, body);
}

TEST(ResultRing, RefusesBadOffers) {
  ResultRing ring(kCapacity);
  const RingOffer good = ring.offer();
  std::string why;
  EXPECT_FALSE(RingReader::open(RingOffer{}, why));
  EXPECT_NE(why.find("no result ring"), std::string::npos) << why;

  RingOffer other_worker = good;
  other_worker.nonce ^= 2;
  EXPECT_FALSE(RingReader::open(other_worker, why));
  EXPECT_NE(why.find("another worker"), std::string::npos) << why;

  RingOffer wrong_size = good;
  wrong_size.capacity *= 2;
  EXPECT_FALSE(RingReader::open(wrong_size, why));
  EXPECT_NE(why.find("not sealed at its size"), std::string::npos) << why;
  wrong_size.capacity = 1000;
  EXPECT_FALSE(RingReader::open(wrong_size, why));
  EXPECT_NE(why.find("impossible capacity"), std::string::npos) << why;

  // A file of the right size that the worker could still shrink: refused, since the
  // manager's mapping of its header would fault.
  UniqueFd unsealed(memfd_create("test-unsealed", MFD_CLOEXEC));
  ASSERT_EQ(ftruncate(unsealed.get(), 4096 + kCapacity), 0);
  RingOffer unsealed_offer = good;
  unsealed_offer.fd = unsealed.get();
  ASSERT_TRUE(describe_file(unsealed.get(), unsealed_offer.dev, unsealed_offer.ino));
  EXPECT_FALSE(RingReader::open(unsealed_offer, why));
  EXPECT_NE(why.find("not sealed"), std::string::npos) << why;

  RingOffer wrong_file = good;
  wrong_file.ino += 1;
  EXPECT_FALSE(RingReader::open(wrong_file, why));
  EXPECT_NE(why.find("not the offered file"), std::string::npos) << why;

  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  RingOffer fifo = good;
  fifo.fd = read_end.get();
  EXPECT_FALSE(RingReader::open(fifo, why));   // not a regular file: never opened

  RingOffer no_such_fd = good;
  no_such_fd.fd = 100000;
  EXPECT_FALSE(RingReader::open(no_such_fd, why));
  EXPECT_NE(why.find("cannot open"), std::string::npos) << why;

  EXPECT_TRUE(RingReader::open(good, why)) << why;
}

TEST(ResultRing, RefusesAnUnalignedCapacity) {
  EXPECT_THROW(ResultRing(0), calypso::Error);
  EXPECT_THROW(ResultRing(5000), calypso::Error);
}


// A lent result is read where the worker wrote it, and its room stays taken until the
// loan ends: the worker cannot write there meanwhile.
TEST(ResultRing, ALentResultKeepsItsRoomUntilTheLoanEnds) {
  ResultRing ring(kCapacity);
  RingReader reader = open_reader(ring.offer());
  const auto a_body = pattern(40 << 10, 1);
  const auto a = ring.put(a_body);
  ASSERT_TRUE(a);
  std::optional<RingReader::Loan> loan = reader.borrow(*a, a_body.size());
  ASSERT_TRUE(loan);
  EXPECT_TRUE(std::equal(loan->bytes().begin(), loan->bytes().end(), a_body.begin(), a_body.end()));
  EXPECT_FALSE(ring.put(pattern(30 << 10, 2))) << "a's room is lent";
  EXPECT_FALSE(reader.borrow(*a, a_body.size())) << "taken once only";
  EXPECT_FALSE(reader.skip(*a, a_body.size())) << "taken once only";
  RingReader::Loan moved = std::move(*loan);   // a moved-from loan frees nothing
  loan.reset();
  EXPECT_FALSE(ring.put(pattern(30 << 10, 2))) << "still lent after the move";
  EXPECT_EQ(moved.bytes().size(), a_body.size());
  moved = RingReader::Loan(std::move(moved));
  { RingReader::Loan gone = std::move(moved); }
  EXPECT_TRUE(ring.put(pattern(30 << 10, 2))) << "the loan ended: the room is free";
}

// Loans that end out of order free the ring in order: room is freed only up to the
// oldest result still lent (the worker's one `consumed` position).
TEST(ResultRing, LoansEndingOutOfOrderFreeRoomInOrder) {
  ResultRing ring(kCapacity);
  RingReader reader = open_reader(ring.offer());
  const auto a = ring.put(pattern(20 << 10, 1));
  const auto b = ring.put(pattern(20 << 10, 2));
  const auto c = ring.put(pattern(16 << 10, 3));
  ASSERT_TRUE(a && b && c);
  auto la = reader.borrow(*a, 20 << 10);
  auto lb = reader.borrow(*b, 20 << 10);
  ASSERT_TRUE(la && lb);
  ASSERT_TRUE(reader.skip(*c, 16 << 10)) << "unwanted: freed once a and b are";
  lb.reset();
  EXPECT_FALSE(ring.put(pattern(12 << 10, 4))) << "a, the oldest, is still lent";
  la.reset();
  const auto d = ring.put(pattern(40 << 10, 4));
  ASSERT_TRUE(d) << "a, b and c freed together";
  EXPECT_EQ(*d % kCapacity, 0u);
}

// A result that would overlap one already taken is refused, lent or not.
TEST(ResultRing, APositionBehindTheLastTakenResultIsRefused) {
  ResultRing ring(kCapacity);
  RingReader reader = open_reader(ring.offer());
  const auto a = ring.put(pattern(20 << 10, 1));
  ASSERT_TRUE(a);
  auto la = reader.borrow(*a, 20 << 10);
  ASSERT_TRUE(la);
  EXPECT_FALSE(reader.borrow(*a + 4096, 4096)) << "inside a";
  EXPECT_FALSE(reader.skip(*a + 4096, 4096)) << "inside a";
}

// The worker dies and the manager gives it up (the reader goes) while a result of it
// waits for collation: the loan still reads it, and ends without the reader.
TEST(ResultRing, ALoanOutlivesItsReaderAndItsWorker) {
  std::optional<ResultRing> ring(std::in_place, kCapacity);
  std::optional<RingReader> reader(open_reader(ring->offer()));
  const auto body = pattern(30000, 7);
  const auto at = ring->put(body);
  ASSERT_TRUE(at);
  auto loan = reader->borrow(*at, body.size());
  ASSERT_TRUE(loan);
  ring.reset();
  reader.reset();
  EXPECT_TRUE(std::equal(loan->bytes().begin(), loan->bytes().end(), body.begin(), body.end()));
  loan.reset();
}

}  // namespace
}  // namespace calypso::sched
