// AWS Secrets Manager: pull (GetSecretValue) and push (DescribeSecret,
// CreateSecret, GetSecretValue, PutSecretValue, RestoreSecret, DeleteSecret)
// over the JSON 1.1 protocol, signed with SigV4. Writes go through a token
// bucket (AwsSpec::writes_per_second, default 50/s — the PutSecretValue quota);
// throttling and 5xx answers are retried with backoff, a write reusing its
// ClientRequestToken so a retry can never create a second version.
#pragma once

#include <atomic>
#include <functional>
#include <memory>

#include "providers/store_health.hpp"
#include "rootseal/sync/provider.hpp"

namespace rootseal::sync::providers {

struct AwsCounters {
  std::atomic<std::size_t> calls{0};      // every API call (retries included)
  std::atomic<std::size_t> writes{0};     // CreateSecret + PutSecretValue + DeleteSecret + RestoreSecret
  std::atomic<std::size_t> sts_calls{0};  // AssumeRoleWithWebIdentity (web identity)
};

class AwsSecretsManager : public Provider, public PushProvider {
 public:
  [[nodiscard]] std::string_view kind() const noexcept override { return "aws"; }
  // Overrides both bases' validate() (one answer for pull and push).
  Task<void> validate() override = 0;
  [[nodiscard]] virtual const AwsCounters& counters() const noexcept = 0;
};

// The tag every secret rootseal creates carries (and that it requires before
// touching an existing secret).
inline constexpr std::string_view kManagedByKey = "managed-by";
inline constexpr std::string_view kManagedByValue = "rootseal";

kms::Result<std::shared_ptr<AwsSecretsManager>> make_aws_provider(const boost::asio::any_io_executor& executor,
                                                                  AwsSpec spec,
                                                                  std::shared_ptr<StoreHealth> health = nullptr);

}  // namespace rootseal::sync::providers
