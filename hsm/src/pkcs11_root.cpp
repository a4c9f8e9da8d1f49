// rootseal::hsm — Pkcs11Root and provision_token.
//
// Structure:
//   Impl        configuration, PIN source, connect/disconnect state (Impl::mu)
//   Connection  one successful connect: module generation, slot, the login
//               session (kept open so that the login lasts; used only by
//               probe() under Impl::mu), the root key handle, the mechanism,
//               the KCV, and the pool of operation sessions
//   Lease       one pooled session, used by one thread at a time
//
// Lock order: Impl::mu -> Module call lock -> Connection::mu. Operations take
// Impl::mu only to copy the Connection pointer and to report a disconnect.
// Every CK_RV is turned into a kms::Error right where it is returned, with
// ck_message(): "C_WrapKey: CKR_KEY_HANDLE_INVALID". PINs never reach a
// message.
//
// Wrapped blob (version byte first; anything else is decryption_failed):
//   0x01 || RFC 5649 KWP(root, key)                 (CKM_AES_KEY_WRAP_PAD, 0x210A)
//   0x02 || iv[12] || AES-GCM(root, key) || tag[16]  (AAD "rootseal-kek-v1")
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/key_wrap.hpp"
#include "pkcs11_api.hpp"  // last: pulls in pkcs11.h

namespace rootseal::hsm {

namespace {

using detail::ck_fail;
using detail::ck_message;
using detail::is_disconnect;
using detail::Module;
using kms::Errc;
using kms::fail;

constexpr std::uint8_t kFormatKwp = 0x01;
constexpr std::uint8_t kFormatGcm = 0x02;
constexpr std::size_t kMinKeySize = 16;
constexpr std::size_t kMaxKeySize = 64;
constexpr std::size_t kKwpOverhead = 8;  // plus padding to a multiple of 8
constexpr std::size_t kGcmIvSize = 12;
constexpr std::size_t kGcmTagSize = 16;
constexpr std::size_t kRootKeySize = 32;
constexpr std::size_t kPinDigestSize = 32;
constexpr char kGcmAad[] = "rootseal-kek-v1";  // non-empty: SoftHSM 2.6.1 aborts on empty AAD

// The Step name when our handles predate a C_Finalize/C_Initialize.
constexpr const char* kReinitialized = "module re-initialized since connect";

enum class Mech { kwp, gcm };

std::string_view mech_name(Mech m) noexcept {
  return m == Mech::kwp ? "CKM_AES_KEY_WRAP_KWP" : "CKM_AES_GCM";
}

template <class T>
CK_ATTRIBUTE attr(CK_ATTRIBUTE_TYPE type, T& v) noexcept {
  return CK_ATTRIBUTE{type, &v, sizeof v};
}
CK_ATTRIBUTE attr_bytes(CK_ATTRIBUTE_TYPE type, const void* p, std::size_t n) noexcept {
  // PKCS#11 takes non-const pointers for input templates; it does not write them.
  return CK_ATTRIBUTE{type, const_cast<void*>(p), static_cast<CK_ULONG>(n)};
}

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

// The result of one PKCS#11 step: the function name and its return value.
struct Step {
  const char* function = "";
  CK_RV rv = CKR_OK;
  [[nodiscard]] bool ok() const noexcept { return rv == CKR_OK; }
};

// ---------------------------------------------------------------------------

struct Connection {
  std::shared_ptr<Module> module;
  std::uint64_t generation = 0;
  CK_SLOT_ID slot = 0;
  CK_SESSION_HANDLE login_session = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE root_key = CK_INVALID_HANDLE;
  Mech mech = Mech::kwp;
  std::string kcv;
  std::size_t max_sessions = 1;

  std::mutex mu;
  std::condition_variable cv;
  std::vector<CK_SESSION_HANDLE> idle;  // guarded by mu
  std::size_t open = 0;                 // operation sessions open, idle or leased; guarded by mu
  bool broken = false;                  // guarded by mu

  Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  ~Connection() {
    // Handles from an older generation are void (and their numbers may have
    // been handed out again): close only what is still ours.
    auto lk = module->call_lock();
    if (module->generation() != generation || !module->initialized()) return;
    for (CK_SESSION_HANDLE s : idle) module->api()->C_CloseSession(s);
    if (login_session != CK_INVALID_HANDLE) module->api()->C_CloseSession(login_session);
  }

  void mark_broken() {
    std::lock_guard g(mu);
    broken = true;
    cv.notify_all();
  }

