// rootseal::hsm — private: KWP, GCM, CBC-PAD+HMAC and RSA-OAEP wrapping with
// the root key(s) in the token.
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "rootseal/kms/key_wrap.hpp"
#include "pkcs11_mechanisms.hpp"  // last: pulls in pkcs11.h

namespace rootseal::hsm::detail {

namespace {

using kms::Errc;
using kms::fail;

constexpr std::size_t kMinKeySize = 16;
constexpr std::size_t kMaxKeySize = 64;
constexpr std::size_t kKwpOverhead = 8;  // plus padding to a multiple of 8
constexpr std::size_t kGcmIvSize = 12;
constexpr std::size_t kGcmTagSize = 16;
constexpr char kGcmAad[] = "rootseal-kek-v1";  // non-empty: SoftHSM 2.6.1 aborts on empty AAD
constexpr char kKcvAad[] = "rootseal-kcv-v1";
constexpr std::size_t kCbcIvSize = 16;
constexpr std::size_t kCbcBlock = 16;
constexpr std::size_t kHmacSize = 32;
constexpr std::size_t kRsaMinBytes = 384;  // RSA-3072
constexpr std::size_t kRsaMaxBytes = 512;  // RSA-4096

// CBC-PAD output for a key of n bytes: PKCS#7 always adds 1..16 bytes.
constexpr std::size_t cbc_len(std::size_t n) noexcept { return (n / kCbcBlock + 1) * kCbcBlock; }

CK_RSA_PKCS_OAEP_PARAMS oaep_params() noexcept {
  CK_RSA_PKCS_OAEP_PARAMS p{};
  p.hashAlg = CKM_SHA256;
  p.mgf = CKG_MGF1_SHA256;
  p.source = CKZ_DATA_SPECIFIED;
  p.pSourceData = nullptr;
  p.ulSourceDataLen = 0;
  return p;
}

// AES-GCM parameters with a 12-byte IV, a 16-byte tag and `aad` (a literal).
template <std::size_t N>
CK_GCM_PARAMS gcm_params(const std::uint8_t* iv, const char (&aad)[N]) noexcept {
  CK_GCM_PARAMS p{};
  p.pIv = const_cast<std::uint8_t*>(iv);
  p.ulIvLen = kGcmIvSize;
  p.ulIvBits = kGcmIvSize * 8;
  p.pAAD = reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(aad));
  p.ulAADLen = N - 1;
  p.ulTagBits = kGcmTagSize * 8;
  return p;
}

// C_Decrypt of `in` (the operation initialized) into `out`, at most `max_out`
// bytes; out is empty unless it succeeds.
Step decrypt(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, std::span<const std::uint8_t> in, std::size_t max_out,
             kms::SecureBytes& out, bool& op_active) {
  out = kms::SecureBytes(max_out);
  CK_ULONG len = static_cast<CK_ULONG>(out.size());
  const CK_RV rv =
      api->C_Decrypt(s, const_cast<std::uint8_t*>(in.data()), static_cast<CK_ULONG>(in.size()), out.data(), &len);
  if (rv != CKR_BUFFER_TOO_SMALL) op_active = false;
  if (rv != CKR_OK) {
    out.clear();
    return {"C_Decrypt", rv};
  }
  out.truncate(static_cast<std::size_t>(len));
  return {};
}

// Destroys a temporary session object when leaving scope (also on errors).
// Must be destroyed while the module call lock is held.
class ObjectGuard {
 public:
  ObjectGuard(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s) : api_(api), session_(s) {}
  ObjectGuard(const ObjectGuard&) = delete;
  ObjectGuard& operator=(const ObjectGuard&) = delete;
  ~ObjectGuard() {
    if (handle != CK_INVALID_HANDLE) api_->C_DestroyObject(session_, handle);
  }
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;

 private:
  CK_FUNCTION_LIST* api_;
  CK_SESSION_HANDLE session_;
};

// A secret-key template for a temporary session object holding a KEK.
// `readable`: CKA_SENSITIVE=false so that CKA_VALUE can be read (unwrap);
// otherwise sensitive (wrap: the token only needs CKA_EXTRACTABLE).
struct KekTemplate {
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE type = CKK_GENERIC_SECRET;
  CK_BBOOL yes = CK_TRUE;
  CK_BBOOL no = CK_FALSE;
  CK_BBOOL sensitive;
  std::array<CK_ATTRIBUTE, 14> attrs{};
  CK_ULONG count = 0;

