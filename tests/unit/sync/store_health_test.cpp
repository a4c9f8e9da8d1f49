// The per-store backoff (providers/store_health.hpp), Retry-After parsing, and
// the engine's parking lot (engine/store_parking.hpp), on a fake clock.
#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <chrono>

#include "engine/store_parking.hpp"
#include "providers/common.hpp"
#include "providers/store_health.hpp"

using namespace rootseal;
using namespace std::chrono_literals;
using sync::StoreHealth;
using Clock = StoreHealth::Clock;

namespace {

// Jitter fixed at the top of its range: level n waits exactly min(base*2^(n-1), max).
StoreHealth make_health(StoreHealth::Options o = {}) {
  return StoreHealth("SecretStore/ns/vault", o, [] { return 1.0; });
}

}  // namespace

TEST_CASE("store health: a failure backs the whole store off, one probe after the wait, success recovers") {
  auto h = make_health({1000ms, 8000ms, 2000ms});
  int recovered = 0;
  std::vector<std::string> fell_ill;
  h.on_recovered([&] { ++recovered; });
  h.on_backing_off([&](const std::string& why) { fell_ill.push_back(why); });
  const auto t0 = Clock::now();
  auto a = h.decide(t0);
  auto b = h.decide(t0);
  REQUIRE(a.ticket);
  REQUIRE(b.ticket);
  CHECK_FALSE(a.ticket->probe);
  h.failed_at(t0, *a.ticket, std::nullopt, "vault answered 500");
  CHECK(h.backing_off());
  // A call that was already out fails too: no new round (level stays 1).
  h.failed_at(t0 + 10ms, *b.ticket, std::nullopt, "vault answered 500");
  CHECK(h.snapshot().level == 1);
  CHECK(h.snapshot().next_attempt == t0 + 1000ms);
  CHECK(fell_ill == std::vector<std::string>{"vault answered 500"});  // once per outage, not per failure
  // Refused until then.
  auto d = h.decide(t0 + 999ms);
  CHECK_FALSE(d.ticket);
  CHECK(d.retry_at == t0 + 1000ms);
  // Exactly one probe, the others wait for it.
  auto probe = h.decide(t0 + 1000ms);
  REQUIRE(probe.ticket);
  CHECK(probe.ticket->probe);
  CHECK_FALSE(h.decide(t0 + 1001ms).ticket);
  // The probe fails: next round doubles.
  h.failed_at(t0 + 1100ms, *probe.ticket, std::nullopt, "vault answered 503");
  CHECK(h.snapshot().level == 2);
  CHECK(h.snapshot().next_attempt == t0 + 1100ms + 2000ms);
  // A success of a call admitted before the store fell ill proves nothing.
  h.succeeded_at(t0 + 1200ms, *b.ticket);
  CHECK(h.backing_off());
  CHECK(recovered == 0);
  auto probe2 = h.decide(t0 + 3100ms);
  REQUIRE(probe2.ticket);
  h.succeeded_at(t0 + 3150ms, *probe2.ticket);
  CHECK_FALSE(h.backing_off());
  CHECK(recovered == 1);
  CHECK(h.snapshot().level == 0);
  CHECK(h.decide(t0 + 3151ms).ticket);
  CHECK(fell_ill.size() == 1);
}

TEST_CASE("store health: the backoff is capped, a Retry-After wins over it, refusals are counted and say why") {
  auto h = make_health({1000ms, 4000ms, 2000ms});
  auto t = Clock::now();
  auto first = h.decide(t);
  h.failed_at(t, *first.ticket, 30s, "vault answered 429");
  CHECK(h.snapshot().next_attempt == t + 30s);  // Retry-After beyond the cap: honoured
  for (int i = 0; i < 5; ++i) {
    t = h.snapshot().next_attempt;
    auto p = h.decide(t);
    REQUIRE(p.ticket);
    h.failed_at(t, *p.ticket, std::nullopt, "vault answered 500");
  }
  CHECK(h.snapshot().next_attempt == t + 4000ms);  // capped
  const auto e = h.refusal();
  CHECK(e.code == kms::Errc::unavailable);
  CHECK(e.message.find("SecretStore/ns/vault is backing off") != std::string::npos);
  CHECK(e.message.find("vault answered 500") != std::string::npos);
  CHECK(h.snapshot().refused == 1);
  // An absurd Retry-After is cut to the maximum.
  auto h2 = make_health();
  auto t2 = Clock::now();
  h2.failed_at(t2, *h2.decide(t2).ticket, std::chrono::hours(48), "throttled");
  CHECK(h2.snapshot().next_attempt == t2 + StoreHealth::kMaxRetryAfter);
}

