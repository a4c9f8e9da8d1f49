#include "kube/kube_client.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <fstream>
#include <mutex>

#include "kube/rate_limiter.hpp"
#include "kube/secure_json.hpp"
#include "rootseal/net/secure_body.hpp"

namespace rootseal::sync::kube {

namespace http = boost::beast::http;
// net's response type, whatever its name (taken from HttpClient::request's result).
using NetResponse =
    decltype(std::declval<net::HttpClient&>().request(http::verb::get, std::string_view{}))::value_type::value_type;

// ---------------------------------------------------------------------------
// Resources

std::string GroupVersionResource::base_path() const {
  return group.empty() ? "/api/" + version : "/apis/" + group + "/" + version;
}

std::string GroupVersionResource::api_version() const { return group.empty() ? version : group + "/" + version; }

std::string GroupVersionResource::path(std::string_view ns, std::string_view name, std::string_view subresource) const {
  std::string p = base_path();
  if (namespaced && !ns.empty()) {
    p += "/namespaces/";
    p += net::url_encode(ns);
  }
  p += "/";
  p += resource;
  if (!name.empty()) {
    p += "/";
    p += net::url_encode(name);
    if (!subresource.empty()) {
      p += "/";
      p += subresource;
    }
  }
  return p;
}

const GroupVersionResource& secrets_gvr() {
  static const GroupVersionResource g{"", "v1", "secrets", "Secret", true, true};
  return g;
}
const GroupVersionResource& serviceaccounts_gvr() {
  static const GroupVersionResource g{"", "v1", "serviceaccounts", "ServiceAccount", true, false};
  return g;
}
const GroupVersionResource& configmaps_gvr() {
  static const GroupVersionResource g{"", "v1", "configmaps", "ConfigMap", true, false};
  return g;
}
const GroupVersionResource& namespaces_gvr() {
  static const GroupVersionResource g{"", "v1", "namespaces", "Namespace", false, false};
  return g;
}
const GroupVersionResource& events_gvr() {
  static const GroupVersionResource g{"", "v1", "events", "Event", true, false};
  return g;
}
const GroupVersionResource& deployments_gvr() {
  static const GroupVersionResource g{"apps", "v1", "deployments", "Deployment", true, false};
  return g;
}
const GroupVersionResource& statefulsets_gvr() {
  static const GroupVersionResource g{"apps", "v1", "statefulsets", "StatefulSet", true, false};
  return g;
}
const GroupVersionResource& daemonsets_gvr() {
  static const GroupVersionResource g{"apps", "v1", "daemonsets", "DaemonSet", true, false};
  return g;
}

std::string_view meta_string(const json::value& object, std::string_view field) {
  const auto* o = object.if_object();
  if (o == nullptr) return {};
  const auto* m = o->if_contains("metadata");
  if (m == nullptr || !m->is_object()) return {};
  const auto* f = m->as_object().if_contains(field);
  if (f == nullptr || !f->is_string()) return {};
  return f->as_string();
}

std::string object_key(std::string_view ns, std::string_view name) {
  if (ns.empty()) return std::string(name);
  std::string k;
  k.reserve(ns.size() + 1 + name.size());
  k.append(ns).append("/").append(name);
  return k;
}

std::string object_key(const json::value& object) { return object_key(namespace_of(object), name_of(object)); }

// ---------------------------------------------------------------------------
// Errors

std::string_view to_string(Reason r) noexcept {
  switch (r) {
    case Reason::unknown:
      return "Unknown";
    case Reason::transport:
      return "Transport";
    case Reason::bad_request:
      return "BadRequest";
    case Reason::unauthorized:
      return "Unauthorized";
    case Reason::forbidden:
      return "Forbidden";
    case Reason::not_found:
      return "NotFound";
    case Reason::method_not_allowed:
      return "MethodNotAllowed";
    case Reason::already_exists:
      return "AlreadyExists";
    case Reason::conflict:
      return "Conflict";
    case Reason::gone:
      return "Gone";
    case Reason::expired:
      return "Expired";
    case Reason::unsupported_media:
      return "UnsupportedMediaType";
    case Reason::invalid:
      return "Invalid";
    case Reason::too_many_requests:
      return "TooManyRequests";
    case Reason::internal_error:
      return "InternalError";
    case Reason::service_unavailable:
      return "ServiceUnavailable";
    case Reason::timeout:
      return "Timeout";
  }
  return "Unknown";
}

std::string_view to_string(WatchEventType t) noexcept {
  switch (t) {
    case WatchEventType::added:
      return "ADDED";
    case WatchEventType::modified:
      return "MODIFIED";
    case WatchEventType::deleted:
      return "DELETED";
    case WatchEventType::bookmark:
      return "BOOKMARK";
    case WatchEventType::error:
      return "ERROR";
  }
  return "ERROR";
}

namespace {

Reason reason_from_text(std::string_view s) {
  static constexpr std::pair<std::string_view, Reason> table[] = {
      {"BadRequest", Reason::bad_request},
      {"Unauthorized", Reason::unauthorized},
      {"Forbidden", Reason::forbidden},
      {"NotFound", Reason::not_found},
      {"MethodNotAllowed", Reason::method_not_allowed},
      {"AlreadyExists", Reason::already_exists},
      {"Conflict", Reason::conflict},
      {"Gone", Reason::gone},
      {"Expired", Reason::expired},
      {"UnsupportedMediaType", Reason::unsupported_media},
      {"Invalid", Reason::invalid},
      {"TooManyRequests", Reason::too_many_requests},
      {"InternalError", Reason::internal_error},
      {"ServiceUnavailable", Reason::service_unavailable},
      {"Timeout", Reason::timeout},
      {"ServerTimeout", Reason::timeout},
  };
  for (const auto& [text, r] : table)
    if (text == s) return r;
  return Reason::unknown;
}

Reason reason_from_code(int code) {
  switch (code) {
    case 400:
      return Reason::bad_request;
    case 401:
      return Reason::unauthorized;
    case 403:
      return Reason::forbidden;
    case 404:
      return Reason::not_found;
    case 405:
      return Reason::method_not_allowed;
    case 409:
      return Reason::conflict;
    case 410:
      return Reason::gone;
    case 415:
      return Reason::unsupported_media;
    case 422:
      return Reason::invalid;
    case 429:
      return Reason::too_many_requests;
    case 500:
      return Reason::internal_error;
    case 503:
      return Reason::service_unavailable;
    case 504:
      return Reason::timeout;
    default:
      return Reason::unknown;
  }
}

std::string str_field(const json::object& o, std::string_view k) {
  const auto* v = o.if_contains(k);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string{};
}

ApiError from_status_object(int http_status, const json::object& st, std::chrono::seconds retry_after) {
  ApiError e;
  e.code = http_status;
  if (const auto* c = st.if_contains("code");
      c != nullptr && c->is_int64() && c->as_int64() > 0 && c->as_int64() < 1000)
    e.code = static_cast<int>(c->as_int64());
  e.reason_text = str_field(st, "reason");
  e.message = str_field(st, "message");
  e.reason = reason_from_text(e.reason_text);
  if (e.reason == Reason::unknown) e.reason = reason_from_code(e.code);
  // A 409 without a reason is a Conflict; AlreadyExists is always explicit.
  if (const auto* d = st.if_contains("details"); d != nullptr && d->is_object()) {
    e.name = str_field(d->as_object(), "name");
    e.kind = str_field(d->as_object(), "kind");
    if (const auto* ra = d->as_object().if_contains("retryAfterSeconds");
        ra != nullptr && ra->is_int64() && retry_after.count() == 0)
      e.retry_after = std::chrono::seconds(std::clamp<std::int64_t>(ra->as_int64(), 0, 3600));
  }
  if (e.retry_after.count() == 0) e.retry_after = retry_after;
  if (e.message.empty()) e.message = "HTTP " + std::to_string(e.code);
  return e;
}

std::string_view trim_ws(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.remove_suffix(1);
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\r')) s.remove_prefix(1);
  return s;
}

}  // namespace

bool ApiError::is_retryable() const noexcept {
  switch (reason) {
    case Reason::transport:
    case Reason::too_many_requests:
    case Reason::internal_error:
    case Reason::service_unavailable:
    case Reason::timeout:
      return true;
    default:
      return code == 502 || code == 503 || code == 504;
  }
}

ApiError ApiError::from_response(int http_status, std::string_view body, std::chrono::seconds retry_after) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (!ec && v.is_object() && str_field(v.as_object(), "kind") == "Status")
    return from_status_object(http_status, v.as_object(), retry_after);
  ApiError e;
  e.code = http_status;
  e.reason = reason_from_code(http_status);
  e.reason_text = std::string(to_string(e.reason));
  e.message = "HTTP " + std::to_string(http_status) + " without a Status body";
  e.retry_after = retry_after;
  return e;
}

