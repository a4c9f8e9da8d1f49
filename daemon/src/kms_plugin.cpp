#include "kms_plugin.hpp"

#include <cstdio>

#include "log.hpp"

namespace rootseal::daemon {

namespace {

constexpr std::array<std::string_view, 3> kMethodNames = {"Status", "Encrypt", "Decrypt"};
constexpr std::array<kmsplugin::Code, 5> kCodeList = {kmsplugin::Code::ok, kmsplugin::Code::invalid_argument,
                                                      kmsplugin::Code::failed_precondition, kmsplugin::Code::internal,
                                                      kmsplugin::Code::unavailable};

std::size_t method_index(std::string_view m) {
  for (std::size_t i = 0; i < kMethodNames.size(); ++i) {
    if (kMethodNames[i] == m) return i;
  }
  return 0;
}

std::size_t code_index(kmsplugin::Code c) {
  for (std::size_t i = 0; i < kCodeList.size(); ++i) {
    if (kCodeList[i] == c) return i;
  }
  return 3;  // INTERNAL
}

// The audit line's HTTP-like status and outcome for a gRPC code.
std::pair<unsigned, std::string> audit_status(kmsplugin::Code c) {
  switch (c) {
    case kmsplugin::Code::ok:
      return {200, "ok"};
    case kmsplugin::Code::invalid_argument:
    case kmsplugin::Code::failed_precondition:
      return {400, "invalid"};
    case kmsplugin::Code::unavailable:
      return {503, "sealed"};
    case kmsplugin::Code::internal:
      break;
  }
  return {500, "error"};
}

kmsplugin::ServerOptions server_options(const KmsPluginConfig& c) {
  kmsplugin::ServerOptions o;
  o.socket = c.socket;
  o.mode = c.mode;
  o.group = c.group;
  for (const auto uid : c.allowed_uids) o.allowed_uids.insert(static_cast<uid_t>(uid));
  return o;
}

}  // namespace

KmsPlugin::KmsPlugin(const KmsPluginConfig& config, kms::Keyring& keyring, kms::RootOfTrust& root,
                     std::string cluster_id, AuditLog* audit, Metrics& metrics)
    : keyring_(keyring),
      cluster_id_(cluster_id),
      root_(root),
      audit_(audit),
      handler_(keyring, std::move(cluster_id), config.key) {
  kmsplugin::ServerHooks hooks;
  hooks.on_call = [this](const kmsplugin::CallRecord& call) { return on_call(call); };
  hooks.on_refused = [this](long peer_uid) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    log::warn("kms plugin: connection refused, peer uid not in kms_plugin.allowed_uids", {{"peer_uid", peer_uid}});
  };
  server_ = std::make_unique<kmsplugin::Server>(handler_, server_options(config), std::move(hooks));
  metrics.add_section([this](std::string& out) { render(out); });
}

KmsPlugin::~KmsPlugin() { stop(); }

kms::Result<void> KmsPlugin::start() { return server_->start(); }

void KmsPlugin::stop() {
  if (server_) server_->stop();
}

kms::Result<KmsPlugin::Rotation> KmsPlugin::rotate() {
  auto info = keyring_.rotate(handler_.key_name());
  if (!info) return std::unexpected(info.error());
  const auto created = info->versions.find(info->latest_version);
  if (created == info->versions.end()) return kms::fail(kms::Errc::internal, "the new version has no creation time");
  Rotation r{info->name, info->latest_version,
             kmsplugin::derive_key_id(cluster_id_, info->name, info->latest_version, created->second)};
  log::info("kms plugin key rotated", {{"key", r.key}, {"version", r.version}, {"key_id", r.key_id}});
  return r;
}

void KmsPlugin::self_test() {
  handler_.self_test(root_);
  // Logged when the outcome changes (the seal probe's log covers sealing).
  auto reason = handler_.unhealthy_reason();
  std::lock_guard lock(health_mu_);
  if (reason == last_reason_) return;
  if (reason.empty()) {
    log::info("kms plugin: self-test passed, Status answers ok", {{"key", handler_.key_name()}});
  } else if (reason != "sealed") {
    log::error("kms plugin: self-test failed, Status answers UNAVAILABLE", {{"reason", reason}});
  }
  last_reason_ = std::move(reason);
}

