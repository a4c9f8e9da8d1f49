// ProviderFactory: a StoreSpec to a provider instance.
#include "providers/aws/aws_sm.hpp"
#include "providers/azure/azure_kv.hpp"
#include "providers/conjur/conjur.hpp"
#include "providers/gcp/gcp_sm.hpp"
#include "rootseal/kms/error.hpp"
#include "providers/vault/vault_kv2.hpp"
#include "rootseal/sync/provider.hpp"

namespace rootseal::sync {

using kms::Errc;
using kms::fail;

ProviderFactory::ProviderFactory(boost::asio::any_io_executor executor) : executor_(std::move(executor)) {}

kms::Result<std::shared_ptr<Provider>> ProviderFactory::make_provider(StoreSpec spec,
                                                                      std::shared_ptr<StoreHealth> health) const {
  if (auto* v = std::get_if<VaultSpec>(&spec)) {
    ROOTSEAL_LET(p, providers::make_vault_provider(executor_, std::move(*v), health));
    return std::shared_ptr<Provider>(std::move(p));
  }
  if (auto* a = std::get_if<AwsSpec>(&spec)) {
    ROOTSEAL_LET(p, providers::make_aws_provider(executor_, std::move(*a), health));
    return std::shared_ptr<Provider>(std::move(p));
  }
  if (auto* z = std::get_if<AzureSpec>(&spec)) {
    ROOTSEAL_LET(p, providers::make_azure_provider(executor_, std::move(*z), health));
    return std::shared_ptr<Provider>(std::move(p));
  }
  if (auto* g = std::get_if<GcpSpec>(&spec)) {
    ROOTSEAL_LET(p, providers::make_gcp_provider(executor_, std::move(*g), health));
    return std::shared_ptr<Provider>(std::move(p));
  }
  if (auto* c = std::get_if<ConjurSpec>(&spec)) {
    ROOTSEAL_LET(p, providers::make_conjur_provider(executor_, std::move(*c), health));
    return std::shared_ptr<Provider>(std::move(p));
  }
  return fail(Errc::invalid_argument, "this store kind has no pull provider");
}

kms::Result<std::shared_ptr<PushProvider>> ProviderFactory::make_push_provider(
    StoreSpec spec, std::shared_ptr<StoreHealth> health) const {
  if (auto* a = std::get_if<AwsSpec>(&spec)) {
    ROOTSEAL_LET(p, providers::make_aws_provider(executor_, std::move(*a), health));
    return std::shared_ptr<PushProvider>(std::move(p));
  }
  if (auto* z = std::get_if<AzureSpec>(&spec)) return providers::make_azure_provider(executor_, std::move(*z), health);
  if (auto* g = std::get_if<GcpSpec>(&spec)) return providers::make_gcp_provider(executor_, std::move(*g), health);
  if (auto* v = std::get_if<VaultSpec>(&spec)) {
    ROOTSEAL_LET(p, providers::make_vault_provider(executor_, std::move(*v), health));
    return std::shared_ptr<PushProvider>(std::move(p));
  }
  return fail(Errc::invalid_argument, "conjur is supported as a pull source only (push: aws, azure, gcp, vault)");
}

}  // namespace rootseal::sync
