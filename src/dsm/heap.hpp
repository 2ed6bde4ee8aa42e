// The shared heap's allocator. It runs on the manager only (workers never allocate), so
// its bookkeeping is private memory; it hands out offsets into the heap part of the
// region. First fit over an address-ordered free list, coalescing on free.
#pragma once

#include <cstddef>
#include <map>
#include <optional>

namespace calypso::dsm {

class Heap {
 public:
  Heap(std::size_t begin, std::size_t end);   // offsets within the region

  // Returns the offset of a block of at least bytes, aligned to align (a power of two).
  std::optional<std::size_t> allocate(std::size_t bytes, std::size_t align);
  // Returns false if offset is not the start of a live block.
  bool release(std::size_t offset);
  std::size_t bytes_in_use() const noexcept { return in_use_; }

 private:
  std::map<std::size_t, std::size_t> free_;   // offset -> size
  std::map<std::size_t, std::size_t> live_;   // offset -> size (including alignment slack)
  std::size_t in_use_ = 0;
};

}  // namespace calypso::dsm