ApiError ApiError::transport_error(std::string message) {
  ApiError e;
  e.code = 0;
  e.reason = Reason::transport;
  e.message = std::move(message);
  return e;
}

std::string ApiError::describe() const {
  std::string s(reason_text.empty() ? to_string(reason) : std::string_view(reason_text));
  if (code != 0) s += " (" + std::to_string(code) + ")";
  s += ": ";
  s += message;
  return s;
}

kms::Error ApiError::to_error() const {
  kms::Errc c = kms::Errc::unavailable;
  switch (reason) {
    case Reason::not_found:
      c = kms::Errc::not_found;
      break;
    case Reason::already_exists:
      c = kms::Errc::already_exists;
      break;
    case Reason::conflict:
      c = kms::Errc::conflict;
      break;
    case Reason::unauthorized:
    case Reason::forbidden:
      c = kms::Errc::permission_denied;
      break;
    case Reason::bad_request:
    case Reason::invalid:
    case Reason::unsupported_media:
    case Reason::method_not_allowed:
      c = kms::Errc::invalid_argument;
      break;
    default:
      break;
  }
  return kms::Error(c, "kubernetes: " + describe());
}

// ---------------------------------------------------------------------------
// The client

namespace {

constexpr auto kTokenFileRefresh = std::chrono::seconds(60);
constexpr int kMaxThrottleRetries = 3;
constexpr auto kMaxRetryAfter = std::chrono::seconds(10);

void add_query(std::string& target, bool& first, std::string_view key, std::string_view value) {
  if (value.empty()) return;
  target += first ? '?' : '&';
  first = false;
  target.append(key).append("=").append(net::url_encode(value));
}

json::parse_options parse_opts() {
  json::parse_options o;
  o.max_depth = 128;  // managedFields mirror the object's depth
  return o;
}

kms::Result<json::value> parse_body(std::string_view body, bool sensitive) {
  boost::system::error_code ec;
  json::storage_ptr sp = sensitive ? secure_json_storage(body.size() + 512) : json::storage_ptr{};
  json::value v = kms::parse_into(body, sp, ec, parse_opts());
  if (ec) return kms::fail(kms::Errc::unavailable, "kubernetes: the answer is not valid JSON");
  return v;
}

struct Body {
  net::SecureBuffer secure;
  std::string plain;
  bool is_secure = false;
  [[nodiscard]] std::string_view view() const { return is_secure ? secure.view() : std::string_view(plain); }
};

Body make_body(const json::value& v, bool sensitive) {
  Body b;
  b.is_secure = sensitive;
  if (sensitive) {
    b.secure = serialize_secure(v);
  } else {
    b.plain = json::serialize(v);
  }
  return b;
}

class KubeClientImpl final : public KubeClient, public std::enable_shared_from_this<KubeClientImpl> {
 public:
  KubeClientImpl(asio::any_io_executor ex, KubeConfig config, ClientOptions options,
                 std::shared_ptr<net::HttpClient> http)
      : ex_(std::move(ex)),
        config_(std::move(config)),
        options_(std::move(options)),
        http_(std::move(http)),
        bucket_(options_.qps, options_.burst) {}

