// rootseal::kmsplugin — the Kubernetes KMS v2 plugin's request handling,
// behind the gRPC layer (server.hpp) and free of it, so it is tested and
// fuzzed without sockets.
//
// The seed kube-apiserver sends to Encrypt is encrypted with one transit key
// of the keyring (AES-GCM in process, as Transit's encrypt), the associated
// data being the key_id: a ciphertext only decrypts under the key_id it was
// issued with. key_id is derived from (cluster id, key name, version, the
// version's creation time), so it is the same on every host serving the same
// keyring, changes at each rotation and is never reused.
//
// Status never touches the root of trust: it reads the state the background
// self-test (self_test(), run on the blocking pool at each seal probe) left.
// Thread-safe.
#pragma once

#include <cstdint>
#include <expected>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rootseal/kms/keyring.hpp"
#include "rootseal/kms/root_of_trust.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::kmsplugin {

// The gRPC status codes this plugin answers with (numbers as gRPC's).
enum class Code : int {
  ok = 0,
  invalid_argument = 3,
  failed_precondition = 9,
  internal = 13,
  unavailable = 14,
};
std::string_view to_string(Code code) noexcept;

// A refusal: its code and a message safe to show (no plaintext, no key).
struct Failure {
  Code code;
  std::string message;
};
template <class T>
using Answer = std::expected<T, Failure>;

// Limits kube-apiserver enforces on answers, and ours on requests.
inline constexpr std::size_t kMaxKeyIdBytes = 1024;
inline constexpr std::size_t kMaxCiphertextBytes = 1024;
inline constexpr std::size_t kMaxPlaintextBytes = 512;  // the apiserver sends 32
inline constexpr std::size_t kMaxAnnotationBytes = 32768;
inline constexpr std::size_t kMaxUidBytes = 256;
inline constexpr std::string_view kVersionAnnotation = "version.kms.rootseal.io";

using Annotation = std::pair<std::string, std::string>;

struct StatusAnswer {
  std::string version;  // "v2"
  std::string healthz;  // "ok"
  std::string key_id;
};

struct EncryptAnswer {
  std::string ciphertext;  // "vault:v<N>:<base64>"
  std::string key_id;
  std::uint32_t key_version = 0;
  std::vector<Annotation> annotations;
};

struct DecryptAnswer {
  kms::SecureBytes plaintext;
  std::uint32_t key_version = 0;
};

// The opaque key_id: "rs1-" + base64url(SHA-256 of the four inputs, length-prefixed).
std::string derive_key_id(std::string_view cluster_id, std::string_view key_name, std::uint32_t version,
                          std::int64_t created_unix);

// IsFullyQualifiedDomainName as kube-apiserver checks annotation keys.
bool is_fqdn(std::string_view name) noexcept;

class Handler {
 public:
  Handler(kms::Keyring& keyring, std::string cluster_id, std::string key_name);
  ~Handler();
  Handler(const Handler&) = delete;
  Handler& operator=(const Handler&) = delete;

  // Blocking (root of trust, store): a wrap/unwrap round trip of a random key
  // through the root, and the transit key created if it is missing. Status
  // answers UNAVAILABLE until one succeeds and again after one fails.
  void self_test(kms::RootOfTrust& root);
  // The last self-test's outcome: empty when it passed, else why not.
  [[nodiscard]] std::string unhealthy_reason() const;

  [[nodiscard]] Answer<StatusAnswer> status() const;
  [[nodiscard]] Answer<EncryptAnswer> encrypt(std::span<const std::uint8_t> plaintext) const;
  [[nodiscard]] Answer<DecryptAnswer> decrypt(std::span<const std::uint8_t> ciphertext, std::string_view key_id,
                                              std::span<const Annotation> annotations) const;

  [[nodiscard]] const std::string& key_name() const noexcept;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace rootseal::kmsplugin
