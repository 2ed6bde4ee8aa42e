// A Calypso-DSM program for the integration test of a worker that misbehaves on purpose
// (Failures.ARogueWorkerChangesNothing). One executable, so that the rogue passes the
// manager's identity check; it links the internal library to speak the protocol itself.
//
//   rogue DIR            the manager (with its normal workers, as calypso-run starts
//                        them): writes DIR/info (where its array lies), runs steps of
//                        kSegments segments that each write a known pattern into their
//                        block of the array, and checks every byte of the array after
//                        every step (the rest of the array must stay zero). Once
//                        DIR/done exists it runs kStepsAfter more, writes DIR/end and
//                        prints "rogue: ok" if every check held.
//   rogue DIR            with CALYPSO_ROLE=worker, CALYPSO_MANAGER=ADDRESS and
//                        CALYPSO_TEST_ROGUE=1: the rogue. It does not run a WorkerLoop:
//                        it joins as several workers in turn (a valid hello each time,
//                        from fresh endpoints) and sends malformed and semantically bad
//                        messages through the network (see the phases in rogue()), then
//                        writes DIR/done and keeps beating for the identities that
//                        must not block the job by staying alive, until DIR/end
//                        appears.
//                        CALYPSO_TEST_ROGUE_PHASES (letters of impersonation,
//                        address reuse, deaf, noise, requests, forged, malformed,
//                        stalled: "iadnrfms" by default) picks phases.
//
// Without CALYPSO_TEST_ROGUE, a worker runs the normal WorkerLoop.
#include <calypso/calypso.hpp>

#include "build_id.hpp"
#include "dsm/diff.hpp"
#include "dsm/result_format.hpp"
#include "net/endpoint.hpp"
#include "sched/job_address.hpp"
#include "sched/protocol.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kSegments = 24;
constexpr std::size_t kBlock = 5000;            // not a page multiple: blocks share pages
constexpr std::size_t kArray = std::size_t{1} << 20;   // the blocks, then bytes nobody writes
constexpr int kStepsAfter = 3;

unsigned char pattern(std::uint32_t step, std::uint32_t segment, std::size_t i) {
  return static_cast<unsigned char>(1 + (step * 131 + segment * 17 + i) % 251);   // never 0
}

struct Blocks {
  unsigned char* p;
  std::uint32_t step;
};
void write_block(const calypso::Segment& seg, const Blocks& b) {
  for (std::size_t i = 0; i < kBlock; ++i) b.p[seg.index * kBlock + i] = pattern(b.step, seg.index, i);
  // Long enough that a step stays open while the rogue's messages arrive.
  std::this_thread::sleep_for(30ms);
}
CALYPSO_ROUTINE(write_block);

bool exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

int manager(calypso::Manager& m, const std::string& dir) {
  auto* p = m.alloc<unsigned char>(kArray);
  {
    std::ofstream info(dir + "/info.tmp");
    info << reinterpret_cast<std::uintptr_t>(p) << " " << kArray << " " << kSegments << "\n";
  }
  std::rename((dir + "/info.tmp").c_str(), (dir + "/info").c_str());
  m.wait_for_workers(2);
  const auto deadline = Clock::now() + 90s;
  int after = -1;   // steps since DIR/done appeared
  std::uint32_t step = 1;
  for (; after < kStepsAfter; ++step) {
    m.parallel(write_block, kSegments, Blocks{p, step});
    for (std::size_t i = 0; i < kArray; ++i) {
      const std::uint32_t seg = static_cast<std::uint32_t>(i / kBlock);
      const unsigned char want = seg < kSegments ? pattern(step, seg, i % kBlock) : 0;
      if (p[i] != want) {
        std::printf("rogue: after step %u, byte %zu of the array is %u, expected %u\n", step, i, p[i], want);
        return 1;
      }
    }
    if (after >= 0 || exists(dir + "/done")) ++after;
    if (Clock::now() > deadline) {
      std::printf("rogue: the rogue did not finish within 90 s\n");
      return 1;
    }
  }
  std::ofstream(dir + "/end") << "end\n";
  std::printf("rogue: ok (%u steps, every byte as written, %llu re-executions)\n", step - 1,
              static_cast<unsigned long long>(m.stats().reexecutions));
  return 0;
}

