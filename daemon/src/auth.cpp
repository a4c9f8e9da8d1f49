#include "auth.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>

#include <cstdlib>
#include <cstring>

#include "admin_token_db.hpp"
#include "rootseal/kms/encoding.hpp"

namespace rootseal::daemon {

namespace {

using Digest = std::array<std::uint8_t, SHA256_DIGEST_LENGTH>;

Digest sha256(std::string_view text) {
  static EVP_MD* const md =
      EVP_MD_fetch(nullptr, "SHA256", nullptr);  // once: a fetch per call costs more than the hash
  Digest digest{};
  unsigned int n = 0;
  if (md == nullptr || EVP_Digest(text.data(), text.size(), digest.data(), &n, md, nullptr) != 1 ||
      n != digest.size()) {
    std::abort();  // SHA-256 is always available; a failing digest is a broken library
  }
  return digest;
}

struct MacCtxFree {
  void operator()(EVP_MAC_CTX* ctx) const noexcept { EVP_MAC_CTX_free(ctx); }
};

// This thread's HMAC-SHA256 context, keyed once with the process's table key
// (32 random bytes drawn at first use, kept in locked memory).
EVP_MAC_CTX* table_mac() {
  thread_local const std::unique_ptr<EVP_MAC_CTX, MacCtxFree> ctx = [] {
    static const kms::SecureBytes key = kms::SecureBytes::random(32);
    static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    EVP_MAC_CTX* c = mac == nullptr ? nullptr : EVP_MAC_CTX_new(mac);
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0), OSSL_PARAM_construct_end()};
    if (c == nullptr || EVP_MAC_init(c, key.data(), key.size(), params) != 1) std::abort();  // a broken library
    return std::unique_ptr<EVP_MAC_CTX, MacCtxFree>(c);
  }();
  return ctx.get();
}

TokenKey keyed(std::span<const std::uint8_t> bytes) {
  EVP_MAC_CTX* ctx = table_mac();
  TokenKey key;
  std::size_t n = 0;
  // A null key re-initialises the context with the key it already has.
  if (EVP_MAC_init(ctx, nullptr, 0, nullptr) != 1 || EVP_MAC_update(ctx, bytes.data(), bytes.size()) != 1 ||
      EVP_MAC_final(ctx, key.bytes.data(), &n, key.bytes.size()) != 1 || n != key.bytes.size()) {
    std::abort();
  }
  return key;
}

}  // namespace

std::string token_hash(std::string_view token) { return kms::hex_encode(sha256(token)); }

TokenKey token_table_key(std::string_view token) { return keyed(sha256(token)); }

TokenKey token_table_key_of_hash(std::string_view sha256_hex) {
  auto digest = kms::hex_decode(sha256_hex);
  if (digest && digest->size() == SHA256_DIGEST_LENGTH) return keyed(*digest);
  // Not a SHA-256 (the config and the TokenDb only hold valid ones): the MAC
  // of the text itself, which a presented token would only meet through a
  // SHA-256 preimage.
  return keyed(std::span(reinterpret_cast<const std::uint8_t*>(sha256_hex.data()), sha256_hex.size()));
}

std::size_t TokenKeyHash::operator()(const TokenKey& k) const noexcept {
  std::size_t h = 0;
  std::memcpy(&h, k.bytes.data(), sizeof h);
  return h;
}

bool TokenKeyEqual::operator()(const TokenKey& a, const TokenKey& b) const noexcept {
  return CRYPTO_memcmp(a.bytes.data(), b.bytes.data(), a.bytes.size()) == 0;
}

TokenStore::TokenStore() = default;
TokenStore::~TokenStore() = default;

kms::Result<void> TokenStore::attach(std::unique_ptr<TokenDb> db, std::int64_t now, Deferrer defer) {
  db_ = std::move(db);
  defer_ = std::move(defer);
  ROOTSEAL_TRY(db_->purge_expired(now));
  return reload();
}

