// rootseal::sync::reconcile — store selection (StoreResolver) and the
// namespace conditions of ClusterSecretStores, on every path that uses a
// store: ExternalSecret secretStoreRef, PushSecret secretStoreRefs and
// PushSecret selector.remoteRef.storeRef. Each condition kind is checked for
// a namespace it admits and one it refuses, and a failed read of the
// namespace's labels refuses the store.
#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include "model/parse.hpp"
#include "reconcile/external_secret_reconciler.hpp"
#include "reconcile/push_secret_reconciler.hpp"
#include "reconcile/store_resolver.hpp"
#include "reconcile_fakes.hpp"

using namespace rootseal;
using namespace rootseal::sync;
using namespace rootseal::sync::reconcile;
using namespace rootseal::sync::testing;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view kNs = "team-a";

struct Case {
  std::string what;
  std::string conditions;   // spec.conditions (JSON array); empty: none
  model::StringMap labels;  // of namespace team-a
  bool label_read_fails = false;
  bool admitted = false;
};

std::vector<Case> cases() {
  const std::string gold = R"([{"namespaceSelector":{"matchLabels":{"tier":"gold"}}}])";
  const std::string in =
      R"([{"namespaceSelector":{"matchExpressions":[{"key":"tier","operator":"In","values":["gold","platinum"]}]}}])";
  const std::string not_in =
      R"([{"namespaceSelector":{"matchExpressions":[{"key":"tier","operator":"NotIn","values":["silver"]}]}}])";
  const std::string exists = R"([{"namespaceSelector":{"matchExpressions":[{"key":"tier","operator":"Exists"}]}}])";
  const std::string absent =
      R"([{"namespaceSelector":{"matchExpressions":[{"key":"quarantine","operator":"DoesNotExist"}]}}])";
  const std::string two_selectors = R"([{"namespaceSelector":{"matchLabels":{"tier":"gold"}}},
                                        {"namespaceSelector":{"matchLabels":{"team":"a"}}}])";
  const std::string anded = R"([{"namespaces":["team-a"],"namespaceSelector":{"matchLabels":{"tier":"gold"}}}])";
  const std::string listed_or_selected =
      R"([{"namespaces":["team-a"]},{"namespaceSelector":{"matchLabels":{"tier":"gold"}}}])";
  return {
      {"no conditions", "", {}, false, true},
      {"matchLabels: match", gold, {{"tier", "gold"}}, false, true},
      {"matchLabels: other value", gold, {{"tier", "silver"}}, false, false},
      {"matchLabels: no labels", gold, {}, false, false},
      {"In: listed value", in, {{"tier", "platinum"}}, false, true},
      {"In: other value", in, {{"tier", "silver"}}, false, false},
      {"In: label absent", in, {}, false, false},
      {"NotIn: other value", not_in, {{"tier", "gold"}}, false, true},
      {"NotIn: label absent", not_in, {}, false, true},
      {"NotIn: listed value", not_in, {{"tier", "silver"}}, false, false},
      {"Exists: present", exists, {{"tier", "x"}}, false, true},
      {"Exists: absent", exists, {{"team", "a"}}, false, false},
      {"DoesNotExist: absent", absent, {{"tier", "gold"}}, false, true},
      {"DoesNotExist: present", absent, {{"quarantine", "yes"}}, false, false},
      {"namespaces: listed", R"([{"namespaces":["team-b","team-a"]}])", {}, false, true},
      {"namespaces: not listed", R"([{"namespaces":["team-b","team-c"]}])", {}, false, false},
      {"namespaceRegexes: match", R"([{"namespaceRegexes":["^team-"]}])", {}, false, true},
      {"namespaceRegexes: no match", R"([{"namespaceRegexes":["^prod-"]}])", {}, false, false},
      {"namespaceSelectors ORed: second matches", two_selectors, {{"team", "a"}}, false, true},
      {"namespaceSelectors ORed: none matches", two_selectors, {{"team", "b"}}, false, false},
      {"namespaces AND selector: selector fails", anded, {{"tier", "silver"}}, false, false},
      {"namespaces AND selector: both hold", anded, {{"tier", "gold"}}, false, true},
      // A failed read of the namespace's labels refuses the store, even under
      // operators that empty labels would satisfy, and even when another
      // condition would admit the namespace without labels.
      {"label read fails: NotIn", not_in, {}, true, false},
      {"label read fails: DoesNotExist", absent, {}, true, false},
      {"label read fails: matchLabels", gold, {{"tier", "gold"}}, true, false},
      {"label read fails: listed namespace or selector", listed_or_selected, {}, true, false},
      {"label read fails: no selector, labels not needed", R"([{"namespaces":["team-a"]}])", {}, true, true},
  };
}

