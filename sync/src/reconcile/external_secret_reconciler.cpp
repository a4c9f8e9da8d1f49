#include "reconcile/external_secret_reconciler.hpp"

#include <boost/json.hpp>

#include <ctime>

#include "model/parse.hpp"
#include "reconcile/eso_meta.hpp"
#include "rewrite.hpp"
#include "secure_buffer.hpp"

namespace rootseal::sync::reconcile {

namespace asio = boost::asio;
namespace json = boost::json;
using kms::Errc;

std::string_view to_string(Resource r) noexcept {
  switch (r) {
    case Resource::external_secret:
      return "ExternalSecret";
    case Resource::push_secret:
      return "PushSecret";
    case Resource::secret:
      return "Secret";
    case Resource::deployment:
      return "Deployment";
    case Resource::stateful_set:
      return "StatefulSet";
    case Resource::daemon_set:
      return "DaemonSet";
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

std::string key_of(std::string_view ns, std::string_view name) {
  std::string k(ns);
  k.push_back('/');
  k.append(name);
  return k;
}

}  // namespace

// A store used by one reconcile: admitted for the namespace, its provider, and
// the id of its generation (the fetch cache's key prefix).
struct ExternalSecretReconciler::UsedStore {
  std::shared_ptr<Provider> provider;
  std::string id;
};

ExternalSecretReconciler::ExternalSecretReconciler(KubeApi& api, ProviderSource& providers, FetchCache& cache,
                                                   ReconcilerOptions options)
    : api_(api), providers_(providers), cache_(cache), resolver_(api), options_(std::move(options)) {}

std::vector<std::string> ExternalSecretReconciler::writers_of(const std::string& ns, const std::string& secret) const {
  std::lock_guard lock(mu_);
  auto it = writers_.find(key_of(ns, secret));
  if (it == writers_.end()) return {};
  return {it->second.begin(), it->second.end()};
}

void ExternalSecretReconciler::remember_target(const std::string& key, const std::string& ns,
                                               const std::string& target) {
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

std::size_t ExternalSecretReconciler::stale(std::chrono::system_clock::time_point now, std::chrono::milliseconds grace,
                                            const std::function<bool(std::string_view ns)>& counted) const {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (const auto& [key, st] : state_) {
    if (st.refresh_interval.count() <= 0) continue;
    if (counted && !counted(std::string_view(key).substr(0, key.find('/')))) continue;
    const auto since = st.last_refresh == std::chrono::system_clock::time_point{} ? st.first_seen : st.last_refresh;
    if (since != std::chrono::system_clock::time_point{} && now - since > st.refresh_interval + grace) ++n;
  }
  return n;
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
                                                                const Refusal& why) {
  if (why.conflict) {
    ++stats_.conflicts;
    co_return ReconcileResult::requeue_now();  // status untouched: the retry decides it
  }
  ++stats_.errors;
  bool new_error = false;
  {
    std::lock_guard lock(mu_);
    auto& st = state_[key];
    new_error = st.last_error != why.event;
    st.last_error = why.event;
    st.synced_rv.clear();  // force a refresh on the next attempt
  }
  // As ESO's markAsFailed: the condition's fixed message, the error in the event.
  if (new_error) api_.event(Resource::external_secret, es.meta, true, "UpdateFailed", why.event);
  co_await set_status(es, false, why.reason, why.condition, es.status.synced_resource_version);
  co_return why.retry ? ReconcileResult::retry() : ReconcileResult::done();
}

ReconcileResult ExternalSecretReconciler::next_after(const model::ExternalSecret& es,
                                                     std::chrono::system_clock::time_point last) const {
  if (es.refresh_policy != model::RefreshPolicy::periodic || es.refresh_interval.count() == 0) {
    return ReconcileResult::done();
  }
  return ReconcileResult::requeue_after(std::max(next_refresh_in(es, last), std::chrono::milliseconds(1)));
}

asio::awaitable<ReconcileResult> ExternalSecretReconciler::succeed(const std::string& key,
                                                                   const model::ExternalSecret& es,
                                                                   const std::string& synced_rv,
                                                                   std::chrono::system_clock::time_point now,
                                                                   const Keep& status) {
  {
    std::lock_guard lock(mu_);
    auto& s = state_[key];
    s.last_refresh = now;
    s.synced_rv = synced_rv;
    s.last_error.clear();
  }
  co_await set_status(es, status.ready, status.reason, status.message, synced_rv);
  co_return next_after(es, now);
}

// The reconcile: reads, then the pure steps of external_secret_steps.hpp
// decide, then one write. Every early stop goes through fail().
asio::awaitable<ReconcileResult> ExternalSecretReconciler::run(const std::string& key, const json::value& object) {
  auto parsed = model::parse_external_secret(object);
  if (!parsed) {  // an invalid spec: Ready=False with the precise message; no retry until it changes
    auto shell = invalid_shell(object);
    if (!shell) co_return ReconcileResult::done();
    const Refusal why = own_refusal("invalid ExternalSecret: " + parsed.error().message, false);
    co_return co_await fail(key, *shell, why);
  }
  const model::ExternalSecret es = std::move(*parsed);
  if (es.meta.being_deleted) co_return ReconcileResult::done();
  remember_target(key, es.meta.namespace_, es.target.name);
  if (auto ok = check_templates(es); !ok) co_return co_await fail(key, es, ok.error());

  const std::string synced_rv = synced_resource_version(es.meta);
  State st;
  const auto now = options_.now();
  {
    std::lock_guard lock(mu_);
    auto& s = state_[key];
    if (s.first_seen == std::chrono::system_clock::time_point{}) s.first_seen = now;
    s.refresh_interval = es.refresh_policy == model::RefreshPolicy::periodic
                             ? std::chrono::duration_cast<std::chrono::milliseconds>(es.refresh_interval)
                             : std::chrono::milliseconds(0);
    st = s;
  }
  auto existing_r = co_await api_.secret(es.meta.namespace_, es.target.name);
  if (!existing_r) {
    const Refusal why = own_refusal("could not read Secret: " + existing_r.error().message, true);
    co_return co_await fail(key, es, why);
  }
  const ObjectPtr existing = *existing_r;
  const bool elapsed = next_refresh_in(es, st.last_refresh).count() == 0;
  if (!must_fetch(es, st.synced_rv != synced_rv, elapsed, existing.get())) {
    ++stats_.skipped;
    co_return next_after(es, st.last_refresh);
  }

  ++stats_.fetched;
  auto fetched = co_await fetch(es);
  if (!fetched) co_return co_await fail(key, es, fetched.error());
  // As ESO: a Normal event MissingProviderSecret for each remote secret skipped.
  for (const auto& m : fetched->missing)
    api_.event(Resource::external_secret, es.meta, false, "MissingProviderSecret", m);
  const bool exists = existing != nullptr;
  auto sources = co_await template_sources(es);
  if (!sources) co_return co_await fail(key, es, mutate_refusal(es, exists, sources.error()));
  auto content = secret_content_of(es, std::move(fetched->data), *sources);
  if (!content) co_return co_await fail(key, es, mutate_refusal(es, exists, content.error()));
  auto action = desired_secret(es, std::move(*content), !fetched->missing.empty(), existing.get());
  if (!action) co_return co_await fail(key, es, action.error());
  auto status = co_await apply(es, std::move(*action));
  if (!status) co_return co_await fail(key, es, status.error());
  co_return co_await succeed(key, es, synced_rv, now, *status);
}

asio::awaitable<Step<TemplateSources>> ExternalSecretReconciler::template_sources(const model::ExternalSecret& es) {
  // creationPolicy None: the template is never applied, its sources never read (ESO).
  if (!es.target.template_ || es.target.creation == model::CreationPolicy::none) co_return TemplateSources{};
  const std::string ns = es.meta.namespace_;
  auto out = co_await template_config_maps(api_, ns, *es.target.template_);
  if (!out) {
    co_return std::unexpected(
        refusal(kMsgErrorUpdateSecret,
                "could not apply template: error fetching templateFrom data: " + out.error().message, true));
  }
  co_return std::move(*out);
}

Task<TemplateSources> template_config_maps(KubeApi& api, std::string ns, const model::SecretTemplate& tmpl) {
  TemplateSources out;
  for (const auto& tf : tmpl.template_from) {
    if (!tf.config_map || out.contains(*tf.config_map)) continue;
    auto cm = co_await api.config_map(ns, *tf.config_map);
    if (!cm) co_return std::unexpected(cm.error());
    out.emplace(*tf.config_map, std::move(*cm));
  }
  co_return out;
}

// Reads every item's whole value (dataFrom first, then data: ESO's order)
// through FetchCache and adds it with the pure add_* steps.
asio::awaitable<Step<ProviderData>> ExternalSecretReconciler::fetch(const model::ExternalSecret& es) {
  std::map<std::string, UsedStore> stores;  // by "Kind/name", for this reconcile
  ProviderData out;
  for (std::size_t i = 0; i < es.data_from.size(); ++i) {
    const auto& item = es.data_from[i];
    const model::StoreRef ref = item.store_override ? *item.store_override : es.store_ref;
    if (item.find) {
      auto found = co_await find_all(stores, es.meta.namespace_, ref, *item.find);
      if (!found) co_return std::unexpected(provider_refusal(data_from_where(es, i), found.error()));
      auto added = add_data_found(out, es, i, std::move(*found));
      if (!added) co_return std::unexpected(added.error());
      continue;
    }
    auto whole = co_await fetch_whole(stores, es.meta.namespace_, ref, item.extract, true);
    if (!whole) co_return std::unexpected(provider_refusal(data_from_where(es, i), whole.error()));
    auto added = add_data_from(out, es, i, ref, whole->format, std::move(whole->value));
    if (!added) co_return std::unexpected(added.error());
  }
  for (std::size_t i = 0; i < es.data.size(); ++i) {
    const auto& item = es.data[i];
    const model::StoreRef ref = item.store_override ? *item.store_override : es.store_ref;
    auto whole = co_await fetch_whole(stores, es.meta.namespace_, ref, item.remote_ref);
    if (!whole) co_return std::unexpected(provider_refusal(data_where(es, i), whole.error()));
    auto added = add_data(out, es, i, ref, whole->format, std::move(whole->value));
    if (!added) co_return std::unexpected(added.error());
  }
  co_return out;
}

// The whole remote value of `ref` (outer error: the store was refused or has
// no provider; inner: what the provider answered). One provider call per
// (store generation, key, version) per refresh window.
asio::awaitable<Step<ExternalSecretReconciler::Whole>> ExternalSecretReconciler::fetch_whole(
    std::map<std::string, UsedStore>& stores, const std::string& ns, const model::StoreRef& ref,
    const RemoteRef& remote, bool extract) {
  auto used = co_await use_store(stores, ns, ref);
  if (!used) co_return std::unexpected(used.error());
  std::shared_ptr<Provider> provider = (*used)->provider;
  const RemoteKey whole{remote.key, remote.version};
  if (extract) {  // ESO's GetSecretMap may refuse the key before reading anything (Azure: certificates, keys)
    if (auto refused = provider->extract_refusal(whole); !refused)
      co_return Whole{std::unexpected(refused.error()), provider->value_format()};
  }
  const bool metadata = remote.fetch_metadata;  // metadataPolicy Fetch: the secret's metadata, cached apart
  FetchCache::Fetch f = [provider, whole, metadata]() -> Task<kms::SecureBytes> {
    if (metadata) co_return co_await provider->fetch_metadata(whole);
    co_return co_await provider->fetch(whole);
  };
  std::string cache_key = fetch_key((*used)->id, remote.key, remote.version);
  if (metadata) cache_key += "\x1fmetadata";
  auto value = co_await cache_.get(cache_key, f);  // named: no co_await inside a braced initializer (g++ 12)
  const ValueFormat format = metadata ? provider->metadata_format() : provider->value_format_of(whole);
  co_return Whole{std::move(value), format};
}

namespace {

// A found map as one locked buffer for the FetchCache: per entry the key's
// and the value's length (4 bytes each, big-endian), then their bytes.
void put_length(SecureBuffer& out, std::size_t n) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((n >> shift) & 0xffU));
}

kms::SecureBytes encode_found(const SecretMap& found) {
  SecureBuffer out(256);
  for (const auto& [k, v] : found) {
    put_length(out, k.size());
    out.append(k);
    put_length(out, v.size());
    out.append(v.span());
  }
  return out.take();
}

kms::Result<SecretMap> decode_found(const kms::SecureBytes& bytes) {
  SecretMap out;
  const auto* p = bytes.data();
  std::size_t left = bytes.size();
  const auto take_length = [&](std::size_t& n) {
    if (left < 4) return false;
    n = (std::size_t{p[0]} << 24) | (std::size_t{p[1]} << 16) | (std::size_t{p[2]} << 8) | std::size_t{p[3]};
    p += 4;
    left -= 4;
    return n <= left;
  };
  while (left > 0) {
    std::size_t klen = 0;
    std::size_t vlen = 0;
    if (!take_length(klen)) return kms::fail(Errc::internal, "find cache: a truncated entry");
    std::string key(reinterpret_cast<const char*>(p), klen);
    p += klen;
    left -= klen;
    if (!take_length(vlen)) return kms::fail(Errc::internal, "find cache: a truncated entry");
    out.insert_or_assign(std::move(key), kms::SecureBytes::copy_of(std::span<const std::uint8_t>(p, vlen)));
    p += vlen;
    left -= vlen;
  }
  return out;
}

// A component of a cache key, length-prefixed so that no two searches share a key.
void key_part(std::string& key, std::string_view part) {
  key += std::to_string(part.size());
  key.push_back(':');
  key.append(part);
}

}  // namespace

// dataFrom[].find through the store's provider, shared like a fetch: one
// search per (store generation, path, tags, name regexp) per refresh window
// (FetchCache), whichever ExternalSecrets ask for it. Outer error: the store
// was refused; inner: the search's outcome.
asio::awaitable<Step<kms::Result<SecretMap>>> ExternalSecretReconciler::find_all(
    std::map<std::string, UsedStore>& stores, const std::string& ns, const model::StoreRef& ref,
    const model::FindRef& find) {
  auto used = co_await use_store(stores, ns, ref);
  if (!used) co_return std::unexpected(used.error());
  std::optional<GoRegexp> name;
  FindRequest request;
  request.path = find.path;
  request.tags.insert(find.tags.begin(), find.tags.end());
  if (find.name_regexp) {
    auto re = GoRegexp::compile(*find.name_regexp);
    if (!re) {
      co_return kms::Result<SecretMap>(
          kms::fail(Errc::invalid_argument,
                    "could not compile find.name.regexp [" + *find.name_regexp + "]: " + re.error().message));
    }
    name.emplace(std::move(*re));
    request.name_matches = [&name](std::string_view n) { return name->matches(n); };
  }
  std::string cache_key = (*used)->id;
  cache_key +=
      "\x1f"
      "find";
  // (no ?: on strings in coroutines: g++ 12 double-destroys temporaries)
  std::string part = "-";
  if (find.path) part = "p" + *find.path;
  key_part(cache_key, part);
  part = "-";
  if (find.name_regexp) part = "n" + *find.name_regexp;
  key_part(cache_key, part);
  for (const auto& [k, v] : request.tags) {
    key_part(cache_key, k);
    key_part(cache_key, v);
  }
  std::shared_ptr<Provider> provider = (*used)->provider;
  // Run by this coroutine when it leads the flight: request and name outlive the call.
  FetchCache::Fetch f = [provider, &request]() -> Task<kms::SecureBytes> {
    auto found = co_await provider->find(request);
    if (!found) co_return std::unexpected(found.error());
    co_return encode_found(*found);
  };
  auto cached = co_await cache_.get(cache_key, f);
  if (!cached) co_return kms::Result<SecretMap>(std::unexpected(cached.error()));
  co_return decode_found(*cached);
}

// The store `ref` names for this reconcile, admitted for the namespace, with
// its provider (resolved once per reconcile).
asio::awaitable<Step<ExternalSecretReconciler::UsedStore*>> ExternalSecretReconciler::use_store(
    std::map<std::string, UsedStore>& stores, const std::string& ns, const model::StoreRef& ref) {
  const std::string id = std::string(model::to_string(ref.kind)) + "/" + ref.name;
  auto it = stores.find(id);
  if (it == stores.end()) {
    auto store = co_await resolver_.resolve(ref, ns);
    kms::Result<std::shared_ptr<Provider>> provider = std::shared_ptr<Provider>();
    if (store) {
      provider = co_await providers_.provider(*store, ns);
    } else {
      provider = std::unexpected(store.error());
    }
    if (!provider) {  // refused by the store's conditions or host policy: wait for a change; else retry
      const bool refused = provider.error().code == Errc::permission_denied;
      co_return std::unexpected(refusal(kMsgErrorGetSecretData, provider.error().message, !refused));
    }
    UsedStore used{std::move(*provider), id + "@" + store->meta.uid + ":" + store->meta.resource_version};
    it = stores.emplace(id, std::move(used)).first;
  }
  co_return &it->second;
}

// Does what desired_secret decided: nothing, a delete or a write. The status
// to set, or why not (a 409 as a conflict).
asio::awaitable<Step<Keep>> ExternalSecretReconciler::apply(const model::ExternalSecret& es, Action action) {
  const std::string& ns = es.meta.namespace_;
  if (auto* keep = std::get_if<Keep>(&action)) co_return std::move(*keep);
  if (auto* del = std::get_if<Delete>(&action)) {
    auto d = co_await api_.delete_secret(ns, es.target.name, del->uid);
    if (!d && d.error().code != Errc::not_found) {
      co_return std::unexpected(refusal(kMsgErrorDeleteSecret, d.error().message, true));
    }
    ++stats_.secret_writes;
    api_.event(Resource::external_secret, es.meta, false, "Deleted", std::string(kMsgDeleted));
    co_return Keep{kReasonDeleted, std::string(kMsgDeleted), true};
  }
  auto& write = std::get<Write>(action);
  const std::string fm = field_manager(es.meta.name);
  kms::Result<ObjectPtr> written = ObjectPtr{};
  if (write.create) {
    written = co_await api_.create_secret(ns, write.body, fm);
  } else {
    written = co_await api_.update_secret(ns, write.body, fm);
  }
  if (!written) {
    // As ESO's createSecret (the API's error as it is) and updateSecret
    // ("unable to update secret <name>: ").
    const auto code = written.error().code;
    Refusal why = refusal(kMsgErrorUpdateSecret, written.error().message, true);
    why.conflict = code == Errc::conflict || code == Errc::already_exists;
    if (!write.create) why.event.insert(0, "unable to update secret " + es.target.name + ": ");
    co_return std::unexpected(std::move(why));
  }
  ++stats_.secret_writes;
  if (write.create) {
    api_.event(Resource::external_secret, es.meta, false, "Created", std::string(kEventCreated));
  } else {
    api_.event(Resource::external_secret, es.meta, false, "Updated", std::string(kEventUpdated));
  }
  if (secret_changed_) secret_changed_(ns, es.target.name);
  co_return Keep{};
}

asio::awaitable<void> ExternalSecretReconciler::deleted(std::shared_ptr<const json::value> last) {
  auto es = model::parse_external_secret(*last);
  if (!es || es->target.creation != model::CreationPolicy::owner) co_return;
  auto existing = co_await api_.secret(es->meta.namespace_, es->target.name);
  if (!existing || !*existing) co_return;
  const auto del = owned_secret(*es, **existing);
  if (!del) co_return;
  auto d = co_await api_.delete_secret(es->meta.namespace_, es->target.name, del->uid);
  if (d) ++stats_.secret_writes;
}

}  // namespace rootseal::sync::reconcile
