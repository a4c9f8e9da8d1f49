// kms::KeyHierarchy: the keyring keys of a store, unwrapped once per unseal.
#include "rootseal/kms/keyring_key.hpp"

#include <algorithm>
#include <charconv>

#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/key_wrap.hpp"
#include "rootseal/kms/state_store.hpp"

namespace rootseal::kms {
namespace {

constexpr std::size_t kKeyringKeySize = 32;
constexpr std::size_t kMinWrapped = 16;
constexpr std::size_t kMaxWrapped = 2048;  // a header byte and an RSA-8192 OAEP blob (1024 bytes) fit

bool is_kcv(std::string_view s) noexcept {
  return s.size() == 2 * kKeyCheckValueSize &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Result<std::string> check_value_of(const SecureBytes& key) {
  std::vector<std::uint8_t> kcv;
  ROOTSEAL_TRY_ASSIGN(kcv, aes_key_check_value(key));
  return hex_encode(kcv);
}

std::string id_text(std::uint32_t id) { return std::to_string(id); }

}  // namespace

std::string keyring_key_tag(std::uint32_t id, std::string_view kcv) {
  std::string tag = "kk" + id_text(id) + ":";
  tag += kcv;
  return tag;
}

std::optional<std::uint32_t> keyring_key_tag_id(std::string_view tag) noexcept {
  if (!tag.starts_with("kk")) return std::nullopt;
  const auto colon = tag.find(':');
  if (colon == std::string_view::npos || colon < 3 || colon > 12) return std::nullopt;
  const std::string_view digits = tag.substr(2, colon - 2);
  if (digits.front() == '0') return std::nullopt;  // one spelling per id
  std::uint32_t id = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), id);
  if (ec != std::errc() || end != digits.data() + digits.size() || id == 0 || id > kMaxKeyringKeyId) {
    return std::nullopt;
  }
  if (!is_kcv(tag.substr(colon + 1))) return std::nullopt;
  return id;
}

Result<void> validate_keyring_key_record(const KeyringKeyRecord& r) {
  const std::string which = "keyring key " + id_text(r.id);
  if (r.id == 0 || r.id > kMaxKeyringKeyId) return fail(Errc::storage_failure, "a keyring key has an id out of range");
  if (!is_kcv(r.kcv)) return fail(Errc::storage_failure, which + " has a malformed check value");
  if (!is_kcv(r.root_kcv)) return fail(Errc::storage_failure, which + " names a malformed root check value");
  if (r.wrapped.size() < kMinWrapped || r.wrapped.size() > kMaxWrapped) {
    return fail(Errc::storage_failure, which + " has a wrapped form of an impossible length");
  }
  return {};
}

Result<NewKeyringKey> new_keyring_key(RootOfTrust& root, std::uint32_t id, std::int64_t created_unix) {
  if (id == 0 || id > kMaxKeyringKeyId) return fail(Errc::invalid_argument, "keyring key id out of range");
  NewKeyringKey out;
  out.key = SecureBytes::random(kKeyringKeySize);
  out.record.id = id;
  out.record.created_unix = created_unix;
  ROOTSEAL_TRY_ASSIGN(out.record.kcv, check_value_of(out.key));
  ROOTSEAL_TRY_ASSIGN(out.record.root_kcv, root.key_check_value());
  ROOTSEAL_TRY_ASSIGN(out.record.wrapped, root.wrap(out.key));
  // Checked before anyone stores it: a keyring key the root cannot give back
  // would take every version under it along.
  auto check = root.unwrap(out.record.wrapped);
  if (!check) {
    return fail(check.error().code,
                "root of trust cannot unwrap the keyring key it just wrapped: " + check.error().message);
  }
  if (!(*check == out.key)) return fail(Errc::crypto_failure, "root of trust unwrapped the new keyring key wrongly");
  ROOTSEAL_TRY(validate_keyring_key_record(out.record));
  return out;
}

