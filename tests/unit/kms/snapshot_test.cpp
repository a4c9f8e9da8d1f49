// kms snapshots: the manifest parser, the file format, verification with the
// root of trust (in memory), refusal of damaged or foreign snapshots, restore.

#include <catch2/catch.hpp>
#include <fstream>
#include <string>
#include <vector>

#include "rootseal/kms/keyring.hpp"
#include "rootseal/kms/snapshot.hpp"
#include "rootseal/kms/state_store.hpp"
#include "temp_dir.hpp"

using namespace rootseal;
using kms::Errc;

namespace {

std::unique_ptr<kms::SoftwareRoot> new_root() {
  auto root = kms::SoftwareRoot::create(kms::SecureBytes::random(32));
  if (!root) FAIL("SoftwareRoot::create: " << root.error().message);
  return std::move(*root);
}

kms::SnapshotManifest sample_manifest() {
  kms::SnapshotManifest m;
  m.created_unix_ms = 1796570340123;
  m.host = "host-a.example";
  m.cluster_id = "0b7f6a2e-35d7-4a59-8a1f-2c3c3a8a9e10";
  m.root_kcv = "a1b2c3";
  m.keys = 3;
  m.versions = 7;
  m.sections = {{"keyring", 8192, std::string(64, 'a')}, {"tokens", 4096, std::string(64, 'b')}};
  m.content_sha256 = std::string(64, 'c');
  return m;
}

// A state with `keys` keys of `versions` versions each, written through the keyring.
struct State {
  test::TempDir dir{"rootseal-snap"};
  std::unique_ptr<kms::SoftwareRoot> root = new_root();
  std::unique_ptr<kms::StateStore> store;
  std::unique_ptr<kms::Keyring> keyring;
  State(int keys, int versions) {
    auto s = kms::open_sqlite_store(dir / "rootseal.db");
    if (!s) FAIL(s.error().message);
    store = std::move(*s);
    keyring = std::make_unique<kms::Keyring>(*store, *root);
    REQUIRE(keyring->unseal());
    for (int k = 0; k < keys; ++k) {
      const auto name = "key-" + std::to_string(k);
      REQUIRE(keyring->create(name, {}));
      for (int v = 1; v < versions; ++v) REQUIRE(keyring->rotate(name));
    }
  }
  std::vector<std::uint8_t> snapshot() {
    auto image = kms::backup_sqlite_image(dir / "rootseal.db");
    if (!image) FAIL(image.error().message);
    kms::SnapshotInput in;
    in.keyring = std::move(*image);
    in.created_unix_ms = 1796570340123;
    in.host = "host-a";
    in.cluster_id = "0b7f6a2e-35d7-4a59-8a1f-2c3c3a8a9e10";
    auto kcv = root->key_check_value();
    REQUIRE(kcv);
    auto snap = kms::build_snapshot(in, *kcv);
    if (!snap) FAIL(snap.error().message);
    return std::move(*snap);
  }
};

std::string manifest_with(const std::string& from, const std::string& to) {
  auto line = kms::serialize_manifest(sample_manifest());
  const auto at = line.find(from);
  REQUIRE(at != std::string::npos);
  line.replace(at, from.size(), to);
  return line;
}

}  // namespace

TEST_CASE("manifest: serialize and parse round trip") {
  const auto m = sample_manifest();
  const auto line = kms::serialize_manifest(m);
  REQUIRE(line.find('\n') == std::string::npos);
  auto back = kms::parse_manifest(line);
  REQUIRE(back);
  REQUIRE(*back == m);
  REQUIRE(line.find("\"created\":\"20261206T151900.123Z\"") != std::string::npos);
}

