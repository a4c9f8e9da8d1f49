// rootseal::sync — the engine: informers → work queue → reconcilers.
#include "rootseal/sync/engine.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <mutex>
#include <thread>

#include "engine/provider_source.hpp"
#include "engine/store_parking.hpp"
#include "kube/informer.hpp"
#include "kube/kube_client.hpp"
#include "kube/work_queue.hpp"
#include "reconcile/eso_meta.hpp"
#include "reconcile/external_secret_reconciler.hpp"
#include "reconcile/fetch_cache.hpp"
#include "reconcile/push_secret_reconciler.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/random.hpp"
#include "reconcile/rollout.hpp"

namespace rootseal::sync {

namespace asio = boost::asio;
namespace json = boost::json;
using kms::Errc;
using reconcile::ObjectPtr;
using reconcile::Resource;

namespace {

// The engine's coroutines still running: each one it co_spawns is counted
// until it has ended (its frame gone), so that a stopped engine is destroyed
// only once nothing of it can run any more (Engine::drained).
struct PendingWork {
  std::atomic<std::int64_t> running{0};
};

template <class Awaitable>
void spawn_counted(const std::shared_ptr<PendingWork>& pending, const asio::any_io_executor& ex, Awaitable work) {
  pending->running.fetch_add(1);
  // A plain completion handler (not a coroutine lambda): it runs after the
  // coroutine's frame is destroyed.
  asio::co_spawn(ex, std::move(work), [pending](const std::exception_ptr&) { pending->running.fetch_sub(1); });
}

const kube::GroupVersionResource& es_gvr() {
  static const kube::GroupVersionResource g{"external-secrets.io", "v1", "externalsecrets",
                                            "ExternalSecret",      true, false};
  return g;
}
const kube::GroupVersionResource& ss_gvr() {
  static const kube::GroupVersionResource g{"external-secrets.io", "v1", "secretstores", "SecretStore", true, false};
  return g;
}
const kube::GroupVersionResource& css_gvr() {
  static const kube::GroupVersionResource g{"external-secrets.io", "v1",  "clustersecretstores",
                                            "ClusterSecretStore",  false, false};
  return g;
}
const kube::GroupVersionResource& ps_gvr() {
  static const kube::GroupVersionResource g{"external-secrets.io", "v1alpha1", "pushsecrets",
                                            "PushSecret",          true,       false};
  return g;
}
const kube::GroupVersionResource& gvr_of(Resource r) {
  switch (r) {
    case Resource::external_secret:
      return es_gvr();
    case Resource::push_secret:
      return ps_gvr();
    case Resource::secret:
      return kube::secrets_gvr();
    case Resource::deployment:
      return kube::deployments_gvr();
    case Resource::stateful_set:
      return kube::statefulsets_gvr();
    case Resource::daemon_set:
      return kube::daemonsets_gvr();
  }
  return es_gvr();
}

std::string_view str_of(const json::value& v, std::string_view a, std::string_view b = {}, std::string_view c = {}) {
  const json::value* cur = &v;
  for (auto k : {a, b, c}) {
    if (k.empty()) break;
    if (!cur->is_object()) return {};
    cur = cur->as_object().if_contains(k);
    if (cur == nullptr) return {};
  }
  return cur->is_string() ? std::string_view(cur->as_string()) : std::string_view{};
}

// Whether a Secret's data changed between two versions. Compared in place: a
// copy would put secret values in ordinary heap memory.
bool secret_data_changed(const json::value& old, const json::value& now) {
  const auto* before = old.as_object().if_contains("data");
  const auto* after = now.as_object().if_contains("data");
  return (before == nullptr) != (after == nullptr) || (before != nullptr && *before != *after);
}

// The part of an object whose change means "reconcile now": generation,
// labels, annotations, deletion (not status, not resourceVersion).
std::string trigger_fingerprint(const json::value& o) {
  std::string f;
  const auto* md = o.is_object() ? o.as_object().if_contains("metadata") : nullptr;
  if (md == nullptr || !md->is_object()) return f;
  const auto& m = md->as_object();
  if (const auto* g = m.if_contains("generation")) f += json::serialize(*g);
  f += "|";
  if (const auto* l = m.if_contains("labels")) f += json::serialize(*l);
  f += "|";
  if (const auto* a = m.if_contains("annotations")) f += json::serialize(*a);
  f += "|";
  if (m.contains("deletionTimestamp")) f += "D";
  return f;
}

// A set of informers for one resource: one per watched namespace, or one
// cluster-wide.
class InformerSet {
 public:
  InformerSet(std::shared_ptr<kube::KubeClient> client, const kube::GroupVersionResource& gvr,
              const std::vector<std::string>& namespaces, const EngineConfig& cfg, std::string label_selector = {}) {
    const auto relisted = [log = cfg.log, what = gvr.resource, selector = label_selector](const std::string& ns,
                                                                                          std::string_view reason) {
      if (log)
        log(true, "sync: informer re-list",
            {{"resource", what}, {"namespace", ns}, {"selector", selector}, {"reason", std::string(reason)}});
    };
    if (!gvr.namespaced || namespaces.empty()) {
      kube::InformerOptions o;
      o.label_selector = label_selector;
      o.on_relist = [relisted](std::string_view reason) { relisted("", reason); };
      all_.push_back(kube::Informer::create(client, gvr, o));
    } else {
      for (const auto& ns : namespaces) {
        kube::InformerOptions o;
        o.ns = ns;
        o.label_selector = label_selector;
        o.on_relist = [relisted, ns](std::string_view reason) { relisted(ns, reason); };
        auto inf = kube::Informer::create(client, gvr, o);
        by_ns_[ns] = inf;
        all_.push_back(inf);
      }
    }
  }
  void set_handlers(const kube::InformerHandlers& h) {
    for (auto& i : all_) i->set_handlers(h);
  }
  [[nodiscard]] ObjectPtr get(std::string_view ns, std::string_view name) const {
    if (by_ns_.empty()) return all_.front()->get(ns, name);
    auto it = by_ns_.find(std::string(ns));
    return it == by_ns_.end() ? nullptr : it->second->get(ns, name);
  }
  [[nodiscard]] std::vector<ObjectPtr> list(std::string_view ns) const {
    if (by_ns_.empty()) return all_.front()->list(ns);
    auto it = by_ns_.find(std::string(ns));
    return it == by_ns_.end() ? std::vector<ObjectPtr>{} : it->second->list(ns);
  }
  [[nodiscard]] bool synced() const {
    return std::all_of(all_.begin(), all_.end(), [](const auto& i) { return i->has_synced(); });
  }
  // Objects by their Ready condition: True, False, anything else or none.
  void count_ready(std::size_t& ready, std::size_t& not_ready, std::size_t& unknown) const {
    for (const auto& i : all_) {
      for (const auto& o : i->list()) {
        std::string_view status;
        const auto* st = o->is_object() ? o->as_object().if_contains("status") : nullptr;
        const auto* conds = st && st->is_object() ? st->as_object().if_contains("conditions") : nullptr;
        if (conds && conds->is_array()) {
          for (const auto& c : conds->as_array()) {
            if (c.is_object() && str_of(c, "type") == "Ready") status = str_of(c, "status");
          }
        }
        ++(status == "True" ? ready : status == "False" ? not_ready : unknown);
      }
    }
  }
  // Every cached object, whatever its namespace.
  [[nodiscard]] std::vector<ObjectPtr> list_all() const {
    std::vector<ObjectPtr> out;
    for (const auto& i : all_) {
      auto part = i->list();
      out.insert(out.end(), part.begin(), part.end());
    }
    return out;
  }
  [[nodiscard]] std::size_t size() const {
    std::size_t n = 0;
    for (const auto& i : all_) n += i->size();
    return n;
  }
  // Re-lists (after each informer's first list) and watch reconnects.
  void add_stats(std::uint64_t& relists, std::uint64_t& reconnects) const {
    for (const auto& i : all_) {
      const auto st = i->stats();
      relists += st.lists > 0 ? st.lists - 1 : 0;
      reconnects += st.reconnects;
    }
  }
  void start(const asio::any_io_executor& ex, const std::shared_ptr<PendingWork>& pending) {
    for (auto& i : all_) spawn_counted(pending, ex, i->run());
  }
  void stop() {
    for (auto& i : all_) i->stop();
  }

