// KubeClient and Informer against the Kubernetes API double
// (tests/doubles/k8s_apiserver/server.py, started per test case).
#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <fstream>
#include <functional>
#include <set>

#include "kube/informer.hpp"
#include "kube/kube_client.hpp"
#include "kube/secure_json.hpp"
#include "kube_double.hpp"
#include "temp_dir.hpp"

using namespace rootseal::sync::kube;
using namespace std::chrono_literals;
using rootseal::test::K8sDouble;
namespace asio = boost::asio;
namespace json = boost::json;
namespace kms = rootseal::kms;

namespace {

const GroupVersionResource kExternalSecrets{"external-secrets.io", "v1", "externalsecrets",
                                            "ExternalSecret",      true, false};
const GroupVersionResource kConfigMaps{"", "v1", "configmaps", "ConfigMap", true, false};

// Never co_await inside a Catch assertion: the macro repeats its expression in
// a short-circuited branch, and GCC 12 still evaluates the co_await there (the
// call would run twice). Await into a local, then assert.

// Runs `body` on a fresh io_context (bounded to 120 s) and rethrows its failures.
void run_test(const std::function<asio::awaitable<void>(asio::any_io_executor)>& body) {
  asio::io_context io;
  bool done = false;
  std::exception_ptr err;
  asio::co_spawn(io, body(io.get_executor()), [&](std::exception_ptr e) {
    err = e;
    done = true;
    io.stop();  // pooled connections and stopped informers need no more turns
  });
  io.run_for(120s);
  if (err) std::rethrow_exception(err);
  REQUIRE(done);
}

asio::awaitable<bool> wait_until(std::function<bool()> pred, std::chrono::milliseconds limit = 15s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  asio::steady_timer t(co_await asio::this_coro::executor);
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) co_return false;
    t.expires_after(10ms);
    co_await t.async_wait(asio::use_awaitable);
  }
  co_return true;
}

std::shared_ptr<KubeClient> make_client(asio::any_io_executor ex, const K8sDouble& d, ClientOptions o = {}) {
  KubeConfig cfg;
  cfg.server = d.url();
  cfg.default_namespace = "team-a";
  auto c = KubeClient::create(std::move(ex), std::move(cfg), o);
  REQUIRE(c);
  return *c;
}

json::value secret(const std::string& name, const std::string& value_b64 = "aGVsbG8=") {
  return json::value{{"apiVersion", "v1"},
                     {"kind", "Secret"},
                     {"metadata", {{"name", name}, {"labels", {{"app", "demo"}}}}},
                     {"type", "Opaque"},
                     {"data", {{"password", value_b64}}}};
}

