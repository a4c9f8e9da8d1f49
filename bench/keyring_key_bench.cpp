// The keyring key on SoftHSM2 (bench/keyring_key.sh sets up the token):
// unseal with many key versions (one HSM operation), a root rotation as
// `rootseal ceremony rotate-root` does its store part (the keyring key
// rewrapped by the new root), a keyring-key rotation (every version rewrapped
// in software), and the one-time migration of a store from before the
// keyring key. Prints medians and the HSM operations counted.
//
//   rootseal_bench_keyring_key <dir> <keys> <versions-per-key> [runs]
// The token: SOFTHSM2_CONF in the environment, label "bench", PIN 1234.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/keyring.hpp"
#include "rootseal/kms/keyring_key.hpp"
#include "bench_util.hpp"

using namespace rootseal;
using Clock = std::chrono::steady_clock;

namespace {

using bench::die;
using bench::must;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Counts what reaches the HSM.
class Counted final : public kms::RootOfTrust {
 public:
  explicit Counted(kms::RootOfTrust& inner) : inner_(inner) {}
  std::atomic<int> wraps{0};
  std::atomic<int> unwraps{0};
  [[nodiscard]] std::string_view kind() const noexcept override { return inner_.kind(); }
  kms::Result<void> probe() override { return inner_.probe(); }
  kms::Result<std::string> key_check_value() override { return inner_.key_check_value(); }
  kms::Result<std::vector<std::uint8_t>> wrap(const kms::SecureBytes& k) override {
    ++wraps;
    return inner_.wrap(k);
  }
  kms::Result<kms::SecureBytes> unwrap(std::span<const std::uint8_t> w) override {
    ++unwraps;
    return inner_.unwrap(w);
  }
  [[nodiscard]] std::size_t unwrap_parallelism() const noexcept override { return inner_.unwrap_parallelism(); }

