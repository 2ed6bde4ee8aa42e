// Tests of the local message channel (net/local_channel.hpp) and of how a manager opens
// a worker's (sched/local_messages.hpp): within one process through /proc/self, as the
// manager opens a worker's files, and across a fork for wake-ups and a killed peer.
// The Endpoint with a channel attached is tested here too: messages go through the
// channel instead of the provider, and wait() wakes for them.
#include "net/endpoint.hpp"
#include "net/local_channel.hpp"
#include "sched/local_messages.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace calypso::sched {
namespace {

using namespace std::chrono_literals;
using net::LocalChannel;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kMax = 4096;   // largest message in these tests

std::vector<std::byte> pattern(std::size_t n, int seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>(i * 13 + seed);
  return v;
}

LocalChannel open_side(const LocalChannel& creator, std::size_t max_message = kMax) {
  std::string why;
  auto c = open_offered_channel(static_cast<std::uint32_t>(getpid()), offer_of(creator), max_message, why);
  EXPECT_TRUE(c) << why;
  if (!c) throw std::runtime_error(why);
  return std::move(*c);
}

net::SendStatus send(LocalChannel& c, const std::vector<std::byte>& m, std::chrono::milliseconds patience = 0ms) {
  const std::span<const std::byte> parts[] = {m};
  return c.send(parts, m.size(), Clock::now() + patience);
}

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

TEST(LocalChannel, MessagesArriveWholeAndInOrderBothWaysAroundTheRings) {
  LocalChannel worker = LocalChannel::create(kMax);
  LocalChannel manager = open_side(worker);
  std::vector<std::byte> got;
  // Sizes that do not divide the ring, so that messages wrap at every offset.
  for (int i = 0; i < 3000; ++i) {
    const auto m = pattern(static_cast<std::size_t>((i * 577) % kMax), i);
    LocalChannel& from = i % 2 == 0 ? worker : manager;
    LocalChannel& to = i % 2 == 0 ? manager : worker;
    ASSERT_EQ(send(from, m), net::SendStatus::ok) << i;
    ASSERT_EQ(to.receive(got), LocalChannel::Received::message) << i;
    ASSERT_EQ(got, m) << i;
    ASSERT_EQ(to.receive(got), LocalChannel::Received::none) << i;
  }
}

TEST(LocalChannel, AFullRingWaitsForRoomAndThenSaysAgain) {
  LocalChannel worker = LocalChannel::create(kMax);
  LocalChannel manager = open_side(worker);
  const auto m = pattern(kMax, 1);
  int sent = 0;
  while (send(worker, m) == net::SendStatus::ok) ++sent;
  EXPECT_GE(sent, 2) << "an empty ring holds two of the largest messages";
  const auto start = Clock::now();
  EXPECT_EQ(send(worker, m, 30ms), net::SendStatus::again);
  EXPECT_GE(Clock::now() - start, 30ms);
  std::vector<std::byte> got;
  ASSERT_EQ(manager.receive(got), LocalChannel::Received::message);
  EXPECT_EQ(send(worker, m), net::SendStatus::ok) << "room again once the receiver took one";
  for (int i = 0; i < sent; ++i) {
    ASSERT_EQ(manager.receive(got), LocalChannel::Received::message) << i;
    EXPECT_EQ(got, m);
  }
  EXPECT_EQ(manager.receive(got), LocalChannel::Received::none);
}

// A sender wakes the receiver only when it said it sleeps; then once is enough.
TEST(LocalChannel, TheBellRingsOnlyForASleepingReceiver) {
  LocalChannel worker = LocalChannel::create(kMax);
  LocalChannel manager = open_side(worker);
  const auto m = pattern(100, 2);
  ASSERT_EQ(send(worker, m), net::SendStatus::ok);
  EXPECT_FALSE(readable(manager.bell_fd())) << "the manager did not sleep";
  EXPECT_TRUE(manager.sleep_unless_pending()) << "a message is pending: do not sleep";
  std::vector<std::byte> got;
  manager.awake();
  ASSERT_EQ(manager.receive(got), LocalChannel::Received::message);
  EXPECT_FALSE(manager.sleep_unless_pending());
  ASSERT_EQ(send(worker, m), net::SendStatus::ok);
  EXPECT_TRUE(readable(manager.bell_fd()));
  manager.awake();
  EXPECT_FALSE(readable(manager.bell_fd())) << "awake() empties the pipe";
  ASSERT_EQ(manager.receive(got), LocalChannel::Received::message);
  ASSERT_EQ(send(worker, m), net::SendStatus::ok);
  EXPECT_FALSE(readable(manager.bell_fd())) << "awake: no more bells";
}

// What a broken or hostile producer can write into the shared file: the receiver says
// `corrupt` and reads nothing outside the ring.
TEST(LocalChannel, GarbageFromTheProducerIsCorruptNotARead) {
  // local_channel.hpp's layout: the creator's ring's tail at 512, the opener's head at
  // 1024 + 128 (the opener's ring is the second direction).
  constexpr std::size_t kHeader = 4096, kFirstTail = 512, kSecondHead = 1024 + 128;
  for (int kind = 0; kind < 6; ++kind) {
    LocalChannel worker = LocalChannel::create(kMax);
    const auto offer = offer_of(worker);
    LocalChannel manager = open_side(worker);
    ASSERT_EQ(send(worker, pattern(64, 3)), net::SendStatus::ok);
    const std::size_t bytes = kHeader + 2 * offer.capacity;
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, offer.fd, 0);
    ASSERT_NE(p, MAP_FAILED);
    auto* file = static_cast<std::byte*>(p);
    auto put = [&](std::size_t at, std::uint64_t v) { std::memcpy(file + at, &v, sizeof v); };
    std::vector<std::byte> got;
    if (kind == 0) {
      put(kHeader, kMax + 1);             // a length above the largest message
    } else if (kind == 1) {
      put(kHeader, 1000);                 // a length past the tail
    } else if (kind == 2) {
      put(kFirstTail, 3 * offer.capacity);   // a tail more than a ring ahead
    } else if (kind == 3) {
      put(kHeader, ~std::uint64_t{0});    // a wrap marker with less than the ring's rest
    } else if (kind == 4) {
      ASSERT_EQ(manager.receive(got), LocalChannel::Received::message);
      put(kFirstTail, 8);                 // a tail behind the head
    } else {
      // The consumer side: a head moved past what was sent makes the sender give up.
      put(kSecondHead, 4096);
      EXPECT_EQ(send(manager, pattern(8, 1)), net::SendStatus::peer_failed);
      munmap(p, bytes);
      continue;
    }
    EXPECT_EQ(manager.receive(got), LocalChannel::Received::corrupt) << kind;
    munmap(p, bytes);
  }
}

