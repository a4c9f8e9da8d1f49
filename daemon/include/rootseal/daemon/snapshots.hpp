// rootseal::daemon — keyring snapshots to object storage: the `snapshots:`
// section of rootseald.yaml and the steps the daemon's scheduler and the
// offline CLI (`rootseal snapshot list | verify | restore`) share.
//
// A run: take_snapshot (SQLite online backup of rootseal.db and tokens.db,
// manifest, verified in memory against the root of trust; with storage: etcd
// take_etcd_snapshot, the key records at one etcd revision), then for each
// destination put + read back + verify the bytes read back; only when every
// destination holds a verified copy is the snapshot good, and only then is
// retention applied (never the snapshot just written). See docs/operations.md.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/daemon/config.hpp"
#include "rootseal/kms/error.hpp"
#include "rootseal/kms/root_of_trust.hpp"
#include "rootseal/kms/snapshot.hpp"
#include "rootseal/sync/engine.hpp"
#include "rootseal/sync/object_store.hpp"

namespace rootseal::etcdstore {
class EtcdStore;
}

namespace rootseal::daemon {

struct SnapshotDestination {
  std::string name;  // [a-z0-9_-]{1,32}; for logs, metrics and `--destination`
  std::string kind;  // folder | s3 | gcs | azure
  // folder
  std::filesystem::path path;
  // s3, gcs (bucket), azure (container); prefix, endpoint and ca_file for all three
  std::string bucket;
  std::string prefix;
  std::string endpoint;  // override (tests); empty: the real service
  std::filesystem::path ca_file;
  // s3
  std::string region;
  std::string server_side_encryption;  // "" | AES256 | aws:kms
  std::string sse_kms_key_id;
  sync::CredentialRef access_key_id;
  sync::CredentialRef secret_access_key;
  sync::CredentialRef session_token;
  // gcs: a service-account key file, as the sync engine's gcp stores
  std::string token_uri;  // override of the key file's token_uri
  sync::CredentialRef service_account_json;
  // azure: a storage account and container, client credentials as the sync engine's azure stores
  std::string account;
  std::string container;
  std::string tenant_id;
  std::string client_id;
  std::string authority_host;  // empty: https://login.microsoftonline.com
  sync::CredentialRef client_secret;
};

struct SnapshotsConfig {
  bool enabled = true;
  std::chrono::milliseconds interval{3'600'000};
  std::size_t retain_count = 24;            // newest snapshots kept per destination (at least 1)
  std::chrono::milliseconds retain_age{0};  // older ones are deleted too; 0 = no age limit
  std::vector<SnapshotDestination> destinations;
};

// The destination's object store, credentials read now (from their files or
// systemd credentials, into locked memory).
kms::Result<std::unique_ptr<sync::ObjectStore>> open_snapshot_destination(const SnapshotDestination& d,
                                                                          const boost::asio::any_io_executor& ex);

// One snapshot of `state_dir` (rootseal.db, tokens.db if present, the cluster
// id), named by `now_ms`, verified against `root` before it is returned.
// Blocking (SQLite, the root of trust).
struct TakenSnapshot {
  std::string name;
  std::vector<std::uint8_t> bytes;
  kms::SnapshotReport report;
};
kms::Result<TakenSnapshot> take_snapshot(const std::filesystem::path& state_dir, kms::RootOfTrust& root,
                                         std::int64_t now_ms);

// One snapshot of the etcd keyring (storage: etcd): every key record, the
// cluster id and the root check value read at one etcd revision, written as
// the keyring section of a snapshot of the same form (manifest storage etcd,
// etcd_revision), verified against `root` before it is returned. Blocking.
kms::Result<TakenSnapshot> take_etcd_snapshot(etcdstore::EtcdStore& store, kms::RootOfTrust& root, std::int64_t now_ms);

// The TPM root of trust of `root_of_trust: tpm`, opened as rootseald opens it
// (tpm.tcti, tpm.sealed_file and the auth value of tpm.auth_value_file, read
// as the daemon reads it; the PCR selection and the primary key are the sealed
// file's) and unsealed now: the root of the offline `rootseal snapshot verify |
// restore`. Never creates a root key (tpm.initialize is not used). not_found:
// no sealed file; sealed: a damaged or foreign sealed file, a PCR policy or
// auth value that does not hold; unavailable: no TPM at the TCTI. Blocking.
kms::Result<std::unique_ptr<kms::RootOfTrust>> open_tpm_root(const TpmSection& config);

// Unix milliseconds of a snapshot object name; nullopt if it is not one.
std::optional<std::int64_t> snapshot_name_time(std::string_view name);

// The snapshots of `objects` that retention deletes: beyond the newest
// `count`, or older than `age` (when > 0) at `now_ms`; never `keep` (the one
// just written) and never an object that is not a snapshot.
std::vector<std::string> snapshots_to_delete(const std::vector<sync::ObjectInfo>& objects, std::string_view keep,
                                             std::size_t count, std::chrono::milliseconds age, std::int64_t now_ms);

}  // namespace rootseal::daemon
