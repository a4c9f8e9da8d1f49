// Aead::seal / Aead::open throughput, next to the loop `openssl speed -evp
// aes-256-gcm` runs, in the same process. bench/aead-vs-openssl.sh compares
// the figures with the openssl binary itself.
#include <benchmark/benchmark.h>
#include <openssl/evp.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "rootseal/kms/aead.hpp"

namespace kms = rootseal::kms;

namespace {

std::unique_ptr<kms::Aead> make(kms::KeyType type) {
  auto aead = kms::make_aead(type, kms::SecureBytes::random(kms::key_size(type)));
  if (!aead) std::abort();  // a benchmark has no caller to report to
  return std::move(*aead);
}

void set_counters(benchmark::State& state, std::size_t bytes) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(bytes));
}

template <kms::KeyType Type>
void BM_Seal(benchmark::State& state) {
  static const auto aead = make(Type);  // shared by the threads of a multi-threaded run
  const std::vector<std::uint8_t> plaintext(static_cast<std::size_t>(state.range(0)), 0x5a);
  for (auto _ : state) {
    auto sealed = aead->seal(plaintext, {});
    if (!sealed) state.SkipWithError("seal failed");
    benchmark::DoNotOptimize(sealed);
  }
  set_counters(state, plaintext.size());
}

template <kms::KeyType Type>
void BM_Open(benchmark::State& state) {
  static const auto aead = make(Type);
  const std::vector<std::uint8_t> plaintext(static_cast<std::size_t>(state.range(0)), 0x5a);
  auto sealed = aead->seal(plaintext, {});
  if (!sealed) {
    state.SkipWithError("seal failed");
    return;
  }
  for (auto _ : state) {
    auto opened = aead->open(*sealed, {});
    if (!opened) state.SkipWithError("open failed");
    benchmark::DoNotOptimize(opened);
  }
  set_counters(state, plaintext.size());
}

// What OpenSSL 3's `openssl speed -evp aes-256-gcm` times for an AEAD cipher
// (apps/speed.c, EVP_Update_loop_aead_enc without -aead): per message, set the
// IV length, re-init with key and IV, encrypt in place, finalize. No AAD, no
// tag read, no fresh nonce, no output allocation: a lower bound on the work
// of a real seal.
void BM_OpensslSpeedLoop_AES256GCM(benchmark::State& state) {
  const auto len = static_cast<int>(state.range(0));
  std::vector<unsigned char> buf(static_cast<std::size_t>(len) + 64, 0x5a);
  unsigned char key[32] = {1};
  unsigned char iv[12] = {2};
  EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (cipher == nullptr || ctx == nullptr || EVP_CipherInit_ex(ctx, cipher, nullptr, key, iv, 1) != 1) {
    state.SkipWithError("OpenSSL setup failed");
  } else {
    for (auto _ : state) {
      int outl = 0;
      const bool ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, sizeof(iv), nullptr) == 1 &&
                      EVP_CipherInit_ex(ctx, nullptr, nullptr, key, iv, -1) == 1 &&
                      EVP_EncryptUpdate(ctx, buf.data(), &outl, buf.data(), len) == 1 &&
                      EVP_EncryptFinal_ex(ctx, buf.data(), &outl) == 1;
      if (!ok) state.SkipWithError("OpenSSL loop failed");
      benchmark::ClobberMemory();
    }
  }
  EVP_CIPHER_CTX_free(ctx);
  EVP_CIPHER_free(cipher);
  set_counters(state, static_cast<std::size_t>(len));
}

void sizes(benchmark::internal::Benchmark* b) { b->Arg(32)->Arg(1024)->Arg(16384); }

}  // namespace

BENCHMARK(BM_Seal<kms::KeyType::aes256_gcm96>)->Name("BM_Seal_AES256GCM")->Apply(sizes);
BENCHMARK(BM_Open<kms::KeyType::aes256_gcm96>)->Name("BM_Open_AES256GCM")->Apply(sizes);
BENCHMARK(BM_OpensslSpeedLoop_AES256GCM)->Apply(sizes);
BENCHMARK(BM_Seal<kms::KeyType::aes128_gcm96>)->Name("BM_Seal_AES128GCM")->Apply(sizes);
BENCHMARK(BM_Seal<kms::KeyType::chacha20_poly1305>)->Name("BM_Seal_ChaCha20Poly1305")->Apply(sizes);
// Two threads on one Aead: the context pool under contention.
BENCHMARK(BM_Seal<kms::KeyType::aes256_gcm96>)->Name("BM_Seal_AES256GCM_shared")->Arg(1024)->Threads(2)->UseRealTime();

BENCHMARK_MAIN();
