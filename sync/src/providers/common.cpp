#include "providers/common.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/string.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>

#include "go_json.hpp"
#include "rootseal/kms/encoding.hpp"
#include "secure_buffer.hpp"
#include "secure_json.hpp"

namespace rootseal::sync::providers {

namespace asio = boost::asio;
using kms::Errc;

kms::Result<std::shared_ptr<net::HttpClient>> make_client(const asio::any_io_executor& executor, std::string_view url,
                                                          const TlsSpec& tls, net::ClientOptions options) {
  net::ClientTls t;
  t.ca_pem = tls.ca_pem;
  t.ca_file = tls.ca_file;
  t.insecure_skip_verify = tls.insecure_skip_verify;
  return net::HttpClient::create(executor, url, std::move(t), std::move(options));
}

kms::Result<std::shared_ptr<net::HttpClient>> make_client_with_certificate(const asio::any_io_executor& executor,
                                                                           std::string_view url, const TlsSpec& tls,
                                                                           std::string cert_pem,
                                                                           const kms::SecureBytes& key_pem) {
  net::ClientTls t;
  t.ca_pem = tls.ca_pem;
  t.ca_file = tls.ca_file;
  t.insecure_skip_verify = tls.insecure_skip_verify;
  t.cert_pem = std::move(cert_pem);
  t.key_pem = key_pem.clone();
  return net::HttpClient::create(executor, url, std::move(t), {});
}

kms::Errc errc_for_status(unsigned status) noexcept {
  if (status == 401 || status == 403) return Errc::permission_denied;
  if (status == 404) return Errc::not_found;
  if (status == 408 || status == 429 || status >= 500) return Errc::unavailable;
  return Errc::invalid_argument;
}

bool retryable_status(unsigned status) noexcept { return status == 429 || (status >= 500 && status != 501); }

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view h,
                                                           std::chrono::system_clock::time_point now) {
  using std::chrono::milliseconds;
  while (!h.empty() && h.front() == ' ') h.remove_prefix(1);
  while (!h.empty() && h.back() == ' ') h.remove_suffix(1);
  if (h.empty()) return std::nullopt;
  const auto bound = [](std::int64_t ms) {
    return std::clamp(milliseconds(ms), milliseconds(0), StoreHealth::kMaxRetryAfter);
  };
  if (h.find_first_not_of("0123456789") == std::string_view::npos) {
    if (h.size() > 9) return StoreHealth::kMaxRetryAfter;  // absurdly long: the cap
    std::int64_t seconds = 0;
    std::from_chars(h.data(), h.data() + h.size(), seconds);
    return bound(seconds * 1000);
  }
  // HTTP-date, IMF-fixdate only (RFC 9110 5.6.7): "Sun, 06 Nov 1994 08:49:37 GMT".
  if (h.size() != 29 || h[3] != ',' || h.substr(25) != " GMT") return std::nullopt;
  static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const auto num = [&](std::size_t pos, std::size_t len, int& out) {
    auto [end, ec] = std::from_chars(h.data() + pos, h.data() + pos + len, out);
    return ec == std::errc{} && end == h.data() + pos + len;
  };
  int day = 0, year = 0, hh = 0, mm = 0, ss = 0;
  int month = -1;
  for (int i = 0; i < 12; ++i) {
    if (h.substr(8, 3) == kMonths[i]) month = i;
  }
  if (month < 0 || h[4] != ' ' || h[7] != ' ' || h[11] != ' ' || h[16] != ' ' || h[19] != ':' || h[22] != ':' ||
      !num(5, 2, day) || !num(12, 4, year) || !num(17, 2, hh) || !num(20, 2, mm) || !num(23, 2, ss) || day < 1 ||
      day > 31 || hh > 23 || mm > 59 || ss > 60) {
    return std::nullopt;
  }
  const std::chrono::year_month_day ymd{std::chrono::year(year), std::chrono::month(static_cast<unsigned>(month + 1)),
                                        std::chrono::day(static_cast<unsigned>(day))};
  if (!ymd.ok()) return std::nullopt;
  const auto when =
      std::chrono::sys_days(ymd) + std::chrono::hours(hh) + std::chrono::minutes(mm) + std::chrono::seconds(ss);
  const auto delta = std::chrono::duration_cast<milliseconds>(when - now);
  return bound(delta.count());
}

std::optional<std::chrono::milliseconds> retry_after(const net::ClientResponse& r,
                                                     std::chrono::system_clock::time_point now) {
  auto h = r.header("Retry-After");
  if (!h) return std::nullopt;
  return parse_retry_after(*h, now);
}

AttemptVerdict http_verdict(const kms::Result<net::ClientResponse>& r, std::string_view who) {
  AttemptVerdict v;
  if (!r) {
    v.transient = r.error().code == Errc::unavailable;
    v.reason = std::string(who) + ": " + r.error().message;
    return v;
  }
  if (!retryable_status(r->status)) return v;
  v.transient = true;
  v.retry_after = retry_after(*r);
  v.reason = std::string(who) + " answered " + std::to_string(r->status);
  return v;
}

