#include "sync_config.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <map>
#include <set>
#include <type_traits>
#include <utility>
#include <variant>

#include "log.hpp"
#include "metrics.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/numbers.hpp"
#include "rootseal/kms/secure_buffer.hpp"

namespace rootseal::daemon {

using kms::Errc;
using kms::fail;
using kms::Result;

namespace {

// Empty, or an http(s):// URL. The value is not echoed: a URL may carry user:password@.
Result<void> http_url(const std::string& where, const std::string& url) {
  if (!url.empty() && !url.starts_with("https://") && !url.starts_with("http://")) {
    return fail(Errc::invalid_argument, where + ": not an http:// or https:// URL");
  }
  return {};
}

Result<void> only_keys(const YAML::Node& node, const std::string& where, const std::set<std::string>& allowed) {
  if (!node.IsMap()) return fail(Errc::invalid_argument, where + ": must be a mapping");
  for (const auto& kv : node) {
    // A key that is a sequence or mapping (YAML allows them) has no string form.
    if (!kv.first.IsScalar()) return fail(Errc::invalid_argument, where + ": option names must be plain words");
    const auto key = kv.first.as<std::string>();
    if (!allowed.contains(key)) return fail(Errc::invalid_argument, where + ": unknown option '" + key + "'");
  }
  return {};
}

template <class T>
Result<T> get(const YAML::Node& node, const std::string& where) {
  if (!node.IsScalar()) return fail(Errc::invalid_argument, where + ": must be a scalar");
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    return fail(Errc::invalid_argument, where + ": invalid value");
  }
}

// A bare number of seconds or a Go duration ("250ms", "10s", "1h30m"), at
// most kms::kLongestDelay: range-checked before any arithmetic.
Result<std::chrono::milliseconds> millis(const YAML::Node& node, const std::string& where) {
  auto text = get<std::string>(node, where);
  if (!text) return std::unexpected(text.error());
  auto d = kms::parse_config_duration(*text);
  if (!d) return fail(Errc::invalid_argument, where + ": invalid duration (" + d.error().message + ")");
  return *d;
}

Result<std::vector<std::string>> strings(const YAML::Node& node, const std::string& where) {
  if (!node.IsSequence()) return fail(Errc::invalid_argument, where + ": must be a list");
  std::vector<std::string> out;
  for (std::size_t i = 0; i < node.size(); ++i) {
    auto s = get<std::string>(node[i], where + "[" + std::to_string(i) + "]");
    if (!s) return std::unexpected(s.error());
    out.push_back(std::move(*s));
  }
  return out;
}

// {file: PATH} or {credential: NAME}; a bare string is refused (it could be
// the secret itself).
Result<sync::CredentialRef> credential(const YAML::Node& node, const std::string& where) {
  if (!node.IsMap()) {
    return fail(
        Errc::invalid_argument,
        where + ": must be {file: PATH} or {credential: NAME} (secret values are never written in the configuration)");
  }
  ROOTSEAL_TRY(only_keys(node, where, {"file", "credential"}));
  sync::CredentialRef ref;
  if (node["file"]) {
    std::string f;
    ROOTSEAL_TRY_ASSIGN(f, get<std::string>(node["file"], where + ".file"));
    ref.file = f;
    if (!ref.file.is_absolute()) return fail(Errc::invalid_argument, where + ".file: must be an absolute path");
  }
  if (node["credential"])
    ROOTSEAL_TRY_ASSIGN(ref.credential, get<std::string>(node["credential"], where + ".credential"));
  if (ref.file.empty() == ref.credential.empty())
    return fail(Errc::invalid_argument, where + ": exactly one of file or credential");
  if (ref.credential.find('/') != std::string::npos)
    return fail(Errc::invalid_argument, where + ".credential: a name, not a path");
  return ref;
}

// Calls f(std::type_identity<H>{}) for each kind H of host store (the
// alternatives of sync::HostSettings, each declared beside its provider).
template <class F>
void for_each_host_kind(F&& f) {
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (f(std::type_identity<std::variant_alternative_t<I, sync::HostSettings>>{}), ...);
  }(std::make_index_sequence<std::variant_size_v<sync::HostSettings>>{});
}

// The options every host store has, whatever its kind.
const std::set<std::string> kHostCommonOptions = {"kind", "namespaces", "ca_file"};

// The kinds of host store, "vault, aws, azure or gcp" (last_separator " or ")
// or "vault, aws, azure, gcp" (", ").
std::string host_kinds(std::string_view last_separator) {
  std::vector<std::string_view> kinds;
  for_each_host_kind([&]<class H>(std::type_identity<H>) { kinds.push_back(H::kind); });
  std::string out;
  for (std::size_t i = 0; i < kinds.size(); ++i) {
    if (i > 0) out += i + 1 == kinds.size() ? last_separator : std::string_view(", ");
    out += kinds[i];
  }
  return out;
}

