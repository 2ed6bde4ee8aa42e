// Writing a small file that holds a secret (a job address carries the job key): readable
// by its owner only, and never seen half-written; and checking, on the reading side,
// that a file is one so written. Shared by the manager (its address
// file, perhaps in a directory others can read: CALYPSO_RENDEZVOUS) and calypso-run.
#pragma once

#include "unique_fd.hpp"

#include <fcntl.h>
#include <sys/stat.h>
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

// Why the file at `path` is not one write_private_file made for this user: "" if it is
// this user's own with no group or other bits, else what it is (owner and mode).
inline std::string refuse_unless_private(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::string("cannot stat it: ") + std::strerror(errno);
  if (st.st_uid == ::geteuid() && (st.st_mode & 077) == 0) return {};
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return "it is not this user's own file readable by them only (owner uid " + std::to_string(st.st_uid) + ", mode " +
         mode + "); the manager writes it so";
}

}  // namespace calypso
