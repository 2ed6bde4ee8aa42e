// Implementation of the stderr logger: formats into a local buffer and writes the
// line with one write(2), so lines of different processes do not interleave.
#include "log.hpp"

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <time.h>
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

void write(int level, const char* fmt, ...) {
  char line[1024];
  int n;
  {
    std::lock_guard lock(g_prefix_mutex);
    if (level >= 3) {
      // Debug lines carry CLOCK_MONOTONIC, which all processes of a host share: the
      // lines of a manager and its local workers sort into one timeline.
      timespec ts{};
      clock_gettime(CLOCK_MONOTONIC, &ts);
      n = std::snprintf(line, sizeof line, "%s %ld.%06ld: ", g_prefix, static_cast<long>(ts.tv_sec),
                        ts.tv_nsec / 1000);
    } else {
      n = std::snprintf(line, sizeof line, "%s: ", g_prefix);
    }
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
