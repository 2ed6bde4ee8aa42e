// Tests of reading the manager's home memory on its own host (local_home.hpp), within one
// process: the "manager" side is a memfd and a ControlWord of this process, offered
// through /proc/self's pid as the manager offers them to a worker.
#include "sched/local_home.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace calypso::sched {
namespace {

constexpr std::size_t kSize = 64 << 10;

// A region memfd of kSize bytes holding a known pattern.
class Home {
 public:
  Home() : fd_(memfd_create("test-region", MFD_CLOEXEC)) {
    EXPECT_GE(fd_.get(), 0);
    EXPECT_EQ(ftruncate(fd_.get(), kSize), 0);
    std::vector<std::byte> bytes(kSize);
    for (std::size_t i = 0; i < kSize; ++i) bytes[i] = static_cast<std::byte>(i * 7 + 1);
    EXPECT_EQ(pwrite(fd_.get(), bytes.data(), kSize, 0), static_cast<ssize_t>(kSize));
  }
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
};

TEST(LocalHome, ReadsTheOfferedMemoryAndControlWord) {
  Home home;
  ControlWord control;
  const LocalOffer offer = make_local_offer(home.fd(), control);
  EXPECT_EQ(offer.pid, static_cast<std::uint32_t>(getpid()));
  std::string why;
  auto local = LocalHome::open(offer, kSize, why);
  ASSERT_TRUE(local) << why;
  EXPECT_EQ(local->open_step(), 0u);
  control.set(17);
  EXPECT_EQ(local->open_step(), 17u);   // the same word, not a copy

  std::vector<std::byte> page(4096);
  ASSERT_TRUE(local->read(8192, page));
  for (std::size_t i = 0; i < page.size(); ++i) ASSERT_EQ(page[i], static_cast<std::byte>((8192 + i) * 7 + 1)) << i;
  const std::byte changed{0x5a};
  ASSERT_EQ(pwrite(home.fd(), &changed, 1, 8192), 1);   // the manager's later writes show
  ASSERT_TRUE(local->read(8192, std::span(page).first(1)));
  EXPECT_EQ(page[0], changed);

  EXPECT_FALSE(local->read(kSize - 4095, page));   // past the end: refused, not short
  EXPECT_FALSE(local->read(kSize + 1, std::span(page).first(0)));
  EXPECT_TRUE(local->read(kSize, std::span(page).first(0)));
}

TEST(LocalHome, RefusesAnythingButTheOfferedFiles) {
  Home home, other;
  ControlWord control;
  const LocalOffer good = make_local_offer(home.fd(), control);
  std::string why;

  LocalOffer remote{};   // another host: nothing offered
  EXPECT_FALSE(LocalHome::open(remote, kSize, why));
  EXPECT_NE(why.find("offered no local reads"), std::string::npos) << why;

  LocalOffer other_manager = good;   // same pid, descriptors and files elsewhere
  other_manager.nonce ^= 2;
  EXPECT_FALSE(LocalHome::open(other_manager, kSize, why));
  EXPECT_NE(why.find("another manager"), std::string::npos) << why;

  // A descriptor naming a FIFO with its dev and inode: refused without opening it (an
  // open for reading would wait for a writer).
  const std::string fifo = "/tmp/calypso-local-home-test." + std::to_string(getpid());
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  UniqueFd pipe_end(::open(fifo.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_GE(pipe_end.get(), 0);
  struct stat st{};
  ASSERT_EQ(fstat(pipe_end.get(), &st), 0);
  LocalOffer fifo_offer = good;
  fifo_offer.region_fd = pipe_end.get();
  fifo_offer.region_dev = st.st_dev;
  fifo_offer.region_ino = st.st_ino;
  EXPECT_FALSE(LocalHome::open(fifo_offer, kSize, why));
  unlink(fifo.c_str());

  LocalOffer wrong_file = good;   // a descriptor that is some other file (a recycled pid)
  wrong_file.region_fd = other.fd();
  EXPECT_FALSE(LocalHome::open(wrong_file, kSize, why));
  EXPECT_NE(why.find("not the offered file"), std::string::npos) << why;

  LocalOffer wrong_control = good;
  wrong_control.control_ino ^= 1;
  EXPECT_FALSE(LocalHome::open(wrong_control, kSize, why));

  LocalOffer no_such_fd = good;
  no_such_fd.region_fd = 100000;
  EXPECT_FALSE(LocalHome::open(no_such_fd, kSize, why));
  EXPECT_NE(why.find("cannot open"), std::string::npos) << why;

  EXPECT_FALSE(LocalHome::open(good, kSize * 2, why));   // smaller than the region
  EXPECT_TRUE(LocalHome::open(good, kSize, why)) << why;
}

}  // namespace
}  // namespace calypso::sched