json::value cluster_store(std::string_view name, std::string_view provider, const std::string& conditions) {
  std::string p;
  if (provider == "vault") {
    p = R"({"vault":{"server":"http://127.0.0.1:1","path":"secret","version":"v2",
            "auth":{"tokenSecretRef":{"name":"t","key":"k","namespace":"ops"}}}})";
  } else {
    p = R"({"aws":{"service":"SecretsManager","region":"us-east-1","auth":{"secretRef":{
            "accessKeyIDSecretRef":{"name":"a","key":"id","namespace":"ops"},
            "secretAccessKeySecretRef":{"name":"a","key":"sk","namespace":"ops"}}}}})";
  }
  json::value s =
      json::parse(R"({"apiVersion":"external-secrets.io/v1","kind":"ClusterSecretStore","metadata":{"name":")" +
                  std::string(name) + R"("},"spec":{"provider":)" + p + "}}");
  if (!conditions.empty()) s.as_object()["spec"].as_object()["conditions"] = json::parse(conditions);
  return s;
}

void set_namespace(FakeKube& k, const Case& c) {
  k.ns_labels[std::string(kNs)] = c.labels;
  k.ns_labels_fail = c.label_read_fails;
}

// ExternalSecret team-a/app reads ClusterSecretStore "central".
bool es_path_admits(const Case& c) {
  FakeKube kube;
  FakeProviders providers;
  auto now = std::chrono::system_clock::time_point(std::chrono::hours(500000));
  auto mono = std::chrono::steady_clock::time_point(std::chrono::hours(1));
  FetchCache cache{10s, [&] { return mono; }};
  ExternalSecretReconciler rec{kube, providers, cache, ReconcilerOptions{10s, [&] { return now; }}};
  set_namespace(kube, c);
  kube.put(kube.cluster_stores, cluster_store("central", "vault", c.conditions));
  providers.fake->set("db/creds", R"({"username":"alice"})");
  kube.put(kube.external_secrets, json::parse(R"({"apiVersion":"external-secrets.io/v1","kind":"ExternalSecret",
    "metadata":{"name":"app","namespace":"team-a","generation":1},
    "spec":{"refreshInterval":"1h","secretStoreRef":{"name":"central","kind":"ClusterSecretStore"},
      "data":[{"secretKey":"u","remoteRef":{"key":"db/creds","property":"username"}}]}})"));
  run_sync(rec.reconcile(std::string(kNs), "app"));
  const bool written = kube.secret_value(kNs, "app", "u") == "alice";
  const bool ready = kube.es_condition(kNs, "app", "status") == "True";
  CHECK(written == ready);
  if (!written) {
    CHECK(kube.es_condition(kNs, "app", "reason") == "SecretSyncedError");
    CHECK(providers.fake->calls == 0);  // a refused store is never read
  }
  return written;
}

json::value push_secret(std::string_view store_refs, std::string_view selector) {
  return json::parse(R"({"apiVersion":"external-secrets.io/v1alpha1","kind":"PushSecret",
    "metadata":{"name":"p","namespace":"team-a"},
    "spec":{"refreshInterval":"1m","secretStoreRefs":)" +
                     std::string(store_refs) + R"(,"selector":)" + std::string(selector) +
                     R"(,"data":[{"match":{"secretKey":"v","remoteRef":{"remoteKey":"app/v"}}}]}})");
}

std::string ps_reason(FakeKube& k) {
  std::lock_guard l(k.mu);
  return std::string(k.push_secrets["team-a/p"].at("status").at("conditions").at(0).at("reason").as_string());
}

// PushSecret team-a/p pushes Secret team-a/src to ClusterSecretStore "central-aws".
bool push_target_admits(const Case& c) {
  FakeKube kube;
  PushProviders p;
  set_namespace(kube, c);
  kube.put(kube.cluster_stores, cluster_store("central-aws", "aws", c.conditions));
  kube.put(kube.secrets,
           json::parse(R"({"apiVersion":"v1","kind":"Secret","metadata":{"name":"src","namespace":"team-a"},
    "data":{"v":"b25l"}})"));
  kube.put(kube.push_secrets,
           push_secret(R"([{"name":"central-aws","kind":"ClusterSecretStore"}])", R"({"secret":{"name":"src"}})"));
  PushSecretReconciler rec(kube, p, [] { return std::chrono::system_clock::now(); });
  run_sync(rec.reconcile(std::string(kNs), "p"));
  const bool pushed = p.push->remote.contains("app/v");
  CHECK(ps_reason(kube) == (pushed ? "Synced" : "Errored"));
  if (pushed) CHECK(p.push->remote["app/v"] == "one");
  return pushed;
}

