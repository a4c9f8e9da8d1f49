// Shamir over GF(2^8): known answers computed independently, and properties.
#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "rootseal/kms/encoding.hpp"
#include "shamir.hpp"

using namespace rootseal;
using cli::shamir::combine;
using cli::shamir::gf_inv;
using cli::shamir::gf_mul;
using cli::shamir::Share;

namespace {

// Reference multiply for the exhaustive comparison: carry-less schoolbook
// product, then long division by 0x11B. Written separately from gf_mul.
std::uint8_t slow_mul(std::uint8_t a, std::uint8_t b) {
  unsigned r = 0;
  for (int i = 0; i < 8; ++i) {
    if ((b >> i) & 1) r ^= static_cast<unsigned>(a) << i;
  }
  for (int i = 15; i >= 8; --i) {
    if ((r >> i) & 1) r ^= 0x11BU << (i - 8);
  }
  return static_cast<std::uint8_t>(r);
}

kms::SecureBytes hex_secret(std::string_view hex) {
  auto b = kms::hex_decode(hex);
  REQUIRE(b);
  return kms::SecureBytes::copy_of(*b);
}

std::string hex(const kms::SecureBytes& s) { return kms::hex_encode(s.span()); }

std::vector<Share> pick(const std::vector<Share>& all, const std::vector<std::size_t>& idx) {
  std::vector<Share> out;
  for (std::size_t i : idx) out.push_back(Share{all[i].x, all[i].y.clone()});
  return out;
}

}  // namespace

TEST_CASE("GF(2^8) multiplication matches FIPS-197 examples") {
  // FIPS-197 section 4.2: {57} * {83} = {c1}, {57} * {13} = {fe}.
  CHECK(gf_mul(0x57, 0x83) == 0xc1);
  CHECK(gf_mul(0x57, 0x13) == 0xfe);
  // The AES S-box derivation example: the inverse of {53} is {ca}.
  CHECK(gf_inv(0x53) == 0xca);
  CHECK(gf_inv(0) == 0);
  CHECK(gf_inv(1) == 1);
}

TEST_CASE("GF(2^8) multiplication agrees with a reference on all 65536 pairs, inverses on all 255") {
  for (unsigned a = 0; a < 256; ++a) {
    for (unsigned b = 0; b < 256; ++b) {
      const auto x = static_cast<std::uint8_t>(a);
      const auto y = static_cast<std::uint8_t>(b);
      REQUIRE(gf_mul(x, y) == slow_mul(x, y));
    }
    if (a != 0) REQUIRE(gf_mul(static_cast<std::uint8_t>(a), gf_inv(static_cast<std::uint8_t>(a))) == 1);
  }
}

