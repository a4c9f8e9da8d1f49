// AWS Signature Version 4 (header form), as specified in
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv4.html.
// Pure functions over their inputs (the clock is a parameter), tested with
// AWS's published test-suite vectors. The secret key and the derived signing
// key live in kms::SecureBytes; intermediate HMAC keys are wiped.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::sync::providers::sigv4 {

struct Request {
  std::string method;                                        // "GET", "POST"
  std::string path = "/";                                    // already URI-encoded, as sent
  std::vector<std::pair<std::string, std::string>> query;    // unencoded name/value pairs
  std::vector<std::pair<std::string, std::string>> headers;  // to sign; must include host and x-amz-date
  std::string_view payload;
};

struct Credentials {
  const kms::SecureBytes& access_key_id;
  const kms::SecureBytes& secret_access_key;
};

// "20150830T123600Z"
std::string amz_date(std::chrono::system_clock::time_point t);
std::string sha256_hex(std::string_view data);
// The canonical request and the semicolon-separated signed header names.
std::string canonical_request(const Request& r, std::string& signed_headers);
// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")
kms::SecureBytes signing_key(const kms::SecureBytes& secret, std::string_view date, std::string_view region,
                             std::string_view service);
// Lower-case hex signature of the request.
std::string signature(const Request& r, const kms::SecureBytes& secret, std::string_view region,
                      std::string_view service, std::string_view amz_date);
// The whole Authorization header value ("AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...").
// Returned in locked memory (it names the access key id).
kms::SecureBytes authorization(const Request& r, const Credentials& c, std::string_view region,
                               std::string_view service, std::string_view amz_date);

}  // namespace rootseal::sync::providers::sigv4
