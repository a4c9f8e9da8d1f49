// Aead: known answers (GCM spec / NIST test cases with 96-bit IVs, RFC 8439),
// round trips, every tampering case, argument checks, nonce uniqueness.
#include <catch2/catch.hpp>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <climits>
#include <cstring>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "rootseal/kms/aead.hpp"
#include "rootseal/kms/encoding.hpp"

using namespace rootseal::kms;

namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes hex(std::string_view text) {
  auto decoded = hex_decode(text);
  REQUIRE(decoded.has_value());
  return *decoded;
}

SecureBytes key_hex(std::string_view text) { return SecureBytes::copy_of(std::span<const std::uint8_t>(hex(text))); }

std::unique_ptr<Aead> make(KeyType type, const SecureBytes& key) {
  auto aead = make_aead(type, key);
  REQUIRE(aead.has_value());
  return std::move(*aead);
}

Bytes concat(const Bytes& a, const Bytes& b, const Bytes& c) {
  Bytes out(a);
  out.insert(out.end(), b.begin(), b.end());
  out.insert(out.end(), c.begin(), c.end());
  return out;
}

Bytes to_bytes(const SecureBytes& s) { return {s.data(), s.data() + s.size()}; }

struct Kat {
  const char* name;
  KeyType type;
  const char* key;
  const char* nonce;
  const char* aad;
  const char* plaintext;
  const char* ciphertext;
  const char* tag;
};

// GCM: test cases 1-4 and 13-16 of McGrew & Viega, "The Galois/Counter Mode of
// Operation" (the NIST GCM validation cases with a 96-bit IV).
// ChaCha20-Poly1305: RFC 8439 §2.8.2.
constexpr const char* kGcmP64 =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
constexpr const char* kGcmP60 =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
constexpr const char* kGcmK128 = "feffe9928665731c6d6a8f9467308308";
constexpr const char* kGcmK256 = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
constexpr const char* kGcmA = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
constexpr const char* kGcmIv = "cafebabefacedbaddecaf888";
constexpr const char* kZeroIv = "000000000000000000000000";

