// kms::Keyring over the SQLite store with kms::SoftwareRoot: Transit
// semantics, policy windows, seal/unseal, failure atomicity, concurrency.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "rootseal/kms/ciphertext.hpp"
#include "rootseal/kms/keyring.hpp"
#include "failing_store.hpp"
#include "temp_dir.hpp"

using namespace rootseal;
using kms::Errc;

namespace {

std::span<const std::uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

bool same(const kms::SecureBytes& a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.span().begin(), a.span().end(), bytes(b).begin());
}

std::unique_ptr<kms::SoftwareRoot> new_root() {
  auto root = kms::SoftwareRoot::create(kms::SecureBytes::random(32));
  if (!root) FAIL("SoftwareRoot::create: " << root.error().message);
  return std::move(*root);
}

std::unique_ptr<kms::StateStore> open_store(const std::filesystem::path& path) {
  auto store = kms::open_sqlite_store(path);
  if (!store) FAIL("open_sqlite_store: " << store.error().message);
  return std::move(*store);
}

// A fresh store + software root + unsealed keyring with a settable clock.
struct Fixture {
  test::TempDir dir;
  std::unique_ptr<kms::StateStore> store = open_store(dir / "state.db");
  std::unique_ptr<kms::SoftwareRoot> root = new_root();
  std::atomic<std::int64_t> now{1'700'000'000};
  kms::Keyring ring{*store, *root, [this] { return now.load(); }};

  Fixture() {
    auto u = ring.unseal();
    if (!u) FAIL("unseal: " << u.error().message);
  }

  kms::KeyInfo create(const std::string& name, kms::CreateOptions o = {}) {
    auto c = ring.create(name, o);
    if (!c) FAIL("create: " << c.error().message);
    REQUIRE_FALSE(c->existed);
    return c->info;
  }
  void rotate(const std::string& name, int times = 1) {
    for (int i = 0; i < times; ++i) {
      auto r = ring.rotate(name);
      if (!r) FAIL("rotate: " << r.error().message);
    }
  }
  kms::Encrypted encrypt(const std::string& name, std::string_view plaintext, kms::CryptoOptions o = {}) {
    auto e = ring.encrypt(name, bytes(plaintext), o);
    if (!e) FAIL("encrypt: " << e.error().message);
    return *e;
  }
};

template <class T>
void require_error(const kms::Result<T>& r, Errc code) {
  REQUIRE_FALSE(r.has_value());
  INFO("error: " << kms::to_string(r.error().code) << ": " << r.error().message);
  REQUIRE(r.error().code == code);
}

const kms::KeyType kAllTypes[] = {kms::KeyType::aes128_gcm96, kms::KeyType::aes256_gcm96,
                                  kms::KeyType::chacha20_poly1305};

}  // namespace

TEST_CASE("keyring: key names", "[keyring]") {
  REQUIRE(kms::validate_key_name("a"));
  REQUIRE(kms::validate_key_name("My_key-1.2"));
  REQUIRE(kms::validate_key_name(std::string(128, 'k')));
  for (std::string_view bad : {"", ".hidden", "a/b", "a b", "ключ", "a\nb", "a:b"}) {
    INFO(bad);
    require_error(kms::validate_key_name(bad), Errc::invalid_argument);
  }
  require_error(kms::validate_key_name(std::string(129, 'k')), Errc::invalid_argument);
}

