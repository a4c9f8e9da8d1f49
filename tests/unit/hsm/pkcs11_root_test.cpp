// hsm::Pkcs11Root and hsm::provision_token against a real SoftHSM2 token.
// Every TEST_CASE runs in its own process (catch_discover_tests) with its own
// token folder (rootseal::test::SoftHsm).
#include <openssl/evp.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "softhsm.hpp"
#include "raw_pkcs11.hpp"  // last: pkcs11.h

using rootseal::hsm::Pkcs11Config;
using rootseal::hsm::Pkcs11Root;
using rootseal::hsm::RootMechanism;
using rootseal::kms::Errc;
using rootseal::kms::SecureBytes;
using rootseal::test::RawSession;
using rootseal::test::SoftHsm;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<Pkcs11Root> connected_root(const SoftHsm& hsm, Pkcs11Config cfg) {
  auto root = Pkcs11Root::create(std::move(cfg), hsm.pin_source());
  auto r = root->probe();
  INFO((r ? std::string("ok") : r.error().message));
  REQUIRE(r);
  return root;
}

std::unique_ptr<Pkcs11Root> connected_root(const SoftHsm& hsm) { return connected_root(hsm, hsm.config()); }

// A config for another token of the same store.
Pkcs11Config config_for(const SoftHsm& hsm, std::string label, bool force_gcm = false) {
  Pkcs11Config c = hsm.config();
  c.token_label = std::move(label);
  c.mechanism = force_gcm ? RootMechanism::aes_gcm : RootMechanism::automatic;
  return c;
}

