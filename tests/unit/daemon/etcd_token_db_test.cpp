// The created tokens on etcd (daemon/src/etcd_token_db.hpp) against a real
// etcd: records, create/renew/revoke/purge, two stores as two hosts (one
// sees the other's changes through its watch), and the copy between a
// tokens.db and etcd; and the record parser's refusals.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>

#include "admin_token_db.hpp"
#include "etcd_cluster.hpp"
#include "etcd_token_db.hpp"
#include "poll.hpp"
#include "rootseal/daemon/state.hpp"
#include "temp_dir.hpp"

using namespace rootseal;
using namespace rootseal::daemon;
using namespace std::chrono_literals;

namespace {

StoredToken token(std::string accessor, std::int64_t expire = 0) {
  StoredToken t;
  t.hash = std::string(64, 'a');
  if (!accessor.empty()) t.hash.replace(64 - accessor.size(), accessor.size(), accessor);  // one hash per token
  t.info.accessor = std::move(accessor);
  t.info.display_name = "ci-app";
  t.info.policies = {"apps", "root"};
  t.info.creation_time = 1'700'000'000;
  t.info.ttl_s = expire == 0 ? 0 : 3600;
  t.info.expire_time = expire;
  t.info.renewable = expire != 0;
  return t;
}

std::unique_ptr<EtcdTokenDb> open_db(const test::EtcdCluster& cluster) {
  etcd::ClientConfig c;
  c.endpoints = cluster.endpoints();
  auto db = EtcdTokenDb::open(std::move(c), "/rs-tokens/");
  REQUIRE(db);
  return std::move(*db);
}

}  // namespace

