// Project Wycheproof sweep over AES-GCM, ChaCha20-Poly1305, AES-KWP and
// HKDF-SHA256 (vectors in rootseal::test::vectors_dir(): tests/vectors/wycheproof,
// see its README.md). A missing folder or file fails the test: the sweep is
// never reported as passed without having run.
//
// Every test case is checked against its "result":
//  - valid: our output equals the vector's, and the reverse operation agrees;
//  - invalid: we refuse it;
//  - acceptable (none in the current files): either outcome is allowed, but
//    if we accept, the output must be the vector's.
// Cases the API cannot express (IV other than 96 bits, AES-192 AEAD keys, tags
// other than 128 bits) must be refused by the API itself, and are counted.
#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "paths.hpp"
#include "rootseal/kms/aead.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/key_wrap.hpp"

using namespace rootseal::kms;
namespace json = boost::json;

namespace {

using Bytes = std::vector<std::uint8_t>;

const std::filesystem::path kVectorsDir = rootseal::test::vectors_dir();

struct Tally {
  int valid = 0;
  int invalid = 0;
  int acceptable = 0;
  int outside_api = 0;  // refused by the API, as required
  int mismatches = 0;   // anything else (each also fails a CHECK)
};

// The parsed vector file; a missing or unreadable file fails the test.
json::value load(const char* file) {
  const auto path = kVectorsDir / file;
  INFO("Wycheproof vectors expected at " << path.string() << " (ROOTSEAL_VECTORS_DIR)");
  REQUIRE(std::filesystem::is_regular_file(path));
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream text;
  text << in.rdbuf();
  boost::system::error_code ec;
  json::value doc = json::parse(text.str(), ec);
  REQUIRE_FALSE(ec);
  REQUIRE(doc.is_object());
  return doc;
}

std::string str(const json::value& v, const char* key) { return std::string(v.at(key).as_string()); }

Bytes hex(const json::value& v, const char* key) {
  auto decoded = hex_decode(v.at(key).as_string());
  REQUIRE(decoded.has_value());
  return *decoded;
}

SecureBytes secret(const json::value& v, const char* key) {
  return SecureBytes::copy_of(std::span<const std::uint8_t>(hex(v, key)));
}

Bytes to_bytes(const SecureBytes& s) { return {s.data(), s.data() + s.size()}; }

Bytes concat(const Bytes& a, const Bytes& b, const Bytes& c) {
  Bytes out(a);
  out.insert(out.end(), b.begin(), b.end());
  out.insert(out.end(), c.begin(), c.end());
  return out;
}

std::int64_t group_int(const json::value& group, const char* key) { return group.at(key).to_number<std::int64_t>(); }

void report(const char* file, const Tally& t) {
  WARN("Wycheproof " << file << ": " << t.valid << " valid, " << t.invalid << " invalid, " << t.acceptable
                     << " acceptable cases checked; " << t.outside_api << " cases outside the API confirmed refused; "
                     << t.mismatches << " mismatches");
  CHECK(t.mismatches == 0);
  CHECK(t.valid + t.invalid + t.acceptable + t.outside_api > 0);
}

// --- AEAD ------------------------------------------------------------------

std::optional<KeyType> aead_type(bool chacha, std::int64_t key_bits) {
  if (chacha) return key_bits == 256 ? std::optional(KeyType::chacha20_poly1305) : std::nullopt;
  if (key_bits == 128) return KeyType::aes128_gcm96;
  if (key_bits == 256) return KeyType::aes256_gcm96;
  return std::nullopt;
}

// A key the API cannot take (AES-192): every AEAD type must refuse it.
bool refuses_key(const SecureBytes& key) {
  for (KeyType type : {KeyType::aes128_gcm96, KeyType::aes256_gcm96, KeyType::chacha20_poly1305}) {
    auto aead = make_aead(type, key);
    if (aead.has_value() || aead.error().code != Errc::invalid_argument) return false;
  }
  return true;
}

// Checks one expressible case; returns false on a mismatch.
bool check_aead_case(const Aead& aead, const json::value& test, const std::string& result) {
  const Bytes iv = hex(test, "iv"), aad = hex(test, "aad"), msg = hex(test, "msg");
  const Bytes sealed = concat(iv, hex(test, "ct"), hex(test, "tag"));
  auto opened = aead.open(sealed, aad);
  if (result == "valid") {
    auto ours = aead.seal_with_nonce(iv, msg, aad);
    return ours.has_value() && *ours == sealed && opened.has_value() && to_bytes(*opened) == msg;
  }
  if (result == "invalid") return !opened.has_value() && opened.error().code == Errc::decryption_failed;
  return !opened.has_value() || to_bytes(*opened) == msg;  // acceptable
}

void count(Tally& t, const std::string& result) {
  if (result == "valid")
    ++t.valid;
  else if (result == "invalid")
    ++t.invalid;
  else
    ++t.acceptable;
}

void sweep_aead(const char* file, bool chacha) {
  const json::value doc = load(file);
  Tally tally;
  for (const json::value& group : doc.at("testGroups").as_array()) {
    const auto type = aead_type(chacha, group_int(group, "keySize"));
    const bool nonce_ok = group_int(group, "ivSize") == 96;
    const bool tag_ok = group_int(group, "tagSize") == 128;
    for (const json::value& test : group.at("tests").as_array()) {
      const std::string result = str(test, "result");
      INFO(file << " tcId " << test.at("tcId").as_int64() << " (" << str(test, "comment") << ")");
      const SecureBytes key = secret(test, "key");
      bool ok = false;
      if (!type) {
        ok = refuses_key(key);
        ++tally.outside_api;
      } else {
        auto aead = make_aead(*type, key);
        REQUIRE(aead.has_value());
        if (!nonce_ok) {
          auto sealed = (*aead)->seal_with_nonce(hex(test, "iv"), hex(test, "msg"), hex(test, "aad"));
          ok = !sealed.has_value() && sealed.error().code == Errc::invalid_argument;
          ++tally.outside_api;
        } else if (!tag_ok) {
          // A tag of another length cannot authenticate as our fixed 16-byte tag.
          auto opened = (*aead)->open(concat(hex(test, "iv"), hex(test, "ct"), hex(test, "tag")), hex(test, "aad"));
          ok = !opened.has_value();
          ++tally.outside_api;
        } else {
          ok = check_aead_case(**aead, test, result);
          count(tally, result);
        }
      }
      if (!ok) ++tally.mismatches;
      CHECK(ok);
    }
  }
  report(file, tally);
}

}  // namespace

