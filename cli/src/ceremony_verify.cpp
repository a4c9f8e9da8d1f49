// rootseal::cli — `rootseal ceremony verify`: the token's root key against the transcript (and a store).
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

kms::Result<Outcome> verify_impl(const VerifyOptions& o, Console& con, Context& ctx) {
  ROOTSEAL_TRY(check_token(o.token));
  ROOTSEAL_TRY(check_people(o.people));
  ROOTSEAL_TRY(ctx.load_chain());
  ctx.ceremony_id = o.ceremony_id.empty() ? current_ceremony(ctx.entries) : o.ceremony_id;
  if (ctx.ceremony_id.empty()) return fail(Errc::not_found, "the transcript records no root key yet");
  const TranscriptEntry* rec = nullptr;
  for (auto it = ctx.entries.rbegin(); it != ctx.entries.rend() && rec == nullptr; ++it) {
    const std::string kind = it->str("kind");
    if ((kind == "init" || kind == "rotate-root" || kind == "reshare") && it->str("ceremony_id") == ctx.ceremony_id &&
        it->str("outcome") == "ok") {
      rec = &*it;
    }
  }
  if (rec == nullptr) return fail(Errc::not_found, "the transcript has no ceremony " + ctx.ceremony_id);
  const std::string want = record_kcv(*rec);

  std::unique_ptr<hsm::TokenAdmin> admin;
  ROOTSEAL_TRY_ASSIGN(admin, open_token(o.token));
  const std::string mechanism = record_mechanism(*rec);
  std::vector<hsm::KeyObject> keys;
  if (mechanism == kRsaOaep) {
    // The private key of the pair, by the public key's check value.
    ROOTSEAL_TRY_ASSIGN(keys, admin->find_rsa_keys(o.token.key_label));
    if (keys.size() != 1) {
      return fail(Errc::not_found, "token '" + o.token.token_label + "' holds " + std::to_string(keys.size()) +
                                       " RSA private keys labelled '" + o.token.key_label + "' (exactly one expected)");
    }
    if (!keys.front().is_valid_rsa_root()) {
      return fail(Errc::conflict, "RSA key '" + o.token.key_label +
                                      "' lacks the attributes of a root key (3072 or 4096 bits, token, private, "
                                      "sensitive, not extractable, decrypt)");
    }
  } else {
    ROOTSEAL_TRY_ASSIGN(keys, admin->find_keys(o.token.key_label));
  }
  if (keys.size() != 1) {
    return fail(Errc::not_found, "token '" + o.token.token_label + "' holds " + std::to_string(keys.size()) +
                                     " keys labelled '" + o.token.key_label + "' (exactly one expected)");
  }
  const hsm::KeyObject& k = keys.front();
  if (mechanism != kRsaOaep && !k.is_valid_root_key()) {
    return fail(Errc::conflict, "key '" + k.label +
                                    "' lacks the attributes of a root key (AES-256, token, private, "
                                    "sensitive, not extractable, wrap/unwrap)");
  }
  if (k.kcv != want) {
    return fail(Errc::conflict, "key '" + k.label + "' has check value " + k.kcv + " (computed by the HSM); ceremony " +
                                    ctx.ceremony_id + " recorded " + want + ": the token does NOT hold that root key");
  }
  ctx.step("kcv-compared", "ok", "token kcv " + k.kcv + " = transcript kcv");
  RootObjects root{mechanism, k, std::nullopt};
  // An aes-cbc-pad-hmac root: its HMAC key too, by its own check value.
  const std::string hl = hsm::hmac_label(o.token.key_label);
  std::vector<hsm::KeyObject> macs;
  ROOTSEAL_TRY_ASSIGN(macs, admin->find_keys(hl));
  if (root.mechanism == kCbcHmac) {
    const std::string want_mac = record_hmac_check(*rec);
    if (macs.size() != 1) {
      return fail(Errc::not_found, "token '" + o.token.token_label + "' holds " + std::to_string(macs.size()) +
                                       " keys labelled '" + hl +
                                       "' (the HMAC key of the aes-cbc-pad-hmac root; "
                                       "exactly one expected)");
    }
    if (!macs.front().is_valid_hmac_key()) {
      return fail(Errc::conflict, "key '" + hl +
                                      "' lacks the attributes of an HMAC root key (256-bit generic secret, token, "
                                      "private, sensitive, not extractable, sign/verify)");
    }
    if (macs.front().kcv != want_mac) {
      return fail(Errc::conflict, "HMAC key '" + hl + "' has check value " + macs.front().kcv +
                                      " (computed by the HSM); ceremony " + ctx.ceremony_id + " recorded " + want_mac +
                                      ": the token does NOT hold that root's HMAC key");
    }
    ctx.step("hmac-check-compared", "ok", "token HMAC check value " + want_mac + " = transcript");
    root.hmac = macs.front();
  } else if (!macs.empty()) {
    return fail(Errc::conflict, "token '" + o.token.token_label + "' holds a key labelled '" + hl + "', but ceremony " +
                                    ctx.ceremony_id + " recorded a " +
                                    (root.mechanism.empty() ? std::string("KWP/GCM") : root.mechanism) +
                                    " root: rootseald would take the pair for an aes-cbc-pad-hmac root");
  }
  json::object r = ctx.record("verify");
  r["token"] = token_json(admin->details(), o.token.module);
  r["root_key"] = root_json(root);
  r["verified_against"] = rec->path.filename().string();
  std::string store_line;
  if (!o.store.empty()) {
    auto opened = open_store_with(o.token, o.token.key_label, o.store);
    if (!opened) return fail(opened.error().code, "state store " + o.store.string() + ": " + opened.error().message);
    ctx.step("store-opened", "ok",
             std::to_string(opened->first) + " keys, " + std::to_string(opened->second) + " versions unwrapped");
    r["store"] = json::object{{"path", o.store.string()}, {"keys", opened->first}, {"versions", opened->second}};
    store_line = "  state store " + o.store.string() + " opens: " + std::to_string(opened->first) + " keys, " +
                 std::to_string(opened->second) + " versions unwrapped\n";
  }
  r["outcome"] = "ok";
  TranscriptEntry e;
  ROOTSEAL_TRY_ASSIGN(e, ctx.append(std::move(r)));
  con.out("rootseal: token '" + o.token.token_label + "' holds the root key of ceremony " + ctx.ceremony_id + " as '" +
          k.label + "' (" + (root.mechanism.empty() ? std::string("KWP/GCM") : root.mechanism) +
          "); the check values equal the transcript's\n" + check_lines(root) + store_line + head_line(e));
  Outcome out;
  out.ceremony_id = ctx.ceremony_id;
  out.kcv = k.kcv;
  out.mechanism = root.mechanism;
  if (root.hmac) out.hmac_check = root.hmac->kcv;
  out.transcript = e.path;
  out.key_label = k.label;
  return out;
}

}  // namespace

kms::Result<Outcome> ceremony_verify(const VerifyOptions& options, Console& console) {
  return recorded("verify", options, console, verify_impl);
}

}  // namespace rootseal::cli
