#include "rootseal/kmsplugin/handler.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <mutex>

#include "rootseal/kms/ciphertext.hpp"
#include "rootseal/kms/encoding.hpp"

namespace rootseal::kmsplugin {

namespace {

std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

Failure refuse(Code code, std::string message) { return Failure{code, std::move(message)}; }

// A keyring error as the gRPC code kube-apiserver should see. Sealed or a
// failing root is UNAVAILABLE (the apiserver retries); the caller's bad input
// is INVALID_ARGUMENT; a ciphertext outside the key's decryption window is a
// FAILED_PRECONDITION (the operator moved min_decryption_version past it).
Failure from_error(const kms::Error& e) {
  switch (e.code) {
    case kms::Errc::sealed:
    case kms::Errc::unavailable:
      return refuse(Code::unavailable, e.message);
    case kms::Errc::invalid_argument:
    case kms::Errc::malformed_ciphertext:
    case kms::Errc::bad_base64:
    case kms::Errc::decryption_failed:
      return refuse(Code::invalid_argument, e.message);
    case kms::Errc::version_disallowed:
    case kms::Errc::not_found:
      return refuse(Code::failed_precondition, e.message);
    default:
      return refuse(Code::internal, e.message);
  }
}

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void put_field(std::string& out, std::string_view field) {
  put_u64(out, field.size());
  out.append(field);
}

}  // namespace

std::string_view to_string(Code code) noexcept {
  switch (code) {
    case Code::ok:
      return "OK";
    case Code::invalid_argument:
      return "INVALID_ARGUMENT";
    case Code::failed_precondition:
      return "FAILED_PRECONDITION";
    case Code::internal:
      return "INTERNAL";
    case Code::unavailable:
      return "UNAVAILABLE";
  }
  return "UNKNOWN";
}

std::string derive_key_id(std::string_view cluster_id, std::string_view key_name, std::uint32_t version,
                          std::int64_t created_unix) {
  // Each input length-prefixed: no two tuples give the same message.
  std::string message = "rootseal kms v2 key_id";
  put_field(message, cluster_id);
  put_field(message, key_name);
  put_u64(message, version);
  put_u64(message, static_cast<std::uint64_t>(created_unix));
  std::uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest);
  return "rs1-" + kms::hex_encode(std::span<const std::uint8_t>(digest, sizeof digest));
}

bool is_fqdn(std::string_view name) noexcept {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return false;
  std::size_t labels = 0;
  std::size_t start = 0;
  while (start <= name.size()) {
    const std::size_t dot = name.find('.', start);
    const std::string_view label =
        name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63) return false;
    for (std::size_t i = 0; i < label.size(); ++i) {
      const char c = label[i];
      const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
      const bool inner_dash = c == '-' && i != 0 && i + 1 != label.size();
      if (!alnum && !inner_dash) return false;
    }
    ++labels;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return labels >= 2;
}

struct Handler::State {
  kms::Keyring& keyring;
  std::string cluster_id;
  std::string key_name;
  mutable std::mutex mu;
  bool healthy = false;
  std::string reason = "self-test has not run yet";

  // The key's current version and its key_id, from one read of the keyring.
  struct Current {
    std::uint32_t version;
    std::string key_id;
  };
  Answer<Current> current() const {
    {
      std::lock_guard lock(mu);
      if (!healthy) return std::unexpected(refuse(Code::unavailable, "kms plugin unavailable: " + reason));
    }
    auto info = keyring.read(key_name);
    if (!info) return std::unexpected(from_error(info.error()));
    const auto it = info->versions.find(info->latest_version);
    if (it == info->versions.end()) return std::unexpected(refuse(Code::internal, "key has no latest version"));
    return Current{info->latest_version, derive_key_id(cluster_id, key_name, it->first, it->second)};
  }
};

Handler::Handler(kms::Keyring& keyring, std::string cluster_id, std::string key_name)
    : state_(std::make_unique<State>(keyring, std::move(cluster_id), std::move(key_name))) {}

Handler::~Handler() = default;

const std::string& Handler::key_name() const noexcept { return state_->key_name; }

void Handler::self_test(kms::RootOfTrust& root) {
  auto set = [this](bool healthy, std::string reason) {
    std::lock_guard lock(state_->mu);
    state_->healthy = healthy;
    state_->reason = std::move(reason);
  };
  if (state_->keyring.is_sealed()) return set(false, "sealed");
  // The root of trust round trip: a fresh random key wrapped and unwrapped.
  const auto probe = kms::SecureBytes::random(32);
  auto wrapped = root.wrap(probe);
  if (!wrapped) return set(false, "root of trust self-test: " + wrapped.error().message);
  auto unwrapped = root.unwrap(*wrapped);
  if (!unwrapped) return set(false, "root of trust self-test: " + unwrapped.error().message);
  if (!(*unwrapped == probe)) return set(false, "root of trust self-test: unwrap gave other bytes");

  kms::CreateOptions options;  // aes256-gcm96, not derived
  auto created = state_->keyring.create(state_->key_name, options);
  if (!created) return set(false, "transit key " + state_->key_name + ": " + created.error().message);
  const auto& info = created->info;
  if (info.derived || info.type == kms::KeyType::aes128_gcm96) {
    return set(false, "transit key " + state_->key_name + " must be aes256-gcm96 or chacha20-poly1305, not derived");
  }
  set(true, "");
}

