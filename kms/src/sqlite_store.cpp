// kms::StateStore on SQLite 3 (C API).
//
// One connection per store, serialized by the store's own mutex (the
// connection is also opened SQLITE_OPEN_FULLMUTEX, belt and braces). Every
// mutation runs in BEGIN IMMEDIATE ... COMMIT, so a check and the write that
// depends on it (add_version's "exactly latest + 1") cannot interleave with
// another writer, in this process or another. journal_mode=WAL with
// synchronous=FULL: a COMMIT that returned SQLITE_OK is on stable storage.
//
// Files: the database file is created by us with open(O_CREAT|O_NOFOLLOW,
// 0600) before SQLite sees it; SQLite gives its -wal and -shm siblings the
// mode of the database file. Existing files with group/other bits are
// tightened to 0600 on open.
//
// Schema: PRAGMA user_version is the number of migrations applied. kMigrations
// is append-only; each entry runs in a transaction of its own that also bumps
// user_version. A store whose user_version is larger than kMigrations.size()
// was written by a newer binary and is refused.
//
// Error messages name the operation and SQLite's generic text for the result
// code (sqlite3_errstr), never a value from the database or the caller,
// except key names in integrity errors (a key name is metadata, not secret).
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <mutex>
#include <span>
#include <string>
#include <utility>

#include "rootseal/kms/state_store.hpp"
#include "sqlite_image.hpp"

namespace rootseal::kms {
namespace {

// Append only: never edit or reorder an entry that has shipped.
constexpr const char* kMigrations[] = {
    // 1: keys and their versions.
    R"sql(
CREATE TABLE keys (
  name                   TEXT    NOT NULL PRIMARY KEY,
  type                   TEXT    NOT NULL,
  derived                INTEGER NOT NULL CHECK (derived IN (0, 1)),
  created                INTEGER NOT NULL,
  min_decryption_version INTEGER NOT NULL CHECK (min_decryption_version BETWEEN 1 AND 2147483647),
  min_encryption_version INTEGER NOT NULL CHECK (min_encryption_version BETWEEN 0 AND 2147483647),
  deletion_allowed       INTEGER NOT NULL CHECK (deletion_allowed IN (0, 1)),
  auto_rotate_period     INTEGER NOT NULL CHECK (auto_rotate_period >= 0)
) STRICT;
CREATE TABLE key_versions (
  name     TEXT    NOT NULL REFERENCES keys (name) ON DELETE CASCADE,
  version  INTEGER NOT NULL CHECK (version BETWEEN 1 AND 2147483647),
  created  INTEGER NOT NULL,
  wrapped  BLOB    NOT NULL,
  root_kcv TEXT    NOT NULL,
  PRIMARY KEY (name, version)
) STRICT, WITHOUT ROWID;
)sql",
    // 2: the keyring key (keyring_key.hpp); versions name it in root_kcv.
    R"sql(
CREATE TABLE keyring_keys (
  id       INTEGER NOT NULL PRIMARY KEY CHECK (id BETWEEN 1 AND 2147483647),
  created  INTEGER NOT NULL,
  wrapped  BLOB    NOT NULL,
  root_kcv TEXT    NOT NULL,
  kcv      TEXT    NOT NULL
) STRICT;
)sql",
};
constexpr int kSchemaVersion = static_cast<int>(std::size(kMigrations));

constexpr int kBusyTimeoutMs = 5000;
constexpr std::int64_t kMaxVersion = 0x7fffffff;

Error sqlite_error(std::string_view what, int rc) {
  std::string message = "state store: ";
  message += what;
  message += ": ";
  message += ::sqlite3_errstr(rc);
  return Error(Errc::storage_failure, std::move(message));
}

std::unexpected<Error> storage_fail(std::string_view what, int rc) {
  return std::unexpected<Error>(sqlite_error(what, rc));
}

std::unexpected<Error> corrupt(std::string what) {
  return std::unexpected<Error>(std::in_place, Errc::storage_failure,
                                "state store is inconsistent: " + std::move(what));
}

