#include "rootseal/etcd/client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>

#include "gateway_json.hpp"
#include "rootseal/kms/secure_buffer.hpp"
#include "rootseal/kms/secure_json.hpp"

namespace rootseal::etcd {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using kms::Errc;
using kms::fail;

std::string prefix_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

Compare Compare::mod_revision(std::string key, std::int64_t rev, Result r) {
  return {std::move(key), Target::mod_revision, r, rev, {}, {}};
}
Compare Compare::create_revision(std::string key, std::int64_t rev, Result r) {
  return {std::move(key), Target::create_revision, r, rev, {}, {}};
}
Compare Compare::version(std::string key, std::int64_t version, Result r) {
  return {std::move(key), Target::version, r, version, {}, {}};
}
Compare Compare::value_is(std::string key, std::string value, Result r) {
  return {std::move(key), Target::value, r, 0, std::move(value), {}};
}

namespace {

// How a call may be sent again to another endpoint after an unknown outcome.
enum class Resend { allowed, only_if_not_applied };
// Whether the answer's raft term is checked against the highest seen (reads:
// a written answer was committed whatever the member's term).
enum class Guard { term, none };

void append_json_string(kms::SecureBuffer& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(ch);
    } else if (c < 0x20) {
      const char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
      out.append(std::string_view(esc, 6));
    } else {
      out.push_back(ch);
    }
  }
  out.push_back('"');
}

}  // namespace

struct KeepAlive::State {
  std::mutex mu;
  bool stopped = false;
  std::atomic<bool> lost{false};
  std::atomic<std::size_t> sent{0};
  std::shared_ptr<asio::steady_timer> timer;
};

struct Client::Impl : std::enable_shared_from_this<Impl> {
  struct Endpoint {
    std::string url;
    std::shared_ptr<net::HttpClient> http;
  };

  asio::any_io_executor executor;
  ClientConfig config;
  std::vector<Endpoint> endpoints;
  std::atomic<std::size_t> preferred{0};
  detail::TermGuard terms;

  std::mutex token_mu;
  kms::SecureBytes token;  // guarded by token_mu; empty = none yet

  void prefer_next(std::size_t failed) {
    std::size_t expected = failed;
    preferred.compare_exchange_strong(expected, (failed + 1) % endpoints.size());
  }

  kms::SecureBytes current_token() {
    std::lock_guard lock(token_mu);
    return kms::SecureBytes::copy_of(token.span());
  }

  // POST /v3/auth/authenticate on one endpoint; the token is kept.
  asio::awaitable<kms::Result<void>> authenticate(Endpoint& ep) {
    kms::SecureBuffer body;
    body.append("{\"name\":");
    append_json_string(body, config.username);
    body.append(",\"password\":");
    append_json_string(body, kms::as_view(config.password));
    body.append("}");
    const net::Header headers[] = {{"Content-Type", "application/json"}};
    auto r = co_await ep.http->request(http::verb::post, "/v3/auth/authenticate", headers, body.view());
    if (!r) co_return std::unexpected(std::move(r).error());
    if (r->status != 200) co_return std::unexpected(detail::gateway_error(r->status, r->body.view()));
    boost::system::error_code ec;
    auto storage = kms::secure_json_storage(1024, std::size_t{64} * 1024);
    json::value v;
    try {
      v = kms::parse_into(r->body.view(), storage, ec);
    } catch (const std::bad_alloc&) {
      co_return fail(Errc::invalid_argument, "etcd: the authentication answer is too large");
    }
    const auto* o = ec ? nullptr : v.if_object();
    const auto* t = o != nullptr ? o->if_contains("token") : nullptr;
    if (t == nullptr || !t->is_string() || t->get_string().empty()) {
      co_return fail(Errc::invalid_argument, "etcd: the authentication answer has no token");
    }
    std::lock_guard lock(token_mu);
    token = kms::SecureBytes::copy_of(std::string_view(t->get_string()));
    co_return kms::Result<void>{};
  }

