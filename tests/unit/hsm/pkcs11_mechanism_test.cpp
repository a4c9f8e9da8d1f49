// hsm::Pkcs11Root's root mechanisms (pkcs11.mechanism) against a real
// SoftHSM2 token: aes-cbc-pad-hmac (two keys, encrypt-then-MAC, C_Verify
// before any decryption), auto, the blob header naming the mechanism,
// wrong-mechanism refusals, blobs of the previous release, and rsa-oaep's
// refusal on SoftHSM 2.6 (which only does OAEP with SHA-1). rsa-oaep itself
// runs against opencryptoki and tpm2-pkcs11 (tests/integration/test_hsm_mechanisms.py).
#include <openssl/evp.h>

#include <catch2/catch.hpp>

#include <cstring>

#include <map>
#include <string>
#include <vector>

#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/key_wrap.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "softhsm.hpp"
#include "raw_pkcs11.hpp"  // last two: pkcs11.h
#include "pkcs11_mechanisms.hpp"
#include "pkcs11_templates.hpp"

using rootseal::hsm::Pkcs11Config;
using rootseal::hsm::Pkcs11Root;
using rootseal::hsm::RootMechanism;
using rootseal::kms::Errc;
using rootseal::kms::SecureBytes;
using rootseal::test::RawSession;
using rootseal::test::SoftHsm;

namespace {

std::unique_ptr<Pkcs11Root> connected(const SoftHsm& hsm, Pkcs11Config cfg) {
  auto root = Pkcs11Root::create(std::move(cfg), hsm.pin_source());
  auto r = root->probe();
  INFO((r ? std::string("ok") : r.error().message));
  REQUIRE(r);
  return root;
}

Pkcs11Config with(const SoftHsm& hsm, RootMechanism m, bool generate = true, std::string label = "rootseal-root") {
  Pkcs11Config c = hsm.config(generate);
  c.mechanism = m;
  c.key_label = std::move(label);
  return c;
}

std::vector<std::uint8_t> from_hex(std::string_view h) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2)
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
  return out;
}

}  // namespace

TEST_CASE("root mechanism names parse and print") {
  using rootseal::hsm::parse_root_mechanism;
  using rootseal::hsm::root_mechanism_name;
  for (auto m : {RootMechanism::automatic, RootMechanism::aes_kwp, RootMechanism::aes_gcm,
                 RootMechanism::aes_cbc_pad_hmac, RootMechanism::rsa_oaep}) {
    CHECK(parse_root_mechanism(root_mechanism_name(m)) == m);
  }
  CHECK(root_mechanism_name(RootMechanism::aes_cbc_pad_hmac) == "aes-cbc-pad-hmac");
  CHECK_FALSE(parse_root_mechanism("AES-KWP"));
  CHECK_FALSE(parse_root_mechanism("aes-cbc"));
  CHECK_FALSE(parse_root_mechanism(""));
}

TEST_CASE("aes-cbc-pad-hmac wraps with two keys in the token and a fresh IV each time") {
  SoftHsm hsm;
  auto root = connected(hsm, with(hsm, RootMechanism::aes_cbc_pad_hmac));
  CHECK(root->mechanism() == "CKM_AES_CBC_PAD+CKM_SHA256_HMAC");
  CHECK(root->root_mechanism() == "aes-cbc-pad-hmac");
  for (std::size_t n : {16u, 24u, 32u, 48u, 64u}) {
    CAPTURE(n);
    const auto key = SecureBytes::random(n);
    auto w = root->wrap(key);
    REQUIRE(w);
    CHECK((*w)[0] == 0x03);
    CHECK(w->size() == 1 + 16 + (n / 16 + 1) * 16 + 32);
    auto u = root->unwrap(*w);
    REQUIRE(u);
    CHECK(*u == key);
    auto w2 = root->wrap(key);
    REQUIRE(w2);
    CHECK(std::vector<std::uint8_t>(w2->begin() + 1, w2->begin() + 17) !=
          std::vector<std::uint8_t>(w->begin() + 1, w->begin() + 17));
    CHECK(*root->unwrap(*w2) == key);
  }
  RawSession raw(rootseal::test::kSoftHsmModule, hsm.label());
  const auto aes = raw.find_secret_keys("rootseal-root");
  REQUIRE(aes.size() == 1);
  CHECK(raw.get_bool(aes[0], CKA_ENCRYPT));
  CHECK(raw.get_bool(aes[0], CKA_DECRYPT));
  CHECK_FALSE(raw.get_bool(aes[0], CKA_WRAP));
  CHECK(raw.get_bool(aes[0], CKA_SENSITIVE));
  CHECK_FALSE(raw.get_bool(aes[0], CKA_EXTRACTABLE));
  const auto mac = raw.find_secret_keys("rootseal-root-hmac");
  REQUIRE(mac.size() == 1);
  CHECK(raw.get_bool(mac[0], CKA_SIGN));
  CHECK(raw.get_bool(mac[0], CKA_VERIFY));
  CHECK_FALSE(raw.get_bool(mac[0], CKA_ENCRYPT));
  CHECK(raw.get_bool(mac[0], CKA_SENSITIVE));
  CHECK_FALSE(raw.get_bool(mac[0], CKA_EXTRACTABLE));
  std::vector<std::uint8_t> v;
  CHECK(raw.get_attr(mac[0], CKA_VALUE, v) == CKR_ATTRIBUTE_SENSITIVE);
  // The KCV is the AES key's, as the token computes it.
  std::vector<std::uint8_t> token_kcv;
  REQUIRE(raw.get_attr(aes[0], CKA_CHECK_VALUE, token_kcv) == CKR_OK);
  CHECK(rootseal::hsm::detail::to_hex(token_kcv) == *root->key_check_value());
}

