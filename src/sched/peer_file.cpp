// See peer_file.hpp.
#include "sched/peer_file.hpp"

#include <calypso/error.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>


namespace calypso::sched {

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
