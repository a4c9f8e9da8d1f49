// rootseal::hsm — Pkcs11Root: connect, login, the root key, wrap and unwrap.
//
// Structure (private headers beside this file):
//   Impl                     configuration, PIN source, connect/disconnect state (Impl::mu)
//   pkcs11_session_pool.hpp  Connection (one successful connect) and its pool of sessions
//   pkcs11_mechanisms.hpp    KWP and GCM wrapping, the wrapped blob's format
//   pkcs11_provision.cpp     provision_token
//
// Lock order: Impl::mu -> Module call lock -> Connection::mu. Operations take
// Impl::mu only to copy the Connection pointer and to report a disconnect.
// Every CK_RV is turned into a kms::Error right where it is returned, with
// ck_message(): "C_WrapKey: CKR_KEY_HANDLE_INVALID". PINs never reach a
// message.
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/key_wrap.hpp"
#include "pkcs11_catalog.hpp"
#include "pkcs11_session_pool.hpp"  // last three: pull in pkcs11.h
#include "pkcs11_templates.hpp"

namespace rootseal::hsm {

namespace {

using detail::attr;
using detail::attr_bytes;
using detail::ck_message;
using detail::Connection;
using detail::is_disconnect;
using detail::kRootKeySize;
using detail::Mech;
using detail::Module;
using detail::Step;
using kms::Errc;
using kms::fail;

constexpr std::size_t kPinDigestSize = 32;

bool is_root_key_gone(CK_RV rv) noexcept {
  return rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID || rv == CKR_WRAPPING_KEY_HANDLE_INVALID ||
         rv == CKR_UNWRAPPING_KEY_HANDLE_INVALID;
}

bool is_transient(CK_RV rv) noexcept {
  return rv == CKR_HOST_MEMORY || rv == CKR_DEVICE_MEMORY || rv == CKR_SESSION_COUNT || rv == CKR_FUNCTION_CANCELED;
}

// A failed PIN is remembered as SHA-256(salt || pin), in locked memory, so
// that the same wrong PIN is never presented twice (tokens lock after a few).
kms::SecureBytes pin_digest(const kms::SecureBytes& salt, const kms::SecureBytes& pin) {
  kms::SecureBytes out(kPinDigestSize);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned int n = 0;
  const bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
                  EVP_DigestUpdate(ctx, salt.data(), salt.size()) == 1 &&
                  EVP_DigestUpdate(ctx, pin.data(), pin.size()) == 1 && EVP_DigestFinal_ex(ctx, out.data(), &n) == 1 &&
                  n == kPinDigestSize;
  EVP_MD_CTX_free(ctx);
  if (!ok) out.clear();
  return out;
}

// What the token offers of the root mechanisms.
struct TokenMechs {
  bool kwp = false;  // either KWP constant (kwp_offer)
  detail::KwpOffer kwp_offer;
  bool gcm = false;
  bool cbc = false;   // CKM_AES_CBC_PAD encrypt+decrypt
  bool hmac = false;  // CKM_SHA256_HMAC sign+verify
  bool rsa = false;   // CKM_RSA_PKCS_OAEP encrypt+decrypt
  bool aes_gen = false, secret_gen = false, rsa_gen = false;

  [[nodiscard]] bool offers(Mech m) const noexcept {
    switch (m) {
      case Mech::kwp:
        return kwp;
      case Mech::gcm:
        return gcm;
      case Mech::cbc_hmac:
        return cbc && hmac;
      case Mech::rsa_oaep:
        return rsa;
    }
    return false;
  }
  [[nodiscard]] bool can_generate(Mech m) const noexcept {
    if (m == Mech::rsa_oaep) return rsa_gen;
    return aes_gen && (m != Mech::cbc_hmac || secret_gen);
  }
};

// The root's keys once found: `root` (AES secret key or RSA private key) and
// `aux` (the HMAC key of cbc_hmac, the RSA public key of rsa_oaep).
struct RootKeys {
  CK_OBJECT_HANDLE root = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE aux = CK_INVALID_HANDLE;
  Mech mech = Mech::kwp;
  detail::KwpUse kwp;  // the KWP mechanisms of an AES root (detail::kwp_use)
};

std::optional<Mech> configured_mech(RootMechanism m) noexcept {
  switch (m) {
    case RootMechanism::automatic:
      return std::nullopt;
    case RootMechanism::aes_kwp:
      return Mech::kwp;
    case RootMechanism::aes_gcm:
      return Mech::gcm;
    case RootMechanism::aes_cbc_pad_hmac:
      return Mech::cbc_hmac;
    case RootMechanism::rsa_oaep:
      return Mech::rsa_oaep;
  }
  return std::nullopt;
}

constexpr Mech kPreference[] = {Mech::kwp, Mech::gcm, Mech::cbc_hmac, Mech::rsa_oaep};

}  // namespace

// ---------------------------------------------------------------------------

struct Pkcs11Root::Impl {
  Pkcs11Config cfg;
  PinSource pin_source;
  kms::SecureBytes pin_salt = kms::SecureBytes::random(16);

  std::mutex mu;                               // connect/disconnect state below
  std::shared_ptr<Module> module;              // loaded at the first probe()
  std::shared_ptr<Connection> conn;            // null while disconnected
  std::uint64_t seen_generation = 0;           // module generation of the last connect attempt
  bool need_reinit = false;                    // the last failure calls for C_Finalize/C_Initialize
  std::optional<kms::Error> last_error;        // why we are disconnected
  std::optional<kms::SecureBytes> failed_pin;  // digest of the PIN the token rejected
  std::string mechanism;                       // of the last successful connect
  std::string root_mechanism;                  // the same, as a pkcs11.mechanism value

  [[nodiscard]] std::string tok() const { return "PKCS#11 token '" + cfg.token_label + "'"; }

  // A failed call while connecting: unavailable; a disconnect-class value
  // calls for C_Finalize/C_Initialize before the next attempt.
  std::unexpected<kms::Error> unavailable(const char* function, CK_RV rv) {
    if (is_disconnect(rv)) need_reinit = true;
    return fail(Errc::unavailable, tok() + " unavailable: " + ck_message(function, rv));
  }

  kms::Error not_connected() const {
    return last_error ? *last_error
                      : kms::Error(Errc::sealed, "PKCS#11 root: not connected (probe() has not succeeded yet)");
  }

  kms::Result<std::shared_ptr<Connection>> current() {
    std::lock_guard g(mu);
    if (!conn) return std::unexpected(not_connected());
    return conn;
  }

