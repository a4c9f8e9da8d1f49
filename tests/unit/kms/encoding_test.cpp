// Strict base64 and hex: RFC 4648 vectors, an independent oracle (OpenSSL's
// EVP_EncodeBlock), and every rejection rule.
#include <catch2/catch.hpp>

#include <openssl/evp.h>

#include <array>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/encoding.hpp"

using namespace rootseal::kms;

namespace {

std::vector<std::uint8_t> bytes_of(std::string_view s) { return {s.begin(), s.end()}; }

constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Decodes and expects a bad_base64 whose message contains `why`; the secure
// decoder must agree.
void expect_rejected(std::string_view text, std::string_view why) {
  INFO("input: \"" << std::string(text) << "\"");
  auto plain = base64_decode(text);
  REQUIRE_FALSE(plain.has_value());
  CHECK(plain.error().code == Errc::bad_base64);
  CHECK_THAT(plain.error().message, Catch::Contains(std::string(why)));
  auto secure = base64_decode_secure(text);
  REQUIRE_FALSE(secure.has_value());
  CHECK(secure.error().code == Errc::bad_base64);
  CHECK(secure.error().message == plain.error().message);
}

std::string openssl_base64(const std::vector<std::uint8_t>& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), in.data(), static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

}  // namespace

TEST_CASE("base64 RFC 4648 §10 test vectors", "[encoding]") {
  const std::array<std::pair<std::string_view, std::string_view>, 7> vectors = {{
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  }};
  for (const auto& [plain, encoded] : vectors) {
    INFO("plain: " << std::string(plain));
    CHECK(base64_encode(bytes_of(plain)) == encoded);
    auto decoded = base64_decode(encoded);
    REQUIRE(decoded.has_value());
    CHECK(*decoded == bytes_of(plain));

    auto secure = base64_decode_secure(encoded);
    REQUIRE(secure.has_value());
    CHECK(std::string_view(reinterpret_cast<const char*>(secure->data()), secure->size()) == plain);
    SecureBytes enc = base64_encode_secure(bytes_of(plain));
    CHECK(std::string_view(reinterpret_cast<const char*>(enc.data()), enc.size()) == encoded);
  }
}

TEST_CASE("base64 agrees with OpenSSL and round-trips every length", "[encoding]") {
  std::mt19937 rng(20240601);  // fixed seed: reproducible
  std::uniform_int_distribution<int> byte(0, 255);
  for (std::size_t len = 0; len <= 200; ++len) {
    std::vector<std::uint8_t> data(len);
    for (auto& b : data) b = static_cast<std::uint8_t>(byte(rng));
    const std::string encoded = base64_encode(data);
    INFO("length " << len);
    CHECK(encoded == openssl_base64(data));
    auto decoded = base64_decode(encoded);
    REQUIRE(decoded.has_value());
    CHECK(*decoded == data);
  }
}

TEST_CASE("base64 secret codec agrees with OpenSSL and round-trips every length", "[encoding]") {
  // The *_secure variants (arithmetic, eight characters at a time) against the
  // same oracle: every length exercises the 8-wide body and each tail shape.
  std::mt19937 rng(20240602);
  std::uniform_int_distribution<int> byte(0, 255);
  for (std::size_t len = 0; len <= 200; ++len) {
    std::vector<std::uint8_t> data(len);
    for (auto& b : data) b = static_cast<std::uint8_t>(byte(rng));
    const std::string expected = openssl_base64(data);
    INFO("length " << len);
    const SecureBytes encoded = base64_encode_secure(data);
    CHECK(std::string_view(reinterpret_cast<const char*>(encoded.data()), encoded.size()) == expected);
    auto decoded = base64_decode_secure(expected);
    REQUIRE(decoded.has_value());
    CHECK(std::vector<std::uint8_t>(decoded->data(), decoded->data() + decoded->size()) == data);
  }
}

std::vector<std::uint8_t> openssl_unbase64(const std::string& text) {
  std::vector<std::uint8_t> out(text.size() / 4 * 3);
  const int n =
      EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  out.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
  return out;
}

TEST_CASE("base64 decoders agree on every byte value at every position of a long text", "[encoding]") {
  // 30 bytes -> 40 characters, no padding: five 8-character blocks, so each
  // lane of the 8-wide decoders sees every byte value.
  std::vector<std::uint8_t> data(30);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 37 + 11);
  const std::string clean = base64_encode(data);
  REQUIRE(clean.size() == 40);
  int accepted = 0;
  for (std::size_t pos = 0; pos < clean.size(); ++pos) {
    for (int c = 0; c < 256; ++c) {
      std::string text = clean;
      text[pos] = static_cast<char>(c);
      INFO("position " << pos << ", byte " << c);
      auto plain = base64_decode(text);
      auto secure = base64_decode_secure(text);
      REQUIRE(plain.has_value() == secure.has_value());
      if (pos == clean.size() - 1 && c == '=') {  // real padding now: 29 bytes if the stray bits are zero
        const bool canonical = (kAlphabet.find(clean[pos - 1]) & 3) == 0;
        CHECK(plain.has_value() == canonical);
        if (plain) CHECK(std::vector<std::uint8_t>(secure->data(), secure->data() + secure->size()) == *plain);
        continue;
      }
      const bool in_alphabet = kAlphabet.find(static_cast<char>(c)) != std::string_view::npos;
      CHECK(plain.has_value() == in_alphabet);
      if (!plain) {
        CHECK(plain.error().message == secure.error().message);
        CHECK(plain.error().message.find(c == '=' ? "before the end" : "outside the standard alphabet") !=
              std::string::npos);
        continue;
      }
      ++accepted;
      const auto expected = openssl_unbase64(text);
      CHECK(*plain == expected);
      CHECK(std::vector<std::uint8_t>(secure->data(), secure->data() + secure->size()) == expected);
    }
  }
  CHECK(accepted == 40 * 64);
}

