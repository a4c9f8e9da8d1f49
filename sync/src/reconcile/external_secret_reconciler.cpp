#include "reconcile/external_secret_reconciler.hpp"

#include <boost/json.hpp>

#include <ctime>

#include "let.hpp"
#include "model/parse.hpp"
#include "reconcile/eso_meta.hpp"
#include "rootseal/kms/encoding.hpp"
#include "secure_json.hpp"
#include "template.hpp"

namespace rootseal::sync::reconcile {

namespace asio = boost::asio;
namespace json = boost::json;
using kms::Errc;

std::string_view to_string(Resource r) noexcept {
  switch (r) {
    case Resource::external_secret: return "ExternalSecret";
    case Resource::push_secret: return "PushSecret";
    case Resource::secret: return "Secret";
    case Resource::deployment: return "Deployment";
    case Resource::stateful_set: return "StatefulSet";
    case Resource::daemon_set: return "DaemonSet";
  }
  return "?";
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

namespace {

constexpr std::string_view kReasonSynced = "SecretSynced";
constexpr std::string_view kReasonError = "SecretSyncedError";
constexpr std::string_view kReasonDeleted = "SecretDeleted";
constexpr std::string_view kReasonMissing = "SecretMissing";

std::string key_of(std::string_view ns, std::string_view name) {
  std::string k(ns);
  k.push_back('/');
  k.append(name);
  return k;
}

// A string field (one or two levels deep); empty when absent. (No
// initializer lists: g++ 12 miscompiles braced string lists in coroutines.)
std::string_view str_at(const json::value& v, std::string_view a, std::string_view b = {}) {
  if (!v.is_object()) return {};
  const json::value* cur = v.as_object().if_contains(a);
  if (cur != nullptr && !b.empty()) cur = cur->is_object() ? cur->as_object().if_contains(b) : nullptr;
  return (cur != nullptr && cur->is_string()) ? std::string_view(cur->as_string()) : std::string_view{};
}

std::string_view obj_str(const json::object* o, std::string_view k) {
  const auto* v = o == nullptr ? nullptr : o->if_contains(k);
  return (v != nullptr && v->is_string()) ? std::string_view(v->as_string()) : std::string_view{};
}

std::string property_part(const std::string& property) {
  if (property.empty()) return {};
  return " property \"" + property + "\"";
}

// The controller ownerReference of an object, if any.
const json::object* controller_of(const json::value& obj) {
  const auto* md = obj.as_object().if_contains("metadata");
  if (md == nullptr || !md->is_object()) return nullptr;
  const auto* refs = md->as_object().if_contains("ownerReferences");
  if (refs == nullptr || !refs->is_array()) return nullptr;
  for (const auto& r : refs->as_array()) {
    if (!r.is_object()) continue;
    const auto* c = r.as_object().if_contains("controller");
    if (c != nullptr && c->is_bool() && c->as_bool()) return &r.as_object();
  }
  return nullptr;
}

const json::object* object_at(const json::value& v, std::string_view a, std::string_view b) {
  if (!v.is_object()) return nullptr;
  const auto* x = v.as_object().if_contains(a);
  if (x == nullptr || !x->is_object()) return nullptr;
  const auto* y = x->as_object().if_contains(b);
  return (y != nullptr && y->is_object()) ? &y->as_object() : nullptr;
}

bool has_entry(const json::object* m, std::string_view k, std::string_view v) {
  if (m == nullptr) return false;
  const auto* x = m->if_contains(k);
  return x != nullptr && x->is_string() && x->as_string() == v;
}

// A Secret is "valid" in ESO's sense: managed label, and the data-hash
// annotation matches its data.
bool secret_valid(const json::value& secret) {
  if (!has_entry(object_at(secret, "metadata", "labels"), kManagedLabel, "true")) return false;
  const auto* ann = object_at(secret, "metadata", "annotations");
  if (ann == nullptr) return false;
  const auto* h = ann->if_contains(kDataHashAnnotation);
  if (h == nullptr || !h->is_string()) return false;
  auto data = secret_data(secret);
  if (!data) return false;
  return data_hash(*data) == h->as_string();
}

struct ResolvedStore {
  model::SecretStore store;
  std::shared_ptr<Provider> provider;
  std::string id;
};

}  // namespace

ExternalSecretReconciler::ExternalSecretReconciler(KubeApi& api, ProviderSource& providers, FetchCache& cache,
                                                   ReconcilerOptions options)
    : api_(api), providers_(providers), cache_(cache), resolver_(api), options_(std::move(options)) {}

std::vector<std::string> ExternalSecretReconciler::writers_of(const std::string& ns, const std::string& secret) const {
  std::lock_guard lock(mu_);
  auto it = writers_.find(key_of(ns, secret));
  if (it == writers_.end()) return {};
  return {it->second.begin(), it->second.end()};
}

void ExternalSecretReconciler::remember_target(const std::string& key, const std::string& ns, const std::string& target) {
  std::lock_guard lock(mu_);
  auto& st = state_[key];
  if (st.target == target) return;
  if (!st.target.empty()) {
    auto it = writers_.find(key_of(ns, st.target));
    if (it != writers_.end()) {
      it->second.erase(key);
      if (it->second.empty()) writers_.erase(it);
    }
  }
  st.target = target;
  writers_[key_of(ns, target)].insert(key);
}

std::chrono::milliseconds ExternalSecretReconciler::next_refresh_in(const model::ExternalSecret& es,
                                                                    std::chrono::system_clock::time_point last) const {
  using namespace std::chrono;
  const auto interval = duration_cast<milliseconds>(es.refresh_interval);
  const auto window = std::max(options_.refresh_window, milliseconds(1));
  auto due = last + interval;
  // Quantize to the window so that refreshes due together fetch together.
  const auto since_epoch = duration_cast<milliseconds>(due.time_since_epoch());
  const auto rem = since_epoch % window;
  if (rem.count() != 0) due += window - rem;
  const auto now = options_.now();
  return due <= now ? milliseconds(0) : duration_cast<milliseconds>(due - now);
}

asio::awaitable<ReconcileResult> ExternalSecretReconciler::reconcile(std::string ns, std::string name) {
  ++stats_.reconciles;
  const std::string key = key_of(ns, name);
  const ObjectPtr obj = api_.external_secret(ns, name);
  if (!obj) {
    std::lock_guard lock(mu_);
    if (auto it = state_.find(key); it != state_.end()) {
      if (!it->second.target.empty()) {
        auto w = writers_.find(key_of(ns, it->second.target));
        if (w != writers_.end()) {
          w->second.erase(key);
          if (w->second.empty()) writers_.erase(w);
        }
      }
      state_.erase(it);
    }
    co_return ReconcileResult::done();
  }
  co_return co_await run(key, *obj);
}

asio::awaitable<void> ExternalSecretReconciler::set_status(const model::ExternalSecret& es, bool ready,
                                                           std::string_view reason, const std::string& message,
                                                           const std::string& synced_rv) {
  const std::string status = ready ? "True" : "False";
  const auto& cur = es.status;
  if (cur.ready_status == status && cur.ready_reason == reason && cur.ready_message == message &&
      cur.synced_resource_version == synced_rv && cur.binding_name == es.target.name) {
    co_return;  // nothing changed: no write
  }
  const std::string now = rfc3339(options_.now());
  std::string transition = now;  // (no ?: on strings in coroutines: g++ 12 double-destroys temporaries)
  if (cur.ready_status == status && !cur.ready_transition.empty()) transition = cur.ready_transition;
  json::object cond;
  cond["type"] = "Ready";
  cond["status"] = status;
  cond["reason"] = reason;
  cond["message"] = message;
  cond["lastTransitionTime"] = transition;
  json::object st;
  st["refreshTime"] = now;
  st["syncedResourceVersion"] = synced_rv;
  json::object binding;
  binding["name"] = es.target.name;
  st["binding"] = std::move(binding);
  json::array conds;
  conds.push_back(std::move(cond));
  st["conditions"] = std::move(conds);
  const json::value body(std::move(st));  // named: no non-trivial temporaries in a co_await (g++ 12)
  auto r = co_await api_.patch_status(Resource::external_secret, es.meta.namespace_, es.meta.name, body);
  if (r) ++stats_.status_writes;
}

asio::awaitable<ReconcileResult> ExternalSecretReconciler::fail(const std::string& key, const model::ExternalSecret& es,
                                                                std::string_view reason, const std::string& message,
                                                                bool retry) {
  ++stats_.errors;
  bool new_error = false;
  {
    std::lock_guard lock(mu_);
    auto& st = state_[key];
    new_error = st.last_error != message;
    st.last_error = message;
    st.synced_rv.clear();  // force a refresh on the next attempt
  }
  if (new_error) api_.event(Resource::external_secret, es.meta, true, "UpdateFailed", message);
  co_await set_status(es, false, reason, message, es.status.synced_resource_version);
  co_return retry ? ReconcileResult::retry() : ReconcileResult::done();
}

asio::awaitable<ReconcileResult> ExternalSecretReconciler::run(const std::string& key, const json::value& object) {
  using namespace std::chrono;
  auto parsed = model::parse_external_secret(object);
  if (!parsed) {
    // An invalid spec: Ready=False with the precise message; no retry until it changes.
    model::ExternalSecret shell;
    auto meta = model::parse_meta(object);
    if (!meta) co_return ReconcileResult::done();
    shell.meta = std::move(*meta);
    shell.target.name = shell.meta.name;
    if (auto p = model::parse_external_secret(object); !p) {
      // status fields of the shell come from the object, for change detection
      const auto* st = object.as_object().if_contains("status");
      if (st != nullptr && st->is_object()) {
        shell.status.synced_resource_version = std::string(str_at(*st, "syncedResourceVersion"));
        shell.status.binding_name = std::string(str_at(*st, "binding", "name"));
        const auto* conds = st->as_object().if_contains("conditions");
        if (conds != nullptr && conds->is_array()) {
          for (const auto& c : conds->as_array()) {
            if (str_at(c, "type") != "Ready") continue;
            shell.status.ready_status = std::string(str_at(c, "status"));
            shell.status.ready_reason = std::string(str_at(c, "reason"));
            shell.status.ready_message = std::string(str_at(c, "message"));
            shell.status.ready_transition = std::string(str_at(c, "lastTransitionTime"));
          }
        }
      }
    }
    {
      const std::string fail_msg = "invalid ExternalSecret: " + parsed.error().message;
      co_return co_await fail(key, shell, kReasonError, fail_msg, false);
    }
  }
  model::ExternalSecret es = std::move(*parsed);
  if (es.meta.being_deleted) co_return ReconcileResult::done();
  const std::string& ns = es.meta.namespace_;
  remember_target(key, ns, es.target.name);

  // Templates are checked before anything is fetched.
  if (es.target.template_) {
    for (const auto& [k, text] : es.target.template_->data) {
      if (auto ok = check_template(text); !ok) {
        {
          const std::string fail_msg = "invalid ExternalSecret: spec.target.template.data." + k + ": " + ok.error().message;
          co_return co_await fail(key, es, kReasonError, fail_msg, false);
        }
      }
    }
  }

  const std::string synced_rv = synced_resource_version(es.meta);
  State st;
  {
    std::lock_guard lock(mu_);
    st = state_[key];
  }
  const auto now = options_.now();

  // Is a refresh due? (ESO's shouldRefresh + isSecretValid)
  auto existing_r = co_await api_.secret(ns, es.target.name);
  if (!existing_r) {
    {
      const std::string fail_msg = "could not read Secret: " + existing_r.error().message;
      co_return co_await fail(key, es, kReasonError, fail_msg, true);
    }
  }
  ObjectPtr existing = *existing_r;
  const bool spec_changed = st.synced_rv != synced_rv;
  bool due = spec_changed;
  if (!due) {
    switch (es.refresh_policy) {
      case model::RefreshPolicy::created_once: due = false; break;
      case model::RefreshPolicy::on_change: due = false; break;
      case model::RefreshPolicy::periodic:
        due = es.refresh_interval.count() > 0 && next_refresh_in(es, st.last_refresh).count() == 0;
        break;
    }
  }
  bool valid = true;
  if (es.target.creation == model::CreationPolicy::orphan || es.target.creation == model::CreationPolicy::none) {
    valid = true;
  } else if (!existing) {
    valid = false;
  } else {
    valid = secret_valid(*existing);
  }
  if (es.refresh_policy == model::RefreshPolicy::created_once && existing && !spec_changed) due = false;
  if (!due && valid) {
    ++stats_.skipped;
    if (es.refresh_policy != model::RefreshPolicy::periodic || es.refresh_interval.count() == 0) {
      co_return ReconcileResult::done();
    }
    co_return ReconcileResult::requeue_after(std::max(next_refresh_in(es, st.last_refresh), milliseconds(1)));
  }

  // ---- fetch -------------------------------------------------------------------
  ++stats_.fetched;
  std::map<std::string, ResolvedStore> stores;  // by "Kind/name"
  auto resolve = [&](const model::StoreRef& ref) -> asio::awaitable<kms::Result<ResolvedStore*>> {
    const std::string id = std::string(model::to_string(ref.kind)) + "/" + ref.name;
    if (auto it = stores.find(id); it != stores.end()) co_return &it->second;
    auto parsed_store = co_await resolver_.resolve(ref, ns);
    if (!parsed_store) co_return std::unexpected(parsed_store.error());
    auto provider = co_await providers_.provider(*parsed_store, ns);
    if (!provider) co_return std::unexpected(provider.error());
    ResolvedStore rs;
    rs.id = id + "@" + parsed_store->meta.uid + ":" + parsed_store->meta.resource_version;
    rs.store = std::move(*parsed_store);
    rs.provider = std::move(*provider);
    auto [it, inserted] = stores.emplace(id, std::move(rs));
    (void)inserted;
    co_return &it->second;
  };
  auto fetch_whole = [&](ResolvedStore& rs, const RemoteRef& ref) -> Task<kms::SecureBytes> {
    std::shared_ptr<Provider> provider = rs.provider;
    RemoteRef whole{ref.key, "", ref.version, DecodingStrategy::none};
    FetchCache::Fetch f = [provider, whole]() -> Task<kms::SecureBytes> { co_return co_await provider->fetch(whole); };
    const std::string cache_key = fetch_key(rs.id, ref.key, ref.version);
    co_return co_await cache_.get(cache_key, f);
  };

  SecretMap provider_data;
  std::vector<std::string> missing;
  bool store_refused = false;
  // dataFrom first, data[] overrides (ESO's order).
  for (std::size_t i = 0; i < es.data_from.size(); ++i) {
    const auto& item = es.data_from[i];
    const auto& ref = item.store_override ? *item.store_override : es.store_ref;
    auto rs = co_await resolve(ref);
    if (!rs) {
      store_refused = rs.error().code == Errc::permission_denied;
      {
        const std::string fail_msg = rs.error().message;
        co_return co_await fail(key, es, kReasonError, fail_msg, !store_refused);
      }
    }
    auto whole = co_await fetch_whole(**rs, item.extract);
    if (!whole && whole.error().code == Errc::not_found && es.target.deletion != model::DeletionPolicy::retain) {
      missing.push_back(item.extract.key);
      continue;
    }
    if (!whole) {
      {
        const std::string fail_msg = "could not get secret data from provider: " + store_label(ref) + " key \"" +
                                  item.extract.key + "\": " + whole.error().message;
        co_return co_await fail(key, es, kReasonError, fail_msg, true);
      }
    }
    auto map = extract_map(*whole);
    if (!map) {
      {
        const std::string fail_msg = "spec.dataFrom[" + std::to_string(i) + "].extract: key \"" + item.extract.key + "\": " + map.error().message;
        co_return co_await fail(key, es, kReasonError, fail_msg, true);
      }
    }
    for (auto& [k, v] : *map) {
      auto dec = apply_decoding(item.extract.decoding, std::move(v));
      if (!dec) {
        {
          const std::string fail_msg = "spec.dataFrom[" + std::to_string(i) + "]: key \"" + k + "\": " + dec.error().message;
          co_return co_await fail(key, es, kReasonError, fail_msg, false);
        }
      }
      provider_data.insert_or_assign(k, std::move(*dec));
    }
  }
  for (std::size_t i = 0; i < es.data.size(); ++i) {
    const auto& item = es.data[i];
    const auto& ref = item.store_override ? *item.store_override : es.store_ref;
    auto rs = co_await resolve(ref);
    if (!rs) {
      store_refused = rs.error().code == Errc::permission_denied;
      {
        const std::string fail_msg = rs.error().message;
        co_return co_await fail(key, es, kReasonError, fail_msg, !store_refused);
      }
    }
    auto whole = co_await fetch_whole(**rs, item.remote_ref);
    // (No ?: with temporaries here: g++ 12 destroys them twice in coroutines.)
    kms::Result<kms::SecureBytes> value = kms::SecureBytes();
    if (whole) {
      value = extract_property(*whole, item.remote_ref.property);
    } else {
      value = std::unexpected(whole.error());
    }
    if (!value && value.error().code == Errc::not_found && es.target.deletion != model::DeletionPolicy::retain) {
      missing.push_back(item.remote_ref.key);
      continue;
    }
    if (!value) {
      {
        const std::string fail_msg = "could not get secret data from provider: " + store_label(ref) + " key \"" +
                                  item.remote_ref.key + "\"" +
                                  property_part(item.remote_ref.property) +
                                  ": " + value.error().message;
        co_return co_await fail(key, es, kReasonError, fail_msg, true);
      }
    }
    auto dec = apply_decoding(item.remote_ref.decoding, std::move(*value));
    if (!dec) {
      {
        const std::string fail_msg = "spec.data[" + std::to_string(i) + "] (" + item.secret_key + "): " + dec.error().message;
        co_return co_await fail(key, es, kReasonError, fail_msg, false);
      }
    }
    provider_data.insert_or_assign(item.secret_key, std::move(*dec));
  }
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) {
      if (!list.empty()) list += ", ";
      list += m;
    }
    api_.event(Resource::external_secret, es.meta, true, "MissingProviderSecret", "remote keys not found, skipped: " + list);
  }

