#include "auth.hpp"

#include <openssl/sha.h>

#include <algorithm>
#include <array>

#include "rootseal/kms/encoding.hpp"

namespace rootseal::daemon {

std::string token_hash(std::string_view token) {
  std::array<std::uint8_t, SHA256_DIGEST_LENGTH> digest{};
  ::SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest.data());
  return kms::hex_encode(digest);
}

std::string TokenStore::add(const kms::SecureBytes& token, TokenInfo info) {
  return add_hashed(token_hash(std::string_view(reinterpret_cast<const char*>(token.data()), token.size())),
                    std::move(info));
}

std::string TokenStore::add_hashed(std::string hash, TokenInfo info) {
  if (info.accessor.empty()) {
    info.accessor = kms::hex_encode(kms::SecureBytes::random(12).span());  // an identifier, not a secret
  }
  std::string accessor = info.accessor;
  std::lock_guard lock(mu_);
  by_hash_[std::move(hash)] = std::move(info);
  return accessor;
}

std::optional<TokenInfo> TokenStore::renew(std::string_view token, std::int64_t now) {
  if (token.empty() || token.size() > 512) return std::nullopt;
  const std::string hash = token_hash(token);
  std::lock_guard lock(mu_);
  const auto it = by_hash_.find(hash);
  if (it == by_hash_.end() || !it->second.renewable) return std::nullopt;
  if (it->second.expire_time != 0 && now >= it->second.expire_time) return std::nullopt;
  if (it->second.ttl_s > 0) it->second.expire_time = now + it->second.ttl_s;
  return it->second;
}

std::optional<TokenInfo> TokenStore::lookup(std::string_view token, std::int64_t now) const {
  if (token.empty() || token.size() > 512) return std::nullopt;
  // The lookup is by hash: the hash, not the token, meets the table, so the
  // comparison leaks nothing useful about the secret.
  const std::string hash = token_hash(token);
  std::lock_guard lock(mu_);
  const auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return std::nullopt;
  if (!kms::constant_time_equal(it->first, hash)) return std::nullopt;
  if (it->second.expire_time != 0 && now >= it->second.expire_time) return std::nullopt;
  return it->second;
}

void TokenStore::replace_static(const std::vector<StaticTokenConfig>& tokens, std::int64_t now) {
  std::unordered_map<std::string, TokenInfo> fresh;
  for (const auto& t : tokens) {
    TokenInfo info;
    info.display_name = t.name;
    info.policies = t.policies;
    info.creation_time = now;
    info.ttl_s = t.ttl_s;
    info.expire_time = t.ttl_s > 0 ? now + t.ttl_s : 0;
    info.renewable = t.renewable;
    info.root = std::find(t.policies.begin(), t.policies.end(), "root") != t.policies.end();
    info.from_config = true;
    info.accessor = kms::hex_encode(kms::SecureBytes::random(12).span());
    fresh.emplace(t.sha256, std::move(info));
  }
  std::lock_guard lock(mu_);
  for (auto it = by_hash_.begin(); it != by_hash_.end();) {
    const auto f = fresh.find(it->first);
    if (it->second.from_config && f == fresh.end()) {
      it = by_hash_.erase(it);
      continue;
    }
    if (f != fresh.end()) {
      // An unchanged token keeps its accessor and its renewed expiry.
      f->second.accessor = it->second.accessor;
      if (it->second.ttl_s == f->second.ttl_s) f->second.expire_time = it->second.expire_time;
    }
    ++it;
  }
  for (auto& [hash, info] : fresh) by_hash_[hash] = std::move(info);
}

Authorizer::Authorizer(std::vector<PolicyConfig> policies, std::vector<ClientCertIdentity> certs)
    : policies_(std::move(policies)), certs_(std::move(certs)) {}

void Authorizer::replace(std::vector<PolicyConfig> policies, std::vector<ClientCertIdentity> certs) {
  std::unique_lock lock(mu_);
  policies_ = std::move(policies);
  certs_ = std::move(certs);
}

std::optional<TokenInfo> Authorizer::certificate_identity(std::string_view sha256) const {
  if (sha256.size() != 64) return std::nullopt;
  std::shared_lock lock(mu_);
  for (const auto& c : certs_) {
    if (kms::constant_time_equal(c.sha256, sha256)) {
      TokenInfo info;
      info.display_name = "cert:" + c.name;
      info.accessor = "cert:" + c.sha256.substr(0, 16);
      info.policies = c.policies;
      info.root = std::find(c.policies.begin(), c.policies.end(), "root") != c.policies.end();
      return info;
    }
  }
  return std::nullopt;
}

bool Authorizer::allowed(const TokenInfo& token, Operation op, std::string_view key) const {
  if (token.root) return true;
  std::shared_lock lock(mu_);
  for (const auto& name : token.policies) {
    if (name == "root") return true;
    for (const auto& p : policies_) {
      if (p.name != name || !p.operations.contains(op)) continue;
      if (key.empty()) return true;
      for (const auto& pattern : p.keys) {
        if (pattern == "*") return true;
        if (!pattern.empty() && pattern.back() == '*') {
          if (key.starts_with(std::string_view(pattern).substr(0, pattern.size() - 1))) return true;
        } else if (pattern == key) {
          return true;
        }
      }
    }
  }
  return false;
}

}  // namespace rootseal::daemon
