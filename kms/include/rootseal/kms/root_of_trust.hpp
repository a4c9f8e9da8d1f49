// rootseal::kms — the root of trust: the one key that never leaves its home.
//
// Implementations: hsm::Pkcs11Root (AES-256 key inside a PKCS#11 token, KWP
// inside the HSM), tpm::TpmRoot (a TPM-sealed key), kms::SoftwareRoot (a key
// held in SecureBytes; the building block of TpmRoot, and for tests).
//
// Every call may block (it talks to hardware); call it from the blocking
// pool, never from an I/O thread. Implementations are thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::kms {

class RootOfTrust {
 public:
  virtual ~RootOfTrust() = default;

  // "pkcs11", "tpm", "software": for logs, metrics and seal-status.
  [[nodiscard]] virtual std::string_view kind() const noexcept = 0;

  // Makes sure the root key is reachable and usable, (re)connecting and
  // logging in as needed. Cheap when already connected; meant to be called
  // periodically. Errors: sealed (e.g. no PIN, policy fails, key missing),
  // unavailable (device gone, transient).
  virtual Result<void> probe() = 0;

  // Lower-case hex key check value of the root key (see aes_key_check_value);
  // recorded beside every wrapped key so the wrapping root can be identified.
  virtual Result<std::string> key_check_value() = 0;

  // Wraps a key-encryption key (16..64 bytes) under the root key (RFC 5649).
  virtual Result<std::vector<std::uint8_t>> wrap(const SecureBytes& key) = 0;
  // Unwraps; a blob from another root key or a damaged one is decryption_failed.
  virtual Result<SecureBytes> unwrap(std::span<const std::uint8_t> wrapped) = 0;

  // How many unwraps are worth running at once (unseal uses this many
  // threads). 1 for a device that serializes internally, such as SoftHSM2,
  // whose throughput drops with concurrent callers; more for network HSMs.
  [[nodiscard]] virtual std::size_t unwrap_parallelism() const noexcept { return 1; }

  // The wrapping mechanism in use, for logs ("CKM_AES_KEY_WRAP_KWP"); empty
  // where there is no choice.
  [[nodiscard]] virtual std::string mechanism() const { return {}; }
};

// A root key held in locked process memory; wraps with AES-KWP in software.
class SoftwareRoot final : public RootOfTrust {
 public:
  // root_key: 32 bytes.
  static Result<std::unique_ptr<SoftwareRoot>> create(SecureBytes root_key);

  [[nodiscard]] std::string_view kind() const noexcept override { return "software"; }
  Result<void> probe() override;
  Result<std::string> key_check_value() override;
  Result<std::vector<std::uint8_t>> wrap(const SecureBytes& key) override;
  Result<SecureBytes> unwrap(std::span<const std::uint8_t> wrapped) override;
  [[nodiscard]] std::size_t unwrap_parallelism() const noexcept override;

 private:
  explicit SoftwareRoot(SecureBytes root_key, std::string kcv);
  SecureBytes root_key_;
  std::string kcv_;
};

}  // namespace rootseal::kms