  KekTemplate(bool readable, const kms::SecureBytes* key) : sensitive(readable ? CK_FALSE : CK_TRUE) {
    auto add = [&](CK_ATTRIBUTE a) { attrs[count++] = a; };
    add(attr(CKA_CLASS, cls));
    add(attr(CKA_KEY_TYPE, type));
    add(attr(CKA_TOKEN, no));
    add(attr(CKA_PRIVATE, yes));
    add(attr(CKA_SENSITIVE, sensitive));
    add(attr(CKA_EXTRACTABLE, yes));
    add(attr(CKA_ENCRYPT, no));
    add(attr(CKA_DECRYPT, no));
    add(attr(CKA_SIGN, no));
    add(attr(CKA_VERIFY, no));
    add(attr(CKA_WRAP, no));
    add(attr(CKA_UNWRAP, no));
    add(attr(CKA_DERIVE, no));
    if (key != nullptr) add(attr_bytes(CKA_VALUE, key->data(), key->size()));
  }
  KekTemplate(const KekTemplate&) = delete;
  KekTemplate& operator=(const KekTemplate&) = delete;
};

}  // namespace

std::string_view mech_name(Mech m) noexcept {
  switch (m) {
    case Mech::kwp:
      return "CKM_AES_KEY_WRAP_KWP";
    case Mech::gcm:
      return "CKM_AES_GCM";
    case Mech::cbc_hmac:
      return "CKM_AES_CBC_PAD+CKM_SHA256_HMAC";
    case Mech::rsa_oaep:
      return "CKM_RSA_PKCS_OAEP";
  }
  return "?";
}

std::string_view mech_config_name(Mech m) noexcept {
  switch (m) {
    case Mech::kwp:
      return "aes-kwp";
    case Mech::gcm:
      return "aes-gcm";
    case Mech::cbc_hmac:
      return "aes-cbc-pad-hmac";
    case Mech::rsa_oaep:
      return "rsa-oaep";
  }
  return "?";
}

std::uint8_t mech_format(Mech m) noexcept {
  switch (m) {
    case Mech::kwp:
      return kFormatKwp;
    case Mech::gcm:
      return kFormatGcm;
    case Mech::cbc_hmac:
      return kFormatCbcHmac;
    case Mech::rsa_oaep:
      return kFormatRsaOaep;
  }
  return 0;
}

bool format_mech(std::uint8_t format, Mech& out) noexcept {
  switch (format) {
    case kFormatKwp:
      out = Mech::kwp;
      return true;
    case kFormatGcm:
      out = Mech::gcm;
      return true;
    case kFormatCbcHmac:
      out = Mech::cbc_hmac;
      return true;
    case kFormatRsaOaep:
      out = Mech::rsa_oaep;
      return true;
    default:
      return false;
  }
}

kms::Result<void> check_key_to_wrap(const kms::SecureBytes& key) {
  // Multiples of 8 only: SoftHSM 2.6.1 zero-pads other lengths to 8 bytes
  // before KWP, and would hand back a longer key than it was given.
  if (key.size() < kMinKeySize || key.size() > kMaxKeySize || key.size() % 8 != 0) {
    return fail(Errc::invalid_argument,
                "key to wrap must be 16..64 bytes, a multiple of 8; got " + std::to_string(key.size()));
  }
  return {};
}