TEST_CASE("manifest: the parser refuses every malformed field with a reason") {
  struct Case {
    std::string line;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {"", "not JSON"},
      {"[1]", "not a JSON object"},
      {manifest_with("\"version\":1", "\"version\":2"), "version 2 is not supported"},
      {manifest_with("\"format\":\"rootseal-snapshot\"", "\"format\":\"other\""), "format"},
      {manifest_with("\"root_kcv\":\"a1b2c3\"", "\"root_kcv\":\"A1B2C3\""), "root_kcv"},
      {manifest_with("\"root_kcv\":\"a1b2c3\"", "\"root_kcv\":\"a1b2c\""), "root_kcv"},
      {manifest_with("\"keys\":3", "\"keys\":-3"), "'keys' must be a non-negative integer"},
      {manifest_with("\"keys\":3", "\"keys\":\"3\""), "'keys' must be a non-negative integer"},
      {manifest_with("\"keys\":3", "\"keys\":3,\"pin\":\"1234\""), "unknown field"},
      {manifest_with("\"keys\":3,", ""), "'keys' is missing"},
      {manifest_with("\"name\":\"tokens\"", "\"name\":\"keyring\""), "appears twice"},
      {manifest_with("\"name\":\"keyring\"", "\"name\":\"other\""), "no 'keyring' section"},
      {manifest_with("\"name\":\"tokens\"", "\"name\":\"Tokens\""), "section name"},
      {manifest_with("\"created\":\"20261206T151900.123Z\"", "\"created\":\"20261206T151900.124Z\""), "does not match"},
      {manifest_with("\"host\":\"host-a.example\"", "\"host\":\"a\\nb\""), "'host'"},
      {manifest_with("\"sections\":[", "\"sections\":[],\"x\":["), "unknown field"},
      {manifest_with("\"bytes\":8192", "\"bytes\":1e3"), "'bytes' must be a non-negative integer"},
      {manifest_with("\"bytes\":8192", "\"bytes\":18446744073709551615"), "'bytes' is out of range"},
      {std::string(70000, ' '), "longer than 64 KiB"},
      {manifest_with("\"storage\":\"sqlite\"", "\"storage\":\"consul\""), "'storage' must be sqlite or etcd"},
      {manifest_with("\"storage\":\"sqlite\"", "\"storage\":1"), "'storage' must be a string"},
      {manifest_with("\"storage\":\"sqlite\"", "\"storage\":\"etcd\""), "'etcd_revision' is missing"},
      {manifest_with("\"storage\":\"sqlite\"", "\"storage\":\"etcd\",\"etcd_revision\":0"),
       "'etcd_revision' must be above 0"},
      {manifest_with("\"storage\":\"sqlite\"", "\"storage\":\"etcd\",\"etcd_revision\":-4"),
       "'etcd_revision' must be a non-negative integer"},
      {manifest_with("\"storage\":\"sqlite\"", "\"storage\":\"etcd\",\"etcd_revision\":9223372036854775808"),
       "'etcd_revision' is out of range"},
      {manifest_with("\"storage\":\"sqlite\"", "\"storage\":\"sqlite\",\"etcd_revision\":5"),
       "belongs to a snapshot of etcd only"},
  };
  for (const auto& c : cases) {
    INFO(c.line.substr(0, 200));
    auto m = kms::parse_manifest(c.line);
    REQUIRE_FALSE(m);
    REQUIRE(m.error().code == Errc::invalid_argument);
    REQUIRE(m.error().message.find(c.reason) != std::string::npos);
  }
}

TEST_CASE("manifest: storage etcd with its revision round-trips, one without storage is SQLite's") {
  auto m = sample_manifest();
  m.storage = "etcd";
  m.etcd_revision = 9223372036854775807;
  const auto line = kms::serialize_manifest(m);
  REQUIRE(line.find("\"storage\":\"etcd\"") != std::string::npos);
  auto back = kms::parse_manifest(line);
  if (!back) FAIL(back.error().message);
  REQUIRE(*back == m);
  // The first snapshots' manifests have no storage field: SQLite.
  auto old = kms::parse_manifest(manifest_with("\"storage\":\"sqlite\",", ""));
  if (!old) FAIL(old.error().message);
  REQUIRE(old->storage == "sqlite");
  REQUIRE(old->etcd_revision == 0);
}

