// The process-wide table of routines registered with CALYPSO_ROUTINE. Routines are
// numbered by sorted name, so the same executable numbers them the same way in every
// process; the manager ships numbers, workers look them up.
#pragma once

#include <calypso/routine.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace calypso {

using RoutineId = std::uint32_t;

class RoutineRegistry {
 public:
  static RoutineRegistry& instance();

  bool add(const detail::RoutineInfo& info) noexcept;
  std::optional<RoutineId> find(detail::AnyFn fn) const;
  const detail::RoutineInfo* get(RoutineId id) const;   // nullptr when out of range
  std::string name(RoutineId id) const;
  std::uint64_t fingerprint() const;                    // hash of all names and arg sizes

 private:
  void sort_once() const;
  mutable std::vector<detail::RoutineInfo> routines_;
  mutable bool sorted_ = false;
};

}  // namespace calypso
