#include "rootseal/kms/secure_memory_resource.hpp"

#include <algorithm>
#include <new>

namespace rootseal::kms {

namespace {
// SecureBytes blocks are aligned to their size class (>= 32 bytes) or to a page.
constexpr std::size_t kMaxAlign = 32;
}  // namespace

SecureMemoryResource::~SecureMemoryResource() = default;

void* SecureMemoryResource::do_allocate(std::size_t bytes, std::size_t alignment) {
  if (alignment > kMaxAlign) throw std::bad_alloc();
  if (bytes == 0) bytes = 1;
  std::lock_guard lock(mu_);
  if (bytes > limit_ || in_use_ > limit_ - bytes) throw std::bad_alloc();
  SecureBytes block(bytes);  // throws SecureMemoryError (a bad_alloc) without locked memory
  void* p = block.data();
  blocks_.emplace(p, std::move(block));
  in_use_ += bytes;
  return p;
}

void SecureMemoryResource::do_deallocate(void* p, std::size_t /*bytes*/, std::size_t /*alignment*/) {
  if (p == nullptr) return;
  SecureBytes victim;
  {
    std::lock_guard lock(mu_);
    const auto it = blocks_.find(p);
    if (it == blocks_.end()) return;  // not ours: nothing to do (a bug elsewhere; never free foreign memory)
    in_use_ -= it->second.size();
    victim = std::move(it->second);
    blocks_.erase(it);
  }
  // victim is zeroized and returned to the locked arena here, outside the lock.
}

std::size_t SecureMemoryResource::in_use() const noexcept {
  std::lock_guard lock(mu_);
  return in_use_;
}

std::size_t SecureMemoryResource::allocations() const noexcept {
  std::lock_guard lock(mu_);
  return blocks_.size();
}

void* SecureMonotonicResource::do_allocate(std::size_t bytes, std::size_t alignment) {
  if (alignment > kMaxAlign || alignment == 0 || (alignment & (alignment - 1)) != 0) throw std::bad_alloc();
  if (bytes == 0) bytes = 1;
  if (!chunks_.empty()) {
    const std::size_t start = (used_ + alignment - 1) & ~(alignment - 1);
    SecureBytes& last = chunks_.back();
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
  chunks_.reserve(chunks_.size() + 1);  // so that push_back cannot throw after the allocation
  chunks_.emplace_back(size);
  reserved_ += size;
  if (next_chunk_ <= std::numeric_limits<std::size_t>::max() / 2) next_chunk_ *= 2;
  used_ = bytes;
  return chunks_.back().data();
}

void SecureMonotonicResource::release() noexcept {
  chunks_.clear();  // each SecureBytes zeroizes itself
  used_ = 0;
  reserved_ = 0;
}

std::pmr::memory_resource* secure_memory_resource() noexcept {
  static auto* resource = new SecureMemoryResource();  // never destroyed: outlives static users
  return resource;
}

}  // namespace rootseal::kms
