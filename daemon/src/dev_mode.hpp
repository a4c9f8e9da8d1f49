// `rootseald --dev`: zero set-up. A SoftHSM2 token in a local state folder
// (created through PKCS#11, no softhsm2-util step), a root key generated in
// it, SQLite beside it, plain HTTP on loopback only, a printed root token.
#pragma once

#include <filesystem>
#include <string>

#include "rootseal/daemon/config.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::daemon {

struct DevOptions {
  std::filesystem::path state_dir;  // created 0700 if missing
  std::string listen_address = "127.0.0.1:8200";
  std::string root_token_id;  // empty: a random one
  std::filesystem::path softhsm_module = "/usr/lib/softhsm/libsofthsm2.so";
};

struct DevSetup {
  Config config;
  kms::SecureBytes root_token;
};

// Prepares the folder, the SoftHSM2 configuration (SOFTHSM2_CONF is set for
// this process), the token and its PIN file; returns the config to run with.
kms::Result<DevSetup> prepare_dev(const DevOptions& options);

// The banner with the address, root token and example calls (stdout).
void print_dev_banner(const DevSetup& setup, const std::string& bound_address);

}  // namespace rootseal::daemon
