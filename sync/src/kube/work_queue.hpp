// rootseal::sync::kube — controller-runtime's work queue, with two lanes.
//
// Keys are strings ("namespace/name"). Semantics (client-go workqueue):
//  - dedup: a key waiting in the queue is there once, however often added;
//  - a key is never handed to two workers at once: a key added while a worker
//    holds it is marked dirty and queued again only when that worker calls
//    done(key);
//  - add_after(key, d) queues it after d (a key waiting for several delays
//    keeps the earliest); add_rate_limited(key) waits
//    max(per-key exponential backoff, global token bucket) — client-go's
//    DefaultControllerRateLimiter: 5 ms .. 1000 s, 10 qps, burst 100;
//    forget(key) resets the key's backoff (call it on success);
//  - two lanes: `fast` for new or changed objects, `normal` for periodic
//    refreshes and retries. Workers always take the fast lane first, so a new
//    ExternalSecret never waits behind a refresh storm. A key queued in the
//    normal lane that is added to the fast lane moves up (it is not queued
//    twice). Within a lane, order is FIFO.
//
// QueueState is the pure state machine (time passed in; no threads, no I/O)
// that the tests drive with a fake clock. WorkQueue wraps it for coroutines:
// thread-safe add/done from anywhere, get() suspends until a key is ready,
// run() starts N workers.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "kube/rate_limiter.hpp"

namespace rootseal::sync::kube {

namespace asio = boost::asio;

enum class Lane : std::uint8_t { fast = 0, normal = 1 };

struct WorkQueueOptions {
  Duration base_delay = std::chrono::milliseconds(5);  // first retry delay of a key
  Duration max_delay = std::chrono::seconds(1000);     // backoff cap
  double qps = 10.0;                                   // overall retry bucket (<= 0: none)
  std::size_t burst = 100;
  std::size_t workers = 0;  // run(): 0 = 4 per hardware thread, at least 4
};

struct QueueItem {
  std::string key;
  Lane lane = Lane::fast;
};

class QueueState {
 public:
  explicit QueueState(const WorkQueueOptions& options, std::shared_ptr<const Clock> clock = steady_clock());

  void add(const std::string& key, Lane lane);
  void add_after(const std::string& key, Duration delay, Lane lane);
  // Returns the delay applied.
  Duration add_rate_limited(const std::string& key, Lane lane);
  void forget(const std::string& key);
  [[nodiscard]] std::uint32_t num_requeues(const std::string& key) const;

  // Moves every delayed key whose time has come into its lane.
  void promote_due();
  // The next ready key (fast lane first); it becomes "processing".
  std::optional<QueueItem> pop();
  void done(const std::string& key);
  void shut_down() noexcept { shutting_down_ = true; }

  [[nodiscard]] bool shutting_down() const noexcept { return shutting_down_; }
  [[nodiscard]] std::optional<TimePoint> next_delayed() const;  // earliest pending add_after
  [[nodiscard]] std::size_t len() const noexcept { return dirty_.size() - dirty_processing_; }  // ready keys
  [[nodiscard]] std::size_t len(Lane lane) const noexcept { return lane_count_[index(lane)]; }
  [[nodiscard]] std::size_t delayed() const noexcept { return waiting_.size(); }
  [[nodiscard]] std::size_t processing() const noexcept { return processing_.size(); }
  [[nodiscard]] const Clock& clock() const noexcept { return *clock_; }

 private:
  struct Entry {
    std::string key;
    std::uint64_t seq;
  };
  struct Dirty {
    Lane lane;
    std::uint64_t seq;  // the lane entry that is current (older ones are skipped)
  };
  struct Waiting {
    TimePoint when;
    Lane lane;
    std::uint64_t seq;
  };
  struct HeapEntry {
    TimePoint when;
    std::uint64_t seq;
    std::string key;
    bool operator>(const HeapEntry& o) const noexcept { return when > o.when || (when == o.when && seq > o.seq); }
  };
  static std::size_t index(Lane l) noexcept { return static_cast<std::size_t>(l); }
  void enqueue(const std::string& key, Lane lane);

