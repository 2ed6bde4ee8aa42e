// Tests of sched::LauncherNotices, the manager's end of calypso-run's exit notices, on a
// real socket pair and real descriptors of other kinds.
#include "sched/launcher_notices.hpp"

#include <calypso/error.hpp>

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>

namespace calypso::sched {
namespace {

struct Pair {
  Pair() { EXPECT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, fds), 0); }
  ~Pair() {
    for (int fd : fds) {
      if (fd >= 0) close(fd);
    }
  }
  void send_pid(std::int32_t pid) const { EXPECT_EQ(send(fds[1], &pid, sizeof pid, 0), ssize_t{sizeof pid}); }
  int fds[2] = {-1, -1};
};

TEST(LauncherNotices, ReadsOnePidPerPacketAndSeesTheLauncherGo) {
  Pair p;
  setenv("CALYPSO_LAUNCHER_FD", std::to_string(p.fds[0]).c_str(), 1);
  LauncherNotices n = LauncherNotices::adopt(p.fds[0]);
  p.fds[0] = -1;   // n owns it
  EXPECT_TRUE(n);
  EXPECT_EQ(std::getenv("CALYPSO_LAUNCHER_FD"), nullptr) << "a child program would take it too";
  EXPECT_EQ(fcntl(n.fd(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);

  auto nothing = n.read();   // nothing sent yet: no pid, not closed, and it does not block
  EXPECT_FALSE(nothing.exited);
  EXPECT_FALSE(nothing.closed);

  p.send_pid(4242);
  p.send_pid(17);
  EXPECT_EQ(n.read().exited, std::optional<std::uint32_t>(4242));
  EXPECT_EQ(n.read().exited, std::optional<std::uint32_t>(17));

  const char junk[7] = "abcdef";   // not a pid: dropped, the next one still read
  ASSERT_EQ(send(p.fds[1], junk, sizeof junk, 0), ssize_t{sizeof junk});
  p.send_pid(5);
  auto dropped = n.read();
  EXPECT_FALSE(dropped.exited);
  EXPECT_FALSE(dropped.closed);
  EXPECT_EQ(n.read().exited, std::optional<std::uint32_t>(5));

  // Two int32s: a remote shell that started none of its workers, and how many.
  const std::int32_t remote[2] = {777, 3};
  ASSERT_EQ(send(p.fds[1], remote, sizeof remote, 0), ssize_t{sizeof remote});
  auto failed = n.read();
  EXPECT_FALSE(failed.exited);
  ASSERT_TRUE(failed.remote_failed);
  EXPECT_EQ(failed.remote_failed->shell_pid, 777u);
  EXPECT_EQ(failed.remote_failed->workers, 3u);
  const std::int32_t none[2] = {778, -1};   // no workers: nothing
  ASSERT_EQ(send(p.fds[1], none, sizeof none, 0), ssize_t{sizeof none});
  EXPECT_FALSE(n.read().remote_failed);

  close(p.fds[1]);
  p.fds[1] = -1;
  auto gone = n.read();
  EXPECT_TRUE(gone.closed);
  EXPECT_FALSE(gone.exited);
}

TEST(LauncherNotices, AnythingButAUnixPacketSocketIsRefusedByName) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  int stream[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, stream), 0);
  const int inet = socket(AF_INET, SOCK_SEQPACKET, 132);   // SCTP, where the kernel has it
  for (int fd : {pipe_fds[0], stream[0], inet, 999}) {
    if (fd < 0) continue;
    setenv("CALYPSO_LAUNCHER_FD", std::to_string(fd).c_str(), 1);
    try {
      LauncherNotices::adopt(fd);
      ADD_FAILURE() << "descriptor " << fd << " taken";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("CALYPSO_LAUNCHER_FD=" + std::to_string(fd)), std::string::npos) << e.what();
    }
    // Refused: left open, and the variable left for the error to name.
    EXPECT_NE(std::getenv("CALYPSO_LAUNCHER_FD"), nullptr);
    if (fd != 999) {
      EXPECT_EQ(fcntl(fd, F_GETFD), 0) << "closed or changed";
    }
  }
  for (int fd : {pipe_fds[0], pipe_fds[1], stream[0], stream[1], inet}) {
    if (fd >= 0) close(fd);
  }
  unsetenv("CALYPSO_LAUNCHER_FD");
}

TEST(LauncherNotices, NoneMeansNothingToWatch) {
  LauncherNotices n;
  EXPECT_FALSE(n);
  EXPECT_EQ(n.fd(), -1);
  auto r = n.read();
  EXPECT_FALSE(r.exited);
  EXPECT_FALSE(r.closed);
}

}  // namespace
}  // namespace calypso::sched