// ---- the rogue ---------------------------------------------------------------------------

namespace net = calypso::net;
namespace sched = calypso::sched;
using sched::Encoder;
using sched::MsgType;

class Rogue {
 public:
  Rogue(const std::string& dir, std::uint64_t seed) : dir_(dir), rng_(seed) {
    job_ = sched::JobAddress::parse(std::getenv("CALYPSO_MANAGER"));
    for (auto until = Clock::now() + 30s; Clock::now() < until && !exists(dir + "/info");) {
      std::this_thread::sleep_for(20ms);
    }
    std::ifstream info(dir + "/info");
    std::uintptr_t address = 0;
    if (!(info >> address >> array_bytes_ >> segments_)) fail("no " + dir + "/info");
    array_address_ = address;
  }

  int run();

 private:
  [[noreturn]] static void fail(const std::string& why) {
    std::fprintf(stderr, "rogue worker: %s\n", why.c_str());
    std::exit(1);
  }

  // Joins as a new worker from fresh endpoints: a valid hello, and its welcome. deaf: the
  // hello gives, as the main endpoint's, its address with a port where nothing listens
  // (tcp); no welcome can come, and the identity takes the id the manager will give it,
  // `deaf_id`.
  //
  // at: endpoints bound to these addresses (tcp, IPv4: where an identity that has gone
  // listened), instead of ones the kernel picks.
  struct At {
    net::Address main, heartbeat;
  };
  void join(bool deaf = false, sched::WorkerId deaf_id = sched::kNoWorker, const At* at = nullptr) {
    ep_.reset();
    hb_.reset();
    net::EndpointConfig cfg;
    cfg.provider = job_.provider;
    cfg.recv_depth = 64;
    if (at != nullptr) bind_to(cfg, at->main);
    ep_.emplace(net::Endpoint::open(cfg));
    cfg.recv_depth = 4;
    if (at != nullptr) bind_to(cfg, at->heartbeat);
    hb_.emplace(net::Endpoint::open(cfg));
    manager_ = ep_->add_peer(net::Address::from_string(job_.endpoint));
    hb_->add_peer(net::Address::from_string(job_.endpoint));
    const std::string& identity = calypso::executable_identity();
    auto addr = ep_->local_address();
    const auto hb_addr = hb_->local_address();
    if (deaf) {
      if (addr.bytes.size() != 16) fail("a deaf identity needs a tcp (IPv4) address");
      addr.bytes[2] = std::byte{0};   // sockaddr_in's port, network order: port 1
      addr.bytes[3] = std::byte{1};
    }
    sched::Hello h{};
    h.job_key = job_.job_key;
    h.pid = static_cast<std::uint32_t>(getpid());
    h.identity_bytes = static_cast<std::uint32_t>(identity.size());
    h.address_bytes = static_cast<std::uint32_t>(addr.bytes.size());
    h.heartbeat_address_bytes = static_cast<std::uint32_t>(hb_addr.bytes.size());
    gethostname(h.host, sizeof h.host - 1);   // no result ring, no message channel offered
    Encoder e(MsgType::hello, sched::kNoWorker, h);
    e.append(identity.data(), identity.size()).append(addr.bytes).append(hb_addr.bytes);
    id_ = sched::kNoWorker;
    assigns_.clear();
    send(e.bytes());
    if (deaf) id_ = deaf_id;
    for (auto until = Clock::now() + 20s; id_ == sched::kNoWorker; pump(50ms)) {
      if (Clock::now() > until) fail("no welcome");
    }
    region_pages_ = welcome_.region_size / welcome_.page_size;
    own_ids_.push_back(id_);
    ++identities_;
  }

