// Results through shared memory on the manager's host. A worker on the manager's host
// writes each large result into a ring in a memfd of its own, and sends the manager only
// where it is (a result_chunk flagged kResultInRing); the manager, which opened and
// mapped the ring's file when the worker joined, reads the result there, and frees its
// room when it is done with it.
// Why: with as many processes as cores, the manager's CPU time per result byte is taken
// from a worker. Through tcp a result is copied into the socket, out of it into the
// provider's receive buffer, and into the result buffer, by system calls and the
// provider's progress in the manager's event loop; through the ring it is written once
// and read where it lies (Jacobi: 1 GB of results per run; 2.73 -> 2.16 s on tcp, README).
//
// The ring: a header page (the manager's `consumed` position, then a random nonce),
// then `capacity` bytes. Positions count bytes from the start and only grow; a result
// never wraps (the writer skips the ring's tail instead). The worker writes a result
// only where the manager has consumed what was there (an acquire load of `consumed`),
// and else sends it in messages: a full ring never waits. The manager stores a result's
// end in `consumed` once it is done with it and with every result before it (release:
// its reads are done before the worker may write there again). The message that names
// a position is sent after the result is written, so the manager's reads see it.
//
// The manager opens /proc/PID/fd/N (peer_file.hpp) and checks the file's device and
// inode, the nonce, and the seals the worker put on the file's size (a shrunk file
// would fault the manager's mappings). If anything fails, the worker's results come in
// messages. A worker that dies leaves its ring readable: the manager's mappings hold the
// file until it gives the worker up and no result lent from the ring is left.
#pragma once

#include "sched/peer_file.hpp"
#include "sched/protocol.hpp"
#include "unique_fd.hpp"

#include <atomic>
#include <deque>
#include <memory>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace calypso::sched {

// The worker's side: the producer.
class ResultRing {
 public:
  explicit ResultRing(std::size_t capacity);   // throws calypso::Error
  ResultRing(ResultRing&&) = delete;
  RingOffer offer() const;
  // Copies body into the ring and returns its position, or nullopt if the manager has
  // not consumed enough of the earlier results to make room (a result that does not fit
  // before the ring's end starts at its beginning, so one of more than half the ring may
  // need it all free), or body exceeds the ring.
  std::optional<std::uint64_t> put(std::span<const std::byte> body) noexcept;
  // The same in two halves, so that a result is written in place instead of copied in
  // (PageCache::finish_segment into room): reserve(max) is room for a result of at most
  // max bytes where put would take one that long, or empty; commit(n) makes the first n
  // bytes written there the next result and returns its position, or nullopt (nothing
  // done) without a room to commit or for n outside 1..max. Until commit, the room is
  // not a result: another reserve or put may take it.
  std::span<std::byte> reserve(std::size_t max) noexcept;
  std::optional<std::uint64_t> commit(std::size_t n) noexcept;
  // The result committed at position (bytes long), if the worker has not written over
  // it since: the manager may have consumed it, but it never writes the ring's data (it
  // writes only the header). A worker replays its own
  // accepted diffs from there (WorkerLoop::apply_notices), trusting them as it trusts
  // the manager's pushed pages.
  std::optional<std::span<const std::byte>> written(std::uint64_t position, std::uint64_t bytes) const noexcept;
  std::size_t capacity() const noexcept { return capacity_; }
  // Allocates the ring's memory now (populate_write) rather than page by page as results
  // first reach it: that first lap costs a page fault and a zero fill per 4 KiB inside
  // the segments it finishes (matmul 1024, 1 worker, whose 9 MB of results never lap
  // the ring: 9-10 ms of its 0.31 s finishing diffs, 2-3 ms after). Returns 0 or errno;
  // the ring works either way.
  int populate() noexcept;

 private:
  std::byte* data() const noexcept;
  UniqueFd fd_;
  Mapping map_;
  std::size_t capacity_;
  std::uint64_t nonce_ = 0;
  std::uint64_t produced_ = 0;   // end of the last result written
  std::optional<std::uint64_t> reserved_;   // start of the room reserve() gave, until commit
  std::size_t reserved_bytes_ = 0;
  std::uint64_t touched_ = 0;    // end of all room ever given out: written or maybe
};

// The manager's side: the consumer. It reads each result where the worker wrote it,
// through a read-only mapping of the ring, instead of copying it out (pread): Jacobi's
// 5 MB of results a step cost the manager ~5% of both cores' time in that copy alone.
// A result it keeps stays lent (RingReader::Loan) until its step ends (collated or
// failed), and its room stays taken until then: the worker writes only where the
// manager has consumed. A worker's results of one step therefore all stay in its ring
// until the step ends (jacobi: ~2.7 MB a worker a step); when the ring is full, results
// go in messages.
//
// Trust: an honest worker never writes lent room, but nothing stops a buggy one from
// writing over a result after the manager checked it. So the manager collates with
// every entry and run header read once and checked before use (collation.hpp): such a
// worker can change the values applied to the pages its result listed, as one that
// computed wrong values could, and nothing else. A worker the manager gives up has its
// lent results copied out first (ManagerLoop::lose).
class RingReader {
  struct Shared;

 public:
  // nullopt, with the reason in `why`, if the offered file cannot be opened, mapped, or
  // is not the offered ring.
  static std::optional<RingReader> open(const RingOffer& offer, std::string& why);

  // The result at `position`, `bytes` long, where the worker wrote it; nullopt (nothing
  // taken) if it is not where the worker may have written it (see fits). Its room is
  // freed when the loan ends. Results must be taken (borrowed or skipped) in the order
  // the worker wrote them: the worker names each in a small message sent alone, and
  // those arrive in the order sent (one connection, or one shm queue; ofi_rxm can
  // deliver a large message after a later small one).
  class Loan;
  std::optional<Loan> borrow(std::uint64_t position, std::uint64_t bytes) noexcept;
  // Frees the room of a result that is not wanted (its step is over, or another run's
  // result came first) once the results before it are freed; false (nothing taken) as
  // for borrow.
  bool skip(std::uint64_t position, std::uint64_t bytes) noexcept;
  std::size_t capacity() const noexcept;

 private:
  explicit RingReader(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}
  // Whether bytes at position can be a result the worker wrote: not empty, within the
  // ring and not across its end, after every result taken before, and within the room
  // the worker could have seen free.
  bool fits(std::uint64_t position, std::uint64_t bytes) const noexcept;
  // Shared with the loans: they keep the mappings (and so the file) alive after the
  // reader is gone (a worker given up while its kept results wait for collation).
  std::shared_ptr<Shared> shared_;
};

// A result lent out of a worker's ring: readable until the loan ends, which frees its
// room once the results before it are free too.
class RingReader::Loan {
 public:
  Loan(Loan&& o) noexcept;
  Loan& operator=(Loan&& o) noexcept;
  ~Loan();
  std::span<const std::byte> bytes() const noexcept { return bytes_; }

 private:
  friend class RingReader;
  Loan(std::shared_ptr<Shared> shared, std::uint64_t position, std::span<const std::byte> bytes) noexcept;
  void end() noexcept;
  std::shared_ptr<Shared> shared_;
  std::uint64_t position_ = 0;
  std::span<const std::byte> bytes_;
};

}  // namespace calypso::sched
