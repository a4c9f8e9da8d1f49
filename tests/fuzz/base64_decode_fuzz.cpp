// Fuzz target: strict base64 (and hex) decoding of arbitrary bytes.
// Properties beyond "no crash, no sanitizer report":
//  - the plain and the locked-memory decoders agree, result and bytes;
//  - a text that decodes is canonical: encoding the bytes gives it back;
//  - encoding then decoding any input is the identity (also for hex).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "rootseal/kms/encoding.hpp"

namespace kms = rootseal::kms;

namespace {

void check_base64(std::string_view text) {
  auto plain = kms::base64_decode(text);
  auto secure = kms::base64_decode_secure(text);
  if (plain.has_value() != secure.has_value()) __builtin_trap();
  if (!plain) {
    if (plain.error().code != kms::Errc::bad_base64 || secure.error().code != kms::Errc::bad_base64) __builtin_trap();
    return;
  }
  if (plain->size() != secure->size()) __builtin_trap();
  if (!plain->empty() && std::memcmp(plain->data(), secure->data(), plain->size()) != 0) __builtin_trap();
  if (kms::base64_encode(*plain) != text) __builtin_trap();
}

void check_round_trips(std::span<const std::uint8_t> bytes) {
  auto decoded = kms::base64_decode(kms::base64_encode(bytes));
  if (!decoded || !std::equal(decoded->begin(), decoded->end(), bytes.begin(), bytes.end())) __builtin_trap();
  const kms::SecureBytes encoded = kms::base64_encode_secure(bytes);
  auto secure =
      kms::base64_decode_secure(std::string_view(reinterpret_cast<const char*>(encoded.data()), encoded.size()));
  if (!secure || !std::equal(secure->span().begin(), secure->span().end(), bytes.begin(), bytes.end())) {
    __builtin_trap();
  }
  auto hex = kms::hex_decode(kms::hex_encode(bytes));
  if (!hex || !std::equal(hex->begin(), hex->end(), bytes.begin(), bytes.end())) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_base64(text);
  (void)kms::hex_decode(text);
  check_round_trips(std::span(data, size));
  return 0;
}
