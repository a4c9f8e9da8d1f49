// base64 encode/decode of public values (ciphertext bodies) and secrets
// (plaintext fields): the per-item codec cost of a Transit batch.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "rootseal/kms/encoding.hpp"

namespace kms = rootseal::kms;

namespace {

std::vector<std::uint8_t> pattern(std::size_t n) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(i * 151 + 7);
  return v;
}

void set_counters(benchmark::State& state, std::size_t bytes) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(bytes));
}

void BM_Base64Encode(benchmark::State& state) {
  const auto in = pattern(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    auto out = kms::base64_encode(in);
    benchmark::DoNotOptimize(out);
  }
  set_counters(state, in.size());
}

void BM_Base64EncodeSecure(benchmark::State& state) {
  const auto in = pattern(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    auto out = kms::base64_encode_secure(in);
    benchmark::DoNotOptimize(out);
  }
  set_counters(state, in.size());
}

void BM_Base64Decode(benchmark::State& state) {
  const auto in = pattern(static_cast<std::size_t>(state.range(0)));
  const std::string text = kms::base64_encode(in);
  for (auto _ : state) {
    auto out = kms::base64_decode(text);
    if (!out) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(out);
  }
  set_counters(state, in.size());
}

void BM_Base64DecodeSecure(benchmark::State& state) {
  const auto in = pattern(static_cast<std::size_t>(state.range(0)));
  const std::string text = kms::base64_encode(in);
  for (auto _ : state) {
    auto out = kms::base64_decode_secure(text);
    if (!out) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(out);
  }
  set_counters(state, in.size());
}

void sizes(benchmark::internal::Benchmark* b) { b->Arg(32)->Arg(1024)->Arg(16384); }

}  // namespace

BENCHMARK(BM_Base64Encode)->Apply(sizes);
BENCHMARK(BM_Base64EncodeSecure)->Apply(sizes);
BENCHMARK(BM_Base64Decode)->Apply(sizes);
BENCHMARK(BM_Base64DecodeSecure)->Apply(sizes);

BENCHMARK_MAIN();
