// rootseal::daemon — the TPM root of trust as rootseald runs it (root_of_trust: tpm).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/daemon/config.hpp"
#include "rootseal/kms/root_of_trust.hpp"
#include "rootseal/kms/state_store.hpp"
#include "rootseal/tpm/tpm_root.hpp"

namespace rootseal::daemon {

// "0,2,7", or "none": a PCR selection as the logs show it.
std::string pcr_list(const std::vector<std::uint32_t>& pcrs);

// A tpm::TpmRoot, rebuilt at every probe while no key is held (so a corrected
// auth value file is picked up), and, with tpm.initialize, the root key
// created on first start when the sealed file is absent and the state store is
// empty. Every failure (no TPM, PCR policy, lockout, wrong auth value, no
// sealed file) is a probe error: the daemon stays sealed with the reason and
// tries again at the next probe.
class DaemonTpmRoot final : public kms::RootOfTrust {
 public:
  DaemonTpmRoot(TpmSection config, kms::StateStore& store) : config_(std::move(config)), store_(store) {}

  [[nodiscard]] std::string_view kind() const noexcept override { return "tpm"; }

  kms::Result<void> probe() override;

  // `rootseal tpm reseal`: the held root key, sealed again under the
  // configured policy (with `pcrs` instead of tpm.pcrs if given) and the PCR
  // values of now. Authorised by holding the key: a daemon that is sealed
  // holds nothing to reseal (then only the ceremony's backup helps).
  kms::Result<void> reseal(const std::optional<std::vector<std::uint32_t>>& pcrs);

  kms::Result<std::string> key_check_value() override;
  kms::Result<std::vector<std::uint8_t>> wrap(const kms::SecureBytes& key) override;
  kms::Result<kms::SecureBytes> unwrap(std::span<const std::uint8_t> wrapped) override;

 private:
  std::shared_ptr<tpm::TpmRoot> current() const;
  kms::Result<std::shared_ptr<tpm::TpmRoot>> current_or_sealed() const;
  // true: created and held; false: someone else created it meanwhile (unseal it).
  kms::Result<bool> create(tpm::TpmRoot& root);

  const TpmSection config_;
  kms::StateStore& store_;
  std::mutex probe_mu_;
  mutable std::mutex root_mu_;
  std::shared_ptr<tpm::TpmRoot> root_;
};

}  // namespace rootseal::daemon
