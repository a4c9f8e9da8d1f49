#include "cluster.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <ctime>

#include "log.hpp"
#include "rootseal/etcdstore/etcd_store.hpp"
#include "rootseal/kms/random.hpp"

namespace rootseal::daemon {

namespace json = boost::json;

std::string effective_host_id(const Config& config) {
  if (!config.host_id.empty()) return config.host_id;
  std::array<char, 256> name{};
  if (::gethostname(name.data(), name.size() - 1) != 0 || name[0] == '\0') return "localhost";
  std::string out;
  for (std::size_t i = 0; i < name.size() && name[i] != '\0' && out.size() < 64; ++i) {
    const char c = name[i];
    const bool ok =
        (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '_' || c == '-';
    out.push_back(ok ? c : '-');
  }
  return out;
}

std::string utc_time_text(std::int64_t unix_seconds) {
  if (unix_seconds <= 0) return "0001-01-01T00:00:00Z";
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  std::array<char, 32> buf{};
  const std::size_t n = std::strftime(buf.data(), buf.size(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf.data(), n);
}

ClusterMember::ClusterMember(etcdstore::EtcdStore* store, std::function<SealStatus()> seal_status, std::string host_id,
                             std::string cluster_id, std::string version, std::chrono::seconds ttl)
    : store_(store),
      seal_status_(std::move(seal_status)),
      host_id_(std::move(host_id)),
      instance_(kms::uuid_v4()),
      cluster_id_(std::move(cluster_id)),
      version_(std::move(version)),
      ttl_(ttl),
      started_unix_(
          std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
              .count()) {}

void ClusterMember::start() {
  if (store_ == nullptr) return;
  store_->start_membership(
      ttl_,
      [this] {
        const SealStatus s = seal_status_();
        etcdstore::EtcdStore::Member m;
        m.host_id = host_id_;
        m.instance = instance_;
        m.version = version_;
        m.root_kcv = s.root_kcv;
        m.sealed = s.sealed;
        m.seen_revision = std::max(store_->loaded_revision(), store_->watched_revision());
        m.started_unix = started_unix_;
        std::lock_guard lock(sync_mu_);
        m.sync = static_cast<bool>(sync_);
        m.sync_config = sync_fingerprint_;
        return m;
      },
      [id = host_id_](const kms::Error& e) {
        log::warn("cluster: this host's record in etcd not kept (retried)", {{"host_id", id}, {"error", e.message}});
      });
  log::info("cluster: registering this host in etcd", {{"host_id", host_id_}, {"member_ttl_s", ttl_.count()}});
}

void ClusterMember::set_sync(std::function<boost::json::object()> sync, std::string fingerprint) {
  std::lock_guard lock(sync_mu_);
  sync_ = std::move(sync);
  sync_fingerprint_ = std::move(fingerprint);
}

void ClusterMember::stop() {
  if (store_ != nullptr) store_->stop_membership();
}

namespace {

std::string hex_id(std::uint64_t id) {
  std::array<char, 17> buf{};
  const int n = std::snprintf(buf.data(), buf.size(), "%llx", static_cast<unsigned long long>(id));
  return std::string(buf.data(), n > 0 ? static_cast<std::size_t>(n) : 0);
}

// Each etcd endpoint's answer to the status call; `leader` is set to the
// leader any of them names (0: none).
json::array endpoints_status(etcdstore::EtcdStore& store, std::uint64_t& leader) {
  json::array endpoints;
  for (const auto& h : store.endpoint_health()) {
    json::object e{{"endpoint", h.status.endpoint}, {"reachable", h.reachable}};
    if (h.reachable) {
      e["member_id"] = hex_id(h.status.header.member_id);
      e["leader_id"] = hex_id(h.status.leader);
      e["is_leader"] = h.status.leader != 0 && h.status.leader == h.status.header.member_id;
      e["raft_term"] = h.status.header.raft_term;
      e["revision"] = h.status.header.revision;
      e["version"] = h.status.version;
      e["db_size"] = h.status.db_size;
      if (h.status.leader != 0) leader = h.status.leader;
    } else {
      e["error"] = h.error;
    }
    endpoints.emplace_back(std::move(e));
  }
  return endpoints;
}

}  // namespace

json::object ClusterMember::status() const {
  const SealStatus s = seal_status_();
  json::object self{
      {"host_id", host_id_}, {"instance", instance_},  {"version", version_},
      {"sealed", s.sealed},  {"root_kcv", s.root_kcv}, {"started", utc_time_text(started_unix_)},
  };
  json::object out{{"storage", store_ == nullptr ? "sqlite" : "etcd"}, {"ha_enabled", store_ != nullptr}};
  if (store_ == nullptr) {
    out["cluster_id"] = cluster_id_;
    out["this_host"] = std::move(self);
    return out;
  }
  const std::int64_t seen = std::max(store_->loaded_revision(), store_->watched_revision());
  self["seen_revision"] = seen;
  out["prefix"] = store_->prefix();

  std::uint64_t leader = 0;
  json::array endpoints = endpoints_status(*store_, leader);
  out["endpoints"] = std::move(endpoints);
  out["etcd_leader_id"] = leader == 0 ? "" : hex_id(leader);

  auto view = store_->cluster_view();
  if (!view) {
    out["cluster_id"] = cluster_id_;
    out["this_host"] = std::move(self);
    out["error"] = "etcd did not answer the cluster read: " + view.error().message;
    return out;
  }
  out["cluster_id"] = view->cluster_id.value_or(cluster_id_);
  out["cluster_root_kcv"] = view->root_kcv.value_or("");
  out["revision"] = view->revision;
  out["latest_key_revision"] = view->latest_key_revision;
  bool registered = false;
  json::array members;
  for (const auto& m : view->members) {
    json::object o{{"host_id", m.host_id}};
    if (!m.error.empty()) {
      o["error"] = m.error;
    } else {
      o["instance"] = m.instance;
      o["version"] = m.version;
      o["root_kcv"] = m.root_kcv;
      o["sealed"] = m.sealed;
      o["seen_revision"] = m.seen_revision;
      o["current"] = m.seen_revision >= view->latest_key_revision;
      o["started"] = utc_time_text(m.started_unix);
      o["self"] = m.instance == instance_;
      o["sync"] = m.sync;
      if (!m.sync_config.empty()) o["sync_config"] = m.sync_config;
      registered = registered || m.instance == instance_;
    }
    o["lease"] = hex_id(static_cast<std::uint64_t>(m.lease));
    members.emplace_back(std::move(o));
  }
  out["members"] = std::move(members);
  std::function<json::object()> sync;
  {
    std::lock_guard lock(sync_mu_);
    sync = sync_;
  }
  if (sync) out["sync"] = sync();
  self["registered"] = registered;
  self["current"] = seen >= view->latest_key_revision;
  out["this_host"] = std::move(self);
  return out;
}

}  // namespace rootseal::daemon