// The folder SoftHSM keeps the token with this label in (tokendir/<uuid>/).
fs::path token_folder(const SoftHsm& hsm, const std::string& label) {
  std::string padded = label;
  padded.resize(32, ' ');
  for (const auto& e : fs::directory_iterator(hsm.token_dir())) {
    std::ifstream f(e.path() / "token.object", std::ios::binary);
    const std::string content((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (content.find(padded) != std::string::npos) return e.path();
  }
  FAIL("no token folder for " << label);
  return {};
}

std::vector<std::uint8_t> aes_ecb_zero_block(std::span<const std::uint8_t> key) {
  std::vector<std::uint8_t> out(32);
  const EVP_CIPHER* c = key.size() == 16 ? EVP_aes_128_ecb() : key.size() == 24 ? EVP_aes_192_ecb() : EVP_aes_256_ecb();
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  const std::uint8_t zero[16] = {};
  int n = 0;
  REQUIRE(EVP_EncryptInit_ex(ctx, c, nullptr, key.data(), nullptr) == 1);
  EVP_CIPHER_CTX_set_padding(ctx, 0);
  REQUIRE(EVP_EncryptUpdate(ctx, out.data(), &n, zero, 16) == 1);
  EVP_CIPHER_CTX_free(ctx);
  out.resize(16);
  return out;
}

std::string hex(std::span<const std::uint8_t> b) { return rootseal::hsm::detail::to_hex(b); }

}  // namespace

// ----- provisioning --------------------------------------------------------------

TEST_CASE("provision_token initializes a token once and the label is then taken") {
  SoftHsm hsm("first");  // provisions "first" through provision_token
  auto again = rootseal::hsm::provision_token(rootseal::test::kSoftHsmModule, "first",
                                              SecureBytes::copy_of(std::string_view("0000")),
                                              SecureBytes::copy_of(std::string_view("1234")));
  REQUIRE_FALSE(again);
  CHECK(again.error().code == Errc::already_exists);

  hsm.add_token("second");
  RawSession raw(rootseal::test::kSoftHsmModule, "second");
  const CK_FLAGS flags = raw.token_flags();
  CHECK((flags & CKF_TOKEN_INITIALIZED) != 0);
  CHECK((flags & CKF_USER_PIN_INITIALIZED) != 0);
  CHECK(raw.login("1234") == CKR_OK);

  auto too_long = rootseal::hsm::provision_token(rootseal::test::kSoftHsmModule, std::string(33, 'x'),
                                                 SecureBytes::copy_of(std::string_view("0000")),
                                                 SecureBytes::copy_of(std::string_view("1234")));
  REQUIRE_FALSE(too_long);
  CHECK(too_long.error().code == Errc::invalid_argument);
}

TEST_CASE("provision_token works while a Pkcs11Root holds the module initialized") {
  SoftHsm hsm("a");
  auto root = connected_root(hsm);
  auto wrapped = root->wrap(SecureBytes::random(32));
  REQUIRE(wrapped);
  hsm.add_token("b");  // same process, same initialized module
  auto root_b = connected_root(hsm, config_for(hsm, "b"));
  CHECK(root->unwrap(*wrapped));  // the first root was not disturbed
}

TEST_CASE("rv_name names return values") {
  CHECK(rootseal::hsm::rv_name(CKR_OK) == "CKR_OK");
  CHECK(rootseal::hsm::rv_name(CKR_PIN_INCORRECT) == "CKR_PIN_INCORRECT");
  CHECK(rootseal::hsm::rv_name(CKR_KEY_HANDLE_INVALID) == "CKR_KEY_HANDLE_INVALID");
  CHECK(rootseal::hsm::rv_name(CKR_VENDOR_DEFINED + 5) == "CKR_VENDOR_DEFINED");
  CHECK(rootseal::hsm::rv_name(0x7777) == "CKR_UNKNOWN");
  CHECK(rootseal::hsm::detail::ck_message("C_WrapKey", CKR_KEY_HANDLE_INVALID) == "C_WrapKey: CKR_KEY_HANDLE_INVALID");
}

// ----- the root key ----------------------------------------------------------------

TEST_CASE("the generated root key cannot be read out of the token") {
  SoftHsm hsm;
  auto root = connected_root(hsm);
  CHECK(root->mechanism() == "CKM_AES_KEY_WRAP_KWP");

  RawSession raw(rootseal::test::kSoftHsmModule, hsm.label());
  const auto keys = raw.find_secret_keys("rootseal-root");
  REQUIRE(keys.size() == 1);
  const CK_OBJECT_HANDLE key = keys[0];

  std::vector<std::uint8_t> v;
  CHECK(raw.get_attr(key, CKA_VALUE, v) == CKR_ATTRIBUTE_SENSITIVE);
  CHECK(raw.get_bool(key, CKA_SENSITIVE));
  CHECK_FALSE(raw.get_bool(key, CKA_EXTRACTABLE));
  CHECK(raw.get_bool(key, CKA_ALWAYS_SENSITIVE));
  CHECK(raw.get_bool(key, CKA_NEVER_EXTRACTABLE));
  CHECK(raw.get_bool(key, CKA_TOKEN));
  CHECK(raw.get_bool(key, CKA_PRIVATE));
  CHECK(raw.get_bool(key, CKA_WRAP));
  CHECK(raw.get_bool(key, CKA_UNWRAP));
  CHECK_FALSE(raw.get_bool(key, CKA_ENCRYPT));
  CHECK_FALSE(raw.get_bool(key, CKA_DECRYPT));
  CHECK_FALSE(raw.get_bool(key, CKA_SIGN));
  CHECK_FALSE(raw.get_bool(key, CKA_VERIFY));
  CHECK_FALSE(raw.get_bool(key, CKA_MODIFIABLE));
  REQUIRE(raw.get_attr(key, CKA_VALUE_LEN, v) == CKR_OK);
  CK_ULONG len = 0;
  std::memcpy(&len, v.data(), sizeof len);
  CHECK(len == 32);
  REQUIRE(raw.get_attr(key, CKA_ID, v) == CKR_OK);
  CHECK(v.size() == 16);
  REQUIRE(raw.get_attr(key, CKA_ALLOWED_MECHANISMS, v) == CKR_OK);
  REQUIRE(v.size() == sizeof(CK_MECHANISM_TYPE));
  CK_MECHANISM_TYPE allowed = 0;
  std::memcpy(&allowed, v.data(), sizeof allowed);
  CHECK(allowed == rootseal::hsm::detail::kMechKwp);

  // Not even with a wrapping key of our own choosing.
  const auto kek = SecureBytes::random(32);
  const CK_OBJECT_HANDLE other = raw.create_secret_key(CKK_AES, "other", kek.span(), false, true, false);
  CK_MECHANISM kwp{rootseal::hsm::detail::kMechKwp, nullptr, 0};
  std::vector<std::uint8_t> out(128);
  CK_ULONG out_len = static_cast<CK_ULONG>(out.size());
  CHECK(raw.api()->C_WrapKey(raw.session(), &kwp, other, key, out.data(), &out_len) == CKR_KEY_UNEXTRACTABLE);
  CK_MECHANISM kw{CKM_AES_KEY_WRAP, nullptr, 0};
  out_len = static_cast<CK_ULONG>(out.size());
  CHECK(raw.api()->C_WrapKey(raw.session(), &kw, other, key, out.data(), &out_len) == CKR_KEY_UNEXTRACTABLE);
  // The attributes are frozen.
  CK_BBOOL yes = CK_TRUE;
  CK_ATTRIBUTE set_extractable{CKA_EXTRACTABLE, &yes, sizeof yes};
  CHECK(raw.api()->C_SetAttributeValue(raw.session(), key, &set_extractable, 1) != CKR_OK);
}

TEST_CASE("an existing root key is found and not generated again") {
  SoftHsm hsm;
  std::string kcv;
  {
    auto root = connected_root(hsm);
    kcv = *root->key_check_value();
  }
  auto root = connected_root(hsm, hsm.config(false));
  CHECK(*root->key_check_value() == kcv);
  RawSession raw(rootseal::test::kSoftHsmModule, hsm.label());
  CHECK(raw.find_secret_keys("rootseal-root").size() == 1);
}

TEST_CASE("a missing root key is sealed unless generation is allowed") {
  SoftHsm hsm;
  auto root = Pkcs11Root::create(hsm.config(false), hsm.pin_source());
  auto r = root->probe();
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::sealed);
  CHECK_THAT(r.error().message, Catch::Contains("no root key labelled 'rootseal-root'"));
  auto w = root->wrap(SecureBytes::random(32));
  REQUIRE_FALSE(w);
  CHECK(w.error().code == Errc::sealed);
}

