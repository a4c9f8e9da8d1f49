// Strict standard base64 (RFC 4648 §4, padded) and hex.
//
// The same code decodes public values (ciphertext bodies) and secrets
// (plaintext fields), so character mapping is done with arithmetic masks
// instead of table lookups or branches on the character: a lookup table
// indexed by a secret byte leaks it through the cache (BoringSSL and libsodium
// do the same for PEM keys). Malformed input is rejected; which rule it broke
// is reported, never the offending characters.
#include "rootseal/kms/encoding.hpp"

#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>

namespace rootseal::kms {
namespace {

using u32 = std::uint32_t;

// --- constant-time helpers: all operands are < 2^16, results are all-ones or zero masks.
constexpr u32 ct_lt(u32 a, u32 b) noexcept { return 0U - ((a - b) >> 31); }
constexpr u32 ct_eq(u32 a, u32 b) noexcept { return 0U - (((a ^ b) - 1U) >> 31); }
constexpr u32 ct_in(u32 x, u32 lo, u32 hi) noexcept { return ~ct_lt(x, lo) & ~ct_lt(hi, x); }

// 6-bit value -> character of the standard alphabet.
constexpr char b64_char(u32 x) noexcept {
  u32 c = 0;
  c |= ct_lt(x, 26) & (x + 'A');
  c |= ct_in(x, 26, 51) & (x - 26 + 'a');
  c |= ct_in(x, 52, 61) & (x - 52 + '0');
  c |= ct_eq(x, 62) & u32{'+'};
  c |= ct_eq(x, 63) & u32{'/'};
  return static_cast<char>(c);
}

// Character -> 6-bit value; `bad` collects a mask for anything outside the
// standard alphabet (so '-', '_', '=', whitespace and NUL all count as bad).
constexpr u32 b64_value(char ch, u32& bad) noexcept {
  const u32 c = static_cast<unsigned char>(ch);
  u32 v = 0;
  u32 ok = 0;
  u32 m = ct_in(c, 'A', 'Z');
  v |= m & (c - 'A');
  ok |= m;
  m = ct_in(c, 'a', 'z');
  v |= m & (c - 'a' + 26);
  ok |= m;
  m = ct_in(c, '0', '9');
  v |= m & (c - '0' + 52);
  ok |= m;
  m = ct_eq(c, '+');
  v |= m & 62U;
  ok |= m;
  m = ct_eq(c, '/');
  v |= m & 63U;
  ok |= m;
  bad |= ~ok;
  return v;
}

static_assert(b64_char(0) == 'A' && b64_char(25) == 'Z' && b64_char(26) == 'a' && b64_char(51) == 'z' &&
              b64_char(52) == '0' && b64_char(61) == '9' && b64_char(62) == '+' && b64_char(63) == '/');

constexpr char hex_char(u32 nibble) noexcept {
  return static_cast<char>(nibble + '0' + (ct_lt(9, nibble) & u32{'a' - '0' - 10}));
}

constexpr u32 hex_value(char ch, u32& bad) noexcept {
  const u32 c = static_cast<unsigned char>(ch);
  u32 v = 0;
  u32 ok = 0;
  u32 m = ct_in(c, '0', '9');
  v |= m & (c - '0');
  ok |= m;
  m = ct_in(c, 'a', 'f');
  v |= m & (c - 'a' + 10);
  ok |= m;
  m = ct_in(c, 'A', 'F');
  v |= m & (c - 'A' + 10);
  ok |= m;
  bad |= ~ok;
  return v;
}

std::size_t base64_encoded_size(std::size_t n) {
  // 4 characters per started group of 3 bytes; the bound keeps 4 * groups in range.
  if (n / 3 >= std::numeric_limits<std::size_t>::max() / 4 - 1) throw std::length_error("base64 input too large");
  return (n + 2) / 3 * 4;
}

// Writes exactly base64_encoded_size(bytes.size()) characters to `out`.
void base64_encode_into(std::span<const std::uint8_t> bytes, char* out) noexcept {
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const u32 w = u32{bytes[i]} << 16 | u32{bytes[i + 1]} << 8 | u32{bytes[i + 2]};
    *out++ = b64_char(w >> 18);
    *out++ = b64_char((w >> 12) & 63U);
    *out++ = b64_char((w >> 6) & 63U);
    *out++ = b64_char(w & 63U);
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 0) return;
  const u32 w = u32{bytes[i]} << 16 | (rest == 2 ? u32{bytes[i + 1]} << 8 : 0U);
  *out++ = b64_char(w >> 18);
  *out++ = b64_char((w >> 12) & 63U);
  *out++ = rest == 2 ? b64_char((w >> 6) & 63U) : '=';
  *out = '=';
}

// Checks the shape (length, padding) and returns the decoded size.
Result<std::size_t> base64_decoded_size(std::string_view text) {
  if (text.size() % 4 != 0) return fail(Errc::bad_base64, "base64: length is not a multiple of 4");
  std::size_t pad = 0;
  while (pad < text.size() && text[text.size() - 1 - pad] == '=') ++pad;
  if (pad > 2) return fail(Errc::bad_base64, "base64: more than two '=' padding characters");
  return text.size() / 4 * 3 - pad;
}

// Decodes `text` (already shape-checked) into exactly `out.size()` bytes.
Result<void> base64_decode_into(std::string_view text, std::span<std::uint8_t> out) {
  const std::size_t pad = text.size() / 4 * 3 - out.size();
  const std::string_view body = text.substr(0, text.size() - pad);
  u32 bad = 0;
  u32 padding_inside = 0;
  std::size_t o = 0;
  std::size_t i = 0;
  for (; i + 4 <= body.size(); i += 4) {
    u32 w = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      padding_inside |= ct_eq(static_cast<unsigned char>(body[i + k]), '=');
      w = w << 6 | b64_value(body[i + k], bad);
    }
    out[o++] = static_cast<std::uint8_t>(w >> 16);
    out[o++] = static_cast<std::uint8_t>(w >> 8);
    out[o++] = static_cast<std::uint8_t>(w);
  }
  // The last group of a padded text: 2 characters -> 1 byte, 3 -> 2 bytes.
  u32 w = 0;
  const std::size_t tail = body.size() - i;
  for (std::size_t k = 0; k < tail; ++k) {
    padding_inside |= ct_eq(static_cast<unsigned char>(body[i + k]), '=');
    w = w << 6 | b64_value(body[i + k], bad);
  }
  u32 stray_bits = 0;
  if (tail == 2) {
    out[o] = static_cast<std::uint8_t>(w >> 4);
    stray_bits = w & 0x0fU;
  } else if (tail == 3) {
    out[o] = static_cast<std::uint8_t>(w >> 10);
    out[o + 1] = static_cast<std::uint8_t>(w >> 2);
    stray_bits = w & 0x03U;
  }
  if (padding_inside != 0) return fail(Errc::bad_base64, "base64: '=' padding before the end");
  if (bad != 0) {
    return fail(Errc::bad_base64,
                "base64: character outside the standard alphabet (whitespace and URL-safe '-' '_' are rejected)");
  }
  // RFC 4648 §3.5: a canonical encoding has zero pad bits; accepting others
  // would give one byte string several encodings.
  if (stray_bits != 0) return fail(Errc::bad_base64, "base64: non-zero bits after the last byte (not canonical)");
  return {};
}

