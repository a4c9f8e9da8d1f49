// rootseal::sync::reconcile — the ExternalSecret reconciler against in-memory
// fakes of Kubernetes and of a provider.
#include <catch2/catch.hpp>

#include <set>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include "reconcile/eso_meta.hpp"
#include "reconcile/external_secret_reconciler.hpp"
#include "reconcile_fakes.hpp"
#include "rootseal/kms/encoding.hpp"

using namespace rootseal;
using namespace rootseal::sync;
using namespace rootseal::sync::reconcile;
using namespace rootseal::sync::testing;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

json::value es(std::string_view name, std::string_view spec_extra, std::string_view ns = "team-a") {
  return json::parse(R"({"apiVersion":"external-secrets.io/v1","kind":"ExternalSecret","metadata":{"name":")" +
                     std::string(name) + R"(","namespace":")" + std::string(ns) + R"(","generation":1},
    "spec":{"refreshInterval":"1h","secretStoreRef":{"name":"vault"},)" +
                     std::string(spec_extra) + "}}");
}

struct Fixture {
  FakeKube kube;
  FakeProviders providers;
  std::chrono::system_clock::time_point now = std::chrono::system_clock::time_point(std::chrono::hours(500000));
  std::chrono::steady_clock::time_point mono = std::chrono::steady_clock::time_point(std::chrono::hours(1));
  FetchCache cache{10s, [this] { return mono; }};
  ExternalSecretReconciler rec{kube, providers, cache, ReconcilerOptions{10s, [this] { return now; }}};

  Fixture() {
    kube.put(kube.stores, vault_store("team-a", "vault"));
    providers.fake->set("db/creds", R"({"username":"alice","password":"pw1"})");
  }
  ReconcileResult reconcile(std::string_view name, std::string_view ns = "team-a") {
    return run_sync(rec.reconcile(std::string(ns), std::string(name)));
  }
  void advance(std::chrono::seconds d) {
    now += d;
    mono += d;
  }
};

const char* kData = R"("data":[{"secretKey":"user","remoteRef":{"key":"db/creds","property":"username"}},
                               {"secretKey":"pass","remoteRef":{"key":"db/creds","property":"password"}}])";

}  // namespace

TEST_CASE("ESO's data hash is SHA3-224 of Go's %+v of the data map") {
  SecretMap m;
  m.emplace("k", kms::SecureBytes::copy_of(std::string_view("hi")));
  CHECK(data_hash(m) == "ce6ec4bd8605d40d1eb5656467e53d2d291f81b3feedff740901dbac");
  SecretMap m2;
  m2.emplace("b", kms::SecureBytes::copy_of(std::string_view("\x01\x02\xff")));
  m2.emplace("a", kms::SecureBytes());
  CHECK(data_hash(m2) == "2166a83779bf7f40188d6175957efb1e50cb51678afb7df6278ba63f");
  CHECK(data_hash(SecretMap{}) == "74a974446e359fb3e6baff9bd0058950e6edd0f040888d9989b0a11b");
  CHECK(created_by("ns1", "es1") == "20857d8ba7f864270c9452a73d61f15df3d0cfcb0769b0d81ccbc8e4");
}

