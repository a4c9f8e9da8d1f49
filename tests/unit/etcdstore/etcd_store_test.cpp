// The etcd state store against real etcd 3.4 members started by each test
// (tests/support/etcd_cluster), alone and under two kms::Keyrings standing
// for two rootseald hosts (each with its own store and watch, one root key
// shared as a restored HSM would hold it). Waits poll a condition with a
// deadline.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <algorithm>
#include <functional>
#include <future>
#include <thread>

#include "etcd_cluster.hpp"
#include "poll.hpp"
#include "key_record.hpp"
#include "rootseal/etcdstore/etcd_store.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/keyring.hpp"
#include "rootseal/kms/root_of_trust.hpp"

using namespace rootseal;
using etcdstore::EtcdStore;
using kms::Errc;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

using test::eventually;

std::unique_ptr<EtcdStore> open_store(const test::EtcdCluster& cluster, std::string prefix = "/rs-test/") {
  etcdstore::EtcdStoreConfig cfg;
  cfg.client.endpoints = cluster.endpoints();
  cfg.client.request_timeout = 1000ms;
  cfg.prefix = std::move(prefix);
  auto s = EtcdStore::open(std::move(cfg));
  REQUIRE(s);
  return std::move(*s);
}

kms::KeyRecord record(std::string name, std::vector<std::uint8_t> wrapped) {
  kms::KeyRecord r;
  r.name = std::move(name);
  r.created_unix = 1;
  r.versions.push_back({1, 1, std::move(wrapped), "kcv"});
  return r;
}

// The plaintext of a decrypt, "" on failure.
std::string text(const kms::Result<kms::SecureBytes>& r) {
  if (!r) return "";
  return {reinterpret_cast<const char*>(r->data()), r->size()};
}

std::span<const std::uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// One rootseald host: its own store (and watch) on the shared etcd, a root
// holding the cluster's root key, a keyring.
struct Host {
  std::unique_ptr<EtcdStore> store;
  std::unique_ptr<kms::SoftwareRoot> root;
  std::unique_ptr<kms::Keyring> ring;
  std::atomic<int> reloads{0};

  Host(const test::EtcdCluster& cluster, const kms::SecureBytes& root_key, kms::Clock clock = {})
      : store(open_store(cluster)) {
    auto r = kms::SoftwareRoot::create(kms::SecureBytes::copy_of(root_key.span()));
    REQUIRE(r);
    root = std::move(*r);
    ring = std::make_unique<kms::Keyring>(*store, *root, std::move(clock));
    auto unsealed = ring->unseal();
    REQUIRE(unsealed);
  }
  void watch() {
    store->start_watch({[this](const std::string& name) { (void)ring->refresh(name); },
                        [this] {
                          (void)ring->reload();
                          ++reloads;
                        }});
  }
  ~Host() { store->stop_watch(); }
  [[nodiscard]] std::uint32_t latest(std::string_view name) const {
    auto v = ring->latest_version(name);
    return v ? *v : 0;
  }
};

}  // namespace