asio::awaitable<void> make_namespace(KubeClient& c, const std::string& ns) {
  json::value o{{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", ns}}}};
  auto r = co_await c.create(namespaces_gvr(), "", o);
  REQUIRE((r || r.error().is_already_exists()));
}

std::string describe(const InformerStats& s) {
  return "lists=" + std::to_string(s.lists) + " watches=" + std::to_string(s.watches) +
         " events=" + std::to_string(s.events) + " bookmarks=" + std::to_string(s.bookmarks) +
         " relists_gone=" + std::to_string(s.relists_gone) + " reconnects=" + std::to_string(s.reconnects);
}

std::string str(const json::value& v, std::initializer_list<std::string_view> path) {
  const json::value* cur = &v;
  for (auto k : path) {
    const auto* o = cur->if_object();
    if (o == nullptr || !o->contains(k)) return {};
    cur = &o->at(k);
  }
  return cur->is_string() ? std::string(cur->as_string()) : json::serialize(*cur);
}

}  // namespace

TEST_CASE("kube client: get, create, AlreadyExists, NotFound, stale update is a Conflict") {
  K8sDouble d;
  run_test([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    auto c = make_client(ex, d);
    co_await make_namespace(*c, "team-a");
    auto created = co_await c->create(secrets_gvr(), "team-a", secret("db"));
    REQUIRE(created);
    CHECK(name_of(*created) == "db");
    CHECK(namespace_of(*created) == "team-a");
    CHECK_FALSE(resource_version_of(*created).empty());
    // Secrets come back in locked memory.
    CHECK(is_secure_json_storage(created->storage()));

    auto again = co_await c->create(secrets_gvr(), "team-a", secret("db"));
    REQUIRE_FALSE(again);
    CHECK(again.error().is_already_exists());
    CHECK(again.error().code == 409);
    CHECK(again.error().to_error().code == kms::Errc::already_exists);

    auto missing = co_await c->get(secrets_gvr(), "team-a", "nope");
    REQUIRE_FALSE(missing);
    CHECK(missing.error().is_not_found());
    CHECK(missing.error().code == 404);
    CHECK(missing.error().name == "nope");

    auto got = co_await c->get(secrets_gvr(), "team-a", "db");
    REQUIRE(got);
    CHECK(str(*got, {"data", "password"}) == "aGVsbG8=");

    // Update with the current resourceVersion wins; the same stale copy then conflicts.
    json::value first = *got;
    first.as_object()["data"].as_object()["password"] = "d29ybGQ=";
    auto updated = co_await c->update(secrets_gvr(), "team-a", first);
    REQUIRE(updated);
    CHECK(resource_version_of(*updated) != resource_version_of(*got));
    json::value stale = *got;
    stale.as_object()["data"].as_object()["password"] = "c3RhbGU=";
    auto conflict = co_await c->update(secrets_gvr(), "team-a", stale);
    REQUIRE_FALSE(conflict);
    CHECK(conflict.error().is_conflict());
    CHECK(conflict.error().reason_text == "Conflict");
    const kms::Error as_kms = conflict.error();  // converts for ROOTSEAL_TRY callers
    CHECK(as_kms.code == kms::Errc::conflict);
    auto now = co_await c->get(secrets_gvr(), "team-a", "db");
    REQUIRE(now);
    CHECK(str(*now, {"data", "password"}) == "d29ybGQ=");  // the stale write changed nothing

    auto removed = co_await c->remove(secrets_gvr(), "team-a", "db");
    REQUIRE(removed);
    auto gone = co_await c->get(secrets_gvr(), "team-a", "db");
    CHECK((!gone && gone.error().is_not_found()));
  });
}

TEST_CASE("kube client: list follows continue tokens, with label selectors") {
  K8sDouble d;
  run_test([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    auto c = make_client(ex, d);
    co_await make_namespace(*c, "team-a");
    co_await make_namespace(*c, "team-b");
    for (int i = 0; i < 25; ++i) {
      auto s = secret("s" + std::to_string(i));
      if (i % 5 == 0) s.as_object()["metadata"].as_object()["labels"].as_object()["tier"] = "gold";
      {
        const auto awaited = co_await c->create(secrets_gvr(), "team-a", s);
        REQUIRE(awaited);
      }
    }
    {
      const auto awaited = co_await c->create(secrets_gvr(), "team-b", secret("other"));
      REQUIRE(awaited);
    }
    d.admin("POST", "stats/reset");

    ListOptions lo;
    lo.page_size = 10;
    auto all = co_await c->list(secrets_gvr(), "team-a", lo);
    REQUIRE(all);
    CHECK(all->items.size() == 25);
    CHECK(all->pages == 3);
    CHECK_FALSE(all->resource_version.empty());
    CHECK(is_secure_json_storage(all->items.storage()));
    std::set<std::string> names;
    for (const auto& it : all->items) names.insert(std::string(name_of(it)));
    CHECK(names.size() == 25);
    CHECK(d.count("secrets", "list") == 3);

    lo.label_selector = "tier=gold";
    auto gold = co_await c->list(secrets_gvr(), "team-a", lo);
    REQUIRE(gold);
    CHECK(gold->items.size() == 5);

    auto everywhere = co_await c->list(secrets_gvr(), "", ListOptions{});
    REQUIRE(everywhere);
    CHECK(everywhere->items.size() == 26);
  });
}

TEST_CASE("kube client: merge patch, JSON patch, server-side apply, status subresource") {
  K8sDouble d;
  run_test([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    auto c = make_client(ex, d);
    co_await make_namespace(*c, "team-a");
    json::value cm{{"apiVersion", "v1"},
                   {"kind", "ConfigMap"},
                   {"metadata", {{"name", "cfg"}}},
                   {"data", {{"a", "1"}, {"b", "2"}}}};
    {
      const auto awaited = co_await c->create(kConfigMaps, "team-a", cm);
      REQUIRE(awaited);
    }

    auto merged = co_await c->patch(kConfigMaps, "team-a", "cfg", PatchType::merge,
                                    json::parse(R"({"metadata":{"labels":{"x":"y"}},"data":{"b":null,"c":"3"}})"));
    REQUIRE(merged);
    CHECK(str(*merged, {"metadata", "labels", "x"}) == "y");
    CHECK(str(*merged, {"data", "b"}).empty());
    CHECK(str(*merged, {"data", "c"}) == "3");

    auto patched = co_await c->patch(kConfigMaps, "team-a", "cfg", PatchType::json,
                                     json::parse(R"([{"op":"replace","path":"/data/a","value":"10"},
                                                     {"op":"add","path":"/data/d","value":"4"}])"));
    REQUIRE(patched);
    CHECK(str(*patched, {"data", "a"}) == "10");
    CHECK(str(*patched, {"data", "d"}) == "4");

    auto failed_test = co_await c->patch(kConfigMaps, "team-a", "cfg", PatchType::json,
                                         json::parse(R"([{"op":"test","path":"/data/a","value":"nope"}])"));
    CHECK_FALSE(failed_test);

    WriteOptions wo;
    wo.field_manager = "rootseal-test";
    auto applied = co_await c->patch(kConfigMaps, "team-a", "cfg", PatchType::apply,
                                     json::parse(R"({"apiVersion":"v1","kind":"ConfigMap",
                                                     "metadata":{"name":"cfg"},"data":{"e":"5"}})"),
                                     wo);
    REQUIRE(applied);
    CHECK(str(*applied, {"data", "e"}) == "5");
    bool manager_recorded = false;
    for (const auto& mf : applied->at("metadata").at("managedFields").as_array())
      if (mf.at("manager") == "rootseal-test" && mf.at("operation") == "Apply") manager_recorded = true;
    CHECK(manager_recorded);

    // The status subresource: the main endpoint ignores .status, /status takes only it.
    json::value es{{"apiVersion", "external-secrets.io/v1"},
                   {"kind", "ExternalSecret"},
                   {"metadata", {{"name", "es1"}}},
                   {"spec", {{"refreshInterval", "1h"}, {"secretStoreRef", {{"name", "vault"}}}}},
                   {"status", {{"refreshTime", "2020-01-01T00:00:00Z"}}}};
    auto es1 = co_await c->create(kExternalSecrets, "team-a", es);
    REQUIRE(es1);
    CHECK(str(*es1, {"status", "refreshTime"}).empty());
    const auto gen = es1->at("metadata").at("generation").as_int64();

    json::value st = *es1;
    st.as_object()["status"] = json::parse(R"({"refreshTime":"2026-01-01T00:00:00Z","conditions":[
        {"type":"Ready","status":"True","reason":"SecretSynced"}]})");
    st.as_object()["spec"].as_object()["refreshInterval"] = "5m";  // ignored by /status
    auto with_status = co_await c->update_status(kExternalSecrets, "team-a", st);
    REQUIRE(with_status);
    CHECK(str(*with_status, {"status", "refreshTime"}) == "2026-01-01T00:00:00Z");
    CHECK(str(*with_status, {"spec", "refreshInterval"}) == "1h");
    CHECK(with_status->at("metadata").at("generation").as_int64() == gen);

    // A stale status write conflicts too.
    auto stale_status = co_await c->update_status(kExternalSecrets, "team-a", st);
    REQUIRE_FALSE(stale_status);
    CHECK(stale_status.error().is_conflict());

    // A spec change bumps the generation; a status merge patch does not.
    auto spec = co_await c->patch(kExternalSecrets, "team-a", "es1", PatchType::merge,
                                  json::parse(R"({"spec":{"refreshInterval":"10m"}})"));
    REQUIRE(spec);
    CHECK(spec->at("metadata").at("generation").as_int64() == gen + 1);
    auto status_patch =
        co_await c->patch(kExternalSecrets, "team-a", "es1", PatchType::merge,
                          json::parse(R"({"status":{"refreshTime":"2027-01-01T00:00:00Z"}})"), {}, "status");
    REQUIRE(status_patch);
    CHECK(str(*status_patch, {"status", "refreshTime"}) == "2027-01-01T00:00:00Z");
    CHECK(status_patch->at("metadata").at("generation").as_int64() == gen + 1);
  });
}

