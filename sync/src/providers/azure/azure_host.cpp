// The Azure provider's host settings (rootseal/sync/providers/azure.hpp).
#include "rootseal/sync/providers/azure.hpp"

namespace rootseal::sync {

std::span<const HostOption<AzureHost>> AzureHost::options() {
  static constexpr HostOption<AzureHost> kOptions[] = {
      {.name = "vault_url", .field = &AzureHost::vault_url, .url = true, .required = true},
      {.name = "tenant_id", .field = &AzureHost::tenant_id, .required = true},
      {.name = "client_id", .field = &AzureHost::client_id, .required = true},
      {.name = "authority_host", .field = &AzureHost::authority_host, .url = true},
      {.name = "client_secret", .field = &AzureHost::client_secret, .required = true},
  };
  return kOptions;
}

}  // namespace rootseal::sync
