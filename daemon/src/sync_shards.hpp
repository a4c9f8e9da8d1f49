// rootseald's share of the sync engine on a cluster (storage: etcd, sync
// enabled, sync.sharded; docs/ha.md "The sync engine on several hosts").
//
// A loop on its own thread, every third of etcd.member_ttl (at most 1 s):
// reads the hosts that run sync (their member records) and the owner of
// every bucket at one etcd revision, assigns the buckets by rendezvous
// hashing, takes the buckets assigned to this host that have no owner
// (EtcdStore::claim_bucket, fenced on this host's member record living
// under its lease), and gives up the ones assigned elsewhere: the engine
// stops acting on them at once, and the record is deleted once no work on
// the bucket is in flight (the drain). A bucket whose owner died becomes
// free when the owner's lease expires (its records live under it).
//
// The gate's deadline is the member lease's "alive until" minus a margin
// (a fifth of the TTL, at least 500 ms), read live at every check (each
// answered keepalive moves it): a host that cannot renew its lease (etcd
// unreachable, the process paused) stops acting on its buckets before the
// lease can have expired and another host can take them. A new lease (the
// old one expired) starts with no bucket.
#pragma once

#include <boost/json/object.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "rootseal/sync/shard.hpp"

namespace rootseal::etcdstore {
class EtcdStore;
}  // namespace rootseal::etcdstore

namespace rootseal::daemon {

class Metrics;

class SyncShards {
 public:
  SyncShards(etcdstore::EtcdStore& store, std::string host_id, std::string instance, std::chrono::seconds ttl);
  ~SyncShards();
  SyncShards(const SyncShards&) = delete;
  SyncShards& operator=(const SyncShards&) = delete;

  [[nodiscard]] std::shared_ptr<sync::ShardGate> gate() const { return gate_; }
  void register_metrics(Metrics& metrics);
  void start();
  // Stops acting on every bucket, waits (at most `drain`, polled) for the
  // work in flight, and releases the records of the buckets with none, so
  // the other hosts take them over at once (the rest go with the lease).
  // Never wait from a thread that runs the engine's work.
  void stop(std::chrono::milliseconds drain);

  // For cluster.status: {"sharded": true, "buckets": 256, "owned": [...],
  // "owners": {host: count}, "unowned": n, "error"?}. Blocking (an etcd read).
  [[nodiscard]] boost::json::object status() const;

  // The margin before the lease's end at which this host stops acting.
  static std::chrono::milliseconds margin(std::chrono::seconds ttl);

 private:
  void loop();
  void round();

  etcdstore::EtcdStore& store_;
  std::string host_id_;
  std::string instance_;
  std::chrono::seconds ttl_;
  std::shared_ptr<sync::ShardGate> gate_ = std::make_shared<sync::ShardGate>();
  // The lease the granted buckets were claimed under (0: none), read by the
  // gate's deadline source on the engine's threads; 0 once this is destroyed.
  std::shared_ptr<std::atomic<std::int64_t>> granted_lease_ = std::make_shared<std::atomic<std::int64_t>>(0);

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;

  // The loop's own state (its thread only).
  std::int64_t lease_ = 0;
  std::vector<std::optional<std::chrono::steady_clock::time_point>> wanted_since_ =
      std::vector<std::optional<std::chrono::steady_clock::time_point>>(sync::kBuckets);
  bool failing_ = false;

  std::atomic<std::uint64_t> taken_{0};     // buckets claimed (start, join, another host's loss)
  std::atomic<std::uint64_t> given_up_{0};  // buckets released after their drain
  std::atomic<std::uint64_t> lost_{0};      // buckets dropped because the lease ran out or changed
  std::atomic<double> last_takeover_s_{0};  // the last claim's wait since the bucket was this host's to take
  std::atomic<double> max_takeover_s_{0};
};

}  // namespace rootseal::daemon
