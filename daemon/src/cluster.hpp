// rootseald's part in a cluster of hosts sharing one keyring on etcd
// (storage: etcd; docs/ha.md): its record under <prefix>members/<host id>,
// kept alive under an etcd lease, and the answer of the admin op
// cluster.status (`rootseal cluster status`).
#pragma once

#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

#include "rootseal/daemon/config.hpp"
#include "seal_manager.hpp"

namespace rootseal::etcdstore {
class EtcdStore;
}  // namespace rootseal::etcdstore

namespace rootseal::daemon {

// The configured host_id, else the machine's host name (cut to 64 of
// [A-Za-z0-9._-], others replaced by '-').
std::string effective_host_id(const Config& config);

// An ISO 8601 UTC time ("2026-12-07T03:40:00Z"); Vault's zero time for 0.
std::string utc_time_text(std::int64_t unix_seconds);

class ClusterMember {
 public:
  // `store` null: storage: sqlite (one host; status reports this host only).
  ClusterMember(etcdstore::EtcdStore* store, std::function<SealStatus()> seal_status, std::string host_id,
                std::string cluster_id, std::string version, std::chrono::seconds ttl);
  ClusterMember(const ClusterMember&) = delete;
  ClusterMember& operator=(const ClusterMember&) = delete;

  // Registers this host (etcd only), kept alive until stop().
  void start();
  // Revokes the registration (the record goes at once).
  void stop();

  // The answer of cluster.status. Blocking (etcd reads): run it on the
  // blocking pool. Never fails: what etcd could not answer is in "error".
  boost::json::object status() const;

  [[nodiscard]] const std::string& host_id() const noexcept { return host_id_; }
  [[nodiscard]] const std::string& instance() const noexcept { return instance_; }
  // This host runs the sharded sync engine when `sync` is set (its record
  // says so, and the hosts split the sync buckets between those that do;
  // `sync` answers the "sync" part of status()); `fingerprint`: its `sync:`
  // configuration's (docs/ha.md "Configuration changes"), "" without sync.
  // Any time, from any thread: the record is written again at the next
  // keepalive (a third of the TTL).
  void set_sync(std::function<boost::json::object()> sync, std::string fingerprint);

 private:
  etcdstore::EtcdStore* store_;
  std::function<SealStatus()> seal_status_;
  std::string host_id_;
  std::string instance_;  // random per start: tells two processes under one host id apart
  std::string cluster_id_;
  std::string version_;
  std::chrono::seconds ttl_;
  std::int64_t started_unix_ = 0;
  mutable std::mutex sync_mu_;
  std::function<boost::json::object()> sync_;  // under sync_mu_
  std::string sync_fingerprint_;               // under sync_mu_
};

}  // namespace rootseal::daemon
