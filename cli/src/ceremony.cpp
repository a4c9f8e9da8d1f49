// rootseal::cli — the ceremony steps; see ceremony.hpp and docs/ceremony.md.
//
// Secrets: the root key, the HSM's and the OS's random halves, the shares
// and the PIN live only in kms::SecureBytes (locked, zeroized on scope exit).
// Nothing secret is ever formatted into a std::string, a message or a file.
#include "ceremony.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "custodian.hpp"
#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/hsm/token_admin.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/key_wrap.hpp"
#include "rootseal/kms/keyring.hpp"
#include "rootseal/kms/state_store.hpp"
#include "shamir.hpp"
#include "share_format.hpp"
#include "transcript.hpp"
#include "util.hpp"

#ifndef ROOTSEAL_VERSION
#define ROOTSEAL_VERSION "0.0.0"
#endif

namespace rootseal::cli {

using kms::Errc;
using kms::fail;
namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kNoBackupWarning =
    "NO BACKUP: this root key was generated inside the HSM and never existed anywhere else. It can never be "
    "restored: if this HSM is lost, reset or fails, every key wrapped under it - and all data encrypted with "
    "them - is lost for good.";

// ----- records ---------------------------------------------------------------

// What every transcript entry of one command shares, and its steps so far.
struct Context {
  Transcript transcript;
  std::string kind;
  People people;
  std::string started = utc_now();
  std::string ceremony_id;
  json::array steps;
  bool chain_ok = false;  // the chain loaded: a failure may be recorded in it
  std::vector<TranscriptEntry> entries;

  Context(fs::path dir, std::string k, People p)
      : transcript(std::move(dir)), kind(std::move(k)), people(std::move(p)) {}

  void step(std::string_view name, std::string_view outcome, std::string_view detail = {}) {
    json::object s;
    s["step"] = name;
    s["outcome"] = outcome;
    s["at"] = utc_now();
    if (!detail.empty()) s["detail"] = detail;
    steps.push_back(std::move(s));
  }

  kms::Result<void> load_chain() {
    if (transcript.dir().empty()) return fail(Errc::invalid_argument, "a transcript folder is required");
    ROOTSEAL_TRY_ASSIGN(entries, transcript.load());
    chain_ok = true;
    return {};
  }

  json::object record(std::string_view kind_name) const {
    json::object o;
    o["kind"] = kind_name;
    o["ceremony_id"] = ceremony_id;
    o["tool"] = "rootseal " ROOTSEAL_VERSION;
    o["host"] = host_name();
    o["started_at"] = started;
    o["finished_at"] = utc_now();
    o["officer"] = people.officer;
    json::array w;
    for (const auto& p : people.witnesses) w.emplace_back(p);
    o["witnesses"] = std::move(w);
    return o;
  }

  kms::Result<TranscriptEntry> append(json::object o) {
    o["steps"] = steps;
    return transcript.append(std::move(o));
  }

