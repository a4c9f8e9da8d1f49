// tpm::TpmRoot (the TPM-sealed root key as kms::RootOfTrust) and the
// sealed-secret file helpers (the TPM-sealed HSM PIN), against swtpm.
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "rootseal/kms/key_wrap.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "rootseal/tpm/tpm_root.hpp"
#include "swtpm.hpp"
#include "temp_dir.hpp"
#include "tpm_test_util.hpp"

using rootseal::kms::Errc;
using rootseal::kms::SecureBytes;
using rootseal::test::extend_pcr;
using rootseal::test::open_tpm;
using rootseal::test::require_no_leaked_handles;
using rootseal::test::Swtpm;
using rootseal::test::TempDir;
using rootseal::tpm::SealPolicy;
using rootseal::tpm::Tpm;
using rootseal::tpm::TpmRoot;
using rootseal::tpm::TpmRootConfig;
namespace fs = std::filesystem;

namespace {

TpmRootConfig config_for(const Swtpm& sw, const TempDir& dir, SealPolicy policy = {}) {
  TpmRootConfig c;
  c.tcti = sw.tcti();
  c.blob_path = dir / "tpm-root.seal";
  c.policy = std::move(policy);
  return c;
}

void require_ok(const rootseal::kms::Result<void>& r) {
  INFO((r ? std::string("ok") : r.error().message));
  REQUIRE(r);
}

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

// Extends a PCR over a short-lived connection (swtpm serves one at a time).
void extend(const Swtpm& sw, std::uint32_t pcr) {
  Tpm t = open_tpm(sw);
  extend_pcr(t, pcr);
}

void require_tpm_clean(const Swtpm& sw) {
  Tpm t = open_tpm(sw);
  require_no_leaked_handles(t);
}

}  // namespace

