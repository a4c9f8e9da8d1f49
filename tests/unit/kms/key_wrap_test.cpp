// AES-KWP (RFC 5649), HKDF-SHA256 (RFC 5869), AES key check values and
// kms::SoftwareRoot.
#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/key_wrap.hpp"
#include "rootseal/kms/root_of_trust.hpp"

using namespace rootseal::kms;

namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes hex(std::string_view text) {
  auto decoded = hex_decode(text);
  REQUIRE(decoded.has_value());
  return *decoded;
}

SecureBytes secret_hex(std::string_view text) { return SecureBytes::copy_of(std::span<const std::uint8_t>(hex(text))); }

Bytes to_bytes(const SecureBytes& s) { return {s.data(), s.data() + s.size()}; }

Bytes sequence(std::uint8_t first, std::size_t n) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(first + i);
  return out;
}

}  // namespace

TEST_CASE("AES-KWP: RFC 5649 §6 known answers", "[key_wrap]") {
  const SecureBytes kek = secret_hex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8");
  struct Vector {
    const char* key;
    const char* wrapped;
  };
  for (const Vector& v : {Vector{"c37b7e6492584340bed12207808941155068f738",
                                 "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
                          Vector{"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"}}) {
    INFO("key " << v.key);
    auto wrapped = aes_kwp_wrap(kek, hex(v.key));
    REQUIRE(wrapped.has_value());
    CHECK(*wrapped == hex(v.wrapped));
    auto unwrapped = aes_kwp_unwrap(kek, hex(v.wrapped));
    REQUIRE(unwrapped.has_value());
    CHECK(to_bytes(*unwrapped) == hex(v.key));
  }
}

TEST_CASE("AES-KWP: known answers with AES-128 and AES-256 KEKs", "[key_wrap]") {
  // Wycheproof aes_kwp_test.json tcId 1 (AES-128 KEK, 16-byte key).
  const SecureBytes kek128 = secret_hex("6f67486d1e914419cb43c28509c7c1ea");
  auto w128 = aes_kwp_wrap(kek128, hex("8dc0632d92ee0be4f740028410b08270"));
  REQUIRE(w128.has_value());
  CHECK(*w128 == hex("8cd63fa6788aa5edfa753fc87d645a672b14107c3b4519e7"));

  // Round trips over every padding length with both KEK sizes.
  for (std::size_t kek_size : {16UL, 32UL}) {
    const SecureBytes kek = SecureBytes::random(kek_size);
    for (std::size_t n = 1; n <= 72; ++n) {
      INFO("kek " << kek_size << " key length " << n);
      const Bytes key = sequence(static_cast<std::uint8_t>(n), n);
      auto wrapped = aes_kwp_wrap(kek, key);
      REQUIRE(wrapped.has_value());
      CHECK(wrapped->size() == (n + 7) / 8 * 8 + 8);
      auto unwrapped = aes_kwp_unwrap(kek, *wrapped);
      REQUIRE(unwrapped.has_value());
      CHECK(to_bytes(*unwrapped) == key);
    }
  }
}

TEST_CASE("AES-KWP rejects damage, wrong keys and bad sizes", "[key_wrap]") {
  const SecureBytes kek = SecureBytes::random(32);
  const Bytes key = sequence(0x10, 32);
  auto wrapped_result = aes_kwp_wrap(kek, key);
  REQUIRE(wrapped_result.has_value());
  const Bytes wrapped = *wrapped_result;

  auto expect_unwrap_failure = [&](const SecureBytes& with, const Bytes& blob, Errc code) {
    auto unwrapped = aes_kwp_unwrap(with, blob);
    REQUIRE_FALSE(unwrapped.has_value());
    CHECK(unwrapped.error().code == code);
  };

  SECTION("every flipped byte") {
    for (std::size_t i = 0; i < wrapped.size(); ++i) {
      Bytes bad = wrapped;
      bad[i] ^= 0x01;
      INFO("byte " << i);
      expect_unwrap_failure(kek, bad, Errc::decryption_failed);
    }
  }
  SECTION("wrong KEK") {
    expect_unwrap_failure(SecureBytes::random(32), wrapped, Errc::decryption_failed);
    // Same bytes, other size: still wrong.
    SecureBytes half = SecureBytes::copy_of(kek.span().first(16));
    expect_unwrap_failure(half, wrapped, Errc::decryption_failed);
  }
  SECTION("impossible wrapped lengths") {
    for (std::size_t n : {0UL, 1UL, 8UL, 15UL, 17UL, 39UL, 41UL}) {
      INFO("length " << n);
      expect_unwrap_failure(kek, Bytes(n, 0xA6), Errc::decryption_failed);
    }
    Bytes truncated(wrapped.begin(), wrapped.end() - 8);
    expect_unwrap_failure(kek, truncated, Errc::decryption_failed);
  }
  SECTION("bad KEK sizes and key sizes") {
    for (std::size_t n : {0UL, 8UL, 15UL, 17UL, 20UL, 31UL, 33UL, 64UL}) {
      INFO("kek of " << n << " bytes");
      auto w = aes_kwp_wrap(SecureBytes(n), key);
      REQUIRE_FALSE(w.has_value());
      CHECK(w.error().code == Errc::invalid_argument);
      expect_unwrap_failure(SecureBytes(n), wrapped, Errc::invalid_argument);
    }
    auto empty = aes_kwp_wrap(kek, Bytes{});
    REQUIRE_FALSE(empty.has_value());
    CHECK(empty.error().code == Errc::invalid_argument);
    auto huge = aes_kwp_wrap(kek, Bytes(8193, 1));
    REQUIRE_FALSE(huge.has_value());
    CHECK(huge.error().code == Errc::invalid_argument);
    CHECK(aes_kwp_wrap(kek, Bytes(8192, 1)).has_value());
  }
}

TEST_CASE("HKDF-SHA256: RFC 5869 test cases 1-3", "[key_wrap][hkdf]") {
  struct Vector {
    Bytes ikm, salt, info;
    std::size_t length;
    const char* okm;
  };
  const Bytes ikm22(22, 0x0b);
  const std::vector<Vector> vectors = {
      {ikm22, hex("000102030405060708090a0b0c"), hex("f0f1f2f3f4f5f6f7f8f9"), 42,
       "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"},
      {sequence(0x00, 80), sequence(0x60, 80), sequence(0xb0, 80), 82,
       "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
       "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
       "cc30c58179ec3e87c14c01d5c1f3434f1d87"},
      {ikm22, {}, {}, 42, "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"},
  };
  for (std::size_t i = 0; i < vectors.size(); ++i) {
    INFO("RFC 5869 test case " << i + 1);
    const Vector& v = vectors[i];
    auto okm = hkdf_sha256(SecureBytes::copy_of(std::span<const std::uint8_t>(v.ikm)), v.salt, v.info, v.length);
    REQUIRE(okm.has_value());
    CHECK(to_bytes(*okm) == hex(v.okm));
  }
}

TEST_CASE("HKDF-SHA256 output length bounds", "[key_wrap][hkdf]") {
  const SecureBytes ikm = SecureBytes::random(32);
  for (std::size_t length : {0UL, 8161UL, 100000UL}) {
    INFO("length " << length);
    auto okm = hkdf_sha256(ikm, {}, {}, length);
    REQUIRE_FALSE(okm.has_value());
    CHECK(okm.error().code == Errc::invalid_argument);
  }
  auto max = hkdf_sha256(ikm, {}, {}, 8160);
  REQUIRE(max.has_value());
  CHECK(max->size() == 8160);
  // A prefix property of HKDF-Expand: shorter outputs are prefixes of longer ones.
  auto short_okm = hkdf_sha256(ikm, {}, {}, 16);
  REQUIRE(short_okm.has_value());
  CHECK(to_bytes(*short_okm) == Bytes(max->data(), max->data() + 16));
  // Inputs are bounded too (32 KiB each).
  const Bytes big(32 * 1024, 7), too_big(32 * 1024 + 1, 7);
  CHECK(hkdf_sha256(ikm, big, big, 32).has_value());
  const SecureBytes big_ikm = SecureBytes::copy_of(std::span<const std::uint8_t>(too_big));
  for (int which = 0; which < 3; ++which) {
    INFO("oversized input " << which);
    auto okm = which == 0   ? hkdf_sha256(ikm, too_big, {}, 32)
               : which == 1 ? hkdf_sha256(ikm, {}, too_big, 32)
                            : hkdf_sha256(big_ikm, {}, {}, 32);
    REQUIRE_FALSE(okm.has_value());
    CHECK(okm.error().code == Errc::invalid_argument);
  }
  // Different info, different key.
  auto other = hkdf_sha256(ikm, {}, Bytes{'x'}, 16);
  REQUIRE(other.has_value());
  CHECK_FALSE(*other == *short_okm);
}

TEST_CASE("AES key check values (PKCS#11 CKA_CHECK_VALUE)", "[key_wrap][kcv]") {
  // E_K(0^128) for all-zero keys (FIPS-197 style known answers), first 3 bytes.
  struct Vector {
    std::size_t key_size;
    const char* kcv;
  };
  for (const Vector& v : {Vector{16, "66e94b"}, Vector{24, "aae069"}, Vector{32, "dc95c0"}}) {
    INFO("key size " << v.key_size);
    auto kcv = aes_key_check_value(SecureBytes(v.key_size));
    REQUIRE(kcv.has_value());
    REQUIRE(kcv->size() == kKeyCheckValueSize);
    CHECK(hex_encode(*kcv) == v.kcv);
  }
  // FIPS-197 C.3 key; its KCV must differ from the zero key's.
  auto kcv = aes_key_check_value(secret_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"));
  REQUIRE(kcv.has_value());
  CHECK(hex_encode(*kcv) != "dc95c0");
  for (std::size_t n : {0UL, 8UL, 15UL, 17UL, 33UL}) {
    auto bad = aes_key_check_value(SecureBytes(n));
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().code == Errc::invalid_argument);
  }
}

TEST_CASE("SoftwareRoot wraps with KWP and reports its KCV", "[key_wrap][software_root]") {
  const SecureBytes root_key = SecureBytes::random(32);
  auto expected_kcv = aes_key_check_value(root_key);
  REQUIRE(expected_kcv.has_value());
  auto root_result = SoftwareRoot::create(root_key.clone());
  REQUIRE(root_result.has_value());
  SoftwareRoot& root = **root_result;

  CHECK(root.kind() == "software");
  CHECK(root.probe().has_value());
  auto kcv = root.key_check_value();
  REQUIRE(kcv.has_value());
  CHECK(*kcv == hex_encode(*expected_kcv));
  CHECK(kcv->size() == 2 * kKeyCheckValueSize);

  for (std::size_t n : {16UL, 32UL, 64UL}) {
    const SecureBytes kek = SecureBytes::random(n);
    auto wrapped = root.wrap(kek);
    REQUIRE(wrapped.has_value());
    // Interoperable with plain KWP under the same root key (what an HSM does).
    auto direct = aes_kwp_unwrap(root_key, *wrapped);
    REQUIRE(direct.has_value());
    CHECK(*direct == kek);
    auto unwrapped = root.unwrap(*wrapped);
    REQUIRE(unwrapped.has_value());
    CHECK(*unwrapped == kek);
  }
  for (std::size_t n : {0UL, 15UL, 65UL}) {
    auto wrapped = root.wrap(SecureBytes(n));
    REQUIRE_FALSE(wrapped.has_value());
    CHECK(wrapped.error().code == Errc::invalid_argument);
  }

  auto other = SoftwareRoot::create(SecureBytes::random(32));
  REQUIRE(other.has_value());
  auto foreign = (*other)->wrap(SecureBytes::random(32));
  REQUIRE(foreign.has_value());
  auto unwrapped = root.unwrap(*foreign);
  REQUIRE_FALSE(unwrapped.has_value());
  CHECK(unwrapped.error().code == Errc::decryption_failed);
}

TEST_CASE("SoftwareRoot requires a 32-byte root key", "[key_wrap][software_root]") {
  for (std::size_t n : {0UL, 16UL, 24UL, 31UL, 33UL}) {
    auto root = SoftwareRoot::create(SecureBytes(n));
    REQUIRE_FALSE(root.has_value());
    CHECK(root.error().code == Errc::invalid_argument);
  }
}
