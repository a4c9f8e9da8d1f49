// rootseal::sync — the Vault KV v2 provider's host settings (sync.stores.<name>
// of kind vault). The provider is sync/src/providers/vault/.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "rootseal/kms/error.hpp"
#include "rootseal/sync/host_store.hpp"

namespace rootseal::sync {

struct VaultHost {
  static constexpr std::string_view kind = "vault";
  std::string server;  // required; an annotated store must name the same server
  std::string path = "secret";
  std::string vault_namespace;
  CredentialRef token;  // a token, or an AppRole (role_id + secret_id)
  std::string approle_path = "approle";
  std::string role_id;
  CredentialRef secret_id;
  static std::span<const HostOption<VaultHost>> options();
  // Between options, once each is read (`where`: "sync.stores.<name>").
  [[nodiscard]] kms::Result<void> check(const std::string& where) const;
};

}  // namespace rootseal::sync
