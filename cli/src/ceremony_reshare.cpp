// rootseal::cli — `rootseal ceremony reshare`: new shares of the same root key.
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

// ----- reshare ----------------------------------------------------------------

kms::Result<Outcome> reshare_impl(const ReshareOptions& o, Console& con, Context& ctx) {
  ROOTSEAL_TRY(check_people(o.people));
  if (o.out_dir.empty()) return fail(Errc::invalid_argument, "--out (the folder for the share files) is required");
  if (!o.ceremony_id.empty() && !is_ceremony_id(o.ceremony_id)) {
    return fail(Errc::invalid_argument, "--ceremony must be a ceremony id (32 hex digits)");
  }
  std::vector<LoadedCustodian> custodians;
  ROOTSEAL_TRY_ASSIGN(custodians, load_custodians(o.custodians, o.threshold));
  ROOTSEAL_TRY(ctx.load_chain());
  ctx.ceremony_id = o.ceremony_id;
  Combined c;
  ROOTSEAL_TRY_ASSIGN(c, gather_and_combine(o.files, o.typed, ctx, con));
  const std::string previous = ctx.ceremony_id;
  ctx.ceremony_id = new_ceremony_id();
  con.out("rootseal: re-sharing the root key of ceremony " + previous + " (kcv " + c.kcv + ") as ceremony " +
          ctx.ceremony_id + "\n");
  Backup backup;
  // Records made before mechanisms were recorded hold a 32-byte AES key:
  // its new shares say aes-kwp (the import template of both KWP and GCM).
  const std::string mechanism = c.mechanism.empty() ? std::string("aes-kwp") : c.mechanism;
  auto written = write_backup(c.root, mechanism, c.kcv, ctx.ceremony_id, custodians, o.threshold, o.out_dir, ctx, con);
  c.root.clear();
  ROOTSEAL_TRY_ASSIGN(backup, std::move(written));
  json::object r = ctx.record("reshare");
  r["previous_ceremony"] = previous;
  r["shares_used"] = std::move(c.used);
  r["root_key"] =
      json::object{{"kcv", c.kcv}, {"origin", "the root key of ceremony " + previous + ", re-split"}, {"backup", true}};
  if (!c.mechanism.empty()) r["root_key"].as_object()["mechanism"] = c.mechanism;
  if (!c.hmac_check.empty()) {
    r["root_key"].as_object()["hmac_key"] = json::object{{"check_value", c.hmac_check}};
  }
  r["shamir"] = std::move(backup.shamir);
  r["custodians"] = std::move(backup.custodians);
  r["warning"] = "the shares of ceremony " + previous + " still reconstruct this same key";
  r["outcome"] = "ok";
  TranscriptEntry e;
  ROOTSEAL_TRY_ASSIGN(e, ctx.append(std::move(r)));
  con.err("note: the old shares (ceremony " + previous +
          ") still reconstruct this key; have them destroyed, or "
          "rotate the root if they may be exposed\n");
  con.out("  " + std::to_string(o.threshold) + " of " + std::to_string(custodians.size()) +
          " new shares restore the key (kcv " + c.kcv + ")\n" + head_line(e));
  Outcome out;
  out.ceremony_id = ctx.ceremony_id;
  out.kcv = c.kcv;
  out.mechanism = c.mechanism;
  out.hmac_check = c.hmac_check;
  out.transcript = e.path;
  out.share_files = std::move(backup.files);
  return out;
}

}  // namespace

kms::Result<Outcome> ceremony_reshare(const ReshareOptions& options, Console& console) {
  return recorded("reshare", options, console, reshare_impl);
}

}  // namespace rootseal::cli
