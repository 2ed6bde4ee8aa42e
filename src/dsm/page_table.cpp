// Page states and protections; see page_table.hpp.
#include "dsm/page_table.hpp"

#include <algorithm>

namespace calypso::dsm {
namespace {
Access access_of(PageState s) {
  switch (s) {
    case PageState::invalid: return Access::none;
    case PageState::clean: return Access::read;
    case PageState::dirty: return Access::read_write;
  }
  return Access::none;
}
}  // namespace

PageTable::PageTable(const Region& region, PageState initial)
    : region_(region), states_(region.pages(), initial), listed_(region.pages(), 0) {
  dirty_.reserve(region.pages());  // the fault path must not allocate
}

int PageTable::set(PageNumber first, PageNumber count, PageState s) noexcept {
  if (int err = region_.protect(first, count, access_of(s)); err != 0) return err;
  for (PageNumber p = first; p < first + count; ++p) {
    // listed_ keeps a page that goes dirty, clean and dirty again off the list twice.
    if (s == PageState::dirty && states_[p] != PageState::dirty && listed_[p] == 0) {
      listed_[p] = 1;
      dirty_.push_back(p);
    }
    states_[p] = s;
  }
  return 0;
}

int PageTable::set_each(std::span<const PageNumber> pages, PageState s) noexcept {
  std::size_t i = 0;
  while (i < pages.size()) {
    std::size_t j = i + 1;
    while (j < pages.size() && pages[j] == pages[j - 1] + 1) ++j;
    if (int err = set(pages[i], static_cast<PageNumber>(j - i), s); err != 0) return err;
    i = j;
  }
  return 0;
}

std::vector<PageNumber> PageTable::take_dirty() {
  std::vector<PageNumber> out;
  out.swap(dirty_);
  dirty_.reserve(states_.size());
  std::sort(out.begin(), out.end());
  for (PageNumber p : out) listed_[p] = 0;
  return out;
}

}  // namespace calypso::dsm
