// kms::Keyring: named, versioned keys with Vault Transit semantics.
//
// Memory model. The keyring is a map name -> shared_ptr<const Key> behind a
// std::shared_mutex. A Key and its Versions are immutable once published: a
// rotation or config change builds a new Key (sharing the unchanged Version
// objects) and swaps the map entry. The hot path (encrypt/decrypt/rewrap/
// datakey) holds the shared lock only to copy one shared_ptr, then works on
// its snapshot without any lock. A removed or sealed key's material is wiped
// when the last in-flight request drops its snapshot.
//
// Writers (create/rotate/configure/remove/unseal) are serialized by one
// writer mutex, so two rotations can never pick the same version, and the
// store is always written before memory is published: a failed store call
// leaves memory as it was. Slow root-of-trust work for new material (random
// key, wrap, check unwrap) happens before the writer mutex is taken.
// seal() takes only the map lock; a writer that finds the keyring sealed when
// it publishes leaves memory empty (its store write stands and is loaded at
// the next unseal, which needs the writer mutex and so cannot interleave).
//
// Key hierarchy (keyring_key.hpp): root -> keyring key -> each version's KEK.
// Unseal unwraps the store's keyring keys with the root (one operation each,
// normally one) and every version in software. A store from before the
// keyring key, or one whose keyring key was rotated, is settled at unseal
// (and by rotate_keyring_key): every version not under the current keyring
// key is rewrapped under it from the KEK already held, in software, then the
// older keyring keys are retired. Each store write of that is atomic and the
// keyring tolerates every state in between (versions under the root, an old
// or the current keyring key), so a crash at any point resumes at the next
// unseal. New versions are wrapped under the current keyring key, under the
// writer mutex (so a keyring-key rotation cannot retire the key a new version
// was just wrapped with).
//
// No secret ever leaves SecureBytes here; error messages carry key names and
// version numbers only. Library code: no logging.
#include "rootseal/kms/keyring.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <limits>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <system_error>
#include <thread>
#include <utility>

#include "rootseal/kms/ciphertext.hpp"
#include "rootseal/kms/key_wrap.hpp"
#include "rootseal/kms/keyring_key.hpp"

namespace rootseal::kms {
namespace {

constexpr std::int64_t kMinAutoRotatePeriod = 3600;  // Vault: 0 or at least an hour
constexpr std::size_t kMaxUnsealThreads = 16;
constexpr std::size_t kMinVersionsPerThread = 32;

constexpr std::string_view kMissingContext =
    "missing 'context' for key derivation; the key was created using a derived key, which means additional, "
    "per-request information must be included in order to perform operations with the key";

struct Version {
  std::uint32_t number = 0;
  std::int64_t created_unix = 0;
  SecureBytes kek;
  std::unique_ptr<Aead> aead;  // prebuilt for non-derived keys; null for derived ones
  // As stored (not secret), guarded by the writer mutex (the only reader):
  // refresh() keeps a version whose form is unchanged; a settle rewrites both.
  mutable std::vector<std::uint8_t> wrapped;
  mutable std::string tag;  // what wrapped it (KeyVersionRecord::root_kcv)
};
using VersionPtr = std::shared_ptr<const Version>;

struct Key {
  std::string name;
  KeyType type = KeyType::aes256_gcm96;
  bool derived = false;
  std::int64_t created_unix = 0;
  KeyConfig config;
  std::vector<VersionPtr> versions;  // versions[i]->number == i + 1

