// rootseal::sync — the AWS Secrets Manager provider's host settings
// (sync.stores.<name> of kind aws). The provider is sync/src/providers/aws/.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "rootseal/kms/error.hpp"
#include "rootseal/sync/host_store.hpp"

namespace rootseal::sync {

struct AwsHost {
  static constexpr std::string_view kind = "aws";
  std::string region;    // required; an annotated store must name the same region
  std::string endpoint;  // override (tests: moto_server); empty = https://secretsmanager.<region>.amazonaws.com
  CredentialRef access_key_id;
  CredentialRef secret_access_key;
  CredentialRef session_token;  // optional
  static std::span<const HostOption<AwsHost>> options();
  // Between options, once each is read (`where`: "sync.stores.<name>").
  [[nodiscard]] kms::Result<void> check(const std::string& where) const;
};

}  // namespace rootseal::sync
