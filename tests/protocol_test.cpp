// Tests of the manager-worker wire protocol (sched/protocol.hpp) and of the job address
// string (sched/job_address.hpp).
//
// Every message type is encoded and decoded back, tails included, and the validating
// decoder is shown to refuse each kind of malformed header, and the typed parsers each
// kind of inconsistent tail. A seeded fuzz loop throws random and mutated buffers at the
// decoder and parsers: they must never crash, and never accept a message whose header
// disagrees with the number of bytes that arrived.
#include "sched/job_address.hpp"
#include "sched/protocol.hpp"

#include <calypso/error.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace calypso::sched {
namespace {

using Bytes = std::vector<std::byte>;

Bytes to_bytes(std::span<const std::byte> s) { return Bytes(s.begin(), s.end()); }

Bytes text_bytes(const std::string& s) {
  Bytes b(s.size());
  std::memcpy(b.data(), s.data(), s.size());
  return b;
}

// Decodes and fails the test (with the decoder's reason) when the message is refused.
std::optional<Message> must_decode(const Bytes& b) {
  std::string why;
  auto m = decode(b, why);
  EXPECT_TRUE(m.has_value()) << why;
  return m;
}

// Expects decode to refuse b, with a reason.
void expect_refused(const Bytes& b, const char* what) {
  std::string why;
  EXPECT_FALSE(decode(b, why).has_value()) << what;
  EXPECT_FALSE(why.empty()) << what;
}

Header header_of(const Bytes& b) {
  Header h;
  std::memcpy(&h, b.data(), sizeof h);
  return h;
}
void set_header(Bytes& b, const Header& h) { std::memcpy(b.data(), &h, sizeof h); }

template <class T>
void check_fixed_round_trip(MsgType type, const T& fixed) {
  SCOPED_TRACE(to_string(type));
  Encoder e(type, 42, fixed);
  Bytes wire = to_bytes(e.bytes());
  ASSERT_EQ(wire.size(), sizeof(Header) + sizeof(T));
  auto m = must_decode(wire);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->type(), type);
  EXPECT_EQ(m->header.worker, 42u);
  EXPECT_EQ(m->header.magic, kMagic);
  EXPECT_EQ(m->header.version, kVersion);
  EXPECT_EQ(m->header.body_bytes, sizeof(T));
  std::string why;
  auto back = fixed_part<T>(*m, why);
  ASSERT_TRUE(back) << why;
  EXPECT_EQ(std::memcmp(&*back, &fixed, sizeof(T)), 0);
  EXPECT_TRUE(tail<T>(*m).empty());
}

Hello make_hello(std::uint32_t identity_bytes, std::uint32_t address_bytes,
                 std::uint32_t heartbeat_address_bytes = 2) {
  Hello h{};
  h.heartbeat_address_bytes = heartbeat_address_bytes;
  h.job_key = 0x0123456789abcdefULL;
  h.pid = 4242;
  h.identity_bytes = identity_bytes;
  h.address_bytes = address_bytes;
  std::strcpy(h.host, "node-7");
  return h;
}

Assign make_assign(std::uint32_t args_bytes, std::uint32_t notices) {
  Assign a{};
  a.step = 77;
  a.segment = 5;
  a.attempt = 2;
  a.routine = 3;
  a.index = 4;
  a.count = 9;
  a.args_bytes = args_bytes;
  a.notices = notices;
  a.invalidate_all = 0;
  return a;
}

TEST(Protocol, FixedMessagesRoundTrip) {
  check_fixed_round_trip(MsgType::welcome,
                         Welcome{7, 16384, 0x3d0000000000ULL, 1ULL << 30, 4, 250, 3000, 1, 0x7f0000001000ULL, 42,
                                 0x7f0000002000ULL, 43, 0, 0, 24ULL << 20, LocalOffer{4242, 7, 8, 0, 1, 2, 3, 4, 5}, 1, 0});
  check_fixed_round_trip(MsgType::page_request, PageRequest{12, 100, 8});
  check_fixed_round_trip(MsgType::result_chunk, ResultChunk{3, 17, 2, 1 << 20, 65536, 12, 0});
  check_fixed_round_trip(MsgType::shutdown, Shutdown{-3, 0});
  check_fixed_round_trip(MsgType::hello, make_hello(0, 0));
  check_fixed_round_trip(MsgType::assign, make_assign(0, 0));
  check_fixed_round_trip(MsgType::prepare, Prepare{96ULL << 20});
  check_fixed_round_trip(MsgType::prepared, Prepare{(1ULL << 40) + 16384});
}

