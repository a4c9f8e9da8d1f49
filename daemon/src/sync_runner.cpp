#include "sync_runner.hpp"

#include <boost/asio/post.hpp>

#include <algorithm>

#include "cluster.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "rootseal/etcdstore/etcd_store.hpp"
#include "sync_config.hpp"
#include "sync_shards.hpp"

namespace rootseal::daemon {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

// How often drained engines are looked for while one is retired.
constexpr std::chrono::milliseconds kReapEvery{50};
// A retired engine still running after this gets one warning (its reconciles
// end on their own deadlines; the next engine waits for them).
constexpr std::chrono::seconds kSlowDrain{30};

std::string short_fp(const std::string& fp) { return fp.substr(0, 16); }

}  // namespace

SyncRunner::SyncRunner(asio::io_context& io, asio::thread_pool& blocking, Metrics& metrics, etcdstore::EtcdStore* etcd,
                       ClusterMember& cluster, std::chrono::seconds member_ttl)
    : io_(io),
      blocking_(blocking),
      metrics_(metrics),
      etcd_(etcd),
      cluster_(cluster),
      ttl_(member_ttl),
      reaper_(io),
      peers_timer_(io) {
  // Always there (0 with storage: sqlite: no peers), so that one alert rule fits every host.
  metrics_.add_gauge("rootseal_sync_config_peers_disagree",
                     "1 while another host's sync configuration fingerprint differs from this host's, else 0.",
                     [this] { return disagree_.load(); });
}

SyncRunner::~SyncRunner() { stop(); }

bool SyncRunner::sharded(const sync::EngineConfig* config) const {
  return etcd_ != nullptr && config != nullptr && config->enabled && config->sharded;
}

std::shared_ptr<sync::Engine> SyncRunner::current() const {
  std::lock_guard lock(mu_);
  return engine_;
}

void SyncRunner::add_metrics_once() {
  if (metrics_added_) return;
  metrics_added_ = true;
  add_sync_metrics(metrics_, [this] { return current(); });
  metrics_.add_gauge("rootseal_sync_engine_replacements_total",
                     "Sync engines replaced by a reload whose sync: section changed.",
                     [this] { return static_cast<double>(engines_replaced_.load()); });
}

kms::Result<void> SyncRunner::start(std::shared_ptr<const sync::EngineConfig> config) {
  if (etcd_ != nullptr) arm_peer_check();
  if (!config || !config->enabled) return {};
  std::shared_ptr<sync::ShardGate> gate;
  if (sharded(config.get())) {
    shards_ = std::make_unique<SyncShards>(*etcd_, cluster_.host_id(), cluster_.instance(), ttl_);
    shards_->register_metrics(metrics_);
    gate = shards_->gate();
  }
  auto engine = make_sync_engine(*config, io_.get_executor(), gate);
  if (!engine) return std::unexpected(engine.error());
  {
    std::lock_guard lock(mu_);
    engine_ = std::move(*engine);
    config_ = config;
    fingerprint_ = sync_config_fingerprint(*config);
  }
  add_metrics_once();
  publish(config.get(), fingerprint_);
  engine_->start();
  if (shards_) {
    shards_->start();
    shards_running_ = true;
  }
  return {};
}

kms::Result<std::optional<SyncRunner::Next>> SyncRunner::prepare(std::shared_ptr<const sync::EngineConfig> config) {
  const bool on = config && config->enabled;
  std::shared_ptr<const sync::EngineConfig> now;
  {
    std::lock_guard lock(mu_);
    now = config_;
  }
  // Compared with URL user information included (a changed password is a
  // change), in locked memory.
  if (on ? (now && same_sync_config(*now, *config)) : !now) {
    return std::optional<Next>{};
  }
  if (!on) return std::optional<Next>(Next{});
  std::shared_ptr<sync::ShardGate> gate;
  if (sharded(config.get())) {
    if (!shards_) {  // idle until started; kept even if this reload is refused later
      shards_ = std::make_unique<SyncShards>(*etcd_, cluster_.host_id(), cluster_.instance(), ttl_);
      shards_->register_metrics(metrics_);
    }
    gate = shards_->gate();
  }
  auto engine = make_sync_engine(*config, io_.get_executor(), gate);
  if (!engine) return std::unexpected(engine.error());
  return std::optional<Next>(Next{std::move(config), std::shared_ptr<sync::Engine>(std::move(*engine))});
}

void SyncRunner::apply(Next next) {
  const bool had_shards = shards_running_;
  std::string fp = next.config ? sync_config_fingerprint(*next.config) : std::string();
  bool was_on = false;
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    was_on = engine_ != nullptr;
    if (engine_) {
      engine_->stop();  // one never started (a reload before the last one's start) is drained at once
      if (retired_.empty()) {
        retired_since_ = Clock::now();
        warned_slow_drain_ = false;
      }
      retired_.push_back(std::move(engine_));
    }
    engine_ = std::move(next.engine);
    config_ = std::move(next.config);
    fingerprint_ = fp;
    pending_ = engine_ != nullptr;
    if (had_shards && !sharded(config_.get())) stop_shards_ = true;
  }
  if (was_on && engine_) ++engines_replaced_;
  if (engine_) add_metrics_once();
  // Not sharded any more: the record says so at once (the other hosts stop
  // assigning buckets to this one); the buckets go once the old engine drained.
  if (stop_shards_ || !config_) cluster_.set_sync(nullptr, config_ ? fp : std::string());
  log::info("sync: configuration changed; the running engine stops and the new one starts once it has drained",
            {{"enabled", config_ != nullptr},
             {"sharded", sharded(config_.get())},
             {"fingerprint", short_fp(fp)},
             {"was_running", was_on}});
  asio::post(io_, [this] { reap(); });
}

