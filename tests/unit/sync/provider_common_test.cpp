// Decoding strategies, the secure memory resources, and the rate limiter.
#include <catch2/catch.hpp>

#include <memory_resource>
#include <string>
#include <vector>

#include "provider_test_util.hpp"
#include "providers/cloud_auth.hpp"
#include "providers/conjur/conjur.hpp"
#include "rootseal/kms/encoding.hpp"
#include "providers/common.hpp"
#include "rootseal/kms/secure_json.hpp"
#include "rootseal/kms/secure_memory_resource.hpp"
#include "secure_json.hpp"
#include "rootseal/sync/provider.hpp"

using namespace rootseal;
using namespace rootseal::test;

TEST_CASE("decoding: ESO strategies None, Base64, Base64URL, Auto, with Go's base64 rules") {
  using sync::DecodingStrategy;
  auto dec = [](DecodingStrategy s, std::string in) { return sync::apply_decoding(s, secure(in)); };
  CHECK(text(*dec(DecodingStrategy::none, "aGk=")) == "aGk=");
  CHECK(text(*dec(DecodingStrategy::base64, "aGk=")) == "hi");
  CHECK(text(*dec(DecodingStrategy::base64, "")) == "");
  CHECK(text(*dec(DecodingStrategy::base64, "+/8=")) == "\xfb\xff");
  CHECK(text(*dec(DecodingStrategy::base64url, "-_8=")) == "\xfb\xff");
  // Go's StdEncoding is not Strict: line ends are skipped anywhere, and the
  // unused bits of the last quantum are ignored.
  CHECK(text(*dec(DecodingStrategy::base64, "aG\r\nk=\n")) == "hi");
  CHECK(text(*dec(DecodingStrategy::base64, "aGl=")) == "hi");
  CHECK(text(*dec(DecodingStrategy::base64, "aR==")) == "i");
  CHECK_FALSE(dec(DecodingStrategy::base64, "aGk"));  // padding is required
  CHECK_FALSE(dec(DecodingStrategy::base64url, "-_8"));
  CHECK_FALSE(dec(DecodingStrategy::base64, "aQ="));  // "x=" must be "x=="
  CHECK_FALSE(dec(DecodingStrategy::base64, "-_8="));
  CHECK_FALSE(dec(DecodingStrategy::base64url, "+/8="));
  CHECK_FALSE(dec(DecodingStrategy::base64, "a"));
  CHECK_FALSE(dec(DecodingStrategy::base64, "aGk=="));  // data after the padding
  CHECK_FALSE(dec(DecodingStrategy::base64, "aQ==aQ=="));
  CHECK_FALSE(dec(DecodingStrategy::base64, "a==="));
  CHECK_FALSE(dec(DecodingStrategy::base64, "===="));
  CHECK_FALSE(dec(DecodingStrategy::base64, "aG k="));
  CHECK(dec(DecodingStrategy::base64, "!!!!").error().code == kms::Errc::bad_base64);
  CHECK(text(*dec(DecodingStrategy::auto_detect, "aGk=")) == "hi");
  CHECK(text(*dec(DecodingStrategy::auto_detect, "-_8=")) == "\xfb\xff");
  CHECK(text(*dec(DecodingStrategy::auto_detect, "-_8")) == "-_8");
  CHECK(text(*dec(DecodingStrategy::auto_detect, "not base64!")) == "not base64!");
  // ESO's guide (guides/decoding-strategy): with Auto, "Gustavo" and "Fring"
  // stay as they are and "aGFwcHkgc3RyZWV0" becomes "happy street".
  CHECK(text(*dec(DecodingStrategy::auto_detect, "Gustavo")) == "Gustavo");
  CHECK(text(*dec(DecodingStrategy::auto_detect, "Fring")) == "Fring");
  CHECK(text(*dec(DecodingStrategy::auto_detect, "aGFwcHkgc3RyZWV0")) == "happy street");
  // Four letters are whole base64 as far as Go is concerned: ESO decodes them too.
  CHECK(dec(DecodingStrategy::auto_detect, "Walt")->size() == 3);

  CHECK(*sync::parse_decoding_strategy("") == DecodingStrategy::none);
  CHECK(*sync::parse_decoding_strategy("Base64URL") == DecodingStrategy::base64url);
  CHECK(*sync::parse_decoding_strategy("Auto") == DecodingStrategy::auto_detect);
  auto bad = sync::parse_decoding_strategy("base64");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("Base64URL") != std::string::npos);
}

