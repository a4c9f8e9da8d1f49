// The sealed/unsealed state machine.
//
//   sealed --(root probe ok, keyring unsealed)--> unsealed
//   unsealed --(root probe fails, or an operation reports the root gone)--> sealed
//
// A loop on the I/O context wakes every probe_interval (or at once when an
// operation reports trouble) and does the blocking work on the blocking pool.
// Sealed, every crypto endpoint answers 503; the daemon keeps running and
// unseals by itself when the root of trust comes back.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>

#include "rootseal/kms/keyring.hpp"
#include "rootseal/kms/root_of_trust.hpp"

namespace rootseal::daemon {

struct SealStatus {
  bool sealed = true;
  std::string reason = "starting";  // why sealed; empty when unsealed
  std::int64_t since_unix = 0;
  std::uint64_t unseal_count = 0;
  std::string root_kcv;  // key check value of the root, once known
  // Probes of the root of trust since start (the loop's and check_now's), the
  // failed ones, and whether the last one succeeded (metrics).
  std::uint64_t probes = 0;
  std::uint64_t probe_failures = 0;
  bool last_probe_ok = false;
};

class SealManager {
 public:
  using Listener = std::function<void(const SealStatus&)>;

  SealManager(boost::asio::io_context& io, boost::asio::thread_pool& blocking, kms::RootOfTrust& root,
              kms::Keyring& keyring, std::chrono::milliseconds interval, Listener on_change = {});

  void start();
  void stop();
  // An operation saw the root of trust fail (unavailable/sealed): check now.
  void report_failure();
  [[nodiscard]] SealStatus status() const;
  // Runs one check now (the same as the loop's, serialized with it) and
  // returns the status after it. Blocking: call it on the blocking pool.
  SealStatus check_now();
  // Called (on the blocking pool) after each probe of the root of trust that
  // succeeded / failed. Set before start().
  void set_probe_hooks(std::function<void()> ok, std::function<void()> failed);
  // Called (on the blocking pool) at the end of every check, sealed or not:
  // the KMS plugin's self-test runs there. Set before start().
  void set_after_check(std::function<void()> hook);

 private:
  boost::asio::awaitable<void> loop();
  void check();  // runs on the blocking pool: check_root(), then the after-check hook
  void check_root();
  void set(bool sealed, std::string reason);

  boost::asio::thread_pool& blocking_;
  kms::RootOfTrust& root_;
  kms::Keyring& keyring_;
  std::chrono::milliseconds interval_;
  Listener on_change_;
  std::function<void()> on_probe_ok_;
  std::function<void()> on_probe_failed_;
  std::function<void()> after_check_;
  std::mutex check_mu_;  // one check at a time (the loop's or check_now's)
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::steady_timer timer_;
  std::atomic<bool> running_{false};
  mutable std::mutex mu_;
  SealStatus status_;
};

}  // namespace rootseal::daemon
