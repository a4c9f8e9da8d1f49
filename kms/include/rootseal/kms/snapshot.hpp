// rootseal::kms — keyring snapshots: one consistent copy of the state
// databases in one file, with a manifest, that is checked before it counts.
//
// File format (version 1):
//   "rootseal-snapshot 1\n"
//   <manifest: one line of JSON, at most 64 KiB>"\n"
//   <section bytes, in the manifest's order, back to back>
// Sections are SQLite database images: "keyring" (rootseal.db, required) and
// "tokens" (tokens.db, optional: token hashes only). A snapshot of an etcd
// keyring (storage: etcd) has the same form: its key records, read at one
// etcd revision, are written into a keyring image built in memory, and its
// created tokens (<prefix>tokens/, at the same revision) into a tokens.db
// image (the daemon builds it: build_sqlite_image). The manifest's "storage" says
// where the keys came from ("sqlite" or "etcd"; absent in the first
// snapshots: sqlite) and, for etcd, "etcd_revision" the revision read. The manifest records the
// size and SHA-256 of each section and the SHA-256 of all bytes after the
// manifest line (content_sha256). A snapshot never holds a PIN, a token in
// clear or anything from the audit log: the state databases hold none.
//
// Everything here is blocking (SQLite, the root of trust): run it on the
// blocking pool.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/root_of_trust.hpp"
#include "rootseal/kms/state_store.hpp"

struct sqlite3;

namespace rootseal::kms {

inline constexpr std::string_view kSnapshotMagic = "rootseal-snapshot 1\n";
inline constexpr std::size_t kMaxManifestBytes = std::size_t{64} * 1024;

struct SnapshotSection {
  std::string name;  // [a-z]{1,32}: "keyring", "tokens"
  std::uint64_t bytes = 0;
  std::string sha256;  // lower-case hex
  friend bool operator==(const SnapshotSection&, const SnapshotSection&) = default;
};

struct SnapshotManifest {
  std::int64_t created_unix_ms = 0;  // also in the object name
  std::string host;                  // hostname of the writer
  std::string cluster_id;            // empty when the state has none
  std::string root_kcv;              // key check value of the root every version is wrapped by
  std::uint64_t keys = 0;
  std::uint64_t versions = 0;
  std::string storage = "sqlite";  // "sqlite" | "etcd": the store the keys were read from
  std::int64_t etcd_revision = 0;  // storage etcd: the revision every key was read at (> 0)
  std::vector<SnapshotSection> sections;
  std::string content_sha256;
  friend bool operator==(const SnapshotManifest&, const SnapshotManifest&) = default;
};

// The manifest line (no newline) and its strict parser: every field present
// with its type, nothing else, hex of the right length, sizes in range.
std::string serialize_manifest(const SnapshotManifest& m);
Result<SnapshotManifest> parse_manifest(std::string_view line);

// "20261206T171900.123Z": sorts by time as a string.
std::string snapshot_time_name(std::int64_t unix_ms);
// "rootseal-<time>.snap", and the test for such a name.
std::string snapshot_object_name(std::int64_t unix_ms);
bool is_snapshot_object_name(std::string_view name) noexcept;

// A consistent copy of the SQLite database at `path` (online backup API,
// while other connections write), vacuumed (no free pages) and marked as a
// rollback-journal database, as bytes. not_found when the file is absent.
Result<std::vector<std::uint8_t>> backup_sqlite_image(const std::filesystem::path& path);

// Other SQLite images (the tokens section, built by the daemon): `fill` gets
// a private in-memory connection and creates what the image holds; `read`
// gets a copy of an intact image (integrity-checked) opened in memory.
// invalid_argument when the image does not open.
Result<std::vector<std::uint8_t>> build_sqlite_image(const std::function<Result<void>(sqlite3*)>& fill);
Result<void> read_sqlite_image(std::span<const std::uint8_t> image, const std::function<Result<void>(sqlite3*)>& read);

// A parsed snapshot: the manifest and its sections (views into the input).
struct SnapshotView {
  SnapshotManifest manifest;
  std::vector<std::pair<std::string, std::span<const std::uint8_t>>> sections;
  [[nodiscard]] std::span<const std::uint8_t> section(std::string_view name) const;
};

// Checks the framing and every size and digest; the reason of a refusal
// names what is wrong (which digest, which size). invalid_argument.
Result<SnapshotView> parse_snapshot(std::span<const std::uint8_t> bytes);

struct SnapshotInput {
  std::vector<std::uint8_t> keyring;  // backup_sqlite_image(rootseal.db)
  std::vector<std::uint8_t> tokens;   // backup_sqlite_image(tokens.db), or empty
  std::int64_t created_unix_ms = 0;
  std::string host;
  std::string cluster_id;
  std::string storage = "sqlite";  // "sqlite" | "etcd"
  std::int64_t etcd_revision = 0;  // storage etcd: the revision read (> 0)
};

// A keyring database image holding exactly `keys` and `keyring_keys` (built
// in memory, each checked as a new one is): the "keyring" section of a
// snapshot of a store that is not SQLite (storage: etcd). Blocking.
Result<std::vector<std::uint8_t>> keyring_image(const std::vector<KeyRecord>& keys,
                                                const std::vector<KeyringKeyRecord>& keyring_keys);

// The key records and keyring keys of a parsed snapshot's keyring section
// (to restore them into another store). invalid_argument if it does not
// open. A snapshot from before the keyring key has none.
Result<std::vector<KeyRecord>> snapshot_keys(const SnapshotView& snapshot);
Result<std::vector<KeyringKeyRecord>> snapshot_keyring_keys(const SnapshotView& snapshot);

// Builds a snapshot file: counts the keys and versions of the keyring image
// and records `root_kcv` (the current root's check value).
Result<std::vector<std::uint8_t>> build_snapshot(const SnapshotInput& input, std::string_view root_kcv);

struct SnapshotReport {
  SnapshotManifest manifest;
  std::uint64_t unwrapped = 0;  // versions that unwrapped with the root
};

// Verification before a snapshot counts: parse_snapshot, open each section
// as an in-memory SQLite database (integrity check), load the keyring image
// as a state store, check the counts against the manifest, check that the
// root's check value is the manifest's and every keyring key's, and unwrap
// every keyring key with `root` and every version under its keyring key (or
// the root, before the keyring key), each key only in SecureBytes, dropped
// at once.
Result<SnapshotReport> verify_snapshot(std::span<const std::uint8_t> bytes, RootOfTrust& root);

// Writes a verified snapshot's databases into `state_dir` (rootseal.db,
// tokens.db when present, cluster-id when the manifest has one), each file
// durably, 0600. Refuses (conflict) a state folder that already holds any of
// those files (or their -wal/-shm siblings) unless `force`; with `force` the
// old files are replaced. The caller verifies first.
Result<void> restore_snapshot_files(const SnapshotView& snapshot, const std::filesystem::path& state_dir, bool force);

}  // namespace rootseal::kms
