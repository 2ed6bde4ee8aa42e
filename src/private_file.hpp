// Writing a small file that holds a secret (a job address carries the job key): readable
// by its owner only, and never seen half-written. Shared by the manager (its address
// file, perhaps in a directory others can read: CALYPSO_RENDEZVOUS) and calypso-run.
#pragma once

#include "unique_fd.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace calypso {

// Writes `text` to `path` through a new file beside it, created 0600 and exclusively
// (O_EXCL, O_NOFOLLOW: neither a file planted under its name nor a symbolic link there
// is written through), then renamed over `path`. Returns "" or why it failed (the
// temporary file is removed then).
inline std::string write_private_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  UniqueFd f(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (f.get() < 0) return std::strerror(errno);
  const bool written = ::write(f.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                       ::close(f.release()) == 0 && std::rename(tmp.c_str(), path.c_str()) == 0;
  if (written) return {};
  const std::string why = std::strerror(errno);
  ::unlink(tmp.c_str());
  return why;
}

}  // namespace calypso