  // ---- template ---------------------------------------------------------------
  SecretMap data;
  const auto& tmpl = es.target.template_;
  if (tmpl && !tmpl->data.empty()) {
    if (tmpl->merge_policy == model::MergePolicy::merge) {
      for (auto& [k, v] : provider_data) data.insert_or_assign(k, v.clone());
    }
    for (const auto& [k, text] : tmpl->data) {
      auto r = render_template(text, provider_data);
      if (!r) {
        {
          const std::string fail_msg = "spec.target.template.data." + k + ": " + r.error().message;
          co_return co_await fail(key, es, kReasonError, fail_msg, false);
        }
      }
      data.insert_or_assign(k, std::move(*r));
    }
  } else {
    data = std::move(provider_data);
  }

  // ---- write ----------------------------------------------------------------------
  const auto cp = es.target.creation;
  const bool nothing = data.empty() && !missing.empty();
  auto succeed = [&](std::string_view reason, std::string_view message_sv, bool ready) -> asio::awaitable<ReconcileResult> {
    const std::string message(message_sv);
    {
      std::lock_guard lock(mu_);
      auto& s = state_[key];
      s.last_refresh = now;
      s.synced_rv = synced_rv;
      s.last_error.clear();
    }
    co_await set_status(es, ready, reason, message, synced_rv);
    if (es.refresh_policy != model::RefreshPolicy::periodic || es.refresh_interval.count() == 0) {
      co_return ReconcileResult::done();
    }
    co_return ReconcileResult::requeue_after(std::max(next_refresh_in(es, now), milliseconds(1)));
  };

