#include "rootseal/net/http_client.hpp"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <deque>
#include <mutex>
#include <variant>

#include "rootseal/kms/secure_memory_resource.hpp"
#include "rootseal/net/transport.hpp"

namespace rootseal::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using kms::Errc;
using kms::fail;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
using Clock = std::chrono::steady_clock;

// Header fields and read buffers in locked memory: they carry tokens and
// (before the parser moves them into the body) secret values.
using SecureFlatBuffer = beast::basic_flat_buffer<kms::SecureAllocator<char>>;
using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

void set_cloexec(int fd) noexcept {
  const int flags = ::fcntl(fd, F_GETFD);
  if (flags >= 0) (void)::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

// Adds every certificate of a PEM bundle to the context's trust store.
kms::Result<void> add_ca_pem(SSL_CTX* ctx, std::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return fail(Errc::crypto_failure, "tls: out of memory");
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int added = 0;
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    if (X509_STORE_add_cert(store, cert) == 1) ++added;
    X509_free(cert);
  }
  BIO_free(bio);
  ERR_clear_error();
  if (added == 0) return fail(Errc::invalid_argument, "tls: the CA bundle holds no PEM certificate");
  return {};
}

kms::Result<std::shared_ptr<ssl::context>> make_client_tls(const ClientTls& tls) {
  if (tls.min_version != "1.2" && tls.min_version != "1.3") {
    return fail(Errc::invalid_argument, "tls: min_version must be 1.2 or 1.3");
  }
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX* native = ctx->native_handle();
  if (SSL_CTX_set_min_proto_version(native, tls.min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION) != 1) {
    return fail(Errc::crypto_failure, "tls: cannot set the minimum protocol version");
  }
  SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  boost::system::error_code ec;
  if (!tls.ca_file.empty()) {
    ctx->load_verify_file(tls.ca_file.string(), ec);
    if (ec) return fail(Errc::invalid_argument, "tls: cannot load CA bundle " + tls.ca_file.string());
  }
  if (!tls.ca_pem.empty()) ROOTSEAL_TRY(add_ca_pem(native, tls.ca_pem));
  if (tls.ca_file.empty() && tls.ca_pem.empty()) {
    ctx->set_default_verify_paths(ec);
    if (ec) return fail(Errc::invalid_argument, "tls: cannot load the system trust store");
  }
  if (!tls.cert_file.empty()) {
    if (tls.key_file.empty()) return fail(Errc::invalid_argument, "tls: a client certificate needs its key file");
    struct stat st{};
    if (::stat(tls.key_file.c_str(), &st) != 0) {
      return fail(Errc::invalid_argument, "tls: cannot read key file " + tls.key_file.string());
    }
    if ((st.st_mode & 0077) != 0) {
      return fail(Errc::invalid_argument,
                  "tls: key file " + tls.key_file.string() + " is readable by group or others (chmod 0600)");
    }
    ctx->use_certificate_chain_file(tls.cert_file.string(), ec);
    if (ec) return fail(Errc::invalid_argument, "tls: cannot load client certificate " + tls.cert_file.string());
    ctx->use_private_key_file(tls.key_file.string(), ssl::context::pem, ec);
    if (ec) return fail(Errc::invalid_argument, "tls: cannot load client key " + tls.key_file.string());
  } else if (!tls.cert_pem.empty()) {
    if (tls.key_pem.empty()) return fail(Errc::invalid_argument, "tls: a client certificate needs its key");
    ctx->use_certificate_chain(asio::buffer(tls.cert_pem), ec);
    if (ec) return fail(Errc::invalid_argument, "tls: cannot load the client certificate");
    ctx->use_private_key(asio::buffer(tls.key_pem.data(), tls.key_pem.size()), ssl::context::pem, ec);
    if (ec) return fail(Errc::invalid_argument, "tls: cannot load the client key");
  }
  if (!tls.cert_file.empty() || !tls.cert_pem.empty()) {
    if (SSL_CTX_check_private_key(native) != 1) {
      ERR_clear_error();
      return fail(Errc::invalid_argument, "tls: the client key does not match the certificate");
    }
  }
  ctx->set_verify_mode(tls.insecure_skip_verify ? ssl::verify_none : ssl::verify_peer);
  ERR_clear_error();
  return ctx;
}

