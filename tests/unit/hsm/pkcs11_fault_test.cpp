// Pkcs11Root against a fault-injecting PKCS#11 module
// (tests/doubles/pkcs11_shim) in front of SoftHSM2: return values of a device
// that goes away, which SoftHSM itself never produces (it has no device),
// and a count of the C_Login calls that reach the token.
#include <dlfcn.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/hsm/token_probe.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "softhsm.hpp"
#include "raw_pkcs11.hpp"  // last: pkcs11.h (and pkcs11_api.hpp)

using rootseal::hsm::Pkcs11Config;
using rootseal::hsm::Pkcs11Root;
using rootseal::hsm::RootMechanism;
using rootseal::kms::Errc;
using rootseal::kms::SecureBytes;
using rootseal::test::RawSession;
using rootseal::test::SoftHsm;

namespace {

class Shim {
 public:
  Shim() : handle_(::dlopen(ROOTSEAL_PKCS11_SHIM, RTLD_NOW | RTLD_LOCAL)) {
    if (handle_ == nullptr) throw std::runtime_error(std::string("dlopen shim: ") + ::dlerror());
    set_fault_ = reinterpret_cast<void (*)(unsigned long)>(::dlsym(handle_, "rootseal_shim_set_fault"));
    logins_ = reinterpret_cast<long (*)()>(::dlsym(handle_, "rootseal_shim_login_calls"));
    hide_kcv_ = reinterpret_cast<void (*)(int)>(::dlsym(handle_, "rootseal_shim_hide_check_value"));
    kwp_ = reinterpret_cast<void (*)(int)>(::dlsym(handle_, "rootseal_shim_kwp"));
    kwp_calls_ = reinterpret_cast<long (*)(unsigned long)>(::dlsym(handle_, "rootseal_shim_kwp_calls"));
    if (set_fault_ == nullptr || logins_ == nullptr || hide_kcv_ == nullptr || kwp_ == nullptr ||
        kwp_calls_ == nullptr) {
      throw std::runtime_error("shim control missing");
    }
  }
  ~Shim() {
    set_fault_(0);
    hide_kcv_(0);
    kwp_(0);
    ::dlclose(handle_);
  }
  Shim(const Shim&) = delete;
  Shim& operator=(const Shim&) = delete;

  void fault(CK_RV rv) { set_fault_(rv); }
  long logins() { return logins_(); }
  void hide_check_value(bool on) { hide_kcv_(on ? 1 : 0); }
  // The KWP constants as the token shows them (pkcs11_shim.cpp): offer
  // 0x210B, hide 0x210A, make 0x210A another algorithm.
  static constexpr int kOfferV3 = 1, kHidePad = 2, kPadDiffers = 4;
  void kwp(int flags) { kwp_(flags); }
  long kwp_calls(unsigned long mech) { return kwp_calls_(mech); }

  static Pkcs11Config config(const SoftHsm& hsm) {
    Pkcs11Config c = hsm.config();
    c.module = ROOTSEAL_PKCS11_SHIM;
    return c;
  }

 private:
  void* handle_;
  void (*set_fault_)(unsigned long) = nullptr;
  long (*logins_)() = nullptr;
  void (*hide_kcv_)(int) = nullptr;
  void (*kwp_)(int) = nullptr;
  long (*kwp_calls_)(unsigned long) = nullptr;
};

std::unique_ptr<Pkcs11Root> connected(const SoftHsm& hsm, Pkcs11Config cfg) {
  auto root = Pkcs11Root::create(std::move(cfg), hsm.pin_source());
  auto r = root->probe();
  INFO((r ? std::string("ok") : r.error().message));
  REQUIRE(r);
  return root;
}

}  // namespace