  if (cp == model::CreationPolicy::none) co_return co_await succeed(kReasonSynced, "secret synced", true);

  if (nothing && es.target.deletion == model::DeletionPolicy::delete_) {
    if (existing && cp == model::CreationPolicy::owner) {
      const auto* ctl = controller_of(*existing);
      if (ctl != nullptr && obj_str(ctl, "uid") == es.meta.uid) {
        auto d = co_await api_.delete_secret(ns, es.target.name, str_at(*existing, "metadata", "uid"));
        if (!d && d.error().code != Errc::not_found) {
          {
            const std::string fail_msg = "could not delete Secret: " + d.error().message;
            co_return co_await fail(key, es, kReasonError, fail_msg, true);
          }
        }
        ++stats_.secret_writes;
        api_.event(Resource::external_secret, es.meta, false, "Deleted", "secret deleted due to DeletionPolicy=Delete");
      }
    }
    co_return co_await succeed(kReasonDeleted, "secret deleted due to DeletionPolicy", false);
  }
  if (nothing && es.target.deletion == model::DeletionPolicy::retain) {
    co_return co_await succeed(kReasonSynced, "secret retained due to DeletionPolicy=Retain", true);
  }

  if (!existing && cp == model::CreationPolicy::merge) {
    {
      const std::string fail_msg = "Secret \"" + es.target.name + "\" does not exist (creationPolicy Merge only updates an existing Secret)";
      co_return co_await fail(key, es, kReasonMissing, fail_msg, true);
    }
  }
  if (existing && cp == model::CreationPolicy::owner) {
    const auto* ctl = controller_of(*existing);
    if (ctl != nullptr && obj_str(ctl, "uid") != es.meta.uid) {
      {
        const std::string fail_msg = "Secret \"" + es.target.name + "\" is controlled by another owner (" +
                                  std::string(obj_str(ctl, "kind")) + "/" +
                                  std::string(obj_str(ctl, "name")) + ")";
        co_return co_await fail(key, es, kReasonError, fail_msg, true);
      }
    }
  }
  const bool merge = cp == model::CreationPolicy::merge || cp == model::CreationPolicy::create_or_merge;
  SecretMap final_data;
  if (existing && merge) {
    auto cur = secret_data(*existing);
    if (!cur) {
   const std::string fail_msg = cur.error().message;
   co_return co_await fail(key, es, kReasonError, fail_msg, false);
 }
    final_data = std::move(*cur);
  }
  for (auto& [k, v] : data) final_data.insert_or_assign(k, std::move(v));
  const std::string hash = data_hash(final_data);

