// rootseal::hsm — TokenAdmin: the ceremony's view of a PKCS#11 token.
//
// One read/write session, logged in as the user, on the process-wide shared
// module. Every call takes the module's call lock and refuses to use handles
// from before a re-initialization (another component of the process, e.g. a
// Pkcs11Root that lost its token, may have run C_Finalize/C_Initialize).
#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/hsm/token_admin.hpp"
#include "pkcs11_catalog.hpp"  // last three: pull in pkcs11.h
#include "pkcs11_mechanisms.hpp"
#include "pkcs11_templates.hpp"

namespace rootseal::hsm {

namespace {

using detail::attr;
using detail::attr_bytes;
using detail::ck_message;
using detail::Module;
using kms::Errc;
using kms::fail;

constexpr std::size_t kRootKeySize = 32;

// The mechanism an AES root key is made for: CBC-PAD for aes-cbc-pad-hmac;
// GCM where asked for or where the token lacks KWP; KWP otherwise.
detail::Mech aes_mech(RootMechanism m, bool token_has_kwp) noexcept {
  if (m == RootMechanism::aes_cbc_pad_hmac) return detail::Mech::cbc_hmac;
  if (m == RootMechanism::aes_gcm || !token_has_kwp) return detail::Mech::gcm;
  return detail::Mech::kwp;
}

std::string trimmed(const unsigned char* p, std::size_t n) {
  while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\0')) --n;
  return std::string(reinterpret_cast<const char*>(p), n);
}

Errc classify(CK_RV rv) noexcept {
  if (detail::is_disconnect(rv)) return Errc::unavailable;
  switch (rv) {
    case CKR_HOST_MEMORY:
    case CKR_DEVICE_MEMORY:
    case CKR_SESSION_COUNT:
      return Errc::unavailable;
    case CKR_PIN_INCORRECT:
    case CKR_PIN_LOCKED:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_EXPIRED:
      return Errc::permission_denied;
    default:
      return Errc::crypto_failure;
  }
}

}  // namespace

bool KeyObject::is_valid_root_key() const noexcept {
  // value_len 0: the token does not say (opencryptoki 3.8 for an imported
  // key); Pkcs11Root accepts that too, the check value identifies the key.
  return aes && (value_len == kRootKeySize || value_len == 0) && token && is_private && sensitive && !extractable &&
         ((wrap && unwrap) || (encrypt && decrypt));
}

bool KeyObject::is_valid_hmac_key() const noexcept {
  // CKA_VALUE_LEN as Pkcs11Root checks it: at least 256 bits where the token
  // says (opencryptoki 3.8 does not report it for an imported generic secret).
  return generic_secret && (value_len == 0 || value_len >= kRootKeySize) && token && is_private && sensitive &&
         !extractable && sign && verify;
}

bool KeyObject::is_valid_rsa_root() const noexcept {
  return rsa && (value_len == 384 || value_len == 512) && token && is_private && sensitive && !extractable && decrypt;
}

std::string hmac_label(std::string_view label) { return std::string(label) + "-hmac"; }

struct TokenAdmin::Impl {
  std::shared_ptr<Module> module;
  std::uint64_t generation = 0;
  CK_SLOT_ID slot = 0;
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  TokenDetails details;
  detail::KwpOffer kwp;  // the KWP constants the token offers (details.has_kwp: either)

  ~Impl() {
    if (!module) return;
    auto lk = module->call_lock();
    // No C_Logout: other sessions of the process (a Pkcs11Root) share the login.
    if (session != CK_INVALID_HANDLE && module->generation() == generation && module->initialized()) {
      module->api()->C_CloseSession(session);
    }
  }

  std::string tok() const { return "PKCS#11 token '" + details.label + "'"; }

  std::unexpected<kms::Error> ck(std::string_view what, CK_RV rv) const {
    return fail(classify(rv), tok() + ": " + ck_message(what, rv));
  }

  // The call lock, or an error when our handles are void.
  kms::Result<std::shared_lock<std::shared_mutex>> lock() const {
    auto lk = module->call_lock();
    if (module->generation() != generation || !module->initialized()) {
      return fail(Errc::unavailable, tok() + ": the PKCS#11 module was re-initialized; open the token again");
    }
    return lk;
  }

  // Reads one attribute of fixed size; false if unavailable.
  template <class T>
  bool get(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, T& out) const {
    CK_ATTRIBUTE a = attr(type, out);
    return module->api()->C_GetAttributeValue(session, h, &a, 1) == CKR_OK && a.ulValueLen == sizeof out;
  }
  // Reads a variable-length attribute; nullopt if unavailable.
  std::optional<std::vector<std::uint8_t>> get_bytes(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type) const {
    return detail::attribute_bytes(module->api(), session, h, type);
  }