  [[nodiscard]] std::uint32_t latest() const noexcept { return static_cast<std::uint32_t>(versions.size()); }
};
using KeyPtr = std::shared_ptr<const Key>;

KeyInfo info_of(const Key& key) {
  KeyInfo info;
  info.name = key.name;
  info.type = key.type;
  info.derived = key.derived;
  info.config = key.config;
  info.latest_version = key.latest();
  info.min_available_version = 0;  // Vault reports 0 while no version has been trimmed; none ever is
  for (const auto& v : key.versions) info.versions.emplace(v->number, v->created_unix);
  return info;
}

// Vault's rotateIfRequired: a key with an auto_rotate_period is due once
// `now` is after its latest version's creation time plus the period.
bool due_for_rotation_at(const Key& key, std::int64_t now) noexcept {
  const std::int64_t period = key.config.auto_rotate_period_s;
  if (period <= 0 || key.versions.empty() || key.latest() >= kMaxKeyVersion) return false;
  // Unsigned difference of created < now: exact, whatever a hand-edited store holds (no signed overflow).
  const std::int64_t created = key.versions.back()->created_unix;
  return created<now&& static_cast<std::uint64_t>(now) -
                 static_cast<std::uint64_t>(created)> static_cast<std::uint64_t>(period);
}

std::string in_quotes(std::string_view name) {
  std::string s = "'";
  s += name;
  s += '\'';
  return s;
}

Result<void> check_auto_rotate_period(std::int64_t seconds) {
  if (seconds != 0 && (seconds < kMinAutoRotatePeriod)) {
    return fail(Errc::invalid_argument, "auto rotate period must be 0 to disable or at least an hour");
  }
  return {};
}

// Fresh key material for a new version. wrap_material wraps it under the
// current keyring key (with the writer mutex held) and checks that it
// unwraps to the same bytes before anything is stored (a version that cannot
// be unwrapped later would be lost data for everyone who encrypted with it).
struct NewMaterial {
  SecureBytes kek;
  std::unique_ptr<Aead> aead;
  std::vector<std::uint8_t> wrapped;
  std::string kcv;  // the wrapping tag
};

Result<NewMaterial> new_material(KeyType type, bool derived) {
  NewMaterial m;
  const std::size_t size = key_size(type);
  if (size == 0) return fail(Errc::invalid_argument, "unknown key type");
  m.kek = SecureBytes::random(size);
  if (!derived) ROOTSEAL_TRY_ASSIGN(m.aead, make_aead(type, m.kek));
  return m;
}

Result<void> wrap_material(const KeyHierarchy& h, NewMaterial& m) {
  KeyHierarchy::Wrapped w;
  ROOTSEAL_TRY_ASSIGN(w, h.wrap(m.kek));
  KeyVersionRecord probe;
  probe.wrapped_key = w.blob;
  probe.root_kcv = w.tag;
  auto check = h.unwrap(probe);
  if (!check) return fail(check.error().code, "cannot unwrap a key just wrapped: " + check.error().message);
  if (!(*check == m.kek)) return fail(Errc::crypto_failure, "a freshly wrapped key unwrapped to different bytes");
  m.wrapped = std::move(w.blob);
  m.kcv = std::move(w.tag);
  return {};
}

// The AEAD for one request: the version's prebuilt one, or for a derived key
// one keyed with HKDF-SHA256(ikm = KEK, salt = empty, info = context).
struct RequestAead {
  std::unique_ptr<Aead> owned;
  const Aead* aead = nullptr;
};

Result<RequestAead> request_aead(const Key& key, const Version& version, std::span<const std::uint8_t> context) {
  RequestAead r;
  if (!key.derived) {
    // Vault ignores a context sent for a non-derived key; so do we.
    if (!version.aead) return fail(Errc::internal, "key version has no cipher");
    r.aead = version.aead.get();
    return r;
  }
  if (context.empty()) return fail(Errc::invalid_argument, std::string(kMissingContext));
  SecureBytes derived;
  ROOTSEAL_TRY_ASSIGN(derived, hkdf_sha256(version.kek, {}, context, key_size(key.type)));
  ROOTSEAL_TRY_ASSIGN(r.owned, make_aead(key.type, derived));
  r.aead = r.owned.get();
  return r;
}

// The version an encryption uses: the requested one, or the latest for 0.
// Vault's rules (keysutil.Policy.EncryptWithFactory) plus the decryption floor.
Result<std::uint32_t> encryption_version(const Key& key, std::uint32_t requested) {
  const std::uint32_t latest = key.latest();
  const std::uint32_t v = requested == 0 ? latest : requested;
  if (v == 0) return fail(Errc::internal, "key has no versions");
  if (v > latest) {
    return fail(Errc::version_disallowed, "requested version for encryption is higher than the latest key version");
  }
  if (key.config.min_encryption_version > 0 && v < key.config.min_encryption_version) {
    return fail(Errc::version_disallowed,
                "requested version for encryption is less than the minimum encryption key version");
  }
  if (v < key.config.min_decryption_version) {
    return fail(Errc::version_disallowed,
                "requested version for encryption is less than the minimum decryption key version");
  }
  return v;
}

Result<Encrypted> encrypt_with(const Key& key, std::span<const std::uint8_t> plaintext, const CryptoOptions& o) {
  std::uint32_t v = 0;
  ROOTSEAL_TRY_ASSIGN(v, encryption_version(key, o.key_version));
  RequestAead a;
  ROOTSEAL_TRY_ASSIGN(a, request_aead(key, *key.versions[v - 1], o.context));
  std::vector<std::uint8_t> body;
  ROOTSEAL_TRY_ASSIGN(body, a.aead->seal(plaintext, o.aad));
  return Encrypted{format_ciphertext(v, body), v};
}

Result<SecureBytes> decrypt_with(const Key& key, std::string_view ciphertext, const CryptoOptions& o) {
  ParsedCiphertext parsed{};
  ROOTSEAL_TRY_ASSIGN(parsed, parse_ciphertext(ciphertext));
  if (parsed.version > key.latest()) return fail(Errc::invalid_argument, "invalid ciphertext: version is too new");
  if (parsed.version < key.config.min_decryption_version) {
    return fail(Errc::version_disallowed, "ciphertext or signature version is disallowed by policy (too old)");
  }
  RequestAead a;
  ROOTSEAL_TRY_ASSIGN(a, request_aead(key, *key.versions[parsed.version - 1], o.context));
  auto plain = a.aead->open(parsed.body, o.aad);
  if (!plain && plain.error().code == Errc::decryption_failed) {
    return fail(Errc::decryption_failed, "cipher: message authentication failed");
  }
  return plain;
}

std::int64_t system_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// --- unseal steps -------------------------------------------------------------

// One wrapped version to unwrap at unseal.
struct UnsealJob {
  const KeyRecord* key;
  const KeyVersionRecord* version;
};

// The versions to unwrap, in store order; refuses up front what the store
// must not hold (no versions, an unknown type, a gap) and what neither the
// root nor a keyring key of the hierarchy can have wrapped.
Result<std::vector<UnsealJob>> plan_unseal(const std::vector<KeyRecord>& records, const KeyHierarchy& h) {
  std::vector<UnsealJob> jobs;
  for (const auto& k : records) {
    // The keyring indexes versions by number; any StateStore must deliver 1..N.
    if (k.versions.empty()) return fail(Errc::storage_failure, "unseal: key " + in_quotes(k.name) + " has no versions");
    if (key_size(k.type) == 0)
      return fail(Errc::storage_failure, "unseal: key " + in_quotes(k.name) + " has an unknown type");
    for (std::size_t i = 0; i < k.versions.size(); ++i) {
      if (k.versions[i].version != i + 1) {
        return fail(Errc::storage_failure, "unseal: key " + in_quotes(k.name) + " has a gap in its versions");
      }
    }
    for (const auto& v : k.versions) {
      if (!h.knows(v.root_kcv)) {
        const std::string what = keyring_key_tag_id(v.root_kcv)
                                     ? "keyring key " + v.root_kcv + ", which the store does not hold"
                                     : "another root key (kcv " + v.root_kcv + ", root kcv " + h.root_kcv() + ")";
        return fail(Errc::sealed, "unseal: key " + in_quotes(k.name) + " version " + std::to_string(v.version) +
                                      " was wrapped by " + what);
      }
      jobs.push_back({&k, &v});
    }
  }
  return jobs;
}

// The unwrapped material of every job, index for index.
struct Unwrapped {
  std::vector<SecureBytes> keks;
  std::vector<std::unique_ptr<Aead>> aeads;  // null for derived keys
};

// Unwraps every job, in parallel (through an HSM each unwrap is a round
// trip), on up to `parallel` threads. On failure, the error of the first
// failing version in store order, naming its key and version.
class ParallelUnwrap {
 public:
  ParallelUnwrap(const KeyHierarchy& hierarchy, const std::vector<UnsealJob>& jobs)
      : hierarchy_(hierarchy), jobs_(jobs), error_index_(jobs.size()) {
    out_.keks.resize(jobs.size());
    out_.aeads.resize(jobs.size());
  }

