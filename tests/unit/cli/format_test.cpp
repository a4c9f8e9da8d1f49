// Share files, typed shares, custodian encryption and the transcript chain.
#include <openssl/sha.h>

#include <catch2/catch.hpp>

#include <string>

#include "admin_client.hpp"
#include "cli_test_util.hpp"
#include "custodian.hpp"
#include "share_format.hpp"
#include "temp_dir.hpp"
#include "rootseal/kms/secure_json.hpp"
#include "transcript.hpp"

using namespace rootseal;
using cli::TypedShareReader;

namespace {

// Feeds every line of `text`; returns the completed shares, or the first error.
kms::Result<std::vector<cli::TypedShare>> feed_all(const std::string& text) {
  TypedShareReader r;
  std::vector<cli::TypedShare> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t e = text.find('\n', pos);
    if (e == std::string::npos) e = text.size();
    const std::string line = text.substr(pos, e - pos);
    pos = e + 1;
    auto st = r.feed(std::span(reinterpret_cast<const std::uint8_t*>(line.data()), line.size()));
    if (!st) return std::unexpected(st.error());
    if (*st == TypedShareReader::Status::complete) out.push_back(r.take());
  }
  return out;
}

std::string typed(const std::string& id, unsigned index, unsigned threshold, const kms::SecureBytes& y) {
  auto t = cli::typed_share_text(id, index, threshold, y);
  return std::string(reinterpret_cast<const char*>(t.data()), t.size());
}

}  // namespace

TEST_CASE("typed shares round-trip, also in lower case and without spaces") {
  const std::string id = cli::new_ceremony_id();
  auto y = kms::SecureBytes::random(32);
  const std::string t = typed(id, 7, 3, y);
  CHECK(std::count(t.begin(), t.end(), '\n') == 7);  // a comment line and six share lines
  auto back = feed_all(t);
  REQUIRE(back);
  REQUIRE(back->size() == 1);
  CHECK((*back)[0].ceremony_id == id);
  CHECK((*back)[0].index == 7);
  CHECK((*back)[0].threshold == 3);
  CHECK((*back)[0].y == y);

  std::string lower;
  for (char c : t) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  auto back2 = feed_all(lower);
  REQUIRE(back2);
  CHECK((*back2)[0].y == y);

  // Two shares one after the other, with blank lines and comments between.
  auto y2 = kms::SecureBytes::random(32);
  auto two = feed_all(t + "\n# next\n\n" + typed(id, 8, 3, y2));
  REQUIRE(two);
  REQUIRE(two->size() == 2);
  CHECK((*two)[1].y == y2);
}