TEST_CASE("kube client: bearer token from the config and from a token file, 401 otherwise") {
  K8sDouble d({"--token", "good-token"});
  rootseal::test::TempDir dir;
  run_test([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    KubeConfig good;
    good.server = d.url();
    good.bearer_token = kms::SecureBytes::copy_of(std::string_view("good-token"));
    auto c = KubeClient::create(ex, std::move(good));
    REQUIRE(c);
    {
      const auto awaited = co_await (*c)->get(namespaces_gvr(), "", "default");
      CHECK(awaited);
    }

    std::ofstream(dir / "token") << "good-token\n";
    KubeConfig from_file;
    from_file.server = d.url();
    from_file.token_file = dir / "token";
    auto cf = KubeClient::create(ex, std::move(from_file));
    REQUIRE(cf);
    {
      const auto awaited = co_await (*cf)->get(namespaces_gvr(), "", "default");
      CHECK(awaited);
    }

    KubeConfig bad;
    bad.server = d.url();
    bad.bearer_token = kms::SecureBytes::copy_of(std::string_view("wrong"));
    auto cb = KubeClient::create(ex, std::move(bad));
    REQUIRE(cb);
    auto r = co_await (*cb)->get(namespaces_gvr(), "", "default");
    REQUIRE_FALSE(r);
    CHECK(r.error().reason == Reason::unauthorized);
    CHECK(r.error().to_error().code == kms::Errc::permission_denied);
  });
}