TEST(Protocol, EmptyMessagesRoundTrip) {
  for (MsgType t : {MsgType::request_work, MsgType::heartbeat, MsgType::leave}) {
    SCOPED_TRACE(to_string(t));
    Encoder e(t, 9, Empty{});
    Bytes wire = to_bytes(e.bytes());
    ASSERT_EQ(wire.size(), sizeof(Header));
    auto m = must_decode(wire);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->type(), t);
    EXPECT_EQ(m->header.worker, 9u);
    EXPECT_TRUE(m->body.empty());
  }
}

TEST(Protocol, EveryTypeHasAName) {
  for (std::uint16_t t = 1; t <= static_cast<std::uint16_t>(MsgType::max_type); ++t) {
    EXPECT_STRNE(to_string(static_cast<MsgType>(t)), "unknown") << t;
  }
  EXPECT_STREQ(to_string(static_cast<MsgType>(0)), "unknown");
}

TEST(Protocol, HelloRoundTripWithIdentityAndAddress) {
  const std::string identity = "build-id:5f3a9c0e";
  const Bytes address = {std::byte{0}, std::byte{1}, std::byte{0xfe}, std::byte{0x7f}, std::byte{0}};
  Hello h = make_hello(static_cast<std::uint32_t>(identity.size()), static_cast<std::uint32_t>(address.size()));
  const Bytes heartbeat_address = {std::byte{9}, std::byte{8}};
  Encoder e(MsgType::hello, kNoWorker, h);
  e.append(text_bytes(identity)).append(address).append(heartbeat_address);
  Bytes wire = to_bytes(e.bytes());
  auto m = must_decode(wire);
  ASSERT_TRUE(m);
  std::string why;
  auto v = parse_hello(*m, why);
  ASSERT_TRUE(v) << why;
  EXPECT_EQ(v->fixed.job_key, h.job_key);
  EXPECT_EQ(v->fixed.pid, 4242u);
  EXPECT_STREQ(v->fixed.host, "node-7");
  EXPECT_EQ(v->identity, identity);
  EXPECT_EQ(to_bytes(v->address), address);
  EXPECT_EQ(to_bytes(v->heartbeat_address), heartbeat_address);
}

TEST(Protocol, HelloHostIsAlwaysTerminated) {
  Hello h = make_hello(0, 1, 1);
  std::memset(h.host, 'x', sizeof h.host);
  Encoder e(MsgType::hello, kNoWorker, h);
  e.append(Bytes{std::byte{1}, std::byte{2}});
  Bytes wire = to_bytes(e.bytes());
  auto m = must_decode(wire);
  ASSERT_TRUE(m);
  std::string why;
  auto v = parse_hello(*m, why);
  ASSERT_TRUE(v) << why;
  EXPECT_EQ(std::strlen(v->fixed.host), sizeof h.host - 1);
}

TEST(Protocol, RefuseRoundTripWithReason) {
  // The code tells a worker of another executable (an error) from one that came to a job
  // that is ending (it exits 0).
  for (RefuseCode code : {RefuseCode::error, RefuseCode::job_ending}) {
    const std::string reason = code == RefuseCode::error ? "worker runs a different executable" : "the job is ending";
    Encoder e(MsgType::refuse, 3, Refuse{static_cast<std::uint32_t>(reason.size()), code});
    e.append(text_bytes(reason));
    Bytes wire = to_bytes(e.bytes());
    auto m = must_decode(wire);
    ASSERT_TRUE(m);
    std::string why;
    auto r = fixed_part<Refuse>(*m, why);
    ASSERT_TRUE(r) << why;
    EXPECT_EQ(r->code, code);
    auto t = tail<Refuse>(*m);
    ASSERT_EQ(t.size(), r->reason_bytes);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(t.data()), t.size()), reason);
  }
}

TEST(Protocol, AssignRoundTripWithArgsAndNotices) {
  const Bytes args = {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}, std::byte{5},
                      std::byte{6}, std::byte{7}};   // odd length: notices are unaligned
  const std::vector<std::uint32_t> notices = {0, 5, 6, 7, 1000, 0xffffffffu};
  Assign a = make_assign(static_cast<std::uint32_t>(args.size()), static_cast<std::uint32_t>(notices.size()));
  a.invalidate_all = 1;
  Encoder e(MsgType::assign, 11, a);
  e.append(args).append(notices.data(), notices.size() * sizeof(std::uint32_t));
  Bytes wire = to_bytes(e.bytes());
  auto m = must_decode(wire);
  ASSERT_TRUE(m);
  std::string why;
  auto v = parse_assign(*m, why);
  ASSERT_TRUE(v) << why;
  EXPECT_EQ(v->fixed.step, 77u);
  EXPECT_EQ(v->fixed.segment, 5u);
  EXPECT_EQ(v->fixed.attempt, 2u);
  EXPECT_EQ(v->fixed.routine, 3u);
  EXPECT_EQ(v->fixed.index, 4u);
  EXPECT_EQ(v->fixed.count, 9u);
  EXPECT_EQ(v->fixed.invalidate_all, 1u);
  EXPECT_EQ(to_bytes(v->args), args);
  EXPECT_EQ(v->notices, notices);
}

