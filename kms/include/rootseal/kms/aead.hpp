// rootseal::kms — authenticated encryption with associated data.
//
// Wire form of a sealed message: nonce[12] || ciphertext || tag[16]
// (the body inside a "vault:v<N>:" ciphertext string; see ciphertext.hpp).
// An Aead is immutable after creation and safe to use from many threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::kms {

// Key types of the keyring, named as Vault's Transit engine names them.
enum class KeyType {
  aes128_gcm96,
  aes256_gcm96,
  chacha20_poly1305,
};

std::string_view to_string(KeyType type) noexcept;
Result<KeyType> parse_key_type(std::string_view name);
std::size_t key_size(KeyType type) noexcept;  // bytes of key material

class Aead {
 public:
  static constexpr std::size_t kNonceSize = 12;
  static constexpr std::size_t kTagSize = 16;
  static constexpr std::size_t kOverhead = kNonceSize + kTagSize;

  virtual ~Aead() = default;

  // Encrypts under a fresh random nonce. Returns nonce || ciphertext || tag.
  virtual Result<std::vector<std::uint8_t>> seal(std::span<const std::uint8_t> plaintext,
                                                 std::span<const std::uint8_t> aad) const = 0;

  // Encrypts under the caller's nonce (exactly kNonceSize bytes). For
  // convergent encryption and known-answer tests only: a repeated nonce under
  // one key destroys confidentiality and authenticity.
  virtual Result<std::vector<std::uint8_t>> seal_with_nonce(std::span<const std::uint8_t> nonce,
                                                            std::span<const std::uint8_t> plaintext,
                                                            std::span<const std::uint8_t> aad) const = 0;

  // Decrypts nonce || ciphertext || tag. A short input is malformed_ciphertext;
  // a tag mismatch is decryption_failed.
  virtual Result<SecureBytes> open(std::span<const std::uint8_t> sealed, std::span<const std::uint8_t> aad) const = 0;
};

// key.size() must equal key_size(type).
Result<std::unique_ptr<Aead>> make_aead(KeyType type, const SecureBytes& key);

}  // namespace rootseal::kms
