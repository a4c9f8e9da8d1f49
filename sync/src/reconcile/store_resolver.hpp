// rootseal::sync::reconcile — the one place that decides which store an
// object may use (ESO's client manager: `resolve(storeRef, namespace) ->
// store or refusal`). Both reconcilers call it for every store they touch
// (ExternalSecret secretStoreRef and sourceRef.storeRef, PushSecret
// secretStoreRefs and selector.remoteRef.storeRef), on every reconcile: a
// refusal is never cached, a namespace relabelled out of a store's conditions
// loses it at its next reconcile.
//
// It fails closed on any doubt:
//  - the store does not exist, or is invalid;
//  - the object is not of the kind the reference names (a SecretStore where a
//    ClusterSecretStore was asked for), or a SecretStore of another namespace;
//  - a ClusterSecretStore's spec.conditions do not admit the namespace; when
//    any condition has a namespaceSelector the namespace's labels are read
//    first, and if that read fails the store is refused (never evaluated
//    against "no labels", under which NotIn and DoesNotExist would pass);
//  - a selector operator it does not know (model::matches is false).
// Stores annotated sync.rootseal.io/credentials are also checked against the
// daemon's `sync.stores.<name>.namespaces` by host_store_for(), the only
// lookup of a host store, where their credentials are read.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "model/types.hpp"
#include "reconcile/kube_api.hpp"
#include "rootseal/sync/engine.hpp"

namespace rootseal::sync::reconcile {

// `Kind "name"`, as messages name a store.
std::string store_label(const model::StoreRef& ref);

// True when spec.conditions cannot be evaluated without the namespace's labels.
bool needs_namespace_labels(const model::SecretStore& store);

// The decision, without I/O. `ns_labels`: the namespace's labels as read, or
// the error of that read; nullptr when they were not read. Errors:
// permission_denied (refused), or the read's own error (its code, so that a
// transient failure is retried) when the labels were needed and not read.
kms::Result<void> admit(const model::StoreRef& ref, const model::SecretStore& store, std::string_view ns,
                        const kms::Result<model::StringMap>* ns_labels);

class StoreResolver {
 public:
  explicit StoreResolver(KubeApi& api) : api_(api) {}
  // The store `ref` names, as used from namespace `ns`, or why not: not_found,
  // invalid_argument (the store's spec), permission_denied, or the error of
  // the namespace-label read. (By value: a coroutine owns what it reads.)
  Task<model::SecretStore> resolve(model::StoreRef ref, std::string ns);

 private:
  KubeApi& api_;
};

// The host store (rootseald's `sync.stores.<name>`) a store annotated with
// sync.rootseal.io/credentials uses from namespace `ns` (for a SecretStore,
// its own namespace; for a ClusterSecretStore, the user's); nullptr when the
// store has no such annotation. invalid_argument when the name is not
// configured, permission_denied when the namespace is not listed.
kms::Result<const HostStoreConfig*> host_store_for(const std::map<std::string, HostStoreConfig>& hosts,
                                                   const model::SecretStore& store, std::string_view ns);

}  // namespace rootseal::sync::reconcile
