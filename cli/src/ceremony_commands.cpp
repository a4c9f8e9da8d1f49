// rootseal::cli — `rootseal ceremony ...`: one options struct, one add_ and
// one run_ function per subcommand.
#include "ceremony_commands.hpp"

#include <unistd.h>

#include <string>
#include <vector>

#include "ceremony.hpp"
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

// The share files and the custodian keys that open them, paired in order.
std::optional<std::vector<ShareSource>> share_sources(const std::vector<std::string>& shares,
                                                      const std::vector<std::string>& keys, Console& con) {
  if (shares.size() != keys.size()) {
    con.err("rootseal: error: every --share needs its --key (custodian private key), in the same order\n");
    return std::nullopt;
  }
  std::vector<ShareSource> out;
  for (std::size_t i = 0; i < shares.size(); ++i) out.push_back({shares[i], keys[i]});
  return out;
}

struct InitArgs {
  CLI::App* cmd = nullptr;
  TokenArgs token;
  PeopleArgs people;
  std::vector<std::string> custodians;
  unsigned threshold = 0;
  std::string out;
  std::string transcript;
  bool no_backup = false;
};

void add_init(CLI::App* ceremony, InitArgs& a) {
  a.cmd = ceremony->add_subcommand("init", "create the root key, split it M-of-N to custodians, import it");
  add_token_options(a.cmd, a.token);
  add_people_options(a.cmd, a.people);
  a.cmd->add_option("--custodian", a.custodians, "NAME=PUBLIC_KEY.pem, one per custodian, in share order");
  a.cmd->add_option("--threshold", a.threshold, "shares needed to restore (M)");
  a.cmd->add_option("--out", a.out, "folder for the encrypted share files");
  a.cmd->add_option("--transcript-dir", a.transcript, "folder of the hash-chained transcript")->required();
  a.cmd->add_flag("--no-backup", a.no_backup, "generate the key inside the HSM: NO shares, it can NEVER be restored");
}

int run_init(const InitArgs& a, Console& con) {
  InitOptions o;
  o.token = token_target(a.token);
  o.people = people(a.people);
  auto c = parse_custodians(a.custodians);
  if (!c) return report(c.error(), con);
  o.custodians = std::move(*c);
  o.threshold = a.threshold;
  o.out_dir = a.out;
  o.transcript_dir = a.transcript;
  o.no_backup = a.no_backup;
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
  std::vector<std::string> shares;
  std::vector<std::string> keys;
  std::string transcript;
  std::string ceremony;
  bool typed = false;
  bool dry_run = false;
};

void add_restore(CLI::App* ceremony, RestoreArgs& a) {
  a.cmd = ceremony->add_subcommand("restore", "combine M shares and import the root key into a token");
  add_token_options(a.cmd, a.token);
  add_people_options(a.cmd, a.people);
  a.cmd->add_option("--share", a.shares, "a share file (repeatable; paired in order with --key)");
  a.cmd->add_option("--key", a.keys, "the custodian private key of the matching --share");
  a.cmd->add_flag("--typed", a.typed, "read typed shares from standard input");
  a.cmd->add_option("--ceremony", a.ceremony, "the ceremony id to restore (default: the shares')");
  a.cmd->add_option("--transcript-dir", a.transcript, "folder of the transcript")->required();
  a.cmd->add_flag("--dry-run", a.dry_run, "check and combine the shares, import nothing");
}

int run_restore(const RestoreArgs& a, Console& con) {
  auto files = share_sources(a.shares, a.keys, con);
  if (!files) return 2;
  RestoreOptions o;
  o.token = token_target(a.token);
  o.people = people(a.people);
  o.files = std::move(*files);
  FdLineSource stdin_lines(STDIN_FILENO);
  if (a.typed) o.typed = &stdin_lines;
  o.ceremony_id = a.ceremony;
  o.transcript_dir = a.transcript;
  o.dry_run = a.dry_run;
  return exit_status(ceremony_restore(o, con), con);
}

