// rootseal::etcdstore — the state store on etcd (`storage: etcd`), shared by
// every rootseald host of a cluster.
//
// Layout under the prefix: `<prefix>cluster/root_kcv` the key check value of
// the cluster's root key (see check_root); `<prefix>keys/<name>` one transit key with
// all its versions (wrapped by the root of trust; never plaintext material),
// as Vault keeps one storage entry per key. Every mutation is one
// compare-and-swap txn on that value: create compares create_revision == 0,
// the others the mod_revision just read. A lost race is re-read: add_version
// answers conflict when another host committed that version number (so no two
// hosts ever commit one version with different material), the others retry on
// the new value. A txn whose first answer was lost (the client sent it again)
// recognises its own write by the wrapped bytes, which are random per version.
//
// Reads are linearizable. load_all reads one consistent revision (paged) and
// falls back to a serializable read of the member it reaches when etcd has no
// quorum, so a host can unseal from what its member holds; the watch then
// brings it up to date once quorum is back. Errors while etcd cannot commit:
// Errc::unavailable, with a message saying key changes wait for etcd.
//
// The StateStore calls block; never call them from the store's own thread
// (the watch callbacks run on a worker thread of their own, where they may).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>
#include <string>

#include "rootseal/etcd/client.hpp"
#include "rootseal/kms/state_store.hpp"

namespace rootseal::etcdstore {

struct EtcdStoreConfig {
  etcd::ClientConfig client;
  std::string prefix = "/rootseal/";  // every key of this cluster starts with it
};

// What the watch reports, on the store's worker thread, in revision order.
struct WatchCallbacks {
  std::function<void(const std::string& name)> changed;  // a key was created, changed or deleted
  std::function<void()> reload;                          // changes were compacted away: re-read everything
};

class EtcdStore final : public kms::StateStore {
 public:
  // Starts the store's I/O thread; does not contact etcd (a host starts while
  // etcd is down, and unseals when it is back).
  static kms::Result<std::unique_ptr<EtcdStore>> open(EtcdStoreConfig config);
  ~EtcdStore() override;
  EtcdStore(const EtcdStore&) = delete;
  EtcdStore& operator=(const EtcdStore&) = delete;

  kms::Result<std::vector<kms::KeyRecord>> load_all() override;
  kms::Result<std::optional<kms::KeyRecord>> find(std::string_view name) override;
  kms::Result<std::vector<std::string>> list_names() override;
  kms::Result<void> create_key(const kms::KeyRecord& key) override;
  kms::Result<void> add_version(std::string_view name, const kms::KeyVersionRecord& version) override;
  kms::Result<void> update_config(std::string_view name, const kms::KeyConfig& config) override;
  kms::Result<void> update_config_if(std::string_view name, const kms::KeyConfig& expected,
                                     const kms::KeyConfig& config) override;
  kms::Result<void> delete_key(std::string_view name) override;
  // At most 64 keys per call (one etcd transaction).
  kms::Result<void> replace_wrapped(const std::vector<Rewrapped>& versions,
                                    const std::vector<kms::KeyringKeyRecord>& keyring_keys) override;
  // Keyring keys live at <prefix>keyring/<id>. A version written under one
  // (create_key, add_version, replace_wrapped) is written only while that
  // record exists (a compare in the same transaction): conflict once it was
  // retired. retire_keyring_key scans every key record at one revision and
  // deletes the record only if no key record changed since (a compare over
  // the whole <prefix>keys/ range): no version can be written under it in
  // between.
  kms::Result<std::vector<kms::KeyringKeyRecord>> keyring_keys() override;
  kms::Result<void> add_keyring_key(const kms::KeyringKeyRecord& key) override;
  kms::Result<void> retire_keyring_key(std::uint32_t id) override;
  [[nodiscard]] int schema_version() const noexcept override;
  // <prefix>cluster/root_kcv: created with the first host's root KCV (a txn
  // on create_revision == 0); a root that differs is refused with sealed.
  // Without quorum, a serializable read of the record still refuses a
  // differing root (and lets an equal or unrecorded one unseal); writes
  // (create_key, add_version) need the check to have passed against the
  // quorum and refuse a version wrapped by any other root.
  kms::Result<void> check_root(std::string_view root_kcv) override;
  [[nodiscard]] bool shared() const noexcept override { return true; }