std::string Handler::unhealthy_reason() const {
  std::lock_guard lock(state_->mu);
  return state_->healthy ? std::string() : state_->reason;
}

Answer<StatusAnswer> Handler::status() const {
  auto current = state_->current();
  if (!current) return std::unexpected(current.error());
  return StatusAnswer{"v2", "ok", std::move(current->key_id)};
}

Answer<EncryptAnswer> Handler::encrypt(std::span<const std::uint8_t> plaintext) const {
  if (plaintext.empty()) return std::unexpected(refuse(Code::invalid_argument, "plaintext is empty"));
  if (plaintext.size() > kMaxPlaintextBytes) {
    return std::unexpected(
        refuse(Code::invalid_argument, "plaintext larger than " + std::to_string(kMaxPlaintextBytes) + " bytes"));
  }
  auto current = state_->current();
  if (!current) return std::unexpected(current.error());
  kms::CryptoOptions options;
  options.aad = bytes_of(current->key_id);
  options.key_version = current->version;  // the version key_id names, whatever a rotation did since
  auto sealed = state_->keyring.encrypt(state_->key_name, plaintext, options);
  if (!sealed) return std::unexpected(from_error(sealed.error()));
  if (sealed->ciphertext.size() > kMaxCiphertextBytes) {
    return std::unexpected(refuse(Code::internal, "ciphertext larger than 1024 bytes"));
  }
  EncryptAnswer answer;
  answer.ciphertext = std::move(sealed->ciphertext);
  answer.key_id = std::move(current->key_id);
  answer.key_version = sealed->key_version;
  answer.annotations.emplace_back(std::string(kVersionAnnotation), std::to_string(sealed->key_version));
  return answer;
}

Answer<DecryptAnswer> Handler::decrypt(std::span<const std::uint8_t> ciphertext, std::string_view key_id,
                                       std::span<const Annotation> annotations) const {
  if (ciphertext.empty() || ciphertext.size() > kMaxCiphertextBytes) {
    return std::unexpected(refuse(Code::invalid_argument, "ciphertext must be 1 to 1024 bytes"));
  }
  if (key_id.empty() || key_id.size() > kMaxKeyIdBytes) {
    return std::unexpected(refuse(Code::invalid_argument, "key_id must be 1 to 1024 bytes"));
  }
  std::size_t annotation_bytes = 0;
  const std::string* version_annotation = nullptr;
  for (const auto& [name, value] : annotations) {
    if (!is_fqdn(name)) {
      return std::unexpected(refuse(Code::invalid_argument, "annotation key is not a fully-qualified domain name"));
    }
    annotation_bytes += name.size() + value.size();
    if (name == kVersionAnnotation) version_annotation = &value;
  }
  if (annotation_bytes > kMaxAnnotationBytes) {
    return std::unexpected(refuse(Code::invalid_argument, "annotations larger than 32768 bytes"));
  }
  {
    std::lock_guard lock(state_->mu);
    if (!state_->healthy) {
      return std::unexpected(refuse(Code::unavailable, "kms plugin unavailable: " + state_->reason));
    }
  }
  const std::string_view text(reinterpret_cast<const char*>(ciphertext.data()), ciphertext.size());
  auto parsed = kms::parse_ciphertext(text);
  if (!parsed) return std::unexpected(from_error(parsed.error()));
  auto info = state_->keyring.read(state_->key_name);
  if (!info) return std::unexpected(from_error(info.error()));
  const auto created = info->versions.find(parsed->version);
  // A key_id this cluster did not issue for this version (another cluster's,
  // another key's, a deleted and re-created key's) is refused before any
  // decryption is tried. key_ids are public: a plain comparison is fine.
  if (created == info->versions.end() ||
      derive_key_id(state_->cluster_id, state_->key_name, created->first, created->second) != key_id) {
    return std::unexpected(refuse(Code::invalid_argument, "key_id was not issued by this kms plugin"));
  }
  if (version_annotation != nullptr && *version_annotation != std::to_string(parsed->version)) {
    return std::unexpected(
        refuse(Code::invalid_argument, std::string(kVersionAnnotation) + " does not match the ciphertext"));
  }
  kms::CryptoOptions options;
  options.aad = bytes_of(key_id);
  auto plaintext = state_->keyring.decrypt(state_->key_name, text, options);
  if (!plaintext) return std::unexpected(from_error(plaintext.error()));
  return DecryptAnswer{std::move(*plaintext), parsed->version};
}

}  // namespace rootseal::kmsplugin
