// Per-page state of the shared region in one process, and the one place that changes
// the user view's protections so that they always match the state:
//   invalid -> no access (a touch faults and fetches), clean -> read-only (a write faults
//   and makes a twin), dirty -> read-write (written in this segment / sequential step).
// Consecutive pages changing together get one mprotect, which also keeps the number of
// kernel mappings low (see safe_page_size in region.hpp for the bound).
#pragma once

#include "dsm/region.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace calypso::dsm {

enum class PageState : std::uint8_t { invalid, clean, dirty };

class PageTable {
 public:
  PageTable(const Region& region, PageState initial);

  PageState state(PageNumber p) const noexcept { return states_[p]; }
  // Sets the state (and protection) of [first, first+count). Returns 0 or errno.
  int set(PageNumber first, PageNumber count, PageState s) noexcept;
  // Sets the state of every listed page (sorted or not), one mprotect per run.
  int set_each(std::span<const PageNumber> pages, PageState s) noexcept;
  // Pages made dirty since the last take_dirty(), sorted; they stay dirty.
  std::vector<PageNumber> take_dirty();
  std::size_t dirty_count() const noexcept { return dirty_.size(); }

 private:
  const Region& region_;
  std::vector<PageState> states_;
  std::vector<std::uint8_t> listed_;   // 1 while the page is on dirty_
  std::vector<PageNumber> dirty_;   // appended on the fault path: reserved up front
};

}  // namespace calypso::dsm
