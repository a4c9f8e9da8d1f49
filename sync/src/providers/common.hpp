// Shared pieces of the providers: HTTP clients from a TlsSpec, error mapping,
// an async mutex, a write-rate limiter, uuids, and the coroutine forms of the
// error macros.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <functional>
#include <span>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "let.hpp"
#include "rootseal/kms/error.hpp"
#include "rootseal/net/http_client.hpp"
#include "rootseal/sync/provider.hpp"

namespace rootseal::sync::providers {

// An HTTP client for `url` with the spec's trust settings.
kms::Result<std::shared_ptr<net::HttpClient>> make_client(const boost::asio::any_io_executor& executor,
                                                          std::string_view url, const TlsSpec& tls,
                                                          net::ClientOptions options = {});

// Maps a non-2xx HTTP status to an error code: 401/403 permission_denied,
// 404 not_found, 408/429/5xx unavailable, other 4xx invalid_argument.
kms::Errc errc_for_status(unsigned status) noexcept;
// True for answers worth retrying (429, 5xx except 501).
bool retryable_status(unsigned status) noexcept;
// Retry-After (seconds) of a 429/503, bounded to [0, 60]; nullopt if absent.
std::optional<std::chrono::milliseconds> retry_after(const net::Response& r);

// The string member `key` of an object, or empty.
std::string_view json_string(const boost::json::value& v, std::string_view key);

// A random RFC 4122 version 4 UUID.
std::string random_uuid();

// Current UTC time as seconds since the epoch (injectable for tests).
using WallClock = std::function<std::chrono::system_clock::time_point()>;

boost::asio::awaitable<void> sleep_for(std::chrono::milliseconds d);

// An async mutex usable from coroutines on any thread.
class AsyncMutex {
 public:
  explicit AsyncMutex(const boost::asio::any_io_executor& executor);
  boost::asio::awaitable<void> lock();
  void unlock();

 private:
  boost::asio::experimental::concurrent_channel<void(boost::system::error_code)> token_;
};

// A token bucket: acquire() waits (asynchronously) until a token is free.
class RateLimiter {
 public:
  RateLimiter(double per_second, double burst);
  boost::asio::awaitable<void> acquire();
  [[nodiscard]] std::size_t acquired() const;

 private:
  std::mutex mu_;
  double rate_;
  double burst_;
  double tokens_;
  std::chrono::steady_clock::time_point last_;
  std::size_t acquired_ = 0;
};

// Valid UTF-8 (no overlongs or surrogates)?
bool is_utf8(std::span<const std::uint8_t> bytes) noexcept;

}  // namespace rootseal::sync::providers
