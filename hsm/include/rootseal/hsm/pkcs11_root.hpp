// rootseal::hsm — the root of trust in a PKCS#11 token.
//
// The module (e.g. /usr/lib/softhsm/libsofthsm2.so) is dlopen'ed and driven
// through its CK_FUNCTION_LIST: C_Initialize with CKF_OS_LOCKING_OK, the token
// found by label (slot IDs move), a pool of logged-in sessions, the root key
// found by label or generated on first use if allowed. Every key is
// CKA_TOKEN, CKA_PRIVATE (secret and private keys), CKA_SENSITIVE,
// CKA_EXTRACTABLE=false. The root mechanism (RootMechanism; docs/hsm.md):
//   aes-kwp           AES-256 key, CKM_AES_KEY_WRAP_PAD (RFC 5649)
//   aes-gcm           AES-256 key, CKM_AES_GCM, random 96-bit IV
//   aes-cbc-pad-hmac  AES-256 key (CKM_AES_CBC_PAD, random IV) + a 256-bit
//                     generic secret labelled "<key_label>-hmac"
//                     (CKM_SHA256_HMAC over header+IV+ciphertext, checked by
//                     the token with C_Verify before any decryption)
//   rsa-oaep          RSA-3072 key pair (private and public key labelled
//                     key_label), CKM_RSA_PKCS_OAEP with SHA-256/MGF1-SHA-256
// Wrap/unwrap run inside the HSM; the wrapped blob's header records the
// mechanism, so a blob of another mechanism is refused with a clear error.
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
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/root_of_trust.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::hsm {

// pkcs11.mechanism. `automatic` uses the root key found (its kind and
// attributes say which mechanism it was made for), or generates one for the
// strongest mechanism the token offers: aes-kwp, aes-gcm, aes-cbc-pad-hmac,
// rsa-oaep, in this order.
enum class RootMechanism { automatic, aes_kwp, aes_gcm, aes_cbc_pad_hmac, rsa_oaep };

// "auto", "aes-kwp", "aes-gcm", "aes-cbc-pad-hmac", "rsa-oaep".
std::string_view root_mechanism_name(RootMechanism m) noexcept;
std::optional<RootMechanism> parse_root_mechanism(std::string_view name) noexcept;

struct Pkcs11Config {
  std::filesystem::path module;  // path of the PKCS#11 module
  std::string token_label;       // CKA_LABEL of the token
  std::string key_label = "rootseal-root";
  bool generate_if_missing = false;    // create the root key on first use (dev mode, ceremony)
  std::size_t max_sessions = 4;        // upper bound of the session pool (+1 holding the login)
  std::size_t unwrap_parallelism = 1;  // concurrent unwraps at unseal (1 suits SoftHSM2; raise for network HSMs)
  RootMechanism mechanism = RootMechanism::automatic;
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

  // Wrapping mechanism in use once connected: "CKM_AES_KEY_WRAP_KWP",
  // "CKM_AES_GCM", "CKM_AES_CBC_PAD+CKM_SHA256_HMAC" or "CKM_RSA_PKCS_OAEP".
  [[nodiscard]] std::string mechanism() const override;
  // The same as a pkcs11.mechanism value ("aes-kwp" ...); empty before.
  [[nodiscard]] std::string root_mechanism() const;

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
