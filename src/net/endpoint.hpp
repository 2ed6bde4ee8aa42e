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

struct fid_mr;   // libfabric's memory registration (only src/net sees inside)

namespace calypso::net {

// Opaque provider address of an endpoint (what fi_getname returns), printable as hex.
struct Address {
  std::vector<std::byte> bytes;
  std::string to_string() const;                        // lowercase hex
  static Address from_string(const std::string& hex);   // throws net::Error on bad input
  bool operator==(const Address&) const = default;
  // shm addresses read "fi_shm://<name>", and the queue lives in /dev/shm/<name>: the
  // shm_open name "/<name>"; "" for other providers' addresses.
  std::string shm_queue_name() const;
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
  bool rma = false;                 // ask for RMA reads (expose()/read()); without them if
                                    // the provider has none: check supports_read()
};

// What a peer needs to read memory that an endpoint exposed (see Endpoint::expose).
struct RemoteMemory {
  std::uint64_t address = 0;   // of the first byte, in the provider's terms
  std::uint64_t key = 0;
  std::uint64_t size = 0;
};

// Memory registered with an endpoint's domain; deregistered when destroyed (before
// the endpoint closes).
class Registration {
 public:
  Registration() = default;
  Registration(Registration&&) noexcept;
  Registration& operator=(Registration&&) noexcept;
  ~Registration();
  RemoteMemory remote() const { return remote_; }
  void* descriptor() const { return desc_; }   // for read() into this memory
  explicit operator bool() const { return mr_ != nullptr; }

 private:
  friend class Endpoint;
  ::fid_mr* mr_ = nullptr;
  void* desc_ = nullptr;
  RemoteMemory remote_;
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
                                         // message: the peer that sent it, kNoPeer if it
                                         // is none of ours (not added) or the endpoint
                                         // does not report senders (reports_senders())
  std::span<const std::byte> data;       // message bytes, valid only during the callback
  int error = 0;                         // for peer_error: positive FI_E* code, or
                                         // Endpoint::kBrokenChannel
};

class LocalChannel;   // local_channel.hpp

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

  // RMA reads (opened with EndpointConfig::rma and the provider has FI_RMA): expose()
  // registers [base, base+len) for peers to read and for reads into it; read() copies
  // dst.size() bytes at `offset` into what a peer exposed to dst, blocking (with
  // progress) until done. The peer must keep progressing its endpoint (tcp) unless the
  // provider reads by itself (shm: a cross-memory copy; verbs: the NIC).
  // read() returns ok, `again` (patience ran out; the read may still land in dst
  // later, so dst must stay valid until the endpoint closes), or peer_failed
  // (refused, e.g. out of the exposed range).
  bool supports_read() const;
  // Whether message events name their sender (FI_SOURCE, asked of ofi_rxm: tcp and
  // verbs). Elsewhere every message reads as from kNoPeer: shm's names are not asked
  // for, as 1.17 can name an unknown sender as a known one (see endpoint.cpp).
  // Messages through a local channel always name its peer. A sender named is the one
  // libfabric delivered from, whatever the message says it is: what lets a receiver
  // refuse a message that claims to be another peer's.
  bool reports_senders() const;
  Registration expose(void* base, std::size_t len);  // throws net::Error
  SendStatus read(PeerId from, const RemoteMemory& remote, std::uint64_t offset,
                  std::span<std::byte> dst, const Registration& local,
                  std::chrono::milliseconds patience);
  // Several reads from one peer posted at once, then waited for together: one round trip
  // instead of one each. On tcp;ofi_rxm they go as one fi_readmsg of several remote
  // ranges (reads_as_one()), one request for the peer to serve. Same results as read():
  // ok when every read succeeded. Any other
  // result may leave some of the reads in flight (a failure to post one stops posting
  // but does not recall those posted), so every dst stays as read()'s does: valid until
  // the endpoint closes. 1 to kMaxReadsTogether parts; throws net::Error for 0 parts, for
  // more than kMaxReadsTogether, or on an endpoint without RMA reads.
  // In what order the peer serves them is the provider's business; see
  // serves_reads_in_order().
  struct ReadPart {
    RemoteMemory remote;
    std::uint64_t offset = 0;
    std::span<std::byte> dst;
    const Registration* local = nullptr;
  };
  static constexpr std::size_t kMaxReadsTogether = 4;
  SendStatus read_together(PeerId from, std::span<const ReadPart> parts, std::chrono::milliseconds patience);
  // True when one peer's reads of what this endpoint exposed are served in the order the
  // peer posted them, each one's bytes taken from memory only once every earlier read
  // has taken its own. Then a reader that posts "data, then a flag" together learns the
  // flag's value after the data was read, as if it had waited for the data first.
  // tcp;ofi_rxm (libfabric's tcp provider): it advertises FI_ORDER_RAR, queues read
  // responses first-in first-out on the connection, and copies each one's bytes into the
  // socket as it sends it (one read of several ranges, as read_together posts it, is
  // one response whose ranges follow each other in posting order); only zero-copy sends
  // (FI_TCP_ZEROCOPY_SIZE) or io_uring (FI_TCP_IO_URING) would hand bytes to the kernel
  // to read later, so either setting in this process's environment makes this false, as
  // does a libfabric release whose tcp provider was not audited for this
  // (audited_for_ordered_reads). False for every other provider: shm copies large reads
  // in the background, and a NIC's DMA reads may complete out of order.
  bool serves_reads_in_order() const;
  // True where read_together() posts its parts as one read: tcp;ofi_rxm, which takes
  // kMaxReadsTogether remote ranges in one. Not shm: it copies a read by itself only
  // when it has one range, and leaves several to the peer's progress.
  bool reads_as_one() const;
  // The part of serves_reads_in_order() that is not the endpoint's: an audited release
  // loaded, and neither environment setting above.
  static bool tcp_may_serve_reads_in_order() noexcept;
  // Whether the tcp provider of this libfabric release (fi_version(): major and minor,
  // no revision) was read and found to serve reads as serves_reads_in_order() says:
  // 1.17 (the code read was Debian 12's 1.17.0; a 1.17.x revision is taken to keep it,
  // as revisions carry fixes only).
  static bool audited_for_ordered_reads(std::uint32_t version) noexcept;
  // Sends to p that are still outstanding are abandoned: their buffers are replaced so
  // the pool keeps send_depth free slots, and p's address then stays in the AV until
  // the endpoint closes (removing it would crash shm 1.17). Queued errors for p are
  // dropped. (On shm every message goes as injected fragments, so no send ever waits
  // on a dead peer there: see fragments.hpp.)
  void remove_peer(PeerId p) noexcept;

