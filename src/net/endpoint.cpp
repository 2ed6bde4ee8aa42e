// The libfabric RDM endpoint behind net::Endpoint: object lifetimes, buffer pools,
// posting, completion handling and blocking waits.
//
// Every libfabric object is owned by one RAII member, declared in creation order so
// that destruction runs in reverse. Receives are kept posted in fixed buffers; sends are
// copied into a fixed pool (or injected when small) so the caller's memory is free as
// soon as send() returns. Transmit and receive completions go to separate CQs so that
// send() can wait for a free buffer without consuming (and having to hold) receives.
//
// Wait objects, measured on this machine (libfabric 1.17):
//  - "tcp;ofi_rxm" accepts FI_WAIT_FD (also UNSPEC, which it maps to FD, and POLLFD);
//    FI_GETWAIT returns an fd that becomes readable when data or connection requests
//    arrive, and fi_trywait works. wait() and wait_fd() block in the kernel. But once
//    a peer has died with a send outstanding, fi_trywait keeps failing with nothing to
//    read, so a failed fi_trywait must not mean "poll again now" (that would spin).
//  - "shm" accepts only FI_WAIT_NONE, FI_WAIT_YIELD and FI_WAIT_UNSPEC (= YIELD):
//    fi_cq_sread spins on sched_yield, and nothing signals a sleeping receiver. So shm
//    endpoints get a Doorbell (doorbell.hpp) that senders ring, in the epoll set.
// The endpoint also keeps a timerfd in its epoll set. Whenever it cannot sleep on the
// CQ fds (fi_trywait refuses yet the CQs are empty, or a provider with neither a wait
// fd nor a doorbell) it checks the CQs itself and arms the timer, whose period backs
// off from 20 us (right after activity) to 2 ms; with a doorbell the timer is only a
// safety net at 50 ms.
//
// shm also sends every message as injected fragments (fragments.hpp): its large sends
// complete in order, and one to a dead peer never does.
#include "net/endpoint.hpp"
#include "net/local_channel.hpp"

#include "log.hpp"
#include "net/doorbell.hpp"
#include "net/fragments.hpp"
#include "net/stall_watch.hpp"

#include <poll.h>
#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <type_traits>
#include <utility>

namespace calypso::net {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::microseconds;

// Back-off bounds: for polled providers (see above), and for send() while the
// provider says -FI_EAGAIN or no send buffer is free.
constexpr microseconds kMinPollInterval{20};
constexpr microseconds kMaxPollInterval{2000};
// With a doorbell the timer is only a safety net (see doorbell.hpp).
constexpr microseconds kBellSafetyInterval{50000};
constexpr microseconds kMinSendNap{50};
constexpr microseconds kMaxSendNap{10000};

[[noreturn]] void fail(const std::string& call, long rc) {
  throw Error("calypso net: " + call + " failed: " + std::to_string(rc) + " (" +
              fi_strerror(static_cast<int>(-rc)) + ")");
}

void check(const char* call, long rc) {
  if (rc < 0) fail(call, rc);
}

void log_error(const char* what, long rc) noexcept {
  std::fprintf(stderr, "calypso net: %s: %ld (%s)\n", what, rc,
               fi_strerror(static_cast<int>(rc < 0 ? -rc : rc)));
}

// Closes a libfabric object; a failure is logged with the call that opened it.
//
// One failure is known and harmless: once sends (or reads) to a peer that died have
// failed, or are left in flight (remove_peer, or at closing), the tcp;ofi_rxm domain
// (and so its fabric) refuses to close with FI_EBUSY, because rxm keeps memory
// registrations of those operations (libfabric issue #12016, present in Debian 12's
// 1.17). The process's exit frees them, and a second fi_close would trip an assertion
// in rxm, so the object is left as it is; that case is logged at debug level only,
// where `busy_is_known` says it happened.
template <class T>
struct FidClose {
  const char* opened_by = "?";
  const bool* busy_is_known = nullptr;
  void operator()(T* p) const noexcept {
    const int rc = fi_close(&p->fid);
    if (rc == 0) return;
    if (rc == -FI_EBUSY && busy_is_known && *busy_is_known) {
      LOG_DEBUG("calypso net: fi_close of %s object left to the process's exit: the "
                "provider still holds sends to a lost peer (libfabric #12016)", opened_by);
      return;
    }
    std::fprintf(stderr, "calypso net: fi_close of %s object: %d (%s)\n", opened_by, rc,
                 fi_strerror(-rc));
  }
};
template <class T>
using FidPtr = std::unique_ptr<T, FidClose<T>>;

// Runs a libfabric open call and takes ownership of what it made.
template <class T, class Open>
FidPtr<T> open_fid(const char* call, Open&& open) {
  T* p = nullptr;
  check(call, open(&p));
  return FidPtr<T>(p, FidClose<T>{call});
}

struct InfoFree {
  void operator()(fi_info* p) const noexcept { fi_freeinfo(p); }
};
using InfoPtr = std::unique_ptr<fi_info, InfoFree>;

// An owned file descriptor (the epoll set, the poll timer).
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd, const char* call) : fd_(fd) {
    if (fd < 0) fail(call, -errno);
  }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept { std::swap(fd_, o.fd_); return *this; }
  ~Fd() { if (fd_ >= 0) ::close(fd_); }
  int get() const { return fd_; }
 private:
  int fd_ = -1;
};

// Every posted operation carries one of these; the completion hands its address back.
// fi_context2 comes first because providers in FI_CONTEXT/FI_CONTEXT2 mode use it.
struct OpContext {
  fi_context2 fi{};
  std::uint32_t index = 0;   // buffer slot
  PeerId peer = kNoPeer;     // destination, for sends
  bool in_flight = false;    // a send posted and not completed
  bool abandoned = false;    // its peer was removed: the slot is retired for good
  bool is_read = false;      // an RMA read context (no buffer slot)
  int error = 0;             // of a finished read
};
static_assert(std::is_standard_layout_v<OpContext> && offsetof(OpContext, fi) == 0);

// max_message-sized slots with their operation contexts. It only grows (see
// remove_peer), and a deque keeps every context at a stable address meanwhile.
struct BufferPool {
  BufferPool(std::size_t count, std::size_t size) : slot(size) {
    for (std::size_t i = 0; i < count; ++i) add();
  }
  std::uint32_t add() {
    const auto index = static_cast<std::uint32_t>(ctx.size());
    mem.push_back(std::make_unique_for_overwrite<std::byte[]>(slot));
    ctx.emplace_back().index = index;
    return index;
  }
  std::byte* at(std::size_t i) const { return mem[i].get(); }
  std::size_t slot;
  std::vector<std::unique_ptr<std::byte[]>> mem;
  std::deque<OpContext> ctx;
};

