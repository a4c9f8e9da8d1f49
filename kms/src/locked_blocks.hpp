// The locked arena of secure_bytes.cpp, for memory resources that know the
// size of what they give back (std::pmr and allocator contracts), so that
// they need no table of their blocks.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rootseal::kms::detail {

// n bytes (n == 0 counts as 1) of zeroed locked memory, aligned to 32 bytes at
// least; its capacity follows from n alone (size class or whole pages). Throws
// SecureMemoryError without locked memory.
std::uint8_t* locked_allocate(std::size_t n);
// Wipes the whole capacity and gives the block back; n as given to locked_allocate.
void locked_release(void* p, std::size_t n) noexcept;

}  // namespace rootseal::kms::detail
