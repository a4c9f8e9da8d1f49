// The sync engine behind a ShardGate whose lease deadline the test moves
// (docs/ha.md, "A host that cannot renew its lease stops first"), against the
// Kubernetes API double and the Vault KV v2 double.
//
// Regression test of the bug bench_sync_ha found (1,447 of 3,000 Secrets
// synced over three hosts): work refused only because the deadline had
// lapsed (a keepalive answered late) was dropped, so an ExternalSecret whose
// event was handled during the lapse stayed unsynced until its next refresh,
// although its bucket was still this host's. It must be tried again.
#include <catch2/catch.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <fstream>
#include <thread>

#include "kube_double.hpp"
#include "process_util.hpp"
#include "rootseal/sync/engine.hpp"
#include "rootseal/sync/shard.hpp"
#include "temp_dir.hpp"

using namespace rootseal;
using namespace rootseal::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

const std::string kEso = "/apis/external-secrets.io/v1";

void kube_post(const K8sDouble& k, const std::string& path, const json::value& body) {
  const auto r = run_command("curl -sf -X POST -H 'Content-Type: application/json' -d '" + json::serialize(body) +
                             "' " + k.url() + path);
  INFO(path);
  REQUIRE(r.status == 0);
}

// The value of key `key` of Secret ns/name, decoded; empty when it is absent.
std::string secret_value(const K8sDouble& k, const std::string& ns, const std::string& name, const std::string& key) {
  const auto r = run_command("curl -s " + k.url() + "/api/v1/namespaces/" + ns + "/secrets/" + name);
  if (r.status != 0) return {};
  const auto v = json::parse(r.out);
  const auto* data = v.as_object().if_contains("data");
  if (data == nullptr || !data->is_object()) return {};
  const auto* b64 = data->as_object().if_contains(key);
  if (b64 == nullptr || !b64->is_string()) return {};
  return run_command("printf %s '" + std::string(b64->as_string()) + "' | base64 -d").out;
}

void vault_put(const PyDouble& v, const std::string& path, const std::string& value) {
  const auto r = run_command("curl -sf -X POST -H 'X-Vault-Token: root' -d '{\"data\":{\"v\":\"" + value + "\"}}' " +
                             v.url() + "/v1/secret/data/" + path);
  REQUIRE(r.status == 0);
}

json::value external_secret(const std::string& ns, const std::string& name) {
  return json::value{
      {"apiVersion", "external-secrets.io/v1"},
      {"kind", "ExternalSecret"},
      {"metadata", {{"name", name}, {"namespace", ns}}},
      {"spec",
       {{"refreshInterval", "1h"},
        {"secretStoreRef", {{"name", "vault"}, {"kind", "SecretStore"}}},
        {"target", {{"name", name}}},
        {"data", json::array{{{"secretKey", "v"}, {"remoteRef", {{"key", ns + "/" + name}, {"property", "v"}}}}}}}}};
}