  // Desired metadata.
  model::StringMap want_labels;
  model::StringMap want_ann;
  std::string want_type;
  if (tmpl) {
    want_labels = tmpl->labels;
    want_ann = tmpl->annotations;
    if (tmpl->type) want_type = *tmpl->type;
  }
  want_labels[std::string(kManagedLabel)] = "true";
  if (cp == model::CreationPolicy::owner) want_labels[std::string(kCreatedByLabel)] = created_by(ns, es.meta.name);
  want_ann[std::string(kDataHashAnnotation)] = hash;

  bool up_to_date = false;
  if (existing) {
    auto cur = secret_data(*existing);
    up_to_date = cur && data_hash(*cur) == hash;
    const auto* labels = object_at(*existing, "metadata", "labels");
    const auto* anns = object_at(*existing, "metadata", "annotations");
    for (const auto& [k, v] : want_labels) up_to_date = up_to_date && has_entry(labels, k, v);
    for (const auto& [k, v] : want_ann) up_to_date = up_to_date && has_entry(anns, k, v);
    if (!want_type.empty()) up_to_date = up_to_date && str_at(*existing, "type") == want_type;
    if (cp == model::CreationPolicy::owner) {
      const auto* ctl = controller_of(*existing);
      up_to_date = up_to_date && ctl != nullptr;
    }
  }
  if (up_to_date) co_return co_await succeed(kReasonSynced, "secret synced", true);

