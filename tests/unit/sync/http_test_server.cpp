#include "http_test_server.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

#include "rootseal/net/http_server.hpp"
#include "rootseal/net/tls.hpp"

namespace asio = boost::asio;
namespace http = boost::beast::http;

namespace rootseal::test {

struct TestHttpServer::Impl {
  asio::io_context io;
  std::unique_ptr<net::HttpServer> server;
  asio::ip::tcp::endpoint bound;
  std::thread thread;
  std::atomic<int> handled{0};
  std::atomic<int> concurrent{0};
  std::atomic<int> peak{0};
};

TestHttpServer::TestHttpServer(Mode mode, const std::string& cert_file, const std::string& key_file,
                               std::chrono::seconds idle_timeout)
    : impl_(std::make_unique<Impl>()) {
  Impl* impl = impl_.get();
  net::ServerLimits limits;
  limits.idle_timeout = idle_timeout;
  net::Handler handler = [impl, mode](net::Request& req, const net::PeerInfo&) -> asio::awaitable<net::Response> {
    ++impl->handled;
    if (mode == Mode::slow) {
      const int now = ++impl->concurrent;
      int old = impl->peak.load();
      while (now > old && !impl->peak.compare_exchange_weak(old, now)) {
      }
      asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
      co_await t.async_wait(asio::use_awaitable);
      --impl->concurrent;
      co_return net::json_response(200, "{}");
    }
    std::string out = std::string(req.method_string()) + " " + std::string(req.target()) +
                      " token=" + std::string(req["X-Vault-Token"]) + " body=" + std::string(req.body().view());
    net::Response res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/plain");
    res.set("X-Test", "yes");
    res.body() = net::SecureBuffer(out);
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    co_return res;
  };
  impl->server = std::make_unique<net::HttpServer>(impl->io, limits, std::move(handler));
  if (!cert_file.empty()) {
    net::TlsConfig c;
    c.cert_file = cert_file;
    c.key_file = key_file;
    auto ctx = net::make_server_tls(c);
    REQUIRE(ctx);
    impl->server->set_tls(*ctx);
  }
  REQUIRE_FALSE(impl->server->listen({asio::ip::make_address("127.0.0.1"), 0}, impl->bound));
  impl->server->start();
  impl->thread = std::thread([impl] { impl->io.run(); });
}

TestHttpServer::~TestHttpServer() {
  impl_->server->stop();
  impl_->io.stop();
  impl_->thread.join();
}

std::string TestHttpServer::url(const std::string& scheme, const std::string& host) const {
  return scheme + "://" + host + ":" + std::to_string(impl_->bound.port());
}
std::size_t TestHttpServer::active_connections() const { return impl_->server->active_connections(); }
int TestHttpServer::handled() const { return impl_->handled.load(); }
int TestHttpServer::peak() const { return impl_->peak.load(); }

}  // namespace rootseal::test