kms::Result<void> TokenStore::reload() {
  if (!db_) return {};
  std::vector<StoredToken> stored;
  ROOTSEAL_TRY_ASSIGN(stored, db_->load_all());
  std::unordered_map<TokenKey, std::shared_ptr<const TokenInfo>, TokenKeyHash, TokenKeyEqual> fresh;
  for (auto& t : stored) {
    t.info.persistent = true;
    fresh[token_table_key_of_hash(t.hash)] = std::make_shared<const TokenInfo>(std::move(t.info));
  }
  std::lock_guard lock(mu_);
  for (auto it = by_key_.begin(); it != by_key_.end();) {
    if (!it->second->persistent) {
      ++it;
      continue;
    }
    const auto in_db = fresh.find(it->first);
    if (in_db != fresh.end() && in_db->second->accessor == it->second->accessor &&
        it->second->expire_time > in_db->second->expire_time) {
      in_db->second = it->second;  // renewed here; the db has not caught up yet
    }
    it = by_key_.erase(it);
  }
  for (auto& [key, info] : fresh) by_key_.insert_or_assign(key, std::move(info));
  return {};
}

kms::Result<TokenStore::Created> TokenStore::create(TokenInfo info, std::int64_t now) {
  // "rs." + 48 hex digits (192 random bits), built in locked memory.
  const auto raw = kms::SecureBytes::random(24);
  kms::SecureBytes token(3 + 2 * raw.size());
  std::memcpy(token.data(), "rs.", 3);
  kms::hex_encode_into(raw.span(), reinterpret_cast<char*>(token.data() + 3));
  const std::string_view text(reinterpret_cast<const char*>(token.data()), token.size());
  const std::string hash = token_hash(text);
  const TokenKey key = token_table_key(text);
  info.accessor = kms::hex_encode(kms::SecureBytes::random(12).span());  // an identifier, not a secret
  info.creation_time = now;
  info.expire_time = info.ttl_s > 0 ? now + info.ttl_s : 0;
  info.root = std::find(info.policies.begin(), info.policies.end(), "root") != info.policies.end();
  info.from_config = false;
  info.persistent = db_ != nullptr;
  // Durable before anyone sees it: the database first, then memory.
  if (db_) ROOTSEAL_TRY(db_->insert(hash, info));
  {
    std::lock_guard lock(mu_);
    by_key_[key] = std::make_shared<const TokenInfo>(info);
  }
  return Created{std::move(token), std::move(info)};
}

std::vector<TokenInfo> TokenStore::list(std::int64_t now) const {
  std::vector<TokenInfo> out;
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, info] : by_key_) {
      if (info->expire_time != 0 && now >= info->expire_time) continue;
      out.push_back(*info);
    }
  }
  std::sort(out.begin(), out.end(), [](const TokenInfo& a, const TokenInfo& b) {
    return a.creation_time != b.creation_time ? a.creation_time < b.creation_time : a.accessor < b.accessor;
  });
  return out;
}

std::optional<TokenInfo> TokenStore::lookup_accessor(std::string_view accessor, std::int64_t now) const {
  if (accessor.empty()) return std::nullopt;
  std::lock_guard lock(mu_);
  for (const auto& [key, info] : by_key_) {
    if (info->accessor != accessor) continue;
    if (info->expire_time != 0 && now >= info->expire_time) return std::nullopt;
    return *info;
  }
  return std::nullopt;
}

kms::Result<TokenInfo> TokenStore::revoke(std::string_view accessor) {
  TokenInfo found;
  {
    std::lock_guard lock(mu_);
    auto it = std::find_if(by_key_.begin(), by_key_.end(),
                           [&](const auto& kv) { return !accessor.empty() && kv.second->accessor == accessor; });
    if (it == by_key_.end()) return kms::fail(kms::Errc::not_found, "no token with accessor " + std::string(accessor));
    if (it->second->from_config) {
      return kms::fail(kms::Errc::invalid_argument,
                       "token " + std::string(accessor) + " (" + it->second->display_name +
                           ") is declared in the configuration: remove it there and reload (SIGHUP)");
    }
    if (!it->second->persistent && it->second->display_name == "root" && it->second->root) {
      return kms::fail(kms::Errc::invalid_argument, "the dev root token cannot be revoked; restart rootseald --dev");
    }
    found = *it->second;
  }
  // The database first: a revocation that did not commit must not look done.
  if (found.persistent && db_) {
    bool removed = false;
    ROOTSEAL_TRY_ASSIGN(removed, db_->remove(found.accessor));
    (void)removed;
  }
  std::lock_guard lock(mu_);
  for (auto it = by_key_.begin(); it != by_key_.end(); ++it) {
    if (it->second->accessor == found.accessor) {
      by_key_.erase(it);
      break;
    }
  }
  return found;
}

