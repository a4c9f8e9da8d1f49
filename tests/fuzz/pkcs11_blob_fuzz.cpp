// Fuzz target: the header of a PKCS#11-wrapped key (hsm::detail::check_wrapped,
// format_mech), read back from the key store on disk before any HSM call.
//
// Properties beyond "no crash, no sanitizer report":
//  - a refusal is decryption_failed with a message;
//  - an accepted blob names a known root mechanism (format_mech), whose
//    header byte is the blob's first byte (mech_format), and its length is
//    one that mechanism produces for a 16..64-byte key.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_util.hpp"
#include "pkcs11_mechanisms.hpp"  // last: pkcs11.h

using namespace rootseal;
namespace d = rootseal::hsm::detail;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> blob(data, size);
  auto r = d::check_wrapped(blob);
  if (!r) {
    if (r.error().code != kms::Errc::decryption_failed || r.error().message.empty()) __builtin_trap();
    return 0;
  }
  d::Mech m = d::Mech::kwp;
  if (size == 0 || !d::format_mech(data[0], m) || d::mech_format(m) != data[0]) __builtin_trap();
  const std::size_t body = size - 1;
  switch (m) {
    case d::Mech::kwp:
      if (body % 8 != 0 || body < 24 || body > 72) __builtin_trap();
      break;
    case d::Mech::gcm:
      if (body < 12 + 16 + 16 || body > 12 + 64 + 16) __builtin_trap();
      break;
    case d::Mech::cbc_hmac:
      if ((body - 16 - 32) % 16 != 0 || body < 16 + 32 + 32 || body > 16 + 80 + 32) __builtin_trap();
      break;
    case d::Mech::rsa_oaep:
      if (body != 384 && body != 512) __builtin_trap();
      break;
  }
  return 0;
}
