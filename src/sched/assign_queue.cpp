// See assign_queue.hpp.
#include "sched/assign_queue.hpp"

#include <algorithm>

namespace calypso::sched {

bool AssignQueue::add(std::uint64_t seq, Bytes message, Clock::time_point now) {
  if (seq < next_) return false;
  return waiting_.try_emplace(seq, Waiting{std::move(message), now}).second;
}

std::optional<AssignQueue::Bytes> AssignQueue::next() {
  auto it = waiting_.find(next_);
  if (it == waiting_.end()) return std::nullopt;
  Bytes m = std::move(it->second.message);
  waiting_.erase(it);
  ++next_;
  return m;
}

std::size_t AssignQueue::ready_count() const noexcept {
  std::size_t n = 0;
  for (auto it = waiting_.begin(); it != waiting_.end() && it->first == next_ + n; ++it) ++n;
  return n;
}

bool AssignQueue::stalled(Clock::duration patience, Clock::time_point now) const {
  if (waiting_.empty() || waiting_.begin()->first == next_) return false;
  const auto oldest = std::min_element(waiting_.begin(), waiting_.end(), [](const auto& a, const auto& b) {
    return a.second.since < b.second.since;
  });
  return now - oldest->second.since >= patience;
}

std::uint64_t AssignQueue::skip_gap() {
  if (waiting_.empty()) return 0;
  const std::uint64_t skipped = waiting_.begin()->first - next_;
  next_ = waiting_.begin()->first;
  return skipped;
}

}  // namespace calypso::sched
