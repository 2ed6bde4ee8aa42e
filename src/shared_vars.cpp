// Offsets are handed out in registration order; the same executable registers the same
// variables in the same order in every process, so the layout matches everywhere (the
// build-id check makes sure it is the same executable).
#include "shared_vars.hpp"

#include <calypso/shared.hpp>

#include <atomic>

namespace calypso {
namespace {
std::size_t g_used = 0;
std::atomic<std::byte*> g_base{nullptr};
}  // namespace

std::size_t shared_vars_size() noexcept { return g_used; }
void set_shared_base(std::byte* base) noexcept { g_base.store(base); }

namespace detail {
std::size_t register_shared(std::size_t size, std::size_t align) noexcept {
  std::size_t a = align < 16 ? 16 : align;
  std::size_t offset = (g_used + a - 1) / a * a;
  g_used = offset + size;
  return offset;
}
std::byte* shared_base() noexcept { return g_base.load(std::memory_order_relaxed); }
}  // namespace detail

}  // namespace calypso
