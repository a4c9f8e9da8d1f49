// SecureBytes and its locked arena.
//
// Small secrets are many (one KEK per key version, one buffer per request), so
// each does not get pages of its own: mlock() works on whole pages and a
// munlock() of one allocation would unlock its neighbours. Instead the arena
// maps regions of at least 64 KiB, locks them and excludes them from core
// dumps once, and serves power-of-two size classes (32 B .. 32 KiB) from
// per-class free lists. Larger buffers get a private mapping of their own. Regions are never
// returned to the OS, so a page once locked stays locked.
//
// Each thread keeps a few freed small blocks (classes up to 4 KiB) of its own
// and takes from them first, so the per-item buffers of a batch do not make
// the I/O threads queue on the arena's mutex. A thread's blocks go back to the
// shared free lists when it exits. They are wiped like any freed block.
//
// Invariant: every block that is not handed out is all zero, over its whole
// capacity. Fresh mappings are zero, and release() wipes the whole capacity
// before a block goes back to a free list or the large-block cache. So
// allocation does not zero again (a new SecureBytes still reads as zeros; Debug
// builds check it).
//
// Large blocks (> 32 KiB: request arenas, big batch buffers) are the expensive
// ones: mmap + mlock (which faults every page in) on the way in, munlock +
// munmap on the way out, ~35 us for 64 KiB. Freed ones are kept, wiped and
// still locked and excluded from dumps, in a small cache (at most
// kLargeCacheEntries blocks and kLargeCacheBytes in total) and handed out again
// for a request of the same size up to half of it smaller. They stay counted in
// locked_bytes: they are locked memory held by the process. So that the cache
// never costs a secret its locked memory, it holds at most a quarter of
// RLIMIT_MEMLOCK, and a failed mmap/mlock first empties it and tries again.
#include "rootseal/kms/secure_bytes.hpp"

#include "locked_blocks.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <new>
#include <vector>

namespace rootseal::kms {
namespace {

constexpr std::size_t kMinClass = 32;
constexpr std::size_t kMaxClass = std::size_t{32} * 1024;
constexpr std::size_t kClassCount = 11;  // 32, 64, ..., 32768
constexpr std::size_t kRegionSize = std::size_t{64} * 1024;
constexpr std::size_t kLargeCacheEntries = 64;
constexpr std::size_t kLargeCacheBytes = std::size_t{8} * 1024 * 1024;
constexpr std::size_t kThreadClasses = 8;  // 32 B .. 4 KiB are kept per thread
constexpr std::size_t kThreadBlocks = 32;  // per class and thread (at most ~270 KiB of locked memory a thread)

// Freed small blocks a thread keeps for itself (trivially destructible, so it
// stays usable while other thread_local objects are torn down).
struct ThreadCache {
  std::array<std::array<std::uint8_t*, kThreadBlocks>, kThreadClasses> blocks;
  std::array<std::size_t, kThreadClasses> count;
  bool registered;  // the flusher below exists for this thread
  bool gone;        // the thread is exiting: no more caching
};
constinit thread_local ThreadCache t_cache{};

std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

// Maps, locks and marks `bytes` (a multiple of the page size). nullptr on failure.
void* map_locked(std::size_t bytes) noexcept {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  if (::mlock(p, bytes) != 0) {
    ::munmap(p, bytes);
    return nullptr;
  }
  // Not fatal where unsupported: core dumps are also disabled process-wide by the daemon.
  (void)::madvise(p, bytes, MADV_DONTDUMP);
  return p;
}

class Arena {
 public:
  static Arena& instance() {
    static Arena* arena = new Arena();  // never destroyed: outlives every static SecureBytes
    return *arena;
  }

