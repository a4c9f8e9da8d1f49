// net::HttpClient over real loopback sockets: against net::HttpServer (plain
// and TLS with certificates made by the openssl CLI) and against scripted raw
// servers for the cases a well-behaved server never produces (silence,
// chunked streams in pieces, connections closed under a keep-alive client).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include "rootseal/net/http_client.hpp"
#include "rootseal/net/transport.hpp"
#include "http_test_server.hpp"
#include "scripted_transport.hpp"
#include "temp_dir.hpp"

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using namespace rootseal;
using namespace std::chrono_literals;

namespace {

// An io_context with one thread for the client side.
struct ClientLoop {
  ClientLoop() : guard(asio::make_work_guard(io)), thread([this] { io.run(); }) {}
  ~ClientLoop() {
    guard.reset();
    io.stop();
    thread.join();
  }
  template <class T>
  T run(asio::awaitable<T> task) {
    auto fut = asio::co_spawn(io, std::move(task), asio::use_future);
    REQUIRE(fut.wait_for(60s) == std::future_status::ready);
    return fut.get();
  }
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> guard;
  std::thread thread;
};

void run_cmd(const std::string& cmd) {
  INFO(cmd);
  REQUIRE(std::system((cmd + " >/dev/null 2>&1").c_str()) == 0);
}

struct Pki {
  test::TempDir dir{"rootseal-httpc"};
  std::string p(const std::string& leaf) const { return (dir.path() / leaf).string(); }
  Pki() {
    run_cmd("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=test-ca -keyout " +
            p("ca.key") + " -out " + p("ca.pem"));
    std::ofstream(p("server.ext")) << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
    run_cmd("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -keyout " +
            p("server.key") + " -out " + p("server.csr"));
    run_cmd("openssl x509 -req -in " + p("server.csr") + " -CA " + p("ca.pem") + " -CAkey " + p("ca.key") +
            " -CAcreateserial -days 2 -extfile " + p("server.ext") + " -out " + p("server.pem"));
    ::chmod(p("server.key").c_str(), 0600);
  }
};

// A raw server on its own thread: for each accepted connection it reads one
// request header and runs `script` with the socket.
struct RawServer {
  explicit RawServer(std::function<void(tcp::socket&)> script)
      : acceptor(io, {asio::ip::make_address("127.0.0.1"), 0}), script_(std::move(script)) {
    port = acceptor.local_endpoint().port();
    thread = std::thread([this] {
      while (true) {
        tcp::socket s(io);
        boost::system::error_code ec;
        acceptor.accept(s, ec);
        if (ec || stopping) return;
        ++accepted;
        asio::streambuf buf;
        asio::read_until(s, buf, "\r\n\r\n", ec);
        if (!ec) script_(s);
      }
    });
  }
  ~RawServer() {
    stopping = true;
    boost::system::error_code ec;
    tcp::socket poke(io);
    poke.connect({asio::ip::make_address("127.0.0.1"), port}, ec);  // wakes accept()
    thread.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
  asio::io_context io;
  tcp::acceptor acceptor;
  std::function<void(tcp::socket&)> script_;
  unsigned short port = 0;
  std::atomic<bool> stopping{false};
  std::atomic<int> accepted{0};
  std::thread thread;
};

void send(tcp::socket& s, std::string_view text) {
  boost::system::error_code ec;
  asio::write(s, asio::buffer(text), ec);
}

template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit = 10s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

}  // namespace

TEST_CASE("http client: requests over one keep-alive connection carry headers and body") {
  test::TestHttpServer server(test::TestHttpServer::Mode::echo);
  ClientLoop loop;
  auto client = net::HttpClient::create(loop.io.get_executor(), server.url());
  REQUIRE(client);
  auto& c = **client;
  for (int i = 0; i < 5; ++i) {
    const std::string token = "s.secret" + std::to_string(i);
    const net::Header headers[] = {{"X-Vault-Token", token}, {"Content-Type", "application/json"}};
    auto res = loop.run(c.request(http::verb::post, "/v1/secret/data/app?x=1", headers, R"({"a":1})"));
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->body.view() == "POST /v1/secret/data/app?x=1 token=" + token + R"( body={"a":1})");
    REQUIRE(res->header("x-test"));
    CHECK(*res->header("X-TEST") == "yes");
  }
  CHECK(server.handled() == 5);
  const auto stats = c.stats();
  CHECK(stats.connections_opened == 1);
  CHECK(stats.requests == 5);
  CHECK(stats.idle == 1);
  CHECK(stats.in_use == 0);
}

