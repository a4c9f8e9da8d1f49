// A fault-injecting PKCS#11 module for tests: forwards every call to a real
// module (ROOTSEAL_SHIM_TARGET, default SoftHSM2) and, when told to, answers
// like a device that went away — return values SoftHSM itself never gives
// (CKR_DEVICE_REMOVED, CKR_DEVICE_ERROR ...). It also counts C_Login calls.
//
// Control, from the test process that loaded it (dlopen RTLD_NOLOAD + dlsym):
//   void rootseal_shim_set_fault(unsigned long rv)  0 = none. With
//       CKR_DEVICE_REMOVED or CKR_TOKEN_NOT_PRESENT the token is absent: no slot
//       lists it, C_GetTokenInfo says CKR_TOKEN_NOT_PRESENT, C_OpenSession and
//       every session call return rv. Any other rv: session calls return rv.
//       C_Initialize, C_Finalize and C_CloseSession are always forwarded.
//   long rootseal_shim_login_calls()  C_Login calls that reached the module.
//   void rootseal_shim_hide_check_value(int on)  C_GetAttributeValue answers
//       CKR_ATTRIBUTE_TYPE_INVALID for CKA_CHECK_VALUE (a token without it).
//
// Control from the environment, for a process the test starts:
//   ROOTSEAL_SHIM_KILL_IN_COPY=N  the N-th C_CopyObject of the process stops
//       half-way as SoftHSM2's does when the process dies inside it: the copy
//       is made and stored under the source's attributes (its label too), and
//       the process is SIGKILLed before the template (the new label) is
//       applied. SoftHSM2 commits the copied attributes and applies the
//       template in two separate writes of the object file.
#include <dlfcn.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>

#include <p11-kit/pkcs11.h>

namespace {

std::atomic<unsigned long> g_fault{0};
std::atomic<long> g_logins{0};
std::atomic<bool> g_hide_kcv{false};
std::atomic<long> g_copies{0};
long g_kill_in_copy = 0;  // ROOTSEAL_SHIM_KILL_IN_COPY, read once at load
CK_FUNCTION_LIST* g_real = nullptr;
CK_FUNCTION_LIST g_shim;

bool absent(unsigned long f) { return f == CKR_DEVICE_REMOVED || f == CKR_TOKEN_NOT_PRESENT; }

// Session-level calls: fail with the fault, else forward.
template <auto M>
struct Session;
template <class... A, CK_RV (*CK_FUNCTION_LIST::*M)(A...)>
struct Session<M> {
  static CK_RV fn(A... a) {
    if (const unsigned long f = g_fault.load(); f != 0) return f;
    return (g_real->*M)(a...);
  }
};

CK_RV shim_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR n) {
  if (absent(g_fault.load()) && present == CK_TRUE && n != nullptr) {
    *n = 0;
    return CKR_OK;
  }
  return g_real->C_GetSlotList(present, list, n);
}

CK_RV shim_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
  if (absent(g_fault.load())) return CKR_TOKEN_NOT_PRESENT;
  return g_real->C_GetTokenInfo(slot, info);
}

CK_RV shim_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE m, CK_MECHANISM_INFO_PTR info) {
  if (absent(g_fault.load())) return CKR_TOKEN_NOT_PRESENT;
  return g_real->C_GetMechanismInfo(slot, m, info);
}

CK_RV shim_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, void* app, CK_NOTIFY notify, CK_SESSION_HANDLE_PTR s) {
  if (const unsigned long f = g_fault.load(); f != 0) return f;
  return g_real->C_OpenSession(slot, flags, app, notify, s);
}

CK_RV shim_Login(CK_SESSION_HANDLE s, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG len) {
  if (const unsigned long f = g_fault.load(); f != 0) return f;
  ++g_logins;
  return g_real->C_Login(s, user, pin, len);
}

CK_RV shim_GetAttributeValue(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
  if (const unsigned long f = g_fault.load(); f != 0) return f;
  if (g_hide_kcv.load()) {
    for (CK_ULONG i = 0; i < n; ++i) {
      if (t[i].type == CKA_CHECK_VALUE) {
        t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_ATTRIBUTE_TYPE_INVALID;
      }
    }
  }
  return g_real->C_GetAttributeValue(s, o, t, n);
}