 private:
  std::vector<std::shared_ptr<kube::Informer>> all_;
  std::map<std::string, std::shared_ptr<kube::Informer>> by_ns_;
};

// KubeApi over the real client and the informers.
class KubeFacade final : public reconcile::KubeApi {
 public:
  KubeFacade(std::shared_ptr<kube::KubeClient> client, asio::any_io_executor ex, const EngineConfig& cfg,
             std::shared_ptr<PendingWork> pending)
      : client_(std::move(client)),
        ex_(std::move(ex)),
        pending_(std::move(pending)),
        shards_(cfg.shards),
        es_(client_, es_gvr(), cfg.namespaces, cfg),
        ps_(client_, ps_gvr(), cfg.namespaces, cfg),
        ss_(client_, ss_gvr(), cfg.namespaces, cfg),
        css_(client_, css_gvr(), cfg.namespaces, cfg),
        secrets_(client_, kube::secrets_gvr(), cfg.namespaces, cfg, std::string(reconcile::kManagedLabel) + "=true"),
        // The other Secrets (disjoint from secrets_): PushSecret sources, so a
        // change is pushed at once, not on the next refreshInterval.
        sources_(client_, kube::secrets_gvr(), cfg.namespaces, cfg, std::string(reconcile::kManagedLabel) + "!=true") {
    if (cfg.rollout_restart) {
      deploy_.emplace(client_, kube::deployments_gvr(), cfg.namespaces, cfg);
      sts_.emplace(client_, kube::statefulsets_gvr(), cfg.namespaces, cfg);
      ds_.emplace(client_, kube::daemonsets_gvr(), cfg.namespaces, cfg);
    }
  }

  InformerSet& es() { return es_; }
  InformerSet& ps() { return ps_; }
  InformerSet& ss() { return ss_; }
  InformerSet& css() { return css_; }
  InformerSet& secrets() { return secrets_; }
  InformerSet& sources() { return sources_; }
  std::optional<InformerSet>& deploy() { return deploy_; }
  std::optional<InformerSet>& sts() { return sts_; }
  std::optional<InformerSet>& ds() { return ds_; }