TEST_CASE(
    "aes-cbc-pad-hmac refuses a blob with a flipped byte of the IV, the ciphertext or the MAC before decrypting") {
  SoftHsm hsm;
  auto root = connected(hsm, with(hsm, RootMechanism::aes_cbc_pad_hmac));
  const auto key = SecureBytes::random(32);
  const auto w = *root->wrap(key);
  REQUIRE(w.size() == 1 + 16 + 48 + 32);
  struct Part {
    const char* name;
    std::size_t from, to;
  };
  for (const Part& p : {Part{"iv", 1, 17}, Part{"ciphertext", 17, 65}, Part{"mac", 65, 97}}) {
    for (std::size_t i = p.from; i < p.to; ++i) {
      CAPTURE(p.name, i);
      auto b = w;
      b[i] ^= 0x01;
      auto u = root->unwrap(b);
      REQUIRE_FALSE(u);
      CHECK(u.error().code == Errc::decryption_failed);
      CHECK_THAT(u.error().message, Catch::Contains("C_Verify: CKR_SIGNATURE_INVALID"));
      CHECK_THAT(u.error().message, Catch::Contains("nothing was decrypted"));
    }
  }
  // Truncated or lengthened: refused by the header check.
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{17}, w.size() - 1}) {
    auto u = root->unwrap(std::span<const std::uint8_t>(w.data(), n));
    REQUIRE_FALSE(u);
    CHECK(u.error().code == Errc::decryption_failed);
  }
  CHECK(root->probe());
  CHECK(*root->unwrap(w) == key);
}

TEST_CASE("auto finds an aes-cbc-pad-hmac root by its HMAC key after a restart") {
  SoftHsm hsm;
  const auto key = SecureBytes::random(32);
  std::vector<std::uint8_t> blob;
  std::string kcv;
  {
    auto root = connected(hsm, with(hsm, RootMechanism::aes_cbc_pad_hmac));
    blob = *root->wrap(key);
    kcv = *root->key_check_value();
  }
  auto root = connected(hsm, with(hsm, RootMechanism::automatic, false));
  CHECK(root->root_mechanism() == "aes-cbc-pad-hmac");
  CHECK(*root->key_check_value() == kcv);
  CHECK(*root->unwrap(blob) == key);
}

TEST_CASE("auto generates for KWP on SoftHSM2") {
  SoftHsm hsm;
  auto root = connected(hsm, with(hsm, RootMechanism::automatic));
  CHECK(root->root_mechanism() == "aes-kwp");
  CHECK((*root->wrap(SecureBytes::random(32)))[0] == 0x01);
}

