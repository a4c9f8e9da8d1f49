// rootseal::cli — custodian keys and the encryption of one share to one
// custodian (private to the CLI).
//
// Custodian keys are PEM files: a public key (SubjectPublicKeyInfo) at the
// ceremony, the private key (PKCS#8 or traditional, possibly passphrase
// protected: OpenSSL then prompts on the terminal) on the custodian's machine.
// Supported: X25519, EC P-256, RSA >= 2048 bits.
//
// Schemes (a fresh ephemeral key or OAEP randomness per share):
//   x25519-hkdf-sha256-aes256gcm, p256-hkdf-sha256-aes256gcm:
//     shared = ECDH(ephemeral, custodian)
//     key    = HKDF-SHA256(shared, salt = SHA-256(eph SPKI || custodian SPKI),
//                          info = binding, 32)
//     sealed = AES-256-GCM(key, random nonce, share, aad = binding)
//   rsa-oaep-sha256:
//     sealed = RSA-OAEP(SHA-256, MGF1-SHA-256, label = binding)(share)
// `binding` names ceremony, share index, threshold and custodian fingerprint
// (share_format.hpp), so a ciphertext moved to another ceremony, index or
// custodian does not decrypt.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"

typedef struct evp_pkey_st EVP_PKEY;

namespace rootseal::cli {

enum class CustodianKeyType { x25519, p256, rsa };
std::string_view to_string(CustodianKeyType type) noexcept;
// The scheme name recorded in share files.
std::string_view scheme_name(CustodianKeyType type) noexcept;

struct CustodianKey {
  CustodianKeyType type = CustodianKeyType::x25519;
  unsigned bits = 0;
  std::string fingerprint;         // lower-case hex SHA-256 of the DER SubjectPublicKeyInfo
  std::vector<std::uint8_t> spki;  // DER SubjectPublicKeyInfo
  std::shared_ptr<EVP_PKEY> pkey;
  bool has_private = false;
};

// A public key PEM (SubjectPublicKeyInfo).
kms::Result<CustodianKey> load_custodian_public_key(const std::filesystem::path& pem);
// A private key PEM (its fingerprint is that of its public half).
kms::Result<CustodianKey> load_custodian_private_key(const std::filesystem::path& pem);

struct SealedShare {
  std::string scheme;
  std::vector<std::uint8_t> ephemeral;   // DER SPKI of the ephemeral key (ECDH schemes), else empty
  std::vector<std::uint8_t> ciphertext;  // nonce || ct || tag (GCM) or the OAEP block
};

kms::Result<SealedShare> seal_share(const CustodianKey& to, std::span<const std::uint8_t> binding,
                                    const kms::SecureBytes& share);
// decryption_failed when the ciphertext, the binding or the key does not match.
kms::Result<kms::SecureBytes> open_share(const CustodianKey& key, const SealedShare& sealed,
                                         std::span<const std::uint8_t> binding);

}  // namespace rootseal::cli
