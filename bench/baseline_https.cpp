// The load harness's baseline: a minimal Boost.Beast HTTPS server that answers
// every request with a fixed 200 JSON body: the size of a 32 B encrypt answer,
// or of a 1 KiB one for a target ending in "/1k". Same TLS settings as rootseald
// (net::make_server_tls), same threads, keep-alive, TCP_NODELAY, but none of rootseald's
// work: it bounds what any HTTPS service can do on this machine. With "-" for
// the certificate and key it serves plain HTTP (rootseald's loopback plain listener).
//
//   rootseal_baseline_https <cert.pem|-> <key.pem|-> <port> [threads]
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

#include "rootseal/net/tls.hpp"
#include "bench_util.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::string_view kBody =
    R"({"request_id":"00000000-0000-0000-0000-000000000000","lease_id":"","renewable":false,"lease_duration":0,)"
    R"("data":{"ciphertext":"vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","key_version":1},)"
    R"("wrap_info":null,"warnings":null,"auth":null})";

// The same answer with the ciphertext of a 1 KiB plaintext (base64 of 12 + 1024 + 16 bytes).
const std::string& body_1k() {
  static const std::string body = [] {
    const std::string_view marker = "vault:v1:";
    const auto at = kBody.find(marker) + marker.size();
    const auto end = kBody.find('"', at);
    return std::string(kBody.substr(0, at)) + std::string(1404, 'A') + std::string(kBody.substr(end));
  }();
  return body;
}

// Answers requests on the stream until the client closes or stops keep-alive.
template <class Stream>
asio::awaitable<void> serve(Stream& stream) {
  beast::flat_buffer buffer;
  for (;;) {
    http::request<http::string_body> req;
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(30));
    auto [rec, rn] = co_await http::async_read(stream, buffer, req, kTuple);
    if (rec) break;
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::content_type, "application/json");
    res.keep_alive(req.keep_alive());
    if (req.target().ends_with("/1k")) {
      res.body() = body_1k();
    } else {
      res.body() = kBody;
    }
    res.prepare_payload();
    auto [wec, wn] = co_await http::async_write(stream, res, kTuple);
    if (wec || !res.keep_alive()) break;
  }
}

asio::awaitable<void> session(tcp::socket socket, std::shared_ptr<asio::ssl::context> ctx) {
  if (!ctx) {
    beast::tcp_stream stream(std::move(socket));
    co_await serve(stream);
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    co_return;
  }
  beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), *ctx);
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(30));
  auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::server, kTuple);
  if (hec) co_return;
  co_await serve(stream);
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(1));
  (void)co_await stream.async_shutdown(kTuple);
}

asio::awaitable<void> listen(tcp::acceptor& acceptor, std::shared_ptr<asio::ssl::context> ctx) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(acceptor.get_executor()), kTuple);
    if (ec) break;
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);  // as rootseald's server does
    auto executor = socket.get_executor();
    asio::co_spawn(executor, session(std::move(socket), ctx), asio::detached);
  }
}

int run_server(int argc, char** argv) {
  std::shared_ptr<asio::ssl::context> ctx;  // null: plain HTTP
  if (std::string_view(argv[1]) != "-") {
    rootseal::net::TlsConfig tls;
    tls.cert_file = argv[1];
    tls.key_file = argv[2];
    auto made = rootseal::net::make_server_tls(tls);
    if (!made) {
      std::fprintf(stderr, "%s\n", made.error().message.c_str());
      return 1;
    }
    ctx = std::move(*made);
  }
  const int threads = argc > 4 ? rootseal::bench::parse_arg<int>(argv[4], "threads")
                               : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (threads < 1) rootseal::bench::die("threads: at least 1");
  asio::io_context io(threads);
  tcp::acceptor acceptor(
      io, {asio::ip::make_address("127.0.0.1"), rootseal::bench::parse_arg<unsigned short>(argv[3], "port")});
  asio::co_spawn(io, listen(acceptor, ctx), asio::detached);
  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](auto, auto) { io.stop(); });
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(threads));
  for (int i = 1; i < threads; ++i) pool.emplace_back([&] { io.run(); });
  io.run();
  for (auto& t : pool) t.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s <cert.pem|-> <key.pem|-> <port> [threads]\n", argv[0]);
    return 2;
  }
  try {
    return run_server(argc, argv);
  } catch (const std::exception& e) {  // a port in use, a thread that cannot start
    rootseal::bench::die(e.what());
  }
}