  void close_session(CK_SESSION_HANDLE s) {
    auto lk = module->call_lock();
    if (module->generation() == generation && module->initialized()) module->api()->C_CloseSession(s);
  }

  void release(CK_SESSION_HANDLE s, bool discard) {
    std::unique_lock lk(mu);
    if (broken || discard) {
      --open;
      cv.notify_one();
      lk.unlock();
      close_session(s);
      return;
    }
    idle.push_back(s);
    cv.notify_one();
  }
};

// One pooled session; back to the pool on destruction (or closed, if the
// operation left it in an unknown state or the connection broke).
class Lease {
 public:
  Lease(std::shared_ptr<Connection> c, CK_SESSION_HANDLE s) : conn_(std::move(c)), session_(s) {}
  Lease(Lease&& o) noexcept
      : conn_(std::move(o.conn_)), session_(o.session_), discard_(o.discard_) {}
  Lease& operator=(Lease&&) = delete;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease() {
    if (conn_) conn_->release(session_, discard_);
  }
  [[nodiscard]] CK_SESSION_HANDLE session() const noexcept { return session_; }
  void discard() noexcept { discard_ = true; }

 private:
  std::shared_ptr<Connection> conn_;
  CK_SESSION_HANDLE session_;
  bool discard_ = false;
};

// Takes an idle session, opens a new one while under max_sessions, or waits.
// On failure, `step` tells which call failed (for the caller's classification).
std::optional<Lease> acquire_session(const std::shared_ptr<Connection>& c, Step& step) {
  std::unique_lock lk(c->mu);
  for (;;) {
    c->cv.wait(lk, [&] { return c->broken || !c->idle.empty() || c->open < c->max_sessions; });
    if (c->broken) {
      step = {"session pool", CKR_SESSION_CLOSED};
      return std::nullopt;
    }
    if (!c->idle.empty()) {
      const CK_SESSION_HANDLE s = c->idle.back();
      c->idle.pop_back();
      return Lease(c, s);
    }
    ++c->open;
    lk.unlock();

    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    {
      auto cl = c->module->call_lock();
      if (c->module->generation() != c->generation || !c->module->initialized()) {
        step = {kReinitialized, CKR_CRYPTOKI_NOT_INITIALIZED};
      } else {
        step = {"C_OpenSession",
                c->module->api()->C_OpenSession(c->slot, CKF_SERIAL_SESSION, nullptr, nullptr, &s)};
      }
    }
    if (step.ok()) return Lease(c, s);
    lk.lock();
    --c->open;
    c->cv.notify_one();
    // The token allows fewer sessions than configured: make do with the ones
    // we have (wait for one of them) instead of failing.
    if (step.rv == CKR_SESSION_COUNT && c->open > 0) {
      c->max_sessions = c->open;
      continue;
    }
    return std::nullopt;
  }
}

// Destroys a temporary session object when leaving scope (also on errors).
// Must be destroyed while the module call lock is held.
class ObjectGuard {
 public:
  ObjectGuard(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s) : api_(api), session_(s) {}
  ObjectGuard(const ObjectGuard&) = delete;
  ObjectGuard& operator=(const ObjectGuard&) = delete;
  ~ObjectGuard() {
    if (handle != CK_INVALID_HANDLE) api_->C_DestroyObject(session_, handle);
  }
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;

 private:
  CK_FUNCTION_LIST* api_;
  CK_SESSION_HANDLE session_;
};

// Closes a session when leaving scope unless released (connect's error paths).
class SessionGuard {
 public:
  explicit SessionGuard(CK_FUNCTION_LIST* api) : api_(api) {}
  SessionGuard(const SessionGuard&) = delete;
  SessionGuard& operator=(const SessionGuard&) = delete;
  ~SessionGuard() {
    if (handle != CK_INVALID_HANDLE) api_->C_CloseSession(handle);
  }
  CK_SESSION_HANDLE release() noexcept { return std::exchange(handle, CK_INVALID_HANDLE); }
  CK_SESSION_HANDLE handle = CK_INVALID_HANDLE;

 private:
  CK_FUNCTION_LIST* api_;
};

// A secret-key template for a temporary session object holding a KEK.
// `readable`: CKA_SENSITIVE=false so that CKA_VALUE can be read (unwrap);
// otherwise sensitive (wrap: the token only needs CKA_EXTRACTABLE).
struct KekTemplate {
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE type = CKK_GENERIC_SECRET;
  CK_BBOOL yes = CK_TRUE;
  CK_BBOOL no = CK_FALSE;
  CK_BBOOL sensitive;
  std::array<CK_ATTRIBUTE, 14> attrs{};
  CK_ULONG count = 0;

