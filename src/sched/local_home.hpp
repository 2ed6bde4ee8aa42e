// Page reads on the manager's host without the network: a worker that runs on the same
// host as the manager opens the manager's home memory (the region's memfd) read-only and
// copies pages from it with pread, and maps its control word; neither libfabric nor the
// manager's CPU takes part. (pread rather than a mapping: mapped pages would count in
// the worker's resident memory as well as the manager's.) On a 2-core host the manager's share of the CPUs is what the workers
// lack, and a tcp page fetch needs the manager's progress.
//
// The snapshot rule is the RMA reads' (docs/PROTOCOL.md): copy the pages, then read
// the control word; they were the open step's snapshot if it still holds that step's
// id, because the manager clears it before collation changes home memory, and sets it
// only once home memory is the new step's snapshot.
//
// The worker opens the manager's descriptors through /proc/PID/fd/N: same host, same
// user (ptrace read access, which Yama's ptrace_scope does not restrict), and checks
// each file's device and inode against the offer, so that a recycled pid or another pid
// namespace cannot hand it a wrong file; if anything fails it reads through the network.
#pragma once

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
// its own so that local workers can map it (and RMA readers read it).
class ControlWord {
 public:
  ControlWord();   // throws calypso::Error
  ControlWord(ControlWord&&) = delete;
  ~ControlWord();
  void set(StepId open_step) noexcept { word_->store(open_step, std::memory_order_seq_cst); }
  void* address() const noexcept { return word_; }
  static constexpr std::size_t kBytes = 64;   // what RMA readers may read
  int fd() const noexcept { return fd_.get(); }

 private:
  UniqueFd fd_;
  std::atomic<std::uint64_t>* word_ = nullptr;
};

// For a worker on this host: region_fd is the manager's region memfd.
LocalOffer make_local_offer(int region_fd, const ControlWord& control);

// The worker's read-only access to the manager's home memory and control word.
class LocalHome {
 public:
  // nullopt, with the reason in `why`, if the manager's files cannot be opened or are
  // not the ones offered.
  static std::optional<LocalHome> open(const LocalOffer& offer, std::size_t region_size, std::string& why);
  LocalHome(LocalHome&&) noexcept;
  LocalHome& operator=(LocalHome&&) = delete;
  ~LocalHome();

  // Copies dst.size() bytes of home memory at `offset` into dst; false if out of the
  // region or the read fails. Async-signal-safe (the fault handler calls it).
  bool read(std::size_t offset, std::span<std::byte> dst) const noexcept;
  // The control word, read after the pages (acquire: the page copies come first).
  StepId open_step() const noexcept { return control_->load(std::memory_order_acquire); }

 private:
  LocalHome(UniqueFd region, std::size_t size, const std::atomic<std::uint64_t>* control);
  UniqueFd region_;
  std::size_t size_;
  const std::atomic<std::uint64_t>* control_;
};

}  // namespace calypso::sched