kms::Result<void> check_wrapped(std::span<const std::uint8_t> wrapped) {
  if (wrapped.empty()) return fail(Errc::decryption_failed, "wrapped key is empty");
  const std::uint8_t format = wrapped[0];
  const auto body = wrapped.subspan(1);
  if (format == kFormatKwp) {
    // KWP output: 8-byte blocks, at least the 16..64-byte key plus 8.
    if (body.size() < kMinKeySize + kKwpOverhead || body.size() > kMaxKeySize + kKwpOverhead || body.size() % 8 != 0) {
      return fail(Errc::decryption_failed, "wrapped key (KWP) has an invalid length");
    }
  } else if (format == kFormatGcm) {
    if (body.size() < kGcmIvSize + kMinKeySize + kGcmTagSize || body.size() > kGcmIvSize + kMaxKeySize + kGcmTagSize) {
      return fail(Errc::decryption_failed, "wrapped key (GCM) has an invalid length");
    }
  } else if (format == kFormatCbcHmac) {
    // iv || whole CBC blocks of a 16..64-byte key plus padding || mac
    const std::size_t ct = body.size() >= kCbcIvSize + kHmacSize ? body.size() - kCbcIvSize - kHmacSize : 0;
    if (ct < cbc_len(kMinKeySize) || ct > cbc_len(kMaxKeySize) || ct % kCbcBlock != 0) {
      return fail(Errc::decryption_failed, "wrapped key (CBC-PAD+HMAC) has an invalid length");
    }
  } else if (format == kFormatRsaOaep) {
    if (body.size() != kRsaMinBytes && body.size() != kRsaMaxBytes) {
      return fail(Errc::decryption_failed, "wrapped key (RSA-OAEP) has an invalid length");
    }
  } else {
    return fail(Errc::decryption_failed, "wrapped key has an unknown format");
  }
  return {};
}

bool plausible_key_size(std::size_t n) noexcept { return n >= kMinKeySize && n <= kMaxKeySize; }

KwpUse kwp_use(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, KwpOffer offer) {
  bool pad_allowed = true, v3_allowed = true;
  if (const auto allowed = attribute_bytes(api, s, key, CKA_ALLOWED_MECHANISMS);
      allowed && !allowed->empty() && allowed->size() % sizeof(CK_MECHANISM_TYPE) == 0) {
    std::vector<CK_MECHANISM_TYPE> list(allowed->size() / sizeof(CK_MECHANISM_TYPE));
    std::memcpy(list.data(), allowed->data(), allowed->size());
    pad_allowed = std::find(list.begin(), list.end(), kMechKwp) != list.end();
    v3_allowed = std::find(list.begin(), list.end(), kMechKwpV3) != list.end();
  }
  const bool pad = offer.pad && pad_allowed;
  const bool v3 = offer.v3 && v3_allowed;
  if (v3) return {kMechKwpV3, pad ? kMechKwp : 0};
  return {pad ? kMechKwp : 0, 0};
}

Step wrap_kwp(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root, CK_MECHANISM_TYPE kwp,
              const kms::SecureBytes& key, std::vector<std::uint8_t>& out) {
  KekTemplate t(false, &key);
  ObjectGuard obj(api, s);
  if (CK_RV rv = api->C_CreateObject(s, t.attrs.data(), t.count, &obj.handle); rv != CKR_OK) {
    obj.handle = CK_INVALID_HANDLE;
    return {"C_CreateObject", rv};
  }
  CK_MECHANISM mech{kwp, nullptr, 0};
  out.assign(1 + key.size() + 2 * kKwpOverhead, 0);
  out[0] = kFormatKwp;
  CK_ULONG len = static_cast<CK_ULONG>(out.size() - 1);
  CK_RV rv = api->C_WrapKey(s, &mech, root, obj.handle, out.data() + 1, &len);
  if (rv == CKR_BUFFER_TOO_SMALL) {
    out.assign(1 + len, 0);
    out[0] = kFormatKwp;
    rv = api->C_WrapKey(s, &mech, root, obj.handle, out.data() + 1, &len);
  }
  if (rv != CKR_OK) return {"C_WrapKey", rv};
  out.resize(1 + len);
  return {};
}

