// rootseal::cli — `rootseal ceremony rotate-root`: a new root key, the store rewrapped, resumable.
#include <boost/json.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "ceremony_common.hpp"
#include "rootseal/daemon/state.hpp"
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

// The last rotate-root with no completion (or abandonment) after it.
std::optional<Pending> find_pending(const std::vector<TranscriptEntry>& entries) {
  std::set<std::string> closed;
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    const std::string kind = it->str("kind");
    if (kind == "rotate-root-complete" || kind == "rotate-root-abandoned") closed.insert(it->str("ceremony_id"));
    if (kind == "rotate-root" && it->str("outcome") == "ok" && !closed.contains(it->str("ceremony_id"))) {
      Pending p;
      p.ceremony_id = it->str("ceremony_id");
      p.new_kcv = record_kcv(*it);
      p.new_hmac_check = record_hmac_check(*it);
      p.new_mechanism = record_mechanism(*it);
      const json::value* prev = it->body.if_contains("previous_root");
      if (prev != nullptr && prev->is_object()) {
        const json::value* k = prev->as_object().if_contains("kcv");
        if (k != nullptr && k->is_string()) p.old_kcv = std::string(k->as_string());
        const json::value* h = prev->as_object().if_contains("hmac_check_value");
        if (h != nullptr && h->is_string()) p.old_hmac_check = std::string(h->as_string());
        const json::value* m = prev->as_object().if_contains("mechanism");
        if (m != nullptr && m->is_string()) p.old_mechanism = std::string(m->as_string());
      }
      p.store = it->str("store");
      p.entry = &*it;
      return p;
    }
  }
  return std::nullopt;
}

