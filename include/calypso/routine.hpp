// Routine registration. A routine is a plain function
//     void f(const calypso::Segment&, const Args&)      (Args trivially copyable)
// or  void f(const calypso::Segment&)
// registered once, at namespace scope, with CALYPSO_ROUTINE(f). The registered name is
// the function's name: it identifies the routine in every process of the job, which all
// run the same executable.
#pragma once

#include <calypso/segment.hpp>

#include <cstddef>
#include <type_traits>

namespace calypso {

struct NoArgs {};

namespace detail {

using AnyFn = void (*)();
using Trampoline = void (*)(AnyFn fn, const Segment& seg, const void* args);

struct RoutineInfo {
  const char* name;
  AnyFn fn;
  Trampoline call;
  std::size_t args_size;
};

// Called during static initialisation; aborts with a message on a duplicate name.
bool register_routine(const RoutineInfo& info) noexcept;

template <class F>
struct RoutineTraits;
template <class A>
struct RoutineTraits<void (*)(const Segment&, const A&)> {
  using Args = A;
};
template <>
struct RoutineTraits<void (*)(const Segment&)> {
  using Args = NoArgs;
};

template <class A>
void call_with_args(AnyFn fn, const Segment& seg, const void* args) {
  A copy;  // args arrive as bytes; copying avoids relying on their alignment
  __builtin_memcpy(static_cast<void*>(&copy), args, sizeof(A));
  reinterpret_cast<void (*)(const Segment&, const A&)>(fn)(seg, copy);
}
inline void call_without_args(AnyFn fn, const Segment& seg, const void*) {
  reinterpret_cast<void (*)(const Segment&)>(fn)(seg);
}

template <auto Fn>
bool register_routine_for(const char* name) noexcept {
  using A = typename RoutineTraits<decltype(Fn)>::Args;
  static_assert(std::is_trivially_copyable_v<A>,
                "routine arguments are shipped by copy: they must be trivially copyable");
  static_assert(std::is_default_constructible_v<A>,
                "routine arguments must be default constructible");
  if constexpr (std::is_same_v<A, NoArgs>) {
    return register_routine({name, reinterpret_cast<AnyFn>(Fn), &call_without_args, 0});
  } else {
    return register_routine({name, reinterpret_cast<AnyFn>(Fn), &call_with_args<A>, sizeof(A)});
  }
}

}  // namespace detail
}  // namespace calypso

// Registers fn under its own name. Use once per routine, at namespace scope.
#define CALYPSO_ROUTINE(fn)                                                   \
  [[maybe_unused]] static const bool calypso_routine_registered_##fn =        \
      ::calypso::detail::register_routine_for<&fn>(#fn)
