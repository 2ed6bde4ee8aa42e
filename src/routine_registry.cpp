// Registration happens during static initialisation (before main), lookups after;
// the table is sorted lazily on first lookup and never changes afterwards.
#include "routine_registry.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace calypso {

RoutineRegistry& RoutineRegistry::instance() {
  static RoutineRegistry registry;
  return registry;
}

bool RoutineRegistry::add(const detail::RoutineInfo& info) noexcept {
  for (const auto& r : routines_) {
    if (std::strcmp(r.name, info.name) == 0) {
      std::fprintf(stderr, "calypso: routine '%s' registered twice (CALYPSO_ROUTINE)\n", info.name);
      std::abort();
    }
  }
  routines_.push_back(info);
  sorted_ = false;
  return true;
}

void RoutineRegistry::sort_once() const {
  if (sorted_) return;
  std::sort(routines_.begin(), routines_.end(),
            [](const auto& a, const auto& b) { return std::strcmp(a.name, b.name) < 0; });
  sorted_ = true;
}

std::optional<RoutineId> RoutineRegistry::find(detail::AnyFn fn) const {
  sort_once();
  for (std::size_t i = 0; i < routines_.size(); ++i) {
    if (routines_[i].fn == fn) return static_cast<RoutineId>(i);
  }
  return std::nullopt;
}

const detail::RoutineInfo* RoutineRegistry::get(RoutineId id) const {
  sort_once();
  return id < routines_.size() ? &routines_[id] : nullptr;
}

std::string RoutineRegistry::name(RoutineId id) const {
  const auto* r = get(id);
  return r != nullptr ? r->name : "<routine " + std::to_string(id) + ">";
}

std::uint64_t RoutineRegistry::fingerprint() const {
  sort_once();
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&h](unsigned char c) { h = (h ^ c) * 1099511628211ull; };
  for (const auto& r : routines_) {
    for (const char* p = r.name; *p != '\0'; ++p) mix(static_cast<unsigned char>(*p));
    mix(0);
    for (int i = 0; i < 8; ++i) mix(static_cast<unsigned char>(r.args_size >> (8 * i)));
  }
  return h;
}

namespace detail {
bool register_routine(const RoutineInfo& info) noexcept {
  return RoutineRegistry::instance().add(info);
}
}  // namespace detail

}  // namespace calypso
