// rootseal::hsm — private: the shared PKCS#11 module, CK_RV names and helpers.
#include <dlfcn.h>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <utility>

#include "pkcs11_api.hpp"
#include "rootseal/hsm/pkcs11_root.hpp"

namespace rootseal::hsm {

// One case per CK_RV: a table, long but flat.
std::string_view rv_name(unsigned long rv) noexcept {  // NOLINT(readability-function-size)
  switch (rv) {
    case CKR_OK:
      return "CKR_OK";
    case CKR_CANCEL:
      return "CKR_CANCEL";
    case CKR_HOST_MEMORY:
      return "CKR_HOST_MEMORY";
    case CKR_SLOT_ID_INVALID:
      return "CKR_SLOT_ID_INVALID";
    case CKR_GENERAL_ERROR:
      return "CKR_GENERAL_ERROR";
    case CKR_FUNCTION_FAILED:
      return "CKR_FUNCTION_FAILED";
    case CKR_ARGUMENTS_BAD:
      return "CKR_ARGUMENTS_BAD";
    case CKR_NO_EVENT:
      return "CKR_NO_EVENT";
    case CKR_NEED_TO_CREATE_THREADS:
      return "CKR_NEED_TO_CREATE_THREADS";
    case CKR_CANT_LOCK:
      return "CKR_CANT_LOCK";
    case CKR_ATTRIBUTE_READ_ONLY:
      return "CKR_ATTRIBUTE_READ_ONLY";
    case CKR_ATTRIBUTE_SENSITIVE:
      return "CKR_ATTRIBUTE_SENSITIVE";
    case CKR_ATTRIBUTE_TYPE_INVALID:
      return "CKR_ATTRIBUTE_TYPE_INVALID";
    case CKR_ATTRIBUTE_VALUE_INVALID:
      return "CKR_ATTRIBUTE_VALUE_INVALID";
    case CKR_ACTION_PROHIBITED:
      return "CKR_ACTION_PROHIBITED";
    case CKR_DATA_INVALID:
      return "CKR_DATA_INVALID";
    case CKR_DATA_LEN_RANGE:
      return "CKR_DATA_LEN_RANGE";
    case CKR_DEVICE_ERROR:
      return "CKR_DEVICE_ERROR";
    case CKR_DEVICE_MEMORY:
      return "CKR_DEVICE_MEMORY";
    case CKR_DEVICE_REMOVED:
      return "CKR_DEVICE_REMOVED";
    case CKR_ENCRYPTED_DATA_INVALID:
      return "CKR_ENCRYPTED_DATA_INVALID";
    case CKR_ENCRYPTED_DATA_LEN_RANGE:
      return "CKR_ENCRYPTED_DATA_LEN_RANGE";
    case CKR_FUNCTION_CANCELED:
      return "CKR_FUNCTION_CANCELED";
    case CKR_FUNCTION_NOT_PARALLEL:
      return "CKR_FUNCTION_NOT_PARALLEL";
    case CKR_FUNCTION_NOT_SUPPORTED:
      return "CKR_FUNCTION_NOT_SUPPORTED";
    case CKR_KEY_HANDLE_INVALID:
      return "CKR_KEY_HANDLE_INVALID";
    case CKR_KEY_SIZE_RANGE:
      return "CKR_KEY_SIZE_RANGE";
    case CKR_KEY_TYPE_INCONSISTENT:
      return "CKR_KEY_TYPE_INCONSISTENT";
    case CKR_KEY_NOT_NEEDED:
      return "CKR_KEY_NOT_NEEDED";
    case CKR_KEY_CHANGED:
      return "CKR_KEY_CHANGED";
    case CKR_KEY_NEEDED:
      return "CKR_KEY_NEEDED";
    case CKR_KEY_INDIGESTIBLE:
      return "CKR_KEY_INDIGESTIBLE";
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
      return "CKR_KEY_FUNCTION_NOT_PERMITTED";
    case CKR_KEY_NOT_WRAPPABLE:
      return "CKR_KEY_NOT_WRAPPABLE";
    case CKR_KEY_UNEXTRACTABLE:
      return "CKR_KEY_UNEXTRACTABLE";
    case CKR_MECHANISM_INVALID:
      return "CKR_MECHANISM_INVALID";
    case CKR_MECHANISM_PARAM_INVALID:
      return "CKR_MECHANISM_PARAM_INVALID";
    case CKR_OBJECT_HANDLE_INVALID:
      return "CKR_OBJECT_HANDLE_INVALID";
    case CKR_OPERATION_ACTIVE:
      return "CKR_OPERATION_ACTIVE";
    case CKR_OPERATION_NOT_INITIALIZED:
      return "CKR_OPERATION_NOT_INITIALIZED";
    case CKR_PIN_INCORRECT:
      return "CKR_PIN_INCORRECT";
    case CKR_PIN_INVALID:
      return "CKR_PIN_INVALID";
    case CKR_PIN_LEN_RANGE:
      return "CKR_PIN_LEN_RANGE";
    case CKR_PIN_EXPIRED:
      return "CKR_PIN_EXPIRED";
    case CKR_PIN_LOCKED:
      return "CKR_PIN_LOCKED";
    case CKR_SESSION_CLOSED:
      return "CKR_SESSION_CLOSED";
    case CKR_SESSION_COUNT:
      return "CKR_SESSION_COUNT";
    case CKR_SESSION_HANDLE_INVALID:
      return "CKR_SESSION_HANDLE_INVALID";
    case CKR_SESSION_PARALLEL_NOT_SUPPORTED:
      return "CKR_SESSION_PARALLEL_NOT_SUPPORTED";
    case CKR_SESSION_READ_ONLY:
      return "CKR_SESSION_READ_ONLY";
    case CKR_SESSION_EXISTS:
      return "CKR_SESSION_EXISTS";
    case CKR_SESSION_READ_ONLY_EXISTS:
      return "CKR_SESSION_READ_ONLY_EXISTS";
    case CKR_SESSION_READ_WRITE_SO_EXISTS:
      return "CKR_SESSION_READ_WRITE_SO_EXISTS";
    case CKR_SIGNATURE_INVALID:
      return "CKR_SIGNATURE_INVALID";
    case CKR_SIGNATURE_LEN_RANGE:
      return "CKR_SIGNATURE_LEN_RANGE";
    case CKR_TEMPLATE_INCOMPLETE:
      return "CKR_TEMPLATE_INCOMPLETE";
    case CKR_TEMPLATE_INCONSISTENT:
      return "CKR_TEMPLATE_INCONSISTENT";
    case CKR_TOKEN_NOT_PRESENT:
      return "CKR_TOKEN_NOT_PRESENT";
    case CKR_TOKEN_NOT_RECOGNIZED:
      return "CKR_TOKEN_NOT_RECOGNIZED";
    case CKR_TOKEN_WRITE_PROTECTED:
      return "CKR_TOKEN_WRITE_PROTECTED";
    case CKR_UNWRAPPING_KEY_HANDLE_INVALID:
      return "CKR_UNWRAPPING_KEY_HANDLE_INVALID";
    case CKR_UNWRAPPING_KEY_SIZE_RANGE:
      return "CKR_UNWRAPPING_KEY_SIZE_RANGE";
    case CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT:
      return "CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT";
    case CKR_USER_ALREADY_LOGGED_IN:
      return "CKR_USER_ALREADY_LOGGED_IN";
    case CKR_USER_NOT_LOGGED_IN:
      return "CKR_USER_NOT_LOGGED_IN";
    case CKR_USER_PIN_NOT_INITIALIZED:
      return "CKR_USER_PIN_NOT_INITIALIZED";
    case CKR_USER_TYPE_INVALID:
      return "CKR_USER_TYPE_INVALID";
    case CKR_USER_ANOTHER_ALREADY_LOGGED_IN:
      return "CKR_USER_ANOTHER_ALREADY_LOGGED_IN";
    case CKR_USER_TOO_MANY_TYPES:
      return "CKR_USER_TOO_MANY_TYPES";
    case CKR_WRAPPED_KEY_INVALID:
      return "CKR_WRAPPED_KEY_INVALID";
    case CKR_WRAPPED_KEY_LEN_RANGE:
      return "CKR_WRAPPED_KEY_LEN_RANGE";
    case CKR_WRAPPING_KEY_HANDLE_INVALID:
      return "CKR_WRAPPING_KEY_HANDLE_INVALID";
    case CKR_WRAPPING_KEY_SIZE_RANGE:
      return "CKR_WRAPPING_KEY_SIZE_RANGE";
    case CKR_WRAPPING_KEY_TYPE_INCONSISTENT:
      return "CKR_WRAPPING_KEY_TYPE_INCONSISTENT";
    case CKR_RANDOM_SEED_NOT_SUPPORTED:
      return "CKR_RANDOM_SEED_NOT_SUPPORTED";
    case CKR_RANDOM_NO_RNG:
      return "CKR_RANDOM_NO_RNG";
    case CKR_DOMAIN_PARAMS_INVALID:
      return "CKR_DOMAIN_PARAMS_INVALID";
    case CKR_CURVE_NOT_SUPPORTED:
      return "CKR_CURVE_NOT_SUPPORTED";
    case CKR_BUFFER_TOO_SMALL:
      return "CKR_BUFFER_TOO_SMALL";
    case CKR_SAVED_STATE_INVALID:
      return "CKR_SAVED_STATE_INVALID";
    case CKR_INFORMATION_SENSITIVE:
      return "CKR_INFORMATION_SENSITIVE";
    case CKR_STATE_UNSAVEABLE:
      return "CKR_STATE_UNSAVEABLE";
    case CKR_CRYPTOKI_NOT_INITIALIZED:
      return "CKR_CRYPTOKI_NOT_INITIALIZED";
    case CKR_CRYPTOKI_ALREADY_INITIALIZED:
      return "CKR_CRYPTOKI_ALREADY_INITIALIZED";
    case CKR_MUTEX_BAD:
      return "CKR_MUTEX_BAD";
    case CKR_MUTEX_NOT_LOCKED:
      return "CKR_MUTEX_NOT_LOCKED";
    case CKR_NEW_PIN_MODE:
      return "CKR_NEW_PIN_MODE";
    case CKR_NEXT_OTP:
      return "CKR_NEXT_OTP";
    case CKR_EXCEEDED_MAX_ITERATIONS:
      return "CKR_EXCEEDED_MAX_ITERATIONS";
    case CKR_FIPS_SELF_TEST_FAILED:
      return "CKR_FIPS_SELF_TEST_FAILED";
    case CKR_LIBRARY_LOAD_FAILED:
      return "CKR_LIBRARY_LOAD_FAILED";
    case CKR_PIN_TOO_WEAK:
      return "CKR_PIN_TOO_WEAK";
    case CKR_PUBLIC_KEY_INVALID:
      return "CKR_PUBLIC_KEY_INVALID";
    case CKR_FUNCTION_REJECTED:
      return "CKR_FUNCTION_REJECTED";
    default:
      return rv >= CKR_VENDOR_DEFINED ? "CKR_VENDOR_DEFINED" : "CKR_UNKNOWN";
  }
}

}  // namespace rootseal::hsm