TEST_CASE("an ExternalSecret creates its Secret with data, labels, hash annotation, owner reference and status") {
  Fixture f;
  f.kube.put(f.kube.external_secrets, es("db", std::string(kData) + R"(,"target":{"name":"db-secret","template":{
      "metadata":{"labels":{"team":"a"},"annotations":{"note":"x"}}}})"));
  auto r = f.reconcile("db");
  CHECK(r.kind == ReconcileResult::Kind::requeue_after);
  CHECK(f.kube.creates == 1);
  CHECK(f.kube.secret_value("team-a", "db-secret", "user") == "alice");
  CHECK(f.kube.secret_value("team-a", "db-secret", "pass") == "pw1");
  auto s = f.kube.snapshot(f.kube.secrets, "team-a", "db-secret");
  const auto& md = s->at("metadata");
  CHECK(md.at("labels").at("reconcile.external-secrets.io/managed") == "true");
  CHECK(md.at("labels").at("team") == "a");
  CHECK(md.at("labels").at("reconcile.external-secrets.io/created-by").as_string() == created_by("team-a", "db"));
  CHECK(md.at("annotations").at("note") == "x");
  SecretMap expect;
  expect.emplace("pass", kms::SecureBytes::copy_of(std::string_view("pw1")));
  expect.emplace("user", kms::SecureBytes::copy_of(std::string_view("alice")));
  CHECK(md.at("annotations").at("reconcile.external-secrets.io/data-hash").as_string() == data_hash(expect));
  const auto& ref = md.at("ownerReferences").as_array().at(0);
  CHECK(ref.at("kind") == "ExternalSecret");
  CHECK(ref.at("name") == "db");
  CHECK(ref.at("controller") == true);
  CHECK(f.kube.es_condition("team-a", "db", "reason") == "SecretSynced");
  CHECK(f.kube.es_condition("team-a", "db", "status") == "True");
  CHECK(f.kube.count_events("Created") == 1);
  CHECK(f.kube.events.back().message == "secret created");  // ESO's eventCreated
  CHECK_FALSE(f.kube.events.back().warning);
  // One provider call for two properties of the same key.
  CHECK(f.providers.fake->calls == 1);
}

TEST_CASE("a steady state makes no provider call within the refresh interval and no Kubernetes write") {
  Fixture f;
  f.kube.put(f.kube.external_secrets, es("db", kData));
  f.reconcile("db");
  const int writes = f.kube.creates + f.kube.updates + f.kube.status_patches;
  const int calls = f.providers.fake->calls;
  f.advance(60s);
  auto r = f.reconcile("db");
  CHECK(r.kind == ReconcileResult::Kind::requeue_after);
  CHECK(f.providers.fake->calls == calls);
  // After the interval: one provider call, still no write (nothing changed).
  f.advance(3600s);
  f.reconcile("db");
  CHECK(f.providers.fake->calls == calls + 1);
  CHECK(f.kube.creates + f.kube.updates + f.kube.status_patches == writes);
}

TEST_CASE("Go's longest refreshInterval neither overflows the clock nor refreshes early") {
  // 2562047h (~292 years) added to the clock's nanoseconds since 1970 used
  // to overflow int64 (UB; in practice a deadline in the past and a fetch on
  // every reconcile). The model clamps it to 100 years.
  Fixture f;
  json::value longest = es("db", kData);
  longest.as_object()["spec"].as_object()["refreshInterval"] = "2562047h";
  f.kube.put(f.kube.external_secrets, longest);
  f.reconcile("db");
  const int calls = f.providers.fake->calls;
  REQUIRE(calls == 1);
  f.advance(3600s);
  auto r = f.reconcile("db");
  CHECK(r.kind == ReconcileResult::Kind::requeue_after);
  CHECK(f.providers.fake->calls == calls);  // not due for a century
}

TEST_CASE("a rotated store value updates the Secret at the next refresh") {
  Fixture f;
  f.kube.put(f.kube.external_secrets, es("db", kData));
  f.reconcile("db");
  f.providers.fake->set("db/creds", R"({"username":"alice","password":"pw2"})");
  f.advance(3601s);
  f.reconcile("db");
  CHECK(f.kube.secret_value("team-a", "db", "pass") == "pw2");
  CHECK(f.kube.updates == 1);
  CHECK(f.kube.count_events("Updated") == 1);
  CHECK(f.kube.events.back().message == "secret updated");  // ESO's eventUpdated
}

