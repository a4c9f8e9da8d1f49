#include "custodian.hpp"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <cstring>
#include <string>

#include "rootseal/kms/aead.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/key_wrap.hpp"
#include "util.hpp"

namespace rootseal::cli {

using kms::Errc;
using kms::fail;

namespace {

constexpr unsigned kMinRsaBits = 2048;

std::string ossl_reason() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* c) const noexcept { EVP_PKEY_CTX_free(c); }
};
using PkeyCtx = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;

std::shared_ptr<EVP_PKEY> own(EVP_PKEY* p) { return std::shared_ptr<EVP_PKEY>(p, EVP_PKEY_free); }

kms::Result<std::vector<std::uint8_t>> spki_der(EVP_PKEY* p) {
  unsigned char* der = nullptr;
  const int n = i2d_PUBKEY(p, &der);
  if (n <= 0 || der == nullptr) return fail(Errc::crypto_failure, "cannot encode a public key: " + ossl_reason());
  std::vector<std::uint8_t> out(der, der + n);
  OPENSSL_free(der);
  return out;
}

kms::Result<CustodianKey> describe(std::shared_ptr<EVP_PKEY> p, const std::filesystem::path& where, bool priv) {
  CustodianKey k;
  k.has_private = priv;
  const std::string src = where.string();
  switch (EVP_PKEY_get_base_id(p.get())) {
    case EVP_PKEY_X25519:
      k.type = CustodianKeyType::x25519;
      k.bits = 253;
      break;
    case EVP_PKEY_EC: {
      char group[64] = {};
      std::size_t len = 0;
      if (EVP_PKEY_get_utf8_string_param(p.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) != 1 ||
          (std::strcmp(group, "prime256v1") != 0 && std::strcmp(group, "P-256") != 0)) {
        return fail(Errc::invalid_argument,
                    src + ": EC custodian keys must be on P-256 (prime256v1), not '" + std::string(group) + "'");
      }
      k.type = CustodianKeyType::p256;
      k.bits = 256;
      break;
    }
    case EVP_PKEY_RSA: {
      const int bits = EVP_PKEY_get_bits(p.get());
      if (bits < static_cast<int>(kMinRsaBits)) {
        return fail(Errc::invalid_argument,
                    src + ": RSA custodian keys must have at least 2048 bits (has " + std::to_string(bits) + ")");
      }
      k.type = CustodianKeyType::rsa;
      k.bits = static_cast<unsigned>(bits);
      break;
    }
    default:
      return fail(Errc::invalid_argument, src + ": unsupported custodian key type (use X25519, P-256 or RSA)");
  }
  ROOTSEAL_TRY_ASSIGN(k.spki, spki_der(p.get()));
  k.fingerprint = kms::hex_encode(sha256(k.spki));
  k.pkey = std::move(p);
  return k;
}

kms::Result<std::shared_ptr<EVP_PKEY>> read_pem(const std::filesystem::path& pem, bool priv) {
  BIO* bio = BIO_new_file(pem.c_str(), "r");
  if (bio == nullptr) {
    ERR_clear_error();
    return fail(Errc::invalid_argument, pem.string() + ": cannot open");
  }
  EVP_PKEY* p = priv ? PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr)
                     : PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (p == nullptr) {
    return fail(Errc::invalid_argument,
                pem.string() + (priv ? ": not a PEM private key (" : ": not a PEM public key (") + ossl_reason() + ")");
  }
  return own(p);
}

// Domain-separated HKDF salt: SHA-256(ephemeral SPKI || recipient SPKI).
std::vector<std::uint8_t> kdf_salt(std::span<const std::uint8_t> eph, std::span<const std::uint8_t> recipient) {
  std::vector<std::uint8_t> both(eph.begin(), eph.end());
  both.insert(both.end(), recipient.begin(), recipient.end());
  return sha256(both);
}

