#include "rootseal/daemon/state.hpp"
#include "etcd_token_db.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>

#include "pin_source.hpp"
#include "rootseal/etcdstore/etcd_store.hpp"

namespace rootseal::daemon {

using kms::Errc;
using kms::fail;

kms::Result<StateDirLock> StateDirLock::acquire(const std::filesystem::path& state_dir, std::string_view holder) {
  const auto path = state_dir / "rootseald.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return fail(Errc::storage_failure, "cannot open " + path.string() + ": " + kms::errno_text(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string who;
    if (err == EWOULDBLOCK) {
      char buf[128] = {};
      const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
      for (ssize_t i = 0; i < n && buf[i] != '\n'; ++i) {
        const char c = buf[i];
        who.push_back(c >= 0x20 && c < 0x7f ? c : '?');  // the file is ours, but print it safely
      }
    }
    ::close(fd);
    if (err != EWOULDBLOCK) {
      return fail(Errc::storage_failure, "cannot lock " + path.string() + ": " + kms::errno_text(err));
    }
    return fail(Errc::conflict, "the state folder " + state_dir.string() + " is in use by " +
                                    (who.empty() ? std::string("another process") : who) + " (it holds " +
                                    path.string() + "): stop it first");
  }
  const std::string text = "pid " + std::to_string(::getpid()) + " " + std::string(holder) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    const int err = errno;
    ::close(fd);
    return fail(Errc::storage_failure, "cannot write " + path.string() + ": " + kms::errno_text(err));
  }
  return StateDirLock(fd);
}

StateDirLock::StateDirLock(StateDirLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

StateDirLock& StateDirLock::operator=(StateDirLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

StateDirLock::~StateDirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

kms::Result<etcd::ClientConfig> etcd_client_config(const EtcdSection& e) {
  etcd::ClientConfig c;
  c.endpoints = e.endpoints;
  c.tls.ca_file = e.ca_file;
  c.tls.cert_file = e.cert_file;
  c.tls.key_file = e.key_file;
  c.tls.server_name = e.server_name;
  c.username = e.username;
  if (!e.password_file.empty()) {
    auto password = read_secret_file(e.password_file);
    if (!password) return fail(password.error().code, "etcd.password_file: " + password.error().message);
    c.password = std::move(*password);
  }
  c.connect_timeout = e.connect_timeout;
  c.request_timeout = e.request_timeout;
  c.watch_idle_timeout = e.watch_idle_timeout;
  return c;
}

kms::Result<std::unique_ptr<etcdstore::EtcdStore>> open_etcd_store(const EtcdSection& e) {
  etcdstore::EtcdStoreConfig c;
  c.prefix = e.prefix;
  ROOTSEAL_TRY_ASSIGN(c.client, etcd_client_config(e));
  auto store = etcdstore::EtcdStore::open(std::move(c));
  if (!store) return fail(store.error().code, "storage: etcd: " + store.error().message);
  return store;
}

}  // namespace rootseal::daemon