 private:
  kms::RootOfTrust& inner_;
};

std::unique_ptr<hsm::Pkcs11Root> root_labelled(const std::string& label) {
  hsm::Pkcs11Config cfg;
  cfg.module = "/usr/lib/softhsm/libsofthsm2.so";
  cfg.token_label = "bench";
  cfg.key_label = label;
  cfg.generate_if_missing = true;
  auto root = hsm::Pkcs11Root::create(
      cfg, [] { return kms::Result<kms::SecureBytes>(kms::SecureBytes::copy_of(std::string_view("1234"))); });
  must(root->probe(), "probe");
  return root;
}

void populate(kms::Keyring& ring, long keys, long versions) {
  for (long k = 0; k < keys; ++k) {
    const std::string name = "bench-" + std::to_string(k);
    must(ring.create(name, {}), "create");
    for (long v = 1; v < versions; ++v) must(ring.rotate(name), "rotate");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) die("usage: rootseal_bench_keyring_key <dir> <keys> <versions-per-key> [runs]");
  const std::string dir = argv[1];
  const long keys = std::strtol(argv[2], nullptr, 10);
  const long versions = std::strtol(argv[3], nullptr, 10);
  const int runs = argc > 4 ? bench::parse_arg<int>(argv[4], "runs") : 5;
  auto hsm_root = root_labelled("bench-root");
  Counted root(*hsm_root);
  auto store = must(kms::open_sqlite_store(dir + "/rootseal.db"), "store");
  {
    kms::Keyring ring(*store, root);
    must(ring.unseal(), "unseal");
    populate(ring, keys, versions);
  }
  const long total = keys * versions;

  // 1. Unseal: a fresh keyring each run, as a starting rootseald.
  std::vector<double> unseal;
  int unwraps = 0;
  for (int i = 0; i < runs; ++i) {
    kms::Keyring ring(*store, root);
    root.unwraps = 0;
    const auto t0 = Clock::now();
    must(ring.unseal(), "unseal");
    unseal.push_back(ms_since(t0));
    unwraps = root.unwraps;
    if (ring.version_count() != static_cast<std::size_t>(total)) die("unseal loaded the wrong number of versions");
  }
  std::printf("unseal, %ld versions: median %.1f ms (min %.1f), %d HSM unwrap(s) per unseal\n", total, median(unseal),
              *std::min_element(unseal.begin(), unseal.end()), unwraps);

  // 2. Root rotation, the store part of rotate-root: the keyring key
  // unwrapped by the old root, wrapped by the new one (checked), one write.
  auto next_hsm = root_labelled("bench-root-next");
  Counted next(*next_hsm);
  const auto next_kcv = must(next.key_check_value(), "kcv");
  root.unwraps = 0;
  const auto t_rot = Clock::now();
  auto kks = must(store->keyring_keys(), "keyring keys");
  std::vector<kms::KeyringKeyRecord> moved;
  for (const auto& kk : kks) {
    auto key = must(root.unwrap(kk.wrapped), "unwrap keyring key");
    kms::KeyringKeyRecord m = kk;
    m.wrapped = must(next.wrap(key), "wrap keyring key");
    auto check = must(next.unwrap(m.wrapped), "check");
    if (!(check == key)) die("rewrap check failed");
    m.root_kcv = next_kcv;
    moved.push_back(std::move(m));
  }
  must(store->replace_wrapped({}, moved), "replace");
  const double rotate_root_ms = ms_since(t_rot);
  const int rotation_ops = root.unwraps + next.wraps + next.unwraps;
  {
    kms::Keyring ring(*store, next);
    next.unwraps = 0;
    const auto t0 = Clock::now();
    must(ring.unseal(), "unseal under the new root");
    std::printf(
        "root rotation, %ld versions: %.1f ms (%d HSM operations: unwrap by the old root, wrap by the new, "
        "its check); then unseal under the new root %.1f ms with %d HSM unwrap\n",
        total, rotate_root_ms, rotation_ops, ms_since(t0), next.unwraps.load());
  }

  // 3. Keyring-key rotation: every version rewrapped in software.
  {
    kms::Keyring ring(*store, next);
    must(ring.unseal(), "unseal");
    std::vector<double> rot;
    for (int i = 0; i < std::max(1, runs / 2); ++i) {
      next.wraps = 0;
      const auto t0 = Clock::now();
      auto st = must(ring.rotate_keyring_key(), "rotate keyring key");
      rot.push_back(ms_since(t0));
      if (st.pending_versions != 0) die("versions left behind");
    }
    std::printf("keyring-key rotation, %ld versions: median %.1f ms (%d HSM wrap each)\n", total, median(rot),
                next.wraps.load());
  }

  // 4. The one-time migration of a store from before the keyring key: every
  // version wrapped by the root directly (written here as old releases did).
  {
    auto legacy = must(kms::open_sqlite_store(dir + "/legacy.db"), "legacy store");
    const auto kcv = must(root.key_check_value(), "kcv");
    for (long k = 0; k < keys; ++k) {
      kms::KeyRecord rec;
      rec.name = "legacy-" + std::to_string(k);
      for (long v = 1; v <= versions; ++v) {
        auto kek = kms::SecureBytes::random(32);
        rec.versions.push_back({static_cast<std::uint32_t>(v), 0, must(hsm_root->wrap(kek), "legacy wrap"), kcv});
      }
      must(legacy->create_key(rec), "legacy create");
    }
    kms::Keyring ring(*legacy, root);
    root.unwraps = 0;
    const auto t0 = Clock::now();
    must(ring.unseal(), "migrating unseal");
    const double migrate_ms = ms_since(t0);
    const int migrate_unwraps = root.unwraps;
    kms::Keyring after(*legacy, root);
    root.unwraps = 0;
    const auto t1 = Clock::now();
    must(after.unseal(), "unseal after the migration");
    std::printf(
        "migration of a store from before the keyring key, %ld versions: first unseal %.1f ms (%d HSM "
        "unwraps, once); the next %.1f ms (%d)\n",
        total, migrate_ms, migrate_unwraps, ms_since(t1), root.unwraps.load());
  }
  return 0;
}
