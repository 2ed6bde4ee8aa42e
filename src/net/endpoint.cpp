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
//    arrive, and fi_trywait works. wait() and wait_fd() block in the kernel.
//  - "shm" accepts only FI_WAIT_NONE, FI_WAIT_YIELD and FI_WAIT_UNSPEC (= YIELD):
//    fi_cq_sread spins on sched_yield, and nothing signals a sleeping receiver. For
//    such providers the CQs get no wait object and the endpoint checks them on a
//    timerfd whose period backs off from 20 us (right after activity) to 2 ms (idle):
//    a reply that comes within microseconds is still caught at once, and an idle
//    endpoint costs about 500 short wake-ups a second instead of a spinning core.
#include "net/endpoint.hpp"

#include <poll.h>
#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <optional>
#include <type_traits>
#include <utility>

namespace calypso::net {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::microseconds;

// Bounds of the back-off for providers that must be polled (see the top of the file).
constexpr microseconds kMinPollInterval{20};
constexpr microseconds kMaxPollInterval{2000};

timespec to_timespec(microseconds t) {
  return {static_cast<time_t>(t.count() / 1000000), static_cast<long>(t.count() % 1000000 * 1000)};
}

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

const char* class_name(std::size_t fclass) noexcept {
  switch (fclass) {
    case FI_CLASS_FABRIC: return "fi_close(fabric)";
    case FI_CLASS_DOMAIN: return "fi_close(domain)";
    case FI_CLASS_AV: return "fi_close(av)";
    case FI_CLASS_CQ: return "fi_close(cq)";
    case FI_CLASS_EP: return "fi_close(ep)";
    default: return "fi_close";
  }
}

template <class T>
struct FidClose {
  void operator()(T* p) const noexcept {
    if (int rc = fi_close(&p->fid); rc != 0) log_error(class_name(p->fid.fclass), rc);
  }
};
template <class T>
using FidPtr = std::unique_ptr<T, FidClose<T>>;

struct InfoFree {
  void operator()(fi_info* p) const noexcept { fi_freeinfo(p); }
};
using InfoPtr = std::unique_ptr<fi_info, InfoFree>;

// An owned file descriptor (the epoll set that merges the two CQ wait fds).
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
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
};
static_assert(std::is_standard_layout_v<OpContext> && offsetof(OpContext, fi) == 0);

// A fixed array of max_message-sized slots with their operation contexts.
struct BufferPool {
  BufferPool(std::size_t count, std::size_t size)
      : mem(std::make_unique_for_overwrite<std::byte[]>(count * size)), slot(size),
        ctx(count) {
    for (std::size_t i = 0; i < count; ++i) ctx[i].index = static_cast<std::uint32_t>(i);
  }
  std::byte* at(std::size_t i) const { return mem.get() + i * slot; }
  std::unique_ptr<std::byte[]> mem;
  std::size_t slot;
  std::vector<OpContext> ctx;
};

std::string full_provider_name(const std::string& name) {
  if (name == "tcp") return "tcp;ofi_rxm";
  if (name == "verbs") return "verbs;ofi_rxm";
  return name;
}

InfoPtr get_info(const std::string& prov, const std::string& node, const std::string& service) {
  InfoPtr hints(fi_allocinfo());
  if (!hints) throw Error("calypso net: fi_allocinfo failed");
  hints->ep_attr->type = FI_EP_RDM;
  hints->caps = FI_MSG;
  hints->mode = FI_CONTEXT | FI_CONTEXT2;   // every op carries an OpContext
  hints->domain_attr->threading = FI_THREAD_DOMAIN;
  hints->fabric_attr->prov_name = ::strdup(prov.c_str());   // freed by fi_freeinfo
  const bool bind = !node.empty() || !service.empty();
  fi_info* info = nullptr;
  const int rc = fi_getinfo(FI_VERSION(1, 17), node.empty() ? nullptr : node.c_str(),
                            service.empty() ? nullptr : service.c_str(),
                            bind ? FI_SOURCE : 0, hints.get(), &info);
  InfoPtr owned(info);
  if (rc != 0) fail("fi_getinfo(" + prov + ")", rc);
  if (!owned) throw Error("calypso net: fi_getinfo(" + prov + ") found no provider");
  return owned;
}

