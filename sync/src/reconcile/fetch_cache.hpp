// rootseal::sync::reconcile — fetch deduplication (single flight + TTL).
//
// All reconciles asking for the same (store, key, version) within one
// refresh window share one provider call: the first caller fetches, callers
// that arrive while it is in flight wait for its result, and callers within
// `ttl` of its completion get a copy of the cached value. Errors are handed
// to the waiters of that flight and not cached. Values stay in locked memory
// (SecureBytes) and are dropped when they expire.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "rootseal/sync/provider.hpp"

namespace rootseal::sync::reconcile {

class FetchCache {
 public:
  using Clock = std::chrono::steady_clock;
  using Fetch = std::function<Task<kms::SecureBytes>()>;

  explicit FetchCache(std::chrono::milliseconds ttl, std::function<Clock::time_point()> now = &Clock::now)
      : ttl_(ttl), now_(std::move(now)) {}

  // key: an opaque identity of (store, remote key, version).
  Task<kms::SecureBytes> get(const std::string& key, const Fetch& fetch);

  // Drops every entry of a store (its spec or credentials changed): key prefix match.
  void invalidate_prefix(std::string_view prefix);
  // Drops expired entries (called from get; exposed for tests).
  void sweep();

  struct Stats {
    std::uint64_t calls = 0;   // provider calls made
    std::uint64_t hits = 0;    // served from a completed entry
    std::uint64_t joined = 0;  // waited on an in-flight call
    std::size_t entries = 0;
  };
  [[nodiscard]] Stats stats() const;

 private:
  struct Flight;
  std::chrono::milliseconds ttl_;
  std::function<Clock::time_point()> now_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Flight>> entries_;
  Stats stats_;
  Clock::time_point last_sweep_{};
};

// The cache key of a remote value.
std::string fetch_key(std::string_view store_id, std::string_view key, std::string_view version);

}  // namespace rootseal::sync::reconcile
