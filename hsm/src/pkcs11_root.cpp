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
#include <cstring>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/key_wrap.hpp"
#include "pkcs11_catalog.hpp"
#include "pkcs11_session_pool.hpp"  // last two: pull in pkcs11.h

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
  return rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID ||
         rv == CKR_WRAPPING_KEY_HANDLE_INVALID || rv == CKR_UNWRAPPING_KEY_HANDLE_INVALID;
}

bool is_transient(CK_RV rv) noexcept {
  return rv == CKR_HOST_MEMORY || rv == CKR_DEVICE_MEMORY || rv == CKR_SESSION_COUNT ||
         rv == CKR_FUNCTION_CANCELED;
}

// A failed PIN is remembered as SHA-256(salt || pin), in locked memory, so
// that the same wrong PIN is never presented twice (tokens lock after a few).
kms::SecureBytes pin_digest(const kms::SecureBytes& salt, const kms::SecureBytes& pin) {
  kms::SecureBytes out(kPinDigestSize);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned int n = 0;
  const bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
                  EVP_DigestUpdate(ctx, salt.data(), salt.size()) == 1 &&
                  EVP_DigestUpdate(ctx, pin.data(), pin.size()) == 1 &&
                  EVP_DigestFinal_ex(ctx, out.data(), &n) == 1 && n == kPinDigestSize;
  EVP_MD_CTX_free(ctx);
  if (!ok) out.clear();
  return out;
}

// What the token offers of the two wrap mechanisms.
struct TokenMechs {
  bool kwp = false;
  bool gcm = false;
};

}  // namespace

// ---------------------------------------------------------------------------

struct Pkcs11Root::Impl {
  Pkcs11Config cfg;
  PinSource pin_source;
  kms::SecureBytes pin_salt = kms::SecureBytes::random(16);

  std::mutex mu;                            // connect/disconnect state below
  std::shared_ptr<Module> module;           // loaded at the first probe()
  std::shared_ptr<Connection> conn;         // null while disconnected
  std::uint64_t seen_generation = 0;        // module generation of the last connect attempt
  bool need_reinit = false;                 // the last failure calls for C_Finalize/C_Initialize
  std::optional<kms::Error> last_error;     // why we are disconnected
  std::optional<kms::SecureBytes> failed_pin;  // digest of the PIN the token rejected
  std::string mechanism;                    // of the last successful connect

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
    if (decrypting && (st.rv == CKR_WRAPPED_KEY_INVALID || st.rv == CKR_WRAPPED_KEY_LEN_RANGE ||
                       st.rv == CKR_ENCRYPTED_DATA_INVALID || st.rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
                       st.rv == CKR_GENERAL_ERROR)) {
      // SoftHSM 2.6.1 reports a failed KWP integrity check and a bad GCM tag
      // as CKR_GENERAL_ERROR.
      return kms::Error(Errc::decryption_failed,
                        "wrapped key does not authenticate under this root key (" +
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
  kms::Result<CK_OBJECT_HANDLE> root_key_locked(CK_FUNCTION_LIST* api, CK_SLOT_ID slot, CK_SESSION_HANDLE s,
                                                TokenMechs mechs);
  kms::Result<CK_OBJECT_HANDLE> find_key_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, bool& found);
  kms::Result<CK_OBJECT_HANDLE> generate_key_locked(CK_FUNCTION_LIST* api, CK_SLOT_ID slot, bool gcm,
                                                    bool token_has_kwp);
  kms::Result<Mech> check_root_key_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                                          TokenMechs mechs);
  kms::Result<std::string> kcv_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, Mech mech);
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
  if (cls != CKO_SECRET_KEY) return {"C_GetAttributeValue(root key)", CKR_OBJECT_HANDLE_INVALID};
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
  const TokenMechs mechs{has_mech(detail::kMechKwp, CKF_WRAP | CKF_UNWRAP),
                         has_mech(CKM_AES_GCM, CKF_ENCRYPT | CKF_DECRYPT)};

  // 3. The login session (kept open for as long as we are connected: the
  //    login lasts while the application has a session with the token).
  detail::SessionGuard login_session(api);
  if (CK_RV rv = api->C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &login_session.handle); rv != CKR_OK) {
    login_session.handle = CK_INVALID_HANDLE;
    return unavailable("C_OpenSession", rv);
  }
  ROOTSEAL_TRY(login_locked(api, login_session.handle));

  // 4. The root key, found or generated; 5. is it what it must be?
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  ROOTSEAL_TRY_ASSIGN(key, root_key_locked(api, slot, login_session.handle, mechs));
  Mech mech = Mech::kwp;
  ROOTSEAL_TRY_ASSIGN(mech, check_root_key_locked(api, login_session.handle, key, mechs));

  // 6. Key check value.
  auto kcv = kcv_locked(api, login_session.handle, key, mech);
  if (!kcv) return std::unexpected(kcv.error());

  auto c = std::make_shared<Connection>();
  c->module = module;
  c->generation = gen;
  c->slot = slot;
  c->login_session = login_session.release();
  c->root_key = key;
  c->mech = mech;
  c->kcv = std::move(*kcv);
  c->max_sessions = std::max<std::size_t>(1, cfg.max_sessions);
  cl.unlock();  // (the Connection's destructor takes the call lock itself)
  conn = std::move(c);
  last_error.reset();
  mechanism = std::string(detail::mech_name(mech));
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