  KekTemplate(bool readable, const kms::SecureBytes* key) : sensitive(readable ? CK_FALSE : CK_TRUE) {
    auto add = [&](CK_ATTRIBUTE a) { attrs[count++] = a; };
    add(attr(CKA_CLASS, cls));
    add(attr(CKA_KEY_TYPE, type));
    add(attr(CKA_TOKEN, no));
    add(attr(CKA_PRIVATE, yes));
    add(attr(CKA_SENSITIVE, sensitive));
    add(attr(CKA_EXTRACTABLE, yes));
    add(attr(CKA_ENCRYPT, no));
    add(attr(CKA_DECRYPT, no));
    add(attr(CKA_SIGN, no));
    add(attr(CKA_VERIFY, no));
    add(attr(CKA_WRAP, no));
    add(attr(CKA_UNWRAP, no));
    add(attr(CKA_DERIVE, no));
    if (key != nullptr) add(attr_bytes(CKA_VALUE, key->data(), key->size()));
  }
  KekTemplate(const KekTemplate&) = delete;
  KekTemplate& operator=(const KekTemplate&) = delete;
};

// The PKCS#11 calls of wrap/unwrap; they run under the module call lock.
Step wrap_kwp(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root,
              const kms::SecureBytes& key, std::vector<std::uint8_t>& out) {
  KekTemplate t(false, &key);
  ObjectGuard obj(api, s);
  if (CK_RV rv = api->C_CreateObject(s, t.attrs.data(), t.count, &obj.handle); rv != CKR_OK) {
    obj.handle = CK_INVALID_HANDLE;
    return {"C_CreateObject", rv};
  }
  CK_MECHANISM mech{detail::kMechKwp, nullptr, 0};
  out.assign(1 + key.size() + 2 * kKwpOverhead, 0);
  out[0] = kFormatKwp;
  CK_ULONG len = static_cast<CK_ULONG>(out.size() - 1);
  CK_RV rv = api->C_WrapKey(s, &mech, root, obj.handle, out.data() + 1, &len);
  if (rv == CKR_BUFFER_TOO_SMALL) {
    out.assign(1 + len, 0);
    out[0] = kFormatKwp;
    rv = api->C_WrapKey(s, &mech, root, obj.handle, out.data() + 1, &len);
  }
  if (rv != CKR_OK) return {"C_WrapKey", rv};
  out.resize(1 + len);
  return {};
}

Step unwrap_kwp(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root,
                std::span<const std::uint8_t> body, kms::SecureBytes& out) {
  KekTemplate t(true, nullptr);
  ObjectGuard obj(api, s);
  CK_MECHANISM mech{detail::kMechKwp, nullptr, 0};
  if (CK_RV rv = api->C_UnwrapKey(s, &mech, root, const_cast<std::uint8_t*>(body.data()),
                                  static_cast<CK_ULONG>(body.size()), t.attrs.data(), t.count,
                                  &obj.handle);
      rv != CKR_OK) {
    obj.handle = CK_INVALID_HANDLE;
    return {"C_UnwrapKey", rv};
  }
  out = kms::SecureBytes(body.size());  // the key is shorter than its wrapping
  CK_ATTRIBUTE a = attr_bytes(CKA_VALUE, out.data(), out.size());
  if (CK_RV rv = api->C_GetAttributeValue(s, obj.handle, &a, 1); rv != CKR_OK) {
    out.clear();
    return {"C_GetAttributeValue(CKA_VALUE)", rv};
  }
  out.truncate(static_cast<std::size_t>(a.ulValueLen));
  return {};
}

Step wrap_gcm(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root,
              const kms::SecureBytes& key, std::vector<std::uint8_t>& out, bool& op_active) {
  out.assign(1 + kGcmIvSize + key.size() + kGcmTagSize, 0);
  out[0] = kFormatGcm;
  std::uint8_t* iv = out.data() + 1;
  if (CK_RV rv = api->C_GenerateRandom(s, iv, kGcmIvSize); rv != CKR_OK) return {"C_GenerateRandom", rv};
  CK_GCM_PARAMS p{};
  p.pIv = iv;
  p.ulIvLen = kGcmIvSize;
  p.ulIvBits = kGcmIvSize * 8;
  p.pAAD = reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(kGcmAad));
  p.ulAADLen = sizeof kGcmAad - 1;
  p.ulTagBits = kGcmTagSize * 8;
  CK_MECHANISM mech{CKM_AES_GCM, &p, sizeof p};  // SoftHSM insists on sizeof with ulIvBits
  if (CK_RV rv = api->C_EncryptInit(s, &mech, root); rv != CKR_OK) return {"C_EncryptInit", rv};
  op_active = true;
  CK_ULONG len = static_cast<CK_ULONG>(out.size() - 1 - kGcmIvSize);
  const CK_RV rv = api->C_Encrypt(s, const_cast<std::uint8_t*>(key.data()),
                                  static_cast<CK_ULONG>(key.size()), out.data() + 1 + kGcmIvSize, &len);
  if (rv != CKR_BUFFER_TOO_SMALL) op_active = false;  // any other result ends the operation
  if (rv != CKR_OK) return {"C_Encrypt", rv};
  if (len != key.size() + kGcmTagSize) return {"C_Encrypt", CKR_GENERAL_ERROR};
  return {};
}

Step unwrap_gcm(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root,
                std::span<const std::uint8_t> body, kms::SecureBytes& out, bool& op_active) {
  CK_GCM_PARAMS p{};
  p.pIv = const_cast<std::uint8_t*>(body.data());
  p.ulIvLen = kGcmIvSize;
  p.ulIvBits = kGcmIvSize * 8;
  p.pAAD = reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(kGcmAad));
  p.ulAADLen = sizeof kGcmAad - 1;
  p.ulTagBits = kGcmTagSize * 8;
  CK_MECHANISM mech{CKM_AES_GCM, &p, sizeof p};
  if (CK_RV rv = api->C_DecryptInit(s, &mech, root); rv != CKR_OK) return {"C_DecryptInit", rv};
  op_active = true;
  const auto ct = body.subspan(kGcmIvSize);
  out = kms::SecureBytes(ct.size());
  CK_ULONG len = static_cast<CK_ULONG>(out.size());
  const CK_RV rv = api->C_Decrypt(s, const_cast<std::uint8_t*>(ct.data()),
                                  static_cast<CK_ULONG>(ct.size()), out.data(), &len);
  if (rv != CKR_BUFFER_TOO_SMALL) op_active = false;
  if (rv != CKR_OK) {
    out.clear();
    return {"C_Decrypt", rv};
  }
  out.truncate(static_cast<std::size_t>(len));
  return {};
}

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
      kms::Error e(Errc::unavailable, "PKCS#11 token '" + cfg.token_label + "' unavailable: " +
                                          ck_message(st.function, st.rv));
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
  kms::Result<void> connect_locked();
  kms::Result<void> login_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s);
  kms::Result<CK_OBJECT_HANDLE> find_key_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s,
                                               bool& found);
  kms::Result<CK_OBJECT_HANDLE> generate_key_locked(CK_FUNCTION_LIST* api, CK_SLOT_ID slot,
                                                   bool gcm, bool token_has_kwp);
  kms::Result<std::string> kcv_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s,
                                      CK_OBJECT_HANDLE key, Mech mech);
  Step liveness_locked(const Connection& c);
};

