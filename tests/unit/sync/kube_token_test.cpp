// ServiceAccount tokens: the TokenRequest answer's parser, the request
// through KubeClient against the Kubernetes API double, and the engine's
// cache of tokens (ServiceAccountTokens) on the in-memory fake.
#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include "engine/service_account_tokens.hpp"
#include "kube/kube_client.hpp"
#include "kube/service_account_token.hpp"
#include "kube_double.hpp"
#include "reconcile_fakes.hpp"
#include "rootseal/kms/encoding.hpp"

using namespace rootseal::sync;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace json = boost::json;
namespace kms = rootseal::kms;

namespace {

template <class T>
T run(asio::io_context& io, asio::awaitable<T> a) {
  auto f = asio::co_spawn(io, std::move(a), asio::use_future);
  io.restart();
  io.run_for(60s);
  return f.get();
}

std::string str(const kms::SecureBytes& b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

json::value answer(std::string token, std::string exp) {
  return json::value{{"kind", "TokenRequest"},
                     {"apiVersion", "authentication.k8s.io/v1"},
                     {"status", {{"token", std::move(token)}, {"expirationTimestamp", std::move(exp)}}}};
}

// The JWT's claims (the payload, base64url).
json::value claims_of(const std::string& jwt) {
  const auto a = jwt.find('.'), b = jwt.find('.', a + 1);
  std::string p = jwt.substr(a + 1, b - a - 1);
  for (auto& c : p) c = c == '-' ? '+' : (c == '_' ? '/' : c);
  while (p.size() % 4 != 0) p += '=';
  auto raw = kms::base64_decode(p);
  REQUIRE(raw);
  return json::parse(std::string(raw->begin(), raw->end()));
}

}  // namespace

TEST_CASE("TokenRequest answer: token and expiry read, anything else refused without quoting the token") {
  auto ok = kube::parse_token_request_answer(answer("aaa.bbb.c-_9", "2026-12-07T05:30:00Z"));
  REQUIRE(ok);
  CHECK(str(ok->token) == "aaa.bbb.c-_9");
  CHECK(ok->expires == std::chrono::sys_days(std::chrono::year{2026} / 12 / 7) + 5h + 30min);
  CHECK(kube::parse_rfc3339("2199-12-31T23:59:59Z"));
  auto off = kube::parse_rfc3339("2026-12-07T07:30:00.123+02:00");
  REQUIRE(off);
  CHECK(*off == ok->expires);
  for (const char* bad :
       {"", "2026-12-07 05:30:00Z", "2026-13-07T05:30:00Z", "2026-02-30T05:30:00Z", "2026-12-07T05:30:00",
        "2026-12-07T05:30:00Zjunk", "2026-12-07T05:30:00.Z", "2026-12-07T24:00:00Z",
        // Outside what system_clock holds with room to compute (the fuzzer's 1472).
        "1472-12-07T07:05:38.224450Z", "1969-12-31T23:59:59Z", "2200-01-01T00:00:00Z", "9999-12-31T23:59:59Z"}) {
    INFO(bad);
    CHECK_FALSE(kube::parse_rfc3339(bad));
  }
  struct Bad {
    json::value v;
    std::string why;
  };
  const std::vector<Bad> bads = {
      {json::value(nullptr), "has no status"},
      {json::value{{"status", "x"}}, "has no status"},
      {json::value{{"status", {{"expirationTimestamp", "2026-12-07T05:30:00Z"}}}}, "no status.token"},
      {answer("", "2026-12-07T05:30:00Z"), "no status.token"},
      {answer("secret-value-without-dots", "2026-12-07T05:30:00Z"), "not a JWT"},
      {answer("secret.value..x", "2026-12-07T05:30:00Z"), "not a JWT"},
      {answer(".secret.value", "2026-12-07T05:30:00Z"), "not a JWT"},
      {answer("secret.va lue.x", "2026-12-07T05:30:00Z"), "not a JWT"},
      {json::value{{"status", {{"token", "secret.value.x"}}}}, "no status.expirationTimestamp"},
      {answer("secret.value.x", "tomorrow"), "not an RFC 3339 time"},
  };
  for (const auto& b : bads) {
    auto r = kube::parse_token_request_answer(b.v);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == kms::Errc::unavailable);
    CHECK(r.error().message.find(b.why) != std::string::npos);
    CHECK(r.error().message.find("secret") == std::string::npos);  // never the token
  }
}

