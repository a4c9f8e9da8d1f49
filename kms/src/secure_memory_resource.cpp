#include "rootseal/kms/secure_memory_resource.hpp"

#include <algorithm>
#include <new>

#include "locked_blocks.hpp"

namespace rootseal::kms {

namespace {
// SecureBytes blocks are aligned to their size class (>= 32 bytes) or to a page.
constexpr std::size_t kMaxAlign = 32;
}  // namespace

SecureMemoryResource::~SecureMemoryResource() = default;

void* SecureMemoryResource::do_allocate(std::size_t bytes, std::size_t alignment) {
  if (alignment > kMaxAlign) throw std::bad_alloc();
  if (bytes == 0) bytes = 1;
  if (limit_ != std::numeric_limits<std::size_t>::max()) {
    std::size_t used = in_use_.load(std::memory_order_relaxed);
    do {
      if (bytes > limit_ || used > limit_ - bytes) throw std::bad_alloc();
    } while (!in_use_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
  } else {
    in_use_.fetch_add(bytes, std::memory_order_relaxed);
  }
  try {
    void* p = detail::locked_allocate(bytes);  // throws SecureMemoryError (a bad_alloc) without locked memory
    allocations_.fetch_add(1, std::memory_order_relaxed);
    return p;
  } catch (...) {
    in_use_.fetch_sub(bytes, std::memory_order_relaxed);
    throw;
  }
}

void SecureMemoryResource::do_deallocate(void* p, std::size_t bytes, std::size_t /*alignment*/) {
  if (p == nullptr) return;
  if (bytes == 0) bytes = 1;
  detail::locked_release(p, bytes);  // zeroized and returned to the locked arena
  in_use_.fetch_sub(bytes, std::memory_order_relaxed);
  allocations_.fetch_sub(1, std::memory_order_relaxed);
}

std::size_t SecureMemoryResource::in_use() const noexcept { return in_use_.load(std::memory_order_relaxed); }

std::size_t SecureMemoryResource::allocations() const noexcept { return allocations_.load(std::memory_order_relaxed); }

void* SecureMonotonicResource::do_allocate(std::size_t bytes, std::size_t alignment) {
  if (alignment > kMaxAlign || alignment == 0 || (alignment & (alignment - 1)) != 0) throw std::bad_alloc();
  if (bytes == 0) bytes = 1;
  if (!first_.empty()) {
    SecureBytes& last = chunks_.empty() ? first_ : chunks_.back();
    const std::size_t start = (used_ + alignment - 1) & ~(alignment - 1);
    if (start <= last.size() && bytes <= last.size() - start) {
      used_ = start + bytes;
      return last.data() + start;
    }
  }
  std::size_t size = std::max(next_chunk_, bytes);
  if (size > limit_ || reserved_ > limit_ - size) {
    if (bytes > limit_ || reserved_ > limit_ - bytes) throw std::bad_alloc();
    size = bytes;
  }
  if (!first_.empty()) chunks_.reserve(chunks_.size() + 1);  // so that push_back cannot throw below
  SecureBytes chunk(size);                                   // aligned to 32 bytes at least
  std::uint8_t* p = chunk.data();
  if (first_.empty()) {
    first_ = std::move(chunk);
  } else {
    chunks_.push_back(std::move(chunk));
  }
  reserved_ += size;
  if (next_chunk_ <= std::numeric_limits<std::size_t>::max() / 2) next_chunk_ *= 2;
  used_ = bytes;
  return p;
}

void SecureMonotonicResource::release() noexcept {
  chunks_.clear();  // each SecureBytes zeroizes itself
  first_.clear();
  used_ = 0;
  reserved_ = 0;
}

std::pmr::memory_resource* secure_memory_resource() noexcept {
  // Never destroyed (it outlives static users), and built in static storage:
  // no allocation that could fail here.
  alignas(SecureMemoryResource) static unsigned char storage[sizeof(SecureMemoryResource)];
  static auto* resource = ::new (storage) SecureMemoryResource();
  return resource;
}

}  // namespace rootseal::kms
