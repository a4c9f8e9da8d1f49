// rootseal::cli — private: the root of trust an offline command checks
// against (snapshot verify/restore, storage migrate): a PKCS#11 token
// (--module, --token, --key-label, --pin-fd) or the TPM-sealed root of
// root_of_trust: tpm (--tpm, --tcti, --sealed-file, the tpm: section of --config).
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "rootseal/hsm/token_admin.hpp"
#include "rootseal/kms/root_of_trust.hpp"
#include "token_args.hpp"

namespace rootseal::cli {

// The TPM root of `root_of_trust: tpm` (the `tpm:` section of --config), with overrides.
struct TpmArgs {
  bool use = false;
  std::string tcti;
  std::string sealed_file;
  [[nodiscard]] bool chosen() const { return use || !tcti.empty() || !sealed_file.empty(); }
};

void add_root_options(CLI::App* cmd, TokenArgs& tok, TpmArgs& tpm);

struct OpenedRoot {
  std::unique_ptr<hsm::TokenAdmin> admin;  // holds the login (PKCS#11)
  std::unique_ptr<kms::RootOfTrust> root;
  std::string what;  // for the report
};

// --module: the token (its PIN read once and wiped; the login is held by
// `admin`). --tpm, --tcti or --sealed-file: the TPM root. Neither: the TPM
// root if `config` says root_of_trust: tpm, else refused. `config_given`:
// --config was on the command line (else `config` is the default path, read
// only if it exists).
kms::Result<OpenedRoot> open_root(const TokenArgs& tok, const TpmArgs& tpm, const std::string& config,
                                  bool config_given);

}  // namespace rootseal::cli
