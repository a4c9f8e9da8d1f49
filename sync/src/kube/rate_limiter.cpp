#include "kube/rate_limiter.hpp"

#include <algorithm>
#include <cmath>

namespace rootseal::sync::kube {

namespace {

class SteadyClock final : public Clock {
 public:
  [[nodiscard]] TimePoint now() const noexcept override { return std::chrono::steady_clock::now(); }
};

}  // namespace

std::shared_ptr<const Clock> steady_clock() {
  static const auto clock = std::make_shared<const SteadyClock>();
  return clock;
}

TimePoint ManualClock::now() const noexcept {
  std::lock_guard lock(mu_);
  return now_;
}

void ManualClock::advance(Duration d) noexcept {
  std::lock_guard lock(mu_);
  now_ += d;
}

TokenBucket::TokenBucket(double qps, std::size_t burst, std::shared_ptr<const Clock> clock)
    : qps_(qps),
      burst_(std::max<std::size_t>(burst, 1)),
      clock_(std::move(clock)),
      tokens_(static_cast<double>(burst_)),
      last_(clock_->now()) {}

void TokenBucket::refill(TimePoint now) {
  if (now <= last_) return;
  const double elapsed = std::chrono::duration<double>(now - last_).count();
  tokens_ = std::min(static_cast<double>(burst_), tokens_ + elapsed * qps_);
  last_ = now;
}

Duration TokenBucket::reserve() {
  if (qps_ <= 0) return Duration{0};
  std::lock_guard lock(mu_);
  refill(clock_->now());
  tokens_ -= 1.0;
  if (tokens_ >= 0) return Duration{0};
  // The deficit is paid back at qps tokens per second.
  const double wait_s = -tokens_ / qps_;
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(wait_s));
}

bool TokenBucket::try_take() {
  if (qps_ <= 0) return true;
  std::lock_guard lock(mu_);
  refill(clock_->now());
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

Duration ItemBackoff::next(const std::string& key) {
  std::uint32_t n = 0;
  {
    std::lock_guard lock(mu_);
    n = failures_[key]++;
  }
  // base * 2^n, computed in floating point so a large n cannot overflow.
  const double delay = static_cast<double>(base_.count()) * std::pow(2.0, static_cast<double>(std::min(n, 200u)));
  if (delay >= static_cast<double>(max_.count())) return max_;
  return Duration{static_cast<Duration::rep>(delay)};
}

void ItemBackoff::forget(const std::string& key) {
  std::lock_guard lock(mu_);
  failures_.erase(key);
}

std::uint32_t ItemBackoff::failures(const std::string& key) const {
  std::lock_guard lock(mu_);
  const auto it = failures_.find(key);
  return it == failures_.end() ? 0 : it->second;
}

}  // namespace rootseal::sync::kube
