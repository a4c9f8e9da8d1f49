#include "providers/store_health.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <random>

namespace rootseal::sync {

namespace asio = boost::asio;
using Millis = StoreHealth::Millis;

namespace {

// While a probe is out, waiters look again this often.
constexpr Millis kProbePoll{50};
// A probe that never reported back (lost coroutine) stops blocking others after this.
constexpr Millis kProbeLost{60'000};

double default_rand01() {
  thread_local std::minstd_rand rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

}  // namespace

StoreHealth::StoreHealth(std::string name, Options options, std::function<double()> rand01)
    : name_(std::move(name)),
      options_(options),
      rand01_(rand01 ? std::move(rand01) : std::function<double()>(default_rand01)) {}

void StoreHealth::on_recovered(std::function<void()> callback) {
  std::lock_guard lock(mu_);
  recovered_ = std::move(callback);
}

void StoreHealth::on_backing_off(std::function<void(const std::string&)> callback) {
  std::lock_guard lock(mu_);
  backing_off_cb_ = std::move(callback);
}

Millis StoreHealth::backoff_for(unsigned level) {
  // base·2^(level-1), capped; "equal jitter": between half and all of it.
  Millis d = options_.base;
  for (unsigned i = 1; i < level && d < options_.max; ++i) d *= 2;
  d = std::min(d, options_.max);
  const double r = std::clamp(rand01_(), 0.0, 1.0);
  return d / 2 + Millis(static_cast<std::int64_t>(static_cast<double>((d - d / 2).count()) * r));
}

StoreHealth::Decision StoreHealth::decide(Clock::time_point now) {
  std::lock_guard lock(mu_);
  if (!backing_off_) return {Ticket{false}, now};
  if (probe_in_flight_ && now - probe_since_ >= kProbeLost) probe_in_flight_ = false;
  if (now < next_attempt_) return {std::nullopt, next_attempt_};
  if (probe_in_flight_) return {std::nullopt, now + kProbePoll};
  probe_in_flight_ = true;
  probe_since_ = now;
  return {Ticket{true}, now};
}

void StoreHealth::succeeded_at(Clock::time_point /*now*/, const Ticket& ticket) {
  std::function<void()> cb;
  {
    std::lock_guard lock(mu_);
    // A call admitted before the store fell ill proves nothing about now (it
    // may predate a 429): only a probe, or a call while healthy, counts.
    if (!backing_off_ || !ticket.probe) return;
    backing_off_ = false;
    probe_in_flight_ = false;
    level_ = 0;
    ++recoveries_;
    cb = recovered_;
  }
  if (cb) cb();
}

void StoreHealth::failed_at(Clock::time_point now, const Ticket& ticket, std::optional<Millis> retry_after,
                            std::string_view reason) {
  std::function<void(const std::string&)> cb;
  std::string why;
  {
    std::lock_guard lock(mu_);
    ++failures_;
    last_error_ = std::string(reason.substr(0, 300));
    const Millis hint = std::clamp(retry_after.value_or(Millis(0)), Millis(0), kMaxRetryAfter);
    if (backing_off_ && !ticket.probe) {
      // A call that was already out when the store fell ill: only its hint counts.
      next_attempt_ = std::max(next_attempt_, now + hint);
      return;
    }
    // A new round: the store fell ill, or the probe failed.
    if (!backing_off_) {
      cb = backing_off_cb_;
      why = last_error_;
    }
    level_ = backing_off_ ? level_ + 1 : 1;
    backing_off_ = true;
    if (ticket.probe) probe_in_flight_ = false;
    next_attempt_ = now + std::max(backoff_for(level_), hint);
  }
  if (cb) cb(why);
}

kms::Error StoreHealth::refusal() {
  std::lock_guard lock(mu_);
  ++refused_;
  std::string msg = name_ + " is backing off after errors (calls resume when it answers again)";
  if (!last_error_.empty()) msg += "; last error: " + last_error_;
  return kms::Error(kms::Errc::unavailable, std::move(msg));
}

Task<StoreHealth::Ticket> StoreHealth::admit() {
  // Only a store in its first round of failures (a blip) is waited for; once
  // a probe failed too, calls are refused at once (no worker sits waiting for
  // an outage while other stores' work queues up).
  const auto deadline = Clock::now() + (snapshot().level <= 1 ? options_.wait_budget : Millis(0));
  for (;;) {
    const auto now = Clock::now();
    auto d = decide(now);
    if (d.ticket) co_return *d.ticket;
    if (d.retry_at > deadline) co_return std::unexpected(refusal());
    asio::steady_timer t(co_await asio::this_coro::executor, d.retry_at);
    boost::system::error_code ec;
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

StoreHealth::Snapshot StoreHealth::snapshot() const {
  std::lock_guard lock(mu_);
  Snapshot s;
  s.backing_off = backing_off_;
  s.next_attempt = next_attempt_;
  s.level = level_;
  s.refused = refused_;
  s.failures = failures_;
  s.recoveries = recoveries_;
  s.last_error = last_error_;
  return s;
}

bool StoreHealth::backing_off() const {
  std::lock_guard lock(mu_);
  return backing_off_;
}

}  // namespace rootseal::sync
