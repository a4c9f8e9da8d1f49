// rootseal::cli — what the ceremony subcommands share; see ceremony_common.hpp.
//
// Secrets: the root key, the HSM's and the OS's random halves, the shares
// and the PIN live only in kms::SecureBytes (locked, zeroized on scope exit).
// Nothing secret is ever formatted into a std::string, a message or a file.
#include <boost/json.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "ceremony_common.hpp"
#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/key_wrap.hpp"
#include "key_copy.hpp"
#include "rootseal/kms/state_store.hpp"
#include "shamir.hpp"
#include "share_format.hpp"

namespace rootseal::cli {

using kms::Errc;
using kms::fail;

json::object token_json(const hsm::TokenDetails& d, const fs::path& module) {
  json::object t;
  t["label"] = d.label;
  t["serial"] = d.serial;
  t["manufacturer"] = d.manufacturer;
  t["model"] = d.model;
  t["module"] = module.string();
  return t;
}

json::object key_json(const hsm::KeyObject& k) {
  json::object o;
  o["label"] = k.label;
  o["id"] = k.id;
  o["kcv"] = k.kcv;
  o["kcv_method"] = "CKA_CHECK_VALUE computed by the token: AES-ECB(key, 0^128), first 24 bits";
  std::string usage;
  if (k.wrap && k.unwrap) usage = "CKA_WRAP+CKA_UNWRAP";
  if (k.encrypt && k.decrypt) usage += std::string(usage.empty() ? "" : "+") + "CKA_ENCRYPT+CKA_DECRYPT";
  o["attributes"] = "AES-256, CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE=false, " + usage;
  return o;
}

json::object root_json(const RootObjects& r) {
  if (r.mechanism == kRsaOaep) {
    return json::object{
        {"label", r.key.label},
        {"id", r.key.id},
        {"kcv", r.key.kcv},
        {"mechanism", r.mechanism},
        {"kcv_method", "SHA-256 over the DER SubjectPublicKeyInfo of the public key, first 24 bits"},
        {"attributes", "RSA-" + std::to_string(r.key.value_len * 8) +
                           " key pair; private key CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE=false, "
                           "CKA_DECRYPT; public key CKA_ENCRYPT; CKM_RSA_PKCS_OAEP with SHA-256/MGF1-SHA-256"}};
  }
  json::object o = key_json(r.key);
  if (!r.mechanism.empty()) o["mechanism"] = r.mechanism;
  if (r.hmac) {
    o["hmac_key"] =
        json::object{{"label", r.hmac->label},
                     {"id", r.hmac->id},
                     {"check_value", r.hmac->kcv},
                     {"check_value_method", "computed by the token (C_Sign, CKM_SHA256_HMAC): HMAC-SHA256(key, \"" +
                                                std::string(hsm::kHmacCheckMessage) + "\"), first 24 bits"},
                     {"attributes",
                      "256-bit generic secret, CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE=false, "
                      "CKA_SIGN+CKA_VERIFY"}};
  }
  return o;
}

// ----- root mechanisms ---------------------------------------------------------

kms::Result<std::string> resolve_mechanism(hsm::RootMechanism requested, const hsm::TokenDetails& t, bool no_backup) {
  using M = hsm::RootMechanism;
  const std::string tok = "token '" + t.label + "'";
  switch (requested) {
    case M::automatic:
      if (t.has_kwp) return std::string("aes-kwp");
      if (t.has_gcm) return std::string("aes-gcm");
      if (t.has_cbc_hmac) return std::string(kCbcHmac);
      return fail(Errc::invalid_argument, tok + " offers none of the mechanisms of an AES root");
    case M::aes_kwp:
    case M::aes_gcm:
    case M::aes_cbc_pad_hmac: {
      std::string name(hsm::root_mechanism_name(requested));
      ROOTSEAL_TRY(token_can_hold(t, name, "--mechanism " + name));
      return name;
    }
    case M::rsa_oaep:
      if (!no_backup) {
        return fail(Errc::invalid_argument,
                    "an rsa-oaep root cannot be backed up in shares: an RSA private key is not split and imported "
                    "(few tokens accept one, and it would exist outside the HSM as a whole). Either generate the "
                    "key pair inside the token with --no-backup (it can NEVER be restored: losing the token loses "
                    "every key wrapped under it), or choose aes-cbc-pad-hmac, which is backed up and needs only "
                    "CKM_AES_CBC_PAD and CKM_SHA256_HMAC (docs/ceremony.md, \"RSA roots\")");
      }
      if (!t.has_rsa_oaep) {
        return fail(Errc::invalid_argument, "--mechanism rsa-oaep: " + tok +
                                                " lacks CKM_RSA_PKCS_OAEP (encrypt, decrypt) or "
                                                "CKM_RSA_PKCS_KEY_PAIR_GEN");
      }
      return std::string(kRsaOaep);
  }
  return fail(Errc::invalid_argument, "unknown root mechanism");
}

kms::Result<void> token_can_hold(const hsm::TokenDetails& t, std::string_view mechanism, std::string_view what) {
  std::string lacks;
  if (mechanism == "aes-kwp" && !t.has_kwp) lacks = "CKM_AES_KEY_WRAP_PAD or CKM_AES_KEY_WRAP_KWP (wrap, unwrap)";
  if (mechanism == "aes-gcm" && !t.has_gcm) lacks = "CKM_AES_GCM (encrypt, decrypt)";
  if (mechanism == kCbcHmac && !t.has_cbc_hmac) {
    lacks = "CKM_AES_CBC_PAD (encrypt, decrypt) with CKM_SHA256_HMAC (sign, verify)";
  }
  if (mechanism.empty() && !t.has_kwp && !t.has_gcm) lacks = "CKM_AES_KEY_WRAP_PAD (or _KWP) and CKM_AES_GCM";
  if (lacks.empty()) return {};
  return fail(Errc::invalid_argument, std::string(what) + ": token '" + t.label + "' cannot hold a " +
                                          (mechanism.empty() ? std::string("KWP/GCM") : std::string(mechanism)) +
                                          " root: it lacks " + lacks +
                                          " (`rootseal hsm probe` lists what it offers; docs/hsm.md says which "
                                          "tokens can share a root)");
}

hsm::RootMechanism root_mechanism_of(std::string_view mechanism) {
  return hsm::parse_root_mechanism(mechanism).value_or(hsm::RootMechanism::automatic);
}

kms::Result<SecretChecks> secret_checks(const kms::SecureBytes& secret) {
  if (secret.size() != kRootKeySize && secret.size() != 2 * kRootKeySize) {
    return fail(Errc::internal, "a root secret is 32 or 64 bytes");
  }
  SecretChecks c;
  const kms::SecureBytes aes = kms::SecureBytes::copy_of(secret.span().first(kRootKeySize));
  ROOTSEAL_TRY_ASSIGN(c.kcv, software_kcv(aes));
  if (secret.size() == 2 * kRootKeySize) {
    const auto mac = hmac_sha256(secret.span().subspan(kRootKeySize), {bytes_of(hsm::kHmacCheckMessage)});
    c.hmac_check = kms::hex_encode(std::span<const std::uint8_t>(mac.data(), 3));
  }
  return c;
}

kms::Result<RootObjects> import_root(hsm::TokenAdmin& admin, std::string_view label, const kms::SecureBytes& secret,
                                     std::string_view mechanism, const SecretChecks& checks) {
  RootObjects r;
  r.mechanism = std::string(mechanism);
  const bool cbc = mechanism == kCbcHmac;
  if (secret.size() != (cbc ? 2 : 1) * kRootKeySize) {
    return fail(Errc::internal, "the root secret does not have the size of its mechanism");
  }
  if (cbc) {
    // The HMAC key first: the AES key never stands without it (rootseald
    // would take a lone AES key for a KWP/GCM root).
    const kms::SecureBytes mac = kms::SecureBytes::copy_of(secret.span().subspan(kRootKeySize));
    ROOTSEAL_TRY_ASSIGN(r.hmac, admin.import_hmac_key(hsm::hmac_label(label), mac, checks.hmac_check));
    crash_point("hmac-key-imported");
  }
  const kms::SecureBytes aes = kms::SecureBytes::copy_of(secret.span().first(kRootKeySize));
  auto k = admin.import_root_key(label, aes, checks.kcv, root_mechanism_of(mechanism));
  if (!k) {
    if (r.hmac) (void)admin.destroy_key(r.hmac->label, r.hmac->kcv);  // best effort; the error says what failed
    return std::unexpected(k.error());
  }
  r.key = std::move(*k);
  return r;
}

json::object generated_root_json(const RootObjects& r) {
  json::object o = root_json(r);
  o["origin"] = r.mechanism == kRsaOaep ? "generated inside the HSM (C_GenerateKeyPair); never outside it"
                                        : "generated inside the HSM (C_GenerateKey); never outside it";
  o["backup"] = false;
  return o;
}

std::string check_lines(const RootObjects& r) {
  if (r.mechanism == kRsaOaep) {
    return "  key check value (SHA-256 of the RSA public key's SubjectPublicKeyInfo, as the token reports it): " +
           r.key.kcv + "\n";
  }
  std::string s = "  key check value (computed by the HSM): " + r.key.kcv + "\n";
  if (r.hmac) s += "  HMAC key '" + r.hmac->label + "' check value (computed by the HSM): " + r.hmac->kcv + "\n";
  return s;
}

kms::Result<RootObjects> generate_root_in_token(hsm::TokenAdmin& admin, std::string_view label,
                                                std::string_view mechanism) {
  RootObjects r;
  r.mechanism = std::string(mechanism);
  if (mechanism == kRsaOaep) {
    ROOTSEAL_TRY_ASSIGN(r.key, admin.generate_rsa_root(label));
    return r;
  }
  if (mechanism == kCbcHmac) ROOTSEAL_TRY_ASSIGN(r.hmac, admin.generate_hmac_key(hsm::hmac_label(label)));
  auto k = admin.generate_root_key(label, root_mechanism_of(mechanism));
  if (!k) {
    if (r.hmac) (void)admin.destroy_key(r.hmac->label, r.hmac->kcv);
    return std::unexpected(k.error());
  }
  r.key = std::move(*k);
  return r;
}

namespace {

std::string root_key_field(const TranscriptEntry& e, std::string_view field, std::string_view sub = {}) {
  const json::value* rk = e.body.if_contains("root_key");
  if (rk == nullptr || !rk->is_object()) return {};
  const json::value* v = rk->as_object().if_contains(field);
  if (v != nullptr && !sub.empty()) v = v->is_object() ? v->as_object().if_contains(sub) : nullptr;
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

}  // namespace

std::string record_mechanism(const TranscriptEntry& e) { return root_key_field(e, "mechanism"); }
std::string record_hmac_check(const TranscriptEntry& e) { return root_key_field(e, "hmac_key", "check_value"); }

std::string head_line(const TranscriptEntry& e) {
  return "transcript: " + e.path.string() + "\nchain head (the witness records it): " + e.sha256 + "\n";
}

kms::Result<void> check_people(const People& p) {
  if (!p.officer.empty()) ROOTSEAL_TRY(validate_name("officer", p.officer));
  for (const auto& w : p.witnesses) ROOTSEAL_TRY(validate_name("witness", w));
  return {};
}

kms::Result<void> check_token(const TokenTarget& t) {
  if (t.module.empty()) return fail(Errc::invalid_argument, "--module is required");
  if (t.token_label.empty()) return fail(Errc::invalid_argument, "--token is required");
  if (t.key_label.empty() || t.key_label.size() > 64) {
    return fail(Errc::invalid_argument, "--key-label must be 1..64 characters");
  }
  if (!t.pin) return fail(Errc::invalid_argument, "no PIN source");
  return {};
}

kms::Result<std::vector<LoadedCustodian>> load_custodians(const std::vector<CustodianArg>& args, unsigned threshold) {
  if (args.size() < 2 || args.size() > shamir::kMaxShares) {
    return fail(Errc::invalid_argument, "2..255 custodians are needed (--custodian NAME=PUBLIC_KEY.pem)");
  }
  const unsigned n = static_cast<unsigned>(args.size());
  if (threshold < 2 || threshold > n) {
    return fail(Errc::invalid_argument,
                "--threshold must be between 2 and the number of custodians (" + std::to_string(n) + ")");
  }
  std::vector<LoadedCustodian> out;
  std::set<std::string> names;
  std::set<std::string> fps;
  for (const auto& a : args) {
    ROOTSEAL_TRY(validate_name("custodian name", a.name));
    if (!names.insert(a.name).second) return fail(Errc::invalid_argument, "custodian '" + a.name + "' is named twice");
    LoadedCustodian c;
    c.name = a.name;
    ROOTSEAL_TRY_ASSIGN(c.key, load_custodian_public_key(a.public_key));
    if (!fps.insert(c.key.fingerprint).second) {
      return fail(Errc::invalid_argument, "custodian '" + a.name +
                                              "' has the same key as another custodian: one "
                                              "person holding two shares defeats the threshold");
    }
    out.push_back(std::move(c));
  }
  return out;
}

kms::Result<std::vector<LoadedCustodian>> backup_custodians(bool no_backup, const std::vector<CustodianArg>& args,
                                                            unsigned threshold, const fs::path& out_dir) {
  if (no_backup) {
    if (!args.empty() || threshold != 0) {
      return fail(Errc::invalid_argument, "--no-backup takes no custodians and no threshold");
    }
    return std::vector<LoadedCustodian>{};
  }
  if (out_dir.empty()) return fail(Errc::invalid_argument, "--out (the folder for the share files) is required");
  return load_custodians(args, threshold);
}

kms::Result<std::unique_ptr<hsm::TokenAdmin>> open_token(const TokenTarget& t) {
  kms::SecureBytes pin;
  ROOTSEAL_TRY_ASSIGN(pin, t.pin());
  auto admin = hsm::TokenAdmin::open(t.module, t.token_label, pin);
  pin.clear();
  return admin;
}

kms::Result<void> require_root_labels_free(hsm::TokenAdmin& admin, const TokenTarget& t, std::string_view advice) {
  for (const std::string& label : {t.key_label, hsm::hmac_label(t.key_label)}) {
    std::vector<hsm::KeyObject> existing;
    ROOTSEAL_TRY_ASSIGN(existing, admin.find_keys(label));
    if (!existing.empty()) {
      return fail(Errc::already_exists,
                  "token '" + t.token_label + "' already holds a key labelled '" + label + "'; " + std::string(advice));
    }
  }
  return {};
}

// `size` bytes: the OS's random source XOR the HSM's, so that either alone is enough.
kms::Result<kms::SecureBytes> generate_root_key(hsm::TokenAdmin& admin, std::size_t size) {
  kms::SecureBytes key = kms::SecureBytes::random(size);  // RAND_priv_bytes (getrandom)
  kms::SecureBytes hsm_part;
  ROOTSEAL_TRY_ASSIGN(hsm_part, admin.generate_random(size));
  if (hsm_part.size() != size) return fail(Errc::crypto_failure, "C_GenerateRandom returned too few bytes");
  for (std::size_t i = 0; i < size; ++i) key.data()[i] ^= hsm_part.data()[i];
  return key;
}

kms::Result<std::string> software_kcv(const kms::SecureBytes& key) {
  std::vector<std::uint8_t> kcv;
  ROOTSEAL_TRY_ASSIGN(kcv, kms::aes_key_check_value(key));
  return kms::hex_encode(kcv);
}

namespace {

std::string file_safe(std::string_view name) {
  std::string s(name);
  for (char& c : s) {
    if (c == ' ' || c == '@') c = '_';
  }
  return s;
}

}  // namespace

std::string two_digits(unsigned n) {
  std::string s = std::to_string(n);
  return s.size() < 2 ? "0" + s : s;
}

kms::Result<Backup> write_backup(const kms::SecureBytes& root, std::string_view mechanism, std::string_view kcv,
                                 std::string_view ceremony_id, const std::vector<LoadedCustodian>& custodians,
                                 unsigned threshold, const fs::path& out_dir, Context& ctx, Console& con) {
  if (secret_size(mechanism) != root.size()) return fail(Errc::internal, "the secret does not fit its mechanism");
  const unsigned n = static_cast<unsigned>(custodians.size());
  std::vector<shamir::Share> shares;
  ROOTSEAL_TRY_ASSIGN(shares, shamir::split(root, threshold, n));
  // Self-check before anything leaves the process: two different quorums
  // give the key back.
  for (const bool from_end : {false, true}) {
    const std::span<const shamir::Share> all(shares);
    const auto quorum = from_end ? all.last(threshold) : all.first(threshold);
    kms::SecureBytes back;
    ROOTSEAL_TRY_ASSIGN(back, shamir::combine(quorum));
    if (!(back == root)) return fail(Errc::internal, "Shamir self-check failed; nothing was written");
  }
  ctx.step("split", "ok", std::to_string(threshold) + " of " + std::to_string(n) + ", self-check passed");
  crash_point("shares-split");

  const auto salt = random_public(32);
  ROOTSEAL_TRY(make_private_dir(out_dir));
  Backup b;
  b.shamir["threshold"] = threshold;
  b.shamir["shares"] = n;
  b.shamir["field"] = "GF(2^8), x^8+x^4+x^3+x+1";
  b.shamir["commitment"] =
      "HMAC-SHA256(commitment_salt, rootseal-share-commitment-v1 || ceremony id || index || "
      "threshold || share)";
  b.shamir["commitment_salt"] = kms::hex_encode(salt);
  b.shamir["split"] = mechanism == kCbcHmac ? "64 bytes: the AES-256 key || the HMAC-SHA256 key, split as one secret"
                                            : "32 bytes: the AES-256 key";
  b.shamir["share_format"] = "rootseal-share-v2";
  for (unsigned i = 0; i < n; ++i) {
    const LoadedCustodian& c = custodians[i];
    const unsigned index = i + 1;
    ShareFile f;
    f.mechanism = std::string(mechanism);
    f.ceremony_id = std::string(ceremony_id);
    f.index = index;
    f.threshold = threshold;
    f.count = n;
    f.root_kcv = std::string(kcv);
    f.custodian_name = c.name;
    f.custodian_key_type = std::string(to_string(c.key.type));
    f.custodian_fingerprint = c.key.fingerprint;
    f.commitment = share_commitment(salt, ceremony_id, index, threshold, shares[i].y);
    const auto binding = share_binding(ceremony_id, index, threshold, n, c.key.fingerprint, mechanism);
    ROOTSEAL_TRY_ASSIGN(f.sealed, seal_share(c.key, binding, shares[i].y));
    const std::string text = share_file_json(f);
    const fs::path path = out_dir / ("rootseal-share-" + std::string(ceremony_id.substr(0, 8)) + "-" +
                                     two_digits(index) + "-" + file_safe(c.name) + ".json");
    ROOTSEAL_TRY(write_file_durably(path, bytes_of(text), 0600, true));
    json::object rec;
    rec["index"] = index;
    rec["name"] = c.name;
    rec["key_type"] = to_string(c.key.type);
    rec["key_bits"] = c.key.bits;
    rec["fingerprint"] = c.key.fingerprint;
    rec["scheme"] = f.sealed.scheme;
    rec["share_commitment"] = f.commitment;
    rec["share_file"] = path.filename().string();
    rec["share_file_sha256"] = sha256_hex(text);
    b.custodians.push_back(std::move(rec));
    b.files.push_back(path);
    con.out("  share " + two_digits(index) + " -> " + c.name + " (" + std::string(to_string(c.key.type)) + " " +
            c.key.fingerprint.substr(0, 16) + "...): " + path.string() + "\n");
  }
  ctx.step("shares-written", "ok", std::to_string(n) + " share files in " + out_dir.string());
  crash_point("shares-written");
  return b;
}

void record_backed_up_key(json::object& rec, const RootObjects& k, Backup& backup) {
  json::object rk = root_json(k);
  rk["origin"] = "OS random (getrandom) XOR HSM random (C_GenerateRandom), split, then imported";
  rk["backup"] = true;
  rec["root_key"] = std::move(rk);
  rec["shamir"] = std::move(backup.shamir);
  rec["custodians"] = std::move(backup.custodians);
}

// The record (init or rotate-root) that created the root key of `ceremony_id`.
const TranscriptEntry* find_key_record(const std::vector<TranscriptEntry>& entries, std::string_view ceremony_id) {
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    const std::string kind = it->str("kind");
    if ((kind == "init" || kind == "rotate-root" || kind == "reshare") && it->str("ceremony_id") == ceremony_id &&
        it->str("outcome") == "ok") {
      return &*it;
    }
  }
  return nullptr;
}

std::string record_kcv(const TranscriptEntry& e) {
  const json::value* rk = e.body.if_contains("root_key");
  if (rk == nullptr || !rk->is_object()) return {};
  const json::value* k = rk->as_object().if_contains("kcv");
  return k != nullptr && k->is_string() ? std::string(k->as_string()) : std::string();
}

// The ceremony whose root key the chain considers current (latest init,
// completed rotation or restore).
std::string current_ceremony(const std::vector<TranscriptEntry>& entries) {
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    const std::string kind = it->str("kind");
    if ((kind == "init" || kind == "rotate-root-complete" || kind == "restore" || kind == "reshare") &&
        it->str("outcome") == "ok") {
      const json::value* d = it->body.if_contains("dry_run");
      if (d != nullptr && d->is_bool() && d->as_bool()) continue;
      return it->str("ceremony_id");
    }
  }
  return {};
}