TEST(Protocol, AssignWithoutTails) {
  Encoder e(MsgType::assign, 1, make_assign(0, 0));
  Bytes wire = to_bytes(e.bytes());
  auto m = must_decode(wire);
  ASSERT_TRUE(m);
  std::string why;
  auto v = parse_assign(*m, why);
  ASSERT_TRUE(v) << why;
  EXPECT_TRUE(v->args.empty());
  EXPECT_TRUE(v->notices.empty());
}

TEST(Protocol, PageDataRoundTripWithKindsAndPages) {
  constexpr std::size_t kPage = 4096;
  const std::vector<std::uint8_t> kinds = {1, 0, 1};
  Bytes pages(2 * kPage);
  for (std::size_t i = 0; i < pages.size(); ++i) pages[i] = std::byte(i * 7 % 251);
  Encoder e(MsgType::page_data, 2, PageData{9, 40, 3, PageStatus::ok, 0});
  e.append(kinds.data(), kinds.size()).append(pages);
  Bytes wire = to_bytes(e.bytes());
  auto m = must_decode(wire);
  ASSERT_TRUE(m);
  std::string why;
  auto d = fixed_part<PageData>(*m, why);
  ASSERT_TRUE(d) << why;
  EXPECT_EQ(d->step, 9u);
  EXPECT_EQ(d->first, 40u);
  EXPECT_EQ(d->count, 3u);
  EXPECT_EQ(d->status, PageStatus::ok);
  auto t = tail<PageData>(*m);
  ASSERT_EQ(t.size(), kinds.size() + pages.size());
  EXPECT_EQ(std::memcmp(t.data(), kinds.data(), kinds.size()), 0);
  EXPECT_EQ(Bytes(t.begin() + 3, t.end()), pages);
}

TEST(Protocol, ResultChunkWithSeparateTail) {
  // The worker sends the header+fixed part and the diff bytes as two parts of one message.
  Bytes diff(1000);
  for (std::size_t i = 0; i < diff.size(); ++i) diff[i] = std::byte(i % 256);
  Encoder e(MsgType::result_chunk, 5, ResultChunk{4, 8, 1, 5000, 2000, 0, 0});
  Bytes head = to_bytes(e.bytes_with_tail(diff.size()));
  ASSERT_EQ(head.size(), sizeof(Header) + sizeof(ResultChunk));
  EXPECT_EQ(header_of(head).body_bytes, sizeof(ResultChunk) + diff.size());
  // Without its tail the head alone is refused: its header promises more bytes.
  expect_refused(head, "head without its tail");
  Bytes wire = head;
  wire.insert(wire.end(), diff.begin(), diff.end());
  auto m = must_decode(wire);
  ASSERT_TRUE(m);
  std::string why;
  auto r = fixed_part<ResultChunk>(*m, why);
  ASSERT_TRUE(r) << why;
  EXPECT_EQ(r->step, 4u);
  EXPECT_EQ(r->segment, 8u);
  EXPECT_EQ(r->attempt, 1u);
  EXPECT_EQ(r->total_bytes, 5000u);
  EXPECT_EQ(r->offset, 2000u);
  EXPECT_EQ(to_bytes(tail<ResultChunk>(*m)), diff);
  // bytes() after bytes_with_tail() forgets the tail again.
  EXPECT_EQ(header_of(to_bytes(e.bytes())).body_bytes, sizeof(ResultChunk));
}

TEST(Protocol, DecodeRejectsMalformedHeaders) {
  Encoder e(MsgType::page_request, 1, PageRequest{1, 2, 3});
  const Bytes good = to_bytes(e.bytes());
  ASSERT_TRUE(must_decode(good));

  expect_refused({}, "empty");
  expect_refused(Bytes(good.begin(), good.begin() + sizeof(Header) - 1), "shorter than a header");

  Bytes b = good;
  Header h = header_of(b);
  h.magic ^= 1;
  set_header(b, h);
  expect_refused(b, "bad magic");

  for (std::uint16_t v : {std::uint16_t(0), std::uint16_t(kVersion + 1), std::uint16_t(0xffff)}) {
    b = good;
    h = header_of(b);
    h.version = v;
    set_header(b, h);
    expect_refused(b, "wrong version");
  }
  for (std::uint16_t t : {std::uint16_t(0), std::uint16_t(static_cast<std::uint16_t>(MsgType::max_type) + 1),
                          std::uint16_t(0xffff)}) {
    b = good;
    h = header_of(b);
    h.type = t;
    set_header(b, h);
    expect_refused(b, "unknown type");
  }
  for (std::int64_t delta : {std::int64_t{-1}, std::int64_t{1}, -static_cast<std::int64_t>(sizeof(PageRequest)),
                             std::int64_t{1} << 20}) {
    b = good;
    h = header_of(b);
    h.body_bytes = static_cast<std::uint32_t>(h.body_bytes + delta);
    set_header(b, h);
    expect_refused(b, "body length mismatch");
  }
  // Truncated or extended bodies with an honest-looking header.
  expect_refused(Bytes(good.begin(), good.end() - 1), "truncated body");
  b = good;
  b.push_back(std::byte{0});
  expect_refused(b, "extra byte");
}