TEST_CASE("a typo in any character of any line is caught on that line") {
  const std::string id = cli::new_ceremony_id();
  auto y = kms::SecureBytes::random(32);
  const std::string t = typed(id, 2, 2, y);
  static constexpr char kA[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::size_t caught_by_line = 0;
  std::size_t typos = 0;
  // Skip the comment line; change every share character to its successor.
  const std::size_t first = t.find('\n') + 1;
  for (std::size_t i = first; i < t.size(); ++i) {
    const char c = t[i];
    const char* p = std::strchr(kA, c);
    if (c == ' ' || c == '\n' || p == nullptr) continue;
    // Line numbers are digits outside the alphabet except 2..7: only touch
    // characters after the number.
    const std::size_t line_start = t.rfind('\n', i - 1) + 1;
    if (i < line_start + 3) continue;
    std::string bad = t;
    bad[i] = kA[(p - kA + 1) % 32];
    ++typos;
    auto r = feed_all(bad);
    REQUIRE_FALSE(r);  // never accepted
    if (r.error().message.find("line ") != std::string::npos) ++caught_by_line;
  }
  CHECK(typos == 88 + 12);  // 88 share characters, 6 checksums of 2
  // 10-bit line checksums: all but (rarely) one are caught on their line; the
  // rest by the whole-share check.
  CHECK(caught_by_line + 2 >= typos);
}

TEST_CASE("typed input errors are specific") {
  const std::string id = cli::new_ceremony_id();
  auto y = kms::SecureBytes::random(32);
  std::string t = typed(id, 1, 2, y);
  TypedShareReader r;
  auto feed = [&](const std::string& line) {
    return r.feed(std::span(reinterpret_cast<const std::uint8_t*>(line.data()), line.size()));
  };
  auto st = feed("02  ABCD ABCD ABCD ABCD  AA");
  REQUIRE_FALSE(st);
  CHECK(st.error().message.find("line 01") != std::string::npos);
  st = feed("01  ABCD 0BCD ABCD ABCD  AA");
  REQUIRE_FALSE(st);
  CHECK(st.error().message.find("outside A-Z") != std::string::npos);
  st = feed("01  ABCD ABCD ABCD  AA");
  REQUIRE_FALSE(st);
  CHECK(st.error().message.find("expected 16 characters") != std::string::npos);
  // The real line 01 of `t` with its checksum's last character changed: a
  // mismatch for certain (a made-up checksum could happen to be right).
  const auto start = t.find("\n01 ");
  REQUIRE(start != std::string::npos);
  std::string line = t.substr(start + 1, t.find('\n', start + 1) - start - 1);
  REQUIRE(line.size() >= 2);
  line.back() = line.back() == 'A' ? 'B' : 'A';
  st = feed(line);
  REQUIRE_FALSE(st);
  CHECK(st.error().message.find("checksum") != std::string::npos);
}

TEST_CASE("share files round-trip and are checked on parse") {
  cli::ShareFile f;
  f.ceremony_id = cli::new_ceremony_id();
  f.index = 3;
  f.threshold = 3;
  f.count = 5;
  f.root_kcv = "abcdef";
  f.custodian_name = "carol";
  f.custodian_key_type = "p256";
  f.custodian_fingerprint = std::string(64, 'a');
  f.commitment = std::string(64, 'b');
  f.sealed.scheme = "p256-hkdf-sha256-aes256gcm";
  f.sealed.ephemeral = {1, 2, 3};
  f.sealed.ciphertext = {4, 5, 6, 7};
  const std::string j = cli::share_file_json(f);
  auto back = cli::parse_share_file(j, "x");
  REQUIRE(back);
  CHECK(back->ceremony_id == f.ceremony_id);
  CHECK(back->index == 3);
  CHECK(back->sealed.ciphertext == f.sealed.ciphertext);
  CHECK(back->sealed.ephemeral == f.sealed.ephemeral);
  CHECK_FALSE(cli::parse_share_file("{", "x"));
  CHECK_FALSE(cli::parse_share_file(std::string(j).replace(j.find("\"index\":3"), 9, "\"index\":9"), "x"));
}

TEST_CASE("v2 share files record the root mechanism, v1 files (no mechanism) still parse") {
  cli::ShareFile f;
  f.mechanism = "aes-cbc-pad-hmac";
  f.ceremony_id = cli::new_ceremony_id();
  f.index = 1;
  f.threshold = 2;
  f.count = 2;
  f.root_kcv = "abcdef";
  f.custodian_name = "alice";
  f.custodian_key_type = "x25519";
  f.custodian_fingerprint = std::string(64, 'c');
  f.commitment = std::string(64, 'd');
  f.sealed.scheme = "x25519-hkdf-sha256-aes256gcm";
  f.sealed.ciphertext = {1};
  const std::string j = cli::share_file_json(f);
  CHECK(j.find("\"format\":\"rootseal-share-v2\"") != std::string::npos);
  auto back = cli::parse_share_file(j, "x");
  REQUIRE(back);
  CHECK(back->mechanism == "aes-cbc-pad-hmac");
  CHECK(cli::share_file_json(*back) == j);
  // An unknown mechanism, or none, in a v2 file: refused.
  std::string bad = j;
  bad.replace(bad.find("aes-cbc-pad-hmac"), 16, "rsa-oaep");
  auto r = cli::parse_share_file(bad, "x");
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("unknown root mechanism 'rsa-oaep'") != std::string::npos);
  bad = j;
  bad.erase(bad.find("\"mechanism\""), std::string("\"mechanism\":\"aes-cbc-pad-hmac\",").size());
  CHECK_FALSE(cli::parse_share_file(bad, "x"));
  // The same share as v1 (written before mechanisms were recorded).
  f.mechanism.clear();
  const std::string v1 = cli::share_file_json(f);
  CHECK(v1.find("\"format\":\"rootseal-share-v1\"") != std::string::npos);
  CHECK(v1.find("mechanism") == std::string::npos);
  auto old = cli::parse_share_file(v1, "x");
  REQUIRE(old);
  CHECK(old->mechanism.empty());
  CHECK(cli::secret_size("aes-kwp") == 32);
  CHECK(cli::secret_size("aes-gcm") == 32);
  CHECK(cli::secret_size("aes-cbc-pad-hmac") == 64);
  CHECK(cli::secret_size("rsa-oaep") == 0);
}