Result<void> hex_decode_into(std::string_view text, std::span<std::uint8_t> out) {
  u32 bad = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const u32 hi = hex_value(text[2 * i], bad);
    const u32 lo = hex_value(text[2 * i + 1], bad);
    out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  if (bad != 0) return fail(Errc::invalid_argument, "hex: character outside 0-9, a-f, A-F");
  return {};
}

}  // namespace

std::string base64_encode(std::span<const std::uint8_t> bytes) {
  std::string out(base64_encoded_size(bytes.size()), '\0');
  base64_encode_into(bytes, out.data());
  return out;
}

SecureBytes base64_encode_secure(std::span<const std::uint8_t> bytes) {
  SecureBytes out(base64_encoded_size(bytes.size()));
  if (!out.empty()) base64_encode_into(bytes, reinterpret_cast<char*>(out.data()));
  return out;
}

Result<std::vector<std::uint8_t>> base64_decode(std::string_view text) {
  auto size = base64_decoded_size(text);
  if (!size) return std::unexpected(std::move(size.error()));
  std::vector<std::uint8_t> out(*size);
  if (auto ok = base64_decode_into(text, out); !ok) return std::unexpected(std::move(ok.error()));
  return out;
}

Result<SecureBytes> base64_decode_secure(std::string_view text) {
  auto size = base64_decoded_size(text);
  if (!size) return std::unexpected(std::move(size.error()));
  SecureBytes out(*size);  // a failed decode wipes the partial output on return
  if (auto ok = base64_decode_into(text, out.span()); !ok) return std::unexpected(std::move(ok.error()));
  return out;
}

std::string hex_encode(std::span<const std::uint8_t> bytes) {
  std::string out(bytes.size() * 2, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = hex_char(u32{bytes[i]} >> 4);
    out[2 * i + 1] = hex_char(u32{bytes[i]} & 0x0fU);
  }
  return out;
}

Result<std::vector<std::uint8_t>> hex_decode(std::string_view text) {
  if (text.size() % 2 != 0) return fail(Errc::invalid_argument, "hex: odd number of digits");
  std::vector<std::uint8_t> out(text.size() / 2);
  if (auto ok = hex_decode_into(text, out); !ok) return std::unexpected(std::move(ok.error()));
  return out;
}

}  // namespace rootseal::kms
