// kmsplugin::Handler over a real keyring (SQLite store, SoftwareRoot): the
// self-test gate on Status, key_id derivation and stability, Encrypt/Decrypt
// and every refusal with its gRPC code.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <string>

#include "rootseal/kms/ciphertext.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/kmsplugin/handler.hpp"
#include "temp_dir.hpp"

using namespace rootseal;
using kmsplugin::Code;

namespace {

constexpr std::string_view kCluster = "3f1c6a52-1111-4a2b-9c3d-0123456789ab";

// A root that forwards to a SoftwareRoot and fails on demand (a token gone).
class SwitchableRoot final : public kms::RootOfTrust {
 public:
  explicit SwitchableRoot(std::unique_ptr<kms::SoftwareRoot> inner) : inner_(std::move(inner)) {}
  std::atomic<bool> broken{false};
  std::atomic<int> calls{0};
  std::string_view kind() const noexcept override { return "software"; }
  kms::Result<void> probe() override {
    ROOTSEAL_TRY(gate());
    return inner_->probe();
  }
  kms::Result<std::string> key_check_value() override { return inner_->key_check_value(); }
  kms::Result<std::vector<std::uint8_t>> wrap(const kms::SecureBytes& key) override {
    ROOTSEAL_TRY(gate());
    return inner_->wrap(key);
  }
  kms::Result<kms::SecureBytes> unwrap(std::span<const std::uint8_t> wrapped) override {
    ROOTSEAL_TRY(gate());
    return inner_->unwrap(wrapped);
  }

 private:
  kms::Result<void> gate() {
    ++calls;
    if (broken) return kms::fail(kms::Errc::unavailable, "device removed");
    return {};
  }
  std::unique_ptr<kms::SoftwareRoot> inner_;
};

struct Rig {
  test::TempDir dir{"rootseal-kmsplugin"};
  std::unique_ptr<kms::StateStore> store;
  SwitchableRoot root;
  std::unique_ptr<kms::Keyring> keyring;
  std::unique_ptr<kmsplugin::Handler> handler;

  explicit Rig(std::string_view cluster = kCluster, std::string key = "kubernetes")
      : store(std::move(*kms::open_sqlite_store(dir / "state.db"))),
        root(std::move(*kms::SoftwareRoot::create(kms::SecureBytes::random(32)))) {
    keyring = std::make_unique<kms::Keyring>(*store, root);
    REQUIRE(keyring->unseal());
    handler = std::make_unique<kmsplugin::Handler>(*keyring, std::string(cluster), std::move(key));
  }
};

std::vector<std::uint8_t> seed() {
  auto s = kms::SecureBytes::random(32);
  return {s.span().begin(), s.span().end()};
}

std::span<const std::uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::vector<kmsplugin::Annotation> annotations_of(const kmsplugin::EncryptAnswer& e) { return e.annotations; }

}  // namespace

TEST_CASE("Status is UNAVAILABLE until the self-test passed, then v2/ok with the key created") {
  Rig rig;
  auto before = rig.handler->status();
  REQUIRE_FALSE(before);
  CHECK(before.error().code == Code::unavailable);
  CHECK_FALSE(rig.keyring->contains("kubernetes").value());
  rig.handler->self_test(rig.root);
  CHECK(rig.keyring->contains("kubernetes").value());
  auto status = rig.handler->status();
  REQUIRE(status);
  CHECK(status->version == "v2");
  CHECK(status->healthz == "ok");
  CHECK(status->key_id.starts_with("rs1-"));
  CHECK(status->key_id.size() == 4 + 64);
}

TEST_CASE("Status never calls the root of trust, and a failed self-test or a sealed keyring is UNAVAILABLE") {
  Rig rig;
  rig.handler->self_test(rig.root);
  const int calls = rig.root.calls;
  for (int i = 0; i < 100; ++i) REQUIRE(rig.handler->status());
  CHECK(rig.root.calls == calls);

  rig.root.broken = true;
  rig.handler->self_test(rig.root);
  auto failed = rig.handler->status();
  REQUIRE_FALSE(failed);
  CHECK(failed.error().code == Code::unavailable);
  CHECK(failed.error().message.find("device removed") != std::string::npos);
  CHECK(rig.handler->encrypt(seed()).error().code == Code::unavailable);
  rig.root.broken = false;
  rig.handler->self_test(rig.root);
  REQUIRE(rig.handler->status());

  rig.keyring->seal();
  CHECK(rig.handler->status().error().code == Code::unavailable);
  rig.handler->self_test(rig.root);
  CHECK(rig.handler->status().error().code == Code::unavailable);
}