TEST_CASE("fault: CKR_DEVICE_REMOVED makes the root unavailable until the device is back") {
  SoftHsm hsm;
  Shim shim;
  auto root = connected(hsm, Shim::config(hsm));
  const auto key = SecureBytes::random(32);
  const auto w = *root->wrap(key);
  const long logins = shim.logins();
  CHECK(logins == 1);

  shim.fault(CKR_DEVICE_REMOVED);
  auto u = root->unwrap(w);
  REQUIRE_FALSE(u);
  CHECK(u.error().code == Errc::unavailable);
  CHECK_THAT(u.error().message, Catch::Contains("C_UnwrapKey: CKR_DEVICE_REMOVED"));
  for (int i = 0; i < 3; ++i) {
    auto p = root->probe();
    REQUIRE_FALSE(p);
    CHECK(p.error().code == Errc::unavailable);
    CHECK_THAT(p.error().message, Catch::Contains("not found"));
  }
  CHECK(root->wrap(key).error().code == Errc::unavailable);

  shim.fault(0);
  REQUIRE(root->probe());
  CHECK(shim.logins() == logins + 1);  // logged in again after C_Finalize/C_Initialize
  auto back = root->unwrap(w);
  REQUIRE(back);
  CHECK(*back == key);
}

TEST_CASE("fault: every disconnect-class return value drops the pool and probe recovers") {
  const CK_RV rv =
      GENERATE(CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED,
               CKR_USER_NOT_LOGGED_IN, CKR_DEVICE_ERROR, CKR_CRYPTOKI_NOT_INITIALIZED, CKR_TOKEN_NOT_RECOGNIZED);
  const bool gcm = GENERATE(false, true);
  const std::string name(rootseal::hsm::rv_name(rv));
  CAPTURE(name, gcm);
  SoftHsm hsm;
  Shim shim;
  auto cfg = Shim::config(hsm);
  cfg.mechanism = gcm ? RootMechanism::aes_gcm : RootMechanism::automatic;
  auto root = connected(hsm, cfg);
  const auto key = SecureBytes::random(32);
  const auto w = *root->wrap(key);

  shim.fault(rv);
  auto failed = root->wrap(key);
  REQUIRE_FALSE(failed);
  CHECK(failed.error().code == Errc::unavailable);
  CHECK_THAT(failed.error().message, Catch::Contains(name));
  shim.fault(0);
  // Disconnected until the next probe, even though the device is fine again.
  auto still = root->unwrap(w);
  REQUIRE_FALSE(still);
  CHECK(still.error().code == Errc::unavailable);
  REQUIRE(root->probe());
  auto u = root->unwrap(w);
  REQUIRE(u);
  CHECK(*u == key);
}

TEST_CASE("fault: probe notices a lost login or session and reconnects") {
  const CK_RV rv = GENERATE(CKR_USER_NOT_LOGGED_IN, CKR_SESSION_HANDLE_INVALID, CKR_DEVICE_ERROR);
  CAPTURE(rootseal::hsm::rv_name(rv));
  SoftHsm hsm;
  Shim shim;
  auto root = connected(hsm, Shim::config(hsm));
  shim.fault(rv);
  auto p = root->probe();
  REQUIRE_FALSE(p);
  CHECK(p.error().code == Errc::unavailable);
  shim.fault(0);
  REQUIRE(root->probe());
  CHECK(root->wrap(SecureBytes::random(32)));
}

TEST_CASE("fault: other failures are reported without dropping the connection") {
  SoftHsm hsm;
  Shim shim;
  auto root = connected(hsm, Shim::config(hsm));
  const auto key = SecureBytes::random(32);
  shim.fault(CKR_FUNCTION_FAILED);
  auto w = root->wrap(key);
  REQUIRE_FALSE(w);
  CHECK(w.error().code == Errc::crypto_failure);
  CHECK_THAT(w.error().message, Catch::Contains("CKR_FUNCTION_FAILED"));
  shim.fault(0);
  auto again = root->wrap(key);  // no probe needed
  REQUIRE(again);
  CHECK(*root->unwrap(*again) == key);
}