kms::Result<CK_OBJECT_HANDLE> Pkcs11Root::Impl::root_key_locked(CK_FUNCTION_LIST* api, CK_SLOT_ID slot,
                                                                CK_SESSION_HANDLE s, TokenMechs mechs) {
  bool found = false;
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  ROOTSEAL_TRY_ASSIGN(key, find_key_locked(api, s, found));
  if (found) return key;
  if (!cfg.generate_if_missing) {
    return fail(Errc::sealed,
                tok() + ": no AES root key labelled '" + cfg.key_label + "' (and generating one is not enabled)");
  }
  const bool gcm = cfg.force_gcm || !mechs.kwp;
  if (gcm && !mechs.gcm) {
    return fail(Errc::sealed, tok() + " offers neither CKM_AES_KEY_WRAP_PAD nor CKM_AES_GCM" +
                                  detail::mechanism_refusal_detail(api, slot, cfg.module.string(), cfg.token_label));
  }
  ROOTSEAL_TRY(generate_key_locked(api, slot, gcm, mechs.kwp));
  ROOTSEAL_TRY_ASSIGN(key, find_key_locked(api, s, found));  // exactly one now? (another process may race)
  if (!found) return fail(Errc::sealed, tok() + ": the generated root key cannot be found");
  return key;
}

kms::Result<Mech> Pkcs11Root::Impl::check_root_key_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s,
                                                          CK_OBJECT_HANDLE key, TokenMechs mechs) {
  // Never use a root key that could be read out.
  CK_KEY_TYPE key_type = 0;
  CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE, can_wrap = CK_FALSE, can_unwrap = CK_FALSE,
           can_encrypt = CK_FALSE, can_decrypt = CK_FALSE;
  CK_ULONG value_len = 0;
  CK_ATTRIBUTE attrs[] = {attr(CKA_KEY_TYPE, key_type), attr(CKA_SENSITIVE, sensitive),
                          attr(CKA_EXTRACTABLE, extractable), attr(CKA_WRAP, can_wrap),
                          attr(CKA_UNWRAP, can_unwrap), attr(CKA_ENCRYPT, can_encrypt),
                          attr(CKA_DECRYPT, can_decrypt), attr(CKA_VALUE_LEN, value_len)};
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
  const bool key_kwp = known(3) && known(4) && can_wrap == CK_TRUE && can_unwrap == CK_TRUE;
  const bool key_gcm = known(5) && known(6) && can_encrypt == CK_TRUE && can_decrypt == CK_TRUE;
  if (!cfg.force_gcm && mechs.kwp && key_kwp) return Mech::kwp;
  if (mechs.gcm && key_gcm) return Mech::gcm;
  return fail(Errc::sealed, key_desc +
                                " cannot be used: it needs CKA_WRAP+CKA_UNWRAP with "
                                "CKM_AES_KEY_WRAP_PAD or CKA_ENCRYPT+CKA_DECRYPT with CKM_AES_GCM" +
                                (cfg.force_gcm ? " (GCM forced by configuration)" : ""));
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
    return fail(Errc::sealed, tok + ": the user PIN was rejected by the token (CKR_PIN_INCORRECT) and "
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
      return fail(Errc::sealed, tok + ": the user PIN is locked (" + ck_message("C_Login", rv) +
                                    "); the SO must reset it");
    case CKR_PIN_EXPIRED:
      return fail(Errc::sealed, tok + ": the user PIN has expired (" + ck_message("C_Login", rv) + ")");
    default:
      if (is_disconnect(rv)) need_reinit = true;
      return fail(Errc::unavailable, tok + " unavailable: " + ck_message("C_Login", rv));
  }
}

kms::Result<CK_OBJECT_HANDLE> Pkcs11Root::Impl::find_key_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s,
                                                               bool& found) {
  found = false;
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_ATTRIBUTE tmpl[] = {attr(CKA_CLASS, cls),
                         attr_bytes(CKA_LABEL, cfg.key_label.data(), cfg.key_label.size())};
  if (CK_RV rv = api->C_FindObjectsInit(s, tmpl, std::size(tmpl)); rv != CKR_OK) {
    return unavailable("C_FindObjectsInit", rv);
  }
  CK_OBJECT_HANDLE handles[2] = {CK_INVALID_HANDLE, CK_INVALID_HANDLE};
  CK_ULONG n = 0;
  const CK_RV rv = api->C_FindObjects(s, handles, 2, &n);
  api->C_FindObjectsFinal(s);
  if (rv != CKR_OK) return unavailable("C_FindObjects", rv);
  if (n > 1) {
    return fail(Errc::sealed, "PKCS#11 token '" + cfg.token_label + "': more than one secret key is labelled '" +
                                  cfg.key_label + "'; refusing to choose one");
  }
  found = n == 1;
  return handles[0];
}

