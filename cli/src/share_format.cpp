#include "share_format.hpp"

#include <boost/json.hpp>

#include <cstring>
#include <stdexcept>

#include "rootseal/kms/encoding.hpp"
#include "util.hpp"

namespace rootseal::cli {

using kms::Errc;
using kms::fail;
namespace json = boost::json;

namespace {

constexpr char kB32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
constexpr std::size_t kCharsPerLine = 16;

// The two typed forms (share_format.hpp).
struct TypedForm {
  std::uint8_t version;
  std::size_t secret;  // bytes of y
  std::size_t check;   // bytes of the check at the end
  std::size_t header;  // bytes before y
  std::string_view domain;
  [[nodiscard]] constexpr std::size_t bytes() const { return header + secret + check; }
  [[nodiscard]] constexpr std::size_t chars() const { return bytes() * 8 / 5; }
  [[nodiscard]] constexpr std::size_t lines() const { return (chars() + kCharsPerLine - 1) / kCharsPerLine; }
};
constexpr TypedForm kTypedV1{0x01, kRootKeySize, 4, 1 + kCeremonyIdSize + 2, "rootseal-typed-share-v1"};
constexpr TypedForm kTypedV2{0x02, 2 * kRootKeySize, 6, 1 + kCeremonyIdSize + 3, "rootseal-typed-share-v2"};
constexpr std::uint8_t kCbcHmacCode = 0x03;  // the blob header of aes-cbc-pad-hmac
static_assert(kTypedV1.bytes() == 55 && kTypedV1.bytes() * 8 % 5 == 0 && kTypedV1.lines() == kTypedLines);
static_assert(kTypedV2.bytes() == 90 && kTypedV2.bytes() * 8 % 5 == 0 && kTypedV2.lines() == kTypedLinesV2);

constexpr std::string_view kShareDomain = "rootseal-share-v1";
constexpr std::string_view kShareDomainV2 = "rootseal-share-v2";
constexpr std::string_view kCommitDomain = "rootseal-share-commitment-v1";
constexpr std::string_view kLineDomain = "rootseal-typed-line-v1";

// Decoded base32 value of c (upper or lower case), or -1. Branches on the
// character are unavoidable when parsing typed text; the share's bytes are
// then only copied.
int b32_value(std::uint8_t c) noexcept {
  if (c >= 'a' && c <= 'z') c = static_cast<std::uint8_t>(c - 'a' + 'A');
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= '2' && c <= '7') return c - '2' + 26;
  return -1;
}

std::array<std::uint8_t, kCeremonyIdSize> id_bytes(std::string_view ceremony_id) {
  std::array<std::uint8_t, kCeremonyIdSize> out{};
  auto raw = kms::hex_decode(ceremony_id);
  if (raw && raw->size() == out.size()) std::memcpy(out.data(), raw->data(), out.size());
  return out;
}

// Two base32 characters (10 bits) of SHA-256(domain || line number || chars).
std::array<char, 2> line_check(std::size_t line_no, std::span<const std::uint8_t> chars) {
  const std::uint8_t n = static_cast<std::uint8_t>(line_no);
  std::vector<std::uint8_t> msg(kLineDomain.begin(), kLineDomain.end());
  msg.push_back(n);
  // The message holds share characters: keep it in locked memory.
  kms::SecureBytes m(msg.size() + chars.size());
  std::memcpy(m.data(), msg.data(), msg.size());
  std::memcpy(m.data() + msg.size(), chars.data(), chars.size());
  const auto h = sha256(m.span());
  const unsigned bits = (static_cast<unsigned>(h[0]) << 2) | (static_cast<unsigned>(h[1]) >> 6);
  return {kB32[(bits >> 5) & 31], kB32[bits & 31]};
}

// The first form.check bytes of SHA-256(form.domain || body).
std::vector<std::uint8_t> typed_check(const TypedForm& form, std::span<const std::uint8_t> body) {
  kms::SecureBytes m(form.domain.size() + body.size());
  std::memcpy(m.data(), form.domain.data(), form.domain.size());
  std::memcpy(m.data() + form.domain.size(), body.data(), body.size());
  auto h = sha256(m.span());
  h.resize(form.check);
  return h;
}

const json::value* member(const json::object& o, std::string_view key) { return o.if_contains(key); }

kms::Result<std::string> get_string(const json::object& o, std::string_view key, std::string_view where) {
  const json::value* v = member(o, key);
  if (v == nullptr || !v->is_string())
    return fail(Errc::invalid_argument, std::string(where) + ": missing or non-string \"" + std::string(key) + "\"");
  return std::string(v->as_string());
}

kms::Result<unsigned> get_uint(const json::object& o, std::string_view key, std::string_view where, unsigned max) {
  const json::value* v = member(o, key);
  if (v == nullptr || !(v->is_int64() || v->is_uint64())) {
    return fail(Errc::invalid_argument, std::string(where) + ": missing or non-integer \"" + std::string(key) + "\"");
  }
  const std::int64_t n = v->is_int64() ? v->as_int64() : static_cast<std::int64_t>(v->as_uint64());
  if (n < 0 || n > static_cast<std::int64_t>(max)) {
    return fail(Errc::invalid_argument, std::string(where) + ": \"" + std::string(key) + "\" out of range");
  }
  return static_cast<unsigned>(n);
}

bool is_lower_hex(std::string_view s, std::size_t len) {
  if (s.size() != len) return false;
  for (char c : s) {
    const bool digit = c >= '0' && c <= '9';
    const bool letter = c >= 'a' && c <= 'f';
    if (!digit && !letter) return false;
  }
  return true;
}

}  // namespace