TEST(Protocol, FixedPartRejectsShortBody) {
  // A welcome whose body is an Empty: the header is consistent, the body too short.
  Encoder e(MsgType::welcome, 1, Empty{});
  e.append(Bytes(sizeof(Welcome) - 1));
  Bytes wire = to_bytes(e.bytes());
  auto m = must_decode(wire);
  ASSERT_TRUE(m);
  std::string why;
  EXPECT_FALSE(fixed_part<Welcome>(*m, why));
  EXPECT_NE(why.find("welcome"), std::string::npos) << why;
}

// Encodes a hello whose fixed part claims the given lengths, followed by tail_bytes bytes.
std::optional<HelloView> hello_with(std::uint32_t identity, std::uint32_t address, std::size_t tail_bytes,
                                    std::string& why) {
  static Bytes wire;
  Encoder e(MsgType::hello, kNoWorker, make_hello(identity, address));
  e.append(Bytes(tail_bytes, std::byte{'a'}));
  wire = to_bytes(e.bytes());
  auto m = decode(wire, why);
  if (!m) {
    ADD_FAILURE() << "decode: " << why;
    return std::nullopt;
  }
  return parse_hello(*m, why);
}

TEST(Protocol, ParseHelloRejectsInconsistentTails) {
  std::string why;
  // Tails hold identity + address + a 2-byte heartbeat address (make_hello's default).
  EXPECT_TRUE(hello_with(3, 4, 9, why)) << why;
  struct Case { std::uint32_t identity, address; std::size_t tail; const char* what; };
  for (const Case& c : {Case{3, 4, 8, "tail too short"}, Case{3, 4, 10, "tail too long"},
                        Case{7, 0, 9, "no address"}, Case{0, 0, 0, "nothing"},
                        Case{5000, 1, 5003, "identity too long"},
                        Case{0xffffffffu, 8, 9, "lengths overflow 32 bits"},
                        Case{8, 0xffffffffu, 9, "lengths overflow 32 bits"}}) {
    why.clear();
    EXPECT_FALSE(hello_with(c.identity, c.address, c.tail, why)) << c.what;
    EXPECT_FALSE(why.empty()) << c.what;
  }
  // Short of the fixed part.
  Encoder e(MsgType::hello, kNoWorker, Empty{});
  e.append(Bytes(sizeof(Hello) - 1));
  Bytes wire = to_bytes(e.bytes());
  auto m = must_decode(wire);
  ASSERT_TRUE(m);
  EXPECT_FALSE(parse_hello(*m, why));
}

std::optional<AssignView> assign_with(const Assign& a, const Bytes& tail, std::string& why) {
  static Bytes wire;   // the view points into it
  Encoder e(MsgType::assign, 1, a);
  e.append(tail);
  wire = to_bytes(e.bytes());
  auto m = decode(wire, why);
  if (!m) {
    ADD_FAILURE() << "decode: " << why;
    return std::nullopt;
  }
  return parse_assign(*m, why);
}
std::optional<AssignView> assign_with(const Assign& a, std::size_t tail_bytes, std::string& why) {
  return assign_with(a, Bytes(tail_bytes, std::byte{1}), why);
}

TEST(Protocol, AssignCarriesPushedPages) {
  const std::vector<std::uint32_t> notices = {3, 9}, pushed = {4, 8};
  Bytes data(2 * 64);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::byte(i);
  Assign a = make_assign(0, static_cast<std::uint32_t>(notices.size()));
  a.pushed = 2;
  a.pushed_bytes = static_cast<std::uint32_t>(data.size());
  Encoder e(MsgType::assign, 11, a);
  e.append(notices.data(), 8).append(pushed.data(), 8).append(data);
  Bytes wire = to_bytes(e.bytes());
  auto m = must_decode(wire);
  ASSERT_TRUE(m);
  std::string why;
  auto v = parse_assign(*m, why);
  ASSERT_TRUE(v) << why;
  EXPECT_EQ(v->notices, notices);
  EXPECT_EQ(v->pushed, pushed);
  EXPECT_EQ(to_bytes(v->pushed_data), data);
  // Data that is not a whole number of pages per pushed page, or pages without data.
  for (auto [count, bytes] : {std::pair{2u, 127u}, std::pair{2u, 0u}, std::pair{0u, 128u}}) {
    Assign b = a;
    b.pushed = count;
    b.pushed_bytes = bytes;
    Encoder be(MsgType::assign, 11, b);
    be.append(notices.data(), 8).append(pushed.data(), 4 * std::size_t{count}).append(Bytes(bytes));
    Bytes w = to_bytes(be.bytes());
    auto bm = must_decode(w);
    ASSERT_TRUE(bm);
    EXPECT_FALSE(parse_assign(*bm, why)) << count << " pages, " << bytes << " bytes";
  }
}

