// rootseal::sync::reconcile — ExternalSecret → Secret, with ESO's semantics
// (reference/eso-k8s.md §2), level-based: each call reads the world and makes
// it right.
//
//  - creationPolicy Owner (controller ownerReference + created-by label),
//    Orphan, Merge (existing Secret only), CreateOrMerge, None (no write);
//  - deletionPolicy (what a missing remote key does): Retain → error, the
//    Secret is kept; Delete → the key is dropped and an empty result deletes
//    an Owner Secret; Merge → the key is dropped, the Secret kept;
//  - data[].remoteRef{key, property, version, decodingStrategy},
//    dataFrom[].extract, target.template (template.hpp);
//  - the ESO data-hash annotation, so a valid Secret (managed label + hash of
//    its data) is not rewritten, ESO-written ones included; a Secret whose
//    hash does not match (edited by hand) is restored;
//  - writes only when the result differs; a 409 asks for an immediate retry;
//  - provider errors: the Secret is untouched, Ready=False/SecretSyncedError
//    with the reason, one Warning event per distinct error, retry with backoff;
//  - fetch deduplication through FetchCache: one provider call per
//    (store, key, version) per refresh window;
//  - status is written only when it changes (condition, syncedResourceVersion,
//    binding): idle refreshes make zero Kubernetes writes. status.refreshTime
//    is therefore the time of the last change, not of the last idle check.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/types.hpp"
#include "reconcile/external_secret_steps.hpp"
#include "reconcile/fetch_cache.hpp"
#include "reconcile/kube_api.hpp"
#include "reconcile/store_resolver.hpp"

namespace rootseal::sync::reconcile {

struct ReconcileResult {
  enum class Kind { done, requeue_after, retry, requeue_now } kind = Kind::done;
  std::chrono::milliseconds after{0};
  static ReconcileResult done() { return {}; }
  static ReconcileResult requeue_after(std::chrono::milliseconds d) { return {Kind::requeue_after, d}; }
  static ReconcileResult retry() { return {Kind::retry, {}}; }
  static ReconcileResult requeue_now() { return {Kind::requeue_now, {}}; }
};

struct ReconcilerOptions {
  // Fetch deduplication window and refresh quantum: refreshes due within one
  // window run together at its end, so they share provider calls.
  std::chrono::milliseconds refresh_window{10'000};
  std::function<std::chrono::system_clock::time_point()> now = [] { return std::chrono::system_clock::now(); };
};

struct ReconcilerStats {
  std::atomic<std::uint64_t> reconciles{0};
  std::atomic<std::uint64_t> fetched{0};        // reconciles that read the provider
  std::atomic<std::uint64_t> skipped{0};        // nothing due: no provider call
  std::atomic<std::uint64_t> secret_writes{0};  // creates + updates + deletes
  std::atomic<std::uint64_t> status_writes{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> conflicts{0};
};

class ExternalSecretReconciler {
 public:
  // Called after a Secret's data was changed by a write (for rollout restarts).
  using SecretChanged = std::function<void(const std::string& ns, const std::string& secret)>;

  ExternalSecretReconciler(KubeApi& api, ProviderSource& providers, FetchCache& cache, ReconcilerOptions options = {});

  // (Parameters by value: a coroutine must own what it reads after suspending.)
  boost::asio::awaitable<ReconcileResult> reconcile(std::string ns, std::string name);
  // The ExternalSecret is gone (last known state): what Kubernetes' garbage
  // collector does for Owner — delete the Secret it controls — done at once.
  boost::asio::awaitable<void> deleted(std::shared_ptr<const boost::json::value> last);