TEST_CASE("http client: a base URL prefix is prepended and bad input is refused before any I/O") {
  test::TestHttpServer server(test::TestHttpServer::Mode::echo);
  ClientLoop loop;
  auto client = net::HttpClient::create(loop.io.get_executor(), server.url() + "/api/");
  REQUIRE(client);
  auto res = loop.run((*client)->request(http::verb::get, "/v1/x"));
  REQUIRE(res);
  CHECK(res->body.view().starts_with("GET /api/v1/x "));

  auto bad_target = loop.run((*client)->request(http::verb::get, "v1/x"));
  REQUIRE_FALSE(bad_target);
  CHECK(bad_target.error().code == kms::Errc::invalid_argument);
  const net::Header injected[] = {{"X-Vault-Token", "a\r\nX-Evil: 1"}};
  auto bad_header = loop.run((*client)->request(http::verb::get, "/v1/x", injected));
  REQUIRE_FALSE(bad_header);
  CHECK(bad_header.error().message.find("CR/LF") != std::string::npos);
  CHECK(bad_header.error().message.find("X-Evil") == std::string::npos);  // the value is never echoed
  CHECK((*client)->stats().requests == 1);

  CHECK_FALSE(net::HttpClient::create(loop.io.get_executor(), "ftp://host"));
  CHECK_FALSE(net::HttpClient::create(loop.io.get_executor(), "http://user:pw@host"));
  CHECK_FALSE(net::HttpClient::create(loop.io.get_executor(), "not a url"));
}

TEST_CASE("http client: TLS verifies the chain and the host name, with SNI") {
  Pki pki;
  test::TestHttpServer server(test::TestHttpServer::Mode::echo, pki.p("server.pem"), pki.p("server.key"));
  ClientLoop loop;
  net::ClientTls tls;
  tls.ca_file = pki.p("ca.pem");

  SECTION("trusted CA, IP address in the SAN") {
    auto client = net::HttpClient::create(loop.io.get_executor(), server.url("https"), std::move(tls));
    REQUIRE(client);
    auto res = loop.run((*client)->request(http::verb::get, "/ok"));
    REQUIRE(res);
    CHECK(res->status == 200);
  }
  SECTION("host name verified against the DNS SAN (CA given as PEM text)") {
    std::ifstream in(pki.p("ca.pem"));
    net::ClientTls pem;
    pem.ca_pem.assign(std::istreambuf_iterator<char>(in), {});
    auto client = net::HttpClient::create(loop.io.get_executor(), server.url("https", "localhost"), std::move(pem));
    REQUIRE(client);
    auto res = loop.run((*client)->request(http::verb::get, "/ok"));
    REQUIRE(res);
    CHECK(res->status == 200);
  }
  SECTION("a name the certificate does not carry is refused") {
    tls.server_name = "vault.example.com";
    auto client = net::HttpClient::create(loop.io.get_executor(), server.url("https"), std::move(tls));
    REQUIRE(client);
    auto res = loop.run((*client)->request(http::verb::get, "/ok"));
    REQUIRE_FALSE(res);
    CHECK(res.error().code == kms::Errc::unavailable);
    CHECK(res.error().message.find("certificate verification failed") != std::string::npos);
  }
  SECTION("an untrusted CA (system store) is refused") {
    auto client = net::HttpClient::create(loop.io.get_executor(), server.url("https"));
    REQUIRE(client);
    auto res = loop.run((*client)->request(http::verb::get, "/ok"));
    REQUIRE_FALSE(res);
    CHECK(res.error().message.find("certificate verification failed") != std::string::npos);
  }
  SECTION("plain HTTP to a TLS port fails cleanly") {
    auto client = net::HttpClient::create(loop.io.get_executor(), server.url("http"));
    REQUIRE(client);
    auto res = loop.run((*client)->request(http::verb::get, "/ok"));
    REQUIRE_FALSE(res);
    CHECK(res.error().code == kms::Errc::unavailable);
  }
}