TEST_CASE("Wycheproof AES-GCM", "[wycheproof][aead]") { sweep_aead("aes_gcm_test.json", false); }

TEST_CASE("Wycheproof ChaCha20-Poly1305", "[wycheproof][aead]") { sweep_aead("chacha20_poly1305_test.json", true); }

TEST_CASE("Wycheproof AES-KWP", "[wycheproof][key_wrap]") {
  const char* file = "aes_kwp_test.json";
  const json::value doc = load(file);
  Tally tally;
  for (const json::value& group : doc.at("testGroups").as_array()) {
    for (const json::value& test : group.at("tests").as_array()) {
      const std::string result = str(test, "result");
      INFO(file << " tcId " << test.at("tcId").as_int64() << " (" << str(test, "comment") << ")");
      const SecureBytes kek = secret(test, "key");
      const Bytes msg = hex(test, "msg"), ct = hex(test, "ct");
      auto unwrapped = aes_kwp_unwrap(kek, ct);
      bool ok = false;
      if (result == "valid") {
        auto wrapped = aes_kwp_wrap(kek, msg);
        ok = wrapped.has_value() && *wrapped == ct && unwrapped.has_value() && to_bytes(*unwrapped) == msg;
      } else if (result == "invalid") {
        ok = !unwrapped.has_value() && unwrapped.error().code == Errc::decryption_failed;
      } else {
        ok = !unwrapped.has_value() || to_bytes(*unwrapped) == msg;
      }
      count(tally, result);
      if (!ok) ++tally.mismatches;
      CHECK(ok);
    }
  }
  report(file, tally);
}

TEST_CASE("Wycheproof HKDF-SHA256", "[wycheproof][hkdf]") {
  const char* file = "hkdf_sha256_test.json";
  const json::value doc = load(file);
  Tally tally;
  for (const json::value& group : doc.at("testGroups").as_array()) {
    for (const json::value& test : group.at("tests").as_array()) {
      const std::string result = str(test, "result");
      INFO(file << " tcId " << test.at("tcId").as_int64() << " (" << str(test, "comment") << ")");
      const auto size = test.at("size").to_number<std::size_t>();
      auto okm = hkdf_sha256(secret(test, "ikm"), hex(test, "salt"), hex(test, "info"), size);
      bool ok = false;
      if (result == "valid") {
        ok = okm.has_value() && to_bytes(*okm) == hex(test, "okm");
      } else if (result == "invalid") {
        ok = !okm.has_value() && okm.error().code == Errc::invalid_argument;
      } else {
        ok = !okm.has_value() || to_bytes(*okm) == hex(test, "okm");
      }
      count(tally, result);
      if (!ok) ++tally.mismatches;
      CHECK(ok);
    }
  }
  report(file, tally);
}