  // Drops `c` (if still current) after a disconnect-class error.
  void disconnect(const std::shared_ptr<Connection>& c, const kms::Error& why) {
    std::lock_guard g(mu);
    if (conn != c) return;
    c->mark_broken();
    conn.reset();  // the pool goes when the last lease is back
    last_error = why;
    need_reinit = true;
  }

  // Maps a failed operation step; disconnect-class values drop the pool.
  kms::Error classify(const std::shared_ptr<Connection>& c, const Step& st, bool decrypting) {
    if (is_disconnect(st.rv) || is_root_key_gone(st.rv)) {
      kms::Error e(Errc::unavailable, tok() + " unavailable: " + ck_message(st.function, st.rv));
      disconnect(c, e);
      return e;
    }
    if (decrypting &&
        (st.rv == CKR_WRAPPED_KEY_INVALID || st.rv == CKR_WRAPPED_KEY_LEN_RANGE ||
         st.rv == CKR_ENCRYPTED_DATA_INVALID || st.rv == CKR_ENCRYPTED_DATA_LEN_RANGE || st.rv == CKR_GENERAL_ERROR)) {
      // SoftHSM 2.6.1 reports a failed KWP integrity check and a bad GCM tag
      // as CKR_GENERAL_ERROR.
      return kms::Error(Errc::decryption_failed, "wrapped key does not authenticate under this root key (" +
                                                     ck_message(st.function, st.rv) + ")");
    }
    if (is_transient(st.rv)) return kms::Error(Errc::unavailable, ck_message(st.function, st.rv));
    return kms::Error(Errc::crypto_failure, ck_message(st.function, st.rv));
  }

  kms::Result<void> probe();
  Step liveness_locked(const Connection& c);

  // connect_locked() and its steps, in the order it runs them. All but the
  // first run under the module call lock.
  kms::Result<void> connect_locked();
  kms::Result<void> load_module_locked();
  kms::Result<CK_SLOT_ID> find_token_locked(CK_FUNCTION_LIST* api, const unsigned char (&label)[32]);
  kms::Result<void> login_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s);
  kms::Result<RootKeys> root_keys_locked(CK_FUNCTION_LIST* api, CK_SLOT_ID slot, CK_SESSION_HANDLE s, TokenMechs mechs);
  kms::Result<CK_OBJECT_HANDLE> find_key_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                                                const std::string& label, bool& found);
  kms::Result<void> generate_locked(CK_FUNCTION_LIST* api, CK_SLOT_ID slot, CK_SESSION_HANDLE s, Mech mech,
                                    TokenMechs mechs);
  kms::Result<void> generate_key_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE rw, Mech mech,
                                        detail::KwpOffer token_kwp);
  kms::Result<void> generate_hmac_key_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE rw);
  kms::Result<void> generate_rsa_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE rw);
  // C_GenerateKey with `t` (a fresh CKA_ID), again without its hardening if
  // the token refuses it (pkcs11_templates.hpp).
  kms::Result<void> generate_secret_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE rw, CK_MECHANISM_TYPE gen_mechanism,
                                           detail::SecretKeyTemplate& t, const char* what);
  kms::Result<Mech> check_root_key_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                                          TokenMechs mechs, bool has_hmac_key);
  kms::Result<void> check_secret_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                                        const std::string& what);
  kms::Result<void> check_rsa_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE priv,
                                     CK_OBJECT_HANDLE pub);
  kms::Result<std::string> kcv_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, const RootKeys& keys);

  [[nodiscard]] std::string hmac_label() const { return cfg.key_label + "-hmac"; }
  [[nodiscard]] std::string refusal(CK_FUNCTION_LIST* api, CK_SLOT_ID slot, const std::string& what) const {
    return tok() + " " + what + detail::mechanism_refusal_detail(api, slot, cfg.module.string(), cfg.token_label);
  }
};

// ----- probe -------------------------------------------------------------------

kms::Result<void> Pkcs11Root::Impl::probe() {
  std::lock_guard g(mu);
  if (conn) {
    const Step st = liveness_locked(*conn);
    if (st.ok()) return {};
    conn->mark_broken();
    conn.reset();
    need_reinit = true;
    last_error = kms::Error(Errc::unavailable, tok() + " unavailable: " + ck_message(st.function, st.rv));
  }
  auto r = connect_locked();
  if (!r) last_error = r.error();
  return r;
}

Step Pkcs11Root::Impl::liveness_locked(const Connection& c) {
  auto cl = c.module->call_lock();
  if (!c.handles_valid()) return {detail::kReinitialized, CKR_CRYPTOKI_NOT_INITIALIZED};
  CK_FUNCTION_LIST* api = c.module->api();
  CK_SESSION_INFO si{};
  if (CK_RV rv = api->C_GetSessionInfo(c.login_session, &si); rv != CKR_OK) return {"C_GetSessionInfo", rv};
  if (si.state != CKS_RO_USER_FUNCTIONS && si.state != CKS_RW_USER_FUNCTIONS) {
    return {"C_GetSessionInfo", CKR_USER_NOT_LOGGED_IN};
  }
  CK_TOKEN_INFO ti{};
  if (CK_RV rv = api->C_GetTokenInfo(c.slot, &ti); rv != CKR_OK) return {"C_GetTokenInfo", rv};
  CK_OBJECT_CLASS cls = 0;
  CK_ATTRIBUTE a = attr(CKA_CLASS, cls);
  if (CK_RV rv = api->C_GetAttributeValue(c.login_session, c.root_key, &a, 1); rv != CKR_OK) {
    return {"C_GetAttributeValue(root key)", rv};
  }
  if (cls != (c.mech == Mech::rsa_oaep ? CKO_PRIVATE_KEY : CKO_SECRET_KEY)) {
    return {"C_GetAttributeValue(root key)", CKR_OBJECT_HANDLE_INVALID};
  }
  return {};
}

// ----- connect -----------------------------------------------------------------

