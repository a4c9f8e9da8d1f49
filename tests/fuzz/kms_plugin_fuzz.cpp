// Fuzz target: the KMS v2 plugin's request handling behind gRPC
// (kmsplugin::Handler) over a real keyring (SQLite in a scratch folder,
// SoftwareRoot), the key created by the self-test at a fixed clock.
//
// Input: byte 0 picks the operation, the rest are its fields.
//  0  Decrypt of raw fields separated by 0xff: ciphertext, key_id, then
//     annotation key/value pairs;
//  1  Encrypt of the rest, then Decrypt of what it gave;
//  2  Encrypt of the rest (from byte 4), one byte of the answer changed
//     (byte 1: which field — ciphertext, key_id, annotation value;
//     byte 2: position; byte 3: XOR mask), then Decrypt.
// Properties beyond "no crash, no sanitizer report":
//  - every refusal has a documented code (never INTERNAL) and a message;
//  - Encrypt's key_id is Status's, its ciphertext at most 1024 bytes, its
//    annotation keys fully-qualified domain names;
//  - a Decrypt of an untouched answer gives the plaintext back; one with a
//    changed byte fails (or, for a change that is no change, gives it back).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "rootseal/kms/keyring.hpp"
#include "rootseal/kms/root_of_trust.hpp"
#include "rootseal/kms/state_store.hpp"
#include "rootseal/kmsplugin/handler.hpp"

namespace kms = rootseal::kms;
namespace kp = rootseal::kmsplugin;

namespace {

struct Rig {
  std::unique_ptr<kms::StateStore> store;
  std::unique_ptr<kms::RootOfTrust> root;
  std::unique_ptr<kms::Keyring> keyring;
  std::unique_ptr<kp::Handler> handler;
};

Rig& rig() {
  static Rig* r = [] {
    auto* made = new Rig;
    const auto dir = std::filesystem::temp_directory_path() / ("rootseal-kms-fuzz-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    auto store = kms::open_sqlite_store(dir / "state.db");
    kms::SecureBytes key(32);
    for (std::size_t i = 0; i < key.size(); ++i) key.data()[i] = static_cast<std::uint8_t>(i);
    auto root = kms::SoftwareRoot::create(std::move(key));
    if (!store || !root) std::abort();
    made->store = std::move(*store);
    made->root = std::move(*root);
    made->keyring = std::make_unique<kms::Keyring>(*made->store, *made->root, [] { return std::int64_t{1700000000}; });
    if (!made->keyring->unseal()) std::abort();
    made->handler = std::make_unique<kp::Handler>(*made->keyring, "fuzz-cluster", "kubernetes");
    made->handler->self_test(*made->root);
    if (!made->handler->status()) std::abort();
    std::atexit([] {
      std::filesystem::remove_all(std::filesystem::temp_directory_path() /
                                  ("rootseal-kms-fuzz-" + std::to_string(::getpid())));
    });
    return made;
  }();
  return *r;
}

void check_failure(const kp::Failure& f) {
  if (f.message.empty()) __builtin_trap();
  if (f.code != kp::Code::invalid_argument && f.code != kp::Code::failed_precondition) __builtin_trap();
}

std::span<const std::uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::vector<std::string> split(std::span<const std::uint8_t> in) {
  std::vector<std::string> out(1);
  for (const auto b : in) {
    if (b == 0xff)
      out.emplace_back();
    else
      out.back().push_back(static_cast<char>(b));
  }
  return out;
}

void encrypt_then_decrypt(std::span<const std::uint8_t> plaintext, int field, std::size_t pos, std::uint8_t mask) {
  auto& h = *rig().handler;
  auto enc = h.encrypt(plaintext);
  if (!enc) {
    check_failure(enc.error());
    if (!plaintext.empty() && plaintext.size() <= kp::kMaxPlaintextBytes) __builtin_trap();
    return;
  }
  if (enc->key_id != h.status()->key_id) __builtin_trap();
  if (enc->ciphertext.empty() || enc->ciphertext.size() > kp::kMaxCiphertextBytes) __builtin_trap();
  for (const auto& [k, v] : enc->annotations) {
    if (!kp::is_fqdn(k)) __builtin_trap();
  }
  std::string ct = enc->ciphertext;
  std::string key_id = enc->key_id;
  auto annotations = enc->annotations;
  bool changed = false;
  if (field >= 0) {
    std::string& target = field == 0 ? ct : field == 1 ? key_id : annotations.at(0).second;
    if (!target.empty()) {
      target[pos % target.size()] = static_cast<char>(target[pos % target.size()] ^ mask);
      // "vault:v0:" reads as version 1 (Transit's rule): no change either.
      changed = mask != 0 && !(field == 0 && ct.starts_with("vault:v0:") && enc->ciphertext.starts_with("vault:v1:"));
    }
  }
  auto dec = h.decrypt(bytes_of(ct), key_id, annotations);
  if (!dec) {
    check_failure(dec.error());
    if (!changed) __builtin_trap();
    return;
  }
  if (changed) __builtin_trap();
  if (dec->plaintext.size() != plaintext.size() ||
      !std::equal(plaintext.begin(), plaintext.end(), dec->plaintext.span().begin())) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::span<const std::uint8_t> in(data, size);
  switch (data[0] % 3) {
    case 0: {
      auto fields = split(in.subspan(1));
      fields.resize(std::max<std::size_t>(fields.size(), 2));
      std::vector<kp::Annotation> annotations;
      for (std::size_t i = 2; i + 1 < fields.size(); i += 2) annotations.emplace_back(fields[i], fields[i + 1]);
      auto dec = rig().handler->decrypt(bytes_of(fields[0]), fields[1], annotations);
      if (!dec) check_failure(dec.error());
      break;
    }
    case 1:
      encrypt_then_decrypt(in.subspan(1), -1, 0, 0);
      break;
    default:
      if (size < 4) return 0;
      encrypt_then_decrypt(in.subspan(4), data[1] % 3, data[2], data[3]);
      break;
  }
  return 0;
}