kms::Result<kms::SecureBytes> ecdh(EVP_PKEY* priv, EVP_PKEY* peer) {
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, priv, nullptr));
  std::size_t len = 0;
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 || EVP_PKEY_derive_set_peer(ctx.get(), peer) != 1 ||
      EVP_PKEY_derive(ctx.get(), nullptr, &len) != 1 || len == 0 || len > 128) {
    return fail(Errc::crypto_failure, "ECDH failed: " + ossl_reason());
  }
  kms::SecureBytes shared(len);
  if (EVP_PKEY_derive(ctx.get(), shared.data(), &len) != 1) {
    return fail(Errc::crypto_failure, "ECDH failed: " + ossl_reason());
  }
  shared.truncate(len);
  return shared;
}

kms::Result<std::unique_ptr<kms::Aead>> share_aead(const kms::SecureBytes& shared, std::span<const std::uint8_t> eph,
                                                   std::span<const std::uint8_t> recipient,
                                                   std::span<const std::uint8_t> binding) {
  const auto salt = kdf_salt(eph, recipient);
  kms::SecureBytes key;
  ROOTSEAL_TRY_ASSIGN(key, kms::hkdf_sha256(shared, salt, binding, 32));
  return kms::make_aead(kms::KeyType::aes256_gcm96, key);
}

kms::Result<PkeyCtx> oaep_ctx(EVP_PKEY* p, bool encrypt, std::span<const std::uint8_t> binding) {
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, p, nullptr));
  if (!ctx) return fail(Errc::crypto_failure, "RSA context: " + ossl_reason());
  if ((encrypt ? EVP_PKEY_encrypt_init(ctx.get()) : EVP_PKEY_decrypt_init(ctx.get())) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), EVP_sha256()) != 1 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), EVP_sha256()) != 1) {
    return fail(Errc::crypto_failure, "RSA-OAEP setup: " + ossl_reason());
  }
  // The OAEP label must be heap memory that the context takes over.
  auto* label = static_cast<unsigned char*>(OPENSSL_memdup(binding.data(), binding.size()));
  if (label == nullptr || EVP_PKEY_CTX_set0_rsa_oaep_label(ctx.get(), label, static_cast<int>(binding.size())) != 1) {
    OPENSSL_free(label);
    return fail(Errc::crypto_failure, "RSA-OAEP label: " + ossl_reason());
  }
  return ctx;
}

}  // namespace

std::string_view to_string(CustodianKeyType type) noexcept {
  switch (type) {
    case CustodianKeyType::x25519:
      return "x25519";
    case CustodianKeyType::p256:
      return "p256";
    case CustodianKeyType::rsa:
      return "rsa";
  }
  return "unknown";
}

std::string_view scheme_name(CustodianKeyType type) noexcept {
  switch (type) {
    case CustodianKeyType::x25519:
      return "x25519-hkdf-sha256-aes256gcm";
    case CustodianKeyType::p256:
      return "p256-hkdf-sha256-aes256gcm";
    case CustodianKeyType::rsa:
      return "rsa-oaep-sha256";
  }
  return "unknown";
}

kms::Result<CustodianKey> load_custodian_public_key(const std::filesystem::path& pem) {
  std::shared_ptr<EVP_PKEY> p;
  ROOTSEAL_TRY_ASSIGN(p, read_pem(pem, false));
  return describe(std::move(p), pem, false);
}

kms::Result<CustodianKey> load_custodian_private_key(const std::filesystem::path& pem) {
  std::shared_ptr<EVP_PKEY> p;
  ROOTSEAL_TRY_ASSIGN(p, read_pem(pem, true));
  return describe(std::move(p), pem, true);
}