TEST_CASE("store health: jitter spreads a level's wait over its upper half") {
  double r = 0.0;
  StoreHealth h("s", {1000ms, 8000ms, 2000ms}, [&] { return r; });
  const auto t = Clock::now();
  h.failed_at(t, *h.decide(t).ticket, std::nullopt, "x");
  CHECK(h.snapshot().next_attempt == t + 500ms);
  r = 0.5;
  StoreHealth h2("s", {1000ms, 8000ms, 2000ms}, [&] { return r; });
  h2.failed_at(t, *h2.decide(t).ticket, std::nullopt, "x");
  CHECK(h2.snapshot().next_attempt == t + 750ms);
}

TEST_CASE("Retry-After: seconds and HTTP dates, bounded, junk is ignored") {
  using sync::providers::parse_retry_after;
  const auto now = std::chrono::sys_days(std::chrono::year(2026) / 12 / 6) + 14h;  // Sun, 06 Dec 2026 14:00:00 GMT
  CHECK(parse_retry_after("5", now) == 5000ms);
  CHECK(parse_retry_after(" 0 ", now) == 0ms);
  CHECK(parse_retry_after("99999999999", now) == StoreHealth::kMaxRetryAfter);
  CHECK(parse_retry_after("Sun, 06 Dec 2026 14:00:07 GMT", now) == 7000ms);
  CHECK(parse_retry_after("Sun, 06 Dec 2026 13:59:00 GMT", now) == 0ms);  // in the past: now
  CHECK(parse_retry_after("Mon, 07 Dec 2026 14:00:00 GMT", now) == StoreHealth::kMaxRetryAfter);
  CHECK_FALSE(parse_retry_after("", now));
  CHECK_FALSE(parse_retry_after("-1", now));
  CHECK_FALSE(parse_retry_after("5s", now));
  CHECK_FALSE(parse_retry_after("Sun, 06 Foo 2026 14:00:07 GMT", now));
  CHECK_FALSE(parse_retry_after("Sun, 31 Feb 2026 14:00:07 GMT", now));
  CHECK_FALSE(parse_retry_after("Sunday, 06-Dec-26 14:00:07 GMT", now));
}

TEST_CASE("parking lot: keys wait under a backed-off store, one probe, all released together") {
  auto h = make_health({1000ms, 8000ms, 2000ms});
  sync::engine::ParkingLot lot;
  // Healthy store: nothing is parked.
  CHECK_FALSE(lot.park("S", "es|ns/a", h).parked);
  const auto t = Clock::now();
  h.failed_at(t, *h.decide(t).ticket, 5s, "vault answered 429");
  auto first = lot.park("S", "es|ns/a", h);
  REQUIRE(first.parked);
  REQUIRE(first.probe_after);  // the first key is the probe, queued for when the backoff ends
  CHECK(*first.probe_after > 4000ms);
  CHECK(*first.probe_after <= 5000ms);
  for (const char* k : {"es|ns/b", "es|ns/c", "ps|ns/d"}) {
    auto p = lot.park("S", k, h);
    CHECK(p.parked);
    CHECK_FALSE(p.probe_after);
  }
  CHECK(lot.parked("S") == 3);
  CHECK(lot.probed_by("es|ns/a") == std::vector<std::string>{"S"});
  // The probe's object went away (it did not park again): another key takes over.
  auto next = lot.probe_done("S", "es|ns/a", h);
  REQUIRE(next);
  CHECK(lot.parked("S") == 2);
  auto released = lot.release("S");
  CHECK(released.size() == 2);
  CHECK(lot.parked("S") == 0);
  CHECK(lot.probed_by(next->first).empty());
}

TEST_CASE("store ids: every store an ExternalSecret or PushSecret names") {
  const auto es = boost::json::parse(R"({"metadata":{"namespace":"ns","name":"x"},"spec":{
    "secretStoreRef":{"name":"vault","kind":"SecretStore"},
    "data":[{"secretKey":"a","remoteRef":{"key":"k"},"sourceRef":{"storeRef":{"name":"aws","kind":"ClusterSecretStore"}}},
            {"secretKey":"b","remoteRef":{"key":"k"},"sourceRef":{"storeRef":{"name":"vault"}}}]}})");
  CHECK(sync::engine::store_ids_of(es) == std::vector<std::string>{"SecretStore/ns/vault", "ClusterSecretStore//aws"});
  const auto ps = boost::json::parse(R"({"metadata":{"namespace":"t"},"spec":{
    "secretStoreRefs":[{"name":"azure","kind":"SecretStore"},{"name":"gcp","kind":"ClusterSecretStore"}]}})");
  CHECK(sync::engine::store_ids_of(ps) == std::vector<std::string>{"SecretStore/t/azure", "ClusterSecretStore//gcp"});
  CHECK(sync::engine::store_ids_of(boost::json::parse("[1]")).empty());
}
