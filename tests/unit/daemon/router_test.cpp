// The HTTP API as a pure function: every endpoint through Router::handle,
// without sockets, over a real Keyring (SoftwareRoot + SQLite in a temporary
// folder), real tokens and policies, metrics and the audit log. Each check
// asserts the exact status, Content-Type and Vault's envelope or error body.
#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <fstream>
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "locked_json.hpp"
#include "rootseal/kms/encoding.hpp"
#include "router_rig.hpp"
#include "temp_dir.hpp"

using namespace rootseal;
using namespace rootseal::daemon;
namespace json = boost::json;
namespace http = boost::beast::http;

namespace {

constexpr std::string_view kRoot = "root-token-0123456789";
constexpr std::string_view kSeal = "seal-token-0123456789";  // policy autounseal: encrypt/decrypt on "autounseal"
constexpr std::string_view kApp = "app-token-0123456789";    // policy app: everything on "app-*"
constexpr std::string_view kRenewable = "renewable-token-01234567";  // policy autounseal, ttl 1h, renewable
constexpr std::string_view kExpired = "expired-token-0123456789";    // policy app, expired long ago

struct Reply {
  unsigned status = 0;
  std::string content_type;
  std::optional<std::string> content_length;  // the header, if sent
  std::string body;
  json::value value;

  [[nodiscard]] const json::object& obj() const { return value.as_object(); }
  [[nodiscard]] const json::object& data() const { return value.at("data").as_object(); }
  [[nodiscard]] std::string str(std::string_view field) const { return std::string(data().at(field).as_string()); }
  [[nodiscard]] std::vector<std::string> errors() const {
    std::vector<std::string> out;
    for (const auto& e : value.at("errors").as_array()) out.emplace_back(e.as_string());
    return out;
  }
  [[nodiscard]] std::string error() const {
    const auto list = errors();
    return list.empty() ? std::string() : list.front();
  }
};

std::int64_t num(const json::value& v) { return v.to_number<std::int64_t>(); }

std::string b64(std::string_view text) {
  return kms::base64_encode(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}
std::string unb64(std::string_view text) {
  auto d = kms::base64_decode(text);
  REQUIRE(d);
  return std::string(d->begin(), d->end());
}

std::int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

TokenInfo token_info(std::string name, std::vector<std::string> policies) {
  TokenInfo t;
  t.display_name = std::move(name);
  t.policies = std::move(policies);
  t.creation_time = now_unix();
  return t;
}

// A complete API over in-memory/temporary components (router_rig.hpp).
class Api {
 public:
  // A host of its own; with `host_of`, another host on the same store (its
  // folder) and root key. `shared`: the store reports shared() (etcd's case).
  explicit Api(std::string mount = "transit", const Api* host_of = nullptr, bool shared = false) {
    test::RouterRigOptions options;
    options.dir = host_of != nullptr ? host_of->dir_.path() : dir_.path();
    options.root_key = host_of != nullptr ? host_of->root_key_.clone() : root_key_.clone();
    options.shared_store = shared;
    options.policies = {
        {"autounseal", {"autounseal"}, {Operation::encrypt, Operation::decrypt}},
        {"app",
         {"app-*"},
         {Operation::read, Operation::list, Operation::create, Operation::config, Operation::rotate, Operation::delete_,
          Operation::encrypt, Operation::decrypt, Operation::rewrap, Operation::datakey}}};
    options.cert_identities = {{"vault", std::string(64, 'a'), {"autounseal"}}};
    options.audit_path = audit_path();
    options.mount = std::move(mount);
    options.seal_status = [this] {
      SealStatus s;
      s.sealed = sealed;
      s.reason = sealed ? "root of trust unavailable (test)" : "";
      s.since_unix = 1700000000;
      s.unseal_count = sealed ? 0 : 1;
      s.root_kcv = "abcdef";
      s.probes = 7;
      s.probe_failures = sealed ? 3 : 0;
      s.last_probe_ok = !sealed;
      return s;
    };
    options.report_root_failure = [this] { ++root_failures; };
    options.cluster_id = "cluster-id-1";
    options.version = "0.1.0-test";
    auto rig = test::RouterRig::create(std::move(options));
    REQUIRE(rig);
    rig_ = std::move(*rig);

    auto& tokens = rig_->tokens();
    auto root_token = token_info("root", {});
    root_token.root = true;
    root_accessor = tokens.add(kms::SecureBytes::copy_of(kRoot), root_token);
    seal_accessor = tokens.add(kms::SecureBytes::copy_of(kSeal), token_info("vault-seal", {"autounseal"}));
    app_accessor = tokens.add(kms::SecureBytes::copy_of(kApp), token_info("app", {"app"}));
    auto renewable = token_info("renewable", {"autounseal"});
    renewable.ttl_s = 3600;
    renewable.expire_time = now_unix() + 60;
    renewable.renewable = true;
    tokens.add(kms::SecureBytes::copy_of(kRenewable), renewable);
    auto expired = token_info("expired", {"app"});
    expired.ttl_s = 60;
    expired.expire_time = now_unix() - 10;
    expired.renewable = true;
    tokens.add(kms::SecureBytes::copy_of(kExpired), expired);
  }

  // One request through Router::handle, run to completion on a local io_context.
  Reply call(std::string_view method, std::string_view target, std::string_view body = {},
             std::optional<std::string_view> token = kRoot,
             const std::vector<std::pair<std::string, std::string>>& headers = {},
             const std::string& client_cert_sha256 = {}) {
    net::Request req = test::RouterRig::request(method, target, body);
    req.set(http::field::host, "rootseal.test");
    if (token) req.set("X-Vault-Token", *token);
    for (const auto& [k, v] : headers) req.set(k, v);
    net::PeerInfo peer;
    peer.remote = {boost::asio::ip::make_address("127.0.0.1"), 40001};
    peer.client_cert_sha256 = client_cert_sha256;
    if (!client_cert_sha256.empty()) peer.client_subject = "CN=vault-seal";
    const net::Response res = rig_->handle(req, peer);

    Reply r;
    r.status = res.result_int();
    if (auto ct = res.find(http::field::content_type); ct != res.end()) r.content_type = std::string(ct->value());
    r.body = std::string(res.body().view());
    if (auto cl = res.find(http::field::content_length); cl != res.end()) r.content_length = std::string(cl->value());
    if (auto cl = res.find(http::field::content_length); cl != res.end() && method != "HEAD") {
      CHECK(cl->value() == std::to_string(r.body.size()));
    }
    if (!r.body.empty() && r.content_type == "application/json") {
      json::error_code ec;
      r.value = json::parse(r.body, ec);
      REQUIRE_FALSE(ec);
    }
    return r;
  }
  Reply callj(std::string_view method, std::string_view target, const json::value& body,
              std::optional<std::string_view> token = kRoot,
              const std::vector<std::pair<std::string, std::string>>& headers = {},
              const std::string& client_cert_sha256 = {}) {
    return call(method, target, std::string_view(json::serialize(body)), token, headers, client_cert_sha256);
  }

  [[nodiscard]] std::filesystem::path audit_path() const { return dir_ / "audit.log"; }
  [[nodiscard]] std::vector<json::object> audit_lines() const {
    std::ifstream in(audit_path());
    std::vector<json::object> out;
    for (std::string line; std::getline(in, line);) out.push_back(json::parse(line).as_object());
    return out;
  }
  [[nodiscard]] std::string audit_text() const {
    std::ifstream in(audit_path());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  [[nodiscard]] std::string metrics_text() const { return rig_->metrics().render(); }
  kms::Keyring& ring() { return rig_->ring(); }

  bool sealed = false;
  int root_failures = 0;
  std::string root_accessor, seal_accessor, app_accessor;

 private:
  kms::SecureBytes root_key_ = kms::SecureBytes::random(32);
  test::TempDir dir_{"rootseal-router"};
  std::unique_ptr<test::RouterRig> rig_;  // after dir_: goes first
};

// Vault's success envelope, exactly.
void check_envelope(const Reply& r, unsigned status = 200) {
  INFO(r.body);
  REQUIRE(r.status == status);
  REQUIRE(r.content_type == "application/json");
  const auto& o = r.obj();
  CHECK(o.at("request_id").as_string().size() == 36);
  CHECK(o.at("request_id").as_string()[14] == '4');  // a version-4 UUID
  {
    const std::string id(o.at("request_id").as_string());
    CHECK((id[8] == '-' && id[13] == '-' && id[18] == '-' && id[23] == '-'));
    CHECK(std::string_view("89ab").find(id[19]) != std::string_view::npos);  // RFC 4122 variant
    CHECK(id.find_first_not_of("0123456789abcdef-") == std::string::npos);
  }
  CHECK(o.at("lease_id").as_string() == "");
  CHECK(o.at("renewable").as_bool() == false);
  CHECK(num(o.at("lease_duration")) == 0);
  CHECK(o.at("wrap_info").is_null());
  CHECK(o.contains("warnings"));
  CHECK(o.at("auth").is_null());
  CHECK(o.at("data").is_object());
  for (const auto& [k, v] : o) {
    (void)v;
    const bool known = k == "request_id" || k == "lease_id" || k == "renewable" || k == "lease_duration" ||
                       k == "data" || k == "wrap_info" || k == "warnings" || k == "auth" || k == "mount_type";
    CHECK(known);
  }
}

// renew-self's envelope: no data, a real auth block (the transit seal refuses an empty 200).
void check_auth_envelope(const Reply& r) {
  INFO(r.body);
  REQUIRE(r.status == 200);
  REQUIRE(r.content_type == "application/json");
  CHECK(r.obj().at("request_id").as_string().size() == 36);
  CHECK(r.obj().at("data").is_null());
  REQUIRE(r.obj().at("auth").is_object());
  CHECK(r.obj().at("auth").as_object().at("client_token").is_string());
  CHECK(num(r.obj().at("auth").as_object().at("lease_duration")) > 0);
}

// Vault's error body: {"errors":[...]} with exactly application/json.
void check_error(const Reply& r, unsigned status, std::string_view fragment = {}) {
  INFO(r.body);
  REQUIRE(r.status == status);
  REQUIRE(r.content_type == "application/json");
  REQUIRE(r.obj().size() == 1);
  REQUIRE(r.obj().at("errors").is_array());
  if (!fragment.empty()) CHECK(r.error().find(fragment) != std::string::npos);
}

std::string encrypt(Api& api, std::string_view key, std::string_view plain, std::string_view token = kRoot) {
  auto r = api.callj("POST", "/v1/transit/encrypt/" + std::string(key), json::value{{"plaintext", b64(plain)}}, token);
  check_envelope(r);
  return r.str("ciphertext");
}

}  // namespace

// ---------------------------------------------------------------- sys ----

TEST_CASE("router: sys/health answers Vault's fields and honours its query overrides") {
  Api api;
  auto r = api.call("GET", "/v1/sys/health", {}, std::nullopt);
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "application/json");
  CHECK(r.obj().at("initialized").as_bool());
  CHECK_FALSE(r.obj().at("sealed").as_bool());
  CHECK_FALSE(r.obj().at("standby").as_bool());
  CHECK(r.obj().at("version").as_string() == "0.1.0-test");
  CHECK(r.obj().at("cluster_id").as_string() == "cluster-id-1");
  CHECK(num(r.obj().at("server_time_utc")) > 1700000000);
  CHECK_FALSE(r.obj().contains("data"));  // sys/health has no envelope

  // HEAD: same status and Content-Length, no body.
  auto head = api.call("HEAD", "/v1/sys/health", {}, std::nullopt);
  CHECK(head.status == 200);
  CHECK(head.body.empty());

  CHECK(api.call("GET", "/v1/sys/health?activecode=299", {}, std::nullopt).status == 299);
  // A bodyless status (found by the router fuzzer: it used to throw in Beast, a 500).
  auto no_content = api.call("GET", "/v1/sys/health?activecode=204", {}, std::nullopt);
  CHECK(no_content.status == 204);
  CHECK(no_content.body.empty());
  // Never a standby, DR or performance secondary: those overrides change nothing.
  CHECK(api.call("GET", "/v1/sys/health?standbyok=true&perfstandbyok=true", {}, std::nullopt).status == 200);
  CHECK(
      api.call("GET", "/v1/sys/health?standbycode=200&drsecondarycode=200&performancestandbycode=200", {}, std::nullopt)
          .status == 200);
  CHECK(api.call("GET", "/v1/sys/health?sealedcode=200", {}, std::nullopt).status == 200);
  check_error(api.call("GET", "/v1/sys/health?activecode=abc", {}, std::nullopt), 400, "activecode");
  check_error(api.call("GET", "/v1/sys/health?sealedcode=99", {}, std::nullopt), 400, "sealedcode");
  check_error(api.call("GET", "/v1/sys/health?standbyok=maybe", {}, std::nullopt), 400, "standbyok");

  api.sealed = true;
  r = api.call("GET", "/v1/sys/health", {}, std::nullopt);
  CHECK(r.status == 503);
  CHECK(r.content_type == "application/json");
  CHECK(r.obj().at("sealed").as_bool());
  CHECK(api.call("GET", "/v1/sys/health?sealedcode=200", {}, std::nullopt).status == 200);
  CHECK(api.call("GET", "/v1/sys/health?sealedcode=501&activecode=204", {}, std::nullopt).status == 501);
  CHECK(api.call("HEAD", "/v1/sys/health", {}, std::nullopt).status == 503);

  for (const char* m : {"POST", "PUT", "DELETE", "LIST"}) {
    INFO(m);
    check_error(api.call(m, "/v1/sys/health", {}, std::nullopt), 405);
  }
}

TEST_CASE("router: sys/seal-status and sys/leader, as vault status reads them") {
  Api api;
  auto r = api.call("GET", "/v1/sys/seal-status", {}, std::nullopt);
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "application/json");
  CHECK(r.obj().at("type").as_string() == "software");
  CHECK(r.obj().at("initialized").as_bool());
  CHECK_FALSE(r.obj().at("sealed").as_bool());
  CHECK(num(r.obj().at("t")) == 1);
  CHECK(num(r.obj().at("n")) == 1);
  CHECK(num(r.obj().at("progress")) == 0);
  CHECK(r.obj().at("root_key_check_value").as_string() == "abcdef");
  CHECK(num(r.obj().at("unsealed_since_unix")) == 1700000000);

