// rootseal::net — an HTTP message body kept in locked, zeroized memory.
//
// Request bodies carry plaintext and response bodies carry decrypted data, so
// neither may sit in ordinary heap memory: this Beast Body stores its bytes in
// a kms::SecureBytes (mlocked, excluded from core dumps, wiped when freed).
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/message.hpp>

#include <boost/optional.hpp>
#include <cstdint>

#include "rootseal/kms/secure_buffer.hpp"

namespace rootseal::net {

// The body's bytes: kms's growable locked buffer.
using kms::SecureBuffer;

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
      for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers);
           ++it) {
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
