// rootseal::hsm — private: the templates of the secret keys of a root, one
// builder for the ceremony (TokenAdmin: import, generate) and for rootseald
// (Pkcs11Root generating its own root with generate_if_missing).
//
// Every root secret key is a private token object, sensitive, never
// extractable, usable for its one job only. A template is in two parts: the
// attributes every token must take, then hardening a token may refuse
// (CKA_COPYABLE and CKA_ALLOWED_MECHANISMS are PKCS#11 v2.40; opencryptoki 3.8
// knows neither): a refused template is tried again with the first part only
// (see template_refused).
//
// Include this header after all standard headers (it includes pkcs11_api.hpp).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "pkcs11_mechanisms.hpp"

namespace rootseal::hsm::detail {

// Who makes the key decides CKA_MODIFIABLE, and only that. The ceremony's
// keys stay modifiable: rotate-root retires a key by C_CopyObject to a new
// label, which tokens refuse for a non-modifiable one (CKA_SENSITIVE and
// CKA_EXTRACTABLE=false are one-way anyway). rootseald's own roots (--dev,
// generate_if_missing) are not: they can only be retired by destroying them
// (docs/ceremony.md).
enum class KeyMaker { ceremony, daemon };

// The token's answer to a template it will not take as a whole.
bool template_refused(CK_RV rv) noexcept;

class SecretKeyTemplate {
 public:
  // The AES key of a root of mechanism `mech` (kwp, gcm or cbc_hmac): KWP
  // wraps, GCM and CBC-PAD encrypt; a GCM key keeps wrap/unwrap (and KWP among
  // its mechanisms where the token offers it) so that it serves KWP later.
  // Every KWP constant the token offers (`kwp`: 0x210A, 0x210B) is allowed.
  static SecretKeyTemplate aes_root(Mech mech, KwpOffer kwp, std::string_view label, KeyMaker maker);
  // The HMAC key of an aes-cbc-pad-hmac root: CKM_SHA256_HMAC sign and verify.
  static SecretKeyTemplate hmac(std::string_view label, KeyMaker maker);

  SecretKeyTemplate(const SecretKeyTemplate&) = delete;
  SecretKeyTemplate& operator=(const SecretKeyTemplate&) = delete;
  SecretKeyTemplate(SecretKeyTemplate&&) = delete;

  // CKA_ID, to be filled (C_GenerateRandom) before the template is used.
  std::array<std::uint8_t, 16>& id() noexcept { return id_; }
  // For C_GenerateKey: the whole template with CKA_VALUE_LEN, and how many of
  // its attributes are the part every token must take.
  std::vector<CK_ATTRIBUTE> for_generate() const;
  std::size_t required_for_generate() const noexcept { return required_ + 1; }
  // For C_CreateObject: the template with CKA_VALUE last (`value` must outlive
  // the call), whole or (`with_hardening` false) its required part only.
  std::vector<CK_ATTRIBUTE> for_create(const void* value, std::size_t n, bool with_hardening) const;

 private:
  enum class Role { aes, hmac };
  SecretKeyTemplate(Role role, Mech mech, KwpOffer kwp, std::string_view label, KeyMaker maker);

  CK_OBJECT_CLASS cls_ = CKO_SECRET_KEY;
  CK_KEY_TYPE type_ = CKK_AES;
  CK_ULONG len_ = kRootKeySize;
  CK_BBOOL yes_ = CK_TRUE;
  CK_BBOOL no_ = CK_FALSE;
  CK_BBOOL enc_ = CK_FALSE;
  CK_BBOOL wraps_ = CK_FALSE;
  CK_BBOOL signs_ = CK_FALSE;
  CK_BBOOL modifiable_ = CK_TRUE;
  std::array<CK_MECHANISM_TYPE, 3> allowed_{};
  std::size_t allowed_n_ = 0;
  std::array<std::uint8_t, 16> id_{};
  std::vector<CK_ATTRIBUTE> attrs_;  // without CKA_VALUE_LEN / CKA_VALUE
  std::size_t required_ = 0;         // attrs_[0, required_) every token must take
};

// The RSA-3072 key pair of an rsa-oaep root (CKM_RSA_PKCS_KEY_PAIR_GEN):
// the public key encrypts, the private key decrypts, with CKM_RSA_PKCS_OAEP.
// The essentials first; what else a pair must not do is hardening the token
// may refuse. (tpm2-pkcs11 makes TPM RSA keys that also sign and verify, and
// fails the generation, CKR_GENERAL_ERROR, when the template says otherwise;
// a failed attempt there also leaks a TPM object slot, so the hardening is
// only what it ignores.)
class RsaPairTemplate {
 public:
  RsaPairTemplate(std::string_view label, KeyMaker maker);
  RsaPairTemplate(const RsaPairTemplate&) = delete;
  RsaPairTemplate& operator=(const RsaPairTemplate&) = delete;

  std::array<std::uint8_t, 16>& id() noexcept { return id_; }
  // The public and private templates, whole or (`with_hardening` false)
  // their required parts only.
  std::vector<CK_ATTRIBUTE> pub(bool with_hardening) const;
  std::vector<CK_ATTRIBUTE> priv(bool with_hardening) const;

 private:
  CK_OBJECT_CLASS pub_cls_ = CKO_PUBLIC_KEY;
  CK_OBJECT_CLASS priv_cls_ = CKO_PRIVATE_KEY;
  CK_KEY_TYPE type_ = CKK_RSA;
  CK_ULONG bits_ = kRsaModulusBits;
  std::array<std::uint8_t, 3> exponent_{0x01, 0x00, 0x01};
  CK_BBOOL yes_ = CK_TRUE;
  CK_BBOOL no_ = CK_FALSE;
  CK_MECHANISM_TYPE allowed_ = CKM_RSA_PKCS_OAEP;
  std::array<std::uint8_t, 16> id_{};
  std::vector<CK_ATTRIBUTE> pub_, priv_;
  std::size_t pub_required_ = 0, priv_required_ = 0;
};

// C_GenerateKey / C_GenerateKeyPair with the whole template, then with its
// required part only if the token refuses it as a whole. The token's answer.
CK_RV generate_secret_key(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE rw, CK_MECHANISM_TYPE mechanism,
                          const SecretKeyTemplate& t, CK_OBJECT_HANDLE& out);
CK_RV generate_rsa_pair(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE rw, const RsaPairTemplate& t, CK_OBJECT_HANDLE& pub,
                        CK_OBJECT_HANDLE& priv);

}  // namespace rootseal::hsm::detail
