// Where the HSM user PIN comes from, in the configured order (pin.sources):
//   tpm         pin.tpm_sealed_file, unsealed by the TPM (tpm.tcti, tpm.auth_value_file)
//   credential  $CREDENTIALS_DIRECTORY/<name> (systemd LoadCredential[Encrypted]=)
//   file        a file owned by the service user and not readable by others
//   typed       a PIN typed into `rootseal unseal` (admin socket): used for
//               one login attempt only, then wiped (a wrong one is not retried)
// Every source that fails (absent, refused, TPM policy failed, no TPM) is
// skipped for the next one; when none gives a PIN the error (sealed) is
// "no HSM PIN available (<source>: <reason>; ...)", shown in seal-status.
// The PIN is read into SecureBytes each time a login is needed and wiped after.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>

#include "rootseal/daemon/config.hpp"
#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/tpm/tpm_root.hpp"

namespace rootseal::daemon {

// What the daemon knows about PINs between the sources, the HSM login and
// the admin socket. Thread-safe; every PIN it holds is in locked memory.
//  - the typed slot: `rootseal unseal` puts a PIN; the `typed` source takes
//    it (once) at the next login attempt; the admin handler wipes what is left.
//  - the confirmed PIN (only when keep_confirmed): the PIN of the last login
//    that succeeded, kept so that `rootseal tpm reseal` can seal it again to
//    the TPM after an intended PCR change. Forgotten as soon as a new login
//    starts or the daemon seals.
class PinBroker {
 public:
  explicit PinBroker(bool keep_confirmed) : keep_confirmed_(keep_confirmed) {}

  void put_typed(kms::SecureBytes pin);
  // Wipes an unused typed PIN; true if the typed PIN was taken by a login
  // attempt since put_typed.
  bool finish_typed();
  std::optional<kms::SecureBytes> take_typed();

  // A source handed this PIN to a login attempt.
  void handed_out(const kms::SecureBytes& pin);
  // The root of trust probed fine: the PIN handed out last logged in.
  void confirm();
  // The daemon sealed: nothing is confirmed any more.
  void forget();
  [[nodiscard]] std::optional<kms::SecureBytes> confirmed() const;

 private:
  const bool keep_confirmed_;
  mutable std::mutex mu_;
  std::optional<kms::SecureBytes> typed_;
  bool typed_taken_ = false;
  std::optional<kms::SecureBytes> pending_;
  std::optional<kms::SecureBytes> confirmed_;
};

hsm::PinSource make_pin_source(const PinConfig& pin, const TpmSection& tpm,
                               std::shared_ptr<PinBroker> broker = nullptr);

// Reads a small secret file (at most max_bytes, trailing newline removed),
// refusing files that others can read or that we do not own.
kms::Result<kms::SecureBytes> read_secret_file(const std::filesystem::path& path, std::size_t max_bytes = 256);

// The policy the daemon seals with and unseals under: tpm.pcrs, the primary
// key (persistent handle or template) and the auth value read now from
// tpm.auth_value_file (sealed, with the reason, if that file is refused).
kms::Result<tpm::SealPolicy> tpm_seal_policy(const TpmSection& tpm);

}  // namespace rootseal::daemon
