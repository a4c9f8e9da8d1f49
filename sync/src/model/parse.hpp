// rootseal::sync::model — parsing and validation of external-secrets.io
// resources from their JSON form (as the Kubernetes API returns them).
//
// Errors are invalid_argument with a message "<field path>: <reason>", e.g.
// "spec.data[1].remoteRef.key: required" — written as is into the Ready=False
// condition of the resource. Messages never contain values of Secret data.
#pragma once

#include <boost/json/value.hpp>

#include "model/types.hpp"
#include "rootseal/kms/error.hpp"

namespace rootseal::sync::model {

kms::Result<ObjectMeta> parse_meta(const boost::json::value& object);
kms::Result<ExternalSecret> parse_external_secret(const boost::json::value& object);
// kind is taken from the object ("SecretStore" or "ClusterSecretStore").
kms::Result<SecretStore> parse_secret_store(const boost::json::value& object);
kms::Result<PushSecret> parse_push_secret(const boost::json::value& object);

// Namespace conditions of a ClusterSecretStore: true if `ns` (with its
// labels) may use the store. A store without conditions allows every
// namespace (ESO's behaviour; rootseal's docs recommend always setting them).
// `ns_labels` must be the namespace's labels as read: under empty labels
// NotIn and DoesNotExist hold. Reconcilers call it only through
// reconcile::StoreResolver (store_resolver.hpp), which reads the labels and
// refuses the store when it cannot.
bool namespace_allowed(const SecretStore& store, const std::string& ns, const StringMap& ns_labels);

}  // namespace rootseal::sync::model