  static void bind_to(net::EndpointConfig& cfg, const net::Address& a) {
    if (a.bytes.size() != 16) fail("binding to an address needs a tcp (IPv4) one");
    const auto b = [&](int i) { return static_cast<unsigned>(a.bytes[i]); };
    cfg.node = std::to_string(b(4)) + "." + std::to_string(b(5)) + "." + std::to_string(b(6)) + "." + std::to_string(b(7));
    cfg.service = std::to_string(b(2) << 8 | b(3));   // sockaddr_in's port, network order
  }

  void send(std::span<const std::byte> bytes) {
    if (ep_->send(manager_, bytes, 2s) != net::SendStatus::ok) std::fprintf(stderr, "rogue worker: a send failed\n");
    pump(0ms);
  }
  template <class T>
  void send(MsgType type, const T& fixed, std::span<const std::byte> tail = {}, sched::WorkerId as = ~0u) {
    Encoder e(type, as == ~0u ? id_ : as, fixed);
    e.append(tail);
    send(e.bytes());
  }
  void beat() { send(MsgType::heartbeat, sched::Empty{}); }

  void take(std::span<const std::byte> bytes) {
    std::string why;
    auto m = sched::decode(bytes, why);
    if (!m) return;
    switch (m->type()) {
      case MsgType::welcome:
        if (auto w = sched::fixed_part<sched::Welcome>(*m, why)) {
          welcome_ = *w;
          id_ = w->worker;
        }
        break;
      case MsgType::refuse: fail("refused");
      case MsgType::assign:
        if (auto a = sched::parse_assign(*m, why)) assigns_.push_back(a->fixed);
        break;
      case MsgType::bundle:
        if (auto inner = sched::parse_bundle(*m, why)) {
          for (auto b : *inner) take(b);
        }
        break;
      case MsgType::page_data:
        if (auto d = sched::fixed_part<sched::PageData>(*m, why)) ++page_data_[static_cast<int>(d->status) & 3];
        break;
      default: break;
    }
  }
  void pump(std::chrono::milliseconds wait) {
    if (wait.count() > 0) ep_->wait(wait);
    auto handle = [&](const net::Event& e) {
      if (e.kind == net::Event::Kind::message) take(e.data);
    };
    while (ep_->poll(handle) > 0) {
    }
    hb_->poll([](const net::Event&) {});   // the manager's pings
  }

  // Asks for work and waits for the first run of a segment (beating meanwhile): nobody
  // else runs it until it is late, so what the rogue sends about it arrives while the
  // segment is still open. A re-run (of a late segment, which its first runner may
  // finish any moment) is handed back, and it asks again. The ones handed back are
  // forgotten before the request goes: send() pumps, and the manager's answer to it may
  // already arrive there; forgotten after, that assignment would be dropped without the
  // manager being told, and it would wait for good for a result of it (the worker holds
  // it, so it gets nothing else).
  sched::Assign get_assignment() {
    send(MsgType::request_work, sched::RequestWork{0});
    for (auto until = Clock::now() + 20s;; pump(50ms)) {
      if (Clock::now() > until) fail("no first run of a segment assigned within 20 s");
      if (!assigns_.empty() && assigns_.front().attempt == 1) return assigns_.front();
      if (!assigns_.empty()) {
        const std::uint64_t dropped = assigns_.back().seq;
        assigns_.clear();
        send(MsgType::request_work, sched::RequestWork{dropped});
      }
      beat();
    }
  }
  bool own(std::uint64_t step, std::uint32_t segment, std::uint32_t attempt) const {
    for (const auto& a : assigns_) {
      if (a.step == step && a.segment == segment && a.attempt == attempt) return true;
    }
    return false;
  }
  void leave() { send(MsgType::leave, sched::Empty{}); }
  // Keeps this identity's endpoints open, to beat for it at the end (run()): a worker
  // that stays alive after what it sent.
  void keep() {
    kept_.push_back({std::move(*ep_), std::move(*hb_), manager_, id_});
    ep_.reset();
    hb_.reset();
  }
  void beat_kept() {
    for (Kept& k : kept_) {
      Encoder e(MsgType::heartbeat, k.id, sched::Empty{});
      k.ep.send(k.manager, e.bytes(), 100ms);
      k.ep.poll([](const net::Event&) {});
      k.hb.poll([](const net::Event&) {});
    }
  }

