// kms::StateStore on SQLite: CRUD, versioning rules, durability across
// reopen, file modes, schema versioning, scale and concurrent writers.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "rootseal/kms/state_store.hpp"
#include "temp_dir.hpp"

using namespace rootseal;
using kms::Errc;

namespace {

// Not real wrapped keys: the store treats them as opaque blobs.
std::vector<std::uint8_t> blob(std::uint32_t seed, std::size_t n = 40) {
  std::vector<std::uint8_t> b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>((std::size_t{seed} * 131U + i * 7U) & 0xffU);
  return b;
}

kms::KeyVersionRecord version(std::uint32_t v, std::int64_t created = 1000) {
  return kms::KeyVersionRecord{v, created + v, blob(v), "a1b2c3"};
}

kms::KeyRecord key_record(const std::string& name, std::uint32_t versions = 1,
                          kms::KeyType type = kms::KeyType::aes256_gcm96) {
  kms::KeyRecord k;
  k.name = name;
  k.type = type;
  k.derived = false;
  k.created_unix = 1000;
  for (std::uint32_t v = 1; v <= versions; ++v) k.versions.push_back(version(v));
  return k;
}

std::unique_ptr<kms::StateStore> open_store(const std::filesystem::path& path) {
  auto store = kms::open_sqlite_store(path);
  if (!store) FAIL("open_sqlite_store: " << store.error().message);
  return std::move(*store);
}

void require_same(const kms::KeyRecord& a, const kms::KeyRecord& b) {
  REQUIRE(a.name == b.name);
  REQUIRE(a.type == b.type);
  REQUIRE(a.derived == b.derived);
  REQUIRE(a.created_unix == b.created_unix);
  REQUIRE(a.config == b.config);
  REQUIRE(a.versions.size() == b.versions.size());
  for (std::size_t i = 0; i < a.versions.size(); ++i) {
    REQUIRE(a.versions[i].version == b.versions[i].version);
    REQUIRE(a.versions[i].created_unix == b.versions[i].created_unix);
    REQUIRE(a.versions[i].wrapped_key == b.versions[i].wrapped_key);
    REQUIRE(a.versions[i].root_kcv == b.versions[i].root_kcv);
  }
}

std::string tagged(std::string_view prefix, std::uint32_t n) { return std::string(prefix) + std::to_string(n); }

unsigned file_mode(const std::filesystem::path& p) {
  struct stat st{};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st.st_mode & 07777U;
}

}  // namespace

TEST_CASE("sqlite store: create, find and list keys", "[store]") {
  test::TempDir dir;
  auto store = open_store(dir / "state.db");
  REQUIRE(store->schema_version() == 2);

  auto empty = store->load_all();
  REQUIRE(empty);
  REQUIRE(empty->empty());

  kms::KeyRecord b = key_record("beta", 2, kms::KeyType::chacha20_poly1305);
  b.derived = true;
  b.config.min_decryption_version = 2;
  b.config.min_encryption_version = 2;
  b.config.deletion_allowed = true;
  b.config.auto_rotate_period_s = 7200;
  REQUIRE(store->create_key(b));
  REQUIRE(store->create_key(key_record("alpha")));
  REQUIRE(store->create_key(key_record("Gamma", 1, kms::KeyType::aes128_gcm96)));

  auto found = store->find("beta");
  REQUIRE(found);
  REQUIRE(found->has_value());
  require_same(**found, b);

  auto missing = store->find("nope");
  REQUIRE(missing);
  REQUIRE_FALSE(missing->has_value());

  auto names = store->list_names();
  REQUIRE(names);
  REQUIRE(*names == std::vector<std::string>{"Gamma", "alpha", "beta"});  // byte order

  auto all = store->load_all();
  REQUIRE(all);
  REQUIRE(all->size() == 3);
  REQUIRE((*all)[0].name == "Gamma");
  require_same((*all)[2], b);
}