// The settings of a host store `n` (at `w`) of kind H, read through H's table
// of options: each option as a string or a credential reference, then the
// required ones, H's own check between options, and the URLs. An option of
// another kind is refused.
template <class H>
Result<sync::HostSettings> host_settings(const YAML::Node& n, const std::string& w) {
  const auto options = H::options();
  for (const auto& kv : n) {
    const auto key = kv.first.as<std::string>();
    const bool own = std::any_of(options.begin(), options.end(), [&](const auto& o) { return o.name == key; });
    if (!own && !kHostCommonOptions.contains(key)) {
      std::string message = w;
      message.append(".").append(key).append(": not an option of a ").append(H::kind).append(" store");
      return fail(Errc::invalid_argument, std::move(message));
    }
  }
  H h;
  for (const auto& o : options) {
    const std::string at = w + "." + std::string(o.name);
    const YAML::Node v = n[std::string(o.name)];
    if (!v) continue;
    if (const auto* text = std::get_if<std::string H::*>(&o.field)) {
      ROOTSEAL_TRY_ASSIGN(h.**text, get<std::string>(v, at));
    } else {
      ROOTSEAL_TRY_ASSIGN(h.*std::get<sync::CredentialRef H::*>(o.field), credential(v, at));
    }
  }
  for (const auto& o : options) {
    const auto* text = std::get_if<std::string H::*>(&o.field);
    const bool set = text != nullptr ? !(h.**text).empty() : (h.*std::get<sync::CredentialRef H::*>(o.field)).set();
    if (o.required && !set) {
      return fail(Errc::invalid_argument, w + "." + std::string(o.name) + ": required for " + std::string(H::kind));
    }
  }
  if constexpr (requires { h.check(w); }) ROOTSEAL_TRY(h.check(w));
  for (const auto& o : options) {
    if (o.url) ROOTSEAL_TRY(http_url(w + "." + std::string(o.name), h.*std::get<std::string H::*>(o.field)));
  }
  return sync::HostSettings(std::move(h));
}

// sync.stores.<name>: the options every store has, then those of its kind.
Result<sync::HostStoreConfig> host_store(const std::string& name, const YAML::Node& n) {
  const std::string w = "sync.stores." + name;
  std::set<std::string> every = kHostCommonOptions;
  for_each_host_kind([&]<class H>(std::type_identity<H>) {
    for (const auto& o : H::options()) every.emplace(o.name);
  });
  ROOTSEAL_TRY(only_keys(n, w, every));
  sync::HostStoreConfig s;
  s.name = name;
  if (!n["kind"]) return fail(Errc::invalid_argument, w + ".kind: required (" + host_kinds(", ") + ")");
  std::string kind;
  ROOTSEAL_TRY_ASSIGN(kind, get<std::string>(n["kind"], w + ".kind"));
  bool known = false;
  for_each_host_kind([&]<class H>(std::type_identity<H>) { known = known || kind == H::kind; });
  if (!known) return fail(Errc::invalid_argument, w + ".kind: " + host_kinds(" or "));
  if (!n["namespaces"])
    return fail(Errc::invalid_argument,
                w + ".namespaces: required (the namespaces that may use these credentials, or [\"*\"])");
  ROOTSEAL_TRY_ASSIGN(s.namespaces, strings(n["namespaces"], w + ".namespaces"));
  if (n["ca_file"]) {
    std::string ca;
    ROOTSEAL_TRY_ASSIGN(ca, get<std::string>(n["ca_file"], w + ".ca_file"));
    s.ca_file = ca;
  }
  Result<sync::HostSettings> settings = fail(Errc::internal, w + ".kind: not read");
  for_each_host_kind([&]<class H>(std::type_identity<H>) {
    if (kind == H::kind) settings = host_settings<H>(n, w);
  });
  ROOTSEAL_TRY_ASSIGN(s.settings, std::move(settings));
  return s;
}

// sync.queue and sync.store_backoff: how fast work is taken up.
Result<void> parse_sync_pacing(const YAML::Node& n, sync::EngineConfig& c) {
  if (const auto q = n["queue"]) {
    ROOTSEAL_TRY(only_keys(q, "sync.queue", {"qps", "burst"}));
    if (q["qps"]) {
      ROOTSEAL_TRY_ASSIGN(c.queue_qps, get<double>(q["qps"], "sync.queue.qps"));
      if (!(c.queue_qps > 0) || c.queue_qps > 100000) {
        return fail(Errc::invalid_argument, "sync.queue.qps: greater than 0, at most 100000");
      }
    }
    if (q["burst"]) {
      std::int64_t v = 0;
      ROOTSEAL_TRY_ASSIGN(v, get<std::int64_t>(q["burst"], "sync.queue.burst"));
      if (v < 1 || v > 1000000) return fail(Errc::invalid_argument, "sync.queue.burst: 1 to 1000000");
      c.queue_burst = static_cast<std::size_t>(v);
    }
  }
  if (const auto b = n["store_backoff"]) {
    ROOTSEAL_TRY(only_keys(b, "sync.store_backoff", {"base", "max"}));
    if (b["base"]) ROOTSEAL_TRY_ASSIGN(c.store_backoff_base, millis(b["base"], "sync.store_backoff.base"));
    if (b["max"]) ROOTSEAL_TRY_ASSIGN(c.store_backoff_max, millis(b["max"], "sync.store_backoff.max"));
  }
  if (c.store_backoff_base < std::chrono::milliseconds(10) || c.store_backoff_max < c.store_backoff_base ||
      c.store_backoff_max > std::chrono::hours(1)) {
    return fail(Errc::invalid_argument, "sync.store_backoff: 10ms <= base <= max <= 1h");
  }
  return {};
}

