// First-fit allocation with coalescing; see heap.hpp.
#include "dsm/heap.hpp"

namespace calypso::dsm {

Heap::Heap(std::size_t begin, std::size_t end) {
  if (end > begin) free_.emplace(begin, end - begin);
}

std::optional<std::size_t> Heap::allocate(std::size_t bytes, std::size_t align) {
  if (bytes == 0) bytes = 1;
  if (bytes > (std::size_t{1} << 62) || align == 0 || align > (std::size_t{1} << 40)) return std::nullopt;
  bytes = (bytes + 15) / 16 * 16;
  if (bytes < kStaggerFrom) return place(bytes, align, 0);
  const std::size_t gap = stagger_gap(staggered_);
  auto offset = place(bytes, align, gap);
  if (!offset) return place(bytes, align, 0);
  ++staggered_;
  return offset;
}

// First fit of a block that starts at least gap bytes into its free range; the gap and
// any alignment slack stay free.
std::optional<std::size_t> Heap::place(std::size_t bytes, std::size_t align, std::size_t gap) {
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    auto [start, size] = *it;
    if (gap >= size) continue;
    std::size_t aligned = (start + gap + align - 1) / align * align;
    if (aligned - start > size || bytes > size - (aligned - start)) continue;
    free_.erase(it);
    if (aligned > start) free_.emplace(start, aligned - start);
    std::size_t end = start + size;
    if (aligned + bytes < end) free_.emplace(aligned + bytes, end - aligned - bytes);
    live_.emplace(aligned, bytes);
    in_use_ += bytes;
    return aligned;
  }
  return std::nullopt;
}

bool Heap::release(std::size_t offset) {
  auto it = live_.find(offset);
  if (it == live_.end()) return false;
  std::size_t start = offset, size = it->second;
  in_use_ -= size;
  live_.erase(it);
  auto next = free_.lower_bound(start);
  if (next != free_.end() && next->first == start + size) {
    size += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == start) {
      start = prev->first;
      size += prev->second;
      free_.erase(prev);
    }
  }
  free_.emplace(start, size);
  return true;
}

}  // namespace calypso::dsm
