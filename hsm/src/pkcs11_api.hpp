// rootseal::hsm — private: the PKCS#11 module as a process-wide shared object.
//
// A PKCS#11 library has one C_Initialize/C_Finalize state per process, and
// dlopen() of the same file returns the same handle. So every user in the
// process (each Pkcs11Root, provision_token, test helpers) shares one
// Module per loaded library, obtained with Module::acquire(). The last user
// to let go calls C_Finalize and dlclose.
//
// Re-initialization (C_Finalize + C_Initialize, the cure for a removed or
// reset device) invalidates every session and object handle of every user.
// Users therefore:
//   - hold call_lock() (shared) while they use handles, and check that the
//     generation they obtained the handles under is still current;
//   - ask for reinitialize(seen) with the generation they saw; if another user
//     re-initialized in the meantime, nothing is done twice.
//
// Include this header after all standard headers: it pulls in p11-kit's
// pkcs11.h (whose compatibility macros are undefined again below).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rootseal/kms/error.hpp"

#include <p11-kit/pkcs11.h>

// p11-kit maps GNU-style member names onto the standard ones with plain
// macros (`value`, `count`, `params` ...). The structs are declared by now;
// drop the macros so that they cannot rewrite unrelated code.
#undef cryptoki_version
#undef manufacturer_id
#undef library_description
#undef library_version
#undef slot_description
#undef hardware_version
#undef firmware_version
#undef serial_number
#undef max_session_count
#undef session_count
#undef max_rw_session_count
#undef rw_session_count
#undef max_pin_len
#undef min_pin_len
#undef total_public_memory
#undef free_public_memory
#undef total_private_memory
#undef free_private_memory
#undef utc_time
#undef slot_id
#undef device_error
#undef value
#undef value_len
#undef count
#undef parameter
#undef parameter_len
#undef params
#undef min_key_size
#undef max_key_size
#undef create_mutex
#undef destroy_mutex
#undef lock_mutex
#undef unlock_mutex
#undef reserved
#undef hash_alg
#undef s_len
#undef source_data
#undef source_data_len
#undef counter_bits
#undef iv_ptr
#undef iv_len
#undef iv_bits
#undef aad_ptr
#undef aad_len
#undef tag_bits
#undef shared_data_len
#undef shared_data
#undef public_data_len
#undef public_data
#undef string_data
#undef string_data_len
#undef data_params