TEST_CASE("base64 accepts exactly the 64 standard characters", "[encoding]") {
  // Each byte value inside a group (where '=' is not padding either): only
  // the standard alphabet may decode, and to its index.
  int accepted = 0;
  for (int c = 0; c < 256; ++c) {
    std::string text = "AA";
    text.push_back(static_cast<char>(c));
    text.push_back('A');
    auto decoded = base64_decode(text);
    const auto index = kAlphabet.find(static_cast<char>(c));
    INFO("byte " << c);
    if (index == std::string_view::npos) {
      CHECK_FALSE(decoded.has_value());
      continue;
    }
    REQUIRE(decoded.has_value());
    CHECK((*decoded)[1] == index >> 2);
    CHECK((*decoded)[2] == (index & 3) << 6);
    ++accepted;
  }
  CHECK(accepted == 64);
}

TEST_CASE("base64 rejects non-canonical and foreign encodings", "[encoding]") {
  SECTION("length not a multiple of 4 (missing padding)") {
    expect_rejected("Zg", "multiple of 4");
    expect_rejected("Zm8", "multiple of 4");
    expect_rejected("Zm9vY", "multiple of 4");
    expect_rejected("Zg=", "multiple of 4");
  }
  SECTION("whitespace") {
    expect_rejected("Zm9 ", "outside the standard alphabet");
    expect_rejected("Zm9v\nYm\n", "outside the standard alphabet");
    expect_rejected("Zm9v\n", "multiple of 4");
    expect_rejected("Zm9v\r\nYg", "outside the standard alphabet");
    expect_rejected("\tm9v", "outside the standard alphabet");
  }
  SECTION("URL-safe alphabet") {
    expect_rejected("ab-_", "outside the standard alphabet");
    expect_rejected("-w==", "outside the standard alphabet");
    expect_rejected("_w==", "outside the standard alphabet");
  }
  SECTION("other bytes") {
    expect_rejected(std::string_view("Zm9\0", 4), "outside the standard alphabet");
    expect_rejected("Zm9\xff", "outside the standard alphabet");
    expect_rejected("Zm9.", "outside the standard alphabet");
  }
  SECTION("bad padding") {
    expect_rejected("Z===", "more than two");
    expect_rejected("====", "more than two");
    expect_rejected("=Zg=", "before the end");
    expect_rejected("Zg==Zg==", "before the end");
    expect_rejected("Z=g=", "before the end");
  }
  SECTION("non-zero trailing bits") {
    expect_rejected("Zh==", "non-zero bits");  // canonical: Zg==
    expect_rejected("Zm9=", "non-zero bits");  // canonical: Zm8=
  }
}

TEST_CASE("base64 control: a canonical text with '/' and '+' decodes", "[encoding]") {
  auto decoded = base64_decode("+/+/");
  REQUIRE(decoded.has_value());
  CHECK(*decoded == std::vector<std::uint8_t>{0xfb, 0xff, 0xbf});
}

TEST_CASE("hex encodes lower-case and decodes either case", "[encoding]") {
  CHECK(hex_encode(bytes_of("")) == "");
  CHECK(hex_encode(bytes_of("foobar")) == "666f6f626172");  // RFC 4648 §10 (there upper-case)
  CHECK(hex_encode(std::vector<std::uint8_t>{0x00, 0x09, 0x0a, 0xff}) == "00090aff");

  for (std::string_view text : {"666F6F626172", "666f6f626172", "666F6f626172"}) {
    auto decoded = hex_decode(text);
    REQUIRE(decoded.has_value());
    CHECK(*decoded == bytes_of("foobar"));
  }
  auto empty = hex_decode("");
  REQUIRE(empty.has_value());
  CHECK(empty->empty());

  std::vector<std::uint8_t> all(256);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint8_t>(i);
  auto round = hex_decode(hex_encode(all));
  REQUIRE(round.has_value());
  CHECK(*round == all);
}

TEST_CASE("hex rejects odd lengths and non-hex characters", "[encoding]") {
  for (std::string_view text : {"abc", "0", "0g", "0x00", " 0", "g0", "-1"}) {
    INFO("input: " << std::string(text));
    auto decoded = hex_decode(text);
    REQUIRE_FALSE(decoded.has_value());
    CHECK(decoded.error().code == Errc::invalid_argument);
  }
  CHECK_THAT(hex_decode("abc").error().message, Catch::Contains("odd"));
  CHECK_THAT(hex_decode("zz").error().message, Catch::Contains("character"));
}