TEST_CASE("etcd store: create is a compare-and-swap on create_revision, records read back") {
  test::EtcdCluster cluster(1);
  auto store = open_store(cluster);
  CHECK(store->shared());
  REQUIRE(store->create_key(record("a", {1, 2, 3})));
  REQUIRE(store->create_key(record("b", {4, 5, 6})));
  auto again = store->create_key(record("a", {9, 9, 9}));
  REQUIRE_FALSE(again);
  CHECK(again.error().code == Errc::already_exists);

  auto a = store->find("a");
  REQUIRE(a);
  REQUIRE(a->has_value());
  CHECK((*a)->versions.front().wrapped_key == std::vector<std::uint8_t>{1, 2, 3});  // the first writer's
  auto missing = store->find("zzz");
  REQUIRE(missing);
  CHECK_FALSE(missing->has_value());
  auto names = store->list_names();
  REQUIRE(names);
  CHECK(*names == std::vector<std::string>{"a", "b"});
  auto all = store->load_all();
  REQUIRE(all);
  REQUIRE(all->size() == 2);
  CHECK(store->loaded_revision() > 0);

  // A version that does not follow the latest is refused; the next one commits.
  auto skip = store->add_version("a", {3, 1, {7}, "kcv"});
  REQUIRE_FALSE(skip);
  CHECK(skip.error().code == Errc::conflict);
  REQUIRE(store->add_version("a", {2, 1, {7}, "kcv"}));
  // The same version sent again (an answer lost on the way) is recognised as done.
  CHECK(store->add_version("a", {2, 1, {7}, "kcv"}));
  auto other = store->add_version("a", {2, 1, {8}, "kcv"});
  REQUIRE_FALSE(other);
  CHECK(other.error().code == Errc::conflict);

  kms::KeyConfig c;
  c.deletion_allowed = true;
  c.min_decryption_version = 2;
  REQUIRE(store->update_config("a", c));
  CHECK((*store->find("a"))->config == c);
  c.min_decryption_version = 3;
  CHECK(store->update_config("a", c).error().code == Errc::invalid_argument);
  CHECK(store->update_config("nope", c).error().code == Errc::not_found);
  // Written only over the config it was computed from.
  kms::KeyConfig stale;  // the defaults: not what is stored
  kms::KeyConfig next = c;
  next.auto_rotate_period_s = 7200;
  next.min_decryption_version = 1;
  CHECK(store->update_config_if("a", stale, next).error().code == Errc::conflict);
  c.min_decryption_version = 2;
  REQUIRE(store->update_config_if("a", c, next));
  CHECK((*store->find("a"))->config == next);

  REQUIRE(store->replace_wrapped({{"a", 2, {42}, "kcv2"}}, {}));
  CHECK((*store->find("a"))->versions[1].wrapped_key == std::vector<std::uint8_t>{42});

  REQUIRE(store->delete_key("b"));
  CHECK(store->delete_key("b").error().code == Errc::not_found);
  CHECK(*store->list_names() == std::vector<std::string>{"a"});
}

TEST_CASE("etcd store: two writers racing for one version: exactly one commits it, every time") {
  test::EtcdCluster cluster(3);
  auto s1 = open_store(cluster);
  auto s2 = open_store(cluster);
  REQUIRE(s1->create_key(record("race", {0})));
  for (std::uint32_t v = 2; v <= 21; ++v) {
    std::promise<void> go;
    auto start = go.get_future().share();
    const std::vector<std::uint8_t> m1{1, static_cast<std::uint8_t>(v)}, m2{2, static_cast<std::uint8_t>(v)};
    auto f1 = std::async(std::launch::async, [&] {
      start.wait();
      return s1->add_version("race", {v, 1, m1, "kcv"});
    });
    auto f2 = std::async(std::launch::async, [&] {
      start.wait();
      return s2->add_version("race", {v, 1, m2, "kcv"});
    });
    go.set_value();
    auto r1 = f1.get();
    auto r2 = f2.get();
    INFO("version " << v);
    REQUIRE(r1.has_value() != r2.has_value());
    const auto& loser = r1 ? r2 : r1;
    CHECK(loser.error().code == Errc::conflict);
    auto stored = s2->find("race");
    REQUIRE(stored);
    REQUIRE((*stored)->versions.size() == v);
    CHECK((*stored)->versions.back().wrapped_key == (r1 ? m1 : m2));
  }
}