  void start() {
    for (auto* s : sets()) s->start(ex_, pending_);
  }
  void stop() {
    for (auto* s : sets()) s->stop();
  }
  [[nodiscard]] bool synced() {
    for (auto* s : sets()) {
      if (!s->synced()) return false;
    }
    return true;
  }
  std::vector<InformerSet*> sets() {
    std::vector<InformerSet*> v{&es_, &ps_, &ss_, &css_, &secrets_, &sources_};
    if (deploy_) v.insert(v.end(), {&*deploy_, &*sts_, &*ds_});
    return v;
  }
  std::uint64_t events_failed() const { return events_failed_.load(); }

  ObjectPtr external_secret(std::string_view ns, std::string_view name) override { return es_.get(ns, name); }
  ObjectPtr push_secret(std::string_view ns, std::string_view name) override { return ps_.get(ns, name); }
  ObjectPtr store(model::StoreKind kind, std::string_view ns, std::string_view name) override {
    return kind == model::StoreKind::cluster_secret_store ? css_.get("", name) : ss_.get(ns, name);
  }
  std::vector<std::pair<Resource, ObjectPtr>> workloads(std::string_view ns) override {
    std::vector<std::pair<Resource, ObjectPtr>> out;
    if (!deploy_) return out;
    for (auto& o : deploy_->list(ns)) out.emplace_back(Resource::deployment, o);
    for (auto& o : sts_->list(ns)) out.emplace_back(Resource::stateful_set, o);
    for (auto& o : ds_->list(ns)) out.emplace_back(Resource::daemon_set, o);
    return out;
  }
  Task<ObjectPtr> secret(std::string_view ns, std::string_view name) override {
    if (auto o = secrets_.get(ns, name)) co_return o;
    if (auto o = sources_.get(ns, name)) co_return o;
    co_return co_await get_or_null(kube::secrets_gvr(), ns, name);  // (string_view args: trivial)
  }
  // A live GET; nullptr when the object does not exist.
  Task<ObjectPtr> get_or_null(const kube::GroupVersionResource& gvr, std::string_view ns, std::string_view name) {
    auto r = co_await client_->get(gvr, ns, name);
    if (!r) {
      if (r.error().is_not_found()) co_return ObjectPtr{};
      co_return std::unexpected(r.error().to_error());
    }
    co_return std::make_shared<const json::value>(std::move(*r));
  }
  Task<ObjectPtr> config_map(std::string_view ns, std::string_view name) override {
    co_return co_await get_or_null(kube::configmaps_gvr(), ns, name);
  }
  Task<model::StringMap> namespace_labels(std::string_view ns) override {
    auto r = co_await client_->get(kube::namespaces_gvr(), "", ns);
    if (!r) co_return std::unexpected(r.error().to_error());
    model::StringMap out;
    const auto* md = r->as_object().if_contains("metadata");
    if (md != nullptr && md->is_object()) {
      if (const auto* l = md->as_object().if_contains("labels"); l != nullptr && l->is_object()) {
        for (const auto& kv : l->as_object()) {
          if (kv.value().is_string()) out.emplace(std::string(kv.key()), std::string(kv.value().as_string()));
        }
      }
    }
    co_return out;
  }
  Task<ObjectPtr> service_account(std::string_view ns, std::string_view name) override {
    co_return co_await get_or_null(kube::serviceaccounts_gvr(), ns, name);
  }
  Task<kube::ServiceAccountToken> create_token(std::string_view ns, std::string_view name,
                                               std::span<const std::string> audiences,
                                               std::int64_t expiration_seconds) override {
    const json::value body = kube::token_request_body(audiences, expiration_seconds);
    auto r = co_await client_->create_subresource(kube::serviceaccounts_gvr(), ns, name, "token", body, true);
    if (!r) co_return std::unexpected(r.error().to_error());
    co_return kube::parse_token_request_answer(*r);
  }
  bool may_write(std::string_view ns) override { return shards_ == nullptr || shards_->acts_on(ns); }
  std::int64_t write_epoch(std::string_view ns) override { return shards_ == nullptr ? 0 : shards_->epoch(ns); }
  // The refusal of a write for a namespace whose bucket this host lost.
  static kms::Error not_owned(std::string_view ns) {
    return kms::Error(Errc::conflict, "sync: the bucket of namespace " + std::string(ns) +
                                          " is no longer this host's: its new owner writes it");
  }

