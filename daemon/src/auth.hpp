// Tokens and policies: who may do what to which key.
//
// A token is a random secret; only its SHA-256 is kept (in the TokenDb and
// the config). In memory the table is keyed by HMAC-SHA256(process key,
// SHA-256(token)) under a random key drawn at start-up, and keys compare in
// constant time: a lookup's timing (the bucket it probes, the entries it
// compares) depends on values no client can compute, so it tells a client
// nothing about the tokens in the table (docs/architecture.md, "Token lookup"). Each token has an accessor (a second,
// non-secret identifier for logs and audit), a TTL and a set of policies.
// Policies are declared in the configuration: key name patterns (exact, or a
// prefix ending in '*') and the operations allowed on them. The policy "root"
// allows everything.
//
// Tokens come from three places: the dev root token, the static tokens of the
// config (by hash; replaced on reload) and tokens created over the admin
// socket (`rootseal token create`), which are persisted — hash, never the
// token — in <state_dir>/tokens.db (TokenDb) and survive restarts. Lookups are
// served from memory; a revocation removes the token from the database and
// from memory at once, so the next HTTP request with it gets 403.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "rootseal/daemon/config.hpp"
#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::daemon {

struct TokenInfo {
  std::string accessor;
  std::string display_name;
  std::vector<std::string> policies;
  std::int64_t creation_time = 0;
  std::int64_t ttl_s = 0;        // 0 = no expiry
  std::int64_t expire_time = 0;  // 0 = never
  bool renewable = false;
  bool root = false;
  bool from_config = false;  // a static token of the config (replaced on reload)
  bool persistent = false;   // created over the admin socket, kept in the TokenDb
};

class TokenDb;

// Hash of a presented token (SHA-256, hex): the only form ever stored.
std::string token_hash(std::string_view token);

// The token table's key of a token: HMAC-SHA256 under the per-process key of
// the token's SHA-256. Uniformly random to anyone without the process key.
struct TokenKey {
  std::array<std::uint8_t, 32> bytes{};
};
TokenKey token_table_key(std::string_view token);
// Of a token known by its SHA-256 hex (the config, the TokenDb).
TokenKey token_table_key_of_hash(std::string_view sha256_hex);
// Its first bytes already are a uniform hash; equality in constant time.
struct TokenKeyHash {
  std::size_t operator()(const TokenKey& k) const noexcept;
};
struct TokenKeyEqual {
  bool operator()(const TokenKey& a, const TokenKey& b) const noexcept;
};

class TokenStore {
 public:
  // Runs a blocking job (a SQLite commit) somewhere else than the caller's
  // thread: renew() is called on the I/O threads. Empty: inline.
  using Deferrer = std::function<void(std::function<void()>)>;

  TokenStore();
  ~TokenStore();
  TokenStore(const TokenStore&) = delete;
  TokenStore& operator=(const TokenStore&) = delete;

  // Keeps created tokens in `db` and loads those it holds (expired ones are
  // purged first). Blocking: call at start-up or on the blocking pool. The
  // db is kept even if loading fails (a shared db whose etcd is down: the
  // caller may go on and reload() later).
  kms::Result<void> attach(std::unique_ptr<TokenDb> db, std::int64_t now, Deferrer defer = {});
  // Re-reads the created tokens from the db (a shared db changed: another
  // host created, renewed or revoked one). Tokens of the config and the dev
  // root token are kept; of a token held both here and in the db, the later
  // expiry wins (a renewal here may not have reached the db yet). Blocking.
  kms::Result<void> reload();
  // The attached db (null before attach); its watch is started by the caller.
  [[nodiscard]] TokenDb* db() const noexcept { return db_.get(); }

  struct Created {
    kms::SecureBytes token;  // "rs.<48 hex digits>": shown once, never stored
    TokenInfo info;
  };
  // Creates a random token (persisted if a TokenDb is attached, committed
  // before this returns). info.accessor is filled in. Blocking.
  kms::Result<Created> create(TokenInfo info, std::int64_t now);
  // Every live token (expired ones left out), by creation time.
  [[nodiscard]] std::vector<TokenInfo> list(std::int64_t now) const;
  [[nodiscard]] std::optional<TokenInfo> lookup_accessor(std::string_view accessor, std::int64_t now) const;
  // Revokes a created token by accessor: not_found if unknown, invalid_argument
  // for the dev root token and static tokens of the config. Blocking.
  kms::Result<TokenInfo> revoke(std::string_view accessor);
  // Drops expired created tokens from memory and the database. Blocking.
  kms::Result<std::size_t> purge_expired(std::int64_t now);

  // Registers a token (its hash). Returns its accessor.
  std::string add(const kms::SecureBytes& token, TokenInfo info);
  // Registers a token known only by its SHA-256 hex (static tokens of the config).
  std::string add_hashed(std::string hash, TokenInfo info);
  // Looks a presented token up; null if unknown or expired. The entry is
  // shared, not copied (this runs on every request); it is never modified
  // once published: renew() and reload replace it.
  [[nodiscard]] std::shared_ptr<const TokenInfo> lookup(std::string_view token, std::int64_t now) const;
  // Extends a renewable token by its TTL from now; nullopt if unknown/expired/not renewable.
  std::optional<TokenInfo> renew(std::string_view token, std::int64_t now);
  // Replaces every token that came from the config with `tokens` (SIGHUP).
  void replace_static(const std::vector<StaticTokenConfig>& tokens, std::int64_t now);

 private:
  mutable std::mutex mu_;
  std::unordered_map<TokenKey, std::shared_ptr<const TokenInfo>, TokenKeyHash, TokenKeyEqual> by_key_;
  std::unique_ptr<TokenDb> db_;  // set once by attach(); has its own lock
  Deferrer defer_;
};

class Authorizer {
 public:
  Authorizer(std::vector<PolicyConfig> policies, std::vector<ClientCertIdentity> certs);
  // True if any of the token's policies allows `op` on `key` (key may be empty
  // for operations that name no key, e.g. list).
  [[nodiscard]] bool allowed(const TokenInfo& token, Operation op, std::string_view key) const;
  // The identity of a verified client certificate, if the config binds one.
  [[nodiscard]] std::optional<TokenInfo> certificate_identity(std::string_view sha256) const;
  // True if `name` is "root" or a policy of the current configuration.
  [[nodiscard]] bool has_policy(std::string_view name) const;
  // Swaps policies and certificate identities atomically (SIGHUP).
  void replace(std::vector<PolicyConfig> policies, std::vector<ClientCertIdentity> certs);

 private:
  mutable std::shared_mutex mu_;
  std::vector<PolicyConfig> policies_;
  std::vector<ClientCertIdentity> certs_;
};

}  // namespace rootseal::daemon