TEST_CASE("a token answer's expires_in is bounded before it meets a clock") {
  using std::chrono::seconds;
  const auto of = [](std::string_view j) { return sync::providers::expires_in(boost::json::parse(j)); };
  CHECK(of(R"({"expires_in":3600})") == seconds(3600));
  CHECK(of(R"({"expires_in":"86399"})") == seconds(86399));
  CHECK(of(R"({})") == seconds(3599));
  CHECK(of(R"({"expires_in":9223372036854775807})") == seconds(86400));
  CHECK(of(R"({"expires_in":"9223372036854775807"})") == seconds(86400));
  CHECK(of(R"({"expires_in":-9223372036854775807})") == seconds(0));
}

TEST_CASE("Entra client assertion form: jwt-bearer type, the assertion percent-encoded, no secret") {
  const auto jwt = kms::SecureBytes::copy_of(std::string_view("eyJh.eyJz+/=.c2ln"));
  const auto form = sync::providers::microsoft_assertion_form("0c5d-app", "https://vault.azure.net/.default", jwt);
  CHECK(std::string(kms::as_view(form)) ==
        "grant_type=client_credentials&client_id=0c5d-app&scope=https%3A%2F%2Fvault.azure.net%2F.default"
        "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
        "&client_assertion=eyJh.eyJz%2B%2F%3D.c2ln");
}

TEST_CASE("Google STS token-exchange form and the generateAccessToken answer") {
  const auto jwt = kms::SecureBytes::copy_of(std::string_view("eyJh.eyJz.c2/n"));
  const auto form = sync::providers::google_sts_form("//iam.googleapis.com/projects/1/locations/global/x", jwt);
  CHECK(std::string(kms::as_view(form)) ==
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
        "&audience=%2F%2Fiam.googleapis.com%2Fprojects%2F1%2Flocations%2Fglobal%2Fx"
        "&scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcloud-platform"
        "&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"
        "&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&subject_token=eyJh.eyJz.c2%2Fn");

  using namespace std::chrono;
  const auto now = sys_days{year{2026} / 12 / 7} + hours{9};
  auto ok = sync::providers::parse_generate_access_token(
      R"({"accessToken":"ya29.c.abc","expireTime":"2026-12-07T10:00:00Z"})", now);
  REQUIRE(ok);
  CHECK(std::string(kms::as_view(ok->first)) == "ya29.c.abc");
  CHECK(ok->second == seconds(3600));
  // An expireTime in the past is a spent token (0 s), one far away is bounded to a day.
  auto past =
      sync::providers::parse_generate_access_token(R"({"accessToken":"t","expireTime":"2026-12-07T08:00:00Z"})", now);
  REQUIRE(past);
  CHECK(past->second == seconds(0));
  auto far =
      sync::providers::parse_generate_access_token(R"({"accessToken":"t","expireTime":"2199-01-01T00:00:00Z"})", now);
  REQUIRE(far);
  CHECK(far->second == hours(24));
  for (const char* bad :
       {R"({"expireTime":"2026-12-07T10:00:00Z"})", R"({"accessToken":"","expireTime":"2026-12-07T10:00:00Z"})",
        R"({"accessToken":"t"})", R"({"accessToken":"t","expireTime":"1472-12-07T10:00:00Z"})",
        R"({"accessToken":"t","expireTime":"tomorrow"})", "[]", "not json"}) {
    auto r = sync::providers::parse_generate_access_token(bad, now);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == kms::Errc::unavailable);
    CHECK(r.error().message.find("ya29") == std::string::npos);
  }
}

TEST_CASE("Conjur access token: a JSON token becomes token=\"<base64>\", anything else is refused") {
  const std::string tok =
      R"({"protected":"eyJhbGciOiJjb25qdXIifQ==","payload":"eyJzdWIiOiJob3N0L2EifQ==","signature":"c2ln"})";
  auto c = sync::providers::conjur_token_credential(tok);
  REQUIRE(c);
  const auto b64 =
      kms::base64_encode(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(tok.data()), tok.size()));
  CHECK(std::string(kms::as_view(*c)) == "token=\"" + b64 + "\"");
  for (const std::string& bad : {std::string(), std::string("[]"), std::string(R"({"protected":"a","payload":"b"})"),
                                 std::string(R"({"protected":"a","payload":"b","signature":1})"),
                                 std::string("eyJ0b2tlbiI6MX0="), std::string(70 * 1024, ' ')}) {
    auto r = sync::providers::conjur_token_credential(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == kms::Errc::unavailable);
  }
}