  Task<ObjectPtr> create_secret(std::string_view ns, const json::value& secret, std::string_view fm) override {
    if (!may_write(ns)) co_return std::unexpected(not_owned(ns));
    kube::WriteOptions o;
    o.field_manager = fm;  // a view of the caller's named string, alive across the call
    auto r = co_await client_->create(kube::secrets_gvr(), ns, secret, o);
    if (!r) co_return std::unexpected(r.error().to_error());
    co_return std::make_shared<const json::value>(std::move(*r));
  }
  Task<ObjectPtr> update_secret(std::string_view ns, const json::value& secret, std::string_view fm) override {
    if (!may_write(ns)) co_return std::unexpected(not_owned(ns));
    kube::WriteOptions o;
    o.field_manager = fm;  // a view of the caller's named string, alive across the call
    auto r = co_await client_->update(kube::secrets_gvr(), ns, secret, o);
    if (!r) co_return std::unexpected(r.error().to_error());
    co_return std::make_shared<const json::value>(std::move(*r));
  }
  Task<void> delete_secret(std::string_view ns, std::string_view name, std::string_view uid) override {
    if (!may_write(ns)) co_return std::unexpected(not_owned(ns));
    kube::DeleteOptions o;
    o.precondition_uid = uid;  // a view of the caller's Secret object, alive across the call
    auto r = co_await client_->remove(kube::secrets_gvr(), ns, name, o);
    if (!r) co_return std::unexpected(r.error().to_error());
    co_return kms::Result<void>{};
  }
  Task<void> patch_status(Resource r, std::string_view ns, std::string_view name, const json::value& status) override {
    if (!may_write(ns)) co_return std::unexpected(not_owned(ns));
    json::object p;
    p["status"] = status;
    const json::value body(std::move(p));
    const kube::WriteOptions opts;
    auto res = co_await client_->patch(gvr_of(r), ns, name, kube::PatchType::merge, body, opts, "status");
    if (!res) co_return std::unexpected(res.error().to_error());
    co_return kms::Result<void>{};
  }
  Task<void> patch(Resource r, std::string_view ns, std::string_view name, const json::value& merge_patch) override {
    if (!may_write(ns)) co_return std::unexpected(not_owned(ns));
    const kube::WriteOptions opts;
    auto res = co_await client_->patch(gvr_of(r), ns, name, kube::PatchType::merge, merge_patch, opts);
    if (!res) co_return std::unexpected(res.error().to_error());
    co_return kms::Result<void>{};
  }
  void event(Resource r, const model::ObjectMeta& about, bool warning, std::string_view reason,
             std::string message) override {
    if (!may_write(about.namespace_)) return;
    unsigned char rnd[6];
    kms::random_public_bytes(rnd);  // checked: throws rather than name an Event with unset bytes
    const std::string suffix = kms::hex_encode(rnd);
    const std::string now = reconcile::rfc3339(std::chrono::system_clock::now());
    json::object ev;
    ev["apiVersion"] = "v1";
    ev["kind"] = "Event";
    ev["metadata"] = json::object{{"name", about.name + "." + suffix}, {"namespace", about.namespace_}};
    ev["involvedObject"] = json::object{{"apiVersion", gvr_of(r).api_version()},
                                        {"kind", reconcile::to_string(r)},
                                        {"name", about.name},
                                        {"namespace", about.namespace_},
                                        {"uid", about.uid}};
    ev["reason"] = reason;
    ev["message"] = message;
    ev["type"] = warning ? "Warning" : "Normal";
    ev["source"] = json::object{{"component", "rootseal-sync"}};
    ev["reportingComponent"] = "rootseal-sync";
    ev["firstTimestamp"] = now;
    ev["lastTimestamp"] = now;
    ev["count"] = 1;
    // A plain coroutine with by-value parameters (not a capturing lambda:
    // g++ 12 mishandles capturing coroutine lambdas).
    spawn_counted(pending_, ex_, post_event(client_, about.namespace_, json::value(std::move(ev)), &events_failed_));
  }

  static asio::awaitable<void> post_event(std::shared_ptr<kube::KubeClient> client, std::string ns, json::value body,
                                          std::atomic<std::uint64_t>* failed) {
    const kube::WriteOptions opts;  // named: no non-trivial temporaries in a co_await (g++ 12)
    auto res = co_await client->create(kube::events_gvr(), ns, body, opts);
    if (!res) ++*failed;
  }

 private:
  std::shared_ptr<kube::KubeClient> client_;
  asio::any_io_executor ex_;
  std::shared_ptr<PendingWork> pending_;
  std::shared_ptr<ShardGate> shards_;
  InformerSet es_, ps_, ss_, css_, secrets_, sources_;
  std::optional<InformerSet> deploy_, sts_, ds_;
  std::atomic<std::uint64_t> events_failed_{0};
};

class EngineImpl final : public Engine {
 public:
  EngineImpl(asio::any_io_executor ex, EngineConfig cfg, std::shared_ptr<kube::KubeClient> client)
      : ex_(ex),
        cfg_(std::move(cfg)),
        client_(client),
        kube_(client, ex, cfg_, pending_),
        providers_(
            kube_, ProviderFactory(ex), cfg_.stores, cfg_.credentials_directory, std::chrono::seconds(300),
            StoreHealthOptions{cfg_.store_backoff_base, cfg_.store_backoff_max, StoreHealthOptions{}.wait_budget}),
        cache_(cfg_.refresh_window),
        es_rec_(kube_, providers_, cache_,
                reconcile::ReconcilerOptions{cfg_.refresh_window, [] { return std::chrono::system_clock::now(); }}),
        push_rec_(kube_, providers_, [] { return std::chrono::system_clock::now(); }),
        rollout_(kube_, [] { return std::chrono::system_clock::now(); }) {
    kube::WorkQueueOptions qo;
    qo.base_delay = cfg_.retry_base;
    qo.max_delay = cfg_.retry_max;
    qo.workers = cfg_.concurrency;
    qo.qps = cfg_.queue_qps;
    qo.burst = cfg_.queue_burst;
    queue_ = kube::WorkQueue::create(ex, qo);
    providers_.aws_endpoint(cfg_.aws_endpoint);
    providers_.azure_authority_host(cfg_.azure_authority_host);
    providers_.gcp_endpoints(cfg_.gcp_endpoint, cfg_.gcp_sts_endpoint, cfg_.gcp_iam_endpoint);
    providers_.on_recovered([this](const std::string& store) { store_recovered(store); });
    providers_.on_backing_off([log = cfg_.log](const std::string& store, const std::string& reason) {
      if (log) log(true, "sync: store backing off after errors", {{"store", store}, {"reason", reason}});
    });
    es_rec_.on_secret_changed(
        [this](const std::string& ns, const std::string& secret) { enqueue_workloads(ns, secret); });
    wire();
  }

