// The manager's end of calypso-run's exit notices (CALYPSO_LAUNCHER_FD): the launcher
// sees its workers exit, including those that die before they join, which the manager
// could otherwise learn of only by waiting for them. One packet per exited worker, its
// pid as an int32; or, for workers on another host (--hosts) whose remote shell failed
// before any of them could start (it could not connect, or found nothing to run), two
// int32s: the remote shell's pid and how many workers it was to start
// (calypso_run.cpp's ExitNotices is the other end).
#pragma once

#include "unique_fd.hpp"

#include <cstdint>
#include <optional>

namespace calypso::sched {

class LauncherNotices {
 public:
  LauncherNotices() = default;   // none: a manager started without calypso-run
  // Takes descriptor `fd` (CALYPSO_LAUNCHER_FD) if it is a Unix packet socket, marks it
  // close-on-exec and unsets the variable (a child program or a second Runtime must not
  // take it too). Throws calypso::Error naming the variable otherwise: a stale number
  // may by now be one of libfabric's sockets.
  static LauncherNotices adopt(int fd);

  int fd() const { return fd_.get(); }   // -1 without notices; readable when one came
  explicit operator bool() const { return fd_.get() >= 0; }

  // What one read found: the pid of a worker that exited, nothing yet (or a packet of
  // another size, dropped), or the launcher's end closed (nothing more will come: the
  // owner takes fd() out of its poll set and drops this object).
  struct RemoteFailure {
    std::uint32_t shell_pid;
    std::uint32_t workers;
  };
  struct Read {
    std::optional<std::uint32_t> exited;
    std::optional<RemoteFailure> remote_failed;
    bool closed = false;
  };
  Read read();

 private:
  explicit LauncherNotices(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace calypso::sched