// ----- connect ---------------------------------------------------------------

kms::Result<void> Pkcs11Root::Impl::probe() {
  std::lock_guard g(mu);
  if (conn) {
    const Step st = liveness_locked(*conn);
    if (st.ok()) return {};
    conn->mark_broken();
    conn.reset();
    need_reinit = true;
    last_error = kms::Error(Errc::unavailable, "PKCS#11 token '" + cfg.token_label +
                                                   "' unavailable: " + ck_message(st.function, st.rv));
  }
  auto r = connect_locked();
  if (!r) last_error = r.error();
  return r;
}

Step Pkcs11Root::Impl::liveness_locked(const Connection& c) {
  auto cl = c.module->call_lock();
  if (c.module->generation() != c.generation || !c.module->initialized()) {
    return {kReinitialized, CKR_CRYPTOKI_NOT_INITIALIZED};
  }
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

kms::Result<void> Pkcs11Root::Impl::connect_locked() {
  unsigned char want_label[32];
  if (cfg.token_label.empty() || !detail::pad_label(cfg.token_label, want_label)) {
    return fail(Errc::sealed, "PKCS#11 token label must be 1..32 bytes");
  }
  if (cfg.key_label.empty()) return fail(Errc::sealed, "PKCS#11 root key label must not be empty");

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

  auto cl = module->call_lock();
  const std::uint64_t gen = module->generation();
  seen_generation = gen;
  if (!module->initialized()) {
    need_reinit = true;
    return fail(Errc::unavailable, "PKCS#11 module " + cfg.module.string() + " is not initialized");
  }
  CK_FUNCTION_LIST* api = module->api();
  const std::string tok = "PKCS#11 token '" + cfg.token_label + "'";
  auto unavailable = [&](const char* fn, CK_RV rv) {
    if (is_disconnect(rv)) need_reinit = true;
    return fail(Errc::unavailable, tok + " unavailable: " + ck_message(fn, rv));
  };

  // 1. The token, by label, among the slots with a token present.
  std::vector<CK_SLOT_ID> slots;
  for (;;) {
    CK_ULONG n = 0;
    if (CK_RV rv = api->C_GetSlotList(CK_TRUE, nullptr, &n); rv != CKR_OK) return unavailable("C_GetSlotList", rv);
    slots.assign(n, 0);
    const CK_RV rv = api->C_GetSlotList(CK_TRUE, slots.data(), &n);
    if (rv == CKR_BUFFER_TOO_SMALL) continue;
    if (rv != CKR_OK) return unavailable("C_GetSlotList", rv);
    slots.resize(n);
    break;
  }
  std::vector<CK_SLOT_ID> matches;
  CK_TOKEN_INFO token_info{};
  for (CK_SLOT_ID s : slots) {
    CK_TOKEN_INFO ti{};
    if (api->C_GetTokenInfo(s, &ti) != CKR_OK) continue;  // gone meanwhile, unrecognized ...
    if ((ti.flags & CKF_TOKEN_INITIALIZED) == 0) continue;
    if (std::memcmp(ti.label, want_label, sizeof want_label) != 0) continue;
    matches.push_back(s);
    token_info = ti;
  }
  if (matches.empty()) {
    need_reinit = true;  // a token plugged in (or created) later shows up after C_Initialize
    return fail(Errc::unavailable, tok + " not found (" + std::to_string(slots.size()) +
                                       " slot(s) with a token present)");
  }
  if (matches.size() > 1) {
    return fail(Errc::sealed, std::to_string(matches.size()) + " tokens are labelled '" +
                                  cfg.token_label + "'; refusing to choose one");
  }
  const CK_SLOT_ID slot = matches.front();
  if ((token_info.flags & CKF_USER_PIN_LOCKED) != 0) {
    return fail(Errc::sealed, tok + ": the user PIN is locked (CKF_USER_PIN_LOCKED); the SO must reset it");
  }
  if ((token_info.flags & CKF_USER_PIN_INITIALIZED) == 0) {
    return fail(Errc::sealed, tok + ": the user PIN is not initialized");
  }

  // 2. Mechanisms.
  auto has_mech = [&](CK_MECHANISM_TYPE m, CK_FLAGS need) {
    CK_MECHANISM_INFO mi{};
    return api->C_GetMechanismInfo(slot, m, &mi) == CKR_OK && (mi.flags & need) == need;
  };
  const bool token_has_kwp = has_mech(detail::kMechKwp, CKF_WRAP | CKF_UNWRAP);
  const bool token_has_gcm = has_mech(CKM_AES_GCM, CKF_ENCRYPT | CKF_DECRYPT);

  // 3. The login session (kept open for as long as we are connected: the
  //    login lasts while the application has a session with the token).
  SessionGuard login_session(api);
  if (CK_RV rv = api->C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &login_session.handle);
      rv != CKR_OK) {
    login_session.handle = CK_INVALID_HANDLE;
    return unavailable("C_OpenSession", rv);
  }
  if (auto r = login_locked(api, login_session.handle); !r) return r;

  // 4. The root key.
  bool found = false;
  auto key = find_key_locked(api, login_session.handle, found);
  if (!key) return std::unexpected(key.error());
  if (!found) {
    if (!cfg.generate_if_missing) {
      return fail(Errc::sealed, tok + ": no AES root key labelled '" + cfg.key_label +
                                    "' (and generating one is not enabled)");
    }
    const bool gcm = cfg.force_gcm || !token_has_kwp;
    if (gcm && !token_has_gcm) {
      return fail(Errc::sealed, tok + " offers neither CKM_AES_KEY_WRAP_PAD nor CKM_AES_GCM");
    }
    auto gk = generate_key_locked(api, slot, gcm, token_has_kwp);
    if (!gk) return std::unexpected(gk.error());
    key = find_key_locked(api, login_session.handle, found);  // exactly one now? (another process may race)
    if (!key) return std::unexpected(key.error());
    if (!found) return fail(Errc::sealed, tok + ": the generated root key cannot be found");
  }

  // 5. Is it what it must be? Never use a root key that could be read out.
  CK_KEY_TYPE key_type = 0;
  CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE, can_wrap = CK_FALSE, can_unwrap = CK_FALSE,
           can_encrypt = CK_FALSE, can_decrypt = CK_FALSE;
  CK_ULONG value_len = 0;
  CK_ATTRIBUTE attrs[] = {attr(CKA_KEY_TYPE, key_type), attr(CKA_SENSITIVE, sensitive),
                          attr(CKA_EXTRACTABLE, extractable), attr(CKA_WRAP, can_wrap),
                          attr(CKA_UNWRAP, can_unwrap), attr(CKA_ENCRYPT, can_encrypt),
                          attr(CKA_DECRYPT, can_decrypt), attr(CKA_VALUE_LEN, value_len)};
  const CK_RV arv = api->C_GetAttributeValue(login_session.handle, *key, attrs, std::size(attrs));
  if (arv != CKR_OK && arv != CKR_ATTRIBUTE_TYPE_INVALID && arv != CKR_ATTRIBUTE_SENSITIVE) {
    return unavailable("C_GetAttributeValue(root key)", arv);
  }
  auto known = [&](std::size_t i) { return attrs[i].ulValueLen != CK_UNAVAILABLE_INFORMATION; };
  const std::string key_desc = tok + ": root key '" + cfg.key_label + "'";
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
  Mech mech;
  if (!cfg.force_gcm && token_has_kwp && key_kwp) {
    mech = Mech::kwp;
  } else if (token_has_gcm && key_gcm) {
    mech = Mech::gcm;
  } else {
    return fail(Errc::sealed, key_desc + " cannot be used: it needs CKA_WRAP+CKA_UNWRAP with "
                                         "CKM_AES_KEY_WRAP_PAD or CKA_ENCRYPT+CKA_DECRYPT with CKM_AES_GCM" +
                                         (cfg.force_gcm ? " (GCM forced by configuration)" : ""));
  }

  // 6. Key check value.
  auto kcv = kcv_locked(api, login_session.handle, *key, mech);
  if (!kcv) return std::unexpected(kcv.error());

  auto c = std::make_shared<Connection>();
  c->module = module;
  c->generation = gen;
  c->slot = slot;
  c->login_session = login_session.release();
  c->root_key = *key;
  c->mech = mech;
  c->kcv = std::move(*kcv);
  c->max_sessions = std::max<std::size_t>(1, cfg.max_sessions);
  cl.unlock();  // (the Connection's destructor takes the call lock itself)
  conn = std::move(c);
  last_error.reset();
  mechanism = std::string(mech_name(mech));
  return {};
}

