// Implementation of the stderr logger: formats into a local buffer and writes the
// line with one write(2), so lines of different processes do not interleave.
#include "log.hpp"

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <unistd.h>

namespace calypso::log {
namespace {
std::atomic<int> g_level{1};
std::mutex g_prefix_mutex;
char g_prefix[64] = "calypso";
}  // namespace

void set_level(int level) { g_level.store(level); }

void set_prefix(const std::string& who) {
  std::lock_guard lock(g_prefix_mutex);
  std::snprintf(g_prefix, sizeof g_prefix, "calypso[%s]", who.c_str());
}

bool enabled(int level) { return level <= g_level.load(std::memory_order_relaxed); }

void write(int, const char* fmt, ...) {
  char line[1024];
  int n;
  {
    std::lock_guard lock(g_prefix_mutex);
    n = std::snprintf(line, sizeof line, "%s: ", g_prefix);
  }
  va_list ap;
  va_start(ap, fmt);
  int m = std::vsnprintf(line + n, sizeof line - static_cast<std::size_t>(n) - 1, fmt, ap);
  va_end(ap);
  std::size_t len = std::min(sizeof line - 2, static_cast<std::size_t>(n + (m < 0 ? 0 : m)));
  line[len++] = '\n';
  [[maybe_unused]] auto r = ::write(2, line, len);
}

void raw(const char* msg) noexcept {
  [[maybe_unused]] auto r = ::write(2, msg, std::strlen(msg));
}

}  // namespace calypso::log