  bool is_generic(CK_OBJECT_HANDLE h) const {
    CK_KEY_TYPE type = 0;
    return get(h, CKA_KEY_TYPE, type) && (type == CKK_GENERIC_SECRET || type == CKK_SHA256_HMAC);
  }

  // The HMAC check value of a generic secret key, computed by the token:
  // HMAC-SHA256(key, kHmacCheckMessage)[0..3]; empty if it cannot sign.
  std::string hmac_check(CK_OBJECT_HANDLE h) const {
    CK_FUNCTION_LIST* api = module->api();
    CK_MECHANISM m{CKM_SHA256_HMAC, nullptr, 0};
    if (api->C_SignInit(session, &m, h) != CKR_OK) return {};
    std::array<std::uint8_t, 32> mac{};
    CK_ULONG n = mac.size();
    const CK_RV rv = api->C_Sign(session, reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(kHmacCheckMessage.data())),
                                 static_cast<CK_ULONG>(kHmacCheckMessage.size()), mac.data(), &n);
    if (rv == CKR_BUFFER_TOO_SMALL) api->C_SignFinal(session, nullptr, nullptr);  // (never: the buffer fits)
    if (rv != CKR_OK || n != mac.size()) return {};
    return detail::to_hex(std::span<const std::uint8_t>(mac.data(), 3));
  }

  // The standard KCV of an AES key that may encrypt, computed by the token
  // where it keeps no CKA_CHECK_VALUE (opencryptoki): CKM_AES_CBC_PAD of a
  // zero block under a zero IV begins with AES-ECB(key, 0^128). Empty if the
  // key cannot encrypt so.
  std::string aes_cbc_check(CK_OBJECT_HANDLE h) const {
    CK_FUNCTION_LIST* api = module->api();
    std::array<std::uint8_t, 16> iv{};
    std::array<std::uint8_t, 16> zero{};
    std::array<std::uint8_t, 32> out{};
    CK_MECHANISM m{CKM_AES_CBC_PAD, iv.data(), iv.size()};
    if (api->C_EncryptInit(session, &m, h) != CKR_OK) return {};
    CK_ULONG n = out.size();
    const CK_RV rv = api->C_Encrypt(session, zero.data(), zero.size(), out.data(), &n);
    if (rv == CKR_BUFFER_TOO_SMALL) api->C_EncryptFinal(session, nullptr, nullptr);  // (never: the buffer fits)
    if (rv != CKR_OK || n < 16) return {};
    return detail::to_hex(std::span<const std::uint8_t>(out.data(), 3));
  }

  // The check value of an RSA key object (private or public): SHA-256 of the
  // DER SubjectPublicKeyInfo of its modulus and exponent, first 3 bytes (as
  // Pkcs11Root computes it); empty if the token does not show them.
  std::string rsa_check(CK_OBJECT_HANDLE h) const {
    auto n = get_bytes(h, CKA_MODULUS);
    auto e = get_bytes(h, CKA_PUBLIC_EXPONENT);
    if (!n || !e || n->empty() || e->empty()) return {};
    const auto kcv = detail::rsa_check_value(*n, *e);
    return kcv.empty() ? std::string() : detail::to_hex(kcv);
  }

  // A key's check value: the HMAC check value of a generic secret, the
  // public key's check value of an RSA key, the token's CKA_CHECK_VALUE of
  // any other key (or, for an AES key that may encrypt on a token without
  // it, aes_cbc_check).
  std::string check_value(CK_OBJECT_HANDLE h) const {
    if (is_generic(h)) return hmac_check(h);
    CK_KEY_TYPE type = 0;
    if (get(h, CKA_KEY_TYPE, type) && type == CKK_RSA) return rsa_check(h);
    auto v = get_bytes(h, CKA_CHECK_VALUE);
    if (v && !v->empty()) return detail::to_hex(*v);
    CK_BBOOL enc = CK_FALSE;
    return get(h, CKA_ENCRYPT, enc) && enc == CK_TRUE ? aes_cbc_check(h) : std::string();
  }