// A prepared statement, finalized on destruction.
class Stmt {
 public:
  Stmt() = default;
  explicit Stmt(sqlite3_stmt* s) noexcept : s_(s) {}
  Stmt(Stmt&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Stmt& operator=(Stmt&& o) noexcept {
    if (this != &o) {
      ::sqlite3_finalize(s_);
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() { ::sqlite3_finalize(s_); }
  [[nodiscard]] sqlite3_stmt* get() const noexcept { return s_; }

 private:
  sqlite3_stmt* s_ = nullptr;
};

// Borrow of a cached statement: bindings are cleared and the statement reset
// when the borrow ends, so no caller's buffer stays bound (SQLITE_STATIC).
class Use {
 public:
  explicit Use(const Stmt& s) noexcept : s_(s.get()) {}
  ~Use() {
    ::sqlite3_reset(s_);
    ::sqlite3_clear_bindings(s_);
  }
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;
  [[nodiscard]] sqlite3_stmt* get() const noexcept { return s_; }

 private:
  sqlite3_stmt* s_;
};

int bind_text(sqlite3_stmt* s, int i, std::string_view v) {
  if (v.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) return SQLITE_TOOBIG;
  // A non-null pointer even for "" so SQLite binds '' rather than NULL.
  return ::sqlite3_bind_text(s, i, v.empty() ? "" : v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}

int bind_blob(sqlite3_stmt* s, int i, std::span<const std::uint8_t> v) {
  if (v.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) return SQLITE_TOOBIG;
  static const std::uint8_t kEmpty = 0;
  return ::sqlite3_bind_blob(s, i, v.empty() ? &kEmpty : v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}

std::string_view column_text(sqlite3_stmt* s, int i) {
  const auto* p = ::sqlite3_column_text(s, i);
  const int n = ::sqlite3_column_bytes(s, i);
  if (p == nullptr || n <= 0) return {};
  return {reinterpret_cast<const char*>(p), static_cast<std::size_t>(n)};
}

std::vector<std::uint8_t> column_blob(sqlite3_stmt* s, int i) {
  const auto* p = static_cast<const std::uint8_t*>(::sqlite3_column_blob(s, i));
  const int n = ::sqlite3_column_bytes(s, i);
  if (p == nullptr || n <= 0) return {};
  return {p, p + n};
}

// Ensures `path` exists as a regular file (not a symlink) with mode 0600.
// Existing files are tightened, never loosened.
Result<void> prepare_file(const std::filesystem::path& path, bool create) {
  const int flags = O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | (create ? O_CREAT : 0);
  const int fd = ::open(path.c_str(), flags, 0600);
  if (fd < 0) {
    if (!create && errno == ENOENT) return {};
    return fail(Errc::storage_failure,
                std::string("state store: cannot open ") + path.filename().string() + ": " + errno_text(errno));
  }
  struct stat st{};
  Result<void> result;
  if (::fstat(fd, &st) != 0) {
    result = fail(Errc::storage_failure, std::string("state store: fstat failed: ") + errno_text(errno));
  } else if (!S_ISREG(st.st_mode)) {
    result = fail(Errc::storage_failure, "state store: " + path.filename().string() + " is not a regular file");
  } else if ((st.st_mode & 0077) != 0 && ::fchmod(fd, 0600) != 0) {
    result = fail(Errc::storage_failure, std::string("state store: fchmod failed: ") + errno_text(errno));
  }
  ::close(fd);
  return result;
}

class SqliteStore final : public StateStore {
 public:
  static Result<std::unique_ptr<StateStore>> open(const std::filesystem::path& path);
  static Result<std::unique_ptr<StateStore>> open_image(std::span<const std::uint8_t> image);
  static Result<std::vector<std::uint8_t>> image_of(const std::vector<KeyRecord>& keys,
                                                    const std::vector<KeyringKeyRecord>& keyring_keys);
  ~SqliteStore() override {
    // Statements first: a connection with unfinalized statements will not close.
    stmts_ = {};
    ::sqlite3_close_v2(db_);
  }
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  Result<std::vector<KeyRecord>> load_all() override;
  Result<std::optional<KeyRecord>> find(std::string_view name) override;
  Result<std::vector<std::string>> list_names() override;
  Result<void> create_key(const KeyRecord& key) override;
  Result<void> add_version(std::string_view name, const KeyVersionRecord& version) override;
  Result<void> update_config(std::string_view name, const KeyConfig& config) override;
  Result<void> delete_key(std::string_view name) override;
  Result<void> replace_wrapped(const std::vector<Rewrapped>& versions,
                               const std::vector<KeyringKeyRecord>& keyring_keys) override;
  Result<std::vector<KeyringKeyRecord>> keyring_keys() override;
  Result<void> add_keyring_key(const KeyringKeyRecord& key) override;
  Result<void> retire_keyring_key(std::uint32_t id) override;
  [[nodiscard]] int schema_version() const noexcept override { return schema_version_; }

 private:
  explicit SqliteStore(sqlite3* db) : db_(db) {}

  // Statement cache; indices into stmts_.
  enum S : std::size_t {
    kBegin,
    kBeginRead,
    kCommit,
    kRollback,
    kLoadAll,
    kFindKey,
    kFindVersions,
    kListNames,
    kInsertKey,
    kInsertVersion,
    kKeyExists,
    kLatestVersion,
    kUpdateConfig,
    kDeleteKey,
    kReplaceWrapped,
    kKeyringKeys,
    kInsertKeyringKey,
    kReplaceKeyringKey,
    kKeyringKeyUsed,
    kDeleteKeyringKey,
    kStmtCount
  };

  Result<void> exec(const char* sql, std::string_view what);
  Result<void> configure_connection();
  Result<void> migrate();
  Result<void> prepare_all();
  Result<void> step_done(sqlite3_stmt* s, std::string_view what);
  Result<std::uint32_t> latest_version(std::string_view name, bool& exists);
  Result<std::optional<KeyRecord>> find_locked(std::string_view name);

  // RAII read transaction (a consistent snapshot across several statements).
  class ReadTxn {
   public:
    explicit ReadTxn(SqliteStore& s) : s_(s) {}
    ~ReadTxn() {
      if (open_) {
        Use u(s_.stmts_[kCommit]);
        (void)::sqlite3_step(u.get());
      }
    }
    ReadTxn(const ReadTxn&) = delete;
    ReadTxn& operator=(const ReadTxn&) = delete;
    Result<void> begin() {
      Use u(s_.stmts_[kBeginRead]);
      ROOTSEAL_TRY(s_.step_done(u.get(), "begin read"));
      open_ = true;
      return {};
    }

   private:
    SqliteStore& s_;
    bool open_ = false;
  };

  // RAII write transaction: rolled back unless commit() succeeded.
  class Txn {
   public:
    explicit Txn(SqliteStore& s) : s_(s) {}
    ~Txn() {
      if (open_) {
        Use u(s_.stmts_[kRollback]);
        (void)::sqlite3_step(u.get());
      }
    }
    Txn(const Txn&) = delete;
    Txn& operator=(const Txn&) = delete;
    Result<void> begin() {
      Use u(s_.stmts_[kBegin]);
      ROOTSEAL_TRY(s_.step_done(u.get(), "begin transaction"));
      open_ = true;
      return {};
    }
    Result<void> commit() {
      Use u(s_.stmts_[kCommit]);
      ROOTSEAL_TRY(s_.step_done(u.get(), "commit"));
      open_ = false;
      return {};
    }

   private:
    SqliteStore& s_;
    bool open_ = false;
  };

  sqlite3* db_;
  std::mutex mu_;
  std::array<Stmt, kStmtCount> stmts_{};
  int schema_version_ = 0;
};

Result<void> SqliteStore::exec(const char* sql, std::string_view what) {
  const int rc = ::sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return storage_fail(what, rc);
  return {};
}

Result<void> SqliteStore::step_done(sqlite3_stmt* s, std::string_view what) {
  const int rc = ::sqlite3_step(s);
  if (rc != SQLITE_DONE) return storage_fail(what, rc);
  return {};
}

// Reads one integer from a pragma query.
Result<std::int64_t> pragma_int(sqlite3* db, const char* sql) {
  sqlite3_stmt* raw = nullptr;
  int rc = ::sqlite3_prepare_v2(db, sql, -1, &raw, nullptr);
  Stmt s(raw);
  if (rc != SQLITE_OK) return storage_fail("pragma", rc);
  rc = ::sqlite3_step(s.get());
  if (rc != SQLITE_ROW) return storage_fail("pragma", rc == SQLITE_DONE ? SQLITE_ERROR : rc);
  return ::sqlite3_column_int64(s.get(), 0);
}

// Hardening: no extension loading, no writes to sqlite_schema or other
// corruption-prone tricks, no SQL functions run from schema content.
void harden_connection(sqlite3* db) {
  ::sqlite3_extended_result_codes(db, 1);
  int ignored = 0;
  (void)::sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, &ignored);
  (void)::sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, &ignored);
  (void)::sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, &ignored);
}

Result<void> SqliteStore::configure_connection() {
  harden_connection(db_);
  const int rc = ::sqlite3_busy_timeout(db_, kBusyTimeoutMs);
  if (rc != SQLITE_OK) return storage_fail("busy_timeout", rc);

  {
    sqlite3_stmt* raw = nullptr;
    int prc = ::sqlite3_prepare_v2(db_, "PRAGMA journal_mode=WAL", -1, &raw, nullptr);
    Stmt s(raw);
    if (prc != SQLITE_OK) return storage_fail("set journal_mode", prc);
    prc = ::sqlite3_step(s.get());
    if (prc != SQLITE_ROW) return storage_fail("set journal_mode", prc == SQLITE_DONE ? SQLITE_ERROR : prc);
    if (column_text(s.get(), 0) != "wal") {
      return fail(Errc::storage_failure, "state store: the file system does not support WAL journal mode");
    }
  }
  ROOTSEAL_TRY(exec("PRAGMA synchronous=FULL", "set synchronous"));
  ROOTSEAL_TRY(exec("PRAGMA foreign_keys=ON", "enable foreign keys"));
  // A deleted key's wrapped KEKs are overwritten, not left in free pages.
  ROOTSEAL_TRY(exec("PRAGMA secure_delete=ON", "enable secure_delete"));

  std::int64_t v = 0;
  ROOTSEAL_TRY_ASSIGN(v, pragma_int(db_, "PRAGMA synchronous"));
  if (v != 2) return fail(Errc::storage_failure, "state store: synchronous=FULL did not take effect");
  ROOTSEAL_TRY_ASSIGN(v, pragma_int(db_, "PRAGMA foreign_keys"));
  if (v != 1) return fail(Errc::storage_failure, "state store: foreign keys are not supported by this SQLite");
  return {};
}

Result<void> SqliteStore::migrate() {
  std::int64_t current = 0;
  ROOTSEAL_TRY_ASSIGN(current, pragma_int(db_, "PRAGMA user_version"));
  auto too_new = [](std::int64_t found) {
    return fail(Errc::storage_failure, "state store schema version " + std::to_string(found) +
                                           " is newer than this binary supports (" + std::to_string(kSchemaVersion) +
                                           "); upgrade rootseal");
  };
  if (current > kSchemaVersion) return too_new(current);
  if (current < 0) return fail(Errc::storage_failure, "state store: negative schema version");

  while (current < kSchemaVersion) {
    ROOTSEAL_TRY(exec("BEGIN IMMEDIATE", "begin migration"));
    auto applied = [&]() -> Result<void> {
      // Another process may have migrated between our read and the lock.
      std::int64_t now = 0;
      ROOTSEAL_TRY_ASSIGN(now, pragma_int(db_, "PRAGMA user_version"));
      if (now > kSchemaVersion) return too_new(now);
      if (now != current) {
        current = now;
        return {};
      }
      ROOTSEAL_TRY(exec(kMigrations[current], "schema migration"));
      const std::string bump = "PRAGMA user_version=" + std::to_string(current + 1);
      ROOTSEAL_TRY(exec(bump.c_str(), "schema migration"));
      ROOTSEAL_TRY(exec("COMMIT", "commit migration"));
      ++current;
      return {};
    }();
    if (!applied) {
      (void)::sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return applied;
    }
    if (::sqlite3_get_autocommit(db_) == 0) ROOTSEAL_TRY(exec("COMMIT", "commit migration"));
  }
  schema_version_ = static_cast<int>(current);
  return {};
}

Result<void> SqliteStore::prepare_all() {
  static constexpr std::pair<S, const char*> kSql[] = {
      {kBegin, "BEGIN IMMEDIATE"},
      {kBeginRead, "BEGIN"},
      {kCommit, "COMMIT"},
      {kRollback, "ROLLBACK"},
      // One ordered scan: key_versions is clustered on (name, version).
      {kLoadAll,
       "SELECT k.name, k.type, k.derived, k.created, k.min_decryption_version, k.min_encryption_version,"
       " k.deletion_allowed, k.auto_rotate_period, v.version, v.created, v.wrapped, v.root_kcv"
       " FROM keys AS k LEFT JOIN key_versions AS v ON v.name = k.name"
       " ORDER BY k.name, v.version"},
      {kFindKey,
       "SELECT name, type, derived, created, min_decryption_version, min_encryption_version,"
       " deletion_allowed, auto_rotate_period FROM keys WHERE name = ?1"},
      {kFindVersions, "SELECT version, created, wrapped, root_kcv FROM key_versions WHERE name = ?1 ORDER BY version"},
      {kListNames, "SELECT name FROM keys ORDER BY name"},
      {kInsertKey,
       "INSERT INTO keys (name, type, derived, created, min_decryption_version, min_encryption_version,"
       " deletion_allowed, auto_rotate_period) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"},
      {kInsertVersion,
       "INSERT INTO key_versions (name, version, created, wrapped, root_kcv) VALUES (?1, ?2, ?3, ?4, ?5)"},
      {kKeyExists, "SELECT 1 FROM keys WHERE name = ?1"},
      {kLatestVersion, "SELECT max(version) FROM key_versions WHERE name = ?1"},
      {kUpdateConfig,
       "UPDATE keys SET min_decryption_version = ?2, min_encryption_version = ?3, deletion_allowed = ?4,"
       " auto_rotate_period = ?5 WHERE name = ?1"},
      {kDeleteKey, "DELETE FROM keys WHERE name = ?1"},
      {kReplaceWrapped, "UPDATE key_versions SET wrapped = ?3, root_kcv = ?4 WHERE name = ?1 AND version = ?2"},
      {kKeyringKeys, "SELECT id, created, wrapped, root_kcv, kcv FROM keyring_keys ORDER BY id"},
      {kInsertKeyringKey, "INSERT INTO keyring_keys (id, created, wrapped, root_kcv, kcv) VALUES (?1, ?2, ?3, ?4, ?5)"},
      {kReplaceKeyringKey, "UPDATE keyring_keys SET wrapped = ?2, root_kcv = ?3 WHERE id = ?1 AND kcv = ?4"},
      {kKeyringKeyUsed, "SELECT 1 FROM key_versions WHERE root_kcv = ?1 LIMIT 1"},
      {kDeleteKeyringKey, "DELETE FROM keyring_keys WHERE id = ?1"},
  };
  for (const auto& [idx, sql] : kSql) {
    sqlite3_stmt* raw = nullptr;
    const int rc = ::sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    stmts_[idx] = Stmt(raw);
    if (rc != SQLITE_OK) return storage_fail("prepare statement", rc);
  }
  return {};
}

Result<std::unique_ptr<StateStore>> SqliteStore::open(const std::filesystem::path& path) {
  if (path.empty()) return fail(Errc::invalid_argument, "state store path is empty");
  ROOTSEAL_TRY(prepare_file(path, true));
  // Leftover siblings from an earlier run keep their own modes; tighten them.
  ROOTSEAL_TRY(prepare_file(path.string() + "-wal", false));
  ROOTSEAL_TRY(prepare_file(path.string() + "-shm", false));

  sqlite3* db = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_EXRESCODE |
                    SQLITE_OPEN_PRIVATECACHE;
  const int rc = ::sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    ::sqlite3_close_v2(db);  // a handle is returned even on failure
    return storage_fail("open", rc);
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore(db));
  ROOTSEAL_TRY(store->configure_connection());
  ROOTSEAL_TRY(store->migrate());
  ROOTSEAL_TRY(store->prepare_all());
  return std::unique_ptr<StateStore>(std::move(store));
}

// An image (a snapshot section) in memory: deserialized into a private
// connection, integrity-checked, migrated there if it is older; nothing
// touches a file.
Result<std::unique_ptr<StateStore>> SqliteStore::open_image(std::span<const std::uint8_t> image) {
  sqlite3* db = nullptr;
  ROOTSEAL_TRY(open_memory_image(image, &db));
  std::unique_ptr<SqliteStore> store(new SqliteStore(db));  // hardened by open_memory_image
  ROOTSEAL_TRY(store->exec("PRAGMA foreign_keys=ON", "enable foreign keys"));
  ROOTSEAL_TRY(store->migrate());
  ROOTSEAL_TRY(store->prepare_all());
  return std::unique_ptr<StateStore>(std::move(store));
}

// A keyring database built in memory from `keys` (each created as a new key
// would be, so the store's checks apply), as a rollback-journal image.
Result<std::vector<std::uint8_t>> SqliteStore::image_of(const std::vector<KeyRecord>& keys,
                                                        const std::vector<KeyringKeyRecord>& keyring_keys) {
  ROOTSEAL_LET(db, open_memory_connection());
  std::unique_ptr<SqliteStore> store(new SqliteStore(db));
  ROOTSEAL_TRY(store->exec("PRAGMA foreign_keys=ON", "enable foreign keys"));
  ROOTSEAL_TRY(store->migrate());
  ROOTSEAL_TRY(store->prepare_all());
  for (const auto& k : keyring_keys) {
    auto added = store->add_keyring_key(k);
    if (!added) return fail(added.error().code, "keyring key " + std::to_string(k.id) + ": " + added.error().message);
  }
  for (const auto& k : keys) {
    auto created = store->create_key(k);
    if (!created) return fail(created.error().code, "key '" + k.name + "': " + created.error().message);
  }
  return serialize_image(db);
}

// --- reading rows -----------------------------------------------------------

// Columns 0..7 of kLoadAll / kFindKey.
Result<KeyRecord> read_key_columns(sqlite3_stmt* s) {
  KeyRecord key;
  key.name = std::string(column_text(s, 0));
  auto type = parse_key_type(column_text(s, 1));
  if (!type) return corrupt("key '" + key.name + "' has an unknown type");
  key.type = *type;
  key.derived = ::sqlite3_column_int64(s, 2) != 0;
  key.created_unix = ::sqlite3_column_int64(s, 3);
  // Ranges are enforced by CHECK constraints; verified again on the way out.
  const std::int64_t min_dec = ::sqlite3_column_int64(s, 4);
  const std::int64_t min_enc = ::sqlite3_column_int64(s, 5);
  if (min_dec < 1 || min_dec > kMaxVersion || min_enc < 0 || min_enc > kMaxVersion) {
    return corrupt("key '" + key.name + "' has an out-of-range policy version");
  }
  key.config.min_decryption_version = static_cast<std::uint32_t>(min_dec);
  key.config.min_encryption_version = static_cast<std::uint32_t>(min_enc);
  key.config.deletion_allowed = ::sqlite3_column_int64(s, 6) != 0;
  key.config.auto_rotate_period_s = ::sqlite3_column_int64(s, 7);
  return key;
}

// Columns first..first+3: version, created, wrapped, root_kcv. `expected` is
// the version this row must carry (versions are 1..latest, none missing).
Result<void> read_version_columns(sqlite3_stmt* s, int first, KeyRecord& key) {
  const std::int64_t version = ::sqlite3_column_int64(s, first);
  const auto expected = static_cast<std::int64_t>(key.versions.size()) + 1;
  if (version != expected) return corrupt("key '" + key.name + "' has a gap in its versions");
  KeyVersionRecord& v = key.versions.emplace_back();
  v.version = static_cast<std::uint32_t>(version);
  v.created_unix = ::sqlite3_column_int64(s, first + 1);
  v.wrapped_key = column_blob(s, first + 2);
  v.root_kcv = std::string(column_text(s, first + 3));
  return {};
}

// --- StateStore ----------------------------------------------------------------

Result<std::vector<KeyRecord>> SqliteStore::load_all() {
  std::lock_guard lock(mu_);
  // One read transaction: a consistent snapshot even with another writer.
  ReadTxn txn(*this);
  ROOTSEAL_TRY(txn.begin());

  std::vector<KeyRecord> keys;
  Use u(stmts_[kLoadAll]);
  sqlite3_stmt* s = u.get();
  for (;;) {
    const int rc = ::sqlite3_step(s);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return storage_fail("load keys", rc);
    const std::string_view name = column_text(s, 0);
    if (keys.empty() || keys.back().name != name) {
      KeyRecord key;
      ROOTSEAL_TRY_ASSIGN(key, read_key_columns(s));
      keys.push_back(std::move(key));
    }
    if (::sqlite3_column_type(s, 8) != SQLITE_NULL) ROOTSEAL_TRY(read_version_columns(s, 8, keys.back()));
  }
  for (const auto& key : keys) {
    if (key.versions.empty()) return corrupt("key '" + key.name + "' has no versions");
  }
  return keys;
}

Result<std::optional<KeyRecord>> SqliteStore::find_locked(std::string_view name) {
  std::optional<KeyRecord> found;
  {
    Use u(stmts_[kFindKey]);
    int rc = bind_text(u.get(), 1, name);
    if (rc != SQLITE_OK) return storage_fail("find key", rc);
    rc = ::sqlite3_step(u.get());
    if (rc == SQLITE_DONE) return found;
    if (rc != SQLITE_ROW) return storage_fail("find key", rc);
    KeyRecord key;
    ROOTSEAL_TRY_ASSIGN(key, read_key_columns(u.get()));
    found = std::move(key);
  }
  Use u(stmts_[kFindVersions]);
  int rc = bind_text(u.get(), 1, name);
  if (rc != SQLITE_OK) return storage_fail("find key versions", rc);
  while ((rc = ::sqlite3_step(u.get())) == SQLITE_ROW) ROOTSEAL_TRY(read_version_columns(u.get(), 0, *found));
  if (rc != SQLITE_DONE) return storage_fail("find key versions", rc);
  if (found->versions.empty()) return corrupt("key '" + found->name + "' has no versions");
  return found;
}

Result<std::optional<KeyRecord>> SqliteStore::find(std::string_view name) {
  std::lock_guard lock(mu_);
  ReadTxn txn(*this);
  ROOTSEAL_TRY(txn.begin());
  return find_locked(name);
}

Result<std::vector<std::string>> SqliteStore::list_names() {
  std::lock_guard lock(mu_);
  std::vector<std::string> names;
  Use u(stmts_[kListNames]);
  int rc = 0;
  while ((rc = ::sqlite3_step(u.get())) == SQLITE_ROW) names.emplace_back(column_text(u.get(), 0));
  if (rc != SQLITE_DONE) return storage_fail("list keys", rc);
  return names;
}

Result<void> SqliteStore::create_key(const KeyRecord& key) {
  if (key.versions.empty()) return fail(Errc::invalid_argument, "a new key needs at least one version");
  for (std::size_t i = 0; i < key.versions.size(); ++i) {
    if (key.versions[i].version != i + 1) {
      return fail(Errc::invalid_argument, "a new key's versions must be 1..N in order");
    }
  }
  const auto& c = key.config;
  if (c.min_decryption_version < 1 || c.min_decryption_version > kMaxVersion ||
      c.min_encryption_version > kMaxVersion || c.auto_rotate_period_s < 0) {
    return fail(Errc::invalid_argument, "key config out of range");
  }

  std::lock_guard lock(mu_);
  Txn txn(*this);
  ROOTSEAL_TRY(txn.begin());
  {
    Use u(stmts_[kInsertKey]);
    sqlite3_stmt* s = u.get();
    int rc = bind_text(s, 1, key.name);
    if (rc == SQLITE_OK) rc = bind_text(s, 2, to_string(key.type));
    if (rc == SQLITE_OK) rc = ::sqlite3_bind_int64(s, 3, key.derived ? 1 : 0);
    if (rc == SQLITE_OK) rc = ::sqlite3_bind_int64(s, 4, key.created_unix);
    if (rc == SQLITE_OK) rc = ::sqlite3_bind_int64(s, 5, c.min_decryption_version);
    if (rc == SQLITE_OK) rc = ::sqlite3_bind_int64(s, 6, c.min_encryption_version);
    if (rc == SQLITE_OK) rc = ::sqlite3_bind_int64(s, 7, c.deletion_allowed ? 1 : 0);
    if (rc == SQLITE_OK) rc = ::sqlite3_bind_int64(s, 8, c.auto_rotate_period_s);
    if (rc != SQLITE_OK) return storage_fail("create key", rc);
    rc = ::sqlite3_step(s);
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) return fail(Errc::already_exists, "key already exists");
    if (rc != SQLITE_DONE) return storage_fail("create key", rc);
  }
  for (const auto& v : key.versions) {
    Use u(stmts_[kInsertVersion]);
    sqlite3_stmt* s = u.get();
    int rc = bind_text(s, 1, key.name);
    if (rc == SQLITE_OK) rc = ::sqlite3_bind_int64(s, 2, v.version);
    if (rc == SQLITE_OK) rc = ::sqlite3_bind_int64(s, 3, v.created_unix);
    if (rc == SQLITE_OK) rc = bind_blob(s, 4, v.wrapped_key);
    if (rc == SQLITE_OK) rc = bind_text(s, 5, v.root_kcv);
    if (rc != SQLITE_OK) return storage_fail("create key version", rc);
    ROOTSEAL_TRY(step_done(s, "create key version"));
  }
  return txn.commit();
}