TEST_CASE("a root key that could leave the token is refused") {
  SoftHsm hsm;
  const auto value = SecureBytes::random(32);
  {
    RawSession raw(rootseal::test::kSoftHsmModule, hsm.label());
    REQUIRE(raw.login(hsm.user_pin()) == CKR_OK);
    SECTION("not sensitive") { raw.create_secret_key(CKK_AES, "rootseal-root", value.span(), true, false, false); }
    SECTION("extractable") { raw.create_secret_key(CKK_AES, "rootseal-root", value.span(), true, true, true); }
  }
  auto root = Pkcs11Root::create(hsm.config(true), hsm.pin_source());
  auto r = root->probe();
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::sealed);
  CHECK_THAT(r.error().message, Catch::Contains("refusing a root key"));
}

TEST_CASE("two keys with the root key's label are refused") {
  SoftHsm hsm;
  {
    RawSession raw(rootseal::test::kSoftHsmModule, hsm.label());
    REQUIRE(raw.login(hsm.user_pin()) == CKR_OK);
    raw.create_secret_key(CKK_AES, "rootseal-root", SecureBytes::random(32).span(), true, true, false);
    raw.create_secret_key(CKK_AES, "rootseal-root", SecureBytes::random(32).span(), true, true, false);
  }
  auto root = Pkcs11Root::create(hsm.config(true), hsm.pin_source());
  auto r = root->probe();
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::sealed);
  CHECK_THAT(r.error().message, Catch::Contains("more than one"));
}