std::string full_provider_name(const std::string& name) {
  if (name == "tcp") return "tcp;ofi_rxm";
  if (name == "verbs") return "verbs;ofi_rxm";
  return name;
}

// Memory registration modes we handle for RMA (never FI_MR_LOCAL: the message path
// passes no descriptors, and a provider that needs them then is not chosen for RMA).
constexpr std::uint64_t kRmaMrModes = FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;

// ofi_rxm (under tcp and verbs) gives every endpoint, and each process's first
// connection, a pool of 1024 eager buffers of FI_OFI_RXM_BUFFER_SIZE (16 KiB by default),
// zero-filled at once: 17 MB each, 34 MB in a manager, 51 MB in a worker (two endpoints).
// 8 KiB halves that and still carries a 4 KiB page's reply eagerly (4 KiB made the
// message read fault 1.9x slower: the reply went segmented). Set before libfabric reads
// it, at the first fi_getinfo; a value the user set wins. (The runtime sets the one
// default that depends on the process's role, FI_OFI_RXM_MSG_RX_SIZE: runtime.cpp.)
void default_rxm_buffer_size() {
  static std::once_flag once;
  std::call_once(once, [] { ::setenv("FI_OFI_RXM_BUFFER_SIZE", "8192", 0); });
}

InfoPtr get_info(const std::string& prov, const std::string& node, const std::string& service,
                 bool rma = false, bool source = false) {
  default_rxm_buffer_size();
  InfoPtr hints(fi_allocinfo());
  if (!hints) throw Error("calypso net: fi_allocinfo failed");
  hints->ep_attr->type = FI_EP_RDM;
  hints->caps = rma ? FI_MSG | FI_RMA | FI_READ | FI_REMOTE_READ : FI_MSG;
  if (source) hints->caps |= FI_SOURCE;   // receives say which peer sent them
  if (rma) hints->domain_attr->mr_mode = static_cast<int>(kRmaMrModes);
  hints->mode = FI_CONTEXT | FI_CONTEXT2;   // every op carries an OpContext
  hints->domain_attr->threading = FI_THREAD_DOMAIN;
  hints->fabric_attr->prov_name = ::strdup(prov.c_str());   // freed by fi_freeinfo
  const bool bind = !node.empty() || !service.empty();
  fi_info* info = nullptr;
  const int rc = fi_getinfo(FI_VERSION(1, 17), node.empty() ? nullptr : node.c_str(),
                            service.empty() ? nullptr : service.c_str(),
                            bind ? FI_SOURCE : 0, hints.get(), &info);
  InfoPtr owned(info);
  // No match is what a misspelt provider, a provider this libfabric was built without,
  // and (when binding) an address none of the provider's interfaces has all look like:
  // say so in words.
  if (rc == -FI_ENODATA && bind) {
    throw Error("calypso net: libfabric's provider '" + prov + "' cannot listen at " +
                (node.empty() ? std::string("*") : node) + ":" + (service.empty() ? "*" : service) +
                " (fi_getinfo: no data available): is that an address of this host, and is the "
                "provider available here (calypso-info lists those that open)?");
  }
  if (rc == -FI_ENODATA) {
    throw Error("calypso net: libfabric has no provider '" + prov + "' that opens here (fi_getinfo: no "
                "data available); CALYPSO_PROVIDER and --provider take tcp, shm or verbs, and calypso-info "
                "lists those that open on this machine");
  }
  if (rc != 0) fail("fi_getinfo(" + prov + ")", rc);
  if (!owned) throw Error("calypso net: fi_getinfo(" + prov + ") found no provider");
  return owned;
}

timespec to_timespec(microseconds t) {
  return {static_cast<time_t>(t.count() / 1000000), static_cast<long>(t.count() % 1000000 * 1000)};
}

int clamp_ms(std::chrono::milliseconds t) {
  return static_cast<int>(std::clamp<std::chrono::milliseconds::rep>(t.count(), 0, INT_MAX));
}

}  // namespace

static_assert(FI_ADDR_NOTAVAIL == kNoPeer, "an unknown sender reads as kNoPeer");

struct Endpoint::Impl {
  struct Received {   // a receive completion
    fi_cq_msg_entry entry;
    fi_addr_t from;   // FI_ADDR_NOTAVAIL: not a peer of ours, or no FI_SOURCE
  };
  explicit Impl(const EndpointConfig& c);
  void open_cqs();
  void open_ep();
  void open_wait_set();
  bool try_post_recv(std::uint32_t i) noexcept;
  void post_recv(std::uint32_t i) noexcept;
  bool release(OpContext& ctx) noexcept;
  void read_tx_error() noexcept;
  void reap_tx() noexcept;
  void nap_on_tx(Clock::time_point deadline, microseconds nap) noexcept;
  std::optional<std::uint32_t> take_free_slot();
  SendStatus send(PeerId to, std::span<const std::span<const std::byte>> parts,
                  std::chrono::milliseconds patience);
  SendStatus send_fragments(PeerId to, std::span<const std::span<const std::byte>> parts,
                            std::size_t len, Clock::time_point deadline);
  template <class Post>
  ssize_t post_with_retries(PeerId peer, Clock::time_point deadline, Post&& post) noexcept;
  template <class Done>
  bool progress_until(Clock::time_point deadline, Done&& done) noexcept;
  void deliver(std::span<const std::byte> received, PeerId from, const std::function<void(const Event&)>& fn);
  bool next_rx(Received& r);
  std::size_t poll(const std::function<void(const Event&)>& fn);
  bool ready_to_sleep() noexcept;
  SendStatus read(PeerId from, std::span<const Endpoint::ReadPart> parts, std::chrono::milliseconds patience);
  ssize_t post_read(PeerId from, const Endpoint::ReadPart& part, OpContext& ctx) noexcept;
  ssize_t post_read_as_one(PeerId from, std::span<const Endpoint::ReadPart> parts, OpContext& ctx) noexcept;
  void arm_timer(microseconds after) noexcept;
  bool wait(std::chrono::milliseconds timeout);
  void remove_peer(PeerId p) noexcept;