  std::uint32_t page_of(std::size_t array_offset) const {
    return static_cast<std::uint32_t>((array_address_ + array_offset - welcome_.region_address) / welcome_.page_size);
  }
  // A result body of one entry: page's diff, one run of `words` words of `fill` at
  // word_offset (valid when the run lies in the page).
  static std::vector<std::byte> body(std::uint32_t page, std::uint32_t word_offset, std::uint16_t words,
                                     std::byte fill) {
    calypso::dsm::ResultEntry e{page, static_cast<std::uint32_t>(8 + 8 * words)};
    calypso::dsm::RunHeader r{word_offset, words, 0};
    std::vector<std::byte> out(sizeof e + sizeof r + 8 * words, fill);
    std::memcpy(out.data(), &e, sizeof e);
    std::memcpy(out.data() + sizeof e, &r, sizeof r);
    return out;
  }
  void result(const sched::Assign& a, std::uint64_t total, std::uint64_t offset, std::span<const std::byte> data,
              std::uint32_t flags = 0) {
    send(MsgType::result_chunk, sched::ResultChunk{a.step, a.segment, a.attempt, total, offset, 0, flags}, data);
  }
  static sched::Assign run(std::uint64_t step, std::uint32_t segment, std::uint32_t attempt) {
    sched::Assign a{};
    a.step = step;
    a.segment = segment;
    a.attempt = attempt;
    return a;
  }
  std::vector<std::byte> random_bytes(std::size_t n) {
    std::vector<std::byte> out(n);
    for (auto& b : out) b = static_cast<std::byte>(rng_());
    return out;
  }

  void impersonation();
  void address_reuse();
  void deaf();
  void noise();
  void requests();
  void forged_results();
  void malformed_own_result(int how);
  void stalled_result();

  std::string dir_;
  std::mt19937_64 rng_;
  sched::JobAddress job_;
  std::uint64_t array_address_ = 0;
  std::size_t array_bytes_ = 0;
  std::uint32_t segments_ = 0;
  std::optional<net::Endpoint> ep_, hb_;
  struct Kept {
    net::Endpoint ep, hb;
    net::PeerId manager;
    sched::WorkerId id;
  };
  std::vector<Kept> kept_;
  net::PeerId manager_ = net::kNoPeer;
  sched::WorkerId id_ = sched::kNoWorker;
  sched::Welcome welcome_{};
  std::uint64_t region_pages_ = 0;
  std::vector<sched::Assign> assigns_;
  std::size_t page_data_[4] = {};
  int identities_ = 0;
  std::vector<sched::WorkerId> own_ids_;
};

// Speaks for the other workers, from its own endpoints: results for every run of the
// open step that one of them may hold (one of them does: the step is open and the real
// workers run its segments), in their name, then `leave` in their name. On tcp the
// manager knows the sender, so none of it may count: a forged result would spoil the
// array, a forged `leave` lose a real worker.
void Rogue::impersonation() {
  join();
  const sched::Assign a = get_assignment();
  for (sched::WorkerId other = 1; other <= id_ + 2; ++other) {
    if (std::find(own_ids_.begin(), own_ids_.end(), other) != own_ids_.end()) continue;
    for (std::uint32_t attempt = 1; attempt <= 2; ++attempt) {
      for (std::uint32_t s = 0; s < segments_; ++s) {
        const auto b = body(page_of(s * kBlock), 0, 8, std::byte{0xee});
        send(MsgType::result_chunk, sched::ResultChunk{a.step, s, attempt, b.size(), 0, 0, 0}, b, other);
      }
    }
    send(MsgType::heartbeat, sched::Empty{}, {}, other);
    send(MsgType::leave, sched::Empty{}, {}, other);
  }
  pump(200ms);
  leave();
}