kms::Result<void> Pkcs11Root::Impl::connect_locked() {
  unsigned char want_label[32];
  if (cfg.token_label.empty() || !detail::pad_label(cfg.token_label, want_label)) {
    return fail(Errc::sealed, "PKCS#11 token label must be 1..32 bytes");
  }
  if (cfg.key_label.empty()) return fail(Errc::sealed, "PKCS#11 root key label must not be empty");
  ROOTSEAL_TRY(load_module_locked());

  auto cl = module->call_lock();
  const std::uint64_t gen = module->generation();
  seen_generation = gen;
  if (!module->initialized()) {
    need_reinit = true;
    return fail(Errc::unavailable, "PKCS#11 module " + cfg.module.string() + " is not initialized");
  }
  CK_FUNCTION_LIST* api = module->api();

  // 1. The token, by label, among the slots with a token present.
  CK_SLOT_ID slot = 0;
  ROOTSEAL_TRY_ASSIGN(slot, find_token_locked(api, want_label));

  // 2. Mechanisms.
  auto has_mech = [&](CK_MECHANISM_TYPE m, CK_FLAGS need) {
    CK_MECHANISM_INFO mi{};
    return api->C_GetMechanismInfo(slot, m, &mi) == CKR_OK && (mi.flags & need) == need;
  };
  TokenMechs mechs;
  mechs.kwp_offer.pad = has_mech(detail::kMechKwp, CKF_WRAP | CKF_UNWRAP);
  mechs.kwp_offer.v3 = has_mech(detail::kMechKwpV3, CKF_WRAP | CKF_UNWRAP);
  mechs.kwp = mechs.kwp_offer.any();
  mechs.gcm = has_mech(CKM_AES_GCM, CKF_ENCRYPT | CKF_DECRYPT);
  mechs.cbc = has_mech(CKM_AES_CBC_PAD, CKF_ENCRYPT | CKF_DECRYPT);
  mechs.hmac = has_mech(CKM_SHA256_HMAC, CKF_SIGN | CKF_VERIFY);
  mechs.rsa = has_mech(CKM_RSA_PKCS_OAEP, CKF_ENCRYPT | CKF_DECRYPT);
  mechs.aes_gen = has_mech(CKM_AES_KEY_GEN, CKF_GENERATE);
  mechs.secret_gen = has_mech(CKM_GENERIC_SECRET_KEY_GEN, CKF_GENERATE);
  mechs.rsa_gen = has_mech(CKM_RSA_PKCS_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR);

  // 3. The login session (kept open for as long as we are connected: the
  //    login lasts while the application has a session with the token).
  detail::SessionGuard login_session(api);
  if (CK_RV rv = api->C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &login_session.handle); rv != CKR_OK) {
    login_session.handle = CK_INVALID_HANDLE;
    return unavailable("C_OpenSession", rv);
  }
  ROOTSEAL_TRY(login_locked(api, login_session.handle));

  // 4. The root key(s), found or generated, checked; the mechanism.
  RootKeys keys;
  ROOTSEAL_TRY_ASSIGN(keys, root_keys_locked(api, slot, login_session.handle, mechs));

  // 5. Key check value.
  auto kcv = kcv_locked(api, login_session.handle, keys);
  if (!kcv) return std::unexpected(kcv.error());

  auto c = std::make_shared<Connection>();
  c->module = module;
  c->generation = gen;
  c->slot = slot;
  c->login_session = login_session.release();
  c->root_key = keys.root;
  c->aux_key = keys.aux;
  c->mech = keys.mech;
  c->kwp = keys.kwp;
  c->kcv = std::move(*kcv);
  c->max_sessions = std::max<std::size_t>(1, cfg.max_sessions);
  cl.unlock();  // (the Connection's destructor takes the call lock itself)
  conn = std::move(c);
  last_error.reset();
  mechanism = std::string(detail::mech_name(keys.mech));
  root_mechanism = std::string(detail::mech_config_name(keys.mech));
  return {};
}

kms::Result<void> Pkcs11Root::Impl::load_module_locked() {
  if (!module) {
    auto m = Module::acquire(cfg.module);
    if (!m) return std::unexpected(m.error());
    module = std::move(*m);
    need_reinit = false;  // freshly initialized
  }
  if (need_reinit) {
    // C_Finalize + C_Initialize: re-reads the slots and tokens (unless another
    // user of the module already did so since we last looked).
    auto g = module->reinitialize(seen_generation);
    if (!g) return std::unexpected(g.error());
    need_reinit = false;
  }
  return {};
}

kms::Result<CK_SLOT_ID> Pkcs11Root::Impl::find_token_locked(CK_FUNCTION_LIST* api, const unsigned char (&label)[32]) {
  std::vector<CK_SLOT_ID> slots;
  if (CK_RV rv = detail::slot_list(api, true, slots); rv != CKR_OK) return unavailable("C_GetSlotList", rv);
  CK_TOKEN_INFO token_info{};
  const std::vector<CK_SLOT_ID> matches = detail::slots_labelled(api, slots, label, token_info);
  if (matches.empty()) {
    need_reinit = true;  // a token plugged in (or created) later shows up after C_Initialize
    return fail(Errc::unavailable,
                tok() + " not found (" + std::to_string(slots.size()) + " slot(s) with a token present)");
  }
  if (matches.size() > 1) {
    return fail(Errc::sealed, std::to_string(matches.size()) + " tokens are labelled '" + cfg.token_label +
                                  "'; refusing to choose one");
  }
  if ((token_info.flags & CKF_USER_PIN_LOCKED) != 0) {
    return fail(Errc::sealed, tok() + ": the user PIN is locked (CKF_USER_PIN_LOCKED); the SO must reset it");
  }
  if ((token_info.flags & CKF_USER_PIN_INITIALIZED) == 0) {
    return fail(Errc::sealed, tok() + ": the user PIN is not initialized");
  }
  return matches.front();
}

