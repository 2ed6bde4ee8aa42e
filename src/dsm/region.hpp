// The shared region: one memfd mapped twice in every process.
//  - the user view, at the same fixed virtual address everywhere, whose page
//    protections the DSM changes to catch first reads and first writes;
//  - the runtime view, at any address, always read-write, through which the runtime
//    installs fetched pages, restores twins and applies diffs without ever faulting or
//    opening a window where the user view is writable but not yet filled.
#pragma once

#include <cstddef>
#include <cstdint>

namespace calypso::dsm {

using PageNumber = std::uint32_t;

enum class Access : std::uint8_t { none, read, read_write };

class Region {
 public:
  // Maps size bytes at address. Throws calypso::Error if the range is taken, or the
  // memfd cannot be made. initial is the protection of the whole user view.
  static Region map(std::uintptr_t address, std::size_t size, std::size_t page_size, Access initial);
  Region(Region&& o) noexcept;
  Region& operator=(Region&&) = delete;
  Region(const Region&) = delete;
  ~Region();

  std::byte* base() const noexcept { return base_; }
  std::byte* runtime_view() const noexcept { return view_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t page_size() const noexcept { return page_size_; }
  int fd() const noexcept { return fd_; }   // the memfd behind both views
  PageNumber pages() const noexcept { return static_cast<PageNumber>(size_ / page_size_); }

  bool contains(const void* p) const noexcept {
    auto a = reinterpret_cast<std::uintptr_t>(p);
    auto b = reinterpret_cast<std::uintptr_t>(base_);
    return a >= b && a - b < size_;
  }
  PageNumber page_of(const void* p) const noexcept {
    return static_cast<PageNumber>((static_cast<const std::byte*>(p) - base_) / page_size_);
  }
  std::byte* user_page(PageNumber p) const noexcept { return base_ + std::size_t{p} * page_size_; }
  std::byte* runtime_page(PageNumber p) const noexcept { return view_ + std::size_t{p} * page_size_; }

  // Changes the user view's protection of pages [first, first+count). Returns 0 or errno.
  int protect(PageNumber first, PageNumber count, Access a) const noexcept;
  // Has the kernel allocate and map pages [first, first+count) of the runtime view now,
  // in one call, instead of at their first writes; the contents do not change. Returns 0
  // or errno (EINVAL: a kernel before 5.14, which has no MADV_POPULATE_WRITE).
  int populate(PageNumber first, PageNumber count) const noexcept;

 private:
  Region(int fd, std::byte* base, std::byte* view, std::size_t size, std::size_t page_size);
  int fd_;
  std::byte* base_;
  std::byte* view_;
  std::size_t size_;
  std::size_t page_size_;
};

// The smallest page size >= wanted (a power of two) for which a region of region_size
// can never need more than the process's vm.max_map_count mappings, however its pages'
// protections alternate. The DSM uses it so that mprotect never fails with ENOMEM.
std::size_t safe_page_size(std::size_t region_size, std::size_t wanted);

}  // namespace calypso::dsm
