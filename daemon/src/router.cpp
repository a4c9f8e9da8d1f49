#include "router.hpp"

#include "transit.hpp"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <charconv>
#include <chrono>

namespace rootseal::daemon {

namespace http = boost::beast::http;
namespace json = boost::json;
using kms::Errc;

unsigned http_status(Errc code) noexcept {
  switch (code) {
    case Errc::invalid_argument:
    case Errc::malformed_ciphertext:
    case Errc::bad_base64:
    case Errc::decryption_failed:
    case Errc::version_disallowed:
    case Errc::already_exists:
    case Errc::deletion_not_allowed:
      return 400;
    case Errc::permission_denied: return 403;
    case Errc::not_found: return 404;
    case Errc::conflict: return 409;
    case Errc::sealed:
    case Errc::unavailable:
      return 503;
    case Errc::storage_failure:
    case Errc::crypto_failure:
    case Errc::internal:
      return 500;
  }
  return 500;
}

namespace {

net::Response json_body(unsigned status, const json::value& body, unsigned version) {
  return net::json_response(status, json::serialize(body), version);
}

// Vault's health query overrides: ?sealedcode=, ?activecode=, ... (100..599).
unsigned query_code(const boost::urls::url_view& url, std::string_view name, unsigned fallback) {
  auto it = url.params().find(name);
  if (it == url.params().end() || !(*it).has_value) return fallback;
  const std::string value = (*it).value;
  unsigned code = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), code);
  if (ec != std::errc{} || end != value.data() + value.size() || code < 100 || code > 599) return fallback;
  return code;
}

std::int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

net::Response error_response(const kms::Error& error, unsigned http_version) {
  json::object body;
  body["errors"] = json::array{json::string(error.message)};
  return json_body(http_status(error.code), body, http_version);
}

Router::Router(ApiContext context) : ctx_(std::move(context)) {
  if (ctx_.metrics == nullptr) return;
  auto status = ctx_.seal_status;
  ctx_.metrics->add_gauge("rootseal_sealed", "1 while sealed (root of trust unavailable), else 0.",
                          [status] { return status().sealed ? 1.0 : 0.0; });
  ctx_.metrics->add_gauge("rootseal_unseals_total", "Times the daemon has unsealed since it started.",
                          [status] { return static_cast<double>(status().unseal_count); });
  ctx_.metrics->add_gauge("rootseal_secure_memory_locked_bytes", "Bytes of locked (mlock) memory for secrets.",
                          [] { return static_cast<double>(kms::secure_arena_stats().locked_bytes); });
  ctx_.metrics->add_gauge("rootseal_secure_memory_in_use_bytes", "Bytes of locked memory held by live secrets.",
                          [] { return static_cast<double>(kms::secure_arena_stats().in_use_bytes); });
}

boost::asio::awaitable<net::Response> Router::handle(net::Request& request, const net::PeerInfo&) {
  const auto started = std::chrono::steady_clock::now();
  auto parsed = boost::urls::parse_origin_form(request.target());
  if (!parsed) co_return error_response({Errc::invalid_argument, "malformed request target"}, request.version());
  const std::string path = parsed->path();
  net::Response response = co_await route(request, path);
  if (ctx_.metrics != nullptr) {
    const auto route_label = classify(std::string_view(path).starts_with("/v1/") ? std::string_view(path).substr(4)
                                                                                : std::string_view(),
                                      ctx_.config != nullptr ? std::string_view(ctx_.config->api.mount) : "transit");
    ctx_.metrics->observe_request(route_label, request.method_string(), response.result_int(),
                                  std::chrono::steady_clock::now() - started);
  }
  co_return response;
}

