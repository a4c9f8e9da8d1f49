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
//   void rootseal_shim_kwp(int flags)  the two KWP constants, as tokens differ
//       on them (docs/hsm.md). SoftHSM2 implements RFC 5649 under 0x210A only.
//       kKwpOfferV3 (1): the token also offers 0x210B (PKCS#11 v3.0
//         CKM_AES_KEY_WRAP_KWP), served by SoftHSM2's 0x210A (RFC 5649: the
//         same bytes) - nShield-like.
//       kKwpHidePad (2): 0x210A is not offered (C_GetMechanismList,
//         C_GetMechanismInfo, C_WrapKey/C_UnwrapKey refuse it) - Luna-like.
//         Keys then name 0x210B in CKA_ALLOWED_MECHANISMS, which the shim
//         stores as 0x210A in SoftHSM2 and shows as 0x210B again.
//       kKwpPadDiffers (4): 0x210A is another algorithm than RFC 5649 (as
//         v3.1 reads it): its output is SoftHSM2's reversed byte for byte.
//   long rootseal_shim_kwp_calls(unsigned long mech)  C_WrapKey/C_UnwrapKey
//       calls made with that mechanism (0x210A or 0x210B).
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

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <vector>

#include <p11-kit/pkcs11.h>

namespace {

std::atomic<unsigned long> g_fault{0};
std::atomic<long> g_logins{0};
std::atomic<bool> g_hide_kcv{false};
std::atomic<long> g_copies{0};
constexpr CK_MECHANISM_TYPE kPad = 0x210A, kV3 = 0x210B;
constexpr int kKwpOfferV3 = 1, kKwpHidePad = 2, kKwpPadDiffers = 4;
std::atomic<int> g_kwp{0};
std::atomic<long> g_pad_calls{0}, g_v3_calls{0};
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

CK_MECHANISM_TYPE kwp_target(CK_MECHANISM_TYPE m);

CK_RV shim_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE m, CK_MECHANISM_INFO_PTR info) {
  if (absent(g_fault.load())) return CKR_TOKEN_NOT_PRESENT;
  if (m == kPad || m == kV3) {
    const CK_MECHANISM_TYPE target = kwp_target(m);
    if (target == 0) return CKR_MECHANISM_INVALID;
    return g_real->C_GetMechanismInfo(slot, target, info);
  }
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

// In `t`'s CKA_ALLOWED_MECHANISMS (kKwpHidePad), `from` becomes `to`; the
// rewritten lists live in `store` (their template points there).
std::vector<CK_ATTRIBUTE> rewrite_allowed(const CK_ATTRIBUTE* t, CK_ULONG n, CK_MECHANISM_TYPE from,
                                          CK_MECHANISM_TYPE to, std::vector<std::vector<CK_MECHANISM_TYPE>>& store) {
  std::vector<CK_ATTRIBUTE> out(t, t + n);
  for (CK_ATTRIBUTE& a : out) {
    if (a.type != CKA_ALLOWED_MECHANISMS || a.pValue == nullptr) continue;
    const auto* m = static_cast<const CK_MECHANISM_TYPE*>(a.pValue);
    std::vector<CK_MECHANISM_TYPE>& list = store.emplace_back(m, m + a.ulValueLen / sizeof(CK_MECHANISM_TYPE));
    for (CK_MECHANISM_TYPE& x : list) {
      if (x == from) x = to;
    }
    a.pValue = list.data();
  }
  return out;
}

CK_RV shim_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR n) {
  if (absent(g_fault.load())) return CKR_TOKEN_NOT_PRESENT;
  const int kwp = g_kwp.load();
  if (kwp == 0 || n == nullptr) return g_real->C_GetMechanismList(slot, list, n);
  CK_ULONG real_n = 0;
  if (CK_RV rv = g_real->C_GetMechanismList(slot, nullptr, &real_n); rv != CKR_OK) return rv;
  std::vector<CK_MECHANISM_TYPE> all(real_n);
  if (CK_RV rv = g_real->C_GetMechanismList(slot, all.data(), &real_n); rv != CKR_OK) return rv;
  all.resize(real_n);
  std::vector<CK_MECHANISM_TYPE> out;
  for (CK_MECHANISM_TYPE m : all) {
    if (m == kPad && (kwp & kKwpHidePad) != 0) continue;
    out.push_back(m);
  }
  if ((kwp & kKwpOfferV3) != 0) out.push_back(kV3);
  if (list == nullptr) {
    *n = static_cast<CK_ULONG>(out.size());
    return CKR_OK;
  }
  if (*n < out.size()) {
    *n = static_cast<CK_ULONG>(out.size());
    return CKR_BUFFER_TOO_SMALL;
  }
  std::copy(out.begin(), out.end(), list);
  *n = static_cast<CK_ULONG>(out.size());
  return CKR_OK;
}

// The mechanism SoftHSM2 is asked for in place of `m`, or 0 if the token
// (as the shim shows it) does not offer `m`.
CK_MECHANISM_TYPE kwp_target(CK_MECHANISM_TYPE m) {
  const int kwp = g_kwp.load();
  if (m == kV3) return (kwp & kKwpOfferV3) != 0 ? kPad : 0;
  if (m == kPad) return (kwp & kKwpHidePad) != 0 ? 0 : kPad;
  return m;
}

