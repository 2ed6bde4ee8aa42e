// See result_ring.hpp.
#include "sched/result_ring.hpp"

#include "mapping.hpp"

#include <calypso/error.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

namespace calypso::sched {
namespace {

constexpr std::size_t kHeader = 4096;
constexpr int kSizeSeals = F_SEAL_SHRINK | F_SEAL_GROW;

static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "the consumed word is shared between processes");

std::atomic<std::uint64_t>* consumed_word(const Mapping& header) noexcept {
  return static_cast<std::atomic<std::uint64_t>*>(header.get());
}

}  // namespace

ResultRing::ResultRing(std::size_t capacity)
    : fd_(memfd_create("calypso-results", MFD_CLOEXEC | MFD_ALLOW_SEALING)), capacity_(capacity) {
  if (capacity == 0 || capacity % kHeader != 0) throw Error("calypso: result ring capacity must be a multiple of 4 KiB");
  if (fd_.get() < 0) throw Error("calypso: " + sys_error("memfd_create for the result ring"));
  const std::size_t size = kHeader + capacity;
  if (ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) throw Error("calypso: " + sys_error("ftruncate of the result ring"));
  if (fcntl(fd_.get(), F_ADD_SEALS, kSizeSeals | F_SEAL_SEAL) != 0) throw Error("calypso: " + sys_error("sealing the result ring"));
  map_ = map_own_file(fd_.get(), size, "the result ring", nonce_);
}

int ResultRing::populate() noexcept {
  return populate_write(data(), capacity_);
}

RingOffer ResultRing::offer() const {
  RingOffer o{};
  if (!describe_file(fd_.get(), o.dev, o.ino)) return {};
  o.pid = static_cast<std::uint32_t>(getpid());
  o.fd = fd_.get();
  o.nonce = nonce_;
  o.capacity = capacity_;
  return o;
}

std::byte* ResultRing::data() const noexcept { return static_cast<std::byte*>(map_.get()) + kHeader; }

std::span<std::byte> ResultRing::reserve(std::size_t max) noexcept {
  reserved_.reset();
  if (max == 0 || max > capacity_) return {};
  std::uint64_t start = produced_;
  if (start % capacity_ + max > capacity_) start += capacity_ - start % capacity_;   // never wrap
  const std::uint64_t consumed = consumed_word(map_)->load(std::memory_order_acquire);
  if (start + max - consumed > capacity_) return {};
  reserved_ = start;
  reserved_bytes_ = max;
  touched_ = std::max(touched_, start + max);
  return {data() + start % capacity_, max};
}

std::optional<std::uint64_t> ResultRing::commit(std::size_t n) noexcept {
  if (!reserved_ || n == 0 || n > reserved_bytes_) return std::nullopt;
  const std::uint64_t at = *std::exchange(reserved_, std::nullopt);
  produced_ = at + n;
  return at;
}

std::optional<std::uint64_t> ResultRing::put(std::span<const std::byte> body) noexcept {
  const std::span<std::byte> room = reserve(body.size());
  if (room.empty()) return std::nullopt;
  std::memcpy(room.data(), body.data(), body.size());
  return commit(body.size());
}

std::optional<std::span<const std::byte>> ResultRing::written(std::uint64_t position,
                                                               std::uint64_t bytes) const noexcept {
  // Room at position p is the ring's bytes p % capacity; a later write at q overwrote it
  // when q + capacity reached past p. Positions only grow, so touched_ tells.
  if (bytes == 0 || bytes > capacity_ || position % capacity_ > capacity_ - bytes || position + bytes > produced_ ||
      touched_ > position + capacity_) {
    return std::nullopt;
  }
  return std::span<const std::byte>(data() + position % capacity_, bytes);
}

std::optional<RingReader> RingReader::open(const RingOffer& offer, std::string& why) {
  if (offer.pid == 0 || offer.nonce == 0 || offer.capacity == 0) {
    why = "the worker offered no result ring (CALYPSO_LOCAL_RESULTS=0 there)";
    return std::nullopt;
  }
  if (offer.capacity % kHeader != 0 || offer.capacity > (std::uint64_t{1} << 40)) {
    why = "the worker's result ring has an impossible capacity";
    return std::nullopt;
  }
  UniqueFd fd = open_peer_file(offer.pid, offer.fd, offer.dev, offer.ino, true, why);
  if (fd.get() < 0) return std::nullopt;
  // Sealed at its size first: the mapping below cannot fault past a shrunk file.
  const int seals = fcntl(fd.get(), F_GET_SEALS);
  struct stat st{};
  if (seals < 0 || (seals & kSizeSeals) != kSizeSeals || fstat(fd.get(), &st) != 0 ||
      static_cast<std::uint64_t>(st.st_size) != kHeader + offer.capacity) {
    why = "the worker's result ring is not sealed at its size";
    return std::nullopt;
  }
  auto header = map_peer_file(
      fd.get(), kHeader, true, offer.nonce, "the worker's result ring",
      "the result ring found is another worker's (same host name, pid and descriptor elsewhere?)", why);
  if (!header) return std::nullopt;
  if (consumed_word(*header)->load(std::memory_order_relaxed) != 0) {   // the worker writes from 0
    why = "the worker's result ring is not fresh";
    return std::nullopt;
  }
  return RingReader(std::move(fd), std::move(*header), offer.capacity);
}

RingReader::RingReader(UniqueFd fd, Mapping header, std::size_t capacity)
    : fd_(std::move(fd)), header_(std::move(header)), capacity_(capacity) {}

bool RingReader::fits(std::uint64_t position, std::uint64_t bytes) const noexcept {
  // The worker writes at or after `consumed` as it last saw it, which is at most ours.
  // (Differences, not sums: a hostile position near 2^64 must not wrap.)
  return bytes != 0 && bytes <= capacity_ && position % capacity_ <= capacity_ - bytes &&
         position >= consumed_ && position - consumed_ <= capacity_ - bytes;
}

void RingReader::consume(std::uint64_t end) noexcept {
  consumed_ = end;
  consumed_word(header_)->store(consumed_, std::memory_order_release);   // after the copy
}

bool RingReader::take(std::uint64_t position, std::span<std::byte> dst) noexcept {
  const std::uint64_t n = dst.size();
  if (!fits(position, n)) return false;
  const off_t at = static_cast<off_t>(kHeader + position % capacity_);
  for (std::size_t done = 0; done < n;) {
    const ssize_t r = pread(fd_.get(), dst.data() + done, n - done, at + static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    done += static_cast<std::size_t>(r);
  }
  consume(position + n);
  return true;
}

bool RingReader::skip(std::uint64_t position, std::uint64_t bytes) noexcept {
  if (!fits(position, bytes)) return false;
  consume(position + bytes);
  return true;
}

}  // namespace calypso::sched