  std::shared_ptr<const Clock> clock_;
  ItemBackoff backoff_;
  TokenBucket bucket_;
  std::uint64_t next_seq_ = 0;
  std::deque<Entry> lanes_[2];
  std::size_t lane_count_[2] = {0, 0};
  std::unordered_map<std::string, Dirty> dirty_;  // queued or re-added while processing
  std::size_t dirty_processing_ = 0;              // dirty keys that are also processing (not in a lane)
  std::unordered_set<std::string> processing_;
  std::unordered_map<std::string, Waiting> waiting_;  // add_after, earliest time per key
  std::priority_queue<HeapEntry, std::vector<HeapEntry>, std::greater<>> heap_;
  bool shutting_down_ = false;
};

// What a worker's handler asks for after processing a key.
struct WorkOutcome {
  enum class Kind : std::uint8_t { success, retry, requeue_after };
  Kind kind = Kind::success;
  Duration after{0};
  Lane lane = Lane::normal;

  static WorkOutcome success() { return {}; }                                      // forget(key)
  static WorkOutcome retry() { return {Kind::retry, Duration{0}, Lane::normal}; }  // add_rate_limited
  static WorkOutcome requeue_after(Duration d, Lane lane = Lane::normal) {         // forget + add_after
    return {Kind::requeue_after, d, lane};
  }
};

class WorkQueue : public std::enable_shared_from_this<WorkQueue> {
 public:
  using Handler = std::function<asio::awaitable<WorkOutcome>(const QueueItem&)>;

  static std::shared_ptr<WorkQueue> create(asio::any_io_executor ex, WorkQueueOptions options = {},
                                           std::shared_ptr<const Clock> clock = steady_clock());
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Thread-safe; may be called from any thread or coroutine.
  void add(const std::string& key, Lane lane = Lane::fast);
  void add_after(const std::string& key, Duration delay, Lane lane = Lane::normal);
  void add_rate_limited(const std::string& key, Lane lane = Lane::normal);
  void forget(const std::string& key);
  void done(const std::string& key);
  [[nodiscard]] std::uint32_t num_requeues(const std::string& key) const;
  // Wakes every get() with std::nullopt; keys being processed may still call done().
  void shut_down();

  // The next key (you must call done(key) after); nullopt once shut down.
  asio::awaitable<std::optional<QueueItem>> get();

  // Runs `workers` (options.workers if 0) coroutines: get → handler → apply
  // the outcome → done, until shut_down(). Returns when all have stopped.
  asio::awaitable<void> run(Handler handler, std::size_t workers = 0);

  struct Stats {
    std::size_t ready_fast, ready_normal, delayed, processing;
    std::uint64_t processed;  // handler calls completed
  };
  [[nodiscard]] Stats stats() const;
  [[nodiscard]] std::size_t worker_count() const noexcept;

 private:
  struct Waiter {
    asio::any_completion_handler<void(std::optional<QueueItem>)> handler;
    asio::any_io_executor ex;  // the waiter's executor, tracking outstanding work while it waits
  };
  WorkQueue(asio::any_io_executor ex, WorkQueueOptions options, std::shared_ptr<const Clock> clock);
  void async_get(Waiter waiter);
  void dispatch_locked(std::vector<std::pair<Waiter, std::optional<QueueItem>>>& out);  // under mu_
  void complete(std::vector<std::pair<Waiter, std::optional<QueueItem>>>& ready);
  void poke_timer();  // the delay pump re-arms for the earliest delayed key
  asio::awaitable<void> pump();

  asio::any_io_executor ex_;
  asio::strand<asio::any_io_executor> strand_;
  WorkQueueOptions options_;
  mutable std::mutex mu_;
  QueueState state_;
  std::deque<Waiter> waiters_;
  std::uint64_t processed_ = 0;
  asio::steady_timer timer_;  // on strand_
  bool pump_started_ = false;
};

}  // namespace rootseal::sync::kube