// An interrupted C_CopyObject (SoftHSM2 stores the copy, then relabels it)
// leaves two objects of one key under one label; rotate-root --resume tidies
// them, and until then they are that key. Objects that differ are refused.
TEST_CASE("copies of one key under the root key's label are that key, other keys beside it are refused") {
  SoftHsm hsm;
  const auto value = SecureBytes::random(32);
  const bool differ_in_value = GENERATE(false, true);
  const bool differ_in_attributes = GENERATE(false, true);
  CAPTURE(differ_in_value, differ_in_attributes);
  {
    RawSession raw(rootseal::test::kSoftHsmModule, hsm.label());
    REQUIRE(raw.login(hsm.user_pin()) == CKR_OK);
    raw.create_secret_key(CKK_AES, "rootseal-root", value.span(), true, true, false);
    const auto other = SecureBytes::random(32);
    const SecureBytes& second = differ_in_value ? other : value;
    // Not CKA_SENSITIVE: the one attribute this test can make differ that the
    // daemon would otherwise refuse only on the object it happened to pick.
    raw.create_secret_key(CKK_AES, "rootseal-root", second.span(), true, !differ_in_attributes, false);
  }
  auto root = Pkcs11Root::create(hsm.config(true), hsm.pin_source());
  auto r = root->probe();
  if (differ_in_value || differ_in_attributes) {
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::sealed);
    CHECK_THAT(r.error().message, Catch::Contains("not copies of one key"));
    return;
  }
  REQUIRE(r);
  const auto kcv = root->key_check_value();
  REQUIRE(kcv);
  CHECK(*kcv == hex(std::span<const std::uint8_t>(aes_ecb_zero_block(value.span()).data(), 3)));
  const auto secret = SecureBytes::random(32);
  auto w = root->wrap(secret);
  REQUIRE(w);
  auto back = root->unwrap(*w);
  REQUIRE(back);
  CHECK(*back == secret);
}

TEST_CASE("an unknown token label is unavailable and before the first probe calls are sealed") {
  SoftHsm hsm;
  auto cfg = config_for(hsm, "no-such-token");
  auto root = Pkcs11Root::create(cfg, hsm.pin_source());
  auto k = root->key_check_value();
  REQUIRE_FALSE(k);
  CHECK(k.error().code == Errc::sealed);
  auto r = root->probe();
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::unavailable);
  CHECK_THAT(r.error().message, Catch::Contains("not found"));
  auto u = root->unwrap(std::vector<std::uint8_t>(41, 1));
  REQUIRE_FALSE(u);
  CHECK(u.error().code == Errc::unavailable);
}

// ----- key check value -----------------------------------------------------------

TEST_CASE("the token's CKA_CHECK_VALUE is the first 3 bytes of AES-ECB of a zero block") {
  SoftHsm hsm;
  auto root = connected_root(hsm);  // logs the application in
  RawSession raw(rootseal::test::kSoftHsmModule, hsm.label());
  for (std::size_t n : {16u, 24u, 32u}) {
    const auto value = SecureBytes::random(n);
    const CK_OBJECT_HANDLE h = raw.create_secret_key(CKK_AES, "kcv-probe", value.span(), false, true, false);
    std::vector<std::uint8_t> kcv;
    REQUIRE(raw.get_attr(h, CKA_CHECK_VALUE, kcv) == CKR_OK);
    const auto expected = aes_ecb_zero_block(value.span());
    CHECK(hex(kcv) == hex(std::span(expected).first(3)));
  }
}

TEST_CASE("the key check value is 6 hex digits and stable across reconnects and differs between tokens") {
  SoftHsm hsm("one");
  hsm.add_token("two");
  auto root = connected_root(hsm);
  auto kcv = root->key_check_value();
  REQUIRE(kcv);
  CHECK(kcv->size() == 6);
  CHECK(kcv->find_first_not_of("0123456789abcdef") == std::string::npos);

  {
    RawSession raw(rootseal::test::kSoftHsmModule, "one");
    const auto keys = raw.find_secret_keys("rootseal-root");
    REQUIRE(keys.size() == 1);
    std::vector<std::uint8_t> token_kcv;
    REQUIRE(raw.get_attr(keys[0], CKA_CHECK_VALUE, token_kcv) == CKR_OK);
    CHECK(hex(token_kcv) == *kcv);
  }

  // Token gone and back: a re-initialized module, the same key, the same KCV.
  const fs::path folder = token_folder(hsm, "one");
  fs::rename(folder, hsm.dir() / "away");
  CHECK_FALSE(root->probe());
  fs::rename(hsm.dir() / "away", folder);
  REQUIRE(root->probe());
  CHECK(*root->key_check_value() == *kcv);

  auto root_two = connected_root(hsm, config_for(hsm, "two"));
  CHECK(*root_two->key_check_value() != *kcv);
}

