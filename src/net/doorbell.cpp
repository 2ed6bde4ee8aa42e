#include "net/doorbell.hpp"

#include "net/endpoint.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

namespace calypso::net {

Doorbell::Peer Doorbell::peer(std::span<const std::byte> address) {
  // FNV-1a of the address: a short, fixed-length name whatever the provider's format.
  while (!address.empty() && address.back() == std::byte{0}) address = address.first(address.size() - 1);
  std::uint64_t h = 1469598103934665603ull;
  for (std::byte b : address) h = (h ^ std::to_integer<std::uint64_t>(b)) * 1099511628211ull;
  char name[64];
  const int n = std::snprintf(name, sizeof name, "calypso-bell-%016llx", static_cast<unsigned long long>(h));
  Peer p;
  p.addr.sun_family = AF_UNIX;
  std::memcpy(p.addr.sun_path + 1, name, static_cast<std::size_t>(n));   // sun_path[0] = 0: abstract
  p.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + static_cast<std::size_t>(n));
  return p;
}

Doorbell::Doorbell(std::span<const std::byte> own_address)
    : fd_(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) {
  if (fd_ < 0) throw Error(std::string("calypso net: doorbell socket: ") + std::strerror(errno));
  const Peer self = peer(own_address);
  if (::bind(fd_, reinterpret_cast<const sockaddr*>(&self.addr), self.len) != 0) {
    const int e = errno;
    ::close(fd_);
    throw Error(std::string("calypso net: doorbell bind: ") + std::strerror(e));
  }
}

Doorbell::Doorbell(Doorbell&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
Doorbell& Doorbell::operator=(Doorbell&& o) noexcept {
  std::swap(fd_, o.fd_);
  return *this;
}
Doorbell::~Doorbell() {
  if (fd_ >= 0) ::close(fd_);
}

void Doorbell::ring(const Peer& p) const noexcept {
  const char b = 0;
  ::sendto(fd_, &b, 1, MSG_DONTWAIT | MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&p.addr), p.len);
}

void Doorbell::drain() const noexcept {
  char buf[64];
  while (::recv(fd_, buf, sizeof buf, MSG_DONTWAIT) > 0) {
  }
}

}  // namespace calypso::net
