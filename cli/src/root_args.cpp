#include "root_args.hpp"

#include <filesystem>
#include <system_error>

#include "ceremony_common.hpp"
#include "rootseal/daemon/config.hpp"
#include "rootseal/daemon/snapshots.hpp"
#include "rootseal/hsm/pkcs11_root.hpp"

namespace rootseal::cli {

using kms::Errc;
using kms::fail;

void add_root_options(CLI::App* cmd, TokenArgs& tok, TpmArgs& t) {
  add_token_options(cmd, tok, /*required=*/false);
  cmd->add_flag("--tpm", t.use,
                "check against the TPM-sealed root key of root_of_trust: tpm (tcti, sealed_file, auth_value_file "
                "of the tpm: section of --config) instead of a PKCS#11 token; the default when --config says "
                "root_of_trust: tpm and no --module is given");
  cmd->add_option("--tcti", t.tcti, "with a TPM root: the TCTI instead of tpm.tcti (implies --tpm)");
  cmd->add_option("--sealed-file", t.sealed_file,
                  "with a TPM root: the sealed root key instead of tpm.sealed_file (<state_dir>/tpm-root.seal; "
                  "implies --tpm)");
}

namespace {

kms::Result<OpenedRoot> open_hsm_root(const TokenArgs& args) {
  const TokenTarget t = token_target(args);
  ROOTSEAL_TRY(check_token(t));
  OpenedRoot out;
  ROOTSEAL_TRY_ASSIGN(out.admin, open_token(t));
  hsm::Pkcs11Config cfg;
  cfg.module = t.module;
  cfg.token_label = t.token_label;
  cfg.key_label = t.key_label;
  // The TokenAdmin of this process holds the login; no PIN is kept around.
  auto root =
      hsm::Pkcs11Root::create(cfg, [] { return kms::Result<kms::SecureBytes>(fail(Errc::sealed, "not logged in")); });
  ROOTSEAL_TRY(root->probe());
  out.root = std::move(root);
  out.what = "the root key in the HSM";
  return out;
}

kms::Result<OpenedRoot> open_tpm_root(const TpmArgs& args, const daemon::TpmSection& section) {
  daemon::TpmSection tpm = section;
  if (!args.tcti.empty()) tpm.tcti = args.tcti;
  if (!args.sealed_file.empty()) tpm.sealed_file = args.sealed_file;
  OpenedRoot out;
  ROOTSEAL_TRY_ASSIGN(out.root, daemon::open_tpm_root(tpm));
  out.what = "the TPM-sealed root key (" + tpm.sealed_file.string() + ")";
  return out;
}

}  // namespace

kms::Result<OpenedRoot> open_root(const TokenArgs& tok, const TpmArgs& tpm, const std::string& config,
                                  bool config_given) {
  std::error_code ec;
  const bool config_exists = std::filesystem::exists(config, ec);
  if (tpm.chosen()) {
    if (!tok.module.empty() || !tok.token.empty() || tok.pin_fd >= 0) {
      return fail(Errc::invalid_argument,
                  "a TPM root (--tpm, --tcti, --sealed-file) and a PKCS#11 token (--module, "
                  "--token, --pin-fd) exclude each other");
    }
    if (!config_given && !config_exists) {
      if (tpm.sealed_file.empty()) {
        return fail(Errc::invalid_argument,
                    "a TPM root needs the tpm: section of --config (" + config + " does not exist) or --sealed-file");
      }
      return open_tpm_root(tpm, daemon::TpmSection{});
    }
    ROOTSEAL_LET(cfg, daemon::load_config(config));
    return open_tpm_root(tpm, cfg.tpm);
  }
  if (tok.module.empty()) {
    const std::string none =
        "no root to check against: --module and --token (a PKCS#11 token), or --tpm (root_of_trust: tpm)";
    if (!config_given && !config_exists) return fail(Errc::invalid_argument, none);
    auto cfg = daemon::load_config(config);
    if (!cfg) return fail(Errc::invalid_argument, none + "; " + cfg.error().message);
    if (cfg->root_of_trust == "tpm") return open_tpm_root(tpm, cfg->tpm);
    return fail(Errc::invalid_argument, none);
  }
  return open_hsm_root(tok);
}

}  // namespace rootseal::cli