kms::Result<RootKeys> Pkcs11Root::Impl::root_keys_locked(CK_FUNCTION_LIST* api, CK_SLOT_ID slot, CK_SESSION_HANDLE s,
                                                         TokenMechs mechs) {
  const std::optional<Mech> want = configured_mech(cfg.mechanism);
  const std::string key_desc = tok() + ": root key '" + cfg.key_label + "'";
  bool found_aes = false, found_rsa = false;
  CK_OBJECT_HANDLE aes = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
  ROOTSEAL_TRY_ASSIGN(aes, find_key_locked(api, s, CKO_SECRET_KEY, cfg.key_label, found_aes));
  ROOTSEAL_TRY_ASSIGN(priv, find_key_locked(api, s, CKO_PRIVATE_KEY, cfg.key_label, found_rsa));
  if (!found_aes && !found_rsa) {
    if (!cfg.generate_if_missing) {
      return fail(Errc::sealed,
                  tok() + ": no root key labelled '" + cfg.key_label + "' (and generating one is not enabled)");
    }
    std::optional<Mech> pick = want;
    if (!pick) {
      for (Mech m : kPreference) {
        if (mechs.offers(m) && mechs.can_generate(m)) {
          pick = m;
          break;
        }
      }
    }
    if (!pick) return fail(Errc::sealed, refusal(api, slot, "offers none of the root mechanisms"));
    if (!mechs.offers(*pick) || !mechs.can_generate(*pick)) {
      return fail(Errc::sealed,
                  refusal(api, slot,
                          "cannot hold a root for pkcs11.mechanism " + std::string(detail::mech_config_name(*pick))));
    }
    ROOTSEAL_TRY(generate_locked(api, slot, s, *pick, mechs));
    // Exactly one of each now? (another process may race)
    ROOTSEAL_TRY_ASSIGN(aes, find_key_locked(api, s, CKO_SECRET_KEY, cfg.key_label, found_aes));
    ROOTSEAL_TRY_ASSIGN(priv, find_key_locked(api, s, CKO_PRIVATE_KEY, cfg.key_label, found_rsa));
    if (!found_aes && !found_rsa) return fail(Errc::sealed, tok() + ": the generated root key cannot be found");
  }
  if (found_aes && found_rsa) {
    return fail(Errc::sealed, tok() + ": both a secret key and a private key are labelled '" + cfg.key_label +
                                  "'; refusing to choose one");
  }
  RootKeys keys;
  if (found_rsa) {
    if (want && *want != Mech::rsa_oaep) {
      return fail(Errc::sealed, key_desc + " is an RSA key pair (rsa-oaep), but pkcs11.mechanism is " +
                                    std::string(detail::mech_config_name(*want)));
    }
    if (!mechs.rsa)
      return fail(Errc::sealed, refusal(api, slot, "does not offer CKM_RSA_PKCS_OAEP (encrypt, decrypt)"));
    bool found_pub = false;
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE;
    ROOTSEAL_TRY_ASSIGN(pub, find_key_locked(api, s, CKO_PUBLIC_KEY, cfg.key_label, found_pub));
    if (!found_pub) return fail(Errc::sealed, key_desc + ": the RSA public key of the pair is missing");
    ROOTSEAL_TRY(check_rsa_locked(api, s, priv, pub));
    keys.root = priv;
    keys.aux = pub;
    keys.mech = Mech::rsa_oaep;
    return keys;
  }
  bool found_hmac = false;
  CK_OBJECT_HANDLE hmac = CK_INVALID_HANDLE;
  ROOTSEAL_TRY_ASSIGN(hmac, find_key_locked(api, s, CKO_SECRET_KEY, hmac_label(), found_hmac));
  // KWP as this key allows it (its CKA_ALLOWED_MECHANISMS may name one constant).
  keys.kwp = detail::kwp_use(api, s, aes, mechs.kwp_offer);
  TokenMechs for_key = mechs;
  for_key.kwp = keys.kwp.wrap != 0;
  ROOTSEAL_TRY_ASSIGN(keys.mech, check_root_key_locked(api, s, aes, for_key, found_hmac));
  keys.root = aes;
  if (keys.mech == Mech::cbc_hmac) {
    ROOTSEAL_TRY(check_secret_locked(api, s, hmac, "HMAC key '" + hmac_label() + "'"));
    keys.aux = hmac;
  }
  return keys;
}

kms::Result<Mech> Pkcs11Root::Impl::check_root_key_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s,
                                                          CK_OBJECT_HANDLE key, TokenMechs mechs, bool has_hmac_key) {
  // Never use a root key that could be read out.
  CK_KEY_TYPE key_type = 0;
  CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE, can_wrap = CK_FALSE, can_unwrap = CK_FALSE,
           can_encrypt = CK_FALSE, can_decrypt = CK_FALSE;
  CK_ULONG value_len = 0;
  CK_ATTRIBUTE attrs[] = {attr(CKA_KEY_TYPE, key_type),       attr(CKA_SENSITIVE, sensitive),
                          attr(CKA_EXTRACTABLE, extractable), attr(CKA_WRAP, can_wrap),
                          attr(CKA_UNWRAP, can_unwrap),       attr(CKA_ENCRYPT, can_encrypt),
                          attr(CKA_DECRYPT, can_decrypt),     attr(CKA_VALUE_LEN, value_len)};
  const CK_RV arv = api->C_GetAttributeValue(s, key, attrs, std::size(attrs));
  if (arv != CKR_OK && arv != CKR_ATTRIBUTE_TYPE_INVALID && arv != CKR_ATTRIBUTE_SENSITIVE) {
    return unavailable("C_GetAttributeValue(root key)", arv);
  }
  auto known = [&](std::size_t i) { return attrs[i].ulValueLen != CK_UNAVAILABLE_INFORMATION; };
  const std::string key_desc = tok() + ": root key '" + cfg.key_label + "'";
  if (!known(0) || key_type != CKK_AES) return fail(Errc::sealed, key_desc + " is not an AES key");
  if (!known(1) || sensitive != CK_TRUE) {
    return fail(Errc::sealed, key_desc + " is not CKA_SENSITIVE; refusing a root key that can be read out");
  }
  if (!known(2) || extractable != CK_FALSE) {
    return fail(Errc::sealed, key_desc + " is CKA_EXTRACTABLE; refusing a root key that can be wrapped out");
  }
  if (known(7) && value_len != kRootKeySize) {
    return fail(Errc::sealed, key_desc + " is " + std::to_string(value_len * 8) + " bits; AES-256 is required");
  }
  const bool key_wraps = known(3) && known(4) && can_wrap == CK_TRUE && can_unwrap == CK_TRUE;
  const bool key_encrypts = known(5) && known(6) && can_encrypt == CK_TRUE && can_decrypt == CK_TRUE;
  auto usable = [&](Mech m) {
    switch (m) {
      case Mech::kwp:
        return mechs.kwp && key_wraps;
      case Mech::gcm:
        return mechs.gcm && key_encrypts;
      case Mech::cbc_hmac:
        return mechs.cbc && mechs.hmac && key_encrypts && has_hmac_key;
      case Mech::rsa_oaep:
        return false;
    }
    return false;
  };
  const std::optional<Mech> want = configured_mech(cfg.mechanism);
  if (want) {
    if (usable(*want)) return *want;
    std::string why;
    switch (*want) {
      case Mech::kwp:
        why =
            "it needs CKA_WRAP+CKA_UNWRAP and a token offering CKM_AES_KEY_WRAP_PAD (0x210A) or "
            "CKM_AES_KEY_WRAP_KWP (0x210B), allowed by the key's CKA_ALLOWED_MECHANISMS";
        break;
      case Mech::gcm:
        why = "it needs CKA_ENCRYPT+CKA_DECRYPT and a token offering CKM_AES_GCM";
        break;
      case Mech::cbc_hmac:
        why = "it needs CKA_ENCRYPT+CKA_DECRYPT, an HMAC key labelled '" + hmac_label() +
              "' and a token offering CKM_AES_CBC_PAD and CKM_SHA256_HMAC" +
              (has_hmac_key ? "" : " (there is no such HMAC key)");
        break;
      case Mech::rsa_oaep:
        why = "it is an AES key; rsa-oaep needs an RSA key pair";
        break;
    }
    return fail(Errc::sealed, key_desc + " cannot be used with pkcs11.mechanism " +
                                  std::string(detail::mech_config_name(*want)) + ": " + why);
  }
  // auto: the companion HMAC key marks a CBC-PAD+HMAC root; otherwise the
  // strongest the key and the token allow.
  if (has_hmac_key) {
    if (usable(Mech::cbc_hmac)) return Mech::cbc_hmac;
    return fail(Errc::sealed, key_desc + " has an HMAC key '" + hmac_label() +
                                  "' (an aes-cbc-pad-hmac root) but cannot be used with it: it needs "
                                  "CKA_ENCRYPT+CKA_DECRYPT and a token offering CKM_AES_CBC_PAD and CKM_SHA256_HMAC");
  }
  if (usable(Mech::kwp)) return Mech::kwp;
  if (usable(Mech::gcm)) return Mech::gcm;
  return fail(Errc::sealed, key_desc +
                                " cannot be used: it needs CKA_WRAP+CKA_UNWRAP with CKM_AES_KEY_WRAP_PAD or _KWP, "
                                "CKA_ENCRYPT+CKA_DECRYPT with CKM_AES_GCM, or an HMAC key '" +
                                hmac_label() + "' for CKM_AES_CBC_PAD+CKM_SHA256_HMAC");
}

