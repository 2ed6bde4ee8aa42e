// What a routine knows about the thread segment it is running.
#pragma once

#include <cstdint>

namespace calypso {

// index is in [0, count); count is the parallelism the manager asked for, whatever
// the number of workers. A segment may run more than once (on several workers, or
// again after a failure): it must compute the same writes every time and do no
// external side effects.
struct Segment {
  std::uint32_t index = 0;
  std::uint32_t count = 1;
};

}  // namespace calypso