TEST_CASE("kube client: watch delivers ADDED, MODIFIED, DELETED and BOOKMARK, and 410 is Expired") {
  K8sDouble d({"--bookmark-interval", "3600"});
  run_test([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    auto c = make_client(ex, d);
    co_await make_namespace(*c, "team-a");
    auto start = co_await c->list(secrets_gvr(), "team-a");
    REQUIRE(start);

    std::vector<std::pair<WatchEventType, std::string>> events;
    bool watch_done = false;
    KubeResult<void> watch_result;
    WatchOptions wo;
    wo.resource_version = start->resource_version;
    asio::co_spawn(
        ex,
        [&]() -> asio::awaitable<void> {
          watch_result = co_await c->watch(secrets_gvr(), "team-a", wo, [&](WatchEvent&& ev) {
            events.emplace_back(ev.type, ev.type == WatchEventType::bookmark
                                             ? std::string(resource_version_of(ev.object))
                                             : std::string(name_of(ev.object)));
            if (ev.type != WatchEventType::bookmark) CHECK(is_secure_json_storage(ev.object.storage()));
            return ev.type != WatchEventType::bookmark;  // stop at the bookmark
          });
          watch_done = true;
        },
        asio::detached);
    {
      const auto awaited = co_await wait_until([&] { return d.stats().at("by_verb").as_object().contains("watch"); });
      REQUIRE(awaited);
    }
    auto s = co_await c->create(secrets_gvr(), "team-a", secret("w1"));
    REQUIRE(s);
    json::value m = *s;
    m.as_object()["data"].as_object()["password"] = "Mg==";
    {
      const auto awaited = co_await c->update(secrets_gvr(), "team-a", m);
      REQUIRE(awaited);
    }
    {
      const auto awaited = co_await c->remove(secrets_gvr(), "team-a", "w1");
      REQUIRE(awaited);
    }
    {
      const auto awaited = co_await wait_until([&] { return events.size() >= 3; });
      REQUIRE(awaited);
    }
    d.admin("POST", "bookmark");
    {
      const auto awaited = co_await wait_until([&] { return watch_done; });
      REQUIRE(awaited);
    }
    CHECK(watch_result.has_value());
    REQUIRE(events.size() == 4);
    CHECK(events[0] == std::pair{WatchEventType::added, std::string("w1")});
    CHECK(events[1] == std::pair{WatchEventType::modified, std::string("w1")});
    CHECK(events[2] == std::pair{WatchEventType::deleted, std::string("w1")});
    CHECK(events[3].first == WatchEventType::bookmark);
    CHECK_FALSE(events[3].second.empty());

    // A resourceVersion older than the history: ERROR 410 Expired in-stream.
    d.admin("POST", "expire-watches", R"({"kick": false})");
    auto expired = co_await c->watch(secrets_gvr(), "team-a", wo, [](WatchEvent&&) { return true; });
    REQUIRE_FALSE(expired);
    CHECK(expired.error().is_gone());
    CHECK(expired.error().reason == Reason::expired);
    CHECK(expired.error().code == 410);
  });
}

