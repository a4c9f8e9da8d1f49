// The "vault:v<N>:<base64>" codec: every malformed form has its own typed
// error and message; a round trip through Aead.
#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/aead.hpp"
#include "rootseal/kms/ciphertext.hpp"
#include "rootseal/kms/encoding.hpp"

using namespace rootseal::kms;

namespace {

using Bytes = std::vector<std::uint8_t>;

// 28 bytes: the smallest valid body (empty plaintext).
const std::string kBody28 = base64_encode(Bytes(Aead::kOverhead, 0xAB));

struct Malformed {
  std::string text;
  Errc code;
  std::string_view says;  // a fragment of the message that names the rule
};

std::vector<Malformed> malformed_cases() {
  return {
      {"", Errc::malformed_ciphertext, "does not start with 'vault:'"},
      {"v1:" + kBody28, Errc::malformed_ciphertext, "does not start with 'vault:'"},
      {"Vault:v1:" + kBody28, Errc::malformed_ciphertext, "does not start with 'vault:'"},
      {" vault:v1:" + kBody28, Errc::malformed_ciphertext, "does not start with 'vault:'"},
      {"vault:v1", Errc::malformed_ciphertext, "found 2"},
      {"vault:", Errc::malformed_ciphertext, "found 2"},
      {"vault:v1:" + kBody28 + ":", Errc::malformed_ciphertext, "found more"},
      {"vault:v1::" + kBody28, Errc::malformed_ciphertext, "found more"},
      {"vault:v1:a:b", Errc::malformed_ciphertext, "found more"},
      {"vault::" + kBody28, Errc::malformed_ciphertext, "key version is empty"},
      {"vault:1:" + kBody28, Errc::malformed_ciphertext, "must start with 'v'"},
      {"vault:V1:" + kBody28, Errc::malformed_ciphertext, "must start with 'v'"},
      {"vault:v:" + kBody28, Errc::malformed_ciphertext, "has no digits"},
      {"vault:vX:" + kBody28, Errc::malformed_ciphertext, "not a decimal number"},
      {"vault:v1a:" + kBody28, Errc::malformed_ciphertext, "not a decimal number"},
      {"vault:v 1:" + kBody28, Errc::malformed_ciphertext, "not a decimal number"},
      {"vault:v1 :" + kBody28, Errc::malformed_ciphertext, "not a decimal number"},
      {"vault:v0x1:" + kBody28, Errc::malformed_ciphertext, "not a decimal number"},
      {"vault:v-1:" + kBody28, Errc::malformed_ciphertext, "must not have a sign"},
      {"vault:v+1:" + kBody28, Errc::malformed_ciphertext, "must not have a sign"},
      {"vault:v01:" + kBody28, Errc::malformed_ciphertext, "leading zero"},
      {"vault:v00:" + kBody28, Errc::malformed_ciphertext, "leading zero"},
      {"vault:v2147483648:" + kBody28, Errc::malformed_ciphertext, "larger than 2147483647"},
      {"vault:v4294967297:" + kBody28, Errc::malformed_ciphertext, "larger than 2147483647"},
      {"vault:v99999999999999999999999999:" + kBody28, Errc::malformed_ciphertext, "larger than 2147483647"},
      {"vault:v1:" + kBody28 + " ", Errc::bad_base64, "ciphertext body: base64"},
      {"vault:v1:q6urq6urq6urq6urq6urq6urq6urq6urq6urqx==", Errc::bad_base64, "ciphertext body: base64"},
      {"vault:v1:q6urq6urq6urq6urq6urq6urq6urq6urq6urq6-_", Errc::bad_base64, "ciphertext body: base64"},
      {"vault:v1:", Errc::malformed_ciphertext, "shorter than nonce"},
      {"vault:v1:" + base64_encode(Bytes(27, 1)), Errc::malformed_ciphertext, "shorter than nonce"},
  };
}

}  // namespace

