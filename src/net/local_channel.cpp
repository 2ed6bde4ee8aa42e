// See local_channel.hpp.
#include "net/local_channel.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#include <utility>

namespace calypso::net {
namespace {

constexpr std::size_t kHeader = 4096;
constexpr std::size_t kCapacityAt = 128;
// Per direction d: tail, head and the consumer's flag, 128 bytes apart (a cache line and
// its neighbour, which the hardware may fetch with it).
constexpr std::size_t direction_base(int d) { return 512 + static_cast<std::size_t>(d) * 512; }
constexpr std::size_t kTail = 0, kHead = 128, kSleeping = 256;
constexpr std::uint64_t kWrap = ~std::uint64_t{0};
constexpr std::size_t kFrame = sizeof(std::uint64_t);
constexpr std::chrono::microseconds kFirstNap{20}, kLongestNap{1000};

std::size_t padded(std::size_t n) { return (n + 7) & ~std::size_t{7}; }

// Room for kMessagesInRing of the largest messages: the manager may queue several
// assignments that carry pushed pages to a busy worker, and a full ring makes its
// single event loop wait (as exhausted send buffers would). Pages are allocated as the
// ring first reaches them.
constexpr std::size_t kMessagesInRing = 8;
std::size_t capacity_for(std::size_t max_message) {
  const std::size_t page = 4096;
  return (kMessagesInRing * (padded(max_message) + kFrame) + page - 1) / page * page;
}

static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "the positions are shared with another process: plain loads and stores");

// Both ends non-blocking: a full pipe means a wake-up is pending anyway.
void make_pipe(UniqueFd& read_end, UniqueFd& write_end) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) throw Error("calypso net: " + sys_error("pipe2 for a local channel"));
  read_end = UniqueFd(fds[0]);
  write_end = UniqueFd(fds[1]);
}

}  // namespace

LocalChannel::LocalChannel(UniqueFd file, UniqueFd own_bell, UniqueFd peer_bell, std::size_t capacity,
                           std::size_t max_message, bool creator)
    : file_(std::move(file)),
      own_bell_(std::move(own_bell)),
      peer_bell_(std::move(peer_bell)),
      capacity_(capacity),
      max_message_(max_message),
      out_(creator ? 0 : 1) {}