void SyncRunner::arm_reaper() {
  reaper_.expires_after(kReapEvery);
  reaper_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) reap();
  });
}

void SyncRunner::reap() {
  std::vector<std::shared_ptr<sync::Engine>> freed;
  bool wait = false;
  bool stop_shards = false;
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    auto drained = std::stable_partition(retired_.begin(), retired_.end(), [](const auto& e) { return !e->drained(); });
    freed.assign(std::make_move_iterator(drained), std::make_move_iterator(retired_.end()));
    retired_.erase(drained, retired_.end());
    if (!retired_.empty() && !warned_slow_drain_ && Clock::now() - retired_since_ > kSlowDrain) {
      warned_slow_drain_ = true;
      log::warn(
          "sync: the previous engine is still draining (reconciles in flight end on their deadlines); "
          "the new one waits for it");
    }
    wait = !retired_.empty() || shards_stopping_;
    if (!wait && stop_shards_) {
      stop_shards_ = false;
      shards_stopping_ = true;
      stop_shards = true;
    }
  }
  for (std::size_t i = 0; i < freed.size(); ++i) log::info("sync: the previous engine has drained and is freed");
  freed.clear();  // destroyed here: nothing of them runs any more
  if (wait) {
    arm_reaper();
    return;
  }
  if (stop_shards) {
    // Every bucket's work has ended with the old engine: all are released
    // now (SyncShards::stop joins its loop: off the I/O context).
    asio::post(blocking_, [this] {
      shards_->stop(std::chrono::milliseconds(0));
      log::info("sync: not sharded any more; this host's buckets are released");
      asio::post(io_, [this] {
        {
          std::lock_guard lock(mu_);
          shards_stopping_ = false;
          shards_running_ = false;
        }
        reap();
      });
    });
    return;
  }
  start_pending();
}

void SyncRunner::start_pending() {
  std::shared_ptr<sync::Engine> engine;
  std::shared_ptr<const sync::EngineConfig> config;
  std::string fp;
  {
    std::lock_guard lock(mu_);
    if (!pending_ || stopped_) return;
    pending_ = false;
    engine = engine_;
    config = config_;
    fp = fingerprint_;
  }
  publish(config.get(), fp);
  engine->start();
  if (sharded(config.get()) && !shards_running_) {
    shards_->start();
    shards_running_ = true;
  }
  log::info("sync: the new engine runs", {{"sharded", sharded(config.get())}, {"fingerprint", short_fp(fp)}});
}

void SyncRunner::publish(const sync::EngineConfig* config, const std::string& fingerprint) {
  if (sharded(config)) {
    cluster_.set_sync([s = shards_.get()] { return s->status(); }, fingerprint);
  } else {
    cluster_.set_sync(nullptr, fingerprint);
  }
}

void SyncRunner::stop() {
  std::shared_ptr<sync::Engine> engine;
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    engine = engine_;
  }
  reaper_.cancel();
  peers_timer_.cancel();
  // The coordinator first: it stops acting before the lease it claims under goes.
  if (shards_) shards_->stop(std::chrono::milliseconds(0));
  if (engine) engine->stop();
}

void SyncRunner::arm_peer_check() {
  const auto every =
      std::min(std::chrono::milliseconds(1000), std::chrono::duration_cast<std::chrono::milliseconds>(ttl_) / 3);
  peers_timer_.expires_after(every);
  peers_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    asio::post(blocking_, [this] {
      compare_peers();
      asio::post(io_, [this] {
        std::lock_guard lock(mu_);
        if (!stopped_) arm_peer_check();
      });
    });
  });
}

void SyncRunner::compare_peers() {
  std::string mine;
  {
    std::lock_guard lock(mu_);
    mine = fingerprint_;
  }
  std::string differ;  // "host=fingerprint,...": what is logged when it changes
  if (!mine.empty()) {
    auto view = etcd_->shard_view();
    if (!view) return;  // the last answer stands until etcd answers again
    for (const auto& m : view->members) {
      if (!m.error.empty() || m.sync_config.empty() || m.host_id == cluster_.host_id()) continue;
      if (m.sync_config != mine) differ += (differ.empty() ? "" : ",") + m.host_id + "=" + short_fp(m.sync_config);
    }
  }
  disagree_ = differ.empty() ? 0.0 : 1.0;
  if (differ == last_disagreement_) return;
  if (!differ.empty()) {
    log::warn("sync: the hosts' sync configurations differ (docs/ha.md \"Configuration changes\")",
              {{"this_host", short_fp(mine)}, {"differing", differ}});
  } else if (!mine.empty()) {
    log::info("sync: the hosts' sync configurations agree again", {{"fingerprint", short_fp(mine)}});
  }
  last_disagreement_ = differ;
}

}  // namespace rootseal::daemon
