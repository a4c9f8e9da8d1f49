// rootseal::cli — Shamir's secret sharing over GF(2^8) (private to the CLI).
//
// Each byte of the secret is the constant term of its own random polynomial
// of degree threshold-1 over GF(2^8) with the AES reduction polynomial
// x^8 + x^4 + x^3 + x + 1 (0x11B); share i (x = i, 1..255) holds the value of
// every polynomial at x. Any `threshold` shares give the secret by Lagrange
// interpolation at x = 0; fewer give no information about it.
//
// Constant time in every secret value: multiplication is bitwise (shift and
// masked xor, no table), inversion is exponentiation (a^254) by a fixed
// sequence of multiplications; the x coordinates (share indices) are public.
// Coefficients come from the OS random source (RAND_priv_bytes, which
// OpenSSL seeds from getrandom) straight into locked memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::cli::shamir {

inline constexpr unsigned kMaxShares = 255;

// GF(2^8) arithmetic (exposed for tests).
std::uint8_t gf_mul(std::uint8_t a, std::uint8_t b) noexcept;
std::uint8_t gf_inv(std::uint8_t a) noexcept;  // gf_inv(0) == 0

struct Share {
  std::uint8_t x = 0;  // 1..255, public
  kms::SecureBytes y;  // one byte per byte of the secret
};

// Splits `secret` (1..4096 bytes) into `count` shares x = 1..count, any
// `threshold` of which recover it. 2 <= threshold <= count <= 255.
kms::Result<std::vector<Share>> split(const kms::SecureBytes& secret, unsigned threshold, unsigned count);

// As split(), with the caller's coefficients: (threshold - 1) * secret.size()
// bytes, coefficient j (of x^(j+1)) of byte b at [j * secret.size() + b].
// For known-answer tests only.
kms::Result<std::vector<Share>> split_with_coefficients(const kms::SecureBytes& secret, unsigned threshold,
                                                        unsigned count, const kms::SecureBytes& coefficients);

// Interpolates at x = 0. Needs at least two shares with distinct non-zero x
// and equal lengths; it cannot know the threshold: fewer shares than the
// threshold give a wrong value, which the caller must detect (commitments,
// key check value).
kms::Result<kms::SecureBytes> combine(std::span<const Share> shares);

}  // namespace rootseal::cli::shamir
