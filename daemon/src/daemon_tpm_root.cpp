#include "daemon_tpm_root.hpp"

#include <filesystem>
#include <system_error>
#include <utility>

#include "log.hpp"
#include "pin_source.hpp"
#include "rootseal/daemon/snapshots.hpp"

namespace rootseal::daemon {

using kms::Errc;
using kms::fail;

std::string pcr_list(const std::vector<std::uint32_t>& pcrs) {
  std::string out;
  for (const auto p : pcrs) {
    if (!out.empty()) out.push_back(',');
    out.append(std::to_string(p));
  }
  return out.empty() ? "none" : out;
}

namespace {

// The tpm::TpmRoot of a `tpm:` section (its auth value read now).
kms::Result<std::unique_ptr<tpm::TpmRoot>> make_tpm_root(const TpmSection& config) {
  tpm::TpmRootConfig rc;
  rc.tcti = config.tcti;
  rc.blob_path = config.sealed_file;
  rc.verify_on_probe = config.verify_on_probe;
  ROOTSEAL_TRY_ASSIGN(rc.policy, tpm_seal_policy(config));
  return tpm::TpmRoot::create(std::move(rc));
}

}  // namespace

kms::Result<std::unique_ptr<kms::RootOfTrust>> open_tpm_root(const TpmSection& config) {
  const std::string where = "TPM root (tcti " + config.tcti + ", sealed file " + config.sealed_file.string() + ")";
  if (config.sealed_file.empty()) return fail(Errc::invalid_argument, "TPM root: no sealed file (tpm.sealed_file)");
  std::error_code ec;
  const bool exists = std::filesystem::exists(config.sealed_file, ec);
  if (ec) return fail(Errc::sealed, where + ": cannot check the sealed file: " + ec.message());
  if (!exists) return fail(Errc::not_found, where + ": no TPM-sealed root key at " + config.sealed_file.string());
  auto root = make_tpm_root(config);
  if (!root) return fail(root.error().code, where + ": " + root.error().message);
  // Unsealed once here; the unwraps that follow use the held key.
  if (auto r = (*root)->probe(); !r) return fail(r.error().code, where + ": " + r.error().message);
  return std::unique_ptr<kms::RootOfTrust>(std::move(*root));
}

kms::Result<void> DaemonTpmRoot::probe() {
  std::lock_guard op(probe_mu_);
  if (auto held = current(); held && held->holds_key()) return held->probe();

  std::shared_ptr<tpm::TpmRoot> fresh;
  ROOTSEAL_TRY_ASSIGN(fresh, make_tpm_root(config_));
  {
    std::lock_guard lock(root_mu_);
    root_ = fresh;
  }

  std::error_code ec;
  const bool exists = std::filesystem::exists(config_.sealed_file, ec);
  if (ec) return fail(Errc::sealed, "cannot check " + config_.sealed_file.string() + ": " + ec.message());
  if (!exists) {
    if (!config_.initialize) {
      return fail(Errc::sealed, "no TPM-sealed root key at " + config_.sealed_file.string() +
                                    " (restore it, or set tpm.initialize: true to create one on a new host)");
    }
    bool created = false;
    ROOTSEAL_TRY_ASSIGN(created, create(*fresh));
    if (created) return {};
  }
  return fresh->probe();
}

kms::Result<void> DaemonTpmRoot::reseal(const std::optional<std::vector<std::uint32_t>>& pcrs) {
  std::lock_guard op(probe_mu_);
  auto held = current();
  if (!held || !held->holds_key()) {
    return fail(Errc::sealed,
                "rootseald does not hold the TPM root key (it is sealed); reseal needs the key "
                "unsealed, or the ceremony's backup (docs/tpm.md)");
  }
  tpm::SealPolicy policy;
  ROOTSEAL_TRY_ASSIGN(policy, tpm_seal_policy(config_));
  if (pcrs) policy.pcrs = *pcrs;
  return held->reseal(policy);
}

kms::Result<std::string> DaemonTpmRoot::key_check_value() {
  std::shared_ptr<tpm::TpmRoot> r;
  ROOTSEAL_TRY_ASSIGN(r, current_or_sealed());
  return r->key_check_value();
}

kms::Result<std::vector<std::uint8_t>> DaemonTpmRoot::wrap(const kms::SecureBytes& key) {
  std::shared_ptr<tpm::TpmRoot> r;
  ROOTSEAL_TRY_ASSIGN(r, current_or_sealed());
  return r->wrap(key);
}

kms::Result<kms::SecureBytes> DaemonTpmRoot::unwrap(std::span<const std::uint8_t> wrapped) {
  std::shared_ptr<tpm::TpmRoot> r;
  ROOTSEAL_TRY_ASSIGN(r, current_or_sealed());
  return r->unwrap(wrapped);
}

std::shared_ptr<tpm::TpmRoot> DaemonTpmRoot::current() const {
  std::lock_guard lock(root_mu_);
  return root_;
}

kms::Result<std::shared_ptr<tpm::TpmRoot>> DaemonTpmRoot::current_or_sealed() const {
  auto r = current();
  if (!r) return fail(Errc::sealed, "TPM root key is not unsealed yet");
  return r;
}

kms::Result<bool> DaemonTpmRoot::create(tpm::TpmRoot& root) {
  const std::string where = "no TPM-sealed root key at " + config_.sealed_file.string();
  auto names = store_.list_names();
  if (!names) return fail(Errc::sealed, where + ", and the state store cannot be read: " + names.error().message);
  if (!names->empty()) {
    // A new root key would not unwrap them: never replace a lost root key silently.
    return fail(Errc::sealed, where + ", but the state store holds " + std::to_string(names->size()) +
                                  " key(s) wrapped by an earlier root key; not creating a new one (restore the "
                                  "sealed file, or import the root key from the ceremony backup)");
  }
  auto made = root.initialize();
  if (!made) {
    if (made.error().code == Errc::already_exists) return false;
    return std::unexpected(std::move(made).error());
  }
  log::info("created the TPM-sealed root key", {{"sealed_file", config_.sealed_file.string()},
                                                {"tcti", config_.tcti},
                                                {"pcrs", pcr_list(config_.pcrs)},
                                                {"auth_value", !config_.auth_value_file.empty()}});
  return true;
}

}  // namespace rootseal::daemon
