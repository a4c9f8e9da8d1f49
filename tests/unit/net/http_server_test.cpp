// The HTTP server core over real loopback sockets (port 0).
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <stdexcept>
#include <thread>

#include "rootseal/net/http_server.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace rootseal;

namespace {

// A server on its own I/O thread; the handler echoes the body length.
struct TestServer {
  explicit TestServer(net::ServerLimits limits, net::Handler handler = {}) {
    if (!handler) {
      handler = [this](net::Request& req, const net::PeerInfo&) -> asio::awaitable<net::Response> {
        ++handled;
        if (req.target() == "/throw") throw std::runtime_error("handler bug with secret=hunter2");
        co_return net::json_response(200, R"({"len":)" + std::to_string(req.body().size()) + "}");
      };
    }
    server = std::make_unique<net::HttpServer>(io, limits, std::move(handler));
    REQUIRE_FALSE(server->listen({asio::ip::make_address("127.0.0.1"), 0}, bound));
    server->start();
    thread = std::thread([this] { io.run(); });
  }
  ~TestServer() {
    server->stop();
    io.stop();
    thread.join();
  }
  asio::io_context io;
  std::unique_ptr<net::HttpServer> server;
  tcp::endpoint bound;
  std::thread thread;
  std::atomic<int> handled{0};
};

struct Client {
  explicit Client(const tcp::endpoint& ep) : socket(io) { socket.connect(ep); }
  http::response<http::string_body> send(http::request<http::string_body> req) {
    req.prepare_payload();
    http::write(socket, req);
    return read();
  }
  http::response<http::string_body> read() {
    http::response<http::string_body> res;
    http::read(socket, buffer, res);
    return res;
  }
  // True when the server closed the connection (EOF on read).
  bool closed_by_peer() {
    char c;
    boost::system::error_code ec;
    socket.read_some(asio::buffer(&c, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }
  asio::io_context io;
  tcp::socket socket;
  beast::flat_buffer buffer;
};

http::request<http::string_body> post(std::string target, std::string body) {
  http::request<http::string_body> req{http::verb::post, target, 11};
  req.set(http::field::host, "test");
  req.body() = std::move(body);
  return req;
}

}  // namespace

TEST_CASE("requests are served with keep-alive and JSON content type") {
  TestServer s({});
  Client c(s.bound);
  for (int i = 0; i < 3; ++i) {
    auto res = c.send(post("/x", std::string(static_cast<std::size_t>(i) * 10, 'a')));
    CHECK(res.result_int() == 200);
    CHECK(res[http::field::content_type] == "application/json");
    CHECK(res.body() == R"({"len":)" + std::to_string(i * 10) + "}");
    CHECK(res.keep_alive());
  }
  CHECK(s.handled == 3);
}

TEST_CASE("a body over the limit gets 413 and the handler never runs") {
  net::ServerLimits limits;
  limits.max_body_bytes = 1000;
  TestServer s(limits);
  Client c(s.bound);
  auto res = c.send(post("/x", std::string(1001, 'a')));
  CHECK(res.result_int() == 413);
  CHECK(res.body() == R"({"errors":["request body too large"]})");
  CHECK(s.handled == 0);
  CHECK(c.closed_by_peer());

  Client ok(s.bound);
  CHECK(ok.send(post("/x", std::string(1000, 'a'))).result_int() == 200);
}

TEST_CASE("a chunked body over the limit gets 413 too") {
  net::ServerLimits limits;
  limits.max_body_bytes = 100;
  TestServer s(limits);
  Client c(s.bound);
  const std::string raw =
      "POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
      "50\r\n" + std::string(80, 'a') + "\r\n50\r\n" + std::string(80, 'b') + "\r\n0\r\n\r\n";
  asio::write(c.socket, asio::buffer(raw));
  auto res = c.read();
  CHECK(res.result_int() == 413);
  CHECK(s.handled == 0);
}

TEST_CASE("an oversized header gets 431") {
  net::ServerLimits limits;
  limits.max_header_bytes = 1024;
  TestServer s(limits);
  Client c(s.bound);
  auto req = post("/x", "");
  req.set("X-Big", std::string(2000, 'h'));
  CHECK(c.send(req).result_int() == 431);
  CHECK(s.handled == 0);
}

TEST_CASE("garbage gets 400 and a closed connection") {
  TestServer s({});
  Client c(s.bound);
  asio::write(c.socket, asio::buffer(std::string("BLAH\r\n\r\n")));
  auto res = c.read();
  CHECK(res.result_int() == 400);
  CHECK(c.closed_by_peer());
}

TEST_CASE("a throwing handler gives 500 without its message") {
  TestServer s({});
  Client c(s.bound);
  auto res = c.send(post("/throw", ""));
  CHECK(res.result_int() == 500);
  CHECK(res.body().find("hunter2") == std::string::npos);
  CHECK(res.body() == R"({"errors":["internal error"]})");
}

TEST_CASE("a connection serves at most max_requests_per_connection requests") {
  net::ServerLimits limits;
  limits.max_requests_per_connection = 2;
  TestServer s(limits);
  Client c(s.bound);
  CHECK(c.send(post("/x", "")).keep_alive());
  auto last = c.send(post("/x", ""));
  CHECK_FALSE(last.keep_alive());
  CHECK(c.closed_by_peer());
}

TEST_CASE("a client that sends nothing is disconnected at the header timeout") {
  net::ServerLimits limits;
  limits.header_timeout = std::chrono::seconds(1);
  TestServer s(limits);
  Client c(s.bound);
  const auto start = std::chrono::steady_clock::now();
  CHECK(c.closed_by_peer());  // blocks until the server's deadline closes the socket
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(900));
}

TEST_CASE("stop() closes idle keep-alive connections and refuses new ones") {
  TestServer s({});
  Client c(s.bound);
  CHECK(c.send(post("/x", "")).result_int() == 200);
  s.server->stop();
  CHECK(c.closed_by_peer());
  asio::io_context io;
  tcp::socket sock(io);
  boost::system::error_code ec;
  sock.connect(s.bound, ec);
  CHECK(ec == asio::error::connection_refused);
}

TEST_CASE("Expect: 100-continue is answered before the body is read") {
  TestServer s({});
  Client c(s.bound);
  asio::write(c.socket, asio::buffer(std::string(
                            "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")));
  http::response<http::empty_body> cont;
  http::response_parser<http::empty_body> p;
  http::read_header(c.socket, c.buffer, p);
  CHECK(p.get().result_int() == 100);
  asio::write(c.socket, asio::buffer(std::string("hello")));
  auto res = c.read();
  CHECK(res.body() == R"({"len":5})");
}

// The server parses a body it already holds before reading more: requests that
// share a read (pipelining) must each get their own body, in order.
TEST_CASE("pipelined requests in one write are each answered with their own body, in order") {
  TestServer s({});
  Client c(s.bound);
  std::string raw;
  for (const std::size_t n : {3u, 0u, 17u}) {
    raw += "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(n) + "\r\n\r\n" + std::string(n, 'p');
  }
  raw += "POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n";
  asio::write(c.socket, asio::buffer(raw));
  for (const int n : {3, 0, 17, 6}) {
    auto res = c.read();
    CHECK(res.result_int() == 200);
    CHECK(res.body() == R"({"len":)" + std::to_string(n) + "}");
  }
  CHECK(s.handled == 4);
}

TEST_CASE("a body that arrives after its header, in pieces, is read whole") {
  TestServer s({});
  Client c(s.bound);
  c.socket.set_option(tcp::no_delay(true));
  asio::write(c.socket, asio::buffer(std::string("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")));
  asio::write(c.socket, asio::buffer(std::string("defg")));
  asio::write(c.socket, asio::buffer(std::string("hij")));
  auto res = c.read();
  CHECK(res.result_int() == 200);
  CHECK(res.body() == R"({"len":10})");
  CHECK(c.send(post("/x", "again")).body() == R"({"len":5})");  // the connection is still in step
}

TEST_CASE("a malformed chunk in the body gets 400 and the handler never runs") {
  TestServer s({});
  Client c(s.bound);
  asio::write(c.socket, asio::buffer(std::string(
                            "POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")));
  auto res = c.read();
  CHECK(res.result_int() == 400);
  CHECK(res.body() == R"({"errors":["malformed HTTP request body"]})");
  CHECK(s.handled == 0);
  CHECK(c.closed_by_peer());
}

TEST_CASE("connections over max_connections_per_client from one address are closed at accept, others are served") {
  net::ServerLimits limits;
  limits.max_connections_per_client = 2;
  TestServer s(limits);
  auto a = std::make_unique<Client>(s.bound);
  Client b(s.bound);
  CHECK(a->send(post("/x", "")).result_int() == 200);  // both admitted and being served
  CHECK(b.send(post("/x", "")).result_int() == 200);
  Client third(s.bound);  // the TCP handshake completes; the server closes it at accept
  CHECK(third.closed_by_peer());
  CHECK(s.server->rejected_per_client() == 1);

  // Another client address (127.0.0.2 is loopback too) has its own count.
  asio::io_context io;
  tcp::socket other(io);
  other.open(tcp::v4());
  other.bind({asio::ip::make_address("127.0.0.2"), 0});
  other.connect(s.bound);
  auto req = post("/x", "");
  req.prepare_payload();
  http::write(other, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(other, buf, res);
  CHECK(res.result_int() == 200);

  // A closed connection gives its place back.
  a.reset();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (s.server->active_connections() > 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  REQUIRE(s.server->active_connections() == 2);
  Client fourth(s.bound);
  CHECK(fourth.send(post("/x", "")).result_int() == 200);
  CHECK(s.server->rejected_per_client() == 1);
}
