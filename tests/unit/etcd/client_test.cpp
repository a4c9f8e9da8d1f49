// The etcd client against real etcd 3.4 members started by each test
// (tests/support/etcd_cluster): one member for the quick cases, three on
// loopback for failover, watch resumption and quorum loss. Waits poll a
// condition with a deadline.
#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "etcd_cluster.hpp"
#include "poll.hpp"
#include "rootseal/etcd/client.hpp"

using namespace rootseal;
using namespace rootseal::etcd;
using kms::Errc;
namespace asio = boost::asio;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// An io_context run by one thread for the test's lifetime.
struct Loop {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::thread thread{[this] { io.run(); }};
  ~Loop() {
    work.reset();
    io.stop();
    thread.join();
  }
  template <class T>
  T run(asio::awaitable<T> a) {
    return asio::co_spawn(io, std::move(a), asio::use_future).get();
  }
  template <class T>
  std::future<T> spawn(asio::awaitable<T> a) {
    return asio::co_spawn(io, std::move(a), asio::use_future);
  }
};

using test::eventually;

std::shared_ptr<Client> make_client(Loop& loop, std::vector<std::string> endpoints,
                                    std::chrono::milliseconds timeout = 1000ms) {
  ClientConfig cfg;
  cfg.endpoints = std::move(endpoints);
  cfg.request_timeout = timeout;
  auto c = Client::create(loop.io.get_executor(), std::move(cfg));
  REQUIRE(c);
  return *c;
}

// The recorded events of a background watch.
struct Recorder {
  std::mutex mu;
  std::vector<Event> events;
  std::size_t size() {
    std::lock_guard lock(mu);
    return events.size();
  }
  EventHandler handler() {
    return [this](std::span<const Event> evs, const ResponseHeader&) {
      std::lock_guard lock(mu);
      events.insert(events.end(), evs.begin(), evs.end());
    };
  }
};

