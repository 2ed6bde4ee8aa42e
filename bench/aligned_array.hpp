// Page-aligned arrays for the benchmarks, so that their pages and twins sit on page
// boundaries as the runtime's do. Elements are left uninitialised (the benchmarks fill
// them); T must be trivially destructible, since the array is freed without destructors.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>

template <class T>
struct AlignedDelete {
  static_assert(std::is_trivially_destructible_v<T>);
  std::size_t align;
  void operator()(T* p) const { ::operator delete[](p, std::align_val_t{align}); }
};

template <class T>
using AlignedArray = std::unique_ptr<T[], AlignedDelete<T>>;

template <class T>
AlignedArray<T> aligned_array(std::size_t count, std::size_t align) {
  return AlignedArray<T>(new (std::align_val_t{align}) T[count], AlignedDelete<T>{align});
}