  api.sealed = true;
  r = api.call("GET", "/v1/sys/seal-status", {}, std::nullopt);
  REQUIRE(r.status == 200);  // seal-status reports; it does not fail while sealed
  CHECK(r.obj().at("sealed").as_bool());
  CHECK(r.obj().at("sealed_reason").as_string() == "root of trust unavailable (test)");
  CHECK(num(r.obj().at("sealed_since_unix")) == 1700000000);

  r = api.call("GET", "/v1/sys/leader", {}, std::nullopt);
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "application/json");
  CHECK_FALSE(r.obj().at("ha_enabled").as_bool());
  CHECK(r.obj().at("is_self").as_bool());
  check_error(api.call("POST", "/v1/sys/seal-status", {}, std::nullopt), 405);
  check_error(api.call("PUT", "/v1/sys/leader", {}, std::nullopt), 405);
}

TEST_CASE("router: sys/metrics in Prometheus format counts requests by route and status") {
  Api api;
  encrypt(api, "autounseal", "a");
  check_error(api.call("POST", "/v1/transit/encrypt/autounseal", R"({"plaintext":"YQ=="})", std::nullopt), 403);
  auto r = api.call("GET", "/v1/sys/metrics?format=prometheus", {}, std::nullopt);
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "text/plain; version=0.0.4");
  CHECK(r.body.find(R"(rootseal_http_requests_total{route="transit/encrypt",method="POST",status="200"} 1)") !=
        std::string::npos);
  CHECK(r.body.find(R"(rootseal_http_requests_total{route="transit/encrypt",method="POST",status="403"} 1)") !=
        std::string::npos);
  CHECK(r.body.find("rootseal_sealed 0") != std::string::npos);
  CHECK(r.body.find("rootseal_http_request_duration_seconds_bucket") != std::string::npos);
  // The root of trust's probes (SealStatus): counters and the last outcome, labelled with the root's kind.
  CHECK(r.body.find("# TYPE rootseal_root_probes_total counter\nrootseal_root_probes_total 7\n") != std::string::npos);
  CHECK(r.body.find("rootseal_root_probe_failures_total 0\n") != std::string::npos);
  CHECK(r.body.find("rootseal_root_probe_ok{root=\"software\"} 1\n") != std::string::npos);
  check_error(api.call("GET", "/v1/sys/metrics", {}, std::nullopt), 400, "format=prometheus");
  check_error(api.call("GET", "/v1/sys/metrics?format=json", {}, std::nullopt), 400, "format=prometheus");
  check_error(api.call("POST", "/v1/sys/metrics?format=prometheus", {}, std::nullopt), 405);
  api.sealed = true;
  r = api.call("GET", "/v1/sys/metrics?format=prometheus", {}, std::nullopt);
  REQUIRE(r.status == 200);  // monitoring keeps working while sealed
  CHECK(r.body.find("rootseal_sealed 1") != std::string::npos);
  CHECK(r.body.find("rootseal_root_probe_failures_total 3\n") != std::string::npos);
  CHECK(r.body.find("rootseal_root_probe_ok{root=\"software\"} 0\n") != std::string::npos);
}

// ---------------------------------------------------------------- keys ----

