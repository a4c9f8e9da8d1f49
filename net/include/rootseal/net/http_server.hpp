// rootseal::net — the HTTP server core (Boost.Beast over Asio, C++20 coroutines).
//
// One coroutine per connection, running on its own strand; TLS (see tls.hpp)
// or plain HTTP for loopback. Every handshake, read and write has a
// deadline; each request gets a fresh parser with a header and a
// body limit (413 past it); a connection serves at most max_requests_per_connection
// requests (keep-alive, no pipelining backlog: one request at a time). The
// request handler is a function from request to response: it knows no sockets.
//
// A request carries secrets in three places: its body (plaintext), its header
// fields (the token) and the connection's read buffer (the raw bytes of all
// of it). All three are locked memory (kms::SecureAllocator: the locked
// arena's size classes, no mmap/mlock per request) and are wiped before the
// answer leaves: the read buffer as soon as the request is parsed, the body
// and the fields when the handler returns.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "rootseal/kms/secure_memory_resource.hpp"
#include "rootseal/net/secure_body.hpp"

namespace rootseal::net {

// Header fields in locked memory, wiped when freed.
using SecureFields = boost::beast::http::basic_fields<kms::SecureAllocator<char>>;
using Request = boost::beast::http::request<SecureBody, SecureFields>;
using Response = boost::beast::http::response<SecureBody>;

struct PeerInfo {
  boost::asio::ip::tcp::endpoint remote;
  bool tls = false;
  // With mutual TLS, the verified client certificate: its subject (RFC 2253)
  // and SHA-256 fingerprint (lower-case hex). Empty otherwise.
  std::string client_subject;
  std::string client_cert_sha256;
};

// Produces the response for one request. Runs on the connection's strand;
// blocking work must be moved off it by the handler (co_await a pool).
using Handler = std::function<boost::asio::awaitable<Response>(Request&, const PeerInfo&)>;

struct ServerLimits {
  std::size_t max_body_bytes = std::size_t{1024} * 1024;  // 413 beyond
  std::size_t max_header_bytes = std::size_t{16} * 1024;  // 431 beyond
  std::chrono::seconds header_timeout{10};                // time to receive a request's header
  std::chrono::seconds body_timeout{30};                  // time to receive the rest of the request
  std::chrono::seconds write_timeout{30};
  std::chrono::seconds idle_timeout{75};  // keep-alive wait for the next request
  std::size_t max_requests_per_connection = 10000;
  std::size_t max_connections = 4096;            // further accepts are closed at once
  std::size_t max_connections_per_client = 256;  // per client IP address, further accepts closed at once; 0: none
};

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, ServerLimits limits, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens (SO_REUSEADDR, CLOEXEC); port 0 picks a free port.
  // Returns the bound endpoint.
  boost::system::error_code listen(const boost::asio::ip::tcp::endpoint& endpoint,
                                   boost::asio::ip::tcp::endpoint& bound);
  // Serves TLS with this context on connections accepted from now on
  // (nullptr: plain HTTP). Safe to call while running: SIGHUP reloads swap
  // the context without touching the listener or open connections.
  void set_tls(std::shared_ptr<boost::asio::ssl::context> context);
  // Starts accepting on the io_context.
  void start();
  // Stops accepting and closes idle connections; requests in flight finish.
  void stop();
  [[nodiscard]] std::size_t active_connections() const noexcept;
  // Connections closed at accept because their client address already had
  // max_connections_per_client open, since start.
  [[nodiscard]] std::uint64_t rejected_per_client() const noexcept;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// A response with Content-Type: application/json and the given status.
Response json_response(unsigned status, std::string_view body, unsigned version = 11, bool keep_alive = true);

}  // namespace rootseal::net