// ----- wrap / unwrap ---------------------------------------------------------------

TEST_CASE("KWP wrap and unwrap round trip for 16 to 64-byte keys") {
  SoftHsm hsm;
  auto root = connected_root(hsm);
  REQUIRE(root->mechanism() == "CKM_AES_KEY_WRAP_KWP");
  for (std::size_t n : {16u, 24u, 32u, 40u, 48u, 64u}) {
    CAPTURE(n);
    const auto key = SecureBytes::random(n);
    auto w = root->wrap(key);
    REQUIRE(w);
    CHECK((*w)[0] == 0x01);
    CHECK(w->size() == 1 + n + 8);
    auto u = root->unwrap(*w);
    REQUIRE(u);
    CHECK(*u == key);
    // KWP is deterministic.
    CHECK(*root->wrap(key) == *w);
  }
}

TEST_CASE("GCM fallback wrap and unwrap round trip for 16 to 64-byte keys") {
  SoftHsm hsm;
  auto cfg = hsm.config();
  cfg.mechanism = RootMechanism::aes_gcm;
  auto root = connected_root(hsm, cfg);
  REQUIRE(root->mechanism() == "CKM_AES_GCM");
  for (std::size_t n : {16u, 32u, 64u}) {
    CAPTURE(n);
    const auto key = SecureBytes::random(n);
    auto w = root->wrap(key);
    REQUIRE(w);
    CHECK((*w)[0] == 0x02);
    CHECK(w->size() == 1 + 12 + n + 16);
    auto u = root->unwrap(*w);
    REQUIRE(u);
    CHECK(*u == key);
    auto w2 = root->wrap(key);  // a fresh IV each time
    REQUIRE(w2);
    CHECK(*w2 != *w);
    CHECK(*root->unwrap(*w2) == key);
  }
  // The root key was generated for encryption, still sensitive and unextractable.
  RawSession raw(rootseal::test::kSoftHsmModule, hsm.label());
  const auto keys = raw.find_secret_keys("rootseal-root");
  REQUIRE(keys.size() == 1);
  CHECK(raw.get_bool(keys[0], CKA_ENCRYPT));
  CHECK(raw.get_bool(keys[0], CKA_DECRYPT));
  CHECK(raw.get_bool(keys[0], CKA_SENSITIVE));
  CHECK_FALSE(raw.get_bool(keys[0], CKA_EXTRACTABLE));
}

TEST_CASE("blobs record their mechanism so GCM blobs still unwrap once KWP is used") {
  SoftHsm hsm;
  const auto key = SecureBytes::random(32);
  std::vector<std::uint8_t> gcm_blob;
  {
    auto cfg = hsm.config();
    cfg.mechanism = RootMechanism::aes_gcm;
    auto root = connected_root(hsm, cfg);
    gcm_blob = *root->wrap(key);
  }
  auto root = connected_root(hsm, hsm.config(false));
  CHECK(root->mechanism() == "CKM_AES_KEY_WRAP_KWP");
  auto u = root->unwrap(gcm_blob);
  REQUIRE(u);
  CHECK(*u == key);
  auto w = root->wrap(key);
  REQUIRE(w);
  CHECK((*w)[0] == 0x01);
}

TEST_CASE("key sizes outside 16 to 64 bytes or not a multiple of 8 are refused") {
  SoftHsm hsm;
  auto root = connected_root(hsm);
  for (std::size_t n : {0u, 8u, 15u, 20u, 33u, 65u, 72u}) {
    CAPTURE(n);
    auto w = root->wrap(SecureBytes::random(n));
    REQUIRE_FALSE(w);
    CHECK(w.error().code == Errc::invalid_argument);
  }
}

