// rootseal::sync::reconcile — PushSecret (external-secrets.io/v1alpha1):
// values from a Kubernetes Secret — or, with rootseal's extension
// `selector.remoteRef`, from a remote key of a SecretStore — pushed to the
// stores of spec.secretStoreRefs through their PushProvider.
//
//  - spec.template (ESO's applyTemplate, engine v2): the source Secret's data
//    templated in memory before anything is selected (templated_source);
//  - updatePolicy Replace (write when the value differs; the provider compares,
//    so an unchanged value makes no remote write) or IfNotExists;
//  - deletionPolicy Delete: the finalizer pushsecret.externalsecrets.io/finalizer
//    is added, and on deletion every pushed remote key is removed (only if
//    rootseal manages it) before the finalizer goes; None: nothing removed;
//  - reacts to source Secret changes at once (the engine routes Secret events
//    through readers_of), not only on its interval;
//  - status: syncedPushSecrets {"<Kind>/<store>": {"<remoteKey>": {...}}},
//    Ready with reasons Synced / Errored; written only when it changes.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <atomic>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

#include "reconcile/external_secret_reconciler.hpp"
#include "reconcile/kube_api.hpp"
#include "reconcile/store_resolver.hpp"

namespace rootseal::sync::reconcile {

struct PushStats {
  std::atomic<std::uint64_t> reconciles{0};
  std::atomic<std::uint64_t> writes{0};     // remote writes (PushOutcome.written)
  std::atomic<std::uint64_t> unchanged{0};  // pushes that found the value current
  std::atomic<std::uint64_t> status_writes{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> removals{0};
  // Pushes refused because the remote value was written by a newer owner of
  // the namespace's bucket (PushOutcome.newer_epoch): not errors, no retry.
  std::atomic<std::uint64_t> stale_refused{0};
};

class PushSecretReconciler {
 public:
  PushSecretReconciler(KubeApi& api, ProviderSource& providers,
                       std::function<std::chrono::system_clock::time_point()> now);

  boost::asio::awaitable<ReconcileResult> reconcile(std::string ns, std::string name);
  // PushSecrets ("ns/name") whose source is Secret ns/secret.
  [[nodiscard]] std::vector<std::string> readers_of(const std::string& ns, const std::string& secret) const;
  [[nodiscard]] const PushStats& stats() const noexcept { return stats_; }

 private:
  struct StatusContext;
  struct Target;
  void remember_source(const std::string& key, const std::string& ns, const std::string& secret);
  // False when the status is already this (nothing written).
  boost::asio::awaitable<bool> write_status(const StatusContext& ctx, bool ready, std::string_view reason,
                                            const std::string& message, const boost::json::object& synced);
  boost::asio::awaitable<void> error_status(const StatusContext& ctx, const std::string& message);
  boost::asio::awaitable<kms::Result<std::vector<Target>>> resolve_targets(const model::PushSecret& ps);
  boost::asio::awaitable<ReconcileResult> finalize(const model::PushSecret& ps, const StatusContext& ctx,
                                                   const kms::Result<std::vector<Target>>& targets);
  boost::asio::awaitable<kms::Result<std::vector<kms::SecureBytes>>> read_values(const model::PushSecret& ps);
  boost::asio::awaitable<kms::Result<std::vector<std::optional<PushMetadata>>>> push_metadata(
      const model::PushSecret& ps, const std::vector<Target>& targets);
  boost::asio::awaitable<kms::Result<std::string>> resource_policy(const std::string& ns,
                                                                   const model::PolicySourceRef& ref);
  boost::asio::awaitable<ReconcileResult> push_all(const model::PushSecret& ps, const StatusContext& ctx,
                                                   const std::vector<Target>& targets,
                                                   const std::vector<kms::SecureBytes>& values);

  KubeApi& api_;
  ProviderSource& providers_;
  StoreResolver resolver_;
  std::function<std::chrono::system_clock::time_point()> now_;
  PushStats stats_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::set<std::string>> readers_;  // "ns/secret" -> PushSecret keys
  std::unordered_map<std::string, std::string> source_of_;          // PushSecret key -> "ns/secret"
};

// The pure steps (what to push), tested without fakes.
// selector.remoteRef: the whole remote value of the source (or the error of
// reading it) with the source's property and decoding applied (read as the
// source provider's `format` says); errors say "could not read the source
// remote key ...".
kms::Result<kms::SecureBytes> remote_source_value(const model::PushSecret& ps, kms::Result<kms::SecureBytes> whole,
                                                  ValueFormat format);
// spec.template applied as ESO's PushSecret controller applies it
// (applyTemplate, engine v2): templateFrom, then template.data, then the
// metadata templates, all rendered over the source Secret's data; every
// source key stays (whatever mergePolicy says) and the rendered keys are
// added or replace theirs. The labels, annotations and type a template sets
// are rendered (their errors count) but pushed nowhere: no push provider
// reads them. No template: the source as it is. Errors are ESO's wrapping,
// "error fetching templateFrom data: ..." or "could not execute template:
// ...", and never contain a value.
kms::Result<SecretMap> templated_source(const model::PushSecret& ps, SecretMap source,
                                        const TemplateSources& config_maps);
// The value each spec.data entry pushes, in order: from the source Secret's
// data (secretKey; empty: the whole Secret as a JSON object of strings) or,
// when `remote` is set, the property secretKey of the remote value (the
// selected and decoded value, read as text: gjson).
kms::Result<std::vector<kms::SecureBytes>> values_to_push(const model::PushSecret& ps, const SecretMap& source,
                                                          const kms::SecureBytes* remote);

}  // namespace rootseal::sync::reconcile