  Result<Unwrapped> run(std::size_t parallel) && {
    const std::size_t wanted =
        std::min({std::max<std::size_t>(1, parallel), kMaxUnsealThreads, jobs_.size() / kMinVersionsPerThread + 1});
    {
      std::vector<std::jthread> helpers;
      helpers.reserve(wanted);
      for (std::size_t t = 1; t < wanted; ++t) {
        try {
          helpers.emplace_back([this]() noexcept { work(); });
        } catch (const std::system_error&) {
          break;  // fewer threads; this one still works through the queue
        }
      }
      work();
    }  // joins the helpers
    if (!failed_.load()) return std::move(out_);
    if (!error_) return fail(Errc::internal, "unseal failed");
    const UnsealJob& job = jobs_[error_index_];
    return fail(error_->code, "unseal: key " + in_quotes(job.key->name) + " version " +
                                  std::to_string(job.version->version) + ": " + error_->message);
  }

 private:
  Result<void> unwrap_one(std::size_t i) {
    const UnsealJob& job = jobs_[i];
    SecureBytes kek;
    ROOTSEAL_TRY_ASSIGN(kek, hierarchy_.unwrap(*job.version));
    if (kek.size() != key_size(job.key->type)) {
      return fail(Errc::storage_failure, "unwrapped key has the wrong length for its type");
    }
    if (!job.key->derived) ROOTSEAL_TRY_ASSIGN(out_.aeads[i], make_aead(job.key->type, kek));
    out_.keks[i] = std::move(kek);
    return {};
  }

  void record_error(std::size_t i, Error e) {
    std::lock_guard lock(error_mu_);
    if (i < error_index_) {  // report the first failing version in store order
      error_index_ = i;
      error_.emplace(std::move(e));
    }
    failed_.store(true, std::memory_order_relaxed);
  }

  void work() noexcept {
    std::size_t i = jobs_.size();
    try {
      while (!failed_.load(std::memory_order_relaxed)) {
        i = next_.fetch_add(1, std::memory_order_relaxed);
        if (i >= jobs_.size()) return;
        if (auto r = unwrap_one(i); !r) {
          record_error(i, std::move(r).error());
          return;
        }
      }
    } catch (const std::exception&) {
      // Out of (locked) memory: fail this unseal rather than the process.
      try {
        record_error(i, Error(Errc::internal, "out of memory while unwrapping keys"));
      } catch (...) {
        failed_.store(true, std::memory_order_relaxed);
      }
    }
  }

  const KeyHierarchy& hierarchy_;
  const std::vector<UnsealJob>& jobs_;
  Unwrapped out_;
  std::atomic<std::size_t> next_{0};
  std::atomic<bool> failed_{false};
  std::mutex error_mu_;
  std::size_t error_index_;  // jobs_.size() until a version fails
  std::optional<Error> error_;
};

// An in-memory key with the fields of `record` and no versions yet.
std::shared_ptr<Key> key_of(const KeyRecord& record) {
  auto key = std::make_shared<Key>();
  key->name = record.name;
  key->type = record.type;
  key->derived = record.derived;
  key->created_unix = record.created_unix;
  key->config = record.config;
  key->versions.reserve(record.versions.size());
  return key;
}

// The in-memory keys of `records`, taking the unwrapped material (in store order).
std::map<std::string, KeyPtr, std::less<>> build_keys(const std::vector<KeyRecord>& records, Unwrapped& material) {
  std::map<std::string, KeyPtr, std::less<>> loaded;
  std::size_t i = 0;
  for (const auto& k : records) {
    auto key = key_of(k);
    for (const auto& v : k.versions) {
      auto ver = std::make_shared<Version>();
      ver->number = v.version;
      ver->created_unix = v.created_unix;
      ver->kek = std::move(material.keks[i]);
      ver->aead = std::move(material.aeads[i]);
      ver->wrapped = v.wrapped_key;
      ver->tag = v.root_kcv;
      ++i;
      key->versions.push_back(std::move(ver));
    }
    loaded.emplace(k.name, std::move(key));
  }
  return loaded;
}

// The in-memory key for `record`: the versions of `current` whose wrapped
// form is unchanged are kept as they are, the others unwrapped through the
// hierarchy (refresh and reload: another host wrote the store).
Result<KeyPtr> rebuild_key(const KeyHierarchy& h, const KeyRecord& record, const Key* current) {
  ROOTSEAL_TRY(plan_unseal(std::vector<KeyRecord>{record}, h));
  const bool same_kind = current != nullptr && current->type == record.type && current->derived == record.derived;
  auto key = key_of(record);
  for (const auto& v : record.versions) {
    const std::size_t i = v.version - 1;
    if (same_kind && i < current->versions.size() && current->versions[i]->wrapped == v.wrapped_key) {
      key->versions.push_back(current->versions[i]);
      continue;
    }
    auto kek = h.unwrap(v);
    if (!kek) {
      return fail(kek.error().code, "key " + in_quotes(record.name) + " version " + std::to_string(v.version) + ": " +
                                        kek.error().message);
    }
    if (kek->size() != key_size(record.type)) {
      return fail(Errc::storage_failure, "key " + in_quotes(record.name) + " version " + std::to_string(v.version) +
                                             ": unwrapped key has the wrong length for its type");
    }
    auto ver = std::make_shared<Version>();
    ver->number = v.version;
    ver->created_unix = v.created_unix;
    ver->wrapped = v.wrapped_key;
    ver->tag = v.root_kcv;
    if (!record.derived) ROOTSEAL_TRY_ASSIGN(ver->aead, make_aead(record.type, *kek));
    ver->kek = std::move(*kek);
    key->versions.push_back(std::move(ver));
  }
  return KeyPtr(std::move(key));
}

// The config `update` makes of `current` on a key whose latest version is
// `latest`: field by field as Vault's transit path_config does, then the
// cross-check.
Result<KeyConfig> updated_config(const KeyConfig& current, std::uint32_t latest, const ConfigUpdate& update) {
  KeyConfig c = current;

  if (update.min_decryption_version) {
    std::uint32_t v = *update.min_decryption_version;
    if (v == 0) v = 1;  // Vault: "transit key numbering starts at 1; forcing minimum to 1"
    if (v != c.min_decryption_version) {
      if (v > latest) {
        return fail(Errc::invalid_argument, "cannot set min decryption version of " + std::to_string(v) +
                                                ", latest key version is " + std::to_string(latest));
      }
      c.min_decryption_version = v;
    }
  }
  if (update.min_encryption_version) {
    const std::uint32_t v = *update.min_encryption_version;
    if (v != c.min_encryption_version) {
      if (v > latest) {
        return fail(Errc::invalid_argument, "cannot set min encryption version of " + std::to_string(v) +
                                                ", latest key version is " + std::to_string(latest));
      }
      c.min_encryption_version = v;
    }
  }
  if (c.min_encryption_version > 0 && c.min_encryption_version < c.min_decryption_version) {
    return fail(Errc::invalid_argument, "cannot set min encryption/decryption values; min encryption version of " +
                                            std::to_string(c.min_encryption_version) +
                                            " must be greater than or equal to min decryption version of " +
                                            std::to_string(c.min_decryption_version));
  }
  if (update.deletion_allowed) c.deletion_allowed = *update.deletion_allowed;
  if (update.auto_rotate_period_s) {
    ROOTSEAL_TRY(check_auto_rotate_period(*update.auto_rotate_period_s));
    c.auto_rotate_period_s = *update.auto_rotate_period_s;
  }

  return c;
}

constexpr int kMaxStoreAttempts = 64;

// Before the next attempt at a write another host won: a random pause that
// grows with the attempts (up to 8 ms), so two hosts writing one key in a
// loop do not keep colliding until one runs out of attempts.
void back_off(int attempt) {
  thread_local std::minstd_rand rng{std::random_device{}()};
  const int ceiling_us = 250 * std::min(attempt, 32);
  std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, ceiling_us)(rng)));
}

}  // namespace