TEST_CASE("TpmRoot: initialize, wrap/unwrap, after a restart a new TpmRoot unwraps it with the same KCV") {
  Swtpm sw;
  TempDir dir;
  const SecureBytes kek = SecureBytes::random(32);
  std::vector<std::uint8_t> wrapped;
  std::string kcv;
  {
    auto root = TpmRoot::create(config_for(sw, dir));
    CHECK(root->kind() == "tpm");
    CHECK_FALSE(root->holds_key());
    require_ok(root->initialize());
    CHECK(root->holds_key());
    require_ok(root->probe());
    auto w = root->wrap(kek);
    REQUIRE(w);
    wrapped = *w;
    auto u = root->unwrap(wrapped);
    REQUIRE(u);
    CHECK(*u == kek);
    auto k = root->key_check_value();
    REQUIRE(k);
    kcv = *k;
    CHECK(kcv.size() == 6);
  }
  struct stat st{};
  REQUIRE(::stat((dir / "tpm-root.seal").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  sw.restart();  // a reboot: PCR 7 back to the same value
  auto root = TpmRoot::create(config_for(sw, dir));
  auto before = root->unwrap(wrapped);
  REQUIRE_FALSE(before);
  CHECK(before.error().code == Errc::sealed);  // not unsealed before the first probe
  require_ok(root->probe());
  CHECK(*root->key_check_value() == kcv);
  auto u = root->unwrap(wrapped);
  REQUIRE(u);
  CHECK(*u == kek);
  require_ok(root->probe());  // again: still the same key
  CHECK(*root->key_check_value() == kcv);
  require_tpm_clean(sw);

  // A second initialize must not overwrite the sealed root key.
  auto again = TpmRoot::create(config_for(sw, dir))->initialize();
  REQUIRE_FALSE(again);
  CHECK(again.error().code == Errc::already_exists);
}

TEST_CASE("TpmRoot: before initialize, probe is sealed with a reason and wrap refuses") {
  Swtpm sw;
  TempDir dir;
  auto root = TpmRoot::create(config_for(sw, dir));
  auto p = root->probe();
  REQUIRE_FALSE(p);
  CHECK(p.error().code == Errc::sealed);
  CHECK(contains(p.error().message, "no TPM-sealed root key"));
  auto w = root->wrap(SecureBytes::random(32));
  REQUIRE_FALSE(w);
  CHECK(w.error().code == Errc::sealed);
  CHECK(contains(w.error().message, "no TPM-sealed root key"));  // the last probe's reason
  CHECK(root->key_check_value().error().code == Errc::sealed);
}

TEST_CASE("TpmRoot: a PCR change makes probe fail sealed and drops the key, reseal brings it back") {
  Swtpm sw;
  TempDir dir;
  const SecureBytes kek = SecureBytes::random(32);
  auto root = TpmRoot::create(config_for(sw, dir));
  require_ok(root->initialize());
  const auto wrapped = *root->wrap(kek);
  REQUIRE(root->key_check_value());

  extend(sw, 7);
  auto p = root->probe();
  REQUIRE_FALSE(p);
  CHECK(p.error().code == Errc::sealed);
  CHECK(contains(p.error().message,
                 "TPM policy check failed: PCR values changed since sealing (reseal after an intended change)"));
  CHECK_FALSE(root->holds_key());
  auto w = root->unwrap(wrapped);
  REQUIRE_FALSE(w);
  CHECK(w.error().code == Errc::sealed);
  CHECK(contains(w.error().message, "PCR values changed"));
  // Without the key held nothing can reseal (the ceremony's import_key can).
  auto r = root->reseal(SealPolicy{});
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::sealed);
  require_tpm_clean(sw);
}

TEST_CASE("TpmRoot: reseal of the held key under new PCR values (an intended change)") {
  Swtpm sw;
  TempDir dir;
  const SecureBytes kek = SecureBytes::random(32);
  std::vector<std::uint8_t> wrapped;
  std::string kcv;
  {
    auto root = TpmRoot::create(config_for(sw, dir));
    require_ok(root->initialize());
    wrapped = *root->wrap(kek);
    kcv = *root->key_check_value();
  }
  auto root = TpmRoot::create(config_for(sw, dir));
  require_ok(root->probe());  // the daemon is up and holds the key
  extend(sw, 7);              // the intended change (e.g. a firmware update's measurement)
  SealPolicy wider;
  wider.pcrs = {7, 11};
  require_ok(root->reseal(wider));
  require_ok(root->probe());
  CHECK(*root->key_check_value() == kcv);

  // A new TpmRoot over the resealed file: same key.
  auto fresh = TpmRoot::create(config_for(sw, dir, wider.clone()));
  require_ok(fresh->probe());
  CHECK(*fresh->key_check_value() == kcv);
  CHECK(*fresh->unwrap(wrapped) == kek);
  // And it is bound to PCR 11 now.
  extend(sw, 11);
  CHECK(fresh->probe().error().code == Errc::sealed);
  require_tpm_clean(sw);
}

TEST_CASE("TpmRoot: verify_on_probe=false keeps a held key across a PCR change") {
  Swtpm sw;
  TempDir dir;
  auto cfg = config_for(sw, dir);
  cfg.verify_on_probe = false;
  auto root = TpmRoot::create(std::move(cfg));
  require_ok(root->initialize());
  extend(sw, 7);
  require_ok(root->probe());
  CHECK(root->holds_key());
  // A new instance (a restart) cannot unseal any more.
  auto restarted = TpmRoot::create(config_for(sw, dir));
  CHECK(restarted->probe().error().code == Errc::sealed);
}

TEST_CASE("TpmRoot: an auth value, a wrong one is sealed with a clear reason") {
  Swtpm sw;
  TempDir dir;
  SealPolicy policy;
  policy.auth_value = SecureBytes::copy_of(std::string_view("tpm pin"));
  require_ok(TpmRoot::create(config_for(sw, dir, policy.clone()))->initialize());
  auto right = TpmRoot::create(config_for(sw, dir, policy.clone()));
  require_ok(right->probe());

  SealPolicy wrong = policy.clone();
  wrong.auth_value = SecureBytes::copy_of(std::string_view("tpm pun"));
  auto root = TpmRoot::create(config_for(sw, dir, std::move(wrong)));
  for (int i = 0; i < 5; ++i) {
    auto p = root->probe();
    REQUIRE_FALSE(p);
    CHECK(p.error().code == Errc::sealed);
    CHECK(contains(p.error().message, "wrong TPM auth value"));
  }
  require_ok(right->probe());  // no lockout
}

TEST_CASE("TpmRoot: no TPM is unavailable with a 'no TPM' reason, and recovers when it appears") {
  TempDir dir;
  const std::string tcti = "swtpm:host=127.0.0.1,port=" + std::to_string(Swtpm::unused_port());
  const fs::path blob_path = dir / "tpm-root.seal";
  auto init = TpmRoot::create(TpmRootConfig{tcti, blob_path, {}, true})->initialize();
  REQUIRE_FALSE(init);
  CHECK(init.error().code == Errc::unavailable);
  CHECK(contains(init.error().message, "no TPM at " + tcti));
  CHECK_FALSE(fs::exists(blob_path));

  // A sealed root key, then the TPM vanishes.
  auto sw = std::make_unique<Swtpm>();
  TpmRootConfig live{sw->tcti(), blob_path, {}, true};
  auto root = TpmRoot::create(std::move(live));
  require_ok(root->initialize());
  sw->stop();
  auto p = root->probe();
  REQUIRE_FALSE(p);
  CHECK(p.error().code == Errc::unavailable);
  CHECK(contains(p.error().message, "no TPM at "));
  CHECK_FALSE(root->holds_key());
  sw->restart();  // back (same port, same state): the next probe unseals
  require_ok(root->probe());
  CHECK(root->holds_key());
}

TEST_CASE("TpmRoot: import_key seals a given key (ceremony restore) and keeps its KCV") {
  Swtpm sw;
  TempDir dir;
  const SecureBytes key = SecureBytes::random(32);
  auto expected_kcv = rootseal::kms::aes_key_check_value(key);
  REQUIRE(expected_kcv);
  auto root = TpmRoot::create(config_for(sw, dir));
  CHECK(root->import_key(SecureBytes::random(16), false).error().code == Errc::invalid_argument);
  require_ok(root->import_key(key.clone(), false));
  CHECK(*root->key_check_value() == rootseal::kms::hex_encode(*expected_kcv));
  CHECK(root->import_key(key.clone(), false).error().code == Errc::already_exists);

  // After a PCR change the ceremony restores the key and replaces the blob.
  extend(sw, 7);
  auto restarted = TpmRoot::create(config_for(sw, dir));
  CHECK(restarted->probe().error().code == Errc::sealed);
  require_ok(restarted->import_key(key.clone(), true));
  require_ok(TpmRoot::create(config_for(sw, dir))->probe());
}

TEST_CASE("TpmRoot: wrap/unwrap from several threads while probe runs") {
  Swtpm sw;
  TempDir dir;
  auto root = TpmRoot::create(config_for(sw, dir));
  require_ok(root->initialize());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 200; ++j) {
        const SecureBytes kek = SecureBytes::random(32);
        auto w = root->wrap(kek);
        if (!w) {
          ++failures;
          continue;
        }
        auto u = root->unwrap(*w);
        if (!u || !(*u == kek)) ++failures;
      }
    });
  }
  for (int i = 0; i < 5; ++i) require_ok(root->probe());
  for (auto& t : threads) t.join();
  CHECK(failures.load() == 0);
}