TEST_CASE("a pkcs11.mechanism the root key was not made for is refused clearly") {
  SoftHsm hsm;
  (void)connected(hsm, with(hsm, RootMechanism::aes_cbc_pad_hmac, true, "cbc"));
  (void)connected(hsm, with(hsm, RootMechanism::aes_kwp, true, "kwp"));
  auto refused = [&](RootMechanism m, const std::string& label, const std::string& expected) {
    CAPTURE(label, expected);
    auto root = Pkcs11Root::create(with(hsm, m, false, label), hsm.pin_source());
    auto r = root->probe();
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::sealed);
    CHECK_THAT(r.error().message, Catch::Contains(expected));
  };
  refused(RootMechanism::aes_kwp, "cbc", "cannot be used with pkcs11.mechanism aes-kwp: it needs CKA_WRAP+CKA_UNWRAP");
  refused(RootMechanism::aes_cbc_pad_hmac, "kwp", "there is no such HMAC key");
  refused(RootMechanism::rsa_oaep, "kwp", "it is an AES key; rsa-oaep needs an RSA key pair");
  refused(RootMechanism::aes_gcm, "kwp", "cannot be used with pkcs11.mechanism aes-gcm");
}

TEST_CASE("a blob of another root mechanism is refused naming both") {
  SoftHsm hsm;
  auto kwp = connected(hsm, with(hsm, RootMechanism::aes_kwp, true, "kwp"));
  auto cbc = connected(hsm, with(hsm, RootMechanism::aes_cbc_pad_hmac, true, "cbc"));
  const auto key = SecureBytes::random(32);
  auto u = cbc->unwrap(*kwp->wrap(key));
  REQUIRE_FALSE(u);
  CHECK(u.error().code == Errc::decryption_failed);
  CHECK_THAT(u.error().message,
             Catch::Contains("made with root mechanism aes-kwp, but the root in use is aes-cbc-pad-hmac"));
  u = kwp->unwrap(*cbc->wrap(key));
  REQUIRE_FALSE(u);
  CHECK_THAT(u.error().message,
             Catch::Contains("made with root mechanism aes-cbc-pad-hmac, but the root in use is aes-kwp"));
  // And a cbc blob from another root's keys fails the MAC.
  auto cbc2 = connected(hsm, with(hsm, RootMechanism::aes_cbc_pad_hmac, true, "cbc2"));
  u = cbc2->unwrap(*cbc->wrap(key));
  REQUIRE_FALSE(u);
  CHECK_THAT(u.error().message, Catch::Contains("MAC does not verify"));
}

TEST_CASE("KWP and GCM blobs in the format of the previous release still unwrap") {
  // Root key 40..5f, KEK a0..bf; the blobs are what rootseal before
  // pkcs11.mechanism wrote (0x01 || RFC 5649 KWP; 0x02 || iv || GCM with AAD
  // "rootseal-kek-v1"), computed independently with Python's cryptography.
  SoftHsm hsm;
  std::vector<std::uint8_t> root_key(32), kek(32);
  for (std::size_t i = 0; i < 32; ++i) {
    root_key[i] = static_cast<std::uint8_t>(0x40 + i);
    kek[i] = static_cast<std::uint8_t>(0xa0 + i);
  }
  {
    RawSession raw(rootseal::test::kSoftHsmModule, hsm.label());
    REQUIRE(raw.login(hsm.user_pin()) == CKR_OK);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    const std::string label = "rootseal-root";
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls},
                        {CKA_KEY_TYPE, &type, sizeof type},
                        {CKA_VALUE, root_key.data(), 32},
                        {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
                        {CKA_TOKEN, &yes, 1},
                        {CKA_PRIVATE, &yes, 1},
                        {CKA_SENSITIVE, &yes, 1},
                        {CKA_EXTRACTABLE, &no, 1},
                        {CKA_WRAP, &yes, 1},
                        {CKA_UNWRAP, &yes, 1},
                        {CKA_ENCRYPT, &yes, 1},
                        {CKA_DECRYPT, &yes, 1}};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    RawSession::check(raw.api()->C_CreateObject(raw.session(), t, std::size(t), &h), "C_CreateObject");
  }
  const auto kwp_blob = from_hex("01e6cc51502dcc9f0768d77a4068ba3953f379f49a7893d6f033f1f4323b4748962eabc94888a0cf39");
  const auto gcm_blob = from_hex(
      "020102030405060708090a0b0c068bf7938e8111d2e65e4da6e832ad190e85e8d7d1621e8b66e1f83b63d251b5ce064e162ef3637ddb"
      "d2e4f5ec53fdef");
  const SecureBytes expected = SecureBytes::copy_of(std::span<const std::uint8_t>(kek));
  for (RootMechanism m : {RootMechanism::automatic, RootMechanism::aes_kwp, RootMechanism::aes_gcm}) {
    CAPTURE(rootseal::hsm::root_mechanism_name(m));
    auto root = connected(hsm, with(hsm, m, false));
    auto u = root->unwrap(kwp_blob);
    REQUIRE(u);
    CHECK(*u == expected);
    u = root->unwrap(gcm_blob);
    REQUIRE(u);
    CHECK(*u == expected);
    if (m != RootMechanism::aes_gcm) CHECK(*root->wrap(expected) == kwp_blob);  // KWP is deterministic
  }
}

