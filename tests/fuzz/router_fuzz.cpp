// Fuzz target: the HTTP API's request path — Router::handle, the Transit and
// token endpoints, LockedJson parsing, batch handling, audit lines, metrics —
// over a real Keyring (SoftwareRoot, SQLite store under /dev/shm or /tmp).
//
// Input layout (seeds in corpus/router are readable text):
//   line 1: "<METHOD> <target>"      e.g. "PUT /v1/transit/encrypt/fz"
//   line 2: which token: root | app | seal | none | bearer | other
//   rest:   the request body, where @CT1@ and @CT2@ stand for real
//           ciphertexts of key "fz" (versions 1 and 2) made at start-up, so
//           that seeds reach successful decrypt and rewrap paths
// Properties beyond "no crash, no sanitizer report, no leak":
//   - every answer but 204 is JSON (metrics: Prometheus text) with exactly
//     "application/json", and every error body is {"errors":[strings]};
//   - a 200/4xx Transit answer is either Vault's envelope or an error body;
//   - no 500 (an internal error is a bug) unless the client chose the code
//     (health overrides, partial_failure_response_code);
//   - the token is never echoed except by lookup-self/renew-self.
#include <boost/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "router_rig.hpp"  // tests/unit/daemon: router_test's set-up

namespace {

namespace http = boost::beast::http;
namespace json = boost::json;
using namespace rootseal;
using namespace rootseal::daemon;

// '+' cannot be in a key name, so a key the fuzzer created cannot make a
// later answer (e.g. LIST keys) contain a token by chance.
constexpr std::string_view kRootToken = "fuzz+root+token";
constexpr std::string_view kAppToken = "fuzz+app+token";
constexpr std::string_view kSealToken = "fuzz+seal+token";

struct World {
  std::filesystem::path dir;
  std::unique_ptr<test::RouterRig> rig;
  std::string ct_v1, ct_v2;
};

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "router_fuzz setup: %s\n", what);
  std::abort();
}

World& world() {
  static World* w = [] {
    auto* x = new World();  // lives for the whole run
    // tmpfs where there is one: the store commits with synchronous=FULL.
    std::string templ =
        std::filesystem::exists("/dev/shm") ? "/dev/shm/rootseal-fuzz-XXXXXX" : "/tmp/rootseal-fuzz-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) die("mkdtemp");
    x->dir = templ;
    // The store's folder goes when the run ends (libFuzzer exits through exit()).
    static std::filesystem::path scratch = x->dir;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch, ec);
    });

    test::RouterRigOptions options;
    options.dir = x->dir;
    options.root_key = kms::SecureBytes(32);  // a fixed (zero) key: reproducible runs
    options.policies = {{"autounseal", {"autounseal"}, {Operation::encrypt, Operation::decrypt}},
                        // The app may do everything to fz* keys but create, rotate or
                        // delete them (those grow the store on every run; root may).
                        {"app",
                         {"fz*"},
                         {Operation::read, Operation::list, Operation::config, Operation::encrypt, Operation::decrypt,
                          Operation::rewrap, Operation::datakey}}};
    // The audit log takes regular files only: a file in the scratch folder,
    // cut back to nothing every few thousand inputs (the writer keeps its
    // offset, so the file stays sparse and small on disk).
    options.audit_path = x->dir / "audit.log";
    options.seal_status = [] { return SealStatus{false, "", 0, 1, "kcv"}; };
    options.cluster_id = "fuzz";
    options.version = "fuzz";
    auto rig = test::RouterRig::create(std::move(options));
    if (!rig) die("router rig (store, root, unseal or audit)");
    x->rig = std::move(*rig);

    // Keys the seeds use: plain (two versions), derived, deletable.
    kms::Keyring& ring = x->rig->ring();
    kms::CreateOptions plain;
    if (!ring.create("fz", plain) || !ring.rotate("fz")) die("key fz");
    kms::CreateOptions derived;
    derived.derived = true;
    if (!ring.create("fz-derived", derived)) die("key fz-derived");
    if (!ring.create("autounseal", plain)) die("key autounseal");
    const std::string_view hello = "hello";
    const auto hello_bytes = std::span(reinterpret_cast<const std::uint8_t*>(hello.data()), hello.size());
    auto v1 = ring.encrypt("fz", hello_bytes, {{}, {}, 1});
    auto v2 = ring.encrypt("fz", hello_bytes, {});
    if (!v1 || !v2) die("ciphertexts");
    x->ct_v1 = v1->ciphertext;
    x->ct_v2 = v2->ciphertext;

    TokenStore& tokens = x->rig->tokens();
    TokenInfo root_info;
    root_info.display_name = "root";
    root_info.root = true;
    tokens.add(kms::SecureBytes::copy_of(kRootToken), root_info);
    TokenInfo app;
    app.display_name = "app";
    app.policies = {"app"};
    tokens.add(kms::SecureBytes::copy_of(kAppToken), app);
    TokenInfo seal;
    seal.display_name = "seal";
    seal.policies = {"autounseal"};
    seal.renewable = true;
    seal.ttl_s = 3600;
    tokens.add(kms::SecureBytes::copy_of(kSealToken), seal);
    return x;
  }();
  return *w;
}