  // Best effort: a failed ceremony step is recorded too (never a secret: error
  // messages carry none).
  void record_failure(const kms::Error& e, Console& con) {
    if (!chain_ok) return;
    json::object o = record(kind + "-failed");
    o["outcome"] = "failed";
    o["error"] = e.message;
    auto r = append(std::move(o));
    if (r) {
      con.err("rootseal: the failure is recorded in " + r->path.string() + "\n");
    } else {
      con.err("rootseal: could not record the failure in the transcript: " + r.error().message + "\n");
    }
  }
};

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

// ----- inputs ---------------------------------------------------------------

kms::Result<void> check_people(const People& p) {
  if (!p.officer.empty()) ROOTSEAL_TRY(validate_name("officer", p.officer));
  for (const auto& w : p.witnesses) ROOTSEAL_TRY(validate_name("witness", w));
  return {};
}

kms::Result<void> check_token(const TokenTarget& t) {
  if (t.module.empty()) return fail(Errc::invalid_argument, "--module is required");
  if (t.token_label.empty()) return fail(Errc::invalid_argument, "--token is required");
  if (t.key_label.empty() || t.key_label.size() > 64) return fail(Errc::invalid_argument, "--key-label must be 1..64 characters");
  if (!t.pin) return fail(Errc::invalid_argument, "no PIN source");
  return {};
}

struct LoadedCustodian {
  std::string name;
  CustodianKey key;
};

kms::Result<std::vector<LoadedCustodian>> load_custodians(const std::vector<CustodianArg>& args, unsigned threshold) {
  if (args.size() < 2 || args.size() > shamir::kMaxShares) {
    return fail(Errc::invalid_argument, "2..255 custodians are needed (--custodian NAME=PUBLIC_KEY.pem)");
  }
  const unsigned n = static_cast<unsigned>(args.size());
  if (threshold < 2 || threshold > n) {
    return fail(Errc::invalid_argument, "--threshold must be between 2 and the number of custodians (" +
                                            std::to_string(n) + ")");
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
      return fail(Errc::invalid_argument, "custodian '" + a.name + "' has the same key as another custodian: one "
                                          "person holding two shares defeats the threshold");
    }
    out.push_back(std::move(c));
  }
  return out;
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

std::string file_safe(std::string_view name) {
  std::string s(name);
  for (char& c : s) {
    if (c == ' ' || c == '@') c = '_';
  }
  return s;
}

std::string two_digits(unsigned n) {
  std::string s = std::to_string(n);
  return s.size() < 2 ? "0" + s : s;
}

// Splits `root`, encrypts and writes one share file per custodian. Returns
// the transcript's "shamir" and "custodians" records.
struct Backup {
  json::object shamir;
  json::array custodians;
  std::vector<fs::path> files;
};

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
  b.shamir["commitment"] = "HMAC-SHA256(commitment_salt, rootseal-share-commitment-v1 || ceremony id || index || "
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

// ----- init -----------------------------------------------------------------

kms::Result<Outcome> init_impl(const InitOptions& o, Console& con, Context& ctx) {
  ROOTSEAL_TRY(check_token(o.token));
  ROOTSEAL_TRY(check_people(o.people));
  std::vector<LoadedCustodian> custodians;
  if (o.no_backup) {
    if (!o.custodians.empty() || o.threshold != 0) {
      return fail(Errc::invalid_argument, "--no-backup takes no custodians and no threshold");
    }
  } else {
    if (o.out_dir.empty()) return fail(Errc::invalid_argument, "--out (the folder for the share files) is required");
    ROOTSEAL_TRY_ASSIGN(custodians, load_custodians(o.custodians, o.threshold));
  }
  ROOTSEAL_TRY(ctx.load_chain());
  ctx.ceremony_id = new_ceremony_id();

  std::unique_ptr<hsm::TokenAdmin> admin;
  ROOTSEAL_TRY_ASSIGN(admin, open_token(o.token));
  std::vector<hsm::KeyObject> existing;
  ROOTSEAL_TRY_ASSIGN(existing, admin->find_keys(o.token.key_label));
  if (!existing.empty()) {
    return fail(Errc::already_exists, "token '" + o.token.token_label + "' already holds a key labelled '" +
                                          o.token.key_label + "'; refusing to create another");
  }
  ctx.step("token-opened", "ok", "serial " + admin->details().serial);
  con.out("rootseal: ceremony " + ctx.ceremony_id + " on token '" + o.token.token_label + "' (serial " +
          admin->details().serial + ")\n");

  Outcome out;
  out.ceremony_id = ctx.ceremony_id;
  out.key_label = o.token.key_label;
  json::object rec = ctx.record("init");
  rec["token"] = token_json(admin->details(), o.token.module);

  if (o.no_backup) {
    hsm::KeyObject k;
    ROOTSEAL_TRY_ASSIGN(k, admin->generate_root_key(o.token.key_label));
    ctx.step("key-generated-in-hsm", "ok", "kcv " + k.kcv);
    out.kcv = k.kcv;
    json::object rk = key_json(k);
    rk["origin"] = "generated inside the HSM (C_GenerateKey); never outside it";
    rk["backup"] = false;
    rec["root_key"] = std::move(rk);
    rec["warning"] = kNoBackupWarning;
    rec["outcome"] = "ok";
    TranscriptEntry e;
    ROOTSEAL_TRY_ASSIGN(e, ctx.append(std::move(rec)));
    out.transcript = e.path;
    con.err("\n*** WARNING ***\n" + std::string(kNoBackupWarning) + "\n\n");
    con.out("  key check value (computed by the HSM): " + k.kcv + "\n" + head_line(e));
    return out;
  }

  const unsigned n = static_cast<unsigned>(custodians.size());
  kms::SecureBytes root;
  ROOTSEAL_TRY_ASSIGN(root, generate_root_key(*admin));
  crash_point("root-key-held");
  std::string kcv;
  ROOTSEAL_TRY_ASSIGN(kcv, software_kcv(root));
  ctx.step("key-generated", "ok", "OS random XOR HSM random; kcv " + kcv);

  Backup backup;
  ROOTSEAL_TRY_ASSIGN(backup, write_backup(root, kcv, ctx.ceremony_id, custodians, o.threshold, o.out_dir, ctx, con));
  hsm::KeyObject k;
  ROOTSEAL_TRY_ASSIGN(k, admin->import_root_key(o.token.key_label, root, kcv));
  root.clear();
  ctx.step("key-imported", "ok", "label '" + k.label + "', kcv computed by the HSM " + k.kcv + " matches");
  crash_point("key-imported");

  json::object rk = key_json(k);
  rk["origin"] = "OS random (getrandom) XOR HSM random (C_GenerateRandom), split, then imported";
  rk["backup"] = true;
  rec["root_key"] = std::move(rk);
  rec["shamir"] = std::move(backup.shamir);
  rec["custodians"] = std::move(backup.custodians);
  rec["outcome"] = "ok";
  TranscriptEntry e;
  ROOTSEAL_TRY_ASSIGN(e, ctx.append(std::move(rec)));
  out.kcv = k.kcv;
  out.transcript = e.path;
  out.share_files = std::move(backup.files);
  con.out("  " + std::to_string(o.threshold) + " of " + std::to_string(n) + " shares restore the key\n" +
          "  key check value (computed by the HSM): " + k.kcv + "\n" + head_line(e));
  return out;
}

// ----- restore ----------------------------------------------------------------

struct GatheredShare {
  std::string ceremony_id;
  unsigned index = 0;
  unsigned threshold = 0;
  kms::SecureBytes y;
  std::string source;  // "file <name>" / "typed"
};

kms::Result<GatheredShare> share_from_file(const ShareSource& s) {
  std::string text;
  ROOTSEAL_TRY_ASSIGN(text, read_small_file(s.share_file, 64 * 1024));
  const std::string where = s.share_file.filename().string();
  ShareFile f;
  ROOTSEAL_TRY_ASSIGN(f, parse_share_file(text, where));
  CustodianKey key;
  ROOTSEAL_TRY_ASSIGN(key, load_custodian_private_key(s.private_key));
  if (key.fingerprint != f.custodian_fingerprint) {
    return fail(Errc::permission_denied,
                where + ": wrong custodian key: the share is encrypted to key " + f.custodian_fingerprint.substr(0, 16) +
                    "... (" + f.custodian_name + "), " + s.private_key.filename().string() + " is key " +
                    key.fingerprint.substr(0, 16) + "...");
  }
  const auto binding = share_binding(f.ceremony_id, f.index, f.threshold, f.count, f.custodian_fingerprint);
  GatheredShare g;
  auto y = open_share(key, f.sealed, binding);
  if (!y) return fail(y.error().code, where + ": " + y.error().message);
  g.y = std::move(*y);
  if (g.y.size() != kRootKeySize) return fail(Errc::decryption_failed, where + ": the share has the wrong length");
  g.ceremony_id = f.ceremony_id;
  g.index = f.index;
  g.threshold = f.threshold;
  g.source = "file " + where;
  return g;
}

kms::Result<void> read_typed_shares(LineSource& src, std::vector<GatheredShare>& out, Console& con) {
  TypedShareReader reader;
  std::size_t typed = 0;
  unsigned want = 0;  // threshold, once a share says it
  for (;;) {
    const std::string prompt = "share " + std::to_string(typed + 1) + ", line " + two_digits(static_cast<unsigned>(reader.next_line())) +
                               (reader.in_progress() || typed == 0 ? ": " : " (or an empty line to finish): ");
    std::optional<kms::SecureBytes> line;
    ROOTSEAL_TRY_ASSIGN(line, src.next_line(prompt));
    if (!line) {
      if (reader.in_progress()) {
        return fail(Errc::invalid_argument, "typed share " + std::to_string(typed + 1) + ": the input ended at line " +
                                                two_digits(static_cast<unsigned>(reader.next_line())));
      }
      break;
    }
    auto st = reader.feed(line->span());
    if (!st) {
      const std::string msg = "typed share " + std::to_string(typed + 1) + ", " + st.error().message;
      if (!src.interactive()) return fail(Errc::invalid_argument, msg);
      con.err(msg + "\n");
      continue;
    }
    if (*st == TypedShareReader::Status::skipped) {
      if (src.interactive() && line->empty() && !reader.in_progress() && typed > 0) break;
      continue;
    }
    if (*st == TypedShareReader::Status::complete) {
      TypedShare t = reader.take();
      ++typed;
      GatheredShare g;
      g.ceremony_id = std::move(t.ceremony_id);
      g.index = t.index;
      g.threshold = t.threshold;
      g.y = std::move(t.y);
      g.source = "typed";
      want = g.threshold;
      out.push_back(std::move(g));
      if (src.interactive()) con.err("share accepted (index " + std::to_string(out.back().index) + ")\n");
      if (src.interactive() && want > 0 && out.size() >= want) break;
    }
  }
  return {};
}

// The shares of one ceremony, checked against its transcript record and
// combined; the key's check value equals the recorded one.
struct Combined {
  kms::SecureBytes root;
  std::string kcv;
  json::array used;
  std::string from;  // the record's file name
};

kms::Result<Combined> gather_and_combine(const std::vector<ShareSource>& files, LineSource* typed_input,
                                         Context& ctx, Console& con) {
  // 1. Gather and decrypt every share.
  std::vector<GatheredShare> shares;
  for (const auto& s : files) {
    GatheredShare g;
    ROOTSEAL_TRY_ASSIGN(g, share_from_file(s));
    shares.push_back(std::move(g));
  }
  if (typed_input != nullptr) ROOTSEAL_TRY(read_typed_shares(*typed_input, shares, con));
  if (shares.empty()) return fail(Errc::invalid_argument, "no shares given (--share FILE --key KEY.pem, or --typed)");
  crash_point("shares-held");

  // 2. One ceremony, known to the transcript.
  if (ctx.ceremony_id.empty()) ctx.ceremony_id = shares.front().ceremony_id;
  for (const auto& s : shares) {
    if (s.ceremony_id != ctx.ceremony_id) {
      return fail(Errc::invalid_argument, "share " + std::to_string(s.index) + " (" + s.source +
                                              ") belongs to ceremony " + s.ceremony_id + ", not " + ctx.ceremony_id +
                                              ": shares of different ceremonies cannot be combined");
    }
  }
  const TranscriptEntry* rec = find_key_record(ctx.entries, ctx.ceremony_id);
  if (rec == nullptr) {
    return fail(Errc::not_found, "the transcript in " + ctx.transcript.dir().string() +
                                     " has no completed ceremony " + ctx.ceremony_id + " with a backup");
  }
  const std::string kcv = record_kcv(*rec);
  unsigned threshold = 0;
  std::optional<std::vector<std::uint8_t>> salt;
  std::map<unsigned, std::string> commitments;
  try {
    const json::object& sh = rec->body.at("shamir").as_object();
    threshold = static_cast<unsigned>(sh.at("threshold").to_number<std::int64_t>());
    if (auto sb = kms::hex_decode(std::string_view(sh.at("commitment_salt").as_string()))) salt = std::move(*sb);
    for (const auto& c : rec->body.at("custodians").as_array()) {
      const auto& co = c.as_object();
      commitments[static_cast<unsigned>(co.at("index").to_number<std::int64_t>())] =
          std::string(co.at("share_commitment").as_string());
    }
  } catch (const std::exception&) {
    salt.reset();
  }
  if (!salt || threshold < 2 || commitments.empty() || kcv.size() != 6) {
    return fail(Errc::invalid_argument, rec->path.filename().string() + ": no usable share record (was ceremony " +
                                            ctx.ceremony_id + " made with --no-backup?)");
  }
  ctx.step("ceremony-found", "ok", rec->path.filename().string() + ": threshold " + std::to_string(threshold) +
                                       ", kcv " + kcv);

  // 3. Each share must be the one the ceremony committed to, once.
  std::set<unsigned> seen;
  Combined out;
  for (const auto& s : shares) {
    if (!seen.insert(s.index).second) {
      return fail(Errc::invalid_argument, "share " + std::to_string(s.index) + " is given twice (" + s.source +
                                              "): duplicate shares do not count towards the threshold");
    }
    const auto c = commitments.find(s.index);
    if (c == commitments.end() || s.threshold != threshold) {
      return fail(Errc::invalid_argument, "share " + std::to_string(s.index) + " (" + s.source +
                                              ") is not a share of ceremony " + ctx.ceremony_id);
    }
    const std::string mine = share_commitment(*salt, ctx.ceremony_id, s.index, threshold, s.y);
    if (!kms::constant_time_equal(mine, c->second)) {
      return fail(Errc::decryption_failed,
                  "share " + std::to_string(s.index) + " (" + s.source + ") does not match the commitment the "
                  "transcript records for it: it was altered, mistyped or belongs to another ceremony; refusing "
                  "to combine");
    }
    json::object u;
    u["index"] = s.index;
    u["source"] = s.source;
    u["share_commitment"] = c->second;
    out.used.push_back(std::move(u));
  }
  if (shares.size() < threshold) {
    return fail(Errc::invalid_argument, "ceremony " + ctx.ceremony_id + " needs " + std::to_string(threshold) +
                                            " shares; only " + std::to_string(shares.size()) + " given");
  }
  ctx.step("shares-checked", "ok", std::to_string(shares.size()) + " shares match their commitments");

  // 4. Combine and compare the check value.
  std::vector<shamir::Share> points;
  for (auto& s : shares) {
    shamir::Share p;
    p.x = static_cast<std::uint8_t>(s.index);
    p.y = std::move(s.y);
    points.push_back(std::move(p));
  }
  shares.clear();
  ROOTSEAL_TRY_ASSIGN(out.root, shamir::combine(points));
  points.clear();
  crash_point("root-key-held");
  std::string mine;
  ROOTSEAL_TRY_ASSIGN(mine, software_kcv(out.root));
  if (mine != kcv) {
    out.root.clear();
    return fail(Errc::decryption_failed, "the combined key has check value " + mine + ", the transcript records " +
                                             kcv + "; nothing was imported");
  }
  ctx.step("combined", "ok", "kcv " + mine + " matches the transcript");
  out.kcv = kcv;
  out.from = rec->path.filename().string();
  return out;
}

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
    con.out("rootseal: dry run: the shares combine to the root key of ceremony " + ctx.ceremony_id + " (kcv " +
            c.kcv + "); nothing was imported\n" + head_line(e));
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
          "' (serial " + admin->details().serial + ") as '" + k.label + "'\n  key check value (computed by the HSM): " +
          k.kcv + "\n" + head_line(e));
  return out;
}

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
  ROOTSEAL_TRY_ASSIGN(backup, write_backup(c.root, c.kcv, ctx.ceremony_id, custodians, o.threshold, o.out_dir, ctx, con));
  c.root.clear();
  json::object r = ctx.record("reshare");
  r["previous_ceremony"] = previous;
  r["shares_used"] = std::move(c.used);
  r["root_key"] = json::object{{"kcv", c.kcv}, {"origin", "the root key of ceremony " + previous + ", re-split"},
                               {"backup", true}};
  r["shamir"] = std::move(backup.shamir);
  r["custodians"] = std::move(backup.custodians);
  r["warning"] = "the shares of ceremony " + previous + " still reconstruct this same key";
  r["outcome"] = "ok";
  TranscriptEntry e;
  ROOTSEAL_TRY_ASSIGN(e, ctx.append(std::move(r)));
  con.err("note: the old shares (ceremony " + previous + ") still reconstruct this key; have them destroyed, or "
          "rotate the root if they may be exposed\n");
  con.out("  " + std::to_string(o.threshold) + " of " + std::to_string(custodians.size()) +
          " new shares restore the key (kcv " + c.kcv + ")\n" + head_line(e));
  Outcome out;
  out.ceremony_id = ctx.ceremony_id;
  out.kcv = c.kcv;
  out.transcript = e.path;
  out.share_files = std::move(backup.files);
  return out;
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
  auto root = hsm::Pkcs11Root::create(cfg, [] {
    return kms::Result<kms::SecureBytes>(fail(Errc::sealed, "not logged in"));
  });
  kms::Keyring ring(*store, *root);
  ROOTSEAL_TRY(ring.unseal());
  return std::make_pair(ring.key_count(), ring.version_count());
}

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
  std::vector<hsm::KeyObject> keys;
  ROOTSEAL_TRY_ASSIGN(keys, admin->find_keys(o.token.key_label));
  if (keys.size() != 1) {
    return fail(Errc::not_found, "token '" + o.token.token_label + "' holds " + std::to_string(keys.size()) +
                                     " keys labelled '" + o.token.key_label + "' (exactly one expected)");
  }
  const hsm::KeyObject& k = keys.front();
  if (!k.is_valid_root_key()) {
    return fail(Errc::conflict, "key '" + k.label + "' lacks the attributes of a root key (AES-256, token, private, "
                                "sensitive, not extractable, wrap/unwrap)");
  }
  if (k.kcv != want) {
    return fail(Errc::conflict, "key '" + k.label + "' has check value " + k.kcv + " (computed by the HSM); ceremony " +
                                    ctx.ceremony_id + " recorded " + want + ": the token does NOT hold that root key");
  }
  ctx.step("kcv-compared", "ok", "token kcv " + k.kcv + " = transcript kcv");
  json::object r = ctx.record("verify");
  r["token"] = token_json(admin->details(), o.token.module);
  r["root_key"] = key_json(k);
  r["verified_against"] = rec->path.filename().string();
  std::string store_line;
  if (!o.store.empty()) {
    auto opened = open_store_with(o.token, o.token.key_label, o.store);
    if (!opened) return fail(opened.error().code, "state store " + o.store.string() + ": " + opened.error().message);
    ctx.step("store-opened", "ok", std::to_string(opened->first) + " keys, " + std::to_string(opened->second) +
                                       " versions unwrapped");
    r["store"] = json::object{{"path", o.store.string()}, {"keys", opened->first}, {"versions", opened->second}};
    store_line = "  state store " + o.store.string() + " opens: " + std::to_string(opened->first) + " keys, " +
                 std::to_string(opened->second) + " versions unwrapped\n";
  }
  r["outcome"] = "ok";
  TranscriptEntry e;
  ROOTSEAL_TRY_ASSIGN(e, ctx.append(std::move(r)));
  con.out("rootseal: token '" + o.token.token_label + "' holds the root key of ceremony " + ctx.ceremony_id +
          " as '" + k.label + "'\n  key check value (computed by the HSM): " + k.kcv + " = transcript\n" + store_line +
          head_line(e));
  Outcome out;
  out.ceremony_id = ctx.ceremony_id;
  out.kcv = k.kcv;
  out.transcript = e.path;
  out.key_label = k.label;
  return out;
}