TEST_CASE("parse_ciphertext names each malformed form", "[ciphertext]") {
  for (const Malformed& m : malformed_cases()) {
    INFO("input: \"" << m.text << "\"");
    auto parsed = parse_ciphertext(m.text);
    REQUIRE_FALSE(parsed.has_value());
    CHECK(parsed.error().code == m.code);
    CHECK_THAT(parsed.error().message, Catch::Contains(std::string(m.says)));
  }
}

TEST_CASE("parse_ciphertext messages are distinct per rule", "[ciphertext]") {
  std::set<std::string_view> rules;
  std::set<std::string> messages;
  for (const Malformed& m : malformed_cases()) {
    auto parsed = parse_ciphertext(m.text);
    REQUIRE_FALSE(parsed.has_value());
    rules.insert(m.says);
    messages.insert(parsed.error().message);
  }
  // The three base64 cases break different base64 rules, hence 2 extra messages.
  CHECK(messages.size() == rules.size() + 2);
}

TEST_CASE("parse_ciphertext versions: v0 is 1, bounds inclusive", "[ciphertext]") {
  const std::vector<std::pair<std::string, std::uint32_t>> versions = {
      {"v0", 1}, {"v1", 1}, {"v2", 2}, {"v10", 10}, {"v2147483647", 2147483647U}};
  for (const auto& [part, expected] : versions) {
    INFO(part);
    auto parsed = parse_ciphertext("vault:" + part + ":" + kBody28);
    REQUIRE(parsed.has_value());
    CHECK(parsed->version == expected);
    CHECK(parsed->body == Bytes(Aead::kOverhead, 0xAB));
  }
}

TEST_CASE("format_ciphertext and parse_ciphertext round-trip through Aead", "[ciphertext]") {
  auto aead = make_aead(KeyType::aes256_gcm96, SecureBytes::random(32));
  REQUIRE(aead.has_value());
  const Bytes plaintext = {'h', 'e', 'l', 'l', 'o'};
  auto sealed = (*aead)->seal(plaintext, {});
  REQUIRE(sealed.has_value());

  const std::string text = format_ciphertext(7, *sealed);
  CHECK(text.starts_with("vault:v7:"));
  CHECK(text == "vault:v7:" + base64_encode(*sealed));

  auto parsed = parse_ciphertext(text);
  REQUIRE(parsed.has_value());
  CHECK(parsed->version == 7);
  CHECK(parsed->body == *sealed);
  auto opened = (*aead)->open(parsed->body, {});
  REQUIRE(opened.has_value());
  CHECK(Bytes(opened->data(), opened->data() + opened->size()) == plaintext);
}

TEST_CASE("a well-formed ciphertext with a wrong tag fails in Aead::open", "[ciphertext]") {
  auto aead = make_aead(KeyType::aes256_gcm96, SecureBytes::random(32));
  REQUIRE(aead.has_value());
  auto sealed = (*aead)->seal(Bytes{'x'}, {});
  REQUIRE(sealed.has_value());
  Bytes tampered = *sealed;
  tampered.back() ^= 0x80;

  auto parsed = parse_ciphertext(format_ciphertext(1, tampered));
  REQUIRE(parsed.has_value());  // the codec does not authenticate; Aead does
  auto opened = (*aead)->open(parsed->body, {});
  REQUIRE_FALSE(opened.has_value());
  CHECK(opened.error().code == Errc::decryption_failed);
}

TEST_CASE("parse_ciphertext survives arbitrary bytes", "[ciphertext]") {
  // A smoke version of the fuzz target for builds without libFuzzer.
  std::string text = "vault:v1:" + kBody28;
  for (std::size_t i = 0; i < text.size(); ++i) {
    for (int c = 0; c < 256; c += 5) {
      std::string mutated = text;
      mutated[i] = static_cast<char>(c);
      auto parsed = parse_ciphertext(mutated);
      if (parsed) CHECK(parsed->body.size() >= Aead::kOverhead);
    }
  }
}
