// rootseal::hsm — provision_token: a new token in the first free slot.
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "rootseal/hsm/pkcs11_root.hpp"
#include "pkcs11_api.hpp"  // last: pulls in pkcs11.h

namespace rootseal::hsm {

using detail::ck_fail;
using detail::Module;
using kms::Errc;
using kms::fail;

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
  if (CK_RV rv = detail::slot_list(api, false, slots); rv != CKR_OK) {
    return ck_fail(Errc::unavailable, "C_GetSlotList", rv);
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
  detail::SessionGuard s(api);
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
  const CK_RV rv =
      api->C_InitPIN(s.handle, const_cast<std::uint8_t*>(user_pin.data()), static_cast<CK_ULONG>(user_pin.size()));
  api->C_Logout(s.handle);
  if (rv != CKR_OK) {
    return ck_fail(rv == CKR_PIN_LEN_RANGE || rv == CKR_PIN_INVALID ? Errc::invalid_argument : Errc::unavailable,
                   "C_InitPIN", rv);
  }
  return {};
}

}  // namespace rootseal::hsm
