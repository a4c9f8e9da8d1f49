// Wrap/unwrap of a 32-byte KEK per second by hsm::Pkcs11Root against a fresh
// SoftHSM2 token in a temporary folder (SOFTHSM2_CONF is set here, the token
// is provisioned with hsm::provision_token). KWP and the GCM fallback, one
// thread and two threads sharing one Pkcs11Root (its session pool).
//
//   build-*/bench/rootseal_bench_pkcs11 [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace {

using rootseal::hsm::Pkcs11Config;
using rootseal::hsm::Pkcs11Root;
using rootseal::kms::SecureBytes;
namespace fs = std::filesystem;

class Env {
 public:
  Env() {
    std::string templ = (fs::temp_directory_path() / "rootseal-bench-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = templ;
    fs::create_directories(dir_ / "tokens");
    {
      std::ofstream conf(dir_ / "softhsm2.conf");
      conf << "directories.tokendir = " << (dir_ / "tokens").string() << "\n"
           << "objectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n";
    }
    ::setenv("SOFTHSM2_CONF", (dir_ / "softhsm2.conf").c_str(), 1);
    for (const char* label : {"bench-kwp", "bench-gcm"}) {
      auto r = rootseal::hsm::provision_token(ROOTSEAL_SOFTHSM_MODULE, label,
                                              SecureBytes::copy_of(std::string_view("0000")),
                                              SecureBytes::copy_of(std::string_view("1234")));
      if (!r) throw std::runtime_error("provision_token: " + r.error().message);
    }
    kwp_ = connect("bench-kwp", false);
    gcm_ = connect("bench-gcm", true);
  }
  ~Env() {
    kwp_.reset();
    gcm_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;

  Pkcs11Root& root(bool gcm) { return gcm ? *gcm_ : *kwp_; }

 private:
  static std::unique_ptr<Pkcs11Root> connect(const char* label, bool gcm) {
    Pkcs11Config cfg;
    cfg.module = ROOTSEAL_SOFTHSM_MODULE;
    cfg.token_label = label;
    cfg.generate_if_missing = true;
    cfg.force_gcm = gcm;
    cfg.max_sessions = 4;
    auto root = Pkcs11Root::create(cfg, [] { return rootseal::kms::Result<SecureBytes>(SecureBytes::copy_of(std::string_view("1234"))); });
    if (auto r = root->probe(); !r) throw std::runtime_error("probe: " + r.error().message);
    return root;
  }

  fs::path dir_;
  std::unique_ptr<Pkcs11Root> kwp_;
  std::unique_ptr<Pkcs11Root> gcm_;
};

Env& env() {
  static Env e;
  return e;
}

void BM_Wrap(benchmark::State& state, bool gcm) {
  Pkcs11Root& root = env().root(gcm);
  const SecureBytes kek = SecureBytes::random(32);
  for (auto _ : state) {
    auto w = root.wrap(kek);
    if (!w) {
      state.SkipWithError(w.error().message.c_str());
      break;
    }
    benchmark::DoNotOptimize(w->data());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Unwrap(benchmark::State& state, bool gcm) {
  Pkcs11Root& root = env().root(gcm);
  const SecureBytes kek = SecureBytes::random(32);
  auto w = root.wrap(kek);
  if (!w) {
    state.SkipWithError(w.error().message.c_str());
    return;
  }
  for (auto _ : state) {
    auto u = root.unwrap(*w);
    if (!u) {
      state.SkipWithError(u.error().message.c_str());
      break;
    }
    benchmark::DoNotOptimize(u->data());
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK_CAPTURE(BM_Wrap, kwp, false)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_Unwrap, kwp, false)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_Wrap, gcm, true)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_Unwrap, gcm, true)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
