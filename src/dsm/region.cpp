// Mapping of the shared region; see region.hpp for why there are two views.
#include "dsm/region.hpp"

#include "mapping.hpp"

#include <calypso/error.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

namespace calypso::dsm {
namespace {

int to_prot(Access a) {
  switch (a) {
    case Access::none: return PROT_NONE;
    case Access::read: return PROT_READ;
    case Access::read_write: return PROT_READ | PROT_WRITE;
  }
  return PROT_NONE;
}

std::string sys_error(const char* call) {
  return std::string(call) + " failed: " + std::strerror(errno);
}

std::string hex(std::uintptr_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

Region Region::map(std::uintptr_t address, std::size_t size, std::size_t page_size, Access initial) {
  int fd = memfd_create("calypso-region", MFD_CLOEXEC);
  if (fd < 0) throw Error("calypso: " + sys_error("memfd_create"));
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    std::string msg = sys_error("ftruncate of the region memfd");
    close(fd);
    throw Error("calypso: " + msg);
  }
  void* want = reinterpret_cast<void*>(address);
  void* base = mmap(want, size, to_prot(initial), MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
  if (base == MAP_FAILED || base != want) {
    int err = errno;
    if (base != MAP_FAILED) munmap(base, size);
    close(fd);
    throw Error("calypso: cannot map the shared region at " + hex(address) + ".." +
                hex(address + size) + " (" + std::strerror(err) +
                "): the range is in use in this process; choose another with "
                "CALYPSO_REGION_ADDRESS (same value for every process)");
  }
  void* view = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (view == MAP_FAILED) {
    std::string msg = sys_error("mmap of the region's runtime view");
    munmap(base, size);
    close(fd);
    throw Error("calypso: " + msg);
  }
  return Region(fd, static_cast<std::byte*>(base), static_cast<std::byte*>(view), size, page_size);
}

Region::Region(int fd, std::byte* base, std::byte* view, std::size_t size, std::size_t page_size)
    : fd_(fd), base_(base), view_(view), size_(size), page_size_(page_size) {}

Region::Region(Region&& o) noexcept
    : fd_(o.fd_), base_(o.base_), view_(o.view_), size_(o.size_), page_size_(o.page_size_) {
  o.fd_ = -1;
  o.base_ = nullptr;
  o.view_ = nullptr;
}

Region::~Region() {
  if (view_ != nullptr) munmap(view_, size_);
  if (base_ != nullptr) munmap(base_, size_);
  if (fd_ >= 0) close(fd_);
}

int Region::protect(PageNumber first, PageNumber count, Access a) const noexcept {
  if (count == 0) return 0;
  if (mprotect(user_page(first), std::size_t{count} * page_size_, to_prot(a)) != 0) return errno;
  return 0;
}

int Region::populate(PageNumber first, PageNumber count) const noexcept {
  if (count == 0) return 0;
  return populate_write(runtime_page(first), std::size_t{count} * page_size_);
}

std::size_t safe_page_size(std::size_t region_size, std::size_t wanted) {
  std::size_t max_maps = 65530;
  std::ifstream f("/proc/sys/vm/max_map_count");
  f >> max_maps;
  // Room for the program's own mappings (libraries, heaps, stacks, fabric buffers).
  std::size_t budget = max_maps > 16384 ? max_maps - 8192 : max_maps / 2;
  std::size_t page = wanted;
  while (region_size / page > budget) page *= 2;
  return page;
}

}  // namespace calypso::dsm
