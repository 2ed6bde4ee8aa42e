// Files of another process on this host, opened through /proc/PID/fd/N, and shared
// mappings of them: how a worker reads the manager's home memory (local_home.hpp) and
// the manager takes a worker's results (result_ring.hpp) without the network. Opening
// another process's descriptor needs the same user (ptrace read access, which Yama's
// ptrace_scope does not restrict).
#pragma once

#include "unique_fd.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

namespace calypso::sched {

// A shared mapping, unmapped when destroyed.
class Mapping {
 public:
  Mapping() = default;
  Mapping(void* address, std::size_t size) noexcept : address_(address), size_(size) {}
  Mapping(Mapping&& o) noexcept;
  Mapping& operator=(Mapping&& o) noexcept;
  ~Mapping();
  void* get() const noexcept { return address_; }

 private:
  void* address_ = nullptr;
  std::size_t size_ = 0;
};

// Opens /proc/PID/fd/FD (read-only, or read-write) if it is the regular file with the
// device and inode offered; else an empty UniqueFd and the reason in `why`. Checked
// before opening too: opening a FIFO or a terminal named by a bad offer would block or
// have effects.
UniqueFd open_peer_file(std::uint32_t pid, int fd, std::uint64_t dev, std::uint64_t ino, bool writable,
                        std::string& why);

// The device and inode of one of this process's files; false if fstat fails.
bool describe_file(int fd, std::uint64_t& dev, std::uint64_t& ino);

// "what: strerror(errno)".
std::string sys_error(const std::string& what);

}  // namespace calypso::sched