Step unwrap_kwp(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root, KwpUse use,
                std::span<const std::uint8_t> body, kms::SecureBytes& out) {
  KekTemplate t(true, nullptr);
  ObjectGuard obj(api, s);
  auto unwrap_with = [&](CK_MECHANISM_TYPE type) {
    CK_MECHANISM mech{type, nullptr, 0};
    const CK_RV rv = api->C_UnwrapKey(s, &mech, root, const_cast<std::uint8_t*>(body.data()),
                                      static_cast<CK_ULONG>(body.size()), t.attrs.data(), t.count, &obj.handle);
    if (rv != CKR_OK) obj.handle = CK_INVALID_HANDLE;
    return rv;
  };
  CK_RV rv = unwrap_with(use.wrap);
  // A blob refused under 0x210B may be one made with 0x210A before 0x210B was
  // used. Tokens differ in how they refuse a blob (SoftHSM2: CKR_GENERAL_ERROR),
  // so any refusal but a lost session or device is tried again.
  if (use.legacy != 0 && rv != CKR_OK && !is_disconnect(rv)) rv = unwrap_with(use.legacy);
  if (rv != CKR_OK) return {"C_UnwrapKey", rv};
  out = kms::SecureBytes(body.size());  // the key is shorter than its wrapping
  CK_ATTRIBUTE a = attr_bytes(CKA_VALUE, out.data(), out.size());
  if (rv = api->C_GetAttributeValue(s, obj.handle, &a, 1); rv != CKR_OK) {
    out.clear();
    return {"C_GetAttributeValue(CKA_VALUE)", rv};
  }
  out.truncate(static_cast<std::size_t>(a.ulValueLen));
  return {};
}

Step wrap_gcm(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root, const kms::SecureBytes& key,
              std::vector<std::uint8_t>& out, bool& op_active) {
  out.assign(1 + kGcmIvSize + key.size() + kGcmTagSize, 0);
  out[0] = kFormatGcm;
  std::uint8_t* iv = out.data() + 1;
  if (CK_RV rv = api->C_GenerateRandom(s, iv, kGcmIvSize); rv != CKR_OK) return {"C_GenerateRandom", rv};
  CK_GCM_PARAMS p = gcm_params(iv, kGcmAad);
  CK_MECHANISM mech{CKM_AES_GCM, &p, sizeof p};  // SoftHSM insists on sizeof with ulIvBits
  if (CK_RV rv = api->C_EncryptInit(s, &mech, root); rv != CKR_OK) return {"C_EncryptInit", rv};
  op_active = true;
  CK_ULONG len = static_cast<CK_ULONG>(out.size() - 1 - kGcmIvSize);
  const CK_RV rv = api->C_Encrypt(s, const_cast<std::uint8_t*>(key.data()), static_cast<CK_ULONG>(key.size()),
                                  out.data() + 1 + kGcmIvSize, &len);
  if (rv != CKR_BUFFER_TOO_SMALL) op_active = false;  // any other result ends the operation
  if (rv != CKR_OK) return {"C_Encrypt", rv};
  if (len != key.size() + kGcmTagSize) return {"C_Encrypt", CKR_GENERAL_ERROR};
  return {};
}

Step unwrap_gcm(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root, std::span<const std::uint8_t> body,
                kms::SecureBytes& out, bool& op_active) {
  CK_GCM_PARAMS p = gcm_params(body.data(), kGcmAad);
  CK_MECHANISM mech{CKM_AES_GCM, &p, sizeof p};
  if (CK_RV rv = api->C_DecryptInit(s, &mech, root); rv != CKR_OK) return {"C_DecryptInit", rv};
  op_active = true;
  const auto ct = body.subspan(kGcmIvSize);
  return decrypt(api, s, ct, ct.size(), out, op_active);
}