CK_RV shim_WrapKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key,
                   CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  if (const unsigned long f = g_fault.load(); f != 0) return f;
  if (mech == nullptr || (mech->mechanism != kPad && mech->mechanism != kV3)) {
    return g_real->C_WrapKey(s, mech, wrapping, key, out, out_len);
  }
  const CK_MECHANISM_TYPE asked = mech->mechanism;
  const CK_MECHANISM_TYPE target = kwp_target(asked);
  if (target == 0) return CKR_MECHANISM_INVALID;
  ++(asked == kV3 ? g_v3_calls : g_pad_calls);
  CK_MECHANISM real{target, mech->pParameter, mech->ulParameterLen};
  const CK_RV rv = g_real->C_WrapKey(s, &real, wrapping, key, out, out_len);
  if (rv == CKR_OK && out != nullptr && asked == kPad && (g_kwp.load() & kKwpPadDiffers) != 0) {
    std::reverse(out, out + *out_len);
  }
  return rv;
}

CK_RV shim_UnwrapKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE unwrapping, CK_BYTE_PTR in,
                     CK_ULONG in_len, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR out) {
  if (const unsigned long f = g_fault.load(); f != 0) return f;
  if (mech == nullptr || (mech->mechanism != kPad && mech->mechanism != kV3)) {
    return g_real->C_UnwrapKey(s, mech, unwrapping, in, in_len, t, n, out);
  }
  const CK_MECHANISM_TYPE asked = mech->mechanism;
  const CK_MECHANISM_TYPE target = kwp_target(asked);
  if (target == 0) return CKR_MECHANISM_INVALID;
  ++(asked == kV3 ? g_v3_calls : g_pad_calls);
  CK_MECHANISM real{target, mech->pParameter, mech->ulParameterLen};
  std::vector<CK_BYTE> blob(in, in + in_len);
  if (asked == kPad && (g_kwp.load() & kKwpPadDiffers) != 0) std::reverse(blob.begin(), blob.end());
  return g_real->C_UnwrapKey(s, &real, unwrapping, blob.data(), in_len, t, n, out);
}

CK_RV shim_CreateObject(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR out) {
  if (const unsigned long f = g_fault.load(); f != 0) return f;
  if ((g_kwp.load() & kKwpHidePad) == 0) return g_real->C_CreateObject(s, t, n, out);
  std::vector<std::vector<CK_MECHANISM_TYPE>> store;
  auto tmpl = rewrite_allowed(t, n, kV3, kPad, store);
  return g_real->C_CreateObject(s, tmpl.data(), n, out);
}

CK_RV shim_GenerateKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                       CK_OBJECT_HANDLE_PTR out) {
  if (const unsigned long f = g_fault.load(); f != 0) return f;
  if ((g_kwp.load() & kKwpHidePad) == 0) return g_real->C_GenerateKey(s, m, t, n, out);
  std::vector<std::vector<CK_MECHANISM_TYPE>> store;
  auto tmpl = rewrite_allowed(t, n, kV3, kPad, store);
  return g_real->C_GenerateKey(s, m, tmpl.data(), n, out);
}

CK_RV shim_GetAttributeValue(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
  if (const unsigned long f = g_fault.load(); f != 0) return f;
  if ((g_kwp.load() & kKwpHidePad) != 0) {
    const CK_RV rv = g_real->C_GetAttributeValue(s, o, t, n);
    for (CK_ULONG i = 0; i < n; ++i) {
      if (t[i].type != CKA_ALLOWED_MECHANISMS || t[i].pValue == nullptr ||
          t[i].ulValueLen == CK_UNAVAILABLE_INFORMATION) {
        continue;
      }
      auto* m = static_cast<CK_MECHANISM_TYPE*>(t[i].pValue);
      for (CK_ULONG k = 0; k < t[i].ulValueLen / sizeof(CK_MECHANISM_TYPE); ++k) {
        if (m[k] == kPad) m[k] = kV3;
      }
    }
    return rv;
  }
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
    g_shim.C_GetMechanismList = shim_GetMechanismList;
    g_shim.C_OpenSession = shim_OpenSession;
    g_shim.C_Login = shim_Login;
    g_shim.C_GetSessionInfo = Session<&CK_FUNCTION_LIST::C_GetSessionInfo>::fn;
    g_shim.C_Logout = Session<&CK_FUNCTION_LIST::C_Logout>::fn;
    g_shim.C_CreateObject = shim_CreateObject;
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
    g_shim.C_GenerateKey = shim_GenerateKey;
    g_shim.C_WrapKey = shim_WrapKey;
    g_shim.C_UnwrapKey = shim_UnwrapKey;
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

__attribute__((visibility("default"))) void rootseal_shim_kwp(int flags) { g_kwp.store(flags); }

__attribute__((visibility("default"))) long rootseal_shim_kwp_calls(unsigned long mech) {
  return mech == kV3 ? g_v3_calls.load() : mech == kPad ? g_pad_calls.load() : 0;
}

}  // extern "C"