namespace {

std::optional<hsm::KeyObject> key_with(const std::vector<hsm::KeyObject>& keys, std::string_view kcv) {
  for (const auto& k : keys) {
    if (k.kcv == kcv) return k;
  }
  return std::nullopt;
}

// Whether the token holds the key (label, check value).
kms::Result<bool> holds(hsm::TokenAdmin& admin, const std::string& label, std::string_view check) {
  std::vector<hsm::KeyObject> keys;
  ROOTSEAL_TRY_ASSIGN(keys, admin.find_keys(label));
  return key_with(keys, check).has_value();
}

// Whether the token holds a root (an AES key, or an RSA private key) (label, check value).
kms::Result<bool> holds_root(hsm::TokenAdmin& admin, const std::string& label, std::string_view check) {
  bool aes = false;
  ROOTSEAL_TRY_ASSIGN(aes, holds(admin, label, check));
  if (aes) return true;
  std::vector<hsm::KeyObject> rsa;
  ROOTSEAL_TRY_ASSIGN(rsa, admin.find_rsa_keys(label));
  return key_with(rsa, check).has_value();
}

// Rewraps every keyring key, and every version from before the keyring key,
// still under `old_kcv` (found under label `old_at`) to the key `new_at`, in
// one transaction per round. Returns how many blobs. Versions under a
// keyring key are not touched: the root wraps only the keyring key.
kms::Result<std::size_t> rewrap_store(const TokenTarget& t, const fs::path& store_path, std::string_view old_at,
                                      std::string_view old_kcv, std::string_view new_at, std::string_view new_kcv,
                                      Context& ctx) {
  std::unique_ptr<kms::StateStore> store;
  ROOTSEAL_TRY_ASSIGN(store, kms::open_sqlite_store(store_path));
  auto no_pin = [] { return kms::Result<kms::SecureBytes>(fail(Errc::sealed, "not logged in")); };
  auto make_root = [&](std::string_view label) {
    hsm::Pkcs11Config cfg;
    cfg.module = t.module;
    cfg.token_label = t.token_label;
    cfg.key_label = std::string(label);
    return hsm::Pkcs11Root::create(cfg, no_pin);
  };
  std::unique_ptr<hsm::Pkcs11Root> old_root;
  std::unique_ptr<hsm::Pkcs11Root> new_root;
  std::size_t total = 0;
  // A second round only if something was added under the old root meanwhile
  // (rootseald must be stopped; this is a safety net, not a feature).
  for (int round = 0; round < 3; ++round) {
    std::vector<kms::KeyRecord> records;
    ROOTSEAL_TRY_ASSIGN(records, store->load_all());
    std::vector<kms::KeyringKeyRecord> keyring_keys;
    ROOTSEAL_TRY_ASSIGN(keyring_keys, store->keyring_keys());
    std::vector<kms::StateStore::Rewrapped> entries;
    std::vector<kms::KeyringKeyRecord> keyring_entries;
    std::size_t todo = 0;
    std::set<std::string, std::less<>> tags;  // of the keyring keys
    for (const auto& kk : keyring_keys) {
      tags.insert(kms::keyring_key_tag(kk.id, kk.kcv));
      if (kk.root_kcv == old_kcv) {
        ++todo;
      } else if (kk.root_kcv != new_kcv) {
        return fail(Errc::conflict, "keyring key " + std::to_string(kk.id) +
                                        " is wrapped by an unknown root key (kcv " + kk.root_kcv + ")");
      }
    }
    for (const auto& k : records) {
      for (const auto& v : k.versions) {
        if (v.root_kcv == old_kcv) {
          ++todo;
        } else if (v.root_kcv != new_kcv && !tags.contains(v.root_kcv)) {
          return fail(Errc::conflict, "key '" + k.name + "' version " + std::to_string(v.version) +
                                          " is wrapped by an unknown root key (kcv " + v.root_kcv + ")");
        }
      }
    }
    if (todo == 0) break;
    if (!old_root) {
      old_root = make_root(old_at);
      new_root = make_root(new_at);
      ROOTSEAL_TRY(old_root->probe());
      ROOTSEAL_TRY(new_root->probe());
      std::string ok;
      std::string nk;
      ROOTSEAL_TRY_ASSIGN(ok, old_root->key_check_value());
      ROOTSEAL_TRY_ASSIGN(nk, new_root->key_check_value());
      if (ok != old_kcv || nk != new_kcv) return fail(Errc::internal, "root keys changed under the rotation");
    }
    entries.reserve(todo);
    for (const auto& kk : keyring_keys) {
      if (kk.root_kcv != old_kcv) continue;
      kms::SecureBytes key;
      ROOTSEAL_TRY_ASSIGN(key, old_root->unwrap(kk.wrapped));
      kms::KeyringKeyRecord moved = kk;
      ROOTSEAL_TRY_ASSIGN(moved.wrapped, new_root->wrap(key));
      kms::SecureBytes check;
      ROOTSEAL_TRY_ASSIGN(check, new_root->unwrap(moved.wrapped));
      if (!(check == key)) {
        return fail(Errc::crypto_failure, "rewrap self-check failed for keyring key " + std::to_string(kk.id));
      }
      moved.root_kcv = std::string(new_kcv);
      keyring_entries.push_back(std::move(moved));
    }
    for (const auto& k : records) {
      for (const auto& v : k.versions) {
        if (v.root_kcv != old_kcv) continue;
        kms::SecureBytes kek;
        ROOTSEAL_TRY_ASSIGN(kek, old_root->unwrap(v.wrapped_key));
        std::vector<std::uint8_t> blob;
        ROOTSEAL_TRY_ASSIGN(blob, new_root->wrap(kek));
        kms::SecureBytes check;
        ROOTSEAL_TRY_ASSIGN(check, new_root->unwrap(blob));
        if (!(check == kek)) return fail(Errc::crypto_failure, "rewrap self-check failed for key '" + k.name + "'");
        entries.push_back({k.name, v.version, std::move(blob), std::string(new_kcv)});
      }
    }
    crash_point("rewrap-before-commit");
    ROOTSEAL_TRY(store->replace_wrapped(entries, keyring_entries));
    crash_point("rewrap-committed");
    total += entries.size() + keyring_entries.size();
    ctx.step("rewrapped", "ok",
             std::to_string(keyring_entries.size()) + " keyring key(s) and " + std::to_string(entries.size()) +
                 " version(s) from before the keyring key moved to the new root in one transaction");
  }
  return total;
}

// Step 1 of finish_rotation: rewrap what is still under the old root.
kms::Result<std::size_t> rewrap_step(const RotateOptions& o, hsm::TokenAdmin& admin, const Pending& p,
                                     const std::vector<hsm::KeyObject>& at_l, bool new_at_t, Context& ctx) {
  const std::string& L = o.token.key_label;
  const std::string R = retired_label(L, p.old_kcv);
  std::string old_at;
  bool at = key_with(at_l, p.old_kcv).has_value();
  if (!at) ROOTSEAL_TRY_ASSIGN(at, holds_root(admin, L, p.old_kcv));
  if (at) {
    old_at = L;
  } else {
    ROOTSEAL_TRY_ASSIGN(at, holds_root(admin, R, p.old_kcv));
    if (at) old_at = R;
  }
  const std::string new_at = new_at_t ? next_label(L) : L;
  auto n = rewrap_store(o.token, o.store, old_at.empty() ? L : old_at, p.old_kcv, new_at, p.new_kcv, ctx);
  if (!n && old_at.empty()) {
    return fail(n.error().code,
                n.error().message + " (and the old root key, kcv " + p.old_kcv + ", is no longer in the token)");
  }
  return n;
}

// Retires the old key (`from`, check value `check`): kept under `to` (a
// copy, unless --retire destroy or already there), then destroyed at
// `from`; with --retire destroy a copy left at `to` goes too. `point`
// names its crash points (<point>-copied, <point>-retired).
kms::Result<void> retire_key(const RotateOptions& o, hsm::TokenAdmin& admin, const std::string& from,
                             const std::string& to, const std::string& check, std::string_view what,
                             std::string_view point, std::string_view step, const std::string& retired_as,
                             Context& ctx) {
  std::vector<hsm::KeyObject> at_from;
  ROOTSEAL_TRY_ASSIGN(at_from, admin.find_keys(from));
  bool kept = false;
  ROOTSEAL_TRY_ASSIGN(kept, holds(admin, to, check));
  if (const auto old = key_with(at_from, check)) {
    if (o.retire == Retire::relabel && !kept) {
      if (!old->modifiable) {
        return fail(Errc::invalid_argument, "the old " + std::string(what) + " '" + from +
                                                "' is not modifiable (CKA_MODIFIABLE=false) and cannot be "
                                                "relabelled; finish with --resume --retire destroy");
      }
      ROOTSEAL_TRY(admin.copy_key(from, check, to));
      crash_point(std::string(point) + "-copied");
    }
    ROOTSEAL_TRY(admin.destroy_key(from, check));
    crash_point(std::string(point) + "-retired");
    ctx.step(step, "ok", "check value " + check + " " + retired_as);
  }
  if (o.retire == Retire::destroy) {
    ROOTSEAL_TRY_ASSIGN(kept, holds(admin, to, check));
    if (kept) ROOTSEAL_TRY(admin.destroy_key(to, check));
  }
  return {};
}

// Step 2 of finish_rotation: retire the old key, only once nothing in the
// store needs it. Returns how it was retired ("relabelled '<label>'" or "destroyed").
kms::Result<std::string> retire_step(const RotateOptions& o, hsm::TokenAdmin& admin, const Pending& p, Context& ctx) {
  const std::string& L = o.token.key_label;
  const std::string R = retired_label(L, p.old_kcv);
  std::string retired_as = o.retire == Retire::relabel ? "relabelled '" + R + "'" : "destroyed";
  if (p.old_mechanism == kRsaOaep) {
    // A key pair: copied (what R lacks of it), then destroyed at L, private key first.
    if (o.retire == Retire::relabel) {
      ROOTSEAL_TRY(admin.copy_rsa_pair(L, p.old_kcv, R));
      crash_point("old-key-copied");
    }
    ROOTSEAL_TRY(admin.destroy_rsa_pair(L, p.old_kcv));
    crash_point("old-key-retired");
    if (o.retire == Retire::destroy) ROOTSEAL_TRY(admin.destroy_rsa_pair(R, p.old_kcv));
    ctx.step("old-root-retired", "ok", "RSA key pair, check value " + p.old_kcv + " " + retired_as);
    return retired_as;
  }
  ROOTSEAL_TRY(retire_key(o, admin, L, R, p.old_kcv, "root key", "old-key", "old-root-retired", retired_as, ctx));
  // The HMAC key of an aes-cbc-pad-hmac root goes after its AES key (a lone
  // HMAC key is ignored by rootseald; a lone AES key is not).
  if (!p.old_hmac_check.empty()) {
    ROOTSEAL_TRY(retire_key(o, admin, hsm::hmac_label(L), hsm::hmac_label(R), p.old_hmac_check, "HMAC key", "old-hmac",
                            "old-hmac-key-retired", retired_as, ctx));
  }
  return retired_as;
}

// Step 3 of finish_rotation: the new key under the final label (a copy,
// then the temporary goes).
// For an aes-cbc-pad-hmac root the HMAC key moves first and its temporary
// goes last: under the final label the AES key never stands without it.
// Every sub-step is skipped when already done.
kms::Result<void> promote_step(const RotateOptions& o, hsm::TokenAdmin& admin, const Pending& p, Context& ctx) {
  const std::string& L = o.token.key_label;
  const std::string T = next_label(L);
  if (p.new_mechanism == kRsaOaep) {
    // A key pair: copied (what L lacks of it), then destroyed at T, private
    // key first; both calls do only what is left, so this always runs.
    ROOTSEAL_TRY(admin.copy_rsa_pair(T, p.new_kcv, L));
    crash_point("new-key-copied");
    ROOTSEAL_TRY(admin.destroy_rsa_pair(T, p.new_kcv));
    crash_point("new-key-promoted");
    ctx.step("new-root-promoted", "ok", "RSA key pair, check value " + p.new_kcv + ", is now '" + L + "'");
    return {};
  }
  const bool mac = !p.new_hmac_check.empty();
  bool done = false;
  if (mac) {
    ROOTSEAL_TRY_ASSIGN(done, holds(admin, hsm::hmac_label(L), p.new_hmac_check));
    if (!done) {
      ROOTSEAL_TRY(admin.copy_key(hsm::hmac_label(T), p.new_hmac_check, hsm::hmac_label(L)));
      crash_point("new-hmac-copied");
    }
  }
  ROOTSEAL_TRY_ASSIGN(done, holds(admin, L, p.new_kcv));
  if (!done) {
    ROOTSEAL_TRY(admin.copy_key(T, p.new_kcv, L));
    crash_point("new-key-copied");
  }
  ROOTSEAL_TRY_ASSIGN(done, holds(admin, T, p.new_kcv));
  if (done) {
    ROOTSEAL_TRY(admin.destroy_key(T, p.new_kcv));
    crash_point("new-key-promoted");
  }
  if (mac) {
    ROOTSEAL_TRY_ASSIGN(done, holds(admin, hsm::hmac_label(T), p.new_hmac_check));
    if (done) {
      ROOTSEAL_TRY(admin.destroy_key(hsm::hmac_label(T), p.new_hmac_check));
      crash_point("new-hmac-promoted");
    }
  }
  ctx.step("new-root-promoted", "ok", "kcv " + p.new_kcv + " is now '" + L + "'");
  return {};
}

// Drives a prepared rotation to its end from whatever state a crash left:
// rewrap (if the store is still under the old root), retire the old key,
// move the new key to the final label. Every step is idempotent.
kms::Result<std::size_t> finish_rotation(const RotateOptions& o, hsm::TokenAdmin& admin, const Pending& p, Context& ctx,
                                         Console& con, std::string& retired_as) {
  const std::string& L = o.token.key_label;
  const std::string T = next_label(L);
  std::vector<hsm::KeyObject> at_l;
  std::vector<hsm::KeyObject> at_t;
  ROOTSEAL_TRY_ASSIGN(at_l, admin.find_keys(L));
  ROOTSEAL_TRY_ASSIGN(at_t, admin.find_keys(T));
  for (const auto& k : at_l) {
    if (k.kcv != p.old_kcv && k.kcv != p.new_kcv) {
      return fail(Errc::conflict, "key '" + L + "' with kcv " + k.kcv + " belongs to neither side of rotation " +
                                      p.ceremony_id + "; resolve by hand");
    }
  }
  std::vector<hsm::KeyObject> at_hl;
  std::vector<hsm::KeyObject> at_ht;
  ROOTSEAL_TRY_ASSIGN(at_hl, admin.find_keys(hsm::hmac_label(L)));
  ROOTSEAL_TRY_ASSIGN(at_ht, admin.find_keys(hsm::hmac_label(T)));
  for (const auto& k : at_hl) {
    if (k.kcv.empty() || (k.kcv != p.old_hmac_check && k.kcv != p.new_hmac_check)) {
      return fail(Errc::conflict, "HMAC key '" + hsm::hmac_label(L) + "' with check value " + k.kcv +
                                      " belongs to neither side of rotation " + p.ceremony_id + "; resolve by hand");
    }
  }
  const bool new_rsa = p.new_mechanism == kRsaOaep;
  if (new_rsa) {
    // The new root is an RSA key pair: look for its private key instead.
    ROOTSEAL_TRY_ASSIGN(at_l, admin.find_rsa_keys(L));
    ROOTSEAL_TRY_ASSIGN(at_t, admin.find_rsa_keys(T));
    for (const auto& k : at_l) {
      if (k.kcv != p.old_kcv && k.kcv != p.new_kcv) {
        return fail(Errc::conflict, "RSA key '" + L + "' with check value " + k.kcv +
                                        " belongs to neither side of rotation " + p.ceremony_id + "; resolve by hand");
      }
    }
  }
  const bool new_at_l = key_with(at_l, p.new_kcv).has_value();
  const bool new_at_t = key_with(at_t, p.new_kcv).has_value();
  const bool new_mac_at_t = !p.new_hmac_check.empty() && key_with(at_ht, p.new_hmac_check).has_value();
  if (!new_at_l && !new_at_t) {
    return fail(Errc::not_found, "the new root key (kcv " + p.new_kcv + ") of rotation " + p.ceremony_id +
                                     " is in neither '" + T + "' nor '" + L + "'");
  }
  std::size_t rewrapped = 0;
  ROOTSEAL_TRY_ASSIGN(rewrapped, rewrap_step(o, admin, p, at_l, new_at_t, ctx));
  ROOTSEAL_TRY_ASSIGN(retired_as, retire_step(o, admin, p, ctx));
  if (new_at_t || new_mac_at_t || new_rsa) ROOTSEAL_TRY(promote_step(o, admin, p, ctx));
  // 4. Proof: the store opens with the key under the final label.
  auto opened = open_store_with(o.token, L, o.store);
  if (!opened) {
    return fail(opened.error().code, "after the rotation the store does not open: " + opened.error().message);
  }
  ctx.step("store-opened", "ok", std::to_string(opened->second) + " versions unwrap under '" + L + "'");
  con.out("  state store " + o.store.string() + ": " + std::to_string(opened->first) + " keys, " +
          std::to_string(opened->second) + " versions open under the new root key\n");
  return rewrapped;
}

kms::Result<TranscriptEntry> record_completion(const RotateOptions& o, hsm::TokenAdmin& admin, const Pending& p,
                                               std::size_t rewrapped, const std::string& retired_as, Context& ctx) {
  json::object r = ctx.record("rotate-root-complete");
  r["ceremony_id"] = p.ceremony_id;
  r["token"] = token_json(admin.details(), o.token.module);
  r["store"] = o.store.string();
  r["previous_root"] = json::object{{"kcv", p.old_kcv}, {"retired", retired_as}};
  r["root_key"] = json::object{{"label", o.token.key_label}, {"kcv", p.new_kcv}};
  if (!p.new_mechanism.empty()) r["root_key"].as_object()["mechanism"] = p.new_mechanism;
  if (!p.new_hmac_check.empty()) {
    r["root_key"].as_object()["hmac_key"] =
        json::object{{"label", hsm::hmac_label(o.token.key_label)}, {"check_value", p.new_hmac_check}};
  }
  r["rewrapped_in_this_run"] = rewrapped;
  r["outcome"] = "ok";
  return ctx.append(std::move(r));
}

// A finished rotation: what finish_rotation did and its completion record.
struct Finished {
  std::size_t rewrapped = 0;
  std::string retired_as;
  TranscriptEntry entry;
};

kms::Result<Finished> finish_and_record(const RotateOptions& o, hsm::TokenAdmin& admin, const Pending& p, Context& ctx,
                                        Console& con, Outcome& out) {
  Finished f;
  ROOTSEAL_TRY_ASSIGN(f.rewrapped, finish_rotation(o, admin, p, ctx, con, f.retired_as));
  ROOTSEAL_TRY_ASSIGN(f.entry, record_completion(o, admin, p, f.rewrapped, f.retired_as, ctx));
  out.ceremony_id = p.ceremony_id;
  out.kcv = p.new_kcv;
  out.rewrapped = f.rewrapped;
  out.transcript = f.entry.path;
  return f;
}

// `--resume` with no recorded rotation: a '<label>.next' left between its
// import and its record has no transcript, so its shares cannot be used; it
// is removed if the store does not use it.
kms::Result<Outcome> abandon_unrecorded(const RotateOptions& o, hsm::TokenAdmin& admin,
                                        const std::vector<hsm::KeyObject>& at_t,
                                        const std::vector<hsm::KeyObject>& at_ht,
                                        const std::vector<hsm::KeyObject>& at_rt, Console& con, Context& ctx,
                                        Outcome out) {
  const std::string T = next_label(o.token.key_label);
  if (at_t.empty() && at_ht.empty() && at_rt.empty()) {
    con.out("rootseal: no interrupted root rotation; nothing to resume\n");
    return out;
  }
  std::unique_ptr<kms::StateStore> store;
  ROOTSEAL_TRY_ASSIGN(store, kms::open_sqlite_store(o.store));
  std::vector<kms::KeyRecord> records;
  ROOTSEAL_TRY_ASSIGN(records, store->load_all());
  std::vector<kms::KeyringKeyRecord> keyring_keys;
  ROOTSEAL_TRY_ASSIGN(keyring_keys, store->keyring_keys());
  std::vector<const hsm::KeyObject*> roots_at_t;  // AES keys and RSA private keys
  roots_at_t.reserve(at_t.size() + at_rt.size());
  for (const auto& tk : at_t) roots_at_t.push_back(&tk);
  for (const auto& tk : at_rt) roots_at_t.push_back(&tk);
  for (const hsm::KeyObject* tkp : roots_at_t) {
    const hsm::KeyObject& tk = *tkp;
    for (const auto& kk : keyring_keys) {
      if (kk.root_kcv == tk.kcv) {
        return fail(Errc::conflict, "the store's keyring key " + std::to_string(kk.id) + " is wrapped by '" + T +
                                        "' (kcv " + tk.kcv + ") but no transcript records it; resolve by hand");
      }
    }
    for (const auto& k : records) {
      for (const auto& v : k.versions) {
        if (v.root_kcv == tk.kcv) {
          return fail(Errc::conflict,
                      "the store uses '" + T + "' (kcv " + tk.kcv + ") but no transcript records it; resolve by hand");
        }
      }
    }
  }
  json::array gone;
  for (const auto& tk : at_t) {
    ROOTSEAL_TRY(admin.destroy_key(T, tk.kcv));
    gone.emplace_back(tk.kcv);
    ctx.step("orphan-destroyed", "ok", "'" + T + "' kcv " + tk.kcv + " (never recorded, never used)");
  }
  for (const auto& tk : at_rt) {
    ROOTSEAL_TRY(admin.destroy_rsa_pair(T, tk.kcv));
    gone.emplace_back(tk.kcv);
    ctx.step("orphan-destroyed", "ok",
             "RSA key pair '" + T + "' check value " + tk.kcv + " (never recorded, never used)");
  }
  // HMAC keys after their AES keys (see promote_step).
  for (const auto& tk : at_ht) {
    ROOTSEAL_TRY(admin.destroy_key(hsm::hmac_label(T), tk.kcv));
    gone.emplace_back(tk.kcv);
    ctx.step("orphan-destroyed", "ok",
             "'" + hsm::hmac_label(T) + "' check value " + tk.kcv + " (never recorded, never used)");
  }
  ctx.ceremony_id = "00000000000000000000000000000000";
  json::object r = ctx.record("rotate-root-abandoned");
  r["destroyed_kcvs"] = std::move(gone);
  r["reason"] = "interrupted before the rotation was recorded; its share files (if any) are void";
  r["outcome"] = "ok";
  TranscriptEntry e;
  ROOTSEAL_TRY_ASSIGN(e, ctx.append(std::move(r)));
  con.out("rootseal: removed an unrecorded '" + T + "' left by an interrupted rotation; run rotate-root again\n" +
          head_line(e));
  out.transcript = e.path;
  return out;
}

kms::Result<Outcome> resume_rotation(const RotateOptions& o, hsm::TokenAdmin& admin, const Pending& pending,
                                     Console& con, Context& ctx, Outcome out) {
  ctx.ceremony_id = pending.ceremony_id;
  if (!pending.store.empty() && fs::path(pending.store) != o.store) {
    con.err("rootseal: note: the rotation was started on store " + pending.store + "\n");
  }
  con.out("rootseal: resuming root rotation " + pending.ceremony_id + " (kcv " + pending.old_kcv + " -> " +
          pending.new_kcv + ")\n");
  Finished f;
  ROOTSEAL_TRY_ASSIGN(f, finish_and_record(o, admin, pending, ctx, con, out));
  con.out("rootseal: root rotation " + pending.ceremony_id + " complete; the root key is '" + o.token.key_label +
          "' (kcv " + pending.new_kcv + ")\n" + head_line(f.entry));
  return out;
}

// The refusal of a store version wrapped by another root than `label` (kcv `kcv`).
std::unexpected<kms::Error> foreign_version(const std::string& key, const kms::KeyVersionRecord& v,
                                            const std::string& label, const std::string& kcv) {
  return fail(Errc::conflict, "key '" + key + "' version " + std::to_string(v.version) +
                                  " of the store is wrapped by kcv " + v.root_kcv + ", not by '" + label + "' (kcv " +
                                  kcv + "); refusing to rotate");
}

// The current root.
struct Current {
  std::string kcv;
  std::string hmac_check;  // aes-cbc-pad-hmac
  std::string mechanism;   // aes-kwp (or aes-gcm: the same AES key) or aes-cbc-pad-hmac
};

// The current root key's check value(s), once the token holds exactly one
// root key under the label (and at most one HMAC key beside it), it can be
// retired as asked, and the store holds nothing wrapped by another root.
kms::Result<Current> check_current_root(const RotateOptions& o, hsm::TokenAdmin& admin, Context& ctx) {
  const std::string& L = o.token.key_label;
  std::vector<hsm::KeyObject> at_l;
  ROOTSEAL_TRY_ASSIGN(at_l, admin.find_keys(L));
  Current cur;
  std::vector<hsm::KeyObject> rsa;
  if (at_l.empty()) ROOTSEAL_TRY_ASSIGN(rsa, admin.find_rsa_keys(L));
  if (!rsa.empty()) {
    // An rsa-oaep root (a key pair): moved to an AES mechanism.
    if (rsa.size() != 1 || !rsa.front().is_valid_rsa_root() || rsa.front().kcv.empty()) {
      return fail(Errc::not_found, "token '" + o.token.token_label + "' must hold exactly one RSA root key labelled '" +
                                       L + "' (it holds " + std::to_string(rsa.size()) + ")");
    }
    at_l = rsa;
    cur.mechanism = std::string(kRsaOaep);
  }
  if (at_l.size() != 1 || (!at_l.front().is_valid_root_key() && cur.mechanism != kRsaOaep) ||
      at_l.front().kcv.empty()) {
    return fail(Errc::not_found, "token '" + o.token.token_label + "' must hold exactly one root key labelled '" + L +
                                     "' (it holds " + std::to_string(at_l.size()) + ")");
  }
  cur.kcv = at_l.front().kcv;
  const std::string& old_kcv = cur.kcv;
  std::vector<hsm::KeyObject> at_hl;
  ROOTSEAL_TRY_ASSIGN(at_hl, admin.find_keys(hsm::hmac_label(L)));
  if (at_hl.size() > 1 || (at_hl.size() == 1 && (!at_hl.front().is_valid_hmac_key() || at_hl.front().kcv.empty()))) {
    return fail(Errc::not_found, "token '" + o.token.token_label + "' must hold at most one valid HMAC key labelled '" +
                                     hsm::hmac_label(L) + "' (it holds " + std::to_string(at_hl.size()) + ")");
  }
  if (at_hl.size() == 1 && cur.mechanism == kRsaOaep) {
    return fail(Errc::conflict, "token '" + o.token.token_label + "' holds an HMAC key '" + hsm::hmac_label(L) +
                                    "' beside the RSA root key; resolve by hand");
  }
  if (at_hl.size() == 1) {
    cur.hmac_check = at_hl.front().kcv;
    cur.mechanism = std::string(kCbcHmac);
    if (o.retire == Retire::relabel && !at_hl.front().modifiable) {
      return fail(Errc::invalid_argument, "the current HMAC key '" + hsm::hmac_label(L) +
                                              "' is not modifiable (CKA_MODIFIABLE=false) and cannot be kept under "
                                              "another label; use --retire destroy");
    }
  } else if (cur.mechanism.empty()) {
    cur.mechanism = at_l.front().wrap ? "aes-kwp" : "aes-gcm";
  }
  if (o.retire == Retire::relabel && !at_l.front().modifiable) {
    return fail(Errc::invalid_argument,
                "the current root key '" + L +
                    "' is not modifiable (CKA_MODIFIABLE=false, "
                    "e.g. generated by rootseald --dev) and cannot be kept under another label; "
                    "use --retire destroy (any shares of it still restore it)");
  }
  std::unique_ptr<kms::StateStore> store;
  ROOTSEAL_TRY_ASSIGN(store, kms::open_sqlite_store(o.store));
  std::vector<kms::KeyRecord> records;
  ROOTSEAL_TRY_ASSIGN(records, store->load_all());
  std::vector<kms::KeyringKeyRecord> keyring_keys;
  ROOTSEAL_TRY_ASSIGN(keyring_keys, store->keyring_keys());
  std::set<std::string, std::less<>> tags;
  for (const auto& kk : keyring_keys) {
    if (kk.root_kcv != old_kcv) {
      return fail(Errc::conflict, "keyring key " + std::to_string(kk.id) + " of the store is wrapped by kcv " +
                                      kk.root_kcv + ", not by '" + L + "' (kcv " + old_kcv + "); refusing to rotate");
    }
    tags.insert(kms::keyring_key_tag(kk.id, kk.kcv));
  }
  std::size_t versions = 0;
  std::size_t direct = 0;
  for (const auto& k : records) {
    for (const auto& v : k.versions) {
      if (v.root_kcv == old_kcv) {
        ++direct;
      } else if (!tags.contains(v.root_kcv)) {
        return foreign_version(k.name, v, L, old_kcv);
      }
      ++versions;
    }
  }
  ctx.step("store-checked", "ok",
           std::to_string(keyring_keys.size()) + " keyring key(s) and " + std::to_string(direct) +
               " version(s) from before the keyring key under kcv " + old_kcv + " (" + cur.mechanism + "); " +
               std::to_string(versions) + " versions in all");
  return cur;
}

// The new root key under '<label>.next': generated inside the HSM
// (--no-backup), or made outside it, split into shares and imported.
// Describes it in the rotation record `rec`.
kms::Result<RootObjects> make_new_root(const RotateOptions& o, hsm::TokenAdmin& admin, const Current& old,
                                       const std::string& mechanism, const std::vector<LoadedCustodian>& custodians,
                                       json::object& rec, Context& ctx, Console& con, Outcome& out) {
  const std::string T = next_label(o.token.key_label);
  // A new check value equal to the old one (a 24-bit collision) would make
  // the two roots indistinguishable in the token: make another.
  auto collides = [&](const std::string& kcv, const std::string& mac) {
    return kcv == old.kcv || (!mac.empty() && mac == old.hmac_check);
  };
  RootObjects k;
  if (o.no_backup) {
    for (int attempt = 0;; ++attempt) {
      ROOTSEAL_TRY_ASSIGN(k, generate_root_in_token(admin, T, mechanism));
      if (!collides(k.key.kcv, k.hmac ? k.hmac->kcv : std::string())) break;
      if (mechanism == kRsaOaep) {
        ROOTSEAL_TRY(admin.destroy_rsa_pair(T, k.key.kcv));
      } else {
        ROOTSEAL_TRY(admin.destroy_key(T, k.key.kcv));
      }
      if (k.hmac) ROOTSEAL_TRY(admin.destroy_key(k.hmac->label, k.hmac->kcv));
      if (attempt > 3) return fail(Errc::internal, "cannot make a key with a check value of its own");
    }
    ctx.step("key-generated-in-hsm", "ok", "'" + T + "' kcv " + k.key.kcv + ", " + mechanism);
    rec["root_key"] = generated_root_json(k);
    rec["warning"] = kNoBackupWarning;
    con.err("\n*** WARNING ***\n" + std::string(kNoBackupWarning) + "\n\n");
    return k;
  }
  kms::SecureBytes root;
  SecretChecks checks;
  for (int attempt = 0;; ++attempt) {
    ROOTSEAL_TRY_ASSIGN(root, generate_root_key(admin, secret_size(mechanism)));
    ROOTSEAL_TRY_ASSIGN(checks, secret_checks(root));
    if (!collides(checks.kcv, checks.hmac_check)) break;
    if (attempt > 3) return fail(Errc::internal, "cannot make a key with a check value of its own");
  }
  crash_point("root-key-held");
  ctx.step("key-generated", "ok",
           "OS random XOR HSM random; kcv " + checks.kcv + ", " + mechanism +
               (checks.hmac_check.empty() ? "" : ", HMAC check value " + checks.hmac_check));
  Backup backup;
  ROOTSEAL_TRY_ASSIGN(
      backup, write_backup(root, mechanism, checks.kcv, ctx.ceremony_id, custodians, o.threshold, o.out_dir, ctx, con));
  auto imported = import_root(admin, T, root, mechanism, checks);
  root.clear();
  ROOTSEAL_TRY_ASSIGN(k, std::move(imported));
  ctx.step("key-imported", "ok", "label '" + T + "', check values computed by the HSM match");
  record_backed_up_key(rec, k, backup);
  out.share_files = std::move(backup.files);
  return k;
}

// A new rotation: check the current root and the store, make and record the
// new key (the rotation is resumable from here), then finish it.
kms::Result<Outcome> start_rotation(const RotateOptions& o, hsm::TokenAdmin& admin,
                                    const std::vector<LoadedCustodian>& custodians, Console& con, Context& ctx,
                                    Outcome out) {
  const std::string& L = o.token.key_label;
  Current old;
  ROOTSEAL_TRY_ASSIGN(old, check_current_root(o, admin, ctx));
  const std::string& old_kcv = old.kcv;
  // The new root's mechanism: as asked, else the current root's.
  std::string mechanism = old.mechanism;
  if (o.mechanism != hsm::RootMechanism::automatic || old.mechanism != kCbcHmac) {
    ROOTSEAL_TRY_ASSIGN(mechanism, resolve_mechanism(o.mechanism, admin.details(), o.no_backup));
  }
  ROOTSEAL_TRY(token_can_hold(admin.details(), mechanism, "rotate-root"));
  ctx.ceremony_id = new_ceremony_id();
  con.out("rootseal: root rotation " + ctx.ceremony_id + " on token '" + o.token.token_label + "' (current kcv " +
          old_kcv + ", " + old.mechanism + "; new root: " + mechanism + ")\n");
  json::object rec = ctx.record("rotate-root");
  rec["token"] = token_json(admin.details(), o.token.module);
  rec["store"] = o.store.string();
  rec["previous_root"] = json::object{{"label", L}, {"kcv", old_kcv}, {"mechanism", old.mechanism}};
  if (!old.hmac_check.empty()) rec["previous_root"].as_object()["hmac_check_value"] = old.hmac_check;
  rec["temporary_label"] = next_label(L);
  RootObjects k;
  ROOTSEAL_TRY_ASSIGN(k, make_new_root(o, admin, old, mechanism, custodians, rec, ctx, con, out));
  crash_point("new-key-imported");
  rec["state"] = "prepared: the new key is in the token; the store is rewrapped next";
  rec["outcome"] = "ok";
  TranscriptEntry prepared;
  ROOTSEAL_TRY_ASSIGN(prepared, ctx.append(std::move(rec)));
  crash_point("rotation-recorded");

  Pending p;
  p.ceremony_id = ctx.ceremony_id;
  p.old_kcv = old_kcv;
  p.new_kcv = k.key.kcv;
  p.old_hmac_check = old.hmac_check;
  p.old_mechanism = old.mechanism;
  p.new_mechanism = mechanism;
  if (k.hmac) p.new_hmac_check = k.hmac->kcv;
  out.mechanism = mechanism;
  out.hmac_check = p.new_hmac_check;
  p.store = o.store.string();
  ctx.steps = json::array();  // the completion record has its own steps
  Finished f;
  ROOTSEAL_TRY_ASSIGN(f, finish_and_record(o, admin, p, ctx, con, out));
  con.out("rootseal: root rotation " + p.ceremony_id + " complete: " + std::to_string(f.rewrapped) +
          " wrapped keys moved; old root (kcv " + old_kcv + ") " + f.retired_as + "; the root key is '" + L +
          "' (kcv " + p.new_kcv + ")\n" + head_line(f.entry));
  return out;
}

kms::Result<Outcome> rotate_impl(const RotateOptions& o, Console& con, Context& ctx) {
  ROOTSEAL_TRY(check_token(o.token));
  ROOTSEAL_TRY(check_people(o.people));
  if (o.store.empty()) return fail(Errc::invalid_argument, "--store (the state store to rewrap) is required");
  if (!o.resume && o.mechanism == hsm::RootMechanism::rsa_oaep && !o.no_backup) {
    return std::unexpected(resolve_mechanism(o.mechanism, hsm::TokenDetails{}, false).error());  // the refusal
  }
  // Never under a running rootseald (it holds its state folder's lock, and
  // would keep serving, and writing, keys the rotation rewraps), nor beside
  // another offline command on that folder. Held until the rotation returns.
  std::error_code ec;
  const fs::path state_dir = fs::absolute(o.store, ec).parent_path();
  if (ec) return fail(Errc::invalid_argument, "--store " + o.store.string() + ": " + ec.message());
  auto lock = daemon::StateDirLock::acquire(state_dir, "rootseal ceremony rotate-root");
  if (!lock) return std::unexpected(std::move(lock).error());
  ROOTSEAL_TRY(ctx.load_chain());
  const std::string T = next_label(o.token.key_label);

  std::optional<Pending> pending = find_pending(ctx.entries);
  std::vector<LoadedCustodian> custodians;
  if (!o.resume) {
    if (pending) {
      return fail(Errc::conflict, "root rotation " + pending->ceremony_id +
                                      " was interrupted; finish it first with "
                                      "`rootseal ceremony rotate-root --resume`");
    }
    ROOTSEAL_TRY_ASSIGN(custodians, backup_custodians(o.no_backup, o.custodians, o.threshold, o.out_dir));
  }

  std::unique_ptr<hsm::TokenAdmin> admin;
  ROOTSEAL_TRY_ASSIGN(admin, open_token(o.token));
  std::vector<hsm::KeyObject> at_t;
  std::vector<hsm::KeyObject> at_ht;
  std::vector<hsm::KeyObject> at_rt;
  ROOTSEAL_TRY_ASSIGN(at_t, admin->find_keys(T));
  ROOTSEAL_TRY_ASSIGN(at_ht, admin->find_keys(hsm::hmac_label(T)));
  ROOTSEAL_TRY_ASSIGN(at_rt, admin->find_rsa_keys(T));
  Outcome out;
  out.key_label = o.token.key_label;
  if (o.resume) {
    if (!pending) return abandon_unrecorded(o, *admin, at_t, at_ht, at_rt, con, ctx, std::move(out));
    return resume_rotation(o, *admin, *pending, con, ctx, std::move(out));
  }
  if (!at_t.empty() || !at_ht.empty() || !at_rt.empty()) {
    return fail(Errc::conflict, "token holds a key labelled '" + T +
                                    "' from an interrupted rotation; run "
                                    "`rootseal ceremony rotate-root --resume` first");
  }
  return start_rotation(o, *admin, custodians, con, ctx, std::move(out));
}

}  // namespace

std::string next_label(std::string_view key_label) { return std::string(key_label) + ".next"; }

std::string retired_label(std::string_view key_label, std::string_view kcv) {
  return std::string(key_label) + ".retired-" + std::string(kcv);
}

kms::Result<Outcome> ceremony_rotate_root(const RotateOptions& options, Console& console) {
  return recorded("rotate-root", options, console, rotate_impl);
}

}  // namespace rootseal::cli