kms::Result<void> Pkcs11Root::Impl::check_secret_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s,
                                                        CK_OBJECT_HANDLE key, const std::string& what) {
  CK_KEY_TYPE key_type = 0;
  CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE, can_sign = CK_FALSE, can_verify = CK_FALSE;
  CK_ULONG value_len = 0;
  CK_ATTRIBUTE attrs[] = {attr(CKA_KEY_TYPE, key_type),       attr(CKA_SENSITIVE, sensitive),
                          attr(CKA_EXTRACTABLE, extractable), attr(CKA_SIGN, can_sign),
                          attr(CKA_VERIFY, can_verify),       attr(CKA_VALUE_LEN, value_len)};
  const CK_RV arv = api->C_GetAttributeValue(s, key, attrs, std::size(attrs));
  if (arv != CKR_OK && arv != CKR_ATTRIBUTE_TYPE_INVALID && arv != CKR_ATTRIBUTE_SENSITIVE) {
    return unavailable("C_GetAttributeValue(HMAC key)", arv);
  }
  auto known = [&](std::size_t i) { return attrs[i].ulValueLen != CK_UNAVAILABLE_INFORMATION; };
  const std::string desc = tok() + ": " + what;
  if (!known(0) || (key_type != CKK_GENERIC_SECRET && key_type != CKK_SHA256_HMAC)) {
    return fail(Errc::sealed, desc + " is not a generic secret (or SHA-256 HMAC) key");
  }
  if (!known(1) || sensitive != CK_TRUE || !known(2) || extractable != CK_FALSE) {
    return fail(Errc::sealed, desc + " is not CKA_SENSITIVE and non-extractable; refusing it");
  }
  if (!known(3) || !known(4) || can_sign != CK_TRUE || can_verify != CK_TRUE) {
    return fail(Errc::sealed, desc + " lacks CKA_SIGN+CKA_VERIFY");
  }
  // 0: the token does not know (opencryptoki 3.8 reports 0 for a generic
  // secret imported with C_CreateObject, as the ceremony does).
  if (known(5) && value_len != 0 && value_len < kRootKeySize) {
    return fail(Errc::sealed, desc + " is " + std::to_string(value_len * 8) + " bits; at least 256 are required");
  }
  return {};
}