TEST(Protocol, AssignCarriesFrozenRunsBeforeThePushedData) {
  const std::vector<std::uint32_t> notices = {3}, pushed = {4}, frozen = {10, 6, 40, 2};
  Bytes data(64, std::byte{7}), tail;
  for (const auto* list : {&notices, &pushed, &frozen}) {
    const auto* b = reinterpret_cast<const std::byte*>(list->data());
    tail.insert(tail.end(), b, b + list->size() * 4);
  }
  tail.insert(tail.end(), data.begin(), data.end());
  Assign a = make_assign(0, 1);
  a.pushed = 1;
  a.pushed_bytes = 64;
  a.frozen_runs = 2;
  std::string why;
  auto v = assign_with(a, tail, why);
  ASSERT_TRUE(v) << why;
  EXPECT_EQ(v->frozen, frozen);
  EXPECT_EQ(v->pushed, pushed);
  EXPECT_EQ(to_bytes(v->pushed_data), data);
  a.frozen_runs = 3;   // one run more than the body holds
  EXPECT_FALSE(assign_with(a, tail, why));
}

TEST(Protocol, ReadSetRoundTripAndLengthCheck) {
  const std::vector<std::uint32_t> pages = {7, 8, 1000};
  Encoder e(MsgType::read_set, 4, ReadSet{12, 3, 0});
  e.append(pages.data(), pages.size() * 4);
  Bytes wire = to_bytes(e.bytes());
  auto m = must_decode(wire);
  ASSERT_TRUE(m);
  std::string why;
  StepId step = 0;
  auto v = parse_read_set(*m, step, why);
  ASSERT_TRUE(v) << why;
  EXPECT_EQ(*v, pages);
  EXPECT_EQ(step, 12u);
  Encoder bad(MsgType::read_set, 4, ReadSet{12, 4, 0});
  bad.append(pages.data(), pages.size() * 4);
  Bytes w = to_bytes(bad.bytes());
  auto bm = must_decode(w);
  ASSERT_TRUE(bm);
  EXPECT_FALSE(parse_read_set(*bm, step, why));
  EXPECT_NE(why.find("read_set"), std::string::npos) << why;
}

TEST(Protocol, ParseAssignRejectsInconsistentTailsAndIndices) {
  std::string why;
  EXPECT_TRUE(assign_with(make_assign(5, 2), 13, why)) << why;
  EXPECT_FALSE(assign_with(make_assign(5, 2), 12, why));
  EXPECT_FALSE(assign_with(make_assign(5, 2), 14, why));
  EXPECT_FALSE(assign_with(make_assign(0, 0x40000000u), 0, why)) << "notices*4 wraps to 0 in 32 bits";
  EXPECT_FALSE(assign_with(make_assign(0xffffffffu, 1), 3, why)) << "args+notices wrap in 32 bits";
  Assign a = make_assign(0, 0);
  a.index = a.count;
  EXPECT_FALSE(assign_with(a, 0, why)) << "index == count";
  a.index = a.count + 1;
  EXPECT_FALSE(assign_with(a, 0, why)) << "index > count";
  a.index = 0;
  a.count = 0;
  EXPECT_FALSE(assign_with(a, 0, why)) << "count == 0";
  a.count = 1;
  EXPECT_TRUE(assign_with(a, 0, why)) << why;
}

