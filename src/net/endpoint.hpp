// A reliable-datagram (FI_EP_RDM) libfabric endpoint that moves framed messages.
//
// src/net knows nothing about pages, segments or steps: it moves byte messages between
// peers identified by PeerId and reports peer failures as values. Providers are chosen
// by name: "tcp" (tcp;ofi_rxm, the default), "shm", "verbs" (verbs;ofi_rxm).
//
// Threading: one Endpoint is used by one thread at a time (FI_THREAD_DOMAIN).
// Waiting never spins: wait() blocks on the completion queue's wait object (an fd),
// and wait_fd() lets an event loop put that fd into its own epoll set.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace calypso::net {

// Opaque provider address of an endpoint (what fi_getname returns), printable as hex.
struct Address {
  std::vector<std::byte> bytes;
  std::string to_string() const;                        // lowercase hex
  static Address from_string(const std::string& hex);   // throws net::Error on bad input
  bool operator==(const Address&) const = default;
};

using PeerId = std::uint64_t;   // fi_addr_t of an inserted peer
inline constexpr PeerId kNoPeer = ~PeerId{0};

struct EndpointConfig {
  std::string provider = "tcp";     // "tcp", "shm", "verbs", or a raw libfabric prov_name
  std::string node;                 // local address to bind (IP for tcp/verbs); empty: any
  std::string service;              // local port to bind; empty: any
  std::size_t max_message = 1 << 20; // largest message payload either side may send
  std::size_t recv_depth = 16;      // receive buffers kept posted
  std::size_t send_depth = 16;      // send buffers (messages in flight) before send() waits
};

// Thrown for setup failures (fi_getinfo, fi_fabric, ...). The message names the call,
// the return code and fi_strerror.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class SendStatus : std::uint8_t { ok, again, peer_failed };

// Something that happened on the endpoint, delivered by poll().
struct Event {
  enum class Kind : std::uint8_t { message, peer_error } kind;
  PeerId peer = kNoPeer;                 // for peer_error: the peer a send to failed; for
                                         // message: kNoPeer (messages carry their sender)
  std::span<const std::byte> data;       // message bytes, valid only during the callback
  int error = 0;                         // for peer_error: positive FI_E* code
};

class Endpoint {
 public:
  static Endpoint open(const EndpointConfig& cfg);   // throws net::Error
  Endpoint(Endpoint&&) noexcept;
  Endpoint& operator=(Endpoint&&) noexcept;
  ~Endpoint();                                       // never throws; logs failures

  Address local_address() const;
  const std::string& provider_name() const;          // e.g. "tcp;ofi_rxm"
  std::size_t max_message() const;

  PeerId add_peer(const Address& a);                 // throws net::Error on a bad address
  void remove_peer(PeerId p) noexcept;

  // Copies msg (<= max_message bytes, as gathered parts) into a send buffer and posts it.
  // Waits at most `patience` for a free send buffer (reaping send completions meanwhile,
  // never delivering received messages). A send that later fails is reported by poll()
  // as a peer_error event.
  SendStatus send(PeerId to, std::span<const std::span<const std::byte>> parts,
                  std::chrono::milliseconds patience = std::chrono::milliseconds(10000));
  SendStatus send(PeerId to, std::span<const std::byte> msg,
                  std::chrono::milliseconds patience = std::chrono::milliseconds(10000));

  // Delivers every completed receive and send error to fn, reposts receive buffers, and
  // returns how many events were delivered. Never blocks.
  std::size_t poll(const std::function<void(const Event&)>& fn);

  // Blocks until poll() may have something, or the timeout passes. Returns false on timeout.
  // Uses fi_trywait + the CQ wait fd; never spins.
  bool wait(std::chrono::milliseconds timeout);

  // For an event loop: the fd to put into epoll (readable when poll() may have something),
  // and ready_to_sleep(), which must return true (fi_trywait) before the loop blocks;
  // when it returns false, call poll() again first.
  int wait_fd() const;
  bool ready_to_sleep();

 private:
  struct Impl;
  explicit Endpoint(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Names of the providers that open on this machine, among "tcp", "shm", "verbs".
std::vector<std::string> available_providers();

}  // namespace calypso::net
