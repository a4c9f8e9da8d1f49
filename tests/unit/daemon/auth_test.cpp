// TokenStore with its SQLite persistence (TokenDb): created tokens survive a
// restart as hashes only, revocation and expiry take effect at once and are
// durable; static and dev-root tokens are not revocable. Also the PinBroker
// behind the typed PIN source, and the admin section of the config.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <fstream>
#include <iterator>
#include <string>

#include "admin_token_db.hpp"
#include "auth.hpp"
#include "pin_source.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/secure_buffer.hpp"
#include "rootseal/daemon/config.hpp"
#include "temp_dir.hpp"

using namespace rootseal;
using namespace rootseal::daemon;

namespace {

constexpr std::int64_t kNow = 1'800'000'000;

std::string text(const kms::SecureBytes& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

std::unique_ptr<TokenStore> open_store(const std::filesystem::path& db_path, std::int64_t now = kNow) {
  auto db = TokenDb::open(db_path);
  REQUIRE(db);
  auto store = std::make_unique<TokenStore>();
  REQUIRE(store->attach(std::move(*db), now));
  return store;
}

TokenInfo info(std::vector<std::string> policies, std::int64_t ttl = 0, bool renewable = false) {
  TokenInfo t;
  t.display_name = "unit";
  t.policies = std::move(policies);
  t.ttl_s = ttl;
  t.renewable = renewable;
  return t;
}

std::string file_bytes(const std::filesystem::path& dir) {
  std::string all;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename().string().rfind("tokens.db", 0) != 0) continue;
    std::ifstream in(e.path(), std::ios::binary);
    all.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return all;
}

}  // namespace

TEST_CASE("created tokens survive a restart as hashes only") {
  test::TempDir dir;
  const auto path = dir / "tokens.db";
  std::string token;
  std::string accessor;
  {
    auto store = open_store(path);
    auto created = store->create(info({"apps"}, 3600, true), kNow);
    REQUIRE(created);
    token = text(created->token);
    accessor = created->info.accessor;
    CHECK(token.size() == 3 + 48);
    CHECK(token.rfind("rs.", 0) == 0);
    CHECK(created->info.persistent);
    CHECK(created->info.expire_time == kNow + 3600);
    CHECK(accessor.size() == 24);
    auto found = store->lookup(token, kNow + 1);
    REQUIRE(found);
    CHECK(found->accessor == accessor);
    CHECK(found->policies == std::vector<std::string>{"apps"});
  }
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  const auto bytes = file_bytes(dir.path());
  CHECK(bytes.find(token) == std::string::npos);
  CHECK(bytes.find(token_hash(token)) != std::string::npos);

  auto reopened = open_store(path, kNow + 10);
  auto found = reopened->lookup(token, kNow + 10);
  REQUIRE(found);
  CHECK(found->accessor == accessor);
  CHECK(found->display_name == "unit");
  CHECK(found->renewable);
  CHECK(found->persistent);
  CHECK(found->expire_time == kNow + 3600);
  CHECK_FALSE(reopened->lookup(token + "x", kNow + 10));
  REQUIRE(reopened->list(kNow + 10).size() == 1);
  CHECK(reopened->lookup_accessor(accessor, kNow + 10)->display_name == "unit");
}

TEST_CASE("revocation is immediate, durable, and only for created tokens") {
  test::TempDir dir;
  const auto path = dir / "tokens.db";
  auto store = open_store(path);
  auto a = store->create(info({"apps"}), kNow);
  auto b = store->create(info({"root"}), kNow);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(b->info.root);
  const std::string ta = text(a->token);
  const std::string tb = text(b->token);

  auto revoked = store->revoke(a->info.accessor);
  REQUIRE(revoked);
  CHECK(revoked->accessor == a->info.accessor);
  CHECK_FALSE(store->lookup(ta, kNow));  // at once, before any restart
  CHECK(store->lookup(tb, kNow));
  auto again = store->revoke(a->info.accessor);
  REQUIRE_FALSE(again);
  CHECK(again.error().code == kms::Errc::not_found);
  CHECK_FALSE(store->revoke("").has_value());

  // Static (config) and dev-root tokens: refused, still valid.
  StaticTokenConfig st;
  st.name = "seal";
  st.sha256 = token_hash("s.static-token");
  st.policies = {"apps"};
  store->replace_static({st}, kNow);
  TokenInfo root;
  root.display_name = "root";
  root.root = true;
  const auto root_accessor = store->add(kms::SecureBytes::copy_of(std::string_view("rs.devroot")), root);
  const auto static_accessor = store->lookup("s.static-token", kNow)->accessor;
  auto r1 = store->revoke(static_accessor);
  REQUIRE_FALSE(r1);
  CHECK(r1.error().code == kms::Errc::invalid_argument);
  CHECK_THAT(r1.error().message, Catch::Contains("declared in the configuration"));
  auto r2 = store->revoke(root_accessor);
  REQUIRE_FALSE(r2);
  CHECK_THAT(r2.error().message, Catch::Contains("dev root token"));
  CHECK(store->lookup("s.static-token", kNow));
  CHECK(store->lookup("rs.devroot", kNow));
  // A reload keeps created tokens.
  store->replace_static({}, kNow);
  CHECK_FALSE(store->lookup("s.static-token", kNow));
  CHECK(store->lookup(tb, kNow));

  store.reset();
  auto reopened = open_store(path);
  CHECK_FALSE(reopened->lookup(ta, kNow));
  CHECK(reopened->lookup(tb, kNow));
  CHECK(reopened->list(kNow).size() == 1);
}

