// In-memory fakes of the reconcilers' interfaces (KubeApi, ProviderSource,
// Provider) for rootseal::sync unit tests. Test code only.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "reconcile/kube_api.hpp"
#include "rootseal/kms/encoding.hpp"

namespace rootseal::sync::testing {

namespace json = boost::json;
using reconcile::ObjectPtr;
using reconcile::Resource;

inline std::string k2(std::string_view ns, std::string_view name) { return std::string(ns) + "/" + std::string(name); }

struct FakeEvent {
  std::string about;
  bool warning;
  std::string reason;
  std::string message;
};

class FakeKube final : public reconcile::KubeApi {
 public:
  std::mutex mu;
  std::map<std::string, json::value> external_secrets, push_secrets, secrets, stores, cluster_stores, config_maps;
  std::map<std::string, std::pair<Resource, json::value>> workloads_;  // "ns/kind/name"
  std::map<std::string, model::StringMap> ns_labels;
  bool ns_labels_fail = false;  // namespace_labels() answers unavailable
  int label_reads = 0;
  std::vector<FakeEvent> events;
  std::vector<std::string> patches;  // "Kind ns/name <json>"
  int creates = 0, updates = 0, deletes = 0, status_patches = 0;
  int conflicts_to_inject = 0;
  std::int64_t epoch = 0;  // write_epoch(): the bucket's epoch as a sharded engine would give it
  std::uint64_t rv = 100;
  std::uint64_t uid = 1;

  std::string next_rv() { return std::to_string(++rv); }

  // Adds an object (assigns uid/resourceVersion/generation if absent).
  void put(std::map<std::string, json::value>& m, json::value v) {
    std::lock_guard l(mu);
    auto& md = v.as_object()["metadata"].as_object();
    if (!md.contains("uid")) md["uid"] = "uid-" + std::to_string(uid++);
    md["resourceVersion"] = next_rv();
    if (!md.contains("generation")) md["generation"] = 1;
    const std::string ns = md.contains("namespace") ? std::string(md["namespace"].as_string()) : "";
    m[k2(ns, md["name"].as_string())] = std::move(v);
  }
  json::value* find(std::map<std::string, json::value>& m, std::string_view ns, std::string_view name) {
    auto it = m.find(k2(ns, name));
    return it == m.end() ? nullptr : &it->second;
  }
  ObjectPtr snapshot(std::map<std::string, json::value>& m, std::string_view ns, std::string_view name) {
    std::lock_guard l(mu);
    auto* v = find(m, ns, name);
    return v ? std::make_shared<const json::value>(*v) : nullptr;
  }
  // Secret data decoded ("" if absent).
  std::string secret_value(std::string_view ns, std::string_view name, std::string_view key) {
    std::lock_guard l(mu);
    auto* s = find(secrets, ns, name);
    if (!s || !s->as_object().contains("data")) return "";
    auto* d = s->as_object()["data"].as_object().if_contains(key);
    if (!d) return "";
    auto b = kms::base64_decode(d->as_string());
    return std::string(b->begin(), b->end());
  }
  std::string es_condition(std::string_view ns, std::string_view name, std::string_view field) {
    std::lock_guard l(mu);
    auto* es = find(external_secrets, ns, name);
    if (!es) return "";
    auto* st = es->as_object().if_contains("status");
    if (!st) return "";
    auto& conds = st->as_object().at("conditions").as_array();
    return std::string(conds.at(0).as_object().at(field).as_string());
  }