TEST_CASE("informer: syncs by list, follows the watch, steady state makes no list calls") {
  K8sDouble d({"--bookmark-interval", "0.2"});
  run_test([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    auto c = make_client(ex, d);
    co_await make_namespace(*c, "team-a");
    co_await make_namespace(*c, "team-b");
    for (int i = 0; i < 12; ++i) {
      const auto s = secret("s" + std::to_string(i));
      const auto created = co_await c->create(secrets_gvr(), i % 2 ? "team-a" : "team-b", s);
      REQUIRE(created);
    }

    std::vector<std::string> log;
    InformerOptions io;
    io.page_size = 5;
    auto inf = Informer::create(c, secrets_gvr(), io);
    inf->set_handlers(InformerHandlers{[&](const ObjectPtr& o) { log.push_back("add " + object_key(*o)); },
                                       [&](const ObjectPtr& old, const ObjectPtr& now) {
                                         CHECK(resource_version_of(*old) != resource_version_of(*now));
                                         log.push_back("update " + object_key(*now));
                                       },
                                       [&](const ObjectPtr& o) { log.push_back("delete " + object_key(*o)); },
                                       {}});
    asio::co_spawn(ex, inf->run(), asio::detached);
    {
      const auto awaited = co_await wait_until([&] { return inf->has_synced(); });
      INFO(describe(inf->stats()));
      REQUIRE(awaited);
    }
    CHECK(inf->size() == 12);
    CHECK(log.size() == 12);
    CHECK(inf->list("team-a").size() == 6);
    auto s1 = inf->get("team-a", "s1");
    REQUIRE(s1);
    CHECK(is_secure_json_storage(s1->storage()));
    CHECK_FALSE(s1->at("metadata").as_object().contains("managedFields"));  // trimmed from the cache
    CHECK(d.count("secrets", "list") == 3);                                 // 12 objects in pages of 5

    d.admin("POST", "stats/reset");
    {
      const auto awaited = co_await c->create(secrets_gvr(), "team-a", secret("new"));
      REQUIRE(awaited);
    }
    auto cur = co_await c->get(secrets_gvr(), "team-a", "s1");
    REQUIRE(cur);
    cur->as_object()["data"].as_object()["password"] = "Y2hhbmdlZA==";
    {
      const auto awaited = co_await c->update(secrets_gvr(), "team-a", *cur);
      REQUIRE(awaited);
    }
    {
      const auto awaited = co_await c->remove(secrets_gvr(), "team-b", "s0");
      REQUIRE(awaited);
    }
    {
      const auto awaited = co_await wait_until(
          [&] { return inf->size() == 12 && inf->get("team-a", "new") && !inf->get("team-b", "s0"); });
      INFO(describe(inf->stats()));
      REQUIRE(awaited);
    }
    {
      const auto awaited =
          co_await wait_until([&] { return str(*inf->get("team-a", "s1"), {"data", "password"}) == "Y2hhbmdlZA=="; });
      INFO(describe(inf->stats()));
      REQUIRE(awaited);
    }
    CHECK(std::count(log.begin(), log.end(), "add team-a/new") == 1);
    CHECK(std::count(log.begin(), log.end(), "update team-a/s1") == 1);
    CHECK(std::count(log.begin(), log.end(), "delete team-b/s0") == 1);

    // Bookmarks keep the resourceVersion current; the server ending the watch
    // (timeout) makes the informer re-watch from there, not relist.
    {
      const auto awaited = co_await wait_until([&] { return inf->stats().bookmarks >= 3; });
      INFO(describe(inf->stats()));
      REQUIRE(awaited);
    }
    const auto watches_before = inf->stats().watches;
    d.admin("POST", "close-watches");
    {
      const auto awaited = co_await wait_until(
          [&] { return inf->stats().watches > watches_before && d.count("secrets", "watch") >= 1; });
      INFO(describe(inf->stats()));
      REQUIRE(awaited);
    }
    {
      const auto awaited = co_await c->create(secrets_gvr(), "team-a", secret("after-reconnect"));
      REQUIRE(awaited);
    }
    {
      const auto awaited = co_await wait_until([&] { return inf->get("team-a", "after-reconnect") != nullptr; });
      INFO(describe(inf->stats()));
      REQUIRE(awaited);
    }
    CHECK(d.count("secrets", "list") == 0);  // steady state: zero list calls
    CHECK(inf->stats().lists == 1);
    CHECK(inf->stats().relists_gone == 0);
    inf->stop();
  });
}

