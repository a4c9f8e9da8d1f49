// rootseal::sync::kube — a watch-driven cache of one resource (client-go's
// shared informer, reduced to what the sync engine needs).
//
// run(): list (paginated) → replace the cache → watch from the list's
// resourceVersion with bookmarks; every event updates the cache and calls the
// handlers. The watch is reopened from the last resourceVersion seen (an
// object's or a BOOKMARK's) when the server ends it, so steady state makes no
// list calls. Only a 410 (Expired/Gone, in-stream ERROR or on connect) forces
// a relist; the relist is diffed against the cache, so handlers see the adds,
// updates and deletes that happened while the watch was away. A watch the
// server ends cleanly is reopened at once (not sooner than `reopen_floor`
// after it was opened, against a tight loop). Failed lists and watches are
// retried with exponential backoff (with jitter, capped at backoff_max so a
// returning API server is seen within about backoff_max), reset by a
// successful list and by a watch that delivered events. Every re-list (after
// the first list) is counted and reported to `on_relist`.
//
// The cache holds immutable snapshots (shared_ptr<const json::value>); get()
// and list() are thread-safe and cheap. `transform` may trim objects before
// they are stored (by default metadata.managedFields is dropped).
//
// Handlers run on the informer's coroutine, in event order, never
// concurrently with each other; they must not block (enqueue a key and return).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kube/kube_client.hpp"

namespace rootseal::sync::kube {

using ObjectPtr = std::shared_ptr<const json::value>;

struct InformerHandlers {
  std::function<void(const ObjectPtr&)> on_add;
  std::function<void(const ObjectPtr& old_object, const ObjectPtr& new_object)> on_update;
  std::function<void(const ObjectPtr&)> on_delete;  // the last state known
  std::function<void()> on_synced;                  // after the first list has been applied
};

struct InformerOptions {
  std::string ns;  // "" = all namespaces
  std::string label_selector;
  std::string field_selector;
  std::uint32_t page_size = 500;
  std::chrono::seconds watch_timeout{300};         // per watch request (server closes, we reopen)
  std::chrono::milliseconds backoff_initial{200};  // reconnect backoff
  std::chrono::milliseconds backoff_max{800};      // (+ up to 50 % jitter)
  std::chrono::milliseconds reopen_floor{250};     // a cleanly ended watch is reopened no sooner after its start
  // Called after each re-list (not the first list), with the reason; runs on
  // the informer's coroutine, must not block.
  std::function<void(std::string_view reason)> on_relist;
  // Trims an object before it is cached (runs on the informer's coroutine).
  // Default: erase metadata.managedFields.
  std::function<void(json::value&)> transform;
  bool drop_managed_fields = true;
};

struct InformerStats {
  std::uint64_t lists = 0;    // successful lists (1 at start + one per re-list)
  std::uint64_t watches = 0;  // watch connections opened
  std::uint64_t events = 0;   // ADDED/MODIFIED/DELETED applied
  std::uint64_t bookmarks = 0;
  std::uint64_t relists_gone = 0;  // relists caused by 410
  std::uint64_t reconnects = 0;    // watch restarts after a failure (with backoff)
};

class Informer : public std::enable_shared_from_this<Informer> {
 public:
  static std::shared_ptr<Informer> create(std::shared_ptr<KubeClient> client, GroupVersionResource gvr,
                                          InformerOptions options = {}, InformerHandlers handlers = {});
  ~Informer();
  Informer(const Informer&) = delete;
  Informer& operator=(const Informer&) = delete;

  // Set handlers before run().
  void set_handlers(InformerHandlers handlers);

  // Runs until stop(). co_spawn it on the client's executor.
  asio::awaitable<void> run();
  // Thread-safe; run() returns soon after.
  void stop();

  [[nodiscard]] bool has_synced() const noexcept { return synced_.load(std::memory_order_acquire); }
  // nullptr if absent. For cluster-scoped resources pass ns = "".
  [[nodiscard]] ObjectPtr get(std::string_view ns, std::string_view name) const;
  [[nodiscard]] ObjectPtr get(std::string_view key) const;  // "ns/name"
  // A snapshot of all objects (in one namespace if ns is not empty), by key order.
  [[nodiscard]] std::vector<ObjectPtr> list(std::string_view ns = {}) const;
  [[nodiscard]] std::size_t size() const;
  [[nodiscard]] std::string last_resource_version() const;
  [[nodiscard]] InformerStats stats() const;
  [[nodiscard]] const GroupVersionResource& gvr() const noexcept { return gvr_; }

 private:
  Informer(std::shared_ptr<KubeClient> client, GroupVersionResource gvr, InformerOptions options,
           InformerHandlers handlers);
  asio::awaitable<KubeResult<void>> relist();
  // One watch connection; delivered_ says whether it brought any event.
  asio::awaitable<KubeResult<void>> watch_once();
  void apply(WatchEventType type, json::value object);
  asio::awaitable<void> sleep(std::chrono::milliseconds d);
  void prepare(json::value& object) const;

  std::shared_ptr<KubeClient> client_;
  GroupVersionResource gvr_;
  InformerOptions options_;
  InformerHandlers handlers_;

  mutable std::mutex mu_;
  std::map<std::string, ObjectPtr, std::less<>> cache_;  // key "ns/name"
  std::string resource_version_;
  InformerStats stats_;

  bool delivered_ = false;  // run()'s coroutine only
  std::atomic<bool> synced_{false};
  std::atomic<bool> stopped_{false};
  std::mutex stream_mu_;
  std::optional<net::StreamControl> stream_;  // the open watch, for stop()
  using StopChannel = asio::experimental::concurrent_channel<void(boost::system::error_code)>;
  std::shared_ptr<StopChannel> stop_ch_;  // wakes a backoff sleep on stop()
};

}  // namespace rootseal::sync::kube
