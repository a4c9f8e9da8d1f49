// rootseal::kms — SecureBytes, the only home of secret material.
//
// Memory comes from a process-wide arena of pages that are mlock()ed (never
// swapped) and madvise(MADV_DONTDUMP)ed (never in a core dump). Contents are
// zeroized on destruction and on move-from. The type is move-only, cannot be
// printed or converted to std::string, and compares in constant time.
//
// If locked memory cannot be obtained (RLIMIT_MEMLOCK exhausted) construction
// throws SecureMemoryError: running with secrets in swappable memory is not
// an option, and the condition is as fatal as running out of memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <string_view>

namespace rootseal::kms {

class SecureMemoryError : public std::bad_alloc {
 public:
  const char* what() const noexcept override;
};

class SecureBytes {
 public:
  SecureBytes() noexcept = default;
  // n zero bytes in locked memory.
  explicit SecureBytes(std::size_t n);
  // A locked copy of `bytes`. The caller remains responsible for its source.
  static SecureBytes copy_of(std::span<const std::uint8_t> bytes);
  static SecureBytes copy_of(std::string_view bytes);
  // n bytes from the OS CSPRNG (getrandom via OpenSSL's DRBG).
  static SecureBytes random(std::size_t n);

  SecureBytes(SecureBytes&& other) noexcept;
  SecureBytes& operator=(SecureBytes&& other) noexcept;
  SecureBytes(const SecureBytes&) = delete;
  SecureBytes& operator=(const SecureBytes&) = delete;
  ~SecureBytes();

  // An explicit deep copy, also in locked memory.
  [[nodiscard]] SecureBytes clone() const;

  [[nodiscard]] std::uint8_t* data() noexcept { return data_; }
  [[nodiscard]] const std::uint8_t* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] std::span<std::uint8_t> span() noexcept { return {data_, size_}; }
  [[nodiscard]] std::span<const std::uint8_t> span() const noexcept { return {data_, size_}; }

  // Shrinks to the first n bytes (n <= size()); the tail is zeroized.
  void truncate(std::size_t n) noexcept;
  // Zeroizes and releases the memory; size() becomes 0.
  void clear() noexcept;

  // Constant-time in the contents (length is not secret).
  friend bool operator==(const SecureBytes& a, const SecureBytes& b) noexcept;

 private:
  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

// Constant-time comparison of two byte strings (returns false at once if the
// lengths differ; the length of a token or key is not a secret).
bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) noexcept;
bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

// Zeroizes memory in a way the optimizer cannot remove (glibc explicit_bzero:
// a full-speed memset followed by a compiler barrier; OPENSSL_cleanse stores
// 8 bytes at a time, 50x slower on a 64 KiB block).
void secure_zero(void* p, std::size_t n) noexcept;

// Figures of the locked arena, for metrics and tests.
struct SecureArenaStats {
  std::size_t locked_bytes;  // pages mapped, locked and excluded from dumps
  std::size_t in_use_bytes;  // bytes handed out to live SecureBytes (rounded to size class)
  std::size_t live_allocations;
  std::size_t cached_bytes = 0;   // freed large blocks kept (wiped, locked) for reuse; part of locked_bytes
  std::size_t cached_blocks = 0;  // how many (at most 64, at most 8 MiB or a quarter of RLIMIT_MEMLOCK)
};
SecureArenaStats secure_arena_stats() noexcept;

}  // namespace rootseal::kms
