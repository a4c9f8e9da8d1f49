// Keyring snapshots: destinations, one verified snapshot, retention
// (rootseal/daemon/snapshots.hpp).
#include "rootseal/daemon/snapshots.hpp"
#include "etcd_token_db.hpp"

#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <fstream>

#include "rootseal/etcdstore/etcd_store.hpp"

namespace rootseal::daemon {

using kms::Errc;
using kms::fail;

kms::Result<std::unique_ptr<sync::ObjectStore>> open_snapshot_destination(const SnapshotDestination& d,
                                                                          const boost::asio::any_io_executor& ex) {
  if (d.kind == "folder") return sync::make_folder_store(d.path);
  const std::string w = "snapshots.destinations." + d.name;
  kms::Result<std::unique_ptr<sync::ObjectStore>> store = fail(Errc::invalid_argument, "unknown kind");
  if (d.kind == "s3") {
    sync::S3Spec s;
    s.bucket = d.bucket;
    s.prefix = d.prefix;
    s.region = d.region;
    s.endpoint = d.endpoint;
    s.sse = d.server_side_encryption;
    s.sse_kms_key_id = d.sse_kms_key_id;
    s.ca_file = d.ca_file;
    ROOTSEAL_TRY_ASSIGN(s.access_key_id, sync::read_host_credential(d.access_key_id, w + ".access_key_id"));
    ROOTSEAL_TRY_ASSIGN(s.secret_access_key, sync::read_host_credential(d.secret_access_key, w + ".secret_access_key"));
    if (d.session_token.set()) {
      ROOTSEAL_TRY_ASSIGN(s.session_token, sync::read_host_credential(d.session_token, w + ".session_token"));
    }
    store = sync::make_s3_store(ex, std::move(s));
  } else if (d.kind == "gcs") {
    sync::GcsSpec s;
    s.bucket = d.bucket;
    s.prefix = d.prefix;
    s.endpoint = d.endpoint;
    s.token_uri = d.token_uri;
    s.ca_file = d.ca_file;
    ROOTSEAL_TRY_ASSIGN(s.service_account_json,
                        sync::read_host_credential(d.service_account_json, w + ".service_account_json"));
    store = sync::make_gcs_store(ex, std::move(s));
  } else if (d.kind == "azure") {
    sync::AzureBlobSpec s;
    s.account = d.account;
    s.container = d.container;
    s.prefix = d.prefix;
    s.endpoint = d.endpoint;
    s.tenant_id = d.tenant_id;
    s.client_id = d.client_id;
    s.authority_host = d.authority_host;
    s.ca_file = d.ca_file;
    ROOTSEAL_TRY_ASSIGN(s.client_secret, sync::read_host_credential(d.client_secret, w + ".client_secret"));
    store = sync::make_azure_blob_store(ex, std::move(s));
  }
  if (!store) return fail(store.error().code, w + ": " + store.error().message);
  return store;
}

namespace {

std::string this_host() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  std::string h(buf);
  // The manifest takes plain printable text only.
  for (auto& c : h) {
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\') c = '_';
  }
  return h.empty() ? "unknown" : h;
}

std::string read_cluster_id(const std::filesystem::path& state_dir) {
  std::ifstream in(state_dir / "cluster-id");
  std::string id;
  if (in && std::getline(in, id) && id.size() == 36) return id;
  return {};
}

}  // namespace

kms::Result<TakenSnapshot> take_snapshot(const std::filesystem::path& state_dir, kms::RootOfTrust& root,
                                         std::int64_t now_ms) {
  kms::SnapshotInput in;
  ROOTSEAL_TRY_ASSIGN(in.keyring, kms::backup_sqlite_image(state_dir / "rootseal.db"));
  auto tokens = kms::backup_sqlite_image(state_dir / "tokens.db");
  if (tokens) {
    in.tokens = std::move(*tokens);
  } else if (tokens.error().code != Errc::not_found) {
    return std::unexpected(tokens.error());
  }
  in.created_unix_ms = now_ms;
  in.host = this_host();
  in.cluster_id = read_cluster_id(state_dir);
  ROOTSEAL_LET(kcv, root.key_check_value());
  TakenSnapshot out;
  out.name = kms::snapshot_object_name(now_ms);
  ROOTSEAL_TRY_ASSIGN(out.bytes, kms::build_snapshot(in, kcv));
  ROOTSEAL_TRY_ASSIGN(out.report, kms::verify_snapshot(out.bytes, root));
  return out;
}