  // One gateway call on one endpoint, authenticated (once more after an
  // invalid-token answer). The parsed answer or the mapped error.
  asio::awaitable<kms::Result<json::object>> call_on(Endpoint& ep, std::string_view path, std::string_view body,
                                                     Guard guard) {
    const bool auth = !config.username.empty();
    for (int round = 0; round < 2; ++round) {
      if (auth) {
        bool have = false;
        {
          std::lock_guard lock(token_mu);
          have = !token.empty();
        }
        if (!have) ROOTSEAL_CO_TRY(co_await authenticate(ep));
      }
      kms::SecureBytes tok = auth ? current_token() : kms::SecureBytes();
      std::vector<net::Header> headers{{"Content-Type", "application/json"}};
      if (auth) headers.push_back({"Authorization", kms::as_view(tok)});
      auto r = co_await ep.http->request(http::verb::post, path, headers, body);
      if (!r) co_return std::unexpected(std::move(r).error());
      if (r->status != 200) {
        auto err = detail::gateway_error(r->status, r->body.view());
        if (auth && round == 0 && detail::is_invalid_token(err)) {
          std::lock_guard lock(token_mu);
          token.clear();
          continue;
        }
        co_return std::unexpected(std::move(err));
      }
      ROOTSEAL_CO_LET(answer, detail::parse_object(r->body.view()));
      if (guard == Guard::term) {
        ROOTSEAL_CO_LET(h, detail::parse_header(answer));
        if (!terms.accept(h.raft_term)) {
          co_return fail(Errc::unavailable, "etcd: stale member " + ep.url + " answered from raft term " +
                                                std::to_string(h.raft_term) + ", older than term " +
                                                std::to_string(terms.highest()) + " already seen");
        }
      } else if (auto h = detail::parse_header(answer); h) {
        (void)terms.accept(h->raft_term);
      }
      co_return answer;
    }
    co_return fail(Errc::permission_denied, "etcd: the authentication token was refused twice");
  }

  // The call with failover: the preferred endpoint, then the others (one
  // round). An unknown outcome is sent again only when `resend` allows it.
  asio::awaitable<kms::Result<std::pair<json::object, int>>> call(std::string_view path, std::string body,
                                                                  Resend resend, Guard guard) {
    auto self = shared_from_this();
    const std::size_t n = endpoints.size();
    const std::size_t first = preferred.load();
    kms::Error last{Errc::unavailable, "etcd: no endpoint"};
    int attempts = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t idx = (first + i) % n;
      ++attempts;
      auto r = co_await call_on(endpoints[idx], path, body, guard);
      if (r) {
        preferred.store(idx);
        co_return std::pair{std::move(*r), attempts};
      }
      last = std::move(r).error();
      if (last.code != Errc::unavailable) co_return std::unexpected(std::move(last));
      prefer_next(idx);
      if (resend == Resend::only_if_not_applied && !detail::surely_not_applied(last)) {
        co_return fail(Errc::unavailable, last.message + " (outcome unknown: the request may have been applied)");
      }
    }
    co_return fail(Errc::unavailable, last.message + " (no endpoint of " + std::to_string(n) + " answered)");
  }
};

