// rootseal::sync::reconcile — rollout restarts and PushSecrets against fakes.
#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>

#include "engine/provider_source.hpp"
#include "model/parse.hpp"
#include "reconcile/eso_meta.hpp"
#include "rootseal/kms/encoding.hpp"
#include "reconcile/push_secret_reconciler.hpp"
#include "reconcile/rollout.hpp"
#include "reconcile_fakes.hpp"
#include "rootseal/sync/shard.hpp"

using namespace rootseal;
using namespace rootseal::sync;
using namespace rootseal::sync::reconcile;
using namespace rootseal::sync::testing;
namespace json = boost::json;

namespace {

json::value secret(std::string_view name, std::string_view b64value) {
  return json::parse(R"({"apiVersion":"v1","kind":"Secret","metadata":{"name":")" + std::string(name) +
                     R"(","namespace":"ns"},"data":{"v":")" + std::string(b64value) + R"("}})");
}

void add_deployment(FakeKube& k, std::string_view name, std::string_view reload) {
  json::value d =
      json::parse(R"({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":")" + std::string(name) +
                  R"(","namespace":"ns","annotations":{}},"spec":{"template":{"metadata":{}}}})");
  if (!reload.empty()) d.as_object()["metadata"].as_object()["annotations"].as_object()[kReloadAnnotation] = reload;
  k.workloads_["ns/Deployment/" + std::string(name)] = {Resource::deployment, d};
}

std::string restarted_at(FakeKube& k, std::string_view name) {
  const auto& d = k.workloads_["ns/Deployment/" + std::string(name)].second;
  const auto* ann = d.at("spec").at("template").at("metadata").as_object().if_contains("annotations");
  if (ann == nullptr) return "";
  const auto* v = ann->as_object().if_contains(kRestartedAtAnnotation);
  return v ? std::string(v->as_string()) : "";
}

}  // namespace

TEST_CASE("rollout restart: first sight records, a data change restarts exactly once, others untouched") {
  FakeKube k;
  k.put(k.secrets, secret("db", "YQ=="));
  add_deployment(k, "web", "db, other");
  add_deployment(k, "plain", "");
  auto t = std::chrono::system_clock::time_point(std::chrono::hours(400000));
  RolloutReconciler r(k, [&] { return t; });
  CHECK(r.referencing("ns", "db") == std::vector<std::pair<Resource, std::string>>{{Resource::deployment, "web"}});

  run_sync(r.reconcile(Resource::deployment, "ns", "web"));
  CHECK(restarted_at(k, "web").empty());
  CHECK(k.patches.size() == 1);  // the record only
  run_sync(r.reconcile(Resource::deployment, "ns", "web"));
  CHECK(k.patches.size() == 1);  // nothing changed: no write

  {
    std::lock_guard l(k.mu);
    k.secrets["ns/db"].as_object()["data"].as_object()["v"] = "Yg==";
  }
  run_sync(r.reconcile(Resource::deployment, "ns", "web"));
  const std::string first = restarted_at(k, "web");
  CHECK_FALSE(first.empty());
  CHECK(r.restarts() == 1);
  t += std::chrono::minutes(1);
  run_sync(r.reconcile(Resource::deployment, "ns", "web"));
  run_sync(r.reconcile(Resource::deployment, "ns", "web"));
  CHECK(restarted_at(k, "web") == first);
  CHECK(r.restarts() == 1);
  run_sync(r.reconcile(Resource::deployment, "ns", "plain"));
  CHECK(restarted_at(k, "plain").empty());
  CHECK(split_names(" a, ,b ,c") == std::vector<std::string>{"a", "b", "c"});
}

namespace {

json::value aws_store() {
  return json::parse(
      R"({"apiVersion":"external-secrets.io/v1","kind":"SecretStore","metadata":{"name":"aws","namespace":"ns"},
    "spec":{"provider":{"aws":{"service":"SecretsManager","region":"us-east-1","auth":{"secretRef":{
      "accessKeyIDSecretRef":{"name":"a","key":"id"},"secretAccessKeySecretRef":{"name":"a","key":"sk"}}}}}}})");
}

json::value push_secret(std::string_view selector, std::string_view extra = "") {
  return json::parse(
      R"({"apiVersion":"external-secrets.io/v1alpha1","kind":"PushSecret","metadata":{"name":"p","namespace":"ns"},
    "spec":{"refreshInterval":"1m","secretStoreRefs":[{"name":"aws"}],"selector":)" +
      std::string(selector) + R"(,"data":[{"match":{"secretKey":"v","remoteRef":{"remoteKey":"app/v"}}}])" +
      std::string(extra) + "}}");
}

std::string ps_condition(FakeKube& k, std::string_view field) {
  std::lock_guard l(k.mu);
  return std::string(k.push_secrets["ns/p"].at("status").at("conditions").at(0).at(field).as_string());
}

}  // namespace