TEST_CASE("expired tokens are refused at once and purged from the file") {
  test::TempDir dir;
  const auto path = dir / "tokens.db";
  auto store = open_store(path);
  auto short_lived = store->create(info({"apps"}, 10), kNow);
  auto forever = store->create(info({"apps"}), kNow);
  REQUIRE(short_lived);
  REQUIRE(forever);
  const std::string ts = text(short_lived->token);
  CHECK(store->lookup(ts, kNow + 9));
  CHECK_FALSE(store->lookup(ts, kNow + 10));  // expire_time itself is past
  CHECK_FALSE(store->lookup_accessor(short_lived->info.accessor, kNow + 10));
  CHECK(store->list(kNow + 10).size() == 1);
  auto purged = store->purge_expired(kNow + 10);
  REQUIRE(purged);
  CHECK(*purged == 1);
  CHECK(store->revoke(short_lived->info.accessor).error().code == kms::Errc::not_found);

  // Reopened later: the expired row is gone, the other is there.
  auto renewed_db = TokenDb::open(path);
  REQUIRE(renewed_db);
  auto rows = (*renewed_db)->load_all();
  REQUIRE(rows);
  REQUIRE(rows->size() == 1);
  CHECK((*rows)[0].info.accessor == forever->info.accessor);

  // attach() purges what expired while the daemon was down.
  auto another = store->create(info({"apps"}, 5), kNow + 20);
  REQUIRE(another);
  store.reset();
  auto later = open_store(path, kNow + 100);
  CHECK(later->list(kNow + 100).size() == 1);
  auto db = TokenDb::open(path);
  CHECK((*db)->load_all()->size() == 1);
}

TEST_CASE("renewing a created token extends it durably") {
  test::TempDir dir;
  const auto path = dir / "tokens.db";
  auto store = open_store(path);
  auto t = store->create(info({"apps"}, 60, true), kNow);
  REQUIRE(t);
  const std::string token = text(t->token);
  const auto in_flight = store->lookup(token, kNow + 40);  // what a request holds while it runs
  REQUIRE(in_flight);
  auto renewed = store->renew(token, kNow + 50);  // no deferrer: written inline
  REQUIRE(renewed);
  CHECK(renewed->expire_time == kNow + 110);
  // The entry is replaced, not modified under a request that shares it.
  CHECK(in_flight->expire_time == kNow + 60);
  CHECK(store->lookup(token, kNow + 50)->expire_time == kNow + 110);
  auto fixed = store->create(info({"apps"}, 60, false), kNow);
  CHECK_FALSE(store->renew(text(fixed->token), kNow + 1));
  store.reset();
  auto reopened = open_store(path, kNow + 100);
  auto found = reopened->lookup(token, kNow + 100);
  REQUIRE(found);
  CHECK(found->expire_time == kNow + 110);
}

TEST_CASE("the policies a token may name are those of the config, or root") {
  PolicyConfig apps;
  apps.name = "apps";
  apps.keys = {"app-*"};
  apps.operations = {Operation::encrypt};
  Authorizer authz({apps}, {});
  CHECK(authz.has_policy("apps"));
  CHECK(authz.has_policy("root"));
  CHECK_FALSE(authz.has_policy("nope"));
  authz.replace({}, {});
  CHECK_FALSE(authz.has_policy("apps"));
}

