// The daemon's snapshot scheduler: every snapshots.interval, one snapshot of
// the state folder to every destination (rootseal/daemon/snapshots.hpp), on
// the blocking pool; metrics of the last good one and of failures.
//
// With storage: etcd the hosts share one keyring, and one of them takes the
// scheduled snapshots: the holder of the etcd lock <prefix>locks/snapshots,
// held under the host's member lease (etcd.member_ttl, kept alive while the
// host lives; EtcdStore::hold_lock). A host whose interval comes while another holds the lock skips the
// run and reports the cluster's last good snapshot (<prefix>notes/snapshot,
// written by the holder after each good run) in its metrics. A holder that
// dies lets the lock go when its lease expires; a holder whose run fails lets
// it go at once, so another host tries at its next interval. `rootseal
// snapshot now` runs on the host asked, lock or not.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <filesystem>
#include <memory>
#include <vector>

#include "rootseal/daemon/snapshots.hpp"

namespace rootseal::etcdstore {
class EtcdStore;
}

namespace rootseal::daemon {

class Metrics;

class SnapshotScheduler {
 public:
  SnapshotScheduler(boost::asio::io_context& io, boost::asio::thread_pool& blocking, kms::RootOfTrust& root,
                    std::filesystem::path state_dir, std::shared_ptr<const SnapshotsConfig> config);
  // storage: etcd: snapshots of `store` at one revision, the scheduled ones
  // taken by the holder of the cluster's snapshot lock (see the top).
  void use_etcd(etcdstore::EtcdStore* store, std::string host_id);
  // Opens every destination (credentials are read now: a missing one fails the start).
  kms::Result<void> open();
  void register_metrics(Metrics& metrics);
  void start();
  void stop();

  // What a good run produced.
  struct RunResult {
    std::string name;
    std::uint64_t bytes = 0;
    std::uint64_t keys = 0;
    std::uint64_t versions = 0;
    std::size_t destinations = 0;
  };
  // One run now, from any executor (`rootseal snapshot now` over the admin
  // socket): the good snapshot, or why not (conflict while another run is
  // under way; the first failing step otherwise).
  boost::asio::awaitable<kms::Result<RunResult>> run_now();

 private:
  boost::asio::awaitable<void> loop();
  boost::asio::awaitable<kms::Result<RunResult>> run_once(bool scheduled);  // on strand_
  // storage: etcd, a scheduled run: whether this host takes it (it holds the lock).
  boost::asio::awaitable<bool> take_turn();
  boost::asio::awaitable<kms::Result<TakenSnapshot>> take(std::int64_t started);
  boost::asio::awaitable<kms::Result<std::string>> upload(sync::ObjectStore& dest, const TakenSnapshot& snap);
  // Deletes what the retention rules no longer keep at every destination, `newest` always kept.
  boost::asio::awaitable<void> apply_retention(std::string newest);

  boost::asio::thread_pool& blocking_;
  kms::RootOfTrust& root_;
  std::filesystem::path state_dir_;
  std::shared_ptr<const SnapshotsConfig> config_;
  etcdstore::EtcdStore* etcd_ = nullptr;
  std::string host_id_;
  std::atomic<bool> taker_{false};         // storage: etcd: this host held the lock at its last turn
  std::atomic<std::uint64_t> skipped_{0};  // scheduled runs left to the lock's holder
  std::vector<std::unique_ptr<sync::ObjectStore>> destinations_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::steady_timer timer_;
  std::atomic<bool> running_{false};
  std::atomic<bool> busy_{false};  // a run is under way
  std::atomic<std::int64_t> started_ms_{0};
  std::atomic<std::int64_t> last_good_ms_{0};
  std::atomic<std::uint64_t> last_size_{0};
  std::atomic<std::uint64_t> good_{0};
  std::atomic<std::uint64_t> failures_{0};
  std::atomic<std::uint64_t> deleted_{0};
};

}  // namespace rootseal::daemon