TEST_CASE(
    "etcd store: two keyrings on one etcd: each serves what the other wrote, rotations race into distinct versions") {
  test::EtcdCluster cluster(3);
  const auto root_key = kms::SecureBytes::random(32);
  Host a(cluster, root_key);
  Host b(cluster, root_key);
  b.watch();

  auto created = a.ring->create("orders", {});
  REQUIRE(created);
  CHECK_FALSE(created->existed);
  auto enc = a.ring->encrypt("orders", bytes("hello"), {});
  REQUIRE(enc);
  REQUIRE(eventually([&] { return b.latest("orders") == 1; }, 10s));
  auto plain = b.ring->decrypt("orders", enc->ciphertext, {});
  REQUIRE(plain);
  CHECK(text(plain) == "hello");

  // B creating the same key takes A's (Vault's upsert), even before its watch saw it.
  b.store->stop_watch();
  REQUIRE(a.ring->create("late", {}));
  auto existed = b.ring->create("late", {});
  REQUIRE(existed);
  CHECK(existed->existed);

  // A rotation on A: B (its watch stopped) has not seen version 2 ...
  auto rotated = a.ring->rotate("orders");
  REQUIRE(rotated);
  CHECK(rotated->latest_version == 2);
  auto enc2 = a.ring->encrypt("orders", bytes("v2"), {});
  REQUIRE(enc2);
  CHECK(b.ring->decrypt("orders", enc2->ciphertext, {}).error().code == Errc::invalid_argument);
  // ... a refresh (what a host does before answering "not found") brings it.
  REQUIRE(b.ring->refresh("orders"));
  CHECK(text(b.ring->decrypt("orders", enc2->ciphertext, {})) == "v2");

  // B rotates from a stale view: its version 3 races nobody; then both
  // rotate at once, many times: every rotation gets its own version.
  std::atomic<int> failures{0};
  auto spin = [&](Host& h) {
    for (int i = 0; i < 10; ++i) {
      if (!h.ring->rotate("orders")) ++failures;
    }
  };
  std::thread ta([&] { spin(a); });
  std::thread tb([&] { spin(b); });
  ta.join();
  tb.join();
  CHECK(failures == 0);
  auto stored = a.store->find("orders");
  REQUIRE(stored);
  CHECK((*stored)->versions.size() == 22);
  // Both hosts end on the same material for every version.
  REQUIRE(a.ring->refresh("orders"));
  REQUIRE(b.ring->refresh("orders"));
  for (std::uint32_t v = 1; v <= 22; ++v) {
    kms::CryptoOptions o;
    o.key_version = v;
    auto e = a.ring->encrypt("orders", bytes("x"), o);
    REQUIRE(e);
    auto d = b.ring->decrypt("orders", e->ciphertext, {});
    INFO("version " << v);
    REQUIRE(d);
    CHECK(text(d) == "x");
  }

  // Two hosts changing different config fields at once: neither change is lost.
  std::atomic<int> config_failures{0};
  auto configure_many = [&config_failures](Host& h, bool period) {
    for (int i = 0; i < 20; ++i) {
      kms::ConfigUpdate u;
      if (period) {
        u.auto_rotate_period_s = std::int64_t{3600} * (i + 1);
      } else {
        u.min_decryption_version = static_cast<std::uint32_t>(1 + i % 3);
      }
      if (!h.ring->configure("orders", u)) ++config_failures;
    }
  };
  std::thread ca([&] { configure_many(a, true); });
  std::thread cb([&] { configure_many(b, false); });
  ca.join();
  cb.join();
  CHECK(config_failures == 0);
  auto configured = a.store->find("orders");
  REQUIRE(configured);
  CHECK((*configured)->config.auto_rotate_period_s == 3600 * 20);
  CHECK((*configured)->config.min_decryption_version == 1 + 19 % 3);

  // Config and delete from B reach A through A's watch.
  a.watch();
  kms::ConfigUpdate allow;
  allow.deletion_allowed = true;
  REQUIRE(b.ring->configure("orders", allow));
  REQUIRE(eventually([&] { return a.ring->read("orders")->config.deletion_allowed; }, 10s));
  REQUIRE(b.ring->remove("orders"));
  REQUIRE(eventually([&] { return !*a.ring->contains("orders"); }, 10s));
}