std::size_t secret_size(std::string_view mechanism) noexcept {
  if (mechanism == "aes-kwp" || mechanism == "aes-gcm") return kRootKeySize;
  if (mechanism == kCbcHmac) return 2 * kRootKeySize;
  return 0;
}

std::string new_ceremony_id() { return kms::hex_encode(random_public(kCeremonyIdSize)); }

bool is_ceremony_id(std::string_view id) noexcept { return is_lower_hex(id, 2 * kCeremonyIdSize); }

std::vector<std::uint8_t> share_binding(std::string_view ceremony_id, unsigned index, unsigned threshold,
                                        unsigned count, std::string_view custodian_fingerprint,
                                        std::string_view mechanism) {
  const std::string_view domain = mechanism.empty() ? kShareDomain : kShareDomainV2;
  std::vector<std::uint8_t> b(domain.begin(), domain.end());
  b.push_back(0);
  const auto id = id_bytes(ceremony_id);
  b.insert(b.end(), id.begin(), id.end());
  b.push_back(static_cast<std::uint8_t>(index));
  b.push_back(static_cast<std::uint8_t>(threshold));
  b.push_back(static_cast<std::uint8_t>(count));
  auto fp = kms::hex_decode(custodian_fingerprint);
  if (fp) b.insert(b.end(), fp->begin(), fp->end());
  b.insert(b.end(), mechanism.begin(), mechanism.end());
  return b;
}

std::string share_commitment(std::span<const std::uint8_t> salt, std::string_view ceremony_id, unsigned index,
                             unsigned threshold, const kms::SecureBytes& y) {
  const auto id = id_bytes(ceremony_id);
  const std::uint8_t sep = 0;
  const std::uint8_t meta[2] = {static_cast<std::uint8_t>(index), static_cast<std::uint8_t>(threshold)};
  return kms::hex_encode(hmac_sha256(salt, {bytes_of(kCommitDomain), std::span(&sep, 1), id, meta, y.span()}));
}

std::string share_file_json(const ShareFile& s) {
  json::object enc;
  enc["scheme"] = s.sealed.scheme;
  if (!s.sealed.ephemeral.empty()) enc["ephemeral_public_key"] = kms::base64_encode(s.sealed.ephemeral);
  enc["ciphertext"] = kms::base64_encode(s.sealed.ciphertext);
  json::object cust;
  cust["name"] = s.custodian_name;
  cust["key_type"] = s.custodian_key_type;
  cust["fingerprint"] = s.custodian_fingerprint;
  json::object o;
  o["format"] = s.mechanism.empty() ? "rootseal-share-v1" : "rootseal-share-v2";
  if (!s.mechanism.empty()) o["mechanism"] = s.mechanism;
  o["ceremony_id"] = s.ceremony_id;
  o["index"] = s.index;
  o["threshold"] = s.threshold;
  o["shares"] = s.count;
  o["root_kcv"] = s.root_kcv;
  o["custodian"] = std::move(cust);
  o["commitment"] = s.commitment;
  o["encryption"] = std::move(enc);
  return json::serialize(o) + "\n";
}

