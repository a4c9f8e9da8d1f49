// Wrap/unwrap of a 32-byte KEK per second by hsm::Pkcs11Root, per root
// mechanism (pkcs11.mechanism), one thread and two threads sharing one
// Pkcs11Root (its session pool).
//
// By default against fresh SoftHSM2 tokens in a temporary folder (SOFTHSM2_CONF
// is set here, one token per mechanism, provisioned with hsm::provision_token):
// aes-kwp, aes-gcm, aes-cbc-pad-hmac (SoftHSM 2.6 has no SHA-256 OAEP, so no
// rsa-oaep). Another, already initialized token with
//   ROOTSEAL_BENCH_MODULE=/path/module.so ROOTSEAL_BENCH_TOKEN=label
//   ROOTSEAL_BENCH_PIN=pin ROOTSEAL_BENCH_MECHANISMS=aes-cbc-pad-hmac,rsa-oaep
// (one root key per mechanism, labelled bench-<mechanism>, generated if
// missing); bench/pkcs11_mechanisms.py does so for opencryptoki.
//
//   build-*/bench/rootseal_bench_pkcs11 [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace {

using rootseal::hsm::Pkcs11Config;
using rootseal::hsm::Pkcs11Root;
using rootseal::hsm::RootMechanism;
using rootseal::kms::SecureBytes;
namespace fs = std::filesystem;

const char* env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

class Env {
 public:
  Env() {
    const char* module = std::getenv("ROOTSEAL_BENCH_MODULE");
    if (module != nullptr && *module != '\0') {
      module_ = module;
      token_ = env_or("ROOTSEAL_BENCH_TOKEN", "rootseal");
      pin_ = env_or("ROOTSEAL_BENCH_PIN", "12345678");
      std::stringstream list(env_or("ROOTSEAL_BENCH_MECHANISMS", "aes-cbc-pad-hmac,rsa-oaep"));
      for (std::string m; std::getline(list, m, ',');) mechanisms_.push_back(m);
    } else {
      std::string templ = (fs::temp_directory_path() / "rootseal-bench-XXXXXX").string();
      if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
      dir_ = templ;
      fs::create_directories(dir_ / "tokens");
      {
        std::ofstream conf(dir_ / "softhsm2.conf");
        conf << "directories.tokendir = " << (dir_ / "tokens").string() << "\n"
             << "objectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n";
      }
      // NOLINTNEXTLINE(concurrency-mt-unsafe): once, in env()'s static initialisation (other callers wait), before a module is loaded
      ::setenv("SOFTHSM2_CONF", (dir_ / "softhsm2.conf").c_str(), 1);
      module_ = ROOTSEAL_SOFTHSM_MODULE;
      token_ = "bench";
      pin_ = "1234";
      auto r = rootseal::hsm::provision_token(module_, token_, SecureBytes::copy_of(std::string_view("0000")),
                                              SecureBytes::copy_of(std::string_view(pin_)));
      if (!r) throw std::runtime_error("provision_token: " + r.error().message);
      mechanisms_ = {"aes-kwp", "aes-gcm", "aes-cbc-pad-hmac"};
    }
  }
  ~Env() {
    roots_.clear();
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;

  // The root for `mechanism`, or null if this run does not cover it.
  Pkcs11Root* root(const std::string& mechanism) {
    if (std::find(mechanisms_.begin(), mechanisms_.end(), mechanism) == mechanisms_.end()) return nullptr;
    auto& r = roots_[mechanism];
    if (!r) r = connect(mechanism);
    return r.get();
  }

 private:
  std::unique_ptr<Pkcs11Root> connect(const std::string& mechanism) {
    Pkcs11Config cfg;
    cfg.module = module_;
    cfg.token_label = token_;
    cfg.key_label = "bench-" + mechanism;
    cfg.generate_if_missing = true;
    cfg.mechanism = rootseal::hsm::parse_root_mechanism(mechanism).value_or(RootMechanism::automatic);
    cfg.max_sessions = 4;
    const std::string pin = pin_;
    auto root = Pkcs11Root::create(
        cfg, [pin] { return rootseal::kms::Result<SecureBytes>(SecureBytes::copy_of(std::string_view(pin))); });
    if (auto r = root->probe(); !r) throw std::runtime_error("probe (" + mechanism + "): " + r.error().message);
    return root;
  }

  fs::path dir_;
  std::string module_, token_, pin_;
  std::vector<std::string> mechanisms_;
  std::map<std::string, std::unique_ptr<Pkcs11Root>> roots_;
};

Env& env() {
  static Env e;
  return e;
}

void BM_Wrap(benchmark::State& state, const char* mechanism) {
  Pkcs11Root* rp = env().root(mechanism);
  if (rp == nullptr) {
    state.SkipWithError("mechanism not covered by this run");
    return;
  }
  Pkcs11Root& root = *rp;
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

void BM_Unwrap(benchmark::State& state, const char* mechanism) {
  Pkcs11Root* rp = env().root(mechanism);
  if (rp == nullptr) {
    state.SkipWithError("mechanism not covered by this run");
    return;
  }
  Pkcs11Root& root = *rp;
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

BENCHMARK_CAPTURE(BM_Wrap, aes_kwp, "aes-kwp")->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_Unwrap, aes_kwp, "aes-kwp")->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_Wrap, aes_gcm, "aes-gcm")->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_Unwrap, aes_gcm, "aes-gcm")->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_Wrap, aes_cbc_pad_hmac, "aes-cbc-pad-hmac")->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_Unwrap, aes_cbc_pad_hmac, "aes-cbc-pad-hmac")->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_Wrap, rsa_oaep, "rsa-oaep")->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_Unwrap, rsa_oaep, "rsa-oaep")->Threads(1)->Threads(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