// Inside a transaction. exists=false when there is no such key.
Result<std::uint32_t> SqliteStore::latest_version(std::string_view name, bool& exists) {
  {
    Use u(stmts_[kKeyExists]);
    int rc = bind_text(u.get(), 1, name);
    if (rc != SQLITE_OK) return storage_fail("find key", rc);
    rc = ::sqlite3_step(u.get());
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return storage_fail("find key", rc);
    exists = rc == SQLITE_ROW;
    if (!exists) return 0U;
  }
  Use u(stmts_[kLatestVersion]);
  int rc = bind_text(u.get(), 1, name);
  if (rc != SQLITE_OK) return storage_fail("latest version", rc);
  rc = ::sqlite3_step(u.get());
  if (rc != SQLITE_ROW) return storage_fail("latest version", rc == SQLITE_DONE ? SQLITE_ERROR : rc);
  const std::int64_t latest = ::sqlite3_column_int64(u.get(), 0);  // NULL (no rows) reads as 0
  if (latest < 0 || latest > kMaxVersion) return corrupt("a key version is out of range");
  return static_cast<std::uint32_t>(latest);
}

Result<void> SqliteStore::add_version(std::string_view name, const KeyVersionRecord& version) {
  std::lock_guard lock(mu_);
  Txn txn(*this);
  ROOTSEAL_TRY(txn.begin());
  bool exists = false;
  std::uint32_t latest = 0;
  ROOTSEAL_TRY_ASSIGN(latest, latest_version(name, exists));
  if (!exists) return fail(Errc::not_found, "key not found");
  if (latest >= kMaxVersion) return fail(Errc::invalid_argument, "key has reached the maximum version");
  if (version.version != latest + 1) {
    return fail(Errc::conflict, "key version " + std::to_string(version.version) +
                                    " is not the next version (latest is " + std::to_string(latest) + ")");
  }
  {
    Use u(stmts_[kInsertVersion]);
    sqlite3_stmt* s = u.get();
    int rc = bind_text(s, 1, name);
    if (rc == SQLITE_OK) rc = ::sqlite3_bind_int64(s, 2, version.version);
    if (rc == SQLITE_OK) rc = ::sqlite3_bind_int64(s, 3, version.created_unix);
    if (rc == SQLITE_OK) rc = bind_blob(s, 4, version.wrapped_key);
    if (rc == SQLITE_OK) rc = bind_text(s, 5, version.root_kcv);
    if (rc != SQLITE_OK) return storage_fail("add key version", rc);
    rc = ::sqlite3_step(s);
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) return fail(Errc::conflict, "key version already exists");
    if (rc != SQLITE_DONE) return storage_fail("add key version", rc);
  }
  return txn.commit();
}

