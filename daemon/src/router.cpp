#include "router.hpp"

#include "cluster.hpp"

#include "rootseal/kms/numbers.hpp"
#include "transit.hpp"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <charconv>
#include <chrono>
#include <optional>

namespace rootseal::daemon {

namespace http = boost::beast::http;
namespace json = boost::json;
using kms::Errc;

namespace {

net::Response json_body(unsigned status, const json::value& body, unsigned version) {
  // 1xx, 204 and 304 carry no body (a health override may ask for them, as
  // Go's server would send them: without the body).
  if (status < 200 || status == 204 || status == 304) {
    net::Response res{static_cast<http::status>(status), version};
    res.set(http::field::content_type, "application/json");
    res.set(http::field::cache_control, "no-store");
    return res;
  }
  return net::json_response(status, json::serialize(body), version);
}

// Vault's health query overrides: ?sealedcode=, ?activecode=, ... nullopt
// when absent, 0 when present but not a status code (100..599).
std::optional<unsigned> query_code(const boost::urls::url_view& url, std::string_view name) {
  auto it = url.params().find(name);
  if (it == url.params().end()) return std::nullopt;
  const std::string value = (*it).value;
  unsigned code = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), code);
  if (ec != std::errc{} || end != value.data() + value.size() || code < 100 || code > 599) return 0u;
  return code;
}

// Error messages of an error response (they never carry secrets).
std::string errors_of(const net::Response& response) {
  if (response.result_int() < 400 || response.body().size() > 8192) return {};
  json::error_code ec;
  const auto v = json::parse(response.body().view(), ec);
  if (ec || !v.is_object()) return {};
  const auto* list = v.as_object().if_contains("errors");
  if (list == nullptr || !list->is_array()) return {};
  std::string out;
  for (const auto& e : list->as_array()) {
    if (!e.is_string()) continue;
    if (!out.empty()) out += "; ";
    out += std::string_view(e.as_string());
  }
  return out;
}

std::string outcome_of(unsigned status) {
  if (status < 400) return "ok";
  if (status == 403) return "denied";
  if (status == 503) return "sealed";
  if (status < 500) return "invalid";
  return "error";
}

AuditRecord audit_record(const net::Request& request, const std::string& path, const net::PeerInfo& peer,
                         const RequestNote& note, const net::Response& response,
                         std::chrono::steady_clock::time_point started) {
  AuditRecord r;
  r.request_id = note.request_id;
  r.remote = peer.remote.address().to_string() + ":" + std::to_string(peer.remote.port());
  r.client_cert = peer.client_subject;
  r.accessor = note.accessor;
  r.method = std::string(request.method_string());
  r.path = path;
  r.operation = note.operation;
  r.key = note.key;
  r.key_version = note.key_version;
  r.batch_items = note.batch_items;
  r.status = response.result_int();
  r.outcome = outcome_of(r.status);
  r.error = errors_of(response);
  r.latency_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  return r;
}

std::int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

Router::Router(ApiContext context) : ctx_(std::move(context)) {
  if (ctx_.metrics == nullptr) return;
  auto status = ctx_.seal_status;
  ctx_.metrics->add_gauge("rootseal_sealed", "1 while sealed (root of trust unavailable), else 0.",
                          [status] { return status().sealed ? 1.0 : 0.0; });
  ctx_.metrics->add_gauge("rootseal_unseals_total", "Times the daemon has unsealed since it started.",
                          [status] { return static_cast<double>(status().unseal_count); });
  ctx_.metrics->add_gauge("rootseal_root_probes_total", "Probes of the root of trust (HSM, TPM) since start.",
                          [status] { return static_cast<double>(status().probes); });
  ctx_.metrics->add_gauge("rootseal_root_probe_failures_total", "Probes of the root of trust that failed since start.",
                          [status] { return static_cast<double>(status().probe_failures); });
  ctx_.metrics->add_gauge_family(
      "rootseal_root_probe_ok", "1 while the last probe of the root of trust succeeded, else 0 (label: its kind).",
      [status, kind = std::string(ctx_.root_kind)] {
        return std::vector<std::pair<std::string, double>>{{kind, status().last_probe_ok ? 1.0 : 0.0}};
      },
      "root");
  ctx_.metrics->add_gauge("rootseal_secure_memory_locked_bytes", "Bytes of locked (mlock) memory for secrets.",
                          [] { return static_cast<double>(kms::secure_arena_stats().locked_bytes); });
  ctx_.metrics->add_gauge("rootseal_secure_memory_in_use_bytes", "Bytes of locked memory held by live secrets.",
                          [] { return static_cast<double>(kms::secure_arena_stats().in_use_bytes); });
}