kms::Result<void> Pkcs11Root::Impl::check_rsa_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE priv,
                                                     CK_OBJECT_HANDLE pub) {
  const std::string key_desc = tok() + ": RSA root key '" + cfg.key_label + "'";
  CK_KEY_TYPE type = 0, pub_type = 0;
  CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE, can_decrypt = CK_FALSE, can_encrypt = CK_FALSE;
  CK_ATTRIBUTE attrs[] = {attr(CKA_KEY_TYPE, type), attr(CKA_SENSITIVE, sensitive), attr(CKA_EXTRACTABLE, extractable),
                          attr(CKA_DECRYPT, can_decrypt)};
  CK_RV rv = api->C_GetAttributeValue(s, priv, attrs, std::size(attrs));
  if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE) {
    return unavailable("C_GetAttributeValue(RSA private key)", rv);
  }
  auto known = [&](std::size_t i) { return attrs[i].ulValueLen != CK_UNAVAILABLE_INFORMATION; };
  if (!known(0) || type != CKK_RSA) return fail(Errc::sealed, key_desc + " is not an RSA private key");
  if (!known(1) || sensitive != CK_TRUE) {
    return fail(Errc::sealed, key_desc + " is not CKA_SENSITIVE; refusing a root key that can be read out");
  }
  if (!known(2) || extractable != CK_FALSE) {
    return fail(Errc::sealed, key_desc + " is CKA_EXTRACTABLE; refusing a root key that can be wrapped out");
  }
  if (!known(3) || can_decrypt != CK_TRUE) return fail(Errc::sealed, key_desc + " lacks CKA_DECRYPT");
  CK_ATTRIBUTE pattrs[] = {attr(CKA_KEY_TYPE, pub_type), attr(CKA_ENCRYPT, can_encrypt)};
  rv = api->C_GetAttributeValue(s, pub, pattrs, std::size(pattrs));
  if (rv != CKR_OK) return unavailable("C_GetAttributeValue(RSA public key)", rv);
  if (pub_type != CKK_RSA || can_encrypt != CK_TRUE) {
    return fail(Errc::sealed, key_desc + ": the public key is not an RSA key with CKA_ENCRYPT");
  }
  // One pair: the moduli must match; 3072..4096 bits.
  auto modulus = [&](CK_OBJECT_HANDLE h) {
    std::vector<std::uint8_t> m(detail::kRsaMaxModulusBytes);
    CK_ATTRIBUTE a = attr_bytes(CKA_MODULUS, m.data(), m.size());
    if (api->C_GetAttributeValue(s, h, &a, 1) != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
      m.clear();
    else
      m.resize(a.ulValueLen);
    return m;
  };
  const auto pub_n = modulus(pub);
  if (pub_n.size() != detail::kRsaMinModulusBytes && pub_n.size() != detail::kRsaMaxModulusBytes) {
    return fail(Errc::sealed,
                key_desc + ": the modulus is " + std::to_string(pub_n.size() * 8) + " bits; 3072 or 4096 are required");
  }
  const auto priv_n = modulus(priv);
  if (!priv_n.empty() && priv_n != pub_n) {
    return fail(Errc::sealed, key_desc + ": the private and public keys labelled so are not one pair");
  }
  // Does the token do OAEP with SHA-256/MGF1-SHA-256, both ways? (SoftHSM
  // 2.6 only does SHA-1 and says so with CKR_ARGUMENTS_BAD; the mechanism
  // list cannot tell.) A fixed all-zero 32-byte value, encrypted with the
  // public key and decrypted with the private key.
  kms::SecureBytes probe_key(kRootKeySize);
  std::vector<std::uint8_t> out;
  bool op_active = false;
  Step st = detail::wrap_rsa_oaep(api, s, pub, probe_key, out, op_active);
  if (op_active) api->C_EncryptFinal(s, nullptr, nullptr);  // ends the operation (the result does not matter)
  if (st.rv == CKR_ARGUMENTS_BAD || st.rv == CKR_MECHANISM_PARAM_INVALID || st.rv == CKR_MECHANISM_INVALID) {
    return fail(Errc::sealed, key_desc + ": the token refuses CKM_RSA_PKCS_OAEP with SHA-256 and MGF1-SHA-256 (" +
                                  ck_message(st.function, st.rv) + "); rsa-oaep cannot be used on it");
  }
  if (!st.ok()) return unavailable(st.function, st.rv);
  kms::SecureBytes back;
  op_active = false;
  st = detail::unwrap_rsa_oaep(api, s, priv, std::span<const std::uint8_t>(out).subspan(1), back, op_active);
  if (op_active) api->C_DecryptFinal(s, nullptr, nullptr);
  if (is_disconnect(st.rv)) return unavailable(st.function, st.rv);
  if (!st.ok() || back != probe_key) {
    return fail(Errc::sealed, key_desc +
                                  ": the token does not decrypt with CKM_RSA_PKCS_OAEP (SHA-256) what it "
                                  "encrypted with it (" +
                                  (st.ok() ? std::string("another value came back") : ck_message(st.function, st.rv)) +
                                  "); rsa-oaep cannot be used on it");
  }
  return {};
}

kms::Result<void> Pkcs11Root::Impl::login_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s) {
  const std::string tok = this->tok();
  // Login state is per token and application: already logged in (another
  // session of ours, another Pkcs11Root on the same token) needs no PIN.
  CK_SESSION_INFO si{};
  if (CK_RV rv = api->C_GetSessionInfo(s, &si); rv != CKR_OK) {
    if (is_disconnect(rv)) need_reinit = true;
    return fail(Errc::unavailable, tok + " unavailable: " + ck_message("C_GetSessionInfo", rv));
  }
  if (si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS) return {};

  if (!pin_source) return fail(Errc::sealed, tok + ": no PIN source configured");
  auto pin = pin_source();
  if (!pin) return std::unexpected(pin.error());
  kms::SecureBytes digest = pin_digest(pin_salt, *pin);
  if (failed_pin && !digest.empty() && *failed_pin == digest) {
    pin->clear();
    return fail(Errc::sealed, tok +
                                  ": the user PIN was rejected by the token (CKR_PIN_INCORRECT) and "
                                  "the PIN source still supplies the same PIN; not trying it again");
  }
  const CK_RV rv = api->C_Login(s, CKU_USER, pin->data(), static_cast<CK_ULONG>(pin->size()));
  pin->clear();  // wiped now, whatever the outcome
  switch (rv) {
    case CKR_OK:
    case CKR_USER_ALREADY_LOGGED_IN:
      failed_pin.reset();
      return {};
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
      if (!digest.empty()) failed_pin = std::move(digest);
      return fail(Errc::sealed, tok + ": the user PIN is incorrect (" + ck_message("C_Login", rv) +
                                    "); it will not be tried again until the PIN source supplies another");
    case CKR_PIN_LOCKED:
      return fail(Errc::sealed,
                  tok + ": the user PIN is locked (" + ck_message("C_Login", rv) + "); the SO must reset it");
    case CKR_PIN_EXPIRED:
      return fail(Errc::sealed, tok + ": the user PIN has expired (" + ck_message("C_Login", rv) + ")");
    default:
      if (is_disconnect(rv)) need_reinit = true;
      return fail(Errc::unavailable, tok + " unavailable: " + ck_message("C_Login", rv));
  }
}

kms::Result<CK_OBJECT_HANDLE> Pkcs11Root::Impl::find_key_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s,
                                                                CK_OBJECT_CLASS cls, const std::string& label,
                                                                bool& found) {
  found = false;
  CK_ATTRIBUTE tmpl[] = {attr(CKA_CLASS, cls), attr_bytes(CKA_LABEL, label.data(), label.size())};
  if (CK_RV rv = api->C_FindObjectsInit(s, tmpl, std::size(tmpl)); rv != CKR_OK) {
    return unavailable("C_FindObjectsInit", rv);
  }
  // A handful at most: more than one is either copies of one key (an
  // interrupted relabel, which `rotate-root --resume` tidies) or a refusal.
  std::array<CK_OBJECT_HANDLE, 8> handles{};
  CK_ULONG n = 0;
  CK_RV rv = api->C_FindObjects(s, handles.data(), handles.size(), &n);
  CK_OBJECT_HANDLE more = CK_INVALID_HANDLE;
  CK_ULONG extra = 0;
  if (rv == CKR_OK && n == handles.size()) rv = api->C_FindObjects(s, &more, 1, &extra);
  api->C_FindObjectsFinal(s);
  if (rv != CKR_OK) return unavailable("C_FindObjects", rv);
  if (n > 1 &&
      (extra != 0 || !detail::copies_of_one_key(api, s, std::span<const CK_OBJECT_HANDLE>(handles.data(), n)))) {
    const char* kind = cls == CKO_SECRET_KEY ? "secret" : cls == CKO_PRIVATE_KEY ? "private" : "public";
    return fail(Errc::sealed, tok() + ": more than one " + kind + " key is labelled '" + label +
                                  "' and they are not copies of one key; refusing to choose one");
  }
  found = n >= 1;
  return handles[0];
}