  // Plain state first, then buffers (they must outlive the endpoint that uses them),
  // then the libfabric objects and fds in creation order.
  EndpointConfig cfg;
  std::string prov_name;
  std::string shm_queue;                             // shm: "/<name>" of our queue file
  bool watched = false;                              // shm: calls can spin (stall_watch.hpp)
  std::optional<WatchedQueue> watched_queue;
  std::vector<std::uint32_t> tx_free;                // capacity reserved for every slot
  std::vector<std::uint32_t> rx_unposted;            // receive slots to repost
  std::vector<std::pair<PeerId, int>> peer_errors;   // queued for poll()
  std::optional<Received> rx_stash;                  // taken by a readiness check
  std::vector<std::byte> scratch;                    // gathers injected messages
  BufferPool rx_pool;
  BufferPool tx_pool;
  bool fd_wait = false;                              // CQs have wait fds (see top)
  bool timer_armed = false;
  microseconds poll_interval = kMinPollInterval;
  Address address;
  // Fragment mode (shm, see fragments.hpp): every message goes as injected fragments.
  std::size_t fragment_payload = 0;                  // 0: off
  std::uint64_t stream = 0;
  std::uint32_t next_seq = 0;
  std::optional<Reassembler> reassembler;
  std::size_t rx_count = 0;                          // receive slots kept posted
  bool rma = false;                                  // FI_RMA reads work (see expose)
  bool sources = false;                              // FI_SOURCE: receives name their sender
  bool reads_as_one = false;                         // see Endpoint::reads_as_one()
  std::uint64_t next_key = 1;                        // for providers without FI_MR_PROV_KEY
  std::array<OpContext, Endpoint::kMaxReadsTogether> read_ctx;   // reads in flight
  std::optional<Doorbell> bell;                      // when the CQs have no wait fd
  std::map<PeerId, Doorbell::Peer> peer_bells;
  // Peers on this host that take messages through shared memory (attach_local).
  std::map<PeerId, LocalChannel> channels;
  std::vector<std::byte> local_rx;                   // the message being delivered
  std::vector<PeerId> broken_channels;               // dropped for garbage (attach_local)
  std::uint64_t local_received = 0;
  void poll_channels(const std::function<void(const Event&)>& fn, std::size_t& delivered);
  void drop_channel(PeerId p) noexcept;
  // A channel that failed (garbage, or a broken consumer) is dropped for good: its peer
  // is not sent to through the provider either (see attach_local).
  void break_channel(PeerId p) {
    drop_channel(p);
    broken_channels.push_back(p);
  }
  void ring(PeerId to) noexcept {
    if (!bell) return;
    if (auto it = peer_bells.find(to); it != peer_bells.end()) bell->ring(it->second);
  }

  InfoPtr info;
  // A send or read failed in the provider, or was left in flight: the provider may then
  // refuse to close its domain (see FidClose).
  bool sends_lost = false;
  ~Impl() {   // runs before the members close
    const auto in_flight = [](const OpContext& c) { return c.in_flight; };
    if (std::any_of(tx_pool.ctx.begin(), tx_pool.ctx.end(), in_flight) ||
        std::any_of(read_ctx.begin(), read_ctx.end(), in_flight)) {
      sends_lost = true;
    }
  }
  FidPtr<fid_fabric> fabric;
  FidPtr<fid_domain> domain;
  FidPtr<fid_av> av;
  FidPtr<fid_cq> tx_cq;
  FidPtr<fid_cq> rx_cq;
  FidPtr<fid_ep> ep;
  Fd epoll;
  Fd timer;   // re-checks the CQs when they cannot be slept on (see top)
  int tx_fd = -1;
};

