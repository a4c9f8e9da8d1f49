// rootseal::kms — the keyring: named, versioned keys and the operations of
// Transit's encryption-as-a-service on them.
//
// While unsealed, each version's key-encryption key is held unwrapped in
// SecureBytes; encrypt/decrypt/rewrap/datakey are pure CPU work (no HSM, no
// store) and safe to run on I/O threads. create/rotate/configure/remove and
// unseal touch the root of trust and the store: they block, so run them on
// the blocking pool. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/aead.hpp"
#include "rootseal/kms/error.hpp"
#include "rootseal/kms/root_of_trust.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "rootseal/kms/state_store.hpp"

namespace rootseal::kms {

// What Transit's GET keys/:name reports.
struct KeyInfo {
  std::string name;
  KeyType type = KeyType::aes256_gcm96;
  bool derived = false;
  KeyConfig config;
  std::uint32_t latest_version = 0;
  std::uint32_t min_available_version = 0;  // 0 until old versions are trimmed (they never are), as Vault reports
  std::map<std::uint32_t, std::int64_t> versions;  // version -> creation unix time
};

struct CreateOptions {
  KeyType type = KeyType::aes256_gcm96;
  bool derived = false;
  bool exportable = false;  // must stay false: rootseal never exports keys
  std::int64_t auto_rotate_period_s = 0;
};

struct ConfigUpdate {
  std::optional<std::uint32_t> min_decryption_version;
  std::optional<std::uint32_t> min_encryption_version;
  std::optional<bool> deletion_allowed;
  std::optional<std::int64_t> auto_rotate_period_s;
};

// Per-request inputs. `context` is the HKDF info for derived keys (required
// for them; ignored for non-derived keys, as Vault does); `aad` is the AEAD
// associated data; a key_version of 0 means "the latest allowed".
struct CryptoOptions {
  std::span<const std::uint8_t> context;
  std::span<const std::uint8_t> aad;
  std::uint32_t key_version = 0;
};

struct Encrypted {
  std::string ciphertext;  // "vault:v<N>:..."
  std::uint32_t key_version;
};

struct DataKey {
  SecureBytes plaintext;   // bits/8 random bytes
  std::string ciphertext;  // the same bytes encrypted under the named key
  std::uint32_t key_version;
};

// The keyring key in use (keyring_key.hpp) and how far the store is from
// having every version under it.
struct KeyringKeyStatus {
  std::uint32_t id = 0;
  std::string kcv;
  std::int64_t created_unix = 0;
  std::size_t keyring_keys = 0;      // in the store as last read; > 1 until older ones are retired
  std::size_t pending_versions = 0;  // versions the last settle could not move (another host wrote them)
  std::string settle_error;          // why the last settle stopped, if it did
};

// Injected clock (unix seconds) for hermetic tests.
using Clock = std::function<std::int64_t()>;

class Keyring {
 public:
  Keyring(StateStore& store, RootOfTrust& root, Clock clock = {});
  ~Keyring();
  Keyring(const Keyring&) = delete;
  Keyring& operator=(const Keyring&) = delete;

  // Opens the store's keyring key with the root (one root operation; a store
  // without one gets its first), loads every key and unwraps every version
  // under it in software. On any failure the keyring stays sealed and holds
  // nothing. Then moves every version not under the current keyring key
  // there (a store from before the keyring key, an interrupted rotation):
  // a failure of that leaves the keyring unsealed (keyring_key_status says).
  Result<void> unseal();
  // Wipes every unwrapped key; all operations then fail with `sealed`.
  void seal() noexcept;
  [[nodiscard]] bool is_sealed() const noexcept;
  [[nodiscard]] std::size_t key_count() const;
  [[nodiscard]] std::size_t version_count() const;

  // Idempotent upsert: creates the key with version 1, or returns the existing
  // key unchanged with existed = true (options of an existing key are ignored).
  struct Created {
    KeyInfo info;
    bool existed;
  };
  Result<Created> create(std::string_view name, const CreateOptions& options);
  Result<KeyInfo> read(std::string_view name) const;
  // Whether the key exists (sealed: an error), without copying its versions.
  Result<bool> contains(std::string_view name) const;
  Result<std::vector<std::string>> list() const;
  // Adds version latest+1; durable in the store before it returns.
  Result<KeyInfo> rotate(std::string_view name);
  // Automatic rotation (auto_rotate_period), as Vault's rotateIfRequired: a
  // key is due once now is after its latest version's creation time plus the
  // period. due_for_rotation lists the due keys from memory (cheap);
  // rotate_if_due rotates one if it is still due when checked again under
  // the writer lock, after re-reading a shared store: nullopt when it is not
  // (another host rotated it first, its period changed). Several hosts
  // sharing one store thus add one version per period between them.
  Result<std::vector<std::string>> due_for_rotation() const;
  Result<std::optional<KeyInfo>> rotate_if_due(std::string_view name);
  Result<KeyInfo> configure(std::string_view name, const ConfigUpdate& update);
  // deletion_not_allowed unless config.deletion_allowed.
  Result<void> remove(std::string_view name);

  // For a store shared by several hosts (etcd): re-reads one key from the
  // store and publishes what it holds now — new versions unwrapped (the ones
  // already held are kept when their wrapped form is unchanged), its config,
  // or its removal. Blocks (store, root of trust). A key whose new versions
  // the root cannot unwrap is left as it was (the error says why).
  Result<void> refresh(std::string_view name);
  // The same for every key (after the store lost track of changes, e.g. an
  // etcd compaction): keys gone from the store are dropped.
  Result<void> reload();
  // A new keyring key (one root wrap), every version rewrapped under it in
  // software, the old one retired. Each store write is atomic and every
  // state between them unseals (a crash resumes at the next unseal).
  Result<KeyringKeyStatus> rotate_keyring_key();
  Result<KeyringKeyStatus> keyring_key_status() const;
  // Crash tests: called after each durable step of a keyring-key change
  // ("keyring-key-added", "keyring-rewrapped-<batch>", "keyring-key-retired-<id>").
  void set_step_observer(std::function<void(std::string_view)> observer);

  // The latest version held in memory (not_found if the key is not held).
  Result<std::uint32_t> latest_version(std::string_view name) const;

  Result<Encrypted> encrypt(std::string_view name, std::span<const std::uint8_t> plaintext,
                            const CryptoOptions& options) const;
  Result<SecureBytes> decrypt(std::string_view name, std::string_view ciphertext, const CryptoOptions& options) const;
  // Decrypts and re-encrypts under options.key_version (0 = latest allowed).
  Result<Encrypted> rewrap(std::string_view name, std::string_view ciphertext, const CryptoOptions& options) const;
  // bits: 128, 256 or 512.
  Result<DataKey> generate_data_key(std::string_view name, unsigned bits, const CryptoOptions& options) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Key names: 1..128 chars of [A-Za-z0-9_.-], not starting with '.'.
Result<void> validate_key_name(std::string_view name);

}  // namespace rootseal::kms
