// Messages cut into provider-inject-sized fragments, and put back together.
//
// Why: libfabric 1.17's shm provider completes a sender's large (rendezvous/CMA) sends
// in order, and a send to a peer that has died never completes. One dead worker with a
// large message in flight would then block every later large send of the manager, to
// every worker. Injected sends (<= inject_size, 4 KiB on shm) complete as soon as the
// provider has copied them, whatever the receiver does. So on shm every message
// travels as injected fragments, each with a FragmentHeader, and the receiver
// reassembles them by offset (providers may reorder; see docs/PROTOCOL.md).
//
// Pure logic, no libfabric: the endpoint calls it; unit-tested on its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace calypso::net {

struct FragmentHeader {
  std::uint64_t stream;   // random per sending endpoint: tells senders apart
  std::uint32_t seq;      // message number within the stream
  std::uint32_t offset;   // of this fragment's bytes within the message
  std::uint32_t total;    // message size
  std::uint32_t magic;    // kFragmentMagic: catches a peer that does not fragment
};
static_assert(sizeof(FragmentHeader) == 24);
inline constexpr std::uint32_t kFragmentMagic = 0x46524147;   // "FRAG"

// Copies bytes [offset, offset + n) of the concatenation of parts to dst.
void copy_range(std::span<const std::span<const std::byte>> parts, std::size_t offset,
                std::size_t n, std::byte* dst) noexcept;

class Reassembler {
 public:
  // max_message: larger totals are refused. max_pending: messages kept half-assembled
  // at once; beyond it the oldest is dropped (its sender has most likely died).
  Reassembler(std::size_t max_message, std::size_t max_pending)
      : max_message_(max_message), max_pending_(max_pending) {}

  enum class Verdict : std::uint8_t { complete, partial, malformed };
  struct Outcome {
    Verdict verdict;
    std::span<const std::byte> message;   // for complete: valid until the next add()
    const char* why = nullptr;            // for malformed
  };

  // One received fragment (header included), from `source` (the sender the provider
  // named, or any one value where it names none): fragments of one message from two
  // sources are two messages, so a peer cannot complete or spoil another's. A
  // single-fragment message is returned in place, without a copy.
  Outcome add(std::span<const std::byte> fragment, std::uint64_t source = 0);

  std::size_t pending() const { return partial_.size(); }
  std::size_t dropped() const { return dropped_; }

 private:
  struct Partial {
    std::vector<std::byte> bytes;
    std::size_t received = 0;
  };
  struct Key {   // source, stream, seq
    std::uint64_t source, stream;
    std::uint32_t seq;
    auto operator<=>(const Key&) const = default;
  };

  std::size_t max_message_;
  std::size_t max_pending_;
  std::size_t dropped_ = 0;
  std::map<Key, Partial> partial_;
  std::deque<Key> arrival_;          // oldest first, for dropping
  std::vector<std::byte> done_;      // the last completed message (see add)
};

}  // namespace calypso::net
