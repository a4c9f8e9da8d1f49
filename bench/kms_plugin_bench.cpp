// Load on the KMS v2 plugin of a running rootseald, through its unix socket,
// with the C++ gRPC client (the same stubs as the server: a load generator,
// not a conformance check — that is the grpc-js client of the tests).
//
//   rootseal_bench_kms_plugin <socket> [callers=64] [seconds=5] [rate=0]
//
// Phases, each `seconds` long with `callers` threads, one channel each:
// Status, Encrypt of a fresh 32-byte seed, Decrypt of one seed. Prints per
// phase: calls, calls/s, p50, p99, max (microseconds), errors.
//
// rate 0: closed loop, every caller calls back to back (the saturated rate;
// the latency is then mostly queueing: callers / rate, Little's law).
// rate R > 0: paced, the callers together aim at R calls/s, each waiting an
// exponential think time (mean callers / R) between its calls' intended
// starts; the latency of a call is counted from its intended start, so a
// call delayed by the one before it counts its wait too (no coordinated
// omission, as wrk2). That is the latency a caller sees at a steady load.
#include <grpcpp/grpcpp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "api.grpc.pb.h"
#include "bench_util.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Phase {
  std::vector<double> us;
  std::uint64_t errors = 0;
};

std::unique_ptr<v2::KeyManagementService::Stub> stub_for(const std::string& socket) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // one connection per caller
  return v2::KeyManagementService::NewStub(
      grpc::CreateCustomChannel("unix://" + socket, grpc::InsecureChannelCredentials(), args));
}

std::string seed() {
  std::string s(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(s.data()), 32) != 1) std::abort();
  return s;
}

template <class Call>
Phase run(const std::string& socket, int callers, int seconds, double rate, Call call) {
  std::vector<Phase> per(static_cast<std::size_t>(callers));
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(callers));
  std::atomic<bool> go{false};
  const auto end_after = std::chrono::seconds(seconds);
  for (int i = 0; i < callers; ++i) {
    threads.emplace_back([&, i] {
      auto stub = stub_for(socket);
      auto& mine = per[static_cast<std::size_t>(i)];
      std::mt19937_64 rng(std::random_device{}());
      std::exponential_distribution<double> think(rate > 0 ? rate / callers : 1.0);  // per second
      while (!go.load()) std::this_thread::yield();
      const auto end = Clock::now() + end_after;
      auto intended = Clock::now();
      while (Clock::now() < end) {
        if (rate > 0) {
          intended += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(think(rng)));
          std::this_thread::sleep_until(intended);  // pacing (the load's shape), not a synchronisation
          if (intended >= end) break;
        }
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
        const auto t0 = rate > 0 ? intended : Clock::now();
        const bool ok = call(*stub, ctx);
        const auto t1 = Clock::now();
        if (ok)
          mine.us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        else
          ++mine.errors;
      }
    });
  }
  go = true;
  for (auto& t : threads) t.join();
  Phase all;
  for (auto& p : per) {
    all.us.insert(all.us.end(), p.us.begin(), p.us.end());
    all.errors += p.errors;
  }
  std::sort(all.us.begin(), all.us.end());
  return all;
}

void report(const char* name, const Phase& p, int seconds) {
  auto at = [&](double q) {
    return p.us.empty()
               ? 0.0
               : p.us[std::min(p.us.size() - 1, static_cast<std::size_t>(q * static_cast<double>(p.us.size())))];
  };
  std::printf("%-8s calls=%zu rate=%.0f/s p50=%.0fus p99=%.0fus max=%.0fus errors=%llu\n", name, p.us.size(),
              static_cast<double>(p.us.size()) / seconds, at(0.50), at(0.99), p.us.empty() ? 0.0 : p.us.back(),
              static_cast<unsigned long long>(p.errors));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <socket> [callers=64] [seconds=5] [rate=0 (closed loop) | calls/s]\n", argv[0]);
    return 2;
  }
  const std::string socket = argv[1];
  const int callers = argc > 2 ? rootseal::bench::parse_arg<int>(argv[2], "callers") : 64;
  const int seconds = argc > 3 ? rootseal::bench::parse_arg<int>(argv[3], "seconds") : 5;
  const double rate = argc > 4 ? rootseal::bench::parse_arg<double>(argv[4], "rate") : 0.0;
  if (callers < 1 || seconds < 1 || rate < 0) return 2;

  // Until the plugin's self-test has passed (Status ok), as kube-apiserver waits.
  auto stub = stub_for(socket);
  for (const auto until = Clock::now() + std::chrono::seconds(30);;) {
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    v2::StatusResponse r;
    if (stub->Status(&ctx, v2::StatusRequest(), &r).ok()) break;
    if (Clock::now() > until) {
      std::fprintf(stderr, "the plugin's Status never became ok\n");
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // a poll interval, not a synchronisation
  }
  // One seed to decrypt, as kube-apiserver decrypts the few seeds of its objects.
  v2::EncryptRequest ereq;
  ereq.set_plaintext(seed());
  ereq.set_uid("bench");
  v2::EncryptResponse eres;
  {
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    if (auto s = stub->Encrypt(&ctx, ereq, &eres); !s.ok()) {
      std::fprintf(stderr, "encrypt: %s\n", s.error_message().c_str());
      return 1;
    }
  }
  v2::DecryptRequest dreq;
  dreq.set_ciphertext(eres.ciphertext());
  dreq.set_key_id(eres.key_id());
  dreq.set_uid("bench");
  for (const auto& [k, v] : eres.annotations()) (*dreq.mutable_annotations())[k] = v;

  std::printf("callers=%d seconds=%d rate=%s socket=%s\n", callers, seconds,
              rate > 0 ? std::to_string(static_cast<long>(rate)).c_str() : "closed-loop", socket.c_str());
  report("Status",
         run(socket, callers, seconds, rate,
             [](auto& s, grpc::ClientContext& ctx) {
               v2::StatusResponse r;
               return s.Status(&ctx, v2::StatusRequest(), &r).ok() && r.healthz() == "ok";
             }),
         seconds);
  report("Encrypt",
         run(socket, callers, seconds, rate,
             [](auto& s, grpc::ClientContext& ctx) {
               v2::EncryptRequest q;
               q.set_plaintext(seed());
               q.set_uid("bench");
               v2::EncryptResponse r;
               return s.Encrypt(&ctx, q, &r).ok();
             }),
         seconds);
  report("Decrypt",
         run(socket, callers, seconds, rate,
             [&](auto& s, grpc::ClientContext& ctx) {
               v2::DecryptResponse r;
               return s.Decrypt(&ctx, dreq, &r).ok() && r.plaintext() == ereq.plaintext();
             }),
         seconds);
  return 0;
}