// PushSecret team-a/p reads remote key db/creds of ClusterSecretStore
// "central" (selector.remoteRef) and pushes it to SecretStore team-a/aws.
bool push_source_admits(const Case& c) {
  FakeKube kube;
  PushProviders p;
  set_namespace(kube, c);
  kube.put(kube.cluster_stores, cluster_store("central", "vault", c.conditions));
  kube.put(kube.stores, json::parse(R"({"apiVersion":"external-secrets.io/v1","kind":"SecretStore",
    "metadata":{"name":"aws","namespace":"team-a"},
    "spec":{"provider":{"aws":{"service":"SecretsManager","region":"us-east-1","auth":{"secretRef":{
      "accessKeyIDSecretRef":{"name":"a","key":"id"},"secretAccessKeySecretRef":{"name":"a","key":"sk"}}}}}}})"));
  p.pull->set("db/creds", R"({"v":"from-vault"})");
  kube.put(
      kube.push_secrets,
      push_secret(R"([{"name":"aws"}])",
                  R"({"remoteRef":{"storeRef":{"name":"central","kind":"ClusterSecretStore"},"key":"db/creds"}})"));
  PushSecretReconciler rec(kube, p, [] { return std::chrono::system_clock::now(); });
  run_sync(rec.reconcile(std::string(kNs), "p"));
  const bool pushed = p.push->remote.contains("app/v");
  CHECK(ps_reason(kube) == (pushed ? "Synced" : "Errored"));
  if (pushed) {
    CHECK(p.push->remote["app/v"] == "from-vault");
  } else {
    CHECK(p.pull->calls == 0);  // a refused store is never read
  }
  return pushed;
}

}  // namespace

TEST_CASE("ClusterSecretStore conditions: the ExternalSecret path admits and refuses as the conditions say") {
  for (const auto& c : cases()) {
    INFO(c.what);
    CHECK(es_path_admits(c) == c.admitted);
  }
}

TEST_CASE("ClusterSecretStore conditions: a PushSecret target admits and refuses as the conditions say") {
  for (const auto& c : cases()) {
    INFO(c.what);
    CHECK(push_target_admits(c) == c.admitted);
  }
}

TEST_CASE("ClusterSecretStore conditions: a PushSecret remoteRef source admits and refuses as the conditions say") {
  for (const auto& c : cases()) {
    INFO(c.what);
    CHECK(push_source_admits(c) == c.admitted);
  }
}

TEST_CASE("StoreResolver: refusals name the store and the reason, labels are read only when a selector needs them") {
  FakeKube kube;
  StoreResolver resolver(kube);
  const model::StoreRef central{"central", model::StoreKind::cluster_secret_store};

  auto missing = run_sync(resolver.resolve(central, "team-a"));
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == kms::Errc::not_found);
  CHECK(missing.error().message == "ClusterSecretStore \"central\" not found");

  kube.put(kube.cluster_stores, cluster_store("central", "vault", R"([{"namespaces":["team-a"]}])"));
  auto ok = run_sync(resolver.resolve(central, "team-a"));
  REQUIRE(ok);
  CHECK(ok->meta.name == "central");
  CHECK(kube.label_reads == 0);
  auto denied = run_sync(resolver.resolve(central, "team-b"));
  REQUIRE_FALSE(denied);
  CHECK(denied.error().code == kms::Errc::permission_denied);
  CHECK(denied.error().message ==
        "using ClusterSecretStore \"central\" is not allowed from namespace \"team-b\": denied by spec.conditions");

  kube.put(kube.cluster_stores,
           cluster_store("central", "vault", R"([{"namespaceSelector":{"matchLabels":{"a":"b"}}}])"));
  kube.ns_labels_fail = true;
  auto unread = run_sync(resolver.resolve(central, "team-a"));
  REQUIRE_FALSE(unread);
  CHECK(kube.label_reads == 1);
  CHECK(unread.error().code == kms::Errc::unavailable);  // transient: the caller retries
  CHECK(unread.error().message ==
        "using ClusterSecretStore \"central\" from namespace \"team-a\" refused: "
        "could not read namespace labels: namespaces \"team-a\": connection refused");

  // A SecretStore object where a ClusterSecretStore was asked for is refused.
  kube.put(kube.cluster_stores, vault_store("team-a", "impostor"));
  {
    std::lock_guard l(kube.mu);  // the fake looks cluster stores up as "/name"
    kube.cluster_stores["/impostor"] = kube.cluster_stores["team-a/impostor"];
  }
  auto impostor =
      run_sync(resolver.resolve(model::StoreRef{"impostor", model::StoreKind::cluster_secret_store}, "team-a"));
  REQUIRE_FALSE(impostor);
  CHECK(impostor.error().code == kms::Errc::permission_denied);
  CHECK(impostor.error().message ==
        "using ClusterSecretStore \"impostor\" from namespace \"team-a\" refused: the object is a SecretStore");

  // A SecretStore of another namespace is never used.
  kube.put(kube.stores, vault_store("team-b", "vault"));
  auto elsewhere = run_sync(resolver.resolve(model::StoreRef{"vault", model::StoreKind::secret_store}, "team-a"));
  REQUIRE_FALSE(elsewhere);
  CHECK(elsewhere.error().code == kms::Errc::not_found);
  CHECK(run_sync(resolver.resolve(model::StoreRef{"vault", model::StoreKind::secret_store}, "team-b")));

  // An invalid store is refused with its parse error.
  json::value invalid = vault_store("team-a", "broken");
  invalid.as_object()["spec"].as_object()["provider"] = json::object();
  kube.put(kube.stores, invalid);
  auto broken = run_sync(resolver.resolve(model::StoreRef{"broken", model::StoreKind::secret_store}, "team-a"));
  REQUIRE_FALSE(broken);
  CHECK(broken.error().code == kms::Errc::invalid_argument);
  CHECK(broken.error().message.starts_with("SecretStore \"broken\" is invalid: spec.provider"));
}