// snapshots.retain: count and age.
Result<void> parse_snapshot_retention(const YAML::Node& r, SnapshotsConfig& cfg) {
  const std::string w = "snapshots.retain";
  ROOTSEAL_TRY(only_keys(r, w, {"count", "age"}));
  if (r["count"]) {
    std::int64_t c = 0;
    ROOTSEAL_TRY_ASSIGN(c, get<std::int64_t>(r["count"], w + ".count"));
    if (c < 1 || c > 100000) return fail(Errc::invalid_argument, w + ".count: 1 to 100000");
    cfg.retain_count = static_cast<std::size_t>(c);
  }
  if (r["age"]) ROOTSEAL_TRY_ASSIGN(cfg.retain_age, millis(r["age"], w + ".age"));
  if (cfg.retain_age.count() > 0 && cfg.retain_age < cfg.interval) {
    return fail(Errc::invalid_argument, w + ".age: 0 (no limit) or at least snapshots.interval");
  }
  return {};
}

// The options of each kind of snapshot destination (name and kind: every kind).
const std::map<std::string, std::set<std::string>>& destination_options() {
  static const std::map<std::string, std::set<std::string>> kKindOptions = {
      {"folder", {"path"}},
      {"s3",
       {"bucket", "prefix", "region", "endpoint", "server_side_encryption", "sse_kms_key_id", "ca_file",
        "access_key_id", "secret_access_key", "session_token"}},
      {"gcs", {"bucket", "prefix", "endpoint", "token_uri", "ca_file", "service_account_json"}},
      {"azure",
       {"account", "container", "prefix", "endpoint", "tenant_id", "client_id", "authority_host", "ca_file",
        "client_secret"}},
  };
  return kKindOptions;
}

// Reads the options of one destination `d` (at `at`, of kind `kind`), with
// the messages every option shares.
struct DestinationReader {
  const YAML::Node& d;
  std::string at;
  std::string kind;

  Result<void> str(const char* key, std::string& out) const {
    if (d[key]) ROOTSEAL_TRY_ASSIGN(out, get<std::string>(d[key], at + "." + key));
    return {};
  }
  Result<void> path(const char* key, std::filesystem::path& out) const {
    std::string p;
    ROOTSEAL_TRY(str(key, p));
    out = p;
    if (!p.empty() && !out.is_absolute())
      return fail(Errc::invalid_argument, at + "." + key + ": must be an absolute path");
    return {};
  }
  Result<void> cred(const char* key, sync::CredentialRef& out) const {
    if (d[key]) ROOTSEAL_TRY_ASSIGN(out, credential(d[key], at + "." + key));
    return {};
  }
  Result<void> required(const char* key, const std::string& value) const {
    if (value.empty()) return fail(Errc::invalid_argument, at + "." + key + ": required for " + kind);
    return {};
  }
  // Reads every option of `fields`, then checks the first `required` of them are set.
  Result<void> strings(std::initializer_list<std::pair<const char*, std::string*>> fields,
                       std::size_t required_count) const {
    for (const auto& [key, out] : fields) ROOTSEAL_TRY(str(key, *out));
    for (const auto& [key, out] : fields) {
      if (required_count-- == 0) break;
      ROOTSEAL_TRY(required(key, *out));
    }
    return {};
  }
  Result<void> required_cred(const char* key, sync::CredentialRef& out) const {
    ROOTSEAL_TRY(cred(key, out));
    if (!out.set()) {
      return fail(Errc::invalid_argument,
                  at + "." + key + ": required for " + kind + " ({file: ...} or {credential: ...})");
    }
    return {};
  }
};

