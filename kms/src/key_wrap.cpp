// Software key wrapping (RFC 5649 KWP), HKDF-SHA256 and AES key check values.
//
// None of these is on a per-request path (they run at unseal, rotation and
// ceremony time), so contexts are made per call and freed at once; only the
// algorithm objects are fetched once.
#include "rootseal/kms/key_wrap.hpp"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <array>
#include <climits>
#include <cstring>
#include <memory>
#include <string>

#include "ossl.hpp"

namespace rootseal::kms {
namespace {

using detail::CtxPtr;
using detail::ossl;

// Largest key we wrap: an RSA-4096 private key in DER is ~2.4 KiB; RootOfTrust
// wraps at most 64 bytes. Bounds every length below.
constexpr std::size_t kMaxWrapInput = 8192;
constexpr std::size_t kKwpBlock = 8;  // the semiblock of RFC 3394/5649
constexpr std::size_t kSha256Size = 32;
constexpr std::size_t kMaxHkdfOutput = 255 * kSha256Size;  // RFC 5869 §2.3
// Salt, info (Transit's derivation `context`) and key material, each: far
// above real use; 32 KiB is also OpenSSL 3.0's own cap on info.
constexpr std::size_t kMaxHkdfInput = std::size_t{32} * 1024;

struct KdfCtxFree {
  void operator()(EVP_KDF_CTX* ctx) const noexcept { EVP_KDF_CTX_free(ctx); }
};

// A cipher context set up for one operation with `key`.
Result<CtxPtr> keyed_ctx(const EVP_CIPHER* cipher, const SecureBytes& key, int encrypt) {
  if (cipher == nullptr) return fail(Errc::crypto_failure, "OpenSSL provider lacks the AES cipher");
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return fail(Errc::crypto_failure, "OpenSSL EVP_CIPHER_CTX_new failed");
  // Wrap modes are refused by EVP unless the caller opts in (they do not
  // stream, so EVP's generic buffering does not apply to them).
  EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  ROOTSEAL_TRY(
      ossl(EVP_CipherInit_ex2(ctx.get(), cipher, key.data(), nullptr, encrypt, nullptr), "EVP_CipherInit_ex2"));
  return ctx;
}

// The fetched ciphers, once per process (never freed; see aead.cpp).
const EVP_CIPHER* kwp_cipher(std::size_t kek_size) noexcept {
  static EVP_CIPHER* const aes128 = EVP_CIPHER_fetch(nullptr, "AES-128-WRAP-PAD", nullptr);
  static EVP_CIPHER* const aes192 = EVP_CIPHER_fetch(nullptr, "AES-192-WRAP-PAD", nullptr);
  static EVP_CIPHER* const aes256 = EVP_CIPHER_fetch(nullptr, "AES-256-WRAP-PAD", nullptr);
  return kek_size == 16 ? aes128 : kek_size == 24 ? aes192 : aes256;
}

const EVP_CIPHER* ecb_cipher(std::size_t key_bytes) noexcept {
  static EVP_CIPHER* const aes128 = EVP_CIPHER_fetch(nullptr, "AES-128-ECB", nullptr);
  static EVP_CIPHER* const aes192 = EVP_CIPHER_fetch(nullptr, "AES-192-ECB", nullptr);
  static EVP_CIPHER* const aes256 = EVP_CIPHER_fetch(nullptr, "AES-256-ECB", nullptr);
  return key_bytes == 16 ? aes128 : key_bytes == 24 ? aes192 : aes256;
}

// AES-192 is accepted for interoperability (RFC 5649's own examples use it);
// rootseal's roots are AES-256.
Result<void> check_kek(const SecureBytes& kek) {
  if (kek.size() != 16 && kek.size() != 24 && kek.size() != 32) {
    return fail(Errc::invalid_argument, "key-wrapping key must be 16, 24 or 32 bytes");
  }
  return {};
}

// One-shot EVP update + final on a wrap context (wrap modes do not stream);
// returns the bytes written.
Result<std::size_t> wrap_once(EVP_CIPHER_CTX* ctx, std::uint8_t* out, std::span<const std::uint8_t> in) {
  int outl = 0;
  ROOTSEAL_TRY(ossl(EVP_CipherUpdate(ctx, out, &outl, in.data(), static_cast<int>(in.size())), "key wrap"));
  int final_len = 0;
  ROOTSEAL_TRY(ossl(EVP_CipherFinal_ex(ctx, out + outl, &final_len), "key wrap final"));
  return static_cast<std::size_t>(outl) + static_cast<std::size_t>(final_len);
}

}  // namespace

Result<std::vector<std::uint8_t>> aes_kwp_wrap(const SecureBytes& kek, std::span<const std::uint8_t> key) {
  ROOTSEAL_TRY(check_kek(kek));
  if (key.empty() || key.size() > kMaxWrapInput) {
    return fail(Errc::invalid_argument, "key to wrap must be 1..8192 bytes");
  }
  CtxPtr ctx;
  ROOTSEAL_TRY_ASSIGN(ctx, keyed_ctx(kwp_cipher(kek.size()), kek, 1));
  // RFC 5649: the input padded to a multiple of 8, plus the 8-byte integrity block.
  std::vector<std::uint8_t> out((key.size() + kKwpBlock - 1) / kKwpBlock * kKwpBlock + kKwpBlock);
  std::size_t written = 0;
  ROOTSEAL_TRY_ASSIGN(written, wrap_once(ctx.get(), out.data(), key));
  if (written != out.size()) return fail(Errc::internal, "key wrap produced an unexpected length");
  return out;
}

Result<SecureBytes> aes_kwp_unwrap(const SecureBytes& kek, std::span<const std::uint8_t> wrapped) {
  ROOTSEAL_TRY(check_kek(kek));
  // Anything not a whole number of semiblocks (at least two) cannot come from
  // aes_kwp_wrap; reported like an integrity failure, as the header says.
  if (wrapped.size() < 2 * kKwpBlock || wrapped.size() % kKwpBlock != 0 ||
      wrapped.size() > kMaxWrapInput + 2 * kKwpBlock) {
    return fail(Errc::decryption_failed, "wrapped key has an impossible length");
  }
  CtxPtr ctx;
  ROOTSEAL_TRY_ASSIGN(ctx, keyed_ctx(kwp_cipher(kek.size()), kek, 0));
  // The unwrapped key goes straight into locked memory, then loses its padding.
  // Sized to the whole input, not input - 8: on an integrity failure OpenSSL
  // (CRYPTO_128_unwrap_pad) wipes that many bytes of the output buffer.
  SecureBytes out(wrapped.size());
  // OpenSSL reports a failed integrity check (the expected case) and an
  // internal failure alike; both mean the key is not usable.
  auto written = wrap_once(ctx.get(), out.data(), wrapped);
  if (!written) {
    return fail(Errc::decryption_failed, "wrapped key failed its integrity check (wrong key-wrapping key or damaged)");
  }
  if (*written == 0 || *written > wrapped.size() - kKwpBlock) {
    return fail(Errc::internal, "key unwrap produced an unexpected length");
  }
  out.truncate(*written);
  return out;
}

Result<SecureBytes> hkdf_sha256(const SecureBytes& ikm, std::span<const std::uint8_t> salt,
                                std::span<const std::uint8_t> info, std::size_t length) {
  if (length == 0 || length > kMaxHkdfOutput) {
    return fail(Errc::invalid_argument, "HKDF-SHA256 output must be 1..8160 bytes");
  }
  if (ikm.size() > kMaxHkdfInput || salt.size() > kMaxHkdfInput || info.size() > kMaxHkdfInput) {
    return fail(Errc::invalid_argument, "HKDF-SHA256 input too long");
  }
  static EVP_KDF* const hkdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (hkdf == nullptr) {
    ERR_clear_error();
    return fail(Errc::crypto_failure, "OpenSSL provider lacks HKDF");
  }
  std::unique_ptr<EVP_KDF_CTX, KdfCtxFree> ctx(EVP_KDF_CTX_new(hkdf));
  if (!ctx) return fail(Errc::crypto_failure, "OpenSSL EVP_KDF_CTX_new failed");

  // OSSL_PARAM wants non-const pointers; OpenSSL copies (and later cleanses)
  // what it is given, it never writes through them.
  char digest[] = "SHA256";
  std::uint8_t empty = 0;
  auto octets = [&](const std::uint8_t* p, std::size_t n) { return const_cast<std::uint8_t*>(n == 0 ? &empty : p); };
  std::array<OSSL_PARAM, 5> params{};
  std::size_t i = 0;
  params[i++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  params[i++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, octets(ikm.data(), ikm.size()), ikm.size());
  // An absent salt is HashLen zero bytes (RFC 5869 §2.2), the same as OpenSSL's default.
  if (!salt.empty()) {
    params[i++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, octets(salt.data(), salt.size()), salt.size());
  }
  params[i++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, octets(info.data(), info.size()), info.size());
  params[i] = OSSL_PARAM_construct_end();

  SecureBytes out(length);
  ROOTSEAL_TRY(ossl(EVP_KDF_derive(ctx.get(), out.data(), out.size(), params.data()), "HKDF derive"));
  return out;
}

Result<std::vector<std::uint8_t>> aes_key_check_value(const SecureBytes& key) {
  if (key.size() != 16 && key.size() != 24 && key.size() != 32) {
    return fail(Errc::invalid_argument, "AES key must be 16, 24 or 32 bytes");
  }
  CtxPtr ctx;
  ROOTSEAL_TRY_ASSIGN(ctx, keyed_ctx(ecb_cipher(key.size()), key, 1));
  ROOTSEAL_TRY(ossl(EVP_CIPHER_CTX_set_padding(ctx.get(), 0), "EVP_CIPHER_CTX_set_padding"));
  const std::array<std::uint8_t, 16> zero{};
  std::array<std::uint8_t, 16> block{};
  int outl = 0;
  auto encrypted =
      ossl(EVP_CipherUpdate(ctx.get(), block.data(), &outl, zero.data(), static_cast<int>(zero.size())), "AES-ECB");
  std::vector<std::uint8_t> kcv;
  if (encrypted && outl == static_cast<int>(block.size())) {
    kcv.assign(block.begin(), block.begin() + kKeyCheckValueSize);
  }
  // Only 24 bits of E_K(0) are published; the rest would be a stronger oracle on the key.
  secure_zero(block.data(), block.size());
  if (!encrypted) return std::unexpected(std::move(encrypted.error()));
  if (kcv.empty()) return fail(Errc::internal, "AES-ECB returned a short block");
  return kcv;
}

}  // namespace rootseal::kms
