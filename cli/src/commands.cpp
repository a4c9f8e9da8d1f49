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
#include "snapshot_commands.hpp"
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

void add_token_options(CLI::App* cmd, TokenArgs& t) {
  cmd->add_option("--module", t.module, "PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so)")->required();
  cmd->add_option("--token", t.token, "label of the PKCS#11 token")->required();
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

struct PeopleArgs {
  std::string officer;
  std::vector<std::string> witnesses;
};

void add_people_options(CLI::App* cmd, PeopleArgs& p) {
  cmd->add_option("--officer", p.officer, "name of the ceremony officer (recorded in the transcript)");
  cmd->add_option("--witness", p.witnesses, "name of a witness (repeatable; recorded in the transcript)");
}

People people(const PeopleArgs& p) { return People{p.officer, p.witnesses}; }

kms::Result<std::vector<CustodianArg>> parse_custodians(const std::vector<std::string>& specs) {
  std::vector<CustodianArg> out;
  for (const auto& s : specs) {
    const auto eq = s.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == s.size()) {
      return kms::fail(kms::Errc::invalid_argument, "--custodian takes NAME=PUBLIC_KEY.pem, got '" + s + "'");
    }
    out.push_back({s.substr(0, eq), s.substr(eq + 1)});
  }
  return out;
}