TEST_CASE("router: keys create (upsert), read, list both ways, rotate, config, delete") {
  Api api;
  // Nothing yet: LIST is Vault's empty 404.
  auto r = api.call("LIST", "/v1/transit/keys");
  check_error(r, 404);
  CHECK(r.errors().empty());

  r = api.call("POST", "/v1/transit/keys/app-one", R"({"type":"aes256-gcm96"})");
  check_envelope(r);
  CHECK(r.obj().at("warnings").is_null());
  CHECK(r.str("name") == "app-one");
  CHECK(r.str("type") == "aes256-gcm96");
  CHECK(num(r.data().at("latest_version")) == 1);
  CHECK(num(r.data().at("min_decryption_version")) == 1);
  CHECK(num(r.data().at("min_encryption_version")) == 0);
  CHECK(num(r.data().at("min_available_version")) == 0);
  CHECK(r.data().at("deletion_allowed").as_bool() == false);
  CHECK(r.data().at("derived").as_bool() == false);
  CHECK(r.data().at("exportable").as_bool() == false);
  CHECK(r.data().at("supports_encryption").as_bool());
  CHECK(r.data().at("keys").as_object().size() == 1);
  CHECK(num(r.data().at("keys").at("1")) > 1700000000);

  // PUT is the same write; an existing key is returned unchanged with Vault's warning.
  r = api.call("PUT", "/v1/transit/keys/app-one", R"({"type":"aes128-gcm96"})");
  check_envelope(r);
  CHECK(r.str("type") == "aes256-gcm96");
  REQUIRE(r.obj().at("warnings").is_array());
  CHECK(r.obj().at("warnings").as_array().at(0).as_string() == "key app-one already existed");
  check_envelope(api.call("POST", "/v1/transit/keys/app-two", R"({"type":"aes128-gcm96"})"));

  r = api.call("GET", "/v1/transit/keys/app-two");
  check_envelope(r);
  CHECK(r.str("type") == "aes128-gcm96");
  check_error(api.call("GET", "/v1/transit/keys/app-missing"), 404);
  CHECK(api.call("GET", "/v1/transit/keys/app-missing").errors().empty());

  for (const char* target : {"/v1/transit/keys", "/v1/transit/keys/"}) {
    INFO(target);
    r = api.call("LIST", target);
    check_envelope(r);
    const auto& keys = r.data().at("keys").as_array();
    REQUIRE(keys.size() == 2);
    CHECK(keys[0].as_string() == "app-one");
    CHECK(keys[1].as_string() == "app-two");
    auto g = api.call("GET", std::string(target) + "?list=true");
    check_envelope(g);
    CHECK(g.data().at("keys").as_array() == keys);
  }
  check_error(api.call("GET", "/v1/transit/keys"), 405);  // without list=true
  check_error(api.call("POST", "/v1/transit/keys"), 405);

  r = api.call("POST", "/v1/transit/keys/app-one/rotate");
  check_envelope(r);
  CHECK(num(r.data().at("latest_version")) == 2);
  CHECK(r.data().at("keys").as_object().size() == 2);
  r = api.call("PUT", "/v1/transit/keys/app-one/rotate", "{}");
  CHECK(num(r.data().at("latest_version")) == 3);

  r = api.call("POST", "/v1/transit/keys/app-one/config",
               R"({"min_decryption_version":2,"min_encryption_version":3,"auto_rotate_period":"24h"})");
  check_envelope(r);
  CHECK(num(r.data().at("min_decryption_version")) == 2);
  CHECK(num(r.data().at("min_encryption_version")) == 3);
  CHECK(num(r.data().at("auto_rotate_period")) == 86400);
  // Numbers as strings, as Vault accepts them.
  r = api.call("POST", "/v1/transit/keys/app-one/config", R"({"min_decryption_version":"1"})");
  CHECK(num(r.data().at("min_decryption_version")) == 1);
  check_error(api.call("POST", "/v1/transit/keys/app-one/config", R"({"min_decryption_version":9})"), 400);
  check_error(api.call("POST", "/v1/transit/keys/app-one/config", R"({"exportable":true})"), 400, "never exports");
  check_error(api.call("POST", "/v1/transit/keys/app-nope/config", R"({"deletion_allowed":true})"), 400,
              "no existing key named app-nope could be found");
  check_error(api.call("POST", "/v1/transit/keys/app-nope/rotate"), 400, "key not found");
  check_error(api.call("GET", "/v1/transit/keys/app-one/config"), 405);
  check_error(api.call("GET", "/v1/transit/keys/app-one/rotate"), 405);

  // Delete: refused until deletion_allowed, then 204 with no body.
  check_error(api.call("DELETE", "/v1/transit/keys/app-one"), 400,
              "error deleting policy app-one: deletion is not allowed for this key");
  check_envelope(api.call("GET", "/v1/transit/keys/app-one"));
  check_envelope(api.call("POST", "/v1/transit/keys/app-one/config", R"({"deletion_allowed":true})"));
  r = api.call("DELETE", "/v1/transit/keys/app-one");
  CHECK(r.status == 204);
  CHECK(r.body.empty());
  check_error(api.call("GET", "/v1/transit/keys/app-one"), 404);
  check_error(api.call("DELETE", "/v1/transit/keys/app-one"), 400, "could not delete key; not found");
  check_error(api.call("PATCH", "/v1/transit/keys/app-two"), 405);
  check_error(api.call("LIST", "/v1/transit/keys/app-two"), 405);

  // Bad names and options.
  check_error(api.call("POST", "/v1/transit/keys/" + std::string(300, 'k')), 400);
  check_error(api.call("POST", "/v1/transit/keys/.hidden"), 400);
  check_error(api.call("POST", "/v1/transit/keys/app-x", R"({"type":"rsa-4096"})"), 400);
  check_error(api.call("POST", "/v1/transit/keys/app-x", R"({"convergent_encryption":true,"derived":true})"), 400,
              "convergent");
  check_error(api.call("POST", "/v1/transit/keys/app-x", R"({"derived":"maybe"})"), 400, "'derived' must be a boolean");
  check_error(api.call("POST", "/v1/transit/keys/app-x", R"({"auto_rotate_period":"5q"})"), 400, "duration");
  check_error(api.call("POST", "/v1/transit/keys/app-two/nope"), 404);
}

// ------------------------------------------------------ encrypt/decrypt ----

TEST_CASE("router: encrypt and decrypt, PUT and POST alike, Vault's ciphertext shape") {
  Api api;
  // Encrypt upserts the key for a token that may create it.
  auto r = api.call("PUT", "/v1/transit/encrypt/autounseal", R"({"plaintext":"YQ=="})");
  check_envelope(r);
  const std::string ct = r.str("ciphertext");
  CHECK(ct.starts_with("vault:v1:"));
  CHECK(std::count(ct.begin(), ct.end(), ':') == 2);
  CHECK(num(r.data().at("key_version")) == 1);
  CHECK(r.data().size() == 2);
  for (const char* m : {"PUT", "POST"}) {
    r = api.callj(m, "/v1/transit/decrypt/autounseal", json::value{{"ciphertext", ct}});
    check_envelope(r);
    CHECK(r.str("plaintext") == "YQ==");
    CHECK(r.data().size() == 1);
  }
  // An empty plaintext is valid; a missing one is not.
  r = api.call("POST", "/v1/transit/encrypt/autounseal", R"({"plaintext":""})");
  check_envelope(r);
  r = api.callj("POST", "/v1/transit/decrypt/autounseal", json::value{{"ciphertext", r.str("ciphertext")}});
  CHECK(r.str("plaintext") == "");
  check_error(api.call("POST", "/v1/transit/encrypt/autounseal", "{}"), 400, "missing plaintext to encrypt");
  check_error(api.call("POST", "/v1/transit/decrypt/autounseal", "{}"), 400, "missing ciphertext to decrypt");

  // The seal's token may encrypt/decrypt its key but not create it: a missing key is Vault's 400 ...
  check_error(api.call("PUT", "/v1/transit/encrypt/autounseal2", R"({"plaintext":"YQ=="})", kSeal), 403);
  Api fresh;
  check_error(fresh.call("PUT", "/v1/transit/encrypt/autounseal", R"({"plaintext":"YQ=="})", kSeal), 400,
              "encryption key not found");
  check_error(fresh.call("GET", "/v1/transit/keys/autounseal"), 404);  // ... and nothing was created
  check_error(api.callj("POST", "/v1/transit/decrypt/nosuchkey", json::value{{"ciphertext", ct}}), 400,
              "encryption key not found");
  check_error(api.callj("POST", "/v1/transit/rewrap/nosuchkey", json::value{{"ciphertext", ct}}), 400,
              "encryption key not found");
  CHECK(api.call("GET", "/v1/transit/keys/nosuchkey").status == 404);  // decrypt did not create it

  for (const char* m : {"GET", "DELETE", "PATCH", "LIST", "HEAD"}) {
    INFO(m);
    auto e = api.call(m, "/v1/transit/encrypt/autounseal");
    CHECK(e.status == 405);
    if (std::string_view(m) != "HEAD") check_error(e, 405);
  }
  check_error(api.call("POST", "/v1/transit/encrypt"), 404);
  check_error(api.call("POST", "/v1/transit/encrypt/autounseal/extra", R"({"plaintext":"YQ=="})"), 404);
}