TEST_CASE("a key wrapped on one token does not unwrap on another") {
  SoftHsm hsm("one");
  hsm.add_token("two");
  const bool gcm = GENERATE(false, true);
  CAPTURE(gcm);
  auto one = connected_root(hsm, config_for(hsm, "one", gcm));
  auto two = connected_root(hsm, config_for(hsm, "two", gcm));
  const auto key = SecureBytes::random(32);
  auto w = one->wrap(key);
  REQUIRE(w);
  auto u = two->unwrap(*w);
  REQUIRE_FALSE(u);
  CHECK(u.error().code == Errc::decryption_failed);
  // Neither root is disturbed by it.
  CHECK(two->probe());
  CHECK(*one->unwrap(*w) == key);
}

TEST_CASE("damaged or unknown blobs are decryption_failed and leave the root usable") {
  SoftHsm hsm;
  const bool gcm = GENERATE(false, true);
  CAPTURE(gcm);
  auto cfg = hsm.config();
  cfg.mechanism = gcm ? RootMechanism::aes_gcm : RootMechanism::automatic;
  auto root = connected_root(hsm, cfg);
  const auto key = SecureBytes::random(32);
  const auto w = *root->wrap(key);

  auto expect_failed = [&](const std::vector<std::uint8_t>& blob) {
    auto u = root->unwrap(blob);
    REQUIRE_FALSE(u);
    CHECK(u.error().code == Errc::decryption_failed);
  };
  expect_failed({});
  for (std::uint8_t format : {std::uint8_t{0x00}, std::uint8_t{0x03}, std::uint8_t{0x7f}, std::uint8_t{0xff}}) {
    auto b = w;
    b[0] = format;
    expect_failed(b);
  }
  for (std::size_t n = 0; n < w.size(); ++n) {
    CAPTURE(n);
    expect_failed(std::vector<std::uint8_t>(w.begin(), w.begin() + static_cast<std::ptrdiff_t>(n)));
  }
  for (std::size_t i = 1; i < w.size(); ++i) {
    for (int bit : {0, 7}) {
      CAPTURE(i, bit);
      auto b = w;
      b[i] = static_cast<std::uint8_t>(b[i] ^ (1u << bit));
      expect_failed(b);
    }
  }
  auto longer = w;
  longer.push_back(0);
  expect_failed(longer);
  longer.insert(longer.end(), 7, 0);  // a whole extra KWP block
  expect_failed(longer);
  // The other format's byte on this body.
  auto other = w;
  other[0] = gcm ? std::uint8_t{0x01} : std::uint8_t{0x02};
  expect_failed(other);

  CHECK(root->probe());
  auto u = root->unwrap(w);
  REQUIRE(u);
  CHECK(*u == key);
}

// ----- PIN -------------------------------------------------------------------------