struct Keyring::State {
  State(StateStore& s, RootOfTrust& r, Clock c) : store(s), root(r), clock(std::move(c)) {
    if (!clock) clock = system_now;
  }

  StateStore& store;
  RootOfTrust& root;
  Clock clock;

  // Serializes writers (create, rotate, configure, remove, unseal).
  std::mutex write_mu;
  // Guards `sealed`, `keys` and `hierarchy`; held only to read or swap
  // pointers. `hierarchy` is replaced only with the writer mutex held.
  mutable std::shared_mutex mu;
  bool sealed = true;
  std::map<std::string, KeyPtr, std::less<>> keys;
  std::shared_ptr<const KeyHierarchy> hierarchy;
  // How the last settle ended (written with the writer mutex and `mu` held).
  std::size_t pending_versions = 0;
  std::optional<Error> settle_error;
  std::function<void(std::string_view)> observer;

  void step(std::string_view point) const {
    if (observer) observer(point);
  }

  [[nodiscard]] std::shared_ptr<const KeyHierarchy> held_hierarchy() const {
    std::shared_lock lock(mu);
    return hierarchy;
  }
  // The same, sealed when there is none (sealed meanwhile).
  Result<std::shared_ptr<const KeyHierarchy>> hierarchy_in_use() const {
    auto h = held_hierarchy();
    if (!h) return fail(Errc::sealed, "keyring is sealed");
    return h;
  }
  Result<void> wrap_new(NewMaterial& m) const {
    std::shared_ptr<const KeyHierarchy> h;
    ROOTSEAL_TRY_ASSIGN(h, hierarchy_in_use());
    return wrap_material(*h, m);
  }

  // The store's keyring keys, opened (keys already held are reused); with
  // `make_first`, a store without one gets keyring key 1 (another host of a
  // shared store may make it first: then theirs is used). Writer mutex held.
  Result<std::shared_ptr<const KeyHierarchy>> open_hierarchy(std::string_view kcv, bool make_first) {
    const auto held = held_hierarchy();
    for (int attempt = 0; attempt < 2; ++attempt) {
      std::vector<KeyringKeyRecord> records;
      ROOTSEAL_TRY_ASSIGN(records, store.keyring_keys());
      if (records.empty() && make_first) {
        NewKeyringKey made;
        ROOTSEAL_TRY_ASSIGN(made, new_keyring_key(root, 1, clock()));
        auto added = store.add_keyring_key(made.record);
        if (!added && added.error().code == Errc::already_exists) continue;  // another host's is read next
        ROOTSEAL_TRY(added);
        step("keyring-key-added");
        KeyHierarchy none;
        ROOTSEAL_TRY_ASSIGN(none, KeyHierarchy::open(root, kcv, {}));
        KeyHierarchy h;
        ROOTSEAL_TRY_ASSIGN(h, none.with(made));
        return std::make_shared<const KeyHierarchy>(std::move(h));
      }
      KeyHierarchy h;
      ROOTSEAL_TRY_ASSIGN(h, KeyHierarchy::open(root, kcv, records, held.get()));
      return std::make_shared<const KeyHierarchy>(std::move(h));
    }
    return fail(Errc::conflict, "the store's first keyring key changed while it was read");
  }

  // Re-reads the store's keyring keys (another host may have rotated the
  // keyring key). Writer mutex held.
  Result<void> reread_hierarchy() {
    std::string kcv;
    ROOTSEAL_TRY_ASSIGN(kcv, root.key_check_value());
    std::shared_ptr<const KeyHierarchy> next;
    ROOTSEAL_TRY_ASSIGN(next, open_hierarchy(kcv, false));
    std::unique_lock lock(mu);
    if (sealed) return fail(Errc::sealed, "keyring is sealed");
    std::swap(hierarchy, next);
    return {};  // the one replaced goes away with `next`, after the lock
  }

  Result<void> settle();

  // A snapshot of the named key. `crypto` picks Vault's message for the
  // encrypt/decrypt family.
  Result<KeyPtr> get(std::string_view name, bool crypto) const {
    {
      std::shared_lock lock(mu);
      if (sealed) return fail(Errc::sealed, "keyring is sealed");
      if (auto it = keys.find(name); it != keys.end()) return it->second;
    }
    if (crypto) return fail(Errc::not_found, "encryption key not found");
    return fail(Errc::not_found, "key " + in_quotes(name) + " not found");
  }

