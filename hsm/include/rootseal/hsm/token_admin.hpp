// rootseal::hsm — administration of a PKCS#11 token for the offline key
// ceremony (`rootseal ceremony ...`): log in with the user PIN, put a root key
// into the token (imported from the ceremony's Shamir flow, or generated
// inside), read its key check value as the token computes it, find keys by
// label, relabel (copy + destroy) and destroy them.
//
// Root keys created here have exactly the attributes Pkcs11Root requires,
// every one set explicitly (SoftHSM's defaults are not safe): CKO_SECRET_KEY,
// CKK_AES, 32 bytes, CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE
// false, CKA_WRAP + CKA_UNWRAP (plus CKA_ENCRYPT + CKA_DECRYPT for aes-gcm or
// on tokens without CKM_AES_KEY_WRAP_PAD, for Pkcs11Root's GCM fallback),
// nothing else; CKA_COPYABLE and CKA_ALLOWED_MECHANISMS where the token
// accepts them (opencryptoki 3.8 knows neither). CKA_MODIFIABLE is true so
// that a later rotation can relabel (copy) the key; CKA_SENSITIVE and
// CKA_EXTRACTABLE=false cannot be reverted by anyone.
//
// aes-cbc-pad-hmac roots (RootMechanism::aes_cbc_pad_hmac) are two keys: the
// AES key above with CKA_ENCRYPT + CKA_DECRYPT only (CKM_AES_CBC_PAD), and a
// 256-bit generic secret labelled "<label>-hmac" (hmac_label()) with
// CKA_SIGN + CKA_VERIFY only (CKM_SHA256_HMAC), the same hardening otherwise.
// The HMAC key's check value is the first 3 bytes of
// HMAC-SHA256(key, "rootseal-hmac-kcv-v1"), computed by the token (C_Sign),
// lower-case hex; tokens define no CKA_CHECK_VALUE for generic secrets that
// all of them compute alike.
//
// A key is named by its label together with its key check value (lower-case
// hex, 3 bytes): CKA_CHECK_VALUE, or for an AES key on a token without it
// (opencryptoki) the same number computed by the token with CKM_AES_CBC_PAD
// under a zero IV where the key may encrypt; for an HMAC key its HMAC check
// value; for an RSA key its public key's check value (Pkcs11Root's). During
// a root rotation two keys may carry related labels, and an operation must never hit the wrong one. Keys are
// never modified in place: relabel() makes a copy under the new label
// (C_CopyObject, inside the token), checks it, then destroys the original,
// so that a crash at any point leaves at least one intact object.
//
// Uses the process-wide shared instance of the module (as Pkcs11Root does),
// so both can be used in one process. Not thread-safe: one ceremony step at a
// time. The login lasts while this object (or any other session of the
// process on the token) is alive.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::hsm {

// The message of the HMAC key's check value (see above).
inline constexpr std::string_view kHmacCheckMessage = "rootseal-hmac-kcv-v1";
// The companion HMAC key of an aes-cbc-pad-hmac root labelled `label`.
std::string hmac_label(std::string_view label);

// What CK_TOKEN_INFO says about the token (blank padding removed).
struct TokenDetails {
  std::string label;
  std::string manufacturer;
  std::string model;
  std::string serial;
  bool has_kwp = false;       // CKM_AES_KEY_WRAP_PAD (0x210A) or CKM_AES_KEY_WRAP_KWP (0x210B): wrap and unwrap
  bool has_gcm = false;       // CKM_AES_GCM usable for encrypt and decrypt
  bool has_cbc_hmac = false;  // CKM_AES_CBC_PAD (encrypt, decrypt) and CKM_SHA256_HMAC (sign, verify)
  bool has_rsa_oaep = false;  // CKM_RSA_PKCS_OAEP (encrypt, decrypt) and CKM_RSA_PKCS_KEY_PAIR_GEN
};

// A secret-key object as the ceremony sees it: attributes, never a value.
struct KeyObject {
  std::string label;
  std::string id;   // CKA_ID, lower-case hex
  std::string kcv;  // CKA_CHECK_VALUE (HMAC keys: the HMAC check value), lower-case hex; empty if none
  bool aes = false;
  bool generic_secret = false;  // CKK_GENERIC_SECRET or CKK_SHA256_HMAC
  bool rsa = false;             // CKK_RSA (value_len: the modulus in bytes)
  std::size_t value_len = 0;    // bytes; 0 if unknown
  bool token = false;
  bool is_private = false;
  bool sensitive = false;
  bool extractable = true;
  bool wrap = false;
  bool unwrap = false;
  bool encrypt = false;
  bool decrypt = false;
  bool sign = false;
  bool verify = false;
  bool modifiable = true;  // CKA_MODIFIABLE: false keys cannot be relabelled (only destroyed)