kms::Result<void> Pkcs11Root::Impl::generate_locked(CK_FUNCTION_LIST* api, CK_SLOT_ID slot, CK_SESSION_HANDLE s,
                                                    Mech mech, TokenMechs mechs) {
  detail::SessionGuard rw(api);  // token objects need a read/write session
  if (CK_RV rv = api->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &rw.handle);
      rv != CKR_OK) {
    rw.handle = CK_INVALID_HANDLE;
    return fail(Errc::unavailable, tok() + ": " + ck_message("C_OpenSession(RW)", rv));
  }
  if (mech == Mech::rsa_oaep) return generate_rsa_locked(api, rw.handle);
  if (mech == Mech::cbc_hmac) {
    // The HMAC key first: a crash before the AES key leaves an HMAC key alone,
    // which the next attempt reuses.
    bool found = false;
    ROOTSEAL_TRY(find_key_locked(api, s, CKO_SECRET_KEY, hmac_label(), found));
    if (!found) ROOTSEAL_TRY(generate_hmac_key_locked(api, rw.handle));
  }
  return generate_key_locked(api, rw.handle, mech, mechs.kwp_offer);
}

kms::Result<void> Pkcs11Root::Impl::generate_key_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE rw, Mech mech,
                                                        detail::KwpOffer token_kwp) {
  auto t = detail::SecretKeyTemplate::aes_root(mech, token_kwp, cfg.key_label, detail::KeyMaker::daemon);
  return generate_secret_locked(api, rw, CKM_AES_KEY_GEN, t, "the root key");
}

kms::Result<void> Pkcs11Root::Impl::generate_hmac_key_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE rw) {
  const std::string label = hmac_label();
  auto t = detail::SecretKeyTemplate::hmac(label, detail::KeyMaker::daemon);
  return generate_secret_locked(api, rw, CKM_GENERIC_SECRET_KEY_GEN, t, "the HMAC key");
}

kms::Result<void> Pkcs11Root::Impl::generate_secret_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE rw,
                                                           CK_MECHANISM_TYPE gen_mechanism,
                                                           detail::SecretKeyTemplate& t, const char* what) {
  if (CK_RV rv = api->C_GenerateRandom(rw, t.id().data(), t.id().size()); rv != CKR_OK) {
    return fail(Errc::unavailable, tok() + ": " + ck_message("C_GenerateRandom", rv));
  }
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  const CK_RV rv = detail::generate_secret_key(api, rw, gen_mechanism, t, key);
  if (rv != CKR_OK) {
    if (is_disconnect(rv)) need_reinit = true;
    return fail(is_disconnect(rv) ? Errc::unavailable : Errc::sealed,
                tok() + ": cannot generate " + what + ": " + ck_message("C_GenerateKey", rv));
  }
  return {};
}

kms::Result<void> Pkcs11Root::Impl::generate_rsa_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE rw) {
  detail::RsaPairTemplate t(cfg.key_label, detail::KeyMaker::daemon);
  if (CK_RV rv = api->C_GenerateRandom(rw, t.id().data(), t.id().size()); rv != CKR_OK) {
    return fail(Errc::unavailable, tok() + ": " + ck_message("C_GenerateRandom", rv));
  }
  CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
  const CK_RV rv = detail::generate_rsa_pair(api, rw, t, hpub, hpriv);
  if (rv != CKR_OK) {
    if (is_disconnect(rv)) need_reinit = true;
    return fail(is_disconnect(rv) ? Errc::unavailable : Errc::sealed,
                tok() + ": cannot generate the RSA root key pair: " + ck_message("C_GenerateKeyPair", rv));
  }
  return {};
}

kms::Result<std::string> Pkcs11Root::Impl::kcv_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s,
                                                      const RootKeys& keys) {
  if (keys.mech == Mech::rsa_oaep) {
    // SHA-256(DER SubjectPublicKeyInfo)[0..3] of the public key (docs/hsm.md).
    std::vector<std::uint8_t> n(detail::kRsaMaxModulusBytes), e(16);
    CK_ATTRIBUTE a[] = {attr_bytes(CKA_MODULUS, n.data(), n.size()),
                        attr_bytes(CKA_PUBLIC_EXPONENT, e.data(), e.size())};
    if (CK_RV rv = api->C_GetAttributeValue(s, keys.aux, a, std::size(a)); rv != CKR_OK) {
      return unavailable("C_GetAttributeValue(RSA public key)", rv);
    }
    n.resize(a[0].ulValueLen);
    e.resize(a[1].ulValueLen);
    const auto kcv = detail::rsa_check_value(n, e);
    if (kcv.size() != kms::kKeyCheckValueSize) {
      return fail(Errc::sealed, tok() + ": cannot compute the check value of the RSA public key");
    }
    return detail::to_hex(kcv);
  }
  const CK_OBJECT_HANDLE key = keys.root;
  const Mech mech = keys.mech;
  // CKA_CHECK_VALUE: computed by the token as AES-ECB(key, 0^128)[0..3]
  // (SoftHSM 2.6.1 sets it on every AES key it generates or imports).
  std::uint8_t kcv[8] = {};
  CK_ATTRIBUTE a = attr_bytes(CKA_CHECK_VALUE, kcv, sizeof kcv);
  CK_RV rv = api->C_GetAttributeValue(s, key, &a, 1);
  if (rv == CKR_OK && a.ulValueLen == kms::kKeyCheckValueSize) {
    return detail::to_hex(std::span<const std::uint8_t>(kcv, kms::kKeyCheckValueSize));
  }
  if (is_disconnect(rv)) {
    need_reinit = true;
    return fail(Errc::unavailable, tok() + " unavailable: " + ck_message("C_GetAttributeValue(CKA_CHECK_VALUE)", rv));
  }
  // Tokens without CKA_CHECK_VALUE: see fallback_check_value.
  std::vector<std::uint8_t> out;
  const Step st = detail::fallback_check_value(api, s, key, mech, keys.kwp, out);
  if (!st.ok()) {
    if (is_disconnect(st.rv)) need_reinit = true;
    return fail(Errc::unavailable, tok() + ": cannot compute a key check value: " + ck_message(st.function, st.rv));
  }
  return detail::to_hex(std::span<const std::uint8_t>(out.data(), kms::kKeyCheckValueSize));
}

// ----- Pkcs11Root --------------------------------------------------------------

