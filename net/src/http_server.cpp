#include "rootseal/net/http_server.hpp"

#include <fcntl.h>

#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <list>
#include <mutex>
#include <unordered_map>

#include "rootseal/kms/encoding.hpp"

namespace rootseal::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// The connection's read buffer: it holds the raw requests (tokens, plaintext).
using ReadBuffer = beast::basic_flat_buffer<kms::SecureAllocator<char>>;

// Wipes every byte of `buffer` that is not unread input: what the parser has
// consumed stays in a flat buffer until overwritten. (prepare() of all the
// free room moves unread bytes to the front, so the room it returns is all of
// the rest.)
// NOLINTNEXTLINE(bugprone-exception-escape): prepare() throws only when size() + n > max_size(); here n is the free room.
void wipe_consumed(ReadBuffer& buffer) noexcept {
  const auto room = buffer.prepare(buffer.capacity() - buffer.size());
  kms::secure_zero(room.data(), room.size());
}

void set_cloexec(int fd) noexcept {
  const int flags = ::fcntl(fd, F_GETFD);
  if (flags >= 0) (void)::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

Response error_response(unsigned status, std::string_view message, unsigned version) {
  std::string body = R"({"errors":[")";
  body += message;  // fixed internal strings only; never client input
  body += R"("]})";
  return json_response(status, body, version, false);
}

}  // namespace

Response json_response(unsigned status, std::string_view body, unsigned version, bool keep_alive) {
  Response res{static_cast<http::status>(status), version};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  res.body() = SecureBuffer(body);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  return res;
}

struct HttpServer::Impl : std::enable_shared_from_this<Impl> {
  struct Connection {
    beast::tcp_stream* stream = nullptr;
    asio::any_io_executor executor;
    std::uint64_t id = 0;
    bool busy = false;  // a request is being processed
  };

  Impl(asio::io_context& io_, ServerLimits limits_, Handler handler_)
      : io(io_), limits(limits_), handler(std::move(handler_)), acceptor(asio::make_strand(io_)) {}

  asio::io_context& io;
  ServerLimits limits;
  Handler handler;
  tcp::acceptor acceptor;
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> connections{0};
  std::mutex mu;
  std::list<Connection> live;               // guarded by mu
  std::uint64_t next_id = 0;                // guarded by mu
  std::shared_ptr<asio::ssl::context> tls;  // guarded by mu; read once per accepted connection
  // Open connections per client address (guarded by per_client_mu); an
  // address leaves the map with its last connection.
  std::mutex per_client_mu;
  std::unordered_map<asio::ip::address, std::size_t> per_client;
  std::atomic<std::uint64_t> rejected_per_client{0};

  // Counts a connection from `address`; false (not counted) if it already has the maximum.
  bool admit(const asio::ip::address& address) {
    if (limits.max_connections_per_client == 0) return true;
    std::lock_guard lock(per_client_mu);
    auto& n = per_client[address];
    if (n >= limits.max_connections_per_client) return false;
    ++n;
    return true;
  }
  void release(const asio::ip::address& address) {
    if (limits.max_connections_per_client == 0) return;
    std::lock_guard lock(per_client_mu);
    auto it = per_client.find(address);
    if (it != per_client.end() && --it->second == 0) per_client.erase(it);
  }

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    while (!stopping.load()) {
      auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(io), kTuple);
      if (ec) {
        if (ec == asio::error::operation_aborted || stopping.load()) break;
        continue;  // EMFILE, ECONNABORTED ...: keep serving the others
      }
      set_cloexec(socket.native_handle());
      boost::system::error_code rec;
      const auto remote = socket.remote_endpoint(rec);
      if (rec || connections.load() >= limits.max_connections) {
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      // One client (address) cannot hold all of max_connections.
      if (!admit(remote.address())) {
        rejected_per_client.fetch_add(1, std::memory_order_relaxed);
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      connections.fetch_add(1);
      // A response leaves in several writes (TLS records, a large body in
      // pieces): with Nagle's algorithm the last small segment waits for the
      // client's delayed ACK, up to 40 ms on Linux. Request/response traffic
      // wants every write on the wire at once.
      boost::system::error_code nodelay_ec;
      socket.set_option(tcp::no_delay(true), nodelay_ec);
      auto executor = socket.get_executor();
      asio::co_spawn(executor, session(self, std::move(socket), remote), asio::detached);
    }
  }