// A worker that dies silently while it runs a segment, and a new one that listens where
// it did (the kernel may hand a freed port out again): the manager must take the new
// hello for proof that the old process has gone, lose it at once (its segment runs
// elsewhere), and talk to the new one, which gets work like any other.
void Rogue::address_reuse() {
  join();
  get_assignment();
  const At at{ep_->local_address(), hb_->local_address()};
  ep_.reset();   // closed without a word, as by a crash
  hb_.reset();
  join(false, sched::kNoWorker, &at);
  get_assignment();
  std::fprintf(stderr, "rogue worker: a second identity works at the address of the first\n");
  leave();
}

// Garbage, and messages of every type with random bodies (never `leave`: it ends the
// identity, last). Bundles that break their rules.
void Rogue::noise() {
  join();
  for (int i = 0; i < 32; ++i) send(random_bytes(1 + rng_() % 300));
  {   // a valid header, then lies: magic, version, length, type
    Encoder ok(MsgType::heartbeat, id_, sched::Empty{});
    std::vector<std::byte> m(ok.bytes().begin(), ok.bytes().end());
    sched::Header h;
    std::memcpy(&h, m.data(), sizeof h);
    for (int lie = 0; lie < 6; ++lie) {
      sched::Header bad = h;
      if (lie == 0) bad.magic ^= 1;
      if (lie == 1) bad.version = static_cast<std::uint16_t>(sched::kVersion + 1);
      if (lie == 2) bad.body_bytes = 100;
      if (lie == 3) bad.type = 0;
      if (lie == 4) bad.type = static_cast<std::uint16_t>(MsgType::max_type) + 1;
      if (lie == 5) bad.type = 0xffff;
      std::memcpy(m.data(), &bad, sizeof bad);
      send(m);
    }
  }
  for (int round = 0; round < 8; ++round) {
    for (auto t = static_cast<std::uint16_t>(MsgType::hello); t <= static_cast<std::uint16_t>(MsgType::max_type); ++t) {
      if (static_cast<MsgType>(t) == MsgType::leave) continue;
      const auto tail = random_bytes(rng_() % 200);
      Encoder e(static_cast<MsgType>(t), id_, sched::Empty{});
      e.append(tail);
      send(e.bytes());
      // The same from a worker id nobody has, and from "no worker".
      Encoder stranger(static_cast<MsgType>(t), round % 2 == 0 ? 0 : 4000000 + round, sched::Empty{});
      stranger.append(tail);
      send(stranger.bytes());
    }
    beat();
  }
  {   // bundles: another worker's message inside, a bundle inside, a truncated frame
    Encoder other(MsgType::heartbeat, id_ + 1000, sched::Empty{});
    sched::Bundler b(id_);
    b.add(Encoder(MsgType::heartbeat, id_, sched::Empty{}).bytes());
    b.add(other.bytes());
    send(b.finish());
    Encoder inner(MsgType::bundle, id_, sched::Empty{});
    std::uint32_t frame[2] = {static_cast<std::uint32_t>(inner.bytes().size()), 0};
    Encoder outer(MsgType::bundle, id_, sched::Empty{});
    outer.append(frame, sizeof frame).append(inner.bytes());
    send(outer.bytes());
    std::uint32_t long_frame[2] = {1000, 0};
    Encoder cut(MsgType::bundle, id_, sched::Empty{});
    cut.append(long_frame, sizeof long_frame);
    send(cut.bytes());
  }
  pump(100ms);
  leave();
}