kms::Result<void> Pkcs11Root::Impl::login_locked(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s) {
  const std::string tok = "PKCS#11 token '" + cfg.token_label + "'";
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
  auto unavailable = [&](const char* fn, CK_RV rv) {
    if (is_disconnect(rv)) need_reinit = true;
    return fail(Errc::unavailable, "PKCS#11 token '" + cfg.token_label + "' unavailable: " + ck_message(fn, rv));
  };
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
  const std::string tok = "PKCS#11 token '" + cfg.token_label + "'";
  SessionGuard rw(api);  // token objects need a read/write session
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
    return fail(Errc::unavailable, "PKCS#11 token '" + cfg.token_label + "' unavailable: " +
                                       ck_message("C_GetAttributeValue(CKA_CHECK_VALUE)", rv));
  }
  // Fallback for tokens without CKA_CHECK_VALUE: the first 3 bytes of what the
  // root key makes of a fixed all-zero 16-byte key — KWP output, or the GCM
  // ciphertext under a fixed all-zero IV (AAD "rootseal-kcv-v1"). Stable and
  // specific to the key, but NOT the same number as aes_key_check_value.
  std::vector<std::uint8_t> out;
  kms::SecureBytes zero(16);
  Step st;
  if (mech == Mech::kwp) {
    st = wrap_kwp(api, s, key, zero, out);
    if (st.ok()) out.erase(out.begin());
  } else {
    static constexpr char kKcvAad[] = "rootseal-kcv-v1";
    std::uint8_t iv[kGcmIvSize] = {};
    CK_GCM_PARAMS p{};
    p.pIv = iv;
    p.ulIvLen = kGcmIvSize;
    p.ulIvBits = kGcmIvSize * 8;
    p.pAAD = reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(kKcvAad));
    p.ulAADLen = sizeof kKcvAad - 1;
    p.ulTagBits = kGcmTagSize * 8;
    CK_MECHANISM m{CKM_AES_GCM, &p, sizeof p};
    out.assign(zero.size() + kGcmTagSize, 0);
    CK_ULONG n = static_cast<CK_ULONG>(out.size());
    st = {"C_EncryptInit", api->C_EncryptInit(s, &m, key)};
    if (st.ok()) st = {"C_Encrypt", api->C_Encrypt(s, zero.data(), static_cast<CK_ULONG>(zero.size()), out.data(), &n)};
  }
  if (!st.ok() || out.size() < kms::kKeyCheckValueSize) {
    if (is_disconnect(st.rv)) need_reinit = true;
    return fail(Errc::unavailable, "PKCS#11 token '" + cfg.token_label +
                                       "': cannot compute a key check value: " + ck_message(st.function, st.rv));
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
  // Multiples of 8 only: SoftHSM 2.6.1 zero-pads other lengths to 8 bytes
  // before KWP, and would hand back a longer key than it was given.
  if (key.size() < kMinKeySize || key.size() > kMaxKeySize || key.size() % 8 != 0) {
    return fail(Errc::invalid_argument,
                "key to wrap must be 16..64 bytes, a multiple of 8; got " + std::to_string(key.size()));
  }
  auto c = impl_->current();
  if (!c) return std::unexpected(c.error());
  const std::shared_ptr<Connection>& conn = *c;

  Step st;
  std::vector<std::uint8_t> out;
  {
    std::optional<Lease> lease = acquire_session(conn, st);
    if (lease) {
      bool op_active = false;
      {
        auto cl = conn->module->call_lock();
        if (conn->module->generation() != conn->generation || !conn->module->initialized()) {
          st = {kReinitialized, CKR_CRYPTOKI_NOT_INITIALIZED};
        } else if (conn->mech == Mech::kwp) {
          st = wrap_kwp(conn->module->api(), lease->session(), conn->root_key, key, out);
        } else {
          st = wrap_gcm(conn->module->api(), lease->session(), conn->root_key, key, out, op_active);
        }
      }
      if (op_active || is_disconnect(st.rv)) lease->discard();
    }
  }
  if (!st.ok()) {
    out.clear();
    return std::unexpected(impl_->classify(conn, st, false));
  }
  return out;
}