  const std::string& default_namespace() const noexcept override { return config_.default_namespace; }

  ClientStats stats() const noexcept override {
    return ClientStats{requests_.load(), lists_.load(), watches_.load(), throttled_ns_.load()};
  }

  asio::awaitable<KubeResult<json::value>> get(const GroupVersionResource& gvr, std::string_view ns,
                                               std::string_view name) override {
    if (name.empty()) co_return std::unexpected(bad_call("get: empty name"));
    auto r = co_await send(http::verb::get, gvr.path(ns_for(gvr, ns), name), {}, {});
    co_return decode(r, gvr.sensitive);
  }

  asio::awaitable<KubeResult<ListResult>> list(const GroupVersionResource& gvr, std::string_view ns,
                                               const ListOptions& options) override {
    ++lists_;
    for (int attempt = 0;; ++attempt) {
      json::storage_ptr sp = gvr.sensitive ? secure_json_storage(64 * 1024) : json::storage_ptr{};
      // Constructed with its storage (assignment would keep the default heap storage and copy).
      ListResult result{json::array(sp), {}, 0};
      std::string cont;
      bool restart = false;
      for (;;) {
        std::string target = gvr.path(gvr.namespaced ? ns : std::string_view{});
        bool first = true;
        if (options.page_size != 0) add_query(target, first, "limit", std::to_string(options.page_size));
        add_query(target, first, "continue", cont);
        add_query(target, first, "labelSelector", options.label_selector);
        add_query(target, first, "fieldSelector", options.field_selector);
        if (cont.empty()) add_query(target, first, "resourceVersion", options.resource_version);
        auto r = co_await send(http::verb::get, target, {}, {});
        if (!r) co_return std::unexpected(std::move(r).error());
        const int status = static_cast<int>(r->status);
        if (status < 200 || status > 299) {
          ApiError e = error_of(*r);
          if (e.is_gone() && !cont.empty() && attempt == 0) {
            restart = true;  // the continue token expired mid-list: start over once
            break;
          }
          co_return std::unexpected(std::move(e));
        }
        ++result.pages;
        boost::system::error_code ec;
        json::value page = kms::parse_into(r->body.view(), sp, ec, parse_opts());
        if (ec || !page.is_object())
          co_return std::unexpected(ApiError::transport_error("list: the answer is not a JSON list"));
        auto& po = page.as_object();
        if (auto* items = po.if_contains("items"); items != nullptr && items->is_array()) {
          for (auto& it : items->as_array()) result.items.push_back(std::move(it));
        } else if (auto* it = po.if_contains("items"); it != nullptr && !it->is_null()) {
          co_return std::unexpected(ApiError::transport_error("list: items is not an array"));
        }
        std::string rv;
        cont.clear();
        if (auto* m = po.if_contains("metadata"); m != nullptr && m->is_object()) {
          rv = str_field(m->as_object(), "resourceVersion");
          cont = str_field(m->as_object(), "continue");
        }
        if (result.resource_version.empty()) result.resource_version = rv;
        if (cont.empty()) break;
      }
      if (!restart) co_return result;
    }
  }