  void start() override {
    if (cfg_.shards) {
      // Through the relay, which stop() empties: a callback the gate copied
      // before stop() cannot reach this engine after it (the gate outlives
      // engines: a reload gives it to the next one, which registers its own).
      {
        std::lock_guard lock(gained_->mu);
        gained_->enqueue = [this](const std::vector<std::uint32_t>& buckets) { enqueue_buckets(buckets); };
      }
      cfg_.shards->on_gained([relay = gained_](const std::vector<std::uint32_t>& buckets) {
        std::lock_guard lock(relay->mu);
        if (relay->enqueue) relay->enqueue(buckets);
      });
    }
    kube_.start();
    spawn_counted(pending_, ex_, run_workers(queue_));
  }

  // Workers start once every cache is filled: no reconcile reads a half-listed world.
  asio::awaitable<void> run_workers(std::shared_ptr<kube::WorkQueue> queue) {
    asio::steady_timer t(ex_);
    while (!stopped_ && !kube_.synced()) {
      t.expires_after(std::chrono::milliseconds(50));
      co_await t.async_wait(asio::use_awaitable);
    }
    if (stopped_) co_return;
    synced_ = true;
    const kube::WorkQueue::Handler handler = [this](const kube::QueueItem& item) { return handle(item); };
    co_await queue->run(handler);
  }

  void stop() override {
    if (stopped_.exchange(true)) return;
    {
      std::lock_guard lock(gained_->mu);
      gained_->enqueue = nullptr;
    }
    kube_.stop();
    queue_->shut_down();
  }

  [[nodiscard]] bool drained() const override { return stopped_.load() && pending_->running.load() == 0; }

  [[nodiscard]] EngineStats stats() const override {
    EngineStats s;
    const auto& rs = es_rec_.stats();
    s.reconciles = rs.reconciles.load();
    const auto cs = cache_.stats();
    s.provider_calls = cs.calls;
    s.fetch_dedup_hits = cs.hits + cs.joined;
    s.secret_writes = rs.secret_writes.load() + push_rec_.stats().writes.load();
    s.status_writes = rs.status_writes.load() + push_rec_.stats().status_writes.load();
    s.errors = rs.errors.load() + push_rec_.stats().errors.load();
    s.conflicts = rs.conflicts.load();
    const auto& ps = push_rec_.stats();
    s.push_reconciles = ps.reconciles.load();
    s.push_writes = ps.writes.load();
    s.push_unchanged = ps.unchanged.load();
    s.push_removals = ps.removals.load();
    s.push_errors = ps.errors.load();
    s.push_stale_refused = ps.stale_refused.load();
    s.restarts = rollout_.restarts();
    s.kube_requests = client_->stats().requests;
    const auto qs = queue_->stats();
    s.queue_ready = qs.ready_fast + qs.ready_normal;
    s.managed_secrets = const_cast<KubeFacade&>(kube_).secrets().size();
    s.synced = synced_.load();
    s.shard_deferred = shard_deferred_.load();
    for (const auto* set : const_cast<KubeFacade&>(kube_).sets()) set->add_stats(s.relists, s.watch_reconnects);
    for (const auto& h : store_health()) s.parked += h.parked;
    return s;
  }

  [[nodiscard]] ObjectStats object_stats() const override {
    ObjectStats s;
    auto& kube = const_cast<KubeFacade&>(kube_);
    kube.es().count_ready(s.es_ready, s.es_not_ready, s.es_unknown);
    kube.ps().count_ready(s.ps_ready, s.ps_not_ready, s.ps_unknown);
    std::function<bool(std::string_view)> counted;  // sharded: the ExternalSecrets of this host's buckets
    if (cfg_.shards) counted = [g = cfg_.shards](std::string_view ns) { return g->acts_on(ns); };
    s.es_stale =
        es_rec_.stale(std::chrono::system_clock::now(), cfg_.refresh_window + std::chrono::minutes(1), counted);
    return s;
  }