TEST_CASE("router: key_version, min_decryption_version and rewrap across rotation") {
  Api api;
  const std::string v1 = encrypt(api, "app-rot", "version one", kApp);
  check_envelope(api.call("POST", "/v1/transit/keys/app-rot/rotate", "", kApp));
  const std::string v2 = encrypt(api, "app-rot", "version two", kApp);
  CHECK(v2.starts_with("vault:v2:"));

  auto r = api.callj("POST", "/v1/transit/encrypt/app-rot", json::value{{"plaintext", b64("old")}, {"key_version", 1}},
                     kApp);
  check_envelope(r);
  CHECK(r.str("ciphertext").starts_with("vault:v1:"));
  CHECK(num(r.data().at("key_version")) == 1);
  check_error(
      api.callj("POST", "/v1/transit/encrypt/app-rot", json::value{{"plaintext", b64("x")}, {"key_version", 3}}, kApp),
      400);
  check_error(api.call("POST", "/v1/transit/encrypt/app-rot", R"({"plaintext":"eA==","key_version":"x"})", kApp), 400,
              "'key_version' must be an integer");
  check_error(api.call("POST", "/v1/transit/encrypt/app-rot", R"({"plaintext":"eA==","key_version":-1})", kApp), 400,
              "invalid key version");

  // Rewrap moves v1 to the latest version without revealing the plaintext.
  r = api.callj("POST", "/v1/transit/rewrap/app-rot", json::value{{"ciphertext", v1}}, kApp);
  check_envelope(r);
  const std::string rewrapped = r.str("ciphertext");
  CHECK(rewrapped.starts_with("vault:v2:"));
  CHECK(num(r.data().at("key_version")) == 2);
  CHECK_FALSE(r.data().contains("plaintext"));
  r = api.callj("POST", "/v1/transit/decrypt/app-rot", json::value{{"ciphertext", rewrapped}}, kApp);
  CHECK(unb64(r.str("plaintext")) == "version one");
  check_error(api.call("GET", "/v1/transit/rewrap/app-rot", {}, kApp), 405);

  // min_decryption_version refuses the old ciphertext; lowering it again restores access.
  check_envelope(api.call("POST", "/v1/transit/keys/app-rot/config", R"({"min_decryption_version":2})", kApp));
  check_error(api.callj("POST", "/v1/transit/decrypt/app-rot", json::value{{"ciphertext", v1}}, kApp), 400,
              "ciphertext or signature version is disallowed by policy (too old)");
  check_error(api.callj("POST", "/v1/transit/rewrap/app-rot", json::value{{"ciphertext", v1}}, kApp), 400, "too old");
  r = api.callj("POST", "/v1/transit/decrypt/app-rot", json::value{{"ciphertext", v2}}, kApp);
  CHECK(unb64(r.str("plaintext")) == "version two");
  check_envelope(api.call("POST", "/v1/transit/keys/app-rot/config", R"({"min_decryption_version":1})", kApp));
  r = api.callj("POST", "/v1/transit/decrypt/app-rot", json::value{{"ciphertext", v1}}, kApp);
  CHECK(unb64(r.str("plaintext")) == "version one");
}

TEST_CASE("router: associated_data is GCM AAD and context derives keys for derived keys") {
  Api api;
  auto r = api.callj("POST", "/v1/transit/encrypt/app-aad",
                     json::value{{"plaintext", b64("p")}, {"associated_data", b64("ctx-a")}}, kApp);
  check_envelope(r);
  const std::string ct = r.str("ciphertext");
  r = api.callj("POST", "/v1/transit/decrypt/app-aad",
                json::value{{"ciphertext", ct}, {"associated_data", b64("ctx-a")}}, kApp);
  check_envelope(r);
  CHECK(unb64(r.str("plaintext")) == "p");
  check_error(api.callj("POST", "/v1/transit/decrypt/app-aad",
                        json::value{{"ciphertext", ct}, {"associated_data", b64("ctx-b")}}, kApp),
              400, "message authentication failed");
  check_error(api.callj("POST", "/v1/transit/decrypt/app-aad", json::value{{"ciphertext", ct}}, kApp), 400);
  check_error(api.callj("POST", "/v1/transit/decrypt/app-aad",
                        json::value{{"ciphertext", ct}, {"associated_data", "!!"}}, kApp),
              400, "base64");

  r = api.call("POST", "/v1/transit/keys/app-derived", R"({"derived":true})", kApp);
  check_envelope(r);
  CHECK(r.data().at("derived").as_bool());
  CHECK(r.str("kdf") == "hkdf_sha256");
  check_error(api.callj("POST", "/v1/transit/encrypt/app-derived", json::value{{"plaintext", b64("p")}}, kApp), 400,
              "context");
  r = api.callj("POST", "/v1/transit/encrypt/app-derived",
                json::value{{"plaintext", b64("p")}, {"context", b64("user-1")}}, kApp);
  check_envelope(r);
  const std::string dct = r.str("ciphertext");
  r = api.callj("POST", "/v1/transit/decrypt/app-derived", json::value{{"ciphertext", dct}, {"context", b64("user-1")}},
                kApp);
  CHECK(unb64(r.str("plaintext")) == "p");
  check_error(api.callj("POST", "/v1/transit/decrypt/app-derived",
                        json::value{{"ciphertext", dct}, {"context", b64("user-2")}}, kApp),
              400);
  check_error(api.callj("POST", "/v1/transit/encrypt/app-derived",
                        json::value{{"plaintext", b64("p")}, {"context", b64("c")}, {"nonce", b64("n")}}, kApp),
              400, "nonce");
}

TEST_CASE("router: datakey plaintext and wrapped, bit lengths") {
  Api api;
  check_envelope(api.call("POST", "/v1/transit/keys/app-dk", "", kApp));
  auto r = api.call("POST", "/v1/transit/datakey/plaintext/app-dk", "", kApp);
  check_envelope(r);
  const std::string key = unb64(r.str("plaintext"));
  CHECK(key.size() == 32);
  CHECK(num(r.data().at("key_version")) == 1);
  auto d = api.callj("POST", "/v1/transit/decrypt/app-dk", json::value{{"ciphertext", r.str("ciphertext")}}, kApp);
  CHECK(unb64(d.str("plaintext")) == key);

  r = api.call("PUT", "/v1/transit/datakey/wrapped/app-dk", R"({"bits":512})", kApp);
  check_envelope(r);
  CHECK_FALSE(r.data().contains("plaintext"));
  d = api.callj("POST", "/v1/transit/decrypt/app-dk", json::value{{"ciphertext", r.str("ciphertext")}}, kApp);
  CHECK(unb64(d.str("plaintext")).size() == 64);
  r = api.call("POST", "/v1/transit/datakey/plaintext/app-dk", R"({"bits":"128"})", kApp);
  CHECK(unb64(r.str("plaintext")).size() == 16);

  check_error(api.call("POST", "/v1/transit/datakey/plaintext/app-dk", R"({"bits":100})", kApp), 400, "bit length");
  check_error(api.call("POST", "/v1/transit/datakey/other/app-dk", "", kApp), 400, "invalid type");
  check_error(api.call("POST", "/v1/transit/datakey/plaintext/app-none", "", kApp), 400, "encryption key not found");
  check_error(api.call("GET", "/v1/transit/datakey/plaintext/app-dk", {}, kApp), 405);
  check_error(api.call("POST", "/v1/transit/datakey/app-dk", "", kApp), 404);
  check_error(api.call("POST", "/v1/transit/datakey/plaintext/autounseal", "", kApp), 403);
}

// --------------------------------------------------------------- batch ----

TEST_CASE("router: batch_input keeps order, echoes reference, reports per-item errors") {
  Api api;
  const std::string good = encrypt(api, "app-batch", "zero", kApp);
  auto r = api.call("POST", "/v1/transit/encrypt/app-batch",
                    R"({"batch_input":[{"plaintext":"b25l","reference":"r1"},
                                       {"plaintext":"not base64!","reference":{"id":2}},
                                       {"plaintext":"dHdv"},
                                       {"reference":"r4"},
                                       7]})",
                    kApp);
  check_envelope(r, 400);  // any failed item makes it a 400, with the results
  const auto& results = r.data().at("batch_results").as_array();
  REQUIRE(results.size() == 5);
  CHECK(results[0].at("reference").as_string() == "r1");
  CHECK(results[0].at("ciphertext").as_string().starts_with("vault:v1:"));
  CHECK(num(results[0].at("key_version")) == 1);
  CHECK_FALSE(results[0].as_object().contains("error"));
  CHECK(results[1].at("reference") == json::value{{"id", 2}});
  CHECK(results[1].at("error").as_string().find("base64") != std::string::npos);
  CHECK_FALSE(results[1].as_object().contains("ciphertext"));
  CHECK_FALSE(results[2].as_object().contains("reference"));
  CHECK(results[2].as_object().contains("ciphertext"));
  CHECK(results[3].at("error").as_string() == "missing plaintext to encrypt");
  CHECK(results[3].at("reference").as_string() == "r4");
  CHECK(results[4].at("error").as_string() == "batch_input items must be objects");

  // partial_failure_response_code replaces the 400 when some items succeeded.
  r = api.call("POST", "/v1/transit/encrypt/app-batch",
               R"({"partial_failure_response_code":207,"batch_input":[{"plaintext":"b25l"},{"plaintext":"%"}]})", kApp);
  CHECK(r.status == 207);
  // ... but not when every item failed.
  r = api.call("POST", "/v1/transit/encrypt/app-batch",
               R"({"partial_failure_response_code":207,"batch_input":[{"plaintext":"%"}]})", kApp);
  CHECK(r.status == 400);

  // Decrypt and rewrap batches, in order, with references.
  json::array items;
  items.push_back(json::value{{"ciphertext", good}, {"reference", "a"}});
  items.push_back(json::value{{"ciphertext", good.substr(0, good.size() - 4)}, {"reference", "b"}});
  items.push_back(json::value{{"ciphertext", "vault:v1"}, {"reference", "c"}});
  r = api.callj("POST", "/v1/transit/decrypt/app-batch", json::value{{"batch_input", items}}, kApp);
  check_envelope(r, 400);
  const auto& dec = r.data().at("batch_results").as_array();
  REQUIRE(dec.size() == 3);
  CHECK(unb64(dec[0].at("plaintext").as_string()) == "zero");
  CHECK(dec[0].at("reference").as_string() == "a");
  CHECK(dec[1].as_object().contains("error"));
  CHECK(dec[2].at("error").as_string().find("malformed") != std::string::npos);
  check_envelope(api.call("POST", "/v1/transit/keys/app-batch/rotate", "", kApp));
  r = api.callj("POST", "/v1/transit/rewrap/app-batch", json::value{{"batch_input", json::array{items[0]}}}, kApp);
  check_envelope(r);
  CHECK(r.data().at("batch_results").at(0).at("ciphertext").as_string().starts_with("vault:v2:"));

  check_error(api.call("POST", "/v1/transit/encrypt/app-batch", R"({"batch_input":"x"})", kApp), 400, "batch_input");
  check_error(api.call("POST", "/v1/transit/encrypt/app-batch", R"({"batch_input":[]})", kApp), 400,
              "missing batch input to process");
  // A missing key is one 400 for the whole batch, as Vault answers.
  check_error(api.callj("POST", "/v1/transit/decrypt/app-nokey", json::value{{"batch_input", items}}, kApp), 400,
              "encryption key not found");
}