  // <prefix>cluster/id: the cluster's identifier (/v1/sys/health cluster_id),
  // recorded as `proposed` when the cluster has none yet (a txn on
  // create_revision == 0). Returns the recorded one.
  kms::Result<std::string> cluster_id(std::string_view proposed);

  // The whole keyring state at one etcd revision, for a snapshot: every key
  // record under <prefix>keys/ (paged, every page at the first page's
  // revision), the cluster id and the root check value at that revision.
  // Linearizable only: without quorum it fails (unavailable) rather than
  // copy one member's possibly stale view. Members and locks are not part of it.
  struct Snapshot {
    std::vector<kms::KeyRecord> keys;                 // by name
    std::vector<kms::KeyringKeyRecord> keyring_keys;  // by id
    std::optional<std::string> cluster_id;
    std::optional<std::string> root_kcv;
    std::optional<std::string> restoring;  // the restore mark (see mark_restoring) at that revision
    // The created tokens' values (<prefix>tokens/<accessor>, the daemon's
    // records) at that revision: accessor -> value, unparsed.
    std::vector<std::pair<std::string, std::string>> tokens;
    std::int64_t revision = 0;
  };
  kms::Result<Snapshot> read_snapshot();

  // A snapshot restore into this prefix (rootseal snapshot restore) marks it
  // at <prefix>cluster/restoring (the snapshot's name) before its first write
  // and removes the mark after the keys are read back and verified. While the
  // mark is there load_all refuses (sealed): no host unseals on a keyring
  // that is half restored. Restore only: sets the cluster id and the root
  // check value as the snapshot has them (replacing what the prefix had).
  kms::Result<void> mark_restoring(std::string_view snapshot);
  kms::Result<void> unmark_restoring();
  kms::Result<void> set_cluster_records(std::string_view cluster_id, std::string_view root_kcv);

  // A lock at <prefix>locks/<name> (one holder in the cluster), held under
  // this host's member lease (start_membership): true when this host holds it
  // now (taken now or before), false when another host has it (`holder` then
  // says who) or when this host's member record <prefix>members/<me> no longer
  // lives under that lease (the fence, as claim_bucket's); unavailable before
  // the host is registered. The lock goes with
  // the lease: at once when the host stops (stop_membership revokes it), when
  // the lease expires if the host dies (etcd.member_ttl); the next call of
  // another host then takes it. release_lock lets it go now, if it is ours.
  kms::Result<bool> hold_lock(std::string_view name, std::string_view me, std::string* holder = nullptr);
  void release_lock(std::string_view name);

  // A small record at <prefix>notes/<name> shared by the hosts (the last good
  // snapshot, so each host reports the cluster's); nullopt when absent.
  kms::Result<void> put_note(std::string_view name, std::string value);
  kms::Result<std::optional<std::string>> note(std::string_view name);

  // A host registered under <prefix>members/<host id> (see start_membership).
  struct Member {
    std::string host_id;
    std::string instance;  // random per process start
    std::string version;   // rootseald's
    std::string root_kcv;  // of the host's root key ("" until it unsealed)
    bool sealed = true;
    std::int64_t seen_revision = 0;  // its keyring holds every key change up to this etcd revision
    std::int64_t started_unix = 0;
    std::int64_t lease = 0;  // the etcd lease the record lives under
    bool sync = false;       // runs the sharded sync engine (takes sync buckets)
    // The fingerprint of the host's effective `sync:` configuration (64 hex
    // digits, docs/ha.md "Configuration changes"); "" when sync is off.
    std::string sync_config;
    std::string error;  // a record this version cannot read: why (the other fields empty)
  };
  // What the cluster records, read at one revision (linearizable).
  struct ClusterView {
    std::optional<std::string> cluster_id;
    std::optional<std::string> root_kcv;
    std::vector<Member> members;           // by host id
    std::optional<std::string> restoring;  // a snapshot restore under way or interrupted (its snapshot)
    std::int64_t revision = 0;             // of the read
    std::int64_t latest_key_revision = 0;  // the newest mod_revision under keys/ (0: no key)
  };
  kms::Result<ClusterView> cluster_view();

