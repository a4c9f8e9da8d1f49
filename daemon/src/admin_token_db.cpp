#include "admin_token_db.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>

#include "rootseal/kms/snapshot.hpp"

#include <algorithm>
#include <mutex>

namespace rootseal::daemon {

using kms::Errc;
using kms::fail;

namespace {

kms::Result<void> sql_fail(sqlite3* db, std::string_view what) {
  return fail(Errc::storage_failure, "token store: " + std::string(what) + ": " + sqlite3_errmsg(db));
}

// A prepared statement, finalized on every path.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { ok_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) == SQLITE_OK; }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  [[nodiscard]] bool ok() const { return ok_; }
  sqlite3_stmt* get() const { return stmt_; }
  void text(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void integer(int i, std::int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  std::string column_text(int i) const {
    const auto* p = sqlite3_column_text(stmt_, i);
    return p == nullptr ? std::string()
                        : std::string(reinterpret_cast<const char*>(p),
                                      static_cast<std::size_t>(sqlite3_column_bytes(stmt_, i)));
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  bool ok_ = false;
};

std::string policies_json(const std::vector<std::string>& policies) {
  boost::json::array a;
  for (const auto& p : policies) a.emplace_back(p);
  return boost::json::serialize(a);
}

std::vector<std::string> policies_from_json(const std::string& text) {
  std::vector<std::string> out;
  boost::json::error_code ec;
  const auto v = boost::json::parse(text, ec);
  if (ec || !v.is_array()) return out;
  for (const auto& e : v.as_array()) {
    if (e.is_string()) out.emplace_back(e.as_string());
  }
  return out;
}

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS tokens ("
    "  hash TEXT PRIMARY KEY,"
    "  accessor TEXT NOT NULL UNIQUE,"
    "  display_name TEXT NOT NULL,"
    "  policies TEXT NOT NULL,"
    "  creation_time INTEGER NOT NULL,"
    "  ttl_s INTEGER NOT NULL,"
    "  expire_time INTEGER NOT NULL,"
    "  renewable INTEGER NOT NULL);";

kms::Result<std::vector<StoredToken>> load_rows(sqlite3* db) {
  Stmt st(db,
          "SELECT hash, accessor, display_name, policies, creation_time, ttl_s, expire_time, renewable "
          "FROM tokens ORDER BY creation_time, accessor");
  if (!st.ok()) return std::unexpected(sql_fail(db, "load").error());
  std::vector<StoredToken> out;
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    StoredToken t;
    t.hash = st.column_text(0);
    t.info.accessor = st.column_text(1);
    t.info.display_name = st.column_text(2);
    t.info.policies = policies_from_json(st.column_text(3));
    t.info.creation_time = sqlite3_column_int64(st.get(), 4);
    t.info.ttl_s = sqlite3_column_int64(st.get(), 5);
    t.info.expire_time = sqlite3_column_int64(st.get(), 6);
    t.info.renewable = sqlite3_column_int64(st.get(), 7) != 0;
    t.info.root = std::find(t.info.policies.begin(), t.info.policies.end(), "root") != t.info.policies.end();
    t.info.persistent = true;
    if (t.hash.size() != 64 || t.info.accessor.empty()) continue;  // not ours; never trusted
    out.push_back(std::move(t));
  }
  if (rc != SQLITE_DONE) return std::unexpected(sql_fail(db, "load").error());
  return out;
}

kms::Result<void> insert_row(sqlite3* db, const std::string& hash, const TokenInfo& info) {
  Stmt st(db,
          "INSERT INTO tokens (hash, accessor, display_name, policies, creation_time, ttl_s, expire_time, "
          "renewable) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  if (!st.ok()) return sql_fail(db, "insert");
  st.text(1, hash);
  st.text(2, info.accessor);
  st.text(3, info.display_name);
  st.text(4, policies_json(info.policies));
  st.integer(5, info.creation_time);
  st.integer(6, info.ttl_s);
  st.integer(7, info.expire_time);
  st.integer(8, info.renewable ? 1 : 0);
  if (sqlite3_step(st.get()) != SQLITE_DONE) return sql_fail(db, "insert");
  return {};
}

class SqliteTokenDb final : public TokenDb {
 public:
  explicit SqliteTokenDb(sqlite3* db) : db_(db) {}
  ~SqliteTokenDb() override { sqlite3_close_v2(db_); }
  SqliteTokenDb(const SqliteTokenDb&) = delete;
  SqliteTokenDb& operator=(const SqliteTokenDb&) = delete;

  kms::Result<std::vector<StoredToken>> load_all() override;
  kms::Result<void> insert(const std::string& hash, const TokenInfo& info) override;
  kms::Result<bool> remove(std::string_view accessor) override;
  kms::Result<void> set_expiry(std::string_view accessor, std::int64_t expire_time) override;
  kms::Result<std::size_t> purge_expired(std::int64_t now) override;

 private:
  std::mutex mu_;
  sqlite3* db_;
};

}  // namespace

kms::Result<std::unique_ptr<TokenDb>> TokenDb::open(const std::filesystem::path& path) {
  // Create the file 0600 ourselves, whatever the umask, before SQLite opens it.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fail(Errc::storage_failure, "token store: cannot open " + path.string());
  const bool private_mode = ::fchmod(fd, 0600) == 0;
  ::close(fd);
  if (!private_mode) return fail(Errc::storage_failure, "token store: cannot chmod 0600 " + path.string());

  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, nullptr);
  std::unique_ptr<TokenDb> db = std::make_unique<SqliteTokenDb>(raw);
  if (rc != SQLITE_OK) return fail(Errc::storage_failure, "token store: cannot open " + path.string());
  const std::string setup = std::string("PRAGMA journal_mode=WAL;PRAGMA synchronous=FULL;") + kSchema;
  if (sqlite3_exec(raw, setup.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    return std::unexpected(sql_fail(raw, "set-up").error());
  }
  // The WAL and shared-memory files SQLite just made: private too.
  for (const char* suffix : {"-wal", "-shm"}) {
    const auto side = path.string() + suffix;
    if (::access(side.c_str(), F_OK) == 0) (void)::chmod(side.c_str(), 0600);
  }
  return db;
}

kms::Result<std::vector<StoredToken>> SqliteTokenDb::load_all() {
  std::lock_guard lock(mu_);
  return load_rows(db_);
}

kms::Result<void> SqliteTokenDb::insert(const std::string& hash, const TokenInfo& info) {
  std::lock_guard lock(mu_);
  return insert_row(db_, hash, info);
}

kms::Result<bool> SqliteTokenDb::remove(std::string_view accessor) {
  std::lock_guard lock(mu_);
  Stmt st(db_, "DELETE FROM tokens WHERE accessor = ?1");
  if (!st.ok()) return std::unexpected(sql_fail(db_, "revoke").error());
  st.text(1, accessor);
  if (sqlite3_step(st.get()) != SQLITE_DONE) return std::unexpected(sql_fail(db_, "revoke").error());
  return sqlite3_changes(db_) > 0;
}

kms::Result<void> SqliteTokenDb::set_expiry(std::string_view accessor, std::int64_t expire_time) {
  std::lock_guard lock(mu_);
  Stmt st(db_, "UPDATE tokens SET expire_time = ?1 WHERE accessor = ?2");
  if (!st.ok()) return sql_fail(db_, "renew");
  st.integer(1, expire_time);
  st.text(2, accessor);
  if (sqlite3_step(st.get()) != SQLITE_DONE) return sql_fail(db_, "renew");
  return {};
}

kms::Result<std::size_t> SqliteTokenDb::purge_expired(std::int64_t now) {
  std::lock_guard lock(mu_);
  Stmt st(db_, "DELETE FROM tokens WHERE expire_time > 0 AND expire_time <= ?1");
  if (!st.ok()) return std::unexpected(sql_fail(db_, "purge").error());
  st.integer(1, now);
  if (sqlite3_step(st.get()) != SQLITE_DONE) return std::unexpected(sql_fail(db_, "purge").error());
  return static_cast<std::size_t>(sqlite3_changes(db_));
}

kms::Result<std::vector<std::uint8_t>> TokenDb::image_of(const std::vector<StoredToken>& tokens) {
  return kms::build_sqlite_image([&](sqlite3* db) -> kms::Result<void> {
    if (sqlite3_exec(db, kSchema, nullptr, nullptr, nullptr) != SQLITE_OK) return sql_fail(db, "set-up");
    for (const auto& t : tokens) ROOTSEAL_TRY(insert_row(db, t.hash, t.info));
    return {};
  });
}

kms::Result<std::vector<StoredToken>> TokenDb::tokens_of_image(std::span<const std::uint8_t> image) {
  std::vector<StoredToken> out;
  auto read = kms::read_sqlite_image(image, [&](sqlite3* db) -> kms::Result<void> {
    ROOTSEAL_TRY_ASSIGN(out, load_rows(db));
    return {};
  });
  if (!read) return std::unexpected(read.error());
  return out;
}

}  // namespace rootseal::daemon