  // exact: a large block of exactly n rounded to pages (never a bigger cached
  // one), so that the capacity follows from n alone (locked_release()).
  std::uint8_t* allocate(std::size_t n, std::size_t& capacity, bool exact = false) {
    if (n <= kMaxClass) {
      const std::size_t cls = class_index(n);
      if (cls < kThreadClasses && t_cache.count[cls] != 0) {
        capacity = kMinClass << cls;
        in_use_.fetch_add(capacity, std::memory_order_relaxed);
        live_.fetch_add(1, std::memory_order_relaxed);
        return t_cache.blocks[cls][--t_cache.count[cls]];
      }
    }
    std::lock_guard lock(mu_);
    if (n > kMaxClass) {
      const std::size_t bytes = (n + page_size() - 1) / page_size() * page_size();
      void* p = take_cached(bytes, capacity, exact);
      if (p == nullptr) {
        p = map_locked_or_flush(bytes);
        if (p == nullptr) throw SecureMemoryError();
        capacity = bytes;
        locked_bytes_ += bytes;
      }
      in_use_.fetch_add(capacity, std::memory_order_relaxed);
      live_.fetch_add(1, std::memory_order_relaxed);
      return static_cast<std::uint8_t*>(p);
    }
    const std::size_t cls = class_index(n);
    const std::size_t size = kMinClass << cls;
    auto& list = free_[cls];
    if (list.empty()) refill(cls, size);
    std::uint8_t* p = list.back();
    list.pop_back();
    capacity = size;
    in_use_.fetch_add(size, std::memory_order_relaxed);
    live_.fetch_add(1, std::memory_order_relaxed);
    return p;
  }

  void release(std::uint8_t* p, std::size_t capacity) noexcept {
    secure_zero(p, capacity);  // the whole capacity: see the invariant above
    in_use_.fetch_sub(capacity, std::memory_order_relaxed);
    live_.fetch_sub(1, std::memory_order_relaxed);
    if (capacity <= kMaxClass && keep_in_thread(p, class_index(capacity))) return;
    {
      std::lock_guard lock(mu_);
      if (capacity <= kMaxClass) {
        // The free list has room: refill() reserved it when the block was carved.
        free_[class_index(capacity)].push_back(p);
        return;
      }
      if (large_.size() < kLargeCacheEntries && capacity <= cache_limit_ - cached_bytes_) {
        large_.push_back({p, capacity});  // capacity reserved in the constructor: no allocation
        cached_bytes_ += capacity;
        return;
      }
      locked_bytes_ -= capacity;
    }
    ::munlock(p, capacity);
    ::munmap(p, capacity);
  }

  SecureArenaStats stats() noexcept {
    std::lock_guard lock(mu_);
    return {locked_bytes_, in_use_.load(std::memory_order_relaxed), live_.load(std::memory_order_relaxed),
            cached_bytes_, large_.size()};
  }

  // Gives a thread's cached blocks back to the shared free lists (at thread exit).
  void flush(ThreadCache& cache) noexcept {
    std::lock_guard lock(mu_);
    for (std::size_t cls = 0; cls < kThreadClasses; ++cls) {
      // The free list has room: refill() reserved it when the blocks were carved.
      for (std::size_t i = 0; i < cache.count[cls]; ++i) free_[cls].push_back(cache.blocks[cls][i]);
      cache.count[cls] = 0;
    }
  }

 private:
  struct LargeBlock {
    void* p;
    std::size_t bytes;
  };

  Arena() : cache_limit_(large_cache_limit()) { large_.reserve(kLargeCacheEntries); }