// A loopback HTTP server that answers every request with one canned body
// (a member that answers from an old raft term, for the stale-member guard).
class CannedServer {
 public:
  explicit CannedServer(std::string body) : body_(std::move(body)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~CannedServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::atomic<int> answered{0};

 private:
  void serve() {
    while (true) {
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      std::string req;
      char buf[4096];
      // Headers, then the Content-Length body.
      while (true) {
        const auto n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        req.append(buf, static_cast<std::size_t>(n));
        const auto end = req.find("\r\n\r\n");
        if (end == std::string::npos) continue;
        const auto cl = req.find("Content-Length: ");
        const std::size_t want = cl == std::string::npos ? 0 : std::stoul(req.substr(cl + 16));
        if (req.size() >= end + 4 + want) break;
      }
      const std::string answer =
          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
          std::to_string(body_.size()) + "\r\n\r\n" + body_;
      (void)::send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
      ++answered;
      ::close(c);
    }
  }
  std::string body_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

std::int64_t current_revision(Loop& loop, Client& c) {
  auto r = loop.run(c.range({"revision-probe", "", 0, 0, true, false}));  // the header has the store revision
  REQUIRE(r);
  return r->header.revision;
}

}  // namespace

TEST_CASE("etcd client: put, get, prefix, limit, keys_only, revision, delete") {
  test::EtcdCluster cluster(1);
  Loop loop;
  auto c = make_client(loop, cluster.endpoints());

  auto p1 = loop.run(c->put({"app/a", "one", 0, false}));
  REQUIRE(p1);
  auto p2 = loop.run(c->put({"app/a", std::string("two\0bytes", 9), 0, true}));
  REQUIRE(p2);
  REQUIRE(p2->prev_kv.has_value());
  CHECK(p2->prev_kv->value == "one");
  REQUIRE(loop.run(c->put({"app/b", "b", 0, false})));
  REQUIRE(loop.run(c->put({"apq", "outside", 0, false})));

  auto one = loop.run(c->range({"app/a", "", 0, 0, false, false}));
  REQUIRE(one);
  REQUIRE(one->kvs.size() == 1);
  CHECK(one->kvs[0].value == std::string("two\0bytes", 9));
  CHECK(one->kvs[0].version == 2);
  CHECK(one->kvs[0].mod_revision == p2->header.revision);

  auto old = loop.run(c->range({"app/a", "", p1->header.revision, 0, false, false}));
  REQUIRE(old);
  REQUIRE(old->kvs.size() == 1);
  CHECK(old->kvs[0].value == "one");

  auto prefix = loop.run(c->range({"app/", prefix_end("app/"), 0, 0, false, false}));
  REQUIRE(prefix);
  REQUIRE(prefix->kvs.size() == 2);
  CHECK(prefix->kvs[0].key == "app/a");
  CHECK(prefix->kvs[1].key == "app/b");

  auto limited = loop.run(c->range({"app/", prefix_end("app/"), 0, 1, true, false}));
  REQUIRE(limited);
  REQUIRE(limited->kvs.size() == 1);
  CHECK(limited->kvs[0].key == "app/a");
  CHECK(limited->kvs[0].value.empty());
  CHECK(limited->count == 2);
  CHECK(limited->more);

  auto miss = loop.run(c->range({"nothing", "", 0, 0, false, false}));
  REQUIRE(miss);
  CHECK(miss->kvs.empty());

  auto del = loop.run(c->delete_range({"app/", prefix_end("app/"), true}));
  REQUIRE(del);
  CHECK(del->deleted == 2);
  CHECK(del->prev_kvs.size() == 2);
  auto after = loop.run(c->range({"app/", prefix_end("app/"), 0, 0, false, false}));
  REQUIRE(after);
  CHECK(after->kvs.empty());
  auto outside = loop.run(c->range({"apq", "", 0, 0, false, false}));
  REQUIRE(outside);
  CHECK(outside->kvs.size() == 1);

  auto future = loop.run(c->range({"apq", "", after->header.revision + 100, 0, false, false}));
  REQUIRE_FALSE(future);
  CHECK(future.error().code == Errc::invalid_argument);
}

TEST_CASE("etcd client: txn compares on create_revision, mod_revision, version and value") {
  test::EtcdCluster cluster(1);
  Loop loop;
  auto c = make_client(loop, cluster.endpoints());

  // Create only if absent.
  TxnRequest create;
  create.compare.push_back(Compare::create_revision("key", 0));
  create.success.push_back(PutRequest{"key", "v1", 0, false});
  create.failure.push_back(RangeRequest{"key", "", 0, 0, false, false});
  auto first = loop.run(c->txn(create));
  REQUIRE(first);
  CHECK(first->succeeded);
  auto second = loop.run(c->txn(create));
  REQUIRE(second);
  CHECK_FALSE(second->succeeded);
  REQUIRE(second->responses.size() == 1);
  const auto* seen = std::get_if<RangeResponse>(&second->responses[0]);
  REQUIRE(seen != nullptr);
  REQUIRE(seen->kvs.size() == 1);
  CHECK(seen->kvs[0].value == "v1");
  const auto rev = seen->kvs[0].mod_revision;

  const auto cas = [&](Compare cmp, std::string value) {
    TxnRequest t;
    t.compare.push_back(std::move(cmp));
    t.success.push_back(PutRequest{"key", std::move(value), 0, false});
    auto r = loop.run(c->txn(t));
    REQUIRE(r);
    return r->succeeded;
  };
  CHECK_FALSE(cas(Compare::mod_revision("key", rev - 1), "stale"));
  CHECK(cas(Compare::mod_revision("key", rev), "v2"));
  CHECK_FALSE(cas(Compare::mod_revision("key", rev), "again"));  // the revision moved on
  CHECK_FALSE(cas(Compare::version("key", 1), "x"));
  CHECK(cas(Compare::version("key", 2), "v3"));
  CHECK(cas(Compare::version("key", 2, Compare::Result::greater), "v4"));
  CHECK_FALSE(cas(Compare::value_is("key", "v3"), "x"));
  CHECK(cas(Compare::value_is("key", "v4"), "v5"));
  CHECK(cas(Compare::value_is("key", "v4", Compare::Result::not_equal), "v6"));
  CHECK_FALSE(cas(Compare::create_revision("key", 0), "x"));
  CHECK(cas(Compare::create_revision("key", first->header.revision), "v7"));

  auto final = loop.run(c->range({"key", "", 0, 0, false, false}));
  REQUIRE(final);
  REQUIRE(final->kvs.size() == 1);
  CHECK(final->kvs[0].value == "v7");
  CHECK(final->kvs[0].version == 7);
}

TEST_CASE("etcd client: two concurrent compare-and-swap writers, exactly one wins each round") {
  test::EtcdCluster cluster(1);
  Loop loop;
  auto a = make_client(loop, cluster.endpoints());
  auto b = make_client(loop, cluster.endpoints());
  REQUIRE(loop.run(a->put({"record", "start", 0, false})));
  for (int round = 0; round < 20; ++round) {
    auto now = loop.run(a->range({"record", "", 0, 0, false, false}));
    REQUIRE(now);
    REQUIRE(now->kvs.size() == 1);
    const auto rev = now->kvs[0].mod_revision;
    const auto attempt = [&](Client& c, std::string who) {
      TxnRequest t;
      t.compare.push_back(Compare::mod_revision("record", rev));
      t.success.push_back(PutRequest{"record", who + std::to_string(round), 0, false});
      return c.txn(std::move(t));
    };
    auto fa = loop.spawn(attempt(*a, "a"));
    auto fb = loop.spawn(attempt(*b, "b"));
    auto ra = fa.get();
    auto rb = fb.get();
    REQUIRE(ra);
    REQUIRE(rb);
    CHECK(ra->succeeded != rb->succeeded);
    auto after = loop.run(b->range({"record", "", 0, 0, false, false}));
    REQUIRE(after);
    REQUIRE(after->kvs.size() == 1);
    CHECK(after->kvs[0].value == (ra->succeeded ? "a" : "b") + std::to_string(round));
    CHECK(after->kvs[0].mod_revision == rev + 1);
  }
}

TEST_CASE("etcd client: a lease kept alive keeps its key, and once it stops the key goes") {
  test::EtcdCluster cluster(1);
  Loop loop;
  auto c = make_client(loop, cluster.endpoints());
  auto lease = loop.run(c->lease_grant(2s));
  REQUIRE(lease);
  CHECK(lease->ttl == 2);
  REQUIRE(loop.run(c->put({"member/me", "here", lease->id, false})));

  auto keeper = c->keep_alive(lease->id);
  // Six keepalives at TTL/3 are about 4 s: twice the TTL.
  REQUIRE(eventually([&] { return keeper->sent() >= 6; }, 20s));
  auto alive = loop.run(c->range({"member/me", "", 0, 0, false, false}));
  REQUIRE(alive);
  REQUIRE(alive->kvs.size() == 1);
  CHECK(alive->kvs[0].lease == lease->id);
  CHECK_FALSE(keeper->lost());

  keeper->stop();
  CHECK(eventually(
      [&] {
        auto r = loop.run(c->range({"member/me", "", 0, 0, false, false}));
        return r && r->kvs.empty();
      },
      15s));
  auto expired = loop.run(c->lease_keepalive(lease->id));
  REQUIRE_FALSE(expired);
  CHECK(expired.error().code == Errc::not_found);
}

TEST_CASE("etcd client: a revoked lease is reported lost by its keepalive loop") {
  test::EtcdCluster cluster(1);
  Loop loop;
  auto c = make_client(loop, cluster.endpoints());
  auto lease = loop.run(c->lease_grant(30s));
  REQUIRE(lease);
  REQUIRE(loop.run(c->put({"held", "x", lease->id, false})));
  std::atomic<int> lost_calls{0};
  std::atomic<bool> was_not_found{false};
  auto keeper = c->keep_alive(lease->id, [&](const kms::Error& e) {
    was_not_found = e.code == Errc::not_found;
    ++lost_calls;
  });
  REQUIRE(eventually([&] { return keeper->sent() >= 1; }, 10s));
  REQUIRE(loop.run(c->lease_revoke(lease->id)));
  auto gone = loop.run(c->range({"held", "", 0, 0, false, false}));
  REQUIRE(gone);
  CHECK(gone->kvs.empty());
  // The next keepalive (TTL/3 = 10 s later) finds the lease gone.
  REQUIRE(eventually([&] { return keeper->lost(); }, 20s));
  CHECK(lost_calls.load() == 1);
  CHECK(was_not_found.load());

  auto unknown = loop.run(c->put({"k", "v", 12345, false}));
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().code == Errc::not_found);
  CHECK(unknown.error().message.find("lease not found") != std::string::npos);
}

