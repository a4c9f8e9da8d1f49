// rootseal::kms — a growable byte buffer in locked memory.
//
// For building values that carry secrets piece by piece: HTTP bodies (net's
// SecureBody), rendered templates, serialized JSON, request bodies of the
// providers. The bytes live in a SecureBytes (mlocked, excluded from core
// dumps); growth copies into a bigger locked block and the old one is wiped.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::kms {

class SecureBuffer {
 public:
  SecureBuffer() = default;
  // Empty, with room for `capacity` bytes.
  explicit SecureBuffer(std::size_t capacity) { reserve(capacity); }
  // A copy of `text`.
  explicit SecureBuffer(std::string_view text) { append(text); }

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] std::size_t capacity() const noexcept { return bytes_.size(); }
  [[nodiscard]] const std::uint8_t* data() const noexcept { return bytes_.data(); }
  [[nodiscard]] std::span<const std::uint8_t> span() const noexcept { return {bytes_.data(), size_}; }
  [[nodiscard]] std::string_view view() const noexcept { return {reinterpret_cast<const char*>(bytes_.data()), size_}; }

  // Room for at least n bytes in all.
  void reserve(std::size_t n) {
    if (n <= bytes_.size()) return;
    SecureBytes bigger(n);
    if (size_ != 0) std::memcpy(bigger.data(), bytes_.data(), size_);
    bytes_ = std::move(bigger);  // the old block is wiped
  }
  void append(const void* p, std::size_t n) {
    if (n == 0) return;
    if (n > bytes_.size() - size_) reserve(std::max<std::size_t>({size_ + n, bytes_.size() * 2, 64}));
    std::memcpy(bytes_.data() + size_, p, n);
    size_ += n;
  }
  void append(std::span<const std::uint8_t> bytes) { append(bytes.data(), bytes.size()); }
  void append(std::string_view text) { append(text.data(), text.size()); }
  void push_back(char c) { append(&c, 1); }

  // Drops the last n bytes (wiped).
  void pop(std::size_t n) noexcept {
    n = std::min(n, size_);
    secure_zero(bytes_.data() + size_ - n, n);
    size_ -= n;
  }
  // Wipes and releases everything.
  void clear() noexcept {
    bytes_.clear();
    size_ = 0;
  }
  // The contents as SecureBytes of exactly size() bytes; the buffer is empty after.
  SecureBytes take() noexcept {
    SecureBytes out = std::move(bytes_);
    out.truncate(size_);
    size_ = 0;
    return out;
  }

 private:
  SecureBytes bytes_;
  std::size_t size_ = 0;
};

// The bytes of `b` as text (no copy).
inline std::string_view as_view(const SecureBytes& b) noexcept {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

}  // namespace rootseal::kms
