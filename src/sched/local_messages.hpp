// A worker's local message channel (net/local_channel.hpp) as the protocol offers it:
// the worker creates the channel and describes it in its hello; the manager, on the
// same host, opens the worker's file and pipe ends through /proc/PID/fd/N
// (peer_file.hpp) and says so in its welcome. From then on every message between the
// two goes through shared memory (CALYPSO_LOCAL_MESSAGES); heartbeats stay on their
// own endpoints, so that a worker that stops taking messages is still found out.
#pragma once

#include "net/local_channel.hpp"
#include "sched/protocol.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace calypso::sched {

// The offer for a channel this worker created.
ChannelOffer offer_of(const net::LocalChannel& channel);

// The manager's side of the channel that worker `pid` offered, or nullopt with the
// reason in `why` (another host or pid namespace, files that are not the offered ones,
// rings sized for another largest message).
std::optional<net::LocalChannel> open_offered_channel(std::uint32_t pid, const ChannelOffer& offer,
                                                      std::size_t max_message, std::string& why);

}  // namespace calypso::sched
