// Crash-safety driver for tests/integration/test_crash_rotate.py.
//
//   crash_rotator run <state_dir> <key>     rotate in a loop; after each rotation
//       is acknowledged (durable) print "ACK <version>", then encrypt and print
//       "CT <version> <plaintext-hex> <ciphertext>"; runs until killed.
//   crash_rotator verify <state_dir> <key> <log>   reopen, unseal, and check that
//       every ACKed version exists and every CT line decrypts to its plaintext.
//   crash_rotator legacy <state_dir> <keys> <versions>   write a store as releases
//       before the keyring key did (each version's KEK wrapped by the HSM root
//       directly, tagged with the root's check value; no keyring key) and print
//       "LEGACY <key> <version> <plaintext-hex> <ciphertext>" for each version.
//
// The SoftHSM2 token is the caller's (SOFTHSM2_CONF, label "crash", PIN 1234).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/aead.hpp"
#include "rootseal/kms/ciphertext.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/keyring.hpp"

using namespace rootseal;

namespace {

int die(const std::string& what) {
  std::fprintf(stderr, "crash_rotator: %s\n", what.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return die("usage: crash_rotator run|verify <state_dir> <key> [log]");
  const std::string mode = argv[1];
  const std::string dir = argv[2];
  const std::string key = argv[3];

  hsm::Pkcs11Config cfg;
  cfg.module = std::getenv("SOFTHSM2_MODULE") ? std::getenv("SOFTHSM2_MODULE") : "/usr/lib/softhsm/libsofthsm2.so";
  cfg.token_label = "crash";
  cfg.generate_if_missing = true;
  auto root = hsm::Pkcs11Root::create(
      cfg, [] { return kms::Result<kms::SecureBytes>(kms::SecureBytes::copy_of(std::string_view("1234"))); });
  if (auto p = root->probe(); !p) return die("probe: " + p.error().message);
  auto store = kms::open_sqlite_store(dir + "/rootseal.db");
  if (!store) return die("store: " + store.error().message);
  if (mode == "legacy") {
    const int keys = std::stoi(argv[3]);
    const int versions = argc > 4 ? std::stoi(argv[4]) : 1;
    auto kcv = root->key_check_value();
    if (!kcv) return die("kcv: " + kcv.error().message);
    for (int k = 0; k < keys; ++k) {
      kms::KeyRecord rec;
      rec.name = "legacy-" + std::to_string(k);
      rec.created_unix = 1'700'000'000;
      std::vector<std::string> lines;
      for (int v = 1; v <= versions; ++v) {
        auto kek = kms::SecureBytes::random(32);
        auto wrapped = root->wrap(kek);
        if (!wrapped) return die("wrap: " + wrapped.error().message);
        rec.versions.push_back({static_cast<std::uint32_t>(v), 1'700'000'000 + v, *wrapped, *kcv});
        auto aead = kms::make_aead(kms::KeyType::aes256_gcm96, kek);
        if (!aead) return die("aead: " + aead.error().message);
        const std::string plain = rec.name + " v" + std::to_string(v);
        const auto span = std::span(reinterpret_cast<const std::uint8_t*>(plain.data()), plain.size());
        auto body = (*aead)->seal(span, {});
        if (!body) return die("seal: " + body.error().message);
        lines.push_back("LEGACY " + rec.name + " " + std::to_string(v) + " " + kms::hex_encode(span) + " " +
                        kms::format_ciphertext(static_cast<std::uint32_t>(v), *body));
      }
      if (auto c = (*store)->create_key(rec); !c) return die("create: " + c.error().message);
      for (const auto& l : lines) std::printf("%s\n", l.c_str());
    }
    return 0;
  }
  kms::Keyring ring(**store, *root);
  if (auto u = ring.unseal(); !u) return die("unseal: " + u.error().message);

  if (mode == "run") {
    if (auto c = ring.create(key, {}); !c) return die("create: " + c.error().message);
    for (std::uint64_t i = 0;; ++i) {
      auto info = ring.rotate(key);
      if (!info) return die("rotate: " + info.error().message);
      std::printf("ACK %u\n", info->latest_version);
      std::fflush(stdout);
      const std::string plain = "payload-" + std::to_string(info->latest_version) + "-" + std::to_string(i);
      auto ct = ring.encrypt(key, std::span(reinterpret_cast<const std::uint8_t*>(plain.data()), plain.size()), {});
      if (!ct) return die("encrypt: " + ct.error().message);
      std::printf("CT %u %s %s\n", ct->key_version,
                  kms::hex_encode(std::span(reinterpret_cast<const std::uint8_t*>(plain.data()), plain.size())).c_str(),
                  ct->ciphertext.c_str());
      std::fflush(stdout);
    }
  }
  if (mode == "verify") {
    if (argc < 5) return die("verify needs a log file");
    auto info = ring.read(key);
    if (!info) return die("read: " + info.error().message);
    std::ifstream log(argv[4]);
    std::string line;
    unsigned acked = 0;
    unsigned checked = 0;
    while (std::getline(log, line)) {
      std::istringstream in(line);
      std::string tag;
      in >> tag;
      if (tag == "ACK") {
        unsigned v = 0;
        in >> v;
        if (v > info->latest_version) return die("acknowledged version " + std::to_string(v) + " is missing");
        acked = std::max(acked, v);
      } else if (tag == "CT") {
        unsigned v = 0;
        std::string hex, ct;
        in >> v >> hex >> ct;
        if (ct.empty()) continue;  // a line cut by the kill
        auto plain = ring.decrypt(key, ct, {});
        if (!plain) return die("ciphertext of v" + std::to_string(v) + " no longer decrypts: " + plain.error().message);
        if (kms::hex_encode(plain->span()) != hex)
          return die("ciphertext of v" + std::to_string(v) + " decrypts wrongly");
        ++checked;
      }
    }
    std::printf("OK latest=%u acked=%u ciphertexts=%u\n", info->latest_version, acked, checked);
    return 0;
  }
  return die("unknown mode " + mode);
}