TEST_CASE("a Secret written by ESO (same hash, labels, owner) is adopted without a rewrite") {
  Fixture f;
  f.kube.put(f.kube.external_secrets, es("db", kData));
  const std::string uid(f.kube.external_secrets["team-a/db"].at("metadata").at("uid").as_string());
  SecretMap d;
  d.emplace("pass", kms::SecureBytes::copy_of(std::string_view("pw1")));
  d.emplace("user", kms::SecureBytes::copy_of(std::string_view("alice")));
  json::value secret =
      json::parse(R"({"apiVersion":"v1","kind":"Secret","type":"Opaque","metadata":{"name":"db","namespace":"team-a",
    "labels":{"reconcile.external-secrets.io/managed":"true","reconcile.external-secrets.io/created-by":")" +
                  created_by("team-a", "db") + R"("},
    "annotations":{"reconcile.external-secrets.io/data-hash":")" +
                  data_hash(d) + R"("},
    "ownerReferences":[{"apiVersion":"external-secrets.io/v1","kind":"ExternalSecret","name":"db","uid":")" +
                  uid +
                  R"(","controller":true,"blockOwnerDeletion":true}]},
    "data":{"user":"YWxpY2U=","pass":"cHcx"}})");
  f.kube.put(f.kube.secrets, secret);
  f.reconcile("db");
  CHECK(f.kube.creates == 0);
  CHECK(f.kube.updates == 0);
  CHECK(f.kube.es_condition("team-a", "db", "reason") == "SecretSynced");
}

TEST_CASE("a Secret edited by hand is restored") {
  Fixture f;
  f.kube.put(f.kube.external_secrets, es("db", kData));
  f.reconcile("db");
  {
    std::lock_guard l(f.kube.mu);
    f.kube.secrets["team-a/db"].as_object()["data"].as_object()["pass"] = "aGFja2Vk";  // "hacked"
  }
  f.advance(5s);
  f.reconcile("db");
  CHECK(f.kube.secret_value("team-a", "db", "pass") == "pw1");
  CHECK(f.kube.updates == 1);
}

TEST_CASE("provider down: the Secret is untouched, status says why, retry, then recovery") {
  Fixture f;
  f.kube.put(f.kube.external_secrets, es("db", kData));
  f.reconcile("db");
  f.providers.fake->set("db/creds", R"({"username":"alice","password":"pw2"})");
  f.providers.fake->down = true;
  f.advance(3601s);
  auto r = f.reconcile("db");
  CHECK(r.kind == ReconcileResult::Kind::retry);
  CHECK(f.kube.secret_value("team-a", "db", "pass") == "pw1");
  CHECK(f.kube.es_condition("team-a", "db", "status") == "False");
  CHECK(f.kube.es_condition("team-a", "db", "reason") == "SecretSyncedError");
  // As ESO's markAsFailed: the condition's fixed text, the error in the Warning event.
  CHECK(f.kube.es_condition("team-a", "db", "message") == "could not get secret data from provider");
  const std::string event = f.kube.last_event("team-a", "db", "UpdateFailed");
  CHECK(event.starts_with("error processing spec.data[0] (key: db/creds), err: "));
  CHECK(event.find("connection refused") != std::string::npos);
  CHECK(event.find("pw") == std::string::npos);
  f.advance(1s);
  f.reconcile("db");
  CHECK(f.kube.count_events("UpdateFailed") == 1);  // one event per distinct error, not per retry
  f.providers.fake->down = false;
  f.advance(1s);
  r = f.reconcile("db");
  CHECK(r.kind == ReconcileResult::Kind::requeue_after);
  CHECK(f.kube.secret_value("team-a", "db", "pass") == "pw2");
  CHECK(f.kube.es_condition("team-a", "db", "reason") == "SecretSynced");
}

TEST_CASE("fetch deduplication: many ExternalSecrets on one remote key cost one provider call per window") {
  Fixture f;
  for (int i = 0; i < 50; ++i) f.kube.put(f.kube.external_secrets, es("db" + std::to_string(i), kData));
  {
    boost::asio::io_context io;
    std::vector<std::future<ReconcileResult>> futs;
    for (int i = 0; i < 50; ++i) {
      futs.push_back(
          boost::asio::co_spawn(io, f.rec.reconcile("team-a", "db" + std::to_string(i)), boost::asio::use_future));
    }
    io.run();
    for (auto& fu : futs) fu.get();
  }
  CHECK(f.kube.creates == 50);
  CHECK(f.providers.fake->calls == 1);
  CHECK(f.cache.stats().calls == 1);
  // Next window: one more call for all of them.
  f.advance(3601s);
  for (int i = 0; i < 50; ++i) f.reconcile("db" + std::to_string(i));
  CHECK(f.providers.fake->calls == 2);
}

