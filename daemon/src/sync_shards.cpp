#include "sync_shards.hpp"

#include <algorithm>
#include <map>

#include "log.hpp"
#include "metrics.hpp"
#include "rootseal/etcdstore/etcd_store.hpp"

namespace rootseal::daemon {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

SyncShards::SyncShards(etcdstore::EtcdStore& store, std::string host_id, std::string instance, std::chrono::seconds ttl)
    : store_(store), host_id_(std::move(host_id)), instance_(std::move(instance)), ttl_(ttl) {
  gate_->set_deadline_source([s = &store_, granted = granted_lease_, m = margin(ttl_)] {
    const std::int64_t lease = granted->load();
    if (lease == 0) return Clock::time_point::min();
    const auto st = s->member_lease_state();
    return st.id == lease ? st.alive_until - m : Clock::time_point::min();
  });
}

SyncShards::~SyncShards() {
  stop(std::chrono::milliseconds(0));
  granted_lease_->store(0);  // the gate may outlive this (the engine holds it): it grants nothing now
}

std::chrono::milliseconds SyncShards::margin(std::chrono::seconds ttl) {
  return std::max(std::chrono::milliseconds(500), std::chrono::duration_cast<std::chrono::milliseconds>(ttl) / 5);
}

void SyncShards::start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { loop(); });
  log::info("sync: sharded across the hosts on etcd", {{"host_id", host_id_},
                                                       {"buckets", static_cast<std::int64_t>(sync::kBuckets)},
                                                       {"margin_ms", margin(ttl_).count()}});
}

