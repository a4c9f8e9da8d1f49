// rootseal storage migrate: see storage_commands.hpp and docs/ha.md.
//
// The steps, each safe to interrupt (SIGKILL included) and to run again:
//   1. refuse while the source is in use: the state folder's lock
//      (<state_dir>/rootseald.lock, held by rootseald and by this command),
//      and, from etcd, any host registered under <prefix>members/;
//   2. open the root (PIN once) and check that every version of the source is
//      wrapped by it and unwraps (and that the cluster's recorded root key
//      check value in etcd, if any, is its own);
//   3. the cluster id: recorded at the target when it has none; a different
//      one is refused;
//   4. every key record of the source that the target lacks is created there
//      (whole: all versions and the config, in one write); one the target
//      holds identical is skipped; one it holds different is a conflict,
//      refused with its name before anything is written (never overwritten);
//   5. the target is read back: every source key is there, identical, and
//      every version unwraps with the root.
#include "storage_commands.hpp"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include "key_copy.hpp"
#include "root_args.hpp"
#include "rootseal/daemon/config.hpp"
#include "rootseal/daemon/state.hpp"
#include "rootseal/etcdstore/etcd_store.hpp"
#include "rootseal/kms/state_store.hpp"
#include "token_args.hpp"
#include "util.hpp"