// ----- rotate-root ------------------------------------------------------------

struct Pending {
  std::string ceremony_id;
  std::string old_kcv;
  std::string new_kcv;
  std::string store;
  const TranscriptEntry* entry = nullptr;
};

// The last rotate-root with no completion (or abandonment) after it.
std::optional<Pending> find_pending(const std::vector<TranscriptEntry>& entries) {
  std::set<std::string> closed;
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    const std::string kind = it->str("kind");
    if (kind == "rotate-root-complete" || kind == "rotate-root-abandoned") closed.insert(it->str("ceremony_id"));
    if (kind == "rotate-root" && it->str("outcome") == "ok" && closed.count(it->str("ceremony_id")) == 0) {
      Pending p;
      p.ceremony_id = it->str("ceremony_id");
      p.new_kcv = record_kcv(*it);
      const json::value* prev = it->body.if_contains("previous_root");
      if (prev != nullptr && prev->is_object()) {
        const json::value* k = prev->as_object().if_contains("kcv");
        if (k != nullptr && k->is_string()) p.old_kcv = std::string(k->as_string());
      }
      p.store = it->str("store");
      p.entry = &*it;
      return p;
    }
  }
  return std::nullopt;
}

std::optional<hsm::KeyObject> key_with(const std::vector<hsm::KeyObject>& keys, std::string_view kcv) {
  for (const auto& k : keys) {
    if (k.kcv == kcv) return k;
  }
  return std::nullopt;
}