TEST_CASE("sealed PIN file: seal, unseal, auth value, PCR change, missing file") {
  Swtpm sw;
  TempDir dir;
  const fs::path path = dir / "hsm-pin.seal";
  const SecureBytes pin = SecureBytes::copy_of(std::string_view("0123456789"));
  require_ok(rootseal::tpm::seal_secret_to_file(sw.tcti(), SealPolicy{}, pin, path));
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto back = rootseal::tpm::unseal_secret_from_file(sw.tcti(), path);
  REQUIRE(back);
  CHECK(*back == pin);

  SealPolicy with_auth;
  with_auth.auth_value = SecureBytes::copy_of(std::string_view("extra"));
  const fs::path path2 = dir / "hsm-pin-auth.seal";
  require_ok(rootseal::tpm::seal_secret_to_file(sw.tcti(), with_auth, pin, path2));
  CHECK(rootseal::tpm::unseal_secret_from_file(sw.tcti(), path2).error().code == Errc::sealed);
  auto back2 = rootseal::tpm::unseal_secret_from_file(sw.tcti(), with_auth, path2);
  REQUIRE(back2);
  CHECK(*back2 == pin);

  CHECK(rootseal::tpm::seal_secret_to_file(sw.tcti(), SealPolicy{}, SecureBytes::random(129), dir / "big.seal")
            .error()
            .code == Errc::invalid_argument);
  CHECK(rootseal::tpm::unseal_secret_from_file(sw.tcti(), dir / "absent.seal").error().code == Errc::not_found);

  extend(sw, 7);
  auto broken = rootseal::tpm::unseal_secret_from_file(sw.tcti(), path);
  REQUIRE_FALSE(broken);
  CHECK(broken.error().code == Errc::sealed);
  CHECK(contains(broken.error().message, "PCR values changed since sealing"));
  require_tpm_clean(sw);
}
