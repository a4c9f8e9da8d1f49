// rootseal::sync — the GCP Secret Manager provider's host settings
// (sync.stores.<name> of kind gcp). The provider is sync/src/providers/gcp/.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "rootseal/sync/host_store.hpp"

namespace rootseal::sync {

struct GcpHost {
  static constexpr std::string_view kind = "gcp";
  std::string project_id;    // an annotated store's projectID, when set, must match
  std::string gcp_endpoint;  // empty = https://secretmanager.googleapis.com
  std::string token_uri;     // empty = the key file's token_uri
  CredentialRef service_account_json;
  static std::span<const HostOption<GcpHost>> options();
};

}  // namespace rootseal::sync