TEST_CASE("a wrong PIN seals and is never shown and is not tried twice") {
  SoftHsm hsm("pin-token", "1234");
  std::atomic<int> calls{0};
  std::string pin = "98765";
  auto root = Pkcs11Root::create(hsm.config(), [&]() -> rootseal::kms::Result<SecureBytes> {
    ++calls;
    return SecureBytes::copy_of(std::string_view(pin));
  });
  RawSession raw(rootseal::test::kSoftHsmModule, "pin-token");
  REQUIRE((raw.token_flags() & CKF_USER_PIN_COUNT_LOW) == 0);

  auto r = root->probe();
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::sealed);
  CHECK_THAT(r.error().message, Catch::Contains("PIN is incorrect"));
  CHECK_THAT(r.error().message, Catch::Contains("CKR_PIN_INCORRECT"));
  CHECK(r.error().message.find(pin) == std::string::npos);
  CHECK(calls == 1);
  // SoftHSM flags every failed C_Login with CKF_USER_PIN_COUNT_LOW ...
  REQUIRE((raw.token_flags() & CKF_USER_PIN_COUNT_LOW) != 0);
  // ... and clears it on a successful one.
  REQUIRE(raw.login("1234") == CKR_OK);
  REQUIRE(raw.logout() == CKR_OK);
  REQUIRE((raw.token_flags() & CKF_USER_PIN_COUNT_LOW) == 0);

  for (int i = 0; i < 5; ++i) {
    auto again = root->probe();
    REQUIRE_FALSE(again);
    CHECK(again.error().code == Errc::sealed);
    CHECK(again.error().message.find(pin) == std::string::npos);
    CHECK_THAT(again.error().message, Catch::Contains("not trying it again"));
  }
  CHECK(calls == 6);                                         // asked each time whether the PIN changed ...
  CHECK((raw.token_flags() & CKF_USER_PIN_COUNT_LOW) == 0);  // ... but never presented it again

  auto w = root->wrap(SecureBytes::random(32));
  REQUIRE_FALSE(w);
  CHECK(w.error().code == Errc::sealed);

  pin = "1234";  // the operator fixes the PIN
  REQUIRE(root->probe());
  CHECK(calls == 7);
  CHECK(root->wrap(SecureBytes::random(32)));
}

TEST_CASE("a PIN source without a PIN seals") {
  SoftHsm hsm;
  auto root = Pkcs11Root::create(hsm.config(), []() -> rootseal::kms::Result<SecureBytes> {
    return rootseal::kms::fail(Errc::sealed, "no PIN yet");
  });
  auto r = root->probe();
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::sealed);
  CHECK(r.error().message == "no PIN yet");
}

// ----- removal and reconnect -------------------------------------------------------
//
// Removal is simulated with the real SoftHSM: the token's folder under the
// tokendir is moved away (SoftHSM then invalidates the token's objects and,
// after C_Finalize/C_Initialize, no longer lists the token) and moved back.

TEST_CASE("token removed gives unavailable and token back lets probe reconnect and old blobs unwrap") {
  SoftHsm hsm;
  auto root = connected_root(hsm);
  const auto key = SecureBytes::random(32);
  const auto w = *root->wrap(key);
  const std::string kcv = *root->key_check_value();
  const fs::path folder = token_folder(hsm, hsm.label());

  fs::rename(folder, hsm.dir() / "away");
  SECTION("noticed by an operation") {
    auto u = root->unwrap(w);
    REQUIRE_FALSE(u);
    CHECK(u.error().code == Errc::unavailable);
    CHECK_THAT(u.error().message, Catch::Contains("CKR_"));
  }
  SECTION("noticed by probe") {
    auto p = root->probe();
    REQUIRE_FALSE(p);
    CHECK(p.error().code == Errc::unavailable);
  }
  // Stays unavailable while the token is away, whatever is called.
  CHECK(root->wrap(key).error().code == Errc::unavailable);
  CHECK(root->key_check_value().error().code == Errc::unavailable);
  for (int i = 0; i < 3; ++i) {
    auto p = root->probe();
    REQUIRE_FALSE(p);
    CHECK(p.error().code == Errc::unavailable);
    CHECK_THAT(p.error().message, Catch::Contains("not found"));
  }

  fs::rename(hsm.dir() / "away", folder);
  REQUIRE(root->probe());
  auto u = root->unwrap(w);
  REQUIRE(u);
  CHECK(*u == key);
  CHECK(*root->key_check_value() == kcv);
  CHECK(*root->wrap(key) == w);
}

TEST_CASE("the root key deleted behind our back gives unavailable then sealed") {
  SoftHsm hsm;
  auto root = connected_root(hsm, hsm.config(true));
  {
    RawSession raw(rootseal::test::kSoftHsmModule, hsm.label());
    const auto keys = raw.find_secret_keys("rootseal-root");
    REQUIRE(keys.size() == 1);
    RawSession::check(raw.api()->C_DestroyObject(raw.session(), keys[0]), "C_DestroyObject");
  }
  auto w = root->wrap(SecureBytes::random(32));
  REQUIRE_FALSE(w);
  CHECK(w.error().code == Errc::unavailable);
  auto strict = Pkcs11Root::create(hsm.config(false), hsm.pin_source());
  auto p = strict->probe();
  REQUIRE_FALSE(p);
  CHECK(p.error().code == Errc::sealed);
}

