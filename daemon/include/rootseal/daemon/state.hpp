// rootseal::daemon — the state a host keeps, shared by rootseald and the
// offline `rootseal storage migrate`: the lock on the state folder, and the
// etcd store of `storage: etcd` opened from the configuration.
#pragma once

#include <filesystem>
#include <memory>
#include <span>
#include <string_view>

#include "rootseal/daemon/config.hpp"
#include "rootseal/kms/error.hpp"

namespace rootseal::etcdstore {
class EtcdStore;
}

namespace rootseal::daemon {

// An exclusive lock (flock) on <state_dir>/rootseald.lock, held while the
// process lives: rootseald holds it from start to exit, and the offline
// commands that rewrite the state take it too, so neither runs while the
// other does. The file names its holder ("pid 1234 rootseald"); the kernel
// drops the lock when the holder exits or is killed.
class StateDirLock {
 public:
  // conflict, naming the holder, when another process holds it.
  static kms::Result<StateDirLock> acquire(const std::filesystem::path& state_dir, std::string_view holder);
  StateDirLock(StateDirLock&& other) noexcept;
  StateDirLock& operator=(StateDirLock&& other) noexcept;
  StateDirLock(const StateDirLock&) = delete;
  StateDirLock& operator=(const StateDirLock&) = delete;
  ~StateDirLock();

 private:
  explicit StateDirLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// The etcd store of `storage: etcd` (the etcd section). Does not contact etcd.
kms::Result<std::unique_ptr<etcdstore::EtcdStore>> open_etcd_store(const EtcdSection& etcd);

// The tokens created with `rootseal token create` (hashes, never tokens),
// copied between a host's <state_dir>/tokens.db and the cluster's etcd
// (<prefix>tokens/): by `rootseal storage migrate` in either direction, and
// by rootseald with storage: etcd at start (a tokens.db left from before is
// imported, then renamed tokens.db.imported). A token the target holds
// identical is skipped; one whose accessor the target holds with another
// hash is a conflict, refused before anything is written.
struct TokensCopied {
  std::size_t copied = 0;
  std::size_t present = 0;  // already there, identical
};
kms::Result<TokensCopied> copy_created_tokens(const std::filesystem::path& tokens_db, const EtcdSection& etcd,
                                              bool to_etcd);
// A snapshot's tokens section (a tokens.db image) into etcd (rootseal
// snapshot restore into a prefix): as above; with `force`, a token held with
// other contents is replaced by the snapshot's.
kms::Result<TokensCopied> restore_created_tokens(std::span<const std::uint8_t> tokens_image, const EtcdSection& etcd,
                                                 bool force);

}  // namespace rootseal::daemon
