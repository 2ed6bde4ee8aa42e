// Files of another process on this host, opened through /proc/PID/fd/N, and shared
// mappings of them: how a worker reads the manager's home memory (local_home.hpp) and
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

// The first page of a file shared with a peer process (the manager's control word, a
// worker's result ring) holds a 64-bit word at its start and, a cache line on, a random
// nonce (never 0: 0 means no offer). The peer checks the nonce it was sent, so that a
// recycled pid, another pid namespace or another host of the same name cannot hand it a
// file that merely has the offered device and inode (memfd inodes are per boot).
inline constexpr std::size_t kNonceOffset = 64;

// The creator's side: maps the first `bytes` (at least a page) of fd read-write, zeroes
// the word and writes a fresh nonce into `nonce`. Throws calypso::Error naming `what`.
Mapping map_own_file(int fd, std::size_t bytes, const std::string& what, std::uint64_t& nonce);
// The peer's side: maps the first `bytes` of fd, read-only or read-write; nullopt, with
// the reason in `why`, if mmap fails (naming `what`) or the nonce is not `nonce`
// (`wrong_file` then).
std::optional<Mapping> map_peer_file(int fd, std::size_t bytes, bool writable, std::uint64_t nonce,
                                     const std::string& what, const char* wrong_file, std::string& why);

// The device and inode of one of this process's files; false if fstat fails.
bool describe_file(int fd, std::uint64_t& dev, std::uint64_t& ino);

// "what: strerror(errno)".
std::string sys_error(const std::string& what);

}  // namespace calypso::sched