  // Registers this host at <prefix>members/<host id> under an etcd lease of
  // `ttl`, in the background until stop_membership(): a keepalive every
  // ttl/3, and the record written again whenever `current()` (called on the
  // store's I/O thread: cheap and thread-safe) changes. An expired lease (etcd
  // unreachable longer than the TTL) is granted anew and the record written
  // again. A host that dies stops its keepalives: its record goes when the
  // lease expires (at most ttl later; etcd resets lease TTLs on a leader
  // change, so it can take longer then). on_error: a registration or
  // keepalive failure, once per run of failures (for the log).
  void start_membership(std::chrono::seconds ttl, std::function<Member()> current,
                        std::function<void(const kms::Error&)> on_error = {});
  // Stops the keepalives and revokes the lease: the record goes at once.
  void stop_membership();

  // The member lease now (id 0: none) and until when it surely lives: the
  // send time of the last keepalive (or grant) etcd answered, plus the TTL
  // it answered. Nothing this host does under the lease may count on it
  // later. Read together (a new lease comes with its own time).
  struct LeaseState {
    std::int64_t id = 0;
    std::chrono::steady_clock::time_point alive_until = std::chrono::steady_clock::time_point::min();
  };
  [[nodiscard]] LeaseState member_lease_state() const;

  // The sync engine's buckets (docs/ha.md "The sync engine on several
  // hosts"): <prefix>shards/<bucket> names the host that owns the bucket. The
  // record lives under its owner's member lease, so it goes when the owner
  // stops (lease revoked) or dies (lease expired); epoch = the record's
  // create_revision, larger for every new owner.
  struct BucketOwner {
    std::uint32_t bucket = 0;
    std::string host_id;
    std::string instance;
    std::int64_t lease = 0;
    std::int64_t epoch = 0;
    std::string error;  // a record this version cannot read: why
  };
  struct ShardView {
    std::vector<Member> members;      // by host id
    std::vector<BucketOwner> owners;  // by bucket; buckets without an owner absent
    std::int64_t revision = 0;
  };
  // Members and bucket owners read at one revision (linearizable).
  kms::Result<ShardView> shard_view();
  // Takes `bucket` for this host if it has no owner, in one transaction
  // fenced on this host's member record still living under this host's
  // member lease (so a host whose lease expired takes nothing). The epoch
  // when taken; nullopt when the bucket has an owner or the fence failed.
  kms::Result<std::optional<std::int64_t>> claim_bucket(std::uint32_t bucket, std::string_view host_id,
                                                        std::string_view instance);
  // Gives `bucket` up (the drain is done): deletes the record if it lives
  // under this host's member lease. False when it was not ours (any more).
  kms::Result<bool> release_bucket(std::uint32_t bucket);

  // Each configured endpoint asked for its member's status (blocking, one
  // request each, no failover): reachable or the error, and its view.
  struct EndpointHealth {
    bool reachable = false;
    std::string error;
    etcd::EndpointStatus status;  // endpoint always set
  };
  std::vector<EndpointHealth> endpoint_health();

  // Watches the keys from the revision after the last load_all (or from now,
  // if none ran) until stop_watch() or destruction. A compaction past the
  // watch's revision calls reload() and resumes from the compaction point;
  // other failures are retried (the client fails over between endpoints).
  void start_watch(WatchCallbacks callbacks);
  void stop_watch();

  [[nodiscard]] std::int64_t loaded_revision() const noexcept;   // of the last load_all; 0 before
  [[nodiscard]] std::int64_t watched_revision() const noexcept;  // the last revision the watch delivered
  [[nodiscard]] const std::string& prefix() const noexcept;

  struct Impl;

 private:
  explicit EtcdStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rootseal::etcdstore
