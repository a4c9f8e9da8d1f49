#include "rewrite.hpp"

#include "go_json.hpp"

#include <re2/re2.h>

#include <algorithm>
#include <iterator>
#include <utility>

#include "template.hpp"

namespace rootseal::sync {

namespace {

using kms::Errc;

kms::Result<void> fail(std::string message) { return kms::fail(Errc::invalid_argument, std::move(message)); }

// One UTF-8 character at s[i]: its code point and width, as Go's
// utf8.DecodeRuneInString (an invalid or truncated sequence is U+FFFD, width 1;
// width 0 at the end).
struct Rune {
  char32_t cp = 0xFFFD;
  std::size_t width = 0;
};

Rune decode_rune(std::string_view s, std::size_t i) {
  if (i >= s.size()) return {0xFFFD, 0};
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return {b0, 1};
  std::size_t n = 0;
  char32_t cp = 0;
  char32_t min = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2, cp = b0 & 0x1F, min = 0x80;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3, cp = b0 & 0x0F, min = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return {0xFFFD, 1};
  }
  if (i + n > s.size()) return {0xFFFD, 1};
  for (std::size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return {0xFFFD, 1};
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {0xFFFD, 1};
  return {cp, n};
}

struct CodeRange {
  char32_t first;
  char32_t last;
};
constexpr CodeRange kLetterOrNumber[] = {
#include "unicode_alnum.inc"
};

// unicode.IsLetter || unicode.IsNumber, on Go's own tables (generated).
bool letter_or_number(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  const auto* it = std::upper_bound(std::begin(kLetterOrNumber), std::end(kLetterOrNumber), c,
                                    [](char32_t v, const CodeRange& r) { return v < r.first; });
  return it != std::begin(kLetterOrNumber) && c <= std::prev(it)->last;
}

bool key_char(char32_t c) { return letter_or_number(c) || c == '-' || c == '.' || c == '_'; }

// Go's regexp/syntax error texts, by RE2's error code (RE2 and Go's parser
// come from the same design and report the same offending part).
std::string_view go_error_text(re2::RE2::ErrorCode code) {
  switch (code) {
    case re2::RE2::ErrorBadEscape:
      return "invalid escape sequence";
    case re2::RE2::ErrorBadCharClass:
      return "invalid character class";
    case re2::RE2::ErrorBadCharRange:
      return "invalid character class range";
    case re2::RE2::ErrorMissingBracket:
      return "missing closing ]";
    case re2::RE2::ErrorMissingParen:
      return "missing closing )";
    case re2::RE2::ErrorUnexpectedParen:
      return "unexpected )";
    case re2::RE2::ErrorTrailingBackslash:
      return "trailing backslash at end of expression";
    case re2::RE2::ErrorRepeatArgument:
      return "missing argument to repetition operator";
    case re2::RE2::ErrorRepeatSize:
      return "invalid repeat count";
    case re2::RE2::ErrorRepeatOp:
      return "invalid nested repetition operator";
    case re2::RE2::ErrorBadPerlOp:
      return "invalid or unsupported Perl syntax";
    case re2::RE2::ErrorBadUTF8:
      return "invalid UTF-8";
    case re2::RE2::ErrorBadNamedCapture:
      return "invalid named capture";
    case re2::RE2::ErrorPatternTooLarge:
      return "expression too large";
    default:
      return "regexp/syntax: internal error";
  }
}

// RE2 accepts \C (any byte), which Go refuses; every other escape is shared.
std::string_view any_byte_escape(std::string_view pattern) {
  for (std::size_t i = 0; i + 1 < pattern.size(); ++i) {
    if (pattern[i] != '\\') continue;
    if (pattern[i + 1] == 'C') return pattern.substr(i, 2);
    ++i;  // the escaped character
  }
  return {};
}

bool name_char(char32_t c) { return letter_or_number(c) || c == '_'; }

// Go's extract: the group reference at the start of tmpl (just after '$'):
// its name, whether it was braced, and the rest. ok=false: not a reference.
struct Reference {
  std::string_view name;
  std::string_view rest;
  bool ok = false;
};

Reference reference(std::string_view tmpl) {
  if (tmpl.empty()) return {};
  const bool brace = tmpl.front() == '{';
  std::size_t i = brace ? 1 : 0;
  while (i < tmpl.size()) {
    const Rune r = decode_rune(tmpl, i);
    if (!name_char(r.cp)) break;
    i += r.width;
  }
  const std::size_t start = brace ? 1 : 0;
  if (i == start) return {};  // empty name
  Reference ref{tmpl.substr(start, i - start), {}, true};
  if (brace) {
    if (i >= tmpl.size() || tmpl[i] != '}') return {};  // missing closing brace
    ++i;
  }
  ref.rest = tmpl.substr(i);
  return ref;
}

// A group number as Go reads it: digits only, no leading zero, below 1e8.
int group_number(std::string_view name) {
  if (name.size() > 1 && name.front() == '0') return -1;
  int num = 0;
  for (char c : name) {
    if (c < '0' || c > '9' || num >= 100'000'000) return -1;
    num = num * 10 + (c - '0');
  }
  return num;
}

}  // namespace

GoRegexp::GoRegexp() = default;
GoRegexp::GoRegexp(GoRegexp&&) noexcept = default;
GoRegexp& GoRegexp::operator=(GoRegexp&&) noexcept = default;
GoRegexp::~GoRegexp() = default;

kms::Result<GoRegexp> GoRegexp::compile(std::string_view pattern) {
  if (auto bad = any_byte_escape(pattern); !bad.empty()) {
    return kms::fail(Errc::invalid_argument,
                     "error parsing regexp: invalid escape sequence: `" + std::string(bad) + "`");
  }
  re2::RE2::Options options;
  options.set_log_errors(false);
  options.set_encoding(re2::RE2::Options::EncodingUTF8);
  GoRegexp out;
  out.re_ = std::make_unique<re2::RE2>(re2::StringPiece(pattern.data(), pattern.size()), options);
  if (!out.re_->ok()) {
    return kms::fail(Errc::invalid_argument,
                     "error parsing regexp: " + std::string(go_error_text(out.re_->error_code())) + ": `" +
                         out.re_->error_arg() + "`");
  }
  out.names_.assign(static_cast<std::size_t>(out.re_->NumberOfCapturingGroups()) + 1, std::string());
  for (const auto& [index, name] : out.re_->CapturingGroupNames()) {
    out.names_.at(static_cast<std::size_t>(index)) = name;
  }
  return out;
}

template <typename Out>
void GoRegexp::expand(Out& out, std::string_view tmpl, const std::vector<std::string_view>& groups) const {
  while (!tmpl.empty()) {
    const auto dollar = tmpl.find('$');
    if (dollar == std::string_view::npos) break;
    out.append(tmpl.substr(0, dollar));
    tmpl.remove_prefix(dollar);
    if (tmpl.size() > 1 && tmpl[1] == '$') {  // "$$" is a literal '$'
      out.push_back('$');
      tmpl.remove_prefix(2);
      continue;
    }
    const Reference ref = reference(tmpl.substr(1));
    if (!ref.ok) {  // malformed: the '$' is text
      out.push_back('$');
      tmpl.remove_prefix(1);
      continue;
    }
    tmpl = ref.rest;
    const int num = group_number(ref.name);
    if (num >= 0) {
      const auto n = static_cast<std::size_t>(num);
      if (n < groups.size() && groups[n].data() != nullptr) out.append(groups[n]);
      continue;
    }
    for (std::size_t i = 0; i < names_.size(); ++i) {
      if (names_[i] == ref.name && i < groups.size() && groups[i].data() != nullptr) {
        out.append(groups[i]);
        break;
      }
    }
  }
  out.append(tmpl);
}

bool GoRegexp::matches(std::string_view s) const {
  const re2::StringPiece text(s.data(), s.size());
  re2::StringPiece m;
  std::size_t search = 0;
  while (search <= s.size()) {
    if (!re_->Match(text, search, s.size(), re2::RE2::UNANCHORED, &m, 1)) return false;
    const auto begin = static_cast<std::size_t>(m.data() - s.data());
    // As in replace_all: Go tries a match only at character boundaries.
    std::size_t at = 0;
    while (at < begin) at += decode_rune(s, at).width;
    if (at == begin) return true;
    search = at;
  }
  return false;
}

template <typename Out>
bool GoRegexp::replace_into(Out& out, std::string_view src, std::string_view tmpl, bool literal,
                            std::size_t max) const {
  std::vector<re2::StringPiece> m(names_.size());
  std::vector<std::string_view> groups(names_.size());
  const re2::StringPiece text(src.data(), src.size());
  // Where Go's decoding puts character boundaries (an invalid byte is one
  // character, as in Go).
  std::vector<bool> boundary(src.size() + 1, false);
  for (std::size_t i = 0; i < src.size(); i += decode_rune(src, i).width) boundary[i] = true;
  boundary[src.size()] = true;
  std::size_t last_end = 0;
  std::size_t search = 0;
  while (search <= src.size()) {
    if (!re_->Match(text, search, src.size(), re2::RE2::UNANCHORED, m.data(), static_cast<int>(m.size()))) break;
    const auto begin = static_cast<std::size_t>(m[0].data() - src.data());
    const std::size_t end = begin + m[0].size();
    if (!boundary[begin]) {
      // RE2 tries empty-width assertions (\B) between the bytes of one
      // character; Go only at character boundaries: look again from the next.
      search = begin + 1;
      while (!boundary[search]) ++search;
      continue;
    }
    out.append(src.substr(last_end, begin - last_end));
    // No replacement for an empty match right after the previous match.
    if (end > last_end || begin == 0) {
      if (literal) {
        out.append(tmpl);
      } else {
        for (std::size_t g = 0; g < m.size(); ++g) {
          groups[g] = m[g].data() == nullptr ? std::string_view{} : std::string_view(m[g].data(), m[g].size());
        }
        expand(out, tmpl, groups);
      }
    }
    if (out.size() > max) return false;
    last_end = end;
    // Advance past this match, by at least one character.
    const std::size_t width = decode_rune(src, search).width;
    if (search + width > end) {
      search += width;
    } else if (search + 1 > end) {
      ++search;
    } else {
      search = end;
    }
  }
  out.append(src.substr(last_end));
  return out.size() <= max;
}

std::string GoRegexp::replace_all(std::string_view src, std::string_view tmpl) const {
  std::string out;
  replace_into(out, src, tmpl, false, std::string::npos);
  return out;
}

std::optional<kms::SecureBytes> GoRegexp::replace_all_secure(std::string_view src, std::string_view repl, bool literal,
                                                             std::size_t max) const {
  kms::SecureBuffer out(src.size());
  if (!replace_into(out, src, repl, literal, max)) return std::nullopt;
  return out.take();
}

std::vector<std::pair<std::size_t, std::size_t>> GoRegexp::find_all(std::string_view s, long n) const {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  if (n < 0) n = static_cast<long>(s.size()) + 1;
  const re2::StringPiece text(s.data(), s.size());
  re2::StringPiece m;
  std::size_t pos = 0;
  std::optional<std::size_t> prev_end;
  while (static_cast<long>(out.size()) < n && pos <= s.size()) {
    if (!re_->Match(text, pos, s.size(), re2::RE2::UNANCHORED, &m, 1)) break;
    const auto begin = static_cast<std::size_t>(m.data() - s.data());
    const std::size_t end = begin + m.size();
    // As in replace_into: Go tries a match only at character boundaries.
    std::size_t at = pos;
    while (at < begin) at += decode_rune(s, at).width;
    if (at != begin) {
      pos = at;
      continue;
    }
    bool accept = true;
    if (end == pos) {
      // An empty match: not right after the previous match; move on a character.
      if (prev_end && begin == *prev_end) accept = false;
      pos += pos < s.size() ? decode_rune(s, pos).width : 1;
    } else {
      pos = end;
    }
    prev_end = end;
    if (accept) out.emplace_back(begin, end);
  }
  return out;
}

namespace {

// Go's name of a JSON value's type in an UnmarshalTypeError.
std::string_view go_type_name(gojson::Kind k) {
  switch (k) {
    case gojson::Kind::string:
      return "string";
    case gojson::Kind::number:
      return "number";
    case gojson::Kind::array:
      return "array";
    case gojson::Kind::boolean:
      return "bool";
    default:
      return "object";
  }
}

// ESO's RewriteMerge: every value (keys sorted, the priority keys last in
// their order) is a JSON object Go decodes into map[string]any (numbers as
// float64); their members are merged, a later one winning. Errors about the
// remote data are `conflict` (retried), about the manifest invalid_argument.
kms::Result<SecretMap> rewrite_merge(const model::RewriteMerge& m, SecretMap in) {
  using gojson::Document;
  std::vector<std::string> order;
  for (const auto& [k, v] : in) {
    if (std::find(m.priority.begin(), m.priority.end(), k) == m.priority.end()) order.push_back(k);
  }
  order.insert(order.end(), m.priority.begin(), m.priority.end());
  std::vector<Document> docs;
  docs.reserve(order.size());
  std::map<std::string, std::pair<std::size_t, Document::Id>, std::less<>> merged;
  std::vector<std::string> conflicts;
  for (const auto& key : order) {
    const auto it = in.find(key);
    if (it == in.end()) {
      if (m.ignore_not_found) continue;
      return kms::fail(Errc::conflict, "merge failed with key \"" + key + "\" not found in input map");
    }
    auto doc = Document::parse(it->second.span());
    if (!doc)
      return kms::fail(Errc::conflict,
                       "merge failed with failed to unmarshal JSON: the value of \"" + key + "\" is not JSON");
    const auto kind = doc->kind(Document::root());
    if (kind == gojson::Kind::null) continue;  // Go: a nil map, nothing to merge
    if (kind != gojson::Kind::object) {
      return kms::fail(Errc::conflict, "merge failed with failed to unmarshal JSON: json: cannot unmarshal " +
                                           std::string(go_type_name(kind)) +
                                           " into Go value of type map[string]interface {}");
    }
    if (!doc->numbers_fit_float64()) {  // Unmarshal into any refuses a number beyond float64, anywhere
      return kms::fail(Errc::conflict,
                       "merge failed with failed to unmarshal JSON: json: cannot unmarshal number into "
                       "Go value of type float64");
    }
    docs.push_back(std::move(*doc));
    const Document& d = docs.back();
    std::map<std::string_view, Document::Id> members;  // one Go map: the last of duplicates
    for (const auto& member : d.members(Document::root())) members[d.string(member.key)] = member.value;
    for (const auto& [k, v] : members) {
      auto [slot, inserted] = merged.try_emplace(std::string(k), docs.size() - 1, v);
      if (!inserted) {
        conflicts.emplace_back(k);
        slot->second = {docs.size() - 1, v};
      }
    }
  }
  if (!m.ignore_conflicts && !conflicts.empty()) {
    std::string list;  // strings.Join(conflicts, ", ")
    for (std::size_t c = 0; c < conflicts.size(); ++c) list += (c == 0 ? "" : ", ") + conflicts[c];
    return kms::fail(Errc::conflict, "merge failed with conflicts: " + list);
  }
  if (!m.json) {  // Extract: the merged members are the map
    SecretMap out;
    for (const auto& [k, where] : merged) {
      SecureBuffer value(32);
      ROOTSEAL_TRY(gojson::byte_value(docs[where.first], where.second, gojson::Numbers::float64, value));
      out.emplace(k, value.take());
    }
    return out;
  }
  if (m.into.empty()) return kms::fail(Errc::invalid_argument, "merge failed with missing 'into' field");
  SecureBuffer object(256);  // esutils.JSONMarshal: no HTML escaping
  object.push_back('{');
  for (const auto& [k, where] : merged) {
    if (object.size() > 1) object.push_back(',');
    gojson::append_go_string(object, k, false);
    object.push_back(':');
    ROOTSEAL_TRY(gojson::marshal(docs[where.first], where.second, gojson::Numbers::float64, object, false));
  }
  object.push_back('}');
  in.insert_or_assign(m.into, object.take());
  return in;
}

}  // namespace

kms::Result<SecretMap> rewrite_map(const std::vector<model::Rewrite>& operations, SecretMap in) {
  for (std::size_t i = 0; i < operations.size(); ++i) {
    const std::string prefix = "failed rewrite operation[" + std::to_string(i) + "]: ";
    SecretMap out;
    if (const auto* re = std::get_if<model::RewriteRegexp>(&operations[i])) {
      auto compiled = GoRegexp::compile(re->source);
      if (!compiled) {
        return kms::fail(Errc::invalid_argument,
                         prefix + "regexp failed with failed to compile: " + compiled.error().message);
      }
      for (auto& [key, value] : in) out.insert_or_assign(compiled->replace_all(key, re->target), std::move(value));
    } else if (const auto* mg = std::get_if<model::RewriteMerge>(&operations[i])) {
      auto merged = rewrite_merge(*mg, std::move(in));
      if (!merged) return kms::fail(merged.error().code, prefix + merged.error().message);
      out = std::move(*merged);
    } else {
      const auto& tr = std::get<model::RewriteTransform>(operations[i]);
      for (auto& [key, value] : in) {
        SecretMap data;
        data.emplace("value", kms::SecureBytes::copy_of(std::string_view(key)));
        auto rendered = render_template(tr.template_text, data);
        if (!rendered) {
          return kms::fail(Errc::invalid_argument,
                           prefix + "transform failed with failed to transform key: " + rendered.error().message);
        }
        out.insert_or_assign(std::string(reinterpret_cast<const char*>(rendered->data()), rendered->size()),
                             std::move(value));
      }
    }
    in = std::move(out);
  }
  return in;
}

kms::Result<SecretMap> convert_keys(SecretMap in) {
  SecretMap out;
  for (auto& [key, value] : in) {
    std::string converted;
    for (std::size_t i = 0; i < key.size();) {
      const Rune r = decode_rune(key, i);
      if (key_char(r.cp)) {
        converted.append(key, i, r.width);
      } else {
        converted.push_back('_');
      }
      i += r.width;
    }
    if (out.contains(converted)) {
      return kms::fail(Errc::invalid_argument, "secret name collision during conversion: " + converted);
    }
    out.emplace(std::move(converted), std::move(value));
  }
  return out;
}

kms::Result<void> validate_keys(SecretMap& in) {
  in.erase("");
  for (const auto& [key, value] : in) {
    if (key.size() > 253) {
      return fail("key has length " + std::to_string(key.size()) +
                  " but max is 253: (following is truncated): " + key.substr(0, 253));
    }
    for (std::size_t i = 0; i < key.size();) {
      const Rune r = decode_rune(key, i);
      if (!key_char(r.cp)) {
        std::string m = "key has invalid character ";
        m += r.cp == 0xFFFD ? std::string("\xEF\xBF\xBD") : key.substr(i, r.width);
        m += ", only alphanumeric, '-', '.' and '_' are allowed: ";
        m += key;
        return fail(std::move(m));
      }
      i += r.width;
    }
  }
  return {};
}

}  // namespace rootseal::sync
