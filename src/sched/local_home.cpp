// See local_home.hpp.
#include "sched/local_home.hpp"

#include <calypso/error.hpp>

#include <cerrno>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>

namespace calypso::sched {
namespace {

constexpr std::size_t kControlPage = 4096;
static_assert(kNonceOffset >= ControlWord::kBytes, "RMA readers must not read the nonce");

}  // namespace

ControlWord::ControlWord() : fd_(memfd_create("calypso-control", MFD_CLOEXEC)) {
  if (fd_.get() < 0) throw Error("calypso: " + sys_error("memfd_create for the control word"));
  if (ftruncate(fd_.get(), kControlPage) != 0) throw Error("calypso: " + sys_error("ftruncate of the control word"));
  map_ = map_own_file(fd_.get(), kControlPage, "the control word", nonce_);
}

LocalOffer make_local_offer(int region_fd, const ControlWord& control) {
  LocalOffer o{};
  if (!describe_file(region_fd, o.region_dev, o.region_ino) ||
      !describe_file(control.fd(), o.control_dev, o.control_ino)) {
    return {};
  }
  o.pid = static_cast<std::uint32_t>(getpid());
  o.region_fd = region_fd;
  o.control_fd = control.fd();
  o.nonce = control.nonce();
  return o;
}

std::optional<LocalHome> LocalHome::open(const LocalOffer& offer, std::size_t region_size, std::string& why) {
  if (offer.pid == 0 || offer.nonce == 0) {
    why = "the manager offered no local reads (another host, or CALYPSO_LOCAL_READS=0 there)";
    return std::nullopt;
  }
  UniqueFd control = open_peer_file(offer.pid, offer.control_fd, offer.control_dev, offer.control_ino, false, why);
  if (control.get() < 0) return std::nullopt;
  auto control_map = map_peer_file(
      control.get(), kControlPage, false, offer.nonce, "the manager's control word",
      "the control file found is another manager's (same host name, pid and descriptors elsewhere?)", why);
  if (!control_map) return std::nullopt;
  UniqueFd region = open_peer_file(offer.pid, offer.region_fd, offer.region_dev, offer.region_ino, false, why);
  if (region.get() < 0) return std::nullopt;
  struct stat st{};
  if (fstat(region.get(), &st) != 0 || static_cast<std::uint64_t>(st.st_size) < region_size) {
    why = "the manager's region file is smaller than the region";
    return std::nullopt;
  }
  return LocalHome(std::move(region), region_size, std::move(*control_map));
}

LocalHome::LocalHome(UniqueFd region, std::size_t size, Mapping control)
    : region_(std::move(region)), size_(size), control_(std::move(control)) {}

bool LocalHome::read(std::size_t offset, std::span<std::byte> dst) const noexcept {
  if (offset > size_ || dst.size() > size_ - offset) return false;
  for (std::size_t done = 0; done < dst.size();) {
    const ssize_t n = pread(region_.get(), dst.data() + done, dst.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace calypso::sched
