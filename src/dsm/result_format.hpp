// The body of a segment's result: the diffs of every page it wrote, as entries
//     ResultEntry { u32 page; u32 diff_bytes }  followed by diff_bytes (a multiple of 8)
// Produced by the worker's page cache, checked and applied by the manager's collation.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>

namespace calypso::dsm {

struct ResultEntry {
  std::uint32_t page;
  std::uint32_t diff_bytes;
};
static_assert(sizeof(ResultEntry) == 8);

// Walks the entries of a body in order; fn(entry, diff) returns false to stop. Returns
// why the walk stopped early on malformed framing, or empty.
template <class Fn>
std::string for_each_result_entry(std::span<const std::byte> body, Fn&& fn) {
  std::size_t at = 0;
  while (at < body.size()) {
    if (body.size() - at < sizeof(ResultEntry)) return "truncated entry header";
    ResultEntry e;
    std::memcpy(&e, body.data() + at, sizeof e);
    at += sizeof e;
    if (e.diff_bytes > body.size() - at) return "entry runs past the end of the result";
    if (!fn(e, body.subspan(at, e.diff_bytes))) return {};
    at += e.diff_bytes;
  }
  return {};
}

}  // namespace calypso::dsm
