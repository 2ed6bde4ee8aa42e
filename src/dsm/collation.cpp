// Result checking and in-order application; see collation.hpp.
#include "dsm/collation.hpp"

#include "dsm/diff.hpp"
#include "dsm/result_format.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>

namespace calypso::dsm {
Collation::Collation(const Region& region, bool check_conflicts, std::span<const std::uint8_t> frozen)
    : region_(region), check_conflicts_(check_conflicts), mapped_(region.pages(), 0), frozen_(frozen) {}

// One entry of a body that validate() accepted, read again (see the header); false where
// it no longer reads as it did (apply_entry then counts the body as cut short).
bool Collation::write_entry(PageNumber page, std::span<const std::byte> diff) noexcept {
  return applicable(page, diff) && diff_apply_bounded(diff, region_.runtime_page(page), region_.page_size());
}

bool Collation::apply_entry(PageNumber page, std::span<const std::byte> diff) noexcept {
  return write_entry(page, diff) || cut();
}

std::string Collation::validate(std::span<const std::byte> body) const {
  std::string why;
  std::string framing = for_each_result_entry(body, [&](const ResultEntry& e, std::span<const std::byte> d) {
    if (e.page >= region_.pages()) {
      why = "page " + std::to_string(e.page) + " is outside the region";
      return false;
    }
    if (DiffStatus s = diff_validate(d, region_.page_size()); s != DiffStatus::ok) {
      why = "diff of page " + std::to_string(e.page) + ": " + to_string(s);
      return false;
    }
    return true;
  });
  return framing.empty() ? why : framing;
}

std::optional<Conflict> Collation::apply(std::span<const std::byte> body, SegmentTag tag,
                                         std::vector<PageNumber>& written) {
  std::optional<Conflict> conflict;
  for_each_result_entry(body, [&](const ResultEntry& e, std::span<const std::byte> d) {
    if (!applicable(e.page, d)) return cut();
    if (check_conflicts_ && !conflict) conflict = check(d, e.page, tag);
    written.push_back(e.page);
    return apply_entry(e.page, d);
  });
  return conflict;
}

std::optional<Conflict> Collation::apply_all(std::span<const std::span<const std::byte>> bodies,
                                             std::span<const SegmentTag> tags,
                                             std::vector<std::vector<PageNumber>>& written) {
  written.assign(bodies.size(), {});
  std::size_t bytes = 0;
  for (const auto& b : bodies) bytes += b.size();
  if (check_conflicts_ || bytes < kParallelFrom) {
    std::optional<Conflict> conflict;
    for (std::size_t i = 0; i < bodies.size(); ++i) {
      if (auto c = apply(bodies[i], tags[i], written[i]); c && !conflict) conflict = c;
    }
    return conflict;
  }
  sort_into_stripes(bodies, written);
  // Both threads take stripes until none is left: whichever starts late or runs slower
  // takes fewer, and a page's diffs stay in segment order within its stripe.
  bodies_ = bodies;
  next_stripe_.store(0, std::memory_order_relaxed);
  struct WaitForHelper {   // the helper's job reads this call's bodies: never return before it is done
    HelperThread& helper;
    bool posted;
    ~WaitForHelper() {
      if (posted) helper.wait();
    }
  } wait_for_helper{helper_, helper_.post([this] { take_stripes(); })};
  take_stripes();
  return std::nullopt;
}

// Every entry that may be applied goes to the stripe of its page, in segment order, and
// its page to written[i]; a body stops at its first entry that may not (applied up to
// there, counted once).
void Collation::sort_into_stripes(std::span<const std::span<const std::byte>> bodies,
                                  std::vector<std::vector<PageNumber>>& written) {
  for (auto& stripe : stripes_) stripe.clear();
  body_state_.assign(bodies.size(), kWhole);
  for (std::size_t i = 0; i < bodies.size(); ++i) {
    const std::byte* base = bodies[i].data();
    for_each_result_entry(bodies[i], [&](const ResultEntry& e, std::span<const std::byte> d) {
      if (!applicable(e.page, d)) {
        body_state_[i] = kEndedEarly;
        return cut();
      }
      written[i].push_back(e.page);
      stripes_[e.page % kStripes].push_back(
          {static_cast<std::uint32_t>(i), e.page, e.diff_bytes, static_cast<std::size_t>(d.data() - base)});
      return true;
    });
  }
}

void Collation::take_stripes() noexcept {
  for (std::size_t k; (k = next_stripe_.fetch_add(1, std::memory_order_relaxed)) < kStripes;) {
    apply_stripe(stripes_[k]);
  }
}

// Each entry is read again at the offset the first pass recorded, and applied only if it
// still names the same page and length (see the header). Where one does not, or does not
// apply, its body is stopped: the body's entries that this thread meets from then on, in
// any stripe, are left out (the other thread may have applied some meanwhile), and the
// body counts once in cut_short().
void Collation::apply_stripe(const std::vector<StripeEntry>& stripe) noexcept {
  for (const StripeEntry& x : stripe) {
    std::atomic_ref<std::uint8_t> state(body_state_[x.body]);
    if (state.load(std::memory_order_relaxed) == kStopped) continue;
    const std::span<const std::byte> body = bodies_[x.body];
    ResultEntry e;
    std::memcpy(&e, body.data() + x.diff_at - sizeof e, sizeof e);
    const bool same = e.page == x.page && e.diff_bytes == x.diff_bytes;
    if (!(same && write_entry(x.page, body.subspan(x.diff_at, x.diff_bytes))) &&
        state.exchange(kStopped, std::memory_order_relaxed) == kWhole) {
      cut();
    }
  }
}

std::size_t Collation::prefault(std::span<const std::byte> body) {
  if (!can_prefault_) return 0;
  std::size_t mapped = 0;
  PageNumber first = 0, count = 0;   // the run of unmapped pages being gathered
  auto flush = [&] {
    if (count == 0) return;
    if (const int err = region_.populate(first, count); err == 0) {
      std::fill_n(mapped_.begin() + first, count, std::uint8_t{1});
      mapped += count;
    } else if (err == EINVAL) {
      can_prefault_ = false;   // an older kernel: collation maps them, as before
    }   // else (ENOMEM, EINTR, ...): leave these to collation, try the next run
    count = 0;
  };
  for_each_result_entry(body, [&](const ResultEntry& e, std::span<const std::byte>) {
    if (!can_prefault_) return false;
    // Runs are usually long: a worker lists its pages in order.
    if (e.page >= region_.pages()) return false;   // changed since validate(): see the header
    if (count != 0 && e.page != first + count) flush();
    if (mapped_[e.page] != 0) return true;   // after the flush: a page listed twice
    if (count == 0) first = e.page;
    ++count;
    return true;
  });
  flush();
  return mapped;
}

std::optional<PageNumber> Collation::frozen_change(std::span<const std::byte> body,
                                                   std::span<const std::uint8_t> frozen) {
  std::optional<PageNumber> found;
  for_each_result_entry(body, [&](const ResultEntry& e, std::span<const std::byte>) {
    if (e.diff_bytes != 0 && e.page < frozen.size() && frozen[e.page] != 0) found = e.page;
    return !found;
  });
  return found;
}

void Collation::begin_step() {
  tags_.clear();
  owners_.clear();
}

std::optional<Conflict> Collation::check(std::span<const std::byte> diff, PageNumber page, SegmentTag tag) {
  if (tags_.empty() || tags_.back().routine != tag.routine || tags_.back().index != tag.index) {
    tags_.push_back(tag);
  }
  const auto slot = static_cast<std::uint32_t>(tags_.size());
  auto& owners = owners_[page];
  if (owners.empty()) owners.assign(region_.page_size(), 0);
  const std::byte* current = region_.runtime_page(page);
  std::optional<Conflict> found;
  diff_for_each_byte(diff, [&](std::size_t off, std::byte value) {
    std::uint32_t prev = owners[off];
    if (!found && prev != 0 && prev != slot && current[off] != value) {
      found = Conflict{reinterpret_cast<std::uintptr_t>(region_.user_page(page)) + off,
                       tags_[prev - 1], tag};
    }
    owners[off] = slot;
  });
  return found;
}

}  // namespace calypso::dsm
