// Fuzz target: kms::parse_ciphertext on arbitrary bytes.
// Properties beyond "no crash, no sanitizer report":
//  - failures carry one of the two documented codes and a message;
//  - success means a version in 1..2^31-1 and a body of at least nonce + tag;
//  - the parser is strict, so formatting what it parsed gives the input back
//    (the one allowed difference: "v0" is read, and so written, as "v1").
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "rootseal/kms/aead.hpp"
#include "rootseal/kms/ciphertext.hpp"

namespace kms = rootseal::kms;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = kms::parse_ciphertext(text);
  if (!parsed) {
    const auto code = parsed.error().code;
    if (code != kms::Errc::malformed_ciphertext && code != kms::Errc::bad_base64) __builtin_trap();
    if (parsed.error().message.empty()) __builtin_trap();
    return 0;
  }
  if (parsed->version < 1 || parsed->version > kms::kMaxKeyVersion) __builtin_trap();
  if (parsed->body.size() < kms::Aead::kOverhead) __builtin_trap();

  const std::string again = kms::format_ciphertext(parsed->version, parsed->body);
  const bool was_v0 = text.starts_with("vault:v0:");
  if (!was_v0 && again != text) __builtin_trap();
  auto reparsed = kms::parse_ciphertext(again);
  if (!reparsed || reparsed->version != parsed->version || reparsed->body != parsed->body) __builtin_trap();
  return 0;
}
