// ESO decodingStrategy: None, Base64, Base64URL, Auto.
#include <array>
#include <cstdint>

#include "rootseal/sync/provider.hpp"

namespace rootseal::sync {

using kms::Errc;
using kms::fail;

namespace {

// Decodes base64 (std or url alphabet) into locked memory. Padding is
// optional but, when present, must be correct; whitespace is not allowed.
kms::Result<kms::SecureBytes> decode_base64(std::span<const std::uint8_t> in, bool url) {
  std::array<std::int8_t, 256> table{};
  table.fill(-1);
  const char* alphabet = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                             : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int i = 0; i < 64; ++i) table[static_cast<unsigned char>(alphabet[i])] = static_cast<std::int8_t>(i);
  std::size_t n = in.size();
  std::size_t pad = 0;
  while (n > 0 && in[n - 1] == '=' && pad < 2) {
    --n;
    ++pad;
  }
  if (pad > 0 && in.size() % 4 != 0) return fail(Errc::bad_base64, "value is not valid base64");
  if (n % 4 == 1) return fail(Errc::bad_base64, "value is not valid base64");
  if (pad > 0 && (n + pad) % 4 != 0) return fail(Errc::bad_base64, "value is not valid base64");
  kms::SecureBytes out(n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1));
  std::size_t o = 0;
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::int8_t v = table[in[i]];
    if (v < 0) return fail(Errc::bad_base64, "value is not valid base64");
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.data()[o++] = static_cast<std::uint8_t>((acc >> bits) & 0xFF);
    }
  }
  // Leftover bits must be zero (canonical encoding), as Go's decoder checks in strict mode.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return fail(Errc::bad_base64, "value is not valid base64");
  acc = 0;
  out.truncate(o);
  return out;
}

}  // namespace

kms::Result<DecodingStrategy> parse_decoding_strategy(std::string_view s) {
  if (s.empty() || s == "None") return DecodingStrategy::none;
  if (s == "Base64") return DecodingStrategy::base64;
  if (s == "Base64URL") return DecodingStrategy::base64url;
  if (s == "Auto") return DecodingStrategy::auto_detect;
  return fail(Errc::invalid_argument,
              "decodingStrategy must be one of None, Base64, Base64URL, Auto (got \"" + std::string(s) + "\")");
}

kms::Result<kms::SecureBytes> apply_decoding(DecodingStrategy strategy, kms::SecureBytes value) {
  switch (strategy) {
    case DecodingStrategy::none:
      return value;
    case DecodingStrategy::base64: {
      auto r = decode_base64(value.span(), false);
      if (!r) return fail(Errc::bad_base64, "decodingStrategy Base64: the value is not valid base64");
      return r;
    }
    case DecodingStrategy::base64url: {
      auto r = decode_base64(value.span(), true);
      if (!r) return fail(Errc::bad_base64, "decodingStrategy Base64URL: the value is not valid base64url");
      return r;
    }
    case DecodingStrategy::auto_detect: {
      if (value.empty()) return value;
      if (auto r = decode_base64(value.span(), false)) return r;
      if (auto r = decode_base64(value.span(), true)) return r;
      return value;
    }
  }
  return fail(Errc::internal, "unknown decoding strategy");
}

}  // namespace rootseal::sync
