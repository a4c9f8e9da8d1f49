#include "reconcile/push_secret_reconciler.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <string_view>
#include <vector>

#include "model/parse.hpp"
#include "reconcile/eso_meta.hpp"
#include "rootseal/sync/shard.hpp"
#include "secure_json.hpp"

namespace rootseal::sync::reconcile {

namespace asio = boost::asio;
namespace json = boost::json;
using kms::Errc;

namespace {

std::string ps_key(std::string_view ns, std::string_view name) { return std::string(ns) + "/" + std::string(name); }

std::string_view str_of(const json::value& v, std::string_view a, std::string_view b = {}) {
  if (!v.is_object()) return {};
  const json::value* cur = v.as_object().if_contains(a);
  if (cur != nullptr && !b.empty()) cur = cur->is_object() ? cur->as_object().if_contains(b) : nullptr;
  return (cur != nullptr && cur->is_string()) ? std::string_view(cur->as_string()) : std::string_view{};
}

// The Ready condition and syncedPushSecrets of the object, serialized, for change detection.
std::string current_status(const json::value& obj) {
  const auto* st = obj.as_object().if_contains("status");
  if (st == nullptr || !st->is_object()) return {};
  json::object copy;
  if (const auto* s = st->as_object().if_contains("syncedPushSecrets")) copy["syncedPushSecrets"] = *s;
  if (const auto* c = st->as_object().if_contains("conditions");
      c != nullptr && c->is_array() && !c->as_array().empty()) {
    const auto& c0 = c->as_array()[0];
    copy["status"] = str_of(c0, "status");
    copy["reason"] = str_of(c0, "reason");
    copy["message"] = str_of(c0, "message");
  }
  return json::serialize(copy);
}

// Builders kept out of the coroutines (g++ 12 mishandles braced string
// initializer lists inside coroutine bodies).
json::value status_body(const std::string& now, bool ready, std::string_view reason, const std::string& message,
                        json::object synced, const std::string& synced_rv) {
  json::object cond;
  cond["type"] = "Ready";
  cond["status"] = ready ? "True" : "False";
  cond["reason"] = reason;
  cond["message"] = message;
  cond["lastTransitionTime"] = now;
  json::object st;
  st["refreshTime"] = now;
  st["syncedPushSecrets"] = std::move(synced);
  st["syncedResourceVersion"] = synced_rv;
  json::array conds;
  conds.push_back(std::move(cond));
  st["conditions"] = std::move(conds);
  return st;
}

json::value status_fingerprint(bool ready, std::string_view reason, const std::string& message,
                               const json::object& synced) {
  json::object cmp;
  cmp["syncedPushSecrets"] = synced;
  cmp["status"] = ready ? "True" : "False";
  cmp["reason"] = reason;
  cmp["message"] = message;
  return cmp;
}

json::value finalizers_patch(const std::vector<std::string>& finalizers, bool add) {
  json::array fins;
  for (const auto& f : finalizers) {
    if (f != model::kPushSecretFinalizer) fins.push_back(json::string(f));
  }
  if (add) fins.push_back(json::string(model::kPushSecretFinalizer));
  json::object md;
  md["finalizers"] = std::move(fins);
  json::object p;
  p["metadata"] = std::move(md);
  return p;
}

json::value synced_entry(const model::PushMatch& d) {
  json::object rr;
  rr["remoteKey"] = d.remote_key;
  rr["property"] = d.property;
  json::object match;
  match["secretKey"] = d.secret_key;
  match["remoteRef"] = std::move(rr);
  json::object entry;
  entry["match"] = std::move(match);
  return entry;
}

}  // namespace

PushSecretReconciler::PushSecretReconciler(KubeApi& api, ProviderSource& providers,
                                           std::function<std::chrono::system_clock::time_point()> now)
    : api_(api), providers_(providers), resolver_(api), now_(std::move(now)) {}

std::vector<std::string> PushSecretReconciler::readers_of(const std::string& ns, const std::string& secret) const {
  std::lock_guard lock(mu_);
  auto it = readers_.find(ps_key(ns, secret));
  if (it == readers_.end()) return {};
  return {it->second.begin(), it->second.end()};
}

// What one reconcile writes its status against: the object as read.
struct PushSecretReconciler::StatusContext {
  std::string ns;
  std::string name;
  std::string before;      // current_status() of the object
  std::string synced_rv;   // of the parsed spec; empty when invalid
  model::ObjectMeta meta;  // what events are about (name empty: metadata unreadable, no event)
};

struct PushSecretReconciler::Target {
  std::string label;  // "Kind/name"
  std::shared_ptr<PushProvider> provider;
};

asio::awaitable<ReconcileResult> PushSecretReconciler::reconcile(std::string ns, std::string name) {
  ++stats_.reconciles;
  const std::string key = ps_key(ns, name);
  const ObjectPtr obj = api_.push_secret(ns, name);
  if (!obj) {
    remember_source(key, ns, "");
    co_return ReconcileResult::done();
  }
  auto parsed = model::parse_push_secret(*obj);
  StatusContext ctx{ns, name, current_status(*obj), "", model::parse_meta(*obj).value_or(model::ObjectMeta{})};
  if (!parsed) {
    const std::string msg = "invalid PushSecret: " + parsed.error().message;
    co_await error_status(ctx, msg);
    co_return ReconcileResult::done();
  }
  const model::PushSecret& ps = *parsed;
  ctx.synced_rv = synced_resource_version(ps.meta);
  remember_source(key, ns, ps.source_secret);
  auto targets = co_await resolve_targets(ps);  // every target store, once
  if (ps.meta.being_deleted) co_return co_await finalize(ps, ctx, targets);
  const bool has_finalizer = std::find(ps.meta.finalizers.begin(), ps.meta.finalizers.end(),
                                       model::kPushSecretFinalizer) != ps.meta.finalizers.end();
  if (ps.deletion_policy == model::PushDeletionPolicy::delete_ && !has_finalizer) {
    const json::value fp = finalizers_patch(ps.meta.finalizers, true);
    auto r = co_await api_.patch(Resource::push_secret, ns, name, fp);
    if (!r) co_return ReconcileResult::retry();
  }
  if (!targets) {
    co_await error_status(ctx, targets.error().message);
    co_return ReconcileResult::retry();
  }
  auto values = co_await read_values(ps);
  if (!values) {
    co_await error_status(ctx, values.error().message);
    co_return ReconcileResult::retry();
  }
  co_return co_await push_all(ps, ctx, *targets, *values);
}

void PushSecretReconciler::remember_source(const std::string& key, const std::string& ns, const std::string& secret) {
  std::lock_guard lock(mu_);
  auto it = source_of_.find(key);
  if (secret.empty()) {  // gone, or its source is a remote key
    if (it != source_of_.end()) {
      readers_[it->second].erase(key);
      source_of_.erase(it);
    }
    return;
  }
  const std::string src = ps_key(ns, secret);
  if (it != source_of_.end() && it->second != src) readers_[it->second].erase(key);
  source_of_[key] = src;
  readers_[src].insert(key);
}

asio::awaitable<bool> PushSecretReconciler::write_status(const StatusContext& ctx, bool ready, std::string_view reason,
                                                         const std::string& message, const json::object& synced) {
  if (json::serialize(status_fingerprint(ready, reason, message, synced)) == ctx.before) co_return false;
  const std::string now = rfc3339(now_());
  const json::value st = status_body(now, ready, reason, message, synced, ctx.synced_rv);
  if (auto r = co_await api_.patch_status(Resource::push_secret, ctx.ns, ctx.name, st); r) ++stats_.status_writes;
  co_return true;
}

// As ESO's markAsFailed: Ready=False (Errored) and a Warning event "Errored"
// with the same message; the event once per distinct error, not per retry
// (as the ExternalSecret's UpdateFailed).
asio::awaitable<void> PushSecretReconciler::error_status(const StatusContext& ctx, const std::string& message) {
  ++stats_.errors;
  const json::object no_sync;
  const bool changed = co_await write_status(ctx, false, "Errored", message, no_sync);
  if (changed && !ctx.meta.name.empty()) api_.event(Resource::push_secret, ctx.meta, true, "Errored", message);
}

// Every store of spec.secretStoreRefs through the StoreResolver, with its
// push provider; the first refusal stops (nothing is pushed anywhere).
asio::awaitable<kms::Result<std::vector<PushSecretReconciler::Target>>> PushSecretReconciler::resolve_targets(
    const model::PushSecret& ps) {
  std::vector<Target> targets;
  for (const auto& ref : ps.store_refs) {
    const model::StoreRef sref{ref.name, ref.kind};
    auto store = co_await resolver_.resolve(sref, ps.meta.namespace_);
    const std::string kind(model::to_string(ref.kind));
    if (!store && store.error().code == Errc::not_found) {  // ESO's errGetSecretStore and the API's NotFound
      std::string resource = kind == "ClusterSecretStore" ? "clustersecretstores" : "secretstores";
      co_return kms::fail(Errc::not_found, "could not get " + kind + " \"" + ref.name + "\", " + resource +
                                               ".external-secrets.io \"" + ref.name + "\" not found");
    }
    kms::Result<std::shared_ptr<PushProvider>> p = std::shared_ptr<PushProvider>();
    if (store) {
      p = co_await providers_.push_provider(*store, ps.meta.namespace_);
    } else {
      p = std::unexpected(store.error());
    }
    const std::string label = kind + "/" + ref.name;
    if (!p) {  // ESO: the store's client could not be made
      co_return kms::fail(p.error().code, "set secret failed: could not get secrets client for store " + ref.name +
                                              ": " + p.error().message);
    }
    targets.push_back(Target{label, std::move(*p)});
  }
  co_return targets;
}

// The PushSecret is being deleted: with deletionPolicy Delete every pushed
// remote key goes first; then the finalizer.
asio::awaitable<ReconcileResult> PushSecretReconciler::finalize(const model::PushSecret& ps, const StatusContext& ctx,
                                                                const kms::Result<std::vector<Target>>& targets) {
  const bool has_finalizer = std::find(ps.meta.finalizers.begin(), ps.meta.finalizers.end(),
                                       model::kPushSecretFinalizer) != ps.meta.finalizers.end();
  if (!has_finalizer) co_return ReconcileResult::done();
  if (ps.deletion_policy == model::PushDeletionPolicy::delete_) {
    if (!targets) co_return ReconcileResult::retry();
    for (const auto& t : *targets) {
      for (const auto& d : ps.data) {
        PushRef ref{d.remote_key, d.property};
        if (!api_.may_write(ps.meta.namespace_)) co_return ReconcileResult::done();
        ref.bucket = namespace_bucket(ps.meta.namespace_);
        ref.epoch = api_.write_epoch(ps.meta.namespace_);
        auto r = co_await t.provider->remove(ref);
        if (!r) {
          const std::string msg = "Failed to Delete Secrets from Provider: " + r.error().message;
          co_await error_status(ctx, msg);
          co_return ReconcileResult::retry();
        }
        ++stats_.removals;
      }
    }
  }
  const json::value fp = finalizers_patch(ps.meta.finalizers, false);
  auto r = co_await api_.patch(Resource::push_secret, ctx.ns, ctx.name, fp);
  co_return r ? ReconcileResult::done() : ReconcileResult::retry();
}

// The value of each spec.data entry: reads the source (a Secret, or with
// selector.remoteRef the whole remote value of a store), then the pure
// push steps select.
asio::awaitable<kms::Result<std::vector<kms::SecureBytes>>> PushSecretReconciler::read_values(
    const model::PushSecret& ps) {
  const std::string& ns = ps.meta.namespace_;
  if (ps.source_remote) {
    const auto& src = *ps.source_remote;
    kms::Result<kms::SecureBytes> whole = kms::SecureBytes();
    auto store = co_await resolver_.resolve(src.store, ns);
    kms::Result<std::shared_ptr<Provider>> p = std::shared_ptr<Provider>();
    if (store) {
      p = co_await providers_.provider(*store, ns);
    } else {
      p = std::unexpected(store.error());
    }
    ValueFormat format = ValueFormat::text;
    if (p) {
      const RemoteKey rk{src.ref.key, src.ref.version};
      if (src.ref.fetch_metadata) {
        whole = co_await (*p)->fetch_metadata(rk);
        format = (*p)->metadata_format();
      } else {
        whole = co_await (*p)->fetch(rk);
        format = (*p)->value_format();
      }
    } else {
      whole = std::unexpected(p.error());
    }
    auto remote = remote_source_value(ps, std::move(whole), format);
    if (!remote) co_return std::unexpected(remote.error());
    co_return values_to_push(ps, SecretMap{}, &*remote);
  }
  auto secret = co_await api_.secret(ns, ps.source_secret);
  // ESO's errFailedGetSecret (its message names neither the Secret nor the error).
  if (!secret || !*secret) co_return kms::fail(Errc::not_found, "could not get source secret");
  auto data = secret_data(**secret);
  if (!data) co_return std::unexpected(data.error());
  if (ps.template_) {  // ESO's applyTemplate, in memory: the Secret itself is never changed
    auto sources = co_await template_config_maps(api_, ns, *ps.template_);
    if (!sources) {
      co_return kms::fail(sources.error().code, "error fetching templateFrom data: " + sources.error().message);
    }
    data = templated_source(ps, std::move(*data), *sources);
    if (!data) co_return std::unexpected(data.error());
  }
  co_return values_to_push(ps, *data, nullptr);
}

// Pushes every value to every target (the provider writes only on change),
// then the status with syncedPushSecrets.
asio::awaitable<ReconcileResult> PushSecretReconciler::push_all(const model::PushSecret& ps, const StatusContext& ctx,
                                                                const std::vector<Target>& targets,
                                                                const std::vector<kms::SecureBytes>& values) {
  const bool if_not_exists = ps.update_policy == model::UpdatePolicy::if_not_exists;
  bool wrote = false;
  auto metadata = co_await push_metadata(ps, targets);
  if (!metadata) {
    co_await error_status(ctx, metadata.error().message);
    co_return ReconcileResult::retry();
  }
  json::object synced;
  for (const auto& t : targets) {
    json::object per_store;
    for (std::size_t i = 0; i < ps.data.size(); ++i) {
      const auto& d = ps.data[i];
      const auto& md = (*metadata)[i];
      PushRef ref{d.remote_key, d.property, md ? &*md : nullptr};
      // Sharded across hosts: a bucket lost meanwhile is the new owner's to push.
      if (!api_.may_write(ps.meta.namespace_)) co_return ReconcileResult::done();
      ref.bucket = namespace_bucket(ps.meta.namespace_);
      ref.epoch = api_.write_epoch(ps.meta.namespace_);
      auto out = co_await t.provider->put_if_changed(ref, values[i], if_not_exists);
      if (out && out->newer_epoch != 0) {
        // A newer owner of the bucket wrote this value: this host is a stale
        // owner. Nothing more is written (no status either: the owner's); not
        // an error, so no retry storm: the next try is the usual refresh.
        ++stats_.stale_refused;
        co_return ps.refresh_interval.count() == 0
            ? ReconcileResult::done()
            : ReconcileResult::requeue_after(
                  std::chrono::duration_cast<std::chrono::milliseconds>(ps.refresh_interval));
      }
      if (!out) {
        // ESO's errFailedSetSecret around errSetSecretFailed: the secret key and the store's name.
        const std::string msg = "set secret failed: could not write remote ref " + d.secret_key +
                                " to target secretstore " + t.label.substr(t.label.find('/') + 1) + ": " +
                                out.error().message;
        co_await error_status(ctx, msg);
        co_return ReconcileResult::retry();
      }
      if (out->written) {
        ++stats_.writes;
        wrote = true;
      } else {
        ++stats_.unchanged;
      }
      per_store[d.remote_key] = synced_entry(d);
    }
    synced[t.label] = std::move(per_store);
  }
  // ESO's markAsDone: the condition's message, and a Normal event "Synced"
  // with it — here when something was written or the status changes, not on
  // every idle refresh.
  std::string msg = "PushSecret synced successfully";
  if (if_not_exists) msg += ". Existing secrets in providers unchanged.";
  const bool changed = co_await write_status(ctx, true, "Synced", msg, synced);
  if (wrote || changed) api_.event(Resource::push_secret, ps.meta, false, "Synced", msg);
  if (ps.refresh_interval.count() == 0) co_return ReconcileResult::done();
  co_return ReconcileResult::requeue_after(std::chrono::duration_cast<std::chrono::milliseconds>(ps.refresh_interval));
}

namespace {

// The PushSecretMetadata spec fields a provider applies (ESO's provider of
// that kind); none: it takes no metadata.
std::vector<std::string_view> metadata_fields_applied(std::string_view kind) {
  if (kind == "aws") return {"tags", "description", "secretPushFormat", "kmsKeyId", "resourcePolicy"};
  if (kind == "azure") return {"tags", "contentType", "expirationDate"};
  if (kind == "gcp") return {"labels", "annotations", "mergePolicy"};
  return {};
}

}  // namespace

// Each data[] entry's PushSecretMetadata, its resource policy read from its
// ConfigMap or Secret (in the PushSecret's namespace). Refused for a store
// whose provider does not apply metadata, and by field name for a field
// the store's provider does not apply (AWS: tags, description, ...; Azure:
// tags, contentType, expirationDate; GCP: labels, annotations, mergePolicy).
asio::awaitable<kms::Result<std::vector<std::optional<PushMetadata>>>> PushSecretReconciler::push_metadata(
    const model::PushSecret& ps, const std::vector<Target>& targets) {
  std::vector<std::optional<PushMetadata>> out(ps.data.size());
  for (std::size_t i = 0; i < ps.data.size(); ++i) {
    const auto& d = ps.data[i];
    if (!d.metadata) continue;
    for (const auto& t : targets) {
      const auto applied = metadata_fields_applied(t.provider->kind());
      if (applied.empty()) {
        co_return kms::fail(Errc::invalid_argument,
                            "invalid PushSecret: spec.data[" + std::to_string(i) +
                                "].metadata: not supported by rootseal for " + std::string(t.provider->kind()) +
                                " stores (" + t.label +
                                "); PushSecretMetadata is applied to AWS Secrets Manager, Azure Key Vault and GCP "
                                "Secret Manager only");
      }
      for (const auto& field : d.metadata->fields) {
        if (std::find(applied.begin(), applied.end(), field) != applied.end()) continue;
        co_return kms::fail(Errc::invalid_argument, "invalid PushSecret: spec.data[" + std::to_string(i) +
                                                        "].metadata.spec." + field +
                                                        ": not supported by rootseal for " +
                                                        std::string(t.provider->kind()) + " stores (" + t.label + ")");
      }
    }
    PushMetadata md = *d.metadata;
    if (d.policy_source) {
      auto policy = co_await resource_policy(ps.meta.namespace_, *d.policy_source);
      if (!policy) {
        co_return kms::fail(policy.error().code,
                            "spec.data[" + std::to_string(i) +
                                "].metadata: failed to resolve resource policy: " + policy.error().message);
      }
      md.resource_policy->policy = std::move(*policy);
    }
    out[i] = std::move(md);
  }
  co_return out;
}

// The policy document of a policySourceRef: a ConfigMap's data[key] or a
// Secret's (decoded); it must be a JSON object when not empty (empty: no policy).
asio::awaitable<kms::Result<std::string>> PushSecretReconciler::resource_policy(const std::string& ns,
                                                                                const model::PolicySourceRef& ref) {
  std::string policy;
  const std::string where = ns + "/" + ref.name;
  if (ref.secret) {
    auto secret = co_await api_.secret(ns, ref.name);
    if (!secret || !*secret) co_return kms::fail(Errc::not_found, "failed to get Secret " + where);
    auto data = secret_data(**secret);
    if (!data) co_return std::unexpected(data.error());
    auto it = data->find(ref.key);
    if (it == data->end()) co_return kms::fail(Errc::not_found, "key " + ref.key + " not found in Secret " + where);
    policy.assign(as_view(it->second));
  } else {
    auto cm = co_await api_.config_map(ns, ref.name);
    if (!cm || !*cm) co_return kms::fail(Errc::not_found, "failed to get ConfigMap " + where);
    const json::value& obj = **cm;
    const auto* data = obj.is_object() ? obj.as_object().if_contains("data") : nullptr;
    const auto* v = data != nullptr && data->is_object() ? data->as_object().if_contains(ref.key) : nullptr;
    if (v == nullptr || !v->is_string()) {
      co_return kms::fail(Errc::not_found, "key " + ref.key + " not found in ConfigMap " + where);
    }
    policy.assign(v->as_string());
  }
  if (!policy.empty()) {
    boost::system::error_code ec;
    const auto doc = json::parse(policy, ec);
    if (ec || !doc.is_object()) {
      co_return kms::fail(Errc::invalid_argument, "the policy in " +
                                                      std::string(ref.secret ? "Secret " : "ConfigMap ") + where +
                                                      " key " + ref.key + " is not a JSON object");
    }
  }
  co_return policy;
}

kms::Result<kms::SecureBytes> remote_source_value(const model::PushSecret& ps, kms::Result<kms::SecureBytes> whole,
                                                  ValueFormat format) {
  const auto& src = *ps.source_remote;
  if (whole) whole = select_value(std::move(*whole), src.ref.property, src.ref.decoding, format);
  if (!whole) {
    return kms::fail(whole.error().code,
                     "could not read the source remote key \"" + src.ref.key + "\": " + whole.error().message);
  }
  return whole;
}

kms::Result<SecretMap> templated_source(const model::PushSecret& ps, SecretMap source,
                                        const TemplateSources& config_maps) {
  if (!ps.template_) return source;
  SecretContent out;
  for (const auto& [k, v] : source) out.data.insert_or_assign(k, v.clone());
  auto applied = apply_secret_template(out, *ps.template_, "spec.template", source, config_maps);
  if (!applied) return kms::fail(Errc::invalid_argument, std::move(applied).error().event);
  return std::move(out.data);
}

kms::Result<std::vector<kms::SecureBytes>> values_to_push(const model::PushSecret& ps, const SecretMap& source,
                                                          const kms::SecureBytes* remote) {
  std::vector<kms::SecureBytes> out;
  out.reserve(ps.data.size());
  for (const auto& d : ps.data) {
    if (remote != nullptr) {  // selector.remoteRef: secretKey is a property of the remote value
      auto v = extract_property(*remote, d.secret_key, ValueFormat::text);
      if (!v) return std::unexpected(v.error());
      out.push_back(std::move(*v));
    } else if (d.secret_key.empty()) {  // the whole Secret as a JSON object
      SecureBuffer buf(256);
      json_object_of(source, buf);
      out.push_back(buf.take());
    } else {
      auto it = source.find(d.secret_key);
      if (it == source.end()) {  // ESO's pushSecretEntry, under errFailedSetSecret
        return kms::fail(Errc::not_found, "set secret failed: secret key " + d.secret_key + " does not exist");
      }
      out.push_back(it->second.clone());
    }
  }
  return out;
}

}  // namespace rootseal::sync::reconcile