void SyncShards::stop(std::chrono::milliseconds drain) {
  {
    std::lock_guard lock(mu_);
    if (!thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
  const auto owned = gate_->owned();
  gate_->revoke_all();
  const auto until = Clock::now() + drain;
  for (const auto b : owned) {
    // Polled: the engine's work ends on its own threads, each bounded by its deadlines.
    while (gate_->in_flight(b) > 0 && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (gate_->in_flight(b) == 0) (void)store_.release_bucket(b);
  }
}

void SyncShards::loop() {
  const auto pause =
      std::min(std::chrono::milliseconds(1000), std::chrono::duration_cast<std::chrono::milliseconds>(ttl_) / 3);
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    try {
      round();
    } catch (const std::exception& e) {
      log::warn("sync: bucket round failed", {{"error", std::string(e.what())}});
    }
    lock.lock();
    cv_.wait_for(lock, pause, [this] { return stopping_; });
  }
}

void SyncShards::round() {
  const auto lease = store_.member_lease_state();
  if (lease.id != lease_) {
    const auto had = gate_->owned();
    if (!had.empty()) {
      gate_->revoke_all();
      lost_ += had.size();
      log::warn("sync: the member lease changed (the old one expired): this host's buckets are dropped",
                {{"buckets", static_cast<std::int64_t>(had.size())}});
    }
    lease_ = lease.id;
    granted_lease_->store(lease.id);  // after the revoke: the old lease's buckets never count under the new one
  }
  if (lease.id == 0) return;

  auto view = store_.shard_view();
  if (!view) {
    if (!failing_) log::warn("sync: buckets not read from etcd (retried)", {{"error", view.error().message}});
    failing_ = true;
    return;
  }
  failing_ = false;
  std::vector<std::string> hosts;
  bool registered = false;
  for (const auto& m : view->members) {
    if (!m.error.empty() || !m.sync) continue;
    hosts.push_back(m.host_id);
    registered = registered || (m.host_id == host_id_ && m.lease == lease.id);
  }
  if (!registered) return;  // our record is not (yet, or any more) under our lease: take nothing
  const auto assigned = sync::assign_buckets(hosts);
  std::vector<const etcdstore::EtcdStore::BucketOwner*> owner(sync::kBuckets, nullptr);
  for (const auto& o : view->owners) {
    if (o.bucket < sync::kBuckets) owner[o.bucket] = &o;
  }
  std::vector<std::uint32_t> grant;
  const auto now = Clock::now();
  for (std::uint32_t b = 0; b < sync::kBuckets; ++b) {
    const auto* rec = owner[b];
    const bool ours = rec != nullptr && rec->error.empty() && rec->host_id == host_id_ && rec->lease == lease.id;
    if (!ours) gate_->revoke(b);
    if (assigned[b] != host_id_) {
      wanted_since_[b].reset();
      if (!ours) continue;
      gate_->revoke(b);  // the drain: no new work; released once the work in flight ended
      if (gate_->in_flight(b) > 0) continue;
      auto released = store_.release_bucket(b);
      if (released && *released) {
        ++given_up_;
        log::info("sync: bucket handed over", {{"bucket", static_cast<std::int64_t>(b)}, {"to", assigned[b]}});
      }
      continue;
    }
    if (!wanted_since_[b]) wanted_since_[b] = now;
    if (ours) {
      gate_->set_epoch(b, rec->epoch);
      grant.push_back(b);  // ours already (or a claim whose answer was lost)
      continue;
    }
    if (rec != nullptr) continue;  // another host's until it releases it or its lease expires
    auto claimed = store_.claim_bucket(b, host_id_, instance_);
    if (!claimed) {
      if (!failing_) log::warn("sync: a bucket claim failed (retried)", {{"error", claimed.error().message}});
      failing_ = true;
      break;
    }
    if (!claimed->has_value()) continue;  // taken meanwhile, or our fence failed: the next round sees why
    gate_->set_epoch(b, **claimed);
    grant.push_back(b);
    ++taken_;
    const double waited = std::chrono::duration<double>(Clock::now() - *wanted_since_[b]).count();
    last_takeover_s_ = waited;
    if (waited > max_takeover_s_.load()) max_takeover_s_ = waited;
  }
  gate_->grant(grant);
}

json::object SyncShards::status() const {
  json::object out{{"sharded", true}, {"buckets", static_cast<std::int64_t>(sync::kBuckets)}};
  json::array owned;
  for (const auto b : gate_->owned()) owned.emplace_back(static_cast<std::int64_t>(b));
  out["owned"] = std::move(owned);
  out["acting"] = gate_->deadline() > Clock::now();
  auto view = store_.shard_view();
  if (!view) {
    out["error"] = "etcd did not answer the bucket read: " + view.error().message;
    return out;
  }
  std::map<std::string, std::int64_t> per_host;
  for (const auto& m : view->members) {
    if (m.error.empty() && m.sync) per_host[m.host_id] = 0;
  }
  std::int64_t unowned = sync::kBuckets;
  for (const auto& o : view->owners) {
    if (!o.error.empty()) continue;
    ++per_host[o.host_id];
    --unowned;
  }
  json::object owners;
  for (const auto& [h, n] : per_host) owners[h] = n;
  out["owners"] = std::move(owners);
  out["unowned"] = unowned;
  return out;
}

void SyncShards::register_metrics(Metrics& metrics) {
  metrics.add_gauge("rootseal_sync_buckets_owned", "Sync buckets (of 256) this host acts on now.", [g = gate_] {
    double n = 0;
    for (std::uint32_t b = 0; b < sync::kBuckets; ++b) n += g->owns(b) ? 1 : 0;
    return n;
  });
  metrics.add_gauge("rootseal_sync_buckets_taken_total", "Sync buckets this host claimed in etcd since start.",
                    [this] { return static_cast<double>(taken_.load()); });
  metrics.add_gauge("rootseal_sync_buckets_handed_over_total",
                    "Sync buckets this host released to their new owner after draining them.",
                    [this] { return static_cast<double>(given_up_.load()); });
  metrics.add_gauge("rootseal_sync_buckets_lost_total",
                    "Sync buckets this host dropped because its member lease expired.",
                    [this] { return static_cast<double>(lost_.load()); });
  metrics.add_gauge("rootseal_sync_bucket_takeover_seconds",
                    "The last claim's wait from when the bucket was this host's to take until it held it.",
                    [this] { return last_takeover_s_.load(); });
  metrics.add_gauge("rootseal_sync_bucket_takeover_seconds_max", "The longest such wait since start.",
                    [this] { return max_takeover_s_.load(); });
}

}  // namespace rootseal::daemon