  KeyObject describe(CK_OBJECT_HANDLE h) const {
    KeyObject k;
    if (auto l = get_bytes(h, CKA_LABEL)) k.label.assign(l->begin(), l->end());
    if (auto id = get_bytes(h, CKA_ID)) k.id = detail::to_hex(*id);
    CK_KEY_TYPE type = 0;
    const bool typed = get(h, CKA_KEY_TYPE, type);
    k.aes = typed && type == CKK_AES;
    k.generic_secret = typed && (type == CKK_GENERIC_SECRET || type == CKK_SHA256_HMAC);
    k.rsa = typed && type == CKK_RSA;
    if (auto n = k.rsa ? get_bytes(h, CKA_MODULUS) : std::nullopt) k.value_len = n->size();
    CK_ULONG len = 0;
    if (!k.rsa && get(h, CKA_VALUE_LEN, len)) k.value_len = static_cast<std::size_t>(len);
    auto flag = [&](CK_ATTRIBUTE_TYPE t, bool fallback) {
      CK_BBOOL b = CK_FALSE;
      return get(h, t, b) ? b == CK_TRUE : fallback;
    };
    k.token = flag(CKA_TOKEN, false);
    k.is_private = flag(CKA_PRIVATE, false);
    k.sensitive = flag(CKA_SENSITIVE, false);
    k.extractable = flag(CKA_EXTRACTABLE, true);
    k.wrap = flag(CKA_WRAP, false);
    k.unwrap = flag(CKA_UNWRAP, false);
    k.encrypt = flag(CKA_ENCRYPT, false);
    k.decrypt = flag(CKA_DECRYPT, false);
    k.sign = flag(CKA_SIGN, false);
    k.verify = flag(CKA_VERIFY, false);
    k.modifiable = flag(CKA_MODIFIABLE, true);
    if (!k.generic_secret || k.sign) k.kcv = check_value(h);
    return k;
  }

  kms::Result<std::vector<CK_OBJECT_HANDLE>> find_handles(std::string_view label,
                                                          CK_OBJECT_CLASS cls = CKO_SECRET_KEY) const {
    CK_FUNCTION_LIST* api = module->api();
    std::vector<CK_ATTRIBUTE> tmpl = {attr(CKA_CLASS, cls)};
    if (!label.empty()) tmpl.push_back(attr_bytes(CKA_LABEL, label.data(), label.size()));
    if (CK_RV rv = api->C_FindObjectsInit(session, tmpl.data(), static_cast<CK_ULONG>(tmpl.size())); rv != CKR_OK) {
      return ck("C_FindObjectsInit", rv);
    }
    std::vector<CK_OBJECT_HANDLE> out;
    for (;;) {
      std::array<CK_OBJECT_HANDLE, 16> batch{};
      CK_ULONG n = 0;
      const CK_RV rv = api->C_FindObjects(session, batch.data(), batch.size(), &n);
      if (rv != CKR_OK) {
        api->C_FindObjectsFinal(session);
        return ck("C_FindObjects", rv);
      }
      out.insert(out.end(), batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(n));
      if (n < batch.size()) break;
    }
    api->C_FindObjectsFinal(session);
    return out;
  }

  // The one key labelled `label` with check value `kcv`.
  kms::Result<CK_OBJECT_HANDLE> find_one(std::string_view label, std::string_view kcv) const {
    std::vector<CK_OBJECT_HANDLE> hs;
    ROOTSEAL_TRY_ASSIGN(hs, find_handles(label));
    std::optional<CK_OBJECT_HANDLE> hit;
    for (CK_OBJECT_HANDLE h : hs) {
      if (check_value(h) == kcv) hit = h;
    }
    if (!hit.has_value()) {
      return fail(Errc::not_found,
                  tok() + ": no secret key labelled '" + std::string(label) + "' with check value " + std::string(kcv));
    }
    // Two objects with one label and one check value are copies of one key:
    // either will do (a relabel interrupted between copy and destroy).
    return *hit;
  }

  kms::Result<void> require_label_free(std::string_view label) const {
    std::vector<CK_OBJECT_HANDLE> hs;
    ROOTSEAL_TRY_ASSIGN(hs, find_handles(label));
    if (!hs.empty()) {
      return fail(Errc::already_exists, tok() + " already holds a secret key labelled '" + std::string(label) + "'");
    }
    return {};
  }

  // C_CreateObject of `t` with the key value; again without the optional
  // hardening if refused.
  kms::Result<CK_OBJECT_HANDLE> create_with_value(const detail::SecretKeyTemplate& t, const kms::SecureBytes& key,
                                                  const char* what) {
    CK_FUNCTION_LIST* api = module->api();
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    auto tmpl = t.for_create(key.data(), key.size(), true);
    CK_RV rv = api->C_CreateObject(session, tmpl.data(), static_cast<CK_ULONG>(tmpl.size()), &h);
    if (detail::template_refused(rv)) {
      tmpl = t.for_create(key.data(), key.size(), false);
      rv = api->C_CreateObject(session, tmpl.data(), static_cast<CK_ULONG>(tmpl.size()), &h);
    }
    if (rv != CKR_OK) return ck(what, rv);
    return h;
  }

