// Byte buffers for the results a step receives, recycled from step to step.
//
// A fresh std::vector of n bytes costs a zero fill of n bytes and, past malloc's mmap
// threshold, a page fault per 4 KiB the first time it is written: Jacobi's manager paid
// 1 GB of memset and 120,000 page faults per run for buffers that the chunk copies
// overwrote at once. So result buffers are never zero-filled (Bytes below), and a buffer
// that the last step's collation is done with is handed to the next result that fits in
// its capacity. Iterative codes receive results of about the same sizes step after step,
// and they grow (Jacobi's heat front): new buffers get a quarter more room than asked.
// Only the last step's buffers are kept, so this holds no more memory than that step
// did at its peak. Pure logic, unit tested.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <utility>
#include <vector>

namespace calypso::sched {

// An allocator that default-initialises where std::allocator value-initialises, so that
// resize() leaves new bytes as they are: every byte of a result is copied in anyway.
template <class T>
struct UninitializedAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = UninitializedAllocator<U>;
  };
  UninitializedAllocator() = default;
  template <class U>
  UninitializedAllocator(const UninitializedAllocator<U>&) noexcept {}
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    if constexpr (sizeof...(Args) == 0) {
      ::new (static_cast<void*>(p)) U;
    } else {
      ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }
  }
};

class ResultBuffers {
 public:
  using Bytes = std::vector<std::byte, UninitializedAllocator<std::byte>>;

  // A buffer of exactly `size` bytes, contents unspecified: the kept buffer with the
  // least capacity that holds them (no fill, no new pages), else a new one.
  Bytes take(std::size_t size);
  // The finished step's buffers: they replace whatever was kept before.
  void keep(std::vector<Bytes>&& buffers);
  std::size_t kept() const noexcept { return spare_.size(); }

 private:
  std::vector<Bytes> spare_;   // by capacity, smallest first
};

}  // namespace calypso::sched
