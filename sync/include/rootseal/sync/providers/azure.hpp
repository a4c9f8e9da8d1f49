// rootseal::sync — the Azure Key Vault provider's host settings
// (sync.stores.<name> of kind azure). The provider is sync/src/providers/azure/.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "rootseal/sync/host_store.hpp"

namespace rootseal::sync {

struct AzureHost {
  static constexpr std::string_view kind = "azure";
  std::string vault_url;  // an annotated store must name the same vaultUrl
  std::string tenant_id;
  std::string client_id;
  std::string authority_host;  // empty = https://login.microsoftonline.com
  CredentialRef client_secret;
  static std::span<const HostOption<AzureHost>> options();
};

}  // namespace rootseal::sync