  asio::awaitable<KubeResult<void>> watch(const GroupVersionResource& gvr, std::string_view ns,
                                          const WatchOptions& options, WatchHandler on_event,
                                          const net::StreamControl* control_in) override {
    net::StreamControl control = control_in != nullptr ? *control_in : net::StreamControl{};
    ++watches_;
    std::string target = gvr.path(gvr.namespaced ? ns : std::string_view{});
    bool first = true;
    add_query(target, first, "watch", "1");
    if (options.allow_bookmarks) add_query(target, first, "allowWatchBookmarks", "true");
    add_query(target, first, "resourceVersion", options.resource_version);
    if (options.timeout.count() > 0)
      add_query(target, first, "timeoutSeconds", std::to_string(options.timeout.count()));
    add_query(target, first, "labelSelector", options.label_selector);
    add_query(target, first, "fieldSelector", options.field_selector);

    co_await throttle();
    auto auth = authorization();
    if (!auth) co_return std::unexpected(ApiError::transport_error(auth.error().message));
    const net::Header headers[] = {{"Accept", "application/json"}, {"Authorization", auth->view()}};
    const std::span<const net::Header> hs(headers, auth->empty() ? 1 : 2);

    std::optional<ApiError> stream_error;
    const bool sensitive = gvr.sensitive;
    net::LineHandler on_line = [&](std::string_view line) -> kms::Result<bool> {
      line = trim_ws(line);
      if (line.empty()) return true;
      auto parsed = parse_body(line, sensitive);
      if (!parsed) return std::unexpected(std::move(parsed).error());
      json::value& doc = *parsed;
      auto* o = doc.if_object();
      if (o == nullptr) return kms::fail(kms::Errc::unavailable, "kubernetes: a watch event is not a JSON object");
      const std::string type = str_field(*o, "type");
      json::value* obj = o->if_contains("object");
      if (obj == nullptr) return kms::fail(kms::Errc::unavailable, "kubernetes: a watch event has no object");
      WatchEventType et = WatchEventType::error;
      if (type == "ADDED") {
        et = WatchEventType::added;
      } else if (type == "MODIFIED") {
        et = WatchEventType::modified;
      } else if (type == "DELETED") {
        et = WatchEventType::deleted;
      } else if (type == "BOOKMARK") {
        et = WatchEventType::bookmark;
      } else if (type == "ERROR") {
        stream_error = obj->is_object() ? from_status_object(0, obj->as_object(), {})
                                        : ApiError::transport_error("watch: ERROR event without a Status");
        if (stream_error->code == 0) stream_error->code = 500;
        return false;
      } else {
        return kms::fail(kms::Errc::unavailable, "kubernetes: unknown watch event type");
      }
      // Move-constructed, so it keeps the event's (locked) storage; assignment would copy.
      WatchEvent ev{et, std::move(*obj)};
      if (!on_event(std::move(ev))) return false;
      return true;
    };
    ++requests_;
    auto r = co_await http_->stream(http::verb::get, target, hs, {}, std::move(on_line), std::move(control));
    if (stream_error) co_return std::unexpected(std::move(*stream_error));
    if (!r) co_return std::unexpected(ApiError::transport_error(r.error().message));
    const int status = static_cast<int>(r->status);
    if (status < 200 || status > 299) co_return std::unexpected(error_of(*r));
    co_return KubeResult<void>{};
  }