kms::Result<SealedShare> seal_share(const CustodianKey& to, std::span<const std::uint8_t> binding,
                                    const kms::SecureBytes& share) {
  SealedShare out;
  out.scheme = std::string(scheme_name(to.type));
  if (to.type == CustodianKeyType::rsa) {
    PkeyCtx ctx;
    ROOTSEAL_TRY_ASSIGN(ctx, oaep_ctx(to.pkey.get(), true, binding));
    std::size_t len = 0;
    if (EVP_PKEY_encrypt(ctx.get(), nullptr, &len, share.data(), share.size()) != 1) {
      return fail(Errc::crypto_failure, "RSA-OAEP: " + ossl_reason());
    }
    out.ciphertext.resize(len);
    if (EVP_PKEY_encrypt(ctx.get(), out.ciphertext.data(), &len, share.data(), share.size()) != 1) {
      return fail(Errc::crypto_failure, "RSA-OAEP: " + ossl_reason());
    }
    out.ciphertext.resize(len);
    return out;
  }
  EVP_PKEY* eph_raw = to.type == CustodianKeyType::x25519 ? EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519")
                                                          : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (eph_raw == nullptr) return fail(Errc::crypto_failure, "ephemeral key: " + ossl_reason());
  auto eph = own(eph_raw);
  ROOTSEAL_TRY_ASSIGN(out.ephemeral, spki_der(eph.get()));
  kms::SecureBytes shared;
  ROOTSEAL_TRY_ASSIGN(shared, ecdh(eph.get(), to.pkey.get()));
  std::unique_ptr<kms::Aead> aead;
  ROOTSEAL_TRY_ASSIGN(aead, share_aead(shared, out.ephemeral, to.spki, binding));
  ROOTSEAL_TRY_ASSIGN(out.ciphertext, aead->seal(share.span(), binding));
  return out;
}

kms::Result<kms::SecureBytes> open_share(const CustodianKey& key, const SealedShare& sealed,
                                         std::span<const std::uint8_t> binding) {
  if (!key.has_private) return fail(Errc::invalid_argument, "a private key is needed to decrypt a share");
  if (sealed.scheme != scheme_name(key.type)) {
    return fail(Errc::invalid_argument,
                "the share is encrypted with " + sealed.scheme + ", the key is " + std::string(to_string(key.type)));
  }
  const std::string not_auth =
      "the share does not decrypt: its file was altered, or it was not encrypted to this key for this ceremony";
  if (key.type == CustodianKeyType::rsa) {
    PkeyCtx ctx;
    ROOTSEAL_TRY_ASSIGN(ctx, oaep_ctx(key.pkey.get(), false, binding));
    std::size_t len = static_cast<std::size_t>(EVP_PKEY_get_size(key.pkey.get()));
    kms::SecureBytes out(len);
    if (EVP_PKEY_decrypt(ctx.get(), out.data(), &len, sealed.ciphertext.data(), sealed.ciphertext.size()) != 1) {
      ERR_clear_error();
      return fail(Errc::decryption_failed, not_auth);
    }
    out.truncate(len);
    return out;
  }
  const unsigned char* p = sealed.ephemeral.data();
  EVP_PKEY* eph_raw = d2i_PUBKEY(nullptr, &p, static_cast<long>(sealed.ephemeral.size()));
  if (eph_raw == nullptr) {
    ERR_clear_error();
    return fail(Errc::decryption_failed, "the share's ephemeral key is not a valid public key");
  }
  auto eph = own(eph_raw);
  if (EVP_PKEY_get_base_id(eph.get()) != EVP_PKEY_get_base_id(key.pkey.get())) {
    return fail(Errc::decryption_failed, "the share's ephemeral key is of another type than the custodian key");
  }
  kms::SecureBytes shared;
  {
    auto r = ecdh(key.pkey.get(), eph.get());
    if (!r) return fail(Errc::decryption_failed, not_auth + " (" + r.error().message + ")");
    shared = std::move(*r);
  }
  std::unique_ptr<kms::Aead> aead;
  ROOTSEAL_TRY_ASSIGN(aead, share_aead(shared, sealed.ephemeral, key.spki, binding));
  auto plain = aead->open(sealed.ciphertext, binding);
  if (!plain) return fail(Errc::decryption_failed, not_auth);
  return std::move(*plain);
}

}  // namespace rootseal::cli
