// rootseal::sync — a growable byte buffer in locked memory (kms::SecureBytes),
// for building values that carry secrets (rendered templates, JSON, the text
// the ESO data hash is computed over). Growth copies into a new locked block;
// the old one is zeroized by SecureBytes.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::sync {

class SecureBuffer {
 public:
  SecureBuffer() = default;
  explicit SecureBuffer(std::size_t reserve) : buf_(std::max<std::size_t>(reserve, 16)) {}

  void append(std::span<const std::uint8_t> bytes) {
    if (bytes.empty()) return;
    reserve(len_ + bytes.size());
    std::memcpy(buf_.data() + len_, bytes.data(), bytes.size());
    len_ += bytes.size();
  }
  void append(std::string_view text) {
    append(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
  }
  void push_back(char c) { append(std::string_view(&c, 1)); }

  [[nodiscard]] std::size_t size() const noexcept { return len_; }
  [[nodiscard]] std::span<const std::uint8_t> span() const noexcept { return {buf_.data(), len_}; }
  [[nodiscard]] std::string_view view() const noexcept {
    return {reinterpret_cast<const char*>(buf_.data()), len_};
  }
  // Drops the last n bytes (zeroized).
  void pop(std::size_t n) noexcept {
    n = std::min(n, len_);
    kms::secure_zero(buf_.data() + len_ - n, n);
    len_ -= n;
  }

  // The contents as SecureBytes of exactly size() bytes; the buffer is empty after.
  kms::SecureBytes take() {
    kms::SecureBytes out = std::move(buf_);
    if (out.size() > len_) out.truncate(len_);
    len_ = 0;
    return out;
  }

 private:
  void reserve(std::size_t n) {
    if (n <= buf_.size()) return;
    std::size_t cap = std::max<std::size_t>({n, buf_.size() * 2, 64});
    kms::SecureBytes bigger(cap);
    if (len_ > 0) std::memcpy(bigger.data(), buf_.data(), len_);
    buf_ = std::move(bigger);
  }

  kms::SecureBytes buf_;
  std::size_t len_ = 0;
};

inline std::string_view as_view(const kms::SecureBytes& b) noexcept {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

}  // namespace rootseal::sync