  [[nodiscard]] std::vector<StoreHealthStats> store_health() const override {
    std::vector<StoreHealthStats> out;
    const auto now_steady = StoreHealth::Clock::now();
    const auto now_wall = std::chrono::system_clock::now();
    for (const auto& [id, snap] : providers_.health_snapshots()) {
      StoreHealthStats h;
      h.store = id;
      h.backing_off = snap.backing_off;
      if (snap.backing_off) {
        const auto wall =
            now_wall + std::chrono::duration_cast<std::chrono::system_clock::duration>(snap.next_attempt - now_steady);
        h.next_attempt_unix = std::chrono::duration<double>(wall.time_since_epoch()).count();
      }
      h.refused = snap.refused;
      h.failures = snap.failures;
      h.recoveries = snap.recoveries;
      h.parked = parking_.parked(id);
      out.push_back(std::move(h));
    }
    return out;
  }

  ~EngineImpl() override { stop(); }

 private:
  static std::string key(std::string_view prefix, std::string_view ns, std::string_view name) {
    std::string k(prefix);
    k.push_back('|');
    k.append(ns);
    k.push_back('/');
    k.append(name);
    return k;
  }

  // Buckets this host gained: their ExternalSecrets and PushSecrets are
  // queued at once (the fast lane: a takeover is a host's loss). Objects
  // cached later are queued by their informer events as usual.
  void enqueue_buckets(const std::vector<std::uint32_t>& buckets) {
    std::vector<bool> gained(kBuckets, false);
    for (const auto b : buckets) gained[b] = true;
    auto add = [&](const InformerSet& set, std::string_view prefix) {
      for (const auto& o : set.list_all()) {
        const auto ns = str_of(*o, "metadata", "namespace");
        if (gained[namespace_bucket(ns)])
          queue_->add(key(prefix, ns, str_of(*o, "metadata", "name")), kube::Lane::fast);
      }
    };
    add(kube_.es(), "es");
    add(kube_.ps(), "ps");
  }

  void enqueue_workloads(const std::string& ns, const std::string& secret) {
    for (const auto& [kind, name] : rollout_.referencing(ns, secret)) {
      queue_->add(key("wl:" + std::string(reconcile::to_string(kind)), ns, name), kube::Lane::fast);
    }
  }

  void enqueue_store_users(const json::value& store, bool cluster) {
    const std::string name(str_of(store, "metadata", "name"));
    const std::string ns(str_of(store, "metadata", "namespace"));
    const std::string kind = cluster ? "ClusterSecretStore" : "SecretStore";
    for (const auto& es : cluster ? kube_.es().list("") : kube_.es().list(ns)) {
      const auto ref_kind = str_of(*es, "spec", "secretStoreRef", "kind");
      if (str_of(*es, "spec", "secretStoreRef", "name") == name &&
          (ref_kind.empty() ? "SecretStore" : ref_kind) == kind) {
        queue_->add(key("es", str_of(*es, "metadata", "namespace"), str_of(*es, "metadata", "name")), kube::Lane::fast);
      }
    }
  }

  // Every event source of the queue: one informer handler set per watched kind.
  void wire() {
    wire_resources();
    wire_stores();
    wire_secrets();
    if (kube_.deploy()) wire_workloads();
  }

  // ExternalSecrets and PushSecrets: queued when created, when what triggers
  // a reconcile changed (see trigger_fingerprint), and when deleted.
  void wire_resources() {
    auto es_key = [](const ObjectPtr& o) {
      return key("es", str_of(*o, "metadata", "namespace"), str_of(*o, "metadata", "name"));
    };
    kube_.es().set_handlers(
        kube::InformerHandlers{[this, es_key](const ObjectPtr& o) { queue_->add(es_key(o), kube::Lane::fast); },
                               [this, es_key](const ObjectPtr& old, const ObjectPtr& now) {
                                 if (trigger_fingerprint(*old) != trigger_fingerprint(*now))
                                   queue_->add(es_key(now), kube::Lane::fast);
                               },
                               [this, es_key](const ObjectPtr& o) {
                                 if (!cfg_.shards || cfg_.shards->acts_on(str_of(*o, "metadata", "namespace"))) {
                                   spawn_counted(pending_, ex_, es_rec_.deleted(o));
                                 }
                                 queue_->add(es_key(o), kube::Lane::fast);
                               },
                               {}});
    auto ps_key = [](const ObjectPtr& o) {
      return key("ps", str_of(*o, "metadata", "namespace"), str_of(*o, "metadata", "name"));
    };
    kube_.ps().set_handlers(
        kube::InformerHandlers{[this, ps_key](const ObjectPtr& o) { queue_->add(ps_key(o), kube::Lane::fast); },
                               [this, ps_key](const ObjectPtr& old, const ObjectPtr& now) {
                                 if (trigger_fingerprint(*old) != trigger_fingerprint(*now))
                                   queue_->add(ps_key(now), kube::Lane::fast);
                               },
                               [this, ps_key](const ObjectPtr& o) { queue_->add(ps_key(o), kube::Lane::fast); },
                               {}});
  }