Result<void> SqliteStore::update_config(std::string_view name, const KeyConfig& config) {
  if (config.min_decryption_version < 1 || config.min_decryption_version > kMaxVersion ||
      config.min_encryption_version > kMaxVersion || config.auto_rotate_period_s < 0) {
    return fail(Errc::invalid_argument, "key config out of range");
  }
  std::lock_guard lock(mu_);
  Txn txn(*this);
  ROOTSEAL_TRY(txn.begin());
  {
    Use u(stmts_[kUpdateConfig]);
    sqlite3_stmt* s = u.get();
    int rc = bind_text(s, 1, name);
    if (rc == SQLITE_OK) rc = ::sqlite3_bind_int64(s, 2, config.min_decryption_version);
    if (rc == SQLITE_OK) rc = ::sqlite3_bind_int64(s, 3, config.min_encryption_version);
    if (rc == SQLITE_OK) rc = ::sqlite3_bind_int64(s, 4, config.deletion_allowed ? 1 : 0);
    if (rc == SQLITE_OK) rc = ::sqlite3_bind_int64(s, 5, config.auto_rotate_period_s);
    if (rc != SQLITE_OK) return storage_fail("update key config", rc);
    ROOTSEAL_TRY(step_done(s, "update key config"));
    if (::sqlite3_changes(db_) == 0) return fail(Errc::not_found, "key not found");
  }
  return txn.commit();
}

