// rootseal::kms — strict standard base64 (RFC 4648 §4, with padding) and hex.
// Decoders reject anything not canonical: whitespace, URL alphabet, missing
// or excess padding, non-zero trailing bits.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::kms {

// For public values only (ciphertexts, certificates, signatures, context):
// table-driven, so their timing and cache footprint depend on the data.
std::string base64_encode(std::span<const std::uint8_t> bytes);
Result<std::vector<std::uint8_t>> base64_decode(std::string_view text);
// For secrets (plaintext fields): decodes straight into locked memory, with
// data-independent timing (no branch or table lookup on the characters).
Result<SecureBytes> base64_decode_secure(std::string_view text);
// Base64 of a secret, for a response body that must carry it (datakey
// plaintext, decrypt); data-independent timing too. The caller owns wiping the
// returned buffer.
SecureBytes base64_encode_secure(std::span<const std::uint8_t> bytes);

std::string hex_encode(std::span<const std::uint8_t> bytes);
// Lowercase hex of `bytes` into out[0 .. 2 * bytes.size()), with
// data-independent timing (for secrets too: tokens, random passwords).
void hex_encode_into(std::span<const std::uint8_t> bytes, char* out) noexcept;
Result<std::vector<std::uint8_t>> hex_decode(std::string_view text);

}  // namespace rootseal::kms
