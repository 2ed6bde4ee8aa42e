// Shared by the examples: a wall clock and the one-line summary each example prints.
#pragma once

#include <calypso/calypso.hpp>

#include <chrono>
#include <cstdio>

namespace example {

inline double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Prints "NAME: verified|MISMATCH ..." and the run's counters; returns the exit code.
inline int report(const char* name, bool ok, double calypso_s, double seq_s, const calypso::Manager& m) {
  calypso::Stats s = m.stats();
  std::printf("%s: %s\n", name, ok ? "verified (bit-identical to the sequential result)" : "MISMATCH");
  std::printf("summary: %s calypso %.3f s, sequential %.3f s, %zu workers, %llu segments, "
              "%llu re-executions, %llu pages fetched\n",
              name, calypso_s, seq_s, m.workers(), static_cast<unsigned long long>(s.segments),
              static_cast<unsigned long long>(s.reexecutions),
              static_cast<unsigned long long>(s.pages_fetched));
  std::fflush(stdout);
  return ok ? 0 : 1;
}

}  // namespace example