kms::Result<ShareFile> parse_share_file(std::string_view text, std::string_view where) {
  json::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object())
    return fail(Errc::invalid_argument, std::string(where) + ": not a share file (invalid JSON)");
  const json::object& o = v.as_object();
  std::string format;
  ROOTSEAL_TRY_ASSIGN(format, get_string(o, "format", where));
  ShareFile s;
  if (format == "rootseal-share-v2") {
    ROOTSEAL_TRY_ASSIGN(s.mechanism, get_string(o, "mechanism", where));
    if (secret_size(s.mechanism) == 0) {
      return fail(Errc::invalid_argument, std::string(where) + ": unknown root mechanism '" + s.mechanism +
                                              "' (aes-kwp, aes-gcm or aes-cbc-pad-hmac)");
    }
  } else if (format != "rootseal-share-v1") {
    return fail(Errc::invalid_argument, std::string(where) + ": unknown share format '" + format + "'");
  }
  ROOTSEAL_TRY_ASSIGN(s.ceremony_id, get_string(o, "ceremony_id", where));
  ROOTSEAL_TRY_ASSIGN(s.index, get_uint(o, "index", where, 255));
  ROOTSEAL_TRY_ASSIGN(s.threshold, get_uint(o, "threshold", where, 255));
  ROOTSEAL_TRY_ASSIGN(s.count, get_uint(o, "shares", where, 255));
  ROOTSEAL_TRY_ASSIGN(s.root_kcv, get_string(o, "root_kcv", where));
  ROOTSEAL_TRY_ASSIGN(s.commitment, get_string(o, "commitment", where));
  if (!is_ceremony_id(s.ceremony_id) || s.index < 1 || s.threshold < 2 || s.threshold > s.count || s.index > s.count ||
      !is_lower_hex(s.commitment, 64)) {
    return fail(Errc::invalid_argument, std::string(where) +
                                            ": inconsistent share file (ceremony id, index, "
                                            "threshold, count or commitment)");
  }
  const json::value* c = member(o, "custodian");
  const json::value* e = member(o, "encryption");
  if (c == nullptr || !c->is_object() || e == nullptr || !e->is_object()) {
    return fail(Errc::invalid_argument, std::string(where) + ": missing \"custodian\" or \"encryption\"");
  }
  ROOTSEAL_TRY_ASSIGN(s.custodian_name, get_string(c->as_object(), "name", where));
  ROOTSEAL_TRY_ASSIGN(s.custodian_key_type, get_string(c->as_object(), "key_type", where));
  ROOTSEAL_TRY_ASSIGN(s.custodian_fingerprint, get_string(c->as_object(), "fingerprint", where));
  if (!is_lower_hex(s.custodian_fingerprint, 64)) {
    return fail(Errc::invalid_argument, std::string(where) + ": bad custodian fingerprint");
  }
  const json::object& eo = e->as_object();
  ROOTSEAL_TRY_ASSIGN(s.sealed.scheme, get_string(eo, "scheme", where));
  std::string ct;
  ROOTSEAL_TRY_ASSIGN(ct, get_string(eo, "ciphertext", where));
  auto ctb = kms::base64_decode(ct);
  if (!ctb) return fail(Errc::invalid_argument, std::string(where) + ": ciphertext is not base64");
  s.sealed.ciphertext = std::move(*ctb);
  if (const json::value* eph = member(eo, "ephemeral_public_key")) {
    if (!eph->is_string()) return fail(Errc::invalid_argument, std::string(where) + ": bad ephemeral_public_key");
    auto eb = kms::base64_decode(std::string_view(eph->as_string()));
    if (!eb) return fail(Errc::invalid_argument, std::string(where) + ": ephemeral_public_key is not base64");
    s.sealed.ephemeral = std::move(*eb);
  }
  return s;
}