  // ExternalSecrets ("ns/name") that write Secret ns/secret (for Secret events).
  [[nodiscard]] std::vector<std::string> writers_of(const std::string& ns, const std::string& secret) const;
  void on_secret_changed(SecretChanged cb) { secret_changed_ = std::move(cb); }
  [[nodiscard]] const ReconcilerStats& stats() const noexcept { return stats_; }
  // Periodically refreshed ExternalSecrets whose last successful refresh (or,
  // none yet, first reconcile since start) is more than their refreshInterval
  // + `grace` before `now`: their Secret may be out of date. `counted`: only
  // the namespaces it accepts (a host sharing the work: its own buckets).
  [[nodiscard]] std::size_t stale(std::chrono::system_clock::time_point now, std::chrono::milliseconds grace,
                                  const std::function<bool(std::string_view ns)>& counted = {}) const;

 private:
  struct State {
    std::chrono::system_clock::time_point last_refresh{};
    std::chrono::system_clock::time_point first_seen;  // first reconcile since start
    std::chrono::milliseconds refresh_interval{0};     // 0: not refreshed periodically
    std::string synced_rv;
    std::string last_error;
    std::string target;
  };
  struct UsedStore;

  boost::asio::awaitable<ReconcileResult> run(const std::string& key, const boost::json::value& object);
  boost::asio::awaitable<Step<ProviderData>> fetch(const model::ExternalSecret& es);
  // The ConfigMaps template.templateFrom reads (live GETs; absent ones as nullptr).
  boost::asio::awaitable<Step<TemplateSources>> template_sources(const model::ExternalSecret& es);
  struct Whole {  // what the provider answered, and how to read it
    kms::Result<kms::SecureBytes> value;
    ValueFormat format;
  };
  boost::asio::awaitable<Step<Whole>> fetch_whole(std::map<std::string, UsedStore>& stores, const std::string& ns,
                                                  const model::StoreRef& ref, const RemoteRef& remote,
                                                  bool extract = false);  // dataFrom.extract
  boost::asio::awaitable<Step<kms::Result<SecretMap>>> find_all(std::map<std::string, UsedStore>& stores,
                                                                const std::string& ns, const model::StoreRef& ref,
                                                                const model::FindRef& find);
  boost::asio::awaitable<Step<UsedStore*>> use_store(std::map<std::string, UsedStore>& stores, const std::string& ns,
                                                     const model::StoreRef& ref);
  boost::asio::awaitable<Step<Keep>> apply(const model::ExternalSecret& es, Action action);
  boost::asio::awaitable<void> set_status(const model::ExternalSecret& es, bool ready, std::string_view reason,
                                          const std::string& message, const std::string& synced_rv);
  boost::asio::awaitable<ReconcileResult> fail(const std::string& key, const model::ExternalSecret& es,
                                               const Refusal& why);
  boost::asio::awaitable<ReconcileResult> succeed(const std::string& key, const model::ExternalSecret& es,
                                                  const std::string& synced_rv,
                                                  std::chrono::system_clock::time_point now, const Keep& status);
  ReconcileResult next_after(const model::ExternalSecret& es, std::chrono::system_clock::time_point last) const;
  std::chrono::milliseconds next_refresh_in(const model::ExternalSecret& es,
                                            std::chrono::system_clock::time_point last) const;
  void remember_target(const std::string& key, const std::string& ns, const std::string& target);

  KubeApi& api_;
  ProviderSource& providers_;
  FetchCache& cache_;
  StoreResolver resolver_;
  ReconcilerOptions options_;
  SecretChanged secret_changed_;
  ReconcilerStats stats_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, State> state_;                    // "ns/name"
  std::unordered_map<std::string, std::set<std::string>> writers_;  // "ns/secret" -> ES keys
};

// The ConfigMaps a template's templateFrom names, read from namespace `ns`
// (live GETs; an absent one as nullptr, for apply_secret_template to refuse
// by name); the API's error otherwise.
Task<TemplateSources> template_config_maps(KubeApi& api, std::string ns, const model::SecretTemplate& tmpl);

// RFC 3339 UTC with seconds ("2026-11-27T22:56:14Z"), as Kubernetes writes times.
std::string rfc3339(std::chrono::system_clock::time_point t);

}  // namespace rootseal::sync::reconcile