TEST_CASE("etcd client: a watch sees puts and deletes in revision order") {
  test::EtcdCluster cluster(1);
  Loop loop;
  auto c = make_client(loop, cluster.endpoints());
  REQUIRE(loop.run(c->put({"other", "x", 0, false})));
  const auto start = current_revision(loop, *c) + 1;
  Recorder rec;
  net::StreamControl control;
  auto watching = loop.spawn(c->watch({"w/", prefix_end("w/"), start, true}, rec.handler(), control));

  REQUIRE(loop.run(c->put({"w/a", "1", 0, false})));
  REQUIRE(loop.run(c->put({"other", "y", 0, false})));  // outside the range
  REQUIRE(loop.run(c->put({"w/b", "2", 0, false})));
  REQUIRE(loop.run(c->delete_range({"w/a", "", false})));
  TxnRequest both;
  both.success.push_back(PutRequest{"w/c", "3", 0, false});
  both.success.push_back(PutRequest{"w/d", "4", 0, false});
  REQUIRE(loop.run(c->txn(both)));

  REQUIRE(eventually([&] { return rec.size() >= 5; }, 10s));
  control.cancel();
  auto end = watching.get();
  REQUIRE(end);
  CHECK(end->reason == WatchEnd::Reason::cancelled);
  std::lock_guard lock(rec.mu);
  REQUIRE(rec.events.size() == 5);
  CHECK(rec.events[0].kv.key == "w/a");
  CHECK(rec.events[0].type == Event::Type::put);
  CHECK(rec.events[0].kv.value == "1");
  CHECK(rec.events[1].kv.key == "w/b");
  CHECK(rec.events[2].kv.key == "w/a");
  CHECK(rec.events[2].type == Event::Type::del);
  REQUIRE(rec.events[2].prev_kv.has_value());
  CHECK(rec.events[2].prev_kv->value == "1");
  CHECK(rec.events[3].kv.key == "w/c");
  CHECK(rec.events[4].kv.key == "w/d");
  CHECK(rec.events[3].kv.mod_revision == rec.events[4].kv.mod_revision);  // one txn, one revision
  CHECK(rec.events[0].kv.mod_revision == start);
  CHECK(end->next_revision == rec.events[4].kv.mod_revision + 1);
}

