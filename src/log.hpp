// One-line diagnostics on stderr, prefixed with the process's role, e.g.
// "calypso[worker 3]: ...". Level set by CALYPSO_LOG. Not for the fault path's hot case.
#pragma once

#include <string>

namespace calypso::log {

void set_level(int level);          // 0 error, 1 warn, 2 info, 3 debug
void set_prefix(const std::string& who);
bool enabled(int level);
void write(int level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define CALYPSO_LOG(level, ...) \
  do { if (::calypso::log::enabled(level)) ::calypso::log::write(level, __VA_ARGS__); } while (0)
#define LOG_ERROR(...) CALYPSO_LOG(0, __VA_ARGS__)
#define LOG_WARN(...) CALYPSO_LOG(1, __VA_ARGS__)
#define LOG_INFO(...) CALYPSO_LOG(2, __VA_ARGS__)
#define LOG_DEBUG(...) CALYPSO_LOG(3, __VA_ARGS__)

// async-signal-safe: writes a fixed message straight to fd 2.
void raw(const char* msg) noexcept;

}  // namespace calypso::log
