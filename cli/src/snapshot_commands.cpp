#include "snapshot_commands.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <system_error>

#include "admin_client.hpp"
#include "ceremony_common.hpp"
#include "key_copy.hpp"
#include "rootseal/daemon/config.hpp"
#include "rootseal/daemon/snapshots.hpp"
#include "rootseal/daemon/state.hpp"
#include "rootseal/etcdstore/etcd_store.hpp"
#include "rootseal/kms/snapshot.hpp"
#include "root_args.hpp"
#include "token_args.hpp"
#include "util.hpp"

namespace rootseal::cli {

namespace asio = boost::asio;
using kms::Errc;
using kms::fail;

struct SnapshotCommands {
  // Where the snapshots are: a destination of the configuration, a folder, or one file.
  struct Source {
    std::string config = "/etc/rootseal/rootseald.yaml";
    std::string destination;
    std::string folder;
    std::string file;
    CLI::Option* config_option = nullptr;  // given on the command line?
  };
  CLI::App* list = nullptr;
  CLI::App* verify = nullptr;
  CLI::App* restore = nullptr;
  CLI::App* now = nullptr;
  std::string now_socket;
  std::string now_config;
  int now_timeout_s = 600;
  Source list_src, verify_src, restore_src;
  std::string verify_name, restore_name;
  TokenArgs verify_tok, restore_tok;
  TpmArgs verify_tpm, restore_tpm;
  std::string state_dir;
  bool force = false;
};

namespace {

void add_source(CLI::App* cmd, SnapshotCommands::Source& s, bool with_file) {
  s.config_option = cmd->add_option("--config", s.config,
                                    "rootseald.yaml whose snapshots.destinations (and, with a TPM root, tpm:) to read")
                        ->capture_default_str();
  cmd->add_option("--destination", s.destination, "name of the destination (default: the first one)");
  cmd->add_option("--folder", s.folder, "a folder of snapshots instead of the configuration's destinations");
  if (with_file) cmd->add_option("--file", s.file, "one snapshot file instead of a destination");
}

// Runs one awaitable to completion on `io`.
template <class T>
kms::Result<T> wait(asio::io_context& io, asio::awaitable<kms::Result<T>> a) {
  std::optional<kms::Result<T>> out;
  std::exception_ptr failure;
  asio::co_spawn(io, std::move(a), [&](const std::exception_ptr& e, kms::Result<T> r) {
    if (e) {
      failure = e;
      return;
    }
    out.emplace(std::move(r));
  });
  io.restart();
  io.run();
  if (failure) std::rethrow_exception(failure);
  if (!out) return fail(Errc::internal, "the operation did not complete");
  return std::move(*out);
}

struct Opened {
  std::unique_ptr<sync::ObjectStore> store;
  std::filesystem::path state_dir;  // the configuration's, when one was read
};

kms::Result<Opened> open_source(const SnapshotCommands::Source& s, asio::io_context& io) {
  Opened out;
  if (!s.folder.empty()) {
    out.store = sync::make_folder_store(s.folder);
    return out;
  }
  ROOTSEAL_LET(cfg, daemon::load_config(s.config));
  out.state_dir = cfg.state_dir;
  if (!cfg.snapshots || cfg.snapshots->destinations.empty()) {
    return fail(Errc::not_found, s.config + " has no snapshots.destinations (or give --folder / --file)");
  }
  const daemon::SnapshotDestination* chosen = &cfg.snapshots->destinations.front();
  if (!s.destination.empty()) {
    chosen = nullptr;
    for (const auto& d : cfg.snapshots->destinations) {
      if (d.name == s.destination) chosen = &d;
    }
    if (chosen == nullptr) return fail(Errc::not_found, "no destination '" + s.destination + "' in " + s.config);
  }
  ROOTSEAL_TRY_ASSIGN(out.store, daemon::open_snapshot_destination(*chosen, io.get_executor()));
  return out;
}

kms::Result<std::vector<std::uint8_t>> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(Errc::not_found, "cannot read " + path);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The named snapshot, or the newest one; its name and bytes.
kms::Result<std::pair<std::string, std::vector<std::uint8_t>>> fetch(const SnapshotCommands::Source& s,
                                                                     const std::string& name, asio::io_context& io,
                                                                     std::filesystem::path* config_state_dir) {
  if (!s.file.empty()) {
    ROOTSEAL_LET(bytes, read_file(s.file));
    return std::make_pair(std::filesystem::path(s.file).filename().string(), std::move(bytes));
  }
  ROOTSEAL_LET(src, open_source(s, io));
  if (config_state_dir != nullptr) *config_state_dir = src.state_dir;
  std::string chosen = name;
  if (chosen.empty()) {
    ROOTSEAL_LET(objects, wait(io, src.store->list()));
    for (const auto& o : objects) {
      if (kms::is_snapshot_object_name(o.name)) chosen = o.name;  // sorted: the last is the newest
    }
    if (chosen.empty()) return fail(Errc::not_found, "no snapshot in " + src.store->describe());
  }
  ROOTSEAL_LET(bytes, wait(io, src.store->get(chosen)));
  return std::make_pair(chosen, std::move(bytes));
}

std::string describe(const std::string& name, const kms::SnapshotReport& r, const std::string& root) {
  const auto& m = r.manifest;
  return "snapshot " + name + ": good\n  taken " + kms::snapshot_time_name(m.created_unix_ms) + " on host " + m.host +
         (m.cluster_id.empty() ? "" : ", cluster " + m.cluster_id) + "\n  from " +
         (m.storage == "etcd" ? "etcd at revision " + std::to_string(m.etcd_revision) : std::string("SQLite")) +
         "\n  " + std::to_string(m.keys) + " keys, " + std::to_string(r.unwrapped) +
         " versions: every one unwraps with " + root + " (check value " + m.root_kcv + ")\n  content sha256 " +
         m.content_sha256 + "\n";
}

bool given(const SnapshotCommands::Source& s) { return s.config_option != nullptr && s.config_option->count() > 0; }

int report(const kms::Error& e, Console& con) {
  con.err("rootseal: error: " + e.message + "\n");
  return 1;
}

int run_list(SnapshotCommands& c, Console& con) {
  asio::io_context io;
  auto src = open_source(c.list_src, io);
  if (!src) return report(src.error(), con);
  auto objects = wait(io, src->store->list());
  if (!objects) return report(objects.error(), con);
  std::size_t n = 0;
  for (const auto& o : *objects) {
    if (!kms::is_snapshot_object_name(o.name)) continue;
    con.out(o.name + "  " + std::to_string(o.size) + " bytes\n");
    ++n;
  }
  con.out(std::to_string(n) + " snapshots in " + src->store->describe() + "\n");
  return 0;
}

int run_verify(SnapshotCommands& c, Console& con) {
  asio::io_context io;
  auto got = fetch(c.verify_src, c.verify_name, io, nullptr);
  if (!got) return report(got.error(), con);
  auto root = open_root(c.verify_tok, c.verify_tpm, c.verify_src.config, given(c.verify_src));
  if (!root) return report(root.error(), con);
  auto r = kms::verify_snapshot(got->second, *root->root);
  if (!r) return report(kms::Error(r.error().code, "snapshot " + got->first + ": " + r.error().message), con);
  con.out(describe(got->first, *r, root->what));
  return 0;
}

// The restore into an etcd prefix (a configuration with storage: etcd), after
// verify_snapshot passed. Offline like storage migrate (refused while a host
// is registered), resumable: <prefix>cluster/restoring marks the prefix from
// the first write until the keys are read back and verified (no host unseals
// meanwhile); a run again skips the keys already there, identical. Without
// --force the prefix may hold nothing else than the snapshot holds: other
// keys, another version of a key, another cluster id or root check value are
// refused before anything is written; --force deletes and replaces them.
kms::Result<std::string> restore_into_etcd(const daemon::Config& cfg, const std::string& name,
                                           const kms::SnapshotView& view, kms::RootOfTrust& root, bool force) {
  const auto& m = view.manifest;
  const std::string& prefix = cfg.etcd.prefix;
  std::string endpoints;
  for (const auto& e : cfg.etcd.endpoints) endpoints += (endpoints.empty() ? "" : ",") + e;
  const std::string where = "etcd " + endpoints + ", prefix " + prefix;
  ROOTSEAL_LET(keys, kms::snapshot_keys(view));
  ROOTSEAL_LET(keyring_keys, kms::snapshot_keyring_keys(view));
  ROOTSEAL_LET(store, daemon::open_etcd_store(cfg.etcd));
  ROOTSEAL_LET(cluster, store->cluster_view());
  ROOTSEAL_TRY(refuse_registered_hosts(cluster, prefix, "the restore"));
  ROOTSEAL_LET(now, store->read_snapshot());

  // What the prefix holds that the snapshot does not.
  std::map<std::string, const kms::KeyRecord*, std::less<>> wanted;
  for (const auto& k : keys) wanted.emplace(k.name, &k);
  std::vector<std::string> foreign;  // for the refusal
  std::vector<std::string> doomed;   // deleted with --force
  for (const auto& k : now.keys) {
    const auto it = wanted.find(k.name);
    const std::string why = it == wanted.end() ? "not in the snapshot" : key_difference(*it->second, k);
    if (why.empty()) continue;
    foreign.push_back("'" + k.name + "' (" + why + ")");
    doomed.push_back(k.name);
  }
  std::vector<std::uint32_t> doomed_kks;  // keyring keys the snapshot has not, or has otherwise
  for (const auto& kk : now.keyring_keys) {
    if (std::find(keyring_keys.begin(), keyring_keys.end(), kk) != keyring_keys.end()) continue;
    foreign.push_back("keyring key " + std::to_string(kk.id) + " (not in the snapshot as it is there)");
    doomed_kks.push_back(kk.id);
  }
  if (now.root_kcv && *now.root_kcv != m.root_kcv) {
    foreign.push_back("the root check value " + *now.root_kcv + " (" + prefix + "cluster/root_kcv; the snapshot's " +
                      m.root_kcv + ")");
  }
  if (now.cluster_id && !m.cluster_id.empty() && *now.cluster_id != m.cluster_id) {
    foreign.push_back("the cluster id " + *now.cluster_id + " (" + prefix + "cluster/id; the snapshot's " +
                      m.cluster_id + ")");
  }
  if (!foreign.empty() && !force) {
    return fail(Errc::conflict, where + " is not empty: it holds " + name_list(foreign) +
                                    "; nothing written (pass --force to replace what it holds with the snapshot)");
  }

  ROOTSEAL_TRY(store->mark_restoring(name));
  crash_point("restore-marked");
  for (const auto& k : doomed) {
    auto gone = store->delete_key(k);
    if (!gone && gone.error().code != Errc::not_found) {
      return fail(gone.error().code, "key '" + k + "': " + gone.error().message);
    }
  }
  for (const auto id : doomed_kks) {
    // Every version under it went with the doomed keys above.
    auto gone = store->retire_keyring_key(id);
    if (!gone && gone.error().code != Errc::not_found) {
      return fail(gone.error().code, "keyring key " + std::to_string(id) + ": " + gone.error().message);
    }
  }
  ROOTSEAL_TRY(store->set_cluster_records(m.cluster_id, m.root_kcv));
  ROOTSEAL_TRY(copy_keyring_keys(keyring_keys, *store));
  ROOTSEAL_LET(before, store->read_snapshot());
  ROOTSEAL_LET(copied, copy_keys(keys, before.keys, *store, "restore-copied"));
  crash_point("restore-copied-all");
  ROOTSEAL_LET(after, store->read_snapshot());
  if (after.keys.size() != keys.size()) {
    return fail(Errc::conflict, "verification: " + where + " holds " + std::to_string(after.keys.size()) +
                                    " keys, the snapshot " + std::to_string(keys.size()) +
                                    " (written meanwhile?); the restore mark stays: run again");
  }
  ROOTSEAL_LET(versions, verify_copies(keys, keyring_keys, after.keys, after.keyring_keys, root, where));
  // The tokens made with rootseal token create (hashes), under the mark too.
  ROOTSEAL_LET(tokens, daemon::restore_created_tokens(view.section("tokens"), cfg.etcd, force));
  crash_point("restore-tokens-copied");
  ROOTSEAL_TRY(store->unmark_restoring());
  std::string out = "restored into " + where + " at revision " + std::to_string(after.revision) + "\n  " +
                    std::to_string(keys.size()) + " keys: " + std::to_string(copied.copied) + " written, " +
                    std::to_string(copied.present) + " already there and identical" +
                    (doomed.empty() ? "" : ", " + std::to_string(doomed.size()) + " replaced or removed (--force)") +
                    "\n  " + std::to_string(versions) + " versions read back: every one unwraps\n";
  if (!m.cluster_id.empty()) out += "  cluster id " + m.cluster_id + "\n";
  out += "  created tokens (hashes): " + std::to_string(tokens.copied) + " written, " + std::to_string(tokens.present) +
         " already there and identical\n";
  out += "  next: start rootseald with this configuration on every host\n";
  return out;
}

int run_restore(SnapshotCommands& c, Console& con) {
  asio::io_context io;
  std::filesystem::path config_state_dir;
  auto got = fetch(c.restore_src, c.restore_name, io, &config_state_dir);
  if (!got) return report(got.error(), con);
  // Without --state-dir, the configuration says where: its etcd prefix (storage: etcd) or its state_dir.
  std::optional<daemon::Config> cfg;
  std::error_code exists_ec;
  if (c.state_dir.empty() && (given(c.restore_src) || std::filesystem::exists(c.restore_src.config, exists_ec))) {
    auto loaded = daemon::load_config(c.restore_src.config);
    if (!loaded) return report(loaded.error(), con);
    config_state_dir = loaded->state_dir;
    cfg.emplace(std::move(*loaded));
  }
  const bool to_etcd = cfg && cfg->storage == "etcd";
  const std::filesystem::path target = c.state_dir.empty() ? config_state_dir : std::filesystem::path(c.state_dir);
  if (!to_etcd && (target.empty() || !target.is_absolute())) {
    return report(kms::Error(Errc::invalid_argument, "--state-dir: an absolute path is required"), con);
  }
  auto root = open_root(c.restore_tok, c.restore_tpm, c.restore_src.config, given(c.restore_src));
  if (!root) return report(root.error(), con);
  // Manifest, digests, SQLite integrity, counts, root check value, every unwrap: before anything is written.
  auto r = kms::verify_snapshot(got->second, *root->root);
  if (!r) return report(kms::Error(r.error().code, "snapshot " + got->first + ": " + r.error().message), con);
  auto view = kms::parse_snapshot(got->second);
  if (!view) return report(view.error(), con);
  if (to_etcd) {
    auto done = restore_into_etcd(*cfg, got->first, *view, *root->root, c.force);
    if (!done) return report(kms::Error(done.error().code, "restore: " + done.error().message), con);
    con.out(describe(got->first, *r, root->what) + *done);
    return 0;
  }
  // Never under a running rootseald (it holds the state folder's lock), --force or not.
  std::error_code ec;
  std::filesystem::create_directories(target, ec);
  if (ec) return report(kms::Error(Errc::storage_failure, "cannot create " + target.string()), con);
  auto lock = daemon::StateDirLock::acquire(target, "rootseal snapshot restore");
  if (!lock) return report(lock.error(), con);
  auto restored = kms::restore_snapshot_files(*view, target, c.force);
  if (!restored) return report(restored.error(), con);
  con.out(describe(got->first, *r, root->what) + "restored into " + target.string() + " (rootseal.db" +
          (view->section("tokens").empty() ? "" : ", tokens.db") +
          (view->manifest.cluster_id.empty() ? "" : ", cluster-id") +
          "); give the files to the service user (chown) and start rootseald\n");
  return 0;
}

// Asks the running rootseald for a snapshot now, over its admin socket, and
// waits for the run (take, upload, read back, verify at every destination).
int run_now(SnapshotCommands& c, Console& con) {
  auto socket = admin_socket_path(c.now_socket, c.now_config);
  if (!socket) return report(socket.error(), con);
  const auto request = kms::SecureBytes::copy_of(std::string_view(R"({"op":"snapshot.now"})"));
  auto answer = admin_call(*socket, request, std::chrono::seconds(std::max(1, c.now_timeout_s)));
  if (!answer) return report(answer.error(), con);
  auto data = (*answer)->data();
  if (!data) return report(data.error(), con);
  const auto& d = **data;
  auto text = [&](const char* k) -> std::string {
    const auto* v = d.if_contains(k);
    if (v == nullptr) return "";
    if (v->is_string()) return std::string(v->get_string());
    if (v->is_uint64()) return std::to_string(v->get_uint64());
    if (v->is_int64()) return std::to_string(v->get_int64());
    return "";
  };
  con.out("snapshot " + text("snapshot") + ": good at " + text("destinations") + " destinations (" + text("bytes") +
          " bytes, " + text("keys") + " keys, " + text("versions") + " versions unwrapped)\n");
  return 0;
}

}  // namespace

std::unique_ptr<SnapshotCommands, void (*)(SnapshotCommands*)> add_snapshot_commands(CLI::App& app) {
  std::unique_ptr<SnapshotCommands, void (*)(SnapshotCommands*)> c(new SnapshotCommands,
                                                                   [](SnapshotCommands* p) { delete p; });
  CLI::App* snap =
      app.add_subcommand("snapshot", "keyring snapshots (docs/operations.md: Backups of the state folder)");
  snap->require_subcommand(1);
  c->list = snap->add_subcommand("list", "list the snapshots of a destination, oldest first");
  add_source(c->list, c->list_src, false);
  c->verify = snap->add_subcommand("verify",
                                   "check a snapshot against the root key (PKCS#11 token, or TPM with --tpm): "
                                   "digests, SQLite integrity, counts, root check value, every key version "
                                   "unwraps");
  c->verify->add_option("name", c->verify_name, "the snapshot (default: the newest)");
  add_source(c->verify, c->verify_src, true);
  add_root_options(c->verify, c->verify_tok, c->verify_tpm);
  c->restore = snap->add_subcommand("restore",
                                    "verify a snapshot against the root key (PKCS#11 token, or TPM with "
                                    "--tpm), then write it into an empty state folder (rootseald stopped), or, with a "
                                    "configuration whose storage is etcd and no --state-dir, into its etcd prefix "
                                    "(every host stopped; resumable)");
  c->restore->add_option("name", c->restore_name, "the snapshot (default: the newest)");
  add_source(c->restore, c->restore_src, true);
  add_root_options(c->restore, c->restore_tok, c->restore_tpm);
  c->restore->add_option("--state-dir", c->state_dir,
                         "the state folder to restore into (default: the configuration's state_dir)");
  c->restore->add_flag("--force", c->force,
                       "replace the databases of a non-empty state folder, or the keys, cluster id and root "
                       "check value an etcd prefix holds");
  c->now = snap->add_subcommand("now",
                                "ask the running rootseald for a snapshot now, over its admin socket, "
                                "and wait until it is verified at every destination");
  c->now->add_option("--socket", c->now_socket,
                     "rootseald's admin socket (default: admin.socket of --config, "
                     "$ROOTSEAL_ADMIN_SOCKET, /run/rootseal/admin.sock)");
  c->now->add_option("--config", c->now_config, "rootseald's configuration file, to find admin.socket");
  c->now->add_option("--timeout", c->now_timeout_s, "seconds to wait for the run")->capture_default_str();
  return c;
}

std::optional<int> run_snapshot_commands(SnapshotCommands& c, Console& con) {
  if (*c.list) return run_list(c, con);
  if (*c.verify || *c.restore) {
    // tpm2-tss logs its own errors on stderr, unstructured: silent unless the
    // operator set TSS2_LOG. Before any thread exists: setenv is safe here.
    ::setenv("TSS2_LOG", "all+none", /*overwrite=*/0);  // NOLINT(concurrency-mt-unsafe)
  }
  if (*c.verify) return run_verify(c, con);
  if (*c.restore) return run_restore(c, con);
  if (*c.now) return run_now(c, con);
  return std::nullopt;
}

}  // namespace rootseal::cli