boost::asio::awaitable<net::Response> Router::handle(net::Request& request, const net::PeerInfo& peer) {
  const auto started = std::chrono::steady_clock::now();
  auto parsed = boost::urls::parse_origin_form(request.target());
  const std::string path = parsed ? std::string(parsed->path()) : std::string();
  // (No co_await inside ?: — GCC 12 miscompiles it.)
  net::Response response = error_response({Errc::invalid_argument, "malformed request target"}, request.version());
  if (parsed) response = co_await route(request, *parsed, path, peer, started);
  // Every route reads a HEAD as a GET (is_read_method, verb_of); its answer
  // leaves here with the GET's status and headers and no body.
  if (request.method() == http::verb::head) strip_for_head(response);
  if (!parsed) co_return response;
  if (ctx_.metrics != nullptr) {
    const auto route_label =
        classify(std::string_view(path).starts_with("/v1/") ? std::string_view(path).substr(4) : std::string_view(),
                 ctx_.config != nullptr ? std::string_view(ctx_.config->api.mount) : "transit");
    ctx_.metrics->observe_request(route_label, request.method_string(), response.result_int(),
                                  std::chrono::steady_clock::now() - started);
  }
  co_return response;
}

boost::asio::awaitable<net::Response> Router::route(net::Request& request, const boost::urls::url_view& url,
                                                    const std::string& path, const net::PeerInfo& peer,
                                                    std::chrono::steady_clock::time_point started) {
  const unsigned version = request.version();
  const bool get_like = is_read_method(request);

  if (path == "/v1/sys/health") {
    if (!get_like) co_return error_response(VaultError::method_not_allowed, version);
    co_return health(request);
  }
  if (path == "/v1/sys/seal-status") {
    if (!get_like) co_return error_response(VaultError::method_not_allowed, version);
    co_return seal_status(request);
  }
  if (path == "/v1/sys/leader") {
    if (!get_like) co_return error_response(VaultError::method_not_allowed, version);
    co_return leader(request);
  }
  if (path == "/v1/sys/metrics") {
    if (!get_like) co_return error_response(VaultError::method_not_allowed, version);
    co_return metrics(request);
  }
  if (ctx_.transit != nullptr && path.starts_with("/v1/") && ctx_.transit->owns(std::string_view(path).substr(4))) {
    RequestNote note;
    net::Response response =
        co_await ctx_.transit->handle(request, std::string_view(path).substr(4), url.params(), peer, note);
    if (ctx_.audit != nullptr) {
      auto written = ctx_.audit->write(audit_record(request, path, peer, note, response, started));
      // Vault's rule: a request that cannot be audited fails; 503 (it is
      // retried by clients) while the log cannot be written, e.g. a full disk.
      if (!written) co_return net::json_response(503, R"({"errors":["audit log unavailable"]})", version);
    }
    co_return response;
  }
  co_return error_response(VaultError::not_found, version);
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
  return res;
}

net::Response Router::health(const net::Request& request) const {
  const auto url = boost::urls::parse_origin_form(request.target()).value();
  // Every override Vault knows is checked, though rootseal is never a standby,
  // a DR or performance secondary, uninitialized or in recovery mode.
  for (std::string_view name : {"activecode", "standbycode", "sealedcode", "uninitcode", "drsecondarycode",
                                "performancestandbycode", "recoverymodecode", "haunhealthycode"}) {
    if (query_code(url, name) == 0u) {
      return error_response({Errc::invalid_argument, "bad value for " + std::string(name) +
                                                         " parameter: an HTTP status code (100-599) is required"},
                            request.version());
    }
  }
  for (std::string_view name : {"standbyok", "perfstandbyok"}) {
    auto it = url.params().find(name);
    if (it != url.params().end() && !kms::parse_go_bool((*it).value)) {
      return error_response(
          {Errc::invalid_argument, "bad value for " + std::string(name) + " parameter: a boolean is required"},
          request.version());
    }
  }
  const SealStatus s = ctx_.seal_status();
  const unsigned status =
      s.sealed ? query_code(url, "sealedcode").value_or(503u) : query_code(url, "activecode").value_or(200u);
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
  return json_body(status, body, request.version());
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
      {"storage_type", ctx_.config != nullptr ? std::string_view(ctx_.config->storage) : "sqlite"},
      {"cluster_name", ctx_.cluster_name},
      {"cluster_id", ctx_.cluster_id},
      // rootseal extensions: why it is sealed, since when, which root key.
      {"sealed_reason", s.reason},
      {"sealed_since_unix", s.sealed ? s.since_unix : 0},
      {"unsealed_since_unix", s.sealed ? 0 : s.since_unix},
      {"root_key_check_value", s.root_kcv},
  };
  return json_body(200, body, request.version());
}

// Vault's sys/leader. With storage: etcd every host serves every request
// (active-active): an unsealed host reports itself active (is_self, since it
// unsealed) and no leader address, as there is no one host to forward to —
// clients use the cluster's shared address (docs/ha.md).
net::Response Router::leader(const net::Request& request) const {
  const SealStatus s = ctx_.seal_status ? ctx_.seal_status() : SealStatus{};
  const bool active = ctx_.ha_enabled ? !s.sealed : true;
  json::object body{
      {"ha_enabled", ctx_.ha_enabled},
      {"is_self", active},
      {"active_time", ctx_.ha_enabled && active ? utc_time_text(s.since_unix) : "0001-01-01T00:00:00Z"},
      {"leader_address", ""},
      {"leader_cluster_address", ""},
      {"performance_standby", false},
      {"performance_standby_last_remote_wal", 0},
  };
  return json_body(200, body, request.version());
}

}  // namespace rootseal::daemon