Result<void> SqliteStore::delete_key(std::string_view name) {
  std::lock_guard lock(mu_);
  Txn txn(*this);
  ROOTSEAL_TRY(txn.begin());
  {
    Use u(stmts_[kDeleteKey]);
    const int rc = bind_text(u.get(), 1, name);
    if (rc != SQLITE_OK) return storage_fail("delete key", rc);
    ROOTSEAL_TRY(step_done(u.get(), "delete key"));
    if (::sqlite3_changes(db_) == 0) return fail(Errc::not_found, "key not found");
  }
  return txn.commit();
}

Result<void> SqliteStore::replace_wrapped(const std::vector<Rewrapped>& versions,
                                          const std::vector<KeyringKeyRecord>& keyring_keys) {
  for (const auto& k : keyring_keys) ROOTSEAL_TRY(validate_keyring_key_record(k));
  std::lock_guard lock(mu_);
  Txn txn(*this);
  ROOTSEAL_TRY(txn.begin());
  for (const auto& k : keyring_keys) {
    Use u(stmts_[kReplaceKeyringKey]);
    sqlite3_stmt* s = u.get();
    int rc = ::sqlite3_bind_int64(s, 1, k.id);
    if (rc == SQLITE_OK) rc = bind_blob(s, 2, k.wrapped);
    if (rc == SQLITE_OK) rc = bind_text(s, 3, k.root_kcv);
    if (rc == SQLITE_OK) rc = bind_text(s, 4, k.kcv);
    if (rc != SQLITE_OK) return storage_fail("replace wrapped keyring key", rc);
    ROOTSEAL_TRY(step_done(s, "replace wrapped keyring key"));
    if (::sqlite3_changes(db_) == 0) return fail(Errc::not_found, "keyring key " + std::to_string(k.id) + " not found");
  }
  for (const auto& e : versions) {
    Use u(stmts_[kReplaceWrapped]);
    sqlite3_stmt* s = u.get();
    int rc = bind_text(s, 1, e.name);
    if (rc == SQLITE_OK) rc = ::sqlite3_bind_int64(s, 2, e.version);
    if (rc == SQLITE_OK) rc = bind_blob(s, 3, e.wrapped_key);
    if (rc == SQLITE_OK) rc = bind_text(s, 4, e.root_kcv);
    if (rc != SQLITE_OK) return storage_fail("replace wrapped key", rc);
    ROOTSEAL_TRY(step_done(s, "replace wrapped key"));
    if (::sqlite3_changes(db_) == 0) return fail(Errc::not_found, "key version not found");
  }
  return txn.commit();
}

