#include "seal_manager.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "log.hpp"

namespace rootseal::daemon {

namespace asio = boost::asio;

namespace {
std::int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

SealManager::SealManager(asio::io_context& io, asio::thread_pool& blocking, kms::RootOfTrust& root,
                         kms::Keyring& keyring, std::chrono::milliseconds interval, Listener on_change)
    : blocking_(blocking),
      root_(root),
      keyring_(keyring),
      interval_(interval),
      on_change_(std::move(on_change)),
      strand_(asio::make_strand(io)),
      timer_(strand_) {
  status_.since_unix = now_unix();
}

void SealManager::start() {
  running_ = true;
  asio::co_spawn(strand_, loop(), asio::detached);
}

void SealManager::stop() {
  running_ = false;
  asio::post(strand_, [this] { timer_.cancel(); });
}

void SealManager::report_failure() {
  asio::post(strand_, [this] { timer_.cancel(); });
}

SealStatus SealManager::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

asio::awaitable<void> SealManager::loop() {
  while (running_) {
    // The blocking work runs on the pool; this coroutine resumes on the strand.
    co_await asio::co_spawn(
        blocking_,
        [this]() -> asio::awaitable<void> {
          check();
          co_return;
        },
        asio::use_awaitable);
    if (!running_) break;
    timer_.expires_after(interval_);
    (void)co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

SealStatus SealManager::check_now() {
  check();
  return status();
}

void SealManager::set_probe_hooks(std::function<void()> ok, std::function<void()> failed) {
  on_probe_ok_ = std::move(ok);
  on_probe_failed_ = std::move(failed);
}

void SealManager::set_after_check(std::function<void()> hook) { after_check_ = std::move(hook); }

void SealManager::check() {
  std::lock_guard serial(check_mu_);
  check_root();
  if (after_check_) after_check_();
}

void SealManager::check_root() {
  auto probe = root_.probe();
  {
    std::lock_guard lock(mu_);
    ++status_.probes;
    if (!probe) ++status_.probe_failures;
    status_.last_probe_ok = probe.has_value();
  }
  if (probe && on_probe_ok_) on_probe_ok_();
  if (!probe && on_probe_failed_) on_probe_failed_();
  if (keyring_.is_sealed()) {
    if (!probe) {
      set(true, probe.error().message);
      return;
    }
    const auto started = std::chrono::steady_clock::now();
    auto unsealed = keyring_.unseal();
    if (!unsealed) {
      set(true, unsealed.error().message);
      return;
    }
    auto kcv = root_.key_check_value();
    {
      std::lock_guard lock(mu_);
      if (kcv) status_.root_kcv = *kcv;
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    // The root mechanism last, and only where there is a choice (pkcs11).
    const std::string mechanism = root_.mechanism();
    std::vector<log::Field> fields = {{"root", root_.kind()},
                                      {"keys", keyring_.key_count()},
                                      {"versions", keyring_.version_count()},
                                      {"unseal_ms", ms.count()}};
    if (auto kk = keyring_.keyring_key_status()) {
      fields.emplace_back("keyring_key", static_cast<std::int64_t>(kk->id));
      fields.emplace_back("keyring_key_kcv", kk->kcv);
    }
    if (!mechanism.empty()) fields.emplace_back("mechanism", mechanism);
    log::write(log::Level::info, "unsealed", std::span<const log::Field>(fields));
    // A store from before the keyring key, or an interrupted keyring-key
    // rotation, is settled at unseal; what could not be is said here.
    if (auto kk = keyring_.keyring_key_status(); kk && (kk->pending_versions > 0 || !kk->settle_error.empty())) {
      log::warn("keyring key: versions not yet under the current keyring key",
                {{"pending_versions", static_cast<std::int64_t>(kk->pending_versions)},
                 {"reason", kk->settle_error},
                 {"keyring_keys", static_cast<std::int64_t>(kk->keyring_keys)}});
    }
    set(false, "");
    return;
  }
  if (!probe) {
    keyring_.seal();
    log::error("root of trust lost, sealed", {{"root", root_.kind()}, {"reason", probe.error().message}});
    set(true, probe.error().message);
  }
}

void SealManager::set(bool sealed, std::string reason) {
  SealStatus copy;
  {
    std::lock_guard lock(mu_);
    const bool changed = status_.sealed != sealed || status_.reason != reason;
    if (!changed) return;
    if (status_.sealed != sealed) status_.since_unix = now_unix();
    if (!sealed) ++status_.unseal_count;
    if (sealed && status_.reason != reason) log::warn("sealed", {{"reason", reason}});
    status_.sealed = sealed;
    status_.reason = std::move(reason);
    copy = status_;
  }
  if (on_change_) on_change_(copy);
}

}  // namespace rootseal::daemon
