// Recycled result buffers; see result_buffers.hpp.
#include "sched/result_buffers.hpp"

#include <algorithm>

namespace calypso::sched {

ResultBuffers::Bytes ResultBuffers::take(std::size_t size) {
  auto fits = std::lower_bound(spare_.begin(), spare_.end(), size,
                               [](const Bytes& b, std::size_t n) { return b.capacity() < n; });
  Bytes b;
  if (fits != spare_.end()) {
    b = std::move(*fits);
    spare_.erase(fits);
  } else {
    b.reserve(size + size / 4);
  }
  b.resize(size);   // within capacity: nothing written, nothing allocated
  return b;
}

void ResultBuffers::keep(std::vector<Bytes>&& buffers) {
  spare_.clear();
  for (Bytes& b : buffers) {
    if (b.capacity() > 0) spare_.push_back(std::move(b));
  }
  buffers.clear();
  std::sort(spare_.begin(), spare_.end(),
            [](const Bytes& a, const Bytes& b) { return a.capacity() < b.capacity(); });
}

}  // namespace calypso::sched