  static std::size_t large_cache_limit() noexcept {
    rlimit limit{};
    if (::getrlimit(RLIMIT_MEMLOCK, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return kLargeCacheBytes;
    return std::min<std::size_t>(kLargeCacheBytes, static_cast<std::size_t>(limit.rlim_cur / 4));
  }

  // map_locked(); if that fails while the cache holds blocks, gives them back
  // to the OS (their locked pages count against RLIMIT_MEMLOCK) and retries.
  void* map_locked_or_flush(std::size_t bytes) noexcept {
    void* p = map_locked(bytes);
    if (p != nullptr || large_.empty()) return p;
    for (const LargeBlock& block : large_) {
      ::munlock(block.p, block.bytes);
      ::munmap(block.p, block.bytes);
      locked_bytes_ -= block.bytes;
    }
    large_.clear();
    cached_bytes_ = 0;
    return map_locked(bytes);
  }

  // The smallest cached block of at least `bytes` and at most twice that
  // (so a small request does not pin a much larger block); with `exact`, one
  // of exactly `bytes`. nullptr if none.
  void* take_cached(std::size_t bytes, std::size_t& capacity, bool exact) noexcept {
    // From the most recently freed (its pages are the likeliest in cache).
    std::size_t best = large_.size();
    for (std::size_t i = large_.size(); i-- > 0;) {
      const std::size_t have = large_[i].bytes;
      if (have < bytes || have / 2 > bytes || (exact && have != bytes)) continue;
      if (best == large_.size() || have < large_[best].bytes) best = i;
      if (have == bytes) break;
    }
    if (best == large_.size()) return nullptr;
    const LargeBlock block = large_[best];
    large_[best] = large_.back();
    large_.pop_back();
    cached_bytes_ -= block.bytes;
    capacity = block.bytes;
    return block.p;
  }

  // Keeps a wiped small block in this thread's cache if it has room.
  static bool keep_in_thread(std::uint8_t* p, std::size_t cls) noexcept;

  static std::size_t class_index(std::size_t n) noexcept {
    const std::size_t rounded = std::bit_ceil(n < kMinClass ? kMinClass : n);
    return static_cast<std::size_t>(std::countr_zero(rounded) - std::countr_zero(kMinClass));
  }

  void refill(std::size_t cls, std::size_t size) {
    const std::size_t region_size = std::max(kRegionSize, 4 * size);  // at least 4 blocks a region
    void* region = map_locked_or_flush(region_size);
    if (region == nullptr) throw SecureMemoryError();
    locked_bytes_ += region_size;
    auto& list = free_[cls];
    const std::size_t blocks = region_size / size;
    carved_[cls] += blocks;
    list.reserve(carved_[cls]);  // release() never allocates
    auto* base = static_cast<std::uint8_t*>(region);
    for (std::size_t i = blocks; i-- > 0;) list.push_back(base + i * size);
  }

  std::mutex mu_;
  std::array<std::vector<std::uint8_t*>, kClassCount> free_{};
  std::array<std::size_t, kClassCount> carved_{};
  std::size_t locked_bytes_ = 0;
  std::atomic<std::size_t> in_use_{0};
  std::atomic<std::size_t> live_{0};
  const std::size_t cache_limit_;  // bytes the large-block cache may hold
  std::vector<LargeBlock> large_;  // wiped, locked, not handed out
  std::size_t cached_bytes_ = 0;
};

// Returns the thread's blocks to the arena when the thread exits.
struct ThreadCacheFlusher {
  ThreadCacheFlusher() noexcept { t_cache.registered = true; }
  ~ThreadCacheFlusher() {
    t_cache.gone = true;
    Arena::instance().flush(t_cache);
  }
  ThreadCacheFlusher(const ThreadCacheFlusher&) = delete;
  ThreadCacheFlusher& operator=(const ThreadCacheFlusher&) = delete;
};

bool Arena::keep_in_thread(std::uint8_t* p, std::size_t cls) noexcept {
  if (cls >= kThreadClasses || t_cache.gone || t_cache.count[cls] == kThreadBlocks) return false;
  if (!t_cache.registered) {
    // First block this thread keeps: make sure it is handed back at exit.
    try {
      thread_local ThreadCacheFlusher flusher;
      (void)flusher;
    } catch (...) {
      return false;
    }
    if (!t_cache.registered) return false;
  }
  t_cache.blocks[cls][t_cache.count[cls]++] = p;
  return true;
}

#ifndef NDEBUG
bool all_zero(const std::uint8_t* p, std::size_t n) noexcept {
  std::uint8_t acc = 0;
  for (std::size_t i = 0; i < n; ++i) acc |= p[i];
  return acc == 0;
}
#endif

}  // namespace

const char* SecureMemoryError::what() const noexcept {
  return "cannot allocate locked memory for secret material (raise LimitMEMLOCK / RLIMIT_MEMLOCK)";
}

void secure_zero(void* p, std::size_t n) noexcept {
  if (p != nullptr && n != 0) ::explicit_bzero(p, n);
}

SecureBytes::SecureBytes(std::size_t n) {
  if (n == 0) return;
  data_ = Arena::instance().allocate(n, capacity_);
  size_ = n;
  // Already zero (the arena's invariant); Debug builds make sure.
#ifndef NDEBUG
  if (!all_zero(data_, capacity_)) std::abort();
#endif
}

SecureBytes SecureBytes::copy_of(std::span<const std::uint8_t> bytes) {
  SecureBytes out(bytes.size());
  if (!bytes.empty()) std::memcpy(out.data_, bytes.data(), bytes.size());
  return out;
}

SecureBytes SecureBytes::copy_of(std::string_view bytes) {
  return copy_of(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
}

SecureBytes SecureBytes::random(std::size_t n) {
  SecureBytes out(n);
  if (n != 0 && RAND_priv_bytes(out.data_, static_cast<int>(n)) != 1) {
    // The CSPRNG failing is not a condition any caller can handle.
    throw std::runtime_error("OpenSSL RAND_priv_bytes failed");
  }
  return out;
}

SecureBytes::SecureBytes(SecureBytes&& other) noexcept
    : data_(other.data_), size_(other.size_), capacity_(other.capacity_) {
  other.data_ = nullptr;
  other.size_ = 0;
  other.capacity_ = 0;
}

SecureBytes& SecureBytes::operator=(SecureBytes&& other) noexcept {
  if (this != &other) {
    clear();
    data_ = other.data_;
    size_ = other.size_;
    capacity_ = other.capacity_;
    other.data_ = nullptr;
    other.size_ = 0;
    other.capacity_ = 0;
  }
  return *this;
}

SecureBytes::~SecureBytes() { clear(); }

SecureBytes SecureBytes::clone() const { return copy_of(span()); }

void SecureBytes::truncate(std::size_t n) noexcept {
  if (n >= size_) return;
  secure_zero(data_ + n, size_ - n);
  size_ = n;
}

void SecureBytes::clear() noexcept {
  if (data_ != nullptr) Arena::instance().release(data_, capacity_);
  data_ = nullptr;
  size_ = 0;
  capacity_ = 0;
}

bool operator==(const SecureBytes& a, const SecureBytes& b) noexcept { return constant_time_equal(a.span(), b.span()); }

bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) noexcept {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
  return constant_time_equal(std::span(reinterpret_cast<const std::uint8_t*>(a.data()), a.size()),
                             std::span(reinterpret_cast<const std::uint8_t*>(b.data()), b.size()));
}

SecureArenaStats secure_arena_stats() noexcept { return Arena::instance().stats(); }

namespace detail {

static std::size_t locked_capacity(std::size_t n) noexcept {
  if (n <= kMaxClass) return std::bit_ceil(n < kMinClass ? kMinClass : n);
  return (n + page_size() - 1) / page_size() * page_size();
}

std::uint8_t* locked_allocate(std::size_t n) {
  std::size_t capacity = 0;
  std::uint8_t* p = Arena::instance().allocate(n == 0 ? 1 : n, capacity, true);
#ifndef NDEBUG
  if (capacity != locked_capacity(n == 0 ? 1 : n) || !all_zero(p, capacity)) std::abort();
#endif
  return p;
}

void locked_release(void* p, std::size_t n) noexcept {
  if (p != nullptr) Arena::instance().release(static_cast<std::uint8_t*>(p), locked_capacity(n == 0 ? 1 : n));
}

}  // namespace detail

}  // namespace rootseal::kms
