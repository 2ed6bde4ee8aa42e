// A wake-up channel for a provider that has no wait object (shm in libfabric 1.17).
//
// Without it an idle shm endpoint can only be polled on a timer, and a request that
// arrives while the receiver sleeps waits for the next tick (measured: ~0.2 ms per page
// fetch). The doorbell is an abstract AF_UNIX datagram socket whose name is derived
// from the endpoint's own provider address, so a sender finds it from the address it
// already has, with no extra protocol. A sender rings after posting a message; the
// receiver sleeps on the socket's fd and drains it before it checks its queues, so a
// ring can never be lost between the check and the sleep.
//
// Abstract sockets live in the network namespace, as shm's peers share one host.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <span>

namespace calypso::net {

class Doorbell {
 public:
  // Binds the bell of the endpoint with this address; throws net::Error on failure.
  explicit Doorbell(std::span<const std::byte> own_address);
  Doorbell(Doorbell&& o) noexcept;
  Doorbell& operator=(Doorbell&& o) noexcept;
  Doorbell(const Doorbell&) = delete;
  Doorbell& operator=(const Doorbell&) = delete;
  ~Doorbell();

  struct Peer {
    sockaddr_un addr{};
    socklen_t len = 0;
  };
  static Peer peer(std::span<const std::byte> address);   // where that endpoint's bell is

  int fd() const { return fd_; }
  // Never blocks; a full socket buffer means the receiver has a wake-up pending anyway,
  // and a vanished peer is the failure detector's business.
  void ring(const Peer& p) const noexcept;
  void drain() const noexcept;

 private:
  int fd_ = -1;
};

}  // namespace calypso::net
