#include "reconcile/store_resolver.hpp"

#include <algorithm>

#include "model/parse.hpp"

namespace rootseal::sync::reconcile {

using kms::Errc;
using kms::fail;

std::string store_label(const model::StoreRef& ref) {
  return std::string(model::to_string(ref.kind)) + " \"" + ref.name + "\"";
}

bool needs_namespace_labels(const model::SecretStore& store) {
  return std::any_of(store.conditions.begin(), store.conditions.end(),
                     [](const model::ClusterStoreCondition& c) { return c.namespace_selector.has_value(); });
}

kms::Result<void> admit(const model::StoreRef& ref, const model::SecretStore& store, std::string_view ns,
                        const kms::Result<model::StringMap>* ns_labels) {
  const std::string label = store_label(ref);
  const std::string from = " from namespace \"" + std::string(ns) + "\"";
  if (store.kind != ref.kind) {
    return fail(Errc::permission_denied,
                "using " + label + from + " refused: the object is a " + std::string(model::to_string(store.kind)));
  }
  if (ref.kind == model::StoreKind::secret_store) {
    if (store.meta.namespace_ != ns) {
      return fail(Errc::permission_denied,
                  "using " + label + from + " refused: it belongs to namespace \"" + store.meta.namespace_ + "\"");
    }
    return {};
  }
  static const model::StringMap kUnread;
  const model::StringMap* labels = &kUnread;
  if (needs_namespace_labels(store)) {
    if (ns_labels == nullptr) {
      return fail(Errc::permission_denied, "using " + label + from + " refused: the namespace's labels were not read");
    }
    if (!*ns_labels) {
      return fail(ns_labels->error().code,
                  "using " + label + from + " refused: could not read namespace labels: " + ns_labels->error().message);
    }
    labels = &**ns_labels;
  }
  if (!model::namespace_allowed(store, std::string(ns), *labels)) {
    return fail(Errc::permission_denied, "using " + label + " is not allowed" + from + ": denied by spec.conditions");
  }
  return {};
}

Task<model::SecretStore> StoreResolver::resolve(model::StoreRef ref, std::string ns) {
  std::string store_ns;
  if (ref.kind != model::StoreKind::cluster_secret_store) store_ns = ns;
  const ObjectPtr object = api_.store(ref.kind, store_ns, ref.name);
  if (!object) co_return fail(Errc::not_found, store_label(ref) + " not found");
  auto store = model::parse_secret_store(*object);
  if (!store) co_return fail(Errc::invalid_argument, store_label(ref) + " is invalid: " + store.error().message);
  kms::Result<model::StringMap> labels = model::StringMap{};
  const bool read_labels = store->kind == model::StoreKind::cluster_secret_store && needs_namespace_labels(*store);
  if (read_labels) labels = co_await api_.namespace_labels(ns);
  auto admitted = admit(ref, *store, ns, read_labels ? &labels : nullptr);
  if (!admitted) co_return std::unexpected(admitted.error());
  co_return std::move(*store);
}

kms::Result<const HostStoreConfig*> host_store_for(const std::map<std::string, HostStoreConfig>& hosts,
                                                   const model::SecretStore& store, std::string_view ns) {
  if (store.host_credentials.empty()) return nullptr;
  auto it = hosts.find(store.host_credentials);
  if (it == hosts.end()) {
    return fail(Errc::invalid_argument,
                "host credentials '" + store.host_credentials + "' are not configured in rootseald");
  }
  const HostStoreConfig& host = it->second;
  std::string check_ns = store.meta.namespace_;
  if (store.kind == model::StoreKind::cluster_secret_store) check_ns = std::string(ns);
  const auto& allowed = host.namespaces;
  const bool all = std::find(allowed.begin(), allowed.end(), "*") != allowed.end();
  // An empty namespace (a ClusterSecretStore asked for without a user) never matches a listed one.
  if (check_ns.empty() || (!all && std::find(allowed.begin(), allowed.end(), check_ns) == allowed.end())) {
    return fail(Errc::permission_denied, "host credentials '" + host.name + "' may not be used from namespace \"" +
                                             check_ns + "\" (sync.stores." + host.name + ".namespaces)");
  }
  return &host;
}

}  // namespace rootseal::sync::reconcile