TEST_CASE("PushSecret: pushes the source Secret, no write when unchanged, reacts to changes, status") {
  FakeKube k;
  PushProviders p;
  k.put(k.stores, aws_store());
  k.put(k.secrets, secret("src", "b25l"));  // "one"
  k.put(k.push_secrets, push_secret(R"({"secret":{"name":"src"}})"));
  PushSecretReconciler r(k, p, [] { return std::chrono::system_clock::now(); });
  auto res = run_sync(r.reconcile("ns", "p"));
  CHECK(res.kind == ReconcileResult::Kind::requeue_after);
  CHECK(p.push->remote["app/v"] == "one");
  CHECK(ps_condition(k, "reason") == "Synced");
  CHECK(ps_condition(k, "message") == "PushSecret synced successfully");  // ESO's markAsDone
  REQUIRE(k.count_events("Synced") == 1);
  CHECK(k.events.back().message == "PushSecret synced successfully");
  CHECK_FALSE(k.events.back().warning);
  {
    std::lock_guard l(k.mu);
    CHECK(k.push_secrets["ns/p"]
              .at("status")
              .at("syncedPushSecrets")
              .at("SecretStore/aws")
              .as_object()
              .contains("app/v"));
  }
  CHECK(r.readers_of("ns", "src") == std::vector<std::string>{"ns/p"});
  const int status_writes = k.status_patches;
  for (int i = 0; i < 10; ++i) run_sync(r.reconcile("ns", "p"));
  CHECK(p.push->writes == 1);                // ten idle refreshes: zero remote writes
  CHECK(k.status_patches == status_writes);  // and zero status writes
  {
    std::lock_guard l(k.mu);
    k.secrets["ns/src"].as_object()["data"].as_object()["v"] = "dHdv";  // "two"
  }
  run_sync(r.reconcile("ns", "p"));
  CHECK(p.push->remote["app/v"] == "two");
  CHECK(p.push->writes == 2);
  CHECK(k.count_events("Synced") == 2);  // one per change, none for the idle refreshes
}

TEST_CASE("PushSecret: sharded the bucket's epoch goes with every push and a newer owner's value stops it") {
  FakeKube k;
  PushProviders p;
  k.put(k.stores, aws_store());
  k.put(k.secrets, secret("src", "b25l"));  // "one"
  k.put(k.push_secrets, push_secret(R"({"secret":{"name":"src"}})"));
  k.epoch = 4242;
  PushSecretReconciler r(k, p, [] { return std::chrono::system_clock::now(); });
  run_sync(r.reconcile("ns", "p"));
  CHECK(p.push->remote["app/v"] == "one");
  CHECK(p.push->seen_epoch == 4242);
  CHECK(p.push->seen_bucket == namespace_bucket("ns"));
  CHECK(ps_condition(k, "reason") == "Synced");
  CHECK(r.stats().stale_refused == 0);

  // The remote value is a newer owner's: counted, no status, no event, no
  // error, the usual refresh (not a retry with backoff).
  p.push->newer_epoch = 5000;
  {
    std::lock_guard l(k.mu);
    k.secrets["ns/src"].as_object()["data"].as_object()["v"] = "dHdv";  // "two"
  }
  const int status_writes = k.status_patches;
  const auto events = k.events.size();
  for (int i = 0; i < 3; ++i) {
    const auto res = run_sync(r.reconcile("ns", "p"));
    CHECK(res.kind == ReconcileResult::Kind::requeue_after);
  }
  CHECK(p.push->remote["app/v"] == "one");
  CHECK(r.stats().stale_refused == 3);
  CHECK(r.stats().errors == 0);
  CHECK(k.status_patches == status_writes);
  CHECK(k.events.size() == events);
  CHECK(ps_condition(k, "reason") == "Synced");
}

TEST_CASE("PushSecret: updatePolicy IfNotExists says so in the condition, as ESO") {
  FakeKube k;
  PushProviders p;
  k.put(k.stores, aws_store());
  k.put(k.secrets, secret("src", "b25l"));
  k.put(k.push_secrets, push_secret(R"({"secret":{"name":"src"}})", R"(,"updatePolicy":"IfNotExists")"));
  p.push->remote["app/v"] = "kept";
  PushSecretReconciler r(k, p, [] { return std::chrono::system_clock::now(); });
  run_sync(r.reconcile("ns", "p"));
  CHECK(p.push->remote["app/v"] == "kept");
  CHECK(ps_condition(k, "reason") == "Synced");
  CHECK(ps_condition(k, "message") == "PushSecret synced successfully. Existing secrets in providers unchanged.");
}