TEST(LocalChannel, OnlyTheOfferedChannelOpens) {
  LocalChannel worker = LocalChannel::create(kMax);
  std::string why;
  auto offer = offer_of(worker);
  const auto pid = static_cast<std::uint32_t>(getpid());
  EXPECT_FALSE(open_offered_channel(pid, offer, 2 * kMax, why)) << "rings sized for another largest message";
  EXPECT_NE(why.find("largest message"), std::string::npos) << why;
  auto wrong = offer;
  wrong.nonce ^= 2;
  EXPECT_FALSE(open_offered_channel(pid, wrong, kMax, why));
  EXPECT_NE(why.find("another one"), std::string::npos) << why;
  wrong = offer;
  wrong.manager_bell_fd = wrong.fd;   // the file where a pipe is due
  EXPECT_FALSE(open_offered_channel(pid, wrong, kMax, why));
  wrong = offer;
  wrong.ino += 1;
  EXPECT_FALSE(open_offered_channel(pid, wrong, kMax, why));
  EXPECT_NE(why.find("not the offered file"), std::string::npos) << why;
  EXPECT_FALSE(open_offered_channel(pid, ChannelOffer{}, kMax, why));
  EXPECT_TRUE(open_offered_channel(pid, offer, kMax, why)) << why;
}