Client::Client(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

kms::Result<std::shared_ptr<Client>> Client::create(asio::any_io_executor executor, ClientConfig config) {
  if (config.endpoints.empty()) return fail(Errc::invalid_argument, "etcd: no endpoint configured");
  if (config.username.empty() != config.password.empty()) {
    return fail(Errc::invalid_argument, "etcd: a username needs a password and a password a username");
  }
  auto impl = std::make_shared<Impl>();
  impl->executor = executor;
  net::ClientOptions opts;
  opts.connect_timeout = config.connect_timeout;
  opts.handshake_timeout = config.connect_timeout;
  opts.request_timeout = config.request_timeout;
  opts.stream_idle_timeout = config.watch_idle_timeout;
  opts.max_connections = 8;
  opts.max_response_bytes = 64u << 20;
  opts.max_line_bytes = 64u << 20;
  opts.user_agent = "rootseal-etcd";
  for (const auto& url : config.endpoints) {
    net::ClientTls tls;
    tls.ca_file = config.tls.ca_file;
    tls.ca_pem = config.tls.ca_pem;
    tls.cert_file = config.tls.cert_file;
    tls.key_file = config.tls.key_file;
    tls.cert_pem = config.tls.cert_pem;
    tls.key_pem = kms::SecureBytes::copy_of(config.tls.key_pem.span());
    tls.server_name = config.tls.server_name;
    tls.insecure_skip_verify = config.tls.insecure_skip_verify;
    tls.min_version = config.tls.min_version;
    auto http = net::HttpClient::create(executor, url, std::move(tls), opts);
    if (!http) return fail(http.error().code, "etcd: endpoint " + url + ": " + http.error().message);
    impl->endpoints.push_back({url, std::move(*http)});
  }
  impl->config = std::move(config);
  return std::shared_ptr<Client>(new Client(std::move(impl)));
}

asio::awaitable<kms::Result<RangeResponse>> Client::range(RangeRequest request) {
  ROOTSEAL_CO_LET(r, co_await impl_->call("/v3/kv/range", detail::range_body(request), Resend::allowed, Guard::term));
  co_return detail::parse_range(r.first);
}

asio::awaitable<kms::Result<PutResponse>> Client::put(PutRequest request) {
  ROOTSEAL_CO_LET(
      r, co_await impl_->call("/v3/kv/put", detail::put_body(request), Resend::only_if_not_applied, Guard::none));
  co_return detail::parse_put(r.first);
}

asio::awaitable<kms::Result<DeleteResponse>> Client::delete_range(DeleteRequest request) {
  ROOTSEAL_CO_LET(r, co_await impl_->call("/v3/kv/deleterange", detail::delete_body(request),
                                          Resend::only_if_not_applied, Guard::none));
  co_return detail::parse_delete(r.first);
}

asio::awaitable<kms::Result<TxnResponse>> Client::txn(TxnRequest request) {
  ROOTSEAL_CO_LET(r, co_await impl_->call("/v3/kv/txn", detail::txn_body(request), Resend::allowed, Guard::none));
  ROOTSEAL_CO_LET(out, detail::parse_txn(r.first));
  out.attempts = r.second;
  co_return out;
}

asio::awaitable<kms::Result<EndpointStatus>> Client::status(std::size_t index) {
  if (index >= impl_->endpoints.size()) co_return fail(Errc::invalid_argument, "etcd: no such endpoint");
  auto& ep = impl_->endpoints[index];
  ROOTSEAL_CO_LET(answer, co_await impl_->call_on(ep, "/v3/maintenance/status", "{}", Guard::none));
  ROOTSEAL_CO_LET(out, detail::parse_status(answer));
  out.endpoint = ep.url;
  co_return out;
}

std::vector<std::string> Client::endpoints() const {
  std::vector<std::string> out;
  for (const auto& e : impl_->endpoints) out.push_back(e.url);
  return out;
}

asio::awaitable<kms::Result<Lease>> Client::lease_grant(std::chrono::seconds ttl) {
  if (ttl.count() <= 0) co_return fail(Errc::invalid_argument, "etcd: a lease TTL must be positive");
  const std::string body = "{\"TTL\":\"" + std::to_string(ttl.count()) + "\"}";
  ROOTSEAL_CO_LET(r, co_await impl_->call("/v3/lease/grant", body, Resend::only_if_not_applied, Guard::none));
  co_return detail::parse_lease_grant(r.first);
}

asio::awaitable<kms::Result<void>> Client::lease_revoke(std::int64_t id) {
  const std::string body = "{\"ID\":\"" + std::to_string(id) + "\"}";
  ROOTSEAL_CO_LET(r, co_await impl_->call("/v3/lease/revoke", body, Resend::allowed, Guard::none));
  (void)r;
  co_return kms::Result<void>{};
}

asio::awaitable<kms::Result<Lease>> Client::lease_keepalive(std::int64_t id) {
  const std::string body = "{\"ID\":\"" + std::to_string(id) + "\"}";
  ROOTSEAL_CO_LET(r, co_await impl_->call("/v3/lease/keepalive", body, Resend::allowed, Guard::none));
  co_return detail::parse_keepalive(r.first);
}

std::shared_ptr<KeepAlive> Client::keep_alive(std::int64_t id, std::function<void(const kms::Error&)> on_lost) {
  auto state = std::make_shared<KeepAlive::State>();
  state->timer = std::make_shared<asio::steady_timer>(impl_->executor);
  auto impl = impl_;
  auto loop = [](std::shared_ptr<Client::Impl> shared, std::shared_ptr<KeepAlive::State> st, std::int64_t lease,
                 std::function<void(const kms::Error&)> lost_cb) -> asio::awaitable<void> {
    Client client(std::move(shared));  // a handle sharing the Impl (the loop keeps it alive)
    while (true) {
      {
        std::lock_guard lock(st->mu);
        if (st->stopped) break;
      }
      auto r = co_await client.lease_keepalive(lease);
      std::chrono::milliseconds pause{200};
      if (r) {
        st->sent.fetch_add(1);
        pause = std::max(std::chrono::milliseconds(r->ttl * 1000 / 3), std::chrono::milliseconds(100));
      } else if (r.error().code == Errc::not_found) {
        st->lost.store(true);
        bool stopped = false;
        {
          std::lock_guard lock(st->mu);
          stopped = st->stopped;
        }
        if (lost_cb && !stopped) lost_cb(r.error());
        break;
      }
      st->timer->expires_after(pause);
      (void)co_await st->timer->async_wait(asio::as_tuple(asio::use_awaitable));
    }
  };
  asio::co_spawn(impl_->executor, loop(impl, state, id, std::move(on_lost)), asio::detached);
  return std::make_shared<KeepAlive>(state);
}

asio::awaitable<kms::Result<WatchEnd>> Client::watch(WatchRequest request, EventHandler on_events,
                                                     net::StreamControl control) {
  auto impl = impl_;
  std::int64_t next = request.start_revision;  // 0 until the first answer says where "now" is
  std::chrono::milliseconds pause{50};
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (true) {
    if (control.cancelled()) co_return WatchEnd{WatchEnd::Reason::cancelled, 0, next};
    const std::size_t idx = impl->preferred.load();
    auto& ep = impl->endpoints[idx];
    WatchRequest req = request;
    req.start_revision = next;
    const std::string body = detail::watch_body(req);
    std::optional<WatchEnd> end;
    bool delivered = false;
    auto on_line = [&](std::string_view line) -> kms::Result<bool> {
      ROOTSEAL_LET(w, detail::parse_watch_line(line));
      if (w.header.raft_term != 0 && !impl->terms.accept(w.header.raft_term)) {
        return fail(Errc::unavailable, "etcd: stale member " + ep.url + " on the watch");
      }
      if (w.canceled) {
        if (w.compact_revision != 0) {
          end = WatchEnd{WatchEnd::Reason::compacted, w.compact_revision, next};
          return false;
        }
        return std::unexpected(detail::watch_cancel_error(w.cancel_reason));
      }
      if (w.created && next == 0) next = w.header.revision + 1;
      std::vector<Event> fresh;
      for (auto& ev : w.events) {
        if (ev.kv.mod_revision >= next) fresh.push_back(std::move(ev));
      }
      if (!fresh.empty()) {
        next = fresh.back().kv.mod_revision + 1;
        delivered = true;
        on_events(fresh, w.header);
      }
      return true;
    };
    const bool auth = !impl->config.username.empty();
    kms::Result<net::ClientResponse> r = fail(Errc::internal, "etcd: no watch attempt");
    if (auth) {
      bool have = false;
      {
        std::lock_guard lock(impl->token_mu);
        have = !impl->token.empty();
      }
      if (!have) {
        auto a = co_await impl->authenticate(ep);
        if (!a) r = std::unexpected(std::move(a).error());
      }
    }
    if (!auth || r.error().code == Errc::internal) {
      kms::SecureBytes tok = auth ? impl->current_token() : kms::SecureBytes();
      std::vector<net::Header> headers{{"Content-Type", "application/json"}};
      if (auth) headers.push_back({"Authorization", kms::as_view(tok)});
      r = co_await ep.http->stream(http::verb::post, "/v3/watch", headers, body, on_line, control);
    }
    if (end) co_return *end;
    if (control.cancelled()) co_return WatchEnd{WatchEnd::Reason::cancelled, 0, next};
    kms::Error err{Errc::unavailable, "etcd: the watch stream ended"};
    if (!r) {
      err = std::move(r).error();
    } else if (r->status != 200) {
      err = detail::gateway_error(r->status, r->body.view());
    }
    if (err.code == Errc::compacted) co_return WatchEnd{WatchEnd::Reason::compacted, 0, next};
    if (auth && detail::is_invalid_token(err)) {  // authenticate again, then reopen
      std::lock_guard lock(impl->token_mu);
      impl->token.clear();
    } else if (err.code != Errc::unavailable) {
      co_return std::unexpected(std::move(err));
    }
    impl->prefer_next(idx);
    if (delivered) pause = std::chrono::milliseconds(50);
    timer.expires_after(pause);
    (void)co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    pause = std::min(pause * 2, impl->config.watch_retry_max);
  }
}

std::uint64_t Client::highest_raft_term() const noexcept { return impl_->terms.highest(); }

std::string Client::preferred_endpoint() const { return impl_->endpoints[impl_->preferred.load()].url; }

KeepAlive::KeepAlive(std::shared_ptr<State> state) : state_(std::move(state)) {}

// stop() throws only when a mutex or an allocation fails: std::terminate is
// the right end then.
KeepAlive::~KeepAlive() { stop(); }  // NOLINT(bugprone-exception-escape)

void KeepAlive::stop() {
  {
    std::lock_guard lock(state_->mu);
    if (state_->stopped) return;
    state_->stopped = true;
  }
  auto timer = state_->timer;
  asio::post(timer->get_executor(), [timer] { timer->cancel(); });
}

bool KeepAlive::lost() const noexcept { return state_->lost.load(); }
std::size_t KeepAlive::sent() const noexcept { return state_->sent.load(); }

}  // namespace rootseal::etcd