// --------------------------------------------------------------- tokens ----

TEST_CASE("router: lookup-self and renew-self (increment 0) answer as Vault does") {
  Api api;
  auto r = api.call("GET", "/v1/auth/token/lookup-self", {}, kSeal);
  check_envelope(r);
  CHECK(r.str("accessor") == api.seal_accessor);
  CHECK(r.str("id") == kSeal);
  CHECK(r.str("display_name") == "vault-seal");
  REQUIRE(r.data().at("policies").as_array().size() == 1);
  CHECK(r.data().at("policies").at(0).as_string() == "autounseal");
  CHECK(r.data().at("renewable").as_bool() == false);
  check_envelope(api.call("POST", "/v1/auth/token/lookup-self", "{}", kSeal));
  r = api.call("GET", "/v1/auth/token/lookup-self", {}, kRoot);
  CHECK(r.data().at("policies").at(0).as_string() == "root");
  CHECK(r.str("path") == "auth/token/root");

  // The transit seal's first call: a renewable token gets a real auth block.
  r = api.call("PUT", "/v1/auth/token/renew-self", R"({"increment":0})", kRenewable);
  INFO(r.body);
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "application/json");
  CHECK(r.obj().at("data").is_null());
  const auto& auth = r.obj().at("auth").as_object();
  CHECK(auth.at("client_token").as_string() == kRenewable);
  CHECK(num(auth.at("lease_duration")) == 3600);
  CHECK(auth.at("renewable").as_bool());
  CHECK(auth.at("policies").at(0).as_string() == "autounseal");
  CHECK(auth.at("accessor").as_string().size() > 0);
  r = api.call("GET", "/v1/auth/token/lookup-self", {}, kRenewable);
  CHECK(num(r.data().at("ttl")) > 3500);  // renewed from 60 s to the full TTL
  check_auth_envelope(api.call("POST", "/v1/auth/token/renew-self", "", kRenewable));
  // A token that cannot be renewed: a 4xx, never an empty 200.
  check_error(api.call("PUT", "/v1/auth/token/renew-self", R"({"increment":0})", kSeal), 400, "lease is not renewable");
  check_error(api.call("GET", "/v1/auth/token/renew-self", {}, kRenewable), 405);
  check_error(api.call("DELETE", "/v1/auth/token/lookup-self", {}, kRenewable), 405);
  check_error(api.call("GET", "/v1/auth/token/lookup", {}, kRoot), 404);
  // Expired and unknown tokens are refused outright.
  check_error(api.call("GET", "/v1/auth/token/lookup-self", {}, kExpired), 403, "permission denied");
  check_error(api.call("PUT", "/v1/auth/token/renew-self", R"({"increment":0})", kExpired), 403);
  check_error(api.call("GET", "/v1/auth/token/lookup-self", {}, std::nullopt), 403);
}

// --------------------------------------------------------- refusals ----

TEST_CASE("router: 403 for missing, wrong, expired tokens and for another policy's key") {
  Api api;
  encrypt(api, "autounseal", "a");
  const std::string app_ct = encrypt(api, "app-secret", "s", kApp);
  for (std::optional<std::string_view> token :
       {std::optional<std::string_view>(), std::optional<std::string_view>("wrong-token"),
        std::optional<std::string_view>(""), std::optional<std::string_view>(kExpired),
        std::optional<std::string_view>(std::string_view(kRoot).substr(0, 10))}) {
    INFO(token.value_or("<none>"));
    auto r = api.call("POST", "/v1/transit/encrypt/app-secret", R"({"plaintext":"YQ=="})", token);
    check_error(r, 403, "permission denied");
    CHECK(r.errors().size() == 1);
  }
  // Authorization: Bearer works like X-Vault-Token.
  check_envelope(api.call("POST", "/v1/transit/encrypt/app-secret", R"({"plaintext":"YQ=="})", std::nullopt,
                          {{"Authorization", "Bearer " + std::string(kApp)}}));
  check_error(api.call("POST", "/v1/transit/encrypt/app-secret", R"({"plaintext":"YQ=="})", std::nullopt,
                       {{"Authorization", "Basic " + std::string(kApp)}}),
              403);

  // The seal's token may not touch the app's key, nor manage its own.
  check_error(api.callj("POST", "/v1/transit/decrypt/app-secret", json::value{{"ciphertext", app_ct}}, kSeal), 403);
  check_error(api.call("POST", "/v1/transit/encrypt/app-secret", R"({"plaintext":"YQ=="})", kSeal), 403);
  check_error(api.call("GET", "/v1/transit/keys/app-secret", {}, kSeal), 403);
  check_error(api.call("GET", "/v1/transit/keys/autounseal", {}, kSeal), 403);
  check_error(api.call("POST", "/v1/transit/keys/autounseal/rotate", "", kSeal), 403);
  check_error(api.call("POST", "/v1/transit/keys/autounseal/config", R"({"deletion_allowed":true})", kSeal), 403);
  check_error(api.call("DELETE", "/v1/transit/keys/autounseal", {}, kSeal), 403);
  check_error(api.callj("POST", "/v1/transit/rewrap/autounseal", json::value{{"ciphertext", app_ct}}, kSeal), 403);
  check_error(api.call("POST", "/v1/transit/datakey/plaintext/autounseal", "", kSeal), 403);
  check_error(api.call("LIST", "/v1/transit/keys", {}, kSeal), 403);
  // ... and the app's token not the seal's key.
  check_error(api.call("POST", "/v1/transit/encrypt/autounseal", R"({"plaintext":"YQ=="})", kApp), 403);
  // LIST shows the app only its own keys.
  auto r = api.call("LIST", "/v1/transit/keys", {}, kApp);
  check_envelope(r);
  REQUIRE(r.data().at("keys").as_array().size() == 1);
  CHECK(r.data().at("keys").at(0).as_string() == "app-secret");

  // A verified client certificate bound to a policy acts as a token; an unbound one does not.
  const std::string seal_ct = encrypt(api, "autounseal", "b");
  r = api.callj("PUT", "/v1/transit/decrypt/autounseal", json::value{{"ciphertext", seal_ct}}, std::nullopt, {},
                std::string(64, 'a'));
  check_envelope(r);
  CHECK(unb64(r.str("plaintext")) == "b");
  check_error(api.callj("PUT", "/v1/transit/decrypt/autounseal", json::value{{"ciphertext", seal_ct}}, std::nullopt, {},
                        std::string(64, 'b')),
              403);
  // The 403s changed nothing: the keys still work.
  r = api.callj("POST", "/v1/transit/decrypt/app-secret", json::value{{"ciphertext", app_ct}}, kApp);
  CHECK(unb64(r.str("plaintext")) == "s");
}

TEST_CASE("router: 400 for malformed JSON, wrong types, bad base64, tampered or truncated ciphertext") {
  Api api;
  const std::string good = encrypt(api, "app-bad", "payload", kApp);
  const std::string body = good.substr(9);
  std::string tampered = good;
  tampered[12] = tampered[12] == 'A' ? 'B' : 'A';
  struct Case {
    const char* path;
    std::string body;
    std::string_view fragment;
  };
  const std::vector<Case> cases = {
      {"encrypt", R"({"plaintext": )", "failed to parse JSON input"},
      {"encrypt", R"([1,2])", "not a JSON object"},
      {"encrypt", R"("text")", "not a JSON object"},
      {"encrypt", std::string(40, '[') + std::string(40, ']'), "failed to parse JSON input"},
      {"encrypt", R"({"plaintext":"YQ=="} trailing)", "failed to parse JSON input"},
      {"encrypt", R"({"plaintext":5})", "'plaintext' must be a string"},
      {"encrypt", R"({"plaintext":["YQ=="]})", "'plaintext' must be a string"},
      {"encrypt", R"({"plaintext":"not base64!"})", "base64"},
      {"encrypt", R"({"plaintext":"YQ"})", "base64"},
      {"encrypt", R"({"plaintext":"YQ==","context":"%%%"})", "base64"},
      {"encrypt", R"({"plaintext":"YQ==","associated_data":7})", "'associated_data' must be a string"},
      {"encrypt", R"({"plaintext":"YQ==","key_version":1.5})", "'key_version' must be an integer"},
      {"decrypt", R"({"ciphertext":7})", "'ciphertext' must be a string"},
      {"decrypt", R"({"ciphertext":"vault:v1"})", "malformed"},
      {"decrypt", R"({"ciphertext":"vault:v1:"})", ""},
      {"decrypt", R"({"ciphertext":"vault:vX:)" + body + R"("})", "malformed"},
      {"decrypt", R"({"ciphertext":"vault:v1:)" + body + R"(:x"})", ""},
      {"decrypt", R"({"ciphertext":"vault:v9:)" + body + R"("})", "version is too new"},
      {"decrypt", R"({"ciphertext":")" + good.substr(0, good.size() - 6) + R"("})", ""},
      {"decrypt", R"({"ciphertext":"vault:v1:AAAA"})", ""},
      {"decrypt", R"({"ciphertext":")" + tampered + R"("})", ""},
      {"decrypt", R"({"ciphertext":"vault:v1:!!!!"})", "base64"},
      {"rewrap", R"({"ciphertext":")" + tampered + R"("})", ""},
  };
  for (const auto& c : cases) {
    INFO(c.path << " " << c.body.substr(0, 80));
    check_error(api.call("POST", std::string("/v1/transit/") + c.path + "/app-bad", c.body, kApp), 400, c.fragment);
  }
  // Nothing was damaged: the good ciphertext still opens.
  auto r = api.callj("POST", "/v1/transit/decrypt/app-bad", json::value{{"ciphertext", good}}, kApp);
  CHECK(unb64(r.str("plaintext")) == "payload");
}