TEST_CASE("http client: connection refused and a silent server give clean errors within the timeouts") {
  ClientLoop loop;
  unsigned short closed_port = 0;
  {
    asio::io_context io;
    tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    closed_port = a.local_endpoint().port();
  }
  auto refused = net::HttpClient::create(loop.io.get_executor(), "http://127.0.0.1:" + std::to_string(closed_port));
  REQUIRE(refused);
  auto r1 = loop.run((*refused)->request(http::verb::get, "/"));
  REQUIRE_FALSE(r1);
  CHECK(r1.error().code == kms::Errc::unavailable);
  CHECK(r1.error().message.find("cannot connect") != std::string::npos);

  std::promise<void> release;
  auto released = release.get_future().share();
  RawServer silent([released](tcp::socket&) { released.wait_for(20s); });
  net::ClientOptions opts;
  opts.request_timeout = 300ms;
  auto client = net::HttpClient::create(loop.io.get_executor(), silent.url(), {}, opts);
  REQUIRE(client);
  const auto t0 = std::chrono::steady_clock::now();
  auto r2 = loop.run((*client)->request(http::verb::get, "/"));
  const auto took = std::chrono::steady_clock::now() - t0;
  release.set_value();
  REQUIRE_FALSE(r2);
  CHECK(r2.error().code == kms::Errc::unavailable);
  CHECK(r2.error().message.find("timed out") != std::string::npos);
  CHECK(took >= 250ms);
  CHECK(took < 5s);
}

TEST_CASE("http client: a keep-alive connection closed by the server is replaced transparently") {
  test::TestHttpServer server(test::TestHttpServer::Mode::echo, "", "", std::chrono::seconds(1));
  ClientLoop loop;
  auto client = net::HttpClient::create(loop.io.get_executor(), server.url());
  REQUIRE(client);
  REQUIRE(loop.run((*client)->request(http::verb::get, "/a")));
  REQUIRE((*client)->stats().idle == 1);
  REQUIRE(wait_until([&] { return server.active_connections() == 0; }));
  auto res = loop.run((*client)->request(http::verb::get, "/b"));
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK((*client)->stats().connections_opened == 2);
}