TEST_CASE("find deduplication: ExternalSecrets with the same search share one listing per window") {
  Fixture f;
  f.providers.fake->set("app/a", std::string("bin\0\xff", 5));  // any bytes survive the shared listing
  f.providers.fake->set("app/b", "b");
  f.providers.fake->set("other/c", "c");
  const char* same = R"("dataFrom":[{"find":{"path":"app/","name":{"regexp":"^app"}}}])";
  for (const char* name : {"f1", "f2", "f3"}) {
    f.kube.put(f.kube.external_secrets, es(name, same));
  }
  f.kube.put(f.kube.external_secrets, es("f4", R"("dataFrom":[{"find":{"name":{"regexp":"c$"}}}])"));
  for (const char* name : {"f1", "f2", "f3", "f4"}) f.reconcile(name);
  CHECK(f.providers.fake->find_calls == 2);  // one per distinct search
  for (const char* name : {"f1", "f2", "f3"}) {
    INFO(name);
    CHECK(f.kube.secret_value("team-a", name, "app_a") == std::string("bin\0\xff", 5));
    CHECK(f.kube.secret_value("team-a", name, "app_b") == "b");
    CHECK(f.kube.secret_value("team-a", name, "other_c").empty());
  }
  CHECK(f.kube.secret_value("team-a", "f4", "other_c") == "c");
  // The next window searches again, once for all.
  f.advance(3601s);
  for (const char* name : {"f1", "f2", "f3"}) f.reconcile(name);
  CHECK(f.providers.fake->find_calls == 3);
}

TEST_CASE("a ClusterSecretStore refuses a namespace outside its conditions") {
  Fixture f;
  json::value store = vault_store("", "central");
  store.as_object()["kind"] = "ClusterSecretStore";
  store.as_object()["metadata"].as_object().erase("namespace");
  store.as_object()["spec"].as_object()["provider"].as_object()["vault"].as_object()["auth"] =
      json::parse(R"({"tokenSecretRef":{"name":"t","key":"k","namespace":"ops"}})");
  store.as_object()["spec"].as_object()["conditions"] = json::parse(R"([{"namespaces":["team-a"]}])");
  f.kube.put(f.kube.cluster_stores, store);
  const char* spec = R"("data":[{"secretKey":"u","remoteRef":{"key":"db/creds","property":"username"}}])";
  auto allowed = es("ok", spec);
  allowed.as_object()["spec"].as_object()["secretStoreRef"] =
      json::parse(R"({"name":"central","kind":"ClusterSecretStore"})");
  auto refused = es("nope", spec, "team-b");
  refused.as_object()["spec"].as_object()["secretStoreRef"] =
      json::parse(R"({"name":"central","kind":"ClusterSecretStore"})");
  f.kube.put(f.kube.external_secrets, allowed);
  f.kube.put(f.kube.external_secrets, refused);
  f.reconcile("ok");
  f.reconcile("nope", "team-b");
  CHECK(f.kube.secret_value("team-a", "ok", "u") == "alice");
  CHECK(f.kube.snapshot(f.kube.secrets, "team-b", "nope") == nullptr);
  CHECK(f.kube.es_condition("team-b", "nope", "reason") == "SecretSyncedError");
  CHECK(f.kube.es_condition("team-b", "nope", "message") == "could not get secret data from provider");
  CHECK(f.kube.last_event("team-b", "nope", "UpdateFailed") ==
        "error processing spec.data[0] (key: db/creds), err: using ClusterSecretStore \"central\" is not allowed "
        "from namespace \"team-b\": denied by spec.conditions");
  CHECK(f.providers.fake->calls == 1);
}

