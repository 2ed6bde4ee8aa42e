// Identity of the running executable, so that the manager refuses a worker started from
// a different binary (its routines, shared variables and data layout would not match).
#pragma once

#include <cstdint>
#include <string>

namespace calypso {

// The GNU build-id of the main executable (hex), or, if the linker wrote none, a hash
// of the executable file's bytes. Combined with the routine registry's fingerprint.
const std::string& executable_identity();

}  // namespace calypso
