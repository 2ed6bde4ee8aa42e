// Move-only owner of a memory mapping (mmap), unmapped when destroyed; and the shared
// files that two processes of one host map (the manager's control word, a worker's
// result ring, a local message channel).
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace calypso {

class Mapping {
 public:
  Mapping() = default;
  Mapping(void* address, std::size_t size) noexcept : address_(address), size_(size) {}
  Mapping(Mapping&& o) noexcept
      : address_(std::exchange(o.address_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  Mapping& operator=(Mapping&& o) noexcept {
    if (this != &o) {
      reset();
      address_ = std::exchange(o.address_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~Mapping() { reset(); }
  void* get() const noexcept { return address_; }
  void reset() noexcept {
    if (address_ != nullptr) ::munmap(address_, size_);
    address_ = nullptr;
    size_ = 0;
  }

 private:
  void* address_ = nullptr;
  std::size_t size_ = 0;
};

// The first page of a file shared with a peer process holds a 64-bit word at its start
// and, a cache line on, a random nonce (never 0: 0 means no offer). The peer checks the
// nonce it was sent, so that a recycled pid, another pid namespace or another host of
// the same name cannot hand it a file that merely has the offered device and inode
// (memfd inodes are per boot).
inline constexpr std::size_t kNonceOffset = 64;

// The creator's side: maps the first `bytes` (at least a page) of fd read-write, zeroes
// the word and writes a fresh nonce into `nonce`. Throws calypso::Error naming `what`.
Mapping map_own_file(int fd, std::size_t bytes, const std::string& what, std::uint64_t& nonce);
// The peer's side: maps the first `bytes` of fd, read-only or read-write; nullopt, with
// the reason in `why`, if mmap fails (naming `what`) or the nonce is not `nonce`
// (`wrong_file` then).
std::optional<Mapping> map_peer_file(int fd, std::size_t bytes, bool writable, std::uint64_t nonce,
                                     const std::string& what, const char* wrong_file, std::string& why);

// Allocates the memory behind [address, address + bytes) now, in one call
// (MADV_POPULATE_WRITE), rather than by a page fault and a zero fill per 4 KiB as it is
// first written. Returns 0, or errno (EINVAL: a kernel before 5.14, which leaves the
// memory to those faults; nothing else changes).
int populate_write(void* address, std::size_t bytes) noexcept;

// "what: strerror(errno)".
std::string sys_error(const std::string& what);

}  // namespace calypso