// The destination's name (unique, [a-z0-9_-]{1,32}) and kind; refuses an
// option that no kind has or that is not one of its kind's.
Result<void> destination_identity(const YAML::Node& d, std::string at, std::set<std::string>& names,
                                  SnapshotDestination& dest) {
  std::set<std::string> every = {"name", "kind"};
  for (const auto& [kind, options] : destination_options()) every.insert(options.begin(), options.end());
  ROOTSEAL_TRY(only_keys(d, at, every));
  if (!d["name"]) return fail(Errc::invalid_argument, at + ".name: required");
  ROOTSEAL_TRY_ASSIGN(dest.name, get<std::string>(d["name"], at + ".name"));
  if (dest.name.empty() || dest.name.size() > 32 || !std::all_of(dest.name.begin(), dest.name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
      })) {
    return fail(Errc::invalid_argument, at + ".name: 1 to 32 of [a-z0-9_-]");
  }
  if (!names.insert(dest.name).second)
    return fail(Errc::invalid_argument, at + ".name: '" + dest.name + "' is used twice");
  at = "snapshots.destinations." + dest.name;
  if (!d["kind"]) return fail(Errc::invalid_argument, at + ".kind: required (folder, s3, gcs or azure)");
  ROOTSEAL_TRY_ASSIGN(dest.kind, get<std::string>(d["kind"], at + ".kind"));
  const auto kind_options = destination_options().find(dest.kind);
  if (kind_options == destination_options().end()) {
    return fail(Errc::invalid_argument, at + ".kind: folder, s3, gcs or azure");
  }
  for (const auto& kv : d) {
    const auto key = kv.first.as<std::string>();
    if (key != "name" && key != "kind" && !kind_options->second.contains(key)) {
      return fail(Errc::invalid_argument, at + "." + key + ": not an option of a" +
                                              (dest.kind == "s3" || dest.kind == "azure" ? "n " : " ") + dest.kind +
                                              " destination");
    }
  }
  return {};
}

// The options every kind of destination may have: URLs, prefix, endpoint, CA file.
Result<void> read_common_options(const DestinationReader& r, SnapshotDestination& dest) {
  // Every URL option: http(s) (the value is not echoed: a URL may carry user:password@).
  for (const char* k : {"endpoint", "token_uri", "authority_host"}) {
    std::string url;
    ROOTSEAL_TRY(r.str(k, url));
    if (!url.empty() && !url.starts_with("http://") && !url.starts_with("https://")) {
      return fail(Errc::invalid_argument, r.at + "." + k + ": must be an http(s):// URL");
    }
  }
  ROOTSEAL_TRY(r.str("prefix", dest.prefix));
  if (!dest.prefix.empty() && (dest.prefix.back() != '/' || dest.prefix.front() == '/')) {
    return fail(Errc::invalid_argument,
                r.at + ".prefix: must end with '/' and not start with one (\"rootseal/prod/\")");
  }
  ROOTSEAL_TRY(r.str("endpoint", dest.endpoint));
  ROOTSEAL_TRY(r.path("ca_file", dest.ca_file));
  return {};
}

Result<void> read_s3_options(const DestinationReader& r, SnapshotDestination& dest) {
  ROOTSEAL_TRY(r.strings({{"bucket", &dest.bucket},
                          {"region", &dest.region},
                          {"server_side_encryption", &dest.server_side_encryption},
                          {"sse_kms_key_id", &dest.sse_kms_key_id}},
                         2));
  ROOTSEAL_TRY(r.cred("access_key_id", dest.access_key_id));
  ROOTSEAL_TRY(r.cred("secret_access_key", dest.secret_access_key));
  ROOTSEAL_TRY(r.cred("session_token", dest.session_token));
  if (!dest.access_key_id.set() || !dest.secret_access_key.set()) {
    return fail(Errc::invalid_argument,
                r.at + ": s3 needs access_key_id and secret_access_key ({file: ...} or {credential: ...})");
  }
  const auto& sse = dest.server_side_encryption;
  if (!sse.empty() && sse != "AES256" && sse != "aws:kms") {
    return fail(Errc::invalid_argument, r.at + ".server_side_encryption: AES256 or aws:kms");
  }
  if (!dest.sse_kms_key_id.empty() && sse != "aws:kms") {
    return fail(Errc::invalid_argument, r.at + ".sse_kms_key_id: needs server_side_encryption: aws:kms");
  }
  return {};
}

Result<void> read_azure_options(const DestinationReader& r, SnapshotDestination& dest) {
  ROOTSEAL_TRY(r.strings({{"account", &dest.account},
                          {"container", &dest.container},
                          {"tenant_id", &dest.tenant_id},
                          {"client_id", &dest.client_id},
                          {"authority_host", &dest.authority_host}},
                         4));
  return r.required_cred("client_secret", dest.client_secret);
}

// snapshots.destinations[i]: one destination, checked for its kind.
Result<SnapshotDestination> parse_snapshot_destination(const YAML::Node& d, std::size_t i,
                                                       std::set<std::string>& names) {
  SnapshotDestination dest;
  ROOTSEAL_TRY(destination_identity(d, "snapshots.destinations[" + std::to_string(i) + "]", names, dest));
  const DestinationReader r{d, "snapshots.destinations." + dest.name, dest.kind};
  ROOTSEAL_TRY(read_common_options(r, dest));
  if (dest.kind == "folder") {
    ROOTSEAL_TRY(r.path("path", dest.path));
    if (dest.path.empty()) return fail(Errc::invalid_argument, r.at + ".path: required for a folder");
  } else if (dest.kind == "s3") {
    ROOTSEAL_TRY(read_s3_options(r, dest));
  } else if (dest.kind == "gcs") {
    ROOTSEAL_TRY(r.strings({{"bucket", &dest.bucket}, {"token_uri", &dest.token_uri}}, 1));
    ROOTSEAL_TRY(r.required_cred("service_account_json", dest.service_account_json));
  } else {
    ROOTSEAL_TRY(read_azure_options(r, dest));
  }
  return dest;
}

}  // namespace