TEST_CASE("PushSecret: an unmanaged remote secret is refused with the reason in status and one Warning event") {
  FakeKube k;
  PushProviders p;
  k.put(k.stores, aws_store());
  k.put(k.secrets, secret("src", "b25l"));
  k.put(k.push_secrets, push_secret(R"({"secret":{"name":"src"}})"));
  p.push->remote["app/v"] = "theirs";
  p.push->unmanaged.insert("app/v");
  PushSecretReconciler r(k, p, [] { return std::chrono::system_clock::now(); });
  CHECK(run_sync(r.reconcile("ns", "p")).kind == ReconcileResult::Kind::retry);
  CHECK(p.push->remote["app/v"] == "theirs");
  CHECK(ps_condition(k, "reason") == "Errored");
  CHECK(ps_condition(k, "message")
            .starts_with(
                "set secret failed: could not write remote ref v to target secretstore aws: "));  // ESO's wrapping
  CHECK(ps_condition(k, "message").find("not managed by rootseal") != std::string::npos);
  // ESO's markAsFailed: a Warning event "Errored" with the condition's message, once per distinct error.
  REQUIRE(k.count_events("Errored") == 1);
  CHECK(k.events.back().warning);
  CHECK(k.events.back().about == "ns/p");
  CHECK(k.events.back().message == ps_condition(k, "message"));
  CHECK(run_sync(r.reconcile("ns", "p")).kind == ReconcileResult::Kind::retry);
  CHECK(k.count_events("Errored") == 1);
}

TEST_CASE("PushSecret: ESO's texts for a missing source Secret or key and a missing store") {
  FakeKube k;
  PushProviders p;
  k.put(k.stores, aws_store());
  k.put(k.push_secrets, push_secret(R"({"secret":{"name":"src"}})"));
  PushSecretReconciler r(k, p, [] { return std::chrono::system_clock::now(); });
  CHECK(run_sync(r.reconcile("ns", "p")).kind == ReconcileResult::Kind::retry);
  CHECK(ps_condition(k, "reason") == "Errored");
  CHECK(ps_condition(k, "message") == "could not get source secret");  // ESO's errFailedGetSecret
  CHECK(k.events.back().message == "could not get source secret");
  k.put(k.secrets, secret("src", "b25l"));
  k.put(k.push_secrets, json::parse(R"({"apiVersion":"external-secrets.io/v1alpha1","kind":"PushSecret",
      "metadata":{"name":"p","namespace":"ns"},"spec":{"refreshInterval":"1m","secretStoreRefs":[{"name":"aws"}],
      "selector":{"secret":{"name":"src"}},"data":[{"match":{"secretKey":"nope","remoteRef":{"remoteKey":"app/v"}}}]}})"));
  CHECK(run_sync(r.reconcile("ns", "p")).kind == ReconcileResult::Kind::retry);
  CHECK(ps_condition(k, "message") == "set secret failed: secret key nope does not exist");
  k.stores.clear();
  CHECK(run_sync(r.reconcile("ns", "p")).kind == ReconcileResult::Kind::retry);
  CHECK(ps_condition(k, "message") ==
        "could not get SecretStore \"aws\", secretstores.external-secrets.io \"aws\" not found");  // errGetSecretStore
  CHECK(k.events.back().message == ps_condition(k, "message"));
  CHECK(p.push->writes == 0);
}

