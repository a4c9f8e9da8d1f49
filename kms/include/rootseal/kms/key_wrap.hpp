// rootseal::kms — software key derivation and key wrapping primitives.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::kms {

// AES key wrap with padding (RFC 5649, NIST SP 800-38F KWP); kek is 16, 24 or
// 32 bytes, the key to wrap 1..8192 bytes. Used by software roots of trust
// (TPM-sealed root key); an HSM root does the same inside the HSM.
Result<std::vector<std::uint8_t>> aes_kwp_wrap(const SecureBytes& kek, std::span<const std::uint8_t> key);
// A wrapped input of the wrong length or failing the integrity check is
// decryption_failed.
Result<SecureBytes> aes_kwp_unwrap(const SecureBytes& kek, std::span<const std::uint8_t> wrapped);

// HKDF-SHA256 (RFC 5869): extract with `salt` (empty = zeros), expand with `info`.
Result<SecureBytes> hkdf_sha256(const SecureBytes& ikm, std::span<const std::uint8_t> salt,
                                std::span<const std::uint8_t> info, std::size_t length);

// Key check value of an AES key as PKCS#11 defines CKA_CHECK_VALUE: the first
// 3 bytes (24 bits, within ANSI X9.24-1's 40-bit limit) of AES-ECB(key, 0^128).
// An HSM computes the same value internally for a key it will not reveal.
inline constexpr std::size_t kKeyCheckValueSize = 3;
Result<std::vector<std::uint8_t>> aes_key_check_value(const SecureBytes& key);

}  // namespace rootseal::kms
