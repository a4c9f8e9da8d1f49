// rootseal::net — an HTTP message body kept in locked, zeroized memory.
//
// Request bodies carry plaintext and response bodies carry decrypted data, so
// neither may sit in ordinary heap memory: this Beast Body stores its bytes in
// a kms::SecureBytes (mlocked, excluded from core dumps, wiped when freed).
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/message.hpp>

#include <cstdint>
#include <cstring>
#include <boost/optional.hpp>
#include <algorithm>
#include <string_view>

#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::net {

// A growable byte buffer in locked memory.
class SecureBuffer {
 public:
  SecureBuffer() = default;
  explicit SecureBuffer(std::string_view text) { append(text.data(), text.size()); }

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] const std::uint8_t* data() const noexcept { return bytes_.data(); }
  [[nodiscard]] std::string_view view() const noexcept {
    return {reinterpret_cast<const char*>(bytes_.data()), size_};
  }

  void reserve(std::size_t n) {
    if (n <= bytes_.size()) return;
    kms::SecureBytes bigger(n);
    if (size_ != 0) std::memcpy(bigger.data(), bytes_.data(), size_);
    bytes_ = std::move(bigger);
  }
  void append(const void* p, std::size_t n) {
    if (n == 0) return;
    if (size_ + n > bytes_.size()) reserve(std::max(size_ + n, bytes_.size() * 2));
    std::memcpy(bytes_.data() + size_, p, n);
    size_ += n;
  }
  void append(std::string_view s) { append(s.data(), s.size()); }
  void clear() noexcept {
    bytes_.clear();
    size_ = 0;
  }

 private:
  kms::SecureBytes bytes_;
  std::size_t size_ = 0;
};

struct SecureBody {
  using value_type = SecureBuffer;

  static std::uint64_t size(const value_type& v) noexcept { return v.size(); }

  class reader {
   public:
    template <bool isRequest, class Fields>
    reader(boost::beast::http::header<isRequest, Fields>&, value_type& body) : body_(body) {}

    void init(const boost::optional<std::uint64_t>& length, boost::beast::error_code& ec) {
      ec = {};
      // The parser's body_limit has already refused lengths above the limit.
      if (length) body_.reserve(static_cast<std::size_t>(*length));
    }
    template <class ConstBufferSequence>
    std::size_t put(const ConstBufferSequence& buffers, boost::beast::error_code& ec) {
      ec = {};
      std::size_t n = 0;
      for (auto it = boost::asio::buffer_sequence_begin(buffers);
           it != boost::asio::buffer_sequence_end(buffers); ++it) {
        boost::asio::const_buffer b = *it;
        body_.append(b.data(), b.size());
        n += b.size();
      }
      return n;
    }
    void finish(boost::beast::error_code& ec) { ec = {}; }

   private:
    value_type& body_;
  };

  class writer {
   public:
    using const_buffers_type = boost::asio::const_buffer;

    template <bool isRequest, class Fields>
    writer(const boost::beast::http::header<isRequest, Fields>&, const value_type& body) : body_(body) {}

    void init(boost::beast::error_code& ec) { ec = {}; }
    boost::optional<std::pair<const_buffers_type, bool>> get(boost::beast::error_code& ec) {
      ec = {};
      return std::make_pair(const_buffers_type(body_.data(), body_.size()), false);
    }

   private:
    const value_type& body_;
  };
};

}  // namespace rootseal::net