TEST_CASE(
    "PushSecret metadata: handed to an aws store with the policy read from its ConfigMap or Secret, refused "
    "elsewhere") {
  FakeKube k;
  PushProviders p;
  k.put(k.stores, aws_store());
  k.put(k.secrets, secret("src", "b25l"));  // "one"
  const auto with_metadata = [&](std::string_view source_kind) {
    k.put(
        k.push_secrets,
        json::parse(
            R"({"apiVersion":"external-secrets.io/v1alpha1","kind":"PushSecret","metadata":{"name":"p","namespace":"ns"},
      "spec":{"refreshInterval":"1m","secretStoreRefs":[{"name":"aws"}],"selector":{"secret":{"name":"src"}},
      "data":[{"match":{"secretKey":"v","remoteRef":{"remoteKey":"app/v"}},
               "metadata":{"apiVersion":"kubernetes.external-secrets.io/v1alpha1","kind":"PushSecretMetadata",
                 "spec":{"tags":{"team":"a"},"description":"d","kmsKeyId":"alias/k",
                   "resourcePolicy":{"blockPublicPolicy":false,
                     "policySourceRef":{"kind":")" +
            std::string(source_kind) + R"(","name":"pol","key":"policy.json"}}}}}]}})"));
  };
  PushSecretReconciler r(k, p, [] { return std::chrono::system_clock::now(); });

  // A store whose provider applies no metadata: refused, nothing pushed.
  with_metadata("ConfigMap");
  CHECK(run_sync(r.reconcile("ns", "p")).kind == ReconcileResult::Kind::retry);
  CHECK(p.push->writes == 0);
  CHECK(ps_condition(k, "message") ==
        "invalid PushSecret: spec.data[0].metadata: not supported by rootseal for fake stores (SecretStore/aws); "
        "PushSecretMetadata is applied to AWS Secrets Manager, Azure Key Vault and GCP Secret Manager only");
  // Azure applies tags, contentType and expirationDate: the first AWS-only field is refused by name.
  p.push->kind_name = "azure";
  CHECK(run_sync(r.reconcile("ns", "p")).kind == ReconcileResult::Kind::retry);
  CHECK(p.push->writes == 0);
  CHECK(ps_condition(k, "message") ==
        "invalid PushSecret: spec.data[0].metadata.spec.description: not supported by rootseal for azure stores "
        "(SecretStore/aws)");
  p.push->kind_name = "gcp";  // GCP applies labels, annotations and mergePolicy
  CHECK(run_sync(r.reconcile("ns", "p")).kind == ReconcileResult::Kind::retry);
  CHECK(p.push->writes == 0);
  CHECK(ps_condition(k, "message") ==
        "invalid PushSecret: spec.data[0].metadata.spec.tags: not supported by rootseal for gcp stores "
        "(SecretStore/aws)");

  p.push->kind_name = "aws";
  // The ConfigMap is missing: refused with its name.
  CHECK(run_sync(r.reconcile("ns", "p")).kind == ReconcileResult::Kind::retry);
  CHECK(p.push->writes == 0);
  CHECK(ps_condition(k, "message") ==
        "spec.data[0].metadata: failed to resolve resource policy: failed to get ConfigMap ns/pol");
  // Not JSON: refused before any write.
  k.put(k.config_maps, json::parse(R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"pol","namespace":"ns"},
    "data":{"policy.json":"not json"}})"));
  CHECK(run_sync(r.reconcile("ns", "p")).kind == ReconcileResult::Kind::retry);
  CHECK(p.push->writes == 0);
  CHECK(ps_condition(k, "message") ==
        "spec.data[0].metadata: failed to resolve resource policy: the policy in ConfigMap "
        "ns/pol key policy.json is not a JSON object");
  const std::string policy = R"({"Version":"2012-10-17","Statement":[]})";
  k.put(k.config_maps, json::parse(R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"pol","namespace":"ns"},
    "data":{"policy.json":)" + json::serialize(json::value(policy)) +
                                   "}}"));
  CHECK(run_sync(r.reconcile("ns", "p")).kind == ReconcileResult::Kind::requeue_after);
  CHECK(p.push->remote["app/v"] == "one");
  REQUIRE(p.push->seen_metadata.has_value());
  CHECK(p.push->seen_metadata->tags == std::map<std::string, std::string, std::less<>>{{"team", "a"}});
  CHECK(p.push->seen_metadata->description == "d");
  CHECK(p.push->seen_metadata->kms_key_id == "alias/k");
  CHECK_FALSE(p.push->seen_metadata->push_as_string);
  REQUIRE(p.push->seen_metadata->resource_policy.has_value());
  CHECK(p.push->seen_metadata->resource_policy->policy == policy);
  CHECK(p.push->seen_metadata->resource_policy->block_public_policy == std::optional<bool>(false));

  // From a Secret (its value decoded); a missing key is named.
  with_metadata("Secret");
  k.put(k.secrets, json::parse(R"({"apiVersion":"v1","kind":"Secret","metadata":{"name":"pol","namespace":"ns"},
    "data":{"other":"e30="}})"));
  CHECK(run_sync(r.reconcile("ns", "p")).kind == ReconcileResult::Kind::retry);
  CHECK(ps_condition(k, "message") ==
        "spec.data[0].metadata: failed to resolve resource policy: key policy.json not found in Secret ns/pol");
  k.put(k.secrets, json::parse(R"({"apiVersion":"v1","kind":"Secret","metadata":{"name":"pol","namespace":"ns"},
    "data":{"policy.json":"eyJhIjoxfQ=="}})"));  // {"a":1}
  CHECK(run_sync(r.reconcile("ns", "p")).kind == ReconcileResult::Kind::requeue_after);
  REQUIRE(p.push->seen_metadata.has_value());
  CHECK(p.push->seen_metadata->resource_policy->policy == R"({"a":1})");
  CHECK(ps_condition(k, "reason") == "Synced");
}

