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

namespace calypso::dsm {

PageCache::PageCache(const Region& region, PageSource& source, PageNumber fetch_pages,
                     PageNumber write_ahead)
    : region_(region), source_(source), fetch_pages_(fetch_pages),
      write_ahead_(std::max<PageNumber>(1, write_ahead)), table_(region, PageState::invalid) {
  void* t = mmap(nullptr, region.size(), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (t == MAP_FAILED) throw Error(std::string("calypso: mmap of the twin area: ") + std::strerror(errno));
  twins_ = static_cast<std::byte*>(t);
  installed_.reserve(fetch_pages);
}

PageCache::~PageCache() { munmap(twins_, region_.size()); }

FaultOutcome PageCache::on_fault(void* address, bool is_write) noexcept {
  PageNumber p = region_.page_of(address);
  switch (table_.state(p)) {
    case PageState::invalid: {
      ++stats_.read_faults;
      FaultOutcome r = fetch_group(p);
      if (r != FaultOutcome::resolved || !is_write) return r;
      return make_twins(p);
    }
    case PageState::clean:
      // A fault on a readable page can only be a write (also where the CPU does not say).
      ++stats_.write_faults;
      return make_twins(p);
    case PageState::dirty:
      return FaultOutcome::resolved;   // raced with our own protection change: retry
  }
  return FaultOutcome::fatal;
}

FaultOutcome PageCache::fetch_group(PageNumber p) noexcept {
  PageNumber first = p - p % fetch_pages_;
  PageNumber count = std::min<PageNumber>(fetch_pages_, region_.pages() - first);
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

// A write fault costs ~15 us (signal, mprotect, TLB shoot-down) against ~1 us to twin
// a 16 KiB page, so a segment that writes pages in order (rows, blocks) gets the
// following clean pages twinned and un-protected with the faulting one, in one
// mprotect: 1, 2, 4, ... up to write_ahead pages while the faults stay sequential
// (like file read-ahead). A page twinned but never written costs a twin copy and an
// empty diff, no more: finish_segment sends nothing for it.
FaultOutcome PageCache::make_twins(PageNumber p) noexcept {
  streak_ = p == streak_end_ ? std::min<PageNumber>(2 * streak_, write_ahead_) : 1;
  PageNumber n = 1;
  while (n < streak_ && p + n < region_.pages() && table_.state(p + n) == PageState::clean) ++n;
  const std::size_t ps = region_.page_size();
  std::memcpy(twin(p), region_.runtime_page(p), n * ps);   // twins are laid out like pages
  if (table_.set(p, n, PageState::dirty) != 0) {
    log::raw("calypso: mprotect failed while un-protecting a written page\n");
    return FaultOutcome::fatal;
  }
  streak_end_ = p + n;
  return FaultOutcome::resolved;
}

void PageCache::invalidate(std::span<const PageNumber> pages) {
  std::vector<PageNumber> drop;
  drop.reserve(pages.size());
  for (PageNumber p : pages) {
    if (p < region_.pages() && table_.state(p) == PageState::clean) drop.push_back(p);
  }
  std::sort(drop.begin(), drop.end());
  if (table_.set_each(drop, PageState::invalid) != 0) throw Error("calypso: mprotect failed (invalidate)");
}

void PageCache::invalidate_all() {
  if (table_.set(0, region_.pages(), PageState::invalid) != 0) {
    throw Error("calypso: mprotect failed (invalidate all)");
  }
}

void PageCache::replay(std::span<const PageNumber> pages, std::span<const std::span<const std::byte>> bodies) {
  for (std::span<const std::byte> body : bodies) {
    std::size_t at = 0;
    while (at + sizeof(ResultEntry) <= body.size()) {
      ResultEntry e;
      std::memcpy(&e, body.data() + at, sizeof e);
      at += sizeof e;
      if (table_.state(e.page) == PageState::clean && std::binary_search(pages.begin(), pages.end(), e.page)) {
        diff_apply(body.subspan(at, e.diff_bytes), region_.runtime_page(e.page));
      }
      at += e.diff_bytes;
    }
  }
}

std::size_t PageCache::finish_segment(std::vector<std::byte>& out) {
  std::vector<PageNumber> written = table_.take_dirty();
  const std::size_t ps = region_.page_size();
  std::size_t changed = 0;
  for (PageNumber p : written) {
    std::size_t at = out.size();
    out.resize(at + sizeof(ResultEntry) + diff_max_encoded_size(ps));
    std::size_t n = diff_encode(region_.runtime_page(p), twin(p), ps, out.data() + at + sizeof(ResultEntry));
    if (n == 0) {
      out.resize(at);
      continue;
    }
    ResultEntry e{p, static_cast<std::uint32_t>(n)};
    std::memcpy(out.data() + at, &e, sizeof e);
    out.resize(at + sizeof e + n);
    ++changed;
  }
  restore(written);
  return changed;
}

void PageCache::abort_segment() { restore(table_.take_dirty()); }

void PageCache::restore(std::span<const PageNumber> written) {
  for (PageNumber p : written) std::memcpy(region_.runtime_page(p), twin(p), region_.page_size());
  if (table_.set_each(written, PageState::clean) != 0) throw Error("calypso: mprotect failed (restore)");
}

}  // namespace calypso::dsm
