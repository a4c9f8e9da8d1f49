// Helpers of the CLI tests: custodian key pairs as PEM files, a console that
// records everything, scanning files for a secret.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <catch2/catch.hpp>

#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "secret_io.hpp"

namespace rootseal::test {

struct KeyPair {
  std::filesystem::path pub;
  std::filesystem::path priv;
};

// kind: "x25519", "p256", "p384", "ed25519", "rsa2048", "rsa1024"
inline KeyPair make_key_pair(const std::filesystem::path& dir, const std::string& name, const std::string& kind) {
  EVP_PKEY* k = nullptr;
  if (kind == "x25519") k = EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519");
  if (kind == "ed25519") k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (kind == "p256") k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (kind == "p384") k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
  if (kind == "rsa2048") k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
  if (kind == "rsa1024") k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(1024));
  if (k == nullptr) throw std::runtime_error("keygen " + kind);
  KeyPair kp{dir / (name + ".pub.pem"), dir / (name + ".key.pem")};
  FILE* f = std::fopen(kp.pub.c_str(), "w");
  if (f == nullptr || PEM_write_PUBKEY(f, k) != 1 || std::fclose(f) != 0) throw std::runtime_error("write " + kind);
  f = std::fopen(kp.priv.c_str(), "w");
  if (f == nullptr || PEM_write_PrivateKey(f, k, nullptr, nullptr, 0, nullptr, nullptr) != 1 || std::fclose(f) != 0) {
    throw std::runtime_error("write " + kind);
  }
  EVP_PKEY_free(k);
  return kp;
}

class RecordingConsole final : public cli::Console {
 public:
  void out(std::string_view t) override { out_ += t; }
  void err(std::string_view t) override { err_ += t; }
  void secret_out(std::span<const std::uint8_t> t) override {
    kms::SecureBytes grown(secret_.size() + t.size());
    if (!secret_.empty()) std::memcpy(grown.data(), secret_.data(), secret_.size());
    std::memcpy(grown.data() + secret_.size(), t.data(), t.size());
    secret_ = std::move(grown);
  }
  [[nodiscard]] const std::string& out_text() const { return out_; }
  [[nodiscard]] const std::string& err_text() const { return err_; }
  [[nodiscard]] const kms::SecureBytes& secret() const { return secret_; }
  kms::SecureBytes take_secret() { return std::move(secret_); }

 private:
  std::string out_;
  std::string err_;
  kms::SecureBytes secret_;
};

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_file(const std::filesystem::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

inline std::string to_upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

inline std::string base32(std::span<const std::uint8_t> b) {
  static constexpr char kA[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string out;
  unsigned acc = 0;
  int bits = 0;
  for (std::uint8_t x : b) {
    acc = (acc << 8) | x;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out.push_back(kA[(acc >> bits) & 31]);
    }
  }
  if (bits > 0) out.push_back(kA[(acc << (5 - bits)) & 31]);
  return out;
}

// Every representation of `key` a careless program could leave behind.
inline std::vector<std::string> encodings_of(const kms::SecureBytes& key) {
  std::vector<std::string> v;
  v.emplace_back(reinterpret_cast<const char*>(key.data()), key.size());
  const std::string hex = kms::hex_encode(key.span());
  v.push_back(hex);
  v.push_back(to_upper(hex));
  v.push_back(kms::base64_encode(key.span()));
  v.push_back(base32(key.span()));
  // Half of the key is already too much.
  v.emplace_back(reinterpret_cast<const char*>(key.data()), key.size() / 2);
  v.push_back(hex.substr(0, hex.size() / 2));
  return v;
}

// Fails the test if any file under `dir` (recursively) or any of `texts`
// contains the key in any of its encodings.
inline void require_key_absent(const kms::SecureBytes& key, const std::vector<std::filesystem::path>& dirs,
                               const std::vector<std::string>& texts) {
  const auto needles = encodings_of(key);
  std::size_t files = 0;
  for (const auto& d : dirs) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(d)) {
      if (!e.is_regular_file()) continue;
      ++files;
      const std::string content = read_file(e.path());
      for (const auto& n : needles) {
        INFO("file " << e.path());
        REQUIRE(content.find(n) == std::string::npos);
      }
    }
  }
  for (const auto& t : texts) {
    for (const auto& n : needles) REQUIRE(t.find(n) == std::string::npos);
  }
  REQUIRE(files > 0);
}

}  // namespace rootseal::test