TEST_CASE("etcd client: compaction is reported to reads and to a watch that would resume before it") {
  test::EtcdCluster cluster(1);
  Loop loop;
  auto c = make_client(loop, cluster.endpoints());
  auto first = loop.run(c->put({"c", "1", 0, false}));
  REQUIRE(first);
  REQUIRE(loop.run(c->put({"c", "2", 0, false})));
  auto last = loop.run(c->put({"c", "3", 0, false}));
  REQUIRE(last);
  const auto body = "{\"revision\":\"" + std::to_string(last->header.revision) + "\",\"physical\":true}";
  const int port = std::stoi(cluster.endpoint(0).substr(cluster.endpoint(0).rfind(':') + 1));
  REQUIRE(test::loopback_http(port, "POST", "/v3/kv/compaction", body, 5s).find("header") != std::string::npos);

  auto old = loop.run(c->range({"c", "", first->header.revision, 0, false, false}));
  REQUIRE_FALSE(old);
  CHECK(old.error().code == Errc::compacted);

  Recorder rec;
  auto end = loop.run(c->watch({"c", "", first->header.revision, false}, rec.handler()));
  REQUIRE(end);
  CHECK(end->reason == WatchEnd::Reason::compacted);
  CHECK(end->compact_revision == last->header.revision);
  CHECK(rec.size() == 0);
}

