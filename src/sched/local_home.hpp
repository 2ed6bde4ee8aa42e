// Page reads on the manager's host without the network: a worker that runs on the same
// host as the manager opens the manager's home memory (the region's memfd) read-only and
// copies pages from it with pread, and maps its control word; neither libfabric nor the
// manager's CPU takes part, which on a host with as many processes as cores is what the
// workers lack (a tcp page fetch needs the manager's progress). pread rather than a
// mapping: home memory changes at every step's collation, while a late attempt of the
// closed step may still read its pages. Frozen pages (Manager::freeze) never change, and
// those the page cache maps from region_fd() instead (PageCache::share_home).
//
// The snapshot rule is the RMA reads' (docs/PROTOCOL.md): copy the pages, then read the
// control word; they were the open step's snapshot if it still holds that step's id,
// because the manager stores 0 in it before collation changes home memory and the next
// step's id only once home memory is that step's snapshot. As in a seqlock, fences keep
// the orders: the manager's stores on either side of its word, the worker's copy before
// its read of the word.
//
// The worker opens the manager's descriptors through /proc/PID/fd/N (peer_file.hpp). It
// maps the control page first and checks a random nonce the manager put there and sent
// in the offer, then checks the region file's device and inode, so that a recycled pid,
// another pid namespace or another host of the same name cannot hand it a wrong file;
// if anything fails it reads through the network.
#pragma once

#include "sched/peer_file.hpp"
#include "sched/protocol.hpp"
#include "unique_fd.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace calypso::sched {

// The manager's control word: the open step's id, 0 between steps, in a memfd page of
// its own so that local workers can map it (and RMA readers read it). The page also
// holds the nonce that proves a local worker opened this very file.
class ControlWord {
 public:
  ControlWord();   // throws calypso::Error
  ControlWord(ControlWord&&) = delete;
  // Seqlock writer: earlier stores to home memory are visible before `open_step`, and
  // later ones after it (the fence: a store's release orders only what came before).
  void set(StepId open_step) noexcept {
    word()->store(open_step, std::memory_order_release);
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  void* address() const noexcept { return map_.get(); }
  static constexpr std::size_t kBytes = 64;   // what RMA readers may read (not the nonce)
  int fd() const noexcept { return fd_.get(); }
  std::uint64_t nonce() const noexcept { return nonce_; }

 private:
  std::atomic<std::uint64_t>* word() const noexcept { return static_cast<std::atomic<std::uint64_t>*>(map_.get()); }
  UniqueFd fd_;
  Mapping map_;
  std::uint64_t nonce_ = 0;
};

// For a worker on this host: region_fd is the manager's region memfd. All zero if the
// files cannot be described (the worker then reads through the network).
LocalOffer make_local_offer(int region_fd, const ControlWord& control);

// The worker's read-only access to the manager's home memory and control word.
class LocalHome {
 public:
  // nullopt, with the reason in `why`, if the manager's files cannot be opened or are
  // not the ones offered.
  static std::optional<LocalHome> open(const LocalOffer& offer, std::size_t region_size, std::string& why);

  // Copies dst.size() bytes of home memory at `offset` into dst; false if out of the
  // region or the read fails. Async-signal-safe (the fault handler calls it).
  bool read(std::size_t offset, std::span<std::byte> dst) const noexcept;
  // The manager's region memfd (read-only), for mapping frozen pages (PageCache::share_home).
  int region_fd() const noexcept { return region_.get(); }
  // The control word, read after the pages: seqlock reader (the fence keeps the copies
  // before the load).
  StepId open_step() const noexcept {
    std::atomic_thread_fence(std::memory_order_acquire);
    return static_cast<const std::atomic<std::uint64_t>*>(control_.get())->load(std::memory_order_relaxed);
  }

 private:
  LocalHome(UniqueFd region, std::size_t size, Mapping control);
  UniqueFd region_;
  std::size_t size_;
  Mapping control_;
};

}  // namespace calypso::sched