TEST_CASE("creationPolicy Merge needs an existing Secret and keeps its other keys") {
  Fixture f;
  f.kube.put(f.kube.external_secrets,
             es("db", std::string(kData) + R"(,"target":{"name":"app","creationPolicy":"Merge"})"));
  // As ESO: Ready=True with its message, and no retry before the refresh.
  auto r = f.reconcile("db");
  CHECK(r.kind == ReconcileResult::Kind::requeue_after);
  CHECK(f.kube.es_condition("team-a", "db", "status") == "True");
  CHECK(f.kube.es_condition("team-a", "db", "reason") == "SecretMissing");
  CHECK(f.kube.es_condition("team-a", "db", "message") == "secret will not be created due to CreationPolicy=Merge");
  CHECK(f.kube.snapshot(f.kube.secrets, "team-a", "app") == nullptr);
  f.kube.put(f.kube.secrets,
             json::parse(R"({"apiVersion":"v1","kind":"Secret","metadata":{"name":"app","namespace":"team-a"},
                                             "data":{"other":"b3RoZXI="}})"));
  f.advance(2s);
  f.reconcile("db");
  CHECK(f.kube.secret_value("team-a", "app", "other") == "other");
  CHECK(f.kube.secret_value("team-a", "app", "user") == "alice");
  auto s = f.kube.snapshot(f.kube.secrets, "team-a", "app");
  CHECK_FALSE(s->at("metadata").as_object().contains("ownerReferences"));
}

TEST_CASE("a 409 Conflict on update asks for an immediate retry and converges") {
  Fixture f;
  f.kube.put(f.kube.external_secrets, es("db", kData));
  f.reconcile("db");
  f.providers.fake->set("db/creds", R"({"username":"bob","password":"pw1"})");
  f.advance(3601s);
  f.kube.conflicts_to_inject = 1;
  auto r = f.reconcile("db");
  CHECK(r.kind == ReconcileResult::Kind::requeue_now);
  CHECK(f.kube.secret_value("team-a", "db", "user") == "alice");
  r = f.reconcile("db");
  CHECK(r.kind == ReconcileResult::Kind::requeue_after);
  CHECK(f.kube.secret_value("team-a", "db", "user") == "bob");
}

TEST_CASE("deletionPolicy: Retain keeps the Secret on a missing remote key, Delete removes it") {
  Fixture f;
  f.kube.put(f.kube.external_secrets, es("keep", kData));
  f.kube.put(f.kube.external_secrets, es("drop", std::string(kData) + R"(,"target":{"deletionPolicy":"Delete"})"));
  f.reconcile("keep");
  f.reconcile("drop");
  {
    std::lock_guard l(f.providers.fake->mu);
    f.providers.fake->values.erase("db/creds");
  }
  f.advance(3601s);
  auto r = f.reconcile("keep");
  CHECK(r.kind == ReconcileResult::Kind::retry);
  CHECK(f.kube.secret_value("team-a", "keep", "user") == "alice");
  CHECK(f.kube.es_condition("team-a", "keep", "reason") == "SecretSyncedError");
  f.reconcile("drop");
  CHECK(f.kube.snapshot(f.kube.secrets, "team-a", "drop") == nullptr);
  CHECK(f.kube.es_condition("team-a", "drop", "status") == "True");
  CHECK(f.kube.es_condition("team-a", "drop", "reason") == "SecretDeleted");
  CHECK(f.kube.es_condition("team-a", "drop", "message") == "secret deleted due to DeletionPolicy=Delete");
  // ESO's Normal MissingProviderSecret event for each skipped item (its text, "dataFrom" included).
  std::set<std::string> missing;
  for (const auto& e : f.kube.events) {
    if (e.reason != "MissingProviderSecret") continue;
    missing.insert(e.message);
    CHECK_FALSE(e.warning);
    CHECK(e.about == "team-a/drop");
  }
  CHECK(missing == std::set<std::string>{"secret does not exist at provider using spec.dataFrom[0] (key=db/creds)",
                                         "secret does not exist at provider using spec.dataFrom[1] (key=db/creds)"});
  // Once deleted, the next refresh keeps the same condition.
  f.advance(3601s);
  f.reconcile("drop");
  CHECK(f.kube.es_condition("team-a", "drop", "status") == "True");
  CHECK(f.kube.es_condition("team-a", "drop", "message") == "secret deleted due to DeletionPolicy=Delete");
}