kms::Result<void> KmsPlugin::on_call(const kmsplugin::CallRecord& call) {
  const std::size_t m = method_index(call.method);
  calls_[m * kCodes + code_index(call.code)].fetch_add(1, std::memory_order_relaxed);
  const double seconds = std::chrono::duration<double>(call.elapsed).count();
  std::size_t slot = 0;
  while (slot < Metrics::kBuckets.size() && seconds > Metrics::kBuckets[slot]) ++slot;
  latency_[m * kSlots + slot].fetch_add(1, std::memory_order_relaxed);
  latency_sum_ns_[m].fetch_add(static_cast<std::uint64_t>(call.elapsed.count()), std::memory_order_relaxed);
  if (audit_ == nullptr) return {};
  AuditRecord r;
  r.request_id = call.uid;
  r.remote = call.peer_uid >= 0 ? "uid:" + std::to_string(call.peer_uid) : "uid:unknown";
  r.method = "GRPC";
  r.path = "/v2.KeyManagementService/" + std::string(call.method);
  r.operation = "kms_" + std::string(call.method == "Status"    ? "status"
                                     : call.method == "Encrypt" ? "encrypt"
                                                                : "decrypt");
  r.key = handler_.key_name();
  r.key_version = call.key_version;
  std::tie(r.status, r.outcome) = audit_status(call.code);
  r.error = call.message;
  r.latency_ms = std::chrono::duration<double, std::milli>(call.elapsed).count();
  return audit_->write(r);
}

void KmsPlugin::render(std::string& out) const {
  char buf[256];
  out += "# HELP rootseal_kms_plugin_requests_total KMS v2 plugin calls by method and gRPC code.\n";
  out += "# TYPE rootseal_kms_plugin_requests_total counter\n";
  for (std::size_t m = 0; m < kMethods; ++m) {
    for (std::size_t c = 0; c < kCodes; ++c) {
      const auto n = calls_[m * kCodes + c].load(std::memory_order_relaxed);
      if (n == 0) continue;
      const auto code = kmsplugin::to_string(kCodeList[c]);
      std::snprintf(buf, sizeof buf, "rootseal_kms_plugin_requests_total{method=\"%.*s\",code=\"%.*s\"} %llu\n",
                    static_cast<int>(kMethodNames[m].size()), kMethodNames[m].data(), static_cast<int>(code.size()),
                    code.data(), static_cast<unsigned long long>(n));
      out += buf;
    }
  }
  out += "# HELP rootseal_kms_plugin_request_duration_seconds KMS v2 plugin call latency by method.\n";
  out += "# TYPE rootseal_kms_plugin_request_duration_seconds histogram\n";
  for (std::size_t m = 0; m < kMethods; ++m) {
    const auto name = kMethodNames[m];
    const int len = static_cast<int>(name.size());
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < Metrics::kBuckets.size(); ++i) {
      cumulative += latency_[m * kSlots + i].load(std::memory_order_relaxed);
      std::snprintf(buf, sizeof buf,
                    "rootseal_kms_plugin_request_duration_seconds_bucket{method=\"%.*s\",le=\"%g\"} %llu\n", len,
                    name.data(), Metrics::kBuckets[i], static_cast<unsigned long long>(cumulative));
      out += buf;
    }
    cumulative += latency_[m * kSlots + Metrics::kBuckets.size()].load(std::memory_order_relaxed);
    std::snprintf(buf, sizeof buf,
                  "rootseal_kms_plugin_request_duration_seconds_bucket{method=\"%.*s\",le=\"+Inf\"} %llu\n"
                  "rootseal_kms_plugin_request_duration_seconds_sum{method=\"%.*s\"} %.9f\n"
                  "rootseal_kms_plugin_request_duration_seconds_count{method=\"%.*s\"} %llu\n",
                  len, name.data(), static_cast<unsigned long long>(cumulative), len, name.data(),
                  static_cast<double>(latency_sum_ns_[m].load(std::memory_order_relaxed)) / 1e9, len, name.data(),
                  static_cast<unsigned long long>(cumulative));
    out += buf;
  }
  out += "# HELP rootseal_kms_plugin_connections_refused_total Connections closed at accept: peer uid not allowed.\n";
  out += "# TYPE rootseal_kms_plugin_connections_refused_total counter\n";
  out += "rootseal_kms_plugin_connections_refused_total " + std::to_string(refused_.load(std::memory_order_relaxed)) +
         "\n";
}

}  // namespace rootseal::daemon