TEST_CASE("etcd store: hosts rotating a due key automatically at once add one version between them") {
  test::EtcdCluster cluster(3);
  const auto root_key = kms::SecureBytes::random(32);
  std::atomic<std::int64_t> now{1'700'000'000};
  auto clock = [&now] { return now.load(); };
  Host a(cluster, root_key, clock);
  Host b(cluster, root_key, clock);  // no watch: B learns of A's versions only by re-reading
  kms::CreateOptions o;
  o.auto_rotate_period_s = 3600;
  REQUIRE(a.ring->create("auto", o));
  REQUIRE(b.ring->refresh("auto"));
  for (std::uint32_t round = 1; round <= 5; ++round) {
    now += 3601;  // every host sees the key due
    REQUIRE(*a.ring->due_for_rotation() == std::vector<std::string>{"auto"});
    REQUIRE(*b.ring->due_for_rotation() == std::vector<std::string>{"auto"});
    std::atomic<int> rotated{0}, failed{0};
    auto run = [&](Host& h) {
      auto r = h.ring->rotate_if_due("auto");
      if (!r)
        ++failed;
      else if (*r)
        ++rotated;
    };
    std::thread ta([&] { run(a); });
    std::thread tb([&] { run(b); });
    ta.join();
    tb.join();
    INFO("round " << round);
    CHECK(failed == 0);
    CHECK(rotated == 1);
    auto stored = a.store->find("auto");
    REQUIRE(stored);
    CHECK((*stored)->versions.size() == round + 1);
    // The host that lost the race re-read the key: it is current there too.
    REQUIRE(b.ring->refresh("auto"));
    CHECK(a.ring->due_for_rotation()->empty());
    CHECK(b.ring->due_for_rotation()->empty());
  }
}

TEST_CASE("etcd store: a watch resuming past a compaction reloads every key") {
  test::EtcdCluster cluster(1);
  const auto root_key = kms::SecureBytes::random(32);
  Host a(cluster, root_key);
  Host b(cluster, root_key);  // loaded (empty) at an early revision, not watching yet
  REQUIRE(a.ring->create("k1", {}));
  REQUIRE(a.ring->rotate("k1"));
  REQUIRE(a.ring->create("k2", {}));
  // Compact everything up to now: B's watch would resume before it.
  auto all = a.store->load_all();
  REQUIRE(all);
  const auto body = "{\"revision\":\"" + std::to_string(a.store->loaded_revision()) + "\",\"physical\":true}";
  const int port = std::stoi(cluster.endpoint(0).substr(cluster.endpoint(0).rfind(':') + 1));
  REQUIRE(test::loopback_http(port, "POST", "/v3/kv/compaction", body, 5s).find("header") != std::string::npos);

  b.watch();
  REQUIRE(eventually([&] { return b.reloads.load() == 1 && b.latest("k1") == 2 && b.latest("k2") == 1; }, 10s));
  // The watch goes on from the compaction point.
  REQUIRE(a.ring->rotate("k2"));
  REQUIRE(eventually([&] { return b.latest("k2") == 2; }, 10s));
  CHECK(b.reloads.load() == 1);
}

TEST_CASE("etcd store: without quorum key changes answer unavailable and encrypt keeps working, then recover") {
  test::EtcdCluster cluster(3);
  const auto root_key = kms::SecureBytes::random(32);
  Host a(cluster, root_key);
  Host b(cluster, root_key);
  b.watch();
  REQUIRE(a.ring->create("q", {}));
  REQUIRE(eventually([&] { return b.latest("q") == 1; }, 10s));

  cluster.kill(1);
  cluster.kill(2);
  auto rotated = a.ring->rotate("q");
  REQUIRE_FALSE(rotated);
  CHECK(rotated.error().code == Errc::unavailable);
  CHECK(rotated.error().message.find("key changes are refused until it is back") != std::string::npos);
  auto created = b.ring->create("new", {});
  REQUIRE_FALSE(created);
  CHECK(created.error().code == Errc::unavailable);
  for (Host* h : {&a, &b}) {
    auto e = h->ring->encrypt("q", bytes("still"), {});
    REQUIRE(e);
    CHECK(text(a.ring->decrypt("q", e->ciphertext, {})) == "still");
    CHECK(text(b.ring->decrypt("q", e->ciphertext, {})) == "still");
  }
  // A host starting now unseals from what its member holds (serializable read).
  Host c(cluster, root_key);
  CHECK(c.latest("q") == 1);

  cluster.start(1);
  cluster.start(2);
  REQUIRE(cluster.wait_healthy(1, 30s));
  REQUIRE(cluster.wait_healthy(2, 30s));
  // Writes come back without a restart (an election may still be under way: poll).
  REQUIRE(eventually([&] { return a.ring->rotate("q").has_value(); }, 30s));
  // The watch catches up.
  REQUIRE(eventually([&] { return b.latest("q") == a.latest("q"); }, 30s));
  auto e = a.ring->encrypt("q", bytes("after"), {});
  REQUIRE(e);
  CHECK(text(b.ring->decrypt("q", e->ciphertext, {})) == "after");
}

TEST_CASE("etcd store: a host whose root key is not the cluster's stays sealed and writes nothing") {
  test::EtcdCluster cluster(1);
  const auto root_key = kms::SecureBytes::random(32);
  Host a(cluster, root_key);  // the first to unseal records its root's check value
  REQUIRE(a.ring->create("k", {}));

  auto store = open_store(cluster);
  auto other = kms::SoftwareRoot::create(kms::SecureBytes::random(32));
  REQUIRE(other);
  const auto other_kcv = (*other)->key_check_value();
  REQUIRE(other_kcv);
  kms::Keyring ring(*store, **other);
  auto unsealed = ring.unseal();
  REQUIRE_FALSE(unsealed);
  CHECK(unsealed.error().code == Errc::sealed);
  CHECK(unsealed.error().message.find("is not the cluster's") != std::string::npos);
  CHECK(unsealed.error().message.find(*other_kcv) != std::string::npos);
  CHECK(ring.is_sealed());

  // Its store refuses versions wrapped by that root, unsealed or not.
  auto evil = record("evil", {1, 2, 3});
  evil.versions.front().root_kcv = *other_kcv;
  auto created = store->create_key(evil);
  REQUIRE_FALSE(created);
  CHECK(created.error().code == Errc::sealed);
  auto added = store->add_version("k", {2, 1, {9, 9}, *other_kcv});
  REQUIRE_FALSE(added);
  CHECK(added.error().code == Errc::sealed);
  CHECK_FALSE(store->find("evil")->has_value());
  CHECK((*store->find("k"))->versions.size() == 1);

  // A host with the cluster's root joins and serves.
  Host b(cluster, root_key);
  CHECK(b.latest("k") == 1);
  REQUIRE(b.ring->rotate("k"));
}

TEST_CASE("etcd store: the cluster id is recorded once, later proposals get the recorded one") {
  test::EtcdCluster cluster(1);
  auto a = open_store(cluster);
  auto b = open_store(cluster);
  auto first = a->cluster_id("11111111-2222-4333-8444-555555555555");
  REQUIRE(first);
  CHECK(*first == "11111111-2222-4333-8444-555555555555");
  auto second = b->cluster_id("99999999-2222-4333-8444-555555555555");
  REQUIRE(second);
  CHECK(*second == *first);
  auto view = b->cluster_view();
  REQUIRE(view);
  CHECK(view->cluster_id == *first);
  CHECK_FALSE(view->root_kcv.has_value());
  CHECK(view->members.empty());
  CHECK(view->latest_key_revision == 0);
  REQUIRE(a->create_key(record("k", {1, 2, 3})));
  view = b->cluster_view();
  REQUIRE(view);
  CHECK(view->latest_key_revision > 0);
  CHECK(view->latest_key_revision <= view->revision);
}

TEST_CASE("etcd store: a host's record lives under a lease, follows its state, goes when stopped") {
  test::EtcdCluster cluster(1);
  auto watcher = open_store(cluster);
  auto members = [&] {
    auto v = watcher->cluster_view();
    REQUIRE(v);
    return v->members;
  };
  std::atomic<bool> sealed{true};
  auto host = [&](std::string id) {
    return [id, &sealed] {
      EtcdStore::Member m;
      m.host_id = id;
      m.instance = id + "-instance";
      m.version = "1.2.3";
      m.root_kcv = sealed.load() ? "" : "abc123";
      m.sealed = sealed.load();
      m.seen_revision = 42;
      m.started_unix = 1'700'000'000;
      return m;
    };
  };
  auto a = open_store(cluster);
  auto b = open_store(cluster);
  a->start_membership(2s, host("a"));
  b->start_membership(2s, host("b"));
  REQUIRE(eventually([&] { return members().size() == 2; }, 10s));
  auto m = members();
  CHECK(m[0].host_id == "a");
  CHECK(m[0].instance == "a-instance");
  CHECK(m[0].version == "1.2.3");
  CHECK(m[0].seen_revision == 42);
  CHECK(m[0].sealed);
  CHECK(m[0].lease != 0);
  CHECK(m[0].error.empty());

  // A change of state is written within a keepalive round.
  sealed = false;
  REQUIRE(eventually(
      [&] {
        auto now = members();
        return now.size() == 2 && !now[0].sealed && now[0].root_kcv == "abc123" && !now[1].sealed;
      },
      10s));
  // Stopped: its lease revoked, the record gone at once (no waiting for the TTL).
  a->stop_membership();
  m = members();
  REQUIRE(m.size() == 1);
  CHECK(m[0].host_id == "b");
  b.reset();  // the destructor stops it too
  CHECK(members().empty());
}

TEST_CASE("etcd store: a snapshot read is every key, the cluster id and root check value at one revision") {
  test::EtcdCluster cluster(1);
  auto store = open_store(cluster);
  REQUIRE(store->check_root("kcv"));
  REQUIRE(store->cluster_id("0b7f6a2e-35d7-4a59-8a1f-2c3c3a8a9e10"));
  // More keys than two range pages (256 each): every page must be read at the first one's revision.
  constexpr std::size_t kKeys = 600;
  for (std::size_t i = 0; i < kKeys; ++i) REQUIRE(store->create_key(record("k" + std::to_string(1000 + i), {1, 2, 3})));
  // How many keys etcd held at `revision`, asked of etcd directly.
  const int port = std::stoi(cluster.endpoint(0).substr(cluster.endpoint(0).rfind(':') + 1));
  auto count_at = [&](std::int64_t revision) -> std::size_t {
    const auto body = "{\"key\":\"" + kms::base64_encode(bytes("/rs-test/keys/")) + "\",\"range_end\":\"" +
                      kms::base64_encode(bytes("/rs-test/keys0")) + "\",\"revision\":\"" + std::to_string(revision) +
                      "\",\"count_only\":true}";
    const auto answer = test::loopback_http(port, "POST", "/v3/kv/range", body, 5s);
    const auto at = answer.find("\"count\":\"");
    REQUIRE(at != std::string::npos);
    return std::stoul(answer.substr(at + 9));
  };
  // A writer adding keys (sorted after the k keys: in the last page) all the while.
  std::atomic<bool> stop{false};
  std::atomic<int> added{0};
  auto writer = std::async(std::launch::async, [&] {
    auto w = open_store(cluster);
    while (!stop.load()) {
      if (w->create_key(record("w" + std::to_string(10000 + added.load()), {4, 5}))) ++added;
    }
  });
  for (int round = 0; round < 10; ++round) {
    auto snap = store->read_snapshot();
    REQUIRE(snap);
    CHECK(snap->cluster_id == std::optional<std::string>("0b7f6a2e-35d7-4a59-8a1f-2c3c3a8a9e10"));
    CHECK(snap->root_kcv == std::optional<std::string>("kcv"));
    CHECK_FALSE(snap->restoring);
    CHECK(snap->keys.size() == count_at(snap->revision));
    CHECK(std::is_sorted(snap->keys.begin(), snap->keys.end(),
                         [](const auto& a, const auto& b) { return a.name < b.name; }));
  }
  stop = true;
  writer.get();
  CHECK(added.load() > 0);
}

TEST_CASE("etcd store: the restore mark keeps load_all sealed until it is removed") {
  test::EtcdCluster cluster(1);
  auto store = open_store(cluster);
  REQUIRE(store->create_key(record("a", {1})));
  REQUIRE(store->load_all());
  REQUIRE(store->mark_restoring("rootseal-20261206T151900.123Z.snap"));
  auto loaded = store->load_all();
  REQUIRE_FALSE(loaded);
  CHECK(loaded.error().code == Errc::sealed);
  CHECK(loaded.error().message.find("a snapshot restore into /rs-test/ is under way or was interrupted") !=
        std::string::npos);
  auto snap = store->read_snapshot();
  REQUIRE(snap);
  CHECK(snap->restoring == std::optional<std::string>("rootseal-20261206T151900.123Z.snap"));
  auto view = store->cluster_view();
  REQUIRE(view);
  CHECK(view->restoring == std::optional<std::string>("rootseal-20261206T151900.123Z.snap"));
  REQUIRE(store->set_cluster_records("0b7f6a2e-35d7-4a59-8a1f-2c3c3a8a9e10", "def456"));
  REQUIRE(store->unmark_restoring());
  REQUIRE(store->load_all());
  view = store->cluster_view();
  REQUIRE(view);
  CHECK_FALSE(view->restoring);
  CHECK(view->root_kcv == std::optional<std::string>("def456"));
  CHECK(view->cluster_id == std::optional<std::string>("0b7f6a2e-35d7-4a59-8a1f-2c3c3a8a9e10"));
}

TEST_CASE("etcd store: one holder of a lock under its member lease, gone with the lease or when released") {
  test::EtcdCluster cluster(1);
  auto member = [](std::string id) {
    return [id] {
      EtcdStore::Member m;
      m.host_id = id;
      return m;
    };
  };
  auto a = open_store(cluster);
  auto b = open_store(cluster);
  // Not registered yet: no lease to hold a lock under.
  auto early = a->hold_lock("snapshots", "a");
  REQUIRE_FALSE(early);
  CHECK(early.error().code == Errc::unavailable);
  a->start_membership(2s, member("a"));
  b->start_membership(2s, member("b"));
  REQUIRE(eventually([&] { return a->hold_lock("snapshots", "a").value_or(false); }, 10s));
  std::string holder;
  REQUIRE(eventually([&] { return b->hold_lock("snapshots", "b", &holder).has_value(); }, 10s));
  CHECK_FALSE(*b->hold_lock("snapshots", "b", &holder));
  CHECK(holder == "a");
  CHECK(*a->hold_lock("snapshots", "a"));  // still a's, asked again
  // b releasing does not touch a's lock.
  b->release_lock("snapshots");
  CHECK(*a->hold_lock("snapshots", "a"));
  // a lets it go: b takes it at its next call.
  a->release_lock("snapshots");
  CHECK(*b->hold_lock("snapshots", "b"));
  CHECK_FALSE(*a->hold_lock("snapshots", "a", &holder));
  CHECK(holder == "b");
  // b stops (its lease revoked): a takes it.
  b->stop_membership();
  CHECK(*a->hold_lock("snapshots", "a"));
  // The fence, as for buckets: a's member record no longer under a's lease
  // (another process under the same host id, or the record of an expired
  // lease): a neither counts the lock it holds as held nor takes a free one.
  REQUIRE(cluster.etcdctl(0,
                          "put /rs-test/members/a '{\"host_id\":\"a\",\"instance\":\"other\",\"version\":\"\","
                          "\"root_kcv\":\"\",\"sealed\":true,\"seen_revision\":0,\"started\":0}'") == 0);
  CHECK_FALSE(*a->hold_lock("snapshots", "a", &holder));
  CHECK(holder == "a");
  CHECK_FALSE(*a->hold_lock("other", "a"));
}

TEST_CASE(
    "etcd store: one keyring key for the cluster, rotated on one host, learned by the other, a retired one "
    "takes no version") {
  test::EtcdCluster cluster(1);
  const auto root_key = kms::SecureBytes::random(32);
  Host a(cluster, root_key);
  Host b(cluster, root_key);  // unsealed after A: it uses A's keyring key
  auto kks = a.store->keyring_keys();
  REQUIRE(kks);
  REQUIRE(kks->size() == 1);
  const auto first = kks->front();
  REQUIRE(a.ring->create("k", {}));
  auto enc = a.ring->encrypt("k", bytes("before"), {});
  REQUIRE(enc);
  REQUIRE(b.ring->refresh("k"));
  CHECK(text(b.ring->decrypt("k", enc->ciphertext, {})) == "before");

  // More keys than one etcd transaction takes (64): the move goes in batches.
  for (int i = 0; i < 70; ++i) REQUIRE(a.ring->create("bulk-" + std::to_string(i), {}));
  // A rotates the keyring key: every version moves under key 2, key 1 goes.
  std::vector<std::string> steps;
  a.ring->set_step_observer([&steps](std::string_view step) { steps.emplace_back(step); });
  auto st = a.ring->rotate_keyring_key();
  if (!st) FAIL(st.error().message);
  CHECK(st->id == 2);
  CHECK(st->pending_versions == 0);
  CHECK(steps == std::vector<std::string>{"keyring-key-added", "keyring-rewrapped-1", "keyring-rewrapped-2",
                                          "keyring-key-retired-1"});
  kks = a.store->keyring_keys();
  REQUIRE(kks);
  REQUIRE(kks->size() == 1);
  REQUIRE(kks->front().id == 2);
  const std::string tag2 = kms::keyring_key_tag(2, kks->front().kcv);

  // The store refuses a version under the retired key ...
  auto stored = a.store->find("k");
  REQUIRE(stored);
  REQUIRE(stored->has_value());
  auto refused =
      a.store->add_version("k", {2, 2, (*stored)->versions[0].wrapped_key, kms::keyring_key_tag(1, first.kcv)});
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == Errc::conflict);
  CHECK(refused.error().message.find("was retired") != std::string::npos);
  // ... and to retire the current one while versions are under it.
  auto busy = a.store->retire_keyring_key(2);
  REQUIRE_FALSE(busy);
  CHECK(busy.error().code == Errc::conflict);

  // B still wraps with key 1: its rotation is refused by the store, it
  // learns key 2 and the version is made under it.
  auto rotated = b.ring->rotate("k");
  if (!rotated) FAIL(rotated.error().message);
  CHECK(rotated->latest_version == 2);
  stored = a.store->find("k");
  REQUIRE(stored);
  for (const auto& v : (*stored)->versions) CHECK(v.root_kcv == tag2);
  auto all = a.store->load_all();
  REQUIRE(all);
  CHECK(all->size() == 71);
  for (const auto& k : *all) {
    for (const auto& v : k.versions) CHECK(v.root_kcv == tag2);
  }
  CHECK(text(b.ring->decrypt("k", enc->ciphertext, {})) == "before");
  auto enc2 = b.ring->encrypt("k", bytes("after"), {});
  REQUIRE(enc2);
  REQUIRE(a.ring->refresh("k"));
  CHECK(text(a.ring->decrypt("k", enc2->ciphertext, {})) == "after");

  // A host starting now opens key 2 only.
  Host c(cluster, root_key);
  CHECK(text(c.ring->decrypt("k", enc->ciphertext, {})) == "before");
  CHECK(text(c.ring->decrypt("k", enc2->ciphertext, {})) == "after");
  auto cs = c.ring->keyring_key_status();
  REQUIRE(cs);
  CHECK(cs->id == 2);
}

