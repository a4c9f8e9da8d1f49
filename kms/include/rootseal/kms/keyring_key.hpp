// rootseal::kms — the keyring key: one AES-256 key, held in the store only
// wrapped by the root of trust, under which every version's key-encryption
// key is wrapped in software (AES-KWP, RFC 5649).
//
//   root (HSM / TPM) ─wraps─▶ keyring key ─wraps─▶ KEK of each key version
//
// Unseal costs one root operation whatever the number of versions; rotating
// the root rewraps one blob. A store may hold several keyring keys for a
// while (ids 1, 2, ...; the highest is current): after a keyring-key rotation,
// until every version has moved under the current one, and the older ones
// are retired. A version's KeyVersionRecord::root_kcv names what wrapped it:
// the root's check value (6 hex digits, stores written before the keyring
// key) or keyring_key_tag(id, kcv) ("kk<id>:<6 hex>").
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/root_of_trust.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::kms {

struct KeyVersionRecord;

struct KeyringKeyRecord {
  std::uint32_t id = 0;  // 1..2^31-1; the highest in a store is current
  std::int64_t created_unix = 0;
  std::vector<std::uint8_t> wrapped;  // the keyring key, wrapped by the root
  std::string root_kcv;               // check value of that root
  std::string kcv;                    // the keyring key's own check value (6 hex, as CKA_CHECK_VALUE)
  friend bool operator==(const KeyringKeyRecord&, const KeyringKeyRecord&) = default;
};

inline constexpr std::uint32_t kMaxKeyringKeyId = 0x7fffffff;

// "kk<id>:<kcv>": the wrapping tag of a version under that keyring key.
std::string keyring_key_tag(std::uint32_t id, std::string_view kcv);
// The id of a well-formed keyring-key tag; nullopt for anything else (a
// root's check value among them).
std::optional<std::uint32_t> keyring_key_tag_id(std::string_view tag) noexcept;
// What a store record may hold: an id in range and a 6-digit lower-case hex
// check value on both sides, a wrapped key of 16..2048 bytes.
Result<void> validate_keyring_key_record(const KeyringKeyRecord& record);

// A new keyring key: 32 random bytes, wrapped by `root` and checked to
// unwrap to the same bytes before the record is returned.
struct NewKeyringKey {
  KeyringKeyRecord record;
  SecureBytes key;
};
Result<NewKeyringKey> new_keyring_key(RootOfTrust& root, std::uint32_t id, std::int64_t created_unix);

// The keys a store's versions are wrapped by, unwrapped: its keyring keys
// (one root operation each) and the root itself for versions from before the
// keyring key. Immutable once opened (thread-safe); the root it refers to
// must outlive it.
class KeyHierarchy {
 public:
  KeyHierarchy() = default;  // holds nothing, unwraps nothing

  // Unwraps every record with `root`, whose check value is `root_kcv`. A
  // record wrapped by another root is `sealed` (with both check values); one
  // that does not unwrap to its check value is `decryption_failed`.
  // Keys `reuse` already holds (same id, check value and wrapped form) are
  // taken from it without a root operation.
  static Result<KeyHierarchy> open(RootOfTrust& root, std::string_view root_kcv,
                                   std::span<const KeyringKeyRecord> records, const KeyHierarchy* reuse = nullptr);
  // The same, adding a key just made (no root operation for it).
  Result<KeyHierarchy> with(const NewKeyringKey& added) const;

  // The version's KEK, unwrapped by whatever its tag names: a keyring key
  // held here (software) or the root (an HSM operation). A tag naming
  // neither is `sealed` ("wrapped by another root key").
  Result<SecureBytes> unwrap(const KeyVersionRecord& version) const;

  struct Wrapped {
    std::vector<std::uint8_t> blob;
    std::string tag;
  };
  // Wraps a KEK under the current keyring key (software); internal
  // when the hierarchy holds none (a bug).
  Result<Wrapped> wrap(const SecureBytes& kek) const;

  // Whether a version with this tag needs moving under the current keyring key.
  [[nodiscard]] bool is_current(std::string_view tag) const noexcept;
  // Whether this tag is one the hierarchy can unwrap without asking the store again.
  [[nodiscard]] bool knows(std::string_view tag) const noexcept;
  [[nodiscard]] std::optional<KeyringKeyRecord> current() const;
  [[nodiscard]] const std::vector<KeyringKeyRecord>& records() const noexcept { return records_; }
  [[nodiscard]] const std::string& root_kcv() const noexcept { return root_kcv_; }

 private:
  KeyHierarchy(RootOfTrust& root, std::string root_kcv) : root_(&root), root_kcv_(std::move(root_kcv)) {}
  RootOfTrust* root_ = nullptr;
  std::string root_kcv_;
  std::vector<KeyringKeyRecord> records_;                 // ascending id
  std::map<std::string, SecureBytes, std::less<>> keys_;  // tag -> keyring key
};

}  // namespace rootseal::kms
