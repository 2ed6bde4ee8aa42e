// See mapping.hpp.
#include "mapping.hpp"

#include <calypso/error.hpp>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <new>
#include <random>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23   // Linux 5.14; older C libraries lack the name
#endif

namespace calypso {

int populate_write(void* address, std::size_t bytes) noexcept {
  return madvise(address, bytes, MADV_POPULATE_WRITE) == 0 ? 0 : errno;
}

std::string sys_error(const std::string& what) { return what + ": " + std::strerror(errno); }

Mapping map_own_file(int fd, std::size_t bytes, const std::string& what, std::uint64_t& nonce) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) throw Error("calypso: " + sys_error("mmap of " + what));
  Mapping m(p, bytes);
  new (p) std::atomic<std::uint64_t>(0);
  std::random_device random;
  nonce = (std::uint64_t{random()} << 32 | random()) | 1;
  std::memcpy(static_cast<std::byte*>(p) + kNonceOffset, &nonce, sizeof nonce);
  return m;
}

std::optional<Mapping> map_peer_file(int fd, std::size_t bytes, bool writable, std::uint64_t nonce,
                                     const std::string& what, const char* wrong_file, std::string& why) {
  void* p = mmap(nullptr, bytes, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    why = sys_error("mmap of " + what);
    return std::nullopt;
  }
  Mapping m(p, bytes);
  std::uint64_t found = 0;
  std::memcpy(&found, static_cast<const std::byte*>(p) + kNonceOffset, sizeof found);
  if (found != nonce) {
    why = wrong_file;
    return std::nullopt;
  }
  return m;
}

}  // namespace calypso