  // SecretStores and ClusterSecretStores: an edited store queues its users.
  void wire_stores() {
    // A deleted store: its health is dropped and what waited for it is queued
    // (it will report the missing store).
    auto store_gone = [this](const ObjectPtr& o, bool cluster) {
      const std::string id = std::string(cluster ? "ClusterSecretStore/" : "SecretStore/") +
                             std::string(cluster ? std::string_view{} : str_of(*o, "metadata", "namespace")) + "/" +
                             std::string(str_of(*o, "metadata", "name"));
      providers_.forget_health(id);
      for (const auto& k : parking_.release(id)) queue_->add(k, kube::Lane::normal);
    };
    kube_.ss().set_handlers(
        kube::InformerHandlers{{},
                               [this](const ObjectPtr&, const ObjectPtr& now) { enqueue_store_users(*now, false); },
                               [store_gone](const ObjectPtr& o) { store_gone(o, false); },
                               {}});
    kube_.css().set_handlers(
        kube::InformerHandlers{{},
                               [this](const ObjectPtr&, const ObjectPtr& now) { enqueue_store_users(*now, true); },
                               [store_gone](const ObjectPtr& o) { store_gone(o, true); },
                               {}});
  }

  // Managed and unmanaged (source) Secrets.
  void wire_secrets() {
    // Managed Secrets: an edit or a deletion brings their writers back at once.
    auto secret_event = [this](const ObjectPtr& o, bool data_changed) {
      const std::string ns(str_of(*o, "metadata", "namespace"));
      const std::string name(str_of(*o, "metadata", "name"));
      for (const auto& w : es_rec_.writers_of(ns, name)) queue_->add("es|" + w, kube::Lane::fast);
      for (const auto& w : push_rec_.readers_of(ns, name)) queue_->add("ps|" + w, kube::Lane::fast);
      if (data_changed) enqueue_workloads(ns, name);
    };
    kube_.secrets().set_handlers(
        kube::InformerHandlers{[this, secret_event](const ObjectPtr& o) { secret_event(o, synced_.load()); },
                               [secret_event](const ObjectPtr& old, const ObjectPtr& now) {
                                 secret_event(now, secret_data_changed(*old, *now));
                               },
                               [secret_event](const ObjectPtr& o) { secret_event(o, false); },
                               {}});
    // Unmanaged Secrets: only PushSecrets reading them care (no rollout
    // restarts for Secrets rootseal does not manage).
    auto source_event = [this](const ObjectPtr& o) {
      const std::string ns(str_of(*o, "metadata", "namespace"));
      const std::string name(str_of(*o, "metadata", "name"));
      for (const auto& w : push_rec_.readers_of(ns, name)) queue_->add("ps|" + w, kube::Lane::fast);
    };
    kube_.sources().set_handlers(kube::InformerHandlers{[source_event](const ObjectPtr& o) { source_event(o); },
                                                        [source_event](const ObjectPtr& old, const ObjectPtr& now) {
                                                          if (secret_data_changed(*old, *now)) source_event(now);
                                                        },
                                                        [source_event](const ObjectPtr& o) { source_event(o); },
                                                        {}});
  }

  // Deployments, StatefulSets and DaemonSets (when rollouts are on): queued
  // when they carry, or change, the reload annotation.
  void wire_workloads() {
    auto wl = [this](Resource kind) {
      auto k = [kind](const ObjectPtr& o) {
        return key("wl:" + std::string(reconcile::to_string(kind)), str_of(*o, "metadata", "namespace"),
                   str_of(*o, "metadata", "name"));
      };
      return kube::InformerHandlers{[this, k](const ObjectPtr& o) {
                                      if (!str_of(*o, "metadata", "annotations", reconcile::kReloadAnnotation).empty())
                                        queue_->add(k(o), kube::Lane::normal);
                                    },
                                    [this, k](const ObjectPtr& old, const ObjectPtr& now) {
                                      if (str_of(*old, "metadata", "annotations", reconcile::kReloadAnnotation) !=
                                          str_of(*now, "metadata", "annotations", reconcile::kReloadAnnotation)) {
                                        queue_->add(k(now), kube::Lane::normal);
                                      }
                                    },
                                    {},
                                    {}};
    };
    kube_.deploy()->set_handlers(wl(Resource::deployment));
    kube_.sts()->set_handlers(wl(Resource::stateful_set));
    kube_.ds()->set_handlers(wl(Resource::daemon_set));
  }

  static kube::WorkOutcome outcome(const reconcile::ReconcileResult& r) {
    switch (r.kind) {
      case reconcile::ReconcileResult::Kind::done:
        return kube::WorkOutcome::success();
      case reconcile::ReconcileResult::Kind::retry:
        return kube::WorkOutcome::retry();
      case reconcile::ReconcileResult::Kind::requeue_now:
        return kube::WorkOutcome::requeue_after(kube::Duration(0), kube::Lane::fast);
      case reconcile::ReconcileResult::Kind::requeue_after:
        return kube::WorkOutcome::requeue_after(std::chrono::duration_cast<kube::Duration>(r.after),
                                                kube::Lane::normal);
    }
    return kube::WorkOutcome::success();
  }