// Across processes: a child opens the channel as the manager would, echoes what it
// gets and sleeps on its bell in between; then it is killed, and sending to it only
// runs out of room (no SIGPIPE, no hang).
TEST(LocalChannel, AnotherProcessEchoesAndAKilledOneOnlyFillsTheRing) {
  LocalChannel worker = LocalChannel::create(kMax);
  const auto offer = offer_of(worker);
  const pid_t parent = getpid();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::string why;
    auto c = open_offered_channel(static_cast<std::uint32_t>(parent), offer, kMax, why);
    if (!c) _exit(2);
    std::vector<std::byte> got;
    for (int echoed = 0; echoed < 200;) {
      if (c->receive(got) == LocalChannel::Received::message) {
        const std::span<const std::byte> parts[] = {got};
        if (c->send(parts, got.size(), Clock::now() + 5s) != net::SendStatus::ok) _exit(3);
        ++echoed;
        continue;
      }
      if (!c->sleep_unless_pending()) {
        pollfd p{c->bell_fd(), POLLIN, 0};
        if (::poll(&p, 1, 5000) != 1) _exit(4);
      }
      c->awake();
    }
    // Asleep on the bell, flag set, when killed: the parent's next send writes the pipe.
    c->sleep_unless_pending();
    pollfd p{c->bell_fd(), POLLIN, 0};
    ::poll(&p, 1, -1);
    pause();
    _exit(0);
  }
  std::vector<std::byte> got;
  for (int i = 0; i < 200; ++i) {
    const auto m = pattern(static_cast<std::size_t>(1 + (i * 331) % kMax), i);
    ASSERT_EQ(send(worker, m, 5s), net::SendStatus::ok) << i;
    const auto deadline = Clock::now() + 5s;
    LocalChannel::Received r;
    while ((r = worker.receive(got)) == LocalChannel::Received::none && Clock::now() < deadline) {
      if (worker.sleep_unless_pending()) break;
      pollfd p{worker.bell_fd(), POLLIN, 0};
      ::poll(&p, 1, 100);
      worker.awake();
    }
    if (r == LocalChannel::Received::none) r = worker.receive(got);
    ASSERT_EQ(r, LocalChannel::Received::message) << i;
    ASSERT_EQ(got, m) << i;
  }
  kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status)) << "the echo ended early with " << WEXITSTATUS(status);
  const auto m = pattern(kMax, 9);
  net::SendStatus s = net::SendStatus::ok;
  for (int i = 0; i < 10 && s == net::SendStatus::ok; ++i) s = send(worker, m, 10ms);
  EXPECT_EQ(s, net::SendStatus::again);
}

// An endpoint with a channel attached for a peer sends to it and hears from it through
// the channel, and wait() wakes when a message comes that way.
TEST(LocalChannel, AnEndpointUsesTheAttachedChannelForItsPeer) {
  net::EndpointConfig cfg;
  cfg.max_message = kMax;
  net::Endpoint a = net::Endpoint::open(cfg);
  net::Endpoint b = net::Endpoint::open(cfg);
  const net::PeerId b_at_a = a.add_peer(b.local_address());
  const net::PeerId a_at_b = b.add_peer(a.local_address());
  LocalChannel creator = LocalChannel::create(kMax);
  LocalChannel opener = open_side(creator);
  a.attach_local(b_at_a, std::move(creator));
  b.attach_local(a_at_b, std::move(opener));
  std::vector<std::vector<std::byte>> at_b;
  std::thread sender([&] {
    std::this_thread::sleep_for(50ms);   // b is asleep in wait() by then
    for (int i = 0; i < 50; ++i) ASSERT_EQ(a.send(b_at_a, pattern(100 + i, i)), net::SendStatus::ok);
  });
  // Each wait ends with a message, never on its timeout: a lost wake-up would sleep 5 s.
  for (int rounds = 0; at_b.size() < 50 && rounds < 100; ++rounds) {
    ASSERT_TRUE(b.wait(5000ms)) << "slept through a message, after " << at_b.size();
    b.poll([&](const net::Event& e) {
      if (e.kind == net::Event::Kind::message) at_b.emplace_back(e.data.begin(), e.data.end());
    });
  }
  sender.join();
  ASSERT_EQ(at_b.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(at_b[static_cast<std::size_t>(i)], pattern(100 + i, i)) << i;
  EXPECT_EQ(b.local_messages(), 50u);
  EXPECT_EQ(a.local_messages(), 0u);
  // And back, through the same channel's other ring.
  ASSERT_EQ(b.send(a_at_b, pattern(7, 7)), net::SendStatus::ok);
  std::vector<std::byte> at_a;
  for (auto until = Clock::now() + 5s; at_a.empty() && Clock::now() < until;) {
    if (a.wait(100ms)) a.poll([&](const net::Event& e) { at_a.assign(e.data.begin(), e.data.end()); });
  }
  EXPECT_EQ(at_a, pattern(7, 7));
  EXPECT_EQ(a.local_messages(), 1u);
  // Removing the peer drops its channel: nothing more arrives that way.
  a.remove_peer(b_at_a);
  EXPECT_EQ(b.send(a_at_b, pattern(8, 8)), net::SendStatus::ok);
  EXPECT_EQ(a.poll([](const net::Event&) {}), 0u);
}

}  // namespace
}  // namespace calypso::sched