  asio::awaitable<KubeResult<json::value>> create(const GroupVersionResource& gvr, std::string_view ns,
                                                  const json::value& object, const WriteOptions& options) override {
    std::string target = gvr.path(gvr.namespaced ? ns_of(ns, object) : std::string_view{});
    write_query(target, options, PatchType::merge);
    const Body b = make_body(object, gvr.sensitive);
    auto r = co_await send(http::verb::post, target, "application/json", b.view());
    co_return decode(r, gvr.sensitive);
  }

  asio::awaitable<KubeResult<json::value>> create_subresource(const GroupVersionResource& gvr, std::string_view ns,
                                                              std::string_view name, std::string_view subresource,
                                                              const json::value& object,
                                                              bool sensitive_answer) override {
    if (name.empty() || subresource.empty()) co_return std::unexpected(bad_call("create_subresource: empty name"));
    const std::string target = gvr.path(ns_for(gvr, ns), name, subresource);
    const Body b = make_body(object, false);
    auto r = co_await send(http::verb::post, target, "application/json", b.view());
    co_return decode(r, sensitive_answer);
  }

  asio::awaitable<KubeResult<json::value>> update(const GroupVersionResource& gvr, std::string_view ns,
                                                  const json::value& object, const WriteOptions& options) override {
    co_return co_await put(gvr, ns, object, options, {});
  }

  asio::awaitable<KubeResult<json::value>> update_status(const GroupVersionResource& gvr, std::string_view ns,
                                                         const json::value& object,
                                                         const WriteOptions& options) override {
    co_return co_await put(gvr, ns, object, options, "status");
  }

  asio::awaitable<KubeResult<json::value>> patch(const GroupVersionResource& gvr, std::string_view ns,
                                                 std::string_view name, PatchType type, const json::value& patch,
                                                 const WriteOptions& options, std::string_view subresource) override {
    if (name.empty()) co_return std::unexpected(bad_call("patch: empty name"));
    std::string_view ctype;
    switch (type) {
      case PatchType::merge:
        ctype = "application/merge-patch+json";
        break;
      case PatchType::json:
        ctype = "application/json-patch+json";
        break;
      case PatchType::apply:
        ctype = "application/apply-patch+yaml";
        break;
      case PatchType::strategic:
        ctype = "application/strategic-merge-patch+json";
        break;
    }
    if (type == PatchType::json && !patch.is_array())
      co_return std::unexpected(bad_call("JSON patch must be an array"));
    if (type != PatchType::json && !patch.is_object()) co_return std::unexpected(bad_call("patch must be an object"));
    std::string target = gvr.path(ns_for(gvr, ns), name, subresource);
    write_query(target, options, type);
    const Body b = make_body(patch, gvr.sensitive);
    auto r = co_await send(http::verb::patch, target, ctype, b.view());
    co_return decode(r, gvr.sensitive);
  }

