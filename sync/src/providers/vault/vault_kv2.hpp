// Vault KV version 2 (and version 1, as ESO reads and writes it): pull, and
// push as ESO's Vault provider (PushSecret, DeleteSecret: the custom_metadata
// marker managed-by=external-secrets; on KV v1 a key of the map itself).
// Token or AppRole auth; one login reused across
// fetches and renewed (renew-self) once renew_fraction of its TTL has passed;
// a failed renewal or a 403 on a read triggers one fresh login (AppRole).
// X-Vault-Namespace when the spec names one.
#pragma once

#include <atomic>
#include <memory>

#include "providers/store_health.hpp"
#include "rootseal/sync/provider.hpp"

namespace rootseal::sync::providers {

struct VaultCounters {
  std::atomic<std::size_t> logins{0};
  std::atomic<std::size_t> renewals{0};
  std::atomic<std::size_t> lookups{0};
  std::atomic<std::size_t> reads{0};
  std::atomic<std::size_t> writes{0};  // POST/DELETE of data/ and metadata/ (push)
};

// ESO's ownership marker: the custom_metadata pair every secret ESO's Vault
// provider pushes carries (and that it requires before changing one).
inline constexpr std::string_view kVaultManagedByKey = "managed-by";
inline constexpr std::string_view kVaultManagedByValue = "external-secrets";

class VaultKv2Provider;

kms::Result<std::shared_ptr<VaultKv2Provider>> make_vault_provider(const boost::asio::any_io_executor& executor,
                                                                   VaultSpec spec,
                                                                   std::shared_ptr<StoreHealth> health = nullptr);

class VaultKv2Provider : public Provider, public PushProvider {
 public:
  [[nodiscard]] std::string_view kind() const noexcept override { return "vault"; }
  // Overrides both bases' validate() (one answer for pull and push).
  Task<void> validate() override = 0;
  [[nodiscard]] virtual const VaultCounters& counters() const noexcept = 0;
};

}  // namespace rootseal::sync::providers