// The sync engine's metrics (docs/operations.md lists them), read through
// `current` at every scrape: the engine a reload put in place (zeros and no
// per-store series while there is none).
// NOLINTNEXTLINE(readability-function-size): a flat list of metric registrations
void add_sync_metrics(Metrics& metrics, std::function<std::shared_ptr<sync::Engine>()> current) {
  auto gauge = [&](const char* name, const char* help, auto field) {
    metrics.add_gauge(name, help, [current, field] {
      const auto e = current();
      return e ? static_cast<double>(e->stats().*field) : 0.0;
    });
  };
  gauge("rootseal_sync_reconciles", "ExternalSecret reconciles since start.", &sync::EngineStats::reconciles);
  gauge("rootseal_sync_provider_calls", "Provider fetches that reached a store.", &sync::EngineStats::provider_calls);
  gauge("rootseal_sync_fetch_dedup_hits", "Fetches served by the refresh-window cache or an in-flight call.",
        &sync::EngineStats::fetch_dedup_hits);
  gauge("rootseal_sync_secret_writes", "Kubernetes Secret creates, updates and deletes.",
        &sync::EngineStats::secret_writes);
  gauge("rootseal_sync_status_writes", "ExternalSecret/PushSecret status writes.", &sync::EngineStats::status_writes);
  gauge("rootseal_sync_errors", "Reconciles that ended in an error.", &sync::EngineStats::errors);
  gauge("rootseal_sync_conflicts", "409 Conflicts on Secret writes (retried).", &sync::EngineStats::conflicts);
  gauge("rootseal_sync_restarts", "Workload rollout restarts.", &sync::EngineStats::restarts);
  gauge("rootseal_sync_kube_requests", "Kubernetes API requests sent.", &sync::EngineStats::kube_requests);
  gauge("rootseal_sync_queue_ready", "Keys ready in the work queue.", &sync::EngineStats::queue_ready);
  gauge("rootseal_sync_managed_secrets", "Managed Secrets in the cache.", &sync::EngineStats::managed_secrets);
  gauge("rootseal_sync_push_reconciles", "PushSecret reconciles since start.", &sync::EngineStats::push_reconciles);
  gauge("rootseal_sync_push_writes", "Remote writes by PushSecrets (a value that changed or a created secret).",
        &sync::EngineStats::push_writes);
  gauge("rootseal_sync_push_unchanged", "PushSecret values found current remotely (no write).",
        &sync::EngineStats::push_unchanged);
  gauge("rootseal_sync_push_removals", "Remote keys removed for deletionPolicy Delete.",
        &sync::EngineStats::push_removals);
  gauge("rootseal_sync_push_errors", "PushSecret reconciles that ended in an error.", &sync::EngineStats::push_errors);
  gauge("rootseal_sync_push_stale_refused",
        "Pushes not written because the remote value was written by a newer owner of the bucket (a larger epoch).",
        &sync::EngineStats::push_stale_refused);
  gauge("rootseal_sync_synced", "1 once the caches are filled and workers run.", &sync::EngineStats::synced);
  gauge("rootseal_sync_informer_relists", "Informer re-lists after the first list (410 Gone, failed list).",
        &sync::EngineStats::relists);
  gauge("rootseal_sync_watch_reconnects", "Watches reopened after a failure.", &sync::EngineStats::watch_reconnects);
  gauge("rootseal_sync_parked", "ExternalSecrets/PushSecrets waiting for a store that backs off.",
        &sync::EngineStats::parked);
  gauge("rootseal_sync_shard_deferred",
        "Work refused because this host's lease could not be confirmed in time (bucket still granted): retried in 1 s.",
        &sync::EngineStats::shard_deferred);
  metrics.add_gauge(
      "rootseal_sync_externalsecrets_stale",
      "Periodically refreshed ExternalSecrets not refreshed successfully for refreshInterval + refresh_window + 1m.",
      [current] {
        const auto e = current();
        return e ? static_cast<double>(e->object_stats().es_stale) : 0.0;
      });
  // ExternalSecrets / PushSecrets by their Ready condition: one series each
  // for True, False and Unknown (no condition yet), zeros included.
  auto by_ready = [&](const char* name, const char* help, auto ready, auto not_ready, auto unknown) {
    metrics.add_gauge_family(
        name, help,
        [current, ready, not_ready, unknown] {
          const auto e = current();
          const auto s = e ? e->object_stats() : sync::ObjectStats{};
          return std::vector<std::pair<std::string, double>>{{"True", static_cast<double>(s.*ready)},
                                                             {"False", static_cast<double>(s.*not_ready)},
                                                             {"Unknown", static_cast<double>(s.*unknown)}};
        },
        "ready");
  };
  by_ready("rootseal_sync_externalsecrets", "ExternalSecrets watched, by their Ready condition.",
           &sync::ObjectStats::es_ready, &sync::ObjectStats::es_not_ready, &sync::ObjectStats::es_unknown);
  by_ready("rootseal_sync_pushsecrets", "PushSecrets watched, by their Ready condition.", &sync::ObjectStats::ps_ready,
           &sync::ObjectStats::ps_not_ready, &sync::ObjectStats::ps_unknown);
  // Per store: a store is a Kubernetes object rootseal reads, so the number of
  // series is bounded by the stores in use (label values escaped by Metrics).
  auto family = [&](const char* name, const char* help, auto value) {
    metrics.add_gauge_family(
        name, help,
        [current, value] {
          std::vector<std::pair<std::string, double>> out;
          const auto e = current();
          if (!e) return out;
          for (const auto& h : e->store_health()) out.emplace_back(h.store, value(h));
          return out;
        },
        "store");
  };
  family("rootseal_sync_store_backing_off", "1 while the store is backed off after errors, else 0.",
         [](const sync::StoreHealthStats& h) { return h.backing_off ? 1.0 : 0.0; });
  family("rootseal_sync_store_next_attempt_seconds", "Unix time of the next call a backed-off store gets (0: ok).",
         [](const sync::StoreHealthStats& h) { return h.next_attempt_unix; });
  family("rootseal_sync_store_refused_calls", "Calls refused locally while the store was backed off.",
         [](const sync::StoreHealthStats& h) { return static_cast<double>(h.refused); });
  family("rootseal_sync_store_failures", "Calls to the store that failed transiently (5xx, 429, throttling, network).",
         [](const sync::StoreHealthStats& h) { return static_cast<double>(h.failures); });
  family("rootseal_sync_store_parked", "ExternalSecrets/PushSecrets waiting for the store.",
         [](const sync::StoreHealthStats& h) { return static_cast<double>(h.parked); });
}