kms::Result<kms::SecureBytes> Pkcs11Root::unwrap(std::span<const std::uint8_t> wrapped) {
  if (wrapped.empty()) return fail(Errc::decryption_failed, "wrapped key is empty");
  const std::uint8_t format = wrapped[0];
  const auto body = wrapped.subspan(1);
  if (format == kFormatKwp) {
    // KWP output: 8-byte blocks, at least the 16..64-byte key plus 8.
    if (body.size() < kMinKeySize + kKwpOverhead || body.size() > kMaxKeySize + kKwpOverhead ||
        body.size() % 8 != 0) {
      return fail(Errc::decryption_failed, "wrapped key (KWP) has an invalid length");
    }
  } else if (format == kFormatGcm) {
    if (body.size() < kGcmIvSize + kMinKeySize + kGcmTagSize ||
        body.size() > kGcmIvSize + kMaxKeySize + kGcmTagSize) {
      return fail(Errc::decryption_failed, "wrapped key (GCM) has an invalid length");
    }
  } else {
    return fail(Errc::decryption_failed, "wrapped key has an unknown format");
  }

  auto c = impl_->current();
  if (!c) return std::unexpected(c.error());
  const std::shared_ptr<Connection>& conn = *c;

  Step st;
  kms::SecureBytes out;
  {
    std::optional<Lease> lease = acquire_session(conn, st);
    if (lease) {
      bool op_active = false;
      {
        auto cl = conn->module->call_lock();
        if (conn->module->generation() != conn->generation || !conn->module->initialized()) {
          st = {kReinitialized, CKR_CRYPTOKI_NOT_INITIALIZED};
        } else if (format == kFormatKwp) {
          st = unwrap_kwp(conn->module->api(), lease->session(), conn->root_key, body, out);
        } else {
          st = unwrap_gcm(conn->module->api(), lease->session(), conn->root_key, body, out, op_active);
        }
      }
      if (op_active || is_disconnect(st.rv)) lease->discard();
    }
  }
  if (!st.ok()) {
    out.clear();
    if (st.rv == CKR_MECHANISM_INVALID || st.rv == CKR_KEY_FUNCTION_NOT_PERMITTED ||
        st.rv == CKR_KEY_TYPE_INCONSISTENT) {
      return fail(Errc::decryption_failed,
                  std::string("wrapped key format ") + (format == kFormatKwp ? "KWP" : "GCM") +
                      " cannot be used with this root key (" + ck_message(st.function, st.rv) + ")");
    }
    return std::unexpected(impl_->classify(conn, st, true));
  }
  if (out.size() < kMinKeySize || out.size() > kMaxKeySize) {
    out.clear();
    return fail(Errc::decryption_failed, "unwrapped key has an unexpected length");
  }
  return out;
}