kms::Result<CK_OBJECT_HANDLE> Pkcs11Root::Impl::generate_key_locked(CK_FUNCTION_LIST* api, CK_SLOT_ID slot,
                                                                   bool gcm, bool token_has_kwp) {
  const std::string tok = this->tok();
  detail::SessionGuard rw(api);  // token objects need a read/write session
  if (CK_RV rv = api->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &rw.handle);
      rv != CKR_OK) {
    rw.handle = CK_INVALID_HANDLE;
    return fail(Errc::unavailable, tok + ": " + ck_message("C_OpenSession(RW)", rv));
  }
  std::uint8_t id[16];
  if (CK_RV rv = api->C_GenerateRandom(rw.handle, id, sizeof id); rv != CKR_OK) {
    return fail(Errc::unavailable, tok + ": " + ck_message("C_GenerateRandom", rv));
  }
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE type = CKK_AES;
  CK_ULONG len = kRootKeySize;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_BBOOL enc = gcm ? CK_TRUE : CK_FALSE;  // only the GCM fallback encrypts with the root key
  CK_MECHANISM_TYPE allowed[2] = {gcm ? CKM_AES_GCM : detail::kMechKwp, detail::kMechKwp};
  const std::size_t allowed_n = gcm && token_has_kwp ? 2 : 1;
  std::vector<CK_ATTRIBUTE> tmpl = {
      attr(CKA_CLASS, cls),        attr(CKA_KEY_TYPE, type),     attr(CKA_VALUE_LEN, len),
      attr_bytes(CKA_LABEL, cfg.key_label.data(), cfg.key_label.size()),
      attr_bytes(CKA_ID, id, sizeof id),
      attr(CKA_TOKEN, yes),        attr(CKA_PRIVATE, yes),       attr(CKA_SENSITIVE, yes),
      attr(CKA_EXTRACTABLE, no),   attr(CKA_WRAP, yes),          attr(CKA_UNWRAP, yes),
      attr(CKA_ENCRYPT, enc),      attr(CKA_DECRYPT, enc),       attr(CKA_SIGN, no),
      attr(CKA_VERIFY, no),        attr(CKA_DERIVE, no),
  };
  // Hardening the token may refuse: immutable, and usable only with our mechanisms.
  const std::size_t base_n = tmpl.size();
  tmpl.push_back(attr(CKA_MODIFIABLE, no));
  tmpl.push_back(attr_bytes(CKA_ALLOWED_MECHANISMS, allowed, allowed_n * sizeof(CK_MECHANISM_TYPE)));

  CK_MECHANISM mech{CKM_AES_KEY_GEN, nullptr, 0};
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  CK_RV rv = api->C_GenerateKey(rw.handle, &mech, tmpl.data(), static_cast<CK_ULONG>(tmpl.size()), &key);
  if (rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_VALUE_INVALID ||
      rv == CKR_ATTRIBUTE_READ_ONLY || rv == CKR_TEMPLATE_INCONSISTENT) {
    tmpl.resize(base_n);
    rv = api->C_GenerateKey(rw.handle, &mech, tmpl.data(), static_cast<CK_ULONG>(tmpl.size()), &key);
  }
  if (rv != CKR_OK) {
    if (is_disconnect(rv)) need_reinit = true;
    return fail(is_disconnect(rv) ? Errc::unavailable : Errc::sealed,
                tok + ": cannot generate the root key: " + ck_message("C_GenerateKey", rv));
  }
  return key;
}

kms::Result<std::string> Pkcs11Root::Impl::kcv_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s,
                                                     CK_OBJECT_HANDLE key, Mech mech) {
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
  const Step st = detail::fallback_check_value(api, s, key, mech, out);
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
    if (conn->mech == Mech::kwp) return detail::wrap_kwp(api, s, conn->root_key, key, out);
    return detail::wrap_gcm(api, s, conn->root_key, key, out, op_active);
  });
  if (!st.ok()) {
    out.clear();
    return std::unexpected(impl_->classify(conn, st, false));
  }
  return out;
}

kms::Result<kms::SecureBytes> Pkcs11Root::unwrap(std::span<const std::uint8_t> wrapped) {
  ROOTSEAL_TRY(detail::check_wrapped(wrapped));
  const std::uint8_t format = wrapped[0];
  const auto body = wrapped.subspan(1);
  std::shared_ptr<Connection> conn;
  ROOTSEAL_TRY_ASSIGN(conn, impl_->current());

  kms::SecureBytes out;
  const Step st = detail::with_session(conn, [&](CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, bool& op_active) {
    if (format == detail::kFormatKwp) return detail::unwrap_kwp(api, s, conn->root_key, body, out);
    return detail::unwrap_gcm(api, s, conn->root_key, body, out, op_active);
  });
  if (!st.ok()) {
    out.clear();
    if (st.rv == CKR_MECHANISM_INVALID || st.rv == CKR_KEY_FUNCTION_NOT_PERMITTED ||
        st.rv == CKR_KEY_TYPE_INCONSISTENT) {
      return fail(Errc::decryption_failed,
                  std::string("wrapped key format ") + (format == detail::kFormatKwp ? "KWP" : "GCM") +
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