kms::SecureBytes typed_share_text(std::string_view ceremony_id, unsigned index, unsigned threshold,
                                  const kms::SecureBytes& y) {
  const TypedForm& form = y.size() == kTypedV2.secret ? kTypedV2 : kTypedV1;
  // The 55 (or 90) bytes.
  kms::SecureBytes raw(form.bytes());
  std::uint8_t* p = raw.data();
  p[0] = form.version;
  const auto id = id_bytes(ceremony_id);
  std::memcpy(p + 1, id.data(), id.size());
  p[17] = static_cast<std::uint8_t>(index);
  p[18] = static_cast<std::uint8_t>(threshold);
  if (form.version == kTypedV2.version) p[19] = kCbcHmacCode;
  std::memcpy(p + form.header, y.data(), std::min(y.size(), form.secret));
  const auto check = typed_check(form, std::span<const std::uint8_t>(p, form.header + form.secret));
  std::memcpy(p + form.header + form.secret, check.data(), form.check);

  // Base32, no padding (440 bits = 88 characters; 720 bits = 144).
  const std::size_t nchars = form.chars();
  kms::SecureBytes chars(nchars);
  std::size_t out = 0;
  unsigned acc = 0;
  int nbits = 0;
  for (std::size_t i = 0; i < form.bytes(); ++i) {
    acc = ((acc << 8) | p[i]) & 0xFFFFU;
    nbits += 8;
    while (nbits >= 5) {
      nbits -= 5;
      chars.data()[out++] = static_cast<std::uint8_t>(kB32[(acc >> nbits) & 31U]);
    }
  }

  // Lines: "NN  ABCD EFGH IJKL MNOP  CC\n" after one comment line.
  const std::string header = "# rootseal share " + std::to_string(index) + " (threshold " + std::to_string(threshold) +
                             ") of ceremony " + std::string(ceremony_id) +
                             (form.version == kTypedV2.version ? ", aes-cbc-pad-hmac, 9 lines" : "") + "\n";
  kms::SecureBytes text(header.size() + form.lines() * 40);
  std::size_t n = 0;
  auto put = [&](char c) { text.data()[n++] = static_cast<std::uint8_t>(c); };
  for (char c : header) put(c);
  for (std::size_t line = 0; line < form.lines(); ++line) {
    const std::size_t begin = line * kCharsPerLine;
    const std::size_t len = std::min(kCharsPerLine, nchars - begin);
    const std::size_t no = line + 1;
    put(static_cast<char>('0' + no / 10));
    put(static_cast<char>('0' + no % 10));
    put(' ');
    for (std::size_t i = 0; i < len; ++i) {
      if (i % 4 == 0) put(' ');
      put(static_cast<char>(chars.data()[begin + i]));
    }
    const auto cs = line_check(no, std::span<const std::uint8_t>(chars.data() + begin, len));
    put(' ');
    put(' ');
    put(cs[0]);
    put(cs[1]);
    put('\n');
  }
  text.truncate(n);
  return text;
}

namespace {

// A typed line's tokens as [begin, end) pairs: no copies of the text outside
// locked memory. Spaces, tabs, line ends and '-' separate them.
std::vector<std::pair<std::size_t, std::size_t>> typed_tokens(std::span<const std::uint8_t> line) {
  auto is_space = [](std::uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '-'; };
  std::vector<std::pair<std::size_t, std::size_t>> tokens;
  std::size_t i = 0;
  while (i < line.size() && is_space(line[i])) ++i;
  while (i < line.size()) {
    const std::size_t b = i;
    while (i < line.size() && !is_space(line[i])) ++i;
    tokens.emplace_back(b, i);
    while (i < line.size() && is_space(line[i])) ++i;
  }
  return tokens;
}

// The share of a whole typed text (the base32 characters of every line),
// checked as a whole.
// The version a typed share's first two characters announce (its first
// byte's top 5 + 3 bits), or 0.
std::uint8_t typed_version(const kms::SecureBytes& chars) {
  const int hi = b32_value(chars.data()[0]);
  const int lo = b32_value(chars.data()[1]);
  if (hi < 0 || lo < 0) return 0;
  return static_cast<std::uint8_t>((static_cast<unsigned>(hi) << 3) | (static_cast<unsigned>(lo) >> 2));
}

kms::Result<TypedShare> decode_typed(const kms::SecureBytes& chars, std::size_t nchars) {
  kms::SecureBytes raw(kTypedV2.bytes());
  unsigned acc = 0;
  int nbits = 0;
  std::size_t out = 0;
  for (std::size_t k = 0; k < nchars && out < raw.size(); ++k) {
    acc = ((acc << 5) | static_cast<unsigned>(b32_value(chars.data()[k]))) & 0xFFFFU;
    nbits += 5;
    if (nbits >= 8) {
      nbits -= 8;
      raw.data()[out++] = static_cast<std::uint8_t>((acc >> nbits) & 0xFFU);
    }
  }
  const std::uint8_t* p = raw.data();
  const TypedForm& form = p[0] == kTypedV2.version ? kTypedV2 : kTypedV1;
  const auto check = typed_check(form, std::span<const std::uint8_t>(p, form.header + form.secret));
  if (out != form.bytes() || (p[0] != kTypedV1.version && p[0] != kTypedV2.version) ||
      (form.version == kTypedV2.version && p[19] != kCbcHmacCode) ||
      !kms::constant_time_equal(std::span<const std::uint8_t>(p + form.header + form.secret, form.check), check)) {
    return fail(Errc::invalid_argument,
                "the share does not check out as a whole (every line passed its own "
                "checksum: lines from different shares?); enter it again from line 01");
  }
  TypedShare s;
  if (form.version == kTypedV2.version) s.mechanism = std::string(kCbcHmac);
  s.ceremony_id = kms::hex_encode(std::span<const std::uint8_t>(p + 1, kCeremonyIdSize));
  s.index = p[17];
  s.threshold = p[18];
  s.y = kms::SecureBytes::copy_of(std::span<const std::uint8_t>(p + form.header, form.secret));
  return s;
}

}  // namespace