  // Checks a freshly made root key: attributes and (if given) check value.
  // Destroys it on any mismatch.
  kms::Result<KeyObject> check_new_key(CK_OBJECT_HANDLE h, std::string_view expected_kcv, std::string_view what,
                                       bool hmac = false) {
    KeyObject k = describe(h);
    std::string problem;
    if (hmac && !k.is_valid_hmac_key()) {
      problem =
          "does not have the attributes of an HMAC root key (256-bit generic secret, token, private, "
          "sensitive, not extractable, sign and verify)";
    } else if (!hmac && !k.is_valid_root_key()) {
      problem = "does not have the attributes of a root key (AES-256, token, private, sensitive, not extractable)";
    } else if (k.kcv.size() != std::size_t{2} * 3) {
      problem = hmac ? "cannot compute its HMAC check value (C_Sign with CKM_SHA256_HMAC)"
                     : "has no 3-byte CKA_CHECK_VALUE (the ceremony needs the check value computed by the token)";
    } else if (!expected_kcv.empty() && k.kcv != expected_kcv) {
      problem = "has check value " + k.kcv + ", expected " + std::string(expected_kcv);
    }
    if (problem.empty()) return k;
    const CK_RV drv = module->api()->C_DestroyObject(session, h);
    return fail(Errc::crypto_failure,
                tok() + ": the " + std::string(what) + " key '" + k.label + "' " + problem +
                    (drv == CKR_OK ? "; it was destroyed again"
                                   : "; destroying it failed too (" + ck_message("C_DestroyObject", drv) + ")"));
  }
};

TokenAdmin::TokenAdmin(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TokenAdmin::~TokenAdmin() = default;

const TokenDetails& TokenAdmin::details() const noexcept { return impl_->details; }

kms::Result<std::unique_ptr<TokenAdmin>> TokenAdmin::open(const std::filesystem::path& module,
                                                          std::string_view token_label, const kms::SecureBytes& pin,
                                                          bool inspect_only) {
  unsigned char want[32];
  if (token_label.empty() || !detail::pad_label(token_label, want)) {
    return fail(Errc::invalid_argument, "token label must be 1..32 bytes");
  }
  if (pin.empty()) return fail(Errc::invalid_argument, "the user PIN must not be empty");
  auto impl = std::make_unique<Impl>();
  impl->details.label = std::string(token_label);
  ROOTSEAL_TRY_ASSIGN(impl->module, Module::acquire(module));
  auto lk = impl->module->call_lock();
  if (!impl->module->initialized())
    return fail(Errc::unavailable, "PKCS#11 module " + module.string() + " is not initialized");
  impl->generation = impl->module->generation();
  CK_FUNCTION_LIST* api = impl->module->api();

  std::vector<CK_SLOT_ID> slots;
  if (CK_RV rv = detail::slot_list(api, true, slots); rv != CKR_OK) return impl->ck("C_GetSlotList", rv);
  CK_TOKEN_INFO info{};
  const std::vector<CK_SLOT_ID> matches = detail::slots_labelled(api, slots, want, info);
  if (matches.empty()) return fail(Errc::not_found, impl->tok() + " not found in " + module.string());
  if (matches.size() > 1)
    return fail(Errc::conflict, std::to_string(matches.size()) + " tokens are labelled '" + std::string(token_label) +
                                    "'; refusing to choose one");
  impl->slot = matches.front();
  impl->details.manufacturer = trimmed(info.manufacturerID, sizeof info.manufacturerID);
  impl->details.model = trimmed(info.model, sizeof info.model);
  impl->details.serial = trimmed(info.serialNumber, sizeof info.serialNumber);
  if ((info.flags & CKF_USER_PIN_LOCKED) != 0) {
    return fail(Errc::permission_denied, impl->tok() + ": the user PIN is locked; the SO must reset it");
  }
  if ((info.flags & CKF_USER_PIN_INITIALIZED) == 0) {
    return fail(Errc::invalid_argument, impl->tok() + ": the user PIN is not initialized");
  }
  auto has_mech = [&](CK_MECHANISM_TYPE m, CK_FLAGS need) {
    CK_MECHANISM_INFO mi{};
    return api->C_GetMechanismInfo(impl->slot, m, &mi) == CKR_OK && (mi.flags & need) == need;
  };
  impl->kwp.pad = has_mech(detail::kMechKwp, CKF_WRAP | CKF_UNWRAP);
  impl->kwp.v3 = has_mech(detail::kMechKwpV3, CKF_WRAP | CKF_UNWRAP);
  impl->details.has_kwp = impl->kwp.any();
  impl->details.has_gcm = has_mech(CKM_AES_GCM, CKF_ENCRYPT | CKF_DECRYPT);
  impl->details.has_cbc_hmac =
      has_mech(CKM_AES_CBC_PAD, CKF_ENCRYPT | CKF_DECRYPT) && has_mech(CKM_SHA256_HMAC, CKF_SIGN | CKF_VERIFY);
  impl->details.has_rsa_oaep = has_mech(CKM_RSA_PKCS_OAEP, CKF_ENCRYPT | CKF_DECRYPT) &&
                               has_mech(CKM_RSA_PKCS_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR);
  if (!inspect_only && !impl->details.has_kwp && !impl->details.has_gcm && !impl->details.has_cbc_hmac &&
      !impl->details.has_rsa_oaep) {
    return fail(Errc::invalid_argument,
                impl->tok() + " offers none of CKM_AES_KEY_WRAP_PAD (or _KWP), CKM_AES_GCM, CKM_AES_CBC_PAD with " +
                    "CKM_SHA256_HMAC and CKM_RSA_PKCS_OAEP" +
                    detail::mechanism_refusal_detail(api, impl->slot, module.string(), std::string(token_label)) +
                    ". The ceremony makes aes-kwp, aes-gcm and aes-cbc-pad-hmac roots (rsa-oaep roots: see "
                    "docs/ceremony.md)");
  }

  if (CK_RV rv = api->C_OpenSession(impl->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &impl->session);
      rv != CKR_OK) {
    impl->session = CK_INVALID_HANDLE;
    return impl->ck("C_OpenSession(RW)", rv);
  }
  const CK_RV rv =
      api->C_Login(impl->session, CKU_USER, const_cast<std::uint8_t*>(pin.data()), static_cast<CK_ULONG>(pin.size()));
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
    if (rv == CKR_PIN_INCORRECT) return fail(Errc::permission_denied, impl->tok() + ": the user PIN is incorrect");
    return impl->ck("C_Login", rv);
  }
  lk.unlock();
  return std::unique_ptr<TokenAdmin>(new TokenAdmin(std::move(impl)));
}