TEST_CASE("typed shares of a 64-byte aes-cbc-pad-hmac secret: nine lines, round trip, typos caught") {
  const std::string id = cli::new_ceremony_id();
  auto y = kms::SecureBytes::random(64);
  const std::string t = typed(id, 4, 3, y);
  CHECK(std::count(t.begin(), t.end(), '\n') == 10);  // a comment line and nine share lines
  CHECK(t.find("aes-cbc-pad-hmac") != std::string::npos);
  auto back = feed_all(t);
  REQUIRE(back);
  REQUIRE(back->size() == 1);
  CHECK((*back)[0].mechanism == "aes-cbc-pad-hmac");
  CHECK((*back)[0].ceremony_id == id);
  CHECK((*back)[0].index == 4);
  CHECK((*back)[0].threshold == 3);
  CHECK((*back)[0].y == y);
  // A six-line share and a nine-line one in a row.
  auto y32 = kms::SecureBytes::random(32);
  auto two = feed_all(typed(id, 1, 3, y32) + t);
  REQUIRE(two);
  REQUIRE(two->size() == 2);
  CHECK((*two)[0].mechanism.empty());
  CHECK((*two)[0].y == y32);
  CHECK((*two)[1].y == y);
  // Every character changed: refused, nearly always on its line.
  static constexpr char kA[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::size_t typos = 0, caught_by_line = 0;
  const std::size_t first = t.find('\n') + 1;
  for (std::size_t i = first; i < t.size(); ++i) {
    const char* p = std::strchr(kA, t[i]);
    const std::size_t line_start = t.rfind('\n', i - 1) + 1;
    if (t[i] == ' ' || t[i] == '\n' || p == nullptr || i < line_start + 3) continue;
    std::string bad = t;
    bad[i] = kA[(p - kA + 1) % 32];
    ++typos;
    auto r = feed_all(bad);
    REQUIRE_FALSE(r);
    if (r.error().message.find("line ") != std::string::npos) ++caught_by_line;
  }
  CHECK(typos == 144 + 18);  // 144 share characters, 9 checksums of 2
  CHECK(caught_by_line + 2 >= typos);
  // A nine-line share cut after six lines is not complete.
  std::string six = t.substr(0, t.find("\n07 ") + 1);
  auto cut = feed_all(six);
  REQUIRE(cut);
  CHECK(cut->empty());
}

namespace {

std::vector<std::uint8_t> sha256_of(std::string_view domain, std::span<const std::uint8_t> body) {
  std::vector<std::uint8_t> m(domain.begin(), domain.end());
  m.insert(m.end(), body.begin(), body.end());
  std::vector<std::uint8_t> h(SHA256_DIGEST_LENGTH);
  SHA256(m.data(), m.size(), h.data());
  return h;
}

// The nine typed lines of the 90 bytes `raw`, written here from the format
// (share_format.hpp) with valid line checksums.
std::string typed_lines(const std::vector<std::uint8_t>& raw) {
  static constexpr char kA[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const std::string chars = test::base32(raw);
  std::string out;
  for (std::size_t line = 0; line * 16 < chars.size(); ++line) {
    const std::string part = chars.substr(line * 16, 16);
    std::vector<std::uint8_t> body{static_cast<std::uint8_t>(line + 1)};
    body.insert(body.end(), part.begin(), part.end());
    const auto h = sha256_of("rootseal-typed-line-v1", body);
    const unsigned bits = (static_cast<unsigned>(h[0]) << 2) | (static_cast<unsigned>(h[1]) >> 6);
    out += "0" + std::to_string(line + 1) + "  " + part.substr(0, 4) + " " + part.substr(4, 4) + " " +
           part.substr(8, 4) + " " + part.substr(12, 4) + "  " + kA[(bits >> 5) & 31] + kA[bits & 31] + "\n";
  }
  return out;
}

}  // namespace

TEST_CASE("a nine-line typed share written from the format reads back and another mechanism byte is refused") {
  std::vector<std::uint8_t> raw(90);
  raw[0] = 0x02;
  for (std::size_t i = 1; i < 17; ++i) raw[i] = static_cast<std::uint8_t>(i);
  raw[17] = 5;  // index
  raw[18] = 3;  // threshold
  raw[19] = 3;  // aes-cbc-pad-hmac
  for (std::size_t i = 20; i < 84; ++i) raw[i] = static_cast<std::uint8_t>(i * 7);
  auto seal = [](std::vector<std::uint8_t>& r) {
    const auto h = sha256_of("rootseal-typed-share-v2", std::span<const std::uint8_t>(r.data(), 84));
    std::copy(h.begin(), h.begin() + 6, r.begin() + 84);
  };
  seal(raw);
  auto back = feed_all(typed_lines(raw));
  REQUIRE(back);
  REQUIRE(back->size() == 1);
  CHECK((*back)[0].mechanism == "aes-cbc-pad-hmac");
  CHECK((*back)[0].index == 5);
  CHECK((*back)[0].y == kms::SecureBytes::copy_of(std::span<const std::uint8_t>(raw.data() + 20, 64)));
  // Every line and the whole-share check valid, but the mechanism byte says
  // aes-kwp (1): refused.
  raw[19] = 1;
  seal(raw);
  auto other = feed_all(typed_lines(raw));
  REQUIRE_FALSE(other);
  CHECK(other.error().message.find("does not check out as a whole") != std::string::npos);
}

TEST_CASE("custodian encryption: X25519, P-256 and RSA-OAEP round-trip and bind the share") {
  test::TempDir dir("rootseal-cust");
  for (const std::string kind : {"x25519", "p256", "rsa2048"}) {
    INFO(kind);
    auto kp = test::make_key_pair(dir.path(), "c-" + kind, kind);
    auto pub = cli::load_custodian_public_key(kp.pub);
    REQUIRE(pub);
    auto priv = cli::load_custodian_private_key(kp.priv);
    REQUIRE(priv);
    CHECK(pub->fingerprint == priv->fingerprint);
    const std::string id = cli::new_ceremony_id();
    const auto binding = cli::share_binding(id, 2, 3, 5, pub->fingerprint, "");
    auto share = kms::SecureBytes::random(32);
    auto sealed = cli::seal_share(*pub, binding, share);
    REQUIRE(sealed);
    auto sealed2 = cli::seal_share(*pub, binding, share);
    REQUIRE(sealed2);
    CHECK(sealed->ciphertext != sealed2->ciphertext);  // fresh randomness per share
    auto opened = cli::open_share(*priv, *sealed, binding);
    REQUIRE(opened);
    CHECK(*opened == share);
    // Another index, threshold or ceremony in the binding: refused.
    for (const auto& other :
         {cli::share_binding(id, 3, 3, 5, pub->fingerprint, ""), cli::share_binding(id, 2, 2, 5, pub->fingerprint, ""),
          cli::share_binding(cli::new_ceremony_id(), 2, 3, 5, pub->fingerprint, ""),
          // the v2 binding, which names the root mechanism
          cli::share_binding(id, 2, 3, 5, pub->fingerprint, "aes-kwp"),
          cli::share_binding(id, 2, 3, 5, pub->fingerprint, "aes-cbc-pad-hmac")}) {
      auto r = cli::open_share(*priv, *sealed, other);
      REQUIRE_FALSE(r);
      CHECK(r.error().code == kms::Errc::decryption_failed);
    }
    // Any flipped ciphertext byte: refused.
    for (std::size_t i = 0; i < sealed->ciphertext.size(); i += 7) {
      auto bad = *sealed;
      bad.ciphertext[i] ^= 0x01;
      REQUIRE_FALSE(cli::open_share(*priv, bad, binding));
    }
    // The public key cannot decrypt.
    CHECK_FALSE(cli::open_share(*pub, *sealed, binding));
  }
}

TEST_CASE("unsupported custodian keys are refused") {
  test::TempDir dir("rootseal-cust");
  for (const std::string kind : {"ed25519", "p384", "rsa1024"}) {
    auto kp = test::make_key_pair(dir.path(), "c-" + kind, kind);
    auto pub = cli::load_custodian_public_key(kp.pub);
    REQUIRE_FALSE(pub);
    CHECK(pub.error().code == kms::Errc::invalid_argument);
  }
  CHECK_FALSE(cli::load_custodian_public_key(dir.path() / "missing.pem"));
}

TEST_CASE("the transcript chain detects edits, removals and secrets") {
  test::TempDir dir("rootseal-tr");
  cli::Transcript t(dir.path() / "tr");
  for (int i = 0; i < 3; ++i) {
    boost::json::object o;
    o["kind"] = "verify";
    o["ceremony_id"] = cli::new_ceremony_id();
    o["n"] = i;
    REQUIRE(t.append(o));
  }
  auto a = t.audit();
  REQUIRE(a.problems.empty());
  REQUIRE(a.entries.size() == 3);
  CHECK(a.entries[1].str("prev_sha256") == a.entries[0].sha256);
  CHECK(a.head == a.entries[2].sha256);

  SECTION("an edited entry breaks the link after it") {
    auto p = a.entries[0].path;
    std::string s = test::read_file(p);
    s.replace(s.find("\"n\": 0"), 6, "\"n\": 5");
    test::write_file(p, s);
    auto b = t.audit();
    REQUIRE(b.problems.size() == 1);
    CHECK(b.problems[0].find(a.entries[1].path.filename().string()) != std::string::npos);
    CHECK_FALSE(t.load());
    boost::json::object o;
    o["kind"] = "verify";
    CHECK_FALSE(t.append(o));  // never extends a broken chain
  }
  SECTION("a removed entry is a gap") {
    std::filesystem::remove(a.entries[1].path);
    auto b = t.audit();
    CHECK(b.problems.size() >= 2);
  }
  SECTION("the last entry removed: only the recorded head shows it") {
    std::filesystem::remove(a.entries[2].path);
    auto b = t.audit();
    CHECK(b.problems.empty());
    CHECK(b.head != a.head);
  }
  SECTION("a member named like a secret is a problem") {
    boost::json::object o;
    o["kind"] = "verify";
    o["pin"] = "1234";
    REQUIRE(t.append(o));
    CHECK_FALSE(t.audit().problems.empty());
  }
}

TEST_CASE("an admin answer (a new token, say) is parsed into locked memory, not copied to the heap") {
  cli::AdminAnswer answer(kms::SecureBytes::copy_of(
      std::string_view(R"({"ok":true,"data":{"token":"rs.0123456789abcdef0123456789abcdef0123456789abcdef"}})")));
  auto data = answer.data();
  REQUIRE(data);
  const auto& token = (*data)->at("token").as_string();
  CHECK(token.starts_with("rs.0123"));
  CHECK(kms::is_secure_json_storage(token.storage()));
  CHECK(kms::is_secure_json_storage((*data)->storage()));
}

TEST_CASE("a transcript entry whose sequence is no int64 is a problem, never an exception") {
  test::TempDir dir("rootseal-tr");
  cli::Transcript t(dir.path() / "tr");
  boost::json::object o;
  o["kind"] = "verify";
  REQUIRE(t.append(o));
  const auto p = t.audit().entries.at(0).path;
  std::string s = test::read_file(p);
  s.replace(s.find("\"sequence\": 1"), 13, "\"sequence\": 11111111111111111111");
  test::write_file(p, s);
  cli::Transcript::Audit a;
  REQUIRE_NOTHROW(a = t.audit());
  REQUIRE(a.problems.size() == 1);
  CHECK(a.problems[0].find("does not match its file name") != std::string::npos);
}
