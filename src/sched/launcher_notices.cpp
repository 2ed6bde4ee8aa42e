#include "sched/launcher_notices.hpp"

#include <calypso/error.hpp>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <fcntl.h>
#include <sys/socket.h>

namespace calypso::sched {

LauncherNotices LauncherNotices::adopt(int fd) {
  int type = 0, domain = 0;
  socklen_t len = sizeof type;
  const bool ok = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_SEQPACKET &&
                  (len = sizeof domain, getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0) &&
                  domain == AF_UNIX;
  if (!ok) {
    throw Error("calypso: CALYPSO_LAUNCHER_FD=" + std::to_string(fd) +
                " is not an open socket from calypso-run: it sets it for the manager it starts; unset it");
  }
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  ::unsetenv("CALYPSO_LAUNCHER_FD");
  return LauncherNotices(UniqueFd(fd));
}

LauncherNotices::Read LauncherNotices::read() {
  Read r;
  if (fd_.get() < 0) return r;
  std::int32_t notice[2] = {};
  // MSG_TRUNC: the packet's own length, so that a longer one is not taken for a notice.
  const ssize_t n = recv(fd_.get(), notice, sizeof notice, MSG_DONTWAIT | MSG_TRUNC);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return r;
  if (n <= 0) {   // the launcher is gone (or the socket broke): nothing more will come
    r.closed = true;
    return r;
  }
  if (n == sizeof notice[0]) r.exited = static_cast<std::uint32_t>(notice[0]);
  if (n == sizeof notice && notice[1] > 0) {
    r.remote_failed = RemoteFailure{static_cast<std::uint32_t>(notice[0]), static_cast<std::uint32_t>(notice[1])};
  }
  return r;
}

}  // namespace calypso::sched