TEST_CASE("admit: fails closed when labels are needed and absent, when kinds differ, on an unknown operator") {
  auto parsed = model::parse_secret_store(cluster_store(
      "c", "vault", R"([{"namespaceSelector":{"matchExpressions":[{"key":"x","operator":"DoesNotExist"}]}}])"));
  REQUIRE(parsed);
  const model::StoreRef ref{"c", model::StoreKind::cluster_secret_store};
  CHECK(needs_namespace_labels(*parsed));
  // Not read at all: refused (never evaluated against "no labels").
  CHECK(admit(ref, *parsed, "team-a", nullptr).error().code == kms::Errc::permission_denied);
  const kms::Result<model::StringMap> empty = model::StringMap{};
  CHECK(admit(ref, *parsed, "team-a", &empty));
  const kms::Result<model::StringMap> failed = kms::fail(kms::Errc::permission_denied, "namespaces is forbidden");
  CHECK(admit(ref, *parsed, "team-a", &failed).error().code == kms::Errc::permission_denied);
  const model::StoreRef as_namespaced{"c", model::StoreKind::secret_store};
  CHECK_FALSE(admit(as_namespaced, *parsed, "team-a", &empty));

  // An operator the parser would reject (a hand-built selector) matches nothing.
  model::LabelSelector sel;
  sel.match_expressions.push_back({"x", "Contains", {"y"}});
  CHECK_FALSE(model::matches(sel, {}));
  CHECK_FALSE(model::matches(sel, {{"x", "y"}}));
  parsed->conditions.front().namespace_selector = sel;
  CHECK_FALSE(admit(ref, *parsed, "team-a", &empty));
}

TEST_CASE("host_store_for: the one lookup of a host store, refused outside its namespaces") {
  std::map<std::string, HostStoreConfig> hosts;
  hosts["prod"].name = "prod";
  hosts["prod"].namespaces = {"team-a"};
  hosts["any"].name = "any";
  hosts["any"].namespaces = {"*"};
  auto store = model::parse_secret_store(cluster_store("c", "vault", ""));
  REQUIRE(store);
  auto none = host_store_for(hosts, *store, "team-a");
  REQUIRE(none);
  CHECK(*none == nullptr);
  store->host_credentials = "prod";
  CHECK(*host_store_for(hosts, *store, "team-a") == &hosts["prod"]);
  auto other = host_store_for(hosts, *store, "team-b");
  REQUIRE_FALSE(other);
  CHECK(other.error().message ==
        "host credentials 'prod' may not be used from namespace \"team-b\" (sync.stores.prod.namespaces)");
  CHECK_FALSE(host_store_for(hosts, *store, ""));  // no user namespace: refused
  store->host_credentials = "any";
  CHECK(*host_store_for(hosts, *store, "team-z") == &hosts["any"]);
  store->host_credentials = "unknown";
  CHECK(host_store_for(hosts, *store, "team-a").error().code == kms::Errc::invalid_argument);
  // A SecretStore is checked against its own namespace.
  auto ns_store = model::parse_secret_store(vault_store("team-b", "v"));
  REQUIRE(ns_store);
  ns_store->host_credentials = "prod";
  CHECK_FALSE(host_store_for(hosts, *ns_store, "team-a"));
}
