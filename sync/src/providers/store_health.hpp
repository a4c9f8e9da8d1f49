// rootseal::sync — the health of one store, shared by every provider call to
// it (pull and push, every ExternalSecret and PushSecret that uses the store).
//
// A call that fails transiently (connection error, 5xx, 429, a cloud
// throttling error) backs the store off as a whole: exponential backoff with
// jitter (level n waits between half and all of base·2^(n-1), capped at max),
// never sooner than a Retry-After the store sent. While backed off, calls are
// refused locally (Errc::unavailable, counted): at once when a probe failed
// too (an outage), after waiting at most `wait_budget` for the store to
// reopen in its first round (a blip, so statuses do not flap). When the wait is over exactly one
// call is let through (the probe, half-open); the others keep waiting for
// its outcome (within their budget). A probe that gets any answer that is not
// transient (2xx, 404, 403 ...) makes the store healthy again and runs the
// recovery callback (the engine re-queues the ExternalSecrets it parked).
//
// The decisions are a pure state machine over an explicit time (decide,
// failed_at, succeeded), so tests drive them with a fake clock; admit() is
// the coroutine the providers await.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "rootseal/kms/error.hpp"
#include "rootseal/sync/provider.hpp"

namespace rootseal::sync {

struct StoreHealthOptions {
  std::chrono::milliseconds base{1000};         // first backoff (jittered to [base/2, base])
  std::chrono::milliseconds max{10'000};        // backoff cap (a Retry-After may go beyond, up to kMaxRetryAfter)
  std::chrono::milliseconds wait_budget{2000};  // how long one call waits for the store to reopen before it is refused
};

class StoreHealth {
 public:
  using Clock = std::chrono::steady_clock;
  using Millis = std::chrono::milliseconds;
  using Options = StoreHealthOptions;
  // A Retry-After longer than this is cut to it (a store cannot park us for days).
  static constexpr Millis kMaxRetryAfter{300'000};

  // A call admitted by decide()/admit(); hand it back to succeeded()/failed_at().
  struct Ticket {
    bool probe = false;  // the one call let through after a backoff
  };
  // decide(): admitted (with its ticket), or the earliest time to ask again.
  struct Decision {
    std::optional<Ticket> ticket;
    Clock::time_point retry_at{};
  };
  struct Snapshot {
    bool backing_off = false;
    Clock::time_point next_attempt{};  // meaningful while backing off
    unsigned level = 0;                // consecutive failed rounds
    std::uint64_t refused = 0;         // calls refused locally
    std::uint64_t failures = 0;        // calls that failed transiently
    std::uint64_t recoveries = 0;
    std::string last_error;  // safe to show (no values)
  };

  // name: shown in refusals ("SecretStore/ns/name"). rand01: jitter source in
  // [0, 1) (tests pass a fixed one).
  explicit StoreHealth(std::string name, Options options = {}, std::function<double()> rand01 = {});

  // Waits (asynchronously, at most wait_budget, and only in the first round
  // of failures) until the store takes calls.
  Task<Ticket> admit();
  // The call got an answer that says nothing against the store (any non-transient outcome).
  void succeeded(const Ticket& ticket) { succeeded_at(Clock::now(), ticket); }
  // The call failed transiently; retry_after: the store's own hint (Retry-After, throttling).
  void failed(const Ticket& ticket, std::optional<Millis> retry_after, std::string_view reason) {
    failed_at(Clock::now(), ticket, retry_after, reason);
  }

  // Runs (outside the lock) each time the store becomes healthy after a backoff.
  void on_recovered(std::function<void()> callback);
  // Runs (outside the lock) each time a healthy store starts backing off,
  // with the failure's reason (no values).
  void on_backing_off(std::function<void(const std::string& reason)> callback);

  // ---- the pure state machine (explicit time) ----
  Decision decide(Clock::time_point now);
  void succeeded_at(Clock::time_point now, const Ticket& ticket);
  void failed_at(Clock::time_point now, const Ticket& ticket, std::optional<Millis> retry_after,
                 std::string_view reason);
  // A refused call (counted; the error to return).
  kms::Error refusal();

  [[nodiscard]] Snapshot snapshot() const;
  [[nodiscard]] bool backing_off() const;
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const Options& options() const noexcept { return options_; }

 private:
  Millis backoff_for(unsigned level);

  const std::string name_;
  const Options options_;
  std::function<double()> rand01_;
  mutable std::mutex mu_;
  std::function<void()> recovered_;
  std::function<void(const std::string&)> backing_off_cb_;
  bool backing_off_ = false;
  bool probe_in_flight_ = false;
  Clock::time_point probe_since_{};
  Clock::time_point next_attempt_{};
  unsigned level_ = 0;
  std::uint64_t refused_ = 0;
  std::uint64_t failures_ = 0;
  std::uint64_t recoveries_ = 0;
  std::string last_error_;
};

}  // namespace rootseal::sync
