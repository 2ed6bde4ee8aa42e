// See peer_file.hpp.
#include "sched/peer_file.hpp"

#include <calypso/error.hpp>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <new>
#include <random>
#include <sys/mman.h>
#include <sys/stat.h>


namespace calypso::sched {

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

bool describe_file(int fd, std::uint64_t& dev, std::uint64_t& ino) {
  struct stat st{};
  if (fstat(fd, &st) != 0) return false;
  dev = static_cast<std::uint64_t>(st.st_dev);
  ino = static_cast<std::uint64_t>(st.st_ino);
  return true;
}

namespace {

UniqueFd open_offered(std::uint32_t pid, int fd, std::uint64_t dev, std::uint64_t ino, bool fifo, int flags,
                      std::string& why) {
  const std::string path = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
  auto is_offered = [&](const struct stat& st) {
    return (fifo ? S_ISFIFO(st.st_mode) : S_ISREG(st.st_mode)) && static_cast<std::uint64_t>(st.st_dev) == dev &&
           static_cast<std::uint64_t>(st.st_ino) == ino;
  };
  const std::string not_offered = path + " is not the offered file (another pid namespace, or the pid was reused)";
  struct stat st{};
  if (stat(path.c_str(), &st) != 0) {
    why = sys_error("cannot open " + path);
    return {};
  }
  if (!is_offered(st)) {
    why = not_offered;
    return {};
  }
  UniqueFd f(::open(path.c_str(), flags | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (f.get() < 0) {
    why = sys_error("cannot open " + path);
    return {};
  }
  if (fstat(f.get(), &st) != 0 || !is_offered(st)) {   // the same file as a moment ago
    why = not_offered;
    return {};
  }
  return f;
}

}  // namespace

UniqueFd open_peer_file(std::uint32_t pid, int fd, std::uint64_t dev, std::uint64_t ino, bool writable,
                        std::string& why) {
  return open_offered(pid, fd, dev, ino, false, writable ? O_RDWR : O_RDONLY, why);
}

UniqueFd open_peer_pipe(std::uint32_t pid, int fd, std::uint64_t dev, std::uint64_t ino, std::string& why) {
  return open_offered(pid, fd, dev, ino, true, O_RDWR, why);
}

}  // namespace calypso::sched
