// Shared pieces of the providers: HTTP clients from a TlsSpec, error mapping,
// an async mutex, a write-rate limiter, the coroutine forms of the
// error macros; for the push providers the "not managed" refusal, JSON
// property merge/removal, a cached bearer token and the retrying request.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/json/value.hpp>

#include <atomic>
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
std::optional<std::chrono::milliseconds> retry_after(const net::ClientResponse& r);

// The string member `key` of an object, or empty.
std::string_view json_string(const boost::json::value& v, std::string_view key);

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

// ---- shared by the push providers (`who`: "aws", "azure", "gcp") ----

// permission_denied: `name` exists without the `marker` (tag / label)
// managed-by=rootseal.
std::unexpected<kms::Error> not_managed(std::string_view who, std::string_view name, std::string_view marker);

// The value to store for a PushRef: `value` itself (empty property), or the
// current JSON object (none: a new one) with `property` set to value as a
// string (value must then be UTF-8).
kms::Result<kms::SecureBytes> with_property(std::string_view who, const kms::SecureBytes* current,
                                            const std::string& property, const kms::SecureBytes& value);
// The current JSON object without `property`; nullopt when nothing would
// remain or the value is not a JSON object (then the whole secret goes).
std::optional<kms::SecureBytes> without_property(const kms::SecureBytes& current, const std::string& property);

// An OAuth 2 access token shared by concurrent calls (Azure, GCP): cached
// until a little before it expires (5 minutes, or a tenth of short
// lifetimes), fetched by fetch_token() under an async mutex so that many
// waiters cause one fetch, dropped after a 401.
class BearerAuth {
 public:
  explicit BearerAuth(const boost::asio::any_io_executor& executor);
  virtual ~BearerAuth() = default;
  BearerAuth(const BearerAuth&) = delete;
  BearerAuth& operator=(const BearerAuth&) = delete;

  Task<kms::SecureBytes> access_token();
  // Forgets `used` if it is still the cached token (a 401 answered it).
  boost::asio::awaitable<void> drop_token(const kms::SecureBytes& used);

 protected:
  struct Token {
    kms::SecureBytes value;
    std::chrono::seconds lifetime{3599};
  };
  virtual Task<Token> fetch_token() = 0;

 private:
  AsyncMutex mu_;
  kms::SecureBytes token_;  // guarded by mu_
  std::chrono::steady_clock::time_point expiry_{};
};

// expires_in of a token answer (a number, or a string of digits); 3599 if absent.
std::chrono::seconds expires_in(const boost::json::value& token_answer);

struct CallCounters {
  std::atomic<std::size_t>* calls = nullptr;
  std::atomic<std::size_t>* throttled = nullptr;  // 429s; may be null
};

// One API request with auth's bearer token: a 401 renews the token once;
// 429 and 5xx wait (Retry-After when given, else 200 ms doubling to 8 s) and
// retry; connection errors back off and retry; at most 6 attempts. The last
// answer is returned whatever its status; `who` prefixes transport errors.
boost::asio::awaitable<kms::Result<net::ClientResponse>> bearer_request(BearerAuth& auth, net::HttpClient& client,
                                                                  boost::beast::http::verb verb, const std::string& target,
                                                                  std::string_view body, std::string_view who,
                                                                  CallCounters counters);

}  // namespace rootseal::sync::providers
