// rootseal::cli — shares: read from files or typed, combined into the root key;
// `rootseal share decrypt`.
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

kms::Result<GatheredShare> share_from_file(const ShareSource& s) {
  std::string text;
  ROOTSEAL_TRY_ASSIGN(text, read_small_file(s.share_file, std::size_t{64} * 1024));
  const std::string where = s.share_file.filename().string();
  ShareFile f;
  ROOTSEAL_TRY_ASSIGN(f, parse_share_file(text, where));
  CustodianKey key;
  ROOTSEAL_TRY_ASSIGN(key, load_custodian_private_key(s.private_key));
  if (key.fingerprint != f.custodian_fingerprint) {
    return fail(Errc::permission_denied, where + ": wrong custodian key: the share is encrypted to key " +
                                             f.custodian_fingerprint.substr(0, 16) + "... (" + f.custodian_name +
                                             "), " + s.private_key.filename().string() + " is key " +
                                             key.fingerprint.substr(0, 16) + "...");
  }
  const auto binding =
      share_binding(f.ceremony_id, f.index, f.threshold, f.count, f.custodian_fingerprint, f.mechanism);
  GatheredShare g;
  auto y = open_share(key, f.sealed, binding);
  if (!y) return fail(y.error().code, where + ": " + y.error().message);
  g.y = std::move(*y);
  const std::size_t want = f.mechanism.empty() ? kRootKeySize : secret_size(f.mechanism);
  if (g.y.size() != want) return fail(Errc::decryption_failed, where + ": the share has the wrong length");
  g.mechanism = f.mechanism;
  g.ceremony_id = f.ceremony_id;
  g.index = f.index;
  g.threshold = f.threshold;
  g.source = "file " + where;
  return g;
}

