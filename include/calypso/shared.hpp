// Declared shared variables, the way CSL's `shared { ... }` block declared them.
//
//     calypso::Shared<Grid> grid;            // at namespace scope
//     grid->cells[i] = ...;                  // on the manager, or in a routine
//
// The storage of every Shared<T> lives in the shared region, at the same virtual
// address in every process of the job, beside the shared heap. It starts zero-filled
// (T must be trivially copyable; constructors do not run). Declare them at namespace
// scope only, so that every process registers the same variables in the same order.
#pragma once

#include <cstddef>
#include <type_traits>

namespace calypso {

namespace detail {
// Reserves size bytes (aligned to align) in the shared-variable area; returns the offset.
std::size_t register_shared(std::size_t size, std::size_t align) noexcept;
// Base address of the shared region (fixed for the job; valid once a Runtime exists).
std::byte* shared_base() noexcept;
}  // namespace detail

template <class T>
class Shared {
  static_assert(std::is_trivially_copyable_v<T>,
                "shared variables live in raw shared memory: T must be trivially copyable");

 public:
  Shared() noexcept : offset_(detail::register_shared(sizeof(T), alignof(T))) {}
  Shared(const Shared&) = delete;
  Shared& operator=(const Shared&) = delete;

  T* get() const noexcept { return reinterpret_cast<T*>(detail::shared_base() + offset_); }
  T& operator*() const noexcept { return *get(); }
  T* operator->() const noexcept { return get(); }

 private:
  std::size_t offset_;
};

}  // namespace calypso