TEST_CASE("etcd client: username and password: the token is renewed when etcd invalidates it") {
  test::EtcdCluster cluster(1);
  REQUIRE(cluster.etcdctl(0, "user add root:s3cret-pw") == 0);
  REQUIRE(cluster.etcdctl(0, "auth enable") == 0);
  Loop loop;

  ClientConfig anon;
  anon.endpoints = cluster.endpoints();
  auto nobody = Client::create(loop.io.get_executor(), std::move(anon));
  REQUIRE(nobody);
  auto refused = loop.run((*nobody)->range({"k", "", 0, 0, false, false}));
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == Errc::permission_denied);

  ClientConfig wrong;
  wrong.endpoints = cluster.endpoints();
  wrong.username = "root";
  wrong.password = kms::SecureBytes::copy_of(std::string_view("not-it"));
  auto bad = Client::create(loop.io.get_executor(), std::move(wrong));
  REQUIRE(bad);
  auto denied = loop.run((*bad)->put({"k", "v", 0, false}));
  REQUIRE_FALSE(denied);
  CHECK(denied.error().code == Errc::permission_denied);
  CHECK(denied.error().message.find("not-it") == std::string::npos);

  ClientConfig right;
  right.endpoints = cluster.endpoints();
  right.username = "root";
  right.password = kms::SecureBytes::copy_of(std::string_view("s3cret-pw"));
  auto c = Client::create(loop.io.get_executor(), std::move(right));
  REQUIRE(c);
  REQUIRE(loop.run((*c)->put({"k", "v1", 0, false})));

  // A password change (here to the same password) invalidates the user's
  // tokens: the next call gets "invalid auth token" and authenticates again.
  REQUIRE(cluster.etcdctl(0, "--user root:s3cret-pw user passwd root --interactive=false", "s3cret-pw\n") == 0);
  auto again = loop.run((*c)->range({"k", "", 0, 0, false, false}));
  REQUIRE(again);
  REQUIRE(again->kvs.size() == 1);
  CHECK(again->kvs[0].value == "v1");

  // A watch carries the token too.
  Recorder rec;
  net::StreamControl control;
  auto watching = loop.spawn((*c)->watch({"k", "", again->header.revision + 1, false}, rec.handler(), control));
  REQUIRE(loop.run((*c)->put({"k", "v2", 0, false})));
  REQUIRE(eventually([&] { return rec.size() >= 1; }, 10s));
  control.cancel();
  REQUIRE(watching.get());
  std::lock_guard lock(rec.mu);
  CHECK(rec.events[0].kv.value == "v2");
  // An anonymous watch is refused, not retried for ever.
  auto anon_watch = loop.run((*nobody)->watch({"k", "", 0, false}, rec.handler()));
  REQUIRE_FALSE(anon_watch);
  CHECK(anon_watch.error().code == Errc::permission_denied);
}

TEST_CASE("etcd client: calls fail over to the next endpoint when a member is gone") {
  test::EtcdCluster cluster(3);
  Loop loop;
  auto c = make_client(loop, cluster.endpoints());
  REQUIRE(loop.run(c->put({"f", "1", 0, false})));
  CHECK(c->preferred_endpoint() == cluster.endpoint(0));
  cluster.kill(0);
  // A refused connection never reached the member: even a put goes elsewhere.
  // (If member 0 led, the others elect a leader first: poll.)
  REQUIRE(eventually([&] { return loop.run(c->put({"f", "2", 0, false})).has_value(); }, 20s));
  CHECK(c->preferred_endpoint() != cluster.endpoint(0));
  auto r = loop.run(c->range({"f", "", 0, 0, false, false}));
  REQUIRE(r);
  REQUIRE(r->kvs.size() == 1);
  CHECK(r->kvs[0].value == "2");
  CHECK(c->highest_raft_term() >= 2);
}