namespace rootseal::cli {

using kms::Errc;
using kms::fail;
namespace fs = std::filesystem;

struct StorageCommands {
  CLI::App* migrate = nullptr;
  std::string config = "/etc/rootseal/rootseald.yaml";
  std::string to;
  std::string state_dir;
  TokenArgs tok;
  TpmArgs tpm;
};

namespace {

// <state_dir>/cluster-id, if there is one (as rootseald writes it).
std::optional<std::string> local_cluster_id(const fs::path& state_dir) {
  std::ifstream in(state_dir / "cluster-id");
  std::string id;
  if (in && std::getline(in, id) && id.size() == 36) return id;
  return std::nullopt;
}

struct Plan {
  bool to_etcd = true;
  fs::path state_dir;
  fs::path sqlite_path;
  std::string etcd_where;  // "etcd <endpoints>, prefix <p>"
};

struct Stores {
  std::unique_ptr<etcdstore::EtcdStore> etcd;
  std::unique_ptr<kms::StateStore> sqlite;
  kms::StateStore* from = nullptr;
  kms::StateStore* to = nullptr;
};

kms::Result<Plan> plan_of(const StorageCommands& c, const daemon::Config& cfg) {
  if (cfg.storage != "etcd") {
    return fail(Errc::invalid_argument, "--config " + c.config +
                                            ": give the configuration with storage: etcd and its etcd section (the one "
                                            "rootseald runs with on etcd); its state_dir is the SQLite side");
  }
  Plan p;
  p.to_etcd = c.to == "etcd";
  p.state_dir = c.state_dir.empty() ? cfg.state_dir : fs::path(c.state_dir);
  if (!p.state_dir.is_absolute()) return fail(Errc::invalid_argument, "--state-dir: an absolute path is required");
  p.sqlite_path = p.state_dir / "rootseal.db";
  std::string endpoints;
  for (const auto& e : cfg.etcd.endpoints) endpoints += (endpoints.empty() ? "" : ",") + e;
  p.etcd_where = "etcd " + endpoints + ", prefix " + cfg.etcd.prefix;
  std::error_code ec;
  if (p.to_etcd && !fs::exists(p.sqlite_path, ec)) {
    return fail(Errc::not_found, "no SQLite store at " + p.sqlite_path.string() + " to migrate (--state-dir?)");
  }
  if (!p.to_etcd) {
    fs::create_directories(p.state_dir, ec);
    if (ec) return fail(Errc::storage_failure, "cannot create " + p.state_dir.string() + ": " + ec.message());
    ::chmod(p.state_dir.c_str(), 0700);
  }
  return p;
}

// Step 3: the cluster id moves with the keys; a different one is refused.
kms::Result<std::string> carry_cluster_id(const Plan& p, etcdstore::EtcdStore& etcd,
                                          const etcdstore::EtcdStore::ClusterView& view, const std::string& prefix) {
  const auto local = local_cluster_id(p.state_dir);
  const fs::path file = p.state_dir / "cluster-id";
  if (p.to_etcd) {
    if (!local) return std::string(view.cluster_id.value_or(""));
    // Recorded only if etcd has none (a txn: another writer meanwhile wins and is refused below).
    ROOTSEAL_LET(recorded, view.cluster_id ? kms::Result<std::string>(*view.cluster_id) : etcd.cluster_id(*local));
    if (recorded != *local) {
      return fail(Errc::conflict, "cluster id: etcd records " + recorded + " at " + prefix + "cluster/id, this host " +
                                      *local + " (" + file.string() +
                                      "); refused, nothing copied (to join that cluster under its id, remove " +
                                      file.string() + " and run again)");
    }
    return recorded;
  }
  if (!view.cluster_id) return std::string(local.value_or(""));
  if (local && *local != *view.cluster_id) {
    return fail(Errc::conflict, "cluster id: " + file.string() + " holds " + *local + ", etcd " + *view.cluster_id +
                                    " (" + prefix + "cluster/id); refused, nothing copied");
  }
  if (!local) {
    const std::string text = *view.cluster_id + "\n";
    ROOTSEAL_TRY(kms::write_file_durably(file, bytes_of(text), 0600, /*exclusive=*/false));
  }
  return *view.cluster_id;
}

// Step 2: every keyring key of the source wrapped by this root, every version
// by one of them (or, from before the keyring key, by the root).
kms::Result<void> check_wrapped_by(const std::vector<kms::KeyRecord>& records,
                                   const std::vector<kms::KeyringKeyRecord>& keyring_keys, const std::string& kcv,
                                   const std::string& where) {
  std::set<std::string, std::less<>> tags;
  for (const auto& kk : keyring_keys) {
    if (kk.root_kcv != kcv) {
      return fail(Errc::conflict, "keyring key " + std::to_string(kk.id) + " in " + where +
                                      " is wrapped by another root key (kcv " + kk.root_kcv +
                                      ") than the one given (kcv " + kcv + "); nothing copied");
    }
    tags.insert(kms::keyring_key_tag(kk.id, kk.kcv));
  }
  for (const auto& k : records) {
    for (const auto& v : k.versions) {
      if (v.root_kcv != kcv && !tags.contains(v.root_kcv)) {
        return fail(Errc::conflict, "key '" + k.name + "' version " + std::to_string(v.version) + " in " + where +
                                        " is wrapped by another root key (kcv " + v.root_kcv +
                                        ") than the one given (kcv " + kcv + "); nothing copied");
      }
    }
  }
  return {};
}

kms::Result<std::string> migrate(const StorageCommands& c) {
  ROOTSEAL_LET(cfg, daemon::load_config(c.config));
  ROOTSEAL_LET(p, plan_of(c, cfg));
  // Step 1: nothing else uses the state folder (rootseald holds this lock), nor etcd's keys.
  auto lock = daemon::StateDirLock::acquire(p.state_dir, "rootseal storage migrate");
  if (!lock) {
    return fail(lock.error().code, lock.error().message + "; the migration runs with rootseald stopped");
  }
  Stores s;
  ROOTSEAL_TRY_ASSIGN(s.etcd, daemon::open_etcd_store(cfg.etcd));
  ROOTSEAL_LET(view, s.etcd->cluster_view());
  if (!p.to_etcd) ROOTSEAL_TRY(refuse_registered_hosts(view, cfg.etcd.prefix, "the migration"));
  ROOTSEAL_TRY_ASSIGN(s.sqlite, kms::open_sqlite_store(p.sqlite_path));
  s.from = p.to_etcd ? s.sqlite.get() : static_cast<kms::StateStore*>(s.etcd.get());
  s.to = p.to_etcd ? static_cast<kms::StateStore*>(s.etcd.get()) : s.sqlite.get();
  const std::string from_where = p.to_etcd ? "SQLite " + p.sqlite_path.string() : p.etcd_where;
  const std::string to_where = p.to_etcd ? p.etcd_where : "SQLite " + p.sqlite_path.string();

  // Step 2.
  ROOTSEAL_LET(root, open_root(c.tok, c.tpm, c.config, true));
  ROOTSEAL_LET(kcv, root.root->key_check_value());
  if (view.root_kcv && *view.root_kcv != kcv) {
    return fail(Errc::conflict, "the cluster's root key (kcv " + *view.root_kcv + ", " + cfg.etcd.prefix +
                                    "cluster/root_kcv) is not the root key given (kcv " + kcv + "); nothing copied");
  }
  ROOTSEAL_LET(source, s.from->load_all());
  if (!p.to_etcd) {
    // load_all falls back to one member's (serializable) view without quorum;
    // a migration copies only what the quorum has: nothing newer than that read.
    ROOTSEAL_LET(now, s.etcd->cluster_view());
    if (now.latest_key_revision > s.etcd->loaded_revision()) {
      return fail(Errc::unavailable,
                  "etcd: the keys read are older than the cluster's (revision " +
                      std::to_string(s.etcd->loaded_revision()) + " < " + std::to_string(now.latest_key_revision) +
                      ": a member without quorum, or a change meanwhile); nothing copied, run again");
    }
  }
  ROOTSEAL_LET(source_kks, s.from->keyring_keys());
  ROOTSEAL_TRY(check_wrapped_by(source, source_kks, kcv, from_where));
  if (auto n = unwrap_all(source, source_kks, *root.root, from_where); !n) {
    return fail(n.error().code, n.error().message + "; nothing copied");
  }

  // Steps 3 to 5 (the cluster's root check value recorded for a new cluster,
  // once its id is known not to conflict).
  ROOTSEAL_LET(cluster_id, carry_cluster_id(p, *s.etcd, view, cfg.etcd.prefix));
  if (p.to_etcd) ROOTSEAL_TRY(s.etcd->check_root(kcv));
  crash_point("migrate-prepared");
  // The target's own keyring key takes versions of another store merged into it.
  ROOTSEAL_LET(target_kks, s.to->keyring_keys());
  ROOTSEAL_LET(plan, plan_copy(source, source_kks, target_kks, *root.root));
  ROOTSEAL_LET(kks_added, copy_keyring_keys(plan.keyring_keys, *s.to));
  (void)kks_added;
  ROOTSEAL_LET(existing, s.to->load_all());
  ROOTSEAL_LET(copied, copy_keys(plan.keys, existing, *s.to, "migrate-copied"));
  crash_point("migrate-copied-all");
  ROOTSEAL_LET(after, s.to->load_all());
  ROOTSEAL_LET(after_kks, s.to->keyring_keys());
  ROOTSEAL_LET(versions, verify_copies(plan.keys, plan.keyring_keys, after, after_kks, *root.root, to_where));
  // The tokens made with rootseal token create (hashes): shared in etcd,
  // tokens.db on a SQLite host.
  ROOTSEAL_LET(tokens, daemon::copy_created_tokens(p.state_dir / "tokens.db", cfg.etcd, p.to_etcd));
  crash_point("migrate-tokens-copied");

  std::string out =
      "migrated " + from_where + " -> " + to_where + "\n  " + std::to_string(source.size()) +
      " keys: " + std::to_string(copied.copied) + " copied, " + std::to_string(copied.present) +
      " already there and identical" +
      (copied.others == 0 ? "" : "; " + std::to_string(copied.others) + " other keys of the target left as they are") +
      "\n  " + std::to_string(versions) + " versions: every one unwraps with " + root.what + " (check value " + kcv +
      ")\n";
  if (!cluster_id.empty()) out += "  cluster id " + cluster_id + "\n";
  out += "  created tokens (hashes): " + std::to_string(tokens.copied) + " copied, " + std::to_string(tokens.present) +
         " already there and identical\n";
  out += "  per host, not copied: the audit log, tpm-root.seal; the source is left as it was\n";
  out += p.to_etcd ? "  next: start rootseald with this configuration (storage: etcd) on every host\n"
                   : "  next: set storage: sqlite (remove the etcd section) and start rootseald\n";
  return out;
}

}  // namespace

std::unique_ptr<StorageCommands, void (*)(StorageCommands*)> add_storage_commands(CLI::App& app) {
  std::unique_ptr<StorageCommands, void (*)(StorageCommands*)> c(new StorageCommands,
                                                                 [](StorageCommands* p) { delete p; });
  CLI::App* storage = app.add_subcommand("storage", "rootseald's state store (docs/ha.md: Migration)");
  storage->require_subcommand(1);
  c->migrate = storage->add_subcommand(
      "migrate",
      "copy the keys between SQLite (<state_dir>/rootseal.db) and etcd, rootseald stopped: idempotent and "
      "resumable; a key the target holds with other contents is refused, never overwritten; every version copied "
      "is checked to unwrap with the root key");
  c->migrate
      ->add_option("--config", c->config,
                   "rootseald.yaml with storage: etcd and its etcd section; its state_dir is the SQLite side")
      ->capture_default_str();
  c->migrate->add_option("--to", c->to, "the target: etcd (from SQLite) or sqlite (from etcd)")
      ->required()
      ->check(CLI::IsMember({"etcd", "sqlite"}));
  c->migrate->add_option("--state-dir", c->state_dir, "the SQLite side's state folder instead of state_dir");
  add_root_options(c->migrate, c->tok, c->tpm);
  return c;
}

std::optional<int> run_storage_commands(StorageCommands& c, Console& con) {
  if (!*c.migrate) return std::nullopt;
  // tpm2-tss logs its own errors on stderr, unstructured: silent unless the
  // operator set TSS2_LOG. Before any thread exists: setenv is safe here.
  ::setenv("TSS2_LOG", "all+none", /*overwrite=*/0);  // NOLINT(concurrency-mt-unsafe)
  auto r = migrate(c);
  if (!r) {
    con.err("rootseal: error: " + r.error().message + "\n");
    return 1;
  }
  con.out(*r);
  return 0;
}

}  // namespace rootseal::cli
