#include "snapshot_scheduler.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <optional>

#include "log.hpp"
#include "metrics.hpp"

namespace rootseal::daemon {

namespace asio = boost::asio;
using kms::Errc;
using kms::fail;

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

SnapshotScheduler::SnapshotScheduler(asio::io_context& io, asio::thread_pool& blocking, kms::RootOfTrust& root,
                                     std::filesystem::path state_dir, std::shared_ptr<const SnapshotsConfig> config)
    : blocking_(blocking),
      root_(root),
      state_dir_(std::move(state_dir)),
      config_(std::move(config)),
      strand_(asio::make_strand(io)),
      timer_(strand_) {}

kms::Result<void> SnapshotScheduler::open() {
  for (const auto& d : config_->destinations) {
    ROOTSEAL_LET(store, open_snapshot_destination(d, strand_));
    destinations_.push_back(std::move(store));
  }
  return {};
}

void SnapshotScheduler::register_metrics(Metrics& metrics) {
  metrics.add_gauge("rootseal_snapshot_last_good_timestamp_seconds", "Unix time of the last good snapshot (0: none).",
                    [this] { return static_cast<double>(last_good_ms_.load()) / 1000.0; });
  metrics.add_gauge("rootseal_snapshot_last_good_size_bytes", "Size of the last good snapshot.",
                    [this] { return static_cast<double>(last_size_.load()); });
  metrics.add_gauge("rootseal_snapshots_good_total", "Snapshots verified at every destination.",
                    [this] { return static_cast<double>(good_.load()); });
  metrics.add_gauge("rootseal_snapshot_failures_total", "Snapshot runs that failed (nothing deleted).",
                    [this] { return static_cast<double>(failures_.load()); });
  metrics.add_gauge("rootseal_snapshots_deleted_total", "Snapshots deleted by retention.",
                    [this] { return static_cast<double>(deleted_.load()); });
  metrics.add_gauge("rootseal_snapshot_age_seconds", "Seconds since the last good snapshot (or the start).", [this] {
    const std::int64_t good = last_good_ms_.load();
    return static_cast<double>(now_ms() - (good > 0 ? good : started_ms_.load())) / 1000.0;
  });
  metrics.add_gauge("rootseal_snapshot_interval_seconds", "The configured snapshots.interval.",
                    [this] { return static_cast<double>(config_->interval.count()) / 1000.0; });
}

void SnapshotScheduler::start() {
  started_ms_ = now_ms();
  running_ = true;
  asio::co_spawn(strand_, loop(), asio::detached);
}

void SnapshotScheduler::stop() {
  running_ = false;
  asio::post(strand_, [this] { timer_.cancel(); });
}

asio::awaitable<void> SnapshotScheduler::loop() {
  while (running_) {
    timer_.expires_after(config_->interval);
    (void)co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    if (!running_) break;
    (void)co_await run_once();  // logged and counted inside
  }
}

// Put, read back, compare, verify what was read back with the root.
asio::awaitable<kms::Result<std::string>> SnapshotScheduler::upload(sync::ObjectStore& dest,
                                                                    const TakenSnapshot& snap) {
  ROOTSEAL_CO_TRY(co_await dest.put(snap.name, snap.bytes));
  ROOTSEAL_CO_LET(back, co_await dest.get(snap.name));
  if (back != snap.bytes) co_return fail(Errc::storage_failure, "the object read back differs from what was written");
  auto verified = co_await asio::co_spawn(
      blocking_,
      [this, &back]() -> asio::awaitable<kms::Result<kms::SnapshotReport>> {
        co_return kms::verify_snapshot(back, root_);
      },
      asio::use_awaitable);
  if (!verified) co_return std::unexpected(verified.error());
  co_return dest.describe();
}

asio::awaitable<kms::Result<SnapshotScheduler::RunResult>> SnapshotScheduler::run_now() {
  // On the scheduler's strand, where the timer's runs and the destinations' clients live.
  co_return co_await asio::co_spawn(strand_, run_once(), asio::use_awaitable);
}

asio::awaitable<kms::Result<SnapshotScheduler::RunResult>> SnapshotScheduler::run_once() {
  // One run at a time: the timer's and an admin request's never overlap.
  if (busy_.exchange(true)) co_return fail(Errc::conflict, "a snapshot is being taken; try again when it is done");
  struct Release {
    std::atomic<bool>& flag;
    ~Release() { flag = false; }
  } release{busy_};
  const std::int64_t started = now_ms();
  auto taken = co_await asio::co_spawn(
      blocking_,
      [this, started]() -> asio::awaitable<kms::Result<TakenSnapshot>> {
        co_return take_snapshot(state_dir_, root_, started);
      },
      asio::use_awaitable);
  if (!taken) {
    ++failures_;
    log::error("snapshot failed", {{"step", "take"}, {"error", taken.error().message}});
    co_return fail(taken.error().code, "snapshot failed: " + taken.error().message);
  }
  // Every destination must hold a verified copy before the snapshot counts.
  std::optional<kms::Error> first_failure;
  for (std::size_t i = 0; i < destinations_.size(); ++i) {
    auto r = co_await upload(*destinations_[i], *taken);
    if (!r) {
      if (!first_failure) {
        first_failure.emplace(r.error().code, "snapshot " + taken->name + " failed at destination " +
                                                  config_->destinations[i].name + ": " + r.error().message);
      }
      log::error("snapshot failed", {{"step", "upload"},
                                     {"destination", config_->destinations[i].name},
                                     {"snapshot", taken->name},
                                     {"error", r.error().message}});
    }
  }
  if (first_failure) {
    ++failures_;
    co_return std::unexpected(std::move(*first_failure));  // nothing counted good, nothing deleted
  }
  ++good_;
  last_good_ms_ = started;
  last_size_ = taken->bytes.size();
  log::info("snapshot good", {{"snapshot", taken->name},
                              {"bytes", taken->bytes.size()},
                              {"keys", taken->report.manifest.keys},
                              {"versions", taken->report.unwrapped},
                              {"destinations", destinations_.size()}});
  // Retention, only now.
  for (std::size_t i = 0; i < destinations_.size(); ++i) {
    auto listed = co_await destinations_[i]->list();
    if (!listed) {
      log::warn("snapshot retention skipped",
                {{"destination", config_->destinations[i].name}, {"error", listed.error().message}});
      continue;
    }
    // Kept out of the range-for header: GCC 12 has mishandled temporaries that live across a co_await.
    const std::vector<std::string> doomed =
        snapshots_to_delete(*listed, taken->name, config_->retain_count, config_->retain_age, now_ms());
    for (const auto& name : doomed) {
      auto removed = co_await destinations_[i]->remove(name);
      if (removed) {
        ++deleted_;
        log::info("snapshot deleted by retention",
                  {{"destination", config_->destinations[i].name}, {"snapshot", name}});
      } else {
        log::warn(
            "snapshot retention: delete failed",
            {{"destination", config_->destinations[i].name}, {"snapshot", name}, {"error", removed.error().message}});
      }
    }
  }
  co_return RunResult{taken->name, taken->bytes.size(), taken->report.manifest.keys, taken->report.unwrapped,
                      destinations_.size()};
}

}  // namespace rootseal::daemon