  // AES-256, token, private, sensitive, not extractable, usable for wrap and
  // unwrap (or, on tokens without KWP, encrypt and decrypt).
  [[nodiscard]] bool is_valid_root_key() const noexcept;
  // The HMAC key of an aes-cbc-pad-hmac root: a generic secret of at least
  // 256 bits (where the token reports its length), token, private,
  // sensitive, not extractable, sign and verify.
  [[nodiscard]] bool is_valid_hmac_key() const noexcept;
  // The private key of an rsa-oaep root: RSA-3072 or -4096, token, private,
  // sensitive, not extractable, decrypt.
  [[nodiscard]] bool is_valid_rsa_root() const noexcept;
};

class TokenAdmin {
 public:
  // Finds the initialized token labelled `token_label` in `module` and logs
  // in as the user on a read/write session. Errors: not_found (no such
  // token), permission_denied (PIN incorrect or locked), unavailable,
  // invalid_argument (among others: the token offers none of KWP, GCM and
  // CBC-PAD+HMAC, unless `inspect_only`, for looking at keys without making any).
  static kms::Result<std::unique_ptr<TokenAdmin>> open(const std::filesystem::path& module,
                                                       std::string_view token_label, const kms::SecureBytes& pin,
                                                       bool inspect_only = false);
  ~TokenAdmin();
  TokenAdmin(const TokenAdmin&) = delete;
  TokenAdmin& operator=(const TokenAdmin&) = delete;

  [[nodiscard]] const TokenDetails& details() const noexcept;

  // n bytes from the token's random number generator (C_GenerateRandom).
  kms::Result<kms::SecureBytes> generate_random(std::size_t n);

  // Every secret key labelled `label` (exact match), or every secret key of
  // the token when `label` is empty.
  kms::Result<std::vector<KeyObject>> find_keys(std::string_view label);

  // Imports a 32-byte AES root key as a non-extractable token object
  // (C_CreateObject with CKA_VALUE) and checks that the token's
  // CKA_CHECK_VALUE equals `expected_kcv`; on a mismatch the object is
  // destroyed again (crypto_failure). already_exists if a secret key with
  // that label exists.
  // `mechanism`: aes_cbc_pad_hmac makes the AES key of such a root (encrypt
  // and decrypt, CKM_AES_CBC_PAD only); aes_gcm one for GCM (and KWP where
  // offered); anything else a KWP key (GCM where the token lacks KWP).
  kms::Result<KeyObject> import_root_key(std::string_view label, const kms::SecureBytes& key,
                                         std::string_view expected_kcv,
                                         RootMechanism mechanism = RootMechanism::automatic);

  // Imports the 32-byte HMAC key of an aes-cbc-pad-hmac root (labelled
  // `label` as given: the caller passes hmac_label(root label)) and checks
  // that the HMAC check value the token computes equals `expected_check`.
  kms::Result<KeyObject> import_hmac_key(std::string_view label, const kms::SecureBytes& key,
                                         std::string_view expected_check);

  // Generates an AES-256 root key inside the token (C_GenerateKey): it has
  // never existed outside it and cannot be backed up. For aes_cbc_pad_hmac,
  // generate_hmac_key(hmac_label(label)) makes its second key.
  kms::Result<KeyObject> generate_root_key(std::string_view label, RootMechanism mechanism = RootMechanism::automatic);
  kms::Result<KeyObject> generate_hmac_key(std::string_view label);

  // rsa-oaep roots (never backed up: the ceremony makes them only with
  // --no-backup). generate_rsa_root makes an RSA-3072 key pair labelled
  // `label` inside the token (private key sensitive, not extractable,
  // decrypt only; public key encrypt), checks that the token encrypts and
  // decrypts with CKM_RSA_PKCS_OAEP (SHA-256, MGF1-SHA-256) with it, and
  // destroys the pair again if not. The KeyObject is the private key's; its
  // kcv the public key's check value (SHA-256 over the DER
  // SubjectPublicKeyInfo, first 3 bytes, as Pkcs11Root reports it).
  kms::Result<KeyObject> generate_rsa_root(std::string_view label);
  // The RSA private keys labelled `label`.
  kms::Result<std::vector<KeyObject>> find_rsa_keys(std::string_view label);
  // The RSA key pair (label, check value) copied to `new_label` inside the
  // token (public key first), each object only if `new_label` lacks it: a
  // crash in between is finished by calling it again. Nothing to copy (the
  // pair is no longer at `label`) is not an error.
  kms::Result<void> copy_rsa_pair(std::string_view label, std::string_view kcv, std::string_view new_label);
  // Destroys the RSA private key, then the public key, (label, check value)
  // that are there; none left is not an error.
  kms::Result<void> destroy_rsa_pair(std::string_view label, std::string_view kcv);

  // Copies the key (label, kcv) to a new object labelled `new_label` inside
  // the token (C_CopyObject); the copy must report the same check value.
  // AES and HMAC keys alike.
  kms::Result<KeyObject> copy_key(std::string_view label, std::string_view kcv, std::string_view new_label);

  // Destroys the one key labelled `label` whose check value is `kcv`.
  kms::Result<void> destroy_key(std::string_view label, std::string_view kcv);

  // copy_key + destroy_key. A crash in between leaves both objects.
  kms::Result<KeyObject> relabel(std::string_view label, std::string_view kcv, std::string_view new_label);

 private:
  struct Impl;
  explicit TokenAdmin(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rootseal::hsm
