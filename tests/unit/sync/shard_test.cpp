// Buckets of namespaces, their assignment by rendezvous hashing, and the
// gate the engine asks before it acts (rootseal/sync/shard.hpp).
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "rootseal/sync/shard.hpp"

using namespace rootseal::sync;

namespace {

std::vector<std::string> hosts(int n) {
  std::vector<std::string> out;
  for (int i = 1; i <= n; ++i) out.push_back("rs-" + std::to_string(i));
  return out;
}

std::size_t moved(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) n += a[i] != b[i] ? 1U : 0U;
  return n;
}

}  // namespace

TEST_CASE("the namespace hash is FNV-1a 64 with fmix64, fixed across releases", "[shard]") {
  // Values from an independent Python implementation of the documented
  // algorithm (docs/ha.md), pinned: every host of a cluster, of any
  // release, must put a namespace into the same bucket.
  CHECK(stable_hash("") == 0xefd01f60ba992926ULL);
  CHECK(namespace_bucket("default") == namespace_bucket(std::string("default")));
  CHECK(namespace_bucket("default") == 0xad);
  CHECK(namespace_bucket("kube-system") == 0xdc);
  CHECK(namespace_bucket("team-a") == 0x13);
  for (int i = 0; i < 1000; ++i) CHECK(namespace_bucket("ns-" + std::to_string(i)) < kBuckets);
}

