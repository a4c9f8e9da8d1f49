// rootseal::cli — `rootseal ceremony init`: a new root key in the HSM, backed up in shares.
#include <boost/json.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "ceremony_common.hpp"
#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/key_wrap.hpp"
#include "rootseal/kms/keyring.hpp"
#include "rootseal/kms/state_store.hpp"
#include "shamir.hpp"
#include "share_format.hpp"

namespace rootseal::cli {

using kms::Errc;
using kms::fail;

namespace {

// ----- init -----------------------------------------------------------------

kms::Result<Outcome> init_impl(const InitOptions& o, Console& con, Context& ctx) {
  ROOTSEAL_TRY(check_token(o.token));
  ROOTSEAL_TRY(check_people(o.people));
  if (o.mechanism == hsm::RootMechanism::rsa_oaep && !o.no_backup) {
    return std::unexpected(resolve_mechanism(o.mechanism, hsm::TokenDetails{}, false).error());  // the refusal
  }
  std::vector<LoadedCustodian> custodians;
  ROOTSEAL_TRY_ASSIGN(custodians, backup_custodians(o.no_backup, o.custodians, o.threshold, o.out_dir));
  ROOTSEAL_TRY(ctx.load_chain());
  ctx.ceremony_id = new_ceremony_id();

  std::unique_ptr<hsm::TokenAdmin> admin;
  ROOTSEAL_TRY_ASSIGN(admin, open_token(o.token));
  std::string mechanism;
  ROOTSEAL_TRY_ASSIGN(mechanism, resolve_mechanism(o.mechanism, admin->details(), o.no_backup));
  ROOTSEAL_TRY(require_root_labels_free(*admin, o.token, "refusing to create another"));
  ctx.step("token-opened", "ok", "serial " + admin->details().serial + "; root mechanism " + mechanism);
  con.out("rootseal: ceremony " + ctx.ceremony_id + " on token '" + o.token.token_label + "' (serial " +
          admin->details().serial + "), root mechanism " + mechanism + "\n");

  Outcome out;
  out.ceremony_id = ctx.ceremony_id;
  out.key_label = o.token.key_label;
  out.mechanism = mechanism;
  json::object rec = ctx.record("init");
  rec["token"] = token_json(admin->details(), o.token.module);

  if (o.no_backup) {
    RootObjects k;
    ROOTSEAL_TRY_ASSIGN(k, generate_root_in_token(*admin, o.token.key_label, mechanism));
    ctx.step("key-generated-in-hsm", "ok", "kcv " + k.key.kcv);
    out.kcv = k.key.kcv;
    if (k.hmac) out.hmac_check = k.hmac->kcv;
    rec["root_key"] = generated_root_json(k);
    rec["warning"] = kNoBackupWarning;
    rec["outcome"] = "ok";
    TranscriptEntry e;
    ROOTSEAL_TRY_ASSIGN(e, ctx.append(std::move(rec)));
    out.transcript = e.path;
    con.err("\n*** WARNING ***\n" + std::string(kNoBackupWarning) + "\n\n");
    con.out(check_lines(k) + head_line(e));
    return out;
  }

  const unsigned n = static_cast<unsigned>(custodians.size());
  kms::SecureBytes root;
  ROOTSEAL_TRY_ASSIGN(root, generate_root_key(*admin, secret_size(mechanism)));
  crash_point("root-key-held");
  SecretChecks checks;
  ROOTSEAL_TRY_ASSIGN(checks, secret_checks(root));
  ctx.step("key-generated", "ok",
           "OS random XOR HSM random; kcv " + checks.kcv +
               (checks.hmac_check.empty() ? "" : ", HMAC check value " + checks.hmac_check));

  Backup backup;
  ROOTSEAL_TRY_ASSIGN(
      backup, write_backup(root, mechanism, checks.kcv, ctx.ceremony_id, custodians, o.threshold, o.out_dir, ctx, con));
  RootObjects k;
  ROOTSEAL_TRY_ASSIGN(k, import_root(*admin, o.token.key_label, root, mechanism, checks));
  root.clear();
  ctx.step("key-imported", "ok", "label '" + k.key.label + "', check values computed by the HSM match");
  crash_point("key-imported");

  record_backed_up_key(rec, k, backup);
  rec["outcome"] = "ok";
  TranscriptEntry e;
  ROOTSEAL_TRY_ASSIGN(e, ctx.append(std::move(rec)));
  out.kcv = k.key.kcv;
  out.hmac_check = checks.hmac_check;
  out.transcript = e.path;
  out.share_files = std::move(backup.files);
  con.out("  " + std::to_string(o.threshold) + " of " + std::to_string(n) + " shares restore the key\n" +
          check_lines(k) + head_line(e));
  return out;
}

}  // namespace

kms::Result<Outcome> ceremony_init(const InitOptions& options, Console& console) {
  return recorded("init", options, console, init_impl);
}

}  // namespace rootseal::cli
