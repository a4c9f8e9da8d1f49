// SecureBytes allocation + release: small size classes (one per request
// field) and private large blocks (request arenas, big batch buffers); the
// per-request pieces of the HTTP server built on them (header fields through
// SecureAllocator, the Transit request's locked JSON arena).
#include <benchmark/benchmark.h>

#include <boost/beast/http/fields.hpp>
#include <boost/json/parse.hpp>

#include <cstdint>
#include <memory>
#include <vector>

#include "rootseal/kms/secure_bytes.hpp"
#include "rootseal/kms/secure_json.hpp"
#include "rootseal/kms/secure_memory_resource.hpp"

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

// The header fields of one Transit request, filled and freed: what the
// server's parser does per request. Arg 1: locked (SecureAllocator), 0: heap.
template <class Allocator>
void fill_fields() {
  boost::beast::http::basic_fields<Allocator> f;
  f.insert("Host", "127.0.0.1:8200");
  f.insert("User-Agent", "hvac/1.2.1 python-requests/2.28.1");
  f.insert("Accept", "*/*");
  f.insert("Content-Type", "application/json");
  f.insert("X-Vault-Token", "rs.0123456789abcdef0123456789abcdef0123456789abcdef");
  f.insert("Content-Length", "28");
  benchmark::DoNotOptimize(&f);
}
void BM_RequestFields(benchmark::State& state) {
  for (auto _ : state) {
    if (state.range(0) != 0) {
      fill_fields<kms::SecureAllocator<char>>();
    } else {
      fill_fields<std::allocator<char>>();
    }
  }
}

// A seal call's body parsed into its per-request locked arena (3 KiB + 2 x body).
void BM_TransitRequestArena(benchmark::State& state) {
  const std::string_view body = R"({"plaintext":"aGVsbG8gd29ybGQ="})";
  for (auto _ : state) {
    kms::SecureJsonResource arena(std::size_t{3} * 1024 + 2 * body.size(), 64 * body.size() + std::size_t{1024} * 1024);
    auto v = boost::json::parse(body, arena.storage());
    benchmark::DoNotOptimize(&v);
  }
}

}  // namespace

BENCHMARK(BM_RequestFields)->Arg(0)->Arg(1);
BENCHMARK(BM_TransitRequestArena);
BENCHMARK(BM_SecureBytesAllocFree)->Arg(48)->Arg(1024)->Arg(std::int64_t{64} * 1024)->Arg(std::int64_t{1024} * 1024);
BENCHMARK(BM_SecureBytesBatch)->Arg(48);

BENCHMARK_MAIN();