Endpoint::Impl::Impl(const EndpointConfig& c)
    : cfg(c), prov_name(full_provider_name(c.provider)), rx_pool(0, 0), tx_pool(0, 0) {
  // Wanted, in this order: RMA reads (if asked for) and senders reported; each is
  // dropped in turn where the provider lacks it (supports_read() and reports_senders()
  // say what the endpoint got). The last try's error is the one reported.
  // Senders only from ofi_rxm (over tcp or verbs), which names a connection's peer once
  // it is added and FI_ADDR_NOTAVAIL before. shm 1.17 also has FI_SOURCE, but names a
  // sender that was never added as one that was (net_test's MessagesNameTheirSender
  // saw an unknown third endpoint read as the second peer), so it is not asked there: a
  // name that can be another's would be worse than none.
  const bool names_senders = prov_name.ends_with(";ofi_rxm");
  const bool tries[][2] = {{true, true}, {true, false}, {false, true}, {false, false}};
  for (const auto& [with_rma, with_source] : tries) {
    if ((with_rma && !cfg.rma) || (with_source && !names_senders)) continue;
    try {
      info = get_info(prov_name, cfg.node, cfg.service, with_rma, with_source);
    } catch (const Error&) {
      if (with_rma || with_source) continue;
      throw;
    }
    rma = with_rma;
    sources = with_source;
    break;
  }
  if (rma) {
    const std::size_t most = Endpoint::kMaxReadsTogether;
    reads_as_one = prov_name == "tcp;ofi_rxm" && info->tx_attr->rma_iov_limit >= most &&
                   info->tx_attr->iov_limit >= most;
  }
  for (auto& c : read_ctx) c.is_read = true;
  if (cfg.max_message > info->ep_attr->max_msg_size) {
    throw Error("calypso net: max_message " + std::to_string(cfg.max_message) +
                " exceeds the provider's max_msg_size " +
                std::to_string(info->ep_attr->max_msg_size));
  }
  const std::size_t inject = info->tx_attr->inject_size;
  if (prov_name == "shm" && inject > sizeof(FragmentHeader)) {
    // Small receive slots, more of them: a 1 MiB message is 256 fragments. No send
    // slots: every fragment is injected.
    fragment_payload = inject - sizeof(FragmentHeader);
    stream = (std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
    reassembler.emplace(cfg.max_message, 256);
    rx_count = std::min<std::size_t>(4 * cfg.recv_depth, info->rx_attr->size);
    rx_count = std::max(rx_count, cfg.recv_depth);
    rx_pool = BufferPool(rx_count, inject);
    scratch.resize(inject);
  } else {
    rx_count = cfg.recv_depth;
    rx_pool = BufferPool(rx_count, cfg.max_message);
    tx_pool = BufferPool(cfg.send_depth, cfg.max_message);
    scratch.resize(std::min(inject, cfg.max_message));
    tx_free.reserve(cfg.send_depth);
    for (std::size_t i = cfg.send_depth; i-- > 0;) tx_free.push_back(static_cast<std::uint32_t>(i));
  }
  fabric = open_fid<fid_fabric>("fi_fabric", [&](fid_fabric** f) {
    return fi_fabric(info->fabric_attr, f, nullptr);
  });
  fabric.get_deleter().busy_is_known = &sends_lost;
  domain = open_fid<fid_domain>("fi_domain", [&](fid_domain** d) {
    return fi_domain(fabric.get(), info.get(), d, nullptr);
  });
  domain.get_deleter().busy_is_known = &sends_lost;
  fi_av_attr av_attr{};
  av_attr.type = info->domain_attr->av_type == FI_AV_UNSPEC ? FI_AV_TABLE
                                                            : info->domain_attr->av_type;
  av = open_fid<fid_av>("fi_av_open", [&](fid_av** a) {
    return fi_av_open(domain.get(), &av_attr, a, nullptr);
  });
  open_cqs();
  open_ep();
  if (!fd_wait && prov_name == "shm") {   // a doorbell only reaches processes on this host
    try {
      bell.emplace(address.bytes);
    } catch (const Error& e) {   // still correct without it, on the polling timer
      std::fprintf(stderr, "%s; polling instead\n", e.what());
    }
  }
  open_wait_set();
  rx_unposted.reserve(rx_count);
  for (std::uint32_t i = 0; i < rx_count; ++i) {
    if (!try_post_recv(i)) {
      throw Error("calypso net: could not post receive buffer " + std::to_string(i + 1) + " of " +
                  std::to_string(rx_count) + " (provider rx_size " +
                  std::to_string(info->rx_attr->size) + ")");
    }
  }
}

// FI_WAIT_FD lets wait() and an external event loop block in the kernel. A provider
// without it gets no wait object and is polled on a timer: its FI_WAIT_UNSPEC would
// be a sched_yield spin.
void Endpoint::Impl::open_cqs() {
  auto open = [&](std::size_t depth, fi_wait_obj wait, fid_cq** cq) {
    fi_cq_attr attr{};
    attr.format = FI_CQ_FORMAT_MSG;
    attr.size = std::max<std::size_t>(2 * depth, 64);
    attr.wait_obj = wait;
    return fi_cq_open(domain.get(), &attr, cq, nullptr);
  };
  fid_cq* probe = nullptr;
  fd_wait = open(cfg.send_depth, FI_WAIT_FD, &probe) == 0;
  tx_cq = FidPtr<fid_cq>(probe, FidClose<fid_cq>{"fi_cq_open(tx)"});
  const fi_wait_obj wait = fd_wait ? FI_WAIT_FD : FI_WAIT_NONE;
  if (!fd_wait) {
    tx_cq = open_fid<fid_cq>("fi_cq_open(tx)", [&](fid_cq** q) {
      return open(cfg.send_depth, wait, q);
    });
  }
  rx_cq = open_fid<fid_cq>("fi_cq_open(rx)", [&](fid_cq** q) {
    return open(cfg.recv_depth, wait, q);
  });
}

// shm names its queue file in /dev/shm "<pid>:<n>:<m>", m counting the process's
// endpoints. A process that dies without closing its endpoints leaves one file per
// endpoint, and once the pid is reused the new process's fi_enable finds them and fails
// with -FI_EBUSY (the provider takes any file whose creator pid is alive as in use:
// here that pid is our own). The provider unlinks the file as it refuses it, and the
// next endpoint takes the next name, which may be the dead process's next file: so
// retry a few times more than a process of ours ever opens endpoints.
void Endpoint::Impl::open_ep() {
  constexpr int kAttempts = 16;
  for (int attempt = 1;; ++attempt) {
    ep = open_fid<fid_ep>("fi_endpoint", [&](fid_ep** e) {
      const int rc = fi_endpoint(domain.get(), info.get(), e, nullptr);
      // tcp binds here: an address that is not this host's (--bind, CALYPSO_BIND).
      if (rc == -FI_EADDRNOTAVAIL && !cfg.node.empty()) {
        throw Error("calypso net: cannot listen at " + cfg.node + ": not an address of this host (" +
                    fi_strerror(-rc) + ")");
      }
      if (rc == -FI_EADDRINUSE && !cfg.service.empty()) {
        throw Error("calypso net: cannot listen at " + (cfg.node.empty() ? std::string("*") : cfg.node) + ":" +
                    cfg.service + ": the port is in use (another job's manager?): choose another (" +
                    fi_strerror(-rc) + ")");
      }
      return rc;
    });
    check("fi_ep_bind(av)", fi_ep_bind(ep.get(), &av->fid, 0));
    check("fi_ep_bind(tx cq)", fi_ep_bind(ep.get(), &tx_cq->fid, FI_TRANSMIT));
    check("fi_ep_bind(rx cq)", fi_ep_bind(ep.get(), &rx_cq->fid, FI_RECV));
    const int rc = fi_enable(ep.get());
    if (rc != -FI_EBUSY || attempt == kAttempts) {
      check("fi_enable", rc);
      break;
    }
    std::fprintf(stderr,
                 "calypso net: fi_enable: queue busy (%s; a stale /dev/shm file of a dead "
                 "process with this pid?), retrying with a new endpoint\n",
                 fi_strerror(-rc));
    ep.reset();
  }
  std::vector<std::byte> name(256);
  std::size_t len = name.size();
  int rc = fi_getname(&ep->fid, name.data(), &len);
  if (rc == -FI_ETOOSMALL) {
    name.resize(len);
    rc = fi_getname(&ep->fid, name.data(), &len);
  }
  check("fi_getname", rc);
  name.resize(len);
  address.bytes = std::move(name);
  if (prov_name == "shm") {
    shm_queue = address.shm_queue_name();
    watched = true;
    watched_queue.emplace(shm_queue);
  }
}

// One epoll set holding the CQ wait fds and the timer, so that callers see a single
// pollable fd whichever way the provider is waited on.
void Endpoint::Impl::open_wait_set() {
  epoll = Fd(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1");
  timer = Fd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK), "timerfd_create");
  int rx_fd = -1;
  if (fd_wait) {
    check("fi_control(tx cq, FI_GETWAIT)", fi_control(&tx_cq->fid, FI_GETWAIT, &tx_fd));
    check("fi_control(rx cq, FI_GETWAIT)", fi_control(&rx_cq->fid, FI_GETWAIT, &rx_fd));
  }
  for (int fd : {timer.get(), tx_fd, rx_fd, bell ? bell->fd() : -1}) {
    if (fd < 0) continue;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0 && errno != EEXIST) {
      fail("epoll_ctl", -errno);
    }
  }
}

bool Endpoint::Impl::try_post_recv(std::uint32_t i) noexcept {
  const ProviderCall call(watched, "fi_recv");
  const ssize_t rc = fi_recv(ep.get(), rx_pool.at(i), rx_pool.slot, nullptr, FI_ADDR_UNSPEC,
                             &rx_pool.ctx[i]);
  if (rc != 0 && rc != -FI_EAGAIN) log_error("fi_recv", rc);
  return rc == 0;
}

// A slot that cannot be posted now (e.g. -FI_EAGAIN) is retried by the next poll().
void Endpoint::Impl::post_recv(std::uint32_t i) noexcept {
  if (!try_post_recv(i)) rx_unposted.push_back(i);   // capacity reserved: no allocation
}

// A finished send frees its slot, unless remove_peer already replaced it.
bool Endpoint::Impl::release(OpContext& ctx) noexcept {
  ctx.in_flight = false;
  if (ctx.is_read) return false;
  if (ctx.abandoned) return false;
  tx_free.push_back(ctx.index);
  return true;
}

