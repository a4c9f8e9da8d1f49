// The value of one transit key in etcd (<prefix>keys/<name>): JSON holding
// the key's type, config and every version's WRAPPED key-encryption key with
// the key check value of the root that wrapped it. Never plaintext material.
//
//   {"format":1,"name":"k","type":"aes256-gcm96","derived":false,"created":1700000000,
//    "config":{"min_decryption_version":1,"min_encryption_version":0,
//              "deletion_allowed":false,"auto_rotate_period":0},
//    "versions":[{"version":1,"created":1700000000,"wrapped":"<base64>","kcv":"<hex>"}]}
//
// The parser reads outside input (whatever etcd holds under the prefix):
// every field is checked, and a record that breaks an invariant the keyring
// relies on (versions 1..N without gaps, a known type, a name that matches
// the etcd key) is refused with storage_failure naming the key only.
#pragma once

#include <string>
#include <string_view>

#include "rootseal/kms/error.hpp"
#include "rootseal/etcdstore/etcd_store.hpp"
#include "rootseal/kms/state_store.hpp"

namespace rootseal::etcdstore::detail {

inline constexpr int kRecordFormat = 1;
inline constexpr std::size_t kMaxRecordBytes = 1'400'000;  // under etcd's 1.5 MiB request limit
inline constexpr std::size_t kMaxWrappedBytes = 4096;
inline constexpr std::size_t kMaxKcvChars = 128;

std::string serialize_key_record(const kms::KeyRecord& record);
// `name`: the key name the etcd key carries (after "<prefix>keys/").
kms::Result<kms::KeyRecord> parse_key_record(std::string_view text, std::string_view name);

// A keyring key at <prefix>keyring/<id> (JSON: format, id, created, wrapped
// as base64, root_kcv, kcv); `id` is the one the etcd key carries.
std::string serialize_keyring_key(const kms::KeyringKeyRecord& record);
kms::Result<kms::KeyringKeyRecord> parse_keyring_key(std::string_view text, std::string_view id);

// The record of a host at <prefix>members/<host id> (JSON: host_id,
// instance, version, root_kcv, sealed, seen_revision, started). A record
// that cannot be read comes back with `error` set (and the host id only).
std::string serialize_member(const EtcdStore::Member& member);
EtcdStore::Member parse_member(std::string_view text, std::string_view host_id);

// The owner of a sync bucket at <prefix>shards/<bucket> (JSON: host_id,
// instance; the lease and epoch come from the etcd key). A record that
// cannot be read comes back with `error` set (and the bucket only).
std::string serialize_bucket_owner(const EtcdStore::BucketOwner& owner);
EtcdStore::BucketOwner parse_bucket_owner(std::string_view text, std::uint32_t bucket);

}  // namespace rootseal::etcdstore::detail
