// Fault injection points; see fault_injection.hpp.
#include "sched/fault_injection.hpp"

#include "log.hpp"

#include <calypso/error.hpp>

#include <charconv>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <unistd.h>

namespace calypso::sched {
namespace injection {

InjectPoint g_inject_point = InjectPoint::none;
namespace {
std::int64_t g_segment = -1;   // -1: any segment
std::string g_once_file;
}  // namespace

void inject_now(InjectPoint, std::uint32_t segment) noexcept {
  if (g_segment >= 0 && static_cast<std::int64_t>(segment) != g_segment) return;
  if (!g_once_file.empty()) {
    int fd = open(g_once_file.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
    if (fd < 0) return;   // another worker already died here
    close(fd);
  }
  log::raw("calypso: fault injection: worker kills itself (CALYPSO_INJECT)\n");
  raise(SIGKILL);
}

}  // namespace injection

void configure_fault_injection() {
  const char* v = std::getenv("CALYPSO_INJECT");
  if (v == nullptr || *v == '\0') return;
  std::string spec(v);
  std::string point = spec.substr(0, spec.find('@'));
  if (auto at = spec.find('@'); at != std::string::npos) {
    // A segment index in full (0 to 2^32-1), or the setting is refused: "@x" read as
    // segment 0 would kill a worker where the test did not ask for it.
    const char* first = spec.c_str() + at + 1;
    const char* last = spec.c_str() + spec.size();
    std::uint32_t segment = 0;
    const auto [end, ec] = std::from_chars(first, last, segment);
    if (first == last || ec != std::errc{} || end != last) {
      throw Error("CALYPSO_INJECT=" + spec + ": '@' must be followed by a segment index (0 to 4294967295)");
    }
    injection::g_segment = segment;
  }
  if (point == "before-fetch") injection::g_inject_point = InjectPoint::before_fetch;
  else if (point == "mid-fetch") injection::g_inject_point = InjectPoint::mid_fetch;
  else if (point == "mid-result") injection::g_inject_point = InjectPoint::mid_result;
  else if (point == "after-result") injection::g_inject_point = InjectPoint::after_result;
  else if (point == "held-result") injection::g_inject_point = InjectPoint::held_result;
  else {
    throw Error("CALYPSO_INJECT=" + spec +
                ": expected before-fetch, mid-fetch, mid-result, after-result or held-result, optionally @SEGMENT");
  }
  if (const char* once = std::getenv("CALYPSO_INJECT_ONCE")) injection::g_once_file = once;
}

}  // namespace calypso::sched