  if (existing && existing->as_object().if_contains("immutable") != nullptr &&
      existing->as_object().at("immutable").is_bool() && existing->as_object().at("immutable").as_bool()) {
    {
      const std::string fail_msg = "Secret \"" + es.target.name + "\" is immutable and its data differs";
      co_return co_await fail(key, es, kReasonError, fail_msg, false);
    }
  }

  // Build the Secret body in locked memory.
  json::storage_ptr sp = make_secure_storage();
  json::value body(json::object_kind, sp);
  if (existing) body = json::value(*existing, sp);
  json::object& o = body.as_object();
  o["apiVersion"] = "v1";
  o["kind"] = "Secret";
  if (!o.contains("metadata") || !o["metadata"].is_object()) o["metadata"] = json::object(sp);
  json::object& md = o["metadata"].as_object();
  md["name"] = es.target.name;
  md["namespace"] = ns;
  md.erase("managedFields");
  if (!md.contains("labels") || !md["labels"].is_object()) md["labels"] = json::object(sp);
  if (!md.contains("annotations") || !md["annotations"].is_object()) md["annotations"] = json::object(sp);
  for (const auto& [k, v] : want_labels) md["labels"].as_object()[k] = v;
  for (const auto& [k, v] : want_ann) md["annotations"].as_object()[k] = v;
  if (cp == model::CreationPolicy::owner) {
    json::array refs(sp);
    if (md.contains("ownerReferences") && md["ownerReferences"].is_array()) {
      for (const auto& r : md["ownerReferences"].as_array()) {
        if (r.is_object() && r.as_object().contains("controller") && r.as_object().at("controller").is_bool() &&
            r.as_object().at("controller").as_bool()) {
          continue;
        }
        refs.push_back(r);
      }
    }
    json::object ref(sp);
    ref["apiVersion"] = "external-secrets.io/v1";
    ref["kind"] = "ExternalSecret";
    ref["name"] = es.meta.name;
    ref["uid"] = es.meta.uid;
    ref["controller"] = true;
    ref["blockOwnerDeletion"] = true;
    refs.push_back(std::move(ref));
    md["ownerReferences"] = std::move(refs);
  }
  if (!want_type.empty()) o["type"] = want_type;
  else if (!o.contains("type")) o["type"] = "Opaque";
  if (es.target.immutable) o["immutable"] = true;
  o.erase("stringData");
  json::object data_obj(sp);
  for (const auto& [k, v] : final_data) {
    kms::SecureBytes b64 = kms::base64_encode_secure(v.span());
    data_obj[k] = json::string(as_view(b64), sp);
  }
  o["data"] = std::move(data_obj);

