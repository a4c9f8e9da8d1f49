// WorkQueue, its pure QueueState, and the rate limiters (token bucket,
// per-key exponential backoff). Time-dependent behaviour is driven by a
// ManualClock; the asynchronous queue is checked under many workers on
// several threads.
#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "kube/rate_limiter.hpp"
#include "kube/work_queue.hpp"

using namespace rootseal::sync::kube;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

WorkQueueOptions no_limits() {
  WorkQueueOptions o;
  o.qps = 0;  // no bucket
  return o;
}

std::vector<std::string> drain(QueueState& q) {
  std::vector<std::string> out;
  while (auto item = q.pop()) {
    out.push_back(item->key);
    q.done(item->key);
  }
  return out;
}

// Polls `pred` every 5 ms for at most `limit` (a bounded wait, not a sleep).
asio::awaitable<bool> wait_until(std::function<bool()> pred, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  asio::steady_timer t(co_await asio::this_coro::executor);
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) co_return false;
    t.expires_after(5ms);
    co_await t.async_wait(asio::use_awaitable);
  }
  co_return true;
}

}  // namespace

// ---------------------------------------------------------------------------
// Rate limiters

TEST_CASE("token bucket: burst is free, then one token per 1/qps") {
  auto clock = std::make_shared<ManualClock>();
  TokenBucket b(10.0, 5, clock);
  for (int i = 0; i < 5; ++i) CHECK(b.reserve() == Duration::zero());
  CHECK(b.reserve() == std::chrono::milliseconds(100));
  CHECK(b.reserve() == std::chrono::milliseconds(200));
  CHECK_FALSE(b.try_take());
  // Paying back the two outstanding reservations takes 200 ms; 100 ms more buys one token.
  clock->advance(300ms);
  CHECK(b.try_take());
  CHECK_FALSE(b.try_take());
  // A long idle period refills only up to the burst.
  clock->advance(std::chrono::hours(1));
  for (int i = 0; i < 5; ++i) CHECK(b.try_take());
  CHECK_FALSE(b.try_take());
}