TEST_CASE("fault: a wrong PIN reaches C_Login exactly once") {
  SoftHsm hsm("t", "1234");
  Shim shim;
  std::string pin = "0001";
  int asked = 0;
  const long logins0 = shim.logins();  // the shim's counter lives as long as the process
  auto root = Pkcs11Root::create(Shim::config(hsm), [&]() -> rootseal::kms::Result<SecureBytes> {
    ++asked;
    return SecureBytes::copy_of(std::string_view(pin));
  });
  for (int i = 0; i < 10; ++i) {
    auto p = root->probe();
    REQUIRE_FALSE(p);
    CHECK(p.error().code == Errc::sealed);
    CHECK(p.error().message.find(pin) == std::string::npos);
  }
  CHECK(asked == 10);
  CHECK(shim.logins() == logins0 + 1);
  pin = "0002";  // another wrong PIN is tried (once)
  CHECK_FALSE(root->probe());
  CHECK_FALSE(root->probe());
  CHECK(shim.logins() == logins0 + 2);
  pin = "1234";
  REQUIRE(root->probe());
  CHECK(shim.logins() == logins0 + 3);
  REQUIRE(root->probe());  // connected: a liveness check, no login
  CHECK(shim.logins() == logins0 + 3);
}

TEST_CASE("fault: operations racing a device removal and return only succeed or say unavailable") {
  SoftHsm hsm;
  Shim shim;
  auto cfg = Shim::config(hsm);
  cfg.max_sessions = 3;
  auto root = connected(hsm, cfg);
  const auto key = SecureBytes::random(32);
  const auto w = *root->wrap(key);

  std::atomic<bool> stop{false};
  std::atomic<long> ok{0};
  std::atomic<long> unavailable{0};
  std::atomic<long> other{0};
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      while (!stop) {
        bool good = false;
        Errc code = Errc::internal;
        if (t % 2 == 0) {
          auto r = root->wrap(key);
          good = r && *r == w;
          if (!r) code = r.error().code;
        } else {
          auto r = root->unwrap(w);
          good = r && *r == key;
          if (!r) code = r.error().code;
        }
        if (good) {
          ++ok;
        } else if (code == Errc::unavailable) {
          ++unavailable;
        } else {
          ++other;
        }
      }
    });
  }
  auto wait_for = [](const std::atomic<long>& counter, long target) {
    while (counter.load() < target) std::this_thread::yield();
  };
  for (int round = 0; round < 5; ++round) {
    wait_for(ok, ok.load() + 50);
    shim.fault(round % 2 == 0 ? CKR_DEVICE_REMOVED : CKR_SESSION_HANDLE_INVALID);
    wait_for(unavailable, unavailable.load() + 20);
    (void)root->probe();  // may or may not fail, depending on the fault
    shim.fault(0);
    while (!root->probe()) std::this_thread::yield();
  }
  wait_for(ok, ok.load() + 50);
  stop = true;
  for (auto& th : threads) th.join();
  CHECK(other == 0);
  CHECK(unavailable >= 100);
  CHECK(ok >= 300);
  CHECK(*root->unwrap(w) == key);
}

TEST_CASE("fault: without CKA_CHECK_VALUE the key check value falls back to a stable derivation") {
  const bool gcm = GENERATE(false, true);
  CAPTURE(gcm);
  SoftHsm hsm;
  Shim shim;
  auto cfg = Shim::config(hsm);
  cfg.mechanism = gcm ? RootMechanism::aes_gcm : RootMechanism::automatic;
  std::string token_kcv;
  {
    auto root = connected(hsm, cfg);
    token_kcv = *root->key_check_value();
  }
  shim.hide_check_value(true);
  std::string fallback;
  {
    auto root = connected(hsm, cfg);
    auto k = root->key_check_value();
    REQUIRE(k);
    fallback = *k;
    CHECK(fallback.size() == 6);
    CHECK(fallback.find_first_not_of("0123456789abcdef") == std::string::npos);
    if (!gcm) {
      // Documented: the first 3 bytes of KWP(root, 0^128).
      auto w = root->wrap(SecureBytes(16));
      REQUIRE(w);
      CHECK(fallback == rootseal::hsm::detail::to_hex(std::span<const std::uint8_t>(w->data() + 1, 3)));
    }
  }
  auto again = connected(hsm, cfg);
  CHECK(*again->key_check_value() == fallback);
  shim.hide_check_value(false);
  auto plain = connected(hsm, cfg);
  CHECK(*plain->key_check_value() == token_kcv);
}

