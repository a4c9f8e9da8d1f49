// The keyring key (kms/keyring_key.hpp): one root operation per unseal,
// migration of a store from before it, keyring-key rotation, and every state
// a crash can leave in between.
#include <catch2/catch.hpp>

#include <atomic>
#include <set>
#include <string>
#include <vector>

#include "rootseal/kms/aead.hpp"
#include "rootseal/kms/ciphertext.hpp"
#include "rootseal/kms/keyring.hpp"
#include "rootseal/kms/keyring_key.hpp"
#include "failing_store.hpp"
#include "temp_dir.hpp"

using namespace rootseal;
using kms::Errc;

namespace {

std::span<const std::uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// A software root that counts what is asked of it.
class CountingRoot final : public kms::RootOfTrust {
 public:
  explicit CountingRoot(kms::SecureBytes key) {
    auto r = kms::SoftwareRoot::create(std::move(key));
    if (!r) FAIL(r.error().message);
    inner_ = std::move(*r);
  }
  std::atomic<int> wraps{0};
  std::atomic<int> unwraps{0};

  [[nodiscard]] std::string_view kind() const noexcept override { return "software"; }
  kms::Result<void> probe() override { return {}; }
  kms::Result<std::string> key_check_value() override { return inner_->key_check_value(); }
  kms::Result<std::vector<std::uint8_t>> wrap(const kms::SecureBytes& key) override {
    ++wraps;
    return inner_->wrap(key);
  }
  kms::Result<kms::SecureBytes> unwrap(std::span<const std::uint8_t> wrapped) override {
    ++unwraps;
    return inner_->unwrap(wrapped);
  }