const std::array<Kat, 9> kKats = {{
    {"GCM TC1 (AES-128, empty)", KeyType::aes128_gcm96, "00000000000000000000000000000000", kZeroIv, "", "", "",
     "58e2fccefa7e3061367f1d57a4e7455a"},
    {"GCM TC2 (AES-128)", KeyType::aes128_gcm96, "00000000000000000000000000000000", kZeroIv, "",
     "00000000000000000000000000000000", "0388dace60b6a392f328c2b971b2fe78", "ab6e47d42cec13bdf53a67b21257bddf"},
    {"GCM TC3 (AES-128)", KeyType::aes128_gcm96, kGcmK128, kGcmIv, "", kGcmP64,
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
     "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
     "4d5c2af327cd64a62cf35abd2ba6fab4"},
    {"GCM TC4 (AES-128, AAD)", KeyType::aes128_gcm96, kGcmK128, kGcmIv, kGcmA, kGcmP60,
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
     "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
     "5bc94fbc3221a5db94fae95ae7121a47"},
    {"GCM TC13 (AES-256, empty)", KeyType::aes256_gcm96,
     "0000000000000000000000000000000000000000000000000000000000000000", kZeroIv, "", "", "",
     "530f8afbc74536b9a963b4f1c4cb738b"},
    {"GCM TC14 (AES-256)", KeyType::aes256_gcm96, "0000000000000000000000000000000000000000000000000000000000000000",
     kZeroIv, "", "00000000000000000000000000000000", "cea7403d4d606b6e074ec5d3baf39d18",
     "d0d1c8a799996bf0265b98b5d48ab919"},
    {"GCM TC15 (AES-256)", KeyType::aes256_gcm96, kGcmK256, kGcmIv, "", kGcmP64,
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    {"GCM TC16 (AES-256, AAD)", KeyType::aes256_gcm96, kGcmK256, kGcmIv, kGcmA, kGcmP60,
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
    {"RFC 8439 2.8.2 (ChaCha20-Poly1305)", KeyType::chacha20_poly1305,
     "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f", "070000004041424344454647",
     "50515253c0c1c2c3c4c5c6c7",
     "4c616469657320616e642047656e746c656d656e206f662074686520636c6173"
     "73206f66202739393a204966204920636f756c64206f6666657220796f75206f"
     "6e6c79206f6e652074697020666f7220746865206675747572652c2073756e73"
     "637265656e20776f756c642062652069742e",
     "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
     "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
     "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
     "3ff4def08e4b7a9de576d26586cec64b6116",
     "1ae10b594f09e26a7e902ecbd0600691"},
}};

constexpr std::array<KeyType, 3> kAllTypes = {KeyType::aes128_gcm96, KeyType::aes256_gcm96, KeyType::chacha20_poly1305};

}  // namespace

TEST_CASE("Aead known answers: seal_with_nonce and open", "[aead]") {
  for (const Kat& kat : kKats) {
    INFO(kat.name);
    const SecureBytes key = key_hex(kat.key);
    auto aead = make(kat.type, key);
    const Bytes nonce = hex(kat.nonce), aad = hex(kat.aad), plaintext = hex(kat.plaintext);
    const Bytes expected = concat(nonce, hex(kat.ciphertext), hex(kat.tag));

    // Three rounds: the first uses a fresh copy of the keyed template, the
    // later ones a pooled context that already carried a message.
    for (int round = 0; round < 3; ++round) {
      auto sealed = aead->seal_with_nonce(nonce, plaintext, aad);
      REQUIRE(sealed.has_value());
      CHECK(*sealed == expected);
      auto opened = aead->open(expected, aad);
      REQUIRE(opened.has_value());
      CHECK(to_bytes(*opened) == plaintext);
    }
  }
}

TEST_CASE("Aead round trip with random nonces, empty plaintext and empty AAD", "[aead]") {
  for (KeyType type : kAllTypes) {
    INFO(to_string(type));
    auto aead = make(type, SecureBytes::random(key_size(type)));
    for (std::size_t len : {0UL, 1UL, 15UL, 16UL, 17UL, 1024UL, 70000UL}) {
      Bytes plaintext(len);
      for (std::size_t i = 0; i < len; ++i) plaintext[i] = static_cast<std::uint8_t>(i * 7);
      for (const Bytes& aad : {Bytes{}, Bytes{1, 2, 3}}) {
        auto sealed = aead->seal(plaintext, aad);
        REQUIRE(sealed.has_value());
        CHECK(sealed->size() == len + Aead::kOverhead);
        auto opened = aead->open(*sealed, aad);
        REQUIRE(opened.has_value());
        CHECK(to_bytes(*opened) == plaintext);
      }
    }
  }
}

TEST_CASE("Aead rejects every kind of tampering", "[aead]") {
  for (KeyType type : kAllTypes) {
    INFO(to_string(type));
    const SecureBytes key = SecureBytes::random(key_size(type));
    auto aead = make(type, key);
    const Bytes plaintext = {'s', 'e', 'c', 'r', 'e', 't', ' ', 'd', 'a', 't', 'a'};
    const Bytes aad = {'c', 't', 'x'};
    auto sealed_result = aead->seal(plaintext, aad);
    REQUIRE(sealed_result.has_value());
    const Bytes sealed = *sealed_result;

    auto expect_failure = [&](const Bytes& input, const Bytes& with_aad, Errc code) {
      auto opened = aead->open(input, with_aad);
      REQUIRE_FALSE(opened.has_value());
      CHECK(opened.error().code == code);
    };

    SECTION("flipped bit in the nonce, the ciphertext or the tag") {
      for (std::size_t i = 0; i < sealed.size(); ++i) {
        for (int bit : {0, 7}) {
          Bytes bad = sealed;
          bad[i] ^= static_cast<std::uint8_t>(1 << bit);
          INFO("byte " << i << " bit " << bit);
          expect_failure(bad, aad, Errc::decryption_failed);
        }
      }
    }
    SECTION("truncated") {
      Bytes one_short(sealed.begin(), sealed.end() - 1);  // still >= 28 bytes: the tag is wrong
      expect_failure(one_short, aad, Errc::decryption_failed);
      expect_failure(Bytes(sealed.begin(), sealed.begin() + Aead::kOverhead), aad, Errc::decryption_failed);
      expect_failure(Bytes(sealed.begin(), sealed.begin() + Aead::kOverhead - 1), aad, Errc::malformed_ciphertext);
      expect_failure(Bytes{}, aad, Errc::malformed_ciphertext);
      Bytes extended = sealed;
      extended.push_back(0);
      expect_failure(extended, aad, Errc::decryption_failed);
    }
    SECTION("wrong associated data") {
      expect_failure(sealed, Bytes{}, Errc::decryption_failed);
      expect_failure(sealed, Bytes{'c', 't', 'y'}, Errc::decryption_failed);
      expect_failure(sealed, Bytes{'c', 't', 'x', 0}, Errc::decryption_failed);
    }
    SECTION("wrong key") {
      auto other = make(type, SecureBytes::random(key_size(type)));
      auto opened = other->open(sealed, aad);
      REQUIRE_FALSE(opened.has_value());
      CHECK(opened.error().code == Errc::decryption_failed);
    }
    SECTION("after failures the same Aead still works") {
      Bytes bad = sealed;
      bad.back() ^= 1;
      expect_failure(bad, aad, Errc::decryption_failed);
      auto opened = aead->open(sealed, aad);
      REQUIRE(opened.has_value());
      CHECK(to_bytes(*opened) == plaintext);
    }
  }
}

TEST_CASE("Aead failure messages carry no secret", "[aead]") {
  auto aead = make(KeyType::aes256_gcm96, SecureBytes::random(32));
  const Bytes plaintext = {'T', 'O', 'P', 'S', 'E', 'C', 'R', 'E', 'T'};
  auto sealed = aead->seal(plaintext, {});
  REQUIRE(sealed.has_value());
  Bytes bad = *sealed;
  bad[Aead::kNonceSize] ^= 1;
  auto opened = aead->open(bad, {});
  REQUIRE_FALSE(opened.has_value());
  CHECK(opened.error().code == Errc::decryption_failed);
  CHECK(opened.error().message.find("TOPSECRET") == std::string::npos);
  CHECK_THAT(opened.error().message, Catch::Contains("authentication failed"));
}

TEST_CASE("make_aead checks the key size", "[aead]") {
  for (KeyType type : kAllTypes) {
    for (std::size_t size : {0UL, 1UL, 15UL, 16UL, 17UL, 24UL, 31UL, 32UL, 33UL, 64UL}) {
      INFO(to_string(type) << " key of " << size << " bytes");
      auto aead = make_aead(type, SecureBytes(size));
      if (size == key_size(type)) {
        CHECK(aead.has_value());
      } else {
        REQUIRE_FALSE(aead.has_value());
        CHECK(aead.error().code == Errc::invalid_argument);
      }
    }
  }
}

TEST_CASE("seal_with_nonce accepts only 12-byte nonces", "[aead]") {
  auto aead = make(KeyType::aes256_gcm96, SecureBytes::random(32));
  for (std::size_t size : {0UL, 1UL, 8UL, 11UL, 13UL, 16UL, 64UL}) {
    INFO("nonce of " << size << " bytes");
    const Bytes nonce(size, 0x42);
    auto sealed = aead->seal_with_nonce(nonce, Bytes{1}, {});
    REQUIRE_FALSE(sealed.has_value());
    CHECK(sealed.error().code == Errc::invalid_argument);
  }
}

TEST_CASE("Aead rejects inputs beyond INT_MAX without touching them", "[aead]") {
  // Address space only: PROT_READ + MAP_NORESERVE costs no memory, and the
  // call must refuse before reading a byte.
  const std::size_t huge = static_cast<std::size_t>(INT_MAX) + 1;
  void* region = ::mmap(nullptr, huge, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  REQUIRE(region != MAP_FAILED);
  const std::span<const std::uint8_t> big(static_cast<const std::uint8_t*>(region), huge);
  auto aead = make(KeyType::aes256_gcm96, SecureBytes::random(32));

  auto sealed = aead->seal(big, {});
  REQUIRE_FALSE(sealed.has_value());
  CHECK(sealed.error().code == Errc::invalid_argument);
  auto with_aad = aead->seal(Bytes{1}, big);
  REQUIRE_FALSE(with_aad.has_value());
  CHECK(with_aad.error().code == Errc::invalid_argument);
  auto opened = aead->open(big, {});
  REQUIRE_FALSE(opened.has_value());
  CHECK(opened.error().code == Errc::invalid_argument);
  ::munmap(region, huge);
}

TEST_CASE("Random nonces do not repeat across calls and threads", "[aead]") {
  auto aead = make(KeyType::aes256_gcm96, SecureBytes::random(32));
  constexpr int kThreads = 4;
  constexpr int kPerThread = 3000;  // spans many refills of the per-thread batch
  // Nonces as std::string keys (GCC 12 misreports std::set<std::vector<uint8_t>> under -O3).
  std::vector<std::vector<std::string>> nonces(kThreads);
  std::vector<int> failures(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const Bytes plaintext(33, static_cast<std::uint8_t>(t));
      for (int i = 0; i < kPerThread; ++i) {
        auto sealed = aead->seal(plaintext, {});
        auto opened = sealed ? aead->open(*sealed, {}) : Result<SecureBytes>(fail(Errc::internal, "seal"));
        if (!opened || to_bytes(*opened) != plaintext) {
          ++failures[static_cast<std::size_t>(t)];
          continue;
        }
        nonces[static_cast<std::size_t>(t)].emplace_back(reinterpret_cast<const char*>(sealed->data()),
                                                         Aead::kNonceSize);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::set<std::string> unique;
  for (int t = 0; t < kThreads; ++t) {
    CHECK(failures[static_cast<std::size_t>(t)] == 0);
    unique.insert(nonces[static_cast<std::size_t>(t)].begin(), nonces[static_cast<std::size_t>(t)].end());
  }
  CHECK(unique.size() == static_cast<std::size_t>(kThreads * kPerThread));
}

TEST_CASE("A forked child does not reuse the parent's pending nonces", "[aead]") {
  auto aead = make(KeyType::aes256_gcm96, SecureBytes::random(32));
  REQUIRE(aead->seal(Bytes{1}, {}).has_value());  // the parent now holds a partly used batch

  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(fds[0]);
    auto sealed = aead->seal(Bytes{1}, {});
    const bool ok = sealed.has_value() &&
                    ::write(fds[1], sealed->data(), Aead::kNonceSize) == static_cast<ssize_t>(Aead::kNonceSize);
    ::_exit(ok ? 0 : 1);  // no Catch2 teardown in the child
  }
  ::close(fds[1]);
  std::array<std::uint8_t, Aead::kNonceSize> child_nonce{};
  const ssize_t got = ::read(fds[0], child_nonce.data(), child_nonce.size());
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  REQUIRE(got == static_cast<ssize_t>(Aead::kNonceSize));

  auto parent = aead->seal(Bytes{1}, {});
  REQUIRE(parent.has_value());
  const Bytes parent_nonce(parent->begin(), parent->begin() + Aead::kNonceSize);
  CHECK(parent_nonce != Bytes(child_nonce.begin(), child_nonce.end()));
}

TEST_CASE("Key types: names, sizes and parsing", "[aead]") {
  CHECK(to_string(KeyType::aes128_gcm96) == "aes128-gcm96");
  CHECK(to_string(KeyType::aes256_gcm96) == "aes256-gcm96");
  CHECK(to_string(KeyType::chacha20_poly1305) == "chacha20-poly1305");
  CHECK(key_size(KeyType::aes128_gcm96) == 16);
  CHECK(key_size(KeyType::aes256_gcm96) == 32);
  CHECK(key_size(KeyType::chacha20_poly1305) == 32);
  for (KeyType type : kAllTypes) {
    auto parsed = parse_key_type(to_string(type));
    REQUIRE(parsed.has_value());
    CHECK(*parsed == type);
  }
  for (std::string_view bad : {"", "aes256", "AES256-GCM96", "xchacha20-poly1305", "rsa-2048", "aes256-gcm96 "}) {
    auto parsed = parse_key_type(bad);
    REQUIRE_FALSE(parsed.has_value());
    CHECK(parsed.error().code == Errc::invalid_argument);
  }
}
