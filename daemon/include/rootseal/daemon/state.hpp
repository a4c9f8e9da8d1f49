// rootseal::daemon — the state a host keeps, shared by rootseald and the
// offline `rootseal storage migrate`: the lock on the state folder, and the
// etcd store of `storage: etcd` opened from the configuration.
#pragma once

#include <filesystem>
#include <memory>
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

// The etcd store of `storage: etcd` (the etcd section); the password is read
// now from its file into locked memory. Does not contact etcd.
kms::Result<std::unique_ptr<etcdstore::EtcdStore>> open_etcd_store(const EtcdSection& etcd);

}  // namespace rootseal::daemon