int clamp_ms(std::chrono::milliseconds t) {
  return static_cast<int>(std::clamp<std::chrono::milliseconds::rep>(t.count(), 0, INT_MAX));
}

}  // namespace

struct Endpoint::Impl {
  explicit Impl(const EndpointConfig& c);
  void open_cqs();
  void open_ep();
  void open_wait_set();
  void post_recv(std::uint32_t i) noexcept;
  void repost_pending() noexcept;
  void reap_tx() noexcept;
  void read_tx_error() noexcept;
  void handle_tx(const fi_cq_msg_entry& e) noexcept;
  void block_tx(Clock::time_point deadline, microseconds slice) noexcept;
  std::optional<std::uint32_t> acquire_send_buffer(Clock::time_point deadline);
  template <class Post>
  SendStatus post_with_retry(PeerId to, Clock::time_point deadline, Post&& post);
  SendStatus send(PeerId to, std::span<const std::span<const std::byte>> parts,
                  std::chrono::milliseconds patience);
  std::size_t poll(const std::function<void(const Event&)>& fn);
  bool next_rx(fi_cq_msg_entry& e);
  bool wait(std::chrono::milliseconds timeout);
  bool ready_to_sleep() noexcept;

  // Plain state first, then buffers (they must outlive the endpoint that uses them),
  // then the libfabric objects in creation order.
  EndpointConfig cfg;
  std::string prov_name;
  std::vector<std::uint32_t> tx_free;
  std::vector<std::uint32_t> rx_unposted;   // receive slots that failed to repost
  std::vector<std::pair<PeerId, int>> peer_errors;   // queued for poll()
  std::optional<fi_cq_msg_entry> rx_stash;  // a receive taken by a readiness check
  std::vector<std::byte> scratch;           // gathers injected messages
  BufferPool rx_pool;
  BufferPool tx_pool;
  bool fd_wait = false;                     // else polled on a timerfd (see top)
  microseconds poll_interval = kMinPollInterval;
  int tx_fd = -1;
  int rx_fd = -1;
  Address address;

  InfoPtr info;
  FidPtr<fid_fabric> fabric;
  FidPtr<fid_domain> domain;
  FidPtr<fid_av> av;
  FidPtr<fid_cq> tx_cq;
  FidPtr<fid_cq> rx_cq;
  FidPtr<fid_ep> ep;
  Fd epoll;
  Fd timer;   // only for providers without FI_WAIT_FD
};

Endpoint::Impl::Impl(const EndpointConfig& c)
    : cfg(c), prov_name(full_provider_name(c.provider)), rx_pool(c.recv_depth, c.max_message),
      tx_pool(c.send_depth, c.max_message) {
  info = get_info(prov_name, cfg.node, cfg.service);
  if (cfg.max_message > info->ep_attr->max_msg_size) {
    throw Error("calypso net: max_message " + std::to_string(cfg.max_message) +
                " exceeds the provider's max_msg_size " +
                std::to_string(info->ep_attr->max_msg_size));
  }
  fid_fabric* f = nullptr;
  check("fi_fabric", fi_fabric(info->fabric_attr, &f, nullptr));
  fabric.reset(f);
  fid_domain* d = nullptr;
  check("fi_domain", fi_domain(fabric.get(), info.get(), &d, nullptr));
  domain.reset(d);
  fi_av_attr av_attr{};
  av_attr.type = info->domain_attr->av_type == FI_AV_UNSPEC ? FI_AV_TABLE
                                                            : info->domain_attr->av_type;
  fid_av* a = nullptr;
  check("fi_av_open", fi_av_open(domain.get(), &av_attr, &a, nullptr));
  av.reset(a);
  open_cqs();
  open_ep();
  open_wait_set();
  tx_free.reserve(cfg.send_depth);
  for (std::size_t i = cfg.send_depth; i-- > 0;) tx_free.push_back(static_cast<std::uint32_t>(i));
  rx_unposted.reserve(cfg.recv_depth);
  scratch.resize(std::min(info->tx_attr->inject_size, cfg.max_message));
  for (std::uint32_t i = 0; i < cfg.recv_depth; ++i) post_recv(i);
  if (!rx_unposted.empty()) throw Error("calypso net: could not post receive buffers");
}

