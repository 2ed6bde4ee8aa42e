// Worker-side DSM: fault -> fetch / twin; end of segment -> diffs and snapshot restore.
// on_fault runs inside the SIGSEGV handler of the thread running user code: it never
// allocates (scratch vectors are reserved up front) and reports failure as a value.
#include "dsm/page_cache.hpp"

#include "dsm/diff.hpp"
#include "dsm/result_format.hpp"
#include "log.hpp"

#include <calypso/error.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sys/mman.h>
#include <utility>

namespace calypso::dsm {

PageCache::PageCache(const Region& region, PageSource& source, PageNumber fetch_pages,
                     PageNumber write_ahead, PageNumber fetch_ahead)
    : region_(region), source_(source), fetch_pages_(std::max<PageNumber>(1, fetch_pages)),
      write_ahead_(std::max<PageNumber>(1, write_ahead)),
      fetch_ahead_(std::max(fetch_pages_, fetch_ahead)),
      table_(region, PageState::invalid) {
  // The twins, then one more page for the zero page: read-only, so a stray write to it
  // is a crash, not a wrong diff.
  void* t = mmap(nullptr, region.size() + region.page_size(), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (t == MAP_FAILED) throw Error(std::string("calypso: mmap of the twin area: ") + std::strerror(errno));
  twins_ = static_cast<std::byte*>(t);
  zero_page_ = twins_ + region.size();
  if (mprotect(zero_page_, region.page_size(), PROT_READ) != 0) {
    const int e = errno;
    munmap(twins_, region.size() + region.page_size());
    throw Error(std::string("calypso: mprotect of the zero page: ") + std::strerror(e));
  }
  installed_.reserve(fetch_ahead_);
  kept_by_.assign(region.pages(), 0);
  twin_state_.assign(region.pages(), Twin::stale);
  prepared_.assign(region.pages(), 0);
  written_at_home_.assign(region.pages(), 0);
  pushed_.assign(region.pages(), 0);
  frozen_.assign(region.pages(), 0);
  mapped_.assign(region.pages(), 0);
  reads_.reserve(kMaxReads);
  kept_.reserve(region.pages());
}

PageCache::~PageCache() { munmap(twins_, region_.size() + region_.page_size()); }

FaultOutcome PageCache::on_fault(void* address, bool is_write) noexcept {
  PageNumber p = region_.page_of(address);
  switch (table_.state(p)) {
    case PageState::invalid: {
      ++stats_.read_faults;
      if (!is_write && home_fd_ >= 0 && mappable(p)) {
        if (auto r = map_frozen(p)) return *r;   // else copy it
      }
      FaultOutcome r = pushed_[p] != 0         ? take_pushed(p)
                       : written_at_home_[p] != 0 ? fetch_group(p)
                                                  : install_zero(p);
      if (r != FaultOutcome::resolved || !is_write) return r;
      return make_twins(p);
    }
    case PageState::clean:
      // A fault on a readable page can only be a write (also where the CPU does not say).
      ++stats_.write_faults;
      if (mapped_[p] != 0) {   // frozen, yet written: a private copy first, as for any page
        if (unmap_home(p, 1) != 0) {
          log::raw("calypso: mmap failed while un-mapping a frozen page\n");
          return FaultOutcome::fatal;
        }
        if (FaultOutcome r = fetch_group(p); r != FaultOutcome::resolved) return r;
      }
      return make_twins(p);
    case PageState::dirty:
      return FaultOutcome::resolved;   // raced with our own protection change: retry
  }
  return FaultOutcome::fatal;
}

// Read-ahead, as for files: a read fault right after the pages an earlier fetch of the
// same stream took doubles that stream's next fetch, up to fetch_ahead pages, stopping
// at the first page held. A few streams are followed at once. Each fetch is a round trip
// to the manager, which on a busy 2-core machine waits for a core (0.3-0.7 ms here):
// matmul's B, streamed whole by every segment, then takes a few fetches, not a hundred.
FaultOutcome PageCache::fetch_group(PageNumber p) noexcept {
  PageNumber first = p - p % fetch_pages_;
  Stream* s = std::find_if(streams_.begin(), streams_.end(), [&](const Stream& x) { return x.next > 0 && x.end == first; });
  if (s != streams_.end()) {
    s->next = std::min<PageNumber>(2 * s->next, fetch_ahead_);
  } else {
    s = std::min_element(streams_.begin(), streams_.end(), [](const Stream& a, const Stream& b) { return a.used < b.used; });
    s->next = fetch_pages_;
  }
  s->used = ++fetch_clock_;
  PageNumber count = std::min<PageNumber>(fetch_pages_, region_.pages() - first);
  while (count < s->next && first + count < region_.pages() && table_.state(first + count) == PageState::invalid) {
    ++count;
  }
  s->end = first + count;
  FetchResult r = source_.fetch(first, count);
  if (r.status == FetchStatus::stale) return FaultOutcome::abort;
  if (r.status != FetchStatus::ok || r.kinds.size() != count) return FaultOutcome::fatal;
  ++stats_.fetches;
  const std::size_t ps = region_.page_size();
  const std::byte* data = r.data.data();
  installed_.clear();
  for (PageNumber i = 0; i < count; ++i) {
    const bool has_data = r.kinds[i] != 0;
    // Never overwrite a page we hold: a clean copy is already current, a dirty one is ours.
    if (table_.state(first + i) == PageState::invalid) {
      if (has_data) std::memcpy(region_.runtime_page(first + i), data, ps);
      else std::memset(region_.runtime_page(first + i), 0, ps);
      installed_.push_back(first + i);
      twin_state_[first + i] = has_data ? Twin::stale : Twin::zero;
      pushed_[first + i] = 0;
      note_read(first + i);
    }
    if (has_data) data += ps;
  }
  stats_.pages_fetched += installed_.size();
  if (table_.set_each(installed_, PageState::clean) != 0) {
    log::raw("calypso: mprotect failed while installing fetched pages\n");
    return FaultOutcome::fatal;
  }
  return FaultOutcome::resolved;
}

// A pushed copy is current (see accept_pushed): it only needs to become readable.
FaultOutcome PageCache::take_pushed(PageNumber p) noexcept {
  pushed_[p] = 0;
  ++stats_.pushed_used;
  note_read(p);
  if (table_.set(p, 1, PageState::clean) != 0) {
    log::raw("calypso: mprotect failed while installing a pushed page\n");
    return FaultOutcome::fatal;
  }
  return FaultOutcome::resolved;
}

void PageCache::accept_pushed(std::span<const PageNumber> pages, std::span<const std::byte> data) {
  const std::size_t ps = region_.page_size();
  if (data.size() != pages.size() * ps) throw Error("calypso: pushed page data does not match the page count");
  for (PageNumber p : pages) {
    if (p >= region_.pages()) throw Error("calypso: pushed page outside the region");
    if (table_.state(p) == PageState::dirty) throw Error("calypso: page pushed while a segment writes it");
  }
  if (mapped_count_ != 0 && unmap_home(pages) != 0) throw Error("calypso: mmap failed (pushed pages)");
  for (std::size_t i = 0; i < pages.size(); ++i) {
    const PageNumber p = pages[i];
    std::memcpy(region_.runtime_page(p), data.data() + i * ps, ps);
    pushed_[p] = 1;
    twin_state_[p] = Twin::stale;
    written_at_home_[p] = 1;
  }
  stats_.pushed_pages += pages.size();
  if (table_.set_each(pages, PageState::invalid) != 0) throw Error("calypso: mprotect failed (pushed pages)");
}

std::vector<PageNumber> PageCache::take_reads() {
  std::vector<PageNumber> out;
  out.reserve(kMaxReads);
  out.swap(reads_);
  return out;
}

// A known-zero page and the known-zero invalid pages after it (up to a fetch's worth):
// cleared in place, no round trip.
FaultOutcome PageCache::install_zero(PageNumber p) noexcept {
  PageNumber n = 1;
  while (n < fetch_ahead_ && p + n < region_.pages() && written_at_home_[p + n] == 0 &&
         table_.state(p + n) == PageState::invalid) {
    ++n;
  }
  std::memset(region_.runtime_page(p), 0, std::size_t{n} * region_.page_size());
  std::fill_n(twin_state_.begin() + p, n, Twin::zero);
  stats_.zero_pages += n;
  if (table_.set(p, n, PageState::clean) != 0) {
    log::raw("calypso: mprotect failed while installing zero pages\n");
    return FaultOutcome::fatal;
  }
  return FaultOutcome::resolved;
}

void PageCache::freeze(PageNumber first, PageNumber count) noexcept { set_flags(frozen_, first, count); }

void PageCache::set_flags(std::vector<std::uint8_t>& flags, PageNumber first, PageNumber count) const noexcept {
  if (first >= region_.pages()) return;
  count = std::min<PageNumber>(count, region_.pages() - first);
  std::fill_n(flags.begin() + first, count, std::uint8_t{1});
}

// The frozen, non-zero, invalid pages from p on (up to kMapRun), mapped read-only from
// the manager's memory. No snapshot check is needed: frozen pages have one version for
// the rest of the run. nullopt if the kernel refuses the mapping (the caller copies).
std::optional<FaultOutcome> PageCache::map_frozen(PageNumber p) noexcept {
  PageNumber n = 1;
  while (n < kMapRun && p + n < region_.pages() && mappable(p + n)) ++n;
  const std::size_t ps = region_.page_size();
  if (mmap(region_.user_page(p), std::size_t{n} * ps, PROT_READ, MAP_SHARED | MAP_FIXED | MAP_POPULATE, home_fd_,
           static_cast<off_t>(std::size_t{p} * ps)) == MAP_FAILED) {
    // A failed MAP_FIXED may have removed the old mapping: put our own memory back, then
    // the caller copies the pages.
    if (map_own(p, n) != 0) {
      log::raw("calypso: mmap failed while mapping frozen pages from the manager's memory\n");
      return FaultOutcome::fatal;
    }
    return std::nullopt;
  }
  std::fill_n(mapped_.begin() + p, n, std::uint8_t{1});
  std::fill_n(twin_state_.begin() + p, n, Twin::stale);
  mapped_count_ += n;
  stats_.pages_mapped += n;
  if (table_.set(p, n, PageState::clean) != 0) {
    log::raw("calypso: mprotect failed while installing mapped pages\n");
    return FaultOutcome::fatal;
  }
  return FaultOutcome::resolved;
}

int PageCache::map_own(PageNumber first, PageNumber count) noexcept {
  const std::size_t ps = region_.page_size();
  return mmap(region_.user_page(first), std::size_t{count} * ps, PROT_NONE, MAP_SHARED | MAP_FIXED, region_.fd(),
              static_cast<off_t>(std::size_t{first} * ps)) == MAP_FAILED
             ? errno
             : 0;
}

int PageCache::unmap_home(PageNumber first, PageNumber count) noexcept {
  for (PageNumber i = first; i < first + count;) {
    if (mapped_[i] == 0) {
      ++i;
      continue;
    }
    PageNumber j = i + 1;
    while (j < first + count && mapped_[j] != 0) ++j;
    if (const int err = map_own(i, j - i); err != 0) return err;
    std::fill_n(mapped_.begin() + i, j - i, std::uint8_t{0});
    mapped_count_ -= j - i;
    if (const int err = table_.set(i, j - i, PageState::invalid); err != 0) return err;
    i = j;
  }
  return 0;
}

int PageCache::unmap_home(std::span<const PageNumber> pages) noexcept {
  for (PageNumber p : pages) {
    if (p < region_.pages() && mapped_[p] != 0) {
      if (const int err = unmap_home(p, 1); err != 0) return err;
    }
  }
  return 0;
}

void PageCache::mark_written(PageNumber first, PageNumber count) noexcept { set_flags(written_at_home_, first, count); }

// Twins pages [first, first+count), copying only those whose twin is not a copy already
// and whose snapshot is not all zeros; runs of pages are copied at once (twins are laid
// out like pages).
void PageCache::copy_twins(PageNumber first, PageNumber count) noexcept {
  const std::size_t ps = region_.page_size();
  auto needs_copy = [&](PageNumber i) {
    const Twin t = twin_state_[first + i];
    return t != Twin::same && t != Twin::zero;
  };
  for (PageNumber i = 0; i < count;) {
    if (!needs_copy(i)) {
      stats_.zero_twins += twin_state_[first + i] == Twin::zero;
      ++i;
      continue;
    }
    PageNumber j = i + 1;
    while (j < count && needs_copy(j)) ++j;
    std::memcpy(twin(first + i), region_.runtime_page(first + i), (j - i) * ps);
    stats_.twin_copies += j - i;
    std::fill_n(twin_state_.begin() + first + i, j - i, Twin::same);
    i = j;
  }
}

// A write fault costs ~15 us (signal, mprotect, TLB shoot-down) against ~1 us to twin
// a 16 KiB page, so a segment that writes pages in order (rows, blocks) gets the
// following clean pages twinned and un-protected with the faulting one, in one
// mprotect: 1, 2, 4, ... up to write_ahead pages while the faults stay sequential
// (like file read-ahead). A page twinned but never written costs a twin copy and an
// empty diff, no more: finish_segment sends nothing for it.
// A segment's first write fault takes as many pages as the worker's last segment's
// final streak, wherever it falls: the segments of one routine write alike, and
// matmul's, 8 pages of C each, would otherwise take 4 faults apiece (1, 2, 4, 8)
// instead of 1. A routine whose first write is a lone page pays at most write_ahead
// twins for it, once a segment.
FaultOutcome PageCache::make_twins(PageNumber p) noexcept {
  streak_ = p == streak_end_ ? std::min<PageNumber>(2 * streak_, write_ahead_) : streak_end_ == 0 ? streak_ : 1;
  PageNumber n = 1;
  while (n < streak_ && p + n < region_.pages() && table_.state(p + n) == PageState::clean && mapped_[p + n] == 0) ++n;
  copy_twins(p, n);
  if (table_.set(p, n, PageState::dirty) != 0) {
    log::raw("calypso: mprotect failed while un-protecting a written page\n");
    return FaultOutcome::fatal;
  }
  streak_end_ = p + n;
  return FaultOutcome::resolved;
}

void PageCache::prepare_writes(std::span<const PageNumber> pages) {
  std::vector<PageNumber> take;
  take.reserve(pages.size());
  for (PageNumber p : pages) {
    if (p < region_.pages() && table_.state(p) == PageState::clean && mapped_[p] == 0) take.push_back(p);
  }
  std::sort(take.begin(), take.end());
  take.erase(std::unique(take.begin(), take.end()), take.end());
  for (std::size_t i = 0; i < take.size();) {
    std::size_t j = i + 1;
    while (j < take.size() && take[j] == take[j - 1] + 1) ++j;
    copy_twins(take[i], static_cast<PageNumber>(j - i));
    for (std::size_t k = i; k < j; ++k) prepared_[take[k]] = 1;
    i = j;
  }
  if (table_.set_each(take, PageState::dirty) != 0) throw Error("calypso: mprotect failed (prepare writes)");
}

void PageCache::invalidate(std::span<const PageNumber> pages) {
  std::vector<PageNumber> drop;
  drop.reserve(pages.size());
  if (mapped_count_ != 0 && unmap_home(pages) != 0) throw Error("calypso: mmap failed (invalidate)");
  for (PageNumber p : pages) {
    if (p >= region_.pages()) continue;
    const PageState s = table_.state(p);
    if (s == PageState::clean) drop.push_back(p);
    twin_state_[p] = Twin::stale;
    written_at_home_[p] = 1;
    pushed_[p] = 0;
  }
  std::sort(drop.begin(), drop.end());
  if (table_.set_each(drop, PageState::invalid) != 0) throw Error("calypso: mprotect failed (invalidate)");
}

void PageCache::invalidate_all() {
  if (mapped_count_ != 0 && unmap_home(0, region_.pages()) != 0) throw Error("calypso: mmap failed (invalidate all)");
  std::fill(twin_state_.begin(), twin_state_.end(), Twin::stale);
  std::fill(written_at_home_.begin(), written_at_home_.end(), std::uint8_t{1});
  std::fill(pushed_.begin(), pushed_.end(), std::uint8_t{0});
  if (table_.set(0, region_.pages(), PageState::invalid) != 0) {
    throw Error("calypso: mprotect failed (invalidate all)");
  }
}

// Held pages get the diffs in segment order, as the manager applied them. A page whose
// twin holds exactly what the one diff listed for it writes (its twin came from that
// segment's finish_segment, and nothing else wrote the page) then equals its twin.
void PageCache::replay(std::span<const PageNumber> pages, std::span<const std::uint32_t> segments,
                       std::span<const std::span<const std::byte>> bodies) {
  if (mapped_count_ != 0 && unmap_home(pages) != 0) throw Error("calypso: mmap failed (replay)");
  for (PageNumber p : pages) mark_written(p, 1);
  // By position in pages (a vector, not a map: Jacobi replays ~1000 pages a step):
  // untouched, its twin will equal it, or not.
  enum class Match : std::uint8_t { untouched, twin, not_twin };
  std::vector<Match> matches(pages.size(), Match::untouched);
  for (std::size_t b = 0; b < bodies.size(); ++b) {
    for_each_result_entry(bodies[b], [&](const ResultEntry& e, std::span<const std::byte> diff) {
      const PageNumber p = e.page;
      const auto at = std::lower_bound(pages.begin(), pages.end(), p);
      if (p >= region_.pages() || at == pages.end() || *at != p || table_.state(p) != PageState::clean) return true;
      diff_apply(diff, region_.runtime_page(p));
      Match& m = matches[static_cast<std::size_t>(at - pages.begin())];
      const bool only_this = twin_state_[p] == Twin::pending && kept_by_[p] == segments[b];
      m = m == Match::untouched && only_this ? Match::twin : Match::not_twin;
      return true;
    });
  }
  for (std::size_t i = 0; i < pages.size(); ++i) {
    if (matches[i] != Match::untouched) twin_state_[pages[i]] = matches[i] == Match::twin ? Twin::same : Twin::stale;
  }
}

void PageCache::settle_kept() {
  for (PageNumber p : kept_) {
    if (twin_state_[p] == Twin::pending) twin_state_[p] = Twin::stale;
  }
  kept_.clear();
}

// slot(): where the next entry and its diff go (room for an entry and the largest diff);
// done(n): the n bytes there are the entry and its diff.
template <class Slot, class Done>
std::size_t PageCache::finish_pages(std::uint32_t segment, Slot slot, Done done) {
  std::vector<PageNumber> written = table_.take_dirty();
  const std::size_t ps = region_.page_size();
  // Every written page goes back to clean: an unchanged one equals its twin; a changed
  // one swaps the changed words with its twin (see the header).
  std::size_t changed = 0;
  written_.clear();
  for (PageNumber p : written) {
    std::byte* at = slot();
    std::byte* encoded = at + sizeof(ResultEntry);
    const bool from_zero = twin_state_[p] == Twin::zero;
    std::size_t n = diff_encode(region_.runtime_page(p), from_zero ? zero_page_ : twin(p), ps, encoded);
    const bool prepared = std::exchange(prepared_[p], 0) != 0;
    if (n == 0) {
      if (!from_zero) twin_state_[p] = Twin::same;
      if (!prepared) written_.push_back(p);
      continue;
    }
    written_.push_back(p);
    ++changed;
    if (from_zero) {
      // Back to the snapshot by clearing; the page stays Twin::zero, not pending (keeping
      // the writes would mean touching the twin after all). A kept result of ours then
      // costs a twin copy at the page's next write, which is where it would have been.
      std::memset(region_.runtime_page(p), 0, ps);
    } else {
      diff_swap(std::span<const std::byte>(encoded, n), region_.runtime_page(p), twin(p));
      twin_state_[p] = Twin::pending;
      kept_by_[p] = segment;
      kept_.push_back(p);
    }
    const ResultEntry e{p, static_cast<std::uint32_t>(n)};
    std::memcpy(at, &e, sizeof e);
    done(sizeof e + n);
  }
  streak_end_ = 0;   // the next segment's first write fault keeps streak_ (make_twins)
  if (table_.set_each(written, PageState::clean) != 0) throw Error("calypso: mprotect failed (finish)");
  return changed;
}

std::size_t PageCache::result_bound() const noexcept {
  return table_.dirty_count() * (sizeof(ResultEntry) + diff_max_encoded_size(region_.page_size()));
}

std::size_t PageCache::finish_segment(std::vector<std::byte>& out, std::uint32_t segment) {
  // Encoded into scratch first: growing `out` by the worst case would zero-fill 4 KiB
  // for every written page, most of which (Jacobi's interior) have an empty diff.
  encoded_.resize(sizeof(ResultEntry) + diff_max_encoded_size(region_.page_size()));
  const auto append = [&](std::size_t n) {
    out.insert(out.end(), encoded_.begin(), encoded_.begin() + static_cast<std::ptrdiff_t>(n));
  };
  return finish_pages(segment, [&] { return encoded_.data(); }, append);
}

PageCache::Finished PageCache::finish_segment(std::span<std::byte> room, std::uint32_t segment) {
  if (room.size() < result_bound()) throw Error("calypso: finish_segment: room below result_bound()");
  std::size_t used = 0;
  const std::size_t changed = finish_pages(segment, [&] { return room.data() + used; },
                                           [&](std::size_t n) { used += n; });
  return {changed, used};
}

void PageCache::abort_segment() {
  streak_ = 1;   // what a carried streak then starts from too
  streak_end_ = 0;
  std::vector<PageNumber> dirty = table_.take_dirty();
  for (PageNumber p : dirty) prepared_[p] = 0;
  restore(dirty);
}

void PageCache::restore(std::span<const PageNumber> written) {
  for (PageNumber p : written) {
    if (twin_state_[p] == Twin::zero) {
      std::memset(region_.runtime_page(p), 0, region_.page_size());
      continue;
    }
    std::memcpy(region_.runtime_page(p), twin(p), region_.page_size());
    twin_state_[p] = Twin::same;
  }
  if (table_.set_each(written, PageState::clean) != 0) throw Error("calypso: mprotect failed (restore)");
}

}  // namespace calypso::dsm
