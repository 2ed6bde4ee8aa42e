// Layout of the declared shared variables (calypso::Shared<T>): each registers its size
// during static initialisation and gets an offset in the first part of the region.
#pragma once

#include <cstddef>

namespace calypso {

std::size_t shared_vars_size() noexcept;          // bytes used by all Shared<T>
void set_shared_base(std::byte* base) noexcept;   // called once the region is mapped

}  // namespace calypso
