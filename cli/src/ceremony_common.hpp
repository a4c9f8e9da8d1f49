// rootseal::cli — private: what the ceremony subcommands share (ceremony_*.cpp):
// the transcript record of one command (Context), checks of the common
// options, the token, the root key, the share backup, the records of the chain.
#pragma once

#include <boost/json.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ceremony.hpp"
#include "custodian.hpp"
#include "rootseal/hsm/token_admin.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "transcript.hpp"
#include "util.hpp"

#ifndef ROOTSEAL_VERSION
#define ROOTSEAL_VERSION "0.0.0"
#endif

namespace rootseal::cli {

namespace json = boost::json;
namespace fs = std::filesystem;

inline constexpr std::string_view kNoBackupWarning =
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
    if (transcript.dir().empty()) return kms::fail(kms::Errc::invalid_argument, "a transcript folder is required");
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

// Every ceremony step records its failure in the transcript the same way.
template <class Options, class Impl>
kms::Result<Outcome> recorded(const char* step, const Options& options, Console& console, Impl impl) {
  Context ctx(options.transcript_dir, step, options.people);
  auto r = impl(options, console, ctx);
  if (!r) ctx.record_failure(r.error(), console);
  return r;
}

// ----- records ---------------------------------------------------------------

json::object token_json(const hsm::TokenDetails& d, const fs::path& module);
json::object key_json(const hsm::KeyObject& k);

// ----- root mechanisms ---------------------------------------------------------

// The root key as the token holds it: the AES key (rsa-oaep: the RSA private
// key), and for aes-cbc-pad-hmac its HMAC key ("<label>-hmac").
struct RootObjects {
  std::string mechanism;  // aes-kwp, aes-gcm, aes-cbc-pad-hmac, rsa-oaep
  hsm::KeyObject key;
  std::optional<hsm::KeyObject> hmac;
};
// The transcript's root_key record of `r` (key_json plus mechanism and HMAC key).
json::object root_json(const RootObjects& r);
// root_json of a root generated inside the token (--no-backup): with its
// origin and "backup": false.
json::object generated_root_json(const RootObjects& r);

// What the ceremony makes for `requested` on this token: aes-kwp, aes-gcm or
// aes-cbc-pad-hmac (auto: the first the token offers, in this order), or
// rsa-oaep, only with `no_backup` (an RSA private key is never split into
// shares: the pair is generated in the token).
kms::Result<std::string> resolve_mechanism(hsm::RootMechanism requested, const hsm::TokenDetails& token,
                                           bool no_backup);
inline constexpr std::string_view kRsaOaep = "rsa-oaep";
// invalid_argument unless the token can hold a root of `mechanism` (as recorded;
// empty: an AES root recorded before mechanisms were, kwp or gcm).
kms::Result<void> token_can_hold(const hsm::TokenDetails& token, std::string_view mechanism, std::string_view what);
hsm::RootMechanism root_mechanism_of(std::string_view mechanism);

// The check values of a root secret made in software: the AES key's KCV and,
// for a 64-byte aes-cbc-pad-hmac secret, the HMAC key's check value
// (HMAC-SHA256(key, hsm::kHmacCheckMessage)[0..3]).
struct SecretChecks {
  std::string kcv;
  std::string hmac_check;
};
kms::Result<SecretChecks> secret_checks(const kms::SecureBytes& secret);
// Imports a root secret made in software under `label` (and the HMAC key
// under hmac_label(label), first), each checked against `checks`.
kms::Result<RootObjects> import_root(hsm::TokenAdmin& admin, std::string_view label, const kms::SecureBytes& secret,
                                     std::string_view mechanism, const SecretChecks& checks);
// "  key check value (computed by the HSM): ...\n" (and the HMAC key's line).
std::string check_lines(const RootObjects& r);
// Generates the root inside the token (--no-backup).
kms::Result<RootObjects> generate_root_in_token(hsm::TokenAdmin& admin, std::string_view label,
                                                std::string_view mechanism);
// The mechanism the record of a root key names ("" for records made before
// the ceremony recorded it: an AES key for kwp or gcm), and its HMAC check value.
std::string record_mechanism(const TranscriptEntry& e);
std::string record_hmac_check(const TranscriptEntry& e);
std::string head_line(const TranscriptEntry& e);

// ----- inputs ----------------------------------------------------------------

kms::Result<void> check_people(const People& p);
kms::Result<void> check_token(const TokenTarget& t);

struct LoadedCustodian {
  std::string name;
  CustodianKey key;
};

kms::Result<std::vector<LoadedCustodian>> load_custodians(const std::vector<CustodianArg>& args, unsigned threshold);
// The custodians of a new backup (an --out folder is required), or none with
// --no-backup, which takes neither custodians nor a threshold.
kms::Result<std::vector<LoadedCustodian>> backup_custodians(bool no_backup, const std::vector<CustodianArg>& args,
                                                            unsigned threshold, const fs::path& out_dir);
kms::Result<std::unique_ptr<hsm::TokenAdmin>> open_token(const TokenTarget& t);
// already_exists ("...; <advice>") if the token holds a secret key labelled
// like the root key or its HMAC key.
kms::Result<void> require_root_labels_free(hsm::TokenAdmin& admin, const TokenTarget& t, std::string_view advice);
// `size` bytes (32, or 64 for aes-cbc-pad-hmac): the OS's random source XOR
// the HSM's, so that either alone is enough.
kms::Result<kms::SecureBytes> generate_root_key(hsm::TokenAdmin& admin, std::size_t size);
kms::Result<std::string> software_kcv(const kms::SecureBytes& key);
std::string two_digits(unsigned n);

// The transcript's "shamir" and "custodians" records of a backup, and its files.
struct Backup {
  json::object shamir;
  json::array custodians;
  std::vector<fs::path> files;
};

// Splits `root` (the whole secret of `mechanism`), encrypts and writes one
// share file per custodian.
kms::Result<Backup> write_backup(const kms::SecureBytes& root, std::string_view mechanism, std::string_view kcv,
                                 std::string_view ceremony_id, const std::vector<LoadedCustodian>& custodians,
                                 unsigned threshold, const fs::path& out_dir, Context& ctx, Console& con);
// The transcript's root_key, shamir and custodians records of a key generated
// in software, backed up in shares and imported (moves backup's records).
void record_backed_up_key(json::object& rec, const RootObjects& k, Backup& backup);

// The record (init or rotate-root) that created the root key of `ceremony_id`.
const TranscriptEntry* find_key_record(const std::vector<TranscriptEntry>& entries, std::string_view ceremony_id);
std::string record_kcv(const TranscriptEntry& e);
// The ceremony whose root key the chain considers current (latest init,
// completed rotation or restore).
std::string current_ceremony(const std::vector<TranscriptEntry>& entries);

// ----- shares (ceremony_shares.cpp) -------------------------------------------

struct GatheredShare {
  std::string mechanism;  // as the share says; empty: a v1 share (32-byte AES key)
  std::string ceremony_id;
  unsigned index = 0;
  unsigned threshold = 0;
  kms::SecureBytes y;
  std::string source;  // "file <name>" / "typed"
};

kms::Result<GatheredShare> share_from_file(const ShareSource& s);

struct Combined {
  kms::SecureBytes root;
  std::string mechanism;  // the record's; empty for records made before mechanisms were recorded
  std::string kcv;
  std::string hmac_check;
  json::array used;
  std::string from;  // the record's file name
};

// The shares of one ceremony, checked against its transcript record and
// combined; the key's check value equals the recorded one.
kms::Result<Combined> gather_and_combine(const std::vector<ShareSource>& files, LineSource* typed_input, Context& ctx,
                                         Console& con);

// ----- store and rotation -------------------------------------------------------

// Opens the store and unwraps every keyring key and version with the token's key
// `label` (read only: nothing is migrated or written); (keys, versions).
kms::Result<std::pair<std::size_t, std::size_t>> open_store_with(const TokenTarget& t, std::string_view label,
                                                                 const fs::path& store_path);

struct Pending {
  std::string ceremony_id;
  std::string old_kcv;
  std::string new_kcv;
  std::string old_mechanism;   // as recorded (rsa-oaep: the old root is a key pair)
  std::string old_hmac_check;  // set when the old root is aes-cbc-pad-hmac
  std::string new_hmac_check;  // set when the new root is aes-cbc-pad-hmac
  std::string new_mechanism;   // as recorded (rsa-oaep: the new root is a key pair)
  std::string store;
  const TranscriptEntry* entry = nullptr;
};

// The last rotate-root with no completion (or abandonment) after it.
std::optional<Pending> find_pending(const std::vector<TranscriptEntry>& entries);

}  // namespace rootseal::cli