TEST_CASE("router: 404 for unknown paths and mounts, Vault's empty error list") {
  Api api;
  for (const char* target : {"/v1/nope", "/v1/sys/does-not-exist", "/", "/v2/transit/encrypt/x",
                             "/v1/transitx/encrypt/x", "/v1/transit/nosuch/x", "/v1/transit/"}) {
    INFO(target);
    auto r = api.call("POST", target, "{}");
    check_error(r, 404);
  }
  // A configured mount moves the API.
  Api moved("seal");
  check_envelope(moved.call("PUT", "/v1/seal/encrypt/autounseal", R"({"plaintext":"YQ=="})"));
  check_error(moved.call("PUT", "/v1/transit/encrypt/autounseal", R"({"plaintext":"YQ=="})"), 404);
}

TEST_CASE("router: sealed, every crypto and key endpoint answers 503 and nothing else changes") {
  Api api;
  const std::string ct = encrypt(api, "autounseal", "a");
  api.sealed = true;
  for (const auto& [method, target] :
       std::vector<std::pair<const char*, const char*>>{{"PUT", "/v1/transit/encrypt/autounseal"},
                                                        {"PUT", "/v1/transit/decrypt/autounseal"},
                                                        {"POST", "/v1/transit/rewrap/autounseal"},
                                                        {"POST", "/v1/transit/datakey/plaintext/autounseal"},
                                                        {"GET", "/v1/transit/keys/autounseal"},
                                                        {"LIST", "/v1/transit/keys"},
                                                        {"POST", "/v1/transit/keys/autounseal/rotate"},
                                                        {"GET", "/v1/auth/token/lookup-self"}}) {
    INFO(method << " " << target);
    check_error(api.callj(method, target, json::value{{"ciphertext", ct}, {"plaintext", "YQ=="}}), 503,
                "rootseal is sealed");
    // Even without a token: sealed comes first, as in Vault.
    check_error(api.call(method, target, "{}", std::nullopt), 503);
  }
  // The keyring itself sealed (root gone mid-flight) is also a 503, and is reported.
  api.sealed = false;
  api.ring().seal();
  check_error(api.callj("PUT", "/v1/transit/decrypt/autounseal", json::value{{"ciphertext", ct}}), 503);
  CHECK(api.root_failures >= 1);
}

// ----------------------------------------------------------------- audit ----

TEST_CASE("router: every Transit and token request is audited, refused ones too, with no secret") {
  Api api;
  const std::string ct = encrypt(api, "autounseal", "top secret plaintext", kRoot);
  auto ok = api.callj("PUT", "/v1/transit/decrypt/autounseal", json::value{{"ciphertext", ct}}, kSeal);
  check_envelope(ok);
  const std::string plain_b64 = ok.str("plaintext");
  check_error(api.callj("PUT", "/v1/transit/decrypt/autounseal", json::value{{"ciphertext", ct}}, std::nullopt), 403);
  check_error(
      api.callj("PUT", "/v1/transit/decrypt/autounseal", json::value{{"ciphertext", ct}}, "not-a-real-token-xyz"), 403);
  check_error(api.call("GET", "/v1/transit/keys/autounseal", {}, kSeal), 403);
  check_error(api.call("PUT", "/v1/transit/decrypt/autounseal", R"({"ciphertext":"vault:v1:QUJD"})", kSeal), 400);
  check_envelope(api.call("GET", "/v1/auth/token/lookup-self", {}, kSeal));  // answers the token itself
  check_auth_envelope(api.call("PUT", "/v1/auth/token/renew-self", R"({"increment":0})", kRenewable));
  auto dk = api.call("POST", "/v1/transit/datakey/plaintext/autounseal", "");
  check_envelope(dk);
  api.sealed = true;
  check_error(api.callj("PUT", "/v1/transit/decrypt/autounseal", json::value{{"ciphertext", ct}}, kSeal), 503);
  api.sealed = false;
  CHECK(api.call("GET", "/v1/sys/health", {}, std::nullopt).status == 200);  // sys/* is not audited

  const auto lines = api.audit_lines();
  REQUIRE(lines.size() == 10);
  auto field = [&](std::size_t i, std::string_view k) -> std::string {
    const auto* v = lines[i].if_contains(k);
    if (v == nullptr) return "<absent>";
    if (v->is_string()) return std::string(v->as_string());
    return json::serialize(*v);
  };
  // encrypt (root), decrypt (seal): ok.
  CHECK(field(0, "outcome") == "ok");
  CHECK(field(0, "accessor") == api.root_accessor);
  CHECK(field(0, "operation") == "encrypt");
  CHECK(field(0, "key") == "autounseal");
  CHECK(field(0, "key_version") == "1");
  CHECK(field(1, "accessor") == api.seal_accessor);
  CHECK(field(1, "operation") == "decrypt");
  CHECK(field(1, "status") == "200");
  // No token, and an unknown token: denied, no accessor, no operation.
  for (std::size_t i : {2u, 3u}) {
    INFO(i);
    CHECK(field(i, "outcome") == "denied");
    CHECK(field(i, "status") == "403");
    CHECK(field(i, "accessor") == "");
    CHECK(field(i, "operation") == "<absent>");
    CHECK(field(i, "path") == "/v1/transit/decrypt/autounseal");
    CHECK(field(i, "error") == "permission denied");
    CHECK(field(i, "remote") == "127.0.0.1:40001");
  }
  // Denied by policy: the token's accessor and what it tried.
  CHECK(field(4, "outcome") == "denied");
  CHECK(field(4, "accessor") == api.seal_accessor);
  CHECK(field(4, "operation") == "read");
  CHECK(field(4, "key") == "autounseal");
  CHECK(field(5, "outcome") == "invalid");
  CHECK(field(5, "status") == "400");
  CHECK(field(6, "path") == "/v1/auth/token/lookup-self");
  CHECK(field(7, "path") == "/v1/auth/token/renew-self");
  CHECK(field(7, "outcome") == "ok");
  CHECK(field(8, "operation") == "datakey");
  CHECK(field(9, "outcome") == "sealed");
  for (const auto& l : lines) {
    CHECK(l.at("request_id").as_string().size() == 36);
    CHECK(l.contains("latency_ms"));
    CHECK(l.at("sha256").as_string().size() == 64);
  }

  // No token, plaintext, ciphertext or data key in any line, in any form.
  const std::string text = api.audit_text();
  const std::string dk_plain = dk.str("plaintext");
  const std::string dk_ct = dk.str("ciphertext");
  for (const std::string& secret :
       {std::string(kRoot), std::string(kSeal), std::string(kRenewable), std::string("not-a-real-token-xyz"), ct,
        ct.substr(9, 20), plain_b64, std::string("top secret plaintext"), dk_plain, dk_ct, dk_ct.substr(9, 20),
        std::string("QUJD")}) {
    INFO(secret);
    CHECK(text.find(secret) == std::string::npos);
  }
  CHECK(verify_audit_log(api.audit_path()));
}

// ------------------------------------------------------------ arena ----

TEST_CASE("locked json: the arena grows in locked chunks and refuses past its limit") {
  // A document far larger than the first buffer parses; every byte is locked.
  std::string doc = R"({"batch_input":[)";
  for (int i = 0; i < 5000; ++i)
    doc += std::string(i ? "," : "") + R"({"plaintext":"YWJjZGVm","reference":)" + std::to_string(i) + "}";
  doc += "]}";
  const auto before = kms::secure_arena_stats().in_use_bytes;
  {
    LockedJson arena(1024, 64 * 1024 * 1024);
    auto parsed = parse_object(doc, arena);
    REQUIRE(parsed);
    CHECK(parsed->at("batch_input").as_array().size() == 5000);
    // The document lives in the arena, not copied to the ordinary heap on the way out.
    CHECK(*parsed->storage() == *arena.storage());
    CHECK(*parsed->at("batch_input").as_array().at(0).as_object().at("plaintext").as_string().storage() ==
          *arena.storage());
    CHECK(arena.reserved_bytes() > 4 * 1024);
    CHECK(arena.reserved_bytes() <= 64 * 1024 * 1024);
    CHECK(kms::secure_arena_stats().in_use_bytes >= before + arena.reserved_bytes());
  }
  CHECK(kms::secure_arena_stats().in_use_bytes == before);  // all chunks given back (wiped)

  // Past the limit: an error, never the ordinary heap.
  LockedJson small(1024, 16 * 1024);
  auto refused = parse_object(doc, small);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message == "failed to parse JSON input: request too complex");
  CHECK(small.reserved_bytes() <= 16 * 1024);

  // The sizes follow the body: small at first, bounded growth.
  const auto tiny = arena_size_for(20);
  CHECK(tiny.initial <= 4 * 1024);  // a seal call's block stays in the per-thread cache
  CHECK(arena_size_for(400).initial <= 4 * 1024);
  const auto big = arena_size_for(1024 * 1024);
  CHECK(big.initial < 4 * 1024 * 1024);
  CHECK(big.limit >= 32 * 1024 * 1024);
  CHECK(big.limit <= 80 * 1024 * 1024);
}

