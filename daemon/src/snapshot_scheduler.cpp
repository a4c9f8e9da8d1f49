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
#include "rootseal/etcdstore/etcd_store.hpp"

namespace rootseal::daemon {

namespace asio = boost::asio;
using kms::Errc;
using kms::fail;

namespace {

constexpr std::string_view kLock = "snapshots";  // <prefix>locks/snapshots
constexpr std::string_view kNote = "snapshot";   // <prefix>notes/snapshot: the last good one's name

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

void SnapshotScheduler::use_etcd(etcdstore::EtcdStore* store, std::string host_id) {
  etcd_ = store;
  host_id_ = std::move(host_id);
}

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
  metrics.add_gauge("rootseal_snapshot_taker",
                    "1 when this host takes the scheduled snapshots (always on SQLite; with etcd, the lock's holder).",
                    [this] { return etcd_ == nullptr || taker_.load() ? 1.0 : 0.0; });
  metrics.add_gauge("rootseal_snapshots_skipped_total", "Scheduled runs left to the host holding the etcd lock.",
                    [this] { return static_cast<double>(skipped_.load()); });
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
  // The lock goes at once (not when its lease expires): another host takes the next run.
  if (etcd_ != nullptr) etcd_->release_lock(kLock);
}

asio::awaitable<void> SnapshotScheduler::loop() {
  while (running_) {
    timer_.expires_after(config_->interval);
    (void)co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    if (!running_) break;
    if (etcd_ != nullptr) {
      // Its own statement: GCC 12 miscompiles a co_await inside && (a trap at run time).
      const bool mine = co_await take_turn();
      if (!mine) continue;
    }
    (void)co_await run_once(true);  // logged and counted inside
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
  co_return co_await asio::co_spawn(strand_, run_once(false), asio::use_awaitable);
}

asio::awaitable<bool> SnapshotScheduler::take_turn() {
  auto turn = co_await asio::co_spawn(
      blocking_,
      [this]() -> asio::awaitable<kms::Result<std::pair<bool, std::string>>> {
        std::string holder;
        auto held = etcd_->hold_lock(kLock, host_id_, &holder);
        if (!held) co_return std::unexpected(held.error());
        if (!*held) {
          // The holder's last good snapshot, for this host's metrics (the alert is the cluster's).
          auto last = etcd_->note(kNote);
          if (last && *last) {
            if (auto t = snapshot_name_time(**last)) {
              std::int64_t seen = last_good_ms_.load();
              while (*t > seen && !last_good_ms_.compare_exchange_weak(seen, *t)) {
              }
            }
          }
        }
        co_return std::make_pair(*held, std::move(holder));
      },
      asio::use_awaitable);
  if (!turn) {
    ++failures_;
    taker_ = false;
    log::error("snapshot failed", {{"step", "lock"}, {"error", turn.error().message}});
    co_return false;
  }
  const bool mine = turn->first;
  if (mine != taker_.exchange(mine)) {
    log::info(mine ? "snapshots: this host takes the cluster's scheduled snapshots"
                   : "snapshots: another host takes the cluster's scheduled snapshots",
              {{"holder", turn->second}});
  }
  if (!mine) ++skipped_;
  co_return mine;
}

asio::awaitable<kms::Result<TakenSnapshot>> SnapshotScheduler::take(std::int64_t started) {
  co_return co_await asio::co_spawn(
      blocking_,
      [this, started]() -> asio::awaitable<kms::Result<TakenSnapshot>> {
        if (etcd_ != nullptr) co_return take_etcd_snapshot(*etcd_, root_, started);
        co_return take_snapshot(state_dir_, root_, started);
      },
      asio::use_awaitable);
}

asio::awaitable<kms::Result<SnapshotScheduler::RunResult>> SnapshotScheduler::run_once(bool scheduled) {
  // One run at a time: the timer's and an admin request's never overlap.
  if (busy_.exchange(true)) co_return fail(Errc::conflict, "a snapshot is being taken; try again when it is done");
  struct Release {
    std::atomic<bool>& flag;
    ~Release() { flag = false; }
  } release{busy_};
  const std::int64_t started = now_ms();
  // A scheduled run that fails lets the etcd lock go: another host tries at its next interval.
  auto let_go = [this, scheduled] {
    if (etcd_ != nullptr && scheduled) {
      asio::post(blocking_, [this] { etcd_->release_lock(kLock); });
      taker_ = false;
    }
  };
  auto taken = co_await take(started);
  if (!taken) {
    ++failures_;
    let_go();
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
    let_go();
    co_return std::unexpected(std::move(*first_failure));  // nothing counted good, nothing deleted
  }
  ++good_;
  last_good_ms_ = started;
  last_size_ = taken->bytes.size();
  if (etcd_ != nullptr) {
    // For the other hosts' metrics (best effort: the snapshot is good either way).
    // `taken` by reference, not a copy captured by value: with GCC 12 a coroutine
    // lambda holding `name = taken->name` corrupts the heap (rootseald died in
    // integration_snapshots_etcd; checked: putting the copy back brings it back).
    auto noted = co_await asio::co_spawn(
        blocking_,
        [this, &taken]() -> asio::awaitable<kms::Result<void>> { co_return etcd_->put_note(kNote, taken->name); },
        asio::use_awaitable);
    if (!noted) log::warn("snapshot: the note for the other hosts failed", {{"error", noted.error().message}});
  }
  log::info("snapshot good", {{"snapshot", taken->name},
                              {"bytes", taken->bytes.size()},
                              {"keys", taken->report.manifest.keys},
                              {"versions", taken->report.unwrapped},
                              {"destinations", destinations_.size()}});
  // Retention, only now.
  const std::string newest = taken->name;
  co_await apply_retention(newest);
  co_return RunResult{taken->name, taken->bytes.size(), taken->report.manifest.keys, taken->report.unwrapped,
                      destinations_.size()};
}

asio::awaitable<void> SnapshotScheduler::apply_retention(std::string newest) {
  for (std::size_t i = 0; i < destinations_.size(); ++i) {
    auto listed = co_await destinations_[i]->list();
    if (!listed) {
      log::warn("snapshot retention skipped",
                {{"destination", config_->destinations[i].name}, {"error", listed.error().message}});
      continue;
    }
    // Kept out of the range-for header: GCC 12 has mishandled temporaries that live across a co_await.
    const std::vector<std::string> doomed =
        snapshots_to_delete(*listed, newest, config_->retain_count, config_->retain_age, now_ms());
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
}

}  // namespace rootseal::daemon
