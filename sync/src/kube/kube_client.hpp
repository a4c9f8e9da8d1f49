// rootseal::sync::kube — a small Kubernetes REST client.
//
// KubeConfig says where the API server is and who we are (a kubeconfig file
// or the in-cluster service-account files). KubeClient speaks the REST
// conventions of reference/eso-k8s.md §4 for any GroupVersionResource:
// get, paginated list, watch (a stream of events), create, update (PUT with
// the object's resourceVersion: optimistic concurrency), update_status
// (the /status subresource), patch (merge, JSON patch, server-side apply) and
// remove. Every call passes a client-side token bucket (QPS/burst) first.
//
// Failures are values: KubeResult<T> = std::expected<T, ApiError>. An ApiError
// carries the HTTP code and the Kubernetes Status reason (Conflict,
// AlreadyExists, NotFound, Expired/Gone, ...); it converts implicitly to a
// kms::Error, so ROOTSEAL_TRY works from a function returning kms::Result.
//
// Secrets: objects of the core/v1 "secrets" resource (and any resource the
// caller marks `sensitive`) are parsed into a boost::json storage whose
// memory is locked and zeroized (kube/secure_json.hpp), and their request
// bodies are serialized into locked memory too. Objects are never logged and
// never appear in error messages.
//
// Thread-safety: a KubeClient may be used from any number of coroutines and
// threads at once.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "rootseal/net/http_client.hpp"

namespace rootseal::sync::kube {

namespace asio = boost::asio;
namespace json = boost::json;

// ---------------------------------------------------------------------------
// Configuration

struct KubeConfig {
  std::string server;  // "https://host:port" (or "http://..." for tests)
  std::string ca_pem;  // PEM bundle for the server; empty = system roots
  bool insecure_skip_tls_verify = false;
  std::string tls_server_name;       // SNI / verification name override; empty = host of `server`
  kms::SecureBytes bearer_token;     // static token (kubeconfig `token`)
  std::filesystem::path token_file;  // re-read every minute (projected service-account tokens rotate)
  std::string client_cert_pem;       // client certificate chain (PEM)
  kms::SecureBytes client_key_pem;   // its private key (PEM)
  std::string default_namespace;     // context namespace, or the service account's; "default" if none
  std::string context_name;          // the context used ("" in-cluster)

  KubeConfig() = default;
  KubeConfig(KubeConfig&&) noexcept = default;
  KubeConfig& operator=(KubeConfig&&) noexcept = default;
  [[nodiscard]] KubeConfig clone() const;

  // A kubeconfig file (YAML). `context` overrides current-context. Relative
  // file paths inside are resolved against the file's folder, as kubectl does.
  // Errors name the file and the field; never a secret value.
  static kms::Result<KubeConfig> from_file(const std::filesystem::path& file, std::string_view context = {});
  static kms::Result<KubeConfig> from_yaml(std::string_view yaml, const std::filesystem::path& base_dir,
                                           std::string_view context = {}, std::string_view origin = "kubeconfig");
  // In-cluster: $KUBERNETES_SERVICE_HOST/$KUBERNETES_SERVICE_PORT and
  // `sa_dir`/{token,ca.crt,namespace}.
  static kms::Result<KubeConfig> in_cluster(
      const std::filesystem::path& sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount");
};

// ---------------------------------------------------------------------------
// Resources

struct GroupVersionResource {
  std::string group;     // "" for the core group
  std::string version;   // "v1"
  std::string resource;  // plural, lower case: "secrets", "externalsecrets"
  std::string kind;      // "Secret" (used for apply bodies and messages)
  bool namespaced = true;
  bool sensitive = false;  // objects carry secret values: parse into locked memory

  // "/api/v1" or "/apis/<group>/<version>".
  [[nodiscard]] std::string base_path() const;
  // Collection or object path, optionally with a subresource ("status").
  // Empty `ns` on a namespaced resource = across all namespaces.
  [[nodiscard]] std::string path(std::string_view ns, std::string_view name = {},
                                 std::string_view subresource = {}) const;
  [[nodiscard]] std::string api_version() const;  // "v1" or "group/version"
};

// Well-known resources.
const GroupVersionResource& secrets_gvr();          // core/v1 secrets (sensitive)
const GroupVersionResource& namespaces_gvr();       // core/v1 namespaces (cluster-scoped)
const GroupVersionResource& serviceaccounts_gvr();  // core/v1 serviceaccounts (their token subresource)
const GroupVersionResource& configmaps_gvr();       // core/v1 configmaps (templateFrom sources)
const GroupVersionResource& events_gvr();           // core/v1 events
const GroupVersionResource& deployments_gvr();      // apps/v1
const GroupVersionResource& statefulsets_gvr();
const GroupVersionResource& daemonsets_gvr();

// ---------------------------------------------------------------------------
// Errors

enum class Reason {
  unknown,
  transport,            // no HTTP answer: connect/TLS failure, timeout, connection lost, unparsable body
  bad_request,          // 400
  unauthorized,         // 401
  forbidden,            // 403
  not_found,            // 404
  method_not_allowed,   // 405
  already_exists,       // 409 AlreadyExists
  conflict,             // 409 Conflict
  gone,                 // 410 Gone (e.g. an expired continue token)
  expired,              // 410 Expired ("too old resource version")
  unsupported_media,    // 415
  invalid,              // 422
  too_many_requests,    // 429 (see retry_after)
  internal_error,       // 500
  service_unavailable,  // 503
  timeout,              // 504 / Timeout / ServerTimeout
};
std::string_view to_string(Reason r) noexcept;

struct ApiError {
  int code = 0;  // HTTP status; 0 = no HTTP answer
  Reason reason = Reason::unknown;
  std::string reason_text;              // Status.reason as sent ("Conflict"), or "" for transport errors
  std::string message;                  // Status.message or a transport description; safe to show
  std::string name;                     // Status.details.name
  std::string kind;                     // Status.details.kind
  std::chrono::seconds retry_after{0};  // from Retry-After or details.retryAfterSeconds