kms::Result<kms::SecureBytes> TokenAdmin::generate_random(std::size_t n) {
  Impl& m = *impl_;
  std::shared_lock<std::shared_mutex> lk;
  ROOTSEAL_TRY_ASSIGN(lk, m.lock());
  kms::SecureBytes out(n);
  if (CK_RV rv = m.module->api()->C_GenerateRandom(m.session, out.data(), static_cast<CK_ULONG>(n)); rv != CKR_OK) {
    return m.ck("C_GenerateRandom", rv);
  }
  return out;
}

kms::Result<std::vector<KeyObject>> TokenAdmin::find_keys(std::string_view label) {
  Impl& m = *impl_;
  std::shared_lock<std::shared_mutex> lk;
  ROOTSEAL_TRY_ASSIGN(lk, m.lock());
  std::vector<CK_OBJECT_HANDLE> hs;
  ROOTSEAL_TRY_ASSIGN(hs, m.find_handles(label));
  std::vector<KeyObject> out;
  out.reserve(hs.size());
  for (CK_OBJECT_HANDLE h : hs) out.push_back(m.describe(h));
  std::sort(out.begin(), out.end(), [](const KeyObject& a, const KeyObject& b) {
    return std::tie(a.label, a.kcv, a.id) < std::tie(b.label, b.kcv, b.id);
  });
  return out;
}

kms::Result<KeyObject> TokenAdmin::import_root_key(std::string_view label, const kms::SecureBytes& key,
                                                   std::string_view expected_kcv, RootMechanism mechanism) {
  Impl& m = *impl_;
  if (label.empty()) return fail(Errc::invalid_argument, "key label must not be empty");
  if (key.size() != kRootKeySize) return fail(Errc::invalid_argument, "a root key is 32 bytes");
  if (expected_kcv.size() != 6) return fail(Errc::invalid_argument, "expected key check value must be 3 bytes (hex)");
  std::shared_lock<std::shared_mutex> lk;
  ROOTSEAL_TRY_ASSIGN(lk, m.lock());
  ROOTSEAL_TRY(m.require_label_free(label));
  CK_FUNCTION_LIST* api = m.module->api();

  auto t = detail::SecretKeyTemplate::aes_root(aes_mech(mechanism, m.details.has_kwp), m.kwp, label,
                                               detail::KeyMaker::ceremony);
  if (CK_RV rv = api->C_GenerateRandom(m.session, t.id().data(), t.id().size()); rv != CKR_OK) {
    return m.ck("C_GenerateRandom", rv);
  }
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  ROOTSEAL_TRY_ASSIGN(h, m.create_with_value(t, key, "C_CreateObject(root key)"));
  return m.check_new_key(h, expected_kcv, "imported");
}

