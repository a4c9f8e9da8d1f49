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
#include "rootseal/kms/keyring.hpp"
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
  o["attributes"] = "AES-256, CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE=false, " +
                    std::string(k.wrap && k.unwrap ? "CKA_WRAP+CKA_UNWRAP" : "CKA_ENCRYPT+CKA_DECRYPT");
  return o;
}

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

// 32 bytes: the OS's random source XOR the HSM's, so that either alone is enough.
kms::Result<kms::SecureBytes> generate_root_key(hsm::TokenAdmin& admin) {
  kms::SecureBytes key = kms::SecureBytes::random(kRootKeySize);  // RAND_priv_bytes (getrandom)
  kms::SecureBytes hsm_part;
  ROOTSEAL_TRY_ASSIGN(hsm_part, admin.generate_random(kRootKeySize));
  for (std::size_t i = 0; i < kRootKeySize; ++i) key.data()[i] ^= hsm_part.data()[i];
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

kms::Result<Backup> write_backup(const kms::SecureBytes& root, std::string_view kcv, std::string_view ceremony_id,
                                 const std::vector<LoadedCustodian>& custodians, unsigned threshold,
                                 const fs::path& out_dir, Context& ctx, Console& con) {
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
  for (unsigned i = 0; i < n; ++i) {
    const LoadedCustodian& c = custodians[i];
    const unsigned index = i + 1;
    ShareFile f;
    f.ceremony_id = std::string(ceremony_id);
    f.index = index;
    f.threshold = threshold;
    f.count = n;
    f.root_kcv = std::string(kcv);
    f.custodian_name = c.name;
    f.custodian_key_type = std::string(to_string(c.key.type));
    f.custodian_fingerprint = c.key.fingerprint;
    f.commitment = share_commitment(salt, ceremony_id, index, threshold, shares[i].y);
    const auto binding = share_binding(ceremony_id, index, threshold, n, c.key.fingerprint);
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

void record_backed_up_key(json::object& rec, const hsm::KeyObject& k, Backup& backup) {
  json::object rk = key_json(k);
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

// Opens the store and unseals a keyring with the token's key `label`.
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
  kms::Keyring ring(*store, *root);
  ROOTSEAL_TRY(ring.unseal());
  return std::make_pair(ring.key_count(), ring.version_count());
}

}  // namespace rootseal::cli