Result<KeyHierarchy> KeyHierarchy::open(RootOfTrust& root, std::string_view root_kcv,
                                        std::span<const KeyringKeyRecord> records, const KeyHierarchy* reuse) {
  KeyHierarchy h(root, std::string(root_kcv));
  for (const auto& r : records) {
    ROOTSEAL_TRY(validate_keyring_key_record(r));
    if (!h.records_.empty() && h.records_.back().id >= r.id) {
      return fail(Errc::storage_failure, "keyring keys are not in ascending id order");
    }
    if (r.root_kcv != root_kcv) {
      return fail(Errc::sealed, "keyring key " + id_text(r.id) + " was wrapped by another root key (kcv " + r.root_kcv +
                                    ", root kcv " + std::string(root_kcv) + ")");
    }
    const std::string tag = keyring_key_tag(r.id, r.kcv);
    if (reuse != nullptr && reuse->root_kcv_ == root_kcv) {
      const auto held = std::find(reuse->records_.begin(), reuse->records_.end(), r);
      const auto key = reuse->keys_.find(tag);
      if (held != reuse->records_.end() && key != reuse->keys_.end()) {
        h.keys_.emplace(tag, key->second.clone());
        h.records_.push_back(r);
        continue;
      }
    }
    auto key = root.unwrap(r.wrapped);
    if (!key) {
      return fail(key.error().code, "keyring key " + id_text(r.id) + " does not unwrap: " + key.error().message);
    }
    if (key->size() != kKeyringKeySize) {
      return fail(Errc::storage_failure, "keyring key " + id_text(r.id) + " unwrapped to the wrong length");
    }
    std::string kcv;
    ROOTSEAL_TRY_ASSIGN(kcv, check_value_of(*key));
    if (kcv != r.kcv) {
      return fail(Errc::decryption_failed, "keyring key " + id_text(r.id) + " unwrapped to a key whose check value (" +
                                               kcv + ") is not the recorded one (" + r.kcv + ")");
    }
    h.keys_.emplace(tag, std::move(*key));
    h.records_.push_back(r);
  }
  return h;
}

Result<KeyHierarchy> KeyHierarchy::with(const NewKeyringKey& added) const {
  if (!records_.empty() && records_.back().id >= added.record.id) {
    return fail(Errc::conflict, "keyring key " + id_text(added.record.id) + " is not newer than the current one");
  }
  if (added.record.root_kcv != root_kcv_) return fail(Errc::sealed, "the new keyring key was wrapped by another root");
  KeyHierarchy h(*root_, root_kcv_);
  h.records_ = records_;
  for (const auto& [tag, key] : keys_) h.keys_.emplace(tag, key.clone());
  h.keys_.emplace(keyring_key_tag(added.record.id, added.record.kcv), added.key.clone());
  h.records_.push_back(added.record);
  return h;
}

Result<SecureBytes> KeyHierarchy::unwrap(const KeyVersionRecord& version) const {
  if (auto it = keys_.find(version.root_kcv); it != keys_.end()) {
    return aes_kwp_unwrap(it->second, version.wrapped_key);
  }
  if (root_ != nullptr && version.root_kcv == root_kcv_) return root_->unwrap(version.wrapped_key);
  if (keyring_key_tag_id(version.root_kcv)) {
    return fail(Errc::sealed, "wrapped by keyring key " + version.root_kcv + ", which the store no longer holds");
  }
  return fail(Errc::sealed, "wrapped by another root key (kcv " + version.root_kcv + ", root kcv " + root_kcv_ + ")");
}

Result<KeyHierarchy::Wrapped> KeyHierarchy::wrap(const SecureBytes& kek) const {
  if (records_.empty()) return fail(Errc::internal, "the store holds no keyring key yet");
  const auto& r = records_.back();
  Wrapped out;
  out.tag = keyring_key_tag(r.id, r.kcv);
  const auto it = keys_.find(out.tag);
  if (it == keys_.end()) return fail(Errc::internal, "keyring key missing from its hierarchy");
  if (kek.size() < kMinWrapped || kek.size() > 64)
    return fail(Errc::invalid_argument, "key to wrap must be 16..64 bytes");
  ROOTSEAL_TRY_ASSIGN(out.blob, aes_kwp_wrap(it->second, kek.span()));
  return out;
}

bool KeyHierarchy::is_current(std::string_view tag) const noexcept {
  if (records_.empty()) return false;
  const auto& r = records_.back();
  return keyring_key_tag_id(tag) == r.id && tag.substr(tag.find(':') + 1) == r.kcv;
}

bool KeyHierarchy::knows(std::string_view tag) const noexcept {
  return (root_ != nullptr && tag == root_kcv_) || keys_.contains(tag);
}

std::optional<KeyringKeyRecord> KeyHierarchy::current() const {
  if (records_.empty()) return std::nullopt;
  return records_.back();
}

}  // namespace rootseal::kms