kms::Result<KeyObject> TokenAdmin::import_hmac_key(std::string_view label, const kms::SecureBytes& key,
                                                   std::string_view expected_check) {
  Impl& m = *impl_;
  if (label.empty()) return fail(Errc::invalid_argument, "key label must not be empty");
  if (key.size() != kRootKeySize) return fail(Errc::invalid_argument, "an HMAC root key is 32 bytes");
  if (expected_check.size() != 6)
    return fail(Errc::invalid_argument, "expected HMAC check value must be 3 bytes (hex)");
  std::shared_lock<std::shared_mutex> lk;
  ROOTSEAL_TRY_ASSIGN(lk, m.lock());
  ROOTSEAL_TRY(m.require_label_free(label));
  auto t = detail::SecretKeyTemplate::hmac(label, detail::KeyMaker::ceremony);
  if (CK_RV rv = m.module->api()->C_GenerateRandom(m.session, t.id().data(), t.id().size()); rv != CKR_OK) {
    return m.ck("C_GenerateRandom", rv);
  }
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  ROOTSEAL_TRY_ASSIGN(h, m.create_with_value(t, key, "C_CreateObject(HMAC key)"));
  return m.check_new_key(h, expected_check, "imported HMAC", true);
}

kms::Result<KeyObject> TokenAdmin::generate_hmac_key(std::string_view label) {
  Impl& m = *impl_;
  if (label.empty()) return fail(Errc::invalid_argument, "key label must not be empty");
  std::shared_lock<std::shared_mutex> lk;
  ROOTSEAL_TRY_ASSIGN(lk, m.lock());
  ROOTSEAL_TRY(m.require_label_free(label));
  auto t = detail::SecretKeyTemplate::hmac(label, detail::KeyMaker::ceremony);
  if (CK_RV rv = m.module->api()->C_GenerateRandom(m.session, t.id().data(), t.id().size()); rv != CKR_OK) {
    return m.ck("C_GenerateRandom", rv);
  }
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  CK_RV rv = detail::generate_secret_key(m.module->api(), m.session, CKM_GENERIC_SECRET_KEY_GEN, t, h);
  if (rv != CKR_OK) return m.ck("C_GenerateKey(HMAC key)", rv);
  return m.check_new_key(h, {}, "generated HMAC", true);
}

kms::Result<KeyObject> TokenAdmin::generate_root_key(std::string_view label, RootMechanism mechanism) {
  Impl& m = *impl_;
  if (label.empty()) return fail(Errc::invalid_argument, "key label must not be empty");
  std::shared_lock<std::shared_mutex> lk;
  ROOTSEAL_TRY_ASSIGN(lk, m.lock());
  ROOTSEAL_TRY(m.require_label_free(label));
  CK_FUNCTION_LIST* api = m.module->api();
  auto t = detail::SecretKeyTemplate::aes_root(aes_mech(mechanism, m.details.has_kwp), m.kwp, label,
                                               detail::KeyMaker::ceremony);
  if (CK_RV rv = api->C_GenerateRandom(m.session, t.id().data(), t.id().size()); rv != CKR_OK) {
    return m.ck("C_GenerateRandom", rv);
  }
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  CK_RV rv = detail::generate_secret_key(api, m.session, CKM_AES_KEY_GEN, t, h);
  if (rv != CKR_OK) return m.ck("C_GenerateKey(root key)", rv);
  return m.check_new_key(h, {}, "generated");
}

kms::Result<KeyObject> TokenAdmin::copy_key(std::string_view label, std::string_view kcv, std::string_view new_label) {
  Impl& m = *impl_;
  if (new_label.empty()) return fail(Errc::invalid_argument, "key label must not be empty");
  std::shared_lock<std::shared_mutex> lk;
  ROOTSEAL_TRY_ASSIGN(lk, m.lock());
  CK_OBJECT_HANDLE src = CK_INVALID_HANDLE;
  ROOTSEAL_TRY_ASSIGN(src, m.find_one(label, kcv));
  ROOTSEAL_TRY(m.require_label_free(new_label));
  CK_ATTRIBUTE tmpl[] = {attr_bytes(CKA_LABEL, new_label.data(), new_label.size())};
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  if (CK_RV rv = m.module->api()->C_CopyObject(m.session, src, tmpl, 1, &h); rv != CKR_OK) {
    return m.ck("C_CopyObject", rv);
  }
  return m.check_new_key(h, kcv, "copied", m.is_generic(src));
}

