// cli/src/key_copy: copying a store into another (storage migrate): a store
// with a keyring key of its own merged into a target that has another.
#include <catch2/catch.hpp>

#include <string>

#include "key_copy.hpp"
#include "rootseal/kms/keyring.hpp"
#include "temp_dir.hpp"

using namespace rootseal;

namespace {

std::span<const std::uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::unique_ptr<kms::StateStore> open_store(const std::filesystem::path& path) {
  auto store = kms::open_sqlite_store(path);
  if (!store) FAIL(store.error().message);
  return std::move(*store);
}

}  // namespace

TEST_CASE("key copy: a store merged into a target with its own keyring key is rewrapped under the target's") {
  test::TempDir dir;
  auto root = kms::SoftwareRoot::create(kms::SecureBytes::random(32));
  REQUIRE(root);
  auto source = open_store(dir / "source.db");
  auto target = open_store(dir / "target.db");
  std::string ct;
  {
    kms::Keyring ring(*source, **root);
    REQUIRE(ring.unseal());
    REQUIRE(ring.create("from-source", {}));
    REQUIRE(ring.rotate("from-source"));
    auto e = ring.encrypt("from-source", bytes("merged"), {});
    REQUIRE(e);
    ct = e->ciphertext;
  }
  {
    kms::Keyring ring(*target, **root);
    REQUIRE(ring.unseal());
    REQUIRE(ring.create("in-target", {}));
  }
  auto records = source->load_all();
  auto source_kks = source->keyring_keys();
  auto target_kks = target->keyring_keys();
  REQUIRE(records);
  REQUIRE(source_kks);
  REQUIRE(target_kks);
  REQUIRE(source_kks->front().id == target_kks->front().id);  // both 1, different keys
  REQUIRE(source_kks->front().kcv != target_kks->front().kcv);

  auto plan = cli::plan_copy(*records, *source_kks, *target_kks, **root);
  if (!plan) FAIL(plan.error().message);
  CHECK(plan->keyring_keys.empty());
  const std::string target_tag = kms::keyring_key_tag(1, target_kks->front().kcv);
  for (const auto& v : plan->keys.front().versions) CHECK(v.root_kcv == target_tag);
  // Deterministic: a second plan (a resumed migration) is the same records.
  auto again = cli::plan_copy(*records, *source_kks, *target_kks, **root);
  REQUIRE(again);
  CHECK(cli::key_difference(plan->keys.front(), again->keys.front()).empty());

  auto existing = target->load_all();
  REQUIRE(existing);
  auto copied = cli::copy_keys(plan->keys, *existing, *target, "test");
  REQUIRE(copied);
  CHECK(copied->copied == 1);
  kms::Keyring merged(*target, **root);
  REQUIRE(merged.unseal());
  auto p = merged.decrypt("from-source", ct, {});
  REQUIRE(p);
  CHECK(std::string(reinterpret_cast<const char*>(p->data()), p->size()) == "merged");
  CHECK(merged.key_count() == 2);

  // Into an empty target, or one holding the same keyring keys: as it is.
  auto same = cli::plan_copy(*records, *source_kks, {}, **root);
  REQUIRE(same);
  CHECK(same->keyring_keys == *source_kks);
  CHECK(cli::key_difference(same->keys.front(), records->front()).empty());
}
