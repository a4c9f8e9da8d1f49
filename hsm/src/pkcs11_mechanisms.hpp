// rootseal::hsm — private: the wrap mechanisms of Pkcs11Root and the wrapped
// blob they produce.
//
// Wrapped blob: its first byte is the header, naming the format version and
// the mechanism together (anything else is decryption_failed):
//   0x01 || RFC 5649 KWP(root, key)                 (CKM_AES_KEY_WRAP_PAD, 0x210A)
//   0x02 || iv[12] || AES-GCM(root, key) || tag[16]  (AAD "rootseal-kek-v1")
//   0x03 || iv[16] || AES-CBC-PAD(aes, iv, key) || HMAC-SHA256(hmac, 0x03 || iv || ct)[32]
//        encrypt-then-MAC with two keys in the token; C_Verify before any C_Decrypt
//   0x04 || RSA-OAEP(public, key)   (SHA-256, MGF1-SHA-256, no label; 384 or 512 bytes)
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
inline constexpr std::uint8_t kFormatCbcHmac = 0x03;
inline constexpr std::uint8_t kFormatRsaOaep = 0x04;
inline constexpr std::size_t kRootKeySize = 32;    // AES-256 (and the HMAC key of aes-cbc-pad-hmac)
inline constexpr CK_ULONG kRsaModulusBits = 3072;  // generated RSA roots; 3072..4096 accepted
inline constexpr std::size_t kRsaMinModulusBytes = 384;
inline constexpr std::size_t kRsaMaxModulusBytes = 512;

enum class Mech { kwp, gcm, cbc_hmac, rsa_oaep };

// "CKM_AES_KEY_WRAP_KWP", "CKM_AES_GCM", "CKM_AES_CBC_PAD+CKM_SHA256_HMAC", "CKM_RSA_PKCS_OAEP".
std::string_view mech_name(Mech m) noexcept;
// The pkcs11.mechanism value: "aes-kwp", "aes-gcm", "aes-cbc-pad-hmac", "rsa-oaep".
std::string_view mech_config_name(Mech m) noexcept;
// The blob header of `m`, and the mechanism of a header (false if unknown).
std::uint8_t mech_format(Mech m) noexcept;
bool format_mech(std::uint8_t format, Mech& out) noexcept;

// invalid_argument unless `key` is 16..64 bytes, a multiple of 8.
kms::Result<void> check_key_to_wrap(const kms::SecureBytes& key);
// decryption_failed unless `wrapped` is a blob of a known format whose length
// fits a 16..64-byte key.
kms::Result<void> check_wrapped(std::span<const std::uint8_t> wrapped);
// Whether the key is within the sizes check_key_to_wrap accepts (after unwrap).
bool plausible_key_size(std::size_t n) noexcept;

// The KWP mechanisms a root key serves with (docs/hsm.md, "CKM_AES_KEY_WRAP_PAD
// means two things"): `wrap` is 0x210B where the token offers it and the
// key's CKA_ALLOWED_MECHANISMS (when it has one) lets it, else 0x210A, else 0
// (no KWP for this key). `legacy` is 0x210A when both are usable: blobs made
// before rootseald asked for 0x210B were made with it, and a token that
// reads 0x210A the v3.1 way (not RFC 5649) opens them only so.
struct KwpUse {
  CK_MECHANISM_TYPE wrap = 0;
  CK_MECHANISM_TYPE legacy = 0;
};
KwpUse kwp_use(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, KwpOffer offer);

// Wrap `key` into `out` (format byte first). op_active: an operation is left
// active on the session when the call returns (the session must not be pooled).
// `kwp` is the mechanism (kwp_use().wrap).
Step wrap_kwp(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root, CK_MECHANISM_TYPE kwp,
              const kms::SecureBytes& key, std::vector<std::uint8_t>& out);
Step wrap_gcm(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root, const kms::SecureBytes& key,
              std::vector<std::uint8_t>& out, bool& op_active);
// Unwrap `body` (the blob without its format byte) into `out`: with
// `use.wrap`, then, if the token refuses the blob and there is one, with
// `use.legacy`.
Step unwrap_kwp(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root, KwpUse use,
                std::span<const std::uint8_t> body, kms::SecureBytes& out);
Step unwrap_gcm(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root, std::span<const std::uint8_t> body,
                kms::SecureBytes& out, bool& op_active);
// aes-cbc-pad-hmac: `aes` encrypts (CKM_AES_CBC_PAD), `mac` signs (CKM_SHA256_HMAC).
Step wrap_cbc_hmac(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE aes, CK_OBJECT_HANDLE mac,
                   const kms::SecureBytes& key, std::vector<std::uint8_t>& out, bool& op_active);
// Unwraps the whole blob (header included: it is MACed). A MAC that does not
// verify is {"C_Verify", CKR_SIGNATURE_INVALID} and nothing is decrypted.
Step unwrap_cbc_hmac(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE aes, CK_OBJECT_HANDLE mac,
                     std::span<const std::uint8_t> blob, kms::SecureBytes& out, bool& op_active);
// rsa-oaep: encrypts with the public key object, decrypts with the private one.
Step wrap_rsa_oaep(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE pub, const kms::SecureBytes& key,
                   std::vector<std::uint8_t>& out, bool& op_active);
Step unwrap_rsa_oaep(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE priv,
                     std::span<const std::uint8_t> body, kms::SecureBytes& out, bool& op_active);

// The check value of an RSA root: the first 3 bytes of SHA-256 over the DER
// SubjectPublicKeyInfo of (modulus, public exponent), big-endian as PKCS#11
// stores them. Empty on failure (malformed numbers).
std::vector<std::uint8_t> rsa_check_value(std::span<const std::uint8_t> modulus,
                                          std::span<const std::uint8_t> exponent);

// The key check value of tokens without CKA_CHECK_VALUE: the first 3 bytes of
// what the root key makes of a fixed all-zero 16-byte key — KWP output (under
// 0x210A where the key serves it, as before 0x210B was used: the value stays
// the one the store recorded), or the
// GCM ciphertext under a fixed all-zero IV (AAD "rootseal-kcv-v1"). Stable and
// specific to the key, but NOT the same number as aes_key_check_value —
// except for CBC (cbc_hmac): AES-CBC of a zero block under a zero IV is
// AES-ECB(key, 0^128), the standard KCV.
// `out` receives at least kms::kKeyCheckValueSize bytes on success.
Step fallback_check_value(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root, Mech mech, KwpUse kwp,
                          std::vector<std::uint8_t>& out);

}  // namespace rootseal::hsm::detail
