// The body of a segment's result: the diffs of every page it wrote, as entries
//     ResultEntry { u32 page; u32 diff_bytes }  followed by diff_bytes (a multiple of 8)
// Produced by the worker's page cache, checked and applied by the manager's collation.
#pragma once

#include <cstdint>

namespace calypso::dsm {

struct ResultEntry {
  std::uint32_t page;
  std::uint32_t diff_bytes;
};
static_assert(sizeof(ResultEntry) == 8);

}  // namespace calypso::dsm
