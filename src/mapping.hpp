// Move-only owner of a memory mapping (mmap), unmapped when destroyed.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <utility>

namespace calypso {

class Mapping {
 public:
  Mapping() = default;
  Mapping(void* address, std::size_t size) noexcept : address_(address), size_(size) {}
  Mapping(Mapping&& o) noexcept
      : address_(std::exchange(o.address_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  Mapping& operator=(Mapping&& o) noexcept {
    if (this != &o) {
      reset();
      address_ = std::exchange(o.address_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~Mapping() { reset(); }
  void* get() const noexcept { return address_; }
  void reset() noexcept {
    if (address_ != nullptr) ::munmap(address_, size_);
    address_ = nullptr;
    size_ = 0;
  }

 private:
  void* address_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace calypso