  asio::awaitable<KubeResult<json::value>> remove(const GroupVersionResource& gvr, std::string_view ns,
                                                  std::string_view name, const DeleteOptions& options) override {
    if (name.empty()) co_return std::unexpected(bad_call("remove: empty name"));
    std::string body;
    if (!options.propagation_policy.empty() || !options.precondition_resource_version.empty() ||
        !options.precondition_uid.empty()) {
      json::object o{{"kind", "DeleteOptions"}, {"apiVersion", "v1"}};
      if (!options.propagation_policy.empty()) o["propagationPolicy"] = options.propagation_policy;
      json::object pre;
      if (!options.precondition_resource_version.empty())
        pre["resourceVersion"] = options.precondition_resource_version;
      if (!options.precondition_uid.empty()) pre["uid"] = options.precondition_uid;
      if (!pre.empty()) o["preconditions"] = std::move(pre);
      body = json::serialize(o);
    }
    auto r = co_await send(http::verb::delete_, gvr.path(ns_for(gvr, ns), name), body.empty() ? "" : "application/json",
                           body);
    co_return decode(r, gvr.sensitive);
  }

 private:
  static ApiError bad_call(std::string m) {
    ApiError e;
    e.code = 0;
    e.reason = Reason::bad_request;
    e.reason_text = "BadRequest";
    e.message = std::move(m);
    return e;
  }

  std::string_view ns_for(const GroupVersionResource& gvr, std::string_view ns) const {
    if (!gvr.namespaced) return {};
    return ns.empty() ? std::string_view(config_.default_namespace) : ns;
  }
  std::string_view ns_of(std::string_view ns, const json::value& object) const {
    if (!ns.empty()) return ns;
    const auto o = namespace_of(object);
    return o.empty() ? std::string_view(config_.default_namespace) : o;
  }

  void write_query(std::string& target, const WriteOptions& options, PatchType type) const {
    bool first = target.find('?') == std::string::npos;
    add_query(target, first, "fieldManager",
              options.field_manager.empty() ? std::string_view(options_.field_manager) : options.field_manager);
    if (options.force && type == PatchType::apply) add_query(target, first, "force", "true");
    if (options.dry_run) add_query(target, first, "dryRun", "All");
  }

  asio::awaitable<KubeResult<json::value>> put(const GroupVersionResource& gvr, std::string_view ns,
                                               const json::value& object, const WriteOptions& options,
                                               std::string_view sub) {
    const auto name = name_of(object);
    if (name.empty()) co_return std::unexpected(bad_call("update: the object has no metadata.name"));
    std::string target = gvr.path(gvr.namespaced ? ns_of(ns, object) : std::string_view{}, name, sub);
    write_query(target, options, PatchType::merge);
    const Body b = make_body(object, gvr.sensitive);
    auto r = co_await send(http::verb::put, target, "application/json", b.view());
    co_return decode(r, gvr.sensitive);
  }

  // "Bearer <token>" in locked memory; empty when the config has no token.
  kms::Result<net::SecureBuffer> authorization() {
    std::lock_guard lock(token_mu_);
    if (config_.bearer_token.empty() && !config_.token_file.empty()) {
      const auto now = std::chrono::steady_clock::now();
      if (file_token_.empty() || now - token_loaded_ > kTokenFileRefresh) {
        std::ifstream in(config_.token_file, std::ios::binary);
        if (!in) {
          if (file_token_.empty())
            return kms::fail(kms::Errc::unavailable,
                             "kubernetes: token file " + config_.token_file.string() + " cannot be read");
        } else {
          net::SecureBuffer buf;
          char chunk[1024];
          while (in) {
            in.read(chunk, sizeof chunk);
            buf.append(chunk, static_cast<std::size_t>(in.gcount()));
            if (buf.size() > (1u << 20)) break;
          }
          kms::secure_zero(chunk, sizeof chunk);
          const auto t = trim_ws(buf.view());
          if (!t.empty()) {
            file_token_ = kms::SecureBytes::copy_of(t);
            token_loaded_ = now;
          }
        }
      }
    }
    const kms::SecureBytes& tok = config_.bearer_token.empty() ? file_token_ : config_.bearer_token;
    net::SecureBuffer h;
    if (tok.empty()) return h;
    h.reserve(7 + tok.size());
    h.append("Bearer ");
    h.append(tok.data(), tok.size());
    return h;
  }

  asio::awaitable<void> throttle() {
    const Duration d = bucket_.reserve();
    if (d <= Duration::zero()) co_return;
    throttled_ns_ += static_cast<std::uint64_t>(d.count());
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    boost::system::error_code ec;
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }

  asio::awaitable<KubeResult<NetResponse>> send(http::verb verb, std::string_view target, std::string_view content_type,
                                                std::string_view body) {
    for (int attempt = 0;; ++attempt) {
      co_await throttle();
      auto auth = authorization();
      if (!auth) co_return std::unexpected(ApiError::transport_error(auth.error().message));
      net::Header headers[3] = {{"Accept", "application/json"}, {}, {}};
      std::size_t n = 1;
      if (!content_type.empty()) headers[n++] = {"Content-Type", content_type};
      if (!auth->empty()) headers[n++] = {"Authorization", auth->view()};
      ++requests_;
      auto r = co_await http_->request(verb, target, std::span<const net::Header>(headers, n), body);
      if (!r) co_return std::unexpected(ApiError::transport_error(r.error().message));
      if (r->status == 429 && attempt < kMaxThrottleRetries) {
        // The server did not act on the request: wait as told, then retry (client-go does the same).
        const auto ra = retry_after(*r);
        asio::steady_timer t(co_await asio::this_coro::executor,
                             std::clamp<std::chrono::seconds>(ra, std::chrono::seconds(1), kMaxRetryAfter));
        boost::system::error_code ec;
        co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      co_return std::move(*r);
    }
  }

  static std::chrono::seconds retry_after(const NetResponse& r) {
    const auto h = r.header("Retry-After");
    if (!h) return std::chrono::seconds(0);
    long v = 0;
    const auto res = std::from_chars(h->data(), h->data() + h->size(), v);
    if (res.ec != std::errc{} || v < 0) return std::chrono::seconds(0);
    return std::chrono::seconds(std::min(v, 3600L));
  }

  static ApiError error_of(const NetResponse& r) {
    return ApiError::from_response(static_cast<int>(r.status), r.body.view(), retry_after(r));
  }

  static KubeResult<json::value> decode(const KubeResult<NetResponse>& r, bool sensitive) {
    if (!r) return std::unexpected(r.error());
    const int status = static_cast<int>(r->status);
    if (status < 200 || status > 299) return std::unexpected(error_of(*r));
    auto v = parse_body(r->body.view(), sensitive);
    if (!v) return std::unexpected(ApiError::transport_error(v.error().message));
    return std::move(*v);
  }

  asio::any_io_executor ex_;
  KubeConfig config_;
  ClientOptions options_;
  std::shared_ptr<net::HttpClient> http_;
  TokenBucket bucket_;
  std::mutex token_mu_;
  kms::SecureBytes file_token_;
  std::chrono::steady_clock::time_point token_loaded_{};
  std::atomic<std::uint64_t> requests_{0}, lists_{0}, watches_{0}, throttled_ns_{0};
};

}  // namespace

kms::Result<std::shared_ptr<KubeClient>> KubeClient::create(asio::any_io_executor ex, KubeConfig config,
                                                            ClientOptions options) {
  if (config.server.empty()) return kms::fail(kms::Errc::invalid_argument, "kubernetes: no API server address");
  net::ClientTls tls;
  tls.ca_pem = config.ca_pem;
  tls.cert_pem = config.client_cert_pem;
  tls.key_pem = config.client_key_pem.clone();
  tls.server_name = config.tls_server_name;
  tls.insecure_skip_verify = config.insecure_skip_tls_verify;
  net::ClientOptions ho;
  ho.connect_timeout = options.connect_timeout;
  ho.handshake_timeout = options.connect_timeout;
  ho.request_timeout = options.request_timeout;
  // Longer than the informer's longest watch (5 min + 50 % jitter); API
  // servers send bookmarks about once a minute, so a silent stream this long
  // is a dead connection.
  ho.stream_idle_timeout = std::chrono::minutes(8);
  ho.max_connections = 64;  // watches hold theirs for minutes
  ho.max_response_bytes = options.max_response_bytes;
  ho.max_line_bytes = options.max_response_bytes;
  ho.user_agent = options.user_agent;
  auto http = net::HttpClient::create(ex, config.server, std::move(tls), ho);
  if (!http) return std::unexpected(std::move(http).error());
  return std::shared_ptr<KubeClient>(
      std::make_shared<KubeClientImpl>(std::move(ex), std::move(config), std::move(options), std::move(*http)));
}

}  // namespace rootseal::sync::kube