  const std::string fm = field_manager(es.meta.name);
  kms::Result<ObjectPtr> written = ObjectPtr{};
  if (existing) {
    written = co_await api_.update_secret(ns, body, fm);
  } else {
    written = co_await api_.create_secret(ns, body, fm);
  }
  if (!written) {
    if (written.error().code == Errc::conflict || written.error().code == Errc::already_exists) {
      ++stats_.conflicts;
      co_return ReconcileResult::requeue_now();
    }
    {
      const std::string fail_msg = "could not write Secret: " + written.error().message;
      co_return co_await fail(key, es, kReasonError, fail_msg, true);
    }
  }
  ++stats_.secret_writes;
  api_.event(Resource::external_secret, es.meta, false, existing ? "Updated" : "Created",
             existing ? "Updated Secret" : "Created Secret");
  if (secret_changed_) secret_changed_(ns, es.target.name);
  co_return co_await succeed(kReasonSynced, "secret synced", true);
}

asio::awaitable<void> ExternalSecretReconciler::deleted(std::shared_ptr<const json::value> last) {
  auto es = model::parse_external_secret(*last);
  if (!es || es->target.creation != model::CreationPolicy::owner) co_return;
  auto existing = co_await api_.secret(es->meta.namespace_, es->target.name);
  if (!existing || !*existing) co_return;
  const auto* ctl = controller_of(**existing);
  if (ctl == nullptr || obj_str(ctl, "uid") != es->meta.uid || es->meta.uid.empty()) co_return;
  auto d = co_await api_.delete_secret(es->meta.namespace_, es->target.name, str_at(**existing, "metadata", "uid"));
  if (d) ++stats_.secret_writes;
}

}  // namespace rootseal::sync::reconcile