Result<std::shared_ptr<const sync::EngineConfig>> parse_sync_config(const YAML::Node& n) {
  ROOTSEAL_TRY(only_keys(n, "sync", {"enabled",        "kubeconfig",       "context",          "concurrency",
                                     "refresh_window", "namespaces",       "rollout_restart",  "kube_qps",
                                     "kube_burst",     "retry_base",       "retry_max",        "queue",
                                     "store_backoff",  "stores",           "aws_endpoint",     "azure_authority_host",
                                     "gcp_endpoint",   "gcp_sts_endpoint", "gcp_iam_endpoint", "sharded"}));
  auto c = std::make_shared<sync::EngineConfig>();
  if (n["enabled"]) ROOTSEAL_TRY_ASSIGN(c->enabled, get<bool>(n["enabled"], "sync.enabled"));
  if (n["kubeconfig"]) {
    std::string k;
    ROOTSEAL_TRY_ASSIGN(k, get<std::string>(n["kubeconfig"], "sync.kubeconfig"));
    c->kubeconfig = k;
    if (!c->kubeconfig.empty() && !c->kubeconfig.is_absolute()) {
      return fail(Errc::invalid_argument, "sync.kubeconfig: must be an absolute path");
    }
  }
  if (n["context"]) ROOTSEAL_TRY_ASSIGN(c->context, get<std::string>(n["context"], "sync.context"));
  if (n["concurrency"]) {
    std::int64_t v = 0;
    ROOTSEAL_TRY_ASSIGN(v, get<std::int64_t>(n["concurrency"], "sync.concurrency"));
    if (v < 0 || v > 1024) return fail(Errc::invalid_argument, "sync.concurrency: 0 (4 per core) to 1024");
    c->concurrency = static_cast<std::size_t>(v);
  }
  if (n["refresh_window"]) ROOTSEAL_TRY_ASSIGN(c->refresh_window, millis(n["refresh_window"], "sync.refresh_window"));
  if (c->refresh_window < std::chrono::milliseconds(100) || c->refresh_window > std::chrono::hours(1)) {
    return fail(Errc::invalid_argument, "sync.refresh_window: between 100ms and 1h");
  }
  if (n["namespaces"]) ROOTSEAL_TRY_ASSIGN(c->namespaces, strings(n["namespaces"], "sync.namespaces"));
  if (n["rollout_restart"])
    ROOTSEAL_TRY_ASSIGN(c->rollout_restart, get<bool>(n["rollout_restart"], "sync.rollout_restart"));
  if (n["sharded"]) ROOTSEAL_TRY_ASSIGN(c->sharded, get<bool>(n["sharded"], "sync.sharded"));
  if (n["kube_qps"]) {
    ROOTSEAL_TRY_ASSIGN(c->kube_qps, get<double>(n["kube_qps"], "sync.kube_qps"));
    if (!(c->kube_qps > 0) || c->kube_qps > 10000)
      return fail(Errc::invalid_argument, "sync.kube_qps: greater than 0, at most 10000");
  }
  if (n["kube_burst"]) {
    std::int64_t v = 0;
    ROOTSEAL_TRY_ASSIGN(v, get<std::int64_t>(n["kube_burst"], "sync.kube_burst"));
    if (v < 1 || v > 100000) return fail(Errc::invalid_argument, "sync.kube_burst: 1 to 100000");
    c->kube_burst = static_cast<std::size_t>(v);
  }
  if (n["retry_base"]) ROOTSEAL_TRY_ASSIGN(c->retry_base, millis(n["retry_base"], "sync.retry_base"));
  if (n["retry_max"]) ROOTSEAL_TRY_ASSIGN(c->retry_max, millis(n["retry_max"], "sync.retry_max"));
  if (c->retry_base.count() <= 0 || c->retry_max < c->retry_base) {
    return fail(Errc::invalid_argument, "sync.retry_base/retry_max: 0 < retry_base <= retry_max");
  }
  ROOTSEAL_TRY(parse_sync_pacing(n, *c));
  if (n["aws_endpoint"]) {
    ROOTSEAL_TRY_ASSIGN(c->aws_endpoint, get<std::string>(n["aws_endpoint"], "sync.aws_endpoint"));
    ROOTSEAL_TRY(http_url("sync.aws_endpoint", c->aws_endpoint));
  }
  if (n["azure_authority_host"]) {
    ROOTSEAL_TRY_ASSIGN(c->azure_authority_host,
                        get<std::string>(n["azure_authority_host"], "sync.azure_authority_host"));
    ROOTSEAL_TRY(http_url("sync.azure_authority_host", c->azure_authority_host));
  }
  for (auto [key, into] :
       {std::pair{"gcp_endpoint", &c->gcp_endpoint}, std::pair{"gcp_sts_endpoint", &c->gcp_sts_endpoint},
        std::pair{"gcp_iam_endpoint", &c->gcp_iam_endpoint}}) {
    if (!n[key]) continue;
    ROOTSEAL_TRY_ASSIGN(*into, get<std::string>(n[key], std::string("sync.") + key));
    ROOTSEAL_TRY(http_url(std::string("sync.") + key, *into));
  }
  if (n["stores"]) {
    if (!n["stores"].IsMap()) return fail(Errc::invalid_argument, "sync.stores: must be a mapping of name to store");
    for (const auto& kv : n["stores"]) {
      if (!kv.first.IsScalar()) return fail(Errc::invalid_argument, "sync.stores: store names must be plain words");
      const auto name = kv.first.as<std::string>();
      sync::HostStoreConfig s;
      ROOTSEAL_TRY_ASSIGN(s, host_store(name, kv.second));
      c->stores.emplace(name, std::move(s));
    }
  }
  return std::shared_ptr<const sync::EngineConfig>(std::move(c));
}

