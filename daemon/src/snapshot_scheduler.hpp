// The daemon's snapshot scheduler: every snapshots.interval, one snapshot of
// the state folder to every destination (rootseal/daemon/snapshots.hpp), on
// the blocking pool; metrics of the last good one and of failures.
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

namespace rootseal::daemon {

class Metrics;

class SnapshotScheduler {
 public:
  SnapshotScheduler(boost::asio::io_context& io, boost::asio::thread_pool& blocking, kms::RootOfTrust& root,
                    std::filesystem::path state_dir, std::shared_ptr<const SnapshotsConfig> config);
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
  boost::asio::awaitable<kms::Result<RunResult>> run_once();  // on strand_
  boost::asio::awaitable<kms::Result<std::string>> upload(sync::ObjectStore& dest, const TakenSnapshot& snap);

  boost::asio::thread_pool& blocking_;
  kms::RootOfTrust& root_;
  std::filesystem::path state_dir_;
  std::shared_ptr<const SnapshotsConfig> config_;
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
