// SecureBytes allocation + release: small size classes (one per request
// field) and private large blocks (request arenas, big batch buffers).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "rootseal/kms/secure_bytes.hpp"

namespace kms = rootseal::kms;

namespace {

// Allocate n bytes, touch the first and last byte, release.
void BM_SecureBytesAllocFree(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    kms::SecureBytes b(n);
    b.data()[0] = 1;
    b.data()[n - 1] = 2;
    benchmark::DoNotOptimize(b.data());
  }
}

// A batch-shaped pattern: 1,000 live buffers, then all released.
void BM_SecureBytesBatch(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<kms::SecureBytes> live;
  live.reserve(1000);
  for (auto _ : state) {
    for (int i = 0; i < 1000; ++i) live.emplace_back(n);
    benchmark::DoNotOptimize(live.data());
    live.clear();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 1000);
}

}  // namespace

BENCHMARK(BM_SecureBytesAllocFree)->Arg(48)->Arg(1024)->Arg(64 * 1024)->Arg(1024 * 1024);
BENCHMARK(BM_SecureBytesBatch)->Arg(48);

BENCHMARK_MAIN();