LocalChannel LocalChannel::create(std::size_t max_message) {
  const std::size_t capacity = capacity_for(max_message);
  UniqueFd file(memfd_create("calypso-messages", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (file.get() < 0) throw Error("calypso net: " + sys_error("memfd_create for a local channel"));
  if (ftruncate(file.get(), static_cast<off_t>(kHeader + 2 * capacity)) != 0) {
    throw Error("calypso net: " + sys_error("ftruncate of a local channel"));
  }
  // The opener maps the whole file: a shrunk file would fault it.
  if (fcntl(file.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    throw Error("calypso net: " + sys_error("sealing a local channel"));
  }
  UniqueFd creator_read, creator_write, opener_read, opener_write;
  make_pipe(creator_read, creator_write);   // wakes the creator
  make_pipe(opener_read, opener_write);     // wakes the opener
  LocalChannel c(std::move(file), std::move(creator_read), std::move(opener_write), capacity, max_message, true);
  c.creator_bell_write_ = std::move(creator_write);
  c.opener_bell_read_ = std::move(opener_read);
  c.map_ = map_own_file(c.file_.get(), kHeader + 2 * capacity, "a local channel", c.nonce_);
  const std::uint64_t cap = capacity;
  std::memcpy(static_cast<std::byte*>(c.map_.get()) + kCapacityAt, &cap, sizeof cap);
  return c;
}

LocalChannel::Description LocalChannel::describe() const {
  return Description{file_.get(), creator_bell_write_.get(), opener_bell_read_.get(), nonce_, capacity_};
}

std::optional<LocalChannel> LocalChannel::open(UniqueFd file, UniqueFd own_bell, UniqueFd peer_bell,
                                               const Description& d, std::size_t max_message,
                                               std::string& why) {
  if (d.nonce == 0) {   // never a channel's: 0 means no offer
    why = "the local channel's offer has no nonce";
    return std::nullopt;
  }
  if (d.capacity != capacity_for(max_message)) {
    why = "the local channel's rings are sized for another largest message";
    return std::nullopt;
  }
  struct stat st{};
  if (fstat(file.get(), &st) != 0 || static_cast<std::uint64_t>(st.st_size) != kHeader + 2 * d.capacity) {
    why = "the local channel's file has the wrong size";
    return std::nullopt;
  }
  const int seals = fcntl(file.get(), F_GET_SEALS);
  if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW)) {
    why = "the local channel's file is not sealed at its size";
    return std::nullopt;
  }
  constexpr const char* kAnother = "the local channel's file is another one (nonce or capacity differ)";
  auto map = map_peer_file(file.get(), kHeader + 2 * d.capacity, true, d.nonce, "a local channel", kAnother, why);
  if (!map) return std::nullopt;
  std::uint64_t cap = 0;
  std::memcpy(&cap, static_cast<const std::byte*>(map->get()) + kCapacityAt, sizeof cap);
  if (cap != d.capacity) {
    why = kAnother;
    return std::nullopt;
  }
  LocalChannel c(std::move(file), std::move(own_bell), std::move(peer_bell), d.capacity, max_message, false);
  c.map_ = std::move(*map);
  return c;
}

std::atomic<std::uint64_t>& LocalChannel::word(std::size_t offset) const noexcept {
  // A u64 in shared memory, 8-byte aligned; lock-free atomics on it are plain loads and
  // stores, which is what the other process does too.
  return *reinterpret_cast<std::atomic<std::uint64_t>*>(static_cast<std::byte*>(map_.get()) + offset);
}

std::byte* LocalChannel::data(int direction) const noexcept {
  return static_cast<std::byte*>(map_.get()) + kHeader + static_cast<std::size_t>(direction) * capacity_;
}

SendStatus LocalChannel::send(std::span<const std::span<const std::byte>> parts, std::size_t len,
                              std::chrono::steady_clock::time_point deadline) noexcept {
  const std::size_t base = direction_base(out_);
  const std::size_t at = tail_ % capacity_;
  const std::size_t need = kFrame + padded(len);
  const bool wrap = capacity_ - at < need;
  const std::size_t total = wrap ? capacity_ - at + need : need;
  for (auto nap = kFirstNap;; nap = std::min(2 * nap, kLongestNap)) {
    const std::uint64_t head = word(base + kHead).load(std::memory_order_acquire);
    // A consumer whose head is past our tail, or a ring behind it, is broken: gone.
    if (head > tail_ || tail_ - head > capacity_) return SendStatus::peer_failed;
    if (capacity_ - (tail_ - head) >= total) break;
    if (std::chrono::steady_clock::now() >= deadline) return SendStatus::again;
    std::this_thread::sleep_for(nap);
  }
  std::byte* ring = data(out_);
  std::size_t pos = at;
  if (wrap) {
    std::memcpy(ring + pos, &kWrap, kFrame);
    pos = 0;
  }
  const std::uint64_t length = len;
  std::memcpy(ring + pos, &length, kFrame);
  std::byte* dst = ring + pos + kFrame;
  for (auto p : parts) dst = std::copy(p.begin(), p.end(), dst);
  tail_ += total;
  word(base + kTail).store(tail_, std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_seq_cst);   // against the consumer's flag
  if (word(base + kSleeping).load(std::memory_order_relaxed) != 0) {
    const char one = 1;
    [[maybe_unused]] auto r = write(peer_bell_.get(), &one, 1);   // EAGAIN: one is pending
  }
  return SendStatus::ok;
}

LocalChannel::Received LocalChannel::receive(std::vector<std::byte>& out) noexcept {
  const std::size_t base = direction_base(1 - out_);
  for (;;) {
    const std::uint64_t tail = word(base + kTail).load(std::memory_order_acquire);
    if (tail == head_) return Received::none;
    if (tail < head_ || tail - head_ > capacity_) return Received::corrupt;
    const std::size_t at = head_ % capacity_;
    const std::size_t contiguous = capacity_ - at;
    const std::uint64_t available = tail - head_;
    if (available < kFrame) return Received::corrupt;
    std::uint64_t length = 0;
    std::memcpy(&length, data(1 - out_) + at, kFrame);
    if (length == kWrap) {
      if (available < contiguous + kFrame) return Received::corrupt;
      head_ += contiguous;
      continue;
    }
    if (length > max_message_ || kFrame + padded(length) > std::min<std::uint64_t>(contiguous, available)) {
      return Received::corrupt;
    }
    try {
      out.resize(length);
    } catch (...) {
      return Received::corrupt;   // cannot happen below max_message; never throw from here
    }
    std::memcpy(out.data(), data(1 - out_) + at + kFrame, length);
    head_ += kFrame + padded(length);
    word(base + kHead).store(head_, std::memory_order_release);   // after the copy: room for the producer
    return Received::message;
  }
}

bool LocalChannel::sleep_unless_pending() noexcept {
  const std::size_t base = direction_base(1 - out_);
  word(base + kSleeping).store(1, std::memory_order_relaxed);
  asleep_ = true;
  std::atomic_thread_fence(std::memory_order_seq_cst);   // against the producer's tail
  return word(base + kTail).load(std::memory_order_acquire) != head_;
}

// Only after sleep_unless_pending: senders write into the pipe only while the flag is
// set, so a channel that never slept has nothing to drain (and no read(2) per poll).
void LocalChannel::awake() noexcept {
  if (!std::exchange(asleep_, false)) return;
  word(direction_base(1 - out_) + kSleeping).store(0, std::memory_order_relaxed);
  char buf[64];
  while (read(own_bell_.get(), buf, sizeof buf) > 0) {
  }
}

}  // namespace calypso::net
