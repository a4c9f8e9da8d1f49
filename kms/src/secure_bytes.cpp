// SecureBytes and its locked arena.
//
// Small secrets are many (one KEK per key version, one buffer per request), so
// each does not get pages of its own: mlock() works on whole pages and a
// munlock() of one allocation would unlock its neighbours. Instead the arena
// maps regions of at least 64 KiB, locks them and excludes them from core
// dumps once, and serves power-of-two size classes (32 B .. 32 KiB) from
// per-class free lists. Larger buffers get a private mapping of their own. Regions are never
// returned to the OS, so a page once locked stays locked.
#include "rootseal/kms/secure_bytes.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <new>
#include <vector>

namespace rootseal::kms {
namespace {

constexpr std::size_t kMinClass = 32;
constexpr std::size_t kMaxClass = 32 * 1024;
constexpr std::size_t kClassCount = 11;  // 32, 64, ..., 32768
constexpr std::size_t kRegionSize = 64 * 1024;

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

  std::uint8_t* allocate(std::size_t n, std::size_t& capacity) {
    std::lock_guard lock(mu_);
    if (n > kMaxClass) {
      const std::size_t bytes = (n + page_size() - 1) / page_size() * page_size();
      void* p = map_locked(bytes);
      if (p == nullptr) throw SecureMemoryError();
      capacity = bytes;
      locked_bytes_ += bytes;
      in_use_ += bytes;
      ++live_;
      return static_cast<std::uint8_t*>(p);
    }
    const std::size_t cls = class_index(n);
    const std::size_t size = kMinClass << cls;
    auto& list = free_[cls];
    if (list.empty()) refill(cls, size);
    std::uint8_t* p = list.back();
    list.pop_back();
    capacity = size;
    in_use_ += size;
    ++live_;
    return p;
  }

  void release(std::uint8_t* p, std::size_t capacity) noexcept {
    secure_zero(p, capacity);
    std::lock_guard lock(mu_);
    in_use_ -= capacity;
    --live_;
    if (capacity > kMaxClass) {
      ::munlock(p, capacity);
      ::munmap(p, capacity);
      locked_bytes_ -= capacity;
      return;
    }
    // The free list has room: refill() reserved it when the block was carved.
    free_[class_index(capacity)].push_back(p);
  }

  SecureArenaStats stats() noexcept {
    std::lock_guard lock(mu_);
    return {locked_bytes_, in_use_, live_};
  }

 private:
  static std::size_t class_index(std::size_t n) noexcept {
    const std::size_t rounded = std::bit_ceil(n < kMinClass ? kMinClass : n);
    return static_cast<std::size_t>(std::countr_zero(rounded) - std::countr_zero(kMinClass));
  }

  void refill(std::size_t cls, std::size_t size) {
    const std::size_t region_size = std::max(kRegionSize, 4 * size);  // at least 4 blocks a region
    void* region = map_locked(region_size);
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
  std::size_t in_use_ = 0;
  std::size_t live_ = 0;
};

}  // namespace

const char* SecureMemoryError::what() const noexcept {
  return "cannot allocate locked memory for secret material (raise LimitMEMLOCK / RLIMIT_MEMLOCK)";
}

void secure_zero(void* p, std::size_t n) noexcept {
  if (p != nullptr && n != 0) OPENSSL_cleanse(p, n);
}

SecureBytes::SecureBytes(std::size_t n) {
  if (n == 0) return;
  data_ = Arena::instance().allocate(n, capacity_);
  size_ = n;
  std::memset(data_, 0, capacity_);
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

bool operator==(const SecureBytes& a, const SecureBytes& b) noexcept {
  return constant_time_equal(a.span(), b.span());
}

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

}  // namespace rootseal::kms