TEST_CASE("PushSecret: store-to-cloud via selector.remoteRef, and deletionPolicy Delete with its finalizer") {
  FakeKube k;
  PushProviders p;
  k.put(k.stores, aws_store());
  k.put(k.stores, vault_store("ns", "vault"));
  p.pull->set("db/creds", R"({"v":"from-vault"})");
  k.put(k.push_secrets, push_secret(R"({"remoteRef":{"storeRef":{"name":"vault"},"key":"db/creds"}})",
                                    R"(,"deletionPolicy":"Delete")"));
  PushSecretReconciler r(k, p, [] { return std::chrono::system_clock::now(); });
  run_sync(r.reconcile("ns", "p"));
  CHECK(p.push->remote["app/v"] == "from-vault");
  {
    std::lock_guard l(k.mu);
    const auto& fins = k.push_secrets["ns/p"].at("metadata").at("finalizers").as_array();
    REQUIRE(fins.size() == 1);
    CHECK(fins[0] == "pushsecret.externalsecrets.io/finalizer");
    k.push_secrets["ns/p"].as_object()["metadata"].as_object()["deletionTimestamp"] = "2026-01-01T00:00:00Z";
  }
  run_sync(r.reconcile("ns", "p"));
  CHECK(p.push->removes == 1);
  CHECK_FALSE(p.push->remote.contains("app/v"));
  {
    std::lock_guard l(k.mu);
    CHECK(k.push_secrets["ns/p"].at("metadata").at("finalizers").as_array().empty());
  }
}

TEST_CASE("PushSecret: selector.remoteRef with metadataPolicy Fetch pushes a tag of the source") {
  FakeKube k;
  PushProviders p;
  k.put(k.stores, aws_store());
  k.put(k.stores, vault_store("ns", "vault"));
  p.pull->set("db/creds", R"({"v":"the-value"})");
  p.pull->metadata["db/creds"] = R"({"v":"the-owner"})";
  k.put(k.push_secrets,
        push_secret(R"({"remoteRef":{"storeRef":{"name":"vault"},"key":"db/creds","metadataPolicy":"Fetch"}})"));
  PushSecretReconciler r(k, p, [] { return std::chrono::system_clock::now(); });
  run_sync(r.reconcile("ns", "p"));
  CHECK(p.push->remote["app/v"] == "the-owner");
  CHECK(p.pull->metadata_calls == 1);
  CHECK(p.pull->calls == 0);
}

// ---- EngineProviders: the specs of the push-only stores ----------------------

namespace {

json::value k8s_secret(std::string_view ns, std::string_view name, std::string_view key1, std::string_view v1,
                       std::string_view key2 = {}, std::string_view v2 = {}) {
  json::object data;
  data[key1] =
      kms::base64_encode(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(v1.data()), v1.size()));
  if (!key2.empty()) {
    data[key2] =
        kms::base64_encode(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(v2.data()), v2.size()));
  }
  json::object md;
  md["name"] = name;
  md["namespace"] = ns;
  json::object s;
  s["apiVersion"] = "v1";
  s["kind"] = "Secret";
  s["metadata"] = std::move(md);
  s["data"] = std::move(data);
  return s;
}

model::SecretStore store_of(std::string_view text) {
  auto s = model::parse_secret_store(json::parse(text));
  REQUIRE(s.has_value());
  return std::move(*s);
}

std::string as_text(const kms::SecureBytes& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// A 0600 file holding `text`, removed with the object.
struct PrivateFile {
  std::filesystem::path path;
  explicit PrivateFile(std::string_view text) {
    path = std::filesystem::temp_directory_path() / ("rootseal-cred-" + std::to_string(::getpid()) + "-" +
                                                     std::to_string(reinterpret_cast<std::uintptr_t>(this)));
    std::ofstream(path) << text << "\n";
    std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  }
  ~PrivateFile() { std::filesystem::remove(path); }
};

HostStoreConfig host_config(std::string name, HostSettings settings, std::vector<std::string> namespaces) {
  HostStoreConfig h;
  h.name = std::move(name);
  h.settings = std::move(settings);
  h.namespaces = std::move(namespaces);
  return h;
}

}  // namespace