TEST_CASE("token bucket: reservations never exceed burst + qps*t in any window") {
  auto clock = std::make_shared<ManualClock>();
  const double qps = 10.0;
  const std::size_t burst = 100;
  TokenBucket b(qps, burst, clock);
  // 1000 callers reserve at once: their start times are the ready times.
  std::vector<Duration> ready;
  for (int i = 0; i < 1000; ++i) ready.push_back(b.reserve());
  for (const auto t : {0ms, 100ms, 1000ms, 5000ms, 50'000ms, 89'999ms}) {
    const auto n = std::count_if(ready.begin(), ready.end(), [&](Duration r) { return r <= t; });
    const double bound = static_cast<double>(burst) + qps * std::chrono::duration<double>(t).count() + 1e-9;
    INFO("window " << t.count() << " ms: " << n << " started");
    CHECK(static_cast<double>(n) <= bound);
    CHECK(static_cast<double>(n) >= bound - 1.0);  // and the limiter is not stingier than that
  }
  CHECK(ready.back() == std::chrono::milliseconds(90'000));  // (1000 - 100) / 10 qps
}

TEST_CASE("token bucket: qps 0 means unlimited") {
  TokenBucket b(0.0, 1, std::make_shared<ManualClock>());
  for (int i = 0; i < 1000; ++i) REQUIRE(b.reserve() == Duration::zero());
}

TEST_CASE("item backoff: doubles from the base up to the cap, per key, reset by forget") {
  ItemBackoff b(5ms, 1000s);
  CHECK(b.next("a") == 5ms);
  CHECK(b.next("a") == 10ms);
  CHECK(b.next("a") == 20ms);
  CHECK(b.next("b") == 5ms);  // independent keys
  for (int i = 0; i < 40; ++i) (void)b.next("a");
  CHECK(b.next("a") == std::chrono::seconds(1000));
  CHECK(b.failures("a") == 44);
  b.forget("a");
  CHECK(b.failures("a") == 0);
  CHECK(b.next("a") == 5ms);
}

// ---------------------------------------------------------------------------
// QueueState (pure)

TEST_CASE("queue: a key added many times is queued once") {
  QueueState q(no_limits());
  for (int i = 0; i < 5; ++i) q.add("ns/a", Lane::normal);
  q.add("ns/b", Lane::normal);
  CHECK(q.len() == 2);
  CHECK(drain(q) == std::vector<std::string>{"ns/a", "ns/b"});
  CHECK(q.len() == 0);
}

TEST_CASE("queue: a key re-added while processing waits for done and is handed out once") {
  QueueState q(no_limits());
  q.add("a", Lane::fast);
  auto item = q.pop();
  REQUIRE(item);
  q.add("a", Lane::fast);
  q.add("a", Lane::normal);
  CHECK(q.len() == 0);   // not ready while a worker holds it
  CHECK_FALSE(q.pop());  // a second worker gets nothing
  q.done("a");
  CHECK(q.len() == 1);
  auto again = q.pop();
  REQUIRE(again);
  CHECK(again->key == "a");
  CHECK(again->lane == Lane::fast);  // the fastest lane it was asked for
  q.done("a");
  CHECK_FALSE(q.pop());
}

TEST_CASE("queue: the fast lane goes first and a queued key moves up without duplication") {
  QueueState q(no_limits());
  q.add("refresh-1", Lane::normal);
  q.add("refresh-2", Lane::normal);
  q.add("refresh-3", Lane::normal);
  q.add("new", Lane::fast);
  q.add("refresh-3", Lane::fast);  // changed while waiting for its refresh
  q.add("new", Lane::normal);      // does not move a key down
  CHECK(q.len(Lane::fast) == 2);
  CHECK(q.len(Lane::normal) == 2);
  CHECK(drain(q) == std::vector<std::string>{"new", "refresh-3", "refresh-1", "refresh-2"});
}

TEST_CASE("queue: add_after waits for the clock and keeps the earliest time") {
  auto clock = std::make_shared<ManualClock>();
  QueueState q(no_limits(), clock);
  q.add_after("a", 10s, Lane::normal);
  q.add_after("a", 2s, Lane::normal);
  q.add_after("a", 5s, Lane::normal);
  q.add_after("b", 3s, Lane::fast);
  q.promote_due();
  CHECK(q.len() == 0);
  REQUIRE(q.next_delayed());
  clock->advance(2s);
  q.promote_due();
  CHECK(drain(q) == std::vector<std::string>{"a"});
  clock->advance(1s);
  q.promote_due();
  auto b = q.pop();
  REQUIRE(b);
  CHECK(b->key == "b");
  CHECK(b->lane == Lane::fast);
  q.done("b");
  clock->advance(1h);
  q.promote_due();
  CHECK(q.len() == 0);  // the later add_after of "a" was folded into the earlier one
  CHECK(q.delayed() == 0);
}

TEST_CASE("queue: add_rate_limited backs off per key and forget resets it") {
  auto clock = std::make_shared<ManualClock>();
  QueueState q(no_limits(), clock);
  CHECK(q.add_rate_limited("a", Lane::normal) == 5ms);
  clock->advance(5ms);
  q.promote_due();
  REQUIRE(q.pop());
  q.done("a");
  CHECK(q.add_rate_limited("a", Lane::normal) == 10ms);
  CHECK(q.add_rate_limited("a", Lane::normal) == 20ms);
  CHECK(q.num_requeues("a") == 3);
  q.forget("a");
  CHECK(q.num_requeues("a") == 0);
  CHECK(q.add_rate_limited("a", Lane::normal) == 5ms);
}

TEST_CASE("queue: add_rate_limited is bounded by the overall token bucket") {
  auto clock = std::make_shared<ManualClock>();
  WorkQueueOptions o;
  o.qps = 10;
  o.burst = 100;
  QueueState q(o, clock);
  std::vector<Duration> delays;
  for (int i = 0; i < 300; ++i) delays.push_back(q.add_rate_limited("k" + std::to_string(i), Lane::normal));
  CHECK(delays[0] == 5ms);  // per-key backoff dominates within the burst
  CHECK(delays[99] == 5ms);
  CHECK(delays[100] == 100ms);  // then the bucket: 10 per second
  CHECK(delays[299] == std::chrono::milliseconds(20'000));
  // Ready keys over time never exceed burst + qps*t.
  clock->advance(1s);
  q.promote_due();
  CHECK(q.len() == 110);
  clock->advance(10s);
  q.promote_due();
  CHECK(q.len() == 210);
}

// ---------------------------------------------------------------------------
// WorkQueue (coroutines, several threads)

TEST_CASE("work queue: many workers never process one key at once, and every key is processed after its last add") {
  asio::thread_pool pool(4);
  WorkQueueOptions o = no_limits();
  auto q = WorkQueue::create(pool.get_executor(), o);
  constexpr int kKeys = 20;
  constexpr int kWorkers = 32;
  std::mutex mu;
  std::map<std::string, int> in_flight, max_in_flight, processed;
  std::map<std::string, int> added_gen, seen_gen;  // the last add generation seen by a run that started after it
  std::atomic<int> concurrent{0}, max_concurrent{0};

  auto handler = [&](const QueueItem& item) -> asio::awaitable<WorkOutcome> {
    int gen = 0;
    {
      std::lock_guard lock(mu);
      const int n = ++in_flight[item.key];
      max_in_flight[item.key] = std::max(max_in_flight[item.key], n);
      ++processed[item.key];
      gen = added_gen[item.key];
    }
    const int c = ++concurrent;
    int m = max_concurrent.load();
    while (c > m && !max_concurrent.compare_exchange_weak(m, c)) {
    }
    // Give other workers (and the producer) a chance to run in between.
    asio::steady_timer t(co_await asio::this_coro::executor, 1ms);
    co_await t.async_wait(asio::use_awaitable);
    --concurrent;
    {
      std::lock_guard lock(mu);
      --in_flight[item.key];
      seen_gen[item.key] = std::max(seen_gen[item.key], gen);
    }
    co_return WorkOutcome::success();
  };

  std::promise<void> finished;
  asio::co_spawn(pool, q->run(handler, kWorkers), [&](std::exception_ptr) { finished.set_value(); });

  // The producer adds every key 50 times from another thread while workers run.
  std::thread producer([&] {
    for (int round = 0; round < 50; ++round) {
      for (int k = 0; k < kKeys; ++k) {
        const std::string key = "ns/k" + std::to_string(k);
        {
          std::lock_guard lock(mu);
          ++added_gen[key];
        }
        q->add(key, round % 2 == 0 ? Lane::fast : Lane::normal);
      }
      std::this_thread::yield();
    }
  });
  producer.join();

  // Bounded wait until every key has been processed after its last add.
  std::promise<bool> converged;
  asio::co_spawn(
      pool,
      [&]() -> asio::awaitable<void> {
        const bool ok = co_await wait_until([&] {
          std::lock_guard lock(mu);
          for (const auto& [k, g] : added_gen)
            if (seen_gen[k] != g || in_flight[k] != 0) return false;
          return true;
        });
        converged.set_value(ok);
      },
      asio::detached);
  REQUIRE(converged.get_future().get());
  q->shut_down();
  finished.get_future().get();
  pool.join();

  for (const auto& [k, m] : max_in_flight) {
    INFO(k);
    CHECK(m == 1);
  }
  CHECK(processed.size() == kKeys);
  CHECK(max_concurrent.load() > 1);  // the workers did run in parallel
  const auto s = q->stats();
  CHECK(s.processing == 0);
  CHECK(s.ready_fast + s.ready_normal == 0);
}

TEST_CASE("work queue: a new key jumps ahead of queued refreshes") {
  asio::io_context io;
  auto q = WorkQueue::create(io.get_executor(), no_limits());
  std::vector<std::string> order;
  bool released = false;
  auto handler = [&](const QueueItem& item) -> asio::awaitable<WorkOutcome> {
    order.push_back(item.key);
    if (item.key == "blocker") {
      // Hold the only worker until the queue has been filled behind it.
      co_await wait_until([&] { return released; });
    }
    co_return WorkOutcome::success();
  };
  asio::co_spawn(io, q->run(handler, 1), asio::detached);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        q->add("blocker", Lane::normal);
        co_await wait_until([&] { return !order.empty(); });
        for (int i = 0; i < 100; ++i) q->add("refresh-" + std::to_string(i), Lane::normal);
        q->add("new", Lane::fast);
        released = true;
        co_await wait_until([&] { return order.size() == 102; });
        q->shut_down();
      },
      asio::detached);
  io.run_for(30s);
  REQUIRE(order.size() == 102);
  CHECK(order[0] == "blocker");
  CHECK(order[1] == "new");
  CHECK(order[2] == "refresh-0");
  CHECK(order[101] == "refresh-99");
}

TEST_CASE("work queue: retry backs off and requeue_after runs the key again later") {
  asio::io_context io;
  WorkQueueOptions o;
  o.base_delay = 20ms;
  auto q = WorkQueue::create(io.get_executor(), o);
  std::vector<std::chrono::steady_clock::time_point> runs;
  std::uint32_t requeues_seen_at_success = 99;
  auto handler = [&](const QueueItem& item) -> asio::awaitable<WorkOutcome> {
    runs.push_back(std::chrono::steady_clock::now());
    if (runs.size() <= 3) co_return WorkOutcome::retry();
    if (runs.size() == 4) {
      requeues_seen_at_success = q->num_requeues(item.key);
      co_return WorkOutcome::requeue_after(50ms);
    }
    co_return WorkOutcome::success();
  };
  asio::co_spawn(io, q->run(handler, 2), asio::detached);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        q->add("ns/a");
        co_await wait_until([&] { return runs.size() >= 5; });
        q->shut_down();
      },
      asio::detached);
  io.run_for(30s);
  REQUIRE(runs.size() == 5);
  CHECK(requeues_seen_at_success == 3);
  CHECK(q->num_requeues("ns/a") == 0);  // requeue_after forgets the failures
  // Each retry waited at least the backoff: 20, 40, 80 ms; then the requested 50 ms.
  const auto gap = [&](std::size_t i) { return runs[i] - runs[i - 1]; };
  CHECK(gap(1) >= 20ms);
  CHECK(gap(2) >= 40ms);
  CHECK(gap(3) >= 80ms);
  CHECK(gap(4) >= 50ms);
}

TEST_CASE("work queue: shut_down wakes idle workers and run returns") {
  asio::io_context io;
  auto q = WorkQueue::create(io.get_executor(), no_limits());
  bool returned = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        co_await q->run([](const QueueItem&) -> asio::awaitable<WorkOutcome> { co_return WorkOutcome::success(); }, 8);
        returned = true;
      },
      asio::detached);
  asio::post(io, [&] { q->shut_down(); });
  io.run_for(10s);
  CHECK(returned);
  CHECK(q->worker_count() >= 4);
}