std::string describe(const boost::system::error_code& ec) {
  if (ec == beast::error::timeout) return "timed out";
  return ec.message();
}

}  // namespace

// ---- ClientResponse / StreamControl ----------------------------------------------------------

std::optional<std::string_view> ClientResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return std::string_view(v);
  }
  return std::nullopt;
}

struct StreamControl::State {
  std::mutex mu;
  bool cancelled = false;
  std::function<void()> canceller;  // closes the stream's socket (posted to its executor)
};

StreamControl::StreamControl() : state_(std::make_shared<State>()) {}

void StreamControl::cancel() {
  std::function<void()> fn;
  {
    std::lock_guard lock(state_->mu);
    state_->cancelled = true;
    fn = std::move(state_->canceller);
  }
  if (fn) fn();
}

bool StreamControl::cancelled() const noexcept {
  std::lock_guard lock(state_->mu);
  return state_->cancelled;
}

// ---- the client ------------------------------------------------------------------------

namespace {

// The installed transport (transport.hpp): a service of the execution context.
struct TransportService : asio::execution_context::service {
  static inline asio::execution_context::id id;
  explicit TransportService(asio::execution_context& context) : service(context) {}
  void shutdown() override {}
  std::mutex mu;
  std::shared_ptr<Transport> transport;
};

// A TCP socket (PlainStream), TLS over one, or a connection of an installed Transport.
struct Connection {
  std::variant<std::unique_ptr<PlainStream>, std::unique_ptr<TlsStream>, std::unique_ptr<ByteStream>> stream;
  SecureFlatBuffer buffer;
  Clock::time_point idle_since;
  std::size_t served = 0;

  PlainStream* lowest() {
    if (auto* p = std::get_if<std::unique_ptr<PlainStream>>(&stream)) return p->get();
    if (auto* t = std::get_if<std::unique_ptr<TlsStream>>(&stream)) return &beast::get_lowest_layer(**t);
    return nullptr;
  }
  void expires_at(Clock::time_point deadline) {
    if (PlainStream* s = lowest()) {
      s->expires_at(deadline);
    } else {
      std::get<std::unique_ptr<ByteStream>>(stream)->expires_at(deadline);
    }
  }
  void close() {
    if (PlainStream* s = lowest()) {
      boost::system::error_code ignored;
      s->socket().shutdown(tcp::socket::shutdown_both, ignored);
      s->socket().close(ignored);
    } else {
      std::get<std::unique_ptr<ByteStream>>(stream)->close();
    }
  }
};

}  // namespace