TEST_CASE("key_id: same inputs give the same id, any different input another") {
  const auto a = kmsplugin::derive_key_id("c", "k", 1, 1700000000);
  CHECK(a == kmsplugin::derive_key_id("c", "k", 1, 1700000000));
  CHECK(a != kmsplugin::derive_key_id("d", "k", 1, 1700000000));
  CHECK(a != kmsplugin::derive_key_id("c", "l", 1, 1700000000));
  CHECK(a != kmsplugin::derive_key_id("c", "k", 2, 1700000000));
  CHECK(a != kmsplugin::derive_key_id("c", "k", 1, 1700000001));
  // Length-prefixed: moving a byte between cluster id and key name changes it.
  CHECK(kmsplugin::derive_key_id("ab", "c", 1, 0) != kmsplugin::derive_key_id("a", "bc", 1, 0));
}

TEST_CASE("Two keyrings over one store (two hosts) report the same key_id and open each other's seeds") {
  Rig rig;
  rig.handler->self_test(rig.root);
  kms::Keyring second(*rig.store, rig.root);
  REQUIRE(second.unseal());
  kmsplugin::Handler other(second, std::string(kCluster), "kubernetes");
  other.self_test(rig.root);
  CHECK(other.status()->key_id == rig.handler->status()->key_id);
  const auto s = seed();
  auto enc = rig.handler->encrypt(s);
  REQUIRE(enc);
  auto dec = other.decrypt(bytes_of(enc->ciphertext), enc->key_id, annotations_of(*enc));
  REQUIRE(dec);
  CHECK(std::equal(s.begin(), s.end(), dec->plaintext.span().begin(), dec->plaintext.span().end()));
}

TEST_CASE("Encrypt names the version it used, rotation changes key_id and old seeds still decrypt") {
  Rig rig;
  rig.handler->self_test(rig.root);
  const auto s1 = seed();
  auto e1 = rig.handler->encrypt(s1);
  REQUIRE(e1);
  CHECK(e1->key_id == rig.handler->status()->key_id);
  CHECK(e1->key_version == 1);
  CHECK(e1->ciphertext.size() <= kmsplugin::kMaxCiphertextBytes);
  REQUIRE(e1->annotations.size() == 1);
  CHECK(e1->annotations[0] == kmsplugin::Annotation{"version.kms.rootseal.io", "1"});
  REQUIRE(rig.keyring->rotate("kubernetes"));
  auto e2 = rig.handler->encrypt(seed());
  REQUIRE(e2);
  CHECK(e2->key_version == 2);
  CHECK(e2->key_id != e1->key_id);
  CHECK(rig.handler->status()->key_id == e2->key_id);
  auto d1 = rig.handler->decrypt(bytes_of(e1->ciphertext), e1->key_id, annotations_of(*e1));
  REQUIRE(d1);
  CHECK(d1->key_version == 1);
  CHECK(std::equal(s1.begin(), s1.end(), d1->plaintext.span().begin(), d1->plaintext.span().end()));
  // The other version's key_id on this ciphertext: refused.
  CHECK(rig.handler->decrypt(bytes_of(e1->ciphertext), e2->key_id, {}).error().code == Code::invalid_argument);
  // min_decryption_version past it: FAILED_PRECONDITION.
  kms::ConfigUpdate update;
  update.min_decryption_version = 2;
  REQUIRE(rig.keyring->configure("kubernetes", update));
  CHECK(rig.handler->decrypt(bytes_of(e1->ciphertext), e1->key_id, {}).error().code == Code::failed_precondition);
}

