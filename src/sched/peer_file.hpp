// Files of another process on this host, opened through /proc/PID/fd/N (and mapped with
// mapping.hpp's map_peer_file): how a worker reads the manager's home memory (local_home.hpp) and
// the manager takes a worker's results (result_ring.hpp) without the network. Opening
// another process's descriptor needs the same user (ptrace read access, which Yama's
// ptrace_scope does not restrict).
#pragma once

#include "mapping.hpp"
#include "unique_fd.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace calypso::sched {

// Opens /proc/PID/fd/FD (read-only, or read-write) if it is the regular file with the
// device and inode offered; else an empty UniqueFd and the reason in `why`. Checked
// before opening too: opening a FIFO or a terminal named by a bad offer would block or
// have effects.
UniqueFd open_peer_file(std::uint32_t pid, int fd, std::uint64_t dev, std::uint64_t ino, bool writable,
                        std::string& why);
// The same for one end of a pipe with the device and inode offered, opened non-blocking
// for reading and writing whichever end it is: a process that holds a pipe open for
// reading never gets SIGPIPE from writing into it when the peer has died.
UniqueFd open_peer_pipe(std::uint32_t pid, int fd, std::uint64_t dev, std::uint64_t ino, std::string& why);

// The device and inode of one of this process's files; false if fstat fails.
bool describe_file(int fd, std::uint64_t& dev, std::uint64_t& ino);

}  // namespace calypso::sched