  ObjectPtr external_secret(std::string_view ns, std::string_view name) override {
    return snapshot(external_secrets, ns, name);
  }
  ObjectPtr push_secret(std::string_view ns, std::string_view name) override {
    return snapshot(push_secrets, ns, name);
  }
  ObjectPtr store(model::StoreKind kind, std::string_view ns, std::string_view name) override {
    return kind == model::StoreKind::cluster_secret_store ? snapshot(cluster_stores, "", name)
                                                          : snapshot(stores, ns, name);
  }
  std::vector<std::pair<Resource, ObjectPtr>> workloads(std::string_view ns) override {
    std::lock_guard l(mu);
    std::vector<std::pair<Resource, ObjectPtr>> out;
    for (auto& [k, v] : workloads_) {
      if (k.starts_with(std::string(ns) + "/"))
        out.emplace_back(v.first, std::make_shared<const json::value>(v.second));
    }
    return out;
  }
  Task<ObjectPtr> secret(std::string_view ns, std::string_view name) override { co_return snapshot(secrets, ns, name); }
  Task<ObjectPtr> config_map(std::string_view ns, std::string_view name) override {
    co_return snapshot(config_maps, ns, name);
  }
  Task<model::StringMap> namespace_labels(std::string_view ns) override {
    std::lock_guard l(mu);
    ++label_reads;
    if (ns_labels_fail)
      co_return kms::fail(kms::Errc::unavailable, "namespaces \"" + std::string(ns) + "\": connection refused");
    co_return ns_labels[std::string(ns)];
  }
  std::map<std::string, json::value> service_account_objects;  // "ns/name" -> the object (annotations)
  Task<ObjectPtr> service_account(std::string_view ns, std::string_view name) override {
    co_return snapshot(service_account_objects, ns, name);
  }
  // ServiceAccounts ("ns/name") and the lifetime of the tokens issued for
  // them; each TokenRequest is logged ("ns/name aud1,aud2 <expirationSeconds>").
  std::map<std::string, std::chrono::seconds> service_accounts;
  std::vector<std::string> token_requests;
  std::chrono::system_clock::time_point token_clock{};  // zero: the real clock
  Task<kube::ServiceAccountToken> create_token(std::string_view ns, std::string_view name,
                                               std::span<const std::string> audiences,
                                               std::int64_t expiration_seconds) override {
    std::lock_guard l(mu);
    std::string aud;
    for (const auto& a : audiences) aud += (aud.empty() ? "" : ",") + a;
    token_requests.push_back(k2(ns, name) + " " + aud + " " + std::to_string(expiration_seconds));
    auto it = service_accounts.find(k2(ns, name));
    if (it == service_accounts.end())
      co_return kms::fail(kms::Errc::not_found, "serviceaccounts \"" + std::string(name) + "\" not found");
    const auto now =
        token_clock == std::chrono::system_clock::time_point{} ? std::chrono::system_clock::now() : token_clock;
    co_return kube::ServiceAccountToken{kms::SecureBytes::copy_of("eyJ." + std::string(ns) + "-" + std::string(name) +
                                                                  "-" + std::to_string(token_requests.size()) + ".sig"),
                                        now + it->second};
  }
  Task<ObjectPtr> create_secret(std::string_view ns, const json::value& secret, std::string_view) override {
    std::lock_guard l(mu);
    const std::string name(secret.at("metadata").at("name").as_string());
    if (find(secrets, ns, name)) co_return kms::fail(kms::Errc::already_exists, "AlreadyExists");
    json::value v(secret);  // a copy on the ordinary heap: test only
    v.as_object()["metadata"].as_object()["uid"] = "uid-" + std::to_string(uid++);
    v.as_object()["metadata"].as_object()["resourceVersion"] = next_rv();
    secrets[k2(ns, name)] = v;
    ++creates;
    co_return std::make_shared<const json::value>(std::move(v));
  }
  Task<ObjectPtr> update_secret(std::string_view ns, const json::value& secret, std::string_view) override {
    std::lock_guard l(mu);
    const std::string name(secret.at("metadata").at("name").as_string());
    auto* cur = find(secrets, ns, name);
    if (!cur) co_return kms::fail(kms::Errc::not_found, "NotFound");
    if (conflicts_to_inject > 0) {
      --conflicts_to_inject;
      co_return kms::fail(kms::Errc::conflict, "Conflict");
    }
    if (cur->at("metadata").at("resourceVersion") != secret.at("metadata").at("resourceVersion")) {
      co_return kms::fail(kms::Errc::conflict, "Conflict: stale resourceVersion");
    }
    json::value v(secret);
    v.as_object()["metadata"].as_object()["resourceVersion"] = next_rv();
    *cur = v;
    ++updates;
    co_return std::make_shared<const json::value>(std::move(v));
  }
  Task<void> delete_secret(std::string_view ns, std::string_view name, std::string_view uid_pre) override {
    std::lock_guard l(mu);
    auto* cur = find(secrets, ns, name);
    if (!cur) co_return kms::fail(kms::Errc::not_found, "NotFound");
    if (!uid_pre.empty() && cur->at("metadata").at("uid").as_string() != uid_pre) {
      co_return kms::fail(kms::Errc::conflict, "Conflict: uid precondition");
    }
    secrets.erase(k2(ns, name));
    ++deletes;
    co_return kms::Result<void>{};
  }
  std::int64_t write_epoch(std::string_view /*ns*/) override { return epoch; }
  Task<void> patch_status(Resource r, std::string_view ns, std::string_view name, const json::value& status) override {
    std::lock_guard l(mu);
    auto& m = r == Resource::external_secret ? external_secrets : push_secrets;
    auto* cur = find(m, ns, name);
    if (!cur) co_return kms::fail(kms::Errc::not_found, "NotFound");
    auto& st = cur->as_object()["status"];
    if (!st.is_object()) st = json::object();
    for (const auto& kv : status.as_object()) st.as_object()[kv.key()] = kv.value();
    cur->as_object()["metadata"].as_object()["resourceVersion"] = next_rv();
    ++status_patches;
    co_return kms::Result<void>{};
  }
  Task<void> patch(Resource r, std::string_view ns, std::string_view name, const json::value& p) override {
    std::lock_guard l(mu);
    patches.push_back(std::string(reconcile::to_string(r)) + " " + k2(ns, name) + " " + json::serialize(p));
    if (r == Resource::deployment || r == Resource::stateful_set || r == Resource::daemon_set) {
      auto it = workloads_.find(std::string(ns) + "/" + std::string(reconcile::to_string(r)) + "/" + std::string(name));
      if (it == workloads_.end()) co_return kms::fail(kms::Errc::not_found, "NotFound");
      merge(it->second.second, p);
    } else {
      auto& m = r == Resource::external_secret ? external_secrets : push_secrets;
      auto* cur = find(m, ns, name);
      if (!cur) co_return kms::fail(kms::Errc::not_found, "NotFound");
      merge(*cur, p);
    }
    co_return kms::Result<void>{};
  }
  static void merge(json::value& target, const json::value& p) {
    if (!p.is_object() || !target.is_object()) {
      target = p;
      return;
    }
    for (const auto& kv : p.as_object()) {
      if (kv.value().is_null()) {
        target.as_object().erase(kv.key());
      } else if (kv.value().is_object() && target.as_object().contains(kv.key()) &&
                 target.as_object()[kv.key()].is_object()) {
        merge(target.as_object()[kv.key()], kv.value());
      } else {
        target.as_object()[kv.key()] = kv.value();
      }
    }
  }
  void event(Resource, const model::ObjectMeta& about, bool warning, std::string_view reason,
             std::string message) override {
    std::lock_guard l(mu);
    events.push_back({k2(about.namespace_, about.name), warning, std::string(reason), std::move(message)});
  }
  int count_events(std::string_view reason) {
    std::lock_guard l(mu);
    int n = 0;
    for (auto& e : events) n += e.reason == reason ? 1 : 0;
    return n;
  }
  // The message of the last event `reason` about ns/name; empty when none.
  std::string last_event(std::string_view ns, std::string_view name, std::string_view reason) {
    std::lock_guard l(mu);
    const std::string about = k2(ns, name);
    for (auto it = events.rbegin(); it != events.rend(); ++it) {
      if (it->about == about && it->reason == reason) return it->message;
    }
    return {};
  }
};

// A store: key -> (version -> value); "latest" = highest version.
class FakeProvider final : public Provider {
 public:
  std::mutex mu;
  std::map<std::string, std::map<int, std::string>> values;
  std::atomic<int> calls{0};
  std::atomic<bool> down{false};
  std::map<std::string, std::string> pushed;
  std::atomic<int> push_writes{0};
  std::map<std::string, std::string> metadata;  // key -> the JSON fetch_metadata answers
  std::atomic<int> metadata_calls{0};
  Task<kms::SecureBytes> fetch_metadata(const RemoteKey& ref) override {
    ++metadata_calls;
    std::lock_guard l(mu);
    auto it = metadata.find(ref.key);
    if (it == metadata.end()) co_return kms::fail(kms::Errc::unavailable, "no metadata");
    co_return kms::SecureBytes::copy_of(it->second);
  }

