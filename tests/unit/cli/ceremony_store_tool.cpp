// Helper of tests/integration/test_ceremony_crash.py.
//
//   ceremony_store_tool populate <db> <token> <key-label> <n> <samples>
//       creates n keys k0..k(n-1) in the store through a keyring on the
//       token's key, encrypts "sample <name>" under every 50th and writes
//       "<name> <ciphertext>" lines to <samples>.
//   ceremony_store_tool check <db> <token> <samples> <label>...
//       tries each key label in turn; the first whose keyring unseals must
//       decrypt every sample. Prints "OPENS <label> <kcv> <versions> <mechanism>" and
//       exits 0, or exits 1 when no label opens the store.
//
// Module from $SOFTHSM2_MODULE, token PIN from $TEST_PIN (test tokens only).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/keyring.hpp"

using namespace rootseal;

namespace {

int die(const std::string& what) {
  std::fprintf(stderr, "ceremony_store_tool: %s\n", what.c_str());
  return 2;
}

std::unique_ptr<hsm::Pkcs11Root> root(const std::string& token, const std::string& label) {
  hsm::Pkcs11Config c;
  const char* m = std::getenv("SOFTHSM2_MODULE");
  c.module = m != nullptr ? m : "/usr/lib/softhsm/libsofthsm2.so";
  c.token_label = token;
  c.key_label = label;
  const char* p = std::getenv("TEST_PIN");
  const std::string pin = p != nullptr ? p : "1234";
  return hsm::Pkcs11Root::create(
      c, [pin] { return kms::Result<kms::SecureBytes>(kms::SecureBytes::copy_of(std::string_view(pin))); });
}

std::span<const std::uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return die("usage: populate|check ...");
  const std::string mode = argv[1];
  if (mode == "populate" && argc == 7) {
    auto store = kms::open_sqlite_store(argv[2]);
    if (!store) return die(store.error().message);
    auto r = root(argv[3], argv[4]);
    kms::Keyring ring(**store, *r);
    if (auto u = ring.unseal(); !u) return die("unseal: " + u.error().message);
    char* end = nullptr;
    const long n = std::strtol(argv[5], &end, 10);
    if (end == argv[5] || *end != '\0' || n < 0) return die("not a count: " + std::string(argv[5]));
    std::ofstream samples(argv[6]);
    for (long i = 0; i < n; ++i) {
      const std::string name = "k" + std::to_string(i);
      if (auto c = ring.create(name, {}); !c) return die("create: " + c.error().message);
      if (i % 50 == 0) {
        auto ct = ring.encrypt(name, bytes("sample " + name), {});
        if (!ct) return die("encrypt: " + ct.error().message);
        samples << name << " " << ct->ciphertext << "\n";
      }
    }
    std::printf("POPULATED %ld\n", n);
    return 0;
  }
  if (mode == "check" && argc >= 5) {
    std::map<std::string, std::string> samples;
    {
      std::ifstream in(argv[4]);
      std::string name, ct;
      while (in >> name >> ct) samples[name] = ct;
    }
    std::string why;
    // Every root stays alive until the end: the module is loaded once
    // (opencryptoki 3.8 crashes when initialized again in one process).
    std::vector<std::unique_ptr<hsm::Pkcs11Root>> roots;
    for (int i = 5; i < argc; ++i) {
      auto store = kms::open_sqlite_store(argv[2]);
      if (!store) return die(store.error().message);
      roots.push_back(root(argv[3], argv[i]));
      auto& r = roots.back();
      kms::Keyring ring(**store, *r);
      auto u = ring.unseal();
      if (!u) {
        why += std::string(" [") + argv[i] + ": " + u.error().message + "]";
        continue;
      }
      for (const auto& [name, ct] : samples) {
        auto pt = ring.decrypt(name, ct, {});
        if (!pt || std::string(reinterpret_cast<const char*>(pt->data()), pt->size()) != "sample " + name) {
          return die("sample " + name + " does not decrypt under " + argv[i]);
        }
      }
      auto kcv = r->key_check_value();
      std::printf("OPENS %s %s %zu %s\n", argv[i], kcv ? kcv->c_str() : "?", ring.version_count(),
                  r->root_mechanism().c_str());
      return 0;
    }
    std::printf("NONE%s\n", why.c_str());
    return 1;
  }
  return die("bad arguments");
}