kms::Result<void> TokenAdmin::destroy_key(std::string_view label, std::string_view kcv) {
  Impl& m = *impl_;
  std::shared_lock<std::shared_mutex> lk;
  ROOTSEAL_TRY_ASSIGN(lk, m.lock());
  // Every object with that label and check value (copies of one key).
  std::vector<CK_OBJECT_HANDLE> hs;
  ROOTSEAL_TRY_ASSIGN(hs, m.find_handles(label));
  std::size_t destroyed = 0;
  for (CK_OBJECT_HANDLE h : hs) {
    if (m.check_value(h) != kcv) continue;
    if (CK_RV rv = m.module->api()->C_DestroyObject(m.session, h); rv != CKR_OK) return m.ck("C_DestroyObject", rv);
    ++destroyed;
  }
  if (destroyed == 0) {
    return fail(Errc::not_found,
                m.tok() + ": no secret key labelled '" + std::string(label) + "' with check value " + std::string(kcv));
  }
  return {};
}

kms::Result<KeyObject> TokenAdmin::relabel(std::string_view label, std::string_view kcv, std::string_view new_label) {
  KeyObject copy;
  ROOTSEAL_TRY_ASSIGN(copy, copy_key(label, kcv, new_label));
  ROOTSEAL_TRY(destroy_key(label, kcv));
  return copy;
}

}  // namespace rootseal::hsm

namespace rootseal::hsm {

kms::Result<std::vector<KeyObject>> TokenAdmin::find_rsa_keys(std::string_view label) {
  Impl& m = *impl_;
  std::shared_lock<std::shared_mutex> lk;
  ROOTSEAL_TRY_ASSIGN(lk, m.lock());
  std::vector<CK_OBJECT_HANDLE> hs;
  ROOTSEAL_TRY_ASSIGN(hs, m.find_handles(label, CKO_PRIVATE_KEY));
  std::vector<KeyObject> out;
  for (CK_OBJECT_HANDLE h : hs) {
    KeyObject k = m.describe(h);
    if (k.rsa) out.push_back(std::move(k));
  }
  return out;
}

kms::Result<KeyObject> TokenAdmin::generate_rsa_root(std::string_view label) {
  Impl& m = *impl_;
  if (label.empty()) return fail(Errc::invalid_argument, "key label must not be empty");
  std::shared_lock<std::shared_mutex> lk;
  ROOTSEAL_TRY_ASSIGN(lk, m.lock());
  ROOTSEAL_TRY(m.require_label_free(label));
  for (CK_OBJECT_CLASS c : {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY}) {
    std::vector<CK_OBJECT_HANDLE> hs;
    ROOTSEAL_TRY_ASSIGN(hs, m.find_handles(label, c));
    if (!hs.empty()) {
      return fail(Errc::already_exists, m.tok() + " already holds an RSA key labelled '" + std::string(label) + "'");
    }
  }
  CK_FUNCTION_LIST* api = m.module->api();
  detail::RsaPairTemplate t(label, detail::KeyMaker::ceremony);
  if (CK_RV rv = api->C_GenerateRandom(m.session, t.id().data(), t.id().size()); rv != CKR_OK) {
    return m.ck("C_GenerateRandom", rv);
  }
  CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
  CK_RV rv = detail::generate_rsa_pair(api, m.session, t, hpub, hpriv);
  if (rv != CKR_OK) return m.ck("C_GenerateKeyPair(RSA root)", rv);

  // The pair must be what a root needs, and the token must do OAEP with
  // SHA-256 both ways (SoftHSM 2.6 only does SHA-1; the mechanism list
  // cannot tell): a fixed 32-byte value, encrypted and decrypted.
  KeyObject k = m.describe(hpriv);
  std::string problem;
  if (!k.is_valid_rsa_root()) {
    problem =
        "does not have the attributes of an RSA root key (3072 or 4096 bits, token, private, sensitive, "
        "not extractable, decrypt)";
  } else if (k.kcv.empty() || k.kcv != m.rsa_check(hpub)) {
    problem = "has no check value, or another than its public key's";
  } else {
    kms::SecureBytes probe(32);
    std::vector<std::uint8_t> ct;
    bool op_active = false;
    detail::Step st = detail::wrap_rsa_oaep(api, m.session, hpub, probe, ct, op_active);
    if (op_active) api->C_EncryptFinal(m.session, nullptr, nullptr);
    kms::SecureBytes back;
    if (st.ok()) {
      op_active = false;
      st =
          detail::unwrap_rsa_oaep(api, m.session, hpriv, std::span<const std::uint8_t>(ct).subspan(1), back, op_active);
      if (op_active) api->C_DecryptFinal(m.session, nullptr, nullptr);
    }
    if (!st.ok() || !(back == probe)) {
      problem =
          "cannot be used: the token does not decrypt with CKM_RSA_PKCS_OAEP (SHA-256, MGF1-SHA-256) what "
          "it encrypted with it (" +
          (st.ok() ? std::string("another value came back") : ck_message(st.function, st.rv)) + ")";
    }
  }
  if (problem.empty()) return k;
  const CK_RV d1 = api->C_DestroyObject(m.session, hpriv);
  const CK_RV d2 = api->C_DestroyObject(m.session, hpub);
  return fail(Errc::crypto_failure,
              m.tok() + ": the generated RSA root key pair '" + std::string(label) + "' " + problem +
                  (d1 == CKR_OK && d2 == CKR_OK ? "; it was destroyed again" : "; destroying it failed too"));
}

}  // namespace rootseal::hsm