namespace rootseal::hsm::detail {

bool pad_label(std::string_view label, unsigned char (&out)[32]) noexcept {
  if (label.size() > sizeof out) return false;
  for (std::size_t i = 0; i < sizeof out; ++i) {
    out[i] = i < label.size() ? static_cast<unsigned char>(label[i]) : static_cast<unsigned char>(' ');
  }
  return true;
}

std::string unpad_label(const unsigned char (&in)[32]) {
  std::size_t n = sizeof in;
  while (n > 0 && (in[n - 1] == ' ' || in[n - 1] == '\0')) --n;
  return std::string(reinterpret_cast<const char*>(in), n);
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (std::uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0x0f]);
  }
  return out;
}

std::string ck_message(std::string_view function, CK_RV rv) {
  std::string msg(function);
  msg += ": ";
  const std::string_view name = rv_name(rv);
  msg += name;
  if (name == "CKR_UNKNOWN" || name == "CKR_VENDOR_DEFINED") {
    char buf[24];
    (void)std::snprintf(buf, sizeof buf, " (0x%lx)", rv);
    msg += buf;
  }
  return msg;
}

bool is_disconnect(CK_RV rv) noexcept {
  switch (rv) {
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_DEVICE_ERROR:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_SLOT_ID_INVALID:
      return true;
    default:
      return false;
  }
}

