#include "kube/work_queue.hpp"

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <exception>
#include <thread>

namespace rootseal::sync::kube {

// ---------------------------------------------------------------------------
// QueueState

QueueState::QueueState(const WorkQueueOptions& options, std::shared_ptr<const Clock> clock)
    : clock_(std::move(clock)),
      backoff_(options.base_delay, options.max_delay),
      bucket_(options.qps, options.burst, clock_) {}

void QueueState::enqueue(const std::string& key, Lane lane) {
  const std::uint64_t seq = next_seq_++;
  dirty_[key] = Dirty{lane, seq};
  lanes_[index(lane)].push_back(Entry{key, seq});
  ++lane_count_[index(lane)];
}

void QueueState::add(const std::string& key, Lane lane) {
  if (shutting_down_) return;
  const auto it = dirty_.find(key);
  const bool in_flight = processing_.contains(key);
  if (it != dirty_.end()) {
    // Already waiting (or re-added while processing): dedup; only a move up to the fast lane.
    if (lane == Lane::fast && it->second.lane == Lane::normal) {
      if (in_flight) {
        it->second.lane = Lane::fast;  // queued there by done()
      } else {
        --lane_count_[index(Lane::normal)];  // the normal-lane entry becomes stale (seq changes)
        enqueue(key, Lane::fast);
      }
    }
    return;
  }
  if (in_flight) {
    dirty_[key] = Dirty{lane, 0};
    ++dirty_processing_;
    return;
  }
  enqueue(key, lane);
}

void QueueState::add_after(const std::string& key, Duration delay, Lane lane) {
  if (shutting_down_) return;
  if (delay <= Duration::zero()) {
    add(key, lane);
    return;
  }
  const TimePoint when = clock_->now() + delay;
  const auto it = waiting_.find(key);
  if (it != waiting_.end()) {
    if (lane == Lane::fast) it->second.lane = Lane::fast;
    if (it->second.when <= when) return;  // an earlier wake-up is already planned
    it->second.when = when;
    it->second.seq = next_seq_++;
    heap_.push(HeapEntry{when, it->second.seq, key});
    return;
  }
  const std::uint64_t seq = next_seq_++;
  waiting_.emplace(key, Waiting{when, lane, seq});
  heap_.push(HeapEntry{when, seq, key});
}

Duration QueueState::add_rate_limited(const std::string& key, Lane lane) {
  const Duration item = backoff_.next(key);
  const Duration bucket = bucket_.reserve();
  const Duration delay = std::max(item, bucket);
  add_after(key, delay, lane);
  return delay;
}

void QueueState::forget(const std::string& key) { backoff_.forget(key); }

std::uint32_t QueueState::num_requeues(const std::string& key) const { return backoff_.failures(key); }

void QueueState::promote_due() {
  const TimePoint now = clock_->now();
  while (!heap_.empty() && heap_.top().when <= now) {
    HeapEntry top = heap_.top();
    heap_.pop();
    const auto it = waiting_.find(top.key);
    if (it == waiting_.end() || it->second.seq != top.seq) continue;  // superseded
    const Lane lane = it->second.lane;
    waiting_.erase(it);
    add(top.key, lane);
  }
}

std::optional<TimePoint> QueueState::next_delayed() const {
  if (heap_.empty()) return std::nullopt;
  return heap_.top().when;  // possibly superseded: a spurious wake-up at worst
}

std::optional<QueueItem> QueueState::pop() {
  for (const Lane lane : {Lane::fast, Lane::normal}) {
    auto& q = lanes_[index(lane)];
    while (!q.empty()) {
      Entry e = std::move(q.front());
      q.pop_front();
      const auto it = dirty_.find(e.key);
      if (it == dirty_.end() || it->second.seq != e.seq || processing_.contains(e.key)) continue;  // stale
      --lane_count_[index(lane)];
      dirty_.erase(it);
      processing_.insert(e.key);
      return QueueItem{std::move(e.key), lane};
    }
  }
  return std::nullopt;
}

void QueueState::done(const std::string& key) {
  if (processing_.erase(key) == 0) return;
  const auto it = dirty_.find(key);
  if (it == dirty_.end()) return;
  --dirty_processing_;
  const Lane lane = it->second.lane;
  if (shutting_down_) {
    dirty_.erase(it);
    return;
  }
  enqueue(key, lane);
}

// ---------------------------------------------------------------------------
// WorkQueue

namespace {
std::size_t default_workers() {
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  return std::max<std::size_t>(4, std::size_t{hw} * 4);
}
}  // namespace

std::shared_ptr<WorkQueue> WorkQueue::create(asio::any_io_executor ex, WorkQueueOptions options,
                                             std::shared_ptr<const Clock> clock) {
  std::shared_ptr<WorkQueue> q(new WorkQueue(std::move(ex), std::move(options), std::move(clock)));
  q->pump_started_ = true;
  asio::co_spawn(q->strand_, [q]() { return q->pump(); }, asio::detached);
  return q;
}

WorkQueue::WorkQueue(asio::any_io_executor ex, WorkQueueOptions options, std::shared_ptr<const Clock> clock)
    : ex_(ex), strand_(asio::make_strand(ex)), options_(options), state_(options_, std::move(clock)), timer_(strand_) {}

WorkQueue::~WorkQueue() = default;

std::size_t WorkQueue::worker_count() const noexcept {
  return options_.workers == 0 ? default_workers() : options_.workers;
}

void WorkQueue::dispatch_locked(std::vector<std::pair<Waiter, std::optional<QueueItem>>>& out) {
  if (state_.shutting_down()) {
    while (!waiters_.empty()) {
      out.emplace_back(std::move(waiters_.front()), std::nullopt);
      waiters_.pop_front();
    }
    return;
  }
  while (!waiters_.empty()) {
    auto item = state_.pop();
    if (!item) break;
    out.emplace_back(std::move(waiters_.front()), std::move(item));
    waiters_.pop_front();
  }
}

void WorkQueue::complete(std::vector<std::pair<Waiter, std::optional<QueueItem>>>& ready) {
  for (auto& [waiter, item] : ready) {
    auto ex = waiter.ex;
    asio::post(ex, [w = std::move(waiter.handler), it = std::move(item)]() mutable { std::move(w)(std::move(it)); });
  }
  ready.clear();
}

void WorkQueue::add(const std::string& key, Lane lane) {
  std::vector<std::pair<Waiter, std::optional<QueueItem>>> ready;
  {
    std::lock_guard lock(mu_);
    state_.add(key, lane);
    dispatch_locked(ready);
  }
  complete(ready);
}

void WorkQueue::add_after(const std::string& key, Duration delay, Lane lane) {
  if (delay <= Duration::zero()) {
    add(key, lane);
    return;
  }
  {
    std::lock_guard lock(mu_);
    state_.add_after(key, delay, lane);
  }
  poke_timer();
}

void WorkQueue::add_rate_limited(const std::string& key, Lane lane) {
  Duration d{0};
  std::vector<std::pair<Waiter, std::optional<QueueItem>>> ready;
  {
    std::lock_guard lock(mu_);
    d = state_.add_rate_limited(key, lane);
    dispatch_locked(ready);
  }
  complete(ready);
  if (d > Duration::zero()) poke_timer();
}

void WorkQueue::forget(const std::string& key) {
  std::lock_guard lock(mu_);
  state_.forget(key);
}

std::uint32_t WorkQueue::num_requeues(const std::string& key) const {
  std::lock_guard lock(mu_);
  return state_.num_requeues(key);
}

void WorkQueue::done(const std::string& key) {
  std::vector<std::pair<Waiter, std::optional<QueueItem>>> ready;
  {
    std::lock_guard lock(mu_);
    state_.done(key);
    dispatch_locked(ready);
  }
  complete(ready);
}

void WorkQueue::shut_down() {
  std::vector<std::pair<Waiter, std::optional<QueueItem>>> ready;
  {
    std::lock_guard lock(mu_);
    state_.shut_down();
    dispatch_locked(ready);
  }
  complete(ready);
  poke_timer();
}

void WorkQueue::poke_timer() {
  asio::post(strand_, [self = shared_from_this()]() { self->timer_.cancel(); });
}

void WorkQueue::async_get(Waiter waiter) {
  std::vector<std::pair<Waiter, std::optional<QueueItem>>> ready;
  {
    std::lock_guard lock(mu_);
    waiters_.push_back(std::move(waiter));
    state_.promote_due();
    dispatch_locked(ready);
  }
  complete(ready);
}

asio::awaitable<std::optional<QueueItem>> WorkQueue::get() {
  auto self = shared_from_this();  // keeps the queue alive while this coroutine waits
  // The initiation captures only a raw pointer: GCC 12 destroys a lambda
  // temporary in a co_await expression twice, harmless only when its
  // destructor is trivial.
  auto initiation = [queue = this](auto handler) {
    // Keep the caller's executor busy while it waits, as an Asio operation would.
    asio::any_io_executor ex =
        asio::prefer(asio::get_associated_executor(handler, queue->ex_), asio::execution::outstanding_work.tracked);
    queue->async_get(Waiter{std::move(handler), std::move(ex)});
  };
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(std::optional<QueueItem>)>(
      initiation, asio::use_awaitable);
}

asio::awaitable<void> WorkQueue::pump() {
  for (;;) {
    std::vector<std::pair<Waiter, std::optional<QueueItem>>> ready;
    std::optional<TimePoint> next;
    TimePoint now{};
    bool stop = false;
    {
      std::lock_guard lock(mu_);
      stop = state_.shutting_down();
      state_.promote_due();
      dispatch_locked(ready);
      next = state_.next_delayed();
      now = state_.clock().now();
    }
    complete(ready);
    if (stop) co_return;
    if (next) {
      timer_.expires_after(std::max(Duration::zero(), *next - now));
    } else {
      timer_.expires_at(asio::steady_timer::time_point::max());
    }
    boost::system::error_code ec;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<void> WorkQueue::run(Handler handler, std::size_t workers) {
  const std::size_t n = workers == 0 ? worker_count() : workers;
  auto self = shared_from_this();
  auto finished = std::make_shared<asio::experimental::concurrent_channel<void(boost::system::error_code)>>(ex_, n);
  for (std::size_t i = 0; i < n; ++i) {
    asio::co_spawn(
        ex_,
        [self, handler, finished]() -> asio::awaitable<void> {
          for (;;) {
            auto item = co_await self->get();
            if (!item) break;
            WorkOutcome outcome = WorkOutcome::retry();
            try {
              outcome = co_await handler(*item);
            } catch (const std::exception&) {
              outcome = WorkOutcome::retry();  // a handler bug must not kill the worker; back off
            }
            switch (outcome.kind) {
              case WorkOutcome::Kind::success:
                self->forget(item->key);
                break;
              case WorkOutcome::Kind::retry:
                self->add_rate_limited(item->key, Lane::normal);
                break;
              case WorkOutcome::Kind::requeue_after:
                self->forget(item->key);
                self->add_after(item->key, outcome.after, outcome.lane);
                break;
            }
            {
              std::lock_guard lock(self->mu_);
              ++self->processed_;
            }
            self->done(item->key);
          }
          finished->try_send(boost::system::error_code{});
        },
        asio::detached);
  }
  for (std::size_t i = 0; i < n; ++i) {
    boost::system::error_code ec;
    co_await finished->async_receive(asio::redirect_error(asio::use_awaitable, ec));
  }
}

WorkQueue::Stats WorkQueue::stats() const {
  std::lock_guard lock(mu_);
  return Stats{state_.len(Lane::fast), state_.len(Lane::normal), state_.delayed(), state_.processing(), processed_};
}

}  // namespace rootseal::sync::kube
