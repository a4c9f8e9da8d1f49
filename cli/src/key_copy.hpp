// rootseal::cli — copying key records into a state store, offline: shared by
// `rootseal storage migrate` (SQLite <-> etcd) and `rootseal snapshot restore`
// into an etcd prefix. Every step is idempotent: a key the target holds
// identical is skipped, one it holds different is refused (never
// overwritten), so an interrupted run is resumed by running it again.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/etcdstore/etcd_store.hpp"
#include "rootseal/kms/error.hpp"
#include "rootseal/kms/root_of_trust.hpp"
#include "rootseal/kms/state_store.hpp"

namespace rootseal::cli {

// Why two records of one key differ ("" when identical).
std::string key_difference(const kms::KeyRecord& source, const kms::KeyRecord& target);

// "a, b, c, and 7 more" (at most 10 names).
std::string name_list(const std::vector<std::string>& names);

// conflict while any rootseald host is registered under <prefix>members/:
// `what` ("the migration", "the restore") is offline.
kms::Result<void> refuse_registered_hosts(const etcdstore::EtcdStore::ClusterView& view, const std::string& prefix,
                                          std::string_view what);

struct Copied {
  std::size_t copied = 0;
  std::size_t present = 0;
  std::size_t others = 0;  // keys of the target that the source does not have
};

// Creates every key of `source` that `existing` (the target's keys, read
// before) lacks; a key held identical counts as present; one held different
// is refused with its name before anything is written. After each key
// created: crash_point(<crash_tag>-<count>) (tests).
kms::Result<Copied> copy_keys(const std::vector<kms::KeyRecord>& source, const std::vector<kms::KeyRecord>& existing,
                              kms::StateStore& to, std::string_view crash_tag);

// Adds every keyring key of `source` that the target lacks (before the keys:
// a version under a keyring key is written only while that key is
// recorded); one held with other contents under the same id is refused.
// How many were added.
kms::Result<std::size_t> copy_keyring_keys(const std::vector<kms::KeyringKeyRecord>& source, kms::StateStore& to);

// The keyring keys to copy into a target that holds `target_kks`, and the
// key records to copy with them. A target without keyring keys, or one that
// holds every keyring key of the source identical, takes the source as it
// is. A target with keyring keys of its own (another store merged into it)
// takes the source's versions rewrapped under its current keyring key
// (unwrapped through the source's keys, wrapped in software; KWP is
// deterministic, so a second run makes the same records), and none of the
// source's keyring keys. Versions from before the keyring key stay as they are.
struct CopyPlan {
  std::vector<kms::KeyringKeyRecord> keyring_keys;
  std::vector<kms::KeyRecord> keys;
};
kms::Result<CopyPlan> plan_copy(const std::vector<kms::KeyRecord>& source,
                                const std::vector<kms::KeyringKeyRecord>& source_kks,
                                const std::vector<kms::KeyringKeyRecord>& target_kks, kms::RootOfTrust& root);

// Every keyring key unwraps with the root, and every version of `records`
// under its keyring key (or the root, from before the keyring key); how
// many versions.
kms::Result<std::size_t> unwrap_all(const std::vector<kms::KeyRecord>& records,
                                    const std::vector<kms::KeyringKeyRecord>& keyring_keys, kms::RootOfTrust& root,
                                    const std::string& where);

// The read-back check: every key of `source` is in `after` (the target's
// keys, read again), identical, every keyring key of `source_kks` is in
// `after_kks` identical, and every version unwraps.
kms::Result<std::size_t> verify_copies(const std::vector<kms::KeyRecord>& source,
                                       const std::vector<kms::KeyringKeyRecord>& source_kks,
                                       const std::vector<kms::KeyRecord>& after,
                                       const std::vector<kms::KeyringKeyRecord>& after_kks, kms::RootOfTrust& root,
                                       const std::string& where);

}  // namespace rootseal::cli
