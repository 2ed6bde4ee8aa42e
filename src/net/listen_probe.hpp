// Whether anything listens at a tcp provider's address, asked of the kernel with a plain
// TCP connection that is closed at once. tcp;ofi_rxm does not report a refused
// connection: a send to a peer where nothing listens returns "again" until its caller's
// patience runs out (10 s for a joining worker), so a worker given a stale job address,
// or one whose manager has died, would wait that long to say so. Only for the tcp
// provider: verbs addresses are rdma_cm's, whose ports are not TCP's.
#pragma once

#include "net/endpoint.hpp"

#include <chrono>
#include <string>

namespace calypso::net {

struct ListenProbe {
  enum class Answer { listening, refused, unknown } answer = Answer::unknown;
  std::string where;   // "127.0.0.1:7000", "[::1]:7000"; empty if the address is no IP socket address
};

// Connects to the IPv4 or IPv6 socket address in `a` (a tcp endpoint's address) and
// waits at most `patience` for the answer: listening, refused, or unknown (no answer in
// time: a host that is down or cut off; or no such address).
ListenProbe probe_listener(const Address& a, std::chrono::milliseconds patience);

}  // namespace calypso::net