struct HttpClient::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::any_io_executor ex, ClientOptions opts)
      : executor(std::move(ex)), options(std::move(opts)), slots(executor, options.max_connections) {}

  asio::any_io_executor executor;
  ClientOptions options;
  bool tls = false;
  std::string host;  // without brackets
  std::string port;
  std::string host_header;  // as sent in Host
  std::string prefix;       // path prefix of the base URL, no trailing '/'
  std::shared_ptr<ssl::context> tls_context;
  std::string verify_name;
  bool verify_is_ip = false;
  bool insecure = false;
  std::shared_ptr<Transport> transport;  // nullptr: TCP

  // A token per connection that may exist; acquire = receive, release = send.
  asio::experimental::concurrent_channel<void(boost::system::error_code)> slots;

  std::mutex mu;
  std::deque<std::unique_ptr<Connection>> idle;  // guarded by mu; most recently used at the back
  std::atomic<std::size_t> opened{0};
  std::atomic<std::size_t> requests{0};
  std::atomic<std::size_t> in_use{0};

  void fill_slots() {
    for (std::size_t i = 0; i < options.max_connections; ++i) slots.try_send(boost::system::error_code{});
  }

  asio::awaitable<kms::Result<void>> acquire_slot(Clock::time_point deadline) {
    asio::steady_timer timer(executor);
    timer.expires_at(deadline);
    auto which = co_await (slots.async_receive(kTuple) || timer.async_wait(kTuple));
    if (which.index() == 1) co_return fail(Errc::unavailable, "http: no free connection before the deadline");
    const auto [ec] = std::get<0>(which);
    if (ec) co_return fail(Errc::unavailable, "http: client closed");
    in_use.fetch_add(1);
    co_return kms::Result<void>{};
  }
  void release_slot() {
    in_use.fetch_sub(1);
    slots.try_send(boost::system::error_code{});
  }

  // An idle pooled connection that has not been idle too long, or nullptr.
  std::unique_ptr<Connection> take_idle() {
    std::lock_guard lock(mu);
    const auto now = Clock::now();
    while (!idle.empty()) {
      auto conn = std::move(idle.back());
      idle.pop_back();
      if (now - conn->idle_since < options.pool_idle_timeout) return conn;
      conn->close();
    }
    return nullptr;
  }
  void give_back(std::unique_ptr<Connection> conn) {
    conn->idle_since = Clock::now();
    conn->buffer.clear();
    std::lock_guard lock(mu);
    idle.push_back(std::move(conn));
  }

  asio::awaitable<kms::Result<std::unique_ptr<Connection>>> connect(Clock::time_point request_deadline) {
    const auto connect_deadline = std::min(request_deadline, Clock::now() + options.connect_timeout);
    if (transport) {
      auto made = co_await transport->connect(executor, host, port, connect_deadline);
      if (!made) co_return std::unexpected(std::move(made).error());
      auto conn = std::make_unique<Connection>();
      conn->stream = std::move(*made);
      opened.fetch_add(1);
      co_return conn;
    }
    tcp::resolver resolver(executor);
    asio::steady_timer timer(executor);
    timer.expires_at(connect_deadline);
    auto resolved = co_await (resolver.async_resolve(host, port, kTuple) || timer.async_wait(kTuple));
    if (resolved.index() == 1) co_return fail(Errc::unavailable, "http: resolving " + host + " timed out");
    auto [rec, endpoints] = std::get<0>(std::move(resolved));
    if (rec) co_return fail(Errc::unavailable, "http: cannot resolve " + host + ": " + rec.message());

    auto conn = std::make_unique<Connection>();
    auto plain = std::make_unique<PlainStream>(executor);
    plain->expires_at(connect_deadline);
    auto [cec, ep] = co_await plain->async_connect(endpoints, kTuple);
    if (cec) {
      co_return fail(Errc::unavailable, "http: cannot connect to " + host_header + ": " + describe(cec));
    }
    set_cloexec(plain->socket().native_handle());
    boost::system::error_code ignored;
    plain->socket().set_option(tcp::no_delay(true), ignored);
    opened.fetch_add(1);
    if (!tls) {
      conn->stream = std::move(plain);
      co_return conn;
    }
    auto stream = std::make_unique<TlsStream>(std::move(*plain), *tls_context);
    SSL* native = stream->native_handle();
    if (!verify_is_ip && SSL_set_tlsext_host_name(native, verify_name.c_str()) != 1) {
      co_return fail(Errc::crypto_failure, "tls: cannot set SNI");
    }
    if (!insecure) {
      X509_VERIFY_PARAM* param = SSL_get0_param(native);
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      const int ok = verify_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, verify_name.c_str())
                                  : X509_VERIFY_PARAM_set1_host(param, verify_name.c_str(), verify_name.size());
      if (ok != 1) co_return fail(Errc::crypto_failure, "tls: cannot set the name to verify");
    }
    beast::get_lowest_layer(*stream).expires_at(std::min(request_deadline, Clock::now() + options.handshake_timeout));
    auto [hec] = co_await stream->async_handshake(ssl::stream_base::client, kTuple);
    if (hec) {
      std::string why = describe(hec);
      const long verify = SSL_get_verify_result(native);
      if (verify != X509_V_OK)
        why = std::string("certificate verification failed: ") + X509_verify_cert_error_string(verify);
      ERR_clear_error();
      co_return fail(Errc::unavailable, "tls: handshake with " + host_header + " failed: " + why);
    }
    conn->stream = std::move(stream);
    co_return conn;
  }

  // The request, serialized by hand into locked memory: header values carry
  // tokens and the body carries secret values, and Beast's fields would copy
  // them onto the ordinary heap.
  kms::Result<SecureBuffer> build(http::verb method, std::string_view target, std::span<const Header> headers,
                                  std::string_view body) const {
    if (target.empty() || target.front() != '/')
      return fail(Errc::invalid_argument, "http: target must start with '/'");
    for (char c : target) {
      if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
        return fail(Errc::invalid_argument, "http: target contains a space or control character");
      }
    }
    SecureBuffer out;
    std::size_t estimate =
        64 + prefix.size() + target.size() + host_header.size() + options.user_agent.size() + body.size();
    for (const auto& h : headers) estimate += h.name.size() + h.value.size() + 4;
    out.reserve(estimate);
    out.append(http::to_string(method));
    out.append(" ");
    out.append(prefix);
    out.append(target);
    out.append(" HTTP/1.1\r\nHost: ");
    out.append(host_header);
    out.append("\r\nUser-Agent: ");
    out.append(options.user_agent);
    out.append("\r\n");
    bool has_content_length = false;
    for (const auto& h : headers) {
      for (char c : h.value) {
        if (c == '\r' || c == '\n' || c == '\0')
          return fail(Errc::invalid_argument, "http: header value with CR/LF/NUL");
      }
      if (h.name.empty() || h.name.find_first_of(" :\r\n\t\0") != std::string_view::npos) {
        return fail(Errc::invalid_argument, "http: bad header name");
      }
      if (iequals(h.name, "host") || iequals(h.name, "transfer-encoding") || iequals(h.name, "connection")) {
        return fail(Errc::invalid_argument, "http: header " + std::string(h.name) + " is set by the client");
      }
      if (iequals(h.name, "content-length")) has_content_length = true;
      out.append(h.name);
      out.append(": ");
      out.append(h.value);
      out.append("\r\n");
    }
    if (!has_content_length &&
        (!body.empty() || method == http::verb::post || method == http::verb::put || method == http::verb::patch)) {
      out.append("Content-Length: ");
      out.append(std::to_string(body.size()));
      out.append("\r\n");
    }
    out.append("\r\n");
    out.append(body);
    return out;
  }

  template <class Stream>
  static asio::awaitable<boost::system::error_code> write(Stream& s, const SecureBuffer& req) {
    auto [ec, n] = co_await asio::async_write(s, asio::buffer(req.data(), req.size()), kTuple);
    (void)n;
    co_return ec;
  }

  // One exchange on `conn`. got_bytes: whether any response byte arrived.
  template <class Stream>
  asio::awaitable<kms::Result<ClientResponse>> exchange(Stream& s, Connection& conn, const SecureBuffer& req,
                                                        http::verb method, Clock::time_point deadline, bool& got_bytes,
                                                        bool& reusable) {
    conn.expires_at(deadline);
    if (auto ec = co_await write(s, req))
      co_return fail(Errc::unavailable, "http: sending the request failed: " + describe(ec));
    http::response_parser<SecureBody, kms::SecureAllocator<char>> parser;
    parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(options.max_header_bytes, UINT32_MAX)));
    parser.body_limit(options.max_response_bytes);
    if (method == http::verb::head) parser.skip(true);
    const std::size_t before = conn.buffer.size();
    auto [ec, n] = co_await http::async_read(s, conn.buffer, parser, kTuple);
    got_bytes = n > 0 || conn.buffer.size() > before || parser.got_some();
    if (ec == http::error::body_limit) co_return fail(Errc::invalid_argument, "http: response body over the limit");
    if (ec == http::error::header_limit) co_return fail(Errc::invalid_argument, "http: response header over the limit");
    if (ec) co_return fail(Errc::unavailable, "http: reading the response failed: " + describe(ec));
    auto msg = parser.release();
    ClientResponse out;
    out.status = msg.result_int();
    for (const auto& f : msg) out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    out.body = std::move(msg.body());
    reusable = msg.keep_alive() && conn.buffer.size() == 0;
    co_return out;
  }

  asio::awaitable<kms::Result<ClientResponse>> request(http::verb method, std::string_view target,
                                                       std::span<const Header> headers, std::string_view body) {
    auto self = shared_from_this();
    const auto deadline = Clock::now() + options.request_timeout;
    ROOTSEAL_CO_LET(req, build(method, target, headers, body));
    ROOTSEAL_CO_TRY(co_await acquire_slot(deadline));
    requests.fetch_add(1);
    kms::Result<ClientResponse> result = fail(Errc::internal, "http: no attempt");
    for (int attempt = 0; attempt < 2; ++attempt) {
      std::unique_ptr<Connection> conn = take_idle();
      const bool reused = conn != nullptr;
      if (!conn) {
        auto fresh = co_await connect(deadline);
        if (!fresh) {
          result = std::unexpected(std::move(fresh).error());
          break;
        }
        conn = std::move(*fresh);
      }
      bool got_bytes = false;
      bool reusable = false;
      if (auto* p = std::get_if<std::unique_ptr<PlainStream>>(&conn->stream)) {
        result = co_await exchange(**p, *conn, req, method, deadline, got_bytes, reusable);
      } else if (auto* t = std::get_if<std::unique_ptr<TlsStream>>(&conn->stream)) {
        result = co_await exchange(**t, *conn, req, method, deadline, got_bytes, reusable);
      } else {
        result = co_await exchange(*std::get<std::unique_ptr<ByteStream>>(conn->stream), *conn, req, method, deadline,
                                   got_bytes, reusable);
      }
      if (result && reusable) {
        ++conn->served;
        give_back(std::move(conn));
      } else {
        conn->close();
      }
      // A keep-alive connection the server closed meanwhile: once more on a fresh one.
      if (!result && reused && !got_bytes && Clock::now() < deadline) continue;
      break;
    }
    release_slot();
    co_return result;
  }

  template <class Stream>
  asio::awaitable<kms::Result<ClientResponse>> stream_on(Stream& s, Connection& conn, const SecureBuffer& req,
                                                         const LineHandler& on_line, Clock::time_point deadline) {
    conn.expires_at(deadline);
    if (auto ec = co_await write(s, req))
      co_return fail(Errc::unavailable, "http: sending the request failed: " + describe(ec));
    http::response_parser<http::buffer_body, kms::SecureAllocator<char>> parser;
    parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(options.max_header_bytes, UINT32_MAX)));
    parser.body_limit(boost::none);
    auto [hec, hn] = co_await http::async_read_header(s, conn.buffer, parser, kTuple);
    (void)hn;
    if (hec) co_return fail(Errc::unavailable, "http: reading the response header failed: " + describe(hec));
    ClientResponse out;
    out.status = parser.get().result_int();
    for (const auto& f : parser.get()) out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    const bool ok = out.status >= 200 && out.status < 300;
    kms::SecureBytes chunk(std::size_t{64} * 1024);
    SecureBuffer line;
    std::size_t total = 0;
    bool stop = false;
    while (!parser.is_done() && !stop) {
      parser.get().body().data = chunk.data();
      parser.get().body().size = chunk.size();
      conn.expires_at(Clock::now() + (ok ? options.stream_idle_timeout : options.request_timeout));
      auto [ec, n] = co_await http::async_read_some(s, conn.buffer, parser, kTuple);
      (void)n;
      if (ec == http::error::need_buffer) ec = {};
      if (ec) {
        if (ec == http::error::partial_message || ec == asio::error::eof) break;  // server ended the stream
        co_return fail(Errc::unavailable, "http: stream ended: " + describe(ec));
      }
      const std::size_t got = chunk.size() - parser.get().body().size;
      total += got;
      if (!ok) {
        if (total > options.max_response_bytes)
          co_return fail(Errc::invalid_argument, "http: response body over the limit");
        out.body.append(chunk.data(), got);
        continue;
      }
      const char* p = reinterpret_cast<const char*>(chunk.data());
      std::size_t start = 0;
      for (std::size_t i = 0; i < got && !stop; ++i) {
        if (p[i] != '\n') continue;
        line.append(p + start, i - start);
        start = i + 1;
        std::string_view v = line.view();
        if (!v.empty() && v.back() == '\r') v.remove_suffix(1);
        if (!v.empty()) {
          auto r = on_line(v);
          if (!r) co_return std::unexpected(std::move(r).error());
          if (!*r) stop = true;
        }
        line.clear();
      }
      if (!stop) {
        line.append(p + start, got - start);
        if (line.size() > options.max_line_bytes)
          co_return fail(Errc::invalid_argument, "http: streamed line over the limit");
      }
    }
    if (ok && !stop && !line.empty()) {
      std::string_view v = line.view();
      if (!v.empty() && v.back() == '\r') v.remove_suffix(1);
      if (!v.empty()) {
        auto r = on_line(v);
        if (!r) co_return std::unexpected(std::move(r).error());
      }
    }
    co_return out;
  }

  asio::awaitable<kms::Result<ClientResponse>> stream(http::verb method, std::string_view target,
                                                      std::span<const Header> headers, std::string_view body,
                                                      LineHandler on_line, StreamControl control) {
    auto self = shared_from_this();
    const auto deadline = Clock::now() + options.request_timeout;  // for connect + header
    ROOTSEAL_CO_LET(req, build(method, target, headers, body));
    if (control.cancelled()) co_return fail(Errc::unavailable, "http: stream cancelled");
    ROOTSEAL_CO_TRY(co_await acquire_slot(deadline));
    requests.fetch_add(1);
    auto fresh = co_await connect(deadline);
    if (!fresh) {
      release_slot();
      co_return std::unexpected(std::move(fresh).error());
    }
    std::shared_ptr<Connection> conn(std::move(*fresh));
    {
      std::weak_ptr<Connection> weak = conn;
      // The close runs on the executor this coroutine runs on (a strand when
      // the io_context has several threads), never beside its own reads.
      auto ex = co_await asio::this_coro::executor;
      std::lock_guard lock(control.state_->mu);
      if (!control.state_->cancelled) {
        control.state_->canceller = [weak, ex] {
          asio::post(ex, [weak] {
            if (auto c = weak.lock()) c->close();
          });
        };
      }
    }
    kms::Result<ClientResponse> result = fail(Errc::internal, "http: no attempt");
    if (control.cancelled()) {
      result = fail(Errc::unavailable, "http: stream cancelled");
    } else if (auto* p = std::get_if<std::unique_ptr<PlainStream>>(&conn->stream)) {
      result = co_await stream_on(**p, *conn, req, on_line, deadline);
    } else if (auto* t = std::get_if<std::unique_ptr<TlsStream>>(&conn->stream)) {
      result = co_await stream_on(**t, *conn, req, on_line, deadline);
    } else {
      result = co_await stream_on(*std::get<std::unique_ptr<ByteStream>>(conn->stream), *conn, req, on_line, deadline);
    }
    {
      std::lock_guard lock(control.state_->mu);
      control.state_->canceller = nullptr;
    }
    if (control.cancelled()) result = fail(Errc::unavailable, "http: stream cancelled");
    conn->close();
    release_slot();
    co_return result;
  }
};

