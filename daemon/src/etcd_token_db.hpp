// The tokens created over the admin socket, on etcd (storage: etcd): shared
// by every host of the cluster, so a token created, renewed or revoked on one
// host is the same on all of them.
//
// One value per token, `<prefix>tokens/<accessor>`, JSON:
//   {"v":1,"hash":"<SHA-256 hex of the token>","accessor":"…","display_name":"…",
//    "policies":["…"],"creation_time":…,"ttl_s":…,"expire_time":…,"renewable":…}
// never the token itself. Creation is a txn on create_revision == 0; a
// renewal or a purge compares the mod_revision it read, so a renewal on one
// host and a purge on another never lose the renewal. A value that does not
// parse, or whose accessor is not its key's, is left out (counted:
// ignored()), never trusted.
//
// The watch covers <prefix>tokens/ from the revision of the last load_all;
// `changed` runs on the store's own thread after each batch of events (and
// after a compaction): it must only post work elsewhere.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "admin_token_db.hpp"
#include "rootseal/daemon/config.hpp"
#include "rootseal/etcd/client.hpp"

namespace rootseal::daemon {

// The etcd client settings of the etcd section (the keyring's store and the
// tokens' use the same); the password is read now from its file into locked
// memory. Defined in state.cpp.
kms::Result<etcd::ClientConfig> etcd_client_config(const EtcdSection& etcd);

// The value of one token (the parsers are public for the tests and the fuzzer).
std::string serialize_token_record(const StoredToken& token);
// nullopt unless `text` is a well-formed record of the token `accessor`.
std::optional<StoredToken> parse_token_record(std::string_view accessor, std::string_view text);

class EtcdTokenDb final : public TokenDb {
 public:
  // Starts the store's I/O thread; does not contact etcd.
  static kms::Result<std::unique_ptr<EtcdTokenDb>> open(etcd::ClientConfig client, std::string prefix);
  ~EtcdTokenDb() override;
  EtcdTokenDb(const EtcdTokenDb&) = delete;
  EtcdTokenDb& operator=(const EtcdTokenDb&) = delete;

  kms::Result<std::vector<StoredToken>> load_all() override;
  kms::Result<void> insert(const std::string& hash, const TokenInfo& info) override;
  kms::Result<bool> remove(std::string_view accessor) override;
  kms::Result<void> set_expiry(std::string_view accessor, std::int64_t expire_time) override;
  kms::Result<std::size_t> purge_expired(std::int64_t now) override;
  [[nodiscard]] bool shared() const noexcept override { return true; }
  void start_watch(std::function<void()> changed) override;
  void stop_watch() override;

  // Values under the prefix that load_all left out (malformed), so far.
  [[nodiscard]] std::size_t ignored() const noexcept;

  struct Impl;

 private:
  explicit EtcdTokenDb(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rootseal::daemon