TEST_CASE("http client: the pool never opens more than max_connections") {
  test::TestHttpServer server(test::TestHttpServer::Mode::slow);
  ClientLoop loop;
  net::ClientOptions opts;
  opts.max_connections = 2;
  auto client = net::HttpClient::create(loop.io.get_executor(), server.url(), {}, opts);
  REQUIRE(client);
  std::vector<std::future<kms::Result<net::ClientResponse>>> futures;
  for (int i = 0; i < 8; ++i) {
    futures.push_back(asio::co_spawn(loop.io, (*client)->request(http::verb::get, "/slow"), asio::use_future));
  }
  for (auto& f : futures) {
    REQUIRE(f.wait_for(30s) == std::future_status::ready);
    auto r = f.get();
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  CHECK(server.peak() <= 2);
  CHECK(server.peak() == 2);
  CHECK((*client)->stats().connections_opened == 2);
}

TEST_CASE("http client: a chunked stream delivers lines as they arrive, split anywhere") {
  std::promise<void> second_line_seen;
  auto seen = second_line_seen.get_future().share();
  RawServer raw([seen](tcp::socket& s) {
    send(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    send(s, "c\r\n{\"type\":\"A\"}\r\n");
    send(s, "1\r\n\n\r\n");
    send(s, "5\r\n{\"typ\r\n");
    send(s, "8\r\ne\":\"B\"}\n\r\n");
    // The client must have the second line before the stream ends.
    seen.wait_for(10s);
    send(s, "c\r\n{\"type\":\"C\"}\r\n0\r\n\r\n");
  });
  ClientLoop loop;
  auto client = net::HttpClient::create(loop.io.get_executor(), raw.url());
  REQUIRE(client);
  std::vector<std::string> lines;
  auto res =
      loop.run((*client)->stream(http::verb::get, "/watch", {}, {}, [&](std::string_view line) -> kms::Result<bool> {
        lines.emplace_back(line);
        if (lines.size() == 2) second_line_seen.set_value();
        return true;
      }));
  REQUIRE(res);
  CHECK(res->status == 200);
  REQUIRE(lines.size() == 3);
  CHECK(lines[0] == R"({"type":"A"})");
  CHECK(lines[1] == R"({"type":"B"})");
  CHECK(lines[2] == R"({"type":"C"})");
}

TEST_CASE("http client: a stream is cancelled from another thread, times out when idle, and returns error bodies") {
  ClientLoop loop;
  SECTION("cancel") {
    std::promise<void> done;
    auto finished = done.get_future().share();
    RawServer raw([finished](tcp::socket& s) {
      send(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\none\n\r\n");
      finished.wait_for(20s);
    });
    auto client = net::HttpClient::create(loop.io.get_executor(), raw.url());
    REQUIRE(client);
    net::StreamControl control;
    std::atomic<int> lines{0};
    auto fut = asio::co_spawn(loop.io,
                              (*client)->stream(
                                  http::verb::get, "/watch", {}, {},
                                  [&](std::string_view) -> kms::Result<bool> {
                                    ++lines;
                                    return true;
                                  },
                                  control),
                              asio::use_future);
    REQUIRE(wait_until([&] { return lines.load() == 1; }));
    control.cancel();
    REQUIRE(fut.wait_for(10s) == std::future_status::ready);
    auto res = fut.get();
    done.set_value();
    REQUIRE_FALSE(res);
    CHECK(res.error().message.find("cancelled") != std::string::npos);
    CHECK((*client)->stats().in_use == 0);
  }
  SECTION("idle timeout") {
    std::promise<void> done;
    auto finished = done.get_future().share();
    RawServer raw([finished](tcp::socket& s) {
      send(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
      finished.wait_for(20s);
    });
    net::ClientOptions opts;
    opts.stream_idle_timeout = 300ms;
    auto client = net::HttpClient::create(loop.io.get_executor(), raw.url(), {}, opts);
    REQUIRE(client);
    auto res = loop.run((*client)->stream(http::verb::get, "/watch", {}, {},
                                          [](std::string_view) -> kms::Result<bool> { return true; }));
    done.set_value();
    REQUIRE_FALSE(res);
    CHECK(res.error().message.find("timed out") != std::string::npos);
  }
  SECTION("a non-2xx answer comes back whole, with no line delivered") {
    RawServer raw([](tcp::socket& s) {
      send(s,
           "HTTP/1.1 410 Gone\r\nContent-Type: application/json\r\nContent-Length: "
           "24\r\n\r\n{\"code\":410,\"x\":\"a\\nb\"}\n");
    });
    auto client = net::HttpClient::create(loop.io.get_executor(), raw.url());
    REQUIRE(client);
    int lines = 0;
    auto res =
        loop.run((*client)->stream(http::verb::get, "/watch", {}, {}, [&](std::string_view) -> kms::Result<bool> {
          ++lines;
          return true;
        }));
    REQUIRE(res);
    CHECK(res->status == 410);
    CHECK(lines == 0);
    CHECK(res->body.view() == "{\"code\":410,\"x\":\"a\\nb\"}\n");
  }
  SECTION("the line handler stops the stream with an error") {
    RawServer raw([](tcp::socket& s) { send(s, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nbad\nx\n"); });
    auto client = net::HttpClient::create(loop.io.get_executor(), raw.url());
    REQUIRE(client);
    auto res =
        loop.run((*client)->stream(http::verb::get, "/watch", {}, {}, [](std::string_view line) -> kms::Result<bool> {
          if (line == "bad") return kms::fail(kms::Errc::invalid_argument, "bad event");
          return true;
        }));
    REQUIRE_FALSE(res);
    CHECK(res.error().message == "bad event");
  }
}

// The transport seam (transport.hpp) with the fuzz targets' in-process
// transport (tests/fuzz/scripted_transport.*): the client's own HTTP code
// reads what it answers, chunked bodies, header fields and a connection the
// server ends included; https:// is refused over it; without it, TCP again.
TEST_CASE("http client: an installed transport carries the requests through the client's HTTP code") {
  ClientLoop loop;
  auto transport = std::make_shared<fuzz::ScriptedTransport>();
  net::use_transport(loop.io, transport);
  REQUIRE(net::installed_transport(loop.io) == transport);
  transport->set_script(fuzz::parse_script(
      "200\n{\"a\":1}\n--\n"
      "HTTP/1.1 201 Created\r\nX-Test: yes\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n\n--\n"
      "503\nretried after a pause: not scripted\n--\n"
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n{\"e\":1}\n\r\n9\r\n{\"e\":2}\r\n\r\n0\r\n\r\n"));
  auto client = net::HttpClient::create(loop.io.get_executor(), fuzz::kScriptedUrl);
  REQUIRE(client);
  auto& c = **client;

  auto first = loop.run(c.request(http::verb::get, "/one"));
  REQUIRE(first);
  CHECK(first->status == 200);
  CHECK(first->body.view() == R"({"a":1})");
  CHECK(first->header("Content-Type") == "application/json");

  const std::string body = "x=1";
  auto second = loop.run(c.request(http::verb::post, "/two", {}, body));
  REQUIRE(second);
  CHECK(second->status == 201);
  CHECK(second->body.view() == "abcde");
  CHECK(second->header("x-test") == "yes");
  CHECK(c.stats().connections_opened == 1);  // one keep-alive connection so far

  // The server ended that connection after its raw answer: the client finds
  // out when it sends and asks again on a fresh one.
  auto third = loop.run(c.request(http::verb::get, "/three"));
  REQUIRE(third);
  CHECK(third->status == 400);  // 503 is scripted as 400 (no retry pause in a fuzz run)
  CHECK(c.stats().connections_opened == 2);

  std::vector<std::string> lines;
  auto streamed = loop.run(c.stream(http::verb::get, "/watch", {}, {}, [&](std::string_view line) -> kms::Result<bool> {
    lines.emplace_back(line);
    return true;
  }));
  REQUIRE(streamed);
  CHECK(streamed->status == 200);
  CHECK(lines == std::vector<std::string>{R"({"e":1})", R"({"e":2})"});
  CHECK(transport->requests() == 4);

  // The script is used up: 404.
  auto after = loop.run(c.request(http::verb::get, "/four"));
  REQUIRE(after);
  CHECK(after->status == 404);

  auto tls = net::HttpClient::create(loop.io.get_executor(), "https://127.0.0.1:8080");
  REQUIRE_FALSE(tls);
  CHECK(tls.error().code == kms::Errc::invalid_argument);

  net::use_transport(loop.io, nullptr);
  CHECK(net::installed_transport(loop.io) == nullptr);
  auto tcp_client = net::HttpClient::create(loop.io.get_executor(), "http://127.0.0.1:1");
  REQUIRE(tcp_client);
  auto refused = loop.run((*tcp_client)->request(http::verb::get, "/"));
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == kms::Errc::unavailable);
  CHECK(refused.error().message.find("cannot connect") != std::string::npos);
}

TEST_CASE("http client: url_encode keeps unreserved characters only") {
  CHECK(net::url_encode("a b/c~d.e-f_g") == "a%20b%2Fc~d.e-f_g");
  CHECK(net::url_encode("a b/c", false) == "a%20b/c");
  CHECK(net::url_encode("é") == "%C3%A9");
}