TEST_CASE("split matches independently computed vectors") {
  // Vector 1, by hand: secret {42}, threshold 2, coefficient {07}:
  //   y(1) = 42 ^ 07          = 45
  //   y(2) = 42 ^ 07*02 = 42 ^ 0e = 4c
  //   y(3) = 42 ^ 07*03 = 42 ^ (0e ^ 07) = 42 ^ 09 = 4b
  {
    auto shares = cli::shamir::split_with_coefficients(hex_secret("42"), 2, 3, hex_secret("07"));
    REQUIRE(shares);
    CHECK(hex((*shares)[0].y) == "45");
    CHECK(hex((*shares)[1].y) == "4c");
    CHECK(hex((*shares)[2].y) == "4b");
  }
  // Vector 2, computed with a separate Python implementation (schoolbook
  // carry-less multiply reduced by 0x11B, no tables):
  //   secret "ROOT" = 524f4f54, threshold 3,
  //   c1 = 01020304, c2 = a0b0c0d0, y(x) = s + c1 x + c2 x^2 per byte
  {
    auto coeffs = hex_secret("01020304a0b0c0d0");
    auto shares = cli::shamir::split_with_coefficients(hex_secret("524f4f54"), 3, 5, coeffs);
    REQUIRE(shares);
    const char* want[] = {"f3fd8c80", "e6bd6431", "470fa7e5", "b8b2f7eb", "1900343f"};
    for (std::size_t i = 0; i < 5; ++i) CHECK(hex((*shares)[i].y) == want[i]);
  }
  // Vector 3 (same Python): secret 00 01 .. 1f, threshold 4, coefficient j of
  // byte b = (37 j + 11 b) mod 256 (j = 1..3), 255 shares.
  {
    std::vector<std::uint8_t> c;
    for (unsigned j = 1; j <= 3; ++j) {
      for (unsigned b = 0; b < 32; ++b) c.push_back(static_cast<std::uint8_t>((j * 37 + b * 11) & 0xff));
    }
    std::vector<std::uint8_t> s(32);
    std::iota(s.begin(), s.end(), std::uint8_t{0});
    auto shares =
        cli::shamir::split_with_coefficients(kms::SecureBytes::copy_of(s), 4, 255, kms::SecureBytes::copy_of(c));
    REQUIRE(shares);
    CHECK(hex((*shares)[1].y) == "2cd3abd4d1c8311e2e4a530c89869eb19c952cbee04fed19847a23fc22c019db");
    CHECK(hex((*shares)[3].y) == "c64fa2cbada820b3142be2c9582b700fd18267e61b4494dd3f93f75e97e6b522");
    CHECK(hex((*shares)[4].y) == "cb42d6c338f36d19f93632f3841496357673003c9c7b0be5c1b25bee772540ca");
    CHECK(hex((*shares)[5].y) == "0fa58842edec23f565e23ac83d2b4b5c7ba7deff9027b166f0e3d67cd0291de1");
    CHECK(hex((*shares)[254].y) == "247de10b629d72a390eaa07d9c20917727f7a51f288c53aaf21869ac7daad563");
    // And back from the vector's own shares 2, 4, 5, 255.
    auto back = combine(pick(*shares, {1, 3, 4, 254}));
    REQUIRE(back);
    CHECK(hex(*back) == "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
  }
}

TEST_CASE("combine recovers from independently computed shares") {
  // Vector 2's shares 1, 3, 5 (Python) interpolate to "ROOT".
  std::vector<Share> s;
  s.push_back(Share{1, hex_secret("f3fd8c80")});
  s.push_back(Share{3, hex_secret("470fa7e5")});
  s.push_back(Share{5, hex_secret("1900343f")});
  auto back = combine(s);
  REQUIRE(back);
  CHECK(hex(*back) == "524f4f54");
}

TEST_CASE("split and combine: property test over random secrets, thresholds and subsets") {
  std::mt19937 rng(Catch::rngSeed());
  for (int round = 0; round < 300; ++round) {
    const unsigned n = std::uniform_int_distribution<unsigned>(2, round % 10 == 0 ? 255 : 12)(rng);
    const unsigned m = std::uniform_int_distribution<unsigned>(2, n)(rng);
    const std::size_t len = std::uniform_int_distribution<std::size_t>(16, 48)(rng);
    kms::SecureBytes secret = kms::SecureBytes::random(len);
    auto shares = cli::shamir::split(secret, m, n);
    REQUIRE(shares);
    REQUIRE(shares->size() == n);
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::shuffle(order.begin(), order.end(), rng);
    // Any subset of size >= m (in any order) gives the secret back.
    const unsigned k = std::uniform_int_distribution<unsigned>(m, n)(rng);
    auto good = combine(pick(*shares, std::vector<std::size_t>(order.begin(), order.begin() + k)));
    REQUIRE(good);
    REQUIRE(*good == secret);
    // m - 1 shares give a wrong value (>= 16 random bytes: a false match is 2^-128).
    if (m - 1 >= 2) {
      auto bad = combine(pick(*shares, std::vector<std::size_t>(order.begin(), order.begin() + (m - 1))));
      REQUIRE(bad);
      REQUIRE_FALSE(*bad == secret);
    }
  }
}

TEST_CASE("split and combine at the edges: 2 of 2, 255 of 255") {
  kms::SecureBytes secret = kms::SecureBytes::random(32);
  auto two = cli::shamir::split(secret, 2, 2);
  REQUIRE(two);
  auto b2 = combine(*two);
  REQUIRE(b2);
  CHECK(*b2 == secret);
  auto all = cli::shamir::split(secret, 255, 255);
  REQUIRE(all);
  auto b255 = combine(*all);
  REQUIRE(b255);
  CHECK(*b255 == secret);
  std::vector<Share> fewer = pick(*all, [] {
    std::vector<std::size_t> v(254);
    std::iota(v.begin(), v.end(), std::size_t{1});
    return v;
  }());
  auto b254 = combine(fewer);
  REQUIRE(b254);
  CHECK_FALSE(*b254 == secret);
}

TEST_CASE("split and combine refuse bad parameters") {
  kms::SecureBytes secret = kms::SecureBytes::random(32);
  CHECK_FALSE(cli::shamir::split(secret, 1, 5));
  CHECK_FALSE(cli::shamir::split(secret, 6, 5));
  CHECK_FALSE(cli::shamir::split(secret, 2, 256));
  CHECK_FALSE(cli::shamir::split(kms::SecureBytes(), 2, 3));
  auto shares = cli::shamir::split(secret, 2, 3);
  REQUIRE(shares);
  std::vector<Share> dup = pick(*shares, {0, 0});
  auto d = combine(dup);
  REQUIRE_FALSE(d);
  CHECK(d.error().message.find("twice") != std::string::npos);
  std::vector<Share> zero = pick(*shares, {0, 1});
  zero[0].x = 0;
  CHECK_FALSE(combine(zero));
  std::vector<Share> one = pick(*shares, {0});
  CHECK_FALSE(combine(one));
}