TEST_CASE("sqlite store: create_key rejects duplicates and malformed version lists", "[store]") {
  test::TempDir dir;
  auto store = open_store(dir / "state.db");
  REQUIRE(store->create_key(key_record("k")));

  auto dup = store->create_key(key_record("k", 3));
  REQUIRE_FALSE(dup);
  REQUIRE(dup.error().code == Errc::already_exists);
  auto still = store->find("k");
  REQUIRE(still);
  REQUIRE((*still)->versions.size() == 1);  // the failed create changed nothing

  kms::KeyRecord none = key_record("none", 0);
  auto r1 = store->create_key(none);
  REQUIRE_FALSE(r1);
  REQUIRE(r1.error().code == Errc::invalid_argument);

  kms::KeyRecord gap = key_record("gap", 1);
  gap.versions.push_back(version(3));
  auto r2 = store->create_key(gap);
  REQUIRE_FALSE(r2);
  REQUIRE(r2.error().code == Errc::invalid_argument);
  auto absent = store->find("gap");
  REQUIRE(absent);
  REQUIRE_FALSE(absent->has_value());
}

TEST_CASE("sqlite store: add_version accepts exactly latest + 1", "[store]") {
  test::TempDir dir;
  auto store = open_store(dir / "state.db");
  REQUIRE(store->create_key(key_record("k")));

  REQUIRE(store->add_version("k", version(2)));
  REQUIRE(store->add_version("k", version(3)));

  auto duplicate = store->add_version("k", version(3));
  REQUIRE_FALSE(duplicate);
  REQUIRE(duplicate.error().code == Errc::conflict);

  auto gap = store->add_version("k", version(5));
  REQUIRE_FALSE(gap);
  REQUIRE(gap.error().code == Errc::conflict);

  auto old = store->add_version("k", version(1));
  REQUIRE_FALSE(old);
  REQUIRE(old.error().code == Errc::conflict);

  auto missing = store->add_version("nope", version(1));
  REQUIRE_FALSE(missing);
  REQUIRE(missing.error().code == Errc::not_found);

  auto k = store->find("k");
  REQUIRE(k);
  REQUIRE((*k)->versions.size() == 3);
  for (std::uint32_t v = 1; v <= 3; ++v) REQUIRE((*k)->versions[v - 1].version == v);
}

TEST_CASE("sqlite store: update_config and delete_key", "[store]") {
  test::TempDir dir;
  auto store = open_store(dir / "state.db");
  REQUIRE(store->create_key(key_record("k", 3)));

  kms::KeyConfig c;
  c.min_decryption_version = 2;
  c.min_encryption_version = 3;
  c.deletion_allowed = true;
  c.auto_rotate_period_s = 86400;
  REQUIRE(store->update_config("k", c));
  auto k = store->find("k");
  REQUIRE(k);
  REQUIRE((*k)->config == c);

  auto missing = store->update_config("nope", c);
  REQUIRE_FALSE(missing);
  REQUIRE(missing.error().code == Errc::not_found);

  kms::KeyConfig bad;
  bad.min_decryption_version = 0;
  auto invalid = store->update_config("k", bad);
  REQUIRE_FALSE(invalid);
  REQUIRE(invalid.error().code == Errc::invalid_argument);

  REQUIRE(store->delete_key("k"));
  auto gone = store->find("k");
  REQUIRE(gone);
  REQUIRE_FALSE(gone->has_value());
  auto again = store->delete_key("k");
  REQUIRE_FALSE(again);
  REQUIRE(again.error().code == Errc::not_found);

  // ON DELETE CASCADE removed the versions: the name starts again at 1.
  REQUIRE(store->create_key(key_record("k", 1)));
  auto fresh = store->find("k");
  REQUIRE(fresh);
  REQUIRE((*fresh)->versions.size() == 1);
  auto next = store->add_version("k", version(4));
  REQUIRE_FALSE(next);
  REQUIRE(next.error().code == Errc::conflict);
  REQUIRE(store->add_version("k", version(2)));
}

TEST_CASE("sqlite store: replace_wrapped is all or nothing", "[store]") {
  test::TempDir dir;
  auto store = open_store(dir / "state.db");
  REQUIRE(store->create_key(key_record("a", 2)));
  REQUIRE(store->create_key(key_record("b", 1)));

  std::vector<kms::StateStore::Rewrapped> entries = {
      {"a", 1, blob(101, 48), "ffffff"},
      {"a", 2, blob(102, 48), "ffffff"},
      {"b", 1, blob(103, 48), "ffffff"},
  };
  REQUIRE(store->replace_wrapped(entries, {}));
  auto a = store->find("a");
  REQUIRE(a);
  REQUIRE((*a)->versions[1].wrapped_key == blob(102, 48));
  REQUIRE((*a)->versions[1].root_kcv == "ffffff");

  std::vector<kms::StateStore::Rewrapped> partial = {
      {"a", 1, blob(201), "000000"}, {"a", 3, blob(202), "000000"},  // no such version
  };
  auto r = store->replace_wrapped(partial, {});
  REQUIRE_FALSE(r);
  REQUIRE(r.error().code == Errc::not_found);
  auto after = store->find("a");
  REQUIRE(after);
  REQUIRE((*after)->versions[0].wrapped_key == blob(101, 48));  // first update rolled back
  REQUIRE((*after)->versions[0].root_kcv == "ffffff");
}

