// Tokens created over the admin socket, kept across restarts.
//
// One SQLite file of its own (<state_dir>/tokens.db, mode 0600; WAL,
// synchronous=FULL), one table:
//
//   tokens(hash TEXT PRIMARY KEY   -- SHA-256 hex of the token; the token itself is never stored
//          accessor TEXT UNIQUE, display_name TEXT, policies TEXT (JSON array),
//          creation_time INTEGER, ttl_s INTEGER, expire_time INTEGER (0 = never),
//          renewable INTEGER)
//
// Every call blocks on SQLite (a commit is an fsync): call it from the
// blocking pool or at start-up. Thread-safe.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "auth.hpp"
#include "rootseal/kms/error.hpp"

struct sqlite3;

namespace rootseal::daemon {

struct StoredToken {
  std::string hash;
  TokenInfo info;
};

class TokenDb {
 public:
  // Creates the file (0600) and the table if needed. storage_failure on errors.
  static kms::Result<std::unique_ptr<TokenDb>> open(const std::filesystem::path& path);
  ~TokenDb();
  TokenDb(const TokenDb&) = delete;
  TokenDb& operator=(const TokenDb&) = delete;

  kms::Result<std::vector<StoredToken>> load_all();
  kms::Result<void> insert(const std::string& hash, const TokenInfo& info);
  // true if a row was removed.
  kms::Result<bool> remove(std::string_view accessor);
  kms::Result<void> set_expiry(std::string_view accessor, std::int64_t expire_time);
  // Deletes tokens with 0 < expire_time <= now; returns how many.
  kms::Result<std::size_t> purge_expired(std::int64_t now);

 private:
  explicit TokenDb(sqlite3* db) : db_(db) {}
  std::mutex mu_;
  sqlite3* db_;
};

}  // namespace rootseal::daemon