namespace rootseal::hsm {

namespace {

// The objects of class `cls` labelled `label` whose check value is `kcv`.
template <class Impl>
kms::Result<std::vector<CK_OBJECT_HANDLE>> with_check(const Impl& m, std::string_view label, CK_OBJECT_CLASS cls,
                                                      std::string_view kcv) {
  std::vector<CK_OBJECT_HANDLE> hs;
  ROOTSEAL_TRY_ASSIGN(hs, m.find_handles(label, cls));
  std::vector<CK_OBJECT_HANDLE> out;
  for (CK_OBJECT_HANDLE h : hs) {
    if (m.check_value(h) == kcv) out.push_back(h);
  }
  return out;
}

}  // namespace

kms::Result<void> TokenAdmin::copy_rsa_pair(std::string_view label, std::string_view kcv, std::string_view new_label) {
  Impl& m = *impl_;
  if (new_label.empty()) return fail(Errc::invalid_argument, "key label must not be empty");
  std::shared_lock<std::shared_mutex> lk;
  ROOTSEAL_TRY_ASSIGN(lk, m.lock());
  for (CK_OBJECT_CLASS cls : {CKO_PUBLIC_KEY, CKO_PRIVATE_KEY}) {
    std::vector<CK_OBJECT_HANDLE> there;
    ROOTSEAL_TRY_ASSIGN(there, with_check(m, new_label, cls, kcv));
    if (!there.empty()) continue;
    std::vector<CK_OBJECT_HANDLE> src;
    ROOTSEAL_TRY_ASSIGN(src, with_check(m, label, cls, kcv));
    if (src.empty()) continue;
    CK_ATTRIBUTE tmpl[] = {attr_bytes(CKA_LABEL, new_label.data(), new_label.size())};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    if (CK_RV rv = m.module->api()->C_CopyObject(m.session, src.front(), tmpl, 1, &h); rv != CKR_OK) {
      return m.ck("C_CopyObject(RSA key)", rv);
    }
    if (m.check_value(h) != kcv || (cls == CKO_PRIVATE_KEY && !m.describe(h).is_valid_rsa_root())) {
      m.module->api()->C_DestroyObject(m.session, h);
      return fail(Errc::crypto_failure, m.tok() + ": the copy of RSA key '" + std::string(label) +
                                            "' is not the same key or lost its attributes; it was destroyed again");
    }
  }
  return {};
}

kms::Result<void> TokenAdmin::destroy_rsa_pair(std::string_view label, std::string_view kcv) {
  Impl& m = *impl_;
  std::shared_lock<std::shared_mutex> lk;
  ROOTSEAL_TRY_ASSIGN(lk, m.lock());
  for (CK_OBJECT_CLASS cls : {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY}) {
    std::vector<CK_OBJECT_HANDLE> hs;
    ROOTSEAL_TRY_ASSIGN(hs, with_check(m, label, cls, kcv));
    for (CK_OBJECT_HANDLE h : hs) {
      if (CK_RV rv = m.module->api()->C_DestroyObject(m.session, h); rv != CKR_OK) return m.ck("C_DestroyObject", rv);
    }
  }
  return {};
}

}  // namespace rootseal::hsm
