// The worker's view of shared memory: pages are fetched from the manager on first touch,
// twinned on first write, and turned into diffs at the end of a segment, after which the
// written pages are put back to the step's snapshot (so the next segment on this worker
// reads the snapshot too, never another segment's writes).
#pragma once

#include "dsm/fault_handler.hpp"
#include "dsm/page_table.hpp"
#include "dsm/region.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace calypso::dsm {

enum class FetchStatus : std::uint8_t { ok, stale, failed };

// Where pages come from (the scheduler's connection to the manager). kinds[i] is 0 for
// an all-zero page (no bytes in data) or 1 for a page whose bytes come next in data.
struct FetchResult {
  FetchStatus status = FetchStatus::failed;
  std::span<const std::uint8_t> kinds;
  std::span<const std::byte> data;
};

class PageSource {
 public:
  virtual FetchResult fetch(PageNumber first, PageNumber count) noexcept = 0;

 protected:
  ~PageSource() = default;
};

struct CacheStats {
  std::uint64_t read_faults = 0;
  std::uint64_t write_faults = 0;
  std::uint64_t fetches = 0;
  std::uint64_t pages_fetched = 0;
};

class PageCache final : public FaultTarget {
 public:
  // write_ahead: most pages one write fault may un-protect (see make_twins).
  PageCache(const Region& region, PageSource& source, PageNumber fetch_pages,
            PageNumber write_ahead = 16);

  FaultOutcome on_fault(void* address, bool is_write) noexcept override;

  // Write notices: these pages changed at the manager; drop our copies.
  void invalidate(std::span<const PageNumber> pages);
  void invalidate_all();

  // Brings clean copies of `pages` (sorted) to the next memory version by applying, in
  // order, the diffs that the given result bodies (this worker's own kept results) hold
  // for them. Pages not held clean are left alone (they will be fetched).
  void replay(std::span<const PageNumber> pages, std::span<const std::span<const std::byte>> bodies);

  // End of a segment: appends ResultEntry + diff for every written page to out, then
  // restores those pages to the snapshot. Returns the number of pages written.
  std::size_t finish_segment(std::vector<std::byte>& out);
  // A segment given up: restore written pages, produce nothing.
  void abort_segment();

  const CacheStats& stats() const noexcept { return stats_; }

 private:
  FaultOutcome fetch_group(PageNumber p) noexcept;
  FaultOutcome make_twins(PageNumber p) noexcept;
  std::byte* twin(PageNumber p) const noexcept { return twins_ + std::size_t{p} * region_.page_size(); }
  void restore(std::span<const PageNumber> written);

  const Region& region_;
  PageSource& source_;
  PageNumber fetch_pages_;
  PageNumber write_ahead_;
  PageNumber streak_ = 1;       // pages the next sequential write fault un-protects
  PageNumber streak_end_ = 0;   // one past the last page the previous write fault took
  PageTable table_;
  std::byte* twins_;          // private mapping, one slot per page, touched only when used
  std::vector<PageNumber> installed_;  // scratch for fetch_group, reserved up front
  CacheStats stats_;

 public:
  ~PageCache();
  PageCache(const PageCache&) = delete;
  PageCache& operator=(const PageCache&) = delete;
};

}  // namespace calypso::dsm
