// The worker's view of shared memory: pages are fetched from the manager on first touch,
// twinned on first write, and turned into diffs at the end of a segment, after which the
// written pages are put back to the step's snapshot (so the next segment on this worker
// reads the snapshot too, never another segment's writes).
#pragma once

#include "dsm/fault_handler.hpp"
#include "dsm/page_table.hpp"
#include "dsm/region.hpp"

#include <array>
#include <cstdint>
#include <optional>
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
  std::uint64_t zero_pages = 0;   // known-zero pages cleared instead of fetched
  std::uint64_t zero_twins = 0;   // pages made writable from an all-zero snapshot: no twin
  std::uint64_t twin_copies = 0;  // pages copied into their twins
  std::uint64_t pushed_pages = 0; // pages the manager pushed
  std::uint64_t pushed_used = 0;  // pushed pages a segment then read (no round trip)
  std::uint64_t pages_mapped = 0; // frozen pages mapped from the manager's memory (share_home)
};

class PageCache final : public FaultTarget {
 public:
  // fetch_pages: pages one read fault fetches (an aligned group); fetch_ahead: most
  // pages one fetch may take while read faults stay sequential (see fetch_group);
  // write_ahead: most pages one write fault may un-protect (see make_twins).
  PageCache(const Region& region, PageSource& source, PageNumber fetch_pages,
            PageNumber write_ahead = 16, PageNumber fetch_ahead = 0);

  FaultOutcome on_fault(void* address, bool is_write) noexcept override;

  // Write notices: these pages changed at the manager; drop our copies.
  void invalidate(std::span<const PageNumber> pages);
  void invalidate_all();
  // Known-zero pages: every page starts out as never written (zero at the manager, as
  // the worker's own memory is), and a miss on one is cleared here instead of fetched,
  // until it is marked written: by the manager's list at joining (Welcome), and by
  // every write notice (invalidate, invalidate_all, replay).
  void mark_written(PageNumber first, PageNumber count) noexcept;

  // Frozen pages (Manager::freeze): the program promised they never change again, so a
  // copy of one is never invalidated by anything the manager does from now on.
  void freeze(PageNumber first, PageNumber count) noexcept;
  // On the manager's host: home_fd is the manager's region memfd (read-only). A read
  // fault on frozen pages then maps them from it instead of copying them: one physical
  // copy serves every process on the host (matmul's B: two private 8 MiB copies compete
  // for the L3, one does not). Safe only because frozen pages never change: a late
  // attempt of a closed step reads through such a mapping too, and must never see
  // another version. A write to a mapped page takes a private copy first, as a write
  // to any page does (the manager then refuses a result that changes frozen memory).
  void share_home(int home_fd) noexcept { home_fd_ = home_fd; }

  // Brings copies of `pages` (sorted) to the next memory version by applying, in order,
  // the diffs that the given result bodies (this worker's own accepted results, by
  // segment) hold for them. A page whose twin holds exactly the writes of the one
  // segment that wrote it ends up equal to its twin, so its next write needs no copy.
  // Pages not held are left alone (they will be fetched).
  void replay(std::span<const PageNumber> pages, std::span<const std::uint32_t> segments,
              std::span<const std::span<const std::byte>> bodies);
  // Pushed pages (sorted, in range; data holds their bytes in order, a page each):
  // current copies that the manager sent with an assignment instead of a notice. They
  // are kept inaccessible, so that the first access still faults, but is resolved from
  // the pushed bytes without a round trip, and is reported in reads().
  void accept_pushed(std::span<const PageNumber> pages, std::span<const std::byte> data);
  // Pages fetched or taken from a push since the last call (at most kMaxReads; sorted
  // and unique not guaranteed). The worker reports them in a read_set.
  std::vector<PageNumber> take_reads();
  static constexpr std::size_t kMaxReads = 4096;

  // After the notices of a new step: the writes kept in twins that nobody listed were
  // not accepted; the pages already hold the snapshot, which is current.
  void settle_kept();

  // Start of a segment: the pages it is expected to write (those the same segment wrote
  // last time, see written()) are twinned and made writable now, clean ones only, in one
  // mprotect per run of pages instead of a write fault per few pages. (Each mprotect
  // here also interrupts the other core to flush its TLB.) A page that is then not
  // written costs a twin copy and an empty diff.
  void prepare_writes(std::span<const PageNumber> pages);
  // Pages the last finished segment wrote: changed ones, and ones it faulted on for
  // writing (prepared pages it left unchanged are not counted). Sorted.
  const std::vector<PageNumber>& written() const noexcept { return written_; }

  // End of a segment: appends ResultEntry + diff for every written page to out. Over
  // the words each diff covers, page and twin then swap contents: the page is back at
  // the step's snapshot (read-only, for later segments of this step) and the twin holds
  // the segment's writes, at the cost of the changed words only. (A page whose snapshot
  // is all zeros has no twin: it is cleared, and its writes are not kept.) At the next
  // step a page that only this segment wrote, and whose result was accepted, gets the
  // same writes from the diff and equals its twin again: Jacobi's next write to it
  // copies nothing.
  // Returns the number of pages with a non-empty diff.
  std::size_t finish_segment(std::vector<std::byte>& out, std::uint32_t segment);
  // The same, written into room instead of appended: a result ring's, so that the body
  // is not copied on its way (Jacobi: ~5 MB of diffs a step). room must hold
  // result_bound() bytes (else calypso::Error, nothing done); bytes past the body may be
  // written too, as scratch.
  struct Finished {
    std::size_t changed_pages, body_bytes;
  };
  Finished finish_segment(std::span<std::byte> room, std::uint32_t segment);
  // The most bytes the running segment's result can take: an entry and the largest diff
  // for every page written so far.
  std::size_t result_bound() const noexcept;
  // A segment given up: restore written pages, produce nothing.
  void abort_segment();

