#include "net/listen_probe.hpp"

#include "unique_fd.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace calypso::net {

ListenProbe probe_listener(const Address& a, std::chrono::milliseconds patience) {
  ListenProbe p;
  sockaddr_storage sa{};
  socklen_t len = 0;
  sa_family_t family = AF_UNSPEC;
  if (a.bytes.size() >= sizeof(sa_family_t)) std::memcpy(&family, a.bytes.data(), sizeof family);
  if (family == AF_INET && a.bytes.size() >= sizeof(sockaddr_in)) len = sizeof(sockaddr_in);
  if (family == AF_INET6 && a.bytes.size() >= sizeof(sockaddr_in6)) len = sizeof(sockaddr_in6);
  if (len == 0) return p;
  std::memcpy(&sa, a.bytes.data(), len);
  char host[INET6_ADDRSTRLEN] = {};
  unsigned port = 0;
  if (family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&sa);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
    p.where.append(host).append(":").append(std::to_string(port));
  } else {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
    // (appended, not concatenated: GCC 12 warns falsely of overlapping copies, -Wrestrict)
    p.where.append("[").append(host).append("]:").append(std::to_string(port));
  }
  UniqueFd s(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (s.get() < 0) return p;
  int err = 0;
  if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&sa), len) != 0) {
    err = errno;
    if (err == EINPROGRESS) {
      pollfd w{s.get(), POLLOUT, 0};
      if (::poll(&w, 1, static_cast<int>(patience.count())) != 1) return p;   // no answer in time
      socklen_t n = sizeof err;
      if (::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &n) != 0) return p;
    }
  }
  if (err == 0) p.answer = ListenProbe::Answer::listening;
  if (err == ECONNREFUSED) p.answer = ListenProbe::Answer::refused;
  return p;
}

}  // namespace calypso::net