TEST_CASE("a re-initialization by one root leaves another root of the process recoverable") {
  SoftHsm hsm("one");
  hsm.add_token("two");
  auto one = connected_root(hsm);
  auto two = connected_root(hsm, config_for(hsm, "two"));
  const auto key = SecureBytes::random(32);
  const auto w2 = *two->wrap(key);

  const fs::path folder = token_folder(hsm, "one");
  fs::rename(folder, hsm.dir() / "away");
  REQUIRE_FALSE(one->probe());  // finalizes and re-initializes the module
  REQUIRE_FALSE(one->probe());

  // The other root's handles died with the re-initialization: it notices ...
  auto u = two->unwrap(w2);
  if (!u) {
    CHECK(u.error().code == Errc::unavailable);
    REQUIRE(two->probe());  // ... and comes back without another re-initialization
    u = two->unwrap(w2);
  }
  REQUIRE(u);
  CHECK(*u == key);

  fs::rename(hsm.dir() / "away", folder);
  REQUIRE(one->probe());
  REQUIRE(two->probe());
  CHECK(*two->unwrap(w2) == key);
}

TEST_CASE("operations racing real token removals and returns only succeed or say unavailable") {
  SoftHsm hsm;
  const bool gcm = GENERATE(false, true);
  CAPTURE(gcm);
  auto cfg = hsm.config();
  cfg.mechanism = gcm ? RootMechanism::aes_gcm : RootMechanism::automatic;
  cfg.max_sessions = 3;
  auto root = connected_root(hsm, cfg);
  const auto key = SecureBytes::random(32);
  const auto w = *root->wrap(key);
  const fs::path folder = token_folder(hsm, hsm.label());

  std::atomic<bool> stop{false};
  std::atomic<long> ok{0}, unavailable{0}, other{0};
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      while (!stop) {
        bool good = false;
        Errc code = Errc::internal;
        if (t % 2 == 0) {
          auto r = root->wrap(key);
          good = r && (gcm || *r == w);  // KWP is deterministic, GCM takes a fresh IV
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
  for (int round = 0; round < 20; ++round) {
    const long target = ok.load() + 20;
    while (ok.load() < target) std::this_thread::yield();
    fs::rename(folder, hsm.dir() / "away");
    (void)root->probe();
    fs::rename(hsm.dir() / "away", folder);
    int attempts = 0;
    while (!root->probe()) {
      REQUIRE(++attempts < 1000);
      std::this_thread::yield();
    }
  }
  const long target = ok.load() + 20;
  while (ok.load() < target) std::this_thread::yield();
  stop = true;
  for (auto& th : threads) th.join();
  CHECK(other == 0);
  CHECK(*root->unwrap(w) == key);
}

// ----- concurrency -----------------------------------------------------------------

TEST_CASE("4 threads x 200 wrap/unwrap concurrently") {
  SoftHsm hsm;
  const bool gcm = GENERATE(false, true);
  const std::size_t sessions = GENERATE(std::size_t{1}, std::size_t{4});
  CAPTURE(gcm, sessions);
  auto cfg = hsm.config();
  cfg.mechanism = gcm ? RootMechanism::aes_gcm : RootMechanism::automatic;
  cfg.max_sessions = sessions;
  auto root = connected_root(hsm, cfg);

  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const auto key = SecureBytes::random(16 + 8 * static_cast<std::size_t>((t + i) % 7));
        auto w = root->wrap(key);
        if (!w) {
          ++failed;
          continue;
        }
        auto u = root->unwrap(*w);
        if (u && *u == key) {
          ++ok;
        } else {
          ++failed;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failed == 0);
  CHECK(ok == 800);
  CHECK(root->probe());
}
