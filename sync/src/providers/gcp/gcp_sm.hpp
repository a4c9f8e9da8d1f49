// GCP Secret Manager REST v1 (push). A service-account key signs an RS256 JWT
// that is exchanged at the key's token_uri for an access token (cached until
// shortly before expiry). Secrets are created with replication automatic and
// the label managed-by=rootseal; a version is added (:addVersion, with the
// payload's CRC32C) only when versions/latest:access shows a different value;
// the CRC32C of every accessed payload is checked.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>

#include "providers/store_health.hpp"
#include "rootseal/sync/provider.hpp"

namespace rootseal::sync::providers {

struct GcpCounters {
  std::atomic<std::size_t> token_requests{0};
  std::atomic<std::size_t> calls{0};
  std::atomic<std::size_t> writes{0};  // create + addVersion + delete
};

class GcpSecretManager : public Provider, public PushProvider {
 public:
  [[nodiscard]] std::string_view kind() const noexcept override { return "gcp"; }
  // Overrides both bases' validate() (one answer for pull and push).
  Task<void> validate() override = 0;
  [[nodiscard]] virtual const GcpCounters& counters() const noexcept = 0;
};

// CRC32C (Castagnoli), as Secret Manager's dataCrc32c.
std::uint32_t crc32c(std::span<const std::uint8_t> data) noexcept;

kms::Result<std::shared_ptr<GcpSecretManager>> make_gcp_provider(const boost::asio::any_io_executor& executor,
                                                                 GcpSpec spec,
                                                                 std::shared_ptr<StoreHealth> health = nullptr);

}  // namespace rootseal::sync::providers