  // From now on messages to p go through `channel`, and poll() delivers what p sends
  // through it (both processes on one host: see local_channel.hpp). The two sides must
  // switch where no message is on its way through the provider, or order is lost: the
  // opener attaches just after its last message through the provider (which tells the
  // creator to attach), the creator once that message arrived. A channel that delivers
  // garbage is dropped and reported as a peer_error for p with error kBrokenChannel;
  // sends to p then fail (peer_failed) until remove_peer(p): the peer does not fall back
  // to the provider, where the other side would not look for it.
  void attach_local(PeerId p, LocalChannel&& channel);
  static constexpr int kBrokenChannel = -1;   // Event::error: a local channel broke
  // Messages received through local channels so far.
  std::uint64_t local_messages() const;

  // Copies msg (<= max_message bytes, as gathered parts) into a send buffer and posts it.
  // Waits at most `patience` for a free send buffer (reaping send completions meanwhile,
  // never delivering received messages). A send that later fails is reported by poll()
  // as a peer_error event. A larger msg throws net::Error (a programming error).
  // Returns `again` when patience runs out: also the first sends to a new peer may need
  // that peer to make progress (connection set-up), and on tcp;ofi_rxm 1.17 every send
  // to a peer that died returns `again` (rxm reports no error for a refused reconnect).
  SendStatus send(PeerId to, std::span<const std::span<const std::byte>> parts,
                  std::chrono::milliseconds patience = std::chrono::milliseconds(10000));
  SendStatus send(PeerId to, std::span<const std::byte> msg,
                  std::chrono::milliseconds patience = std::chrono::milliseconds(10000));

  // Delivers every completed receive and send error to fn, reposts receive buffers, and
  // returns how many events were delivered. Never blocks. At most recv_depth messages
  // per call, so that a flood cannot starve the caller (wait() then returns at once).
  // fn may call send() (e.g. to reply), but not poll() or wait().
  std::size_t poll(const std::function<void(const Event&)>& fn);

  // Blocks until poll() may have something, or the timeout passes. Returns false on timeout.
  // Uses fi_trywait + the CQ wait fd; never spins.
  bool wait(std::chrono::milliseconds timeout);

  // For an event loop: the fd to put into epoll (readable when poll() may have something),
  // and ready_to_sleep(), which must return true (fi_trywait) before the loop blocks;
  // when it returns false, call poll() again first. wait_fd() is always valid: an epoll
  // set of the CQ wait fds plus a timer. For a provider without FI_WAIT_FD (shm), and
  // while fi_trywait refuses with nothing to read, ready_to_sleep() arms that timer
  // (20 us after activity, backing off to 2 ms), so the loop wakes briefly to re-check.
  int wait_fd() const;
  bool ready_to_sleep();

  // For a process that is about to _exit() without closing the endpoint (a worker ends
  // from whichever thread learns it must): removes what the endpoint keeps outside the
  // process, which its destructor would have removed. shm: its queue file in /dev/shm
  // (peers that mapped it keep their mapping); other providers keep nothing. Only
  // unlinks a name fixed at open, so any thread may call it while others use the
  // endpoint.
  void release_before_exit() noexcept;

 private:
  struct Impl;
  explicit Endpoint(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Names of the providers that open on this machine, among "tcp", "shm", "verbs".
std::vector<std::string> available_providers();

}  // namespace calypso::net