namespace {

kms::Result<void> read_typed_shares(LineSource& src, std::vector<GatheredShare>& out, Console& con) {
  TypedShareReader reader;
  std::size_t typed = 0;
  unsigned want = 0;  // threshold, once a share says it
  for (;;) {
    const std::string prompt = "share " + std::to_string(typed + 1) + ", line " +
                               two_digits(static_cast<unsigned>(reader.next_line())) +
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
      g.mechanism = std::move(t.mechanism);
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

// What the transcript records of a ceremony's backup.
struct ShareRecord {
  const TranscriptEntry* entry = nullptr;
  std::string mechanism;  // empty: recorded before mechanisms were (a 32-byte AES key)
  std::string kcv;
  std::string hmac_check;
  unsigned threshold = 0;
  std::vector<std::uint8_t> salt;
  std::map<unsigned, std::string> commitments;  // share index -> commitment
};

// The backup record of the shares' ceremony (all shares must be of one).
kms::Result<ShareRecord> ceremony_record(const std::vector<GatheredShare>& shares, Context& ctx) {
  if (ctx.ceremony_id.empty()) ctx.ceremony_id = shares.front().ceremony_id;
  for (const auto& s : shares) {
    if (s.ceremony_id != ctx.ceremony_id) {
      return fail(Errc::invalid_argument, "share " + std::to_string(s.index) + " (" + s.source +
                                              ") belongs to ceremony " + s.ceremony_id + ", not " + ctx.ceremony_id +
                                              ": shares of different ceremonies cannot be combined");
    }
  }
  ShareRecord r;
  r.entry = find_key_record(ctx.entries, ctx.ceremony_id);
  if (r.entry == nullptr) {
    return fail(Errc::not_found, "the transcript in " + ctx.transcript.dir().string() + " has no completed ceremony " +
                                     ctx.ceremony_id + " with a backup");
  }
  r.kcv = record_kcv(*r.entry);
  r.mechanism = record_mechanism(*r.entry);
  r.hmac_check = record_hmac_check(*r.entry);
  std::optional<std::vector<std::uint8_t>> salt;
  try {
    const json::object& sh = r.entry->body.at("shamir").as_object();
    r.threshold = static_cast<unsigned>(sh.at("threshold").to_number<std::int64_t>());
    if (auto sb = kms::hex_decode(std::string_view(sh.at("commitment_salt").as_string()))) salt = std::move(*sb);
    for (const auto& c : r.entry->body.at("custodians").as_array()) {
      const auto& co = c.as_object();
      r.commitments[static_cast<unsigned>(co.at("index").to_number<std::int64_t>())] =
          std::string(co.at("share_commitment").as_string());
    }
  } catch (const std::exception&) {
    salt.reset();
  }
  const bool cbc = r.mechanism == kCbcHmac;
  if (!salt || r.threshold < 2 || r.commitments.empty() || r.kcv.size() != 6 || (cbc && r.hmac_check.size() != 6) ||
      (!r.mechanism.empty() && secret_size(r.mechanism) == 0)) {
    return fail(Errc::invalid_argument, r.entry->path.filename().string() + ": no usable share record (was ceremony " +
                                            ctx.ceremony_id + " made with --no-backup?)");
  }
  r.salt = std::move(*salt);
  ctx.step("ceremony-found", "ok",
           r.entry->path.filename().string() + ": threshold " + std::to_string(r.threshold) + ", kcv " + r.kcv +
               (r.mechanism.empty() ? std::string() : ", " + r.mechanism));
  return r;
}

// Each share must be the one the ceremony committed to, once, and there
// must be enough of them. Adds each share used to `used`.
kms::Result<void> check_shares(const std::vector<GatheredShare>& shares, const ShareRecord& r, Context& ctx,
                               json::array& used) {
  std::set<unsigned> seen;
  for (const auto& s : shares) {
    if (!seen.insert(s.index).second) {
      return fail(Errc::invalid_argument, "share " + std::to_string(s.index) + " is given twice (" + s.source +
                                              "): duplicate shares do not count towards the threshold");
    }
    const auto c = r.commitments.find(s.index);
    if (c == r.commitments.end() || s.threshold != r.threshold) {
      return fail(Errc::invalid_argument, "share " + std::to_string(s.index) + " (" + s.source +
                                              ") is not a share of ceremony " + ctx.ceremony_id);
    }
    // The share's mechanism (v2 files, nine-line typed shares) and size must
    // be the root's; a v1 share or a six-line typed one is a 32-byte key.
    const std::size_t want = r.mechanism.empty() ? kRootKeySize : secret_size(r.mechanism);
    const bool same_family = s.mechanism.empty() || s.mechanism == r.mechanism ||
                             (r.mechanism.empty() && secret_size(s.mechanism) == kRootKeySize);
    if (s.y.size() != want || !same_family) {
      return fail(Errc::invalid_argument, "share " + std::to_string(s.index) + " (" + s.source + ") is a share of a " +
                                              (s.mechanism.empty() ? std::string("32-byte AES") : s.mechanism) +
                                              " root, but ceremony " + ctx.ceremony_id + " recorded a " +
                                              (r.mechanism.empty() ? std::string("32-byte AES") : r.mechanism) +
                                              " root");
    }
    const std::string mine = share_commitment(r.salt, ctx.ceremony_id, s.index, r.threshold, s.y);
    if (!kms::constant_time_equal(mine, c->second)) {
      return fail(Errc::decryption_failed,
                  "share " + std::to_string(s.index) + " (" + s.source +
                      ") does not match the commitment the "
                      "transcript records for it: it was altered, mistyped or belongs to another ceremony; refusing "
                      "to combine");
    }
    json::object u;
    u["index"] = s.index;
    u["source"] = s.source;
    u["share_commitment"] = c->second;
    used.push_back(std::move(u));
  }
  if (shares.size() < r.threshold) {
    return fail(Errc::invalid_argument, "ceremony " + ctx.ceremony_id + " needs " + std::to_string(r.threshold) +
                                            " shares; only " + std::to_string(shares.size()) + " given");
  }
  ctx.step("shares-checked", "ok", std::to_string(shares.size()) + " shares match their commitments");
  return {};
}

}  // namespace

// The shares of one ceremony, checked against its transcript record and
// combined; the key's check value equals the recorded one.
kms::Result<Combined> gather_and_combine(const std::vector<ShareSource>& files, LineSource* typed_input, Context& ctx,
                                         Console& con) {
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

  // 2. One ceremony, known to the transcript; 3. each share committed to, once.
  ShareRecord rec;
  ROOTSEAL_TRY_ASSIGN(rec, ceremony_record(shares, ctx));
  Combined out;
  ROOTSEAL_TRY(check_shares(shares, rec, ctx, out.used));

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
  SecretChecks mine;
  ROOTSEAL_TRY_ASSIGN(mine, secret_checks(out.root));
  if (mine.kcv != rec.kcv) {
    out.root.clear();
    return fail(Errc::decryption_failed, "the combined key has check value " + mine.kcv + ", the transcript records " +
                                             rec.kcv + "; nothing was imported");
  }
  if (mine.hmac_check != rec.hmac_check) {
    out.root.clear();
    return fail(Errc::decryption_failed, "the combined HMAC key has check value " + mine.hmac_check +
                                             ", the transcript records " + rec.hmac_check + "; nothing was imported");
  }
  ctx.step("combined", "ok",
           "kcv " + mine.kcv + (mine.hmac_check.empty() ? "" : ", HMAC check value " + mine.hmac_check) +
               " matches the transcript");
  out.kcv = rec.kcv;
  out.mechanism = rec.mechanism;
  out.hmac_check = rec.hmac_check;
  out.from = rec.entry->path.filename().string();
  return out;
}

kms::Result<void> share_decrypt(const DecryptOptions& o, Console& con) {
  ShareSource s{o.share_file, o.private_key};
  GatheredShare g;
  ROOTSEAL_TRY_ASSIGN(g, share_from_file(s));
  crash_point("share-held");
  kms::SecureBytes text = typed_share_text(g.ceremony_id, g.index, g.threshold, g.y);
  g.y.clear();
  con.err("Share " + std::to_string(g.index) + " of ceremony " + g.ceremony_id + " (threshold " +
          std::to_string(g.threshold) +
          "). Copy the numbered lines exactly, on paper or a device of your own; the "
          "last pair on each line is its checksum, so a typo is caught on the line where it is made.\n");
  con.secret_out(text.span());
  return {};
}

}  // namespace rootseal::cli