  // Re-reads one key from the store and publishes it, or drops it when the
  // store no longer has it (the writer mutex is held).
  Result<void> refresh_locked(std::string_view name) {
    std::optional<KeyRecord> record;
    ROOTSEAL_TRY_ASSIGN(record, store.find(name));
    KeyPtr current;
    {
      std::shared_lock lock(mu);
      if (sealed) return fail(Errc::sealed, "keyring is sealed");
      if (auto it = keys.find(name); it != keys.end()) current = it->second;
    }
    if (!record) {
      decltype(keys)::node_type removed;
      std::unique_lock lock(mu);
      if (auto it = keys.find(name); it != keys.end()) removed = keys.extract(it);
      return {};  // `removed` is released after the lock (declared before it)
    }
    // A version under a keyring key this host does not hold yet: another
    // host rotated the keyring key; read the store's keyring keys again.
    const auto held = held_hierarchy();
    for (const auto& v : record->versions) {
      if (!held || !held->knows(v.root_kcv)) {
        ROOTSEAL_TRY(reread_hierarchy());
        break;
      }
    }
    KeyPtr next;
    std::shared_ptr<const KeyHierarchy> h;
    ROOTSEAL_TRY_ASSIGN(h, hierarchy_in_use());
    ROOTSEAL_TRY_ASSIGN(next, rebuild_key(*h, *record, current.get()));
    publish(std::move(next));
    return {};
  }

  // rotate and rotate_if_due (the public functions' comments).
  Result<std::optional<KeyInfo>> rotate(std::string_view name, bool only_if_due);

  // Publishes a new snapshot of a key (the writer mutex is held). Returns the
  // displaced snapshot so it is released outside the lock.
  KeyPtr publish(KeyPtr key) {
    std::unique_lock lock(mu);
    if (sealed) return key;  // sealed meanwhile: memory stays empty
    auto& slot = keys[key->name];
    std::swap(slot, key);
    return key;
  }
};

Result<void> validate_key_name(std::string_view name) {
  constexpr std::size_t kMaxName = 128;
  auto bad = [] {
    return fail(Errc::invalid_argument,
                "invalid key name: 1 to 128 characters of A-Z a-z 0-9 '_' '.' '-', not starting with '.'");
  };
  if (name.empty() || name.size() > kMaxName || name.front() == '.') return bad();
  for (char c : name) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    if (!ok) return bad();
  }
  return {};
}

Keyring::Keyring(StateStore& store, RootOfTrust& root, Clock clock)
    : state_(std::make_unique<State>(store, root, std::move(clock))) {}

Keyring::~Keyring() = default;

// --- seal state -------------------------------------------------------------

Result<void> Keyring::unseal() {
  State& s = *state_;
  std::lock_guard writer(s.write_mu);
  if (!is_sealed()) return {};

  ROOTSEAL_TRY(s.root.probe());
  std::string kcv;
  ROOTSEAL_TRY_ASSIGN(kcv, s.root.key_check_value());
  ROOTSEAL_TRY(s.store.check_root(kcv));
  std::shared_ptr<const KeyHierarchy> hierarchy;
  ROOTSEAL_TRY_ASSIGN(hierarchy, s.open_hierarchy(kcv, true));
  std::vector<KeyRecord> records;
  ROOTSEAL_TRY_ASSIGN(records, s.store.load_all());
  auto jobs = plan_unseal(records, *hierarchy);
  if (!jobs && s.store.shared()) {
    // Another host may have rotated the keyring key between the two reads.
    ROOTSEAL_TRY_ASSIGN(hierarchy, s.open_hierarchy(kcv, true));
    ROOTSEAL_TRY_ASSIGN(records, s.store.load_all());
    jobs = plan_unseal(records, *hierarchy);
  }
  if (!jobs) return std::unexpected(std::move(jobs).error());
  // Root operations only for versions from before the keyring key.
  const bool through_root =
      std::any_of(jobs->begin(), jobs->end(), [&](const UnsealJob& j) { return j.version->root_kcv == kcv; });
  const std::size_t parallel =
      through_root ? s.root.unwrap_parallelism() : std::max<std::size_t>(1, std::thread::hardware_concurrency());
  Unwrapped material;
  ROOTSEAL_TRY_ASSIGN(material, ParallelUnwrap(*hierarchy, *jobs).run(parallel));

  auto loaded = build_keys(records, material);
  {
    std::unique_lock lock(s.mu);
    s.keys.swap(loaded);
    s.hierarchy = std::move(hierarchy);
    s.sealed = false;
  }
  loaded.clear();  // the old, empty map, outside the lock
  // Versions not under the current keyring key move there now; a failure
  // leaves the keyring unsealed and working (keyring_key_status reports it,
  // the next unseal or rotate_keyring_key carries on).
  (void)s.settle();
  return {};
}

void Keyring::seal() noexcept {
  std::map<std::string, KeyPtr, std::less<>> old;
  std::shared_ptr<const KeyHierarchy> hierarchy;
  {
    std::unique_lock lock(state_->mu);
    old.swap(state_->keys);
    hierarchy.swap(state_->hierarchy);
    state_->sealed = true;
  }
  // `old` is destroyed here, outside the lock: every KEK whose last reference
  // this was is zeroized now, the rest when their in-flight request ends.
}

bool Keyring::is_sealed() const noexcept {
  std::shared_lock lock(state_->mu);
  return state_->sealed;
}

std::size_t Keyring::key_count() const {
  std::shared_lock lock(state_->mu);
  return state_->keys.size();
}

std::size_t Keyring::version_count() const {
  std::shared_lock lock(state_->mu);
  std::size_t n = 0;
  for (const auto& [name, key] : state_->keys) n += key->versions.size();
  return n;
}

// --- key management ---------------------------------------------------------