CK_RV slot_list(CK_FUNCTION_LIST* api, bool token_present, std::vector<CK_SLOT_ID>& out) {
  const CK_BBOOL present = token_present ? CK_TRUE : CK_FALSE;
  for (;;) {
    CK_ULONG n = 0;
    if (CK_RV rv = api->C_GetSlotList(present, nullptr, &n); rv != CKR_OK) return rv;
    out.assign(n, 0);
    const CK_RV rv = api->C_GetSlotList(present, out.data(), &n);
    if (rv == CKR_BUFFER_TOO_SMALL) continue;
    if (rv != CKR_OK) return rv;
    out.resize(n);
    return CKR_OK;
  }
}

std::vector<CK_SLOT_ID> slots_labelled(CK_FUNCTION_LIST* api, std::span<const CK_SLOT_ID> slots,
                                       const unsigned char (&padded_label)[32], CK_TOKEN_INFO& info) {
  std::vector<CK_SLOT_ID> matches;
  for (CK_SLOT_ID s : slots) {
    CK_TOKEN_INFO ti{};
    if (api->C_GetTokenInfo(s, &ti) != CKR_OK) continue;  // gone meanwhile, unrecognized ...
    if ((ti.flags & CKF_TOKEN_INITIALIZED) == 0) continue;
    if (std::memcmp(ti.label, padded_label, sizeof padded_label) != 0) continue;
    matches.push_back(s);
    info = ti;
  }
  return matches;
}