  const CacheStats& stats() const noexcept { return stats_; }

 private:
  FaultOutcome fetch_group(PageNumber p) noexcept;
  FaultOutcome install_zero(PageNumber p) noexcept;
  FaultOutcome take_pushed(PageNumber p) noexcept;
  FaultOutcome make_twins(PageNumber p) noexcept;
  std::optional<FaultOutcome> map_frozen(PageNumber p) noexcept;
  // A page map_frozen may map: frozen, invalid, not pushed, and not known-zero.
  bool mappable(PageNumber p) const noexcept {
    return frozen_[p] != 0 && pushed_[p] == 0 && written_at_home_[p] != 0 && table_.state(p) == PageState::invalid;
  }
  void set_flags(std::vector<std::uint8_t>& flags, PageNumber first, PageNumber count) const noexcept;
  // Maps the region's own memory (the worker's memfd) at [first, first+count), with no
  // access. Returns 0 or errno.
  int map_own(PageNumber first, PageNumber count) noexcept;
  // Puts the region's own memory back under mapped pages in [first, first+count), which
  // become invalid. Returns 0 or errno.
  int unmap_home(PageNumber first, PageNumber count) noexcept;
  int unmap_home(std::span<const PageNumber> pages) noexcept;
  std::byte* twin(PageNumber p) const noexcept { return twins_ + std::size_t{p} * region_.page_size(); }
  void restore(std::span<const PageNumber> written);

  const Region& region_;
  PageSource& source_;
  PageNumber fetch_pages_;
  PageNumber write_ahead_;
  PageNumber fetch_ahead_;
  // Sequential read streams (matmul reads a row of A and all of B, in step): where
  // each one's last fetch ended and how many pages its next fetch takes. Kept across
  // segments: a worker's next segment often reads on where its last one stopped.
  struct Stream {
    PageNumber end = 0, next = 0;
    std::uint64_t used = 0;   // for replacing the least recently used
  };
  std::array<Stream, 4> streams_{};
  std::uint64_t fetch_clock_ = 0;
  PageNumber streak_ = 1;       // pages the next sequential write fault un-protects
  // One past the last page the previous write fault took; 0 until the running segment's
  // first write fault, which then keeps the streak the last segment reached (make_twins).
  PageNumber streak_end_ = 0;
  PageTable table_;
  std::byte* twins_;          // private mapping, one slot per page, touched only when used
  // One page of zeros, never written: its reads map the kernel's shared zero page, so
  // comparing a page against it reads one cache-resident 4 KiB page, not memory.
  std::byte* zero_page_;
  std::vector<PageNumber> installed_;  // scratch for fetch_group, reserved up front
  // What a page's twin holds: nothing useful, a copy of the page (a write needs no
  // copy first), or the page plus the writes of segment kept_by_[p] (finish_segment).
  // zero: the page's snapshot is all zeros (cleared as known-zero, or fetched as a zero
  // page), and the twin slot is not used: writes are compared with the zero page. An
  // output array's first step (matmul's C, mandelbrot's image) then copies no twins and
  // allocates no twin memory, and its diffs read the page alone.
  enum class Twin : std::uint8_t { stale, same, pending, zero };
  std::vector<Twin> twin_state_;
  std::vector<std::uint32_t> kept_by_;   // per page: the segment whose writes its twin holds
  std::vector<PageNumber> kept_;         // pages with a pending twin (may hold stale entries)
  void copy_twins(PageNumber first, PageNumber count) noexcept;
  std::vector<std::byte> encoded_;       // finish_segment into a vector: one page's entry
  template <class Slot, class Done>
  std::size_t finish_pages(std::uint32_t segment, Slot slot, Done done);
  std::vector<std::uint8_t> prepared_;   // per page: made writable by prepare_writes
  std::vector<std::uint8_t> written_at_home_;   // per page: may be non-zero at the manager
  std::vector<std::uint8_t> pushed_;   // per page: invalid, but holds a pushed current copy
  std::vector<std::uint8_t> frozen_;   // per page: frozen by the program (never changes)
  std::vector<std::uint8_t> mapped_;   // per page: the user view maps the manager's page
  std::size_t mapped_count_ = 0;
  int home_fd_ = -1;                   // see share_home
  // Most pages one read fault maps: the whole run is mapped at once (no copy), but
  // MAP_POPULATE fills its page tables up front.
  static constexpr PageNumber kMapRun = 4096;
  std::vector<PageNumber> reads_;      // see take_reads; capacity reserved (fault handler)
  void note_read(PageNumber p) noexcept {
    if (reads_.size() < reads_.capacity()) reads_.push_back(p);
  }
  std::vector<PageNumber> written_;
  CacheStats stats_;

 public:
  ~PageCache();
  PageCache(const PageCache&) = delete;
  PageCache& operator=(const PageCache&) = delete;
};

}  // namespace calypso::dsm