// Checks what a decoded message promises, then runs every parser over it. Returns whether
// decode accepted the bytes (so the caller can check the fuzzer reaches the parsers).
bool decode_and_parse(const Bytes& b) {
  std::string why;
  auto m = decode(b, why);
  if (!m) {
    EXPECT_FALSE(why.empty());
    return false;
  }
  EXPECT_GE(b.size(), sizeof(Header));
  EXPECT_EQ(std::size_t{m->header.body_bytes}, b.size() - sizeof(Header));
  EXPECT_EQ(m->body.size(), b.size() - sizeof(Header));
  EXPECT_EQ(m->body.data(), b.data() + sizeof(Header));
  EXPECT_EQ(m->header.magic, kMagic);
  EXPECT_EQ(m->header.version, kVersion);
  EXPECT_GE(m->header.type, 1);
  EXPECT_LE(m->header.type, static_cast<std::uint16_t>(MsgType::max_type));
  if (auto h = parse_hello(*m, why)) {
    EXPECT_EQ(sizeof(Hello) + h->identity.size() + h->address.size() + h->heartbeat_address.size(),
              m->body.size());
    EXPECT_FALSE(h->address.empty());
    EXPECT_LT(std::strlen(h->fixed.host), sizeof h->fixed.host);
  }
  if (auto a = parse_assign(*m, why)) {
    EXPECT_EQ(sizeof(Assign) + a->args.size() +
                  4 * (a->notices.size() + a->own_segments.size() + a->own_pages.size() + a->pushed.size()) +
                  a->pushed_data.size(),
              m->body.size());
    EXPECT_EQ(a->pushed.empty(), a->pushed_data.empty());
    EXPECT_LT(a->fixed.index, a->fixed.count);
  }
  StepId step = 0;
  if (auto r = parse_read_set(*m, step, why)) {
    EXPECT_EQ(sizeof(ReadSet) + 4 * r->size(), m->body.size());
  }
  if (auto inner = parse_bundle(*m, why)) {
    EXPECT_FALSE(inner->empty());
    for (auto one : *inner) {
      auto d = decode(one, why);
      EXPECT_TRUE(d.has_value()) << "a bundle held a message the decoder refuses";
      if (!d) continue;
      EXPECT_EQ(d->header.worker, m->header.worker);
      EXPECT_NE(d->type(), MsgType::bundle);
      EXPECT_GE(one.data(), b.data());
      EXPECT_LE(one.data() + one.size(), b.data() + b.size());
    }
  }
  (void)fixed_part<Welcome>(*m, why);
  (void)fixed_part<PageData>(*m, why);
  (void)fixed_part<ResultChunk>(*m, why);
  (void)fixed_part<Prepare>(*m, why);
  return true;
}

// A valid message of a random type with random fixed part and tail, as a fuzz seed.
Bytes random_valid_message(std::mt19937_64& rng) {
  const auto type = static_cast<MsgType>(1 + rng() % static_cast<std::uint16_t>(MsgType::max_type));
  std::vector<std::byte> fixed(rng() % 96);
  for (auto& x : fixed) x = std::byte(rng() & 0xff);
  Encoder e(type, static_cast<WorkerId>(rng()), Empty{});
  e.append(fixed);
  if (type == MsgType::hello && fixed.size() >= sizeof(Hello)) {
    // Make some hellos consistent so parse_hello's success path is fuzzed too.
    Hello h = make_hello(static_cast<std::uint32_t>(rng() % 8), 1 + static_cast<std::uint32_t>(rng() % 8));
    Encoder he(type, 1, h);
    he.append(Bytes(h.identity_bytes + h.address_bytes + h.heartbeat_address_bytes, std::byte{'z'}));
    return to_bytes(he.bytes());
  }
  if (type == MsgType::bundle && rng() % 2 == 0) {
    // A valid bundle of a few small messages, so parse_bundle's success path is fuzzed.
    const auto worker = static_cast<WorkerId>(rng() % 4);
    Bundler bundle(worker);
    for (int k = 2 + static_cast<int>(rng() % 3); k > 0; --k) {
      Encoder one(MsgType::read_set, worker, ReadSet{7, 1, 0});
      const std::uint32_t page = static_cast<std::uint32_t>(rng() % 100);
      one.append(&page, sizeof page);
      if (rng() % 2) one.append(Bytes(rng() % 5, std::byte{1}));   // some of odd length
      bundle.add(one.bytes());
    }
    return to_bytes(bundle.finish());
  }
  if (type == MsgType::assign && rng() % 2 == 0) {
    Assign a = make_assign(static_cast<std::uint32_t>(rng() % 16), static_cast<std::uint32_t>(rng() % 4));
    Encoder ae(type, 1, a);
    ae.append(Bytes(a.args_bytes + 4 * a.notices, std::byte{3}));
    return to_bytes(ae.bytes());
  }
  return to_bytes(e.bytes());
}

