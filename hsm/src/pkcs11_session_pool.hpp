// rootseal::hsm — private: one connection to the token and its pool of
// operation sessions.
//
//   Connection  one successful connect: module generation, slot, the login
//               session (kept open so that the login lasts; used only by
//               probe() under Pkcs11Root::Impl::mu), the root key handle, the
//               mechanism, the KCV, and the pool of operation sessions
//   Lease       one pooled session, used by one thread at a time
//
// Lock order: Pkcs11Root::Impl::mu -> Module call lock -> Connection::mu.
//
// Include this header after all standard headers (it includes pkcs11_api.hpp).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "pkcs11_api.hpp"
#include "pkcs11_mechanisms.hpp"

namespace rootseal::hsm::detail {

// The Step name when our handles predate a C_Finalize/C_Initialize.
inline constexpr const char* kReinitialized = "module re-initialized since connect";

struct Connection {
  std::shared_ptr<Module> module;
  std::uint64_t generation = 0;
  CK_SLOT_ID slot = 0;
  CK_SESSION_HANDLE login_session = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE root_key = CK_INVALID_HANDLE;  // AES secret key, or RSA private key
  CK_OBJECT_HANDLE aux_key = CK_INVALID_HANDLE;   // HMAC key (cbc_hmac), RSA public key (rsa_oaep)
  Mech mech = Mech::kwp;
  KwpUse kwp;  // the KWP mechanisms of an AES root (kwp_use)
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
  ~Connection();

  // Whether our handles are still valid: the module has not been
  // re-initialized since connect. Call under the module call lock.
  [[nodiscard]] bool handles_valid() const noexcept {
    return module->generation() == generation && module->initialized();
  }

  void mark_broken();
  void release(CK_SESSION_HANDLE s, bool discard);

 private:
  void close_session(CK_SESSION_HANDLE s);
};

// One pooled session; back to the pool on destruction (or closed, if the
// operation left it in an unknown state or the connection broke).
class Lease {
 public:
  Lease(std::shared_ptr<Connection> c, CK_SESSION_HANDLE s) : conn_(std::move(c)), session_(s) {}
  Lease(Lease&& o) noexcept : conn_(std::move(o.conn_)), session_(o.session_), discard_(o.discard_) {}
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
std::optional<Lease> acquire_session(const std::shared_ptr<Connection>& c, Step& step);

// Runs `op(api, session, op_active)` on a pooled session under the module call
// lock, unless the module was re-initialized since connect. The session is
// closed instead of pooled again when `op` left an operation active (it sets
// op_active) or the token reports a disconnect.
template <class Op>
Step with_session(const std::shared_ptr<Connection>& conn, Op&& op) {
  Step st;
  std::optional<Lease> lease = acquire_session(conn, st);
  if (!lease) return st;
  bool op_active = false;
  {
    auto cl = conn->module->call_lock();
    if (!conn->handles_valid()) {
      st = {kReinitialized, CKR_CRYPTOKI_NOT_INITIALIZED};
    } else {
      st = op(conn->module->api(), lease->session(), op_active);
    }
  }
  if (op_active || is_disconnect(st.rv)) lease->discard();
  return st;
}

}  // namespace rootseal::hsm::detail