TEST_CASE("Conjur resource listing: the account's variables with their annotations, others left out") {
  auto l = sync::providers::conjur_variable_listing(
      R"([{"id":"myorg:variable:apps/db","annotations":[{"name":"team","value":"red","policy":"p"},{"value":"no name"}]},
          {"id":"myorg:variable:apps/x"},{"id":"myorg:host:apps/ci"},{"id":"other:variable:apps/db"},
          {"id":"myorg:variable:a,b"},{"id":"myorg:variable:"},{"no":"id"},7])",
      "myorg:variable:");
  REQUIRE(l);
  CHECK(l->count == 8);  // the page's length decides whether another page follows
  REQUIRE(l->variables.size() == 2);
  CHECK(l->variables[0].name == "apps/db");
  CHECK(l->variables[0].annotations == std::map<std::string, std::string>{{"team", "red"}});
  CHECK(l->variables[1].name == "apps/x");
  CHECK(l->variables[1].annotations.empty());
  for (const char* bad : {"{}", "not json", ""}) {
    auto r = sync::providers::conjur_variable_listing(bad, "myorg:variable:");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == kms::Errc::unavailable);
  }
}

TEST_CASE("secure memory resource: allocations are locked, freed at once, and zeroized") {
  const auto before = kms::secure_arena_stats();
  kms::SecureMemoryResource mr;
  {
    std::pmr::vector<std::pmr::string> v(&mr);
    for (int i = 0; i < 100; ++i) v.emplace_back(std::string(100, static_cast<char>('a' + i % 26)));
    CHECK(mr.allocations() > 100);
    CHECK(mr.in_use() >= 100 * 100);
    CHECK(kms::secure_arena_stats().in_use_bytes >= before.in_use_bytes + 100 * 100);
  }
  CHECK(mr.allocations() == 0);
  CHECK(mr.in_use() == 0);
  CHECK(kms::secure_arena_stats().live_allocations == before.live_allocations);

  kms::SecureMemoryResource limited(1000);
  void* ok = limited.allocate(600, 8);
  CHECK_THROWS_AS(limited.allocate(600, 8), std::bad_alloc);
  CHECK_THROWS_AS(limited.allocate(8, 64), std::bad_alloc);  // alignment beyond the arena's
  // Memory freed to the resource is wiped before reuse: write, free, and the
  // next block of that size class from the arena comes back zeroed.
  std::memset(ok, 0x5A, 600);
  limited.deallocate(ok, 600, 8);
  kms::SecureBytes again(600);
  CHECK(std::all_of(again.data(), again.data() + again.size(), [](std::uint8_t b) { return b == 0; }));
}

TEST_CASE("secure memory resource: the monotonic arena grows geometrically within its limit") {
  kms::SecureMonotonicResource mr(128, 4096);
  std::vector<void*> ptrs;
  for (int i = 0; i < 20; ++i) ptrs.push_back(mr.allocate(100, 8));
  CHECK(mr.reserved() <= 4096);
  CHECK(mr.reserved() >= 2000);
  for (void* p : ptrs) CHECK(reinterpret_cast<std::uintptr_t>(p) % 8 == 0);
  CHECK_THROWS_AS(mr.allocate(4096, 8), std::bad_alloc);
  mr.release();
  CHECK(mr.reserved() == 0);

  // std::pmr containers on it, and SecureAllocator for default-constructed allocators.
  kms::SecureMonotonicResource doc;
  std::pmr::string s("a secret value long enough to leave the small string buffer", &doc);
  CHECK(doc.reserved() > 0);
  std::basic_string<char, std::char_traits<char>, kms::SecureAllocator<char>> held(200, 'x');
  CHECK(held.size() == 200);
}

TEST_CASE("SecureJson: the parsed tree, strings included, stays in locked memory") {
  // A provider's answer with a secret value (longer than boost::json's inline strings).
  auto doc = sync::SecureJson::parse(std::string_view(R"({"data":{"password":"a-secret-longer-than-fourteen"}})"));
  REQUIRE(doc);
  const auto& root = (*doc)->root();
  CHECK(kms::is_secure_json_storage(root.storage()));
  const auto& value = root.at("data").at("password").as_string();
  CHECK(value == "a-secret-longer-than-fourteen");
  CHECK(kms::is_secure_json_storage(value.storage()));
  CHECK_FALSE(sync::SecureJson::parse(std::string_view("{nope")).has_value());
}

TEST_CASE("rate limiter: a burst passes at once, the rest at the configured rate") {
  Loop loop;
  sync::providers::RateLimiter limiter(20, 5);
  const auto t0 = std::chrono::steady_clock::now();
  loop.run([&]() -> boost::asio::awaitable<void> {
    for (int i = 0; i < 15; ++i) co_await limiter.acquire();
  }());
  const auto took = std::chrono::steady_clock::now() - t0;
  // 5 at once, 10 more at 20/s = 0.5 s.
  CHECK(took >= std::chrono::milliseconds(450));
  CHECK(took < std::chrono::milliseconds(2000));
  CHECK(limiter.acquired() == 15);
}
