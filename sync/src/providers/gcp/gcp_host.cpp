// The GCP provider's host settings (rootseal/sync/providers/gcp.hpp).
#include "rootseal/sync/providers/gcp.hpp"

namespace rootseal::sync {

std::span<const HostOption<GcpHost>> GcpHost::options() {
  static constexpr HostOption<GcpHost> kOptions[] = {
      {.name = "project_id", .field = &GcpHost::project_id, .required = true},
      {.name = "gcp_endpoint", .field = &GcpHost::gcp_endpoint, .url = true},
      {.name = "token_uri", .field = &GcpHost::token_uri, .url = true},
      {.name = "service_account_json", .field = &GcpHost::service_account_json, .required = true},
  };
  return kOptions;
}

}  // namespace rootseal::sync