TEST_CASE("etcd client: a watch resumes on another member after its member is killed, nothing lost or repeated") {
  test::EtcdCluster cluster(3);
  Loop loop;
  auto watcher = make_client(loop, cluster.endpoints());  // watches through member 0 first
  auto writer = make_client(loop, {cluster.endpoint(1), cluster.endpoint(2)});
  const auto start = current_revision(loop, *writer) + 1;
  Recorder rec;
  net::StreamControl control;
  auto watching = loop.spawn(watcher->watch({"ev/", prefix_end("ev/"), start, false}, rec.handler(), control));

  constexpr int kKeys = 60;
  // Create-if-absent: a write sent again after an unknown outcome cannot apply twice.
  const auto write = [&](int i) {
    const std::string key = "ev/" + std::to_string(1000 + i);
    TxnRequest t;
    t.compare.push_back(Compare::create_revision(key, 0));
    t.success.push_back(PutRequest{key, std::to_string(i), 0, false});
    return eventually([&] { return loop.run(writer->txn(t)).has_value(); }, 30s);
  };
  for (int i = 0; i < kKeys / 2; ++i) REQUIRE(write(i));
  REQUIRE(eventually([&] { return rec.size() >= kKeys / 4; }, 10s));
  CHECK(watcher->preferred_endpoint() == cluster.endpoint(0));
  cluster.kill(0);
  for (int i = kKeys / 2; i < kKeys; ++i) REQUIRE(write(i));
  REQUIRE(eventually([&] { return rec.size() >= kKeys; }, 30s));
  CHECK(watcher->preferred_endpoint() != cluster.endpoint(0));
  control.cancel();
  auto end = watching.get();
  REQUIRE(end);
  std::lock_guard lock(rec.mu);
  REQUIRE(rec.events.size() == kKeys);
  for (int i = 0; i < kKeys; ++i) {
    const auto& ev = rec.events[static_cast<std::size_t>(i)];
    CHECK(ev.kv.key == "ev/" + std::to_string(1000 + i));
    CHECK(ev.kv.value == std::to_string(i));
    if (i > 0) CHECK(ev.kv.mod_revision > rec.events[static_cast<std::size_t>(i - 1)].kv.mod_revision);
  }
}

TEST_CASE("etcd client: without quorum writes fail unavailable within the timeouts, and the client recovers") {
  test::EtcdCluster cluster(3);
  Loop loop;
  const auto timeout = 1000ms;
  auto c = make_client(loop, cluster.endpoints(), timeout);
  REQUIRE(loop.run(c->put({"q", "before", 0, false})));
  cluster.kill(1);
  cluster.kill(2);

  const auto t0 = Clock::now();
  auto put = loop.run(c->put({"q", "lost", 0, false}));
  const auto put_took = Clock::now() - t0;
  REQUIRE_FALSE(put);
  CHECK(put.error().code == Errc::unavailable);
  // A put that reached member 0 and got no answer is not sent again: its outcome is unknown.
  CHECK(put.error().message.find("outcome unknown") != std::string::npos);
  // Bounded by the client's timeouts (3 endpoints), not etcd's own 7 s.
  CHECK(put_took < 3 * timeout + 1s);

  TxnRequest cas;
  cas.compare.push_back(Compare::create_revision("q2", 0));
  cas.success.push_back(PutRequest{"q2", "x", 0, false});
  const auto t1 = Clock::now();
  auto txn = loop.run(c->txn(cas));
  CHECK(Clock::now() - t1 < 3 * timeout + 1s);
  REQUIRE_FALSE(txn);
  CHECK(txn.error().code == Errc::unavailable);
  auto read = loop.run(c->range({"q", "", 0, 0, false, false}));
  REQUIRE_FALSE(read);
  CHECK(read.error().code == Errc::unavailable);

  cluster.start(1);
  cluster.start(2);
  REQUIRE(cluster.wait_healthy(0, 60s));
  REQUIRE(eventually([&] { return loop.run(c->put({"q", "after", 0, false})).has_value(); }, 30s));
  auto r = loop.run(c->range({"q", "", 0, 0, false, false}));
  REQUIRE(r);
  REQUIRE(r->kvs.size() == 1);
  CHECK(r->kvs[0].value == "after");
}