TEST_CASE("fault: without CKA_CHECK_VALUE two objects under the root key's label are refused, copies or not") {
  SoftHsm hsm;
  Shim shim;
  const auto value = SecureBytes::random(32);
  {
    RawSession raw(rootseal::test::kSoftHsmModule, hsm.label());
    REQUIRE(raw.login(hsm.user_pin()) == CKR_OK);
    raw.create_secret_key(CKK_AES, "rootseal-root", value.span(), true, true, false);
    raw.create_secret_key(CKK_AES, "rootseal-root", value.span(), true, true, false);
  }
  auto cfg = Shim::config(hsm);
  cfg.generate_if_missing = false;
  CHECK(connected(hsm, cfg)->key_check_value());  // the token shows CKA_CHECK_VALUE: one key
  shim.hide_check_value(true);
  auto root = Pkcs11Root::create(cfg, hsm.pin_source());
  auto r = root->probe();
  shim.hide_check_value(false);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::sealed);
  CHECK_THAT(r.error().message, Catch::Contains("not copies of one key"));
}

// PKCS#11 v3.0's CKM_AES_KEY_WRAP_KWP (0x210B) is RFC 5649 by definition;
// 0x210A is RFC 5649 in SoftHSM2 (and v2.40) but PKCS#7 + RFC 3394 in v3.1.
// rootseald wraps with 0x210B where the token offers it and the key allows it.
TEST_CASE("fault: aes-kwp wraps with CKM_AES_KEY_WRAP_KWP where offered, and the blobs are the RFC 5649 ones") {
  SoftHsm hsm;
  Shim shim;
  auto cfg = Shim::config(hsm);
  cfg.mechanism = RootMechanism::aes_kwp;
  const auto secret = SecureBytes::random(32);
  // The shim's counters live as long as the process (every section, every
  // test case of the run): compare differences.
  const long pad0 = shim.kwp_calls(0x210A);
  const long v3_0 = shim.kwp_calls(0x210B);
  std::vector<std::uint8_t> under_pad;
  {
    // A key made while the token showed only 0x210A: it allows only 0x210A.
    auto root = connected(hsm, cfg);
    auto w = root->wrap(secret);
    REQUIRE(w);
    under_pad = *w;
    CHECK(shim.kwp_calls(0x210A) == pad0 + 1);
    CHECK(shim.kwp_calls(0x210B) == v3_0);
  }
  SECTION("a key that allows only 0x210A keeps it where the token offers both") {
    shim.kwp(Shim::kOfferV3);
    auto root = connected(hsm, cfg);
    auto w = root->wrap(secret);
    REQUIRE(w);
    CHECK(shim.kwp_calls(0x210B) == v3_0);
    CHECK(shim.kwp_calls(0x210A) == pad0 + 2);
    auto back = root->unwrap(under_pad);
    REQUIRE(back);
    CHECK(*back == secret);
  }
  SECTION("a key made where the token offers 0x210B only (Luna-like) wraps with it, into the same RFC 5649 bytes") {
    shim.kwp(Shim::kOfferV3 | Shim::kHidePad);
    cfg.key_label = "rootseal-root-v3";
    std::vector<std::uint8_t> under_v3;
    {
      auto root = connected(hsm, cfg);               // generates the key: it allows 0x210B
      REQUIRE(root->root_mechanism() == "aes-kwp");  // not aes-gcm for want of 0x210A
      auto w = root->wrap(secret);
      REQUIRE(w);
      under_v3 = *w;
      CHECK(shim.kwp_calls(0x210B) >= v3_0 + 1);
      CHECK(shim.kwp_calls(0x210A) == pad0 + 1);  // only the wrap above, before the shim hid it
      auto back = root->unwrap(under_v3);
      REQUIRE(back);
      CHECK(*back == secret);
    }
    // `hsm probe` names the constant the token offers.
    auto probe = rootseal::hsm::probe_token(ROOTSEAL_PKCS11_SHIM, hsm.label());
    REQUIRE(probe);
    const auto& kwp = probe->roots.front();
    CHECK(kwp.name == "aes-kwp");
    CHECK(kwp.usable());
    CHECK_THAT(kwp.needs, Catch::Contains("CKM_AES_KEY_WRAP_KWP"));
    // The blob opens under 0x210A on SoftHSM2 itself: the same algorithm.
    shim.kwp(0);
    auto plain = connected(hsm, cfg);
    auto back = plain->unwrap(under_v3);
    REQUIRE(back);
    CHECK(*back == secret);
    CHECK(under_v3[0] == under_pad[0]);  // one blob format
  }
}

