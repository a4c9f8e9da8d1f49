// rootseal::hsm — private: the connection's pool of operation sessions.
#include <utility>

#include "pkcs11_session_pool.hpp"  // last: pulls in pkcs11.h

namespace rootseal::hsm::detail {

Connection::~Connection() {
  // Handles from an older generation are void (and their numbers may have
  // been handed out again): close only what is still ours.
  auto lk = module->call_lock();
  if (!handles_valid()) return;
  for (CK_SESSION_HANDLE s : idle) module->api()->C_CloseSession(s);
  if (login_session != CK_INVALID_HANDLE) module->api()->C_CloseSession(login_session);
}

void Connection::mark_broken() {
  std::lock_guard g(mu);
  broken = true;
  cv.notify_all();
}

void Connection::close_session(CK_SESSION_HANDLE s) {
  auto lk = module->call_lock();
  if (handles_valid()) module->api()->C_CloseSession(s);
}

void Connection::release(CK_SESSION_HANDLE s, bool discard) {
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
      if (!c->handles_valid()) {
        step = {kReinitialized, CKR_CRYPTOKI_NOT_INITIALIZED};
      } else {
        step = {"C_OpenSession", c->module->api()->C_OpenSession(c->slot, CKF_SERIAL_SESSION, nullptr, nullptr, &s)};
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

}  // namespace rootseal::hsm::detail
