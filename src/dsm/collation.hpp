// Collating differential memory at the manager. A complete result of a segment is first
// checked from end to end (every entry, every diff) without touching memory; only a
// result that passes is kept, and kept results are applied at the end of the step in
// segment order. Memory therefore never holds half a result, and the outcome does not
// depend on which worker finished first. The optional checking mode records which
// segment wrote each byte and reports two segments writing different values to one byte.
//
// A body may be read where a worker on this host wrote it (its result ring, see
// result_ring.hpp), which a buggy worker could write again after validate(). So
// everything after validate() reads each entry and run header once and checks it before
// use (diff_apply_bounded), applies nothing to a frozen page, and in apply_all applies
// only the pages listed in `written` (which the write notices are made from). Such a
// body can change the values applied to the pages it listed, nothing else: not where
// the manager writes outside the region's pages, not a frozen page, not a page other
// workers are not told about. What it cut short is counted (cut_short). The conflict
// checker (checking mode) walks diffs as validated: the manager gives it private copies.
#pragma once

#include "dsm/helper_thread.hpp"
#include "dsm/region.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace calypso::dsm {

struct SegmentTag {
  std::uint32_t routine = 0;   // position of the routine in the step
  std::uint32_t index = 0;     // segment index within that routine
};

struct Conflict {
  std::uintptr_t address = 0;
  SegmentTag first, second;
};

class Collation {
 public:
  // frozen: a flag per page, as HomeMemory::frozen_flags (it must outlive this): no diff
  // is applied to a page flagged there. Empty: no page is frozen.
  Collation(const Region& region, bool check_conflicts, std::span<const std::uint8_t> frozen = {});

  // Empty when the result body is well formed for this region, else the reason.
  std::string validate(std::span<const std::byte> body) const;

  // Applies a body that validate() accepted, through the runtime view. Appends every page
  // it writes to written. In checking mode, returns the first conflict found (the result
  // is applied all the same, in segment order, so the run stays deterministic).
  std::optional<Conflict> apply(std::span<const std::byte> body, SegmentTag tag,
                                std::vector<PageNumber>& written);

  // apply() for every body in order (bodies[i] tagged tags[i]); written[i] gets the pages
  // of body i. Large steps are applied by two threads (this one and a kept helper): the
  // entries are sorted into stripes by page number modulo kStripes, each in segment
  // order, and the threads take stripes until none is left. The same bytes end up in
  // memory as with one thread, since a page's diffs are still applied in segment order.
  // An entry that no longer reads as checked stops its body in both threads from then on
  // (counted once). The manager's workers wait for this, so it has the machine to itself.
  // Checking mode: one thread.
  std::optional<Conflict> apply_all(std::span<const std::span<const std::byte>> bodies,
                                    std::span<const SegmentTag> tags,
                                    std::vector<std::vector<PageNumber>>& written);

  // Maps, through the runtime view, the pages of a validated body that it has not mapped
  // before, while the step still runs. Without it the kernel allocates and clears each
  // such page at its first diff, inside collation, the step's serial tail (mandelbrot's
  // 16 MiB image: 4096 first touches, 8 ms of a 0.85 s run). Best effort: a kernel
  // without MADV_POPULATE_WRITE (before 5.14) leaves it to collation. Returns the pages
  // it mapped.
  std::size_t prefault(std::span<const std::byte> body);

  // Frozen pages (Manager::freeze): a result that changes one is refused by the
  // scheduler as the program's error, not applied. The first page flagged in `frozen`
  // (HomeMemory::frozen_flags) that a validated body changes (a non-empty diff), if any.
  static std::optional<PageNumber> frozen_change(std::span<const std::byte> body,
                                                 std::span<const std::uint8_t> frozen);

  // Forgets the byte owners of the previous step (checking mode).
  void begin_step();

  // Times a body's application stopped early because it no longer read as validate()
  // found it (a worker wrote over its result in its ring), since construction.
  std::uint64_t cut_short() const noexcept { return cut_short_.load(std::memory_order_relaxed); }

 private:
  std::optional<Conflict> check(std::span<const std::byte> diff, PageNumber page, SegmentTag tag);
  // Whether the entry may be applied: in the region, and not a frozen page with a change.
  bool applicable(PageNumber page, std::span<const std::byte> diff) const noexcept {
    return page < region_.pages() && (diff.empty() || frozen_.empty() || frozen_[page] == 0);
  }
  // Applies one entry read again from its body; false where it no longer applies.
  bool write_entry(PageNumber page, std::span<const std::byte> diff) noexcept;
  // write_entry(), counting the body as cut short where it fails.
  bool apply_entry(PageNumber page, std::span<const std::byte> diff) noexcept;
  // Counts a body cut short; false, to stop its walk.
  bool cut() noexcept {
    cut_short_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  // Below this many diff bytes in a step, one thread (handing the helper its job costs
  // the caller ~20 us, and it starts ~45 us after that).
  static constexpr std::size_t kParallelFrom = std::size_t{1} << 20;
  // Enough stripes that the helper thread, woken ~45 us late, still takes about half, and
  // the one finishing last waits for little more than a stripe (~1/32 of the work).
  static constexpr std::size_t kStripes = 32;
  struct StripeEntry {
    std::uint32_t body;        // index into apply_all's bodies
    PageNumber page;           // as the entry read when it was sorted
    std::uint32_t diff_bytes;  // likewise
    std::size_t diff_at;       // offset of its diff in the body
  };
  void sort_into_stripes(std::span<const std::span<const std::byte>> bodies,
                         std::vector<std::vector<PageNumber>>& written);
  // Both threads: stripes from next_stripe_ until none is left.
  void take_stripes() noexcept;
  void apply_stripe(const std::vector<StripeEntry>& stripe) noexcept;
  // Per body of the parallel apply_all, read and written through std::atomic_ref.
  enum : std::uint8_t { kWhole, kEndedEarly, kStopped };

  const Region& region_;
  bool check_conflicts_;
  std::vector<SegmentTag> tags_;                                       // writer slot -> tag
  std::unordered_map<PageNumber, std::vector<std::uint32_t>> owners_;  // byte -> slot + 1
  std::vector<std::uint8_t> mapped_;   // page -> prefault() mapped it (home pages stay)
  bool can_prefault_ = true;
  std::span<const std::uint8_t> frozen_;
  std::atomic<std::uint64_t> cut_short_{0};
  // The parallel apply_all's state, which its helper thread reads (kept: no allocation
  // per step once they have grown).
  std::array<std::vector<StripeEntry>, kStripes> stripes_;
  std::span<const std::span<const std::byte>> bodies_;
  std::atomic<std::size_t> next_stripe_{0};
  std::vector<std::uint8_t> body_state_;
  HelperThread helper_;   // last: stopped before the members its jobs use go
};

}  // namespace calypso::dsm
