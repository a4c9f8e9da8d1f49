// Tokens and policies: who may do what to which key.
//
// A token is a random secret; only its SHA-256 is kept, and presented tokens
// are compared by hash in constant time. Each token has an accessor (a second,
// non-secret identifier for logs and audit), a TTL and a set of policies.
// Policies are declared in the configuration: key name patterns (exact, or a
// prefix ending in '*') and the operations allowed on them. The policy "root"
// allows everything.
#pragma once

#include <cstdint>
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
  std::int64_t ttl_s = 0;         // 0 = no expiry
  std::int64_t expire_time = 0;   // 0 = never
  bool renewable = false;
  bool root = false;
  bool from_config = false;  // a static token of the config (replaced on reload)
};

// Hash of a presented token (SHA-256, hex): the only form ever stored.
std::string token_hash(std::string_view token);

class TokenStore {
 public:
  // Registers a token (its hash). Returns its accessor.
  std::string add(const kms::SecureBytes& token, TokenInfo info);
  // Registers a token known only by its SHA-256 hex (static tokens of the config).
  std::string add_hashed(std::string hash, TokenInfo info);
  // Looks a presented token up; nullopt if unknown or expired.
  [[nodiscard]] std::optional<TokenInfo> lookup(std::string_view token, std::int64_t now) const;
  // Extends a renewable token by its TTL from now; nullopt if unknown/expired/not renewable.
  std::optional<TokenInfo> renew(std::string_view token, std::int64_t now);
  // Replaces every token that came from the config with `tokens` (SIGHUP).
  void replace_static(const std::vector<StaticTokenConfig>& tokens, std::int64_t now);

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, TokenInfo> by_hash_;
};

class Authorizer {
 public:
  Authorizer(std::vector<PolicyConfig> policies, std::vector<ClientCertIdentity> certs);
  // True if any of the token's policies allows `op` on `key` (key may be empty
  // for operations that name no key, e.g. list).
  [[nodiscard]] bool allowed(const TokenInfo& token, Operation op, std::string_view key) const;
  // The identity of a verified client certificate, if the config binds one.
  [[nodiscard]] std::optional<TokenInfo> certificate_identity(std::string_view sha256) const;
  // Swaps policies and certificate identities atomically (SIGHUP).
  void replace(std::vector<PolicyConfig> policies, std::vector<ClientCertIdentity> certs);

 private:
  mutable std::shared_mutex mu_;
  std::vector<PolicyConfig> policies_;
  std::vector<ClientCertIdentity> certs_;
};

}  // namespace rootseal::daemon