int report(const kms::Error& e, Console& con) {
  con.err("rootseal: error: " + e.message + "\n");
  return 1;
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
  CLI::App* ceremony = app.add_subcommand("ceremony", "the offline key ceremony (docs/ceremony.md)");
  ceremony->require_subcommand(1);

  // rootseal audit verify FILE...: the daemon's hash-chained audit log; rotated
  // files given oldest first are checked as one chain.
  CLI::App* audit_log = app.add_subcommand("audit", "rootseald's audit log");
  audit_log->require_subcommand(1);
  CLI::App* audit_verify = audit_log->add_subcommand(
      "verify", "check the hash chain of an audit log file, or of rotated files given oldest first as one chain");
  std::vector<std::string> audit_files;
  audit_verify
      ->add_option("files", audit_files,
                   "the audit log (e.g. /var/log/rootseal/audit.log), or its rotated files oldest first "
                   "(audit.log.2 audit.log.1 audit.log)")
      ->required();

  // init
  TokenArgs init_tok;
  PeopleArgs init_people;
  std::vector<std::string> init_custodians;
  unsigned init_threshold = 0;
  std::string init_out;
  std::string init_transcript;
  bool init_no_backup = false;
  CLI::App* init = ceremony->add_subcommand("init", "create the root key, split it M-of-N to custodians, import it");
  add_token_options(init, init_tok);
  add_people_options(init, init_people);
  init->add_option("--custodian", init_custodians, "NAME=PUBLIC_KEY.pem, one per custodian, in share order");
  init->add_option("--threshold", init_threshold, "shares needed to restore (M)");
  init->add_option("--out", init_out, "folder for the encrypted share files");
  init->add_option("--transcript-dir", init_transcript, "folder of the hash-chained transcript")->required();
  init->add_flag("--no-backup", init_no_backup,
                 "generate the key inside the HSM: NO shares, it can NEVER be restored");

  // share decrypt
  std::string dec_share;
  std::string dec_key;
  CLI::App* share = ceremony->add_subcommand("share", "custodian operations on a share");
  share->require_subcommand(1);
  CLI::App* decrypt = share->add_subcommand("decrypt", "decrypt your share file and print it as typeable lines");
  decrypt->add_option("--share", dec_share, "your share file")->required();
  decrypt->add_option("--key", dec_key, "your private key (PEM)")->required();

  // restore
  TokenArgs res_tok;
  PeopleArgs res_people;
  std::vector<std::string> res_shares;
  std::vector<std::string> res_keys;
  std::string res_transcript;
  std::string res_ceremony;
  bool res_typed = false;
  bool res_dry = false;
  CLI::App* restore = ceremony->add_subcommand("restore", "combine M shares and import the root key into a token");
  add_token_options(restore, res_tok);
  add_people_options(restore, res_people);
  restore->add_option("--share", res_shares, "a share file (repeatable; paired in order with --key)");
  restore->add_option("--key", res_keys, "the custodian private key of the matching --share");
  restore->add_flag("--typed", res_typed, "read typed shares from standard input");
  restore->add_option("--ceremony", res_ceremony, "the ceremony id to restore (default: the shares')");
  restore->add_option("--transcript-dir", res_transcript, "folder of the transcript")->required();
  restore->add_flag("--dry-run", res_dry, "check and combine the shares, import nothing");

  // reshare
  PeopleArgs rsh_people;
  std::vector<std::string> rsh_shares;
  std::vector<std::string> rsh_keys;
  std::vector<std::string> rsh_custodians;
  unsigned rsh_threshold = 0;
  std::string rsh_out;
  std::string rsh_transcript;
  std::string rsh_ceremony;
  bool rsh_typed = false;
  CLI::App* reshare = ceremony->add_subcommand("reshare", "split the same root key again for a new custodian set "
                                                          "(M current shares in; no token)");
  add_people_options(reshare, rsh_people);
  reshare->add_option("--share", rsh_shares, "a current share file (repeatable; paired in order with --key)");
  reshare->add_option("--key", rsh_keys, "the custodian private key of the matching --share");
  reshare->add_flag("--typed", rsh_typed, "read typed shares from standard input");
  reshare->add_option("--ceremony", rsh_ceremony, "the ceremony id of the shares (default: the shares')");
  reshare->add_option("--custodian", rsh_custodians, "NAME=PUBLIC_KEY.pem of the new custodian set")->required();
  reshare->add_option("--threshold", rsh_threshold, "new shares needed to restore (M)")->required();
  reshare->add_option("--out", rsh_out, "folder for the new encrypted share files")->required();
  reshare->add_option("--transcript-dir", rsh_transcript, "folder of the transcript")->required();

  // verify
  TokenArgs ver_tok;
  PeopleArgs ver_people;
  std::string ver_transcript;
  std::string ver_ceremony;
  std::string ver_store;
  CLI::App* verify = ceremony->add_subcommand("verify", "prove that a token holds the root key of a transcript");
  add_token_options(verify, ver_tok);
  add_people_options(verify, ver_people);
  verify->add_option("--transcript-dir", ver_transcript, "folder of the transcript")->required();
  verify->add_option("--ceremony", ver_ceremony, "ceremony id (default: the current root key)");
  verify->add_option("--store", ver_store, "also prove that this state store opens with the key");

  // rotate-root
  TokenArgs rot_tok;
  PeopleArgs rot_people;
  std::vector<std::string> rot_custodians;
  unsigned rot_threshold = 0;
  std::string rot_out;
  std::string rot_transcript;
  std::string rot_store;
  std::string rot_retire = "relabel";
  bool rot_no_backup = false;
  bool rot_resume = false;
  CLI::App* rotate = ceremony->add_subcommand("rotate-root", "new root key and shares; rewrap the state store");
  add_token_options(rotate, rot_tok);
  add_people_options(rotate, rot_people);
  rotate->add_option("--store", rot_store, "the SQLite state store to rewrap (rootseald stopped)")->required();
  rotate->add_option("--custodian", rot_custodians, "NAME=PUBLIC_KEY.pem, one per custodian");
  rotate->add_option("--threshold", rot_threshold, "shares needed to restore (M)");
  rotate->add_option("--out", rot_out, "folder for the new encrypted share files");
  rotate->add_option("--transcript-dir", rot_transcript, "folder of the transcript")->required();
  rotate->add_option("--retire", rot_retire, "what happens to the old root key: relabel (keep it as "
                                              "<label>.retired-<kcv>) or destroy")
      ->check(CLI::IsMember({"relabel", "destroy"}))
      ->capture_default_str();
  rotate->add_flag("--no-backup", rot_no_backup, "new key generated inside the HSM: it can NEVER be restored");
  rotate->add_flag("--resume", rot_resume, "finish a rotation that was interrupted");

  // audit
  std::string aud_transcript;
  std::string aud_head;
  CLI::App* audit = ceremony->add_subcommand("audit", "check the transcript hash chain");
  audit->add_option("--transcript-dir", aud_transcript, "folder of the transcript")->required();
  audit->add_option("--expect-head", aud_head, "the chain head the witness recorded");

  // status, unseal, token ..., tpm seal-pin | reseal (docs/admin.md)
  auto admin = add_admin_commands(app);
  // snapshot list | verify | restore (docs/operations.md)
  auto snapshots = add_snapshot_commands(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  try {
    if (auto rc = run_admin_commands(*admin, con)) return *rc;
    if (auto rc = run_snapshot_commands(*snapshots, con)) return *rc;
    if (*init) {
      InitOptions o;
      o.token = token_target(init_tok);
      o.people = people(init_people);
      auto c = parse_custodians(init_custodians);
      if (!c) return report(c.error(), con);
      o.custodians = std::move(*c);
      o.threshold = init_threshold;
      o.out_dir = init_out;
      o.transcript_dir = init_transcript;
      o.no_backup = init_no_backup;
      auto r = ceremony_init(o, con);
      return r ? 0 : report(r.error(), con);
    }
    if (*decrypt) {
      auto r = share_decrypt(DecryptOptions{dec_share, dec_key}, con);
      return r ? 0 : report(r.error(), con);
    }
    if (*restore) {
      if (res_shares.size() != res_keys.size()) {
        con.err("rootseal: error: every --share needs its --key (custodian private key), in the same order\n");
        return 2;
      }
      RestoreOptions o;
      o.token = token_target(res_tok);
      o.people = people(res_people);
      for (std::size_t i = 0; i < res_shares.size(); ++i) o.files.push_back({res_shares[i], res_keys[i]});
      FdLineSource stdin_lines(STDIN_FILENO);
      if (res_typed) o.typed = &stdin_lines;
      o.ceremony_id = res_ceremony;
      o.transcript_dir = res_transcript;
      o.dry_run = res_dry;
      auto r = ceremony_restore(o, con);
      return r ? 0 : report(r.error(), con);
    }
    if (*reshare) {
      if (rsh_shares.size() != rsh_keys.size()) {
        con.err("rootseal: error: every --share needs its --key (custodian private key), in the same order\n");
        return 2;
      }
      ReshareOptions o;
      o.people = people(rsh_people);
      for (std::size_t i = 0; i < rsh_shares.size(); ++i) o.files.push_back({rsh_shares[i], rsh_keys[i]});
      FdLineSource stdin_lines(STDIN_FILENO);
      if (rsh_typed) o.typed = &stdin_lines;
      auto c = parse_custodians(rsh_custodians);
      if (!c) return report(c.error(), con);
      o.custodians = std::move(*c);
      o.threshold = rsh_threshold;
      o.out_dir = rsh_out;
      o.transcript_dir = rsh_transcript;
      o.ceremony_id = rsh_ceremony;
      auto r = ceremony_reshare(o, con);
      return r ? 0 : report(r.error(), con);
    }
    if (*verify) {
      VerifyOptions o;
      o.token = token_target(ver_tok);
      o.people = people(ver_people);
      o.transcript_dir = ver_transcript;
      o.ceremony_id = ver_ceremony;
      o.store = ver_store;
      auto r = ceremony_verify(o, con);
      return r ? 0 : report(r.error(), con);
    }
    if (*rotate) {
      RotateOptions o;
      o.token = token_target(rot_tok);
      o.people = people(rot_people);
      auto c = parse_custodians(rot_custodians);
      if (!c) return report(c.error(), con);
      o.custodians = std::move(*c);
      o.threshold = rot_threshold;
      o.out_dir = rot_out;
      o.transcript_dir = rot_transcript;
      o.store = rot_store;
      o.no_backup = rot_no_backup;
      o.resume = rot_resume;
      o.retire = rot_retire == "destroy" ? Retire::destroy : Retire::relabel;
      auto r = ceremony_rotate_root(o, con);
      return r ? 0 : report(r.error(), con);
    }
    if (*audit) {
      auto r = ceremony_audit(AuditOptions{aud_transcript, aud_head}, con);
      return r ? 0 : report(r.error(), con);
    }
    if (*audit_verify) {
      std::optional<std::string> previous_last;
      std::uint64_t total = 0;
      for (const auto& file : audit_files) {
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
          con.out("  line " + std::to_string(rec.line) + ": recovered after a crash or a full disk: " +
                  std::to_string(rec.recovery.damaged_bytes) + " bytes set aside in " +
                  rec.recovery.damaged_file.string() + " (sha256 " + rec.recovery.damaged_sha256 + "), " +
                  (rec.damaged_file_checked ? "checked" : "not found beside the log") + "\n");
        }
      }
      if (audit_files.size() > 1) {
        con.out(std::to_string(audit_files.size()) + " files, " + std::to_string(total) + " lines, one chain\n");
      }
      return 0;
    }
  } catch (const std::exception& e) {
    con.err(std::string("rootseal: error: ") + e.what() + "\n");
    return 1;
  }
  return 2;
}

}  // namespace rootseal::cli
