// rootseal::sync::reconcile — the small interfaces the reconcilers are
// written against, so that they are tested with in-memory fakes (tests/unit/
// sync/) and run on the real Kubernetes client in the engine.
//
// KubeApi: cached reads (informers) and the few writes a reconciler makes.
// ProviderSource: the Provider for a store (built once, reused; credentials
// resolved from Kubernetes Secrets or from rootseald's own configuration).
#pragma once

#include <boost/json/value.hpp>

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kube/service_account_token.hpp"
#include "model/types.hpp"
#include "rootseal/sync/provider.hpp"

namespace rootseal::sync::reconcile {

using ObjectPtr = std::shared_ptr<const boost::json::value>;

enum class Resource { external_secret, push_secret, secret, deployment, stateful_set, daemon_set };
std::string_view to_string(Resource r) noexcept;  // the Kind

class KubeApi {
 public:
  virtual ~KubeApi() = default;

  // Cached reads; nullptr when absent. Objects are immutable snapshots.
  virtual ObjectPtr external_secret(std::string_view ns, std::string_view name) = 0;
  virtual ObjectPtr push_secret(std::string_view ns, std::string_view name) = 0;
  virtual ObjectPtr store(model::StoreKind kind, std::string_view ns, std::string_view name) = 0;
  // The workloads (Deployments, StatefulSets, DaemonSets) of a namespace.
  virtual std::vector<std::pair<Resource, ObjectPtr>> workloads(std::string_view ns) = 0;

  // A Secret: from the cache of managed Secrets, else a live GET; nullptr if
  // it does not exist.
  virtual Task<ObjectPtr> secret(std::string_view ns, std::string_view name) = 0;
  // A ConfigMap (template.templateFrom[].configMap), a live GET; nullptr if
  // it does not exist.
  virtual Task<ObjectPtr> config_map(std::string_view ns, std::string_view name) = 0;
  // Labels of a namespace (ClusterSecretStore namespaceSelector).
  virtual Task<model::StringMap> namespace_labels(std::string_view ns) = 0;

  // A ServiceAccount (a live GET: AWS web identity reads its
  // eks.amazonaws.com/role-arn annotation); nullptr if it does not exist.
  virtual Task<ObjectPtr> service_account(std::string_view ns, std::string_view name) = 0;
  // A token of ServiceAccount ns/name (TokenRequest API) for `audiences`
  // (none: the API server's) valid for expiration_seconds (0: the server's
  // default). not_found when the ServiceAccount does not exist.
  virtual Task<kube::ServiceAccountToken> create_token(std::string_view ns, std::string_view name,
                                                       std::span<const std::string> audiences,
                                                       std::int64_t expiration_seconds) = 0;

  // Writes. Errors: conflict (409 Conflict: stale resourceVersion),
  // already_exists, not_found, others as kms::Error.
  virtual Task<ObjectPtr> create_secret(std::string_view ns, const boost::json::value& secret,
                                        std::string_view field_manager) = 0;
  virtual Task<ObjectPtr> update_secret(std::string_view ns, const boost::json::value& secret,
                                        std::string_view field_manager) = 0;
  // Deletes with a UID precondition (never someone else's replacement).
  virtual Task<void> delete_secret(std::string_view ns, std::string_view name, std::string_view uid) = 0;
  // Merge-patches .status of an ExternalSecret/PushSecret (the /status subresource).
  virtual Task<void> patch_status(Resource r, std::string_view ns, std::string_view name,
                                  const boost::json::value& status) = 0;
  // Merge-patches an object (finalizers, workload pod-template annotations).
  virtual Task<void> patch(Resource r, std::string_view ns, std::string_view name,
                           const boost::json::value& merge_patch) = 0;
  // Records a Kubernetes Event about an object (best effort, never fails the caller).
  // Whether this host may write for namespace `ns` now (the sync engine
  // sharded across hosts: its bucket is this host's). One host: always.
  virtual bool may_write(std::string_view /*ns*/) { return true; }
  // The epoch under which this host holds the namespace's bucket (carried
  // into cloud pushes); 0: one host, not sharded.
  virtual std::int64_t write_epoch(std::string_view /*ns*/) { return 0; }
  virtual void event(Resource r, const model::ObjectMeta& about, bool warning, std::string_view reason,
                     std::string message) = 0;
};

class ProviderSource {
 public:
  virtual ~ProviderSource() = default;
  // The Provider for a store, as used from namespace `ns`. Errors name the
  // store and the reason (bad spec, unreadable credential Secret, host
  // credentials not configured or not allowed for `ns`).
  virtual Task<std::shared_ptr<Provider>> provider(const model::SecretStore& store, std::string_view ns) = 0;
  virtual Task<std::shared_ptr<PushProvider>> push_provider(const model::SecretStore& store, std::string_view ns) = 0;
};

}  // namespace rootseal::sync::reconcile