TEST_CASE("templates render into the Secret with its type, invalid templates are Ready=False without a fetch") {
  Fixture f;
  f.kube.put(f.kube.external_secrets,
             es("t", std::string(kData) + R"(,"target":{"template":{"type":"kubernetes.io/basic-auth",
      "data":{"dsn":"postgres://{{ .user }}:{{ .pass | b64enc }}@db"}}})"));
  f.reconcile("t");
  CHECK(f.kube.secret_value("team-a", "t", "dsn") == "postgres://alice:cHcx@db");
  CHECK(f.kube.secret_value("team-a", "t", "user").empty());  // Replace: only templated keys
  CHECK(f.kube.snapshot(f.kube.secrets, "team-a", "t")->at("type") == "kubernetes.io/basic-auth");

  f.kube.put(f.kube.external_secrets,
             es("bad", std::string(kData) + R"(,"target":{"template":{"data":{"x":"{{ range .user }}"}}})"));
  const int calls = f.providers.fake->calls;
  auto r = f.reconcile("bad");
  CHECK(r.kind == ReconcileResult::Kind::done);
  CHECK(f.providers.fake->calls == calls);
  CHECK(f.kube.es_condition("team-a", "bad", "message")
            .find("spec.target.template.data.x: template: line 1: unexpected EOF") != std::string::npos);
  CHECK(f.kube.last_event("team-a", "bad", "UpdateFailed") == f.kube.es_condition("team-a", "bad", "message"));
}

TEST_CASE("an invalid spec gets Ready=False with the precise message") {
  Fixture f;
  f.kube.put(f.kube.external_secrets, es("bad", R"("data":[{"secretKey":"k","remoteRef":{"key":""}}])"));
  auto r = f.reconcile("bad");
  CHECK(r.kind == ReconcileResult::Kind::done);
  CHECK(f.kube.es_condition("team-a", "bad", "message") ==
        "invalid ExternalSecret: spec.data[0].remoteRef.key: required");
  CHECK(f.kube.es_condition("team-a", "bad", "status") == "False");
}

TEST_CASE("ExternalSecret deleted: an Owner Secret goes, an Orphan Secret stays") {
  Fixture f;
  f.kube.put(f.kube.external_secrets, es("own", kData));
  f.kube.put(f.kube.external_secrets, es("orph", std::string(kData) + R"(,"target":{"creationPolicy":"Orphan"})"));
  f.reconcile("own");
  f.reconcile("orph");
  auto own = f.kube.snapshot(f.kube.external_secrets, "team-a", "own");
  auto orph = f.kube.snapshot(f.kube.external_secrets, "team-a", "orph");
  f.kube.external_secrets.clear();
  run_sync(f.rec.deleted(own));
  run_sync(f.rec.deleted(orph));
  CHECK(f.kube.snapshot(f.kube.secrets, "team-a", "own") == nullptr);
  CHECK(f.kube.snapshot(f.kube.secrets, "team-a", "orph") != nullptr);
}

TEST_CASE("a provider not-found value is an error under Retain and the decoding strategy applies") {
  Fixture f;
  f.providers.fake->set("b64", "aGVsbG8=");
  f.kube.put(f.kube.external_secrets,
             es("d", R"("data":[{"secretKey":"v","remoteRef":{"key":"b64","decodingStrategy":"Base64"}}])"));
  f.reconcile("d");
  CHECK(f.kube.secret_value("team-a", "d", "v") == "hello");
  f.kube.put(f.kube.external_secrets,
             es("m", R"("data":[{"secretKey":"v","remoteRef":{"key":"db/creds","property":"nope"}}])"));
  f.reconcile("m");
  CHECK(f.kube.es_condition("team-a", "m", "message") == "could not get secret data from provider");
  CHECK(f.kube.last_event("team-a", "m", "UpdateFailed").find("property 'nope' not found") != std::string::npos);
}