void Endpoint::Impl::read_tx_error() noexcept {
  fi_cq_err_entry err{};
  const ssize_t rc = [&] {
    const ProviderCall call(watched, "fi_cq_readerr(tx)");
    return fi_cq_readerr(tx_cq.get(), &err, 0);
  }();
  if (rc < 0) {
    if (rc != -FI_EAGAIN) log_error("fi_cq_readerr(tx)", rc);
    return;
  }
  sends_lost = true;
  auto* ctx = static_cast<OpContext*>(err.op_context);
  if (!ctx) return log_error("send failed (no context)", err.err);
  if (ctx->is_read) ctx->error = err.err ? err.err : FI_EIO;
  if (!release(*ctx)) return;
  try {
    peer_errors.emplace_back(ctx->peer, err.err);
  } catch (const std::bad_alloc&) {
    log_error("send failed (event dropped: out of memory)", err.err);
  }
}

// Reading the CQ is also what drives a manual-progress provider forward.
void Endpoint::Impl::reap_tx() noexcept {
  fi_cq_msg_entry e[16];
  for (;;) {
    const ssize_t n = [&] {
      const ProviderCall call(watched, "fi_cq_read(tx)");
      return fi_cq_read(tx_cq.get(), e, 16);
    }();
    if (n == -FI_EAVAIL) {
      read_tx_error();
      continue;
    }
    if (n < 0) {
      if (n != -FI_EAGAIN) log_error("fi_cq_read(tx)", n);
      return;
    }
    for (ssize_t i = 0; i < n; ++i) {
      if (auto* ctx = static_cast<OpContext*>(e[i].op_context)) release(*ctx);
    }
  }
}

// Sleeps until the tx CQ signals, `nap` passes or the deadline comes. The nap bounds
// the sleep because a provider's -FI_EAGAIN (flow control, a connection being set up)
// may clear without a completion, and a polled provider has no fd at all. This runs
// only while a send is pending, never while idle.
void Endpoint::Impl::nap_on_tx(Clock::time_point deadline, microseconds nap) noexcept {
  const auto left = std::chrono::duration_cast<microseconds>(deadline - Clock::now());
  const timespec ts = to_timespec(std::clamp(left, microseconds(0), nap));
  fid* fids[] = {&tx_cq->fid};
  const bool can_wait = fd_wait && [&] {
    const ProviderCall call(watched, "fi_trywait(tx)");
    return fi_trywait(fabric.get(), fids, 1) == FI_SUCCESS;
  }();
  if (can_wait) {
    pollfd p{tx_fd, POLLIN, 0};
    ::ppoll(&p, 1, &ts, nullptr);
  } else {
    ::nanosleep(&ts, nullptr);   // the caller has just reaped (see the top on trywait)
  }
}

std::optional<std::uint32_t> Endpoint::Impl::take_free_slot() {
  if (tx_free.empty()) reap_tx();
  if (tx_free.empty()) return std::nullopt;
  const std::uint32_t i = tx_free.back();
  tx_free.pop_back();
  return i;
}

// Small messages are injected (the provider copies them, no slot is held); others are
// copied into a slot. Either way the post is retried on -FI_EAGAIN, with progress and
// a growing nap in between, until `patience` runs out; any other error is the peer's.
SendStatus Endpoint::Impl::send(PeerId to, std::span<const std::span<const std::byte>> parts,
                                std::chrono::milliseconds patience) {
  std::size_t len = 0;
  for (auto p : parts) len += p.size();
  if (len > cfg.max_message) {
    throw Error("calypso net: message of " + std::to_string(len) +
                " bytes exceeds max_message " + std::to_string(cfg.max_message));
  }
  const auto deadline = Clock::now() + patience;
  poll_interval = kMinPollInterval;   // a reply may follow soon
  if (auto it = channels.find(to); it != channels.end()) {
    const SendStatus status = it->second.send(parts, len, deadline);
    if (status == SendStatus::peer_failed) {
      break_channel(to);
      peer_errors.emplace_back(to, Endpoint::kBrokenChannel);
    }
    return status;
  }
  if (std::find(broken_channels.begin(), broken_channels.end(), to) != broken_channels.end()) {
    return SendStatus::peer_failed;
  }
  if (fragment_payload > 0) return send_fragments(to, parts, len, deadline);
  auto gather = [&](std::byte* dst) {
    for (auto p : parts) dst = std::copy(p.begin(), p.end(), dst);
  };
  const bool inject = len <= scratch.size();
  if (inject) gather(scratch.data());
  std::optional<std::uint32_t> slot;
  std::byte* buf = inject ? scratch.data() : nullptr;
  for (microseconds nap = kMinSendNap;; nap = std::min(2 * nap, kMaxSendNap)) {
    if (!buf && (slot = take_free_slot())) {
      buf = tx_pool.at(*slot);
      gather(buf);
      tx_pool.ctx[*slot].peer = to;
    }
    if (buf) {
      const ssize_t rc = [&] {
        const ProviderCall call(watched, "fi_inject/fi_send");
        return inject ? fi_inject(ep.get(), buf, len, to)
                      : fi_send(ep.get(), buf, len, nullptr, to, &tx_pool.ctx[*slot]);
      }();
      if (rc == 0 && slot) tx_pool.ctx[*slot].in_flight = true;
      if (rc == 0) {
        ring(to);
        return SendStatus::ok;
      }
      if (rc != -FI_EAGAIN) {
        if (slot) tx_free.push_back(*slot);
        sends_lost = true;
        peer_errors.emplace_back(to, static_cast<int>(-rc));
        return SendStatus::peer_failed;
      }
    }
    reap_tx();
    if (Clock::now() >= deadline) {
      if (slot) tx_free.push_back(*slot);
      return SendStatus::again;
    }
    nap_on_tx(deadline, nap);
  }
}

// Each fragment is injected, so none of them waits on the receiver once posted; when
// patience runs out halfway, the receiver drops the partial message in time (its
// Reassembler keeps a bounded number).
SendStatus Endpoint::Impl::send_fragments(PeerId to, std::span<const std::span<const std::byte>> parts,
                                          std::size_t len, Clock::time_point deadline) {
  FragmentHeader h{stream, next_seq++, 0, static_cast<std::uint32_t>(len), kFragmentMagic};
  std::size_t offset = 0;
  do {
    const std::size_t n = std::min(fragment_payload, len - offset);
    h.offset = static_cast<std::uint32_t>(offset);
    std::memcpy(scratch.data(), &h, sizeof h);
    copy_range(parts, offset, n, scratch.data() + sizeof h);
    const ssize_t rc = post_with_retries(to, deadline, [&] {
      const ProviderCall call(watched, "fi_inject");
      return fi_inject(ep.get(), scratch.data(), sizeof h + n, to);
    });
    if (rc == -FI_EAGAIN) return SendStatus::again;
    if (rc != 0) {
      sends_lost = true;
      peer_errors.emplace_back(to, static_cast<int>(-rc));
      return SendStatus::peer_failed;
    }
    if (offset == 0) ring(to);   // the receiver can start while the rest follows
    offset += n;
  } while (offset < len);
  if (len > fragment_payload) ring(to);
  return SendStatus::ok;
}

