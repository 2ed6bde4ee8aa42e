// See local_messages.hpp.
#include "sched/local_messages.hpp"

#include "sched/peer_file.hpp"

#include <utility>

namespace calypso::sched {

ChannelOffer offer_of(const net::LocalChannel& channel) {
  const net::LocalChannel::Description d = channel.describe();
  ChannelOffer o{};
  o.fd = d.file_fd;
  o.worker_bell_fd = d.creator_bell_fd;
  o.manager_bell_fd = d.opener_bell_fd;
  if (!describe_file(o.fd, o.dev, o.ino) || !describe_file(o.worker_bell_fd, o.worker_bell_dev, o.worker_bell_ino) ||
      !describe_file(o.manager_bell_fd, o.manager_bell_dev, o.manager_bell_ino)) {
    return ChannelOffer{};   // not describable: no offer
  }
  o.nonce = d.nonce;
  o.capacity = d.capacity;
  return o;
}

std::optional<net::LocalChannel> open_offered_channel(std::uint32_t pid, const ChannelOffer& offer,
                                                      std::size_t max_message, std::string& why) {
  if (pid == 0 || offer.nonce == 0) {
    why = "the worker offered no channel (CALYPSO_LOCAL_MESSAGES=0 there)";
    return std::nullopt;
  }
  UniqueFd file = open_peer_file(pid, offer.fd, offer.dev, offer.ino, true, why);
  if (file.get() < 0) return std::nullopt;
  UniqueFd own_bell = open_peer_pipe(pid, offer.manager_bell_fd, offer.manager_bell_dev, offer.manager_bell_ino, why);
  if (own_bell.get() < 0) return std::nullopt;
  UniqueFd worker_bell = open_peer_pipe(pid, offer.worker_bell_fd, offer.worker_bell_dev, offer.worker_bell_ino, why);
  if (worker_bell.get() < 0) return std::nullopt;
  net::LocalChannel::Description d;
  d.nonce = offer.nonce;
  d.capacity = offer.capacity;
  return net::LocalChannel::open(std::move(file), std::move(own_bell), std::move(worker_bell), d, max_message, why);
}

}  // namespace calypso::sched
