// Azure Key Vault: secrets (pull and push), certificates and keys (pull:
// remoteRef.key cert/<name>, key/<name>), REST API version 7.4. Client-credentials
// token from the Microsoft identity platform (client secret, or workload
// identity: a ServiceAccount token as the client assertion), cached until shortly before it
// expires (a 401 drops it and retries once). PUT only when the value changed
// (every PUT is a new version), the tag managed-by=rootseal required on an
// existing secret, names checked against ^[0-9a-zA-Z-]{1,127}$, 429 retried
// after Retry-After.
#pragma once

#include <atomic>
#include <memory>

#include "providers/store_health.hpp"
#include "rootseal/sync/provider.hpp"

namespace rootseal::sync::providers {

struct AzureCounters {
  std::atomic<std::size_t> token_requests{0};
  std::atomic<std::size_t> calls{0};
  std::atomic<std::size_t> writes{0};  // PUT + DELETE
  std::atomic<std::size_t> throttled{0};
};

class AzureKeyVault : public Provider, public PushProvider {
 public:
  [[nodiscard]] std::string_view kind() const noexcept override { return "azure"; }
  // Overrides both bases' validate() (one answer for pull and push).
  Task<void> validate() override = 0;
  [[nodiscard]] virtual const AzureCounters& counters() const noexcept = 0;
};

kms::Result<std::shared_ptr<AzureKeyVault>> make_azure_provider(const boost::asio::any_io_executor& executor,
                                                                AzureSpec spec,
                                                                std::shared_ptr<StoreHealth> health = nullptr);

}  // namespace rootseal::sync::providers
