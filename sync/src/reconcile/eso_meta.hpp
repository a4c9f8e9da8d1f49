// rootseal::sync::reconcile — the metadata ESO puts on what it manages, and
// the hashes it computes, reproduced bit for bit so that Secrets written by
// ESO are adopted without a rewrite (reference/eso-k8s.md §1).
#pragma once

#include <boost/json/value.hpp>

#include <string>
#include <string_view>

#include "model/types.hpp"
#include "rootseal/kms/error.hpp"
#include "rootseal/sync/provider.hpp"

namespace rootseal::sync::reconcile {

inline constexpr std::string_view kDataHashAnnotation = "reconcile.external-secrets.io/data-hash";
inline constexpr std::string_view kManagedLabel = "reconcile.external-secrets.io/managed";
inline constexpr std::string_view kCreatedByLabel = "reconcile.external-secrets.io/created-by";
inline constexpr std::string_view kFieldManagerPrefix = "externalsecrets.external-secrets.io/";
// Rollout restart (rootseal's own; reference §3 for what others do).
inline constexpr std::string_view kReloadAnnotation = "secret.rootseal.io/reload";
inline constexpr std::string_view kRestartedAtAnnotation = "rootseal.io/restartedAt";
inline constexpr std::string_view kReloadedHashesAnnotation = "secret.rootseal.io/reloaded-hashes";

// Lower-case hex SHA3-224 of `text` (ESO's ObjectHash of a string).
std::string sha3_224_hex(std::span<const std::uint8_t> text);
std::string sha3_224_hex(std::string_view text);
// ESO's data-hash: SHA3-224 of Go's fmt "%+v" of map[string][]byte, i.e.
// "map[k1:[104 105] k2:[]]" with keys in byte order. The text is built in
// locked memory (it spells out the secret bytes).
std::string data_hash(const SecretMap& data);
// ESO's created-by label value: ObjectHash("<namespace>/<name>").
std::string created_by(std::string_view ns, std::string_view name);
// ESO's status.syncedResourceVersion: "<generation>-<ObjectHash of
// {annotations:map[..] labels:map[..]}>".
std::string synced_resource_version(const model::ObjectMeta& meta);
// The field manager ESO writes with (…/<name>, or …/sha3/<hex> past 63 chars).
std::string field_manager(std::string_view es_name);

// A Secret object's .data, base64-decoded into locked memory. A key whose
// value is not valid base64 is invalid_argument.
kms::Result<SecretMap> secret_data(const boost::json::value& secret);

}  // namespace rootseal::sync::reconcile
