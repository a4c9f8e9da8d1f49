// rootseal::hsm — the root of trust in a PKCS#11 token.
//
// The module (e.g. /usr/lib/softhsm/libsofthsm2.so) is dlopen'ed and driven
// through its CK_FUNCTION_LIST: C_Initialize with CKF_OS_LOCKING_OK, the token
// found by label (slot IDs move), a pool of logged-in sessions, the root key
// (AES-256, CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE=false,
// wrap/unwrap only) found by label or generated on first use if allowed.
// Wrap/unwrap run inside the HSM with CKM_AES_KEY_WRAP_KWP (RFC 5649), or with
// CKM_AES_GCM when the token lacks it (the wrapped blob records which).
// Keys to wrap: 16..64 bytes, a multiple of 8 (SoftHSM 2.6.1 pads others).
//
// When the token goes away (CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT,
// CKR_SESSION_HANDLE_INVALID, CKR_USER_NOT_LOGGED_IN, CKR_DEVICE_ERROR ...)
// the pool is dropped and calls fail with Errc::unavailable; the next probe()
// finalizes and re-initializes the module and logs in again.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/root_of_trust.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::hsm {

struct Pkcs11Config {
  std::filesystem::path module;           // path of the PKCS#11 module
  std::string token_label;                // CKA_LABEL of the token
  std::string key_label = "rootseal-root";
  bool generate_if_missing = false;       // create the root key on first use (dev mode, ceremony)
  std::size_t max_sessions = 4;           // upper bound of the session pool (+1 holding the login)
  std::size_t unwrap_parallelism = 1;     // concurrent unwraps at unseal (1 suits SoftHSM2; raise for network HSMs)
  bool force_gcm = false;                 // wrap with CKM_AES_GCM even if KWP is there (tests)
};

// Supplies the user PIN when a login is needed; returns Errc::sealed if none
// is available right now (the daemon then waits for one).
using PinSource = std::function<kms::Result<kms::SecureBytes>()>;

class Pkcs11Root final : public kms::RootOfTrust {
 public:
  // Does not touch the module yet; the first probe() connects.
  static std::unique_ptr<Pkcs11Root> create(Pkcs11Config config, PinSource pin);
  ~Pkcs11Root() override;

  [[nodiscard]] std::string_view kind() const noexcept override { return "pkcs11"; }
  kms::Result<void> probe() override;
  kms::Result<std::string> key_check_value() override;
  kms::Result<std::vector<std::uint8_t>> wrap(const kms::SecureBytes& key) override;
  kms::Result<kms::SecureBytes> unwrap(std::span<const std::uint8_t> wrapped) override;
  [[nodiscard]] std::size_t unwrap_parallelism() const noexcept override;

  // Wrapping mechanism in use once connected: "CKM_AES_KEY_WRAP_KWP" or "CKM_AES_GCM".
  [[nodiscard]] std::string mechanism() const;

 private:
  struct Impl;
  explicit Pkcs11Root(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Initializes a token in the first free slot of `module` with `label`, sets the
// SO PIN and the user PIN (C_InitToken, C_InitPIN). For dev mode, tests and the
// ceremony: no softhsm2-util step needed. already_exists if a token with that
// label is present.
kms::Result<void> provision_token(const std::filesystem::path& module, std::string_view label,
                                  const kms::SecureBytes& so_pin, const kms::SecureBytes& user_pin);

// Converts a CK_RV to its symbolic name ("CKR_PIN_INCORRECT").
std::string_view rv_name(unsigned long rv) noexcept;

}  // namespace rootseal::hsm