boost::asio::awaitable<net::Response> Router::route(net::Request& request, const std::string& path) {
  const unsigned version = request.version();
  const auto method = request.method();
  const bool get_like = method == http::verb::get || method == http::verb::head;

  if (path == "/v1/sys/health") {
    if (!get_like) co_return net::json_response(405, R"({"errors":[]})", version);
    co_return health(request);
  }
  if (path == "/v1/sys/seal-status") {
    if (!get_like) co_return net::json_response(405, R"({"errors":[]})", version);
    co_return seal_status(request);
  }
  if (path == "/v1/sys/leader") {
    if (!get_like) co_return net::json_response(405, R"({"errors":[]})", version);
    co_return leader(request);
  }
  if (path == "/v1/sys/metrics") {
    if (!get_like) co_return net::json_response(405, R"({"errors":[]})", version);
    co_return metrics(request);
  }
  if (ctx_.transit != nullptr && path.starts_with("/v1/") && ctx_.transit->owns(std::string_view(path).substr(4))) {
    auto parsed = boost::urls::parse_origin_form(request.target());
    co_return co_await ctx_.transit->handle(request, std::string_view(path).substr(4), parsed->params());
  }
  co_return net::json_response(404, R"({"errors":[]})", version);
}

net::Response Router::metrics(const net::Request& request) const {
  const auto url = boost::urls::parse_origin_form(request.target()).value();
  auto format = url.params().find("format");
  if (format == url.params().end() || (*format).value != "prometheus") {
    return error_response({Errc::invalid_argument, "only format=prometheus is supported"}, request.version());
  }
  net::Response res{http::status::ok, request.version()};
  res.set(http::field::content_type, "text/plain; version=0.0.4");
  res.set(http::field::cache_control, "no-store");
  res.body() = net::SecureBuffer(ctx_.metrics != nullptr ? ctx_.metrics->render() : std::string());
  res.prepare_payload();
  if (request.method() == http::verb::head) {
    const auto length = res.body().size();
    res.body().clear();
    res.content_length(length);
  }
  return res;
}

net::Response Router::health(const net::Request& request) const {
  const auto url = boost::urls::parse_origin_form(request.target()).value();
  const SealStatus s = ctx_.seal_status();
  const unsigned status = s.sealed ? query_code(url, "sealedcode", 503) : query_code(url, "activecode", 200);
  json::object body{
      {"initialized", true},
      {"sealed", s.sealed},
      {"standby", false},
      {"performance_standby", false},
      {"replication_performance_mode", "disabled"},
      {"replication_dr_mode", "disabled"},
      {"server_time_utc", now_unix()},
      {"version", ctx_.version},
      {"cluster_name", ctx_.cluster_name},
      {"cluster_id", ctx_.cluster_id},
  };
  auto res = json_body(status, body, request.version());
  if (request.method() == http::verb::head) {
    // HEAD: the same headers (Content-Length of the GET body), no body.
    const auto length = res.body().size();
    res.body().clear();
    res.content_length(length);
  }
  return res;
}

net::Response Router::seal_status(const net::Request& request) const {
  const SealStatus s = ctx_.seal_status();
  json::object body{
      {"type", ctx_.root_kind},
      {"initialized", true},
      {"sealed", s.sealed},
      {"t", 1},
      {"n", 1},
      {"progress", 0},
      {"nonce", ""},
      {"version", ctx_.version},
      {"build_date", ""},
      {"migration", false},
      {"recovery_seal", false},
      {"storage_type", "sqlite"},
      {"cluster_name", ctx_.cluster_name},
      {"cluster_id", ctx_.cluster_id},
      // rootseal extensions: why it is sealed, since when, which root key.
      {"sealed_reason", s.reason},
      {"sealed_since_unix", s.sealed ? s.since_unix : 0},
      {"unsealed_since_unix", s.sealed ? 0 : s.since_unix},
      {"root_key_check_value", s.root_kcv},
  };
  auto res = json_body(200, body, request.version());
  if (request.method() == http::verb::head) res.body().clear();
  return res;
}

net::Response Router::leader(const net::Request& request) const {
  json::object body{
      {"ha_enabled", false},
      {"is_self", true},
      {"active_time", "0001-01-01T00:00:00Z"},
      {"leader_address", ""},
      {"leader_cluster_address", ""},
      {"performance_standby", false},
      {"performance_standby_last_remote_wal", 0},
  };
  return json_body(200, body, request.version());
}

}  // namespace rootseal::daemon