// Hands a received buffer to fn: as it is, or, in fragment mode, once its message is whole.
void Endpoint::Impl::deliver(std::span<const std::byte> received, PeerId from,
                             const std::function<void(const Event&)>& fn) {
  if (!reassembler) return fn(Event{Event::Kind::message, from, received, 0});
  const auto out = reassembler->add(received, from);
  if (out.verdict == Reassembler::Verdict::malformed) {
    std::fprintf(stderr, "calypso net: dropped a malformed fragment of %zu bytes: %s\n",
                 received.size(), out.why);
  } else if (out.verdict == Reassembler::Verdict::complete) {
    fn(Event{Event::Kind::message, from, out.message, 0});
  }
}

// One batch of reads at a time: the worker's fault path is their only user. A read that
// ran out of patience keeps its context until it completes; the next batch waits for
// that, so a late completion can never be taken for a new read's.
SendStatus Endpoint::Impl::read(PeerId from, std::span<const Endpoint::ReadPart> parts,
                                std::chrono::milliseconds patience) {
  if (!rma) throw Error("calypso net: read() on an endpoint without RMA");
  if (parts.empty() || parts.size() > read_ctx.size()) {
    throw Error("calypso net: " + std::to_string(parts.size()) + " reads at once (1 to " +
                std::to_string(read_ctx.size()) + ")");
  }
  for (const auto& p : parts) {
    if (p.offset > p.remote.size || p.dst.size() > p.remote.size - p.offset) return SendStatus::peer_failed;
  }
  const auto deadline = Clock::now() + patience;
  auto finished = [this] {
    return std::none_of(read_ctx.begin(), read_ctx.end(), [](const OpContext& c) { return c.in_flight; });
  };
  if (!progress_until(deadline, finished)) return SendStatus::again;
  // Several parts as one read where the provider serves them so (reads_as_one()): one
  // post on read_ctx[0]; else one post per part.
  const bool as_one = parts.size() > 1 && reads_as_one;
  for (std::size_t i = 0; i < parts.size(); ++i) read_ctx[i].error = 0;
  for (std::size_t i = 0; i < (as_one ? 1 : parts.size()); ++i) {
    OpContext& ctx = read_ctx[i];
    const ssize_t rc = post_with_retries(from, deadline, [&] {
      return as_one ? post_read_as_one(from, parts, ctx) : post_read(from, parts[i], ctx);
    });
    if (rc != 0) {
      ring(from);   // for the reads already posted
      return rc == -FI_EAGAIN ? SendStatus::again : SendStatus::peer_failed;
    }
    ctx.in_flight = true;
  }
  ring(from);   // a peer that must progress the reads (tcp) may be asleep
  if (!progress_until(deadline, finished)) return SendStatus::again;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (read_ctx[i].error != 0) return SendStatus::peer_failed;
  }
  return SendStatus::ok;
}

ssize_t Endpoint::Impl::post_read(PeerId from, const Endpoint::ReadPart& p, OpContext& ctx) noexcept {
  const ProviderCall call(watched, "fi_read");
  return fi_read(ep.get(), p.dst.data(), p.dst.size(), p.local ? p.local->descriptor() : nullptr, from,
                 p.remote.address + p.offset, p.remote.key, &ctx);
}

// Several reads from one peer as one operation (fi_readmsg, one remote range per part;
// see reads_as_one()): the peer serves one request instead of one per part (tcp: its
// response carries the ranges in order; ~5 us of a ~65 us read fault here).
// FI_COMPLETION is the only flag, as fi_read() has none beyond the endpoint's (none are
// set).
ssize_t Endpoint::Impl::post_read_as_one(PeerId from, std::span<const Endpoint::ReadPart> parts,
                                         OpContext& ctx) noexcept {
  std::array<iovec, Endpoint::kMaxReadsTogether> iov{};
  std::array<void*, Endpoint::kMaxReadsTogether> desc{};
  std::array<fi_rma_iov, Endpoint::kMaxReadsTogether> rma_iov{};
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const auto& p = parts[i];
    iov[i] = {p.dst.data(), p.dst.size()};
    desc[i] = p.local ? p.local->descriptor() : nullptr;
    rma_iov[i] = {p.remote.address + p.offset, p.dst.size(), p.remote.key};
  }
  fi_msg_rma msg{};
  msg.msg_iov = iov.data();
  msg.desc = desc.data();
  msg.iov_count = parts.size();
  msg.addr = from;
  msg.rma_iov = rma_iov.data();
  msg.rma_iov_count = parts.size();
  msg.context = &ctx;
  const ProviderCall call(watched, "fi_readmsg");
  return fi_readmsg(ep.get(), &msg, FI_COMPLETION);
}

// Calls post() until it returns anything but -FI_EAGAIN, with progress and a growing
// nap in between, and a ring, since a peer whose queue is full must drain it. Returns
// post()'s result, or -FI_EAGAIN once the deadline has passed.
template <class Post>
ssize_t Endpoint::Impl::post_with_retries(PeerId peer, Clock::time_point deadline, Post&& post) noexcept {
  for (microseconds nap = kMinSendNap;; nap = std::min(2 * nap, kMaxSendNap)) {
    const ssize_t rc = post();
    if (rc != -FI_EAGAIN) return rc;
    ring(peer);
    reap_tx();
    if (Clock::now() >= deadline) return -FI_EAGAIN;
    nap_on_tx(deadline, nap);
  }
}

// Progresses the transmit side until done() or the deadline; false on timeout.
template <class Done>
bool Endpoint::Impl::progress_until(Clock::time_point deadline, Done&& done) noexcept {
  for (microseconds nap = kMinPollInterval;; nap = std::min(2 * nap, kMaxSendNap)) {
    reap_tx();
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    nap_on_tx(deadline, nap);
  }
}

// Next receive completion (stashed by ready_to_sleep() or read now). Failed receives
// are logged and their buffers reposted. Returns false when nothing is ready.
bool Endpoint::Impl::next_rx(Received& r) {
  if (rx_stash) {
    r = *std::exchange(rx_stash, std::nullopt);
    return true;
  }
  r.from = FI_ADDR_NOTAVAIL;
  for (;;) {
    const ssize_t n = [&] {
      const ProviderCall call(watched, "fi_cq_read(rx)");
      return sources ? fi_cq_readfrom(rx_cq.get(), &r.entry, 1, &r.from) : fi_cq_read(rx_cq.get(), &r.entry, 1);
    }();
    if (n == 1) return true;
    if (n != -FI_EAVAIL) {
      if (n != -FI_EAGAIN) log_error("fi_cq_read(rx)", n);
      return false;
    }
    fi_cq_err_entry err{};
    const ssize_t got = [&] {
      const ProviderCall call(watched, "fi_cq_readerr(rx)");
      return fi_cq_readerr(rx_cq.get(), &err, 0);
    }();
    if (got < 0) return false;
    log_error("receive failed", err.err);
    if (auto* ctx = static_cast<OpContext*>(err.op_context)) post_recv(ctx->index);
  }
}