CK_RV shim_CopyObject(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                      CK_OBJECT_HANDLE_PTR out) {
  if (const unsigned long f = g_fault.load(); f != 0) return f;
  if (g_kill_in_copy > 0 && ++g_copies == g_kill_in_copy) {
    // The copy, still under the source's label (SoftHSM2 wants a template).
    CK_BBOOL on_token = CK_TRUE;
    CK_ATTRIBUTE keep[] = {{CKA_TOKEN, &on_token, sizeof on_token}};
    CK_OBJECT_HANDLE half = CK_INVALID_HANDLE;
    if (g_real->C_CopyObject(s, o, keep, 1, &half) != CKR_OK) return CKR_GENERAL_ERROR;
    ::kill(::getpid(), SIGKILL);
  }
  return g_real->C_CopyObject(s, o, t, n, out);
}

CK_RV load() {
  static std::once_flag once;
  static CK_RV result = CKR_OK;
  std::call_once(once, [] {
    const char* target = std::getenv("ROOTSEAL_SHIM_TARGET");
    if (const char* k = std::getenv("ROOTSEAL_SHIM_KILL_IN_COPY"); k != nullptr) g_kill_in_copy = std::atol(k);
    void* h = ::dlopen(target != nullptr ? target : "/usr/lib/softhsm/libsofthsm2.so", RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      result = CKR_GENERAL_ERROR;
      return;
    }
    auto* get = reinterpret_cast<CK_RV (*)(CK_FUNCTION_LIST_PTR_PTR)>(::dlsym(h, "C_GetFunctionList"));
    if (get == nullptr || get(&g_real) != CKR_OK || g_real == nullptr) {
      result = CKR_GENERAL_ERROR;
      return;
    }
    g_shim = *g_real;  // forward everything not listed below
    g_shim.C_GetSlotList = shim_GetSlotList;
    g_shim.C_GetTokenInfo = shim_GetTokenInfo;
    g_shim.C_GetMechanismInfo = shim_GetMechanismInfo;
    g_shim.C_OpenSession = shim_OpenSession;
    g_shim.C_Login = shim_Login;
    g_shim.C_GetSessionInfo = Session<&CK_FUNCTION_LIST::C_GetSessionInfo>::fn;
    g_shim.C_Logout = Session<&CK_FUNCTION_LIST::C_Logout>::fn;
    g_shim.C_CreateObject = Session<&CK_FUNCTION_LIST::C_CreateObject>::fn;
    g_shim.C_CopyObject = shim_CopyObject;
    g_shim.C_DestroyObject = Session<&CK_FUNCTION_LIST::C_DestroyObject>::fn;
    g_shim.C_GetAttributeValue = shim_GetAttributeValue;
    g_shim.C_FindObjectsInit = Session<&CK_FUNCTION_LIST::C_FindObjectsInit>::fn;
    g_shim.C_FindObjects = Session<&CK_FUNCTION_LIST::C_FindObjects>::fn;
    g_shim.C_FindObjectsFinal = Session<&CK_FUNCTION_LIST::C_FindObjectsFinal>::fn;
    g_shim.C_EncryptInit = Session<&CK_FUNCTION_LIST::C_EncryptInit>::fn;
    g_shim.C_Encrypt = Session<&CK_FUNCTION_LIST::C_Encrypt>::fn;
    g_shim.C_DecryptInit = Session<&CK_FUNCTION_LIST::C_DecryptInit>::fn;
    g_shim.C_Decrypt = Session<&CK_FUNCTION_LIST::C_Decrypt>::fn;
    g_shim.C_GenerateKey = Session<&CK_FUNCTION_LIST::C_GenerateKey>::fn;
    g_shim.C_WrapKey = Session<&CK_FUNCTION_LIST::C_WrapKey>::fn;
    g_shim.C_UnwrapKey = Session<&CK_FUNCTION_LIST::C_UnwrapKey>::fn;
    g_shim.C_GenerateRandom = Session<&CK_FUNCTION_LIST::C_GenerateRandom>::fn;
    // (the real module stays loaded for the life of the process)
  });
  return result;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  if (list == nullptr) return CKR_ARGUMENTS_BAD;
  if (const CK_RV rv = load(); rv != CKR_OK) return rv;
  *list = &g_shim;
  return CKR_OK;
}

__attribute__((visibility("default"))) void rootseal_shim_set_fault(unsigned long rv) { g_fault.store(rv); }

__attribute__((visibility("default"))) long rootseal_shim_login_calls() { return g_logins.load(); }

__attribute__((visibility("default"))) void rootseal_shim_hide_check_value(int on) { g_hide_kcv.store(on != 0); }

}  // extern "C"