Result<Keyring::Created> Keyring::create(std::string_view name, const CreateOptions& options) {
  State& s = *state_;
  ROOTSEAL_TRY(validate_key_name(name));
  if (options.exportable) return fail(Errc::invalid_argument, "rootseal never exports keys (exportable must be false)");
  if (key_size(options.type) == 0) return fail(Errc::invalid_argument, "unknown key type");
  ROOTSEAL_TRY(check_auto_rotate_period(options.auto_rotate_period_s));

  auto existing = s.get(name, false);
  if (existing) return Created{info_of(**existing), true};
  if (existing.error().code != Errc::not_found) return std::unexpected(std::move(existing).error());

  NewMaterial m;
  ROOTSEAL_TRY_ASSIGN(m, new_material(options.type, options.derived));

  std::lock_guard writer(s.write_mu);
  existing = s.get(name, false);  // created while we were making the key?
  if (existing) return Created{info_of(**existing), true};
  if (existing.error().code != Errc::not_found) return std::unexpected(std::move(existing).error());
  ROOTSEAL_TRY(s.wrap_new(m));

  const std::int64_t now = s.clock();
  KeyRecord record;
  record.name = std::string(name);
  record.type = options.type;
  record.derived = options.derived;
  record.created_unix = now;
  record.config.auto_rotate_period_s = options.auto_rotate_period_s;
  record.versions.push_back(KeyVersionRecord{1, now, m.wrapped, m.kcv});
  auto stored = s.store.create_key(record);
  if (!stored && s.store.shared() && stored.error().code == Errc::conflict) {
    // The keyring key it was wrapped with was retired by another host: wrap
    // it again under the store's current one.
    ROOTSEAL_TRY(s.reread_hierarchy());
    ROOTSEAL_TRY(s.wrap_new(m));
    record.versions.front().wrapped_key = m.wrapped;
    record.versions.front().root_kcv = m.kcv;
    stored = s.store.create_key(record);
  }
  if (!stored) {
    // Another host of a shared store created it first: take theirs (Vault's upsert).
    if (!s.store.shared() || stored.error().code != Errc::already_exists) {
      return std::unexpected(std::move(stored).error());
    }
    ROOTSEAL_TRY(s.refresh_locked(name));
    existing = s.get(name, false);
    if (!existing) return std::unexpected(std::move(stored).error());
    return Created{info_of(**existing), true};
  }

  auto key = std::make_shared<Key>();
  key->name = record.name;
  key->type = record.type;
  key->derived = record.derived;
  key->created_unix = now;
  key->config = record.config;
  auto version = std::make_shared<Version>();
  version->number = 1;
  version->created_unix = now;
  version->wrapped = record.versions.front().wrapped_key;
  version->tag = record.versions.front().root_kcv;
  version->kek = std::move(m.kek);
  version->aead = std::move(m.aead);
  key->versions.push_back(std::move(version));
  KeyInfo info = info_of(*key);
  s.publish(std::move(key));
  return Created{std::move(info), false};
}

Result<KeyInfo> Keyring::read(std::string_view name) const {
  ROOTSEAL_TRY(validate_key_name(name));
  KeyPtr key;
  ROOTSEAL_TRY_ASSIGN(key, state_->get(name, false));
  return info_of(*key);
}

Result<bool> Keyring::contains(std::string_view name) const {
  std::shared_lock lock(state_->mu);
  if (state_->sealed) return fail(Errc::sealed, "keyring is sealed");
  return state_->keys.find(name) != state_->keys.end();
}

Result<std::vector<std::string>> Keyring::list() const {
  std::shared_lock lock(state_->mu);
  if (state_->sealed) return fail(Errc::sealed, "keyring is sealed");
  std::vector<std::string> names;
  names.reserve(state_->keys.size());
  for (const auto& [name, key] : state_->keys) names.push_back(name);
  return names;
}

Result<KeyInfo> Keyring::rotate(std::string_view name) {
  std::optional<KeyInfo> info;
  ROOTSEAL_TRY_ASSIGN(info, state_->rotate(name, false));
  if (!info) return fail(Errc::internal, "rotate: the rotation reported no key");  // only rotate(_, only_if_due) skips
  return std::move(*info);
}

Result<std::optional<KeyInfo>> Keyring::rotate_if_due(std::string_view name) { return state_->rotate(name, true); }

Result<std::vector<std::string>> Keyring::due_for_rotation() const {
  const std::int64_t now = state_->clock();
  std::shared_lock lock(state_->mu);
  if (state_->sealed) return fail(Errc::sealed, "keyring is sealed");
  std::vector<std::string> out;
  for (const auto& [name, key] : state_->keys) {
    if (due_for_rotation_at(*key, now)) out.push_back(name);
  }
  return out;
}

Result<std::optional<KeyInfo>> Keyring::State::rotate(std::string_view name, bool only_if_due) {
  ROOTSEAL_TRY(validate_key_name(name));
  KeyPtr current;
  ROOTSEAL_TRY_ASSIGN(current, get(name, false));
  if (current->latest() >= kMaxKeyVersion) return fail(Errc::invalid_argument, "key has reached its maximum version");
  if (only_if_due && !due_for_rotation_at(*current, clock())) return std::optional<KeyInfo>();

  NewMaterial m;
  ROOTSEAL_TRY_ASSIGN(m, new_material(current->type, current->derived));

  const KeyType type = current->type;
  const bool derived = current->derived;
  std::lock_guard writer(write_mu);
  std::uint32_t number = 0;
  const std::int64_t now = clock();
  // An automatic rotation is checked again against what the store holds now:
  // another host may have rotated the key (or changed its period) meanwhile.
  if (only_if_due && store.shared()) ROOTSEAL_TRY(refresh_locked(name));
  for (int attempt = 1;; ++attempt) {
    ROOTSEAL_TRY_ASSIGN(current, get(name, false));  // it may have changed meanwhile
    if (current->type != type || current->derived != derived) {
      return fail(Errc::conflict, "key " + in_quotes(name) + " was replaced while it was being rotated");
    }
    if (current->latest() >= kMaxKeyVersion) return fail(Errc::invalid_argument, "key has reached its maximum version");
    if (only_if_due && !due_for_rotation_at(*current, now)) return std::optional<KeyInfo>();
    number = current->latest() + 1;
    ROOTSEAL_TRY(wrap_new(m));  // the current keyring key (it may have changed)
    auto stored = store.add_version(name, KeyVersionRecord{number, now, m.wrapped, m.kcv});
    if (stored) break;
    // A shared store: another host committed this version number (or
    // deleted the key). Catch up and take the next number, as Vault
    // serializes two rotations into two versions; an automatic rotation
    // stops there if the other host's version made the key current.
    const Errc code = stored.error().code;
    if (!store.shared() || (code != Errc::conflict && code != Errc::not_found) || attempt >= kMaxStoreAttempts) {
      return std::unexpected(std::move(stored).error());
    }
    back_off(attempt);
    // Another host may also have rotated the keyring key and retired the
    // one this version was wrapped with (the store refuses that: conflict).
    ROOTSEAL_TRY(reread_hierarchy());
    ROOTSEAL_TRY(refresh_locked(name));
  }

  auto next = std::make_shared<Key>(*current);
  auto version = std::make_shared<Version>();
  version->number = number;
  version->created_unix = now;
  version->tag = std::move(m.kcv);
  version->wrapped = std::move(m.wrapped);
  version->kek = std::move(m.kek);
  version->aead = std::move(m.aead);
  next->versions.push_back(std::move(version));
  KeyInfo info = info_of(*next);
  publish(std::move(next));
  return std::optional<KeyInfo>(std::move(info));
}

