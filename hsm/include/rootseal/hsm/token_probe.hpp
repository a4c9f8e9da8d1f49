// rootseal::hsm — what a PKCS#11 token offers, for `rootseal hsm probe`:
// its CK_TOKEN_INFO, every mechanism of C_GetMechanismList with its
// CK_MECHANISM_INFO, and which root mechanisms rootseal can use on it.
// Needs no PIN (neither call needs a login). See docs/hsm.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"

namespace rootseal::hsm {

struct MechanismDetails {
  std::uint64_t type = 0;          // CKM_*
  std::string name;                // "CKM_AES_GCM", or "CKM_0x..." / "CKM_VENDOR_DEFINED+0x..." if unknown
  std::uint64_t min_key_size = 0;  // as the token reports it (bits or bytes, per mechanism)
  std::uint64_t max_key_size = 0;
  std::uint64_t flags = 0;              // CKF_*
  std::vector<std::string> flag_names;  // "encrypt", "decrypt", "wrap", ... (CKF_* in lower case)
};

// One way rootseal can hold its root key in a token.
struct RootMechanismVerdict {
  std::string name;            // the pkcs11.mechanism value: "aes-kwp", "aes-gcm", "aes-cbc-pad-hmac", "rsa-oaep"
  std::string needs;           // the mechanisms and flags it needs, for people
  bool offered = false;        // the token offers everything it needs
  bool in_this_build = false;  // this rootseal implements it
  std::string missing;         // what the token lacks (empty if offered)
  [[nodiscard]] bool usable() const noexcept { return offered && in_this_build; }
};

struct TokenProbe {
  std::filesystem::path module;
  std::uint64_t slot = 0;
  std::string label, manufacturer, model, serial;
  std::string hardware_version, firmware_version;  // "major.minor"
  std::uint64_t flags = 0;                         // CKF_* of CK_TOKEN_INFO
  std::vector<std::string> flag_names;             // "rng", "login_required", ...
  std::vector<MechanismDetails> mechanisms;        // in the token's order
  std::vector<RootMechanismVerdict> roots;         // in the order `auto` would prefer them
};

// Loads `module`, finds the one initialized token labelled `token_label` and
// reads what it offers. Errors: invalid_argument (label), not_found (no such
// token), conflict (several), unavailable (the module or a call failed).
kms::Result<TokenProbe> probe_token(const std::filesystem::path& module, std::string_view token_label);

}  // namespace rootseal::hsm
