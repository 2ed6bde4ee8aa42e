// Messages between two processes on one host through shared memory: a ring per
// direction in a memfd that both map, and a pipe per direction to wake a receiver that
// sleeps. Endpoint::attach_local puts one in place of the provider for one peer.
//
// Why: on one host tcp;ofi_rxm carries each small message through the loopback TCP
// stack, and a run of Jacobi sends ~10 000 of them (assignments, result notices, read
// sets); libfabric's shm provider would be faster, but a process killed inside its
// spinlock leaves every other one spinning (README: known limitation). These rings have
// no lock at all: each has one producer and one consumer, a message becomes visible
// only when its producer publishes the new tail, so a producer killed halfway leaves
// nothing behind, and a dead consumer only lets its ring fill up (the sender's patience
// runs out, as on a dead connection).
//
// The file: a header page (a zero word, the nonce at kNonceOffset as mapping.hpp's
// map_own_file writes it, the capacity, then for each direction the producer's tail, the
// consumer's head and the consumer's "sleeping" flag, each on its own cache lines),
// then `capacity` bytes for the creator's messages and as many for the opener's. A
// message is a u64 length, then its bytes padded to 8; one that does not fit before the
// end of the ring follows a wrap marker at the ring's start. Positions only grow.
//
// Wake-ups cost a system call only when the receiver sleeps: before it sleeps it sets
// its flag and looks at the ring once more; a sender that publishes a message and then
// finds the flag set writes a byte into the receiver's pipe (both sides put a full
// fence between their store and their load, so one of them sees the other's).
//
// A receiver copies each message out before handing it on, and checks every length
// against the ring and the largest message: a producer that writes garbage gets
// `corrupt`, never a read outside the ring.
#pragma once

#include "net/endpoint.hpp"
#include "mapping.hpp"
#include "unique_fd.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace calypso::net {

class LocalChannel {
 public:
  // What the opener needs besides the creator's pid: the creator's descriptors of the
  // file and of the pipe ends the opener opens, the nonce and the capacity of each ring.
  struct Description {
    int file_fd = -1, creator_bell_fd = -1, opener_bell_fd = -1;
    std::uint64_t nonce = 0;
    std::uint64_t capacity = 0;
  };

  // The creator's side: a fresh file and pipes, and two rings with room for 8 of the
  // largest messages each (with framing, rounded up to pages; any message fits an empty
  // ring). Throws net::Error.
  static LocalChannel create(std::size_t max_message);
  Description describe() const;
  // The opener's side, from descriptors it opened itself (the file read-write, each pipe
  // so that it never raises SIGPIPE: see sched/peer_file.hpp). Empty, with the reason in
  // `why`, if the file is not the described channel (nonce, capacity, size).
  static std::optional<LocalChannel> open(UniqueFd file, UniqueFd own_bell, UniqueFd peer_bell,
                                          const Description& d, std::size_t max_message, std::string& why);

  LocalChannel(LocalChannel&&) noexcept = default;
  LocalChannel& operator=(LocalChannel&&) noexcept = default;

  // Copies the message (gathered parts, at most max_message bytes) into the outgoing
  // ring, waiting until `deadline` for room (naps, no spinning); `again` if none came.
  SendStatus send(std::span<const std::span<const std::byte>> parts, std::size_t len,
                  std::chrono::steady_clock::time_point deadline) noexcept;

  enum class Received : std::uint8_t { none, message, corrupt };
  // The next incoming message, copied into `out` (resized to it).
  Received receive(std::vector<std::byte>& out) noexcept;

  // The fd that becomes readable when the peer wakes us (for an epoll set).
  int bell_fd() const noexcept { return own_bell_.get(); }
  // Before sleeping on bell_fd(): says we sleep, then whether a message came meanwhile
  // (then do not sleep). awake() says we look at the ring again, and empties the pipe.
  bool sleep_unless_pending() noexcept;
  void awake() noexcept;

 private:
  LocalChannel(UniqueFd file, UniqueFd own_bell, UniqueFd peer_bell, std::size_t capacity, std::size_t max_message,
               bool creator);
  std::atomic<std::uint64_t>& word(std::size_t offset) const noexcept;
  std::byte* data(int direction) const noexcept;

  UniqueFd file_;
  UniqueFd own_bell_;     // read end of the pipe that wakes this side
  UniqueFd peer_bell_;    // write end of the pipe that wakes the peer
  // The creator's: the pipe ends the opener opens (the creator's write end, the opener's
  // read end; holding the latter, our writes never raise SIGPIPE).
  UniqueFd creator_bell_write_, opener_bell_read_;
  Mapping map_;           // the whole file
  std::size_t capacity_ = 0;
  std::size_t max_message_ = 0;
  int out_ = 0;   // direction this side produces: 0 creator -> opener, 1 opener -> creator
  std::uint64_t nonce_ = 0;   // the creator's (describe)
  std::uint64_t tail_ = 0;   // ours, of the outgoing ring
  std::uint64_t head_ = 0;   // ours, of the incoming ring
  bool asleep_ = false;      // our flag is set (sleep_unless_pending, until awake)
};

}  // namespace calypso::net
