// The one exception type of the public API. Every failure the library reports to a
// program (bad configuration, a refused worker, a segment that keeps killing workers,
// a conflict found by the checking mode) is a calypso::Error with a message meant for
// the person running the program.
#pragma once

#include <stdexcept>
#include <string>

namespace calypso {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace calypso