TEST_CASE("stale: an ExternalSecret not refreshed for refreshInterval + grace is counted until a refresh succeeds") {
  Fixture f;
  f.kube.put(f.kube.external_secrets, es("db", kData));  // refreshInterval 1h
  json::value once = es("once", std::string(kData) + R"(,"target":{"name":"once"})");
  once.at("spec").as_object()["refreshInterval"] = "0";
  f.kube.put(f.kube.external_secrets, once);
  const auto grace = std::chrono::milliseconds(70'000);
  f.reconcile("db");
  f.reconcile("once");
  CHECK(f.rec.stale(f.now, grace) == 0);
  f.advance(3600s + 60s);  // past the interval, within the grace
  CHECK(f.rec.stale(f.now, grace) == 0);
  f.providers.fake->down = true;
  f.reconcile("db");  // the refresh fails: the Secret keeps its old data
  CHECK(f.kube.es_condition("team-a", "db", "status") == "False");
  f.advance(20s);
  CHECK(f.rec.stale(f.now, grace) == 1);  // "once" (refreshInterval 0) is never stale
  // A host sharing the work counts only its own namespaces (a bucket handed
  // over leaves its ExternalSecrets' state behind, not refreshed here).
  CHECK(f.rec.stale(f.now, grace, [](std::string_view ns) { return ns == "team-a"; }) == 1);
  CHECK(f.rec.stale(f.now, grace, [](std::string_view ns) { return ns != "team-a"; }) == 0);
  f.providers.fake->down = false;
  f.reconcile("db");
  CHECK(f.rec.stale(f.now, grace) == 0);
}

TEST_CASE("stale: an ExternalSecret never refreshed since start counts from its first reconcile") {
  Fixture f;
  f.providers.fake->down = true;
  f.kube.put(f.kube.external_secrets, es("late", kData));
  const auto grace = std::chrono::milliseconds(70'000);
  f.reconcile("late");
  f.advance(3600s + 60s);
  CHECK(f.rec.stale(f.now, grace) == 0);
  f.advance(11s);
  CHECK(f.rec.stale(f.now, grace) == 1);
}

TEST_CASE(
    "metadataPolicy Fetch: the metadata stands for the value, by property, extract and in templates, cached apart") {
  Fixture f;
  f.providers.fake->metadata["db/creds"] = R"({"owner":"team-a","tier":"gold"})";
  f.kube.put(f.kube.external_secrets,
             es("db", R"("data":[{"secretKey":"user","remoteRef":{"key":"db/creds","property":"username"}},
                                 {"secretKey":"tags","remoteRef":{"key":"db/creds","metadataPolicy":"Fetch"}},
                                 {"secretKey":"owner","remoteRef":{"key":"db/creds","metadataPolicy":"Fetch","property":"owner"}}],
                         "dataFrom":[{"extract":{"key":"db/creds","metadataPolicy":"Fetch"}}],
                         "target":{"name":"db-secret"})"));
  f.reconcile("db");
  CHECK(f.kube.es_condition("team-a", "db", "reason") == "SecretSynced");
  CHECK(f.kube.secret_value("team-a", "db-secret", "user") == "alice");
  CHECK(f.kube.secret_value("team-a", "db-secret", "tags") == R"({"owner":"team-a","tier":"gold"})");
  CHECK(f.kube.secret_value("team-a", "db-secret", "owner") == "team-a");
  CHECK(f.kube.secret_value("team-a", "db-secret", "tier") == "gold");
  // One value read and one metadata read for the key, each cached under its own entry.
  CHECK(f.providers.fake->calls == 1);
  CHECK(f.providers.fake->metadata_calls == 1);

  f.kube.put(
      f.kube.external_secrets,
      es("tpl",
         R"("data":[{"secretKey":"owner","remoteRef":{"key":"db/creds","metadataPolicy":"Fetch","property":"owner"}}],
                         "target":{"name":"tpl-secret","template":{"data":{"who":"{{ .owner }} owns it"}}})"));
  f.reconcile("tpl");
  CHECK(f.kube.secret_value("team-a", "tpl-secret", "who") == "team-a owns it");

  // A missing tag by property is an error with the property named, and no Secret.
  f.kube.put(f.kube.external_secrets,
             es("missing",
                R"("data":[{"secretKey":"x","remoteRef":{"key":"db/creds","metadataPolicy":"Fetch","property":"nope"}}],
                         "target":{"name":"missing-secret"})"));
  f.reconcile("missing");
  CHECK(f.kube.es_condition("team-a", "missing", "status") == "False");
  CHECK(f.kube.last_event("team-a", "missing", "UpdateFailed").find("nope") != std::string::npos);
  CHECK(f.kube.snapshot(f.kube.secrets, "team-a", "missing-secret") == nullptr);
}