struct ReshareArgs {
  CLI::App* cmd = nullptr;
  PeopleArgs people;
  std::vector<std::string> shares;
  std::vector<std::string> keys;
  std::vector<std::string> custodians;
  unsigned threshold = 0;
  std::string out;
  std::string transcript;
  std::string ceremony;
  bool typed = false;
};

void add_reshare(CLI::App* ceremony, ReshareArgs& a) {
  a.cmd = ceremony->add_subcommand("reshare", "split the same root key again for a new custodian set "
                                              "(M current shares in; no token)");
  add_people_options(a.cmd, a.people);
  a.cmd->add_option("--share", a.shares, "a current share file (repeatable; paired in order with --key)");
  a.cmd->add_option("--key", a.keys, "the custodian private key of the matching --share");
  a.cmd->add_flag("--typed", a.typed, "read typed shares from standard input");
  a.cmd->add_option("--ceremony", a.ceremony, "the ceremony id of the shares (default: the shares')");
  a.cmd->add_option("--custodian", a.custodians, "NAME=PUBLIC_KEY.pem of the new custodian set")->required();
  a.cmd->add_option("--threshold", a.threshold, "new shares needed to restore (M)")->required();
  a.cmd->add_option("--out", a.out, "folder for the new encrypted share files")->required();
  a.cmd->add_option("--transcript-dir", a.transcript, "folder of the transcript")->required();
}

int run_reshare(const ReshareArgs& a, Console& con) {
  auto files = share_sources(a.shares, a.keys, con);
  if (!files) return 2;
  ReshareOptions o;
  o.people = people(a.people);
  o.files = std::move(*files);
  FdLineSource stdin_lines(STDIN_FILENO);
  if (a.typed) o.typed = &stdin_lines;
  auto c = parse_custodians(a.custodians);
  if (!c) return report(c.error(), con);
  o.custodians = std::move(*c);
  o.threshold = a.threshold;
  o.out_dir = a.out;
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
  a.cmd = ceremony->add_subcommand("verify", "prove that a token holds the root key of a transcript");
  add_token_options(a.cmd, a.token);
  add_people_options(a.cmd, a.people);
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
  std::vector<std::string> custodians;
  unsigned threshold = 0;
  std::string out;
  std::string transcript;
  std::string store;
  std::string retire = "relabel";
  bool no_backup = false;
  bool resume = false;
};

void add_rotate(CLI::App* ceremony, RotateArgs& a) {
  a.cmd = ceremony->add_subcommand("rotate-root", "new root key and shares; rewrap the state store");
  add_token_options(a.cmd, a.token);
  add_people_options(a.cmd, a.people);
  a.cmd->add_option("--store", a.store, "the SQLite state store to rewrap (rootseald stopped)")->required();
  a.cmd->add_option("--custodian", a.custodians, "NAME=PUBLIC_KEY.pem, one per custodian");
  a.cmd->add_option("--threshold", a.threshold, "shares needed to restore (M)");
  a.cmd->add_option("--out", a.out, "folder for the new encrypted share files");
  a.cmd->add_option("--transcript-dir", a.transcript, "folder of the transcript")->required();
  a.cmd->add_option("--retire", a.retire, "what happens to the old root key: relabel (keep it as "
                                          "<label>.retired-<kcv>) or destroy")
      ->check(CLI::IsMember({"relabel", "destroy"}))
      ->capture_default_str();
  a.cmd->add_flag("--no-backup", a.no_backup, "new key generated inside the HSM: it can NEVER be restored");
  a.cmd->add_flag("--resume", a.resume, "finish a rotation that was interrupted");
}

int run_rotate(const RotateArgs& a, Console& con) {
  RotateOptions o;
  o.token = token_target(a.token);
  o.people = people(a.people);
  auto c = parse_custodians(a.custodians);
  if (!c) return report(c.error(), con);
  o.custodians = std::move(*c);
  o.threshold = a.threshold;
  o.out_dir = a.out;
  o.transcript_dir = a.transcript;
  o.store = a.store;
  o.no_backup = a.no_backup;
  o.resume = a.resume;
  o.retire = a.retire == "destroy" ? Retire::destroy : Retire::relabel;
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