TEST_CASE("snapshot of key records (storage: etcd): an image built in memory that verifies and restores") {
  State state(4, 3);
  auto records = state.store->load_all();
  REQUIRE(records);
  auto keyring_keys = state.store->keyring_keys();
  REQUIRE(keyring_keys);
  REQUIRE(keyring_keys->size() == 1);
  auto image = kms::keyring_image(*records, *keyring_keys);
  if (!image) FAIL(image.error().message);
  kms::SnapshotInput in;
  in.keyring = std::move(*image);
  in.created_unix_ms = 1796570340123;
  in.host = "host-b";
  in.cluster_id = "0b7f6a2e-35d7-4a59-8a1f-2c3c3a8a9e10";
  in.storage = "etcd";
  in.etcd_revision = 4711;
  auto kcv = state.root->key_check_value();
  REQUIRE(kcv);
  auto snap = kms::build_snapshot(in, *kcv);
  if (!snap) FAIL(snap.error().message);
  auto report = kms::verify_snapshot(*snap, *state.root);
  if (!report) FAIL(report.error().message);
  REQUIRE(report->manifest.storage == "etcd");
  REQUIRE(report->manifest.etcd_revision == 4711);
  REQUIRE(report->manifest.keys == 4);
  REQUIRE(report->unwrapped == 12);
  auto view = kms::parse_snapshot(*snap);
  REQUIRE(view);
  auto keys = kms::snapshot_keys(*view);
  if (!keys) FAIL(keys.error().message);
  REQUIRE(keys->size() == records->size());
  for (std::size_t i = 0; i < keys->size(); ++i) {
    const auto& a = (*keys)[i];
    const auto& b = (*records)[i];
    REQUIRE(a.name == b.name);
    REQUIRE(a.type == b.type);
    REQUIRE(a.created_unix == b.created_unix);
    REQUIRE(a.config == b.config);
    REQUIRE(a.versions.size() == b.versions.size());
    for (std::size_t v = 0; v < a.versions.size(); ++v) {
      REQUIRE(a.versions[v].wrapped_key == b.versions[v].wrapped_key);
      REQUIRE(a.versions[v].root_kcv == b.versions[v].root_kcv);
      REQUIRE(a.versions[v].created_unix == b.versions[v].created_unix);
    }
  }
  // The image restores as a state folder too (an etcd snapshot onto SQLite).
  test::TempDir target("rootseal-snap-etcd");
  REQUIRE(kms::restore_snapshot_files(*view, target.path(), false));
  auto reopened = kms::open_sqlite_store(target / "rootseal.db");
  if (!reopened) FAIL(reopened.error().message);
  REQUIRE((*reopened)->load_all()->size() == 4);
  // The revision goes with etcd only.
  in.storage = "sqlite";
  REQUIRE_FALSE(kms::build_snapshot(in, *kcv));
}

TEST_CASE("snapshot names sort by time and are recognised") {
  const auto a = kms::snapshot_object_name(1796570340123);
  const auto b = kms::snapshot_object_name(1796570340124);
  const auto c = kms::snapshot_object_name(1796570400000);
  REQUIRE(a == "rootseal-20261206T151900.123Z.snap");
  REQUIRE(a < b);
  REQUIRE(b < c);
  REQUIRE(kms::is_snapshot_object_name(a));
  REQUIRE_FALSE(kms::is_snapshot_object_name("rootseal-20261206T151900.123Z.snap.tmp"));
  REQUIRE_FALSE(kms::is_snapshot_object_name("rootseal-2026120XT151900.123Z.snap"));
  REQUIRE_FALSE(kms::is_snapshot_object_name("other.snap"));
}

TEST_CASE("snapshot: a consistent copy that verifies by unwrapping every version") {
  State state(5, 3);
  const auto snap = state.snapshot();
  auto report = kms::verify_snapshot(snap, *state.root);
  if (!report) FAIL(report.error().message);
  REQUIRE(report->manifest.keys == 5);
  REQUIRE(report->manifest.versions == 15);
  REQUIRE(report->unwrapped == 15);
  REQUIRE(report->manifest.host == "host-a");
  REQUIRE(report->manifest.root_kcv == *state.root->key_check_value());
  REQUIRE(report->manifest.sections.size() == 1);
  // The live store kept working while (and after) it was copied.
  REQUIRE(state.keyring->rotate("key-0"));
}