// FI_WAIT_FD lets wait() and an external event loop block in the kernel. A provider
// without it gets no wait object (FI_WAIT_NONE) and is polled on a timer; its
// FI_WAIT_UNSPEC would be a sched_yield spin.
void Endpoint::Impl::open_cqs() {
  auto open = [&](std::size_t depth, fi_wait_obj wait) {
    fi_cq_attr attr{};
    attr.format = FI_CQ_FORMAT_MSG;
    attr.size = std::max<std::size_t>(2 * depth, 64);
    attr.wait_obj = wait;
    fid_cq* cq = nullptr;
    const int rc = fi_cq_open(domain.get(), &attr, &cq, nullptr);
    return std::pair{rc, FidPtr<fid_cq>(cq)};
  };
  auto [rc, tx] = open(cfg.send_depth, FI_WAIT_FD);
  fd_wait = rc == 0;
  if (!fd_wait) std::tie(rc, tx) = open(cfg.send_depth, FI_WAIT_NONE);
  check("fi_cq_open(tx)", rc);
  tx_cq = std::move(tx);
  auto [rc2, rx] = open(cfg.recv_depth, fd_wait ? FI_WAIT_FD : FI_WAIT_NONE);
  check("fi_cq_open(rx)", rc2);
  rx_cq = std::move(rx);
}

void Endpoint::Impl::open_ep() {
  fid_ep* e = nullptr;
  check("fi_endpoint", fi_endpoint(domain.get(), info.get(), &e, nullptr));
  ep.reset(e);
  check("fi_ep_bind(av)", fi_ep_bind(ep.get(), &av->fid, 0));
  check("fi_ep_bind(tx cq)", fi_ep_bind(ep.get(), &tx_cq->fid, FI_TRANSMIT));
  check("fi_ep_bind(rx cq)", fi_ep_bind(ep.get(), &rx_cq->fid, FI_RECV));
  check("fi_enable", fi_enable(ep.get()));
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
}

// One epoll set holding both CQ wait fds (or the poll timer), so that callers see a
// single pollable fd whichever way the provider can be waited on.
void Endpoint::Impl::open_wait_set() {
  epoll = Fd(::epoll_create1(EPOLL_CLOEXEC));
  if (epoll.get() < 0) fail("epoll_create1", -errno);
  if (fd_wait) {
    check("fi_control(tx cq, FI_GETWAIT)", fi_control(&tx_cq->fid, FI_GETWAIT, &tx_fd));
    check("fi_control(rx cq, FI_GETWAIT)", fi_control(&rx_cq->fid, FI_GETWAIT, &rx_fd));
  } else {
    timer = Fd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (timer.get() < 0) fail("timerfd_create", -errno);
    tx_fd = rx_fd = timer.get();
  }
  for (int fd : {tx_fd, rx_fd}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0 && errno != EEXIST) {
      fail("epoll_ctl", -errno);
    }
  }
}

// A slot that cannot be posted now (e.g. -FI_EAGAIN) is retried by the next poll().
void Endpoint::Impl::post_recv(std::uint32_t i) noexcept {
  const ssize_t rc = fi_recv(ep.get(), rx_pool.at(i), rx_pool.slot, nullptr, FI_ADDR_UNSPEC,
                             &rx_pool.ctx[i]);
  if (rc == 0) return;
  if (rc != -FI_EAGAIN) log_error("fi_recv", rc);
  rx_unposted.push_back(i);   // capacity reserved: never allocates
}

void Endpoint::Impl::repost_pending() noexcept {
  auto pending = std::exchange(rx_unposted, {});
  rx_unposted.reserve(cfg.recv_depth);
  for (std::uint32_t i : pending) post_recv(i);
}

void Endpoint::Impl::handle_tx(const fi_cq_msg_entry& e) noexcept {
  if (auto* ctx = static_cast<OpContext*>(e.op_context)) tx_free.push_back(ctx->index);
}

