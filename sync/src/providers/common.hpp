// Shared pieces of the providers: HTTP clients from a TlsSpec, error mapping,
// an async mutex, a write-rate limiter, the coroutine forms of the
// error macros, Retry-After, the guarded call under a store's health; for the
// push providers the "not managed" refusal, JSON property merge/removal, a
// cached bearer token and the bearer request.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/json/value.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <span>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "providers/store_health.hpp"
#include "rootseal/kms/error.hpp"
#include "rootseal/net/http_client.hpp"
#include "rootseal/sync/provider.hpp"

namespace rootseal::sync::providers {

// An HTTP client for `url` with the spec's trust settings.
kms::Result<std::shared_ptr<net::HttpClient>> make_client(const boost::asio::any_io_executor& executor,
                                                          std::string_view url, const TlsSpec& tls,
                                                          net::ClientOptions options = {});
// The same, presenting a TLS client certificate (PEM) with its key (Vault cert auth).
kms::Result<std::shared_ptr<net::HttpClient>> make_client_with_certificate(const boost::asio::any_io_executor& executor,
                                                                           std::string_view url, const TlsSpec& tls,
                                                                           std::string cert_pem,
                                                                           const kms::SecureBytes& key_pem);

// Maps a non-2xx HTTP status to an error code: 401/403 permission_denied,
// 404 not_found, 408/429/5xx unavailable, other 4xx invalid_argument.
kms::Errc errc_for_status(unsigned status) noexcept;
// True for answers worth retrying (429, 5xx except 501).
bool retryable_status(unsigned status) noexcept;
// Retry-After of an answer, in seconds or as an HTTP date (IMF-fixdate,
// relative to `now`), bounded to [0, StoreHealth::kMaxRetryAfter]; nullopt if
// absent or unreadable.
std::optional<std::chrono::milliseconds> retry_after(
    const net::ClientResponse& r, std::chrono::system_clock::time_point now = std::chrono::system_clock::now());
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value,
                                                           std::chrono::system_clock::time_point now);

// What one attempt of a provider call says about the store.
struct AttemptVerdict {
  bool transient = false;                                // connection error, 5xx, 429, throttling
  std::optional<std::chrono::milliseconds> retry_after;  // the store's own hint
  std::string reason;                                    // for the refusal message (no values)
};
// The verdict on an HTTP answer (or a transport error): `who` prefixes the reason.
AttemptVerdict http_verdict(const kms::Result<net::ClientResponse>& r, std::string_view who);

boost::asio::awaitable<void> sleep_for(std::chrono::milliseconds d);

// One provider call under its store's health (store_health.hpp): it waits for
// the store to take calls (refused locally while it is backed off), makes at
// most two attempts, and a transient failure backs the whole store off; the
// second attempt is made only after a failure of a store that was healthy
// (a blip), and only if the store reopens within the wait budget (never
// before a Retry-After), as the one probe. `send` returns the awaitable
// of one attempt; `verdict` judges its result. The last result is returned.
template <class R, class Send, class Verdict>
boost::asio::awaitable<kms::Result<R>> guarded_call(StoreHealth& health, Send send, Verdict verdict) {
  kms::Result<R> last = kms::fail(kms::Errc::internal, "no attempt");
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto ticket = co_await health.admit();
    if (!ticket) {
      if (attempt == 0) co_return std::unexpected(std::move(ticket).error());
      break;  // the store stays closed: the transient answer we have is the result
    }
    last = co_await send();
    const AttemptVerdict v = verdict(last);
    if (!v.transient) {
      health.succeeded(*ticket);
      break;
    }
    health.failed(*ticket, v.retry_after, v.reason);
    if (ticket->probe) break;  // the store is known to be ill: its next probe is the engine's
  }
  co_return last;
}

// The string member `key` of an object, or empty.
std::string_view json_string(const boost::json::value& v, std::string_view key);

// Current UTC time as seconds since the epoch (injectable for tests).
using WallClock = std::function<std::chrono::system_clock::time_point()>;

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

// Go's json.Marshal of a map[string]string (keys sorted, <, >, & escaped):
// the value metadataPolicy Fetch makes of a secret's metadata (AWS tags,
// Vault metadata), as ESO's providers do.
kms::SecureBytes go_string_map_json(const std::map<std::string, std::string, std::less<>>& m);

// ---- shared by the push providers (`who`: "aws", "azure", "gcp") ----

// permission_denied: `name` exists without the `marker` (tag / label)
// managed-by=rootseal.
std::unexpected<kms::Error> not_managed(std::string_view who, std::string_view name, std::string_view marker);

// The sync engine sharded across hosts (docs/ha.md, docs/push.md): every
// value a push writes records its writer's bucket and epoch as
// "<bucket>-<epoch>" (AWS: in the version's ClientRequestToken; Azure: the
// version's tag rootseal-epoch; GCP: the secret's label rootseal-epoch).
// kEpochMark is that tag/label name; epoch_mark is "" for one host (epoch 0).
inline constexpr std::string_view kEpochMark = "rootseal-epoch";
std::string epoch_mark(const PushRef& ref);
// The epoch `mark` records when it is a newer owner's of ref's bucket (a
// larger epoch than ref.epoch): the writer is a stale owner; else 0 (one
// host, another bucket, no mark, an older or the same owner). `mark` may go
// on after the epoch with '-' and anything (AWS's VersionId).
std::int64_t newer_owner_epoch(const PushRef& ref, std::string_view mark) noexcept;

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
  // What precedes the token in the Authorization header ("Bearer "; Conjur: "Token ").
  [[nodiscard]] virtual std::string_view authorization_scheme() const noexcept { return "Bearer "; }
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

// expires_in of a token answer (a number, or a string of digits); 3599 if
// absent; bounded to 0..24 h before anyone adds it to a clock.
std::chrono::seconds expires_in(const boost::json::value& token_answer);

struct CallCounters {
  std::atomic<std::size_t>* calls = nullptr;
  std::atomic<std::size_t>* throttled = nullptr;  // 429s; may be null
};

// One API request with auth's bearer token, under the store's health
// (guarded_call: 429, 5xx and connection errors back the store off; at most
// two attempts, the second only when the store reopens within the wait
// budget); a 401 renews the token once. The last answer is returned whatever
// its status; `who` prefixes transport errors. `extra` headers go with every
// attempt; a body is sent as application/json unless `extra` names a
// Content-Type.
boost::asio::awaitable<kms::Result<net::ClientResponse>> bearer_request(
    BearerAuth& auth, StoreHealth& health, net::HttpClient& client, boost::beast::http::verb verb,
    const std::string& target, std::string_view body, std::string_view who, CallCounters counters,
    std::span<const net::Header> extra = {});

}  // namespace rootseal::sync::providers