Result<std::vector<KeyringKeyRecord>> SqliteStore::keyring_keys() {
  std::lock_guard lock(mu_);
  std::vector<KeyringKeyRecord> out;
  Use u(stmts_[kKeyringKeys]);
  sqlite3_stmt* s = u.get();
  int rc = 0;
  while ((rc = ::sqlite3_step(s)) == SQLITE_ROW) {
    KeyringKeyRecord r;
    const std::int64_t id = ::sqlite3_column_int64(s, 0);
    if (id < 1 || id > kMaxVersion) return corrupt("a keyring key has an id out of range");
    r.id = static_cast<std::uint32_t>(id);
    r.created_unix = ::sqlite3_column_int64(s, 1);
    const auto* blob = static_cast<const std::uint8_t*>(::sqlite3_column_blob(s, 2));
    const int n = ::sqlite3_column_bytes(s, 2);
    if (blob != nullptr && n > 0) r.wrapped.assign(blob, blob + n);
    r.root_kcv = std::string(column_text(s, 3));
    r.kcv = std::string(column_text(s, 4));
    if (auto ok = validate_keyring_key_record(r); !ok) return corrupt(ok.error().message);
    out.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return storage_fail("read keyring keys", rc);
  return out;
}

Result<void> SqliteStore::add_keyring_key(const KeyringKeyRecord& key) {
  if (auto ok = validate_keyring_key_record(key); !ok) return fail(Errc::invalid_argument, ok.error().message);
  std::lock_guard lock(mu_);
  Txn txn(*this);
  ROOTSEAL_TRY(txn.begin());
  {
    Use u(stmts_[kInsertKeyringKey]);
    sqlite3_stmt* s = u.get();
    int rc = ::sqlite3_bind_int64(s, 1, key.id);
    if (rc == SQLITE_OK) rc = ::sqlite3_bind_int64(s, 2, key.created_unix);
    if (rc == SQLITE_OK) rc = bind_blob(s, 3, key.wrapped);
    if (rc == SQLITE_OK) rc = bind_text(s, 4, key.root_kcv);
    if (rc == SQLITE_OK) rc = bind_text(s, 5, key.kcv);
    if (rc != SQLITE_OK) return storage_fail("add keyring key", rc);
    rc = ::sqlite3_step(s);
    if ((rc & 0xff) == SQLITE_CONSTRAINT) {
      return fail(Errc::already_exists, "keyring key " + std::to_string(key.id) + " already exists");
    }
    if (rc != SQLITE_DONE) return storage_fail("add keyring key", rc);
  }
  return txn.commit();
}

Result<void> SqliteStore::retire_keyring_key(std::uint32_t id) {
  std::lock_guard lock(mu_);
  Txn txn(*this);
  ROOTSEAL_TRY(txn.begin());
  std::string tag;
  {
    Use u(stmts_[kKeyringKeys]);
    int rc = 0;
    while ((rc = ::sqlite3_step(u.get())) == SQLITE_ROW) {
      if (::sqlite3_column_int64(u.get(), 0) == id) tag = keyring_key_tag(id, column_text(u.get(), 4));
    }
    if (rc != SQLITE_DONE) return storage_fail("read keyring keys", rc);
  }
  if (tag.empty()) return fail(Errc::not_found, "keyring key " + std::to_string(id) + " not found");
  {
    // In the same transaction as the delete: no version can slip in between.
    Use u(stmts_[kKeyringKeyUsed]);
    int rc = bind_text(u.get(), 1, tag);
    if (rc != SQLITE_OK) return storage_fail("retire keyring key", rc);
    rc = ::sqlite3_step(u.get());
    if (rc == SQLITE_ROW) {
      return fail(Errc::conflict, "keyring key " + std::to_string(id) + " still wraps key versions");
    }
    if (rc != SQLITE_DONE) return storage_fail("retire keyring key", rc);
  }
  {
    Use u(stmts_[kDeleteKeyringKey]);
    int rc = ::sqlite3_bind_int64(u.get(), 1, id);
    if (rc != SQLITE_OK) return storage_fail("retire keyring key", rc);
    ROOTSEAL_TRY(step_done(u.get(), "retire keyring key"));
  }
  return txn.commit();
}

}  // namespace