void Endpoint::Impl::read_tx_error() noexcept {
  fi_cq_err_entry err{};
  const ssize_t rc = fi_cq_readerr(tx_cq.get(), &err, 0);
  if (rc < 0) {
    if (rc != -FI_EAGAIN) log_error("fi_cq_readerr(tx)", rc);
    return;
  }
  auto* ctx = static_cast<OpContext*>(err.op_context);
  if (!ctx) {
    log_error("send failed (no context)", err.err);
    return;
  }
  tx_free.push_back(ctx->index);
  peer_errors.emplace_back(ctx->peer, err.err);
}

// Reading the CQ is also what drives a manual-progress provider forward.
void Endpoint::Impl::reap_tx() noexcept {
  fi_cq_msg_entry e[16];
  for (;;) {
    const ssize_t n = fi_cq_read(tx_cq.get(), e, 16);
    if (n == -FI_EAGAIN) return;
    if (n == -FI_EAVAIL) {
      read_tx_error();
      continue;
    }
    if (n < 0) {
      log_error("fi_cq_read(tx)", n);
      return;
    }
    for (ssize_t i = 0; i < n; ++i) handle_tx(e[i]);
  }
}

// Sleeps on the tx CQ until something completes, the deadline, or `slice` passes. The
// slice bounds the sleep because a provider's -FI_EAGAIN (flow control, a connection
// being set up) may clear without a completion signalling the fd, and because a polled
// provider has no fd at all. This runs only while a send is pending, never while idle.
void Endpoint::Impl::block_tx(Clock::time_point deadline, microseconds slice) noexcept {
  const auto left = std::chrono::duration_cast<microseconds>(deadline - Clock::now());
  const timespec nap = to_timespec(std::max(microseconds(0), std::min(left, slice)));
  if (!fd_wait) {
    ::nanosleep(&nap, nullptr);
    return;
  }
  fid* fids[] = {&tx_cq->fid};
  if (fi_trywait(fabric.get(), fids, 1) != FI_SUCCESS) return;   // completions ready
  pollfd p{tx_fd, POLLIN, 0};
  ::ppoll(&p, 1, &nap, nullptr);
}

std::optional<std::uint32_t> Endpoint::Impl::acquire_send_buffer(Clock::time_point deadline) {
  microseconds slice(50);
  for (;;) {
    if (tx_free.empty()) reap_tx();
    if (!tx_free.empty()) {
      const std::uint32_t i = tx_free.back();
      tx_free.pop_back();
      return i;
    }
    if (Clock::now() >= deadline) return std::nullopt;
    block_tx(deadline, slice);
    slice = std::min(slice * 2, microseconds(10000));
  }
}

// Retries `post` on -FI_EAGAIN with progress in between; any other error is the peer's.
template <class Post>
SendStatus Endpoint::Impl::post_with_retry(PeerId to, Clock::time_point deadline, Post&& post) {
  microseconds slice(50);
  for (;;) {
    const ssize_t rc = post();
    if (rc == 0) return SendStatus::ok;
    if (rc != -FI_EAGAIN) {
      peer_errors.emplace_back(to, static_cast<int>(-rc));
      return SendStatus::peer_failed;
    }
    reap_tx();
    if (Clock::now() >= deadline) return SendStatus::again;
    block_tx(deadline, slice);
    slice = std::min(slice * 2, microseconds(10000));
  }
}

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
  auto gather = [&](std::byte* dst) {
    for (auto p : parts) dst = std::copy(p.begin(), p.end(), dst);
  };
  if (len <= scratch.size()) {   // injected: the provider copies, no buffer is held
    gather(scratch.data());
    return post_with_retry(to, deadline, [&] {
      return fi_inject(ep.get(), scratch.data(), len, to);
    });
  }
  const auto slot = acquire_send_buffer(deadline);
  if (!slot) return SendStatus::again;
  OpContext& ctx = tx_pool.ctx[*slot];
  ctx.peer = to;
  gather(tx_pool.at(*slot));
  const SendStatus s = post_with_retry(to, deadline, [&] {
    return fi_send(ep.get(), tx_pool.at(*slot), len, nullptr, to, &ctx);
  });
  if (s != SendStatus::ok) tx_free.push_back(*slot);   // never posted
  return s;
}

