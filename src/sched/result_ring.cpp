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
#include <new>
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

// What the reader and its loans share: the mappings, and which taken results are still
// lent (oldest first), so that `consumed` moves only past results nobody reads.
struct RingReader::Shared {
  Mapping header;   // read-write: the consumed word
  Mapping data;     // read-only: the ring's bytes
  std::size_t capacity = 0;
  std::uint64_t consumed = 0;   // as published to the worker
  std::uint64_t taken = 0;      // end of the last result borrowed or skipped
  struct Taken {
    std::uint64_t position, end;
    bool done;
  };
  std::deque<Taken> out;

  // Records a result taken at position, lent (done false) or skipped; false (nothing
  // recorded) without the memory to.
  bool take(std::uint64_t position, std::uint64_t bytes, bool is_done) noexcept {
    try {
      out.push_back({position, position + bytes, is_done});
    } catch (const std::bad_alloc&) {
      return false;
    }
    taken = position + bytes;
    return true;
  }

  void done(std::uint64_t position) noexcept {
    // Positions only grow: out is sorted by them.
    const auto it = std::lower_bound(out.begin(), out.end(), position,
                                     [](const Taken& t, std::uint64_t p) { return t.position < p; });
    if (it != out.end() && it->position == position) it->done = true;
    bool moved = false;
    while (!out.empty() && out.front().done) {
      consumed = out.front().end;
      out.pop_front();
      moved = true;
    }
    // Release: every read of the freed results happens before the worker may write there.
    if (moved) consumed_word(header)->store(consumed, std::memory_order_release);
  }
};

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
  // Sealed at its size first: the mappings below cannot fault past a shrunk file.
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
  // The mappings hold the file from here on: the descriptor closes on return.
  void* at = mmap(nullptr, offer.capacity, PROT_READ, MAP_SHARED, fd.get(), static_cast<off_t>(kHeader));
  if (at == MAP_FAILED) {
    why = sys_error("mmap of the worker's result ring");
    return std::nullopt;
  }
  Mapping data(at, offer.capacity);
  auto shared = std::make_shared<Shared>();
  shared->header = std::move(*header);
  shared->data = std::move(data);
  shared->capacity = offer.capacity;
  return RingReader(std::move(shared));
}

std::size_t RingReader::capacity() const noexcept { return shared_->capacity; }

bool RingReader::fits(std::uint64_t position, std::uint64_t bytes) const noexcept {
  // The worker writes at or after `consumed` as it last saw it, which is at most ours.
  // (Differences, not sums: a hostile position near 2^64 must not wrap.)
  const Shared& s = *shared_;
  return bytes != 0 && bytes <= s.capacity && position % s.capacity <= s.capacity - bytes &&
         position >= s.taken && position - s.consumed <= s.capacity - bytes;
}

std::optional<RingReader::Loan> RingReader::borrow(std::uint64_t position, std::uint64_t bytes) noexcept {
  Shared& s = *shared_;
  if (!fits(position, bytes) || !s.take(position, bytes, false)) return std::nullopt;
  const auto* at = static_cast<const std::byte*>(s.data.get()) + position % s.capacity;
  return Loan(shared_, position, {at, static_cast<std::size_t>(bytes)});
}

bool RingReader::skip(std::uint64_t position, std::uint64_t bytes) noexcept {
  Shared& s = *shared_;
  if (!fits(position, bytes) || !s.take(position, bytes, true)) return false;
  s.done(position);
  return true;
}

RingReader::Loan::Loan(std::shared_ptr<Shared> shared, std::uint64_t position,
                       std::span<const std::byte> bytes) noexcept
    : shared_(std::move(shared)), position_(position), bytes_(bytes) {}

RingReader::Loan::Loan(Loan&& o) noexcept
    : shared_(std::move(o.shared_)), position_(o.position_), bytes_(std::exchange(o.bytes_, {})) {}

RingReader::Loan& RingReader::Loan::operator=(Loan&& o) noexcept {
  if (this != &o) {
    end();
    shared_ = std::move(o.shared_);
    position_ = o.position_;
    bytes_ = std::exchange(o.bytes_, {});
  }
  return *this;
}

RingReader::Loan::~Loan() { end(); }

void RingReader::Loan::end() noexcept {
  if (shared_) shared_->done(position_);
  shared_.reset();
  bytes_ = {};
}

}  // namespace calypso::sched
