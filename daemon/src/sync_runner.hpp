// rootseald's sync engine across reloads (docs/ha.md "Configuration
// changes", docs/operations.md "Reload").
//
// A SIGHUP whose `sync:` section changed builds the next engine first (an
// error refuses the whole reload: the running engine keeps working), then
// stops the running one and keeps it until it has drained (no coroutine of
// it left: Engine::drained), and only then starts the next one: on this host
// two configurations never act at the same time. With storage: etcd and
// sync.sharded the bucket coordinator (SyncShards) stays up across a reload
// that keeps sharding on (this host keeps its buckets); turned off, it
// releases them once the old engine has drained; turned on, it starts with
// the next engine. The metrics read whichever engine is current.
//
// With storage: etcd each host publishes its configuration's fingerprint in
// its member record and compares it with the other hosts' at every round
// (a third of etcd.member_ttl, at most 1 s): rootseal_sync_config_peers_disagree
// is 1 while any differs, with one warning per change of who differs.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/sync/engine.hpp"

namespace rootseal::etcdstore {
class EtcdStore;
}  // namespace rootseal::etcdstore

namespace rootseal::daemon {

class ClusterMember;
class Metrics;
class SyncShards;

class SyncRunner {
 public:
  // `etcd` null: storage: sqlite (no sharding, no peers).
  SyncRunner(boost::asio::io_context& io, boost::asio::thread_pool& blocking, Metrics& metrics,
             etcdstore::EtcdStore* etcd, ClusterMember& cluster, std::chrono::seconds member_ttl);
  ~SyncRunner();
  SyncRunner(const SyncRunner&) = delete;
  SyncRunner& operator=(const SyncRunner&) = delete;

  // At start-up, before cluster.start(): the engine of `config` (null or
  // disabled: none). An error is a fatal start-up problem.
  kms::Result<void> start(std::shared_ptr<const sync::EngineConfig> config);

  // A reload's check (on the I/O context): nullopt when the effective
  // section is unchanged; else the next engine, built and not started, or
  // why the section is refused.
  struct Next {
    std::shared_ptr<const sync::EngineConfig> config;  // null: sync off
    std::shared_ptr<sync::Engine> engine;              // null: sync off
  };
  kms::Result<std::optional<Next>> prepare(std::shared_ptr<const sync::EngineConfig> config);
  // A reload's apply: the running engine stops; `next` starts once it has drained.
  void apply(Next next);

  // The service stops: the engine stops, the buckets are released (those
  // with work in flight go with the lease). Safe to call twice.
  void stop();

  [[nodiscard]] std::shared_ptr<sync::Engine> current() const;

 private:
  [[nodiscard]] bool sharded(const sync::EngineConfig* config) const;
  void add_metrics_once();
  void reap();  // on the I/O context: frees drained engines, starts the pending one
  void arm_reaper();
  void start_pending();
  void publish(const sync::EngineConfig* config, const std::string& fingerprint);
  void compare_peers();  // blocking pool
  void arm_peer_check();

  boost::asio::io_context& io_;
  boost::asio::thread_pool& blocking_;
  Metrics& metrics_;
  etcdstore::EtcdStore* etcd_;
  ClusterMember& cluster_;
  std::chrono::seconds ttl_;
  boost::asio::steady_timer reaper_;
  boost::asio::steady_timer peers_timer_;

  // Touched on the I/O context (signal handler, timers) only, but read by
  // the metrics from any thread: under mu_.
  mutable std::mutex mu_;
  std::shared_ptr<const sync::EngineConfig> config_;  // the effective one (null: off)
  std::shared_ptr<sync::Engine> engine_;              // started, or pending_ until the retired have drained
  bool pending_ = false;                              // engine_ starts once retired_ is empty
  bool stop_shards_ = false;                          // the coordinator stops once retired_ is empty (sharded → not)
  bool shards_stopping_ = false;                      // ... it is stopping (engine_ starts after)
  bool shards_running_ = false;
  std::vector<std::shared_ptr<sync::Engine>> retired_;
  std::chrono::steady_clock::time_point retired_since_{};
  bool warned_slow_drain_ = false;
  bool stopped_ = false;
  std::unique_ptr<SyncShards> shards_;  // created the first time sharding is on; kept (its metrics read it)
  bool metrics_added_ = false;
  std::string fingerprint_;  // of config_ ("" when off), the one published

  std::atomic<double> disagree_{0};
  std::string last_disagreement_;  // peers' view last logged (blocking pool, one check at a time)
  std::atomic<std::uint64_t> engines_replaced_{0};
};

}  // namespace rootseal::daemon