Step wrap_cbc_hmac(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE aes, CK_OBJECT_HANDLE mac,
                   const kms::SecureBytes& key, std::vector<std::uint8_t>& out, bool& op_active) {
  const std::size_t ct_len = cbc_len(key.size());
  out.assign(1 + kCbcIvSize + ct_len + kHmacSize, 0);
  out[0] = kFormatCbcHmac;
  std::uint8_t* iv = out.data() + 1;
  if (CK_RV rv = api->C_GenerateRandom(s, iv, kCbcIvSize); rv != CKR_OK) return {"C_GenerateRandom", rv};
  CK_MECHANISM enc{CKM_AES_CBC_PAD, iv, kCbcIvSize};
  if (CK_RV rv = api->C_EncryptInit(s, &enc, aes); rv != CKR_OK) return {"C_EncryptInit", rv};
  op_active = true;
  CK_ULONG len = static_cast<CK_ULONG>(ct_len);
  CK_RV rv = api->C_Encrypt(s, const_cast<std::uint8_t*>(key.data()), static_cast<CK_ULONG>(key.size()),
                            out.data() + 1 + kCbcIvSize, &len);
  if (rv != CKR_BUFFER_TOO_SMALL) op_active = false;
  if (rv != CKR_OK) return {"C_Encrypt", rv};
  if (len != ct_len) return {"C_Encrypt", CKR_GENERAL_ERROR};
  // MAC over header || iv || ciphertext.
  CK_MECHANISM sign{CKM_SHA256_HMAC, nullptr, 0};
  if (rv = api->C_SignInit(s, &sign, mac); rv != CKR_OK) return {"C_SignInit", rv};
  op_active = true;
  CK_ULONG mac_len = kHmacSize;
  rv = api->C_Sign(s, out.data(), static_cast<CK_ULONG>(1 + kCbcIvSize + ct_len), out.data() + 1 + kCbcIvSize + ct_len,
                   &mac_len);
  if (rv != CKR_BUFFER_TOO_SMALL) op_active = false;
  if (rv != CKR_OK) return {"C_Sign", rv};
  if (mac_len != kHmacSize) return {"C_Sign", CKR_GENERAL_ERROR};
  return {};
}

Step unwrap_cbc_hmac(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE aes, CK_OBJECT_HANDLE mac,
                     std::span<const std::uint8_t> blob, kms::SecureBytes& out, bool& op_active) {
  const std::size_t signed_len = blob.size() - kHmacSize;
  // 1. The token verifies the MAC; nothing is decrypted unless it holds.
  CK_MECHANISM verify{CKM_SHA256_HMAC, nullptr, 0};
  if (CK_RV rv = api->C_VerifyInit(s, &verify, mac); rv != CKR_OK) return {"C_VerifyInit", rv};
  op_active = true;
  const CK_RV vrv = api->C_Verify(s, const_cast<std::uint8_t*>(blob.data()), static_cast<CK_ULONG>(signed_len),
                                  const_cast<std::uint8_t*>(blob.data() + signed_len), kHmacSize);
  op_active = false;  // C_Verify always ends the operation
  if (vrv != CKR_OK) return {"C_Verify", vrv};
  // 2. Decrypt.
  CK_MECHANISM dec{CKM_AES_CBC_PAD, const_cast<std::uint8_t*>(blob.data() + 1), kCbcIvSize};
  if (CK_RV rv = api->C_DecryptInit(s, &dec, aes); rv != CKR_OK) return {"C_DecryptInit", rv};
  op_active = true;
  const auto ct = blob.subspan(1 + kCbcIvSize, signed_len - 1 - kCbcIvSize);
  return decrypt(api, s, ct, ct.size(), out, op_active);
}

Step wrap_rsa_oaep(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE pub, const kms::SecureBytes& key,
                   std::vector<std::uint8_t>& out, bool& op_active) {
  CK_RSA_PKCS_OAEP_PARAMS p = oaep_params();
  CK_MECHANISM mech{CKM_RSA_PKCS_OAEP, &p, sizeof p};
  if (CK_RV rv = api->C_EncryptInit(s, &mech, pub); rv != CKR_OK) return {"C_EncryptInit", rv};
  op_active = true;
  // Ask the length first and give a buffer of exactly that size: tpm2-pkcs11
  // (1.9.0 up to its master of 2026) encrypts with a public key in software
  // and reports the caller's whole buffer length as the ciphertext length
  // when the buffer is larger than the modulus (docs/hsm.md).
  CK_ULONG want = 0;
  CK_RV rv =
      api->C_Encrypt(s, const_cast<std::uint8_t*>(key.data()), static_cast<CK_ULONG>(key.size()), nullptr, &want);
  if (rv != CKR_OK) {
    op_active = false;
    return {"C_Encrypt", rv};
  }
  if (want != kRsaMinBytes && want != kRsaMaxBytes) return {"C_Encrypt", CKR_GENERAL_ERROR};
  out.assign(1 + want, 0);
  out[0] = kFormatRsaOaep;
  CK_ULONG len = want;
  rv =
      api->C_Encrypt(s, const_cast<std::uint8_t*>(key.data()), static_cast<CK_ULONG>(key.size()), out.data() + 1, &len);
  if (rv != CKR_BUFFER_TOO_SMALL) op_active = false;
  if (rv != CKR_OK) return {"C_Encrypt", rv};
  if (len != want) return {"C_Encrypt", CKR_GENERAL_ERROR};
  return {};
}