// Rewraps every version still under `old_kcv` (found under label `old_at`)
// to the key `new_at`, in one transaction per round. Returns how many.
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
    std::vector<kms::StateStore::Rewrapped> entries;
    std::size_t todo = 0;
    for (const auto& k : records) {
      for (const auto& v : k.versions) {
        if (v.root_kcv == old_kcv) {
          ++todo;
        } else if (v.root_kcv != new_kcv) {
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
    ROOTSEAL_TRY(store->replace_wrapped(entries));
    crash_point("rewrap-committed");
    total += entries.size();
    ctx.step("rewrapped", "ok", std::to_string(entries.size()) + " wrapped keys moved to the new root in one transaction");
  }
  return total;
}

// Drives a prepared rotation to its end from whatever state a crash left:
// rewrap (if the store is still under the old root), retire the old key,
// move the new key to the final label. Every step is idempotent.
kms::Result<std::size_t> finish_rotation(const RotateOptions& o, hsm::TokenAdmin& admin, const Pending& p,
                                         Context& ctx, Console& con, std::string& retired_as) {
  const std::string& L = o.token.key_label;
  const std::string T = next_label(L);
  const std::string R = retired_label(L, p.old_kcv);
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
  const bool new_at_l = key_with(at_l, p.new_kcv).has_value();
  const bool new_at_t = key_with(at_t, p.new_kcv).has_value();
  if (!new_at_l && !new_at_t) {
    return fail(Errc::not_found, "the new root key (kcv " + p.new_kcv + ") of rotation " + p.ceremony_id +
                                     " is in neither '" + T + "' nor '" + L + "'");
  }
  // 1. Rewrap.
  std::size_t rewrapped = 0;
  {
    std::string old_at;
    if (key_with(at_l, p.old_kcv)) {
      old_at = L;
    } else {
      std::vector<hsm::KeyObject> at_r;
      ROOTSEAL_TRY_ASSIGN(at_r, admin.find_keys(R));
      if (key_with(at_r, p.old_kcv)) old_at = R;
    }
    const std::string new_at = new_at_t ? T : L;
    auto n = rewrap_store(o.token, o.store, old_at.empty() ? L : old_at, p.old_kcv, new_at, p.new_kcv, ctx);
    if (!n) {
      if (old_at.empty()) {
        return fail(n.error().code, n.error().message + " (and the old root key, kcv " + p.old_kcv +
                                        ", is no longer in the token)");
      }
      return std::unexpected(n.error());
    }
    rewrapped = *n;
  }
  // 2. Retire the old key: only now that nothing in the store needs it.
  if (key_with(at_l, p.old_kcv)) {
    if (o.retire == Retire::relabel) {
      std::vector<hsm::KeyObject> at_r;
      ROOTSEAL_TRY_ASSIGN(at_r, admin.find_keys(R));
      if (!key_with(at_r, p.old_kcv)) {
        if (!key_with(at_l, p.old_kcv)->modifiable) {
          return fail(Errc::invalid_argument, "the old root key '" + L + "' is not modifiable (CKA_MODIFIABLE=false) "
                                              "and cannot be relabelled; finish with --resume --retire destroy");
        }
        ROOTSEAL_TRY(admin.copy_key(L, p.old_kcv, R));
        crash_point("old-key-copied");
      }
      retired_as = "relabelled '" + R + "'";
    } else {
      retired_as = "destroyed";
    }
    ROOTSEAL_TRY(admin.destroy_key(L, p.old_kcv));
    crash_point("old-key-retired");
    ctx.step("old-root-retired", "ok", "kcv " + p.old_kcv + " " + retired_as);
  } else {
    retired_as = o.retire == Retire::relabel ? "relabelled '" + R + "'" : "destroyed";
  }
  if (o.retire == Retire::destroy) {
    std::vector<hsm::KeyObject> at_r;
    ROOTSEAL_TRY_ASSIGN(at_r, admin.find_keys(R));
    if (key_with(at_r, p.old_kcv)) ROOTSEAL_TRY(admin.destroy_key(R, p.old_kcv));
  }
  // 3. The new key under the final label (a copy, then the temporary goes).
  if (new_at_t) {
    std::vector<hsm::KeyObject> now_l;
    ROOTSEAL_TRY_ASSIGN(now_l, admin.find_keys(L));
    if (!key_with(now_l, p.new_kcv)) {
      ROOTSEAL_TRY(admin.copy_key(T, p.new_kcv, L));
      crash_point("new-key-copied");
    }
    ROOTSEAL_TRY(admin.destroy_key(T, p.new_kcv));
    crash_point("new-key-promoted");
    ctx.step("new-root-promoted", "ok", "kcv " + p.new_kcv + " is now '" + L + "'");
  }
  // 4. Proof: the store opens with the key under the final label.
  auto opened = open_store_with(o.token, L, o.store);
  if (!opened) return fail(opened.error().code, "after the rotation the store does not open: " + opened.error().message);
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
  r["rewrapped_in_this_run"] = rewrapped;
  r["outcome"] = "ok";
  return ctx.append(std::move(r));
}

kms::Result<Outcome> rotate_impl(const RotateOptions& o, Console& con, Context& ctx) {
  ROOTSEAL_TRY(check_token(o.token));
  ROOTSEAL_TRY(check_people(o.people));
  if (o.store.empty()) return fail(Errc::invalid_argument, "--store (the state store to rewrap) is required");
  ROOTSEAL_TRY(ctx.load_chain());
  const std::string& L = o.token.key_label;
  const std::string T = next_label(L);

  std::optional<Pending> pending = find_pending(ctx.entries);
  std::vector<LoadedCustodian> custodians;
  if (!o.resume) {
    if (pending) {
      return fail(Errc::conflict, "root rotation " + pending->ceremony_id + " was interrupted; finish it first with "
                                  "`rootseal ceremony rotate-root --resume`");
    }
    if (o.no_backup) {
      if (!o.custodians.empty() || o.threshold != 0) {
        return fail(Errc::invalid_argument, "--no-backup takes no custodians and no threshold");
      }
    } else {
      if (o.out_dir.empty()) return fail(Errc::invalid_argument, "--out (the folder for the share files) is required");
      ROOTSEAL_TRY_ASSIGN(custodians, load_custodians(o.custodians, o.threshold));
    }
  }

  std::unique_ptr<hsm::TokenAdmin> admin;
  ROOTSEAL_TRY_ASSIGN(admin, open_token(o.token));
  std::vector<hsm::KeyObject> at_t;
  ROOTSEAL_TRY_ASSIGN(at_t, admin->find_keys(T));
  Outcome out;
  out.key_label = L;

  if (o.resume) {
    if (!pending) {
      // Interrupted between importing '<label>.next' and recording it: that
      // key has no transcript, so its shares cannot be used; it is removed
      // if the store does not use it.
      if (at_t.empty()) {
        con.out("rootseal: no interrupted root rotation; nothing to resume\n");
        return out;
      }
      std::unique_ptr<kms::StateStore> store;
      ROOTSEAL_TRY_ASSIGN(store, kms::open_sqlite_store(o.store));
      std::vector<kms::KeyRecord> records;
      ROOTSEAL_TRY_ASSIGN(records, store->load_all());
      for (const auto& tk : at_t) {
        for (const auto& k : records) {
          for (const auto& v : k.versions) {
            if (v.root_kcv == tk.kcv) {
              return fail(Errc::conflict, "the store uses '" + T + "' (kcv " + tk.kcv +
                                              ") but no transcript records it; resolve by hand");
            }
          }
        }
      }
      json::array gone;
      for (const auto& tk : at_t) {
        ROOTSEAL_TRY(admin->destroy_key(T, tk.kcv));
        gone.emplace_back(tk.kcv);
        ctx.step("orphan-destroyed", "ok", "'" + T + "' kcv " + tk.kcv + " (never recorded, never used)");
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
    ctx.ceremony_id = pending->ceremony_id;
    if (!pending->store.empty() && fs::path(pending->store) != o.store) {
      con.err("rootseal: note: the rotation was started on store " + pending->store + "\n");
    }
    con.out("rootseal: resuming root rotation " + pending->ceremony_id + " (kcv " + pending->old_kcv + " -> " +
            pending->new_kcv + ")\n");
    std::string retired_as;
    std::size_t n = 0;
    ROOTSEAL_TRY_ASSIGN(n, finish_rotation(o, *admin, *pending, ctx, con, retired_as));
    TranscriptEntry e;
    ROOTSEAL_TRY_ASSIGN(e, record_completion(o, *admin, *pending, n, retired_as, ctx));
    con.out("rootseal: root rotation " + pending->ceremony_id + " complete; the root key is '" + L + "' (kcv " +
            pending->new_kcv + ")\n" + head_line(e));
    out.ceremony_id = pending->ceremony_id;
    out.kcv = pending->new_kcv;
    out.rewrapped = n;
    out.transcript = e.path;
    return out;
  }

  if (!at_t.empty()) {
    return fail(Errc::conflict, "token holds a key labelled '" + T + "' from an interrupted rotation; run "
                                "`rootseal ceremony rotate-root --resume` first");
  }
  // The current root and the store it wraps.
  std::vector<hsm::KeyObject> at_l;
  ROOTSEAL_TRY_ASSIGN(at_l, admin->find_keys(L));
  if (at_l.size() != 1 || !at_l.front().is_valid_root_key() || at_l.front().kcv.empty()) {
    return fail(Errc::not_found, "token '" + o.token.token_label + "' must hold exactly one root key labelled '" + L +
                                     "' (it holds " + std::to_string(at_l.size()) + ")");
  }
  const std::string old_kcv = at_l.front().kcv;
  if (o.retire == Retire::relabel && !at_l.front().modifiable) {
    return fail(Errc::invalid_argument, "the current root key '" + L + "' is not modifiable (CKA_MODIFIABLE=false, "
                                        "e.g. generated by rootseald --dev) and cannot be kept under another label; "
                                        "use --retire destroy (any shares of it still restore it)");
  }
  {
    std::unique_ptr<kms::StateStore> store;
    ROOTSEAL_TRY_ASSIGN(store, kms::open_sqlite_store(o.store));
    std::vector<kms::KeyRecord> records;
    ROOTSEAL_TRY_ASSIGN(records, store->load_all());
    std::size_t versions = 0;
    for (const auto& k : records) {
      for (const auto& v : k.versions) {
        if (v.root_kcv != old_kcv) {
          return fail(Errc::conflict, "key '" + k.name + "' version " + std::to_string(v.version) +
                                          " of the store is wrapped by kcv " + v.root_kcv + ", not by '" + L +
                                          "' (kcv " + old_kcv + "); refusing to rotate");
        }
        ++versions;
      }
    }
    ctx.step("store-checked", "ok", std::to_string(versions) + " wrapped keys under kcv " + old_kcv);
  }
  ctx.ceremony_id = new_ceremony_id();
  con.out("rootseal: root rotation " + ctx.ceremony_id + " on token '" + o.token.token_label + "' (current kcv " +
          old_kcv + ")\n");
  json::object rec = ctx.record("rotate-root");
  rec["token"] = token_json(admin->details(), o.token.module);
  rec["store"] = o.store.string();
  rec["previous_root"] = json::object{{"label", L}, {"kcv", old_kcv}};
  rec["temporary_label"] = T;

  hsm::KeyObject k;
  if (o.no_backup) {
    for (int attempt = 0;; ++attempt) {
      ROOTSEAL_TRY_ASSIGN(k, admin->generate_root_key(T));
      if (k.kcv != old_kcv) break;
      ROOTSEAL_TRY(admin->destroy_key(T, k.kcv));  // a 24-bit collision: make another
      if (attempt > 3) return fail(Errc::internal, "cannot make a key with a check value of its own");
    }
    ctx.step("key-generated-in-hsm", "ok", "'" + T + "' kcv " + k.kcv);
    json::object rk = key_json(k);
    rk["origin"] = "generated inside the HSM (C_GenerateKey); never outside it";
    rk["backup"] = false;
    rec["root_key"] = std::move(rk);
    rec["warning"] = kNoBackupWarning;
    con.err("\n*** WARNING ***\n" + std::string(kNoBackupWarning) + "\n\n");
  } else {
    kms::SecureBytes root;
    std::string kcv;
    for (int attempt = 0;; ++attempt) {
      ROOTSEAL_TRY_ASSIGN(root, generate_root_key(*admin));
      ROOTSEAL_TRY_ASSIGN(kcv, software_kcv(root));
      if (kcv != old_kcv) break;
      if (attempt > 3) return fail(Errc::internal, "cannot make a key with a check value of its own");
    }
    crash_point("root-key-held");
    ctx.step("key-generated", "ok", "OS random XOR HSM random; kcv " + kcv);
    Backup backup;
    ROOTSEAL_TRY_ASSIGN(backup, write_backup(root, kcv, ctx.ceremony_id, custodians, o.threshold, o.out_dir, ctx, con));
    ROOTSEAL_TRY_ASSIGN(k, admin->import_root_key(T, root, kcv));
    root.clear();
    ctx.step("key-imported", "ok", "label '" + T + "', kcv computed by the HSM " + k.kcv + " matches");
    json::object rk = key_json(k);
    rk["origin"] = "OS random (getrandom) XOR HSM random (C_GenerateRandom), split, then imported";
    rk["backup"] = true;
    rec["root_key"] = std::move(rk);
    rec["shamir"] = std::move(backup.shamir);
    rec["custodians"] = std::move(backup.custodians);
    out.share_files = std::move(backup.files);
  }
  crash_point("new-key-imported");
  rec["state"] = "prepared: the new key is in the token; the store is rewrapped next";
  rec["outcome"] = "ok";
  TranscriptEntry prepared;
  ROOTSEAL_TRY_ASSIGN(prepared, ctx.append(std::move(rec)));
  crash_point("rotation-recorded");

  Pending p;
  p.ceremony_id = ctx.ceremony_id;
  p.old_kcv = old_kcv;
  p.new_kcv = k.kcv;
  p.store = o.store.string();
  ctx.steps = json::array();  // the completion record has its own steps
  std::string retired_as;
  std::size_t n = 0;
  ROOTSEAL_TRY_ASSIGN(n, finish_rotation(o, *admin, p, ctx, con, retired_as));
  TranscriptEntry e;
  ROOTSEAL_TRY_ASSIGN(e, record_completion(o, *admin, p, n, retired_as, ctx));
  con.out("rootseal: root rotation " + p.ceremony_id + " complete: " + std::to_string(n) +
          " wrapped keys moved; old root (kcv " + old_kcv + ") " + retired_as + "; the root key is '" + L + "' (kcv " +
          p.new_kcv + ")\n" + head_line(e));
  out.ceremony_id = p.ceremony_id;
  out.kcv = p.new_kcv;
  out.rewrapped = n;
  out.transcript = e.path;
  return out;
}

}  // namespace

// ----- public -------------------------------------------------------------------

std::string next_label(std::string_view key_label) { return std::string(key_label) + ".next"; }

std::string retired_label(std::string_view key_label, std::string_view kcv) {
  return std::string(key_label) + ".retired-" + std::string(kcv);
}

namespace {
// Every ceremony step records its failure in the transcript the same way.
template <class Options, class Impl>
kms::Result<Outcome> recorded(const char* step, const Options& options, Console& console, Impl impl) {
  Context ctx(options.transcript_dir, step, options.people);
  auto r = impl(options, console, ctx);
  if (!r) ctx.record_failure(r.error(), console);
  return r;
}
}  // namespace

kms::Result<Outcome> ceremony_init(const InitOptions& options, Console& console) {
  return recorded("init", options, console, init_impl);
}

kms::Result<Outcome> ceremony_restore(const RestoreOptions& options, Console& console) {
  return recorded("restore", options, console, restore_impl);
}

kms::Result<Outcome> ceremony_reshare(const ReshareOptions& options, Console& console) {
  return recorded("reshare", options, console, reshare_impl);
}

kms::Result<Outcome> ceremony_verify(const VerifyOptions& options, Console& console) {
  return recorded("verify", options, console, verify_impl);
}

kms::Result<Outcome> ceremony_rotate_root(const RotateOptions& options, Console& console) {
  return recorded("rotate-root", options, console, rotate_impl);
}

kms::Result<void> share_decrypt(const DecryptOptions& o, Console& con) {
  ShareSource s{o.share_file, o.private_key};
  GatheredShare g;
  ROOTSEAL_TRY_ASSIGN(g, share_from_file(s));
  crash_point("share-held");
  kms::SecureBytes text = typed_share_text(g.ceremony_id, g.index, g.threshold, g.y);
  g.y.clear();
  con.err("Share " + std::to_string(g.index) + " of ceremony " + g.ceremony_id + " (threshold " +
          std::to_string(g.threshold) + "). Copy the numbered lines exactly, on paper or a device of your own; the "
          "last pair on each line is its checksum, so a typo is caught on the line where it is made.\n");
  con.secret_out(text.span());
  return {};
}

kms::Result<void> ceremony_audit(const AuditOptions& o, Console& con) {
  if (o.transcript_dir.empty()) return fail(Errc::invalid_argument, "--transcript-dir is required");
  std::error_code ec;
  if (!fs::is_directory(o.transcript_dir, ec)) return fail(Errc::not_found, o.transcript_dir.string() + ": no such folder");
  const Transcript t(o.transcript_dir);
  const Transcript::Audit a = t.audit();
  for (const auto& e : a.entries) {
    std::string line = e.path.filename().string() + "  " + e.str("finished_at") + "  " + e.str("kind");
    if (!e.str("ceremony_id").empty()) line += "  ceremony " + e.str("ceremony_id");
    const std::string kcv = record_kcv(e);
    if (!kcv.empty()) line += "  kcv " + kcv;
    line += "  " + e.str("outcome");
    con.out(line + "\n");
  }
  if (auto p = find_pending(a.entries)) {
    con.err("warning: root rotation " + p->ceremony_id + " is not complete (run rotate-root --resume)\n");
  }
  con.out(std::to_string(a.entries.size()) + " entries; chain head " + a.head + "\n");
  if (!a.problems.empty()) {
    std::string all;
    for (const auto& p : a.problems) all += "\n  " + p;
    return fail(Errc::conflict, "the transcript chain is broken:" + all);
  }
  if (!o.expect_head.empty() && o.expect_head != a.head) {
    return fail(Errc::conflict, "the chain head is " + a.head + ", not the recorded " + o.expect_head +
                                    ": entries were changed, removed or added since");
  }
  con.out("chain intact\n");
  return {};
}

}  // namespace rootseal::cli