TEST_CASE("namespaces spread over the buckets", "[shard]") {
  std::vector<int> per(kBuckets, 0);
  for (int i = 0; i < 25'600; ++i) ++per[namespace_bucket("team-" + std::to_string(i))];
  // 100 per bucket on average: a fair hash keeps every bucket well within 50..150.
  CHECK(*std::min_element(per.begin(), per.end()) > 50);
  CHECK(*std::max_element(per.begin(), per.end()) < 150);
}

TEST_CASE("every bucket goes to exactly one member, the same whatever the order of the list", "[shard]") {
  auto three = hosts(3);
  const auto a = assign_buckets(three);
  REQUIRE(a.size() == kBuckets);
  std::reverse(three.begin(), three.end());
  CHECK(assign_buckets(three) == a);
  std::map<std::string, int> per;
  for (const auto& o : a) {
    CHECK((o == "rs-1" || o == "rs-2" || o == "rs-3"));
    ++per[o];
  }
  REQUIRE(per.size() == 3);
  for (const auto& [host, n] : per) {
    INFO(host << " owns " << n);
    CHECK(n > 256 / 3 - 30);
    CHECK(n < 256 / 3 + 30);
  }
  CHECK(assign_buckets({}) == std::vector<std::string>(kBuckets));
  CHECK(bucket_owner(7, std::vector<std::string>{"only"}) == "only");
}

TEST_CASE("a join moves about 1/N of the buckets, all of them to the new member", "[shard]") {
  for (int n = 1; n <= 8; ++n) {
    const auto before = assign_buckets(hosts(n));
    const auto after = assign_buckets(hosts(n + 1));
    const std::string joined = "rs-" + std::to_string(n + 1);
    const std::size_t m = moved(before, after);
    INFO("members " << n << " -> " << n + 1 << ": " << m << " buckets moved");
    for (std::uint32_t b = 0; b < kBuckets; ++b) {
      if (before[b] != after[b]) CHECK(after[b] == joined);
    }
    const double expected = 256.0 / (n + 1);
    CHECK(static_cast<double>(m) > expected * 0.6);
    CHECK(static_cast<double>(m) < expected * 1.4);
  }
}

TEST_CASE("a leave moves only the leaving member's buckets, spread over the others", "[shard]") {
  const auto four = hosts(4);
  const auto before = assign_buckets(four);
  std::vector<std::string> three{"rs-1", "rs-2", "rs-4"};
  const auto after = assign_buckets(three);
  std::set<std::string> receivers;
  for (std::uint32_t b = 0; b < kBuckets; ++b) {
    if (before[b] == "rs-3") {
      CHECK(after[b] != "rs-3");
      receivers.insert(after[b]);
    } else {
      CHECK(after[b] == before[b]);
    }
  }
  CHECK(receivers.size() == 3);
}

TEST_CASE("the gate acts only on granted buckets and only before its deadline", "[shard]") {
  ShardGate gate;
  const std::uint32_t b = namespace_bucket("team-a");
  CHECK_FALSE(gate.acts_on("team-a"));
  std::vector<std::vector<std::uint32_t>> gained;
  gate.on_gained([&](const std::vector<std::uint32_t>& g) { gained.push_back(g); });
  const std::vector<std::uint32_t> grant{b};
  gate.grant(grant);
  CHECK_FALSE(gate.acts_on("team-a"));  // no deadline yet: nothing is owned
  gate.set_deadline(ShardGate::Clock::now() + std::chrono::hours(1));
  CHECK(gate.acts_on("team-a"));
  gate.grant(grant);  // already granted: not gained again
  REQUIRE(gained.size() == 1);
  CHECK(gained[0] == grant);
  CHECK(gate.owned() == grant);
  gate.set_deadline(ShardGate::Clock::now() - std::chrono::milliseconds(1));
  CHECK_FALSE(gate.acts_on("team-a"));  // the lease may have expired: stop
  CHECK_FALSE(gate.enter("team-a").has_value());
  CHECK(gate.in_flight(b) == 0);
  gate.set_deadline(ShardGate::Clock::now() + std::chrono::hours(1));
  {
    auto w = gate.enter("team-a");
    REQUIRE(w.has_value());
    CHECK(gate.in_flight(b) == 1);
    gate.revoke(b);
    CHECK_FALSE(gate.acts_on("team-a"));
    CHECK(gate.in_flight(b) == 1);  // the drain waits for it
  }
  CHECK(gate.in_flight(b) == 0);
  CHECK(gate.owned().empty());
  gate.grant(grant);
  gate.revoke_all();
  CHECK(gate.owned().empty());
}

TEST_CASE("a revoke and a concurrent enter never both miss each other", "[shard]") {
  // The drain rule: after revoke(b), in_flight(b) == 0 means no work on b
  // runs or can start.
  for (int round = 0; round < 200; ++round) {
    ShardGate gate;
    gate.set_deadline(ShardGate::Clock::now() + std::chrono::hours(1));
    const std::uint32_t b = namespace_bucket("ns");
    const std::vector<std::uint32_t> grant{b};
    gate.grant(grant);
    std::atomic<bool> inside{false};
    std::atomic<bool> go{false};
    std::thread worker([&] {
      while (!go.load()) {
      }
      if (auto w = gate.enter("ns")) {
        inside.store(true);
        inside.store(false);
      }
    });
    go.store(true);
    gate.revoke(b);
    if (gate.in_flight(b) == 0) {
      CHECK_FALSE(inside.load());
    }
    worker.join();
    CHECK(gate.in_flight(b) == 0);
  }
}

TEST_CASE("the gate asks its deadline source at every check, and tells a lapsed grant from no grant", "[shard]") {
  ShardGate gate;
  std::atomic<std::int64_t> ahead_ms{-1};
  gate.set_deadline_source([&] { return ShardGate::Clock::now() + std::chrono::milliseconds(ahead_ms.load()); });
  gate.set_deadline(ShardGate::Clock::now() + std::chrono::hours(1));  // ignored: the source decides
  const std::uint32_t b = namespace_bucket("team-b");
  const std::vector<std::uint32_t> grant{b};
  gate.grant(grant);
  CHECK(gate.granted(b));
  CHECK_FALSE(gate.owns(b));  // lapsed (a keepalive late): granted, not acting
  ahead_ms = 2000;            // a keepalive answered: acting again, no new grant needed
  CHECK(gate.owns(b));
  CHECK(gate.acts_on("team-b"));
  gate.revoke(b);
  CHECK_FALSE(gate.granted(b));
  CHECK_FALSE(gate.owns(b));
}

TEST_CASE("the gate gives the epoch of a namespace's bucket while it is granted", "[shard]") {
  ShardGate gate;
  const std::uint32_t b = namespace_bucket("team-e");
  CHECK(gate.epoch("team-e") == 0);  // never granted
  gate.set_epoch(b, 4711);
  CHECK(gate.epoch("team-e") == 0);  // an epoch alone is no grant
  const std::vector<std::uint32_t> grant{b};
  gate.grant(grant);
  CHECK(gate.epoch("team-e") == 4711);
  gate.set_epoch(b, 9000);  // lost and claimed again: the new record's epoch
  CHECK(gate.epoch("team-e") == 9000);
  gate.revoke(b);
  CHECK(gate.epoch("team-e") == 0);
}