Step unwrap_rsa_oaep(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE priv,
                     std::span<const std::uint8_t> body, kms::SecureBytes& out, bool& op_active) {
  CK_RSA_PKCS_OAEP_PARAMS p = oaep_params();
  CK_MECHANISM mech{CKM_RSA_PKCS_OAEP, &p, sizeof p};
  if (CK_RV rv = api->C_DecryptInit(s, &mech, priv); rv != CKR_OK) return {"C_DecryptInit", rv};
  op_active = true;
  return decrypt(api, s, body, kRsaMaxBytes, out, op_active);
}

std::vector<std::uint8_t> rsa_check_value(std::span<const std::uint8_t> modulus,
                                          std::span<const std::uint8_t> exponent) {
  std::vector<std::uint8_t> out;
  BIGNUM* n = BN_bin2bn(modulus.data(), static_cast<int>(modulus.size()), nullptr);
  BIGNUM* e = BN_bin2bn(exponent.data(), static_cast<int>(exponent.size()), nullptr);
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM* params = nullptr;
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr);
  EVP_PKEY* pkey = nullptr;
  if (n != nullptr && e != nullptr && bld != nullptr && ctx != nullptr && !BN_is_zero(n) &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) == 1 &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) == 1) {
    params = OSSL_PARAM_BLD_to_param(bld);
  }
  if (params != nullptr && EVP_PKEY_fromdata_init(ctx) == 1 &&
      EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) == 1) {
    unsigned char* der = nullptr;
    const int der_len = i2d_PUBKEY(pkey, &der);
    std::array<std::uint8_t, 32> digest{};
    unsigned int dn = 0;
    if (der_len > 0 &&
        EVP_Digest(der, static_cast<std::size_t>(der_len), digest.data(), &dn, EVP_sha256(), nullptr) == 1 &&
        dn == digest.size()) {
      out.assign(digest.begin(), digest.begin() + kms::kKeyCheckValueSize);
    }
    OPENSSL_free(der);
  }
  EVP_PKEY_free(pkey);
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  BN_free(n);
  BN_free(e);
  return out;
}

Step fallback_check_value(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE root, Mech mech, KwpUse kwp,
                          std::vector<std::uint8_t>& out) {
  kms::SecureBytes zero(16);
  Step st;
  if (mech == Mech::kwp) {
    st = wrap_kwp(api, s, root, kwp.legacy != 0 ? kwp.legacy : kwp.wrap, zero, out);
    if (st.ok()) out.erase(out.begin());
  } else if (mech == Mech::cbc_hmac) {
    std::uint8_t iv[kCbcIvSize] = {};
    CK_MECHANISM m{CKM_AES_CBC_PAD, iv, sizeof iv};
    out.assign(cbc_len(zero.size()), 0);
    CK_ULONG n = static_cast<CK_ULONG>(out.size());
    st = {"C_EncryptInit", api->C_EncryptInit(s, &m, root)};
    if (st.ok()) st = {"C_Encrypt", api->C_Encrypt(s, zero.data(), static_cast<CK_ULONG>(zero.size()), out.data(), &n)};
  } else {
    const std::uint8_t iv[kGcmIvSize] = {};
    CK_GCM_PARAMS p = gcm_params(iv, kKcvAad);
    CK_MECHANISM m{CKM_AES_GCM, &p, sizeof p};
    out.assign(zero.size() + kGcmTagSize, 0);
    CK_ULONG n = static_cast<CK_ULONG>(out.size());
    st = {"C_EncryptInit", api->C_EncryptInit(s, &m, root)};
    if (st.ok()) st = {"C_Encrypt", api->C_Encrypt(s, zero.data(), static_cast<CK_ULONG>(zero.size()), out.data(), &n)};
  }
  if (st.ok() && out.size() < kms::kKeyCheckValueSize) st = {"key check value", CKR_GENERAL_ERROR};
  return st;
}

}  // namespace rootseal::hsm::detail
