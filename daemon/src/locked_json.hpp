// JSON documents whose every byte lives in locked memory.
//
// Transit request bodies carry plaintext and responses carry decrypted data
// and data keys. Each request parses into a kms::SecureJsonResource (every
// chunk a SecureBytes: mlocked, never dumped, zeroized when freed). The arena
// starts small and grows geometrically as the document needs, up to a limit
// derived from the request body (itself bounded by the server's body limit):
// past the limit an allocation throws std::bad_alloc (the caller answers 413),
// it never falls back to the ordinary heap.
#pragma once

#include <boost/json.hpp>

#include <cstddef>
#include <string_view>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_json.hpp"
#include "rootseal/net/secure_body.hpp"

namespace rootseal::daemon {

// A request's arena: kms::SecureJsonResource(initial, limit).
using LockedJson = kms::SecureJsonResource;

// Parses a request body (an object, at most 32 levels deep) into `arena`.
// An empty body is an empty object. Errors are invalid_argument with Vault's
// wording ("failed to parse JSON input: ...").
kms::Result<boost::json::object> parse_object(std::string_view body, LockedJson& arena);

// Serializes into a SecureBuffer without any intermediate heap string.
net::SecureBuffer serialize_locked(const boost::json::value& value);
// Appends the serialization of `object` (or `value`) to `out`, the same way.
inline void serialize_locked_into(const boost::json::object& object, net::SecureBuffer& out) {
  kms::serialize_into(object, out);
}
inline void serialize_locked_into(const boost::json::value& value, net::SecureBuffer& out) {
  kms::serialize_into(value, out);
}

// The arena of a request whose body has n bytes: what is locked at once, and
// the most it may grow to (the parsed request plus the response).
struct ArenaSize {
  std::size_t initial;
  std::size_t limit;
};
ArenaSize arena_size_for(std::size_t body_bytes) noexcept;

}  // namespace rootseal::daemon