namespace rootseal::hsm::detail {

// PKCS#11 v2.40 CKM_AES_KEY_WRAP_PAD (0x210A): AES key wrap with padding,
// RFC 5649 / SP 800-38F KWP, as SoftHSM 2.6 implements it.
inline constexpr CK_MECHANISM_TYPE kMechKwp = 0x210AUL;
// PKCS#11 v3.0 CKM_AES_KEY_WRAP_KWP (0x210B): RFC 5649 by definition (v3.1
// reads 0x210A as PKCS#7 padding + RFC 3394). Thales Luna offers only this
// one, nShield both; SoftHSM 2.6 lacks it.
inline constexpr CK_MECHANISM_TYPE kMechKwpV3 = 0x210BUL;
inline constexpr CK_MECHANISM_TYPE kMechGcm = CKM_AES_GCM;

// Which of the two KWP constants a token offers for wrap and unwrap.
struct KwpOffer {
  bool pad = false;  // 0x210A
  bool v3 = false;   // 0x210B
  [[nodiscard]] bool any() const noexcept { return pad || v3; }
};

// The label as the token stores it: 32 bytes, blank padded. Longer labels
// are an error (nullopt-like: returns false).
bool pad_label(std::string_view label, unsigned char (&out)[32]) noexcept;
// The label with trailing blanks removed (for messages).
std::string unpad_label(const unsigned char (&in)[32]);

// Lower-case hex.
std::string to_hex(std::span<const std::uint8_t> bytes);

// "C_WrapKey: CKR_KEY_HANDLE_INVALID"
std::string ck_message(std::string_view function, CK_RV rv);
inline std::unexpected<kms::Error> ck_fail(kms::Errc code, std::string_view function, CK_RV rv) {
  return kms::fail(code, ck_message(function, rv));
}

// The return values after which the token, the session or the login state
// must be considered gone: drop every session and re-connect.
bool is_disconnect(CK_RV rv) noexcept;

// The result of one PKCS#11 step: the function name and its return value.
struct Step {
  const char* function = "";
  CK_RV rv = CKR_OK;
  [[nodiscard]] bool ok() const noexcept { return rv == CKR_OK; }
};

// One attribute of a template.
template <class T>
CK_ATTRIBUTE attr(CK_ATTRIBUTE_TYPE type, T& v) noexcept {
  return CK_ATTRIBUTE{type, &v, sizeof v};
}
inline CK_ATTRIBUTE attr_bytes(CK_ATTRIBUTE_TYPE type, const void* p, std::size_t n) noexcept {
  // PKCS#11 takes non-const pointers for input templates; it does not write them.
  return CK_ATTRIBUTE{type, const_cast<void*>(p), static_cast<CK_ULONG>(n)};
}

// C_GetSlotList into `out`, asked again while the list grows between the size
// query and the fetch. `token_present`: only slots with a token in them.
CK_RV slot_list(CK_FUNCTION_LIST* api, bool token_present, std::vector<CK_SLOT_ID>& out);

// The slots among `slots` with an initialized token labelled `padded_label`;
// `info` receives the token information of the last one found.
std::vector<CK_SLOT_ID> slots_labelled(CK_FUNCTION_LIST* api, std::span<const CK_SLOT_ID> slots,
                                       const unsigned char (&padded_label)[32], CK_TOKEN_INFO& info);

// A variable-length attribute of an object (two C_GetAttributeValue calls:
// the length, then the value); nullopt if the token does not show it.
std::optional<std::vector<std::uint8_t>> attribute_bytes(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                                                         CK_ATTRIBUTE_TYPE type);

// Whether the objects `hs` (of one class and one label) are copies of one
// key: an equal, non-empty identity (CKA_CHECK_VALUE of a secret key, the
// modulus and public exponent of an RSA key) and equal type, usage and
// protection attributes. A copy interrupted half-way leaves such a pair:
// SoftHSM2's C_CopyObject stores the copy under the source's attributes,
// label included, and applies the new label in a second write. Without a
// check value (opencryptoki) secret keys are never taken for copies.
bool copies_of_one_key(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, std::span<const CK_OBJECT_HANDLE> hs);

// Closes a session when leaving scope unless released (error paths). Must be
// destroyed while the module call lock is held.
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

class Module {
 public:
  // Loads (RTLD_NOW | RTLD_LOCAL) and initializes the module at `path`, or
  // returns the process's existing instance of it.
  static kms::Result<std::shared_ptr<Module>> acquire(const std::filesystem::path& path);

  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  ~Module();

  [[nodiscard]] CK_FUNCTION_LIST* api() const noexcept { return api_; }
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

  // Held (shared) while session/object handles are in use. Never taken twice
  // by one thread. A pending reinitialize() holds the gate, so that a steady
  // stream of callers cannot starve it (glibc's rwlock prefers readers).
  [[nodiscard]] std::shared_lock<std::shared_mutex> call_lock() const {
    std::lock_guard gate(gate_);
    return std::shared_lock<std::shared_mutex>(mu_);
  }
  // Read under call_lock(). Changes on every re-initialization.
  [[nodiscard]] std::uint64_t generation() const noexcept { return generation_; }
  [[nodiscard]] bool initialized() const noexcept { return initialized_; }

  // C_Finalize + C_Initialize, unless the generation already moved past
  // `seen` (somebody else did it). Waits for all call_lock() holders.
  // Returns the current generation.
  kms::Result<std::uint64_t> reinitialize(std::uint64_t seen);

 private:
  Module(std::filesystem::path path, void* handle, CK_FUNCTION_LIST* api)
      : path_(std::move(path)), handle_(handle), api_(api) {}
  CK_RV initialize_locked() noexcept;

  std::filesystem::path path_;
  void* handle_ = nullptr;
  CK_FUNCTION_LIST* api_ = nullptr;
  mutable std::mutex gate_;
  mutable std::shared_mutex mu_;
  std::uint64_t generation_ = 1;
  bool initialized_ = false;
};

}  // namespace rootseal::hsm::detail