// Page requests and read sets outside what the manager may serve.
void Rogue::requests() {
  join();
  const sched::Assign a = get_assignment();
  const auto pages = static_cast<std::uint32_t>(region_pages_);
  const std::uint32_t mine = page_of(a.segment * kBlock);
  const sched::PageRequest bad[] = {
      {a.step, mine, 0},          {a.step, 0, 64},          {a.step, 0, 0x80000000u},
      {a.step, pages - 1, 2},     {a.step, pages + 10, 1},  {a.step, 0xfffffff0u, 0x20},
      {a.step + 1, mine, 1},      {0, mine, 1},             {~std::uint64_t{0}, mine, 1},
      {a.step, mine, 1},   // the one good request
  };
  for (const auto& r : bad) send(MsgType::page_request, r);
  const std::uint32_t outside[] = {pages, pages + 1, 0xffffffffu};
  send(MsgType::read_set, sched::ReadSet{a.step, 3, 0}, std::as_bytes(std::span(outside)));
  send(MsgType::read_set, sched::ReadSet{a.step, 5, 0}, std::as_bytes(std::span(outside).first(1)));
  send(MsgType::read_set, sched::ReadSet{a.step, 0xffffffffu, 0});
  send(MsgType::page_request, sched::Empty{});   // too short for its type
  send(MsgType::request_work, sched::RequestWork{~std::uint64_t{0}});   // "dropped all of them"
  for (auto until = Clock::now() + 1s; Clock::now() < until;) pump(50ms);
  std::fprintf(stderr, "rogue worker: page_data replies: %zu ok, %zu stale, %zu bad_range\n", page_data_[0],
               page_data_[1], page_data_[2]);
  leave();
}

// Results for runs it was never sent (empty ones, which would pass as "wrote nothing",
// and ones that write into the array), for steps that are not open, and chunks out of
// bounds. None may change memory or complete a segment.
void Rogue::forged_results() {
  join();
  const sched::Assign a = get_assignment();
  for (std::uint32_t attempt = 1; attempt <= 3; ++attempt) {
    for (std::uint32_t s = 0; s < segments_; ++s) {
      if (own(a.step, s, attempt)) continue;
      const sched::Assign forged = run(a.step, s, attempt);
      result(forged, 0, 0, {});
      const auto b = body(page_of(s * kBlock), 0, 8, std::byte{0xee});
      result(forged, b.size(), 0, b);
    }
  }
  const auto b = body(page_of(array_bytes_ - 8), 0, 8, std::byte{0xee});   // a page nobody writes
  for (std::uint64_t step : {a.step + 1, a.step - 1, std::uint64_t{0}, ~std::uint64_t{0}}) {
    const sched::Assign other = run(step, a.segment, a.attempt);
    result(other, b.size(), 0, b);
    result(other, b.size() * 2, 0, b);   // and its rest never comes
  }
  // Out of bounds, on its own run: refused before anything is kept.
  result(a, std::uint64_t{1} << 62, 0, b);                   // total_bytes huge
  result(a, b.size(), b.size() + 1, {});                    // offset past the total
  result(a, b.size(), 8, b);                                // data past the total
  result(a, b.size(), 0, {}, sched::kResultInRing);         // a ring it has not got
  result(a, b.size(), 0, b, sched::kResultInRing);
  // Last, as it ends the identity: the first chunks of more results of closed steps than
  // a worker can have begun; each would be kept, counted, while the worker lives.
  for (std::uint32_t s = 0; s < 80; ++s) result(run(a.step - 1, s, 7), b.size() * 2, 0, b);
  pump(200ms);
  leave();
}