TEST_CASE("router: a maximal batch_input (1 MiB body) never fails for arena size") {
  Api api;
  check_envelope(api.call("POST", "/v1/transit/keys/app-max", "", kApp));
  constexpr std::size_t kBodyLimit = 1024 * 1024;  // the default api.max_body_bytes

  // The densest successful items: a one-byte plaintext each.
  std::string body = R"({"batch_input":[)";
  std::size_t n = 0;
  const std::string item = R"({"plaintext":"YQ=="})";
  while (body.size() + item.size() + 3 < kBodyLimit) {
    if (n++ != 0) body += ',';
    body += item;
  }
  body += "]}";
  REQUIRE(body.size() <= kBodyLimit);
  auto r = api.call("POST", "/v1/transit/encrypt/app-max", body, kApp);
  check_envelope(r);
  const auto& results = r.data().at("batch_results").as_array();
  REQUIRE(results.size() == n);
  CHECK(results.back().at("ciphertext").as_string().starts_with("vault:v1:"));
  INFO(n << " items, answer " << r.body.size() << " bytes");
  CHECK(n > 45000);

  // Decrypt them all back in one batch (a larger body than the encrypt's, still below the limit).
  json::array items;
  std::size_t decrypt_n = 0;
  std::size_t size = 20;
  for (const auto& res : results) {
    const auto& c = res.at("ciphertext").as_string();
    if (size + c.size() + 20 > kBodyLimit) break;
    size += c.size() + 19;
    items.push_back(json::value{{"ciphertext", c}});
    ++decrypt_n;
  }
  const std::string decrypt_body = json::serialize(json::value{{"batch_input", items}});
  REQUIRE(decrypt_body.size() <= kBodyLimit);
  r = api.call("PUT", "/v1/transit/decrypt/app-max", decrypt_body, kApp);
  check_envelope(r);
  REQUIRE(r.data().at("batch_results").as_array().size() == decrypt_n);
  CHECK(r.data().at("batch_results").at(decrypt_n - 1).at("plaintext").as_string() == "YQ==");

  // The worst answer-to-request ratio: tiny items that all fail, each with an error object and a reference.
  std::string worst = R"({"batch_input":[)";
  std::size_t m = 0;
  const std::string referenced = R"({"reference":1})";
  while (worst.size() + referenced.size() + 3 < kBodyLimit) {
    if (m++ != 0) worst += ',';
    worst += referenced;
  }
  worst += "]}";
  REQUIRE(worst.size() <= kBodyLimit);
  r = api.call("POST", "/v1/transit/encrypt/app-max", worst, kApp);
  check_envelope(r, 400);
  REQUIRE(r.data().at("batch_results").as_array().size() == m);
  CHECK(r.data().at("batch_results").at(m - 1).at("error").as_string() == "missing plaintext to encrypt");
  worst = R"({"batch_input":[)";
  m = 0;
  while (worst.size() + 5 < kBodyLimit) {
    if (m++ != 0) worst += ',';
    worst += "{}";
  }
  worst += "]}";
  r = api.call("POST", "/v1/transit/encrypt/app-max", worst, kApp);
  check_envelope(r, 400);
  REQUIRE(r.data().at("batch_results").as_array().size() == m);
}

// ------------------------------------------------------------------ HEAD ----

TEST_CASE("router: HEAD is GET without the body, for every route (status, headers and Content-Length)") {
  Api api;
  check_envelope(api.call("POST", "/v1/transit/keys/app-head", "", kApp));
  struct Case {
    const char* target;
    std::optional<std::string_view> token;
    unsigned status;
  };
  const Case cases[] = {
      {"/v1/sys/health", std::nullopt, 200},
      {"/v1/sys/health?sealedcode=299", std::nullopt, 200},
      {"/v1/sys/seal-status", std::nullopt, 200},
      {"/v1/sys/leader", std::nullopt, 200},
      {"/v1/sys/metrics", std::nullopt, 400},
      {"/v1/transit/keys?list=true", kApp, 200},
      {"/v1/transit/keys", kApp, 405},
      {"/v1/transit/keys?list=maybe", kApp, 400},
      {"/v1/transit/keys/app-head", kApp, 200},
      {"/v1/transit/keys/app-missing", kApp, 404},
      {"/v1/transit/keys/app-head/config", kApp, 405},
      {"/v1/transit/keys/app-head/rotate", kApp, 405},
      {"/v1/transit/encrypt/app-head", kApp, 405},
      {"/v1/transit/decrypt/app-head", kApp, 405},
      {"/v1/transit/rewrap/app-head", kApp, 405},
      {"/v1/transit/datakey/plaintext/app-head", kApp, 405},
      {"/v1/transit/nope", kApp, 404},
      {"/v1/transit/keys/app-head", std::nullopt, 403},
      {"/v1/auth/token/lookup-self", kApp, 200},
      {"/v1/auth/token/renew-self", kApp, 405},
      {"/v1/nope", std::nullopt, 404},
  };
  for (const auto& c : cases) {
    INFO(c.target);
    const Reply get = api.call("GET", c.target, {}, c.token);
    const Reply head = api.call("HEAD", c.target, {}, c.token);
    CHECK(get.status == c.status);
    CHECK(head.status == get.status);
    CHECK(head.content_type == get.content_type);
    CHECK(head.body.empty());
    REQUIRE(get.content_length.has_value());
    REQUIRE(head.content_length.has_value());
    CHECK(*head.content_length == std::to_string(get.body.size()));  // the GET body's length
  }
  // Metrics change between two requests (they count them): only the shape is compared.
  const Reply get = api.call("GET", "/v1/sys/metrics?format=prometheus", {}, std::nullopt);
  const Reply head = api.call("HEAD", "/v1/sys/metrics?format=prometheus", {}, std::nullopt);
  CHECK(head.status == 200);
  CHECK(head.content_type == get.content_type);
  CHECK(head.body.empty());
  REQUIRE(head.content_length.has_value());
  CHECK(std::stoul(*head.content_length) > 0);
}

// ------------------------------------------------ Vault's field parser ----

TEST_CASE("router: ?list= takes every value of Go's ParseBool, as Vault does") {
  Api api;
  check_envelope(api.call("POST", "/v1/transit/keys/app-list", "", kApp));
  for (const char* yes : {"1", "t", "T", "TRUE", "true", "True"}) {
    INFO(yes);
    auto r = api.call("GET", std::string("/v1/transit/keys?list=") + yes, {}, kApp);
    check_envelope(r);
    CHECK(r.data().at("keys").as_array() == json::array{"app-list"});
    CHECK(api.call("GET", std::string("/v1/transit/keys/?list=") + yes, {}, kApp).status == 200);
  }
  // false: a read of "keys", which has no read (Vault's 405).
  for (const char* no : {"0", "f", "F", "FALSE", "false", "False", ""}) {
    INFO(no);
    check_error(api.call("GET", std::string("/v1/transit/keys?list=") + no, {}, kApp), 405, "unsupported operation");
  }
  for (const char* bad : {"yes", "2", "tRUE", "on"}) {
    INFO(bad);
    check_error(api.call("GET", std::string("/v1/transit/keys?list=") + bad, {}, kApp), 400, "list");
  }
  // A key read with ?list=false is still a read.
  check_envelope(api.call("GET", "/v1/transit/keys/app-list?list=false", {}, kApp));
}

