// rootseal::hsm — private: the wrap mechanisms of Pkcs11Root and the wrapped
// blob they produce.
//
// Wrapped blob (version byte first; anything else is decryption_failed):
//   0x01 || RFC 5649 KWP(root, key)                 (CKM_AES_KEY_WRAP_PAD, 0x210A)
//   0x02 || iv[12] || AES-GCM(root, key) || tag[16]  (AAD "rootseal-kek-v1")
//
// The functions here are the PKCS#11 calls of one wrap or unwrap; they run on
// a leased session under the module call lock (see pkcs11_session_pool.hpp).
//
// Include this header after all standard headers (it includes pkcs11_api.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "pkcs11_api.hpp"

namespace rootseal::hsm::detail {

inline constexpr std::uint8_t kFormatKwp = 0x01;
inline constexpr std::uint8_t kFormatGcm = 0x02;
inline constexpr std::size_t kRootKeySize = 32;  // AES-256

enum class Mech { kwp, gcm };

// "CKM_AES_KEY_WRAP_KWP" or "CKM_AES_GCM".
std::string_view mech_name(Mech m) noexcept;

// invalid_argument unless `key` is 16..64 bytes, a multiple of 8.
kms::Result<void> check_key_to_wrap(const kms::SecureBytes& key);
// decryption_failed unless `wrapped` is a blob of a known format whose length
// fits a 16..64-byte key.
kms::Result<void> check_wrapped(std::span<const std::uint8_t> wrapped);
// Whether the key is within the sizes check_key_to_wrap accepts (after unwrap).
bool plausible_key_size(std::size_t n) noexcept;

// Wrap `key` into `out` (format byte first). op_active: an operation is left
// active on the session when the call returns (the session must not be pooled).
Step wrap_kwp(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root, const kms::SecureBytes& key,
              std::vector<std::uint8_t>& out);
Step wrap_gcm(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root, const kms::SecureBytes& key,
              std::vector<std::uint8_t>& out, bool& op_active);
// Unwrap `body` (the blob without its format byte) into `out`.
Step unwrap_kwp(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root, std::span<const std::uint8_t> body,
                kms::SecureBytes& out);
Step unwrap_gcm(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root, std::span<const std::uint8_t> body,
                kms::SecureBytes& out, bool& op_active);

// The key check value of tokens without CKA_CHECK_VALUE: the first 3 bytes of
// what the root key makes of a fixed all-zero 16-byte key — KWP output, or the
// GCM ciphertext under a fixed all-zero IV (AAD "rootseal-kcv-v1"). Stable and
// specific to the key, but NOT the same number as aes_key_check_value.
// `out` receives at least kms::kKeyCheckValueSize bytes on success.
Step fallback_check_value(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root, Mech mech,
                          std::vector<std::uint8_t>& out);

}  // namespace rootseal::hsm::detail
