// The Vault provider's host settings (rootseal/sync/providers/vault.hpp).
#include "rootseal/sync/providers/vault.hpp"

namespace rootseal::sync {

std::span<const HostOption<VaultHost>> VaultHost::options() {
  static constexpr HostOption<VaultHost> kOptions[] = {
      {.name = "server", .field = &VaultHost::server, .url = true, .required = true},
      {.name = "path", .field = &VaultHost::path},
      {.name = "vault_namespace", .field = &VaultHost::vault_namespace},
      {.name = "token", .field = &VaultHost::token},
      {.name = "approle_path", .field = &VaultHost::approle_path},
      {.name = "role_id", .field = &VaultHost::role_id},
      {.name = "secret_id", .field = &VaultHost::secret_id},
  };
  return kOptions;
}

kms::Result<void> VaultHost::check(const std::string& where) const {
  if (!token.set() && (role_id.empty() || !secret_id.set())) {
    return kms::fail(kms::Errc::invalid_argument, where + ": vault needs token, or role_id and secret_id");
  }
  return {};
}

}  // namespace rootseal::sync