// ----- verify & store --------------------------------------------------------

// Opens the store and unwraps its keyring keys with the token's key `label`
// and every version under them (or under the root, from before the keyring
// key): read only, nothing migrated or written.
kms::Result<std::pair<std::size_t, std::size_t>> open_store_with(const TokenTarget& t, std::string_view label,
                                                                 const fs::path& store_path) {
  std::unique_ptr<kms::StateStore> store;
  ROOTSEAL_TRY_ASSIGN(store, kms::open_sqlite_store(store_path));
  hsm::Pkcs11Config cfg;
  cfg.module = t.module;
  cfg.token_label = t.token_label;
  cfg.key_label = std::string(label);
  // The TokenAdmin of this process holds the login; no PIN is kept around.
  auto root =
      hsm::Pkcs11Root::create(cfg, [] { return kms::Result<kms::SecureBytes>(fail(Errc::sealed, "not logged in")); });
  ROOTSEAL_TRY(root->probe());
  std::vector<kms::KeyRecord> records;
  ROOTSEAL_TRY_ASSIGN(records, store->load_all());
  std::vector<kms::KeyringKeyRecord> keyring_keys;
  ROOTSEAL_TRY_ASSIGN(keyring_keys, store->keyring_keys());
  std::size_t versions = 0;
  ROOTSEAL_TRY_ASSIGN(versions, unwrap_all(records, keyring_keys, *root, store_path.string()));
  return std::make_pair(records.size(), versions);
}

}  // namespace rootseal::cli