  static asio::awaitable<void> session(std::shared_ptr<Impl> self, tcp::socket socket, tcp::endpoint remote) {
    PeerInfo peer;
    boost::system::error_code ec;
    peer.remote = remote;
    std::shared_ptr<asio::ssl::context> tls;
    {
      std::lock_guard lock(self->mu);
      tls = self->tls;
    }
    if (tls) {
      beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), *tls);
      auto& raw = beast::get_lowest_layer(stream);
      raw.expires_after(self->limits.header_timeout);
      auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::server, kTuple);
      if (!hec) {
        peer.tls = true;
        describe_client_certificate(stream.native_handle(), peer);
        co_await self->run(stream, raw, peer);
        raw.expires_after(std::chrono::seconds(1));
        (void)co_await stream.async_shutdown(kTuple);  // close_notify, bounded
      }
      raw.socket().close(ec);
    } else {
      beast::tcp_stream stream(std::move(socket));
      co_await self->run(stream, stream, peer);
      // Lingering close: after an early answer (413, 400) the client may still
      // be sending; closing with unread data would reset the connection and the
      // client could lose the answer. Half-close, then discard what arrives for
      // a bounded time and volume.
      stream.socket().shutdown(tcp::socket::shutdown_send, ec);
      stream.expires_after(std::chrono::seconds(1));
      std::array<char, 4096> sink;
      for (std::size_t drained = 0; drained < (1u << 20);) {
        auto [rec, n] = co_await stream.async_read_some(asio::buffer(sink), kTuple);
        if (rec) break;
        drained += n;
      }
      stream.socket().close(ec);
    }
    self->release(peer.remote.address());
    self->connections.fetch_sub(1);
  }

  // The verified client certificate, if any (mutual TLS).
  static void describe_client_certificate(SSL* ssl, PeerInfo& peer) {
    X509* cert = SSL_get1_peer_certificate(ssl);
    if (cert == nullptr) return;
    if (SSL_get_verify_result(ssl) == X509_V_OK) {
      char* subject = X509_NAME_oneline(X509_get_subject_name(cert), nullptr, 0);
      if (subject != nullptr) {
        peer.client_subject = subject;
        OPENSSL_free(subject);
      }
      unsigned char md[EVP_MAX_MD_SIZE];
      unsigned int len = 0;
      if (X509_digest(cert, EVP_sha256(), md, &len) == 1) {
        peer.client_cert_sha256 = kms::hex_encode(std::span<const std::uint8_t>(md, len));
      }
    }
    X509_free(cert);
  }

  // Registers the connection (so stop() can reach it) and serves it.
  template <class Stream>
  asio::awaitable<void> run(Stream& stream, beast::tcp_stream& raw, const PeerInfo& peer) {
    std::list<Connection>::iterator me;
    {
      std::lock_guard lock(mu);
      me = live.insert(live.end(), Connection{&raw, raw.get_executor(), ++next_id, false});
    }
    co_await serve(stream, raw, peer, *me);
    std::lock_guard lock(mu);
    live.erase(me);
  }

  template <class Stream>
  asio::awaitable<void> serve(Stream& stream, beast::tcp_stream& raw, const PeerInfo& peer, Connection& conn) {
    ReadBuffer buffer(limits.max_header_bytes + 4096);
    for (std::size_t served = 0; served < limits.max_requests_per_connection; ++served) {
      if (stopping.load()) co_return;
      http::request_parser<SecureBody, kms::SecureAllocator<char>> parser;
      parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
      parser.body_limit(limits.max_body_bytes);

      raw.expires_after(served == 0 ? limits.header_timeout : limits.idle_timeout);
      auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, kTuple);
      (void)hn;
      if (hec) {
        if (hec == http::error::header_limit) {
          co_await write(stream, raw, error_response(431, "request header too large", 11));
        } else if (hec == http::error::body_limit) {
          // A Content-Length over the limit is refused as soon as the header is read.
          co_await write(stream, raw, error_response(413, "request body too large", parser.get().version()));
        } else if (hec != http::error::end_of_stream && hec != beast::error::timeout &&
                   hec != asio::error::operation_aborted && hec != asio::error::connection_reset &&
                   hec != asio::error::eof) {
          co_await write(stream, raw, error_response(400, "malformed HTTP request", 11));
        }
        co_return;
      }
      {
        std::lock_guard lock(mu);
        conn.busy = true;
      }
      const unsigned version = parser.get().version();
      if (parser.get()[http::field::expect] == "100-continue") {
        http::response<http::empty_body> cont{http::status::continue_, version};
        raw.expires_after(limits.write_timeout);
        auto [cec, cn] = co_await http::async_write(stream, cont, kTuple);
        (void)cn;
        if (cec) co_return;
      }
      // A small request's body usually came in the same read as its header:
      // parse what is buffered first and go back to the socket only for the
      // rest (an async_read that needs no I/O still costs a round through
      // the scheduler and the strand).
      beast::error_code bec = parse_buffered(parser, buffer);
      if (!bec && !parser.is_done()) {
        raw.expires_after(limits.body_timeout);
        auto [rec, rn] = co_await http::async_read(stream, buffer, parser, kTuple);
        (void)rn;
        bec = rec;
      }
      wipe_consumed(buffer);  // the request is in the parser now (or refused)
      if (bec) {
        if (bec == http::error::body_limit) {
          co_await write(stream, raw, error_response(413, "request body too large", version));
        } else if (bec != beast::error::timeout && bec != asio::error::operation_aborted) {
          co_await write(stream, raw, error_response(400, "malformed HTTP request body", version));
        }
        co_return;
      }
      Response response;
      bool client_keep = false;
      {
        Request request = parser.release();
        try {
          response = co_await handler(request, peer);
        } catch (const std::exception&) {
          // Handlers return errors as values; an exception is a bug. Never echo it.
          response = error_response(500, "internal error", version);
        }
        client_keep = request.keep_alive();
      }  // the request's body and fields (token) are wiped here, before the answer leaves
      const bool keep =
          client_keep && response.keep_alive() && !stopping.load() && served + 1 < limits.max_requests_per_connection;
      response.version(version);
      response.keep_alive(keep);  // Content-Length is the handler's (HEAD keeps the GET length)
      if (!co_await write(stream, raw, std::move(response))) co_return;
      {
        std::lock_guard lock(mu);
        conn.busy = false;
      }
      if (!keep) co_return;
    }
  }

  // Feeds the parser (its header complete) from what `buffer` holds. Returns
  // the parser's error (body_limit, a malformed chunk ...); running out of
  // buffered bytes before the message is complete is not one.
  template <class Parser>
  static beast::error_code parse_buffered(Parser& parser, ReadBuffer& buffer) {
    beast::error_code ec;
    while (!parser.is_done() && buffer.size() != 0) {
      const std::size_t used = parser.put(buffer.data(), ec);
      buffer.consume(used);
      if (ec == http::error::need_more) return {};
      if (ec) return ec;
      if (used == 0) break;  // nothing more it can take without more input
    }
    return ec;
  }

  template <class Stream>
  asio::awaitable<bool> write(Stream& stream, beast::tcp_stream& raw, Response response) {
    raw.expires_after(limits.write_timeout);
    auto [ec, n] = co_await http::async_write(stream, response, kTuple);
    (void)n;
    co_return !ec;
  }

  void stop() {
    stopping.store(true);
    asio::post(acceptor.get_executor(), [self = shared_from_this()] {
      boost::system::error_code ec;
      self->acceptor.close(ec);
    });
    std::lock_guard lock(mu);
    for (auto& c : live) {
      if (c.busy) continue;  // finishes its request, then sees `stopping`
      asio::post(c.executor, [self = shared_from_this(), id = c.id] {
        std::lock_guard inner(self->mu);
        // The session may have ended meanwhile: look it up again by id.
        for (auto& other : self->live) {
          if (other.id == id && !other.busy) other.stream->cancel();
        }
      });
    }
  }
};