TEST(Protocol, FuzzNeverCrashesNorAcceptsALengthMismatch) {
  std::mt19937_64 rng(20240611);
  std::size_t accepted = 0;
  for (int i = 0; i < 200000; ++i) {
    Bytes b;
    switch (rng() % 4) {
      case 0:  // pure noise, sometimes with a plausible magic and version
        b.resize(rng() % 200);
        for (auto& x : b) x = std::byte(rng() & 0xff);
        if (b.size() >= sizeof(Header) && rng() % 2) {
          Header h = header_of(b);
          h.magic = kMagic;
          h.version = kVersion;
          set_header(b, h);
        }
        break;
      case 1:  // a valid message with a few bytes flipped
        b = random_valid_message(rng);
        for (int k = 1 + static_cast<int>(rng() % 4); k > 0; --k) b[rng() % b.size()] ^= std::byte(1 + rng() % 255);
        break;
      case 2: {  // a valid message truncated or extended
        b = random_valid_message(rng);
        if (rng() % 2) b.resize(rng() % (b.size() + 1));
        else b.resize(b.size() + 1 + rng() % 16, std::byte(rng() & 0xff));
        break;
      }
      default: {  // a valid message with a lying length field or tail lengths
        b = random_valid_message(rng);
        if (rng() % 2) {
          Header h = header_of(b);
          h.body_bytes = static_cast<std::uint32_t>(rng());
          set_header(b, h);
        } else if (b.size() >= sizeof(Header) + 24) {
          const std::size_t at = sizeof(Header) + 8 + rng() % 16;
          const auto v = static_cast<std::uint32_t>(rng());
          std::memcpy(b.data() + at, &v, std::min<std::size_t>(4, b.size() - at));
        }
        break;
      }
    }
    if (decode_and_parse(b)) ++accepted;
    if (HasFailure()) {
      ADD_FAILURE() << "fuzz case " << i << " failed";
      return;
    }
  }
  // The fuzzer must reach the parsers, not only the header checks.
  EXPECT_GT(accepted, 10000u);
}

// Bundles: several messages as one; the receiver takes them in order, or refuses the
// whole bundle when any part of it is wrong.
Bytes message_for(MsgType type, WorkerId worker, std::uint32_t tag) {
  Encoder e(type, worker, ReadSet{tag, 0, 0});
  return to_bytes(e.bytes());
}

TEST(Bundle, MessagesComeOutInOrderAndAloneWhenOne) {
  Bundler b(9);
  const Bytes first = message_for(MsgType::read_set, 9, 1);
  b.add(first);
  EXPECT_EQ(to_bytes(b.finish()), first) << "one message goes as it is, not bundled";
  EXPECT_EQ(b.bytes(), first.size());
  Encoder odd(MsgType::result_chunk, 9, ResultChunk{3, 4, 1, 3, 0, 0, 0});
  odd.append(Bytes{std::byte{1}, std::byte{2}, std::byte{3}});   // 3 bytes: padding follows
  const Bytes second = to_bytes(odd.bytes());
  const Bytes third = message_for(MsgType::request_work, 9, 5);
  b.add(second);
  b.add(third);
  EXPECT_EQ(b.messages(), 3u);
  const Bytes all = to_bytes(b.finish());
  EXPECT_EQ(b.bytes(), all.size());
  auto m = must_decode(all);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->type(), MsgType::bundle);
  std::string why;
  auto inner = parse_bundle(*m, why);
  ASSERT_TRUE(inner) << why;
  ASSERT_EQ(inner->size(), 3u);
  EXPECT_EQ(to_bytes((*inner)[0]), first);
  EXPECT_EQ(to_bytes((*inner)[1]), second);
  EXPECT_EQ(to_bytes((*inner)[2]), third);
  b.clear();
  EXPECT_EQ(b.messages(), 0u);
  b.add(third);
  EXPECT_EQ(to_bytes(b.finish()), third) << "clear() starts a new bundle";
}

