// Where the HSM user PIN comes from, in the configured order (pin.sources):
//   tpm         pin.tpm_sealed_file, unsealed by the TPM (tpm.tcti, tpm.auth_value_file)
//   credential  $CREDENTIALS_DIRECTORY/<name> (systemd LoadCredential[Encrypted]=)
//   file        a file owned by the service user and not readable by others
// Every source that fails (absent, refused, TPM policy failed, no TPM) is
// skipped for the next one; when none gives a PIN the error (sealed) is
// "no HSM PIN available (<source>: <reason>; ...)", shown in seal-status.
// The PIN is read into SecureBytes each time a login is needed and wiped after.
#pragma once

#include "rootseal/daemon/config.hpp"
#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/tpm/tpm_root.hpp"

namespace rootseal::daemon {

hsm::PinSource make_pin_source(const PinConfig& pin, const TpmSection& tpm);

// Reads a small secret file (at most max_bytes, trailing newline removed),
// refusing files that others can read or that we do not own.
kms::Result<kms::SecureBytes> read_secret_file(const std::filesystem::path& path, std::size_t max_bytes = 256);

// The policy the daemon seals with and unseals under: tpm.pcrs, the primary
// key (persistent handle or template) and the auth value read now from
// tpm.auth_value_file (sealed, with the reason, if that file is refused).
kms::Result<tpm::SealPolicy> tpm_seal_policy(const TpmSection& tpm);

}  // namespace rootseal::daemon