// ----- provision_token ---------------------------------------------------------

kms::Result<void> provision_token(const std::filesystem::path& module, std::string_view label,
                                  const kms::SecureBytes& so_pin, const kms::SecureBytes& user_pin) {
  unsigned char padded[32];
  if (label.empty() || !detail::pad_label(label, padded)) {
    return fail(Errc::invalid_argument, "token label must be 1..32 bytes");
  }
  if (so_pin.empty() || user_pin.empty()) return fail(Errc::invalid_argument, "PINs must not be empty");

  auto m = Module::acquire(module);
  if (!m) return std::unexpected(m.error());
  auto cl = (*m)->call_lock();
  CK_FUNCTION_LIST* api = (*m)->api();

  // All slots. SoftHSM keeps one slot with an uninitialized token, and adds
  // a fresh one when asked for the list size after the last one was used;
  // the slot list is re-read on each call.
  std::vector<CK_SLOT_ID> slots;
  for (;;) {
    CK_ULONG n = 0;
    if (CK_RV rv = api->C_GetSlotList(CK_FALSE, nullptr, &n); rv != CKR_OK) {
      return ck_fail(Errc::unavailable, "C_GetSlotList", rv);
    }
    slots.assign(n, 0);
    const CK_RV rv = api->C_GetSlotList(CK_FALSE, slots.data(), &n);
    if (rv == CKR_BUFFER_TOO_SMALL) continue;
    if (rv != CKR_OK) return ck_fail(Errc::unavailable, "C_GetSlotList", rv);
    slots.resize(n);
    break;
  }
  std::optional<CK_SLOT_ID> free_slot;
  for (CK_SLOT_ID s : slots) {
    CK_TOKEN_INFO ti{};
    if (api->C_GetTokenInfo(s, &ti) != CKR_OK) continue;  // no token in the slot
    if ((ti.flags & CKF_TOKEN_INITIALIZED) != 0) {
      if (std::memcmp(ti.label, padded, sizeof padded) == 0) {
        return fail(Errc::already_exists, "a PKCS#11 token labelled '" + std::string(label) + "' exists");
      }
    } else if (!free_slot) {
      free_slot = s;
    }
  }
  if (!free_slot) return fail(Errc::unavailable, "no slot with an uninitialized token in " + module.string());

  if (CK_RV rv = api->C_InitToken(*free_slot, const_cast<std::uint8_t*>(so_pin.data()),
                                  static_cast<CK_ULONG>(so_pin.size()), padded);
      rv != CKR_OK) {
    return ck_fail(rv == CKR_PIN_LEN_RANGE || rv == CKR_PIN_INVALID ? Errc::invalid_argument : Errc::unavailable,
                   "C_InitToken", rv);
  }
  SessionGuard s(api);
  if (CK_RV rv = api->C_OpenSession(*free_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &s.handle);
      rv != CKR_OK) {
    s.handle = CK_INVALID_HANDLE;
    return ck_fail(Errc::unavailable, "C_OpenSession", rv);
  }
  if (CK_RV rv = api->C_Login(s.handle, CKU_SO, const_cast<std::uint8_t*>(so_pin.data()),
                              static_cast<CK_ULONG>(so_pin.size()));
      rv != CKR_OK) {
    return ck_fail(Errc::unavailable, "C_Login(SO)", rv);
  }
  const CK_RV rv = api->C_InitPIN(s.handle, const_cast<std::uint8_t*>(user_pin.data()),
                                  static_cast<CK_ULONG>(user_pin.size()));
  api->C_Logout(s.handle);
  if (rv != CKR_OK) {
    return ck_fail(rv == CKR_PIN_LEN_RANGE || rv == CKR_PIN_INVALID ? Errc::invalid_argument : Errc::unavailable,
                   "C_InitPIN", rv);
  }
  return {};
}

}  // namespace rootseal::hsm