TEST_CASE("etcd client: an answer from an older raft term than already seen is refused (stale member)") {
  test::EtcdCluster cluster(1);
  Loop loop;
  // A "member" stuck in raft term 1.
  CannedServer stale(
      R"({"header":{"cluster_id":"1","member_id":"2","revision":"1","raft_term":"1"},"kvs":[{"key":"aw==","mod_revision":"1","value":"b2xk"}],"count":"1"})");
  auto c = make_client(loop, {cluster.endpoint(0), stale.url()});
  REQUIRE(loop.run(c->put({"k", "new", 0, false})));
  const auto term = c->highest_raft_term();
  REQUIRE(term >= 2);  // a single member's first term is 2

  cluster.kill(0);
  auto r = loop.run(c->range({"k", "", 0, 0, false, false}));
  CHECK(stale.answered.load() == 1);  // it was asked, after the dead member
  REQUIRE_FALSE(r);                   // and its answer ("old") refused
  CHECK(r.error().code == Errc::unavailable);
  CHECK(r.error().message.find("stale member") != std::string::npos);
  CHECK(c->highest_raft_term() == term);

  // A client that has seen no newer term takes the same answer.
  auto fresh = make_client(loop, {stale.url()});
  auto taken = loop.run(fresh->range({"k", "", 0, 0, false, false}));
  REQUIRE(taken);
  REQUIRE(taken->kvs.size() == 1);
  CHECK(taken->kvs[0].value == "old");
  CHECK(fresh->highest_raft_term() == 1);
}

namespace {

void run_openssl(const std::string& cmd) {
  INFO(cmd);
  REQUIRE(std::system(("openssl " + cmd + " >/dev/null 2>&1").c_str()) == 0);
}

// A CA, a member certificate for 127.0.0.1 (server and client auth: 3.4's
// gateway presents it to its own gRPC server) and a client certificate.
struct EtcdPki {
  test::TempDir dir{"rootseal-etcd-pki"};
  std::string p(const std::string& leaf) const { return (dir.path() / leaf).string(); }
  EtcdPki() {
    run_openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=etcd-test-ca -keyout " +
                p("ca.key") + " -out " + p("ca.pem"));
    issue("member", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth");
    issue("client", "extendedKeyUsage=clientAuth");
  }
  void issue(const std::string& name, const std::string& ext) {
    std::ofstream(p(name + ".ext")) << ext << "\n";
    run_openssl("req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=" + name + " -keyout " +
                p(name + ".key") + " -out " + p(name + ".csr"));
    run_openssl("x509 -req -in " + p(name + ".csr") + " -CA " + p("ca.pem") + " -CAkey " + p("ca.key") +
                " -CAcreateserial -days 2 -extfile " + p(name + ".ext") + " -out " + p(name + ".pem"));
    ::chmod(p(name + ".key").c_str(), 0600);
  }
};

}  // namespace

TEST_CASE("etcd client: TLS with a client certificate (calls and a watch), refused without one or with another CA") {
  EtcdPki pki;
  test::EtcdCluster::Options opts;
  opts.tls_cert_file = pki.p("member.pem");
  opts.tls_key_file = pki.p("member.key");
  opts.tls_ca_file = pki.p("ca.pem");
  test::EtcdCluster cluster(opts);
  REQUIRE(cluster.endpoint(0).starts_with("https://"));
  Loop loop;

  const auto client_with = [&](bool cert, bool ca) {
    ClientConfig cfg;
    cfg.endpoints = cluster.endpoints();
    if (ca) cfg.tls.ca_file = pki.p("ca.pem");
    if (cert) {
      cfg.tls.cert_file = pki.p("client.pem");
      cfg.tls.key_file = pki.p("client.key");
    }
    auto c = Client::create(loop.io.get_executor(), std::move(cfg));
    REQUIRE(c);
    return *c;
  };
  auto c = client_with(true, true);
  const auto start = current_revision(loop, *c) + 1;
  Recorder rec;
  net::StreamControl control;
  auto watching = loop.spawn(c->watch({"t", "", start, false}, rec.handler(), control));
  REQUIRE(loop.run(c->put({"t", "over tls", 0, false})));
  REQUIRE(eventually([&] { return rec.size() >= 1; }, 10s));
  control.cancel();
  REQUIRE(watching.get());
  {
    std::lock_guard lock(rec.mu);
    CHECK(rec.events[0].kv.value == "over tls");
  }

  auto no_cert = loop.run(client_with(false, true)->range({"t", "", 0, 0, false, false}));
  REQUIRE_FALSE(no_cert);
  CHECK(no_cert.error().code == Errc::unavailable);
  auto other_ca = loop.run(client_with(true, false)->range({"t", "", 0, 0, false, false}));
  REQUIRE_FALSE(other_ca);
  CHECK(other_ca.error().code == Errc::unavailable);
  CHECK(other_ca.error().message.find("certificate verification failed") != std::string::npos);
}