// At most recv_depth messages per call so a flooding peer cannot starve the caller;
// wait() returns at once while more are pending.
std::size_t Endpoint::Impl::poll(const std::function<void(const Event&)>& fn) {
  std::erase_if(rx_unposted, [this](std::uint32_t i) { return try_post_recv(i); });
  reap_tx();
  std::size_t delivered = 0;
  while (!peer_errors.empty()) {
    const auto [peer, err] = peer_errors.front();
    peer_errors.erase(peer_errors.begin());
    ++delivered;
    fn(Event{Event::Kind::peer_error, peer, {}, err});
  }
  // Channels first: a local peer's messages are all there except what it sends from
  // another endpoint (a worker's `leave`), which it sent after them.
  poll_channels(fn, delivered);
  Received r{};
  for (std::size_t n = 0; n < rx_count && next_rx(r); ++n) {
    struct Repost {   // the buffer goes back even if fn throws
      Impl* self;
      std::uint32_t slot;
      ~Repost() { self->post_recv(slot); }
    } repost{this, static_cast<OpContext*>(r.entry.op_context)->index};
    ++delivered;
    deliver({rx_pool.at(repost.slot), r.entry.len}, r.from, fn);
  }
  if (delivered > 0) poll_interval = kMinPollInterval;   // a reply may follow soon
  return delivered;
}

// At most rx_count messages from each channel, as from the CQ. Channels are looked up by
// key after every callback: fn may remove a peer.
void Endpoint::Impl::poll_channels(const std::function<void(const Event&)>& fn, std::size_t& delivered) {
  for (auto it = channels.begin(); it != channels.end();) {
    const PeerId p = it->first;
    it->second.awake();
    for (std::size_t n = 0; n < rx_count && it != channels.end(); ++n, it = channels.find(p)) {
      const LocalChannel::Received r = it->second.receive(local_rx);
      if (r == LocalChannel::Received::none) break;
      ++delivered;
      if (r == LocalChannel::Received::corrupt) {
        std::fprintf(stderr, "calypso net: a local channel delivered a malformed message; dropped the channel\n");
        break_channel(p);
        fn(Event{Event::Kind::peer_error, p, {}, Endpoint::kBrokenChannel});
        break;
      }
      ++local_received;
      fn(Event{Event::Kind::message, p, local_rx, 0});
    }
    it = channels.upper_bound(p);
  }
}

void Endpoint::Impl::drop_channel(PeerId p) noexcept {
  auto it = channels.find(p);
  if (it == channels.end()) return;
  ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, it->second.bell_fd(), nullptr);
  channels.erase(it);
}

// Sleeping on the CQ fds is safe when fi_trywait says so. Otherwise the CQs are
// checked here (progress plus a look at the rx CQ, keeping what it finds) and, if
// they are empty, the timer is armed for the next, longer, interval (see the top).
bool Endpoint::Impl::ready_to_sleep() noexcept {
  if (!peer_errors.empty() || rx_stash) return false;
  for (auto& [p, c] : channels) {
    if (c.sleep_unless_pending()) return false;
  }
  if (bell) bell->drain();   // before the check: a ring after it still wakes us
  fid* fids[] = {&tx_cq->fid, &rx_cq->fid};
  const bool can_sleep = fd_wait && [&] {
    const ProviderCall call(watched, "fi_trywait");
    return fi_trywait(fabric.get(), fids, 2) == FI_SUCCESS;
  }();
  if (can_sleep) {
    if (timer_armed) arm_timer(microseconds(0));   // a stale expiry would wake us
    return true;
  }
  reap_tx();
  Received r{};
  if (next_rx(r)) rx_stash = r;
  if (!peer_errors.empty() || rx_stash) {
    poll_interval = kMinPollInterval;
    return false;
  }
  if (bell) {
    arm_timer(kBellSafetyInterval);
    return true;
  }
  arm_timer(poll_interval);
  poll_interval = std::min(poll_interval * 2, kMaxPollInterval);
  return true;
}

// Setting the timer also clears an expiry that was not read; zero disarms it.
void Endpoint::Impl::arm_timer(microseconds after) noexcept {
  const itimerspec when{{0, 0}, to_timespec(after)};
  ::timerfd_settime(timer.get(), 0, &when, nullptr);
  timer_armed = after.count() > 0;
}

// A timer wake-up only means "check again"; a CQ fd, or a check that finds
// something, ends the wait early.
bool Endpoint::Impl::wait(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (!ready_to_sleep()) return true;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    epoll_event ev{};
    const int n = ::epoll_wait(epoll.get(), &ev, 1, clamp_ms(left));
    if (n == 0) return false;
    if (n < 0 || ev.data.fd != timer.get()) return true;   // EINTR: "may have something"
  }
}

// A send to a dead peer may never complete (tcp;ofi_rxm drops a rendezvous send when
// the connection goes; shm waits forever for the dead receiver's reply), so its slot
// is retired and replaced to keep the pool at send_depth. The address then stays in
// the AV until the endpoint closes: shm 1.17 crashes (SIGSEGV in its progress) when a
// peer with a send outstanding is removed. Errors still queued for the peer are
// dropped, since its PeerId may be handed out again.
void Endpoint::Impl::remove_peer(PeerId p) noexcept {
  reap_tx();
  bool outstanding = false;
  try {
    for (std::size_t i = 0, n = tx_pool.ctx.size(); i < n; ++i) {   // add() may grow it
      OpContext& ctx = tx_pool.ctx[i];
      if (!ctx.in_flight || ctx.peer != p) continue;
      outstanding = true;
      if (ctx.abandoned) continue;
      ctx.abandoned = true;
      tx_free.reserve(tx_pool.ctx.size() + 1);
      tx_free.push_back(tx_pool.add());
    }
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "calypso net: remove_peer: out of memory replacing send buffers\n");
  }
  std::erase_if(peer_errors, [p](const auto& e) { return e.first == p; });
  peer_bells.erase(p);
  drop_channel(p);
  std::erase(broken_channels, p);
  fi_addr_t addr = p;
  if (outstanding) {
    sends_lost = true;   // the provider holds them until it closes (see FidClose)
    return;
  }
  if (int rc = fi_av_remove(av.get(), &addr, 1, 0); rc != 0) log_error("fi_av_remove", rc);
}

