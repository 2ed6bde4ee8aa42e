// Manager-side page tracking and page serving; see home_memory.hpp.
#include "dsm/home_memory.hpp"

#include "log.hpp"

#include <calypso/error.hpp>

#include <algorithm>
#include <cstring>

namespace calypso::dsm {
namespace {
bool all_zero(const std::byte* p, std::size_t n) {
  const auto* w = reinterpret_cast<const std::uint64_t*>(p);
  std::uint64_t acc = 0;
  for (std::size_t i = 0; i < n / 8; ++i) acc |= w[i];
  return acc == 0;
}
}  // namespace

HomeMemory::HomeMemory(const Region& region)
    : region_(region), table_(region, PageState::clean), frozen_(region.pages(), 0) {}

int HomeMemory::freeze(PageNumber first, PageNumber count) noexcept {
  if (first >= region_.pages()) return 0;
  count = std::min<PageNumber>(count, region_.pages() - first);
  std::fill_n(frozen_.begin() + first, count, std::uint8_t{1});
  // Home pages are only clean or dirty; a dirty one stays listed for take_written.
  return table_.set(first, count, PageState::clean);
}

FaultOutcome HomeMemory::on_fault(void* address, bool) noexcept {
  PageNumber p = region_.page_of(address);
  if (table_.state(p) == PageState::dirty) return FaultOutcome::resolved;
  if (frozen_[p] != 0) {
    log::raw("calypso: the program wrote shared memory that it had frozen with Manager::freeze, "
             "which promises it never changes again; exiting\n");
    return FaultOutcome::fatal;
  }
  if (table_.set(p, 1, PageState::dirty) != 0) {
    log::raw("calypso: mprotect failed on the manager\n");
    return FaultOutcome::fatal;
  }
  return FaultOutcome::resolved;
}

std::vector<PageNumber> HomeMemory::take_written() {
  std::vector<PageNumber> written = table_.take_dirty();
  if (table_.set_each(written, PageState::clean) != 0) {
    throw Error("calypso: mprotect failed while re-protecting the manager's pages");
  }
  return written;
}

bool HomeMemory::copy_pages(PageNumber first, PageNumber count, std::vector<std::byte>& out) const {
  if (count == 0 || first >= region_.pages() || count > region_.pages() - first) return false;
  const std::size_t ps = region_.page_size();
  std::size_t kinds_at = out.size();
  out.resize(kinds_at + count);
  for (PageNumber i = 0; i < count; ++i) {
    const std::byte* page = region_.runtime_page(first + i);
    bool zero = all_zero(page, ps);
    out[kinds_at + i] = std::byte{zero ? std::uint8_t{0} : std::uint8_t{1}};
    if (!zero) out.insert(out.end(), page, page + ps);
  }
  return true;
}

}  // namespace calypso::dsm
