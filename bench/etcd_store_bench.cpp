// The etcd state store on a three-member etcd started here (Debian's etcd,
// loopback, tests/support/etcd_cluster): rotate latency through etcd (p50,
// p99), the time from a rotate on host A until host B's keyring holds the
// new version (the watch, from A's answer), and a host's unseal with 10,000 key versions
// loaded from etcd. Two kms::Keyrings with one SoftwareRoot key stand for
// two hosts (the HSM's unwrap cost is pkcs11_bench's). Figures in
// docs/benchmarks.md.
//
//   rootseal_bench_etcd_store [rotations] [keys] [versions-per-key]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "etcd_cluster.hpp"
#include "rootseal/etcdstore/etcd_store.hpp"
#include "rootseal/kms/keyring.hpp"
#include "rootseal/kms/root_of_trust.hpp"
#include "bench_util.hpp"

using namespace rootseal;
using Clock = std::chrono::steady_clock;

namespace {

using bench::die;
using bench::must;

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

void report(const char* what, std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) {
    return samples[std::min(samples.size() - 1, static_cast<std::size_t>(q * static_cast<double>(samples.size())))];
  };
  std::printf("%-34s n=%zu  p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n", what, samples.size(), at(0.50),
              at(0.90), at(0.99), samples.back());
}

struct Host {
  std::unique_ptr<etcdstore::EtcdStore> store;
  std::unique_ptr<kms::SoftwareRoot> root;
  std::unique_ptr<kms::Keyring> ring;

  Host(const test::EtcdCluster& cluster, const kms::SecureBytes& key) {
    etcdstore::EtcdStoreConfig cfg;
    cfg.client.endpoints = cluster.endpoints();
    store = must(etcdstore::EtcdStore::open(std::move(cfg)), "open store");
    root = must(kms::SoftwareRoot::create(kms::SecureBytes::copy_of(key.span())), "root");
    ring = std::make_unique<kms::Keyring>(*store, *root);
  }
};

}  // namespace

int main(int argc, char** argv) {
  const int rotations = argc > 1 ? bench::parse_arg<int>(argv[1], "rotations") : 300;
  const int keys = argc > 2 ? bench::parse_arg<int>(argv[2], "keys") : 100;
  const int per_key = argc > 3 ? bench::parse_arg<int>(argv[3], "per-key") : 100;

  test::EtcdCluster cluster(3);
  const auto key = kms::SecureBytes::random(32);
  Host a(cluster, key);
  Host b(cluster, key);
  must(a.ring->unseal(), "unseal A");
  must(b.ring->unseal(), "unseal B");
  b.store->start_watch(
      {[&](const std::string& name) { (void)b.ring->refresh(name); }, [&] { (void)b.ring->reload(); }});
  must(a.ring->create("bench", {}), "create");

  std::vector<double> rotate_ms, watch_ms;
  for (int i = 0; i < rotations; ++i) {
    const auto t0 = Clock::now();
    auto info = must(a.ring->rotate("bench"), "rotate");
    const auto t1 = Clock::now();
    rotate_ms.push_back(ms(t1 - t0));
    const auto deadline = t1 + std::chrono::seconds(10);
    for (;;) {
      auto v = b.ring->latest_version("bench");
      if (v && *v >= info.latest_version) break;
      if (Clock::now() > deadline) die("host B did not see a rotation within 10 s");
      std::this_thread::yield();
    }
    watch_ms.push_back(ms(Clock::now() - t1));
  }
  report("rotate through 3-member etcd", rotate_ms);
  report("rotate answered on A -> held by B", watch_ms);
  b.store->stop_watch();

  // keys x per_key versions, written straight to the store (wrapped by the root).
  const auto kcv = must(a.root->key_check_value(), "kcv");
  for (int k = 0; k < keys; ++k) {
    kms::KeyRecord rec;
    rec.name = "load-" + std::to_string(k);
    rec.created_unix = 1;
    rec.versions.push_back({1, 1, must(a.root->wrap(kms::SecureBytes::random(32)), "wrap"), kcv});
    must(a.store->create_key(rec), "create_key");
    for (int v = 2; v <= per_key; ++v) {
      must(a.store->add_version(rec.name, {static_cast<std::uint32_t>(v), 1,
                                           must(a.root->wrap(kms::SecureBytes::random(32)), "wrap"), kcv}),
           "add_version");
    }
  }
  std::vector<double> unseal_ms;
  for (int i = 0; i < 5; ++i) {
    Host c(cluster, key);
    const auto t0 = Clock::now();
    must(c.ring->unseal(), "unseal C");
    unseal_ms.push_back(ms(Clock::now() - t0));
    if (c.ring->version_count() < static_cast<std::size_t>(keys) * static_cast<std::size_t>(per_key))
      die("unseal loaded too few versions");
  }
  const std::string label =
      "unseal, " +
      std::to_string(a.ring->version_count() + static_cast<std::size_t>(keys) * static_cast<std::size_t>(per_key)) +
      " versions";
  report(label.c_str(), unseal_ms);
  return 0;
}