kms::Result<TakenSnapshot> take_etcd_snapshot(etcdstore::EtcdStore& store, kms::RootOfTrust& root,
                                              std::int64_t now_ms) {
  ROOTSEAL_LET(state, store.read_snapshot());
  if (state.restoring) {
    return fail(Errc::conflict, "a snapshot restore into " + store.prefix() +
                                    " is under way or was interrupted: no snapshot until it has finished");
  }
  ROOTSEAL_LET(kcv, root.key_check_value());
  if (state.root_kcv && *state.root_kcv != kcv) {
    return fail(Errc::sealed, "etcd records another root key (kcv " + *state.root_kcv + ") than this host's (kcv " +
                                  kcv + "): no snapshot");
  }
  kms::SnapshotInput in;
  ROOTSEAL_TRY_ASSIGN(in.keyring, kms::keyring_image(state.keys, state.keyring_keys));
  // The created tokens, at the same revision (a value that does not read is
  // left out, as every host leaves it out).
  std::vector<StoredToken> tokens;
  for (const auto& [accessor, value] : state.tokens) {
    if (auto t = parse_token_record(accessor, value)) tokens.push_back(std::move(*t));
  }
  if (!tokens.empty()) ROOTSEAL_TRY_ASSIGN(in.tokens, TokenDb::image_of(tokens));
  in.created_unix_ms = now_ms;
  in.host = this_host();
  in.cluster_id = state.cluster_id.value_or("");
  in.storage = "etcd";
  in.etcd_revision = state.revision;
  TakenSnapshot out;
  out.name = kms::snapshot_object_name(now_ms);
  ROOTSEAL_TRY_ASSIGN(out.bytes, kms::build_snapshot(in, kcv));
  ROOTSEAL_TRY_ASSIGN(out.report, kms::verify_snapshot(out.bytes, root));
  return out;
}

std::optional<std::int64_t> snapshot_name_time(std::string_view name) {
  if (!kms::is_snapshot_object_name(name)) return std::nullopt;
  // rootseal-YYYYMMDDTHHMMSS.mmmZ.snap (digits checked by is_snapshot_object_name)
  const auto t = name.substr(9);
  auto num = [&](std::size_t at, std::size_t n) {
    int v = 0;
    for (std::size_t i = 0; i < n; ++i) v = v * 10 + (t[at + i] - '0');
    return v;
  };
  std::tm tm{};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(4, 2) - 1;
  tm.tm_mday = num(6, 2);
  tm.tm_hour = num(9, 2);
  tm.tm_min = num(11, 2);
  tm.tm_sec = num(13, 2);
  if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60) {
    return std::nullopt;
  }
  const std::time_t secs = ::timegm(&tm);
  return static_cast<std::int64_t>(secs) * 1000 + num(16, 3);
}

std::vector<std::string> snapshots_to_delete(const std::vector<sync::ObjectInfo>& objects, std::string_view keep,
                                             std::size_t count, std::chrono::milliseconds age, std::int64_t now_ms) {
  std::vector<std::pair<std::int64_t, std::string>> snaps;
  for (const auto& o : objects) {
    if (auto t = snapshot_name_time(o.name)) snaps.emplace_back(*t, o.name);
  }
  std::sort(snaps.begin(), snaps.end(),
            [](const auto& a, const auto& b) { return a.second > b.second; });  // newest first
  std::vector<std::string> out;
  for (std::size_t i = 0; i < snaps.size(); ++i) {
    const auto& [t, name] = snaps[i];
    if (name == keep) continue;
    const bool beyond_count = count > 0 && i >= count;
    const bool too_old = age.count() > 0 && now_ms - t > age.count();
    if (beyond_count || too_old) out.push_back(name);
  }
  return out;
}

}  // namespace rootseal::daemon