Result<KeyInfo> Keyring::configure(std::string_view name, const ConfigUpdate& update) {
  State& s = *state_;
  ROOTSEAL_TRY(validate_key_name(name));
  std::lock_guard writer(s.write_mu);
  KeyPtr current;
  KeyConfig c;
  for (int attempt = 1;; ++attempt) {
    if (s.store.shared()) ROOTSEAL_TRY(s.refresh_locked(name));  // another host may have changed it
    ROOTSEAL_TRY_ASSIGN(current, s.get(name, false));
    ROOTSEAL_TRY_ASSIGN(c, updated_config(current->config, current->latest(), update));
    if (c == current->config) return info_of(*current);
    // Written only over the config it was computed from: a change another
    // host made meanwhile is re-read and the update applied to it.
    auto stored = s.store.update_config_if(name, current->config, c);
    if (stored) break;
    if (!s.store.shared() || stored.error().code != Errc::conflict || attempt >= kMaxStoreAttempts) {
      return std::unexpected(std::move(stored).error());
    }
    back_off(attempt);
  }
  auto next = std::make_shared<Key>(*current);
  next->config = c;
  KeyInfo info = info_of(*next);
  s.publish(std::move(next));
  return info;
}

Result<void> Keyring::remove(std::string_view name) {
  State& s = *state_;
  ROOTSEAL_TRY(validate_key_name(name));
  std::lock_guard writer(s.write_mu);
  if (s.store.shared()) ROOTSEAL_TRY(s.refresh_locked(name));  // another host may have allowed it
  KeyPtr current;
  ROOTSEAL_TRY_ASSIGN(current, s.get(name, false));
  if (!current->config.deletion_allowed)
    return fail(Errc::deletion_not_allowed, "deletion is not allowed for this key");
  auto deleted = s.store.delete_key(name);
  if (!deleted && deleted.error().code != Errc::not_found) return deleted;
  decltype(s.keys)::node_type removed;
  {
    std::unique_lock lock(s.mu);
    if (auto it = s.keys.find(name); it != s.keys.end()) removed = s.keys.extract(it);
  }
  return deleted;  // not_found: another host deleted it first; `removed` and `current` are released outside the lock
}

// --- the keyring key ----------------------------------------------------------

// Moves every version held in memory that is not under the current keyring
// key there (software: the KEKs are held), a batch of keys per store write,
// then retires the older keyring keys. Writer mutex held, unsealed.
Result<void> Keyring::State::settle() {
  constexpr std::size_t kKeysPerBatch = 64;  // within one etcd transaction (the store's limit)
  const auto h = held_hierarchy();
  std::map<std::string, KeyPtr, std::less<>> snapshot;
  {
    std::shared_lock lock(mu);
    if (sealed || !h) return fail(Errc::sealed, "keyring is sealed");
    snapshot = keys;
  }
  struct Move {
    const Version* version;
    std::vector<std::uint8_t> wrapped;
  };
  std::vector<StateStore::Rewrapped> batch;
  std::vector<Move> moves;
  std::size_t keys_in_batch = 0;
  std::size_t batches = 0;
  std::size_t pending = 0;
  std::optional<Error> error;
  const std::size_t per_batch = store.shared() ? kKeysPerBatch : std::numeric_limits<std::size_t>::max();
  auto flush = [&]() -> Result<void> {
    if (batch.empty()) return {};
    auto written = store.replace_wrapped(batch, {});
    if (!written) {
      // Another host changed one of these keys meanwhile (a shared store):
      // left for the next settle; anything else is reported.
      pending += batch.size();
      if (written.error().code != Errc::conflict && written.error().code != Errc::not_found) {
        error.emplace(written.error());
      }
    } else {
      for (std::size_t i = 0; i < moves.size(); ++i) {
        moves[i].version->wrapped = std::move(moves[i].wrapped);
        moves[i].version->tag = batch[i].root_kcv;
      }
      step("keyring-rewrapped-" + std::to_string(++batches));
    }
    batch.clear();
    moves.clear();
    keys_in_batch = 0;
    return {};
  };
  for (const auto& [name, key] : snapshot) {
    bool counted = false;
    for (const auto& v : key->versions) {
      if (h->is_current(v->tag)) continue;
      KeyHierarchy::Wrapped w;
      ROOTSEAL_TRY_ASSIGN(w, h->wrap(v->kek));
      if (!counted) {
        if (keys_in_batch == per_batch) ROOTSEAL_TRY(flush());
        ++keys_in_batch;
        counted = true;
      }
      batch.push_back(StateStore::Rewrapped{name, v->number, w.blob, w.tag});
      moves.push_back(Move{v.get(), std::move(w.blob)});
    }
  }
  ROOTSEAL_TRY(flush());
  // Older keyring keys go once nothing is under them; the store refuses
  // (conflict) while a version still is, e.g. one this host does not hold yet.
  if (pending == 0 && !error) {
    const auto records = h->records();
    for (std::size_t i = 0; i + 1 < records.size(); ++i) {
      auto retired = store.retire_keyring_key(records[i].id);
      if (retired) {
        step("keyring-key-retired-" + std::to_string(records[i].id));
      } else if (retired.error().code != Errc::not_found && retired.error().code != Errc::conflict) {
        error.emplace(retired.error());
      }
    }
  }
  {
    std::unique_lock lock(mu);
    pending_versions = pending;
    settle_error = error;
  }
  if (error) return std::unexpected(*error);
  return {};
}

Result<KeyringKeyStatus> Keyring::keyring_key_status() const {
  State& s = *state_;
  std::shared_lock lock(s.mu);  // never waits for a writer's store or root work
  const auto h = s.hierarchy;
  if (!h || s.sealed) return fail(Errc::sealed, "keyring is sealed");
  const auto current = h->current();
  if (!current) return fail(Errc::internal, "no keyring key is held");
  KeyringKeyStatus st;
  st.id = current->id;
  st.kcv = current->kcv;
  st.created_unix = current->created_unix;
  st.keyring_keys = h->records().size();
  st.pending_versions = s.pending_versions;
  if (s.settle_error) st.settle_error = s.settle_error->message;
  return st;
}