TEST_CASE(
    "etcd store: a sync bucket has one owner under its member lease, fenced on the member record, with a rising "
    "epoch") {
  test::EtcdCluster cluster(1);
  auto member = [](std::string id) {
    return [id] {
      EtcdStore::Member m;
      m.host_id = id;
      m.instance = id + "-1";
      m.sync = true;
      return m;
    };
  };
  auto a = open_store(cluster);
  auto b = open_store(cluster);
  // Not registered: nothing to claim under.
  auto early = a->claim_bucket(5, "a", "a-1");
  REQUIRE_FALSE(early);
  CHECK(early.error().code == Errc::unavailable);
  CHECK(a->member_lease_state().id == 0);
  const auto before = Clock::now();
  a->start_membership(3s, member("a"));
  b->start_membership(3s, member("b"));
  // Registered: the lease and until when it surely lives (sent + TTL).
  REQUIRE(eventually([&] { return a->claim_bucket(5, "a", "a-1").value_or(std::nullopt).has_value(); }, 10s));
  const auto lease = a->member_lease_state();
  CHECK(lease.id != 0);
  CHECK(lease.alive_until >= before + 3s);
  CHECK(lease.alive_until <= Clock::now() + 3s);
  REQUIRE(eventually([&] { return b->member_lease_state().id != 0; }, 10s));

  auto view = a->shard_view();
  REQUIRE(view);
  REQUIRE(view->owners.size() == 1);
  CHECK(view->owners[0].bucket == 5);
  CHECK(view->owners[0].host_id == "a");
  CHECK(view->owners[0].instance == "a-1");
  CHECK(view->owners[0].lease == lease.id);
  const std::int64_t first_epoch = view->owners[0].epoch;
  CHECK(first_epoch > 0);
  REQUIRE(eventually(
      [&] {
        auto v = a->shard_view();
        return v && v->members.size() == 2 && v->members[0].sync && v->members[1].sync;
      },
      10s));

  // b cannot take a bucket that has an owner, nor release a's.
  auto taken = b->claim_bucket(5, "b", "b-1");
  REQUIRE(taken);
  CHECK_FALSE(taken->has_value());
  auto not_ours = b->release_bucket(5);
  REQUIRE(not_ours);
  CHECK_FALSE(*not_ours);
  // a drains and releases; b takes it with a larger epoch.
  auto released = a->release_bucket(5);
  REQUIRE(released);
  CHECK(*released);
  auto claimed = b->claim_bucket(5, "b", "b-1");
  REQUIRE(claimed);
  REQUIRE(claimed->has_value());
  CHECK(**claimed > first_epoch);

  // The fence: a's member record no longer under a's lease (another
  // process under the same host id, or the record of an expired lease): a
  // takes nothing.
  REQUIRE(cluster.etcdctl(0,
                          "put /rs-test/members/a '{\"host_id\":\"a\",\"instance\":\"other\",\"version\":\"\","
                          "\"root_kcv\":\"\",\"sealed\":true,\"seen_revision\":0,\"started\":0}'") == 0);
  auto fenced = a->claim_bucket(6, "a", "a-1");
  REQUIRE(fenced);
  CHECK_FALSE(fenced->has_value());
  view = a->shard_view();
  REQUIRE(view);
  REQUIRE(view->owners.size() == 1);
  CHECK(view->owners[0].host_id == "b");

  // b stops (its lease revoked): its buckets go with it.
  b->stop_membership();
  view = a->shard_view();
  REQUIRE(view);
  CHECK(view->owners.empty());
  CHECK(b->member_lease_state().id == 0);
}
