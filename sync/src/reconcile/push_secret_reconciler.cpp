#include "reconcile/push_secret_reconciler.hpp"

#include <boost/json.hpp>

#include "model/parse.hpp"
#include "reconcile/eso_meta.hpp"
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
  if (const auto* c = st->as_object().if_contains("conditions"); c != nullptr && c->is_array() && !c->as_array().empty()) {
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

json::value status_fingerprint(bool ready, std::string_view reason, const std::string& message, const json::object& synced) {
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

asio::awaitable<ReconcileResult> PushSecretReconciler::reconcile(std::string ns, std::string name) {
  ++stats_.reconciles;
  const std::string key = ps_key(ns, name);
  const ObjectPtr obj = api_.push_secret(ns, name);
  auto forget_source = [&] {
    std::lock_guard lock(mu_);
    if (auto it = source_of_.find(key); it != source_of_.end()) {
      readers_[it->second].erase(key);
      source_of_.erase(it);
    }
  };
  if (!obj) {
    forget_source();
    co_return ReconcileResult::done();
  }
  auto parsed = model::parse_push_secret(*obj);
  const std::string before = current_status(*obj);
  // Called only with named arguments (g++ 12 double-destroys non-trivial
  // temporaries of a co_await expression).
  auto write_status = [&](bool ready, std::string_view reason, const std::string& message,
                          const json::object& synced) -> asio::awaitable<void> {
    if (json::serialize(status_fingerprint(ready, reason, message, synced)) == before) co_return;
    const std::string now = rfc3339(now_());
    std::string srv;
    if (parsed) srv = synced_resource_version(parsed->meta);
    json::value st = status_body(now, ready, reason, message, synced, srv);
    if (auto r = co_await api_.patch_status(Resource::push_secret, ns, name, st); r) {
      ++stats_.status_writes;
    }
  };
  const json::object no_sync;
  if (!parsed) {
    ++stats_.errors;
    {
      const std::string status_msg = "invalid PushSecret: " + parsed.error().message;
      co_await write_status(false, "Errored", status_msg, no_sync);
    }
    co_return ReconcileResult::done();
  }
  const model::PushSecret& ps = *parsed;
  if (!ps.source_secret.empty()) {
    std::lock_guard lock(mu_);
    const std::string src = ps_key(ns, ps.source_secret);
    if (auto it = source_of_.find(key); it != source_of_.end() && it->second != src) readers_[it->second].erase(key);
    source_of_[key] = src;
    readers_[src].insert(key);
  }
  const bool has_finalizer =
      std::find(ps.meta.finalizers.begin(), ps.meta.finalizers.end(), model::kPushSecretFinalizer) != ps.meta.finalizers.end();

  // Resolve every target store once.
  struct Target {
    std::string label;  // "Kind/name"
    std::shared_ptr<PushProvider> provider;
  };
  std::vector<Target> targets;
  std::string resolve_error;
  for (const auto& ref : ps.store_refs) {
    const model::StoreRef sref{ref.name, ref.kind};
    const std::string label = std::string(model::to_string(ref.kind)) + "/" + ref.name;
    auto store = co_await resolver_.resolve(sref, ns);
    if (!store) {
      resolve_error = store.error().message;
      break;
    }
    auto p = co_await providers_.push_provider(*store, ns);
    if (!p) {
      resolve_error = label + ": " + p.error().message;
      break;
    }
    targets.push_back(Target{label, std::move(*p)});
  }

  // Deletion.
  if (ps.meta.being_deleted) {
    if (!has_finalizer) co_return ReconcileResult::done();
    if (ps.deletion_policy == model::PushDeletionPolicy::delete_) {
      if (!resolve_error.empty()) co_return ReconcileResult::retry();
      for (auto& t : targets) {
        for (const auto& d : ps.data) {
          const PushRef ref{d.remote_key, d.property};
          auto r = co_await t.provider->remove(ref);
          if (!r) {
            ++stats_.errors;
            {
              const std::string status_msg = "could not delete " + t.label + " key \"" + d.remote_key + "\": " + r.error().message;
              co_await write_status(false, "Errored", status_msg, no_sync);
            }
            co_return ReconcileResult::retry();
          }
          ++stats_.removals;
        }
      }
    }
    const json::value fp = finalizers_patch(ps.meta.finalizers, false);
    auto r = co_await api_.patch(Resource::push_secret, ns, name, fp);
    co_return r ? ReconcileResult::done() : ReconcileResult::retry();
  }
  if (ps.deletion_policy == model::PushDeletionPolicy::delete_ && !has_finalizer) {
    const json::value fp = finalizers_patch(ps.meta.finalizers, true);
    auto r = co_await api_.patch(Resource::push_secret, ns, name, fp);
    if (!r) co_return ReconcileResult::retry();
  }
  if (!resolve_error.empty()) {
    ++stats_.errors;
    {
      const std::string status_msg = resolve_error;
      co_await write_status(false, "Errored", status_msg, no_sync);
    }
    co_return ReconcileResult::retry();
  }

  // Source values.
  SecretMap source;
  kms::SecureBytes whole_json;
  if (ps.source_remote) {
    const auto& src = *ps.source_remote;
    kms::Result<kms::SecureBytes> value = kms::SecureBytes();
    auto store = co_await resolver_.resolve(src.store, ns);
    if (!store) {
      value = std::unexpected(store.error());
    } else {
      auto p = co_await providers_.provider(*store, ns);
      if (!p) {
        value = std::unexpected(p.error());
      } else {
        const RemoteRef whole{src.ref.key, src.ref.property, src.ref.version, src.ref.decoding};
        value = co_await (*p)->fetch(whole);
      }
    }
    if (!value) {
      ++stats_.errors;
      {
        const std::string status_msg = "could not read the source remote key \"" + src.ref.key + "\": " + value.error().message;
        co_await write_status(false, "Errored", status_msg, no_sync);
      }
      co_return ReconcileResult::retry();
    }
    whole_json = std::move(*value);
  } else {
    auto secret = co_await api_.secret(ns, ps.source_secret);
    if (!secret || !*secret) {
      ++stats_.errors;
      {
        const std::string status_msg = "source Secret \"" + ps.source_secret + "\" not found";
        co_await write_status(false, "Errored", status_msg, no_sync);
      }
      co_return ReconcileResult::retry();
    }
    auto data = secret_data(**secret);
    if (!data) co_return ReconcileResult::retry();
    source = std::move(*data);
  }

  json::object synced;
  for (auto& t : targets) {
    json::object per_store;
    for (const auto& d : ps.data) {
      kms::Result<kms::SecureBytes> value = kms::SecureBytes();
      if (ps.source_remote) {
        value = extract_property(whole_json, d.secret_key);
      } else if (d.secret_key.empty()) {
        SecureBuffer buf(256);
        json_object_of(source, buf);
        value = buf.take();
      } else {
        auto it = source.find(d.secret_key);
        if (it == source.end()) {
          value = kms::fail(Errc::not_found, "source Secret has no key \"" + d.secret_key + "\"");
        } else {
          value = it->second.clone();
        }
      }
      if (!value) {
        ++stats_.errors;
        {
          const std::string status_msg = value.error().message;
          co_await write_status(false, "Errored", status_msg, no_sync);
        }
        co_return ReconcileResult::retry();
      }
      const PushRef ref{d.remote_key, d.property};
      const bool if_not_exists = ps.update_policy == model::UpdatePolicy::if_not_exists;
      auto out = co_await t.provider->put_if_changed(ref, *value, if_not_exists);
      if (!out) {
        ++stats_.errors;
        {
          const std::string status_msg = "could not push to " + t.label + " key \"" + d.remote_key + "\": " + out.error().message;
          co_await write_status(false, "Errored", status_msg, no_sync);
        }
        co_return ReconcileResult::retry();
      }
      if (out->written) {
        ++stats_.writes;
        api_.event(Resource::push_secret, ps.meta, false, "Synced", "pushed " + t.label + " key \"" + d.remote_key + "\"");
      } else {
        ++stats_.unchanged;
      }
      per_store[d.remote_key] = synced_entry(d);
    }
    synced[t.label] = std::move(per_store);
  }
  {
    const std::string status_msg = "PushSecret synced successfully";
    co_await write_status(true, "Synced", status_msg, std::move(synced));
  }
  if (ps.refresh_interval.count() == 0) co_return ReconcileResult::done();
  co_return ReconcileResult::requeue_after(std::chrono::duration_cast<std::chrono::milliseconds>(ps.refresh_interval));
}

}  // namespace rootseal::sync::reconcile