TEST_CASE("sqlite store: everything survives a reopen", "[store]") {
  test::TempDir dir;
  const auto path = dir / "state.db";
  kms::KeyRecord k = key_record("k", 2, kms::KeyType::aes128_gcm96);
  k.config.deletion_allowed = true;
  {
    auto store = open_store(path);
    REQUIRE(store->create_key(k));
    REQUIRE(store->create_key(key_record("other", 1)));
    REQUIRE(store->add_version("k", version(3)));
    k.versions.push_back(version(3));
    k.config.min_decryption_version = 2;
    REQUIRE(store->update_config("k", k.config));
    REQUIRE(store->delete_key("other"));
  }
  auto store = open_store(path);
  REQUIRE(store->schema_version() == 2);
  auto all = store->load_all();
  REQUIRE(all);
  REQUIRE(all->size() == 1);
  require_same(all->front(), k);
}

TEST_CASE("sqlite store: database, -wal and -shm are mode 0600 whatever the umask", "[store]") {
  test::TempDir dir;
  const auto path = dir / "state.db";
  const mode_t old_umask = ::umask(0);
  auto store = kms::open_sqlite_store(path);
  ::umask(old_umask);
  REQUIRE(store);
  REQUIRE((*store)->create_key(key_record("k")));  // WAL in use: -wal and -shm exist

  REQUIRE(file_mode(path) == 0600);
  REQUIRE(std::filesystem::exists(path.string() + "-wal"));
  REQUIRE(std::filesystem::exists(path.string() + "-shm"));
  REQUIRE(file_mode(path.string() + "-wal") == 0600);
  REQUIRE(file_mode(path.string() + "-shm") == 0600);
}

TEST_CASE("sqlite store: an existing group/world-readable file is tightened", "[store]") {
  test::TempDir dir;
  const auto path = dir / "state.db";
  {
    std::ofstream touch(path);
  }
  std::filesystem::permissions(path, std::filesystem::perms(0644));
  REQUIRE(file_mode(path) == 0644);
  auto store = open_store(path);
  REQUIRE(file_mode(path) == 0600);
}

TEST_CASE("sqlite store: refuses a symlink in place of the database", "[store]") {
  test::TempDir dir;
  const auto target = dir / "elsewhere.db";
  {
    std::ofstream touch(target);
  }
  std::filesystem::create_symlink(target, dir / "state.db");
  auto store = kms::open_sqlite_store(dir / "state.db");
  REQUIRE_FALSE(store);
  REQUIRE(store.error().code == Errc::storage_failure);
}

TEST_CASE("sqlite store: a schema newer than the binary is refused", "[store]") {
  test::TempDir dir;
  const auto path = dir / "state.db";
  {
    auto store = open_store(path);
    REQUIRE(store->create_key(key_record("k")));
  }  // last connection closed: WAL checkpointed into the main file
  REQUIRE_FALSE(std::filesystem::exists(path.string() + "-wal"));
  {
    // PRAGMA user_version lives at offset 60 of the header, 4 bytes big-endian.
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    REQUIRE(f);
    f.seekp(60);
    const char v[4] = {0, 0, 0, 99};
    f.write(v, 4);
    REQUIRE(f);
  }
  auto store = kms::open_sqlite_store(path);
  REQUIRE_FALSE(store);
  REQUIRE(store.error().code == Errc::storage_failure);
  INFO(store.error().message);
  REQUIRE(store.error().message.find("schema version 99 is newer") != std::string::npos);
}

