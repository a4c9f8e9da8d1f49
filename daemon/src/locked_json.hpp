// JSON documents whose every byte lives in locked memory.
//
// Transit request bodies carry plaintext and responses carry decrypted data
// and data keys. Parsing them with the default allocator would scatter those
// bytes over the ordinary heap, so each document gets a monotonic arena
// carved from one SecureBytes (mlocked, never dumped, zeroized when freed)
// with no upstream: running out of arena is an error, never a heap fallback.
#pragma once

#include <boost/json.hpp>

#include <cstddef>
#include <string_view>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "rootseal/net/secure_body.hpp"

namespace rootseal::daemon {

class LockedJson {
 public:
  explicit LockedJson(std::size_t capacity);
  LockedJson(const LockedJson&) = delete;
  LockedJson& operator=(const LockedJson&) = delete;

  [[nodiscard]] boost::json::storage_ptr storage() const noexcept { return storage_; }

 private:
  kms::SecureBytes buffer_;
  boost::json::monotonic_resource resource_;
  boost::json::storage_ptr storage_;
};

// Parses a request body (an object, at most 32 levels deep) into `arena`.
// An empty body is an empty object. Errors are invalid_argument with Vault's
// wording ("failed to parse JSON input: ...").
kms::Result<boost::json::object> parse_object(std::string_view body, LockedJson& arena);

// Serializes into a SecureBuffer without any intermediate heap string.
net::SecureBuffer serialize_locked(const boost::json::value& value);

// The arena size for a request body of n bytes (parsed DOM plus response).
std::size_t arena_size_for(std::size_t body_bytes) noexcept;

}  // namespace rootseal::daemon
