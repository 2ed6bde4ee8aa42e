#include "net/fragments.hpp"

#include <algorithm>
#include <cstring>

namespace calypso::net {

void copy_range(std::span<const std::span<const std::byte>> parts, std::size_t offset,
                std::size_t n, std::byte* dst) noexcept {
  for (auto p : parts) {
    if (n == 0) return;
    if (offset >= p.size()) {
      offset -= p.size();
      continue;
    }
    const std::size_t take = std::min(n, p.size() - offset);
    std::memcpy(dst, p.data() + offset, take);
    dst += take;
    n -= take;
    offset = 0;
  }
}

Reassembler::Outcome Reassembler::add(std::span<const std::byte> fragment, std::uint64_t source) {
  FragmentHeader h{};
  if (fragment.size() < sizeof h) return {Verdict::malformed, {}, "fragment shorter than its header"};
  std::memcpy(&h, fragment.data(), sizeof h);
  const auto piece = fragment.subspan(sizeof h);
  if (h.magic != kFragmentMagic) return {Verdict::malformed, {}, "not a fragment (other provider mode?)"};
  if (h.total > max_message_) return {Verdict::malformed, {}, "message larger than max_message"};
  if (std::size_t{h.offset} + piece.size() > h.total || (piece.empty() && h.total != 0)) {
    return {Verdict::malformed, {}, "fragment outside its message"};
  }
  if (h.offset == 0 && piece.size() == h.total) return {Verdict::complete, piece};

  const Key key{source, h.stream, h.seq};
  auto it = partial_.find(key);
  if (it == partial_.end()) {
    if (partial_.size() >= max_pending_) {   // make room: the oldest one's sender is gone
      while (!arrival_.empty() && partial_.erase(arrival_.front()) == 0) arrival_.pop_front();
      if (!arrival_.empty()) {
        arrival_.pop_front();
        ++dropped_;
      }
    }
    it = partial_.try_emplace(key).first;
    it->second.bytes.resize(h.total);
    arrival_.push_back(key);
  }
  Partial& p = it->second;
  if (p.bytes.size() != h.total || p.received + piece.size() > h.total) {
    partial_.erase(it);
    return {Verdict::malformed, {}, "fragments of one message disagree"};
  }
  std::memcpy(p.bytes.data() + h.offset, piece.data(), piece.size());
  p.received += piece.size();
  if (p.received < h.total) return {Verdict::partial, {}};
  done_ = std::move(p.bytes);
  partial_.erase(it);
  // arrival_ keeps the stale key; it is skipped when dropping, and trimmed here so it
  // cannot grow without bound.
  if (arrival_.size() > 2 * max_pending_ + 16) {
    std::erase_if(arrival_, [this](const Key& k) { return !partial_.contains(k); });
  }
  return {Verdict::complete, done_};
}

}  // namespace calypso::net