std::optional<std::vector<std::uint8_t>> attribute_bytes(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                                                         CK_ATTRIBUTE_TYPE type) {
  CK_ATTRIBUTE a{type, nullptr, 0};
  if (api->C_GetAttributeValue(s, h, &a, 1) != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
    return std::nullopt;
  }
  std::vector<std::uint8_t> v(a.ulValueLen);
  a.pValue = v.data();
  if (api->C_GetAttributeValue(s, h, &a, 1) != CKR_OK) return std::nullopt;
  v.resize(a.ulValueLen);
  return v;
}

namespace {

// What two copies of one key have in common (copies_of_one_key); empty if
// the object shows no identity.
std::vector<std::uint8_t> copy_fingerprint(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h) {
  std::vector<std::uint8_t> out;
  auto append = [&](CK_ATTRIBUTE_TYPE type) {
    auto v = attribute_bytes(api, s, h, type);
    const std::uint32_t len = v ? static_cast<std::uint32_t>(v->size()) : 0xffffffffU;  // absent != empty
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(len >> (8 * i)));
    if (v) out.insert(out.end(), v->begin(), v->end());
    return v.has_value() && !v->empty();
  };
  for (CK_ATTRIBUTE_TYPE t : {CKA_CLASS, CKA_KEY_TYPE, CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_WRAP,
                              CKA_UNWRAP, CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN, CKA_VERIFY, CKA_VALUE_LEN}) {
    append(t);
  }
  CK_KEY_TYPE type = 0;
  CK_ATTRIBUTE a = attr(CKA_KEY_TYPE, type);
  const bool rsa = api->C_GetAttributeValue(s, h, &a, 1) == CKR_OK && type == CKK_RSA;
  const bool identity = rsa ? append(CKA_MODULUS) && append(CKA_PUBLIC_EXPONENT) : append(CKA_CHECK_VALUE);
  if (!identity) out.clear();
  return out;
}

}  // namespace

bool copies_of_one_key(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, std::span<const CK_OBJECT_HANDLE> hs) {
  if (hs.empty()) return false;
  const std::vector<std::uint8_t> first = copy_fingerprint(api, s, hs.front());
  if (first.empty()) return false;
  for (CK_OBJECT_HANDLE h : hs.subspan(1)) {
    if (copy_fingerprint(api, s, h) != first) return false;
  }
  return true;
}