HttpServer::HttpServer(asio::io_context& io, ServerLimits limits, Handler handler)
    : impl_(std::make_shared<Impl>(io, limits, std::move(handler))) {}

HttpServer::~HttpServer() {
  try {
    impl_->stop();
  } catch (const std::exception&) {
    // Out of memory or a failed lock while posting the cancellations: the
    // sessions still see `stopping` after their request, and the
    // io_context's shutdown closes the rest.
    impl_->stopping.store(true);
  }
}

boost::system::error_code HttpServer::listen(const tcp::endpoint& endpoint, tcp::endpoint& bound) {
  boost::system::error_code ec;
  auto& a = impl_->acceptor;
  a.open(endpoint.protocol(), ec);
  if (ec) return ec;
  set_cloexec(a.native_handle());
  a.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) return ec;
  a.bind(endpoint, ec);
  if (ec) return ec;
  a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return ec;
  bound = a.local_endpoint(ec);
  return ec;
}

void HttpServer::set_tls(std::shared_ptr<asio::ssl::context> context) {
  std::lock_guard lock(impl_->mu);
  impl_->tls = std::move(context);
}

void HttpServer::start() { asio::co_spawn(impl_->acceptor.get_executor(), impl_->accept_loop(), asio::detached); }

void HttpServer::stop() { impl_->stop(); }

std::size_t HttpServer::active_connections() const noexcept { return impl_->connections.load(); }

std::uint64_t HttpServer::rejected_per_client() const noexcept {
  return impl_->rejected_per_client.load(std::memory_order_relaxed);
}

}  // namespace rootseal::net