std::string_view next_line(std::string_view& in) {
  const auto nl = in.find('\n');
  const std::string_view line = in.substr(0, nl);
  in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
  return line;
}

bool is_token_char(char c) { return c > 0x20 && c < 0x7f; }

void check_json_answer(const net::Response& res, std::string_view target) {
  const auto ct = res.find(http::field::content_type);
  if (ct == res.end()) __builtin_trap();
  if (target.starts_with("/v1/sys/metrics") && res.result_int() == 200) {
    if (ct->value() != "text/plain; version=0.0.4") __builtin_trap();
    return;
  }
  if (ct->value() != "application/json") __builtin_trap();
  if (res.body().size() == 0) return;  // HEAD
  json::error_code ec;
  const json::value v = json::parse(res.body().view(), ec);
  if (ec || !v.is_object()) __builtin_trap();
  const auto& o = v.as_object();
  if (const auto* errors = o.if_contains("errors")) {
    if (!errors->is_array()) __builtin_trap();
    for (const auto& e : errors->as_array()) {
      if (!e.is_string()) __builtin_trap();
    }
    if (res.result_int() < 400 && !target.starts_with("/v1/sys/health")) __builtin_trap();
  } else if (target.starts_with("/v1/transit/") || target.starts_with("/v1/auth/")) {
    if (!o.contains("request_id") || !o.contains("data") || !o.contains("auth") || !o.contains("lease_id")) {
      __builtin_trap();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  World& w = world();
  static std::size_t inputs = 0;
  if (++inputs % 4096 == 0) std::filesystem::resize_file(w.dir / "audit.log", 0);
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::string_view request_line = next_line(in);
  const std::string_view who = next_line(in);
  std::string body(in);
  for (const auto& [mark, ct] :
       {std::pair<std::string_view, const std::string&>{"@CT1@", w.ct_v1}, {"@CT2@", w.ct_v2}}) {
    for (auto at = body.find(mark); at != std::string::npos; at = body.find(mark, at + ct.size())) {
      body.replace(at, mark.size(), ct);
    }
  }

  const auto space = request_line.find(' ');
  if (space == std::string_view::npos || space == 0) return 0;
  const std::string_view method = request_line.substr(0, space);
  const std::string_view target = request_line.substr(space + 1);
  // What an HTTP parser would have let through to the router.
  for (char c : method) {
    if (c < 'A' || c > 'Z') return 0;
  }
  if (target.empty() || target.size() > 2048) return 0;
  for (char c : target) {
    if (!is_token_char(c)) return 0;
  }

  net::Request req = test::RouterRig::request(method, target, body);
  std::string_view token;
  if (who == "root") token = kRootToken;
  if (who == "app") token = kAppToken;
  if (who == "seal") token = kSealToken;
  if (who == "bearer") {
    req.set(http::field::authorization, "Bearer " + std::string(kAppToken));
  } else if (who == "other") {
    req.set("X-Vault-Token", "not-a-token");
  } else if (!token.empty()) {
    req.set("X-Vault-Token", token);
  }
  net::PeerInfo peer;
  peer.remote = {boost::asio::ip::make_address("127.0.0.1"), 4242};
  const net::Response res = w.rig->handle(req, peer);

  const unsigned status = res.result_int();
  const bool client_chose_code = target.find("code=") != std::string_view::npos ||
                                 body.find("partial_failure_response_code") != std::string_view::npos;
  if (status < 100 || status > 599) __builtin_trap();
  if (status == 500 && !client_chose_code) __builtin_trap();
  if (status != 204) check_json_answer(res, target);
  // The token comes back only from the endpoints that answer about it (or as
  // text the request itself carried, e.g. a batch item's echoed reference).
  if (!token.empty() && !target.starts_with("/v1/auth/token/") && target.find(token) == std::string_view::npos &&
      body.find(token) == std::string_view::npos && res.body().view().find(token) != std::string_view::npos) {
    __builtin_trap();
  }
  return 0;
}