TEST_CASE("a typed PIN is handed to one login only and the confirmed PIN follows logins") {
  PinBroker broker(/*keep_confirmed=*/true);
  PinConfig pin;
  pin.sources = {PinSourceKind::typed};
  TpmSection tpm;
  auto shared = std::shared_ptr<PinBroker>(&broker, [](PinBroker*) {});
  auto source = make_pin_source(pin, tpm, shared);

  auto none = source();
  REQUIRE_FALSE(none);
  CHECK(none.error().message == "no HSM PIN available (typed: no PIN typed (rootseal unseal))");

  broker.put_typed(kms::SecureBytes::copy_of(std::string_view("1234")));
  auto first = source();
  REQUIRE(first);
  CHECK(text(*first) == "1234");
  CHECK_FALSE(source());  // used once, never handed out again
  CHECK(broker.finish_typed());
  CHECK_FALSE(broker.confirmed());  // the last attempt (none) proves nothing

  broker.put_typed(kms::SecureBytes::copy_of(std::string_view("5678")));
  REQUIRE(source());
  broker.confirm();  // that login worked
  auto confirmed = broker.confirmed();
  REQUIRE(confirmed);
  CHECK(text(*confirmed) == "5678");
  broker.forget();  // sealed
  CHECK_FALSE(broker.confirmed());

  broker.put_typed(kms::SecureBytes::copy_of(std::string_view("unused")));
  CHECK_FALSE(broker.finish_typed());  // wiped without a login taking it
  CHECK_FALSE(source());

  PinBroker no_keep(false);
  no_keep.handed_out(kms::SecureBytes::copy_of(std::string_view("9999")));
  no_keep.confirm();
  CHECK_FALSE(no_keep.confirmed());
}

TEST_CASE("the admin section of the config") {
  auto defaults = parse_config("");
  REQUIRE(defaults);
  CHECK(defaults->admin.enabled);
  CHECK(defaults->admin.socket == "/run/rootseal/admin.sock");
  CHECK(defaults->admin.mode == 0600);
  CHECK(defaults->admin.unseal_delay == std::chrono::seconds(1));

  auto cfg = parse_config(
      "admin:\n  socket: /run/x/admin.sock\n  mode: \"0660\"\n  timeout: 5s\n  unseal_delay: 2s\n"
      "  max_unseal_delay: 10m\npin:\n  sources: [typed, file]\n");
  REQUIRE(cfg);
  CHECK(cfg->admin.socket == "/run/x/admin.sock");
  CHECK(cfg->admin.mode == 0660);
  CHECK(cfg->admin.timeout == std::chrono::seconds(5));
  CHECK(cfg->admin.max_unseal_delay == std::chrono::minutes(10));
  CHECK(cfg->pin.sources == std::vector{PinSourceKind::typed, PinSourceKind::file});

  struct Case {
    const char* yaml;
    const char* message;
  };
  const Case cases[] = {
      {"admin:\n  socket: admin.sock\n", "admin.socket: an absolute path"},
      {"admin:\n  mode: \"0666\"\n", "admin.mode"},
      {"admin:\n  unseal_delay: 0s\n", "admin.unseal_delay: at least 100ms"},
      {"admin:\n  unseal_delay: 10s\n  max_unseal_delay: 5s\n", "admin.max_unseal_delay"},
      {"admin:\n  sockett: /x\n", "admin: unknown option 'sockett'"},
      {"pin:\n  sources: [typed, typed]\n", "pin.sources: 'typed' is listed twice"},
  };
  for (const auto& c : cases) {
    INFO(c.yaml);
    auto bad = parse_config(c.yaml);
    REQUIRE_FALSE(bad);
    CHECK_THAT(bad.error().message, Catch::Contains(c.message));
  }
}

TEST_CASE("the token table is keyed by a MAC under a per-process key, not by the token's SHA-256") {
  const std::string token = "rs.0123456789abcdef0123456789abcdef0123456789abcdef";
  const TokenKey key = token_table_key(token);
  CHECK(TokenKeyEqual{}(key, token_table_key(token)));
  CHECK(TokenKeyHash{}(key) == TokenKeyHash{}(token_table_key(token)));
  // Not the SHA-256 a client can compute for any guess ...
  CHECK(kms::hex_encode(key.bytes) != token_hash(token));
  // ... but what the stored form (SHA-256 hex, config and TokenDb) maps to.
  CHECK(TokenKeyEqual{}(token_table_key_of_hash(token_hash(token)), key));
  CHECK_FALSE(TokenKeyEqual{}(token_table_key(token.substr(0, token.size() - 1) + "e"), key));
  CHECK_FALSE(TokenKeyEqual{}(token_table_key_of_hash("not-a-sha256"), key));

  // Lookups through the keyed table: created, static (by hash) and unknown tokens.
  TokenStore store;
  TokenInfo info;
  info.policies = {"root"};
  auto created = store.create(info, 100);
  REQUIRE(created);
  CHECK(store.lookup(kms::as_view(created->token), 100) != nullptr);
  TokenInfo stat;
  stat.display_name = "static";
  store.add_hashed(token_hash(token), stat);
  auto found = store.lookup(token, 100);
  REQUIRE(found != nullptr);
  CHECK(found->display_name == "static");
  CHECK(store.lookup(token + "x", 100) == nullptr);
}