TEST_CASE("Decrypt refuses another cluster's key_id and seeds, and a Transit ciphertext without the key_id AAD") {
  Rig rig;
  rig.handler->self_test(rig.root);
  auto enc = rig.handler->encrypt(seed());
  REQUIRE(enc);
  // The same keyring under another cluster id: key_ids differ, so nothing crosses.
  kmsplugin::Handler foreign(*rig.keyring, "another-cluster", "kubernetes");
  foreign.self_test(rig.root);
  CHECK(foreign.status()->key_id != enc->key_id);
  CHECK(foreign.decrypt(bytes_of(enc->ciphertext), enc->key_id, {}).error().code == Code::invalid_argument);
  // A plain Transit ciphertext of the same key (no AAD) under the right key_id: tag mismatch.
  const auto s = seed();
  auto transit = rig.keyring->encrypt("kubernetes", s, {});
  REQUIRE(transit);
  CHECK(rig.handler->decrypt(bytes_of(transit->ciphertext), enc->key_id, {}).error().code == Code::invalid_argument);
}

TEST_CASE("Bad requests are INVALID_ARGUMENT, and the plugin answers normally afterwards") {
  Rig rig;
  rig.handler->self_test(rig.root);
  auto enc = rig.handler->encrypt(seed());
  REQUIRE(enc);
  const std::string ct = enc->ciphertext;
  auto code = [&](const std::string& c, std::string_view key_id, std::vector<kmsplugin::Annotation> a = {}) {
    auto r = rig.handler->decrypt(bytes_of(c), key_id, a);
    return r ? Code::ok : r.error().code;
  };
  CHECK(code(ct, enc->key_id) == Code::ok);
  std::string altered = ct;
  altered[altered.size() - 5] = altered[altered.size() - 5] == 'A' ? 'B' : 'A';
  CHECK(code(altered, enc->key_id) == Code::invalid_argument);
  CHECK(code(ct.substr(0, ct.size() - 4), enc->key_id) == Code::invalid_argument);
  CHECK(code("", enc->key_id) == Code::invalid_argument);
  CHECK(code(ct + std::string(1025 - ct.size(), 'A'), enc->key_id) == Code::invalid_argument);
  CHECK(code("vault:v99:" + ct.substr(9), enc->key_id) == Code::invalid_argument);
  CHECK(code(ct, "") == Code::invalid_argument);
  CHECK(code(ct, std::string(1025, 'k')) == Code::invalid_argument);
  CHECK(code(ct, enc->key_id, {{"Version.kms.rootseal.io", "1"}}) == Code::invalid_argument);
  CHECK(code(ct, enc->key_id, {{"version.kms.rootseal.io", "2"}}) == Code::invalid_argument);
  CHECK(code(ct, enc->key_id, {{"big.example.com", std::string(32768, 'x')}}) == Code::invalid_argument);
  CHECK(code(ct, enc->key_id, {{"other.example.com", "anything"}}) == Code::ok);
  CHECK(rig.handler->encrypt({}).error().code == Code::invalid_argument);
  CHECK(rig.handler->encrypt(std::vector<std::uint8_t>(513, 1)).error().code == Code::invalid_argument);
  auto biggest = rig.handler->encrypt(std::vector<std::uint8_t>(512, 1));
  REQUIRE(biggest);
  CHECK(biggest->ciphertext.size() <= kmsplugin::kMaxCiphertextBytes);
}

TEST_CASE("A configured key that is derived cannot serve: the self-test says why") {
  Rig rig;
  kms::CreateOptions derived;
  derived.derived = true;
  REQUIRE(rig.keyring->create("kubernetes", derived));
  rig.handler->self_test(rig.root);
  auto status = rig.handler->status();
  REQUIRE_FALSE(status);
  CHECK(status.error().code == Code::unavailable);
  CHECK(status.error().message.find("not derived") != std::string::npos);
}

TEST_CASE("Annotation keys: kube-apiserver's IsFullyQualifiedDomainName") {
  for (const char* good : {"version.kms.rootseal.io", "a.b", "a-1.b-2", "version.azure.akv.io.", "x.y.z.example"}) {
    INFO(good);
    CHECK(kmsplugin::is_fqdn(good));
  }
  const std::string long_label = std::string(64, 'a') + ".io";
  const std::string too_long =
      std::string(250, 'a').replace(60, 1, ".").replace(120, 1, ".").replace(180, 1, ".") + ".io";
  for (const std::string& bad : {std::string(""), std::string("."), std::string("version"), std::string("Version.io"),
                                 std::string("-a.io"), std::string("a-.io"), std::string("a..io"),
                                 std::string("a_b.io"), std::string("a.b/c"), long_label, too_long}) {
    INFO(bad);
    CHECK_FALSE(kmsplugin::is_fqdn(bad));
  }
}