Result<std::unique_ptr<StateStore>> open_sqlite_store(const std::filesystem::path& path) {
  return SqliteStore::open(path);
}

Result<sqlite3*> open_memory_connection() {
  sqlite3* db = nullptr;
  const int rc = ::sqlite3_open_v2(":memory:", &db,
                                   SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_EXRESCODE |
                                       SQLITE_OPEN_PRIVATECACHE | SQLITE_OPEN_MEMORY,
                                   nullptr);
  if (rc != SQLITE_OK) {
    ::sqlite3_close_v2(db);
    return storage_fail("open in memory", rc);
  }
  harden_connection(db);
  return db;
}

Result<std::vector<std::uint8_t>> serialize_image(sqlite3* db) {
  sqlite3_int64 size = 0;
  unsigned char* image = ::sqlite3_serialize(db, "main", &size, 0);
  if (image == nullptr || size < 100) {
    ::sqlite3_free(image);
    return storage_fail("serialize", SQLITE_NOMEM);
  }
  std::vector<std::uint8_t> out(image, image + size);
  ::sqlite3_free(image);
  out[18] = 1;  // a rollback-journal image: opens in memory, and as a file
  out[19] = 1;  // the store switches it back to WAL on open
  return out;
}

Result<void> open_memory_image(std::span<const std::uint8_t> image, sqlite3** out) {
  *out = nullptr;
  // The 100-byte header plus at least one page; SQLite checks the rest.
  if (image.size() < 512) return fail(Errc::invalid_argument, "not an SQLite database image (too short)");
  static constexpr char kHeader[] = "SQLite format 3";
  if (std::memcmp(image.data(), kHeader, sizeof kHeader) != 0) {
    return fail(Errc::invalid_argument, "not an SQLite database image (bad header)");
  }
  ROOTSEAL_LET(db, open_memory_connection());  // hardened before SQLite reads a byte of the image
  auto* buf = static_cast<unsigned char*>(::sqlite3_malloc64(image.size()));
  if (buf == nullptr) {
    ::sqlite3_close_v2(db);
    return storage_fail("open in memory", SQLITE_NOMEM);
  }
  std::memcpy(buf, image.data(), image.size());
  // A WAL-mode image cannot be opened in memory: read it as rollback-journal.
  buf[18] = 1;
  buf[19] = 1;
  const auto n = static_cast<sqlite3_int64>(image.size());
  int rc = ::sqlite3_deserialize(db, "main", buf, n, n, SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE);
  if (rc != SQLITE_OK) {
    ::sqlite3_close_v2(db);
    return storage_fail("open image", rc);
  }
  // Damage SQLite can see in the b-trees, before any row is trusted.
  sqlite3_stmt* raw = nullptr;
  rc = ::sqlite3_prepare_v2(db, "PRAGMA integrity_check(1)", -1, &raw, nullptr);
  {
    Stmt s(raw);
    const bool ok = rc == SQLITE_OK && ::sqlite3_step(s.get()) == SQLITE_ROW && column_text(s.get(), 0) == "ok";
    if (!ok) {
      s = Stmt();
      ::sqlite3_close_v2(db);
      return fail(Errc::invalid_argument, "the database image fails SQLite's integrity check");
    }
  }
  *out = db;
  return {};
}

Result<std::unique_ptr<StateStore>> open_sqlite_image(std::span<const std::uint8_t> image) {
  return SqliteStore::open_image(image);
}

Result<std::vector<std::uint8_t>> sqlite_image_of(const std::vector<KeyRecord>& keys,
                                                  const std::vector<KeyringKeyRecord>& keyring_keys) {
  return SqliteStore::image_of(keys, keyring_keys);
}

}  // namespace rootseal::kms
