// The shared heap's allocator. It runs on the manager only (workers never allocate), so
// its bookkeeping is private memory; it hands out offsets into the heap part of the
// region. First fit over an address-ordered free list, coalescing on free.
//
// Large blocks are staggered: each leaves a gap of 1 to 7 times kStaggerStep in front of
// it (a fixed cycle, so a program's layout is the same in every run). Without it, arrays
// allocated one after the other are exactly their size apart, and arrays of the same
// power-of-two size (Jacobi's two 32 MiB grids) put element i of each at addresses that
// agree in all their low bits, which slows loops that write one while reading the other:
// a sweep from one such grid into the other took 1.44-1.49 s against 1.17-1.26 s with the
// second grid 48 KiB or more further on (docs/PERFORMANCE.md, session 23). glibc's malloc
// staggers such arrays by its chunk headers and mmap placement; this does it on purpose.
#pragma once

#include <cstddef>
#include <map>
#include <optional>

namespace calypso::dsm {

class Heap {
 public:
  Heap(std::size_t begin, std::size_t end);   // offsets within the region

  // Returns the offset of a block of at least bytes, aligned to align (a power of two).
  // A block of kStaggerFrom bytes or more is placed after its gap (rounded up to align)
  // where that fits, else without one. The gaps stay free for small blocks; they cost a
  // large block at most 7 steps (112 KiB) of the region's address space.
  std::optional<std::size_t> allocate(std::size_t bytes, std::size_t align);
  static constexpr std::size_t kStaggerFrom = std::size_t{256} << 10;
  static constexpr std::size_t kStaggerStep = std::size_t{16} << 10;
  // The gap in front of the n-th staggered block (n from 0): 1, 4, 7, 3, 6, 2, 5, 1, ...
  // steps. Consecutive blocks' gaps differ, and none is 0.
  static constexpr std::size_t stagger_gap(std::size_t n) noexcept { return kStaggerStep * (1 + n * 3 % 7); }
  // Returns false if offset is not the start of a live block.
  bool release(std::size_t offset);
  // True if live blocks (with their alignment slack) cover [begin, end) without a gap.
  bool covers(std::size_t begin, std::size_t end) const {
    auto it = live_.upper_bound(begin);
    if (it == live_.begin()) return begin >= end;
    for (--it; begin < end; ++it) {
      if (it == live_.end() || it->first > begin || it->first + it->second <= begin) return false;
      begin = it->first + it->second;
    }
    return true;
  }
  // The bytes of the live block at offset (alignment slack included), or nullopt.
  std::optional<std::size_t> block_bytes(std::size_t offset) const {
    auto it = live_.find(offset);
    return it == live_.end() ? std::nullopt : std::optional<std::size_t>(it->second);
  }
  std::size_t bytes_in_use() const noexcept { return in_use_; }

 private:
  std::map<std::size_t, std::size_t> free_;   // offset -> size
  std::map<std::size_t, std::size_t> live_;   // offset -> size (including alignment slack)
  std::size_t in_use_ = 0;
  std::size_t staggered_ = 0;   // large blocks handed out so far
  std::optional<std::size_t> place(std::size_t bytes, std::size_t align, std::size_t gap);
};

}  // namespace calypso::dsm
