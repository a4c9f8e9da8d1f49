#include "kube/informer.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <random>

#include "kube/secure_json.hpp"

namespace rootseal::sync::kube {

namespace {

// [0, 1)
double jitter_fraction() {
  thread_local std::minstd_rand rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

constexpr auto kHealthyWatch = std::chrono::seconds(10);  // a watch that lived this long resets the backoff

}  // namespace

std::shared_ptr<Informer> Informer::create(std::shared_ptr<KubeClient> client, GroupVersionResource gvr,
                                           InformerOptions options, InformerHandlers handlers) {
  return std::shared_ptr<Informer>(
      new Informer(std::move(client), std::move(gvr), std::move(options), std::move(handlers)));
}

Informer::Informer(std::shared_ptr<KubeClient> client, GroupVersionResource gvr, InformerOptions options,
                   InformerHandlers handlers)
    : client_(std::move(client)), gvr_(std::move(gvr)), options_(std::move(options)), handlers_(std::move(handlers)) {}

Informer::~Informer() = default;

void Informer::set_handlers(InformerHandlers handlers) { handlers_ = std::move(handlers); }

void Informer::prepare(json::value& object) const {
  if (options_.drop_managed_fields) {
    if (auto* o = object.if_object()) {
      if (auto* m = o->if_contains("metadata"); m != nullptr && m->is_object()) m->as_object().erase("managedFields");
    }
  }
  if (options_.transform) options_.transform(object);
}

ObjectPtr Informer::get(std::string_view ns, std::string_view name) const { return get(object_key(ns, name)); }

ObjectPtr Informer::get(std::string_view key) const {
  std::lock_guard lock(mu_);
  const auto it = cache_.find(key);
  return it == cache_.end() ? nullptr : it->second;
}

std::vector<ObjectPtr> Informer::list(std::string_view ns) const {
  std::vector<ObjectPtr> out;
  std::lock_guard lock(mu_);
  if (ns.empty()) {
    out.reserve(cache_.size());
    for (const auto& [k, v] : cache_) out.push_back(v);
    return out;
  }
  const std::string prefix = std::string(ns) + "/";
  for (auto it = cache_.lower_bound(prefix); it != cache_.end() && it->first.starts_with(prefix); ++it)
    out.push_back(it->second);
  return out;
}

std::size_t Informer::size() const {
  std::lock_guard lock(mu_);
  return cache_.size();
}

std::string Informer::last_resource_version() const {
  std::lock_guard lock(mu_);
  return resource_version_;
}

InformerStats Informer::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void Informer::stop() {
  stopped_.store(true, std::memory_order_release);
  std::lock_guard lock(stream_mu_);
  if (stream_) stream_->cancel();
  if (stop_ch_) stop_ch_->try_send(boost::system::error_code{});
}

asio::awaitable<void> Informer::sleep(std::chrono::milliseconds d) {
  std::shared_ptr<StopChannel> ch;
  {
    std::lock_guard lock(stream_mu_);
    ch = stop_ch_;
  }
  if (stopped_.load(std::memory_order_acquire) || !ch) co_return;
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  boost::system::error_code ec1, ec2;
  co_await (t.async_wait(asio::redirect_error(asio::use_awaitable, ec1)) ||
            ch->async_receive(asio::redirect_error(asio::use_awaitable, ec2)));
}

asio::awaitable<KubeResult<void>> Informer::relist() {
  ListOptions lo;
  lo.label_selector = options_.label_selector;
  lo.field_selector = options_.field_selector;
  lo.page_size = options_.page_size;
  auto r = co_await client_->list(gvr_, options_.ns, lo);
  if (!r) co_return std::unexpected(std::move(r).error());

  std::map<std::string, ObjectPtr, std::less<>> fresh;
  for (auto& item : r->items) {
    // Each cached object gets its own storage, so dropping one frees it.
    json::value v = gvr_.sensitive ? secure_json_copy(item) : json::value(std::move(item));
    prepare(v);
    std::string key = object_key(v);
    fresh.emplace(std::move(key), std::make_shared<const json::value>(std::move(v)));
  }
  r->items.clear();

  std::vector<ObjectPtr> added, deleted;
  std::vector<std::pair<ObjectPtr, ObjectPtr>> updated;
  {
    std::lock_guard lock(mu_);
    for (const auto& [k, v] : fresh) {
      const auto it = cache_.find(k);
      if (it == cache_.end()) {
        added.push_back(v);
      } else if (resource_version_of(*it->second) != resource_version_of(*v)) {
        updated.emplace_back(it->second, v);
      }
    }
    for (const auto& [k, v] : cache_)
      if (!fresh.contains(k)) deleted.push_back(v);
    cache_.swap(fresh);
    resource_version_ = r->resource_version;
    ++stats_.lists;
  }
  fresh.clear();  // the old cache
  for (const auto& o : added)
    if (handlers_.on_add) handlers_.on_add(o);
  for (const auto& [o, n] : updated)
    if (handlers_.on_update) handlers_.on_update(o, n);
  for (const auto& o : deleted)
    if (handlers_.on_delete) handlers_.on_delete(o);
  if (!synced_.exchange(true, std::memory_order_acq_rel) && handlers_.on_synced) handlers_.on_synced();
  co_return KubeResult<void>{};
}

void Informer::apply(WatchEventType type, json::value object) {
  const std::string rv(resource_version_of(object));
  if (type == WatchEventType::bookmark) {
    std::lock_guard lock(mu_);
    if (!rv.empty()) resource_version_ = rv;
    ++stats_.bookmarks;
    return;
  }
  prepare(object);
  std::string key = object_key(object);
  auto ptr = std::make_shared<const json::value>(std::move(object));
  ObjectPtr old;
  {
    std::lock_guard lock(mu_);
    if (type == WatchEventType::deleted) {
      if (const auto it = cache_.find(key); it != cache_.end()) {
        old = std::move(it->second);
        cache_.erase(it);
      }
    } else {
      auto& slot = cache_[key];
      old = std::move(slot);
      slot = ptr;
    }
    if (!rv.empty()) resource_version_ = rv;
    ++stats_.events;
  }
  if (type == WatchEventType::deleted) {
    if (handlers_.on_delete) handlers_.on_delete(old ? old : ptr);
  } else if (old) {
    if (handlers_.on_update) handlers_.on_update(old, ptr);
  } else if (handlers_.on_add) {
    handlers_.on_add(ptr);
  }
}

asio::awaitable<KubeResult<void>> Informer::watch_once() {
  const std::string rv = last_resource_version();
  WatchOptions wo;
  wo.resource_version = rv;
  wo.label_selector = options_.label_selector;
  wo.field_selector = options_.field_selector;
  wo.allow_bookmarks = true;
  // Spread watch renewals over [t, 1.5t) so informers started together do
  // not reconnect together (client-go uses [t, 2t)).
  const auto t = options_.watch_timeout.count();
  wo.timeout = std::chrono::seconds(t + static_cast<std::int64_t>(static_cast<double>(t) * 0.5 * jitter_fraction()));
  net::StreamControl control;
  {
    std::lock_guard lock(stream_mu_);
    if (stopped_.load(std::memory_order_acquire)) co_return KubeResult<void>{};
    stream_ = control;
  }
  {
    std::lock_guard lock(mu_);
    ++stats_.watches;
  }
  delivered_ = false;
  WatchHandler on_event = [this](WatchEvent&& ev) {
    if (stopped_.load(std::memory_order_acquire)) return false;
    delivered_ = true;
    apply(ev.type, std::move(ev.object));
    return true;
  };
  auto r = co_await client_->watch(gvr_, options_.ns, wo, std::move(on_event), &control);
  {
    std::lock_guard lock(stream_mu_);
    stream_.reset();
  }
  co_return r;
}

asio::awaitable<void> Informer::run() {
  auto self = shared_from_this();
  {
    std::lock_guard lock(stream_mu_);
    if (!stop_ch_) stop_ch_ = std::make_shared<StopChannel>(co_await asio::this_coro::executor, 1);
  }
  auto backoff = options_.backoff_initial;
  const auto next_backoff = [&] {
    // Exponential with up to 50 % jitter, capped.
    const auto base = backoff;
    backoff = std::min(options_.backoff_max, backoff * 2);
    return base + std::chrono::milliseconds(
                      static_cast<std::int64_t>(static_cast<double>(base.count()) * 0.5 * jitter_fraction()));
  };
  bool need_list = true;
  bool listed = false;
  std::string relist_reason;
  while (!stopped_.load(std::memory_order_acquire)) {
    if (need_list) {
      auto r = co_await relist();
      if (stopped_.load(std::memory_order_acquire)) break;
      if (!r) {
        {
          std::lock_guard lock(mu_);
          ++stats_.reconnects;
        }
        if (relist_reason.empty() || relist_reason.starts_with("list failed"))
          relist_reason = "list failed: " + r.error().message;
        co_await sleep(next_backoff());
        continue;
      }
      need_list = false;
      backoff = options_.backoff_initial;  // the API answers: the next failure starts small again
      if (listed && !relist_reason.empty() && options_.on_relist) options_.on_relist(relist_reason);
      listed = true;
      relist_reason.clear();
    }
    const auto started = std::chrono::steady_clock::now();
    auto w = co_await watch_once();
    if (stopped_.load(std::memory_order_acquire)) break;
    const bool healthy = delivered_ || std::chrono::steady_clock::now() - started >= kHealthyWatch;
    if (healthy) backoff = options_.backoff_initial;
    if (!w) {
      if (w.error().is_gone()) {
        // History expired: relist (diffed against the cache), then watch from the list.
        std::lock_guard lock(mu_);
        ++stats_.relists_gone;
        need_list = true;
        relist_reason = "resourceVersion too old (410)";
        continue;
      }
      {
        std::lock_guard lock(mu_);
        ++stats_.reconnects;
      }
      co_await sleep(next_backoff());
      continue;
    }
    // Ended normally (timeoutSeconds, or the server closed it): reopen from
    // the last resourceVersion at once, with a small floor against a tight loop.
    const auto lived = std::chrono::steady_clock::now() - started;
    if (lived < options_.reopen_floor) {
      co_await sleep(std::chrono::ceil<std::chrono::milliseconds>(options_.reopen_floor - lived));
    }
  }
}

}  // namespace rootseal::sync::kube