  // A reconcile that asks for a retry while one of its stores backs off is
  // parked under that store (no per-key retry: the store's recovery re-queues
  // it with the others); the store's probe is queued for when its backoff ends.
  kube::WorkOutcome after_store_call(const std::string& key, const ObjectPtr& object,
                                     const reconcile::ReconcileResult& r) {
    if (r.kind == reconcile::ReconcileResult::Kind::retry && object) {
      for (const auto& store : engine::store_ids_of(*object)) {
        auto health = providers_.find_health(store);
        if (!health || !health->backing_off()) continue;
        const auto parked = parking_.park(store, key, *health);
        if (!parked.parked) continue;
        if (parked.probe_after) queue_->add_after(key, *parked.probe_after, kube::Lane::normal);
        return kube::WorkOutcome::success();
      }
    }
    for (const auto& store : parking_.probed_by(key)) {
      auto health = providers_.find_health(store);
      if (!health) continue;
      if (auto next = parking_.probe_done(store, key, *health))
        queue_->add_after(next->first, next->second, kube::Lane::normal);
    }
    return outcome(r);
  }

  // A store answers again: everything parked under it is queued together.
  void store_recovered(const std::string& store) {
    const auto keys = parking_.release(store);
    for (const auto& k : keys) queue_->add(k, kube::Lane::normal);
    if (cfg_.log)
      cfg_.log(false, "sync: store answers again", {{"store", store}, {"requeued", std::to_string(keys.size())}});
  }

  asio::awaitable<kube::WorkOutcome> handle(const kube::QueueItem& item) {
    const auto bar = item.key.find('|');
    if (bar == std::string::npos) co_return kube::WorkOutcome::success();
    const std::string prefix = item.key.substr(0, bar);
    const std::string rest = item.key.substr(bar + 1);
    const auto slash = rest.find('/');
    const std::string ns = rest.substr(0, slash);
    const std::string name = slash == std::string::npos ? std::string() : rest.substr(slash + 1);
    // Sharded: only the namespaces of this host's buckets; the work is
    // counted so that a bucket given up waits for it (the drain).
    // A bucket still granted but past the lease deadline (a keepalive late)
    // is tried again soon; one not ours is the owner's (re-queued here when
    // granted, see enqueue_buckets).
    auto work = cfg_.shards ? cfg_.shards->enter(ns) : std::optional<ShardGate::Work>{};
    if (cfg_.shards && !work) {
      if (!cfg_.shards->granted(namespace_bucket(ns))) co_return kube::WorkOutcome::success();
      shard_deferred_.fetch_add(1);
      co_return kube::WorkOutcome::requeue_after(std::chrono::seconds(1), kube::Lane::normal);
    }
    if (prefix == "es")
      co_return after_store_call(item.key, kube_.es().get(ns, name), co_await es_rec_.reconcile(ns, name));
    if (prefix == "ps")
      co_return after_store_call(item.key, kube_.ps().get(ns, name), co_await push_rec_.reconcile(ns, name));
    if (prefix == "wl:Deployment") co_return outcome(co_await rollout_.reconcile(Resource::deployment, ns, name));
    if (prefix == "wl:StatefulSet") co_return outcome(co_await rollout_.reconcile(Resource::stateful_set, ns, name));
    if (prefix == "wl:DaemonSet") co_return outcome(co_await rollout_.reconcile(Resource::daemon_set, ns, name));
    co_return kube::WorkOutcome::success();
  }

  // First: the facade's informers are counted in it.
  std::shared_ptr<PendingWork> pending_ = std::make_shared<PendingWork>();
  // The gate's on_gained callback goes through this (see start()).
  struct GainedRelay {
    std::mutex mu;
    std::function<void(const std::vector<std::uint32_t>&)> enqueue;
  };
  std::shared_ptr<GainedRelay> gained_ = std::make_shared<GainedRelay>();
  asio::any_io_executor ex_;
  EngineConfig cfg_;
  std::shared_ptr<kube::KubeClient> client_;
  KubeFacade kube_;
  engine::EngineProviders providers_;
  engine::ParkingLot parking_;
  reconcile::FetchCache cache_;
  reconcile::ExternalSecretReconciler es_rec_;
  reconcile::PushSecretReconciler push_rec_;
  reconcile::RolloutReconciler rollout_;
  std::shared_ptr<kube::WorkQueue> queue_;
  std::atomic<bool> stopped_{false};
  std::atomic<bool> synced_{false};
  std::atomic<std::uint64_t> shard_deferred_{0};  // EngineStats::shard_deferred
};

}  // namespace

kms::Result<std::unique_ptr<Engine>> Engine::create(asio::any_io_executor ex, EngineConfig config) {
  kms::Result<kube::KubeConfig> kc = config.kubeconfig.empty()
                                         ? kube::KubeConfig::in_cluster()
                                         : kube::KubeConfig::from_file(config.kubeconfig, config.context);
  if (!kc) return std::unexpected(kc.error());
  if (config.concurrency == 0) config.concurrency = 4 * std::max(1u, std::thread::hardware_concurrency());
  kube::ClientOptions co;
  co.qps = config.kube_qps;
  co.burst = config.kube_burst;
  co.field_manager = "rootseal-sync";
  auto client = kube::KubeClient::create(ex, std::move(*kc), co);
  if (!client) return std::unexpected(client.error());
  return std::unique_ptr<Engine>(new EngineImpl(ex, std::move(config), std::move(*client)));
}

}  // namespace rootseal::sync
