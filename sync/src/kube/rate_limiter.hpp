// rootseal::sync::kube — rate limiters with an injectable clock.
//
// TokenBucket: `qps` tokens per second, at most `burst` banked. reserve()
// takes a token now and says how long the caller must wait before using it
// (0 while the bank lasts), like golang.org/x/time/rate's Reserve().Delay().
// Reservations are never cancelled, so N reservations made at one instant are
// spread 1/qps apart after the burst: callers that sleep for the returned
// delay run at most `burst + qps * t` times in any window of length t.
//
// ItemBackoff: per-key exponential backoff (client-go's
// ItemExponentialFailureRateLimiter): the n-th failure of a key waits
// base * 2^(n-1), capped at max; forget(key) resets it.
//
// Neither sleeps. Both are safe to share between threads.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace rootseal::sync::kube {

using Duration = std::chrono::nanoseconds;
using TimePoint = std::chrono::steady_clock::time_point;

// Where "now" comes from (a fake one in tests).
class Clock {
 public:
  virtual ~Clock() = default;
  [[nodiscard]] virtual TimePoint now() const noexcept = 0;
};
// The process-wide steady clock.
std::shared_ptr<const Clock> steady_clock();

// A clock that moves only when told (tests).
class ManualClock final : public Clock {
 public:
  [[nodiscard]] TimePoint now() const noexcept override;
  void advance(Duration d) noexcept;

 private:
  mutable std::mutex mu_;
  TimePoint now_{std::chrono::seconds(1'000'000)};
};

class TokenBucket {
 public:
  // qps <= 0 means unlimited (reserve() always returns 0).
  TokenBucket(double qps, std::size_t burst, std::shared_ptr<const Clock> clock = steady_clock());
  // Takes one token; the delay before it may be used.
  Duration reserve();
  // Takes a token only if one is available now.
  bool try_take();
  [[nodiscard]] double qps() const noexcept { return qps_; }
  [[nodiscard]] std::size_t burst() const noexcept { return burst_; }

 private:
  void refill(TimePoint now);  // under mu_

  double qps_;
  std::size_t burst_;
  std::shared_ptr<const Clock> clock_;
  std::mutex mu_;
  double tokens_;  // may go negative: outstanding reservations
  TimePoint last_;
};

class ItemBackoff {
 public:
  ItemBackoff(Duration base, Duration max) : base_(base), max_(max) {}
  // The delay for this failure of `key`; counts it.
  Duration next(const std::string& key);
  void forget(const std::string& key);
  [[nodiscard]] std::uint32_t failures(const std::string& key) const;

 private:
  Duration base_;
  Duration max_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::uint32_t> failures_;
};

}  // namespace rootseal::sync::kube