TEST_CASE("informer: a forced 410 relists and converges, with the changes missed in between") {
  K8sDouble d({"--bookmark-interval", "3600"});
  run_test([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    auto c = make_client(ex, d);
    co_await make_namespace(*c, "team-a");
    for (int i = 0; i < 5; ++i) {
      const auto s = secret("s" + std::to_string(i));
      const auto created = co_await c->create(secrets_gvr(), "team-a", s);
      REQUIRE(created);
    }
    std::vector<std::string> log;
    InformerOptions io;
    io.backoff_initial = 20ms;
    auto inf = Informer::create(
        c, secrets_gvr(), io,
        InformerHandlers{[&](const ObjectPtr& o) { log.push_back("add " + object_key(*o)); },
                         [&](const ObjectPtr&, const ObjectPtr& o) { log.push_back("update " + object_key(*o)); },
                         [&](const ObjectPtr& o) { log.push_back("delete " + object_key(*o)); },
                         {}});
    asio::co_spawn(ex, inf->run(), asio::detached);
    {
      const auto awaited = co_await wait_until([&] { return inf->has_synced() && d.count("secrets", "watch") >= 1; });
      INFO(describe(inf->stats()));
      REQUIRE(awaited);
    }
    log.clear();

    // Kick 1: open watches get ERROR 410 in-stream; the informer relists at once.
    d.admin("POST", "expire-watches", R"({"kick": true})");
    {
      const auto awaited =
          co_await wait_until([&] { return inf->stats().relists_gone >= 1 && inf->stats().lists == 2; });
      INFO(describe(inf->stats()));
      REQUIRE(awaited);
    }
    CHECK(log.empty());  // nothing changed: the relist diff produced no events

    // Kick 2, with changes the informer cannot see: watches fail (503) while
    // objects change, then history is compacted, then the server recovers.
    // (The double matches fault rules on the path only: the informer watches /api/v1/secrets,
    // the test itself only reads single objects.)
    d.admin("POST", "faults", R"({"status": 503, "count": 1000, "method": "GET", "path": "^/api/v1/secrets$"})");
    d.admin("POST", "close-watches");
    {
      const auto awaited = co_await wait_until([&] { return inf->stats().reconnects >= 2; });
      INFO(describe(inf->stats()));
      REQUIRE(awaited);
    }
    {
      const auto awaited = co_await c->remove(secrets_gvr(), "team-a", "s0");
      REQUIRE(awaited);
    }
    auto s1 = co_await c->get(secrets_gvr(), "team-a", "s1");
    REQUIRE(s1);
    s1->as_object()["data"].as_object()["password"] = "bmV3";
    {
      const auto awaited = co_await c->update(secrets_gvr(), "team-a", *s1);
      REQUIRE(awaited);
    }
    {
      const auto awaited = co_await c->create(secrets_gvr(), "team-a", secret("s9"));
      REQUIRE(awaited);
    }
    d.admin("POST", "expire-watches", R"({"kick": false})");
    d.admin("DELETE", "faults", "");
    {
      const auto awaited = co_await wait_until([&] { return inf->stats().lists == 3; });
      INFO(describe(inf->stats()));
      REQUIRE(awaited);
    }
    {
      const auto awaited = co_await wait_until(
          [&] { return inf->size() == 5 && inf->get("team-a", "s9") && !inf->get("team-a", "s0"); });
      INFO(describe(inf->stats()));
      REQUIRE(awaited);
    }
    CHECK(str(*inf->get("team-a", "s1"), {"data", "password"}) == "bmV3");
    std::sort(log.begin(), log.end());
    CHECK(log == std::vector<std::string>{"add team-a/s9", "delete team-a/s0", "update team-a/s1"});
    CHECK(inf->stats().relists_gone == 2);
    inf->stop();
  });
}