TEST_CASE("kube client: TokenRequest on the double (audiences, expiry, the ServiceAccount claims, 404 when missing)") {
  rootseal::test::K8sDouble d;
  asio::io_context io;
  kube::KubeConfig cfg;
  cfg.server = d.url();
  auto client = kube::KubeClient::create(io.get_executor(), std::move(cfg));
  REQUIRE(client);
  auto c = *client;
  const json::value ns{{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", "team-a"}}}};
  const json::value sa{{"apiVersion", "v1"}, {"kind", "ServiceAccount"}, {"metadata", {{"name", "reader"}}}};
  auto made = run(io, c->create(kube::namespaces_gvr(), "", ns));
  REQUIRE(made);
  auto made_sa = run(io, c->create(kube::serviceaccounts_gvr(), "team-a", sa));
  REQUIRE(made_sa);
  const std::string uid(made_sa->at("metadata").at("uid").as_string());

  const std::vector<std::string> aud{"vault", "extra"};
  const auto before = std::chrono::system_clock::now();
  auto r = run(io, c->create_subresource(kube::serviceaccounts_gvr(), "team-a", "reader", "token",
                                         kube::token_request_body(aud, 600), true));
  REQUIRE(r);
  auto tok = kube::parse_token_request_answer(*r);
  REQUIRE(tok);
  CHECK(tok->expires >= before + 599s);
  CHECK(tok->expires <= std::chrono::system_clock::now() + 601s);
  const auto claims = claims_of(str(tok->token));
  CHECK(claims.at("aud") == json::array{"vault", "extra"});
  CHECK(claims.at("sub") == "system:serviceaccount:team-a:reader");
  CHECK(claims.at("kubernetes.io").at("serviceaccount").at("uid") == json::value(uid));
  CHECK(claims.at("exp").as_int64() - claims.at("iat").as_int64() == 600);
  CHECK(d.count("serviceaccounts/token", "create") == 1);

  auto missing = run(io, c->create_subresource(kube::serviceaccounts_gvr(), "team-a", "nobody", "token",
                                               kube::token_request_body({}, 600), true));
  REQUIRE_FALSE(missing);
  CHECK(missing.error().is_not_found());
  CHECK(missing.error().message == "serviceaccounts \"nobody\" not found");
}

TEST_CASE("ServiceAccountTokens: cached until a fifth of the lifetime is left, then requested again") {
  testing::FakeKube kube;
  kube.service_accounts["team-a/reader"] = 600s;
  auto clock = std::chrono::system_clock::time_point{} + std::chrono::hours(24 * 365 * 56);
  kube.token_clock = clock;
  auto tokens = std::make_shared<engine::ServiceAccountTokens>(kube, [&] { return clock; });
  asio::io_context io;
  const engine::ServiceAccountTokens::Key key{"team-a", "reader", {"vault"}, 600};

  auto t1 = run(io, tokens->get(key));
  REQUIRE(t1);
  CHECK(kube.token_requests == std::vector<std::string>{"team-a/reader vault 600"});
  clock += 479s;  // under four fifths of 600 s: the same token
  auto t2 = run(io, tokens->get(key));
  REQUIRE(t2);
  CHECK(str(*t2) == str(*t1));
  CHECK(tokens->requests() == 1);
  clock += 2s;  // past four fifths: a fresh TokenRequest
  kube.token_clock = clock;
  auto source = tokens->source(key);
  auto t3 = run(io, source(false));
  REQUIRE(t3);
  CHECK(str(*t3) != str(*t1));
  CHECK(tokens->requests() == 2);
  // fresh: not the cached one, whatever its age.
  auto t3b = run(io, source(true));
  REQUIRE(t3b);
  CHECK(str(*t3b) != str(*t3));
  CHECK(tokens->requests() == 3);
  // Another audience is another token.
  auto t4 = run(io, tokens->get({"team-a", "reader", {"sts.amazonaws.com"}, 0}));
  REQUIRE(t4);
  CHECK(tokens->requests() == 4);
  CHECK(kube.token_requests.back() == "team-a/reader sts.amazonaws.com 0");
}

TEST_CASE("ServiceAccountTokens: a missing ServiceAccount is permission_denied with ESO's message, never not_found") {
  testing::FakeKube kube;
  kube.service_accounts["team-a/reader"] = 600s;
  auto tokens = std::make_shared<engine::ServiceAccountTokens>(kube);
  asio::io_context io;
  auto r = run(io, tokens->get({"team-a", "gone", {}, 600}));
  REQUIRE_FALSE(r);
  CHECK(r.error().code == kms::Errc::permission_denied);
  CHECK(r.error().message ==
        "cannot request Kubernetes service account token for service account \"gone\" (namespace team-a): "
        "serviceaccounts \"gone\" not found");
  // Deleted after a token was cached: once the cached one is due for renewal the request fails.
  auto clock = std::chrono::system_clock::now();
  auto timed = std::make_shared<engine::ServiceAccountTokens>(kube, [&] { return clock; });
  auto ok = run(io, timed->get({"team-a", "reader", {}, 600}));
  REQUIRE(ok);
  kube.service_accounts.clear();
  clock += 481s;
  auto again = run(io, timed->get({"team-a", "reader", {}, 600}));
  REQUIRE_FALSE(again);
  CHECK(again.error().code == kms::Errc::permission_denied);
  CHECK(again.error().message.find(str(*ok)) == std::string::npos);
  // Recreated: a token again.
  kube.service_accounts["team-a/reader"] = 600s;
  kube.token_clock = clock;
  auto back = run(io, timed->get({"team-a", "reader", {}, 600}));
  REQUIRE(back);
  CHECK(str(*back) != str(*ok));
}
