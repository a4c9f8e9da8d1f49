// rootseal::kms — memory resources whose every byte is locked memory.
//
// For data structures that carry secret values but are built by libraries
// that allocate on their own: JSON documents (Boost.JSON through an adapter,
// std::pmr containers), HTTP header fields (Beast basic_fields with
// SecureAllocator), read buffers. Every chunk is a SecureBytes: mlocked,
// excluded from core dumps, zeroized when released. Allocation failure throws
// std::bad_alloc (kms::SecureMemoryError without locked memory, plain
// bad_alloc beyond a resource's limit); there is no fallback to the heap.
#pragma once

#include <atomic>
#include <cstddef>
#include <limits>
#include <memory_resource>
#include <vector>

#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::kms {

// General purpose: each allocation is its own block of the locked arena (its
// size classes, cached per thread up to 4 KiB, make small ones cheap: no
// mmap/mlock per allocation); deallocation zeroizes and frees at once. No
// table of blocks: the pmr contract gives back the size at deallocation.
// Thread-safe. Alignment up to 32 bytes (the arena's smallest class).
class SecureMemoryResource final : public std::pmr::memory_resource {
 public:
  explicit SecureMemoryResource(std::size_t limit = std::numeric_limits<std::size_t>::max()) noexcept : limit_(limit) {}
  SecureMemoryResource(const SecureMemoryResource&) = delete;
  SecureMemoryResource& operator=(const SecureMemoryResource&) = delete;
  ~SecureMemoryResource() override;

  [[nodiscard]] std::size_t in_use() const noexcept;       // bytes requested and not yet released
  [[nodiscard]] std::size_t allocations() const noexcept;  // live allocations

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override;
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override;
  [[nodiscard]] bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  std::size_t limit_;
  std::atomic<std::size_t> in_use_{0};
  std::atomic<std::size_t> allocations_{0};
};

// Monotonic: hands out pieces of SecureBytes chunks that grow geometrically
// (first chunk `initial` bytes, total bounded by `limit`); deallocate is a
// no-op and everything is wiped when the resource is destroyed or release()d.
// For one parse of one document. Not thread-safe (one owner).
class SecureMonotonicResource final : public std::pmr::memory_resource {
 public:
  explicit SecureMonotonicResource(std::size_t initial = 1024,
                                   std::size_t limit = std::numeric_limits<std::size_t>::max()) noexcept
      : next_chunk_(initial < 64 ? 64 : initial), limit_(limit) {}
  SecureMonotonicResource(const SecureMonotonicResource&) = delete;
  SecureMonotonicResource& operator=(const SecureMonotonicResource&) = delete;
  ~SecureMonotonicResource() override = default;

  void release() noexcept;
  [[nodiscard]] std::size_t reserved() const noexcept { return reserved_; }  // locked bytes held

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override;
  void do_deallocate(void*, std::size_t, std::size_t) override {}
  [[nodiscard]] bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  SecureBytes first_;                // the first chunk (most documents need no other)
  std::vector<SecureBytes> chunks_;  // the further ones
  std::size_t used_ = 0;             // in the last chunk
  std::size_t next_chunk_;
  std::size_t limit_;
  std::size_t reserved_ = 0;
};

// The process-wide SecureMemoryResource (never destroyed).
std::pmr::memory_resource* secure_memory_resource() noexcept;

// A stateless allocator over secure_memory_resource(): for containers that
// default-construct their allocator (Beast basic_fields / basic_flat_buffer,
// std::basic_string).
template <class T>
struct SecureAllocator {
  using value_type = T;
  SecureAllocator() noexcept = default;
  template <class U>
  SecureAllocator(const SecureAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)

  T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_alloc();
    return static_cast<T*>(secure_memory_resource()->allocate(n * sizeof(T), alignof(T) > 32 ? 32 : alignof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept {
    secure_memory_resource()->deallocate(p, n * sizeof(T), alignof(T) > 32 ? 32 : alignof(T));
  }
  template <class U>
  friend bool operator==(const SecureAllocator&, const SecureAllocator<U>&) noexcept {
    return true;
  }
};

}  // namespace rootseal::kms