TEST(Bundle, AnyBadEntryRefusesTheWholeBundle) {
  auto bundle_of = [](const std::vector<Bytes>& messages, WorkerId worker = 9) {
    Bundler b(worker);
    for (const Bytes& one : messages) b.add(one);
    b.add(message_for(MsgType::read_set, worker, 77));   // two or more: a real bundle
    return to_bytes(b.finish());
  };
  auto refused = [](const Bytes& bytes, const std::string& reason) {
    std::string why;
    auto m = decode(bytes, why);
    if (!m) return ::testing::AssertionFailure() << "the bundle's own header was refused: " << why;
    if (parse_bundle(*m, why)) return ::testing::AssertionFailure() << "accepted";
    if (why.find(reason) == std::string::npos) return ::testing::AssertionFailure() << "refused for: " << why;
    return ::testing::AssertionSuccess();
  };
  const Bytes good = message_for(MsgType::read_set, 9, 1);
  EXPECT_TRUE(refused(bundle_of({message_for(MsgType::read_set, 8, 1)}), "another worker"));
  EXPECT_TRUE(refused(bundle_of({bundle_of({good})}), "holds a bundle"));
  for (MsgType joining : {MsgType::hello, MsgType::welcome, MsgType::refuse}) {
    EXPECT_TRUE(refused(bundle_of({message_for(joining, 9, 1)}), "holds a")) << to_string(joining);
  }
  Bytes bad_inner = good;
  bad_inner[0] ^= std::byte{1};   // magic
  EXPECT_TRUE(refused(bundle_of({bad_inner}), "entry 0"));
  // Framing: an entry past the end, reserved bits, padding, a truncated frame.
  Bytes b = bundle_of({good});
  auto frame_at = sizeof(Header);
  std::uint32_t len = 0;
  std::memcpy(&len, b.data() + frame_at, 4);
  Bytes longer = b;
  const std::uint32_t too_long = len + 4096;
  std::memcpy(longer.data() + frame_at, &too_long, 4);
  EXPECT_TRUE(refused(longer, "past the end"));
  Bytes reserved = b;
  reserved[frame_at + 4] = std::byte{1};
  EXPECT_TRUE(refused(reserved, "reserved"));
  Encoder odd(MsgType::result_chunk, 9, ResultChunk{3, 4, 1, 1, 0, 0, 0});
  odd.append(Bytes{std::byte{1}});
  Bytes padded = bundle_of({to_bytes(odd.bytes())});
  padded[sizeof(Header) + 8 + sizeof(Header) + sizeof(ResultChunk) + 1] = std::byte{5};   // first padding byte
  EXPECT_TRUE(refused(padded, "padding"));
  Encoder cut(MsgType::bundle, 9, Empty{});
  cut.append(Bytes(4, std::byte{0}));
  EXPECT_TRUE(refused(to_bytes(cut.bytes()), "truncated"));
  Encoder empty(MsgType::bundle, 9, Empty{});
  EXPECT_TRUE(refused(to_bytes(empty.bytes()), "empty"));
  Bundler many(9);
  for (std::size_t i = 0; i <= Bundler::kMaxMessages; ++i) many.add(good);
  EXPECT_TRUE(refused(to_bytes(many.finish()), "more than"));
}

// Job addresses.

TEST(JobAddress, RoundTrip) {
  JobAddress a{"tcp;ofi_rxm", "0a0b0c0d00ff", 0xdeadbeefcafef00dULL};
  const std::string text = a.to_string();
  EXPECT_EQ(text, "tcp;ofi_rxm/0a0b0c0d00ff/deadbeefcafef00d");
  JobAddress b = JobAddress::parse(text);
  EXPECT_EQ(b.provider, a.provider);
  EXPECT_EQ(b.endpoint, a.endpoint);
  EXPECT_EQ(b.job_key, a.job_key);

  JobAddress z{"shm", "00", 0};
  EXPECT_EQ(JobAddress::parse(z.to_string()).job_key, 0u);
  EXPECT_EQ(JobAddress::parse(z.to_string()).provider, "shm");
  JobAddress m{"shm", "ab", std::numeric_limits<std::uint64_t>::max()};
  EXPECT_EQ(JobAddress::parse(m.to_string()).job_key, m.job_key);
}

TEST(JobAddress, RejectsJunk) {
  for (const char* junk : {"", "/", "//", "a/b", "tcp//k", "tcp/ab/", "/ab/12", "tcp/ab/xyz", "tcp/ab/12g",
                           "tcp/ab/12/34", "tcp", "tcp/", "tcp/ab/12",   // a key cut short is no key
                           "tcp/ab/0123456789abcde", "tcp/zz/0123456789abcdef", "tcp/abc/0123456789abcdef"}) {
    EXPECT_THROW(JobAddress::parse(junk), calypso::Error) << '"' << junk << '"';
  }
}

TEST(JobAddress, ErrorsSayWhatIsWrong) {
  auto error_of = [](const char* text) -> std::string {
    try {
      JobAddress::parse(text);
    } catch (const calypso::Error& e) {
      return e.what();
    }
    return "accepted";
  };
  EXPECT_NE(error_of("tcp/ab/e571").find("calypso: bad job key in manager address 'tcp/ab/e571': expected 16 hex digits"),
            std::string::npos) << error_of("tcp/ab/e571");
  EXPECT_NE(error_of("tcp/zz/0123456789abcdef").find("calypso: bad manager address 'tcp/zz/0123456789abcdef': its middle part"),
            std::string::npos) << error_of("tcp/zz/0123456789abcdef");
}

TEST(JobAddress, RejectsKeysThatAreNotPlainHex) {
  for (const char* junk : {"tcp/ab/-1", "tcp/ab/ 12", "tcp/ab/+12", "tcp/ab/10000000000000000"}) {
    EXPECT_THROW(JobAddress::parse(junk), calypso::Error) << '"' << junk << '"';
  }
}

}  // namespace
}  // namespace calypso::sched