kms::Result<TypedShareReader::Status> TypedShareReader::feed(std::span<const std::uint8_t> line) {
  const auto tokens = typed_tokens(line);
  if (tokens.empty() || line[tokens.front().first] == '#') return Status::skipped;
  const std::size_t expected = lines_ + 1;
  auto where = [&] {
    std::string w = "line ";
    w += static_cast<char>('0' + expected / 10);
    w += static_cast<char>('0' + expected % 10);
    return w + ": ";
  };
  if (tokens.size() < 3) {
    return fail(Errc::invalid_argument, where() + "expected 'NN  XXXX XXXX XXXX XXXX  CC' (number, groups, checksum)");
  }
  // Line number.
  std::size_t no = 0;
  for (std::size_t k = tokens[0].first; k < tokens[0].second; ++k) {
    if (line[k] < '0' || line[k] > '9' || no > 99)
      return fail(Errc::invalid_argument, where() + "the line must start with its number");
    no = no * 10 + (line[k] - '0');
  }
  if (no != expected) {
    if (no == 1 && lines_ > 0) {
      return fail(Errc::invalid_argument, where() + "a new share starts (line 01) before this one is complete");
    }
    return fail(Errc::invalid_argument, where() + "got line number " + std::to_string(no));
  }
  // Characters (the first line's say how many lines the share has).
  const std::size_t total_chars = total_lines_ == kTypedLinesV2 ? kTypedV2.chars() : kTypedV1.chars();
  const std::size_t want = std::min(kCharsPerLine, total_chars - lines_ * kCharsPerLine);
  kms::SecureBytes chars(kCharsPerLine);
  std::size_t n = 0;
  for (std::size_t t = 1; t + 1 < tokens.size(); ++t) {
    for (std::size_t k = tokens[t].first; k < tokens[t].second; ++k) {
      const int v = b32_value(line[k]);
      if (v < 0) {
        return fail(Errc::invalid_argument, where() +
                                                "a character outside A-Z and 2-7 (the digits 0, 1, 8, 9 "
                                                "are not used: O, I, B?)");
      }
      if (n == kCharsPerLine) return fail(Errc::invalid_argument, where() + "too many characters");
      chars.data()[n++] = static_cast<std::uint8_t>(kB32[v]);
    }
  }
  if (n != want) {
    return fail(Errc::invalid_argument,
                where() + "expected " + std::to_string(want) + " characters, got " + std::to_string(n));
  }
  const auto& ct = tokens.back();
  if (ct.second - ct.first != 2 || b32_value(line[ct.first]) < 0 || b32_value(line[ct.first + 1]) < 0) {
    return fail(Errc::invalid_argument, where() + "the line must end with its two-character checksum");
  }
  const auto cs = line_check(no, std::span<const std::uint8_t>(chars.data(), n));
  if (kB32[b32_value(line[ct.first])] != cs[0] || kB32[b32_value(line[ct.first + 1])] != cs[1]) {
    return fail(Errc::invalid_argument, where() + "checksum mismatch: a typo in this line; please enter it again");
  }
  std::memcpy(chars_.data() + nchars_, chars.data(), n);
  nchars_ += n;
  ++lines_;
  if (lines_ == 1) total_lines_ = typed_version(chars_) == kTypedV2.version ? kTypedLinesV2 : kTypedLines;
  if (lines_ < total_lines_) return Status::more;

  lines_ = 0;
  total_lines_ = kTypedLines;
  const std::size_t nchars = nchars_;
  nchars_ = 0;
  TypedShare share;
  ROOTSEAL_TRY_ASSIGN(share, decode_typed(chars_, nchars));
  done_ = std::move(share);
  return Status::complete;
}

TypedShare TypedShareReader::take() {
  if (!done_) throw std::logic_error("TypedShareReader::take: no share is complete");
  TypedShare s = std::move(*done_);
  done_.reset();
  return s;
}

}  // namespace rootseal::cli
