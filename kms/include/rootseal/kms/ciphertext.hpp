// rootseal::kms — the Transit ciphertext string.
//
//   "vault:v" <N> ":" base64std( nonce[12] || ciphertext || tag[16] )
//
// N is a decimal key version, 1 <= N <= 2^31-1 without sign or leading zeros;
// "v0" is read as version 1 (as Vault does). Exactly three ':'-separated parts.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"

namespace rootseal::kms {

inline constexpr std::string_view kCiphertextPrefix = "vault:";
inline constexpr std::uint32_t kMaxKeyVersion = 0x7fffffffU;

struct ParsedCiphertext {
  std::uint32_t version;           // >= 1
  std::vector<std::uint8_t> body;  // nonce || ciphertext || tag (not secret)
};

// Errors: malformed_ciphertext (no/bad prefix, bad or out-of-range version,
// wrong number of parts, body shorter than nonce + tag), bad_base64.
Result<ParsedCiphertext> parse_ciphertext(std::string_view text);

std::string format_ciphertext(std::uint32_t version, std::span<const std::uint8_t> body);

}  // namespace rootseal::kms
