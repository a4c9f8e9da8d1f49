// rootseal::sync::kube — ServiceAccount tokens from the TokenRequest API
// (POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token,
// authentication.k8s.io/v1): the request body and the reading of the answer.
// The token is a credential: it lives in locked memory only, never in an
// error message.
#pragma once

#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::sync::kube {

struct ServiceAccountToken {
  kms::SecureBytes token;                         // the JWT
  std::chrono::system_clock::time_point expires;  // status.expirationTimestamp
};

// {"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{...}}:
// audiences (none: the API server's own audience) and expirationSeconds (0:
// the server's default, one hour on a default cluster).
boost::json::value token_request_body(std::span<const std::string> audiences, std::int64_t expiration_seconds);

// Reads a TokenRequest answer: status.token (three base64url parts, no
// whitespace) and status.expirationTimestamp (RFC 3339). unavailable with a
// message that never quotes the token otherwise.
kms::Result<ServiceAccountToken> parse_token_request_answer(const boost::json::value& answer);

// RFC 3339 ("2026-12-07T05:30:00Z", a fraction and a numeric offset allowed)
// as metav1.Time writes it; nullopt when it is not one, or its year is
// outside 1970-2199 (system_clock's nanoseconds cannot hold much more).
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view s);

}  // namespace rootseal::sync::kube