TEST_CASE("snapshot: one changed byte anywhere is refused with a reason") {
  State state(3, 2);
  const auto snap = state.snapshot();
  const std::size_t manifest_end =
      std::string_view(reinterpret_cast<const char*>(snap.data()), snap.size()).find('\n', kms::kSnapshotMagic.size());
  REQUIRE(manifest_end != std::string_view::npos);
  // First line, manifest, SQLite header, a page in the middle, the last byte.
  const std::vector<std::size_t> positions = {0,
                                              5,
                                              manifest_end - 3,
                                              manifest_end + 1,
                                              manifest_end + 20,
                                              manifest_end + (snap.size() - manifest_end) / 2,
                                              snap.size() - 1};
  for (const auto pos : positions) {
    INFO("byte " << pos);
    auto bad = snap;
    bad[pos] ^= 0x01;
    auto report = kms::verify_snapshot(bad, *state.root);
    REQUIRE_FALSE(report);
    REQUIRE(report.error().message.starts_with("snapshot refused: "));
    if (pos > manifest_end) REQUIRE(report.error().message.find("SHA-256 does not match") != std::string::npos);
  }
  auto cut = snap;
  cut.resize(snap.size() - 100);
  auto report = kms::verify_snapshot(cut, *state.root);
  REQUIRE_FALSE(report);
  REQUIRE(report.error().message.find("truncated") != std::string::npos);
}

TEST_CASE("snapshot: a damaged database with matching digests is still refused") {
  // Someone rewrites the digests too: SQLite's integrity check or the unwrap catches it.
  State state(2, 2);
  auto image = kms::backup_sqlite_image(state.dir / "rootseal.db");
  REQUIRE(image);
  std::vector<std::uint8_t> damaged = *image;
  // Flip a byte near the end of the last page (row payload: a wrapped key or the b-tree).
  damaged[damaged.size() - 40] ^= 0xff;
  kms::SnapshotInput in;
  in.keyring = damaged;
  in.created_unix_ms = 1;
  in.host = "h";
  auto kcv = state.root->key_check_value();
  REQUIRE(kcv);
  auto built = kms::build_snapshot(in, *kcv);
  if (built) {
    auto report = kms::verify_snapshot(*built, *state.root);
    REQUIRE_FALSE(report);
    REQUIRE(report.error().message.starts_with("snapshot refused: "));
  } else {
    REQUIRE(built.error().code != Errc::internal);
  }
}

TEST_CASE("snapshot: another root of trust is refused by its check value") {
  State state(2, 1);
  const auto snap = state.snapshot();
  auto other = new_root();
  auto report = kms::verify_snapshot(snap, *other);
  REQUIRE_FALSE(report);
  REQUIRE(report.error().code == Errc::decryption_failed);
  REQUIRE(report.error().message.find("taken under root key") != std::string::npos);
}

TEST_CASE("snapshot: restore into an empty folder, refuse a non-empty one without force") {
  State state(4, 3);
  const auto snap = state.snapshot();
  auto view = kms::parse_snapshot(snap);
  REQUIRE(view);
  test::TempDir target("rootseal-restore");
  const auto dir = target / "state";
  REQUIRE(kms::restore_snapshot_files(*view, dir, false));
  {
    std::ifstream in(dir / "cluster-id");
    std::string id;
    REQUIRE(std::getline(in, id));
    REQUIRE(id == "0b7f6a2e-35d7-4a59-8a1f-2c3c3a8a9e10");
  }
  auto restored = kms::open_sqlite_store(dir / "rootseal.db");
  if (!restored) FAIL(restored.error().message);
  kms::Keyring again(**restored, *state.root);
  REQUIRE(again.unseal());
  REQUIRE(again.key_count() == 4);
  REQUIRE(again.version_count() == 12);
  // The same key material: a ciphertext of the original decrypts.
  const std::string text = "hello";
  auto ct =
      state.keyring->encrypt("key-2", std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), {});
  REQUIRE(ct);
  auto pt = again.decrypt("key-2", ct->ciphertext, {});
  REQUIRE(pt);
  REQUIRE(std::string_view(reinterpret_cast<const char*>(pt->data()), pt->size()) == text);
  restored->reset();

  auto refused = kms::restore_snapshot_files(*view, dir, false);
  REQUIRE_FALSE(refused);
  REQUIRE(refused.error().code == Errc::conflict);
  REQUIRE(refused.error().message.find("not empty") != std::string::npos);
  REQUIRE(refused.error().message.find("rootseal.db") != std::string::npos);
  REQUIRE(kms::restore_snapshot_files(*view, dir, true));
}
