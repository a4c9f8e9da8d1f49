// Vault KV version 2 (pull). Token or AppRole auth; one login reused across
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
};

class VaultKv2Provider;

kms::Result<std::shared_ptr<VaultKv2Provider>> make_vault_provider(const boost::asio::any_io_executor& executor,
                                                                   VaultSpec spec,
                                                                   std::shared_ptr<StoreHealth> health = nullptr);

class VaultKv2Provider : public Provider {
 public:
  [[nodiscard]] virtual const VaultCounters& counters() const noexcept = 0;
};

}  // namespace rootseal::sync::providers
