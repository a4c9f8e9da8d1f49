// rootseal::cli — `rootseal ceremony ...`: one options struct, one add_ and
// one run_ function per subcommand.
#include "ceremony_commands.hpp"

#include <unistd.h>

#include <string>
#include <vector>

#include "ceremony.hpp"
#include "rootseal/daemon/config.hpp"
#include "token_args.hpp"

namespace rootseal::cli {
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

// --mechanism: the root mechanism of a new root key (docs/hsm.md); or, when
// it is not given, the pkcs11.mechanism of --config (rootseald.yaml).
struct MechanismArgs {
  std::string mechanism = "auto";
  std::string config;
};

void add_mechanism_options(CLI::App* cmd, MechanismArgs& m, const char* what) {
  cmd->add_option("--mechanism", m.mechanism, what)
      ->check(CLI::IsMember({"auto", "aes-kwp", "aes-gcm", "aes-cbc-pad-hmac", "rsa-oaep"}))
      ->capture_default_str();
  cmd->add_option("--config", m.config,
                  "rootseald.yaml: without --mechanism, its pkcs11.mechanism is the root mechanism");
}

kms::Result<hsm::RootMechanism> chosen_mechanism(const CLI::App* cmd, const MechanismArgs& m) {
  std::string name = m.mechanism;
  if (!m.config.empty() && cmd->count("--mechanism") == 0) {
    auto cfg = daemon::load_config(m.config);
    if (!cfg) return kms::fail(kms::Errc::invalid_argument, "--config " + m.config + ": " + cfg.error().message);
    name = cfg->pkcs11.mechanism;
  }
  auto parsed = hsm::parse_root_mechanism(name);
  if (!parsed) {
    return kms::fail(kms::Errc::invalid_argument,
                     "pkcs11.mechanism '" + name + "' of " + m.config + " is not a root mechanism");
  }
  return *parsed;
}

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

template <class T>
int exit_status(const kms::Result<T>& r, Console& con) {
  return r ? 0 : report(r.error(), con);
}

// A subcommand that works on a token, with the people present recorded.
CLI::App* add_token_command(CLI::App* ceremony, const char* name, const char* what, TokenArgs& token,
                            PeopleArgs& people) {
  CLI::App* cmd = ceremony->add_subcommand(name, what);
  add_token_options(cmd, token);
  add_people_options(cmd, people);
  return cmd;
}

// The new shares: who gets them, how many restore, where the files go.
struct SplitArgs {
  std::vector<std::string> custodians;
  unsigned threshold = 0;
  std::string out;
};

void add_split_options(CLI::App* cmd, SplitArgs& a, bool required) {
  const char* fresh = required ? "new " : "";
  cmd->add_option(
         "--custodian", a.custodians,
         std::string("NAME=PUBLIC_KEY.pem of the ") + fresh + "custodian set, one per custodian, in share order")
      ->required(required);
  cmd->add_option("--threshold", a.threshold, std::string(fresh) + "shares needed to restore (M)")->required(required);
  cmd->add_option("--out", a.out, std::string("folder for the ") + fresh + "encrypted share files")->required(required);
}

template <class Options>
kms::Result<void> apply_split(const SplitArgs& a, Options& o) {
  ROOTSEAL_TRY_ASSIGN(o.custodians, parse_custodians(a.custodians));
  o.threshold = a.threshold;
  o.out_dir = a.out;
  return {};
}

// The current shares: files with the custodian keys that open them, or typed.
struct ShareInputArgs {
  std::vector<std::string> shares;
  std::vector<std::string> keys;
  bool typed = false;
};

void add_share_input_options(CLI::App* cmd, ShareInputArgs& a) {
  cmd->add_option("--share", a.shares, "a share file (repeatable; paired in order with --key)");
  cmd->add_option("--key", a.keys, "the custodian private key of the matching --share");
  cmd->add_flag("--typed", a.typed, "read typed shares from standard input");
}

// The share files paired in order with their keys; false (after saying
// why) when the counts differ.
template <class Options>
bool apply_share_input(const ShareInputArgs& a, LineSource& typed, Options& o, Console& con) {
  if (a.shares.size() != a.keys.size()) {
    con.err("rootseal: error: every --share needs its --key (custodian private key), in the same order\n");
    return false;
  }
  for (std::size_t i = 0; i < a.shares.size(); ++i) o.files.push_back({a.shares[i], a.keys[i]});
  if (a.typed) o.typed = &typed;
  return true;
}

struct InitArgs {
  CLI::App* cmd = nullptr;
  TokenArgs token;
  PeopleArgs people;
  SplitArgs split;
  std::string transcript;
  MechanismArgs mechanism;
  bool no_backup = false;
};

void add_init(CLI::App* ceremony, InitArgs& a) {
  a.cmd = add_token_command(ceremony, "init", "create the root key, split it M-of-N to custodians, import it", a.token,
                            a.people);
  add_split_options(a.cmd, a.split, false);
  a.cmd->add_option("--transcript-dir", a.transcript, "folder of the hash-chained transcript")->required();
  a.cmd->add_flag("--no-backup", a.no_backup, "generate the key inside the HSM: NO shares, it can NEVER be restored");
  add_mechanism_options(a.cmd, a.mechanism,
                        "root mechanism (pkcs11.mechanism of rootseald.yaml): auto picks aes-kwp, aes-gcm, "
                        "aes-cbc-pad-hmac, the first the token offers; rsa-oaep only with --no-backup "
                        "(docs/ceremony.md)");
}

int run_init(const InitArgs& a, Console& con) {
  InitOptions o;
  if (auto r = apply_split(a.split, o); !r) return report(r.error(), con);
  o.token = token_target(a.token);
  o.people = people(a.people);
  o.transcript_dir = a.transcript;
  o.no_backup = a.no_backup;
  auto m = chosen_mechanism(a.cmd, a.mechanism);
  if (!m) return report(m.error(), con);
  o.mechanism = *m;
  return exit_status(ceremony_init(o, con), con);
}

struct DecryptArgs {
  CLI::App* cmd = nullptr;
  std::string share;
  std::string key;
};

void add_share_decrypt(CLI::App* ceremony, DecryptArgs& a) {
  CLI::App* share = ceremony->add_subcommand("share", "custodian operations on a share");
  share->require_subcommand(1);
  a.cmd = share->add_subcommand("decrypt", "decrypt your share file and print it as typeable lines");
  a.cmd->add_option("--share", a.share, "your share file")->required();
  a.cmd->add_option("--key", a.key, "your private key (PEM)")->required();
}

struct RestoreArgs {
  CLI::App* cmd = nullptr;
  TokenArgs token;
  PeopleArgs people;
  ShareInputArgs input;
  std::string transcript;
  std::string ceremony;
  bool dry_run = false;
};

void add_restore(CLI::App* ceremony, RestoreArgs& a) {
  a.cmd = add_token_command(ceremony, "restore", "combine M shares and import the root key into a token", a.token,
                            a.people);
  add_share_input_options(a.cmd, a.input);
  a.cmd->add_option("--ceremony", a.ceremony, "the ceremony id to restore (default: the shares')");
  a.cmd->add_option("--transcript-dir", a.transcript, "folder of the transcript")->required();
  a.cmd->add_flag("--dry-run", a.dry_run, "check and combine the shares, import nothing");
}

int run_restore(const RestoreArgs& a, Console& con) {
  RestoreOptions o;
  FdLineSource stdin_lines(STDIN_FILENO);
  if (!apply_share_input(a.input, stdin_lines, o, con)) return 2;
  o.token = token_target(a.token);
  o.people = people(a.people);
  o.ceremony_id = a.ceremony;
  o.transcript_dir = a.transcript;
  o.dry_run = a.dry_run;
  return exit_status(ceremony_restore(o, con), con);
}

struct ReshareArgs {
  CLI::App* cmd = nullptr;
  PeopleArgs people;
  ShareInputArgs input;
  SplitArgs split;
  std::string transcript;
  std::string ceremony;
};

void add_reshare(CLI::App* ceremony, ReshareArgs& a) {
  a.cmd = ceremony->add_subcommand("reshare",
                                   "split the same root key again for a new custodian set "
                                   "(M current shares in; no token)");
  add_people_options(a.cmd, a.people);
  add_share_input_options(a.cmd, a.input);
  a.cmd->add_option("--ceremony", a.ceremony, "the ceremony id of the shares (default: the shares')");
  add_split_options(a.cmd, a.split, true);
  a.cmd->add_option("--transcript-dir", a.transcript, "folder of the transcript")->required();
}

int run_reshare(const ReshareArgs& a, Console& con) {
  ReshareOptions o;
  FdLineSource stdin_lines(STDIN_FILENO);
  if (!apply_share_input(a.input, stdin_lines, o, con)) return 2;
  if (auto r = apply_split(a.split, o); !r) return report(r.error(), con);
  o.people = people(a.people);
  o.transcript_dir = a.transcript;
  o.ceremony_id = a.ceremony;
  return exit_status(ceremony_reshare(o, con), con);
}

struct VerifyArgs {
  CLI::App* cmd = nullptr;
  TokenArgs token;
  PeopleArgs people;
  std::string transcript;
  std::string ceremony;
  std::string store;
};

void add_verify(CLI::App* ceremony, VerifyArgs& a) {
  a.cmd =
      add_token_command(ceremony, "verify", "prove that a token holds the root key of a transcript", a.token, a.people);
  a.cmd->add_option("--transcript-dir", a.transcript, "folder of the transcript")->required();
  a.cmd->add_option("--ceremony", a.ceremony, "ceremony id (default: the current root key)");
  a.cmd->add_option("--store", a.store, "also prove that this state store opens with the key");
}

int run_verify(const VerifyArgs& a, Console& con) {
  VerifyOptions o;
  o.token = token_target(a.token);
  o.people = people(a.people);
  o.transcript_dir = a.transcript;
  o.ceremony_id = a.ceremony;
  o.store = a.store;
  return exit_status(ceremony_verify(o, con), con);
}

struct RotateArgs {
  CLI::App* cmd = nullptr;
  TokenArgs token;
  PeopleArgs people;
  SplitArgs split;
  std::string transcript;
  std::string store;
  std::string retire = "relabel";
  MechanismArgs mechanism;
  bool no_backup = false;
  bool resume = false;
};

void add_rotate(CLI::App* ceremony, RotateArgs& a) {
  a.cmd =
      add_token_command(ceremony, "rotate-root", "new root key and shares; rewrap the state store", a.token, a.people);
  a.cmd->add_option("--store", a.store, "the SQLite state store to rewrap (rootseald stopped)")->required();
  add_split_options(a.cmd, a.split, false);
  a.cmd->add_option("--transcript-dir", a.transcript, "folder of the transcript")->required();
  a.cmd
      ->add_option("--retire", a.retire,
                   "what happens to the old root key: relabel (keep it as "
                   "<label>.retired-<kcv>) or destroy")
      ->check(CLI::IsMember({"relabel", "destroy"}))
      ->capture_default_str();
  a.cmd->add_flag("--no-backup", a.no_backup, "new key generated inside the HSM: it can NEVER be restored");
  a.cmd->add_flag("--resume", a.resume, "finish a rotation that was interrupted");
  add_mechanism_options(a.cmd, a.mechanism,
                        "root mechanism of the new root key; auto keeps the current root's (set it to move "
                        "between aes-kwp/aes-gcm, aes-cbc-pad-hmac and, with --no-backup, rsa-oaep)");
}

int run_rotate(const RotateArgs& a, Console& con) {
  RotateOptions o;
  if (auto r = apply_split(a.split, o); !r) return report(r.error(), con);
  o.token = token_target(a.token);
  o.people = people(a.people);
  o.transcript_dir = a.transcript;
  o.store = a.store;
  o.no_backup = a.no_backup;
  o.resume = a.resume;
  o.retire = a.retire == "destroy" ? Retire::destroy : Retire::relabel;
  auto m = chosen_mechanism(a.cmd, a.mechanism);
  if (!m) return report(m.error(), con);
  o.mechanism = *m;
  return exit_status(ceremony_rotate_root(o, con), con);
}

struct AuditArgs {
  CLI::App* cmd = nullptr;
  std::string transcript;
  std::string head;
};

void add_audit(CLI::App* ceremony, AuditArgs& a) {
  a.cmd = ceremony->add_subcommand("audit", "check the transcript hash chain");
  a.cmd->add_option("--transcript-dir", a.transcript, "folder of the transcript")->required();
  a.cmd->add_option("--expect-head", a.head, "the chain head the witness recorded");
}

}  // namespace

