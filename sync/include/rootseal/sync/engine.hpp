// rootseal::sync — the sync engine rootseald runs when `sync.enabled` is set.
//
// It watches external-secrets.io resources (ExternalSecret, SecretStore,
// ClusterSecretStore, PushSecret) and the Secrets it manages, and keeps every
// ExternalSecret's Secret in step with the central store (docs/sync.md):
// watch-driven caches (no polling of the API), a deduplicating work queue with
// a fast lane for new and changed objects, one provider call per
// (store, key, version) per refresh window, writes only on change, rollout
// restarts of opted-in workloads. Store credentials come from Kubernetes
// Secrets (ESO's model) or, with the annotation sync.rootseal.io/credentials,
// from this configuration (`stores`), never inline: a file readable only by
// the service user or a systemd credential.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/sync/host_store.hpp"
#include "rootseal/sync/provider.hpp"
#include "rootseal/sync/shard.hpp"

namespace rootseal::sync {

// A store whose credentials live in rootseald's configuration (the host
// model, `sync.stores.<name>`). A SecretStore/ClusterSecretStore annotated
// `sync.rootseal.io/credentials: <name>` uses it; its endpoint comes from here.
// The settings of each kind are declared beside their provider
// (rootseal/sync/providers/<provider>.hpp; the list: HostSettings in provider.hpp).
struct HostStoreConfig {
  std::string name;
  std::vector<std::string> namespaces;  // namespaces whose stores may use it; "*" = all
  std::filesystem::path ca_file;        // PEM bundle for the endpoints; empty = system roots
  HostSettings settings;                // the kind is the alternative held
};

struct EngineConfig {
  bool enabled = false;
  std::filesystem::path kubeconfig;                  // empty: in-cluster service account
  std::string context;                               // kubeconfig context; empty = current-context
  std::size_t concurrency = 0;                       // reconcile workers; 0 = 4 per core
  std::chrono::milliseconds refresh_window{10'000};  // fetch dedup window / refresh quantum
  std::vector<std::string> namespaces;               // watched namespaces; empty = all (needs cluster-wide RBAC)
  std::map<std::string, HostStoreConfig> stores;
  // sync.aws_endpoint: the Secrets Manager endpoint of AWS stores on their
  // own credentials (ESO's auth.secretRef), as ESO's AWS_SECRETSMANAGER_ENDPOINT;
  // empty = https://secretsmanager.<region>.amazonaws.com. Host stores
  // (sync.stores) keep their own `endpoint`.
  std::string aws_endpoint;
  // sync.azure_authority_host: the Microsoft identity platform of Azure
  // stores on their own credentials (client secret or workload identity);
  // empty = the store's environmentType's (https://login.microsoftonline.com).
  std::string azure_authority_host;
  // sync.gcp_endpoint / gcp_sts_endpoint / gcp_iam_endpoint: Secret Manager,
  // STS and IAM Credentials of GCP stores on their own credentials or
  // workload identity; empty = Google's (secretmanager, sts, iamcredentials.googleapis.com).
  std::string gcp_endpoint, gcp_sts_endpoint, gcp_iam_endpoint;
  bool rollout_restart = true;  // watch Deployments/StatefulSets/DaemonSets for secret.rootseal.io/reload
  double kube_qps = 50;
  std::size_t kube_burst = 100;
  std::chrono::milliseconds retry_base{500};  // per-item backoff on errors
  std::chrono::milliseconds retry_max{300'000};
  // The work queue's global retry bucket (sync.queue.qps / burst): how fast
  // keys that failed are retried overall. A store's recovery does not go
  // through it (its parked keys are queued together).
  double queue_qps = 500;
  std::size_t queue_burst = 1000;
  // A failing store backs off as a whole (sync.store_backoff.base / max):
  // base·2^n with jitter, capped; a Retry-After from the store wins.
  std::chrono::milliseconds store_backoff_base{1000};
  std::chrono::milliseconds store_backoff_max{10'000};
  // Where the engine reports what an operator should see (re-lists, stores
  // backing off and recovering): (warning?, message, fields). Never values.
  std::function<void(bool warning, std::string_view message,
                     const std::vector<std::pair<std::string, std::string>>& fields)>
      log;
  std::filesystem::path credentials_directory;  // empty: $CREDENTIALS_DIRECTORY
  // Sharded across hosts (docs/ha.md): the engine acts only on the
  // namespaces whose bucket this gate grants, and queues a bucket's
  // ExternalSecrets and PushSecrets when it is granted. Null: every namespace
  // (one host).
  std::shared_ptr<ShardGate> shards;
  // sync.sharded (default true): with storage: etcd, the hosts split the
  // namespaces between them (the daemon then sets `shards`); false: this
  // host syncs every namespace, as a single host does.
  bool sharded = true;
};

struct EngineStats {
  std::uint64_t reconciles = 0;
  std::uint64_t provider_calls = 0;    // fetches that reached a provider
  std::uint64_t fetch_dedup_hits = 0;  // fetches served by the window cache or an in-flight call
  std::uint64_t secret_writes = 0;     // Secret creates/updates/deletes (and remote push writes)
  std::uint64_t push_reconciles = 0;   // PushSecret reconciles
  std::uint64_t push_writes = 0;       // remote writes by PushSecrets
  std::uint64_t push_unchanged = 0;    // pushes that found the remote value current
  std::uint64_t push_removals = 0;     // remote keys removed (deletionPolicy Delete)
  std::uint64_t push_errors = 0;
  std::uint64_t push_stale_refused = 0;  // pushes refused: the remote value is a newer owner's (epoch)
  std::uint64_t status_writes = 0;
  std::uint64_t errors = 0;
  std::uint64_t conflicts = 0;
  std::uint64_t restarts = 0;  // workload rollout restarts
  std::uint64_t kube_requests = 0;
  std::size_t queue_ready = 0;
  std::size_t managed_secrets = 0;
  bool synced = false;                 // caches filled and workers running
  std::uint64_t relists = 0;           // informer re-lists after the first list (410, failed list)
  std::uint64_t watch_reconnects = 0;  // watches reopened after a failure
  std::uint64_t parked = 0;            // keys waiting for a store that backs off
  // Sharded: work refused while its bucket was granted but past the lease
  // deadline (no keepalive answered in time), tried again 1 s later.
  std::uint64_t shard_deferred = 0;
};

// The watched objects (metrics; a walk over the caches, so apart from stats()).
struct ObjectStats {
  // ExternalSecrets and PushSecrets in the cache by their Ready condition
  // (no condition yet: unknown).
  std::size_t es_ready = 0, es_not_ready = 0, es_unknown = 0;
  std::size_t ps_ready = 0, ps_not_ready = 0, ps_unknown = 0;
  // Periodically refreshed ExternalSecrets whose last successful refresh (or,
  // not yet refreshed since start, first reconcile) is older than their
  // refreshInterval + refresh_window + 1 minute.
  std::size_t es_stale = 0;
};

// The health of one store (metrics): ok or backing off, when the next call
// may go, how many calls were refused locally.
struct StoreHealthStats {
  std::string store;  // "SecretStore/<ns>/<name>" or "ClusterSecretStore//<name>"
  bool backing_off = false;
  double next_attempt_unix = 0;  // seconds since the epoch; 0 when ok
  std::uint64_t refused = 0;     // calls refused locally
  std::uint64_t failures = 0;    // calls that failed transiently
  std::uint64_t recoveries = 0;
  std::uint64_t parked = 0;  // ExternalSecrets/PushSecrets waiting for it
};

class Engine {
 public:
  // Reads the kubeconfig and builds the engine on `ex` (nothing runs yet).
  static kms::Result<std::unique_ptr<Engine>> create(boost::asio::any_io_executor ex, EngineConfig config);
  virtual ~Engine() = default;
  // Starts the caches and the workers (returns at once).
  virtual void start() = 0;
  // Stops watching and working (watches cancelled, the queue shut down,
  // reconciles in flight end on their own deadlines); safe to call twice.
  virtual void stop() = 0;
  // Stopped, and none of its coroutines is left (informers, workers,
  // reconciles, events): from then on destroying it is safe. Before, a
  // stopped engine must be kept (a reload keeps it until drained).
  [[nodiscard]] virtual bool drained() const = 0;
  [[nodiscard]] virtual EngineStats stats() const = 0;
  [[nodiscard]] virtual std::vector<StoreHealthStats> store_health() const = 0;
  [[nodiscard]] virtual ObjectStats object_stats() const = 0;
};

}  // namespace rootseal::sync
