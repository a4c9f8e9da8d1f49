// Keyring snapshots (kms/snapshot.hpp): the online backup of a store, building
// the snapshot file, and verifying it (in-memory store + one unwrap per
// version), for 1,000 and 10,000 key versions (keys x 10 versions). The root
// is kms::SoftwareRoot: the figures are rootseal's own cost; with SoftHSM2 add
// its unwrap time per version (bench/pkcs11_bench.cpp).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "rootseal/kms/keyring.hpp"
#include "rootseal/kms/snapshot.hpp"

using namespace rootseal;

namespace {

struct Fixture {
  std::filesystem::path dir;
  std::unique_ptr<kms::SoftwareRoot> root;
  std::unique_ptr<kms::StateStore> store;
  std::string kcv;
  std::vector<std::uint8_t> image;
  std::vector<std::uint8_t> snapshot;
};

std::map<int, std::unique_ptr<Fixture>> g_fixtures;

// One populated store per size, made once.
Fixture& fixture(int keys) {
  auto& f = g_fixtures[keys];
  if (f) return *f;
  f = std::make_unique<Fixture>();
  char tmpl[] = "/tmp/rootseal-snapbench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) std::abort();
  f->dir = tmpl;
  f->root = std::move(*kms::SoftwareRoot::create(kms::SecureBytes::random(32)));
  f->store = std::move(*kms::open_sqlite_store(f->dir / "rootseal.db"));
  kms::Keyring ring(*f->store, *f->root);
  if (!ring.unseal()) std::abort();
  for (int k = 0; k < keys; ++k) {
    const auto name = "bench-" + std::to_string(k);
    if (!ring.create(name, {})) std::abort();
    for (int v = 1; v < 10; ++v) {
      if (!ring.rotate(name)) std::abort();
    }
  }
  f->kcv = *f->root->key_check_value();
  f->image = *kms::backup_sqlite_image(f->dir / "rootseal.db");
  kms::SnapshotInput in;
  in.keyring = f->image;
  in.created_unix_ms = 1;
  in.host = "bench";
  f->snapshot = *kms::build_snapshot(in, f->kcv);
  return *f;
}

void BM_Backup(benchmark::State& state) {
  auto& f = fixture(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    auto image = kms::backup_sqlite_image(f.dir / "rootseal.db");
    if (!image) state.SkipWithError(image.error().message.c_str());
    benchmark::DoNotOptimize(image);
  }
  state.counters["bytes"] = static_cast<double>(f.image.size());
}

void BM_Build(benchmark::State& state) {
  auto& f = fixture(static_cast<int>(state.range(0)));
  kms::SnapshotInput in;
  in.keyring = f.image;
  in.created_unix_ms = 1;
  in.host = "bench";
  for (auto _ : state) {
    auto snap = kms::build_snapshot(in, f.kcv);
    if (!snap) state.SkipWithError(snap.error().message.c_str());
    benchmark::DoNotOptimize(snap);
  }
}

void BM_Verify(benchmark::State& state) {
  auto& f = fixture(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    auto report = kms::verify_snapshot(f.snapshot, *f.root);
    if (!report) state.SkipWithError(report.error().message.c_str());
    benchmark::DoNotOptimize(report);
  }
  state.counters["versions"] = static_cast<double>(state.range(0) * 10);
}

}  // namespace

BENCHMARK(BM_Backup)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Build)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Verify)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::error_code ec;
  for (auto& [keys, f] : g_fixtures) {
    f->store.reset();
    std::filesystem::remove_all(f->dir, ec);
  }
  return 0;
}