namespace {

// One entry per dlopen handle (dlopen returns the same handle for the same
// library, whatever path it was reached by).
struct Registry {
  std::mutex mu;
  std::condition_variable cv;  // an instance finished tearing down
  std::map<void*, std::weak_ptr<Module>> live;
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: Modules may outlive static destruction order
  return *r;
}

}  // namespace

CK_RV Module::initialize_locked() noexcept {
  CK_C_INITIALIZE_ARGS args{};
  args.CreateMutex = nullptr;
  args.DestroyMutex = nullptr;
  args.LockMutex = nullptr;
  args.UnlockMutex = nullptr;
  args.flags = CKF_OS_LOCKING_OK;  // without it SoftHSM disables its own locking
  args.pReserved = nullptr;
  const CK_RV rv = api_->C_Initialize(&args);
  initialized_ = rv == CKR_OK;
  return rv;
}

kms::Result<std::shared_ptr<Module>> Module::acquire(const std::filesystem::path& path) {
  // glibc keeps dlerror()'s state per thread: these calls are thread-safe.
  (void)::dlerror();  // NOLINT(concurrency-mt-unsafe)
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();  // NOLINT(concurrency-mt-unsafe)
    return kms::fail(kms::Errc::unavailable,
                     "cannot load PKCS#11 module " + path.string() + ": " + (why != nullptr ? why : "dlopen failed"));
  }

  Registry& reg = registry();
  std::unique_lock lk(reg.mu);
  for (;;) {
    auto it = reg.live.find(handle);
    if (it == reg.live.end()) break;
    if (auto existing = it->second.lock()) {
      lk.unlock();
      ::dlclose(handle);  // drop the reference this dlopen added; `existing` holds one
      return existing;
    }
    reg.cv.wait(lk);  // the previous instance is being finalized right now
  }

  using GetFunctionList = CK_RV (*)(CK_FUNCTION_LIST_PTR_PTR);
  auto* get_list = reinterpret_cast<GetFunctionList>(::dlsym(handle, "C_GetFunctionList"));
  CK_FUNCTION_LIST_PTR api = nullptr;
  if (get_list == nullptr) {
    ::dlclose(handle);
    return kms::fail(kms::Errc::unavailable, "PKCS#11 module " + path.string() + " has no C_GetFunctionList");
  }
  if (const CK_RV rv = get_list(&api); rv != CKR_OK || api == nullptr) {
    ::dlclose(handle);
    return ck_fail(kms::Errc::unavailable, "C_GetFunctionList", rv);
  }

  // The deleter finalizes under the registry lock, so that a concurrent
  // acquire() waits instead of meeting a half torn-down library.
  std::shared_ptr<Module> module(new Module(path, handle, api), [](Module* m) {
    Registry& r = registry();
    std::lock_guard g(r.mu);
    if (auto it = r.live.find(m->handle_); it != r.live.end() && it->second.expired()) r.live.erase(it);
    delete m;
    r.cv.notify_all();
  });
  const CK_RV rv = module->initialize_locked();
  if (rv != CKR_OK) {
    // CKR_CRYPTOKI_ALREADY_INITIALIZED here means another component of this
    // process initialized the library behind our back: its C_Finalize could
    // pull the rug from under us at any time, so refuse to share it.
    std::string msg = ck_message("C_Initialize", rv);
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      msg += " (the module was initialized by another component of this process)";
    }
    lk.unlock();
    module.reset();
    return kms::fail(kms::Errc::unavailable, std::move(msg));
  }
  reg.live[handle] = module;
  return module;
}

Module::~Module() {
  if (initialized_) api_->C_Finalize(nullptr);
  if (handle_ != nullptr) ::dlclose(handle_);
}

kms::Result<std::uint64_t> Module::reinitialize(std::uint64_t seen) {
  std::lock_guard gate(gate_);
  std::unique_lock lk(mu_);
  if (generation_ != seen && initialized_) return generation_;
  if (initialized_) {
    api_->C_Finalize(nullptr);  // whatever it says, every handle is void now
    initialized_ = false;
  }
  ++generation_;
  if (const CK_RV rv = initialize_locked(); rv != CKR_OK) {
    return ck_fail(kms::Errc::unavailable, "C_Initialize", rv);
  }
  return generation_;
}

}  // namespace rootseal::hsm::detail
