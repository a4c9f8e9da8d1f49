// Automatic key rotation (a key's auto_rotate_period, Vault's semantics):
// every auto_rotate.check_interval, on the blocking pool, each key whose
// latest version is older than its period gets a new version. With a shared
// store (storage: etcd) every host checks and the keyring's re-check against
// the store (Keyring::rotate_if_due) makes it one version per period between
// them. Each rotation is logged, audited (operation "rotate", remote
// "auto-rotate") and counted.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <chrono>

#include "rootseal/kms/keyring.hpp"

namespace rootseal::daemon {

class AuditLog;
class Metrics;

class AutoRotator {
 public:
  AutoRotator(boost::asio::io_context& io, boost::asio::thread_pool& blocking, kms::Keyring& keyring,
              std::chrono::milliseconds interval, AuditLog* audit);
  void register_metrics(Metrics& metrics);
  void start();
  void stop();
  // One pass now (blocking: call it on the blocking pool). Returns how many
  // keys it rotated.
  std::size_t check_now();

 private:
  boost::asio::awaitable<void> loop();

  boost::asio::thread_pool& blocking_;
  kms::Keyring& keyring_;
  std::chrono::milliseconds interval_;
  AuditLog* audit_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::steady_timer timer_;
  std::atomic<bool> running_{false};
  std::atomic<std::uint64_t> rotations_{0};
  std::atomic<std::uint64_t> failures_{0};
  std::atomic<std::uint64_t> checks_{0};
};

}  // namespace rootseal::daemon
