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
    std::vector<hsm::KeyObject> existing;
    ROOTSEAL_TRY_ASSIGN(existing, admin->find_keys(o.token.key_label));
    if (!existing.empty()) {
      return fail(Errc::already_exists, "token '" + o.token.token_label + "' already holds a key labelled '" +
                                            o.token.key_label + "'; restore into a token without one");
    }
    ctx.step("token-opened", "ok", "serial " + admin->details().serial);
  }
  Combined c;
  ROOTSEAL_TRY_ASSIGN(c, gather_and_combine(o.files, o.typed, ctx, con));

  Outcome out;
  out.ceremony_id = ctx.ceremony_id;
  out.kcv = c.kcv;
  out.key_label = o.token.key_label;
  json::object r = ctx.record("restore");
  r["restored_from"] = c.from;
  r["shares_used"] = std::move(c.used);
  r["dry_run"] = o.dry_run;
  if (o.dry_run) {
    c.root.clear();
    r["root_key"] = json::object{{"kcv", c.kcv}, {"label", ""}};
    r["outcome"] = "ok";
    TranscriptEntry e;
    ROOTSEAL_TRY_ASSIGN(e, ctx.append(std::move(r)));
    out.transcript = e.path;
    con.out("rootseal: dry run: the shares combine to the root key of ceremony " + ctx.ceremony_id + " (kcv " + c.kcv +
            "); nothing was imported\n" + head_line(e));
    return out;
  }

  hsm::KeyObject k;
  ROOTSEAL_TRY_ASSIGN(k, admin->import_root_key(o.token.key_label, c.root, c.kcv));
  c.root.clear();
  ctx.step("key-imported", "ok", "label '" + k.label + "', kcv computed by the HSM " + k.kcv + " matches");
  r["token"] = token_json(admin->details(), o.token.module);
  r["root_key"] = key_json(k);
  r["outcome"] = "ok";
  TranscriptEntry e;
  ROOTSEAL_TRY_ASSIGN(e, ctx.append(std::move(r)));
  out.transcript = e.path;
  con.out("rootseal: restored the root key of ceremony " + ctx.ceremony_id + " into token '" + o.token.token_label +
          "' (serial " + admin->details().serial + ") as '" + k.label +
          "'\n  key check value (computed by the HSM): " + k.kcv + "\n" + head_line(e));
  return out;
}

}  // namespace

kms::Result<Outcome> ceremony_restore(const RestoreOptions& options, Console& console) {
  return recorded("restore", options, console, restore_impl);
}

}  // namespace rootseal::cli
