// Tokens created over the admin socket, kept across restarts: where they
// are kept. Two implementations:
//
// - SQLite (open): one file of its own (<state_dir>/tokens.db, mode 0600;
//   WAL, synchronous=FULL), one table:
//
//     tokens(hash TEXT PRIMARY KEY   -- SHA-256 hex of the token; the token itself is never stored
//            accessor TEXT UNIQUE, display_name TEXT, policies TEXT (JSON array),
//            creation_time INTEGER, ttl_s INTEGER, expire_time INTEGER (0 = never),
//            renewable INTEGER)
//
// - etcd (etcd_token_db.hpp, storage: etcd): one value per token under
//   <prefix>tokens/<accessor>, shared by every host, watched for changes.
//
// Every call blocks (a commit is an fsync or a quorum write): call it from
// the blocking pool or at start-up. Thread-safe.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "auth.hpp"
#include "rootseal/kms/error.hpp"

namespace rootseal::daemon {

struct StoredToken {
  std::string hash;
  TokenInfo info;
};

class TokenDb {
 public:
  // The SQLite file at `path`: creates it (0600) and the table if needed.
  // storage_failure on errors.
  static kms::Result<std::unique_ptr<TokenDb>> open(const std::filesystem::path& path);
  // A tokens.db image holding `tokens` (built in memory): the tokens section
  // of a snapshot of etcd; and the tokens of such an image (a snapshot's
  // tokens section), invalid_argument if it does not open.
  static kms::Result<std::vector<std::uint8_t>> image_of(const std::vector<StoredToken>& tokens);
  static kms::Result<std::vector<StoredToken>> tokens_of_image(std::span<const std::uint8_t> image);
  virtual ~TokenDb() = default;

  virtual kms::Result<std::vector<StoredToken>> load_all() = 0;
  // An error (nothing written) when the accessor or the hash is taken.
  virtual kms::Result<void> insert(const std::string& hash, const TokenInfo& info) = 0;
  // true if a token was removed.
  virtual kms::Result<bool> remove(std::string_view accessor) = 0;
  virtual kms::Result<void> set_expiry(std::string_view accessor, std::int64_t expire_time) = 0;
  // Deletes tokens with 0 < expire_time <= now; returns how many.
  virtual kms::Result<std::size_t> purge_expired(std::int64_t now) = 0;
  // Whether other processes change the tokens too (several hosts on etcd).
  [[nodiscard]] virtual bool shared() const noexcept { return false; }
  // A shared store calls `changed` (on a thread of its own, where blocking
  // calls must not be made: post them elsewhere) after tokens were created,
  // renewed or removed by anyone, until stop_watch(). Others: nothing.
  virtual void start_watch(std::function<void()> changed) { (void)changed; }
  virtual void stop_watch() {}
};

}  // namespace rootseal::daemon
