// rootseal::cli — argument parsing (CLI11) and process set-up.
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "admin_commands.hpp"
#include "ceremony_commands.hpp"
#include "cluster_commands.hpp"
#include "hsm_commands.hpp"
#include "snapshot_commands.hpp"
#include "storage_commands.hpp"
#include "token_args.hpp"
#include "ceremony.hpp"
#include "rootseal/cli/cli.hpp"
#include "secret_io.hpp"
#include "rootseal/daemon/audit.hpp"

#ifndef ROOTSEAL_VERSION
#define ROOTSEAL_VERSION "0.0.0"
#endif

namespace rootseal::cli {

bool harden_process() noexcept {
  bool ok = ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0;
  const rlimit no_core{0, 0};
  ok = ::setrlimit(RLIMIT_CORE, &no_core) == 0 && ok;
  return ok;
}

void add_token_options(CLI::App* cmd, TokenArgs& t, bool required) {
  cmd->add_option("--module", t.module, "PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so)")->required(required);
  cmd->add_option("--token", t.token, "label of the PKCS#11 token")->required(required);
  cmd->add_option("--key-label", t.key_label, "label of the root key in the token")->capture_default_str();
  cmd->add_option("--pin-fd", t.pin_fd,
                  "read the user PIN from this file descriptor (default: prompt on the terminal, echo off)");
}

TokenTarget token_target(const TokenArgs& a) {
  TokenTarget t;
  t.module = a.module;
  t.token_label = a.token;
  t.key_label = a.key_label;
  const int fd = a.pin_fd;
  const std::string label = a.token;
  t.pin = [fd, label]() -> kms::Result<kms::SecureBytes> {
    if (fd >= 0) {
      auto pin = read_secret_fd(fd);
      ::close(fd);  // read once; nothing else may read it later
      return pin;
    }
    return prompt_secret_tty("User PIN of token '" + label + "': ");
  };
  return t;
}

namespace {

// rootseal audit verify FILE...: the daemon's hash-chained audit log; rotated
// files given oldest first are checked as one chain.
struct AuditLogArgs {
  CLI::App* verify = nullptr;
  std::vector<std::string> files;
};

void add_audit_log_commands(CLI::App& app, AuditLogArgs& a) {
  CLI::App* audit_log = app.add_subcommand("audit", "rootseald's audit log");
  audit_log->require_subcommand(1);
  a.verify = audit_log->add_subcommand(
      "verify", "check the hash chain of an audit log file, or of rotated files given oldest first as one chain");
  a.verify
      ->add_option("files", a.files,
                   "the audit log (e.g. /var/log/rootseal/audit.log), or its rotated files oldest first "
                   "(audit.log.2 audit.log.1 audit.log)")
      ->required();
}

int run_audit_verify(const AuditLogArgs& a, Console& con) {
  std::optional<std::string> previous_last;
  std::uint64_t total = 0;
  for (const auto& file : a.files) {
    auto r = daemon::verify_audit_log(file, previous_last);
    if (!r) {
      con.err("rootseal: audit log " + file + ": " + r.error().message + "\n");
      return 1;
    }
    total += r->lines;
    previous_last = r->last_sha256;
    const auto n = r->recoveries.size();
    con.out("audit log " + file + ": " + std::to_string(r->lines) + " lines, chain intact" +
            (r->continues.empty() ? "" : ", continues the file before it") +
            (n == 0 ? "" : ", " + std::to_string(n) + (n == 1 ? " recovery:" : " recoveries:")) + "\n");
    // Each recovery line is for the auditor to check (docs/operations.md).
    for (const auto& rec : r->recoveries) {
      con.out("  line " + std::to_string(rec.line) +
              ": recovered after a crash or a full disk: " + std::to_string(rec.recovery.damaged_bytes) +
              " bytes set aside in " + rec.recovery.damaged_file.string() + " (sha256 " + rec.recovery.damaged_sha256 +
              "), " + (rec.damaged_file_checked ? "checked" : "not found beside the log") + "\n");
    }
  }
  if (a.files.size() > 1) {
    con.out(std::to_string(a.files.size()) + " files, " + std::to_string(total) + " lines, one chain\n");
  }
  return 0;
}

}  // namespace

int run(int argc, char** argv) {
  StdConsole con;
  if (!harden_process()) {
    con.err("rootseal: error: cannot disable core dumps (prctl/setrlimit); refusing to handle key material\n");
    return 1;
  }

  CLI::App app{"rootseal — offline key ceremony for rootseald's HSM root key, and local admin of rootseald"};
  app.set_version_flag("--version", "rootseal " ROOTSEAL_VERSION);
  app.require_subcommand(1);
  // ceremony init | share decrypt | restore | reshare | verify | rotate-root | audit (docs/ceremony.md)
  auto ceremony = add_ceremony_commands(app);
  AuditLogArgs audit_log;
  add_audit_log_commands(app, audit_log);
  // status, unseal, token ..., tpm seal-pin | reseal (docs/admin.md)
  auto admin = add_admin_commands(app);
  // snapshot list | verify | restore (docs/operations.md)
  auto snapshots = add_snapshot_commands(app);
  // hsm probe (docs/hsm.md)
  auto hsm_cmds = add_hsm_commands(app);
  // storage migrate (docs/ha.md)
  auto storage = add_storage_commands(app);
  // cluster status (docs/ha.md)
  auto cluster = add_cluster_commands(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  try {
    if (auto rc = run_admin_commands(*admin, con)) return *rc;
    if (auto rc = run_snapshot_commands(*snapshots, con)) return *rc;
    if (auto rc = run_hsm_commands(*hsm_cmds, con)) return *rc;
    if (auto rc = run_storage_commands(*storage, con)) return *rc;
    if (auto rc = run_cluster_commands(*cluster, con)) return *rc;
    if (auto rc = run_ceremony_commands(*ceremony, con)) return *rc;
    if (*audit_log.verify) return run_audit_verify(audit_log, con);
  } catch (const std::exception& e) {
    con.err(std::string("rootseal: error: ") + e.what() + "\n");
    return 1;
  }
  return 2;
}

}  // namespace rootseal::cli
