// ESO decodingStrategy: None, Base64, Base64URL, Auto.
#include <array>
#include <cstdint>

#include "rootseal/sync/provider.hpp"

namespace rootseal::sync {

using kms::Errc;
using kms::fail;

namespace {

// Decodes base64 (std or url alphabet) into locked memory exactly as ESO
// does: Go's base64.StdEncoding / URLEncoding DecodeString, which is not
// Strict mode. So: padding is required (the text is whole quanta of four),
// '=' only ends the last quantum ("xx==" or "xxx="), nothing but line ends
// may follow it; '\r' and '\n' are skipped anywhere; the unused low bits
// of the last quantum are ignored (Go checks them only in Strict mode).
kms::Result<kms::SecureBytes> decode_base64(std::span<const std::uint8_t> in, bool url) {
  std::array<std::int8_t, 256> table{};
  table.fill(-1);
  const char* alphabet = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                             : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int i = 0; i < 64; ++i) table[static_cast<unsigned char>(alphabet[i])] = static_cast<std::int8_t>(i);
  const auto bad = [] { return fail(Errc::bad_base64, "value is not valid base64"); };
  std::size_t i = 0;
  // The next character that is not a line end, if any.
  const auto next = [&](std::uint8_t& c) {
    while (i < in.size() && (in[i] == '\r' || in[i] == '\n')) ++i;
    if (i == in.size()) return false;
    c = in[i++];
    return true;
  };
  kms::SecureBytes out(in.size() / 4 * 3 + 3);
  std::size_t o = 0;
  for (;;) {
    std::uint32_t acc = 0;
    std::size_t len = 0;  // data characters in this quantum
    bool padded = false;
    for (std::size_t j = 0; j < 4; ++j) {
      std::uint8_t c = 0;
      if (!next(c)) {
        if (j == 0) {
          out.truncate(o);
          return out;
        }
        return bad();  // a partial quantum: padding is required
      }
      if (c == '=') {
        if (j < 2) return bad();
        if (j == 2 && (!next(c) || c != '=')) return bad();  // "xx=" must be "xx=="
        std::uint8_t rest = 0;
        if (next(rest)) return bad();  // data after the padding
        padded = true;
        break;
      }
      const std::int8_t v = table[c];
      if (v < 0) return bad();
      acc = (acc << 6) | static_cast<std::uint32_t>(v);
      ++len;
    }
    acc <<= 6 * (4 - len);
    out.data()[o++] = static_cast<std::uint8_t>(acc >> 16);
    if (len > 2) out.data()[o++] = static_cast<std::uint8_t>(acc >> 8);
    if (len > 3) out.data()[o++] = static_cast<std::uint8_t>(acc);
    acc = 0;
    if (padded) {
      out.truncate(o);
      return out;
    }
  }
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