std::unique_ptr<Pkcs11Root> Pkcs11Root::create(Pkcs11Config config, PinSource pin) {
  auto impl = std::make_unique<Impl>();
  impl->cfg = std::move(config);
  impl->pin_source = std::move(pin);
  return std::unique_ptr<Pkcs11Root>(new Pkcs11Root(std::move(impl)));
}

Pkcs11Root::Pkcs11Root(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Pkcs11Root::~Pkcs11Root() {
  std::shared_ptr<Connection> c;
  std::shared_ptr<Module> m;
  {
    std::lock_guard g(impl_->mu);
    c = std::move(impl_->conn);
    m = std::move(impl_->module);
  }
  if (c) c->mark_broken();
  c.reset();  // closes the sessions: the login ends with the last one
  m.reset();  // C_Finalize + dlclose if we were the last user
}

kms::Result<void> Pkcs11Root::probe() { return impl_->probe(); }

std::size_t Pkcs11Root::unwrap_parallelism() const noexcept {
  return std::max<std::size_t>(1, impl_->cfg.unwrap_parallelism);
}

std::string Pkcs11Root::mechanism() const {
  std::lock_guard g(impl_->mu);
  return impl_->mechanism;
}

std::string Pkcs11Root::root_mechanism() const {
  std::lock_guard g(impl_->mu);
  return impl_->root_mechanism;
}

std::string_view root_mechanism_name(RootMechanism m) noexcept {
  switch (m) {
    case RootMechanism::automatic:
      return "auto";
    case RootMechanism::aes_kwp:
      return "aes-kwp";
    case RootMechanism::aes_gcm:
      return "aes-gcm";
    case RootMechanism::aes_cbc_pad_hmac:
      return "aes-cbc-pad-hmac";
    case RootMechanism::rsa_oaep:
      return "rsa-oaep";
  }
  return "?";
}

std::optional<RootMechanism> parse_root_mechanism(std::string_view name) noexcept {
  for (RootMechanism m : {RootMechanism::automatic, RootMechanism::aes_kwp, RootMechanism::aes_gcm,
                          RootMechanism::aes_cbc_pad_hmac, RootMechanism::rsa_oaep}) {
    if (root_mechanism_name(m) == name) return m;
  }
  return std::nullopt;
}

kms::Result<std::string> Pkcs11Root::key_check_value() {
  auto c = impl_->current();
  if (!c) return std::unexpected(c.error());
  return (*c)->kcv;
}

kms::Result<std::vector<std::uint8_t>> Pkcs11Root::wrap(const kms::SecureBytes& key) {
  ROOTSEAL_TRY(detail::check_key_to_wrap(key));
  std::shared_ptr<Connection> conn;
  ROOTSEAL_TRY_ASSIGN(conn, impl_->current());

  std::vector<std::uint8_t> out;
  const Step st = detail::with_session(conn, [&](CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, bool& op_active) {
    switch (conn->mech) {
      case Mech::kwp:
        return detail::wrap_kwp(api, s, conn->root_key, conn->kwp.wrap, key, out);
      case Mech::gcm:
        return detail::wrap_gcm(api, s, conn->root_key, key, out, op_active);
      case Mech::cbc_hmac:
        return detail::wrap_cbc_hmac(api, s, conn->root_key, conn->aux_key, key, out, op_active);
      case Mech::rsa_oaep:
        return detail::wrap_rsa_oaep(api, s, conn->aux_key, key, out, op_active);
    }
    return Step{"wrap", CKR_GENERAL_ERROR};
  });
  if (!st.ok()) {
    out.clear();
    return std::unexpected(impl_->classify(conn, st, false));
  }
  return out;
}

kms::Result<kms::SecureBytes> Pkcs11Root::unwrap(std::span<const std::uint8_t> wrapped) {
  ROOTSEAL_TRY(detail::check_wrapped(wrapped));
  Mech format = Mech::kwp;
  detail::format_mech(wrapped[0], format);  // known: check_wrapped passed
  const auto body = wrapped.subspan(1);
  std::shared_ptr<Connection> conn;
  ROOTSEAL_TRY_ASSIGN(conn, impl_->current());

  // KWP and GCM blobs may share one AES key (a GCM root serves KWP once the
  // token offers it); the other mechanisms have keys of their own.
  const bool aes_pair =
      (format == Mech::kwp || format == Mech::gcm) && (conn->mech == Mech::kwp || conn->mech == Mech::gcm);
  if (format != conn->mech && !aes_pair) {
    return fail(Errc::decryption_failed,
                "wrapped key was made with root mechanism " + std::string(detail::mech_config_name(format)) +
                    ", but the root in use is " + std::string(detail::mech_config_name(conn->mech)) +
                    " (pkcs11.mechanism changed, or another token); not unwrapping it");
  }

  kms::SecureBytes out;
  const Step st = detail::with_session(conn, [&](CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, bool& op_active) {
    switch (format) {
      case Mech::kwp:
        return detail::unwrap_kwp(api, s, conn->root_key, conn->kwp, body, out);
      case Mech::gcm:
        return detail::unwrap_gcm(api, s, conn->root_key, body, out, op_active);
      case Mech::cbc_hmac:
        return detail::unwrap_cbc_hmac(api, s, conn->root_key, conn->aux_key, wrapped, out, op_active);
      case Mech::rsa_oaep:
        return detail::unwrap_rsa_oaep(api, s, conn->root_key, body, out, op_active);
    }
    return Step{"unwrap", CKR_GENERAL_ERROR};
  });
  if (!st.ok()) {
    out.clear();
    if (std::string_view(st.function) == "C_Verify" &&
        (st.rv == CKR_SIGNATURE_INVALID || st.rv == CKR_SIGNATURE_LEN_RANGE)) {
      return fail(Errc::decryption_failed, "wrapped key's MAC does not verify under this root's HMAC key (" +
                                               ck_message(st.function, st.rv) +
                                               "): damaged, or made under another root; nothing was decrypted");
    }
    if (st.rv == CKR_MECHANISM_INVALID || st.rv == CKR_KEY_FUNCTION_NOT_PERMITTED ||
        st.rv == CKR_KEY_TYPE_INCONSISTENT) {
      return fail(Errc::decryption_failed,
                  "wrapped key of root mechanism " + std::string(detail::mech_config_name(format)) +
                      " cannot be used with this root key (" + ck_message(st.function, st.rv) + ")");
    }
    return std::unexpected(impl_->classify(conn, st, true));
  }
  if (!detail::plausible_key_size(out.size())) {
    out.clear();
    return fail(Errc::decryption_failed, "unwrapped key has an unexpected length");
  }
  return out;
}

}  // namespace rootseal::hsm
