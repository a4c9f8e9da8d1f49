// The HTTP server core over real loopback sockets (port 0).
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <atomic>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "rootseal/kms/secure_bytes.hpp"
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
      "50\r\n" +
      std::string(80, 'a') + "\r\n50\r\n" + std::string(80, 'b') + "\r\n0\r\n\r\n";
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
  // stop() closes the listener on the server's executor, and the idle
  // connection on its own: the second can be seen first, and a connect in
  // between still completes in the kernel's backlog. Polled, with a deadline:
  // connects are refused once the listener is closed.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  boost::system::error_code ec;
  for (;;) {
    asio::io_context io;
    tcp::socket sock(io);
    sock.connect(s.bound, ec);
    if (ec || std::chrono::steady_clock::now() > deadline) break;
  }
  CHECK(ec == asio::error::connection_refused);
}

TEST_CASE("Expect: 100-continue is answered before the body is read") {
  TestServer s({});
  Client c(s.bound);
  asio::write(
      c.socket,
      asio::buffer(std::string("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")));
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
  asio::write(c.socket,
              asio::buffer(std::string(
                  "POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")));
  auto res = c.read();
  CHECK(res.result_int() == 400);
  CHECK(res.body() == R"({"errors":["malformed HTTP request body"]})");
  CHECK(s.handled == 0);
  CHECK(c.closed_by_peer());
}

// ------------------------------------------------------- secret memory ----

namespace {

// A byte string that is nowhere in this process's memory as such: it is kept
// as `masked` XOR `mask` and only ever put together where the test decides.
struct HiddenText {
  explicit HiddenText(std::size_t n) : masked(n), mask(n) {
    std::random_device rd;
    for (std::size_t i = 0; i < n; ++i) {
      const auto letter = static_cast<std::uint8_t>('a' + rd() % 26);  // header- and JSON-safe
      mask[i] = static_cast<std::uint8_t>(rd() | 0x80);                // never equal to a letter
      masked[i] = letter ^ mask[i];
    }
  }
  [[nodiscard]] std::uint8_t at(std::size_t i) const { return masked[i] ^ mask[i]; }
  [[nodiscard]] std::size_t size() const { return masked.size(); }
  void write_to(std::uint8_t* out) const {
    for (std::size_t i = 0; i < size(); ++i) out[i] = at(i);
  }
  std::vector<std::uint8_t> masked;
  std::vector<std::uint8_t> mask;
};

// How many times `text` occurs in this process's readable memory: every
// readable mapping of /proc/self/maps, read through /proc/self/mem (so an
// unreadable page is an error to skip, not a crash). Mappings over 1 GiB
// (sanitizer shadow memory) are left out: the heap, the stacks and the locked
// arena are far smaller.
std::size_t occurrences(const HiddenText& text) {
  const int mem = ::open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
  REQUIRE(mem >= 0);
  std::ifstream maps("/proc/self/maps");
  REQUIRE(maps.good());
  std::vector<std::uint8_t> chunk(1 << 20);
  const std::uint8_t first = text.at(0);
  std::size_t found = 0;
  // Chunks overlap by size()-1 bytes so that no occurrence straddles two unseen.
  const auto scan = [&](std::uint64_t at, std::uint64_t end) {
    while (at < end) {
      const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), end - at));
      const ssize_t got = ::pread(mem, chunk.data(), want, static_cast<off_t>(at));
      if (got <= 0) return;
      const auto n = static_cast<std::size_t>(got);
      for (std::size_t i = 0; i + text.size() <= n; ++i) {
        if (chunk[i] != first) continue;
        std::size_t k = 1;
        while (k < text.size() && chunk[i + k] == text.at(k)) ++k;
        if (k == text.size()) ++found;
      }
      if (n < text.size() || at + n >= end) return;
      at += n - (text.size() - 1);
    }
  };
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream fields(line);
    std::string range, perms;
    fields >> range >> perms;
    if (perms.empty() || perms[0] != 'r' || line.find("[vvar]") != std::string::npos ||
        line.find("[vsyscall]") != std::string::npos) {
      continue;
    }
    const auto dash = range.find('-');
    const std::uint64_t begin = std::stoull(range.substr(0, dash), nullptr, 16);
    const std::uint64_t end = std::stoull(range.substr(dash + 1), nullptr, 16);
    if (end - begin > (std::uint64_t{1} << 30)) continue;
    // The scan's own buffer holds copies of what it read: leave it out.
    const auto own_begin = reinterpret_cast<std::uint64_t>(chunk.data());
    const auto own_end = own_begin + chunk.size();
    scan(begin, std::min(end, own_begin));
    scan(std::max(begin, own_end), end);
  }
  ::close(mem);
  return found;
}

}  // namespace

TEST_CASE("the scan finds a text that is in memory (control for the test below)") {
  const HiddenText text(32);
  CHECK(occurrences(text) == 0);
  auto heap = std::make_unique<std::uint8_t[]>(text.size());
  text.write_to(heap.get());
  CHECK(occurrences(text) == 1);
  kms::secure_zero(heap.get(), text.size());
  CHECK(occurrences(text) == 0);
}

TEST_CASE("a request's token and plaintext are gone from the server's memory once it has answered") {
  const HiddenText token(32), plaintext(40);
  std::atomic<bool> saw_request{false};
  TestServer s({}, [&](net::Request& req, const net::PeerInfo&) -> asio::awaitable<net::Response> {
    saw_request = req["X-Vault-Token"].size() == token.size() && req.body().size() == plaintext.size() + 16;
    co_return net::json_response(200, R"({"ok":true})");
  });
  Client c(s.bound);
  {
    // The raw request is put together in locked memory, wiped once sent.
    const std::string head = "POST /v1/transit/encrypt/k HTTP/1.1\r\nHost: t\r\nX-Vault-Token: ";
    const std::string mid =
        "\r\nContent-Length: " + std::to_string(plaintext.size() + 16) + "\r\n\r\n{\"plaintext\":\"";
    kms::SecureBytes raw(head.size() + token.size() + mid.size() + plaintext.size() + 2);
    std::uint8_t* p = raw.data();
    p = std::copy(head.begin(), head.end(), p);
    token.write_to(p);
    p += token.size();
    p = std::copy(mid.begin(), mid.end(), p);
    plaintext.write_to(p);
    p += plaintext.size();
    std::copy_n("\"}", 2, p);  // the body's last two bytes, no NUL
    asio::write(c.socket, asio::buffer(raw.data(), raw.size()));
  }
  auto res = c.read();
  REQUIRE(res.result_int() == 200);
  CHECK(saw_request);
  // The connection stays open (keep-alive): its read buffer is still alive.
  CHECK(res.keep_alive());
  CHECK(occurrences(token) == 0);
  CHECK(occurrences(plaintext) == 0);
  // And the connection still works.
  CHECK(c.send(post("/x", "again")).result_int() == 200);
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