TEST_CASE("fault: blobs made under a 0x210A that is not RFC 5649 still open once rootseald wraps with 0x210B") {
  SoftHsm hsm;
  Shim shim;
  auto cfg = Shim::config(hsm);
  cfg.mechanism = RootMechanism::aes_kwp;
  const auto secret = SecureBytes::random(32);
  // The key allows both constants (made while the token offered both), but
  // the blob was made with 0x210A read the v3.1 way.
  shim.kwp(Shim::kOfferV3 | Shim::kPadDiffers);
  std::vector<std::uint8_t> legacy;
  {
    const long v3_0 = shim.kwp_calls(0x210B);  // (the counters live as long as the process)
    auto root = connected(hsm, cfg);
    auto w = root->wrap(secret);
    REQUIRE(w);
    CHECK(shim.kwp_calls(0x210B) == v3_0 + 1);
  }
  // The same key, a blob made with 0x210A as an older rootseald would.
  shim.kwp(Shim::kPadDiffers);
  {
    auto root = connected(hsm, cfg);
    auto w = root->wrap(secret);
    REQUIRE(w);
    legacy = *w;
  }
  shim.kwp(Shim::kOfferV3 | Shim::kPadDiffers);
  auto root = connected(hsm, cfg);
  const long v3_before = shim.kwp_calls(0x210B);
  const long pad_before = shim.kwp_calls(0x210A);
  auto back = root->unwrap(legacy);
  REQUIRE(back);
  CHECK(*back == secret);
  CHECK(shim.kwp_calls(0x210B) == v3_before + 1);   // tried first, refused the blob
  CHECK(shim.kwp_calls(0x210A) == pad_before + 1);  // then the legacy constant
}

TEST_CASE("fault: a module initialized behind the registry's back is refused") {
  SoftHsm hsm;
  void* h = ::dlopen(rootseal::test::kSoftHsmModule, RTLD_NOW | RTLD_LOCAL);
  REQUIRE(h != nullptr);
  auto get = reinterpret_cast<CK_RV (*)(CK_FUNCTION_LIST_PTR_PTR)>(::dlsym(h, "C_GetFunctionList"));
  REQUIRE(get != nullptr);
  CK_FUNCTION_LIST* api = nullptr;
  REQUIRE(get(&api) == CKR_OK);
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  REQUIRE(api->C_Initialize(&args) == CKR_OK);

  auto root = Pkcs11Root::create(hsm.config(), hsm.pin_source());
  auto p = root->probe();
  REQUIRE_FALSE(p);
  CHECK(p.error().code == Errc::unavailable);
  CHECK_THAT(p.error().message, Catch::Contains("CKR_CRYPTOKI_ALREADY_INITIALIZED"));
  CHECK_THAT(p.error().message, Catch::Contains("another component"));

  REQUIRE(api->C_Finalize(nullptr) == CKR_OK);
  REQUIRE(root->probe());  // ours now
  CHECK(root->wrap(SecureBytes::random(32)));
  root.reset();
  ::dlclose(h);
}