 private:
  std::unique_ptr<kms::SoftwareRoot> inner_;
};

std::unique_ptr<kms::StateStore> open_store(const std::filesystem::path& path) {
  auto store = kms::open_sqlite_store(path);
  if (!store) FAIL("open_sqlite_store: " << store.error().message);
  return std::move(*store);
}

// A ciphertext made the way every release makes them, under `kek`.
std::string seal_with(const kms::SecureBytes& kek, std::uint32_t version, std::string_view plaintext) {
  auto aead = kms::make_aead(kms::KeyType::aes256_gcm96, kek);
  REQUIRE(aead);
  auto body = (*aead)->seal(bytes(plaintext), {});
  REQUIRE(body);
  return kms::format_ciphertext(version, *body);
}

struct LegacyKey {
  std::string name;
  std::vector<std::string> ciphertexts;  // one per version, of "<name> v<N>"
};

// A store as releases before the keyring key wrote it: every version's KEK
// wrapped by the root directly, tagged with the root's check value.
std::vector<LegacyKey> write_legacy_store(kms::StateStore& store, kms::RootOfTrust& root, int keys, int versions) {
  auto kcv = root.key_check_value();
  REQUIRE(kcv);
  std::vector<LegacyKey> out;
  for (int k = 0; k < keys; ++k) {
    kms::KeyRecord rec;
    rec.name = "legacy-" + std::to_string(k);
    rec.created_unix = 1'700'000'000;
    LegacyKey lk{rec.name, {}};
    for (int v = 1; v <= versions; ++v) {
      auto kek = kms::SecureBytes::random(32);
      auto wrapped = root.wrap(kek);
      REQUIRE(wrapped);
      rec.versions.push_back({static_cast<std::uint32_t>(v), 1'700'000'000 + v, *wrapped, *kcv});
      lk.ciphertexts.push_back(seal_with(kek, static_cast<std::uint32_t>(v), rec.name + " v" + std::to_string(v)));
    }
    REQUIRE(store.create_key(rec));
    out.push_back(std::move(lk));
  }
  return out;
}

void require_decrypts(kms::Keyring& ring, const std::vector<LegacyKey>& keys) {
  for (const auto& k : keys) {
    for (std::size_t i = 0; i < k.ciphertexts.size(); ++i) {
      auto p = ring.decrypt(k.name, k.ciphertexts[i], {});
      if (!p) FAIL(k.name << " v" << i + 1 << ": " << p.error().message);
      const std::string want = k.name + " v" + std::to_string(i + 1);
      REQUIRE(std::string(reinterpret_cast<const char*>(p->data()), p->size()) == want);
    }
  }
}

// Every version's tag in the store.
std::multiset<std::string> tags_of(kms::StateStore& store) {
  auto all = store.load_all();
  REQUIRE(all);
  std::multiset<std::string> out;
  for (const auto& k : *all) {
    for (const auto& v : k.versions) out.insert(v.root_kcv);
  }
  return out;
}

}  // namespace

TEST_CASE("keyring key: tags", "[keyring-key]") {
  REQUIRE(kms::keyring_key_tag(1, "a1b2c3") == "kk1:a1b2c3");
  REQUIRE(kms::keyring_key_tag_id("kk1:a1b2c3") == 1U);
  REQUIRE(kms::keyring_key_tag_id("kk2147483647:000000") == 2147483647U);
  for (std::string_view bad :
       {"a1b2c3", "", "kk", "kk:", "kk1:", "kk0:a1b2c3", "kk01:a1b2c3", "kk1:A1B2C3", "kk1:a1b2c", "kk1:a1b2c3d",
        "kk2147483648:a1b2c3", "kk-1:a1b2c3", "kkx:a1b2c3", "kk99999999999:a1b2c3", "xk1:a1b2c3"}) {
    INFO(bad);
    REQUIRE_FALSE(kms::keyring_key_tag_id(bad).has_value());
  }
}

TEST_CASE("keyring key: unseal is one root operation whatever the number of versions", "[keyring-key]") {
  test::TempDir dir;
  auto store = open_store(dir / "state.db");
  CountingRoot root(kms::SecureBytes::random(32));
  std::vector<std::string> ciphertexts;
  {
    kms::Keyring ring(*store, root);
    REQUIRE(ring.unseal());
    for (int k = 0; k < 50; ++k) {
      const std::string name = "k" + std::to_string(k);
      REQUIRE(ring.create(name, {}));
      for (int r = 0; r < 9; ++r) REQUIRE(ring.rotate(name));
      auto e = ring.encrypt(name, bytes("payload of " + name), {});
      REQUIRE(e);
      ciphertexts.push_back(e->ciphertext);
    }
    REQUIRE(ring.version_count() == 500);
  }
  // Making 500 versions asked the root nothing after the keyring key was made.
  REQUIRE(root.wraps == 1);
  root.unwraps = 0;
  kms::Keyring ring(*store, root);
  REQUIRE(ring.unseal());
  REQUIRE(root.unwraps == 1);  // the keyring key; 500 versions in software
  REQUIRE(ring.version_count() == 500);
  for (int k = 0; k < 50; ++k) {
    auto p = ring.decrypt("k" + std::to_string(k), ciphertexts[static_cast<std::size_t>(k)], {});
    REQUIRE(p);
  }
  auto st = ring.keyring_key_status();
  REQUIRE(st);
  REQUIRE(st->id == 1);
  REQUIRE(st->keyring_keys == 1);
  REQUIRE(st->pending_versions == 0);
  const auto tags = tags_of(*store);
  REQUIRE(tags.size() == 500);
  for (const auto& t : tags) REQUIRE(t == kms::keyring_key_tag(1, st->kcv));
}

TEST_CASE("keyring key: a store from before it migrates at the first unseal, ciphertexts unchanged", "[keyring-key]") {
  test::TempDir dir;
  auto store = open_store(dir / "state.db");
  CountingRoot root(kms::SecureBytes::random(32));
  const auto legacy = write_legacy_store(*store, root, 6, 4);
  auto kks = store->keyring_keys();
  REQUIRE(kks);
  REQUIRE(kks->empty());
  {
    root.unwraps = 0;
    kms::Keyring ring(*store, root);
    std::vector<std::string> steps;
    ring.set_step_observer([&](std::string_view s) { steps.emplace_back(s); });
    REQUIRE(ring.unseal());
    // 24 legacy versions through the root (once), plus the new keyring key's self-check.
    REQUIRE(root.unwraps == 24 + 1);
    REQUIRE(steps == std::vector<std::string>{"keyring-key-added", "keyring-rewrapped-1"});
    require_decrypts(ring, legacy);
  }
  kks = store->keyring_keys();
  REQUIRE(kks);
  REQUIRE(kks->size() == 1);
  for (const auto& t : tags_of(*store)) REQUIRE(t == kms::keyring_key_tag(1, kks->front().kcv));
  // From now on: one root operation.
  root.unwraps = 0;
  kms::Keyring ring(*store, root);
  REQUIRE(ring.unseal());
  REQUIRE(root.unwraps == 1);
  require_decrypts(ring, legacy);
}

TEST_CASE("keyring key: a migration cut off after any step resumes at the next unseal", "[keyring-key]") {
  const std::string point = GENERATE(as<std::string>{}, "keyring-key-added", "keyring-rewrapped-1");
  INFO("cut after " << point);
  test::TempDir dir;
  auto store = open_store(dir / "state.db");
  CountingRoot root(kms::SecureBytes::random(32));
  const auto legacy = write_legacy_store(*store, root, 3, 3);
  {
    test::FailingStore breakable(*store);
    kms::Keyring ring(breakable, root);
    ring.set_step_observer([&](std::string_view s) {
      if (s == point) breakable.fail_writes = true;
    });
    REQUIRE(ring.unseal());  // what the cut left undone is reported, not fatal
    require_decrypts(ring, legacy);
  }
  kms::Keyring ring(*store, root);
  REQUIRE(ring.unseal());
  require_decrypts(ring, legacy);
  auto kks = store->keyring_keys();
  REQUIRE(kks);
  REQUIRE(kks->size() == 1);
  for (const auto& t : tags_of(*store)) REQUIRE(t == kms::keyring_key_tag(1, kks->front().kcv));
  auto st = ring.keyring_key_status();
  REQUIRE(st);
  REQUIRE(st->pending_versions == 0);
  REQUIRE(st->settle_error.empty());
}

TEST_CASE("keyring key: rotation rewraps every version in software and retires the old key", "[keyring-key]") {
  test::TempDir dir;
  auto store = open_store(dir / "state.db");
  CountingRoot root(kms::SecureBytes::random(32));
  kms::Keyring ring(*store, root);
  REQUIRE(ring.unseal());
  std::vector<std::pair<std::string, std::string>> made;
  for (int k = 0; k < 5; ++k) {
    const std::string name = "r" + std::to_string(k);
    REQUIRE(ring.create(name, {}));
    REQUIRE(ring.rotate(name));
    auto e = ring.encrypt(name, bytes(name), {});
    REQUIRE(e);
    made.emplace_back(name, e->ciphertext);
  }
  const auto before = ring.keyring_key_status();
  REQUIRE(before);
  root.wraps = 0;
  root.unwraps = 0;
  std::vector<std::string> steps;
  ring.set_step_observer([&](std::string_view s) { steps.emplace_back(s); });
  auto after = ring.rotate_keyring_key();
  if (!after) FAIL(after.error().message);
  REQUIRE(root.wraps == 1);    // the new keyring key
  REQUIRE(root.unwraps == 1);  // its self-check; the 10 versions move in software
  REQUIRE(after->id == 2);
  REQUIRE(after->kcv != before->kcv);
  REQUIRE(after->keyring_keys == 2);  // as read before the old one was retired
  REQUIRE(steps == std::vector<std::string>{"keyring-key-added", "keyring-rewrapped-1", "keyring-key-retired-1"});
  auto kks = store->keyring_keys();
  REQUIRE(kks);
  REQUIRE(kks->size() == 1);
  REQUIRE(kks->front().id == 2);
  for (const auto& t : tags_of(*store)) REQUIRE(t == kms::keyring_key_tag(2, after->kcv));
  for (const auto& [name, ct] : made) REQUIRE(ring.decrypt(name, ct, {}));
  // New versions go under the new keyring key.
  REQUIRE(ring.rotate("r0"));
  for (const auto& t : tags_of(*store)) REQUIRE(t == kms::keyring_key_tag(2, after->kcv));
  kms::Keyring again(*store, root);
  REQUIRE(again.unseal());
  for (const auto& [name, ct] : made) REQUIRE(again.decrypt(name, ct, {}));
}

TEST_CASE("keyring key: a rotation cut off after any step unseals and finishes at the next unseal", "[keyring-key]") {
  const std::string point = GENERATE(as<std::string>{}, "keyring-key-added", "keyring-rewrapped-1");
  INFO("cut after " << point);
  test::TempDir dir;
  auto store = open_store(dir / "state.db");
  CountingRoot root(kms::SecureBytes::random(32));
  std::vector<std::pair<std::string, std::string>> made;
  {
    test::FailingStore breakable(*store);
    kms::Keyring ring(breakable, root);
    REQUIRE(ring.unseal());
    for (int k = 0; k < 3; ++k) {
      const std::string name = "c" + std::to_string(k);
      REQUIRE(ring.create(name, {}));
      auto e = ring.encrypt(name, bytes(name), {});
      REQUIRE(e);
      made.emplace_back(name, e->ciphertext);
    }
    ring.set_step_observer([&](std::string_view s) {
      if (s == point) breakable.fail_writes = true;
    });
    (void)ring.rotate_keyring_key();  // cut off: whatever it says, the store holds what was written
  }
  kms::Keyring ring(*store, root);
  REQUIRE(ring.unseal());
  for (const auto& [name, ct] : made) REQUIRE(ring.decrypt(name, ct, {}));
  auto kks = store->keyring_keys();
  REQUIRE(kks);
  REQUIRE(kks->size() == 1);
  REQUIRE(kks->front().id == 2);  // the rotation was finished, the old key retired
  for (const auto& t : tags_of(*store)) REQUIRE(t == kms::keyring_key_tag(2, kks->front().kcv));
}

TEST_CASE("keyring key: the store refuses to retire a keyring key that still wraps a version", "[keyring-key]") {
  test::TempDir dir;
  auto store = open_store(dir / "state.db");
  CountingRoot root(kms::SecureBytes::random(32));
  kms::Keyring ring(*store, root);
  REQUIRE(ring.unseal());
  REQUIRE(ring.create("k", {}));
  auto r = store->retire_keyring_key(1);
  REQUIRE_FALSE(r);
  REQUIRE(r.error().code == Errc::conflict);
  auto missing = store->retire_keyring_key(7);
  REQUIRE_FALSE(missing);
  REQUIRE(missing.error().code == Errc::not_found);
  auto kks = store->keyring_keys();
  REQUIRE(kks);
  REQUIRE(kks->size() == 1);
  // Adding one with a taken id is already_exists.
  auto again = store->add_keyring_key(kks->front());
  REQUIRE_FALSE(again);
  REQUIRE(again.error().code == Errc::already_exists);
}

TEST_CASE("keyring key: a damaged or foreign keyring key keeps the keyring sealed with the reason", "[keyring-key]") {
  test::TempDir dir;
  auto store = open_store(dir / "state.db");
  CountingRoot root(kms::SecureBytes::random(32));
  {
    kms::Keyring ring(*store, root);
    REQUIRE(ring.unseal());
    REQUIRE(ring.create("k", {}));
  }
  auto kks = store->keyring_keys();
  REQUIRE(kks);
  // Why a fresh keyring on `s` stays sealed.
  auto refusal = [&root](kms::StateStore& s) {
    kms::Keyring ring(s, root);
    auto u = ring.unseal();
    REQUIRE_FALSE(u);
    REQUIRE(ring.is_sealed());
    return u.error();
  };
  SECTION("its wrapped form damaged") {
    auto damaged = kks->front();
    damaged.wrapped[5] ^= 0x40;
    REQUIRE(store->replace_wrapped({}, {damaged}));
    const auto e = refusal(*store);
    REQUIRE(e.code == Errc::decryption_failed);
    REQUIRE(e.message.find("keyring key 1 does not unwrap") != std::string::npos);
  }
  SECTION("another keyring key's check value recorded (a swapped record)") {
    auto swapped = kks->front();
    swapped.kcv = swapped.kcv == "000000" ? "000001" : "000000";
    // replace_wrapped matches the check value too: write it as a fresh store would hold it.
    test::TempDir other;
    auto store2 = open_store(other / "state.db");
    REQUIRE(store2->add_keyring_key(swapped));
    const auto e = refusal(*store2);
    REQUIRE(e.code == Errc::decryption_failed);
    REQUIRE(e.message.find("is not the recorded one") != std::string::npos);
  }
  SECTION("a version naming a keyring key the store does not hold") {
    auto all = store->load_all();
    REQUIRE(all);
    REQUIRE(store->replace_wrapped({{"k", 1, all->front().versions[0].wrapped_key, "kk9:abcdef"}}, {}));
    const auto e = refusal(*store);
    REQUIRE(e.code == Errc::sealed);
    REQUIRE(e.message.find("keyring key kk9:abcdef, which the store does not hold") != std::string::npos);
  }
  SECTION("a version under the keyring key, damaged") {
    auto all = store->load_all();
    REQUIRE(all);
    auto blob = all->front().versions[0].wrapped_key;
    blob.back() ^= 1;
    REQUIRE(store->replace_wrapped({{"k", 1, blob, all->front().versions[0].root_kcv}}, {}));
    const auto e = refusal(*store);
    REQUIRE(e.code == Errc::decryption_failed);
    REQUIRE(e.message.find("key 'k' version 1") != std::string::npos);
  }
}