TEST_CASE("sqlite store: 10000 key versions round trip and load_all timing", "[store][scale]") {
  test::TempDir dir;
  const auto path = dir / "state.db";
  constexpr std::uint32_t kKeys = 100;
  constexpr std::uint32_t kVersions = 100;
  {
    auto store = open_store(path);
    for (std::uint32_t k = 0; k < kKeys; ++k) {
      kms::KeyRecord rec = key_record(tagged("key-", 1000 + k), kVersions);
      for (auto& v : rec.versions) v.wrapped_key = blob(k * kVersions + v.version);
      REQUIRE(store->create_key(rec));
    }
    // One key grown version by version, as rotations do.
    REQUIRE(store->create_key(key_record("zz-rotated", 1)));
    for (std::uint32_t v = 2; v <= 50; ++v) REQUIRE(store->add_version("zz-rotated", version(v)));
  }
  auto store = open_store(path);
  double best_ms = 1e9;
  std::vector<kms::KeyRecord> all;
  for (int run = 0; run < 3; ++run) {
    const auto t0 = std::chrono::steady_clock::now();
    auto loaded = store->load_all();
    const auto t1 = std::chrono::steady_clock::now();
    REQUIRE(loaded);
    best_ms = std::min(best_ms, std::chrono::duration<double, std::milli>(t1 - t0).count());
    all = std::move(*loaded);
  }
  REQUIRE(all.size() == kKeys + 1);
  std::size_t versions = 0;
  for (std::uint32_t k = 0; k < kKeys; ++k) {
    const auto& rec = all[k];
    REQUIRE(rec.name == tagged("key-", 1000 + k));
    REQUIRE(rec.versions.size() == kVersions);
    for (std::uint32_t i = 0; i < kVersions; ++i) {
      REQUIRE(rec.versions[i].version == i + 1);
      REQUIRE(rec.versions[i].wrapped_key == blob(k * kVersions + i + 1));
    }
    versions += rec.versions.size();
  }
  REQUIRE(all.back().versions.size() == 50);
  versions += all.back().versions.size();
  WARN("load_all of " << all.size() << " keys / " << versions << " versions: best of 3 = " << best_ms << " ms");
}

// Two writers race to append to one key. Contract: a writer proposes
// latest + 1 as it last saw it; exactly one proposal per version number wins,
// the other gets `conflict`, re-reads and retries. The result has no gaps and
// no duplicates, and every acknowledged version is the one stored.
TEST_CASE("sqlite store: concurrent add_version leaves no gaps or duplicates", "[store][concurrency]") {
  test::TempDir dir;
  auto store = open_store(dir / "state.db");
  REQUIRE(store->create_key(key_record("k")));

  constexpr int kPerThread = 60;
  std::atomic<int> conflicts{0};
  std::atomic<int> unexpected_errors{0};
  std::vector<std::uint32_t> won[2];
  auto writer = [&](int id) {
    std::uint32_t latest = 1;
    while (static_cast<int>(won[id].size()) < kPerThread) {
      kms::KeyVersionRecord rec{latest + 1, 5000 + id, blob(latest + 1, 33 + static_cast<std::size_t>(id)),
                                tagged("k", static_cast<std::uint32_t>(id))};
      auto r = store->add_version("k", rec);
      if (r) {
        won[id].push_back(latest + 1);
        ++latest;
        continue;
      }
      if (r.error().code != Errc::conflict) {
        ++unexpected_errors;
        return;
      }
      ++conflicts;
      auto now = store->find("k");
      if (!now || !now->has_value()) {
        ++unexpected_errors;
        return;
      }
      latest = static_cast<std::uint32_t>((*now)->versions.size());
    }
  };
  std::thread a(writer, 0);
  std::thread b(writer, 1);
  a.join();
  b.join();
  REQUIRE(unexpected_errors == 0);

  std::vector<std::uint32_t> all = won[0];
  all.insert(all.end(), won[1].begin(), won[1].end());
  std::sort(all.begin(), all.end());
  REQUIRE(all.size() == 2 * kPerThread);
  for (std::size_t i = 0; i < all.size(); ++i) REQUIRE(all[i] == i + 2);  // 2..121, no gap, no duplicate

  auto k = store->find("k");
  REQUIRE(k);
  const auto& versions = (*k)->versions;
  REQUIRE(versions.size() == 2 * kPerThread + 1);
  for (int id = 0; id < 2; ++id) {
    for (std::uint32_t v : won[id]) {
      REQUIRE(versions[v - 1].root_kcv ==
              tagged("k", static_cast<std::uint32_t>(id)));  // the winner's record is stored
      REQUIRE(versions[v - 1].wrapped_key.size() == 33 + static_cast<std::size_t>(id));
    }
  }
  WARN("concurrent add_version: " << conflicts.load() << " conflicts retried");
}