TEST_CASE("rsa-oaep on a token without SHA-256 OAEP is refused naming the reason") {
  SoftHsm hsm;  // SoftHSM 2.6.1: CKM_RSA_PKCS_OAEP with SHA-1 only
  auto root = Pkcs11Root::create(with(hsm, RootMechanism::rsa_oaep), hsm.pin_source());
  auto r = root->probe();
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::sealed);
  CHECK_THAT(r.error().message, Catch::Contains("refuses CKM_RSA_PKCS_OAEP with SHA-256 and MGF1-SHA-256"));
  // The key pair it generated is what Pkcs11Root requires of one.
  RawSession raw(rootseal::test::kSoftHsmModule, hsm.label());
  REQUIRE(raw.login(hsm.user_pin()) == CKR_OK);
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  const std::string label = "rootseal-root";
  CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, const_cast<char*>(label.data()), label.size()}};
  REQUIRE(raw.api()->C_FindObjectsInit(raw.session(), t, 2) == CKR_OK);
  CK_OBJECT_HANDLE h[2];
  CK_ULONG n = 0;
  REQUIRE(raw.api()->C_FindObjects(raw.session(), h, 2, &n) == CKR_OK);
  raw.api()->C_FindObjectsFinal(raw.session());
  REQUIRE(n == 1);
  CHECK(raw.get_bool(h[0], CKA_SENSITIVE));
  CHECK_FALSE(raw.get_bool(h[0], CKA_EXTRACTABLE));
  CHECK(raw.get_bool(h[0], CKA_DECRYPT));
  std::vector<std::uint8_t> modulus;
  REQUIRE(raw.get_attr(h[0], CKA_MODULUS, modulus) == CKR_OK);
  CHECK(modulus.size() == 384);
}

TEST_CASE("the RSA check value is SHA-256 of the DER SubjectPublicKeyInfo, 3 bytes") {
  // 65537 and a fixed 3072-bit modulus (top bit set, odd): the value is
  // checked against openssl's own encoding of the same key.
  std::vector<std::uint8_t> n(384, 0xa5);
  n[0] = 0xc1;
  n[383] = 0x01;
  const std::vector<std::uint8_t> e = {0x01, 0x00, 0x01};
  const auto kcv = rootseal::hsm::detail::rsa_check_value(n, e);
  REQUIRE(kcv.size() == 3);
  // DER SPKI of an RSA key with a 384-byte modulus whose top bit is set:
  // 30 82 01 a2 30 0d 06 09 2a864886f70d010101 05 00 03 82 01 8f 00
  // 30 82 01 8a 02 82 01 81 00 <n> 02 03 010001
  std::vector<std::uint8_t> der = from_hex("308201a2300d06092a864886f70d01010105000382018f003082018a0282018100");
  der.insert(der.end(), n.begin(), n.end());
  for (auto b : from_hex("0203010001")) der.push_back(b);
  std::vector<std::uint8_t> digest(32);
  unsigned int dn = 0;
  REQUIRE(EVP_Digest(der.data(), der.size(), digest.data(), &dn, EVP_sha256(), nullptr) == 1);
  CHECK(kcv == std::vector<std::uint8_t>(digest.begin(), digest.begin() + 3));
  CHECK(rootseal::hsm::detail::rsa_check_value({}, e).empty());
}

namespace {

// type -> value bytes of a template (CKA_ID left out: it is filled later).
std::map<CK_ATTRIBUTE_TYPE, std::vector<std::uint8_t>> attrs_of(const std::vector<CK_ATTRIBUTE>& t) {
  std::map<CK_ATTRIBUTE_TYPE, std::vector<std::uint8_t>> out;
  for (const auto& a : t) {
    if (a.type == CKA_ID) continue;
    const auto* p = static_cast<const std::uint8_t*>(a.pValue);
    REQUIRE(out.emplace(a.type, std::vector<std::uint8_t>(p, p + a.ulValueLen)).second);  // no attribute twice
  }
  return out;
}

bool flag(const std::map<CK_ATTRIBUTE_TYPE, std::vector<std::uint8_t>>& m, CK_ATTRIBUTE_TYPE t) {
  auto it = m.find(t);
  REQUIRE(it != m.end());
  REQUIRE(it->second.size() == 1);
  return it->second[0] == CK_TRUE;
}

}  // namespace

