// Deterministic fault injection for tests: CALYPSO_INJECT=POINT[@SEGMENT] makes a worker
// SIGKILL itself when it reaches POINT (optionally only while running that segment
// index). With CALYPSO_INJECT_ONCE=FILE only the first worker to get there dies (it
// creates FILE), so the re-execution elsewhere succeeds.
//
// Points: before-fetch (a segment's first page request, before it is sent),
//         mid-fetch (its second page request: some pages are in, others not),
//         mid-result (after the first chunk of a result of two or more chunks),
//         after-result (the whole result sent: before the next assignment, or for a
//         held result, once the bundle holding it is sent),
//         held-result (a short segment's result held to go with the next ones').
// Compiled into every build; when CALYPSO_INJECT is unset a check is one load and branch.
#pragma once

#include <cstdint>

namespace calypso::sched {

enum class InjectPoint : std::uint8_t { none, before_fetch, mid_fetch, mid_result, after_result, held_result };

// Reads CALYPSO_INJECT / CALYPSO_INJECT_ONCE; throws calypso::Error on an unknown point.
void configure_fault_injection();

namespace injection {
extern InjectPoint g_inject_point;
void inject_now(InjectPoint p, std::uint32_t segment) noexcept;
}  // namespace injection

// Dies here if this point is the configured one (and the segment matches).
inline void maybe_inject(InjectPoint p, std::uint32_t segment) noexcept {
  if (injection::g_inject_point == p) [[unlikely]] injection::inject_now(p, segment);
}

}  // namespace calypso::sched