TEST_CASE("router: boolean, integer and duration fields follow Vault's field parser") {
  Api api;
  // Booleans: JSON booleans, Go's ParseBool strings, "" (false), and the numbers 1 and 0.
  const std::pair<const char*, bool> bools[] = {
      {"true", true},     {"\"1\"", true},      {"\"t\"", true},      {"\"T\"", true},  {"\"TRUE\"", true},
      {"\"True\"", true}, {"1", true},          {"false", false},     {"\"0\"", false}, {"\"f\"", false},
      {"\"F\"", false},   {"\"FALSE\"", false}, {"\"False\"", false}, {"0", false},     {"\"\"", false}};
  int n = 0;
  for (const auto& [text, value] : bools) {
    INFO(text);
    const std::string name = "app-b" + std::to_string(n++);
    auto r = api.call("POST", "/v1/transit/keys/" + name, std::string(R"({"derived":)") + text + "}", kApp);
    check_envelope(r);
    CHECK(r.data().at("derived").as_bool() == value);
    r = api.call("POST", "/v1/transit/keys/" + name + "/config", std::string(R"({"deletion_allowed":)") + text + "}",
                 kApp);
    check_envelope(r);
    CHECK(r.data().at("deletion_allowed").as_bool() == value);
  }
  for (const char* bad : {"2", "-1", "1.0", "\"yes\"", "\"tRUE\"", "[]", "{}"}) {
    INFO(bad);
    check_error(api.call("POST", "/v1/transit/keys/app-bad", std::string(R"({"derived":)") + bad + "}", kApp), 400,
                "'derived' must be a boolean");
  }

  // Integers: JSON integers, decimal strings, "" (0), booleans (1/0).
  check_envelope(api.call("POST", "/v1/transit/keys/app-int", "", kApp));
  check_envelope(api.call("POST", "/v1/transit/keys/app-int/rotate", "", kApp));
  for (const char* v : {"2", "\"2\"", "\"+2\""}) {
    INFO(v);
    auto r = api.call("POST", "/v1/transit/encrypt/app-int",
                      std::string(R"({"plaintext":"YQ==","key_version":)") + v + "}", kApp);
    check_envelope(r);
    CHECK(num(r.data().at("key_version")) == 2);
  }
  auto r = api.call("POST", "/v1/transit/encrypt/app-int", R"({"plaintext":"YQ==","key_version":true})", kApp);
  CHECK(num(r.data().at("key_version")) == 1);
  r = api.call("POST", "/v1/transit/encrypt/app-int", R"({"plaintext":"YQ==","key_version":""})", kApp);
  CHECK(num(r.data().at("key_version")) == 2);  // 0: the latest
  r = api.call("POST", "/v1/transit/datakey/wrapped/app-int", R"({"bits":"128"})", kApp);
  check_envelope(r);
  for (const char* bad :
       {"1.5", "\"1.5\"", "\"2x\"", "\" 2\"", "\"9223372036854775808\"", "18446744073709551615", "[]"}) {
    INFO(bad);
    check_error(api.call("POST", "/v1/transit/encrypt/app-int",
                         std::string(R"({"plaintext":"YQ==","key_version":)") + bad + "}", kApp),
                400, "'key_version' must be an integer");
  }
  check_error(api.call("POST", "/v1/transit/encrypt/app-int",
                       R"({"plaintext":"YQ==","key_version":"9223372036854775807"})", kApp),
              400, "invalid key version");
  // Vault would read these as octal or hex (ParseInt base 0): refused, never a different number.
  for (const char* prefixed : {"\"01\"", "\"-01\"", "\"00\"", "\"0x1\"", "\"0b1\"", "\"0o1\""}) {
    INFO(prefixed);
    check_error(api.call("POST", "/v1/transit/encrypt/app-int",
                         std::string(R"({"plaintext":"YQ==","key_version":)") + prefixed + "}", kApp),
                400, "'key_version' must be");
  }
  check_envelope(api.call("POST", "/v1/transit/encrypt/app-int", R"({"plaintext":"YQ==","key_version":"0"})", kApp));

  // Durations: seconds (number or string), "<n>d", Go durations, "" (0); range-checked.
  const std::pair<const char*, std::int64_t> durations[] = {{"3600", 3600},
                                                            {"\"3600\"", 3600},
                                                            {"\"2d\"", 172800},
                                                            {"\"1h30m\"", 5400},
                                                            {"\"\"", 0},
                                                            {"0", 0},
                                                            {"\"2562047h\"", 2562047LL * 3600},
                                                            {"9223372036", 9223372036}};
  for (const auto& [text, seconds] : durations) {
    INFO(text);
    r = api.call("POST", "/v1/transit/keys/app-int/config", std::string(R"({"auto_rotate_period":)") + text + "}",
                 kApp);
    check_envelope(r);
    CHECK(num(r.data().at("auto_rotate_period")) == seconds);
  }
  // The reported overflow ("9999999999999999h" multiplied past int64) and its neighbours.
  for (const char* over : {"\"9999999999999999h\"", "\"2562048h\"", "9223372037", "\"9223372036854775807\"",
                           "9223372036854775807", "18446744073709551615", "\"106752d\""}) {
    INFO(over);
    check_error(api.call("POST", "/v1/transit/keys/app-int/config",
                         std::string(R"({"auto_rotate_period":)") + over + "}", kApp),
                400, "out of range");
    check_error(
        api.call("POST", "/v1/transit/keys/app-new", std::string(R"({"auto_rotate_period":)") + over + "}", kApp), 400,
        "out of range");
  }
  for (const char* bad : {"-1", "\"-1h\"", "1.5", "true", "\"soon\"", "\"1.5d\""}) {
    INFO(bad);
    check_error(
        api.call("POST", "/v1/transit/keys/app-int/config", std::string(R"({"auto_rotate_period":)") + bad + "}", kApp),
        400, "'auto_rotate_period' must be a duration");
  }
  check_error(api.call("POST", "/v1/transit/keys/app-int/config", R"({"auto_rotate_period":"30m"})", kApp), 400,
              "at least an hour");
}

TEST_CASE("router: a key read lists only the versions at or above min_decryption_version, as Vault") {
  Api api;
  check_envelope(api.call("POST", "/v1/transit/keys/app-window", "", kApp));
  check_envelope(api.call("POST", "/v1/transit/keys/app-window/rotate", "", kApp));
  check_envelope(api.call("POST", "/v1/transit/keys/app-window/rotate", "", kApp));
  auto keys_of = [](const Reply& r) {
    std::vector<std::string> out;
    for (const auto& [k, v] : r.data().at("keys").as_object()) out.emplace_back(k);
    std::sort(out.begin(), out.end());
    return out;
  };
  CHECK(keys_of(api.call("GET", "/v1/transit/keys/app-window", {}, kApp)) == std::vector<std::string>{"1", "2", "3"});
  auto r = api.call("POST", "/v1/transit/keys/app-window/config", R"({"min_decryption_version":2})", kApp);
  CHECK(keys_of(r) == std::vector<std::string>{"2", "3"});
  r = api.call("GET", "/v1/transit/keys/app-window", {}, kApp);
  CHECK(keys_of(r) == std::vector<std::string>{"2", "3"});
  CHECK(num(r.data().at("latest_version")) == 3);
  CHECK(num(r.data().at("min_decryption_version")) == 2);
  r = api.call("POST", "/v1/transit/keys/app-window/config", R"({"min_decryption_version":3})", kApp);
  CHECK(keys_of(r) == std::vector<std::string>{"3"});
  // Lowering it again lists the old versions again (they were never dropped).
  r = api.call("POST", "/v1/transit/keys/app-window/config", R"({"min_decryption_version":1})", kApp);
  CHECK(keys_of(r) == std::vector<std::string>{"1", "2", "3"});
}

TEST_CASE("router: with a shared store a key or version made by another host is re-read before not found") {
  Api a("transit", nullptr, true);
  Api b("transit", &a, true);         // another host on the same keyring, no watch running
  Api b_local("transit", &a, false);  // the same, with a store that says it is not shared

  // A key B has never loaded: B re-reads it for decrypt, read and rotate.
  auto ct1 = encrypt(a, "app-k", "one");
  auto r = b.callj("POST", "/v1/transit/decrypt/app-k", json::value{{"ciphertext", ct1}});
  check_envelope(r);
  CHECK(r.str("plaintext") == b64("one"));
  check_error(b_local.callj("POST", "/v1/transit/decrypt/app-k", json::value{{"ciphertext", ct1}}), 400,
              "encryption key not found");

  // A version B has not seen: in a ciphertext (single and batch), and as key_version.
  check_envelope(a.call("POST", "/v1/transit/keys/app-k/rotate"));
  auto ct2 = encrypt(a, "app-k", "two");
  REQUIRE(ct2.starts_with("vault:v2:"));
  r = b.callj("POST", "/v1/transit/decrypt/app-k", json::value{{"ciphertext", ct2}});
  check_envelope(r);
  CHECK(r.str("plaintext") == b64("two"));
  check_envelope(a.call("POST", "/v1/transit/keys/app-k/rotate"));
  auto ct3 = encrypt(a, "app-k", "three");
  r = b.callj(
      "POST", "/v1/transit/decrypt/app-k",
      json::value{{"batch_input", json::array{json::object{{"ciphertext", ct1}}, json::object{{"ciphertext", ct3}}}}});
  REQUIRE(r.status == 200);
  check_envelope(a.call("POST", "/v1/transit/keys/app-k/rotate"));
  r = b.callj("POST", "/v1/transit/encrypt/app-k", json::value{{"plaintext", b64("four")}, {"key_version", 4}});
  check_envelope(r);
  CHECK(r.str("ciphertext").starts_with("vault:v4:"));
  // b_local answers from memory: the version is too new for it.
  check_error(b_local.callj("POST", "/v1/transit/decrypt/app-k", json::value{{"ciphertext", ct2}}), 400);

  // Read, rotate and delete of a key only A has made.
  check_envelope(a.call("POST", "/v1/transit/keys/app-other"));
  r = b.call("GET", "/v1/transit/keys/app-other");
  check_envelope(r);
  CHECK(num(r.data().at("latest_version")) == 1);
  r = b.call("POST", "/v1/transit/keys/app-k/rotate");  // B held it at 4 (re-read above): the store's 5
  check_envelope(r);
  CHECK(num(r.data().at("latest_version")) == 5);
  check_envelope(a.callj("POST", "/v1/transit/keys/app-other/config", json::value{{"deletion_allowed", true}}));
  // B's memory says deletion is not allowed; the store says it is.
  REQUIRE(b.call("DELETE", "/v1/transit/keys/app-other").status == 204);
  check_error(b.call("GET", "/v1/transit/keys/app-other"), 404);  // re-read: gone (A learns it from the watch)
}