TEST_CASE("a root key template allows every KWP constant the token offers, and GCM for a GCM root") {
  using rootseal::hsm::detail::KeyMaker;
  using rootseal::hsm::detail::KwpOffer;
  using rootseal::hsm::detail::Mech;
  using rootseal::hsm::detail::SecretKeyTemplate;
  auto allowed = [](Mech m, KwpOffer offer) {
    auto t = SecretKeyTemplate::aes_root(m, offer, "rootseal-root", KeyMaker::daemon);
    const auto a = attrs_of(t.for_generate());
    std::vector<CK_MECHANISM_TYPE> out;
    if (const auto it = a.find(CKA_ALLOWED_MECHANISMS); it != a.end()) {
      out.resize(it->second.size() / sizeof(CK_MECHANISM_TYPE));
      std::memcpy(out.data(), it->second.data(), out.size() * sizeof(CK_MECHANISM_TYPE));
    }
    return out;
  };
  using V = std::vector<CK_MECHANISM_TYPE>;
  CHECK(allowed(Mech::kwp, {true, false}) == V{0x210A});
  CHECK(allowed(Mech::kwp, {false, true}) == V{0x210B});
  CHECK(allowed(Mech::kwp, {true, true}) == V{0x210A, 0x210B});
  CHECK(allowed(Mech::gcm, {true, true}) == V{0x210A, 0x210B, CKM_AES_GCM});
  CHECK(allowed(Mech::gcm, {false, false}) == V{CKM_AES_GCM});
  CHECK(allowed(Mech::cbc_hmac, {true, true}) == V{CKM_AES_CBC_PAD});
}

TEST_CASE("the ceremony's and rootseald's root key templates differ only in CKA_MODIFIABLE and CKA_COPYABLE") {
  using rootseal::hsm::detail::KeyMaker;
  using rootseal::hsm::detail::Mech;
  using rootseal::hsm::detail::SecretKeyTemplate;
  for (Mech m : {Mech::kwp, Mech::gcm, Mech::cbc_hmac}) {
    CAPTURE(static_cast<int>(m));
    const rootseal::hsm::detail::KwpOffer both{true, true};
    auto c = SecretKeyTemplate::aes_root(m, both, "rootseal-root", KeyMaker::ceremony);
    auto d = SecretKeyTemplate::aes_root(m, both, "rootseal-root", KeyMaker::daemon);
    auto ca = attrs_of(c.for_generate());
    auto da = attrs_of(d.for_generate());
    CHECK(flag(ca, CKA_MODIFIABLE));
    CHECK_FALSE(flag(da, CKA_MODIFIABLE));
    CHECK(flag(ca, CKA_COPYABLE));
    CHECK_FALSE(da.contains(CKA_COPYABLE));
    CHECK(flag(da, CKA_SENSITIVE));
    CHECK_FALSE(flag(da, CKA_EXTRACTABLE));
    CHECK(flag(da, CKA_WRAP) == (m != Mech::cbc_hmac));
    CHECK(flag(da, CKA_ENCRYPT) == (m != Mech::kwp));
    ca.erase(CKA_MODIFIABLE);
    ca.erase(CKA_COPYABLE);
    da.erase(CKA_MODIFIABLE);
    CHECK(ca == da);
    // The required part is what every token must take: no hardening in it.
    const auto gen = c.for_generate();
    for (std::size_t i = 0; i < c.required_for_generate(); ++i) {
      CHECK(gen[i].type != CKA_MODIFIABLE);
      CHECK(gen[i].type != CKA_ALLOWED_MECHANISMS);
    }
  }
  auto hc = attrs_of(SecretKeyTemplate::hmac("h", KeyMaker::ceremony).for_generate());
  auto hd = attrs_of(SecretKeyTemplate::hmac("h", KeyMaker::daemon).for_generate());
  CHECK(flag(hd, CKA_SIGN));
  CHECK_FALSE(flag(hd, CKA_ENCRYPT));
  hc.erase(CKA_MODIFIABLE);
  hc.erase(CKA_COPYABLE);
  hd.erase(CKA_MODIFIABLE);
  CHECK(hc == hd);
}