// Its own run's result, malformed: the manager gives the worker up, applies nothing, and
// re-runs the segment.
void Rogue::malformed_own_result(int how) {
  join();
  const sched::Assign a = get_assignment();
  const std::uint32_t page = page_of(a.segment * kBlock);
  const auto words_per_page = static_cast<std::uint32_t>(welcome_.page_size / 8);
  std::vector<std::byte> b;
  if (how == 0) b = body(page, words_per_page - 1, 2, std::byte{0xee});   // runs past the page
  if (how == 1) b = body(static_cast<std::uint32_t>(region_pages_ + 3), 0, 2, std::byte{0xee});   // outside the region
  if (how == 2) {   // an entry that says it is longer than the result
    b = body(page, 0, 2, std::byte{0xee});
    b.resize(b.size() - 8);
  }
  if (how == 3) {   // chunks that disagree on the size
    b = body(page, 0, 64, std::byte{0xee});
    result(a, b.size(), 0, std::span(b).first(100));
    result(a, b.size() + 8, 100, std::span(b).subspan(100, 100));
  } else if (how == 4) {   // chunks that overlap
    b = body(page, 0, 64, std::byte{0xee});
    result(a, b.size(), 0, std::span(b).first(300));
    result(a, b.size(), 0, std::span(b).first(300));
  } else {
    result(a, b.size(), 0, b);
  }
  pump(200ms);
  // Chunks that make no result: it stays, beating, as a worker that goes on after them.
  if (how >= 3) return keep();
  leave();   // taken only if it is still a worker
}

// The first chunk of its own run's result, then nothing but heartbeats: the segment must
// not wait for the rest for good.
void Rogue::stalled_result() {
  join();
  const sched::Assign a = get_assignment();
  const auto b = body(page_of(a.segment * kBlock), 0, 64, std::byte{0xee});
  result(a, b.size(), 0, std::span(b).first(200));
  keep();   // beating until the job ends
}

// An identity the manager hears but cannot send to (its hello names a port where nothing
// listens) that asks for work and beats for 8 s: each message brings it back from
// suspicion, and the manager tries to send it work. Those sends must not hold the loop:
// the real workers hear nothing while they do, and leave after
// CALYPSO_MANAGER_TIMEOUT_MS (5 s in the test). It then goes silent, and is lost.
void Rogue::deaf() {
  join(true, own_ids_.back() + 1);   // nobody else joins meanwhile: the next id is its
  for (auto until = Clock::now() + 8s; Clock::now() < until; pump(50ms)) {
    send(MsgType::request_work, sched::RequestWork{0});
    beat();
  }
}

int Rogue::run() {
  // CALYPSO_TEST_ROGUE_PHASES: which phases run (letters, in this order), all by default.
  const char* env = std::getenv("CALYPSO_TEST_ROGUE_PHASES");
  const std::string phases = env != nullptr ? env : "iadnrfms";
  if (phases.find('i') != std::string::npos) impersonation();
  if (phases.find('a') != std::string::npos && job_.provider == "tcp") address_reuse();
  if (phases.find('d') != std::string::npos && !own_ids_.empty()) deaf();
  if (phases.find('n') != std::string::npos) noise();
  if (phases.find('r') != std::string::npos) requests();
  if (phases.find('f') != std::string::npos) forged_results();
  for (int how = 0; how < 5 && phases.find('m') != std::string::npos; ++how) malformed_own_result(how);
  if (phases.find('s') != std::string::npos) stalled_result();
  std::ofstream(dir_ + "/done") << "done\n";
  for (auto until = Clock::now() + 60s; !exists(dir_ + "/end") && Clock::now() < until;) {
    beat_kept();
    std::this_thread::sleep_for(100ms);
  }
  std::fprintf(stderr, "rogue worker: done (%d identities)\n", identities_);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const char* role = std::getenv("CALYPSO_ROLE");
  const char* rogue = std::getenv("CALYPSO_TEST_ROGUE");
  if (argc < 2) {
    std::fprintf(stderr, "usage: rogue DIR\n");
    return 2;
  }
  if (role != nullptr && std::string(role) == "worker" && rogue != nullptr && std::string(rogue) == "1") {
    if (std::getenv("CALYPSO_MANAGER") == nullptr) {
      std::fprintf(stderr, "rogue worker: CALYPSO_MANAGER is not set\n");
      return 2;
    }
    const char* seed = std::getenv("CALYPSO_TEST_ROGUE_SEED");
    return Rogue(argv[1], seed != nullptr ? std::strtoull(seed, nullptr, 10) : 41).run();
  }
  calypso::Runtime rt(argc, argv);
  return rt.run([&](calypso::Manager& m) { return manager(m, argv[1]); });
}
