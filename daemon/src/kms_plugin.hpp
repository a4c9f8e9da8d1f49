// The Kubernetes KMS v2 plugin inside rootseald (docs/kms-plugin.md): the
// kmsplugin module's handler and server, wired to the keyring, the seal
// manager's probe (self-test), the audit log and the metrics.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "rootseal/daemon/audit.hpp"
#include "rootseal/daemon/config.hpp"
#include "rootseal/kmsplugin/handler.hpp"
#include "rootseal/kmsplugin/server.hpp"
#include "metrics.hpp"

namespace rootseal::daemon {

class KmsPlugin {
 public:
  // audit may be null (audit.enabled: false).
  KmsPlugin(const KmsPluginConfig& config, kms::Keyring& keyring, kms::RootOfTrust& root, std::string cluster_id,
            AuditLog* audit, Metrics& metrics);
  ~KmsPlugin();

  kms::Result<void> start();
  void stop();
  // Blocking: the root-of-trust round trip behind Status (the seal probe's after-check hook).
  void self_test();
  // Blocking: a new version of the plugin's transit key (`rootseal kms
  // rotate`); from now on Encrypt and Status report the new key_id.
  struct Rotation {
    std::string key;
    std::uint32_t version = 0;
    std::string key_id;
  };
  kms::Result<Rotation> rotate();

 private:
  kms::Result<void> on_call(const kmsplugin::CallRecord& call);
  void render(std::string& out) const;

  static constexpr std::size_t kMethods = 3;  // Status, Encrypt, Decrypt
  static constexpr std::size_t kCodes = 5;    // OK, INVALID_ARGUMENT, FAILED_PRECONDITION, INTERNAL, UNAVAILABLE
  static constexpr std::size_t kSlots = Metrics::kBuckets.size() + 1;
  std::array<std::atomic<std::uint64_t>, kMethods * kCodes> calls_{};
  std::array<std::atomic<std::uint64_t>, kMethods * kSlots> latency_{};
  std::array<std::atomic<std::uint64_t>, kMethods> latency_sum_ns_{};
  std::atomic<std::uint64_t> refused_{0};
  std::mutex health_mu_;
  std::string last_reason_ = "not run";  // the last self-test's unhealthy_reason(), logged on change

  kms::Keyring& keyring_;
  std::string cluster_id_;
  kms::RootOfTrust& root_;
  AuditLog* audit_;
  kmsplugin::Handler handler_;
  std::unique_ptr<kmsplugin::Server> server_;
};

}  // namespace rootseal::daemon