HttpClient::HttpClient(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpClient::~HttpClient() {
  impl_->slots.close();
  close_idle();
}

kms::Result<std::shared_ptr<HttpClient>> HttpClient::create(asio::any_io_executor executor, std::string_view base_url,
                                                            ClientTls tls, ClientOptions options) {
  if (options.max_connections == 0) return fail(Errc::invalid_argument, "http: max_connections must be at least 1");
  auto parsed = boost::urls::parse_uri(base_url);
  if (!parsed) return fail(Errc::invalid_argument, "http: bad base URL");
  const auto& u = *parsed;
  auto impl = std::make_shared<Impl>(std::move(executor), std::move(options));
  const std::string scheme = u.scheme();
  if (scheme == "https") {
    impl->tls = true;
  } else if (scheme != "http") {
    return fail(Errc::invalid_argument, "http: the base URL must be http:// or https://");
  }
  impl->transport = installed_transport(asio::query(impl->executor, asio::execution::context));
  if (impl->tls && impl->transport) {
    return fail(Errc::invalid_argument, "http: https:// is not supported over an installed transport");
  }
  if (u.has_userinfo() || u.has_query() || u.has_fragment()) {
    return fail(Errc::invalid_argument, "http: the base URL must not carry user info, a query or a fragment");
  }
  impl->host = u.host_address();
  if (impl->host.empty()) return fail(Errc::invalid_argument, "http: the base URL has no host");
  impl->port = u.has_port() ? std::string(u.port()) : (impl->tls ? "443" : "80");
  const bool ipv6 = u.host_type() == boost::urls::host_type::ipv6;
  const std::string host_in_header = ipv6 ? "[" + impl->host + "]" : impl->host;
  const bool default_port = (impl->tls && impl->port == "443") || (!impl->tls && impl->port == "80");
  impl->host_header = default_port ? host_in_header : host_in_header + ":" + impl->port;
  impl->prefix = u.encoded_path();
  while (!impl->prefix.empty() && impl->prefix.back() == '/') impl->prefix.pop_back();
  if (impl->tls) {
    ROOTSEAL_TRY_ASSIGN(impl->tls_context, make_client_tls(tls));
    impl->verify_name = tls.server_name.empty() ? impl->host : tls.server_name;
    impl->verify_is_ip = tls.server_name.empty() && (ipv6 || u.host_type() == boost::urls::host_type::ipv4);
    impl->insecure = tls.insecure_skip_verify;
  }
  impl->fill_slots();
  return std::shared_ptr<HttpClient>(new HttpClient(std::move(impl)));
}

asio::awaitable<kms::Result<ClientResponse>> HttpClient::request(http::verb method, std::string_view target,
                                                                 std::span<const Header> headers,
                                                                 std::string_view body) {
  return impl_->request(method, target, headers, body);
}

asio::awaitable<kms::Result<ClientResponse>> HttpClient::stream(http::verb method, std::string_view target,
                                                                std::span<const Header> headers, std::string_view body,
                                                                LineHandler on_line, StreamControl control) {
  return impl_->stream(method, target, headers, body, std::move(on_line), std::move(control));
}

void HttpClient::close_idle() {
  std::deque<std::unique_ptr<Connection>> victims;
  {
    std::lock_guard lock(impl_->mu);
    victims.swap(impl_->idle);
  }
  for (auto& c : victims) c->close();
}

ClientStats HttpClient::stats() const {
  ClientStats s;
  s.connections_opened = impl_->opened.load();
  s.requests = impl_->requests.load();
  s.in_use = impl_->in_use.load();
  std::lock_guard lock(impl_->mu);
  s.idle = impl_->idle.size();
  return s;
}

void use_transport(asio::execution_context& context, std::shared_ptr<Transport> transport) {
  auto& service = asio::use_service<TransportService>(context);
  std::lock_guard lock(service.mu);
  service.transport = std::move(transport);
}

std::shared_ptr<Transport> installed_transport(asio::execution_context& context) {
  if (!asio::has_service<TransportService>(context)) return nullptr;
  auto& service = asio::use_service<TransportService>(context);
  std::lock_guard lock(service.mu);
  return service.transport;
}

const std::string& HttpClient::host() const noexcept { return impl_->host; }
const std::string& HttpClient::host_header() const noexcept { return impl_->host_header; }

std::string url_encode(std::string_view s, bool encode_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~' || (c == '/' && !encode_slash)) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  return out;
}

}  // namespace rootseal::net