Endpoint Endpoint::open(const EndpointConfig& cfg) {
  if (cfg.max_message == 0 || cfg.recv_depth == 0 || cfg.send_depth == 0) {
    throw Error("calypso net: max_message, recv_depth and send_depth must be positive");
  }
  return Endpoint(std::make_unique<Impl>(cfg));
}

Endpoint::Endpoint(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Endpoint::Endpoint(Endpoint&&) noexcept = default;
Endpoint& Endpoint::operator=(Endpoint&&) noexcept = default;
Endpoint::~Endpoint() = default;

Address Endpoint::local_address() const { return impl_->address; }

void Endpoint::release_before_exit() noexcept {
  if (impl_ && !impl_->shm_queue.empty()) ::shm_unlink(impl_->shm_queue.c_str());
}
const std::string& Endpoint::provider_name() const { return impl_->prov_name; }
std::size_t Endpoint::max_message() const { return impl_->cfg.max_message; }

PeerId Endpoint::add_peer(const Address& a) {
  if (a.bytes.empty()) throw Error("calypso net: add_peer: empty address");
  std::vector<std::byte> bytes = a.bytes;
  // String-format addresses (shm) are read up to a NUL; never let the provider overrun.
  if (impl_->info->addr_format == FI_ADDR_STR && bytes.back() != std::byte{0}) {
    bytes.push_back(std::byte{0});
  }
  fi_addr_t addr = FI_ADDR_NOTAVAIL;
  const int n = fi_av_insert(impl_->av.get(), bytes.data(), 1, &addr, 0, nullptr);
  if (n != 1) fail("fi_av_insert(" + a.to_string() + ")", n < 0 ? n : -FI_EINVAL);
  if (impl_->bell) impl_->peer_bells[addr] = Doorbell::peer(a.bytes);
  return addr;
}

void Endpoint::remove_peer(PeerId p) noexcept { impl_->remove_peer(p); }

bool Endpoint::supports_read() const { return impl_->rma; }
bool Endpoint::reports_senders() const { return impl_->sources; }

Registration Endpoint::expose(void* base, std::size_t len) {
  Impl& m = *impl_;
  if (!m.rma) throw Error("calypso net: expose() on an endpoint without RMA");
  const std::uint64_t mode = static_cast<std::uint64_t>(m.info->domain_attr->mr_mode);
  Registration r;
  check("fi_mr_reg", fi_mr_reg(m.domain.get(), base, len, FI_READ | FI_REMOTE_READ, 0,
                               m.next_key++, 0, &r.mr_, nullptr));
  if (mode & FI_MR_ENDPOINT) {
    check("fi_mr_bind", fi_mr_bind(r.mr_, &m.ep->fid, 0));
    check("fi_mr_enable", fi_mr_enable(r.mr_));
  }
  r.desc_ = fi_mr_desc(r.mr_);
  r.remote_.address = (mode & FI_MR_VIRT_ADDR) ? reinterpret_cast<std::uintptr_t>(base) : 0;
  r.remote_.key = fi_mr_key(r.mr_);
  r.remote_.size = len;
  return r;
}

SendStatus Endpoint::read(PeerId from, const RemoteMemory& remote, std::uint64_t offset,
                          std::span<std::byte> dst, const Registration& local,
                          std::chrono::milliseconds patience) {
  const ReadPart part{remote, offset, dst, &local};
  return impl_->read(from, std::span(&part, 1), patience);
}

SendStatus Endpoint::read_together(PeerId from, std::span<const ReadPart> parts,
                                   std::chrono::milliseconds patience) {
  return impl_->read(from, parts, patience);
}

bool Endpoint::reads_as_one() const { return impl_->reads_as_one; }

bool Endpoint::serves_reads_in_order() const {
  const Impl& m = *impl_;
  if (!m.rma || m.prov_name != "tcp;ofi_rxm") return false;
  return (m.info->tx_attr->msg_order & FI_ORDER_RAR) && tcp_may_serve_reads_in_order();
}

bool Endpoint::tcp_may_serve_reads_in_order() noexcept {
  // FI_ORDER_RAR orders the reads' completions, not when each read's bytes are taken
  // from memory; that comes from the tcp provider's internals, audited only in the
  // libfabric releases below. Any other release (the one loaded, not the one built
  // against) keeps two dependent reads: slower, never torn.
  if (!audited_for_ordered_reads(fi_version())) return false;
  return !std::getenv("FI_TCP_ZEROCOPY_SIZE") && !std::getenv("FI_TCP_IO_URING");
}

bool Endpoint::audited_for_ordered_reads(std::uint32_t version) noexcept {
  return FI_MAJOR(version) == 1 && FI_MINOR(version) == 17;   // 1.17.x: see the header
}

Registration::Registration(Registration&& o) noexcept
    : mr_(std::exchange(o.mr_, nullptr)), desc_(o.desc_), remote_(o.remote_) {}
Registration& Registration::operator=(Registration&& o) noexcept {
  std::swap(mr_, o.mr_);
  std::swap(desc_, o.desc_);
  std::swap(remote_, o.remote_);
  return *this;
}
Registration::~Registration() {
  if (mr_ == nullptr) return;
  if (int rc = fi_close(&mr_->fid); rc != 0) log_error("fi_close(mr)", rc);
}

SendStatus Endpoint::send(PeerId to, std::span<const std::span<const std::byte>> parts,
                          std::chrono::milliseconds patience) {
  return impl_->send(to, parts, patience);
}

SendStatus Endpoint::send(PeerId to, std::span<const std::byte> msg,
                          std::chrono::milliseconds patience) {
  const std::span<const std::byte> one[] = {msg};
  return impl_->send(to, one, patience);
}

std::size_t Endpoint::poll(const std::function<void(const Event&)>& fn) { return impl_->poll(fn); }
bool Endpoint::wait(std::chrono::milliseconds timeout) { return impl_->wait(timeout); }
int Endpoint::wait_fd() const { return impl_->epoll.get(); }

void Endpoint::attach_local(PeerId p, LocalChannel&& channel) {
  Impl& m = *impl_;
  m.drop_channel(p);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = channel.bell_fd();
  if (::epoll_ctl(m.epoll.get(), EPOLL_CTL_ADD, channel.bell_fd(), &ev) != 0) fail("epoll_ctl", -errno);
  m.channels.emplace(p, std::move(channel));
  if (m.local_rx.capacity() < m.cfg.max_message) m.local_rx.reserve(m.cfg.max_message);
}

std::uint64_t Endpoint::local_messages() const { return impl_->local_received; }
bool Endpoint::ready_to_sleep() { return impl_->ready_to_sleep(); }

std::vector<std::string> available_providers() {
  std::vector<std::string> found;
  for (const char* name : {"tcp", "shm", "verbs"}) {
    try {
      get_info(full_provider_name(name), {}, {});
      found.emplace_back(name);
    } catch (const Error&) {
      // Not present on this machine.
    }
  }
  return found;
}

}  // namespace calypso::net
