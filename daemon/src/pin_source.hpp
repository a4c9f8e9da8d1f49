// Where the HSM user PIN comes from, in the configured order:
//   credential  $CREDENTIALS_DIRECTORY/<name> (systemd LoadCredential[Encrypted]=)
//   file        a file owned by the service user and not readable by others
// The PIN is read into SecureBytes each time a login is needed and wiped after.
#pragma once

#include "rootseal/daemon/config.hpp"
#include "rootseal/hsm/pkcs11_root.hpp"

namespace rootseal::daemon {

hsm::PinSource make_pin_source(const PinConfig& config);

// Reads a small secret file (at most max_bytes, trailing newline removed),
// refusing files that others can read or that we do not own.
kms::Result<kms::SecureBytes> read_secret_file(const std::filesystem::path& path, std::size_t max_bytes = 256);

}  // namespace rootseal::daemon