TEST_CASE("EngineProviders: azurekv and gcpsm specs from Kubernetes Secrets, pull from them refused") {
  boost::asio::io_context io;
  FakeKube kube;
  kube.put(kube.secrets, k8s_secret("ns", "azure", "client-id", "app-1", "client-secret", "s3cret"));
  kube.put(kube.secrets, k8s_secret("ns", "gcp", "sa.json", R"({"client_email":"a@b"})"));
  kube.put(kube.secrets, k8s_secret("ns", "vault-token", "token", "t"));
  engine::EngineProviders ep(kube, ProviderFactory(io.get_executor()), {}, {});

  const auto az = store_of(R"({"kind":"SecretStore","metadata":{"name":"kv","namespace":"ns","resourceVersion":"1"},
    "spec":{"provider":{"azurekv":{"vaultUrl":"https://kv.vault.azure.net","tenantId":"t-1","environmentType":"USGovernmentCloud",
      "authSecretRef":{"clientId":{"name":"azure","key":"client-id"},"clientSecret":{"name":"azure","key":"client-secret"}}}}}})");
  auto spec = run_sync(ep.spec_for(az, "ns"));
  REQUIRE(spec.has_value());
  const auto* a = std::get_if<AzureSpec>(&*spec);
  REQUIRE(a != nullptr);
  CHECK(a->vault_url == "https://kv.vault.azure.net");
  CHECK(a->tenant_id == "t-1");
  CHECK(a->client_id == "app-1");
  CHECK(as_text(a->client_secret) == "s3cret");
  CHECK(a->authority_host == "https://login.microsoftonline.us");

  const auto g = store_of(R"({"kind":"SecretStore","metadata":{"name":"sm","namespace":"ns","resourceVersion":"1"},
    "spec":{"provider":{"gcpsm":{"projectID":"p-1","auth":{"secretRef":{"secretAccessKeySecretRef":{"name":"gcp","key":"sa.json"}}}}}}})");
  auto gspec = run_sync(ep.spec_for(g, "ns"));
  REQUIRE(gspec.has_value());
  const auto* gs = std::get_if<GcpSpec>(&*gspec);
  REQUIRE(gs != nullptr);
  CHECK(gs->project_id == "p-1");
  CHECK(as_text(gs->service_account_json) == R"({"client_email":"a@b"})");
  CHECK(gs->endpoint == "https://secretmanager.googleapis.com");

  // A missing credential key is named in the error.
  const auto bad = store_of(R"({"kind":"SecretStore","metadata":{"name":"kv2","namespace":"ns"},
    "spec":{"provider":{"azurekv":{"vaultUrl":"https://kv.vault.azure.net","tenantId":"t-1",
      "authSecretRef":{"clientId":{"name":"azure","key":"nope"},"clientSecret":{"name":"azure","key":"client-secret"}}}}}})");
  auto missing = run_sync(ep.spec_for(bad, "ns"));
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().message == "credential Secret ns/azure has no key 'nope'");

  // Reading from Azure Key Vault (pull since the providers serve it), pushing to Vault (KV v2, as ESO).
  auto pull = run_sync(ep.provider(az, "ns"));
  REQUIRE(pull.has_value());
  CHECK((*pull)->kind() == "azure");
  const auto vs = store_of(json::serialize(vault_store("ns", "v")));
  auto push_vault = run_sync(ep.push_provider(vs, "ns"));
  REQUIRE(push_vault.has_value());
  CHECK((*push_vault)->kind() == "vault");
}