Result<KeyringKeyStatus> Keyring::rotate_keyring_key() {
  State& s = *state_;
  {
    std::lock_guard writer(s.write_mu);
    if (is_sealed()) return fail(Errc::sealed, "keyring is sealed");
    // What other hosts of a shared store hold: their versions and keyring keys.
    if (s.store.shared()) {
      ROOTSEAL_TRY(s.reread_hierarchy());
    }
    std::shared_ptr<const KeyHierarchy> h;
    ROOTSEAL_TRY_ASSIGN(h, s.hierarchy_in_use());
    const auto current = h->current();
    if (!current) return fail(Errc::internal, "no keyring key is held");
    if (current->id >= kMaxKeyringKeyId) return fail(Errc::invalid_argument, "the keyring key has reached its last id");
    NewKeyringKey made;
    ROOTSEAL_TRY_ASSIGN(made, new_keyring_key(s.root, current->id + 1, s.clock()));
    auto added = s.store.add_keyring_key(made.record);
    if (!added && added.error().code == Errc::already_exists) {
      return fail(Errc::conflict, "another host rotated the keyring key at the same time; its key is in use");
    }
    ROOTSEAL_TRY(added);
    s.step("keyring-key-added");
    KeyHierarchy next;
    ROOTSEAL_TRY_ASSIGN(next, h->with(made));
    {
      std::unique_lock lock(s.mu);
      s.hierarchy = std::make_shared<const KeyHierarchy>(std::move(next));
    }
  }
  // Every key as the store has it now (a shared store: versions other hosts
  // added under the old keyring key), then moved under the new one.
  if (state_->store.shared()) ROOTSEAL_TRY(reload());
  {
    std::lock_guard writer(s.write_mu);
    ROOTSEAL_TRY(s.settle());
  }
  return keyring_key_status();
}

void Keyring::set_step_observer(std::function<void(std::string_view)> observer) {
  std::lock_guard writer(state_->write_mu);
  state_->observer = std::move(observer);
}

Result<void> Keyring::refresh(std::string_view name) {
  ROOTSEAL_TRY(validate_key_name(name));
  std::lock_guard writer(state_->write_mu);
  return state_->refresh_locked(name);
}

Result<void> Keyring::reload() {
  State& s = *state_;
  std::lock_guard writer(s.write_mu);
  if (is_sealed()) return fail(Errc::sealed, "keyring is sealed");
  std::vector<KeyRecord> records;
  ROOTSEAL_TRY_ASSIGN(records, s.store.load_all());
  ROOTSEAL_TRY(s.reread_hierarchy());  // re-read the keyring keys
  std::shared_ptr<const KeyHierarchy> hierarchy;
  ROOTSEAL_TRY_ASSIGN(hierarchy, s.hierarchy_in_use());
  std::map<std::string, KeyPtr, std::less<>> current;
  {
    std::shared_lock lock(s.mu);
    current = s.keys;
  }
  // Every key the store holds, rebuilt; one that fails keeps its old form
  // and the first such error is returned after the rest are applied.
  std::map<std::string, KeyPtr, std::less<>> next;
  std::optional<Error> first_error;
  for (const auto& record : records) {
    auto it = current.find(record.name);
    auto key = rebuild_key(*hierarchy, record, it == current.end() ? nullptr : it->second.get());
    if (key) {
      next.emplace(record.name, std::move(*key));
    } else {
      if (!first_error) first_error.emplace(std::move(key).error());
      if (it != current.end()) next.emplace(record.name, it->second);
    }
  }
  {
    std::unique_lock lock(s.mu);
    if (!s.sealed) s.keys.swap(next);
  }
  if (first_error) return std::unexpected(std::move(*first_error));
  return {};  // the old map goes away with `next` and `current`, outside the lock
}

Result<std::uint32_t> Keyring::latest_version(std::string_view name) const {
  std::shared_lock lock(state_->mu);
  if (state_->sealed) return fail(Errc::sealed, "keyring is sealed");
  auto it = state_->keys.find(name);
  if (it == state_->keys.end()) return fail(Errc::not_found, "encryption key not found");
  return it->second->latest();
}

// --- cryptographic operations (no store, no root, no writer lock) -----------

Result<Encrypted> Keyring::encrypt(std::string_view name, std::span<const std::uint8_t> plaintext,
                                   const CryptoOptions& options) const {
  ROOTSEAL_TRY(validate_key_name(name));
  KeyPtr key;
  ROOTSEAL_TRY_ASSIGN(key, state_->get(name, true));
  return encrypt_with(*key, plaintext, options);
}

Result<SecureBytes> Keyring::decrypt(std::string_view name, std::string_view ciphertext,
                                     const CryptoOptions& options) const {
  ROOTSEAL_TRY(validate_key_name(name));
  KeyPtr key;
  ROOTSEAL_TRY_ASSIGN(key, state_->get(name, true));
  return decrypt_with(*key, ciphertext, options);
}

Result<Encrypted> Keyring::rewrap(std::string_view name, std::string_view ciphertext,
                                  const CryptoOptions& options) const {
  ROOTSEAL_TRY(validate_key_name(name));
  KeyPtr key;
  ROOTSEAL_TRY_ASSIGN(key, state_->get(name, true));  // one snapshot for both halves
  SecureBytes plaintext;
  ROOTSEAL_TRY_ASSIGN(plaintext, decrypt_with(*key, ciphertext, options));
  return encrypt_with(*key, plaintext.span(), options);
}

Result<DataKey> Keyring::generate_data_key(std::string_view name, unsigned bits, const CryptoOptions& options) const {
  ROOTSEAL_TRY(validate_key_name(name));
  if (bits != 128 && bits != 256 && bits != 512) return fail(Errc::invalid_argument, "invalid bit length");
  KeyPtr key;
  ROOTSEAL_TRY_ASSIGN(key, state_->get(name, true));
  SecureBytes plaintext = SecureBytes::random(bits / 8);
  Encrypted encrypted{};
  ROOTSEAL_TRY_ASSIGN(encrypted, encrypt_with(*key, plaintext.span(), options));
  return DataKey{std::move(plaintext), std::move(encrypted.ciphertext), encrypted.key_version};
}

}  // namespace rootseal::kms
