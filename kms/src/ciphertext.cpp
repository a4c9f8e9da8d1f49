// The Transit ciphertext string: "vault:v<N>:<base64 body>".
//
// The parser reads the string as a schema, left to right, and names the first
// rule it breaks; it never echoes the input (a ciphertext is not secret, but
// an error message is no place for attacker-chosen text).
#include "rootseal/kms/ciphertext.hpp"

#include <charconv>
#include <cstddef>

#include "rootseal/kms/aead.hpp"
#include "rootseal/kms/encoding.hpp"

namespace rootseal::kms {
namespace {

std::unexpected<Error> malformed(const char* why) {
  return fail(Errc::malformed_ciphertext, std::string("malformed ciphertext: ") + why);
}

// `digits` is the text after 'v': strictly "0" or [1-9][0-9]*, at most
// kMaxKeyVersion. One spelling per version, so a ciphertext string has one form.
Result<std::uint32_t> parse_version(std::string_view digits) {
  if (digits.empty()) return malformed("key version has no digits ('v<N>')");
  if (digits.front() == '+' || digits.front() == '-') return malformed("key version must not have a sign");
  for (char c : digits) {
    if (c < '0' || c > '9') return malformed("key version is not a decimal number");
  }
  if (digits.size() > 1 && digits.front() == '0') return malformed("key version has a leading zero");
  // Ten digits cover 2^31-1; anything longer is out of range without parsing it.
  std::uint64_t value = 0;
  if (digits.size() <= 10) {
    (void)std::from_chars(digits.data(), digits.data() + digits.size(), value);
  }
  if (digits.size() > 10 || value > kMaxKeyVersion) {
    return malformed("key version is larger than 2147483647");
  }
  // Vault reads "v0" as version 1.
  return value == 0 ? 1U : static_cast<std::uint32_t>(value);
}

}  // namespace

Result<ParsedCiphertext> parse_ciphertext(std::string_view text) {
  if (!text.starts_with(kCiphertextPrefix)) return malformed("does not start with 'vault:'");
  const std::string_view rest = text.substr(kCiphertextPrefix.size());
  const std::size_t colon = rest.find(':');
  if (colon == std::string_view::npos) return malformed("expected 3 ':'-separated parts, found 2");
  const std::string_view version_part = rest.substr(0, colon);
  const std::string_view body_part = rest.substr(colon + 1);
  if (body_part.find(':') != std::string_view::npos) {
    return malformed("expected 3 ':'-separated parts, found more");
  }
  if (version_part.empty()) return malformed("key version is empty (expected 'v<N>')");
  if (version_part.front() != 'v') return malformed("key version must start with 'v'");

  ParsedCiphertext parsed{};
  ROOTSEAL_TRY_ASSIGN(parsed.version, parse_version(version_part.substr(1)));
  auto body = base64_decode(body_part);
  if (!body) return fail(Errc::bad_base64, "ciphertext body: " + body.error().message);
  if (body->size() < Aead::kOverhead) {
    return malformed("body is shorter than nonce (12 bytes) + tag (16 bytes)");
  }
  parsed.body = std::move(*body);
  return parsed;
}

std::string format_ciphertext(std::uint32_t version, std::span<const std::uint8_t> body) {
  std::string out(kCiphertextPrefix);
  out += 'v';
  out += std::to_string(version);
  out += ':';
  out += base64_encode(body);
  return out;
}

}  // namespace rootseal::kms