Result<std::shared_ptr<const SnapshotsConfig>> parse_snapshots_config(const YAML::Node& n) {
  const std::string w = "snapshots";
  ROOTSEAL_TRY(only_keys(n, w, {"enabled", "interval", "retain", "destinations"}));
  auto cfg = std::make_shared<SnapshotsConfig>();
  if (n["enabled"]) ROOTSEAL_TRY_ASSIGN(cfg->enabled, get<bool>(n["enabled"], w + ".enabled"));
  if (n["interval"]) ROOTSEAL_TRY_ASSIGN(cfg->interval, millis(n["interval"], w + ".interval"));
  if (cfg->interval < std::chrono::seconds(1)) return fail(Errc::invalid_argument, w + ".interval: at least 1s");
  if (n["retain"]) ROOTSEAL_TRY(parse_snapshot_retention(n["retain"], *cfg));
  if (!n["destinations"] || !n["destinations"].IsSequence() || n["destinations"].size() == 0) {
    return fail(Errc::invalid_argument, w + ".destinations: required, a list of at least one destination");
  }
  std::set<std::string> names;
  for (std::size_t i = 0; i < n["destinations"].size(); ++i) {
    SnapshotDestination dest;
    ROOTSEAL_TRY_ASSIGN(dest, parse_snapshot_destination(n["destinations"][i], i, names));
    cfg->destinations.push_back(std::move(dest));
  }
  return std::shared_ptr<const SnapshotsConfig>(std::move(cfg));
}

Result<std::unique_ptr<sync::Engine>> make_sync_engine(const sync::EngineConfig& config,
                                                       boost::asio::any_io_executor ex,
                                                       std::shared_ptr<sync::ShardGate> shards) {
  sync::EngineConfig ec = config;
  ec.shards = std::move(shards);
  ec.log = [](bool warning, std::string_view message, const std::vector<std::pair<std::string, std::string>>& fields) {
    std::vector<log::Field> f;
    f.reserve(fields.size());
    for (const auto& [k, v] : fields) f.emplace_back(k, v);
    log::write(warning ? log::Level::warn : log::Level::info, message, f);
  };
  auto engine = sync::Engine::create(std::move(ex), std::move(ec));
  if (!engine) return fail(engine.error().code, "sync: " + engine.error().message);
  return std::move(*engine);
}

