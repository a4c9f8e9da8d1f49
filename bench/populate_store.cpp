// Fills a rootseald --dev state folder with keys and versions, through the
// same Keyring and SoftHSM2 token the daemon uses (bench/startup.sh).
//
//   rootseal_populate_store <dev-state-dir> <keys> <versions-per-key>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/keyring.hpp"

using namespace rootseal;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s <dev-state-dir> <keys> <versions-per-key>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const long keys = std::strtol(argv[2], nullptr, 10);
  const long versions = std::strtol(argv[3], nullptr, 10);
  const std::string conf = dir + "/softhsm/softhsm2.conf";
  ::setenv("SOFTHSM2_CONF", conf.c_str(), 1);  // NOLINT(concurrency-mt-unsafe): before any thread starts

  hsm::Pkcs11Config cfg;
  cfg.module = "/usr/lib/softhsm/libsofthsm2.so";
  cfg.token_label = "rootseal-dev";
  cfg.generate_if_missing = true;
  const std::string pin_path = dir + "/hsm-pin";
  auto root = hsm::Pkcs11Root::create(cfg, [pin_path]() -> kms::Result<kms::SecureBytes> {
    FILE* f = std::fopen(pin_path.c_str(), "re");
    if (f == nullptr) return kms::fail(kms::Errc::sealed, "no pin file");
    kms::SecureBytes buf(128);
    const std::size_t n = std::fread(buf.data(), 1, buf.size(), f);
    (void)std::fclose(f);  // opened for reading: nothing is lost if closing fails
    buf.truncate(n);
    return buf;
  });
  if (auto p = root->probe(); !p) {
    std::fprintf(stderr, "probe: %s\n", p.error().message.c_str());
    return 1;
  }
  auto store = kms::open_sqlite_store(dir + "/rootseal.db");
  if (!store) {
    std::fprintf(stderr, "store: %s\n", store.error().message.c_str());
    return 1;
  }
  kms::Keyring ring(**store, *root);
  if (auto u = ring.unseal(); !u) {
    std::fprintf(stderr, "unseal: %s\n", u.error().message.c_str());
    return 1;
  }
  for (long k = 0; k < keys; ++k) {
    const std::string name = "bench-" + std::to_string(k);
    if (auto c = ring.create(name, {}); !c) {
      std::fprintf(stderr, "create: %s\n", c.error().message.c_str());
      return 1;
    }
    for (long v = 1; v < versions; ++v) {
      if (auto r = ring.rotate(name); !r) {
        std::fprintf(stderr, "rotate: %s\n", r.error().message.c_str());
        return 1;
      }
    }
  }
  std::printf("keys=%zu versions=%zu\n", ring.key_count(), ring.version_count());
  return 0;
}