kms::Result<std::size_t> TokenStore::purge_expired(std::int64_t now) {
  std::size_t dropped = 0;
  if (db_) ROOTSEAL_TRY(db_->purge_expired(now));
  std::lock_guard lock(mu_);
  for (auto it = by_key_.begin(); it != by_key_.end();) {
    if (!it->second->from_config && it->second->expire_time != 0 && now >= it->second->expire_time) {
      it = by_key_.erase(it);
      ++dropped;
    } else {
      ++it;
    }
  }
  return dropped;
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
  by_key_[token_table_key_of_hash(hash)] = std::make_shared<const TokenInfo>(std::move(info));
  return accessor;
}

std::optional<TokenInfo> TokenStore::renew(std::string_view token, std::int64_t now) {
  if (token.empty() || token.size() > 512) return std::nullopt;
  const TokenKey key = token_table_key(token);
  std::lock_guard lock(mu_);
  const auto it = by_key_.find(key);
  if (it == by_key_.end() || !it->second->renewable) return std::nullopt;
  if (it->second->expire_time != 0 && now >= it->second->expire_time) return std::nullopt;
  if (it->second->ttl_s > 0) {
    // Published entries are shared with requests in flight: replace, never modify.
    auto renewed = std::make_shared<TokenInfo>(*it->second);
    renewed->expire_time = now + renewed->ttl_s;
    it->second = std::move(renewed);
  }
  if (it->second->persistent && db_ && it->second->ttl_s > 0) {
    // The new expiry is kept, off this (I/O) thread; losing it in a crash
    // only makes the token expire at its previous time.
    auto job = [db = db_.get(), accessor = it->second->accessor, expire = it->second->expire_time] {
      (void)db->set_expiry(accessor, expire);
    };
    if (defer_)
      defer_(std::move(job));
    else
      job();
  }
  return *it->second;
}

std::shared_ptr<const TokenInfo> TokenStore::lookup(std::string_view token, std::int64_t now) const {
  if (token.empty() || token.size() > 512) return nullptr;
  // Only the keyed MAC of the token meets the table: the bucket probed and
  // the constant-time comparisons depend on nothing a client can compute.
  const TokenKey key = token_table_key(token);
  std::lock_guard lock(mu_);
  const auto it = by_key_.find(key);
  if (it == by_key_.end()) return nullptr;
  if (it->second->expire_time != 0 && now >= it->second->expire_time) return nullptr;
  return it->second;
}

void TokenStore::replace_static(const std::vector<StaticTokenConfig>& tokens, std::int64_t now) {
  std::unordered_map<TokenKey, TokenInfo, TokenKeyHash, TokenKeyEqual> fresh;
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
    fresh.emplace(token_table_key_of_hash(t.sha256), std::move(info));
  }
  std::lock_guard lock(mu_);
  for (auto it = by_key_.begin(); it != by_key_.end();) {
    const auto f = fresh.find(it->first);
    if (it->second->from_config && f == fresh.end()) {
      it = by_key_.erase(it);
      continue;
    }
    if (f != fresh.end()) {
      // An unchanged token keeps its accessor and its renewed expiry.
      f->second.accessor = it->second->accessor;
      if (it->second->ttl_s == f->second.ttl_s) f->second.expire_time = it->second->expire_time;
    }
    ++it;
  }
  for (auto& [key, info] : fresh) by_key_[key] = std::make_shared<const TokenInfo>(std::move(info));
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

bool Authorizer::has_policy(std::string_view name) const {
  if (name == "root") return true;
  std::shared_lock lock(mu_);
  return std::any_of(policies_.begin(), policies_.end(), [&](const PolicyConfig& p) { return p.name == name; });
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