struct CeremonyCommands {
  InitArgs init;
  DecryptArgs decrypt;
  RestoreArgs restore;
  ReshareArgs reshare;
  VerifyArgs verify;
  RotateArgs rotate;
  AuditArgs audit;
};

std::unique_ptr<CeremonyCommands, void (*)(CeremonyCommands*)> add_ceremony_commands(CLI::App& app) {
  std::unique_ptr<CeremonyCommands, void (*)(CeremonyCommands*)> owned(new CeremonyCommands,
                                                                       [](CeremonyCommands* p) { delete p; });
  CeremonyCommands& c = *owned;
  CLI::App* ceremony = app.add_subcommand("ceremony", "the offline key ceremony (docs/ceremony.md)");
  ceremony->require_subcommand(1);
  add_init(ceremony, c.init);
  add_share_decrypt(ceremony, c.decrypt);
  add_restore(ceremony, c.restore);
  add_reshare(ceremony, c.reshare);
  add_verify(ceremony, c.verify);
  add_rotate(ceremony, c.rotate);
  add_audit(ceremony, c.audit);
  return owned;
}

std::optional<int> run_ceremony_commands(CeremonyCommands& c, Console& con) {
  if (*c.init.cmd) return run_init(c.init, con);
  if (*c.decrypt.cmd) return exit_status(share_decrypt(DecryptOptions{c.decrypt.share, c.decrypt.key}, con), con);
  if (*c.restore.cmd) return run_restore(c.restore, con);
  if (*c.reshare.cmd) return run_reshare(c.reshare, con);
  if (*c.verify.cmd) return run_verify(c.verify, con);
  if (*c.rotate.cmd) return run_rotate(c.rotate, con);
  if (*c.audit.cmd) return exit_status(ceremony_audit(AuditOptions{c.audit.transcript, c.audit.head}, con), con);
  return std::nullopt;
}

}  // namespace rootseal::cli
