// Test-only access to the raw PKCS#11 API of the module a Pkcs11Root uses:
// the process-wide shared module instance of hsm/src/pkcs11_api.hpp (a
// second C_Initialize in the same process would be refused), a session on a
// token found by label, and a few attribute helpers.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "pkcs11_api.hpp"  // last standard-ish include: pulls in pkcs11.h

namespace rootseal::test {

class RawSession {
 public:
  RawSession(const std::string& module_path, const std::string& token_label) {
    auto m = hsm::detail::Module::acquire(module_path);
    if (!m) throw std::runtime_error("Module::acquire: " + m.error().message);
    module_ = *m;
    api_ = module_->api();
    unsigned char want[32];
    if (!hsm::detail::pad_label(token_label, want)) throw std::runtime_error("label too long");
    CK_ULONG n = 0;
    check(api_->C_GetSlotList(CK_TRUE, nullptr, &n), "C_GetSlotList");
    std::vector<CK_SLOT_ID> slots(n);
    check(api_->C_GetSlotList(CK_TRUE, slots.data(), &n), "C_GetSlotList");
    bool found = false;
    for (CK_ULONG i = 0; i < n; ++i) {
      CK_TOKEN_INFO ti{};
      if (api_->C_GetTokenInfo(slots[i], &ti) == CKR_OK && std::memcmp(ti.label, want, 32) == 0) {
        slot_ = slots[i];
        found = true;
      }
    }
    if (!found) throw std::runtime_error("token not found: " + token_label);
    check(api_->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &session_),
          "C_OpenSession");
  }
  RawSession(const RawSession&) = delete;
  RawSession& operator=(const RawSession&) = delete;
  ~RawSession() {
    auto lk = module_->call_lock();
    if (module_->initialized()) api_->C_CloseSession(session_);
  }

  [[nodiscard]] CK_FUNCTION_LIST* api() const noexcept { return api_; }
  [[nodiscard]] CK_SESSION_HANDLE session() const noexcept { return session_; }
  [[nodiscard]] CK_SLOT_ID slot() const noexcept { return slot_; }

  static void check(CK_RV rv, const char* what) {
    if (rv != CKR_OK) throw std::runtime_error(hsm::detail::ck_message(what, rv));
  }

  // CKR_USER_ALREADY_LOGGED_IN counts as success.
  CK_RV login(std::string_view pin) {
    CK_RV rv = api_->C_Login(session_, CKU_USER, reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(pin.data())),
                             static_cast<CK_ULONG>(pin.size()));
    return rv == CKR_USER_ALREADY_LOGGED_IN ? CKR_OK : rv;
  }
  CK_RV logout() { return api_->C_Logout(session_); }

  CK_FLAGS token_flags() {
    CK_TOKEN_INFO ti{};
    check(api_->C_GetTokenInfo(slot_, &ti), "C_GetTokenInfo");
    return ti.flags;
  }

  std::vector<CK_OBJECT_HANDLE> find_secret_keys(const std::string& label) {
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls},
                        {CKA_LABEL, const_cast<char*>(label.data()), static_cast<CK_ULONG>(label.size())}};
    check(api_->C_FindObjectsInit(session_, t, 2), "C_FindObjectsInit");
    std::vector<CK_OBJECT_HANDLE> out(16);
    CK_ULONG n = 0;
    CK_RV rv = api_->C_FindObjects(session_, out.data(), static_cast<CK_ULONG>(out.size()), &n);
    api_->C_FindObjectsFinal(session_);
    check(rv, "C_FindObjects");
    out.resize(n);
    return out;
  }

  // The return value of reading one attribute; `out` holds its bytes.
  CK_RV get_attr(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, std::vector<std::uint8_t>& out) {
    CK_ATTRIBUTE a{type, nullptr, 0};
    CK_RV rv = api_->C_GetAttributeValue(session_, h, &a, 1);
    if (rv != CKR_OK) return rv;
    out.assign(a.ulValueLen, 0);
    a.pValue = out.data();
    return api_->C_GetAttributeValue(session_, h, &a, 1);
  }
  bool get_bool(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type) {
    std::vector<std::uint8_t> v;
    check(get_attr(h, type, v), "C_GetAttributeValue");
    if (v.size() != 1) throw std::runtime_error("not a CK_BBOOL");
    return v[0] == CK_TRUE;
  }

  // A secret key object from explicit attributes (C_CreateObject).
  CK_OBJECT_HANDLE create_secret_key(CK_KEY_TYPE type, const std::string& label, std::span<const std::uint8_t> value,
                                     bool token, bool sensitive, bool extractable) {
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_BBOOL t = token ? CK_TRUE : CK_FALSE, s = sensitive ? CK_TRUE : CK_FALSE, x = extractable ? CK_TRUE : CK_FALSE,
             yes = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_KEY_TYPE, &type, sizeof type},
        {CKA_LABEL, const_cast<char*>(label.data()), static_cast<CK_ULONG>(label.size())},
        {CKA_TOKEN, &t, sizeof t},
        {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &s, sizeof s},
        {CKA_EXTRACTABLE, &x, sizeof x},
        {CKA_WRAP, &yes, sizeof yes},
        {CKA_UNWRAP, &yes, sizeof yes},
        {CKA_VALUE, const_cast<std::uint8_t*>(value.data()), static_cast<CK_ULONG>(value.size())},
    };
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    check(api_->C_CreateObject(session_, tmpl, std::size(tmpl), &h), "C_CreateObject");
    return h;
  }

 private:
  std::shared_ptr<hsm::detail::Module> module_;
  CK_FUNCTION_LIST* api_ = nullptr;
  CK_SLOT_ID slot_ = 0;
  CK_SESSION_HANDLE session_ = CK_INVALID_HANDLE;
};

}  // namespace rootseal::test