TEST_CASE("keyring: create is an idempotent upsert, read and list", "[keyring]") {
  Fixture f;
  kms::CreateOptions o;
  o.type = kms::KeyType::chacha20_poly1305;
  o.derived = true;
  o.auto_rotate_period_s = 3600;
  const kms::KeyInfo info = f.create("orders", o);
  REQUIRE(info.name == "orders");
  REQUIRE(info.type == kms::KeyType::chacha20_poly1305);
  REQUIRE(info.derived);
  REQUIRE(info.latest_version == 1);
  REQUIRE(info.min_available_version == 0);
  REQUIRE(info.config.min_decryption_version == 1);
  REQUIRE(info.config.min_encryption_version == 0);
  REQUIRE_FALSE(info.config.deletion_allowed);
  REQUIRE(info.config.auto_rotate_period_s == 3600);
  REQUIRE(info.versions == std::map<std::uint32_t, std::int64_t>{{1, 1'700'000'000}});

  // Existing key: returned unchanged, options ignored.
  auto again = f.ring.create("orders", kms::CreateOptions{});
  REQUIRE(again);
  REQUIRE(again->existed);
  REQUIRE(again->info.type == kms::KeyType::chacha20_poly1305);
  REQUIRE(again->info.derived);
  REQUIRE(f.ring.version_count() == 1);

  f.create("alpha");
  auto list = f.ring.list();
  REQUIRE(list);
  REQUIRE(*list == std::vector<std::string>{"alpha", "orders"});
  REQUIRE(f.ring.key_count() == 2);

  auto read = f.ring.read("orders");
  REQUIRE(read);
  REQUIRE(read->versions == info.versions);

  // Durable: the store has it with a wrapped version tagged with the keyring
  // key, itself wrapped by the root.
  auto stored = f.store->find("orders");
  REQUIRE(stored);
  REQUIRE(stored->has_value());
  REQUIRE((*stored)->versions.size() == 1);
  auto kks = f.store->keyring_keys();
  REQUIRE(kks);
  REQUIRE(kks->size() == 1);
  REQUIRE(kks->front().root_kcv == *f.root->key_check_value());
  REQUIRE((*stored)->versions[0].root_kcv == kms::keyring_key_tag(1, kks->front().kcv));
  REQUIRE((*stored)->versions[0].wrapped_key.size() >= 40);  // KWP of 32 bytes

  require_error(f.ring.read("missing"), Errc::not_found);
  require_error(f.ring.read("bad name"), Errc::invalid_argument);

  // contains: existence without a copy of the versions; sealed is an error, not "no".
  auto has = f.ring.contains("orders");
  REQUIRE(has);
  REQUIRE(*has);
  auto hasnt = f.ring.contains("missing");
  REQUIRE(hasnt);
  REQUIRE_FALSE(*hasnt);
  f.ring.seal();
  require_error(f.ring.contains("orders"), Errc::sealed);
}

TEST_CASE("keyring: create validation", "[keyring]") {
  Fixture f;
  kms::CreateOptions exportable;
  exportable.exportable = true;
  auto e = f.ring.create("k", exportable);
  require_error(e, Errc::invalid_argument);
  REQUIRE(e.error().message.find("never exports") != std::string::npos);

  kms::CreateOptions short_period;
  short_period.auto_rotate_period_s = 3599;
  require_error(f.ring.create("k", short_period), Errc::invalid_argument);
  short_period.auto_rotate_period_s = -1;
  require_error(f.ring.create("k", short_period), Errc::invalid_argument);
  require_error(f.ring.create(".k", {}), Errc::invalid_argument);
  REQUIRE(f.ring.key_count() == 0);
  auto names = f.store->list_names();
  REQUIRE(names);
  REQUIRE(names->empty());
}

TEST_CASE("keyring: rotate adds latest + 1, durably", "[keyring]") {
  Fixture f;
  f.create("k");
  f.now = 1'700'000'100;
  auto r2 = f.ring.rotate("k");
  REQUIRE(r2);
  REQUIRE(r2->latest_version == 2);
  f.now = 1'700'000'200;
  auto r3 = f.ring.rotate("k");
  REQUIRE(r3);
  REQUIRE(r3->latest_version == 3);
  REQUIRE(r3->versions ==
          std::map<std::uint32_t, std::int64_t>{{1, 1'700'000'000}, {2, 1'700'000'100}, {3, 1'700'000'200}});
  auto stored = f.store->find("k");
  REQUIRE(stored);
  REQUIRE((*stored)->versions.size() == 3);
  REQUIRE(f.ring.version_count() == 3);
  require_error(f.ring.rotate("missing"), Errc::not_found);
}

TEST_CASE("keyring: automatic rotation as Vault's rotateIfRequired", "[keyring]") {
  Fixture f;
  kms::CreateOptions o;
  o.auto_rotate_period_s = 3600;
  f.create("auto", o);
  f.create("manual");  // no period: never due
  CHECK(f.ring.due_for_rotation()->empty());
  f.now += 3600;  // Vault rotates once now is *after* creation + period
  CHECK(f.ring.due_for_rotation()->empty());
  auto not_yet = f.ring.rotate_if_due("auto");
  REQUIRE(not_yet);
  CHECK_FALSE(not_yet->has_value());
  CHECK(f.ring.read("auto")->latest_version == 1);

  f.now += 1;
  CHECK(*f.ring.due_for_rotation() == std::vector<std::string>{"auto"});
  auto rotated = f.ring.rotate_if_due("auto");
  REQUIRE(rotated);
  REQUIRE(rotated->has_value());
  CHECK((*rotated)->latest_version == 2);
  CHECK((*rotated)->versions.at(2) == f.now.load());
  // Current again: a second attempt at the same time does nothing.
  CHECK(f.ring.due_for_rotation()->empty());
  CHECK_FALSE(f.ring.rotate_if_due("auto")->has_value());
  // The period counts from the latest version, whoever made it.
  f.now += 3000;
  f.rotate("auto");
  f.now += 3000;
  CHECK(f.ring.due_for_rotation()->empty());
  f.now += 601;
  CHECK(*f.ring.due_for_rotation() == std::vector<std::string>{"auto"});
  // A period set to 0 stops it; a manual key is never rotated automatically.
  kms::ConfigUpdate off;
  off.auto_rotate_period_s = 0;
  REQUIRE(f.ring.configure("auto", off));
  CHECK(f.ring.due_for_rotation()->empty());
  CHECK_FALSE(f.ring.rotate_if_due("auto")->has_value());
  f.now += 10 * 365 * 86400;
  CHECK_FALSE(f.ring.rotate_if_due("manual")->has_value());
  CHECK(f.ring.read("manual")->latest_version == 1);
  require_error(f.ring.rotate_if_due("missing"), Errc::not_found);
  f.ring.seal();
  require_error(f.ring.due_for_rotation(), Errc::sealed);
}

TEST_CASE("keyring: configure follows Vault's rules", "[keyring]") {
  Fixture f;
  f.create("k");
  f.rotate("k", 3);  // latest 4

  kms::ConfigUpdate too_high_dec;
  too_high_dec.min_decryption_version = 5;
  auto r1 = f.ring.configure("k", too_high_dec);
  require_error(r1, Errc::invalid_argument);
  REQUIRE(r1.error().message == "cannot set min decryption version of 5, latest key version is 4");

  kms::ConfigUpdate too_high_enc;
  too_high_enc.min_encryption_version = 5;
  require_error(f.ring.configure("k", too_high_enc), Errc::invalid_argument);

  kms::ConfigUpdate crossed;
  crossed.min_decryption_version = 3;
  crossed.min_encryption_version = 2;
  auto r3 = f.ring.configure("k", crossed);
  require_error(r3, Errc::invalid_argument);
  REQUIRE(r3.error().message.find("must be greater than or equal to min decryption version of 3") != std::string::npos);

  kms::ConfigUpdate short_period;
  short_period.auto_rotate_period_s = 60;
  require_error(f.ring.configure("k", short_period), Errc::invalid_argument);

  // Nothing above changed anything.
  auto unchanged = f.ring.read("k");
  REQUIRE(unchanged);
  REQUIRE(unchanged->config == kms::KeyConfig{});

  kms::ConfigUpdate ok;
  ok.min_decryption_version = 2;
  ok.min_encryption_version = 3;
  ok.deletion_allowed = true;
  ok.auto_rotate_period_s = 86400;
  auto r = f.ring.configure("k", ok);
  REQUIRE(r);
  const kms::KeyConfig expected{2, 3, true, 86400};
  REQUIRE(r->config == expected);
  auto stored = f.store->find("k");
  REQUIRE(stored);
  REQUIRE((*stored)->config == expected);

  // min_encryption_version 0 = "latest" is always allowed; min_decryption 0 reads as 1.
  kms::ConfigUpdate reset;
  reset.min_encryption_version = 0;
  reset.min_decryption_version = 0;
  reset.auto_rotate_period_s = 0;
  auto back = f.ring.configure("k", reset);
  REQUIRE(back);
  REQUIRE(back->config == kms::KeyConfig{1, 0, true, 0});

  require_error(f.ring.configure("missing", ok), Errc::not_found);
}

TEST_CASE("keyring: remove needs deletion_allowed", "[keyring]") {
  Fixture f;
  f.create("k");
  auto denied = f.ring.remove("k");
  require_error(denied, Errc::deletion_not_allowed);
  REQUIRE(f.ring.read("k"));

  kms::ConfigUpdate allow;
  allow.deletion_allowed = true;
  REQUIRE(f.ring.configure("k", allow));
  REQUIRE(f.ring.remove("k"));
  require_error(f.ring.read("k"), Errc::not_found);
  require_error(f.ring.encrypt("k", bytes("x"), {}), Errc::not_found);
  auto stored = f.store->find("k");
  REQUIRE(stored);
  REQUIRE_FALSE(stored->has_value());
  require_error(f.ring.remove("k"), Errc::not_found);

  // The name can be reused: a new key, starting again at version 1.
  REQUIRE(f.create("k").latest_version == 1);
}

TEST_CASE("keyring: encrypt/decrypt round trip for every key type with AAD", "[keyring]") {
  Fixture f;
  for (kms::KeyType type : kAllTypes) {
    const std::string name(kms::to_string(type));
    INFO(name);
    kms::CreateOptions o;
    o.type = type;
    f.create(name, o);
    kms::CryptoOptions with_aad;
    with_aad.aad = bytes("tenant=42");

    for (std::string_view plaintext : {std::string_view("the quick brown fox"), std::string_view("")}) {
      auto ct = f.encrypt(name, plaintext, with_aad);
      REQUIRE(ct.key_version == 1);
      REQUIRE(ct.ciphertext.rfind("vault:v1:", 0) == 0);
      auto parsed = kms::parse_ciphertext(ct.ciphertext);
      REQUIRE(parsed);
      REQUIRE(parsed->body.size() == plaintext.size() + kms::Aead::kOverhead);

      auto pt = f.ring.decrypt(name, ct.ciphertext, with_aad);
      REQUIRE(pt);
      REQUIRE(same(*pt, plaintext));

      kms::CryptoOptions wrong_aad;
      wrong_aad.aad = bytes("tenant=43");
      auto bad = f.ring.decrypt(name, ct.ciphertext, wrong_aad);
      require_error(bad, Errc::decryption_failed);
      REQUIRE(bad.error().message == "cipher: message authentication failed");
      require_error(f.ring.decrypt(name, ct.ciphertext, {}), Errc::decryption_failed);
    }

    // Two encryptions of one plaintext differ (random nonces).
    REQUIRE(f.encrypt(name, "same").ciphertext != f.encrypt(name, "same").ciphertext);

    // Tampering with the body fails authentication.
    auto ct = f.encrypt(name, "payload");
    auto parsed = kms::parse_ciphertext(ct.ciphertext);
    REQUIRE(parsed);
    parsed->body[kms::Aead::kNonceSize] ^= 0x01;
    require_error(f.ring.decrypt(name, kms::format_ciphertext(1, parsed->body), {}), Errc::decryption_failed);
  }
  // A ciphertext of one key does not open under another.
  auto ct = f.encrypt("aes256-gcm96", "cross");
  require_error(f.ring.decrypt("chacha20-poly1305", ct.ciphertext, {}), Errc::decryption_failed);

  require_error(f.ring.decrypt("aes256-gcm96", "not a ciphertext", {}), Errc::malformed_ciphertext);
  require_error(f.ring.decrypt("aes256-gcm96", "vault:v1:!!!!", {}), Errc::bad_base64);
  auto unknown = f.ring.decrypt("nope", ct.ciphertext, {});
  require_error(unknown, Errc::not_found);
  REQUIRE(unknown.error().message == "encryption key not found");
}

TEST_CASE("keyring: derived keys need the right context", "[keyring]") {
  Fixture f;
  for (kms::KeyType type : kAllTypes) {
    const std::string name = std::string("derived-") + std::string(kms::to_string(type));
    INFO(name);
    kms::CreateOptions o;
    o.type = type;
    o.derived = true;
    f.create(name, o);

    auto missing = f.ring.encrypt(name, bytes("x"), {});
    require_error(missing, Errc::invalid_argument);
    REQUIRE(missing.error().message.rfind(
                "missing 'context' for key derivation; the key was created using a derived key", 0) == 0);

    kms::CryptoOptions alice;
    alice.context = bytes("user:alice");
    kms::CryptoOptions bob;
    bob.context = bytes("user:bob");
    auto ct = f.encrypt(name, "alice's secret", alice);
    auto pt = f.ring.decrypt(name, ct.ciphertext, alice);
    REQUIRE(pt);
    REQUIRE(same(*pt, "alice's secret"));
    require_error(f.ring.decrypt(name, ct.ciphertext, bob), Errc::decryption_failed);
    require_error(f.ring.decrypt(name, ct.ciphertext, {}), Errc::invalid_argument);

    // Context and AAD are independent inputs.
    kms::CryptoOptions alice_aad = alice;
    alice_aad.aad = bytes("aad");
    auto ct2 = f.encrypt(name, "both", alice_aad);
    require_error(f.ring.decrypt(name, ct2.ciphertext, alice), Errc::decryption_failed);
    REQUIRE(f.ring.decrypt(name, ct2.ciphertext, alice_aad));
  }

  // Vault ignores a context sent for a non-derived key.
  f.create("plain");
  kms::CryptoOptions ctx;
  ctx.context = bytes("ignored");
  auto ct = f.encrypt("plain", "hello", ctx);
  auto pt = f.ring.decrypt("plain", ct.ciphertext, {});
  REQUIRE(pt);
  REQUIRE(same(*pt, "hello"));
}

TEST_CASE("keyring: key_version selection and the policy window", "[keyring]") {
  Fixture f;
  f.create("k");
  f.rotate("k", 2);  // latest 3

  kms::CryptoOptions v2;
  v2.key_version = 2;
  auto ct2 = f.encrypt("k", "two", v2);
  REQUIRE(ct2.key_version == 2);
  REQUIRE(ct2.ciphertext.rfind("vault:v2:", 0) == 0);
  REQUIRE(f.encrypt("k", "latest").key_version == 3);

  kms::CryptoOptions v4;
  v4.key_version = 4;
  auto too_new = f.ring.encrypt("k", bytes("x"), v4);
  require_error(too_new, Errc::version_disallowed);
  REQUIRE(too_new.error().message == "requested version for encryption is higher than the latest key version");

  kms::CryptoOptions v1;
  v1.key_version = 1;
  auto ct1 = f.encrypt("k", "one", v1);
  auto ct3 = f.encrypt("k", "three");

  // A ciphertext claiming a version the key does not have yet.
  auto parsed = kms::parse_ciphertext(ct3.ciphertext);
  REQUIRE(parsed);
  auto future = f.ring.decrypt("k", kms::format_ciphertext(9, parsed->body), {});
  require_error(future, Errc::invalid_argument);
  REQUIRE(future.error().message == "invalid ciphertext: version is too new");
  // "v0" reads as version 1 (Vault).
  auto parsed1 = kms::parse_ciphertext(ct1.ciphertext);
  REQUIRE(parsed1);
  auto v0 = f.ring.decrypt("k", "vault:v0:" + ct1.ciphertext.substr(std::string_view("vault:v1:").size()), {});
  REQUIRE(v0);
  REQUIRE(same(*v0, "one"));

  SECTION("min_decryption_version blocks older ciphertexts and encryption under them") {
    kms::ConfigUpdate u;
    u.min_decryption_version = 2;
    REQUIRE(f.ring.configure("k", u));
    auto old = f.ring.decrypt("k", ct1.ciphertext, {});
    require_error(old, Errc::version_disallowed);
    REQUIRE(old.error().message == "ciphertext or signature version is disallowed by policy (too old)");
    REQUIRE(f.ring.decrypt("k", ct2.ciphertext, {}));
    require_error(f.ring.encrypt("k", bytes("x"), v1), Errc::version_disallowed);
    REQUIRE(f.encrypt("k", "x", v2).key_version == 2);

    // Lowering it again makes version 1 usable again (versions are never trimmed).
    u.min_decryption_version = 1;
    REQUIRE(f.ring.configure("k", u));
    auto back = f.ring.decrypt("k", ct1.ciphertext, {});
    REQUIRE(back);
    REQUIRE(same(*back, "one"));
  }

  SECTION("min_encryption_version limits key_version but not decryption") {
    kms::ConfigUpdate u;
    u.min_encryption_version = 3;
    REQUIRE(f.ring.configure("k", u));
    auto below = f.ring.encrypt("k", bytes("x"), v2);
    require_error(below, Errc::version_disallowed);
    REQUIRE(below.error().message ==
            "requested version for encryption is less than the minimum encryption key version");
    kms::CryptoOptions v3;
    v3.key_version = 3;
    REQUIRE(f.encrypt("k", "x", v3).key_version == 3);
    REQUIRE(f.encrypt("k", "x").key_version == 3);
    REQUIRE(f.ring.decrypt("k", ct1.ciphertext, {}));  // old ciphertexts still decrypt
  }
}

TEST_CASE("keyring: rewrap moves a ciphertext to the latest version", "[keyring]") {
  Fixture f;
  kms::CreateOptions o;
  o.derived = true;
  f.create("k", o);
  kms::CryptoOptions ctx;
  ctx.context = bytes("ctx");
  ctx.aad = bytes("aad");
  auto ct1 = f.encrypt("k", "rewrap me", ctx);
  REQUIRE(ct1.key_version == 1);
  f.rotate("k", 2);

  auto latest = f.ring.rewrap("k", ct1.ciphertext, ctx);
  REQUIRE(latest);
  REQUIRE(latest->key_version == 3);
  REQUIRE(latest->ciphertext.rfind("vault:v3:", 0) == 0);
  auto pt = f.ring.decrypt("k", latest->ciphertext, ctx);
  REQUIRE(pt);
  REQUIRE(same(*pt, "rewrap me"));

  kms::CryptoOptions to_v2 = ctx;
  to_v2.key_version = 2;
  auto middle = f.ring.rewrap("k", ct1.ciphertext, to_v2);
  REQUIRE(middle);
  REQUIRE(middle->key_version == 2);
  auto pt2 = f.ring.decrypt("k", middle->ciphertext, ctx);
  REQUIRE(pt2);
  REQUIRE(same(*pt2, "rewrap me"));

  kms::CryptoOptions wrong = ctx;
  wrong.context = bytes("other");
  require_error(f.ring.rewrap("k", ct1.ciphertext, wrong), Errc::decryption_failed);
}

TEST_CASE("keyring: data keys", "[keyring]") {
  Fixture f;
  f.create("k");
  for (unsigned bits : {128U, 256U, 512U}) {
    INFO(bits);
    auto dk = f.ring.generate_data_key("k", bits, {});
    REQUIRE(dk);
    REQUIRE(dk->plaintext.size() == bits / 8);
    REQUIRE(dk->key_version == 1);
    auto pt = f.ring.decrypt("k", dk->ciphertext, {});
    REQUIRE(pt);
    REQUIRE(*pt == dk->plaintext);
  }
  auto a = f.ring.generate_data_key("k", 256, {});
  auto b = f.ring.generate_data_key("k", 256, {});
  REQUIRE(a);
  REQUIRE(b);
  REQUIRE_FALSE(a->plaintext == b->plaintext);
  for (unsigned bits : {0U, 64U, 192U, 1024U}) {
    INFO(bits);
    auto bad = f.ring.generate_data_key("k", bits, {});
    require_error(bad, Errc::invalid_argument);
    REQUIRE(bad.error().message == "invalid bit length");
  }
  require_error(f.ring.generate_data_key("nope", 256, {}), Errc::not_found);
}

TEST_CASE("keyring: a new keyring over the same store unseals and decrypts old ciphertexts", "[keyring]") {
  test::TempDir dir;
  auto root = new_root();
  struct Sample {
    std::string key;
    std::string plaintext;
    std::string ciphertext;
    bool derived;
  };
  std::vector<Sample> samples;
  {
    auto store = open_store(dir / "state.db");
    kms::Keyring ring(*store, *root);
    REQUIRE(ring.unseal());
    for (kms::KeyType type : kAllTypes) {
      for (bool derived : {false, true}) {
        const std::string name = std::string(kms::to_string(type)) + (derived ? "-d" : "");
        kms::CreateOptions o;
        o.type = type;
        o.derived = derived;
        REQUIRE(ring.create(name, o));
        kms::CryptoOptions ctx;
        if (derived) ctx.context = bytes("ctx");
        for (int v = 1; v <= 3; ++v) {
          const std::string plaintext = name + " under v" + std::to_string(v);
          auto ct = ring.encrypt(name, bytes(plaintext), ctx);
          REQUIRE(ct);
          samples.push_back({name, plaintext, ct->ciphertext, derived});
          if (v < 3) REQUIRE(ring.rotate(name));
        }
      }
    }
    REQUIRE(ring.version_count() == 18);
  }
  auto store = open_store(dir / "state.db");
  kms::Keyring ring(*store, *root);
  REQUIRE(ring.is_sealed());
  require_error(ring.encrypt("aes256-gcm96", bytes("x"), {}), Errc::sealed);
  REQUIRE(ring.unseal());
  REQUIRE_FALSE(ring.is_sealed());
  REQUIRE(ring.key_count() == 6);
  REQUIRE(ring.version_count() == 18);
  for (const auto& s : samples) {
    INFO(s.key << " " << s.ciphertext);
    kms::CryptoOptions ctx;
    if (s.derived) ctx.context = bytes("ctx");
    auto pt = ring.decrypt(s.key, s.ciphertext, ctx);
    REQUIRE(pt);
    REQUIRE(same(*pt, s.plaintext));
  }
  REQUIRE(ring.unseal());  // already unsealed: a no-op
  REQUIRE(ring.version_count() == 18);
}

TEST_CASE("keyring: unseal with the wrong root fails and stays sealed", "[keyring]") {
  test::TempDir dir;
  auto store = open_store(dir / "state.db");
  auto root = new_root();
  {
    kms::Keyring ring(*store, *root);
    REQUIRE(ring.unseal());
    REQUIRE(ring.create("k", {}));
    REQUIRE(ring.rotate("k"));
  }
  auto other = new_root();
  kms::Keyring ring(*store, *other);
  auto u = ring.unseal();
  require_error(u, Errc::sealed);
  REQUIRE(u.error().message.find("keyring key 1 was wrapped by another root key") != std::string::npos);
  REQUIRE(ring.is_sealed());
  REQUIRE(ring.key_count() == 0);
  require_error(ring.encrypt("k", bytes("x"), {}), Errc::sealed);
  require_error(ring.read("k"), Errc::sealed);
  require_error(ring.list(), Errc::sealed);
}

TEST_CASE("keyring: a damaged wrapped key fails unseal naming key and version", "[keyring]") {
  test::TempDir dir;
  auto store = open_store(dir / "state.db");
  auto root = new_root();
  {
    kms::Keyring ring(*store, *root);
    REQUIRE(ring.unseal());
    REQUIRE(ring.create("a", {}));
    REQUIRE(ring.create("b", {}));
    REQUIRE(ring.rotate("b"));
    REQUIRE(ring.rotate("b"));
  }
  auto rec = store->find("b");
  REQUIRE(rec);
  std::vector<std::uint8_t> damaged = (*rec)->versions[1].wrapped_key;
  damaged[5] ^= 0x40;
  REQUIRE(store->replace_wrapped({{"b", 2, damaged, (*rec)->versions[1].root_kcv}}, {}));

  kms::Keyring ring(*store, *root);
  auto u = ring.unseal();
  require_error(u, Errc::decryption_failed);
  REQUIRE(u.error().message.rfind("unseal: key 'b' version 2: ", 0) == 0);
  REQUIRE(ring.is_sealed());
  REQUIRE(ring.key_count() == 0);
  REQUIRE(ring.version_count() == 0);
}

TEST_CASE("keyring: seal wipes everything, unseal restores", "[keyring]") {
  Fixture f;
  f.create("k");
  auto ct = f.encrypt("k", "before seal");
  f.ring.seal();
  REQUIRE(f.ring.is_sealed());
  REQUIRE(f.ring.key_count() == 0);
  REQUIRE(f.ring.version_count() == 0);
  require_error(f.ring.encrypt("k", bytes("x"), {}), Errc::sealed);
  require_error(f.ring.decrypt("k", ct.ciphertext, {}), Errc::sealed);
  require_error(f.ring.rewrap("k", ct.ciphertext, {}), Errc::sealed);
  require_error(f.ring.generate_data_key("k", 256, {}), Errc::sealed);
  require_error(f.ring.read("k"), Errc::sealed);
  require_error(f.ring.list(), Errc::sealed);
  require_error(f.ring.create("k2", {}), Errc::sealed);
  require_error(f.ring.rotate("k"), Errc::sealed);
  require_error(f.ring.configure("k", {}), Errc::sealed);
  require_error(f.ring.remove("k"), Errc::sealed);
  f.ring.seal();  // twice is fine

  REQUIRE(f.ring.unseal());
  auto pt = f.ring.decrypt("k", ct.ciphertext, {});
  REQUIRE(pt);
  REQUIRE(same(*pt, "before seal"));
}

TEST_CASE("keyring: a store failure leaves memory unchanged", "[keyring]") {
  test::TempDir dir;
  auto real = open_store(dir / "state.db");
  test::FailingStore store(*real);
  auto root = new_root();
  kms::Keyring ring(store, *root);
  REQUIRE(ring.unseal());
  REQUIRE(ring.create("k", {}));

  store.fail_writes = true;
  auto r = ring.rotate("k");
  require_error(r, Errc::storage_failure);
  auto info = ring.read("k");
  REQUIRE(info);
  REQUIRE(info->latest_version == 1);
  REQUIRE(ring.version_count() == 1);
  auto ct = ring.encrypt("k", bytes("x"), {});
  REQUIRE(ct);
  REQUIRE(ct->key_version == 1);

  kms::ConfigUpdate allow;
  allow.deletion_allowed = true;
  require_error(ring.configure("k", allow), Errc::storage_failure);
  REQUIRE_FALSE(ring.read("k")->config.deletion_allowed);

  require_error(ring.create("new", {}), Errc::storage_failure);
  require_error(ring.read("new"), Errc::not_found);

  store.fail_writes = false;
  REQUIRE(ring.configure("k", allow));
  store.fail_writes = true;
  require_error(ring.remove("k"), Errc::storage_failure);
  REQUIRE(ring.read("k"));

  // Once the store works again the next rotation is version 2: no gap.
  store.fail_writes = false;
  auto r2 = ring.rotate("k");
  REQUIRE(r2);
  REQUIRE(r2->latest_version == 2);
  auto stored = real->find("k");
  REQUIRE(stored);
  REQUIRE((*stored)->versions.size() == 2);
}

TEST_CASE("keyring: rotate refused by the store (conflict) leaves memory unchanged", "[keyring]") {
  test::TempDir dir;
  auto root = new_root();
  auto store = open_store(dir / "state.db");
  kms::Keyring ring(*store, *root);
  REQUIRE(ring.unseal());
  REQUIRE(ring.create("k", {}));
  // Another writer appended version 2 behind the keyring's back: the store's
  // latest + 1 check (inside its transaction) refuses the keyring's version 2.
  kms::KeyVersionRecord sneaky{2, 1, {1, 2, 3}, "000000"};
  REQUIRE(store->add_version("k", sneaky));
  auto r = ring.rotate("k");
  require_error(r, Errc::conflict);
  REQUIRE(ring.read("k")->latest_version == 1);
  REQUIRE(ring.encrypt("k", bytes("x"), {})->key_version == 1);
}

TEST_CASE("keyring: concurrent rotations never reuse a version", "[keyring][concurrency]") {
  Fixture f;
  f.create("k");
  constexpr int kPerThread = 15;
  std::atomic<int> failures{0};
  auto rotator = [&] {
    for (int i = 0; i < kPerThread; ++i) {
      if (!f.ring.rotate("k")) ++failures;
    }
  };
  std::thread a(rotator);
  std::thread b(rotator);
  a.join();
  b.join();
  REQUIRE(failures == 0);
  auto info = f.ring.read("k");
  REQUIRE(info);
  REQUIRE(info->latest_version == 2 * kPerThread + 1);
  auto stored = f.store->find("k");
  REQUIRE(stored);
  REQUIRE((*stored)->versions.size() == 2 * kPerThread + 1);
}

TEST_CASE("keyring: encrypt from 4 threads while rotating", "[keyring][concurrency]") {
  Fixture f;
  f.create("k");
  constexpr int kRotations = 40;
  constexpr int kMinOpsPerThread = 200;
  std::atomic<bool> rotations_done{false};
  std::atomic<int> errors{0};
  std::atomic<int> regressions{0};
  std::atomic<long> ops{0};

  auto worker = [&](int id) {
    std::uint32_t last_version = 0;
    const std::string plaintext = "thread " + std::to_string(id);
    for (int i = 0; i < kMinOpsPerThread || !rotations_done.load(); ++i) {
      auto ct = f.ring.encrypt("k", bytes(plaintext), {});
      if (!ct) {
        ++errors;
        return;
      }
      if (ct->key_version < last_version) ++regressions;  // versions only move forward
      last_version = ct->key_version;
      auto pt = f.ring.decrypt("k", ct->ciphertext, {});
      if (!pt || !same(*pt, plaintext)) ++errors;
      ++ops;
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back(worker, t);
  int rotate_failures = 0;
  for (int i = 0; i < kRotations; ++i) {
    if (!f.ring.rotate("k")) ++rotate_failures;
  }
  rotations_done = true;
  for (auto& t : threads) t.join();

  REQUIRE(rotate_failures == 0);
  REQUIRE(errors == 0);
  REQUIRE(regressions == 0);
  REQUIRE(ops >= 4 * kMinOpsPerThread);
  REQUIRE(f.ring.read("k")->latest_version == kRotations + 1);
  REQUIRE(f.encrypt("k", "after").key_version == kRotations + 1);
}

TEST_CASE("keyring: unseal of 10000 key versions (timing)", "[keyring][scale]") {
  test::TempDir dir;
  auto root = new_root();
  const std::string kcv = *root->key_check_value();
  constexpr std::uint32_t kKeys = 100;
  constexpr std::uint32_t kVersions = 100;
  {
    // Populated directly (one transaction per key) rather than by 10,000
    // fsync'ed rotations; the wrapped keys are real, made by the same root.
    auto store = open_store(dir / "state.db");
    for (std::uint32_t k = 0; k < kKeys; ++k) {
      kms::KeyRecord rec;
      rec.name = "key-" + std::to_string(k);
      rec.type = k % 3 == 0 ? kms::KeyType::chacha20_poly1305 : kms::KeyType::aes256_gcm96;
      rec.derived = k % 10 == 0;
      rec.created_unix = 1;
      for (std::uint32_t v = 1; v <= kVersions; ++v) {
        auto wrapped = root->wrap(kms::SecureBytes::random(32));
        REQUIRE(wrapped);
        rec.versions.push_back({v, v, std::move(*wrapped), kcv});
      }
      REQUIRE(store->create_key(rec));
    }
  }
  auto store = open_store(dir / "state.db");
  const auto t0 = std::chrono::steady_clock::now();
  auto loaded = store->load_all();
  const auto t1 = std::chrono::steady_clock::now();
  REQUIRE(loaded);
  kms::Keyring ring(*store, *root);
  const auto t2 = std::chrono::steady_clock::now();
  auto u = ring.unseal();
  const auto t3 = std::chrono::steady_clock::now();
  if (!u) FAIL("unseal: " << u.error().message);
  REQUIRE(ring.key_count() == kKeys);
  REQUIRE(ring.version_count() == std::size_t{kKeys} * kVersions);

  kms::CryptoOptions v50;
  v50.key_version = 50;
  auto ct = ring.encrypt("key-1", bytes("hello"), v50);
  REQUIRE(ct);
  REQUIRE(ct->key_version == 50);
  auto pt = ring.decrypt("key-1", ct->ciphertext, {});
  REQUIRE(pt);
  REQUIRE(same(*pt, "hello"));

  using ms = std::chrono::duration<double, std::milli>;
  WARN("10000 versions: load_all " << ms(t1 - t0).count() << " ms; keyring unseal (load_all + unwrap + cipher setup, "
                                   << std::max(1U, std::thread::hardware_concurrency()) << " hw threads) "
                                   << ms(t3 - t2).count() << " ms");
}
