// rootseal::kms — durable state: named keys, their versions and wrapped KEKs.
//
// The store never sees a plaintext key: each version's key-encryption key is
// stored wrapped by a keyring key (keyring_key.hpp), itself stored wrapped by
// the root of trust; stores written before the keyring key hold versions
// wrapped by the root directly until the keyring migrates them.
// Every mutating call is durable (committed and synced) when it returns
// success; a failed call changes nothing. Implementations are thread-safe and
// blocking (call them from the blocking pool).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/aead.hpp"
#include "rootseal/kms/error.hpp"
#include "rootseal/kms/keyring_key.hpp"

namespace rootseal::kms {

// The mutable policy of a key (Transit's keys/:name/config fields).
struct KeyConfig {
  std::uint32_t min_decryption_version = 1;
  std::uint32_t min_encryption_version = 0;  // 0 = always the latest
  bool deletion_allowed = false;
  std::int64_t auto_rotate_period_s = 0;  // 0 = off
  friend bool operator==(const KeyConfig&, const KeyConfig&) = default;
};

struct KeyVersionRecord {
  std::uint32_t version = 0;
  std::int64_t created_unix = 0;
  std::vector<std::uint8_t> wrapped_key;  // KEK wrapped by a keyring key (or, before it, by the root)
  // What wrapped it: keyring_key_tag(id, kcv), or the root's key check value.
  std::string root_kcv;
};

struct KeyRecord {
  std::string name;
  KeyType type = KeyType::aes256_gcm96;
  bool derived = false;
  std::int64_t created_unix = 0;
  KeyConfig config;
  std::vector<KeyVersionRecord> versions;  // ascending, 1..latest, none missing
};

class StateStore {
 public:
  virtual ~StateStore() = default;

  // All keys with all versions (used at unseal), ordered by name.
  virtual Result<std::vector<KeyRecord>> load_all() = 0;
  virtual Result<std::optional<KeyRecord>> find(std::string_view name) = 0;
  virtual Result<std::vector<std::string>> list_names() = 0;

  // Creates a key with its first version(s). already_exists if the name is taken.
  virtual Result<void> create_key(const KeyRecord& key) = 0;
  // Appends a version; `version.version` must be exactly latest + 1 (conflict otherwise).
  virtual Result<void> add_version(std::string_view name, const KeyVersionRecord& version) = 0;
  virtual Result<void> update_config(std::string_view name, const KeyConfig& config) = 0;
  // The same, but conflict unless the stored config is still `expected` (a
  // shared store: another host may have changed it). A store written by one
  // host only (its keyring's writer lock orders the changes) ignores `expected`.
  virtual Result<void> update_config_if(std::string_view name, const KeyConfig& expected, const KeyConfig& config) {
    (void)expected;
    return update_config(name, config);
  }
  // Removes the key and every version; not_found if absent.
  virtual Result<void> delete_key(std::string_view name) = 0;

  // Replaces the wrapped form of every listed version, and of every listed
  // keyring key (matched by id, which must exist), in one transaction (root
  // key rotation, a move under a new keyring key: all or nothing). Each
  // version entry names key, version, new blob, new tag. A store may bound
  // how many keys one call can name (etcd: invalid_argument beyond it).
  struct Rewrapped {
    std::string name;
    std::uint32_t version;
    std::vector<std::uint8_t> wrapped_key;
    std::string root_kcv;
  };
  virtual Result<void> replace_wrapped(const std::vector<Rewrapped>& versions,
                                       const std::vector<KeyringKeyRecord>& keyring_keys) = 0;

  // The keyring keys, by ascending id (keyring_key.hpp).
  virtual Result<std::vector<KeyringKeyRecord>> keyring_keys() = 0;
  // Adds one; already_exists when its id is taken (another host of a shared
  // store made one first), invalid_argument for a malformed record.
  virtual Result<void> add_keyring_key(const KeyringKeyRecord& key) = 0;
  // Removes keyring key `id` once no version is wrapped by it any more:
  // conflict while one is (or, in a shared store, may have been written
  // since the caller looked), not_found when it is gone.
  virtual Result<void> retire_keyring_key(std::uint32_t id) = 0;

  // Schema version of the open store (migrations run on open).
  [[nodiscard]] virtual int schema_version() const noexcept = 0;

  // Called at unseal with the root's key check value, before load_all. A
  // store shared by several hosts records it for the cluster on first use
  // and refuses (sealed, with the reason) a root whose value differs: a host
  // with a misrestored HSM must never write versions the others cannot
  // unwrap. A store of one host accepts any.
  virtual Result<void> check_root(std::string_view root_kcv) {
    (void)root_kcv;
    return {};
  }

  // True when other hosts write the same store (etcd): the keyring then
  // re-reads a key before changing its config, and callers re-read a key
  // (Keyring::refresh) before answering that a key or version is not there.
  [[nodiscard]] virtual bool shared() const noexcept { return false; }
};

// Opens (creating if absent) the SQLite store at `path`: WAL journal,
// synchronous=FULL, foreign keys on, schema migrated to the current version.
// The file and its -wal/-shm siblings are created with mode 0600.
Result<std::unique_ptr<StateStore>> open_sqlite_store(const std::filesystem::path& path);

}  // namespace rootseal::kms
