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
// No secret ever leaves SecureBytes here; error messages carry key names and
// version numbers only. Library code: no logging.
#include "rootseal/kms/keyring.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <system_error>
#include <thread>
#include <utility>

#include "rootseal/kms/ciphertext.hpp"
#include "rootseal/kms/key_wrap.hpp"

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
  std::vector<std::uint8_t> wrapped;  // as stored (not secret): refresh() keeps a version whose form is unchanged
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

// Fresh key material for a new version, wrapped by the root and checked to
// unwrap to the same bytes before anything is stored (a version the root
// cannot unwrap later would be lost data for everyone who encrypted with it).
struct NewMaterial {
  SecureBytes kek;
  std::unique_ptr<Aead> aead;
  std::vector<std::uint8_t> wrapped;
  std::string kcv;
};

Result<NewMaterial> new_material(RootOfTrust& root, KeyType type, bool derived) {
  NewMaterial m;
  const std::size_t size = key_size(type);
  if (size == 0) return fail(Errc::invalid_argument, "unknown key type");
  m.kek = SecureBytes::random(size);
  if (!derived) ROOTSEAL_TRY_ASSIGN(m.aead, make_aead(type, m.kek));
  ROOTSEAL_TRY_ASSIGN(m.kcv, root.key_check_value());
  ROOTSEAL_TRY_ASSIGN(m.wrapped, root.wrap(m.kek));
  auto check = root.unwrap(m.wrapped);
  if (!check) {
    return fail(check.error().code, "root of trust cannot unwrap a key it just wrapped: " + check.error().message);
  }
  if (!(*check == m.kek)) {
    return fail(Errc::crypto_failure, "root of trust unwrapped a freshly wrapped key to different bytes");
  }
  return m;
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
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// --- unseal steps -------------------------------------------------------------

// One wrapped version to unwrap at unseal.
struct UnsealJob {
  const KeyRecord* key;
  const KeyVersionRecord* version;
};

// The versions to unwrap, in store order; refuses up front what the store
// must not hold (no versions, an unknown type, a gap) and what the current
// root cannot have wrapped (another key check value).
Result<std::vector<UnsealJob>> plan_unseal(const std::vector<KeyRecord>& records, std::string_view kcv) {
  std::vector<UnsealJob> jobs;
  for (const auto& k : records) {
    // The keyring indexes versions by number; any StateStore must deliver 1..N.
    if (k.versions.empty()) return fail(Errc::storage_failure, "unseal: key " + in_quotes(k.name) + " has no versions");
    if (key_size(k.type) == 0) return fail(Errc::storage_failure, "unseal: key " + in_quotes(k.name) + " has an unknown type");
    for (std::size_t i = 0; i < k.versions.size(); ++i) {
      if (k.versions[i].version != i + 1) {
        return fail(Errc::storage_failure, "unseal: key " + in_quotes(k.name) + " has a gap in its versions");
      }
    }
    for (const auto& v : k.versions) {
      if (v.root_kcv != kcv) {
        return fail(Errc::sealed, "unseal: key " + in_quotes(k.name) + " version " + std::to_string(v.version) +
                                      " was wrapped by another root key (kcv " + v.root_kcv + ", root kcv " +
                                      std::string(kcv) + ")");
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
  ParallelUnwrap(RootOfTrust& root, const std::vector<UnsealJob>& jobs)
      : root_(root), jobs_(jobs), error_index_(jobs.size()) {
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
    ROOTSEAL_TRY_ASSIGN(kek, root_.unwrap(job.version->wrapped_key));
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

  RootOfTrust& root_;
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
      ++i;
      key->versions.push_back(std::move(ver));
    }
    loaded.emplace(k.name, std::move(key));
  }
  return loaded;
}

// The in-memory key for `record`: the versions of `current` whose wrapped
// form is unchanged are kept as they are, the others unwrapped with the root
// (refresh and reload: another host wrote the store).
Result<KeyPtr> rebuild_key(RootOfTrust& root, const KeyRecord& record, const Key* current, std::string_view kcv) {
  ROOTSEAL_TRY(plan_unseal(std::vector<KeyRecord>{record}, kcv));
  const bool same_kind = current != nullptr && current->type == record.type && current->derived == record.derived;
  auto key = key_of(record);
  for (const auto& v : record.versions) {
    const std::size_t i = v.version - 1;
    if (same_kind && i < current->versions.size() && current->versions[i]->wrapped == v.wrapped_key) {
      key->versions.push_back(current->versions[i]);
      continue;
    }
    auto kek = root.unwrap(v.wrapped_key);
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
    return fail(Errc::invalid_argument,
                "cannot set min encryption/decryption values; min encryption version of " +
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
  // Guards `sealed` and `keys`; held only to read or swap pointers.
  mutable std::shared_mutex mu;
  bool sealed = true;
  std::map<std::string, KeyPtr, std::less<>> keys;

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
    std::string kcv;
    ROOTSEAL_TRY_ASSIGN(kcv, root.key_check_value());
    KeyPtr next;
    ROOTSEAL_TRY_ASSIGN(next, rebuild_key(root, *record, current.get(), kcv));
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
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '.' || c == '-';
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
  std::vector<KeyRecord> records;
  ROOTSEAL_TRY_ASSIGN(records, s.store.load_all());
  std::vector<UnsealJob> jobs;
  ROOTSEAL_TRY_ASSIGN(jobs, plan_unseal(records, kcv));
  Unwrapped material;
  ROOTSEAL_TRY_ASSIGN(material, ParallelUnwrap(s.root, jobs).run(s.root.unwrap_parallelism()));

  auto loaded = build_keys(records, material);
  {
    std::unique_lock lock(s.mu);
    s.keys.swap(loaded);
    s.sealed = false;
  }
  return {};  // `loaded` (the old, empty map) goes away outside the lock
}

void Keyring::seal() noexcept {
  std::map<std::string, KeyPtr, std::less<>> old;
  {
    std::unique_lock lock(state_->mu);
    old.swap(state_->keys);
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
  ROOTSEAL_TRY_ASSIGN(m, new_material(s.root, options.type, options.derived));

  std::lock_guard writer(s.write_mu);
  existing = s.get(name, false);  // created while we were wrapping?
  if (existing) return Created{info_of(**existing), true};
  if (existing.error().code != Errc::not_found) return std::unexpected(std::move(existing).error());

  const std::int64_t now = s.clock();
  KeyRecord record;
  record.name = std::string(name);
  record.type = options.type;
  record.derived = options.derived;
  record.created_unix = now;
  record.config.auto_rotate_period_s = options.auto_rotate_period_s;
  record.versions.push_back(KeyVersionRecord{1, now, std::move(m.wrapped), std::move(m.kcv)});
  if (auto stored = s.store.create_key(record); !stored) {
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
  ROOTSEAL_TRY_ASSIGN(m, new_material(root, current->type, current->derived));

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
    ROOTSEAL_TRY(refresh_locked(name));
  }

  auto next = std::make_shared<Key>(*current);
  auto version = std::make_shared<Version>();
  version->number = number;
  version->created_unix = now;
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
  if (!current->config.deletion_allowed) return fail(Errc::deletion_not_allowed, "deletion is not allowed for this key");
  auto deleted = s.store.delete_key(name);
  if (!deleted && deleted.error().code != Errc::not_found) return deleted;
  decltype(s.keys)::node_type removed;
  {
    std::unique_lock lock(s.mu);
    if (auto it = s.keys.find(name); it != s.keys.end()) removed = s.keys.extract(it);
  }
  return deleted;  // not_found: another host deleted it first; `removed` and `current` are released outside the lock
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
  std::string kcv;
  ROOTSEAL_TRY_ASSIGN(kcv, s.root.key_check_value());
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
    auto key = rebuild_key(s.root, record, it == current.end() ? nullptr : it->second.get(), kcv);
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