TEST_CASE("token record: written and read back, refused when malformed or under another accessor") {
  const auto t = token("0123456789abcdef01234567", 1'700'003'600);
  const auto text = serialize_token_record(t);
  CHECK(text.find(t.hash) != std::string::npos);
  auto back = parse_token_record(t.info.accessor, text);
  REQUIRE(back);
  CHECK(back->hash == t.hash);
  CHECK(back->info.policies == t.info.policies);
  CHECK(back->info.expire_time == t.info.expire_time);
  CHECK(back->info.renewable);
  CHECK(back->info.root);  // from the policies, never from the record
  CHECK(back->info.persistent);
  CHECK_FALSE(parse_token_record("0123456789abcdef01234568", text));  // the key names another token
  auto edit = [&](std::string from, std::string to) {
    std::string s = text;
    const auto at = s.find(from);
    REQUIRE(at != std::string::npos);
    s.replace(at, from.size(), to);
    return parse_token_record(t.info.accessor, s);
  };
  CHECK_FALSE(edit("\"v\":1", "\"v\":2"));
  CHECK_FALSE(edit(t.hash, t.hash.substr(1)));
  CHECK_FALSE(edit(t.hash, "A" + t.hash.substr(1)));  // not lower-case hex
  CHECK_FALSE(edit("\"renewable\":true", "\"renewable\":1"));
  CHECK_FALSE(edit("\"expire_time\":1700003600", "\"expire_time\":-1"));
  CHECK_FALSE(edit("\"expire_time\":1700003600", "\"expire_time\":1.5"));
  CHECK_FALSE(edit("[\"apps\",\"root\"]", "[\"apps\",7]"));
  CHECK_FALSE(edit("[\"apps\",\"root\"]", "[\"\"]"));
  CHECK_FALSE(parse_token_record(t.info.accessor, "not json"));
  CHECK_FALSE(parse_token_record(t.info.accessor, "[]"));
  CHECK_FALSE(parse_token_record("", text));
  CHECK_FALSE(parse_token_record("../x", text));
}

TEST_CASE("tokens on etcd: two hosts share create, renew, revoke and purge, and each one's watch sees the other's") {
  test::EtcdCluster cluster(1);
  auto a = open_db(cluster);
  auto b = open_db(cluster);
  REQUIRE(b->load_all()->empty());
  std::atomic<int> b_changes{0};
  b->start_watch([&] { ++b_changes; });

  const auto t = token("00000000000000000000000a", 1'700'003'600);
  REQUIRE(a->insert(t.hash, t.info));
  REQUIRE(test::eventually([&] { return b_changes.load() >= 1; }, 10s));
  auto seen = b->load_all();
  REQUIRE(seen);
  REQUIRE(seen->size() == 1);
  CHECK(seen->front().hash == t.hash);
  // The accessor is taken: a second create is refused, nothing overwritten.
  auto other = token("00000000000000000000000a");
  other.hash = std::string(64, 'c');
  auto dup = a->insert(other.hash, other.info);
  REQUIRE_FALSE(dup);
  CHECK(dup.error().code == kms::Errc::already_exists);
  CHECK(b->load_all()->front().hash == t.hash);

  // Renewed on B: A reads the later expiry; an earlier one never wins.
  const int before = b_changes.load();
  REQUIRE(b->set_expiry(t.info.accessor, 1'700'007'200));
  REQUIRE(a->set_expiry(t.info.accessor, 1'700'005'000));
  CHECK(a->load_all()->front().info.expire_time == 1'700'007'200);
  REQUIRE(test::eventually([&] { return b_changes.load() > before; }, 10s));
  CHECK(b->set_expiry("00000000000000000000ffff", 1).error().code == kms::Errc::not_found);

  // Purge: only what has expired at `now`.
  const auto never = token("00000000000000000000000b");
  REQUIRE(a->insert(never.hash, never.info));
  CHECK(*b->purge_expired(1'700'007'199) == 0);
  CHECK(*b->purge_expired(1'700'007'200) == 1);
  auto left = a->load_all();
  REQUIRE(left->size() == 1);
  CHECK(left->front().info.accessor == never.info.accessor);

  // Revoked on A: gone for B.
  CHECK(*a->remove(never.info.accessor));
  CHECK_FALSE(*a->remove(never.info.accessor));
  CHECK(b->load_all()->empty());

  // A malformed value under the prefix is left out, and counted.
  REQUIRE(cluster.etcdctl(0, "put /rs-tokens/tokens/0000000000000000000000ff 'not a token'") == 0);
  CHECK(a->load_all()->empty());
  CHECK(a->ignored() == 1);
  b->stop_watch();
}

TEST_CASE("tokens on etcd: a tokens.db is copied into etcd and back, identical ones skipped, conflicts refused") {
  test::EtcdCluster cluster(1);
  test::TempDir dir;
  const auto file = dir / "tokens.db";
  {
    auto db = TokenDb::open(file);
    REQUIRE(db);
    for (const char* acc : {"00000000000000000000000c", "00000000000000000000000d"}) {
      const auto t = token(acc, 1'700'003'600);
      REQUIRE((*db)->insert(t.hash, t.info));
    }
  }
  EtcdSection section;
  section.endpoints = cluster.endpoints();
  section.prefix = "/rs-tokens/";
  auto first = copy_created_tokens(file, section, true);
  REQUIRE(first);
  CHECK(first->copied == 2);
  auto again = copy_created_tokens(file, section, true);  // resumed or run twice: nothing more
  REQUIRE(again);
  CHECK(again->copied == 0);
  CHECK(again->present == 2);
  CHECK(open_db(cluster)->load_all()->size() == 2);

  // Back into a fresh tokens.db.
  const auto back = dir / "back.db";
  auto exported = copy_created_tokens(back, section, false);
  REQUIRE(exported);
  CHECK(exported->copied == 2);
  auto db = TokenDb::open(back);
  REQUIRE(db);
  CHECK((*db)->load_all()->size() == 2);

  // The same accessor with another hash in etcd: refused, nothing written.
  auto changed = token("00000000000000000000000c", 1'700'003'600);
  changed.hash = std::string(64, 'e');
  REQUIRE(open_db(cluster)->remove("00000000000000000000000c"));
  REQUIRE(open_db(cluster)->insert(changed.hash, changed.info));
  REQUIRE(open_db(cluster)->remove("00000000000000000000000d"));
  auto refused = copy_created_tokens(file, section, true);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == kms::Errc::conflict);
  CHECK(open_db(cluster)->load_all()->size() == 1);  // "…0d" not copied either
}