TEST_CASE("informer: a dropped API server is reconnected with backoff, without relisting") {
  K8sDouble d({"--bookmark-interval", "3600"});
  run_test([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    auto c = make_client(ex, d);
    co_await make_namespace(*c, "team-a");
    {
      const auto awaited = co_await c->create(secrets_gvr(), "team-a", secret("before"));
      REQUIRE(awaited);
    }
    InformerOptions io;
    io.backoff_initial = 50ms;
    io.backoff_max = 400ms;
    auto inf = Informer::create(c, secrets_gvr(), io);
    asio::co_spawn(ex, inf->run(), asio::detached);
    {
      const auto awaited = co_await wait_until([&] { return inf->has_synced() && d.count("secrets", "watch") >= 1; });
      INFO(describe(inf->stats()));
      REQUIRE(awaited);
    }

    // Every connection is dropped for ~2 s: watches end, reconnects fail.
    d.admin("POST", "down", R"({"mode": "close"})");
    const auto down_at = std::chrono::steady_clock::now();
    {
      const auto awaited = co_await wait_until([&] { return inf->stats().reconnects >= 4; });
      INFO(describe(inf->stats()));
      REQUIRE(awaited);
    }
    asio::steady_timer t(ex);
    t.expires_at(down_at + 2s);
    co_await t.async_wait(asio::use_awaitable);  // the outage lasts a fixed time (not a synchronisation)
    const auto attempts = inf->stats().reconnects;
    // 50 ms doubling to 400 ms (+ up to 50 % jitter): at most ~9 attempts in 2 s, not hundreds.
    CHECK(attempts >= 4);
    CHECK(attempts <= 12);
    d.admin("POST", "up");
    {
      const auto awaited = co_await c->create(secrets_gvr(), "team-a", secret("after"));
      REQUIRE(awaited);
    }
    {
      const auto awaited = co_await wait_until([&] { return inf->get("team-a", "after") != nullptr; });
      INFO(describe(inf->stats()));
      REQUIRE(awaited);
    }
    CHECK(inf->stats().lists == 1);  // resumed from its resourceVersion
    CHECK(inf->get("team-a", "before") != nullptr);
    inf->stop();
  });
}

TEST_CASE("kube client: client-side QPS limit spaces requests") {
  K8sDouble d;
  run_test([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    ClientOptions o;
    o.qps = 20;
    o.burst = 5;
    auto c = make_client(ex, d, o);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 15; ++i) {
      const auto got = co_await c->get(namespaces_gvr(), "", "default");
      REQUIRE(got);
    }
    const auto elapsed = std::chrono::steady_clock::now() - t0;
    // 5 free, then 10 more at 20/s: at least 500 ms.
    CHECK(elapsed >= 450ms);
    CHECK(c->stats().throttled_ns > 0);
    CHECK(c->stats().requests == 15);
  });
}