std::string_view json_string(const boost::json::value& v, std::string_view key) {
  if (!v.is_object()) return {};
  const auto* m = v.as_object().if_contains(key);
  if (m == nullptr || !m->is_string()) return {};
  return std::string_view(m->as_string());
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  boost::system::error_code ec;
  co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

AsyncMutex::AsyncMutex(const asio::any_io_executor& executor) : token_(executor, 1) {
  token_.try_send(boost::system::error_code{});
}

asio::awaitable<void> AsyncMutex::lock() {
  boost::system::error_code ec;
  co_await token_.async_receive(asio::redirect_error(asio::use_awaitable, ec));
}

void AsyncMutex::unlock() { token_.try_send(boost::system::error_code{}); }

RateLimiter::RateLimiter(double per_second, double burst)
    : rate_(per_second > 0 ? per_second : 1),
      burst_(burst >= 1 ? burst : 1),
      tokens_(burst_),
      last_(std::chrono::steady_clock::now()) {}

asio::awaitable<void> RateLimiter::acquire() {
  std::chrono::nanoseconds wait{0};
  {
    std::lock_guard lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
    tokens_ -= 1;  // may go negative: later callers queue up behind
    ++acquired_;
    if (tokens_ < 0) wait = std::chrono::nanoseconds(static_cast<long long>(std::ceil(-tokens_ / rate_ * 1e9)));
  }
  if (wait.count() > 0) co_await sleep_for(std::chrono::ceil<std::chrono::milliseconds>(wait));
}

std::size_t RateLimiter::acquired() const {
  std::lock_guard lock(const_cast<std::mutex&>(mu_));
  return acquired_;
}

bool is_utf8(std::span<const std::uint8_t> s) noexcept {
  std::size_t i = 0;
  while (i < s.size()) {
    const std::uint8_t c = s[i];
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1Fu;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0Fu;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07u;
    } else {
      return false;
    }
    for (std::size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size() || (s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3Fu);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

std::unexpected<kms::Error> not_managed(std::string_view who, std::string_view name, std::string_view marker) {
  return std::unexpected(
      kms::Error(Errc::permission_denied, std::string(who) + ": secret \"" + std::string(name) +
                                              "\" exists and is not managed by rootseal (" + std::string(marker) +
                                              " managed-by=rootseal missing); refusing to overwrite it"));
}

std::string epoch_mark(const PushRef& ref) {
  if (ref.epoch <= 0) return {};
  return std::to_string(ref.bucket) + "-" + std::to_string(ref.epoch);
}

std::int64_t newer_owner_epoch(const PushRef& ref, std::string_view mark) noexcept {
  if (ref.epoch <= 0) return 0;
  const char* end = mark.data() + mark.size();
  std::uint32_t bucket = 0;
  std::int64_t epoch = 0;
  const auto b = std::from_chars(mark.data(), end, bucket);
  if (b.ec != std::errc() || b.ptr == mark.data() || b.ptr == end || *b.ptr != '-') return 0;
  const auto e = std::from_chars(b.ptr + 1, end, epoch);
  if (e.ec != std::errc() || e.ptr == b.ptr + 1 || (e.ptr != end && *e.ptr != '-')) return 0;
  return bucket == ref.bucket && epoch > ref.epoch ? epoch : 0;
}

kms::Result<kms::SecureBytes> with_property(std::string_view who, const kms::SecureBytes* current,
                                            const std::string& property, const kms::SecureBytes& value) {
  namespace json = boost::json;
  if (property.empty()) return value.clone();
  if (!is_utf8(value.span())) {
    return kms::fail(Errc::invalid_argument, std::string(who) + ": a value pushed into a property must be UTF-8 text");
  }
  auto sp = make_secure_storage();
  json::object obj(sp);
  if (current != nullptr && !current->empty()) {
    auto doc = SecureJson::parse(current->span());
    if (!doc || !(*doc)->root().is_object()) {
      return kms::fail(
          Errc::invalid_argument,
          std::string(who) + ": the remote value is not a JSON object; cannot set property \"" + property + "\"");
    }
    for (const auto& kv : (*doc)->root().as_object()) obj.emplace(kv.key(), json::value(kv.value(), sp));
  }
  obj[property] = json::string(as_view(value), sp);
  SecureBuffer out(64 + value.size());
  serialize_json(obj, out);
  return out.take();
}

std::optional<kms::SecureBytes> without_property(const kms::SecureBytes& current, const std::string& property) {
  namespace json = boost::json;
  auto doc = SecureJson::parse(current.span());
  if (!doc || !(*doc)->root().is_object()) return std::nullopt;
  auto sp = make_secure_storage();
  json::object obj(sp);
  for (const auto& kv : (*doc)->root().as_object()) {
    if (kv.key() != property) obj.emplace(kv.key(), json::value(kv.value(), sp));
  }
  if (obj.empty()) return std::nullopt;
  SecureBuffer out(64 + current.size());
  serialize_json(obj, out);
  return out.take();
}

BearerAuth::BearerAuth(const asio::any_io_executor& executor) : mu_(executor) {}

Task<kms::SecureBytes> BearerAuth::access_token() {
  co_await mu_.lock();
  if (!token_.empty() && std::chrono::steady_clock::now() < expiry_) {
    auto cached = token_.clone();
    mu_.unlock();
    co_return cached;
  }
  token_.clear();
  auto fetched = co_await fetch_token();
  if (!fetched) {
    mu_.unlock();
    co_return std::unexpected(fetched.error());
  }
  const std::int64_t ttl = fetched->lifetime.count();
  const std::int64_t margin = std::min<std::int64_t>(300, ttl / 10);
  token_ = std::move(fetched->value);
  expiry_ = std::chrono::steady_clock::now() + std::chrono::seconds(std::max<std::int64_t>(1, ttl - margin));
  auto out = token_.clone();
  mu_.unlock();
  co_return out;
}

asio::awaitable<void> BearerAuth::drop_token(const kms::SecureBytes& used) {
  co_await mu_.lock();
  if (!token_.empty() && token_ == used) token_.clear();
  mu_.unlock();
}

std::chrono::seconds expires_in(const boost::json::value& answer) {
  std::int64_t ttl = 3599;
  const auto* e = answer.is_object() ? answer.as_object().if_contains("expires_in") : nullptr;
  if (e != nullptr && e->is_int64()) {
    ttl = e->as_int64();
  } else if (e != nullptr && e->is_string()) {
    const auto& s = e->as_string();
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc{} && end == s.data() + s.size()) ttl = v;
  }
  // The provider's number is outside input: the caller adds it to the clock,
  // so it is bounded first (a token lives a day at most; a negative one is spent).
  constexpr std::int64_t kMaxTokenLifetime = 24 * 3600;
  return std::chrono::seconds(std::clamp<std::int64_t>(ttl, 0, kMaxTokenLifetime));
}

asio::awaitable<kms::Result<net::ClientResponse>> bearer_request(BearerAuth& auth, StoreHealth& health,
                                                                 net::HttpClient& client, boost::beast::http::verb verb,
                                                                 const std::string& target, std::string_view body,
                                                                 std::string_view who, CallCounters counters,
                                                                 std::span<const net::Header> extra) {
  bool renewed = false;
  for (;;) {
    auto token = co_await auth.access_token();
    if (!token) co_return std::unexpected(token.error());
    SecureBuffer bearer(token->size() + 8);
    bearer.append(auth.authorization_scheme());
    bearer.append(token->span());
    std::vector<net::Header> headers = {{"Authorization", bearer.view()}};
    headers.insert(headers.end(), extra.begin(), extra.end());
    const bool typed = std::any_of(extra.begin(), extra.end(),
                                   [](const net::Header& h) { return boost::beast::iequals(h.name, "Content-Type"); });
    if (!body.empty() && !typed) headers.push_back({"Content-Type", "application/json"});
    const auto send = [&] {
      if (counters.calls != nullptr) ++*counters.calls;
      return client.request(verb, target, headers, body);
    };
    const auto verdict = [&](const kms::Result<net::ClientResponse>& r) {
      if (r && r->status == 429 && counters.throttled != nullptr) ++*counters.throttled;
      return http_verdict(r, who);
    };
    auto last = co_await guarded_call<net::ClientResponse>(health, send, verdict);
    if (last && last->status == 401 && !renewed) {
      renewed = true;
      co_await auth.drop_token(*token);
      continue;
    }
    if (!last) co_return kms::fail(last.error().code, std::string(who) + ": " + last.error().message);
    co_return last;
  }
}

kms::SecureBytes go_string_map_json(const std::map<std::string, std::string, std::less<>>& m) {
  SecureBuffer out(64);
  out.push_back('{');
  for (const auto& [k, v] : m) {
    if (out.size() > 1) out.push_back(',');
    gojson::append_go_string(out, k);
    out.push_back(':');
    gojson::append_go_string(out, v);
  }
  out.push_back('}');
  return out.take();
}

}  // namespace rootseal::sync::providers

namespace rootseal::sync {

Task<SecretMap> Provider::find(const FindRequest&) {
  co_return kms::fail(kms::Errc::invalid_argument,
                      std::string(kind()) + ": dataFrom.find is not supported by rootseal for this provider");
}

Task<kms::SecureBytes> Provider::fetch_metadata(const RemoteKey&) {
  co_return kms::fail(kms::Errc::invalid_argument,
                      std::string(kind()) + ": metadataPolicy Fetch is not supported by rootseal for this provider");
}

}  // namespace rootseal::sync
