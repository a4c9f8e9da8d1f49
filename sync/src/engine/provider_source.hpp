// rootseal::sync::engine — the ProviderSource of the running engine: builds a
// Provider per store from its spec and credentials and keeps it (so Vault
// tokens and HTTP connections are reused), rebuilding when the store changes
// or its credentials rotate (re-read at most every `recheck`).
//
// Credentials come from the Kubernetes Secrets the store references (ESO's
// model) or, for a store annotated sync.rootseal.io/credentials, from
// rootseald's own configuration (HostStoreConfig): then the endpoint comes
// from the configuration too (a store may not send the host's credentials to
// a server of its choosing), and only the namespaces the configuration lists
// may use it.
#pragma once

#include <chrono>
#include <functional>
#include <vector>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "engine/service_account_tokens.hpp"
#include "providers/store_health.hpp"
#include "reconcile/kube_api.hpp"
#include "rootseal/sync/engine.hpp"
#include "rootseal/sync/provider.hpp"

namespace rootseal::sync::engine {

class EngineProviders final : public reconcile::ProviderSource {
 public:
  EngineProviders(reconcile::KubeApi& api, ProviderFactory factory, std::map<std::string, HostStoreConfig> host,
                  std::filesystem::path credentials_directory, std::chrono::seconds recheck = std::chrono::seconds(300),
                  StoreHealthOptions health = {});

  Task<std::shared_ptr<Provider>> provider(const model::SecretStore& store, std::string_view ns) override;
  Task<std::shared_ptr<PushProvider>> push_provider(const model::SecretStore& store, std::string_view ns) override;

  // Reads a CredentialRef (file mode must deny group/other; trailing newline dropped).
  static kms::Result<kms::SecureBytes> read_credential(const CredentialRef& ref, const std::filesystem::path& cred_dir,
                                                       std::string_view what);
  // The shared health of a store, by id ("SecretStore/<ns>/<name>",
  // "ClusterSecretStore//<name>"): every provider built for the store (pull
  // and push, every namespace) uses it. Created on first use.
  std::shared_ptr<StoreHealth> health(const std::string& store_id);
  // The health of a store if a provider was ever built for it, else null.
  std::shared_ptr<StoreHealth> find_health(const std::string& store_id) const;
  // Drops a deleted store's health (a new store of that name starts healthy).
  void forget_health(const std::string& store_id);
  // The Secrets Manager endpoint of AWS stores on Kubernetes-Secret
  // credentials (EngineConfig::aws_endpoint; empty = AWS's). Set before use.
  void aws_endpoint(std::string url) { aws_endpoint_ = std::move(url); }
  // The Microsoft identity platform of Azure stores on their own credentials
  // or workload identity (EngineConfig::azure_authority_host; empty = the
  // store's environmentType's). Set before use.
  void azure_authority_host(std::string url) { azure_authority_host_ = std::move(url); }
  // Google endpoints of GCP stores on their own credentials or workload
  // identity (EngineConfig::gcp_*; empty = Google's). Set before use.
  void gcp_endpoints(std::string secret_manager, std::string sts, std::string iam) {
    gcp_endpoint_ = std::move(secret_manager);
    gcp_sts_endpoint_ = std::move(sts);
    gcp_iam_endpoint_ = std::move(iam);
  }
  // Every store's health, by id (metrics).
  std::vector<std::pair<std::string, StoreHealth::Snapshot>> health_snapshots() const;
  // The ServiceAccount tokens of the stores that name a serviceAccountRef.
  [[nodiscard]] const ServiceAccountTokens& service_account_tokens() const { return *sa_tokens_; }
  // Runs with the store id each time a store becomes healthy after a backoff
  // (set before any provider is built).
  void on_recovered(std::function<void(const std::string& store_id)> callback) { recovered_ = std::move(callback); }
  // Runs with the store id and the reason each time a healthy store starts backing off.
  void on_backing_off(std::function<void(const std::string& store_id, const std::string& reason)> callback) {
    backing_off_ = std::move(callback);
  }

  // The resolved spec of a store for namespace ns: credentials read from its
  // Kubernetes Secrets or from the host configuration (then the endpoints
  // come from the configuration). Public for tests.
  Task<StoreSpec> spec_for(const model::SecretStore& store, std::string_view ns);

 private:
  template <class P>
  struct CacheEntry {
    std::string resource_version;
    std::string fingerprint;  // SHA-256 of the credentials, hex
    std::chrono::steady_clock::time_point checked;
    std::shared_ptr<P> provider;
  };
  // The provider of `store` from `cache`, rebuilt with `make` when the store
  // changed or (checked at most every recheck_) its credentials did.
  template <class P, class Make>
  Task<std::shared_ptr<P>> cached(std::map<std::string, CacheEntry<P>>& cache, const model::SecretStore& store,
                                  std::string_view ns, Make make);
  Task<StoreSpec> vault_spec(const model::SecretStore& store, const HostStoreConfig* host, std::string_view ns);
  Task<StoreSpec> aws_spec(const model::SecretStore& store, const HostStoreConfig* host, std::string_view ns);
  Task<StoreSpec> azure_spec(const model::SecretStore& store, const HostStoreConfig* host, std::string_view ns);
  Task<StoreSpec> gcp_spec(const model::SecretStore& store, const HostStoreConfig* host, std::string_view ns);
  Task<StoreSpec> conjur_spec(const model::SecretStore& store, std::string_view ns);
  Task<kms::SecureBytes> secret_key(const model::SecretKeyRef& ref, std::string_view store_ns);
  // The annotations of ServiceAccount key.ns/key.name (a live GET);
  // permission_denied, never not_found, when it does not exist.
  Task<model::StringMap> service_account_annotations(const ServiceAccountTokens::Key& key);
  // The token key of a serviceAccountRef used from namespace ns (ESO's rule:
  // a ClusterSecretStore's namespace, else the ExternalSecret's).
  static ServiceAccountTokens::Key token_key(const model::SecretStore& store, const model::ServiceAccountRef& ref,
                                             std::string_view ns, std::vector<std::string> extra_audiences,
                                             std::int64_t expiration_seconds);

  reconcile::KubeApi& api_;
  ProviderFactory factory_;
  std::map<std::string, HostStoreConfig> host_;
  std::filesystem::path cred_dir_;
  std::string aws_endpoint_;  // for stores on their own credentials
  std::string azure_authority_host_;
  std::string gcp_endpoint_, gcp_sts_endpoint_, gcp_iam_endpoint_;
  std::chrono::seconds recheck_;
  StoreHealthOptions health_options_;
  std::function<void(const std::string&)> recovered_;
  std::function<void(const std::string&, const std::string&)> backing_off_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<StoreHealth>> health_;
  std::map<std::string, CacheEntry<Provider>> cache_;
  std::map<std::string, CacheEntry<PushProvider>>
      push_cache_;                                   // same rules: kept while store and credentials are unchanged
  std::shared_ptr<ServiceAccountTokens> sa_tokens_;  // shared by every store's token source
};

}  // namespace rootseal::sync::engine
