#include "auto_rotate.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "rootseal/daemon/audit.hpp"
#include "log.hpp"
#include "metrics.hpp"

namespace rootseal::daemon {

namespace asio = boost::asio;

AutoRotator::AutoRotator(asio::io_context& io, asio::thread_pool& blocking, kms::Keyring& keyring,
                         std::chrono::milliseconds interval, AuditLog* audit)
    : blocking_(blocking),
      keyring_(keyring),
      interval_(interval),
      audit_(audit),
      strand_(asio::make_strand(io)),
      timer_(strand_) {}

void AutoRotator::register_metrics(Metrics& metrics) {
  metrics.add_gauge("rootseal_auto_rotations_total", "Keys rotated because their auto_rotate_period had passed.",
                    [this] { return static_cast<double>(rotations_.load()); });
  metrics.add_gauge("rootseal_auto_rotation_failures_total",
                    "Automatic rotations that failed (tried again at the next check).",
                    [this] { return static_cast<double>(failures_.load()); });
  metrics.add_gauge("rootseal_auto_rotation_checks_total", "Passes of the automatic rotation check while unsealed.",
                    [this] { return static_cast<double>(checks_.load()); });
}

void AutoRotator::start() {
  running_ = true;
  asio::co_spawn(strand_, loop(), asio::detached);
}

void AutoRotator::stop() {
  running_ = false;
  asio::post(strand_, [this] { timer_.cancel(); });
}

asio::awaitable<void> AutoRotator::loop() {
  while (running_) {
    timer_.expires_after(interval_);
    (void)co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    if (!running_) break;
    // Rotation wraps new material with the root of trust: the blocking pool.
    (void)co_await asio::co_spawn(
        blocking_, [this]() -> asio::awaitable<std::size_t> { co_return check_now(); }, asio::use_awaitable);
  }
}

std::size_t AutoRotator::check_now() {
  if (keyring_.is_sealed()) return 0;
  auto due = keyring_.due_for_rotation();
  if (!due) return 0;  // sealed meanwhile
  ++checks_;
  std::size_t rotated = 0;
  for (const auto& name : *due) {
    const auto started = std::chrono::steady_clock::now();
    auto r = keyring_.rotate_if_due(name);
    AuditRecord record;
    record.request_id = "auto-rotate";
    record.remote = "auto-rotate";
    record.method = "TIMER";
    record.path = "/v1/transit/keys/" + name + "/rotate";
    record.operation = "rotate";
    record.key = name;
    record.latency_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    if (!r) {
      ++failures_;
      log::warn("automatic rotation failed; tried again at the next check",
                {{"key", name}, {"reason", r.error().message}});
      record.status = 500;
      record.outcome = "error";
      record.error = r.error().message;
    } else if (!r->has_value()) {
      continue;  // no longer due: another host rotated it, or its period changed
    } else {
      ++rotations_;
      ++rotated;
      const auto& info = **r;
      log::info("key rotated automatically", {{"key", name},
                                              {"version", static_cast<std::int64_t>(info.latest_version)},
                                              {"auto_rotate_period_s", info.config.auto_rotate_period_s}});
      record.key_version = info.latest_version;
      record.status = 200;
      record.outcome = "ok";
    }
    if (audit_ != nullptr) {
      if (auto w = audit_->write(record); !w) {
        log::error("audit log: an automatic rotation could not be recorded",
                   {{"key", name}, {"reason", w.error().message}});
      }
    }
  }
  return rotated;
}

}  // namespace rootseal::daemon