// Next receive completion (stashed by ready_to_sleep() or read now); errors are logged and their
// buffers reposted. Returns false when nothing is ready.
bool Endpoint::Impl::next_rx(fi_cq_msg_entry& e) {
  if (rx_stash) {
    e = *std::exchange(rx_stash, std::nullopt);
    return true;
  }
  for (;;) {
    const ssize_t n = fi_cq_read(rx_cq.get(), &e, 1);
    if (n == 1) return true;
    if (n != -FI_EAVAIL) {
      if (n != -FI_EAGAIN) log_error("fi_cq_read(rx)", n);
      return false;
    }
    fi_cq_err_entry err{};
    if (fi_cq_readerr(rx_cq.get(), &err, 0) < 0) return false;
    log_error("receive failed", err.err);
    if (auto* ctx = static_cast<OpContext*>(err.op_context)) post_recv(ctx->index);
  }
}

// At most recv_depth messages per call so a flooding peer cannot starve the caller;
// wait() returns at once while more are pending.
std::size_t Endpoint::Impl::poll(const std::function<void(const Event&)>& fn) {
  repost_pending();
  reap_tx();
  std::size_t delivered = 0;
  while (!peer_errors.empty()) {
    const auto [peer, err] = peer_errors.front();
    peer_errors.erase(peer_errors.begin());
    ++delivered;
    fn(Event{Event::Kind::peer_error, peer, {}, err});
  }
  fi_cq_msg_entry e{};
  for (std::size_t n = 0; n < cfg.recv_depth && next_rx(e); ++n) {
    const std::uint32_t slot = static_cast<OpContext*>(e.op_context)->index;
    struct Repost {   // the buffer goes back even if fn throws
      Impl* self;
      std::uint32_t slot;
      ~Repost() { self->post_recv(slot); }
    } repost{this, slot};
    ++delivered;
    fn(Event{Event::Kind::message, kNoPeer, {rx_pool.at(slot), e.len}, 0});
  }
  if (delivered > 0) poll_interval = kMinPollInterval;   // a reply may follow soon
  return delivered;
}

// With a wait fd, fi_trywait says whether sleeping is safe. A polled provider is
// checked here instead (progress plus a look at each CQ, keeping what it finds), and
// the timer is armed for the next, longer, interval.
bool Endpoint::Impl::ready_to_sleep() noexcept {
  if (!peer_errors.empty() || rx_stash) return false;
  if (fd_wait) {
    fid* fids[] = {&tx_cq->fid, &rx_cq->fid};
    return fi_trywait(fabric.get(), fids, 2) == FI_SUCCESS;
  }
  reap_tx();
  fi_cq_msg_entry e{};
  if (next_rx(e)) rx_stash = e;
  if (!peer_errors.empty() || rx_stash) {
    poll_interval = kMinPollInterval;
    return false;
  }
  const itimerspec when{{0, 0}, to_timespec(poll_interval)};
  ::timerfd_settime(timer.get(), 0, &when, nullptr);   // also clears a past expiry
  poll_interval = std::min(poll_interval * 2, kMaxPollInterval);
  return true;
}

// For a polled provider the timer wakes the epoll_wait long before `timeout`; only a
// check that finds something ends the wait early.
bool Endpoint::Impl::wait(std::chrono::milliseconds timeout) {
  if (!rx_unposted.empty()) repost_pending();
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (!ready_to_sleep()) return true;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    epoll_event ev{};
    const int n = ::epoll_wait(epoll.get(), &ev, 1, clamp_ms(left));
    if (n == 0) return false;
    if (fd_wait || n < 0) return true;   // EINTR counts as "may have something"
  }
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
  return addr;
}

void Endpoint::remove_peer(PeerId p) noexcept {
  fi_addr_t addr = p;
  if (int rc = fi_av_remove(impl_->av.get(), &addr, 1, 0); rc != 0) log_error("fi_av_remove", rc);
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
