// Shamir over GF(2^8); see shamir.hpp. No branch and no memory access
// depends on a secret byte.
#include "shamir.hpp"

#include <openssl/rand.h>

#include <string>

namespace rootseal::cli::shamir {

using kms::Errc;
using kms::fail;

std::uint8_t gf_mul(std::uint8_t a, std::uint8_t b) noexcept {
  // Russian-peasant multiplication, 8 rounds, masks instead of branches.
  unsigned p = 0;
  unsigned aa = a;
  unsigned bb = b;
  for (int i = 0; i < 8; ++i) {
    p ^= aa & (0U - (bb & 1U));  // add a if the low bit of b is set
    const unsigned carry = 0U - ((aa >> 7) & 1U);
    aa = ((aa << 1) ^ (0x11BU & carry)) & 0xFFU;  // a *= x, reduced
    bb >>= 1;
  }
  return static_cast<std::uint8_t>(p);
}

std::uint8_t gf_inv(std::uint8_t a) noexcept {
  // a^254 = a^-1 (a^255 = 1 for a != 0); 0 maps to 0. Fixed chain:
  // 254 = 0b11111110: square-and-multiply over all bits.
  std::uint8_t result = 1;
  std::uint8_t base = a;
  for (int bit = 0; bit < 8; ++bit) {
    const std::uint8_t mask = static_cast<std::uint8_t>(0U - ((254U >> bit) & 1U));  // public exponent
    const std::uint8_t m = gf_mul(result, base);
    result = static_cast<std::uint8_t>((m & mask) | (result & static_cast<std::uint8_t>(~mask)));
    base = gf_mul(base, base);
  }
  return result;
}

namespace {

kms::Result<void> check_params(std::size_t secret_size, unsigned threshold, unsigned count) {
  if (secret_size == 0 || secret_size > 4096) return fail(Errc::invalid_argument, "secret must be 1..4096 bytes");
  if (threshold < 2) return fail(Errc::invalid_argument, "threshold must be at least 2");
  if (count > kMaxShares) return fail(Errc::invalid_argument, "at most 255 shares");
  if (threshold > count) {
    return fail(Errc::invalid_argument, "threshold (" + std::to_string(threshold) + ") exceeds the number of shares (" +
                                            std::to_string(count) + ")");
  }
  return {};
}

std::vector<Share> evaluate(const kms::SecureBytes& secret, unsigned threshold, unsigned count,
                            const kms::SecureBytes& coefficients) {
  const std::size_t n = secret.size();
  std::vector<Share> shares;
  shares.reserve(count);
  for (unsigned i = 1; i <= count; ++i) {
    Share s;
    s.x = static_cast<std::uint8_t>(i);
    s.y = kms::SecureBytes(n);
    for (std::size_t b = 0; b < n; ++b) {
      // Horner: ((c_{t-1} x + c_{t-2}) x + ... + c_1) x + secret
      std::uint8_t acc = 0;
      for (unsigned j = threshold - 1; j >= 1; --j) {
        acc = static_cast<std::uint8_t>(gf_mul(acc, s.x) ^ coefficients.data()[(j - 1) * n + b]);
      }
      s.y.data()[b] = static_cast<std::uint8_t>(gf_mul(acc, s.x) ^ secret.data()[b]);
    }
    shares.push_back(std::move(s));
  }
  return shares;
}

}  // namespace

kms::Result<std::vector<Share>> split_with_coefficients(const kms::SecureBytes& secret, unsigned threshold,
                                                        unsigned count, const kms::SecureBytes& coefficients) {
  ROOTSEAL_TRY(check_params(secret.size(), threshold, count));
  if (coefficients.size() != (threshold - 1) * secret.size()) {
    return fail(Errc::invalid_argument, "need (threshold - 1) * secret size coefficient bytes");
  }
  return evaluate(secret, threshold, count, coefficients);
}

kms::Result<std::vector<Share>> split(const kms::SecureBytes& secret, unsigned threshold, unsigned count) {
  ROOTSEAL_TRY(check_params(secret.size(), threshold, count));
  kms::SecureBytes coefficients((threshold - 1) * secret.size());
  if (RAND_priv_bytes(coefficients.data(), static_cast<int>(coefficients.size())) != 1) {
    return fail(Errc::crypto_failure, "RAND_priv_bytes failed");
  }
  return evaluate(secret, threshold, count, coefficients);
}

kms::Result<kms::SecureBytes> combine(std::span<const Share> shares) {
  if (shares.size() < 2) return fail(Errc::invalid_argument, "at least two shares are needed");
  if (shares.size() > kMaxShares) return fail(Errc::invalid_argument, "at most 255 shares");
  const std::size_t n = shares.front().y.size();
  for (std::size_t i = 0; i < shares.size(); ++i) {
    if (shares[i].x == 0) return fail(Errc::invalid_argument, "share index 0 is not valid");
    if (shares[i].y.size() != n || n == 0) return fail(Errc::invalid_argument, "shares differ in length");
    for (std::size_t j = 0; j < i; ++j) {
      if (shares[i].x == shares[j].x) {
        return fail(Errc::invalid_argument, "share " + std::to_string(shares[i].x) + " is given twice");
      }
    }
  }
  // Lagrange basis at 0 from the public x: l_i = prod_{j != i} x_j / (x_j - x_i)
  // (subtraction is xor in characteristic 2).
  std::vector<std::uint8_t> basis(shares.size());
  for (std::size_t i = 0; i < shares.size(); ++i) {
    std::uint8_t num = 1;
    std::uint8_t den = 1;
    for (std::size_t j = 0; j < shares.size(); ++j) {
      if (j == i) continue;
      num = gf_mul(num, shares[j].x);
      den = gf_mul(den, static_cast<std::uint8_t>(shares[j].x ^ shares[i].x));
    }
    basis[i] = gf_mul(num, gf_inv(den));
  }
  kms::SecureBytes secret(n);
  for (std::size_t b = 0; b < n; ++b) {
    std::uint8_t acc = 0;
    for (std::size_t i = 0; i < shares.size(); ++i) {
      acc = static_cast<std::uint8_t>(acc ^ gf_mul(basis[i], shares[i].y.data()[b]));
    }
    secret.data()[b] = acc;
  }
  return secret;
}

}  // namespace rootseal::cli::shamir