TEST_CASE("EngineProviders: host credentials for azure and gcp take endpoints from the configuration") {
  boost::asio::io_context io;
  FakeKube kube;
  PrivateFile az_secret("host-secret");
  PrivateFile sa(R"({"client_email":"host@p"})");
  std::map<std::string, HostStoreConfig> host;
  AzureHost az;
  az.vault_url = "https://kv.vault.azure.net/";
  az.tenant_id = "t-host";
  az.client_id = "app-host";
  az.authority_host = "http://127.0.0.1:9";
  az.client_secret.file = az_secret.path;
  host["azure-prod"] = host_config("azure-prod", az, {"team-a"});
  GcpHost g;
  g.project_id = "p-host";
  g.gcp_endpoint = "http://127.0.0.1:8";
  g.token_uri = "http://127.0.0.1:8/token";
  g.service_account_json.file = sa.path;
  host["gcp-prod"] = host_config("gcp-prod", g, {"*"});
  host["gcp-prod"].ca_file = "/etc/rootseal/gcp-ca.pem";
  engine::EngineProviders ep(kube, ProviderFactory(io.get_executor()), host, {});

  auto store = [](std::string_view ns, std::string_view cred, std::string_view provider) {
    return store_of(R"({"kind":"SecretStore","metadata":{"name":"s","namespace":")" + std::string(ns) +
                    R"(","annotations":{"sync.rootseal.io/credentials":")" + std::string(cred) +
                    R"("}},"spec":{"provider":)" + std::string(provider) + "}}");
  };
  auto spec = run_sync(
      ep.spec_for(store("team-a", "azure-prod", R"({"azurekv":{"vaultUrl":"https://kv.vault.azure.net"}})"), "team-a"));
  REQUIRE(spec.has_value());
  const auto* a = std::get_if<AzureSpec>(&*spec);
  REQUIRE(a != nullptr);
  CHECK(a->tenant_id == "t-host");
  CHECK(a->client_id == "app-host");
  CHECK(a->authority_host == "http://127.0.0.1:9");
  CHECK(as_text(a->client_secret) == "host-secret");

  // The store may not redirect the host's credentials, nor use them from another namespace.
  auto other_vault = run_sync(
      ep.spec_for(store("team-a", "azure-prod", R"({"azurekv":{"vaultUrl":"https://evil.example"}})"), "team-a"));
  REQUIRE_FALSE(other_vault.has_value());
  CHECK(other_vault.error().code == kms::Errc::permission_denied);
  CHECK(other_vault.error().message ==
        "spec.provider.azurekv.vaultUrl must be https://kv.vault.azure.net to use host credentials 'azure-prod'");
  auto other_tenant = run_sync(ep.spec_for(
      store("team-a", "azure-prod", R"({"azurekv":{"vaultUrl":"https://kv.vault.azure.net","tenantId":"t-other"}})"),
      "team-a"));
  REQUIRE_FALSE(other_tenant.has_value());
  CHECK(other_tenant.error().code == kms::Errc::permission_denied);
  auto other_ns = run_sync(
      ep.spec_for(store("team-b", "azure-prod", R"({"azurekv":{"vaultUrl":"https://kv.vault.azure.net"}})"), "team-b"));
  REQUIRE_FALSE(other_ns.has_value());
  CHECK(other_ns.error().message.find("may not be used from namespace \"team-b\"") != std::string::npos);
  auto wrong_kind = run_sync(
      ep.spec_for(store("team-a", "gcp-prod", R"({"azurekv":{"vaultUrl":"https://kv.vault.azure.net"}})"), "team-a"));
  REQUIRE_FALSE(wrong_kind.has_value());
  CHECK(wrong_kind.error().message == "host credentials 'gcp-prod' are not for azure");

  auto gspec = run_sync(ep.spec_for(store("any", "gcp-prod", R"({"gcpsm":{}})"), "any"));
  REQUIRE(gspec.has_value());
  const auto* gs = std::get_if<GcpSpec>(&*gspec);
  REQUIRE(gs != nullptr);
  CHECK(gs->project_id == "p-host");
  CHECK(gs->endpoint == "http://127.0.0.1:8");
  CHECK(gs->token_uri == "http://127.0.0.1:8/token");
  CHECK(gs->tls.ca_file == "/etc/rootseal/gcp-ca.pem");
  CHECK(as_text(gs->service_account_json) == R"({"client_email":"host@p"})");
  auto other_project = run_sync(ep.spec_for(store("any", "gcp-prod", R"({"gcpsm":{"projectID":"p-other"}})"), "any"));
  REQUIRE_FALSE(other_project.has_value());
  CHECK(other_project.error().message ==
        "spec.provider.gcpsm.projectID must be p-host (or empty) to use host credentials 'gcp-prod'");
}

TEST_CASE("EngineProviders: an aws store on auth.secretRef uses sync.aws_endpoint, host stores keep their own") {
  boost::asio::io_context io;
  FakeKube kube;
  kube.put(kube.secrets, k8s_secret("ns", "awssm", "access-key", "AKIDTENANT", "secret-access-key", "tenant-secret"));
  PrivateFile id("AKIDHOST");
  PrivateFile sk("host-secret");
  std::map<std::string, HostStoreConfig> host;
  AwsHost h;
  h.region = "eu-west-1";
  h.endpoint = "http://127.0.0.1:7";
  h.access_key_id.file = id.path;
  h.secret_access_key.file = sk.path;
  host["aws-host"] = host_config("aws-host", h, {"*"});
  engine::EngineProviders ep(kube, ProviderFactory(io.get_executor()), host, {});
  const auto tenant = store_of(R"({"kind":"SecretStore","metadata":{"name":"aws","namespace":"ns"},
    "spec":{"provider":{"aws":{"service":"SecretsManager","region":"eu-west-1","auth":{"secretRef":{
      "accessKeyIDSecretRef":{"name":"awssm","key":"access-key"},
      "secretAccessKeySecretRef":{"name":"awssm","key":"secret-access-key"}}}}}}})");
  const auto on_host = store_of(R"({"kind":"SecretStore","metadata":{"name":"aws2","namespace":"ns",
    "annotations":{"sync.rootseal.io/credentials":"aws-host"}},
    "spec":{"provider":{"aws":{"service":"SecretsManager","region":"eu-west-1"}}}})");
  auto aws_of = [&](const model::SecretStore& s) {
    auto spec = run_sync(ep.spec_for(s, "ns"));
    REQUIRE(spec.has_value());
    REQUIRE(std::holds_alternative<AwsSpec>(*spec));
    return std::get<AwsSpec>(std::move(*spec));
  };
  // Not configured: AWS's own endpoint (the provider's default).
  CHECK(aws_of(tenant).endpoint.empty());
  ep.aws_endpoint("http://127.0.0.1:5000");
  const auto t = aws_of(tenant);
  CHECK(t.endpoint == "http://127.0.0.1:5000");
  CHECK(as_text(t.access_key_id) == "AKIDTENANT");
  CHECK(as_text(t.secret_access_key) == "tenant-secret");
  const auto hs = aws_of(on_host);
  CHECK(hs.endpoint == "http://127.0.0.1:7");
  CHECK(as_text(hs.access_key_id) == "AKIDHOST");
}

namespace {

json::value push_object(std::string_view tmpl) {
  return json::parse(
      R"({"apiVersion":"external-secrets.io/v1alpha1","kind":"PushSecret","metadata":{"name":"p","namespace":"ns"},
    "spec":{"refreshInterval":"1m","secretStoreRefs":[{"name":"aws"}],"selector":{"secret":{"name":"src"}},
    "data":[{"match":{"secretKey":"v","remoteRef":{"remoteKey":"app/v"}}},{"match":{"secretKey":"dsn","remoteRef":{"remoteKey":"app/dsn"}}}],
    "template":)" +
      std::string(tmpl) + "}}");
}

json::value config_map(std::string_view ns, std::string_view dsn) {
  return json::parse(R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"tpl","namespace":")" +
                     std::string(ns) + R"("},"data":{"dsn":")" + std::string(dsn) + R"("}})");
}

}  // namespace

// spec.template (push_template_test.cpp has the pure step): the reconciler's part.
TEST_CASE("PushSecret template: the reconciler pushes the templated values and reports a template failure") {
  FakeKube k;
  PushProviders p;
  k.put(k.stores, aws_store());
  k.put(k.secrets, json::parse(R"({"apiVersion":"v1","kind":"Secret","metadata":{"name":"src","namespace":"ns"},
    "data":{"v":"czNjcjN0LXZhbHVl"}})"));  // "s3cr3t-value"
  const std::string tmpl =
      R"({"data":{"v":"{{ .v | upper }}"},"templateFrom":[{"configMap":{"name":"tpl","items":[{"key":"dsn"}]}}]})";
  k.put(k.push_secrets, push_object(tmpl));
  PushSecretReconciler r(k, p, [] { return std::chrono::system_clock::now(); });

  // The ConfigMap is missing: ESO's wrapping of the API's NotFound, nothing pushed, retried.
  CHECK(run_sync(r.reconcile("ns", "p")).kind == ReconcileResult::Kind::retry);
  CHECK(ps_condition(k, "reason") == "Errored");
  CHECK(ps_condition(k, "message") == "error fetching templateFrom data: configmaps \"tpl\" not found");
  REQUIRE(k.count_events("Errored") == 1);
  CHECK(k.events.back().warning);
  CHECK(k.events.back().message == ps_condition(k, "message"));
  CHECK(p.push->writes == 0);

  // A ConfigMap of another namespace is never read; the PushSecret's own is.
  k.put(k.config_maps, config_map("other", "wrong"));
  CHECK(run_sync(r.reconcile("ns", "p")).kind == ReconcileResult::Kind::retry);
  CHECK(p.push->writes == 0);
  k.put(k.config_maps, config_map("ns", "pg://app:{{ .v }}@db"));
  CHECK(run_sync(r.reconcile("ns", "p")).kind == ReconcileResult::Kind::requeue_after);
  CHECK(p.push->remote["app/v"] == "S3CR3T-VALUE");
  CHECK(p.push->remote["app/dsn"] == "pg://app:s3cr3t-value@db");
  CHECK(ps_condition(k, "reason") == "Synced");
  CHECK(ps_condition(k, "message") == "PushSecret synced successfully");
  {
    std::lock_guard l(k.mu);  // the source Secret is templated in memory only
    CHECK(k.secrets["ns/src"].at("data") == json::parse(R"({"v":"czNjcjN0LXZhbHVl"})"));
  }

  // A template that fails on the value: Ready=False Errored and a Warning event with the error, no value in
  // either, nothing pushed; rootseal reports it where ESO's controller only returns the error (docs/push.md).
  k.put(k.push_secrets, push_object(R"({"data":{"v":"{{ .v | b64dec }}"}})"));
  const int writes = p.push->writes;
  CHECK(run_sync(r.reconcile("ns", "p")).kind == ReconcileResult::Kind::retry);
  CHECK(ps_condition(k, "status") == "False");
  CHECK(ps_condition(k, "reason") == "Errored");
  CHECK(ps_condition(k, "message").starts_with("could not execute template: spec.template.data.v: template: line 1: "));
  CHECK(ps_condition(k, "message").find("s3cr3t") == std::string::npos);
  CHECK(k.events.back().warning);
  CHECK(k.events.back().reason == "Errored");
  CHECK(k.events.back().message == ps_condition(k, "message"));
  CHECK(p.push->writes == writes);
  CHECK(p.push->remote["app/v"] == "S3CR3T-VALUE");
}
