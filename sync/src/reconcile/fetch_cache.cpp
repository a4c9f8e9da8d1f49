#include "reconcile/fetch_cache.hpp"

#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <vector>

namespace rootseal::sync::reconcile {

namespace asio = boost::asio;
// A one-shot, thread-safe wake-up: the leader's try_send is buffered if the
// waiter has not started receiving yet.
using Wake = asio::experimental::concurrent_channel<void(boost::system::error_code)>;

struct FetchCache::Flight {
  bool done = false;
  bool ok = false;
  kms::SecureBytes value;
  kms::Error error{kms::Errc::internal, ""};
  Clock::time_point expires{};
  std::vector<std::shared_ptr<Wake>> waiters;
};

std::string fetch_key(std::string_view store_id, std::string_view key, std::string_view version) {
  std::string k;
  k.reserve(store_id.size() + key.size() + version.size() + 2);
  k.append(store_id);
  k.push_back('\x1f');
  k.append(key);
  k.push_back('\x1f');
  k.append(version);
  return k;
}

Task<kms::SecureBytes> FetchCache::get(const std::string& key, const Fetch& fetch) {
  std::shared_ptr<Flight> flight;
  std::shared_ptr<Wake> wait;
  bool leader = false;
  const auto ex = co_await asio::this_coro::executor;
  {
    std::lock_guard lock(mu_);
    const auto now = now_();
    if (now - last_sweep_ > ttl_) {
      for (auto it = entries_.begin(); it != entries_.end();) {
        if (it->second->done && it->second->expires <= now) {
          it = entries_.erase(it);
        } else {
          ++it;
        }
      }
      last_sweep_ = now;
    }
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second->done && it->second->expires <= now) {
      entries_.erase(it);
      it = entries_.end();
    }
    if (it == entries_.end()) {
      flight = std::make_shared<Flight>();
      entries_.emplace(key, flight);
      leader = true;
      ++stats_.calls;
    } else {
      flight = it->second;
      if (flight->done) {
        ++stats_.hits;
        co_return flight->value.clone();
      }
      ++stats_.joined;
      wait = std::make_shared<Wake>(ex, 1);
      flight->waiters.push_back(wait);
    }
  }
  if (leader) {
    auto result = co_await fetch();
    std::vector<std::shared_ptr<Wake>> waiters;
    {
      std::lock_guard lock(mu_);
      flight->done = true;
      flight->ok = result.has_value();
      if (result) {
        flight->value = std::move(*result);
        flight->expires = now_() + ttl_;
      } else {
        flight->error = result.error();
        // Errors are not cached: the next caller tries again.
        auto it = entries_.find(key);
        if (it != entries_.end() && it->second == flight) entries_.erase(it);
      }
      waiters.swap(flight->waiters);
    }
    for (auto& w : waiters) w->try_send(boost::system::error_code{});
    if (!flight->ok) co_return std::unexpected(flight->error);
    std::lock_guard lock(mu_);
    co_return flight->value.clone();
  }
  boost::system::error_code ec;
  co_await wait->async_receive(asio::redirect_error(asio::use_awaitable, ec));
  std::lock_guard lock(mu_);
  if (!flight->done) co_return kms::fail(kms::Errc::unavailable, "fetch abandoned");
  if (!flight->ok) co_return std::unexpected(flight->error);
  co_return flight->value.clone();
}

void FetchCache::invalidate_prefix(std::string_view prefix) {
  std::lock_guard lock(mu_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second->done && std::string_view(it->first).starts_with(prefix)) {
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

void FetchCache::sweep() {
  std::lock_guard lock(mu_);
  const auto now = now_();
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second->done && it->second->expires <= now) {
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

FetchCache::Stats FetchCache::stats() const {
  std::lock_guard lock(mu_);
  Stats s = stats_;
  s.entries = entries_.size();
  return s;
}

}  // namespace rootseal::sync::reconcile