  void set(const std::string& key, const std::string& value) {
    std::lock_guard l(mu);
    auto& v = values[key];
    v[v.empty() ? 1 : v.rbegin()->first + 1] = value;
  }
  Task<kms::SecureBytes> fetch(const RemoteKey& ref) override {
    ++calls;
    if (down) co_return kms::fail(kms::Errc::unavailable, "vault: connection refused");
    std::lock_guard l(mu);
    auto it = values.find(ref.key);
    if (it == values.end() || it->second.empty()) co_return kms::fail(kms::Errc::not_found, "secret not found");
    std::string v;
    if (ref.version.empty()) {
      v = it->second.rbegin()->second;
    } else {
      auto vit = it->second.find(std::stoi(ref.version));
      if (vit == it->second.end()) co_return kms::fail(kms::Errc::not_found, "version not found");
      v = vit->second;
    }
    co_return kms::SecureBytes::copy_of(v);
  }
  Task<void> validate() override { co_return kms::Result<void>{}; }
  [[nodiscard]] std::string_view kind() const noexcept override { return "fake"; }
  // dataFrom.find: the latest value of every key below `path` whose name matches.
  std::atomic<int> find_calls{0};
  Task<SecretMap> find(const FindRequest& request) override {
    ++find_calls;
    std::lock_guard l(mu);
    SecretMap out;
    for (const auto& [k, v] : values) {
      if (v.empty() || (request.path && !k.starts_with(*request.path))) continue;
      if (request.name_matches && !request.name_matches(k)) continue;
      out.emplace(k, kms::SecureBytes::copy_of(v.rbegin()->second));
    }
    co_return out;
  }
};

class FakeProviders final : public reconcile::ProviderSource {
 public:
  std::shared_ptr<FakeProvider> fake = std::make_shared<FakeProvider>();
  Task<std::shared_ptr<Provider>> provider(const model::SecretStore&, std::string_view) override {
    co_return std::shared_ptr<Provider>(fake);
  }
  Task<std::shared_ptr<PushProvider>> push_provider(const model::SecretStore&, std::string_view) override {
    co_return kms::fail(kms::Errc::invalid_argument, "no push provider");
  }
};

// A push target: remote key -> value; keys in `unmanaged` are refused.
class FakePush final : public PushProvider {
 public:
  std::map<std::string, std::string> remote;
  std::set<std::string> unmanaged;
  int writes = 0;
  int removes = 0;
  std::string kind_name = "fake";
  std::optional<PushMetadata> seen_metadata;  // of the last put_if_changed
  std::uint32_t seen_bucket = 0;              // of the last put_if_changed
  std::int64_t seen_epoch = 0;
  std::int64_t newer_epoch = 0;  // nonzero: put_if_changed answers that a newer owner wrote the value
  Task<RemoteState> describe(std::string_view k) override {
    co_return RemoteState{remote.contains(std::string(k)), !unmanaged.contains(std::string(k))};
  }
  Task<RemoteState> ensure_managed(std::string_view k) override { co_return co_await describe(k); }
  Task<PushOutcome> put_if_changed(const PushRef& ref, const kms::SecureBytes& value, bool if_not_exists) override {
    seen_metadata = ref.metadata != nullptr ? std::optional<PushMetadata>(*ref.metadata) : std::nullopt;
    seen_bucket = ref.bucket;
    seen_epoch = ref.epoch;
    if (newer_epoch != 0) co_return PushOutcome{false, false, "", newer_epoch};
    if (unmanaged.contains(ref.remote_key))
      co_return kms::fail(kms::Errc::permission_denied, "not managed by rootseal");
    const std::string v(reinterpret_cast<const char*>(value.data()), value.size());
    auto it = remote.find(ref.remote_key);
    if (it != remote.end() && (it->second == v || if_not_exists)) co_return PushOutcome{false, false, ""};
    const bool created = it == remote.end();
    remote[ref.remote_key] = v;
    ++writes;
    co_return PushOutcome{true, created, std::to_string(writes)};
  }
  Task<void> remove(const PushRef& ref) override {
    remote.erase(ref.remote_key);
    ++removes;
    co_return kms::Result<void>{};
  }
  Task<void> validate() override { co_return kms::Result<void>{}; }
  [[nodiscard]] std::string_view kind() const noexcept override { return kind_name; }
};

class PushProviders final : public reconcile::ProviderSource {
 public:
  std::shared_ptr<FakePush> push = std::make_shared<FakePush>();
  std::shared_ptr<FakeProvider> pull = std::make_shared<FakeProvider>();
  Task<std::shared_ptr<Provider>> provider(const model::SecretStore&, std::string_view) override {
    co_return std::shared_ptr<Provider>(pull);
  }
  Task<std::shared_ptr<PushProvider>> push_provider(const model::SecretStore&, std::string_view) override {
    co_return std::shared_ptr<PushProvider>(push);
  }
};

// Runs a coroutine to completion on a fresh io_context.
template <class T>
T run_sync(boost::asio::awaitable<T> aw) {
  boost::asio::io_context io;
  auto fut = boost::asio::co_spawn(io, std::move(aw), boost::asio::use_future);
  io.run();
  return fut.get();
}

inline json::value vault_store(std::string_view ns, std::string_view name) {
  return json::parse(R"({"apiVersion":"external-secrets.io/v1","kind":"SecretStore","metadata":{"name":")" +
                     std::string(name) + R"(","namespace":")" + std::string(ns) +
                     R"("},"spec":{"provider":{"vault":{"server":"http://127.0.0.1:1","path":"secret","version":"v2",
                     "auth":{"tokenSecretRef":{"name":"vault-token","key":"token"}}}}}})");
}

}  // namespace rootseal::sync::testing