// A namespace with the Vault token Secret and the SecretStore `vault`.
void make_namespace(const K8sDouble& k8s, const PyDouble& vault, const std::string& ns) {
  kube_post(k8s, "/api/v1/namespaces",
            json::value{{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", ns}}}});
  kube_post(k8s, "/api/v1/namespaces/" + ns + "/secrets",
            json::value{{"apiVersion", "v1"},
                        {"kind", "Secret"},
                        {"metadata", {{"name", "vault-token"}, {"namespace", ns}}},
                        {"data", {{"token", "cm9vdA=="}}}});  // "root"
  kube_post(k8s, kEso + "/namespaces/" + ns + "/secretstores",
            json::value{{"apiVersion", "external-secrets.io/v1"},
                        {"kind", "SecretStore"},
                        {"metadata", {{"name", "vault"}, {"namespace", ns}}},
                        {"spec",
                         {{"provider",
                           {{"vault",
                             {{"server", vault.url()},
                              {"path", "secret"},
                              {"version", "v2"},
                              {"auth", {{"tokenSecretRef", {{"name", "vault-token"}, {"key", "token"}}}}}}}}}}}});
}

}  // namespace

TEST_CASE("engine: work refused only because the lease deadline lapsed is tried again", "[engine][shard]") {
  K8sDouble k8s;
  PyDouble vault("vault_kv");
  TempDir dir("rootseal-engine-shard-");
  const std::string ns = "team-lapse";
  make_namespace(k8s, vault, ns);
  const auto kubeconfig = dir / "kubeconfig";
  {
    std::ofstream f(kubeconfig);
    f << "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster: {server: \"" << k8s.url()
      << "\"}\nusers:\n- name: u\n  user: {token: \"t\"}\ncontexts:\n- name: double\n  context: {cluster: double, "
         "user: u}\n"
         "current-context: double\n";
  }

  // The lease deadline as the daemon's source gives it: far ahead while
  // keepalives are answered, passed while they are not.
  auto gate = std::make_shared<sync::ShardGate>();
  std::atomic<bool> lease_fresh{true};
  gate->set_deadline_source([&lease_fresh] {
    return lease_fresh.load() ? sync::ShardGate::Clock::now() + 1h : sync::ShardGate::Clock::time_point::min();
  });
  const std::vector<std::uint32_t> mine{sync::namespace_bucket(ns)};
  gate->grant(mine);

  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  sync::EngineConfig cfg;
  cfg.enabled = true;
  cfg.kubeconfig = kubeconfig;
  cfg.concurrency = 2;
  cfg.refresh_window = 1s;
  cfg.rollout_restart = false;
  cfg.retry_base = 100ms;
  cfg.retry_max = 1s;
  cfg.shards = gate;
  cfg.log = [](bool, std::string_view, const std::vector<std::pair<std::string, std::string>>&) {};
  auto created = sync::Engine::create(io.get_executor(), cfg);
  REQUIRE(created);
  auto engine = std::move(*created);
  engine->start();
  std::thread runner([&io] { io.run(); });
  struct Stop {
    sync::Engine& e;
    asio::io_context& io;
    std::thread& t;
    ~Stop() {
      e.stop();
      io.stop();
      t.join();
    }
  } stop{*engine, io, runner};

  // Caches filled, workers running; nothing to do yet (no ExternalSecret):
  // every work item deferred below is the new ExternalSecret's.
  REQUIRE(wait_until([&] { return engine->stats().synced; }));
  REQUIRE(engine->stats().shard_deferred == 0);

  // The lease lapses (the bucket stays granted): the new ExternalSecret's
  // work is refused and deferred, not written.
  lease_fresh = false;
  vault_put(vault, ns + "/during", "v2");
  kube_post(k8s, kEso + "/namespaces/" + ns + "/externalsecrets", external_secret(ns, "during"));
  REQUIRE(wait_until([&] { return engine->stats().shard_deferred >= 1; }));
  CHECK(secret_value(k8s, ns, "during", "v").empty());

  // A keepalive answered: the same bucket, no new grant (so no requeue of
  // the bucket's objects), and its refreshInterval is 1 h: only the retry
  // of the deferred work syncs it now.
  lease_fresh = true;
  CHECK(wait_until([&] { return secret_value(k8s, ns, "during", "v") == "v2"; }, 10s));
  CHECK(engine->stats().reconciles >= 1);

  // Work on a bucket not granted (another host's) is not this host's: not
  // written, not deferred (its owner does it).
  const std::string other = "team-other";
  REQUIRE(sync::namespace_bucket(other) != sync::namespace_bucket(ns));
  const auto deferred = engine->stats().shard_deferred;
  make_namespace(k8s, vault, other);
  vault_put(vault, other + "/x", "v3");
  kube_post(k8s, kEso + "/namespaces/" + other + "/externalsecrets", external_secret(other, "x"));
  // Granted now: the grant queues the bucket's ExternalSecrets, which proves
  // the engine saw it (and did not write it before).
  CHECK(secret_value(k8s, other, "x", "v").empty());
  CHECK(engine->stats().shard_deferred == deferred);
  const std::vector<std::uint32_t> theirs{sync::namespace_bucket(other)};
  REQUIRE(wait_until([&] { return engine->stats().queue_ready == 0; }));
  gate->grant(theirs);
  CHECK(wait_until([&] { return secret_value(k8s, other, "x", "v") == "v3"; }, 10s));
}