  [[nodiscard]] bool is_not_found() const noexcept { return reason == Reason::not_found; }
  [[nodiscard]] bool is_conflict() const noexcept { return reason == Reason::conflict; }
  [[nodiscard]] bool is_already_exists() const noexcept { return reason == Reason::already_exists; }
  // 410 Gone/Expired: history or continue token too old; relist.
  [[nodiscard]] bool is_gone() const noexcept { return reason == Reason::gone || reason == Reason::expired; }
  // Worth retrying the same request later (transport, 429, 500, 503, 504).
  [[nodiscard]] bool is_retryable() const noexcept;

  // Builds an ApiError from an HTTP status and a (possibly empty or non-JSON) body.
  static ApiError from_response(int http_status, std::string_view body, std::chrono::seconds retry_after = {});
  static ApiError transport_error(std::string message);

  // "<Reason> (<code>): <message>"; safe to show.
  [[nodiscard]] std::string describe() const;
  // not_found, already_exists, conflict, permission_denied (401/403),
  // invalid_argument (400/415/422), unavailable (others).
  [[nodiscard]] kms::Error to_error() const;
  operator kms::Error() const { return to_error(); }  // NOLINT: lets ROOTSEAL_TRY cross into kms::Result
};

template <class T>
using KubeResult = std::expected<T, ApiError>;

// ---------------------------------------------------------------------------
// Requests

// Option structs are trivially copyable on purpose: GCC 12 miscompiles
// non-trivial default-argument temporaries of coroutine calls (it relocates
// them bitwise into the frame and destroys them twice). Their string_views
// must stay valid until the call completes.
struct ListOptions {
  std::string_view label_selector;    // "a=b,c!=d"
  std::string_view field_selector;    // "metadata.name=x"
  std::uint32_t page_size = 500;      // ?limit= per page; 0 = no limit (one page)
  std::string_view resource_version;  // "" = most recent (quorum read)
};

struct ListResult {
  json::array items;             // all pages; storage is locked memory for sensitive resources
  std::string resource_version;  // the list's metadata.resourceVersion (watch from here)
  std::size_t pages = 0;         // requests made
};

struct WatchOptions {
  std::string_view resource_version;  // start after this version ("" = from now, with synthetic ADDEDs)
  std::string_view label_selector;
  std::string_view field_selector;
  bool allow_bookmarks = true;
  std::chrono::seconds timeout{300};  // ?timeoutSeconds=: the server closes the stream after this
};

enum class WatchEventType { added, modified, deleted, bookmark, error };
std::string_view to_string(WatchEventType t) noexcept;

struct WatchEvent {
  WatchEventType type = WatchEventType::added;
  json::value object;  // the object; for BOOKMARK only metadata.resourceVersion; for ERROR a Status
};

// Called with each event of a watch, in order, on the watching coroutine.
// Return false to end the watch cleanly. Must not block.
using WatchHandler = std::function<bool(WatchEvent&& event)>;

enum class PatchType {
  merge,      // application/merge-patch+json (RFC 7386)
  json,       // application/json-patch+json (RFC 6902)
  apply,      // application/apply-patch+yaml: server-side apply (JSON is YAML); needs field_manager
  strategic,  // application/strategic-merge-patch+json (built-in kinds only)
};

struct WriteOptions {
  std::string_view field_manager;  // ?fieldManager=; empty = the client's default
  bool force = false;              // apply only: take ownership of conflicting fields
  bool dry_run = false;            // ?dryRun=All
};

struct DeleteOptions {
  std::string_view propagation_policy;  // "Background" | "Foreground" | "Orphan" | ""
  std::string_view precondition_resource_version;
  std::string_view precondition_uid;
};

static_assert(std::is_trivially_copyable_v<ListOptions> && std::is_trivially_copyable_v<WatchOptions> &&
              std::is_trivially_copyable_v<WriteOptions> && std::is_trivially_copyable_v<DeleteOptions>);

struct ClientOptions {
  double qps = 50.0;  // client-side limit (client-go's --kube-api-qps)
  std::size_t burst = 100;
  std::chrono::milliseconds request_timeout{30'000};  // per request (not watch streams)
  std::chrono::milliseconds connect_timeout{10'000};
  std::size_t max_response_bytes = 256u << 20;  // one response body / one list page
  std::string field_manager = "rootseal";
  std::string user_agent = "rootseal-sync";
};

// Counters for tests and metrics.
struct ClientStats {
  std::uint64_t requests = 0;      // HTTP requests sent (each list page counts)
  std::uint64_t lists = 0;         // list() calls
  std::uint64_t watches = 0;       // watch() calls
  std::uint64_t throttled_ns = 0;  // total time spent waiting for the token bucket
};

class KubeClient {
 public:
  // Holds an HTTP client built from `config` (TLS, client certificate, pooled
  // connections) on `ex`.
  static kms::Result<std::shared_ptr<KubeClient>> create(asio::any_io_executor ex, KubeConfig config,
                                                         ClientOptions options = {});
  virtual ~KubeClient() = default;

  [[nodiscard]] virtual const std::string& default_namespace() const noexcept = 0;
  [[nodiscard]] virtual ClientStats stats() const noexcept = 0;

  // ns is ignored for cluster-scoped resources.
  virtual asio::awaitable<KubeResult<json::value>> get(const GroupVersionResource& gvr, std::string_view ns,
                                                       std::string_view name) = 0;
  // Follows metadata.continue until the last page. A 410 on a continue token
  // (expired mid-list) restarts the list once from the beginning.
  virtual asio::awaitable<KubeResult<ListResult>> list(const GroupVersionResource& gvr, std::string_view ns,
                                                       const ListOptions& options = {}) = 0;
  // Streams events to on_event until: the server ends the stream
  // (timeoutSeconds elapsed: ok — reopen from the last resourceVersion seen),
  // on_event returns false (ok), control->cancel() (transport error
  // "cancelled"), an in-stream ERROR event (its Status as an ApiError; 410
  // Expired → is_gone()), or a non-2xx answer to the request.
  virtual asio::awaitable<KubeResult<void>> watch(const GroupVersionResource& gvr, std::string_view ns,
                                                  const WatchOptions& options, WatchHandler on_event,
                                                  const net::StreamControl* control = nullptr) = 0;
  // POST to the collection; 409 AlreadyExists if the name is taken.
  virtual asio::awaitable<KubeResult<json::value>> create(const GroupVersionResource& gvr, std::string_view ns,
                                                          const json::value& object,
                                                          const WriteOptions& options = {}) = 0;
  // POST to a subresource of an object (serviceaccounts/<name>/token); the
  // answer is parsed into locked memory when `sensitive_answer` (it carries
  // a credential), whatever the resource.
  virtual asio::awaitable<KubeResult<json::value>> create_subresource(const GroupVersionResource& gvr,
                                                                      std::string_view ns, std::string_view name,
                                                                      std::string_view subresource,
                                                                      const json::value& object,
                                                                      bool sensitive_answer) = 0;
  // PUT; the object's metadata.name names it, its metadata.resourceVersion (if
  // set) must be current or the answer is 409 Conflict.
  virtual asio::awaitable<KubeResult<json::value>> update(const GroupVersionResource& gvr, std::string_view ns,
                                                          const json::value& object,
                                                          const WriteOptions& options = {}) = 0;
  // PUT to /status: only .status is taken (same concurrency rule).
  virtual asio::awaitable<KubeResult<json::value>> update_status(const GroupVersionResource& gvr, std::string_view ns,
                                                                 const json::value& object,
                                                                 const WriteOptions& options = {}) = 0;
  // PATCH the object (or `subresource`, e.g. "status").
  virtual asio::awaitable<KubeResult<json::value>> patch(const GroupVersionResource& gvr, std::string_view ns,
                                                         std::string_view name, PatchType type,
                                                         const json::value& patch, const WriteOptions& options = {},
                                                         std::string_view subresource = {}) = 0;
  // DELETE; returns the answer (the object being deleted, or a Status).
  virtual asio::awaitable<KubeResult<json::value>> remove(const GroupVersionResource& gvr, std::string_view ns,
                                                          std::string_view name, const DeleteOptions& options = {}) = 0;
};

// Small accessors for objects (empty string_view when absent).
std::string_view meta_string(const json::value& object, std::string_view field);  // metadata.<field>
inline std::string_view name_of(const json::value& o) { return meta_string(o, "name"); }
inline std::string_view namespace_of(const json::value& o) { return meta_string(o, "namespace"); }
inline std::string_view resource_version_of(const json::value& o) { return meta_string(o, "resourceVersion"); }
// "ns/name", or "name" for cluster-scoped objects (client-go's MetaNamespaceKey).
std::string object_key(const json::value& object);
std::string object_key(std::string_view ns, std::string_view name);

}  // namespace rootseal::sync::kube
