// The AWS provider's host settings (rootseal/sync/providers/aws.hpp).
#include "rootseal/sync/providers/aws.hpp"

namespace rootseal::sync {

std::span<const HostOption<AwsHost>> AwsHost::options() {
  static constexpr HostOption<AwsHost> kOptions[] = {
      {.name = "region", .field = &AwsHost::region, .required = true},
      {.name = "endpoint", .field = &AwsHost::endpoint, .url = true},
      {.name = "access_key_id", .field = &AwsHost::access_key_id},
      {.name = "secret_access_key", .field = &AwsHost::secret_access_key},
      {.name = "session_token", .field = &AwsHost::session_token},
  };
  return kOptions;
}

kms::Result<void> AwsHost::check(const std::string& where) const {
  if (!access_key_id.set() || !secret_access_key.set()) {
    return kms::fail(kms::Errc::invalid_argument, where + ": aws needs access_key_id and secret_access_key");
  }
  return {};
}

}  // namespace rootseal::sync
