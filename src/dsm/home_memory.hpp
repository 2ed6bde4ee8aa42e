// The manager's copy of shared memory: the home of every page. Between parallel steps
// the program writes it directly; write faults record which pages a sequential step
// changed, so that workers holding copies of them get write notices. During a step the
// runtime serves page fetches and applies results through the region's runtime view.
#pragma once

#include "dsm/fault_handler.hpp"
#include "dsm/page_table.hpp"
#include "dsm/region.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace calypso::dsm {

class HomeMemory final : public FaultTarget {
 public:
  explicit HomeMemory(const Region& region);

  FaultOutcome on_fault(void* address, bool is_write) noexcept override;

  // Frozen pages (Manager::freeze) stay read-only: a write to one ends the program with
  // a message (it broke its promise; the workers may share the page's memory).
  // Pages the program wrote since the last step are made read-only again at once (they
  // stay on the written list for the step's notices). Returns 0 or errno.
  int freeze(PageNumber first, PageNumber count) noexcept;
  bool frozen(PageNumber p) const noexcept { return frozen_[p] != 0; }
  std::span<const std::uint8_t> frozen_flags() const noexcept { return frozen_; }

  // Pages the program wrote since the last call (sorted); they become read-only again.
  std::vector<PageNumber> take_written();

  // Appends the reply body for a fetch of [first, first+count): count kind bytes (0 = zero
  // page, 1 = data follows), then the bytes of the non-zero pages. Returns false if the
  // range is outside the region.
  bool copy_pages(PageNumber first, PageNumber count, std::vector<std::byte>& out) const;

 private:
  const Region& region_;
  PageTable table_;
  std::vector<std::uint8_t> frozen_;
};

}  // namespace calypso::dsm