namespace {

// A URL without its user information: "https://user:pw@host/" -> "https://host/".
std::string without_userinfo(std::string_view url) {
  const auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::string(url);
  const auto start = scheme + 3;
  const auto end = url.find_first_of("/?#", start);
  const auto authority = url.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
  const auto at = authority.rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  return std::string(url.substr(0, start)) + "<userinfo>@" + std::string(url.substr(start + at + 1));
}

// One line "name=value", the value's length first (no value can forge a line).
void field(kms::SecureBuffer& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.push_back('=');
  out.append(std::to_string(value.size()));
  out.push_back(':');
  out.append(value);
  out.push_back('\n');
}

// canonical_sync_config's text, appended to `out`. With `local`, URLs go in
// whole, user information included, and only into `out` (never a copy).
void append_canonical_sync_config(kms::SecureBuffer& out, const sync::EngineConfig& c, bool local) {
  auto url = [&](std::string_view name, const std::string& u) {
    if (local) {
      field(out, name, u);
    } else {
      field(out, name, without_userinfo(u));
    }
  };
  auto ms = [](std::chrono::milliseconds d) { return std::to_string(d.count()); };
  auto num = [](double v) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
    return std::string(buf, r.ptr);
  };
  out.append("rootseal sync configuration v1\n");
  field(out, "enabled", c.enabled ? "true" : "false");
  if (local) {  // each host's own way to the API (its own file, its own credentials)
    field(out, "kubeconfig", c.kubeconfig.string());
    field(out, "context", c.context);
  }
  field(out, "concurrency", std::to_string(c.concurrency));
  field(out, "refresh_window", ms(c.refresh_window));
  field(out, "namespaces", std::to_string(c.namespaces.size()));
  for (const auto& n : c.namespaces) field(out, "namespace", n);
  field(out, "rollout_restart", c.rollout_restart ? "true" : "false");
  field(out, "kube_qps", num(c.kube_qps));
  field(out, "kube_burst", std::to_string(c.kube_burst));
  field(out, "retry_base", ms(c.retry_base));
  field(out, "retry_max", ms(c.retry_max));
  field(out, "queue.qps", num(c.queue_qps));
  field(out, "queue.burst", std::to_string(c.queue_burst));
  field(out, "store_backoff.base", ms(c.store_backoff_base));
  field(out, "store_backoff.max", ms(c.store_backoff_max));
  url("aws_endpoint", c.aws_endpoint);
  url("azure_authority_host", c.azure_authority_host);
  url("gcp_endpoint", c.gcp_endpoint);
  url("gcp_sts_endpoint", c.gcp_sts_endpoint);
  url("gcp_iam_endpoint", c.gcp_iam_endpoint);
  field(out, "sharded", c.sharded ? "true" : "false");
  field(out, "stores", std::to_string(c.stores.size()));
  for (const auto& [name, st] : c.stores) {  // a std::map: by name
    field(out, "store", name);
    field(out, "store.namespaces", std::to_string(st.namespaces.size()));
    for (const auto& n : st.namespaces) field(out, "store.namespace", n);
    field(out, "store.ca_file", st.ca_file.string());
    std::visit(
        [&]<class H>(const H& h) {
          field(out, "store.kind", H::kind);
          for (const auto& o : H::options()) {
            if (const auto* text = std::get_if<std::string H::*>(&o.field)) {
              const std::string option = std::string("store.") + std::string(o.name);
              if (o.url) {
                url(option, h.**text);
              } else {
                field(out, option, h.**text);
              }
            } else {
              // A credential is a reference (a file or a systemd credential's
              // name), never a value: the reference is what is compared.
              const auto& ref = h.*std::get<sync::CredentialRef H::*>(o.field);
              field(out, std::string("store.") + std::string(o.name) + ".file", ref.file.string());
              field(out, std::string("store.") + std::string(o.name) + ".credential", ref.credential);
            }
          }
        },
        st.settings);
  }
}

}  // namespace

kms::SecureBuffer canonical_sync_config(const sync::EngineConfig& c, bool local) {
  kms::SecureBuffer out(2048);
  append_canonical_sync_config(out, c, local);
  return out;
}

bool same_sync_config(const sync::EngineConfig& a, const sync::EngineConfig& b) {
  return canonical_sync_config(a, true).view() == canonical_sync_config(b, true).view();
}

std::string sync_config_fingerprint(const sync::EngineConfig& c) {
  // Domain-separated: a digest of this text only, never taken for another one.
  constexpr std::string_view kDomain("rootseal/sync-config-fingerprint/v1\0", 36);  // the NUL included
  kms::SecureBuffer text(kDomain);
  append_canonical_sync_config(text, c, false);
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int n = 0;
  if (EVP_Digest(text.data(), text.size(), md.data(), &n, EVP_sha256(), nullptr) != 1 || n != 32) {
    throw std::runtime_error("SHA-256 failed");
  }
  return kms::hex_encode(std::span<const std::uint8_t>(md.data(), n));
}

}  // namespace rootseal::daemon
