// rootseal::cli — `rootseal ceremony restore`: the root key from a quorum of shares into a token.
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

kms::Result<Outcome> restore_impl(const RestoreOptions& o, Console& con, Context& ctx) {
  ROOTSEAL_TRY(check_token(o.token));
  ROOTSEAL_TRY(check_people(o.people));
  if (!o.ceremony_id.empty() && !is_ceremony_id(o.ceremony_id)) {
    return fail(Errc::invalid_argument, "--ceremony must be a ceremony id (32 hex digits)");
  }
  ROOTSEAL_TRY(ctx.load_chain());
  ctx.ceremony_id = o.ceremony_id;

  // The token first (PIN, free label), so that custodians do not type their
  // shares for nothing. Nothing is written to it before the check value matched.
  std::unique_ptr<hsm::TokenAdmin> admin;
  if (!o.dry_run) {
    ROOTSEAL_TRY_ASSIGN(admin, open_token(o.token));
    ROOTSEAL_TRY(require_root_labels_free(*admin, o.token, "restore into a token without one"));
    ctx.step("token-opened", "ok", "serial " + admin->details().serial);
  }
  Combined c;
  ROOTSEAL_TRY_ASSIGN(c, gather_and_combine(o.files, o.typed, ctx, con));
  if (admin) {
    // Checked only now (the record says the mechanism); nothing imported yet.
    auto can = token_can_hold(admin->details(), c.mechanism, "restore of ceremony " + ctx.ceremony_id);
    if (!can) {
      c.root.clear();
      return std::unexpected(can.error());
    }
  }

  Outcome out;
  out.ceremony_id = ctx.ceremony_id;
  out.kcv = c.kcv;
  out.mechanism = c.mechanism;
  out.hmac_check = c.hmac_check;
  out.key_label = o.token.key_label;
  json::object r = ctx.record("restore");
  r["restored_from"] = c.from;
  r["shares_used"] = std::move(c.used);
  r["dry_run"] = o.dry_run;
  if (o.dry_run) {
    c.root.clear();
    r["root_key"] = json::object{{"kcv", c.kcv}, {"label", ""}, {"mechanism", c.mechanism}};
    r["outcome"] = "ok";
    TranscriptEntry e;
    ROOTSEAL_TRY_ASSIGN(e, ctx.append(std::move(r)));
    out.transcript = e.path;
    con.out("rootseal: dry run: the shares combine to the root key of ceremony " + ctx.ceremony_id + " (kcv " + c.kcv +
            "); nothing was imported\n" + head_line(e));
    return out;
  }

  RootObjects k;
  // Records made before mechanisms were recorded: an AES key for KWP or GCM,
  // as the token allows (import_root's "aes-kwp" template does that).
  const std::string mechanism = c.mechanism.empty() ? std::string("aes-kwp") : c.mechanism;
  auto imported = import_root(*admin, o.token.key_label, c.root, mechanism, SecretChecks{c.kcv, c.hmac_check});
  c.root.clear();
  ROOTSEAL_TRY_ASSIGN(k, std::move(imported));
  if (c.mechanism.empty()) k.mechanism.clear();
  ctx.step("key-imported", "ok", "label '" + k.key.label + "', check values computed by the HSM match");
  r["token"] = token_json(admin->details(), o.token.module);
  r["root_key"] = root_json(k);
  r["outcome"] = "ok";
  TranscriptEntry e;
  ROOTSEAL_TRY_ASSIGN(e, ctx.append(std::move(r)));
  out.transcript = e.path;
  con.out("rootseal: restored the root key of ceremony " + ctx.ceremony_id + " into token '" + o.token.token_label +
          "' (serial " + admin->details().serial + ") as '" + k.key.label + "'\n" + check_lines(k) + head_line(e));
  return out;
}

}  // namespace

kms::Result<Outcome> ceremony_restore(const RestoreOptions& options, Console& console) {
  return recorded("restore", options, console, restore_impl);
}

}  // namespace rootseal::cli
