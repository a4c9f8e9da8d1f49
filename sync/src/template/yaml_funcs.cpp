// ESO's toYaml (yaml_funcs.hpp). sigs.k8s.io/yaml's Marshal writes the value
// as encoding/json does, reads that JSON with go-yaml v2 (numbers become
// int, uint64 or float64; strings stay strings) and writes it with go-yaml
// v2's encoder and emitter (emitterc.go, itself libyaml's). This file states
// that emitter for the nodes JSON can produce: block mappings with keys in
// go-yaml's order (sorter.go), block sequences (not indented under a key),
// `{}` / `[]` for empty ones, and scalars in the style the encoder asks for
// (a string with a newline literal, one that would resolve to another type
// double-quoted) and the emitter settles (analyze_scalar, select_scalar_style),
// lines folded past column 80 as go-yaml's writers fold them.
#include "yaml_funcs.hpp"

#include <re2/re2.h>
#include <yaml.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <charconv>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "../go_json.hpp"
#include "../yaml_string_map.hpp"

namespace rootseal::sync::tmpl::yaml {

using kms::Result;

namespace {

// --- go-yaml's character classes (yamlprivateh.go); past the end reads NUL --

std::uint8_t at(std::string_view s, std::size_t i) { return i < s.size() ? static_cast<std::uint8_t>(s[i]) : 0; }

std::size_t width(std::uint8_t b) {
  if ((b & 0x80) == 0) return 1;
  if ((b & 0xe0) == 0xc0) return 2;
  if ((b & 0xf0) == 0xe0) return 3;
  if ((b & 0xf8) == 0xf0) return 4;
  return 1;  // not reached for valid UTF-8 (go-yaml would panic)
}
bool is_space(std::string_view s, std::size_t i) { return at(s, i) == ' '; }
bool is_blank(std::string_view s, std::size_t i) { return at(s, i) == ' ' || at(s, i) == '\t'; }
bool is_break(std::string_view s, std::size_t i) {
  const auto b = at(s, i);
  return b == '\r' || b == '\n' || (b == 0xc2 && at(s, i + 1) == 0x85) ||
         (b == 0xe2 && at(s, i + 1) == 0x80 && (at(s, i + 2) == 0xa8 || at(s, i + 2) == 0xa9));
}
bool is_blankz(std::string_view s, std::size_t i) { return is_blank(s, i) || is_break(s, i) || at(s, i) == 0; }
bool is_printable(std::string_view s, std::size_t i) {
  const auto b = at(s, i);
  const auto b1 = at(s, i + 1);
  const auto b2 = at(s, i + 2);
  return b == 0x0a || (b >= 0x20 && b <= 0x7e) || (b == 0xc2 && b1 >= 0xa0) || (b > 0xc2 && b < 0xed) ||
         (b == 0xed && b1 < 0xa0) || b == 0xee ||
         (b == 0xef && !(b1 == 0xbb && b2 == 0xbf) && !(b1 == 0xbf && (b2 == 0xbe || b2 == 0xbf)));
}
// go-yaml's is_bom looks at the start of the value whatever the position.
bool is_bom(std::string_view s) { return at(s, 0) == 0xef && at(s, 1) == 0xbb && at(s, 2) == 0xbf; }

// --- what the encoder asks for a string (encode.go stringv) ------------------

bool digit(char c) { return c >= '0' && c <= '9'; }

// go-yaml's isBase60Float: ^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$
bool base60_float(std::string_view s) {
  std::size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  if (i >= s.size() || !digit(s[i])) return false;
  while (i < s.size() && (digit(s[i]) || s[i] == '_')) ++i;
  bool group = false;
  while (i < s.size() && s[i] == ':') {
    ++i;
    // [0-5]?[0-9]: one digit, or two with the first 0-5.
    if (i + 1 < s.size() && s[i] >= '0' && s[i] <= '5' && digit(s[i + 1])) {
      i += 2;
    } else if (i < s.size() && digit(s[i])) {
      ++i;
    } else {
      return false;
    }
    group = true;
  }
  if (!group) return false;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && (digit(s[i]) || s[i] == '_')) ++i;
  }
  return i == s.size();
}

// Go's getnum: one digit, or two.
bool getnum(std::string_view& s, int& v) {
  if (s.empty() || !digit(s[0])) return false;
  if (s.size() < 2 || !digit(s[1])) {
    v = s[0] - '0';
    s.remove_prefix(1);
    return true;
  }
  v = (s[0] - '0') * 10 + (s[1] - '0');
  s.remove_prefix(2);
  return true;
}
bool fraction(std::string_view& s) {  // Go's fractional second: [.,] and digits
  if (s.size() >= 2 && (s[0] == '.' || s[0] == ',') && digit(s[1])) {
    std::size_t n = 1;
    while (n < s.size() && digit(s[n])) ++n;
    s.remove_prefix(n);
  }
  return true;
}
bool skip_space(std::string_view& s) {  // a space of a Go layout takes one or more
  if (s.empty() || s[0] != ' ') return false;
  while (!s.empty() && s[0] == ' ') s.remove_prefix(1);
  return true;
}
int days_in(int month, int year) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
  return month == 2 && leap ? 29 : kDays[month - 1];
}

// go-yaml's parseTimestamp: time.Parse with "2006-1-2T15:4:5.999999999Z07:00",
// the same with 't', "2006-1-2 15:4:5.999999999" and "2006-1-2".
bool timestamp(std::string_view s) {
  if (s.size() < 5 || !std::all_of(s.begin(), s.begin() + 4, digit) || s[4] != '-') return false;
  const int year = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
  s.remove_prefix(5);
  int month = 0;
  int day = 0;
  if (!getnum(s, month) || s.empty() || s[0] != '-') return false;
  s.remove_prefix(1);
  if (!getnum(s, day) || month < 1 || month > 12 || day < 1 || day > days_in(month, year)) return false;
  if (s.empty()) return true;
  const char sep = s[0];
  if (sep == 'T' || sep == 't') {
    s.remove_prefix(1);
  } else if (!skip_space(s)) {
    return false;
  }
  int h = 0;
  int m = 0;
  int sec = 0;
  if (!getnum(s, h) || h > 23 || s.empty() || s[0] != ':') return false;
  s.remove_prefix(1);
  if (!getnum(s, m) || m > 59 || s.empty() || s[0] != ':') return false;
  s.remove_prefix(1);
  if (!getnum(s, sec) || sec > 59) return false;
  fraction(s);
  if (sep == ' ') return s.empty();
  if (s == "Z") return true;
  if (s.size() != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':') return false;
  if (!digit(s[1]) || !digit(s[2]) || !digit(s[4]) || !digit(s[5])) return false;
  return (s[1] - '0') * 10 + (s[2] - '0') <= 24 && (s[4] - '0') * 10 + (s[5] - '0') <= 60;
}

// resolve("", s) gives !!str and s is no base 60 float: it can be plain.
bool can_use_plain(std::string_view s) {
  if (!yaml_plain_is_string(s) || base60_float(s)) return false;
  return !timestamp(s);
}

// --- go-yaml's key order (sorter.go keyList.Less for two strings) ------------

// Whether the rune (UTF-8 encoded) matches a one-rune RE2 class.
bool rune_in(char32_t r, const RE2& re) {
  char buf[4];
  std::size_t n = 0;
  if (r < 0x800) {
    buf[n++] = static_cast<char>(0xc0 | (r >> 6));
  } else if (r < 0x10000) {
    buf[n++] = static_cast<char>(0xe0 | (r >> 12));
    buf[n++] = static_cast<char>(0x80 | ((r >> 6) & 0x3f));
  } else {
    buf[n++] = static_cast<char>(0xf0 | (r >> 18));
    buf[n++] = static_cast<char>(0x80 | ((r >> 12) & 0x3f));
    buf[n++] = static_cast<char>(0x80 | ((r >> 6) & 0x3f));
  }
  buf[n++] = static_cast<char>(0x80 | (r & 0x3f));
  const bool in = RE2::FullMatch(std::string_view(buf, n), re);
  kms::secure_zero(buf, sizeof buf);  // a character of a key
  return in;
}
// Go's unicode.IsLetter and unicode.IsDigit.
bool is_letter(char32_t r) {
  if (r < 0x80) return (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z');
  static const RE2 letter("\\pL");
  return rune_in(r, letter);
}
bool is_digit(char32_t r) {
  if (r < 0x80) return r >= '0' && r <= '9';
  static const RE2 nd("\\p{Nd}");
  return rune_in(r, nd);
}

std::vector<char32_t> runes(std::string_view s) {
  std::vector<char32_t> r;
  r.reserve(s.size());  // no reallocation leaves a copy of the key behind
  for (std::size_t i = 0; i < s.size();) {
    const auto [cp, n] = decode_utf8(s, i);
    r.push_back(n == 0 ? U'\uFFFD' : cp);
    i += n == 0 ? 1 : n;
  }
  return r;
}

bool key_less(const std::vector<char32_t>& a, const std::vector<char32_t>& b) {
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (a[i] == b[i]) continue;
    const bool al = is_letter(a[i]);
    const bool bl = is_letter(b[i]);
    if (al && bl) return a[i] < b[i];
    if (al || bl) return bl;
    std::uint64_t an = 0;  // Go's int64 arithmetic, wrapping
    std::uint64_t bn = 0;
    if (a[i] == '0' || b[i] == '0') {
      for (std::size_t j = i; j-- > 0 && is_digit(a[j]);) {
        if (a[j] != '0') {
          an = bn = 1;
          break;
        }
      }
    }
    std::size_t ai = i;
    std::size_t bi = i;
    for (; ai < a.size() && is_digit(a[ai]); ++ai) an = an * 10 + static_cast<std::uint64_t>(a[ai]) - '0';
    for (; bi < b.size() && is_digit(b[bi]); ++bi) bn = bn * 10 + static_cast<std::uint64_t>(b[bi]) - '0';
    if (an != bn) return static_cast<std::int64_t>(an) < static_cast<std::int64_t>(bn);
    if (ai != bi) return ai < bi;
    return a[i] < b[i];
  }
  return a.size() < b.size();
}

// --- what go-yaml's reader and scanner make of the JSON text -----------------

// yaml_parser_update_buffer refuses characters outside YAML's printable set
// ("control characters are not allowed"). encoding/json escapes the C0
// controls but writes DEL, the C1 controls and U+FFFE / U+FFFF as they are.
bool reader_refuses(std::string_view json) {
  for (std::size_t i = 0; i < json.size();) {
    const auto [cp, n] = decode_utf8(json, i);
    if (n == 0) return true;
    i += n;
    if (cp == 0x7f || (cp >= 0x80 && cp <= 0x9f && cp != 0x85) || cp == 0xfffe || cp == 0xffff) return true;
  }
  return false;
}

// A JSON string is a double-quoted YAML scalar: the raw line break NEL
// (U+0085, which encoding/json does not escape) folds as go-yaml's scanner
// folds line breaks there (yaml_parser_scan_flow_scalar): the spaces before
// it go, the blanks after it go, one break becomes a space, more become
// that many newlines less one. "---" or "..." and a blank right after a
// break is a document indicator: an error (false). Other characters of the
// string came escaped or are not blanks.
bool fold_nel(std::string_view s, SecureBuffer& out) {
  const auto nel = [&](std::size_t i) { return at(s, i) == 0xc2 && at(s, i + 1) == 0x85; };
  SecureBuffer whitespaces;
  for (std::size_t i = 0; i < s.size();) {
    while (i < s.size() && s[i] != ' ' && !nel(i)) out.push_back(s[i++]);
    bool leading_blanks = false;
    std::size_t breaks = 0;
    whitespaces.clear();
    while (i < s.size() && (s[i] == ' ' || nel(i))) {
      if (s[i] == ' ') {
        if (!leading_blanks) whitespaces.push_back(' ');
        ++i;
        continue;
      }
      i += 2;
      if (i + 3 < s.size() && (s.substr(i, 3) == "---" || s.substr(i, 3) == "...") && (s[i + 3] == ' ' || nel(i + 3)))
        return false;
      leading_blanks = true;
      ++breaks;
    }
    if (!leading_blanks) {
      out.append(whitespaces.view());
    } else if (breaks == 1) {
      out.push_back(' ');
    } else {
      for (std::size_t k = 1; k < breaks; ++k) out.push_back('\n');
    }
  }
  return true;
}

// --- the emitter (emitterc.go), for one document of JSON's nodes -------------

enum class Style : std::uint8_t { plain, single, dbl, literal };

struct Analysis {
  bool multiline = false;
  bool flow_plain = false;
  bool block_plain = true;
  bool single_quoted = true;
  bool block = false;
};

// yaml_emitter_analyze_scalar (unicode output on, as go-yaml's encoder sets it).
Analysis analyze(std::string_view v) {
  Analysis a;
  if (v.empty()) return a;
  bool block_ind = false;
  bool flow_ind = false;
  bool line_breaks = false;
  bool special = false;
  bool leading_space = false;
  bool leading_break = false;
  bool trailing_space = false;
  bool trailing_break = false;
  bool break_space = false;
  bool space_break = false;
  bool previous_space = false;
  bool previous_break = false;
  if (v.starts_with("---") || v.starts_with("...")) block_ind = flow_ind = true;
  bool preceded_by_ws = true;
  for (std::size_t i = 0, w = 0; i < v.size(); i += w) {
    w = width(at(v, i));
    const bool followed_by_ws = i + w >= v.size() || is_blank(v, i + w);
    const char c = v[i];
    if (i == 0) {
      switch (c) {
        case '#':
        case ',':
        case '[':
        case ']':
        case '{':
        case '}':
        case '&':
        case '*':
        case '!':
        case '|':
        case '>':
        case '\'':
        case '"':
        case '%':
        case '@':
        case '`':
          flow_ind = block_ind = true;
          break;
        case '?':
        case ':':
          flow_ind = true;
          if (followed_by_ws) block_ind = true;
          break;
        case '-':
          if (followed_by_ws) flow_ind = block_ind = true;
          break;
        default:
          break;
      }
    } else {
      switch (c) {
        case ',':
        case '?':
        case '[':
        case ']':
        case '{':
        case '}':
          flow_ind = true;
          break;
        case ':':
          flow_ind = true;
          if (followed_by_ws) block_ind = true;
          break;
        case '#':
          if (preceded_by_ws) flow_ind = block_ind = true;
          break;
        default:
          break;
      }
    }
    if (!is_printable(v, i)) special = true;
    if (is_space(v, i)) {
      if (i == 0) leading_space = true;
      if (i + w == v.size()) trailing_space = true;
      if (previous_break) break_space = true;
      previous_space = true;
      previous_break = false;
    } else if (is_break(v, i)) {
      line_breaks = true;
      if (i == 0) leading_break = true;
      if (i + w == v.size()) trailing_break = true;
      if (previous_space) space_break = true;
      previous_space = false;
      previous_break = true;
    } else {
      previous_space = previous_break = false;
    }
    preceded_by_ws = is_blankz(v, i);
  }
  a.multiline = line_breaks;
  a.flow_plain = a.block_plain = a.single_quoted = a.block = true;
  if (leading_space || leading_break || trailing_space || trailing_break) a.flow_plain = a.block_plain = false;
  if (trailing_space) a.block = false;
  if (break_space) a.flow_plain = a.block_plain = a.single_quoted = false;
  if (space_break || special) a.flow_plain = a.block_plain = a.single_quoted = a.block = false;
  if (line_breaks) a.flow_plain = a.block_plain = false;
  if (flow_ind) a.flow_plain = false;
  if (block_ind) a.block_plain = false;
  return a;
}

class Emitter {
 public:
  Emitter(const gojson::Document& doc, SecureBuffer& out) : doc_(doc), out_(out) {}

  // Whether go-yaml could not read the JSON back (sigs.k8s.io/yaml fails).
  [[nodiscard]] bool unreadable() const noexcept { return unreadable_; }

  Result<void> document() {
    ROOTSEAL_TRY(node(gojson::Document::root(), false, false, 0));
    write_indent();  // the document's end (implicit): the last line ends
    return {};
  }

 private:
  static constexpr int kBestWidth = 80;
  static constexpr int kBestIndent = 2;

  const gojson::Document& doc_;
  SecureBuffer& out_;
  int indent_ = -1;
  std::vector<int> indents_;
  int column_ = 0;
  bool whitespace_ = true;
  bool indention_ = true;
  bool mapping_ = false;
  bool simple_key_ = false;
  bool unreadable_ = false;
  std::deque<SecureBuffer> folded_;

  // A string of the document as go-yaml reads it back (fold_nel).
  std::string_view text(gojson::Document::Id id) {
    const std::string_view s = doc_.string(id);
    if (s.find("\xc2\x85") == std::string_view::npos) return s;
    auto& out = folded_.emplace_back(s.size());
    if (!fold_nel(s, out)) unreadable_ = true;
    return out.view();
  }

  void put(char c) {
    out_.push_back(c);
    ++column_;
  }
  void put_break() {
    out_.push_back('\n');
    column_ = 0;
  }
  void write(std::string_view s, std::size_t& i) {
    const std::size_t w = std::min(width(at(s, i)), s.size() - i);
    out_.append(s.substr(i, w));
    ++column_;
    i += w;
  }
  void write_break(std::string_view s, std::size_t& i) {
    if (s[i] == '\n') {
      put_break();
      ++i;
    } else {
      write(s, i);
      column_ = 0;
    }
  }
  void write_indent() {
    const int indent = std::max(indent_, 0);
    if (!indention_ || column_ > indent || (column_ == indent && !whitespace_)) put_break();
    while (column_ < indent) put(' ');
    whitespace_ = indention_ = true;
  }
  void write_indicator(std::string_view ind, bool need_ws, bool is_ws, bool is_indention) {
    if (need_ws && !whitespace_) put(' ');
    for (std::size_t i = 0; i < ind.size();) write(ind, i);
    whitespace_ = is_ws;
    indention_ = indention_ && is_indention;
  }
  void increase_indent(bool flow, bool indentless) {
    indents_.push_back(indent_);
    if (indent_ < 0) {
      indent_ = flow ? kBestIndent : 0;
    } else if (!indentless) {
      indent_ += kBestIndent;
    }
  }
  void pop_indent() {
    indent_ = indents_.back();
    indents_.pop_back();
  }

  Result<void> node(gojson::Document::Id id, bool map, bool simple_key, int depth) {
    if (depth > kMaxDepth) return kms::fail(kms::Errc::invalid_argument, "template: value nested too deep");
    if (out_.size() > kMaxBytes)
      return kms::fail(kms::Errc::invalid_argument, "template: a value would exceed 8 MiB: refused");
    mapping_ = map, simple_key_ = simple_key;
    switch (doc_.kind(id)) {
      case gojson::Kind::null:
        scalar("null", Style::plain);
        break;
      case gojson::Kind::boolean:
        scalar(doc_.raw(id), Style::plain);
        break;
      case gojson::Kind::number:
        number(doc_.raw(id));
        break;
      case gojson::Kind::string:
        string(text(id));
        break;
      case gojson::Kind::array:
        if (doc_.elements(id).empty()) {
          empty("[", "]");
          break;
        }
        increase_indent(false, mapping_ && !indention_);
        for (const auto e : doc_.elements(id)) {
          write_indent();
          write_indicator("-", true, false, true);
          ROOTSEAL_TRY(node(e, false, false, depth + 1));
        }
        pop_indent();
        break;
      case gojson::Kind::object:
        if (doc_.members(id).empty()) {
          empty("{", "}");
          break;
        }
        ROOTSEAL_TRY(mapping(id, depth));
        break;
    }
    return {};
  }

  void empty(std::string_view open, std::string_view close) {
    write_indicator(open, true, true, false);
    write_indicator(close, false, false, false);
  }

  Result<void> mapping(gojson::Document::Id id, int depth) {
    struct Key {
      std::vector<char32_t> runes;
      gojson::Document::Member member;
    };
    std::vector<Key> keys;
    for (const auto& m : doc_.members(id)) keys.push_back({runes(text(m.key)), m});
    std::sort(keys.begin(), keys.end(), [](const Key& a, const Key& b) { return key_less(a.runes, b.runes); });
    for (auto& k : keys) std::fill(k.runes.begin(), k.runes.end(), U'\0');  // key text: wiped
    increase_indent(false, false);
    for (const auto& k : keys) {
      write_indent();
      const std::string_view key = text(k.member.key);
      const bool simple = !analyze(key).multiline && key.size() <= 128;  // yaml_emitter_check_simple_key
      if (simple) {
        ROOTSEAL_TRY(node(k.member.key, true, true, depth + 1));
        write_indicator(":", false, false, false);
      } else {
        write_indicator("?", true, false, true);
        ROOTSEAL_TRY(node(k.member.key, true, false, depth + 1));
        write_indent();
        write_indicator(":", true, false, true);
      }
      ROOTSEAL_TRY(node(k.member.value, true, false, depth + 1));
    }
    pop_indent();
    return {};
  }

  // go-yaml's reading of a JSON number (resolve: int, then uint64, then
  // float64) and its writing (FormatInt / FormatUint / FormatFloat 'g').
  void number(std::string_view raw) {
    if (raw.find_first_of(".eE") == std::string_view::npos) {
      std::int64_t i = 0;
      std::uint64_t u = 0;
      const char* end = raw.data() + raw.size();
      const auto fits = [&](auto r) { return r.ptr == end && r.ec == std::errc{}; };
      if (fits(std::from_chars(raw.data(), end, i)) || fits(std::from_chars(raw.data(), end, u))) {
        scalar(raw == "-0" ? std::string_view("0") : raw, Style::plain);
        return;
      }
    }
    double f = 0;
    std::from_chars(raw.data(), raw.data() + raw.size(), f);
    SecureBuffer text(32);
    gojson::append_format_float(text, f, 'g', 64);
    scalar(text.view(), Style::plain);
  }

  void string(std::string_view s) {
    if (s.find('\n') != std::string_view::npos) {
      scalar(s, Style::literal);
    } else {
      scalar(s, can_use_plain(s) ? Style::plain : Style::dbl);
    }
  }

  // yaml_emitter_emit_scalar: select_scalar_style, then process_scalar.
  void scalar(std::string_view v, Style style) {
    const Analysis a = analyze(v);
    if (simple_key_ && a.multiline) style = Style::dbl;
    if (style == Style::plain) {
      if (!a.block_plain || (v.empty() && simple_key_)) style = Style::single;
    }
    if (style == Style::single && !a.single_quoted) style = Style::dbl;
    if (style == Style::literal && (!a.block || simple_key_)) style = Style::dbl;
    increase_indent(true, false);
    const bool allow_breaks = !simple_key_;
    switch (style) {
      case Style::plain:
        write_plain_or_single(v, allow_breaks, false);
        break;
      case Style::single:
        write_plain_or_single(v, allow_breaks, true);
        break;
      case Style::dbl:
        write_double(v, allow_breaks);
        break;
      case Style::literal:
        write_literal(v);
        break;
    }
    pop_indent();
  }

  // yaml_emitter_write_plain_scalar, and (quoted) _write_single_quoted_scalar.
  void write_plain_or_single(std::string_view v, bool allow_breaks, bool quoted) {
    if (quoted) {
      write_indicator("'", true, false, false);
    } else if (!whitespace_) {
      put(' ');
    }
    bool spaces = false;
    bool breaks = false;
    for (std::size_t i = 0; i < v.size();) {
      if (is_space(v, i)) {
        const bool inside = !quoted || (i > 0 && i < v.size() - 1);
        if (allow_breaks && !spaces && column_ > kBestWidth && inside && !is_space(v, i + 1)) {
          write_indent();
          i += 1;
        } else {
          write(v, i);
        }
        spaces = true;
      } else if (is_break(v, i)) {
        if (!breaks && v[i] == '\n') put_break();
        write_break(v, i);
        indention_ = true;
        breaks = true;
      } else {
        if (breaks) write_indent();
        if (quoted && v[i] == '\'') put('\'');
        write(v, i);
        indention_ = false;
        spaces = breaks = false;
      }
    }
    if (quoted) write_indicator("'", false, false, false);
    whitespace_ = indention_ = false;
  }

  void escape(std::string_view v, std::size_t& i) {
    const auto [decoded, n] = decode_utf8(v, i);
    const char32_t cp = n == 0 ? static_cast<std::uint8_t>(v[i]) : decoded;
    i += n == 0 ? 1 : n;
    put('\\');
    switch (cp) {
      case 0x00:
        put('0');
        return;
      case 0x07:
        put('a');
        return;
      case 0x08:
        put('b');
        return;
      case 0x09:
        put('t');
        return;
      case 0x0a:
        put('n');
        return;
      case 0x0b:
        put('v');
        return;
      case 0x0c:
        put('f');
        return;
      case 0x0d:
        put('r');
        return;
      case 0x1b:
        put('e');
        return;
      case 0x22:
        put('"');
        return;
      case 0x5c:
        put('\\');
        return;
      case 0x85:
        put('N');
        return;
      case 0xa0:
        put('_');
        return;
      case 0x2028:
        put('L');
        return;
      case 0x2029:
        put('P');
        return;
      default:
        break;
    }
    int digits = 8;
    if (cp <= 0xff) {
      put('x'), digits = 2;
    } else if (cp <= 0xffff) {
      put('u'), digits = 4;
    } else {
      put('U');
    }
    for (int k = (digits - 1) * 4; k >= 0; k -= 4) put("0123456789ABCDEF"[(cp >> k) & 0x0f]);
  }

  void write_double(std::string_view v, bool allow_breaks) {
    bool spaces = false;
    write_indicator("\"", true, false, false);
    for (std::size_t i = 0; i < v.size();) {
      if (!is_printable(v, i) || is_bom(v) || is_break(v, i) || v[i] == '"' || v[i] == '\\') {
        escape(v, i);
        spaces = false;
      } else if (is_space(v, i)) {
        if (allow_breaks && !spaces && column_ > kBestWidth && i > 0 && i < v.size() - 1) {
          write_indent();
          if (is_space(v, i + 1)) put('\\');
          i += 1;
        } else {
          write(v, i);
        }
        spaces = true;
      } else {
        write(v, i);
        spaces = false;
      }
    }
    write_indicator("\"", false, false, false);
    whitespace_ = indention_ = false;
  }

  void write_literal(std::string_view v) {
    write_indicator("|", true, false, false);
    // yaml_emitter_write_block_scalar_hints
    if (is_space(v, 0) || is_break(v, 0)) write_indicator("2", false, false, false);
    std::size_t i = v.size() - 1;
    while ((at(v, i) & 0xc0) == 0x80) --i;
    if (!is_break(v, i)) {
      write_indicator("-", false, false, false);
    } else if (i == 0) {
      write_indicator("+", false, false, false);
    } else {
      --i;
      while ((at(v, i) & 0xc0) == 0x80) --i;
      if (is_break(v, i)) write_indicator("+", false, false, false);
    }
    put_break();
    indention_ = whitespace_ = true;
    bool breaks = true;
    for (std::size_t k = 0; k < v.size();) {
      if (is_break(v, k)) {
        write_break(v, k);
        indention_ = true;
        breaks = true;
      } else {
        if (breaks) write_indent();
        write(v, k);
        indention_ = false;
        breaks = false;
      }
    }
  }
};

}  // namespace

Result<Value> to_yaml(const Value& v) {
  SecureBuffer json(64);
  if (auto r = to_json(v, json, "", true); !r) {
    // encoding/json's refusals (NaN, an infinity) give "", as in ESO; the
    // engine's own caps stay errors.
    if (r.error().message.find("NaN or infinity") != std::string::npos) return string_value(std::string_view());
    return std::unexpected(r.error());
  }
  if (reader_refuses(json.view())) return string_value(std::string_view());
  auto doc = gojson::Document::parse(json.view());
  if (!doc) return kms::fail(kms::Errc::invalid_argument, "template: toYaml: the value is not valid JSON");
  SecureBuffer out(json.size() + 16);
  Emitter emitter(*doc, out);
  ROOTSEAL_TRY(emitter.document());
  if (emitter.unreadable()) return string_value(std::string_view());
  if (out.size() > kMaxBytes)
    return kms::fail(kms::Errc::invalid_argument, "template: a value would exceed 8 MiB: refused");
  if (out.size() > 0 && out.view().back() == '\n') out.pop(1);
  return string_value(out.take());
}

// --- fromYaml ----------------------------------------------------------------
//
// sigs.k8s.io/yaml's Unmarshal into a map[string]interface{}: go-yaml v2
// reads the first document (its parser is a port of libyaml's, which reads
// it here: the same events), decodes it into interface{} values (decode.go:
// YAML 1.1 resolution of plain scalars, `<<` merges, aliases), the keys are
// turned into strings, encoding/json writes the tree and reads it back
// (every number a float64). ESO puts an error's text in the map under
// "Error"; rootseal writes Go's text for the parse errors (libyaml's
// problems are go-yaml's) and the JSON steps, and refuses the rest
// ("fromYaml: refused").

namespace {

constexpr std::size_t kNoNode = ~std::size_t{0};

// go-yaml's node tree (yaml.go's node): scalars, sequences, mappings, and
// aliases naming the node their anchor stood on.
struct YamlNode {
  enum class Kind : std::uint8_t { scalar, sequence, mapping, alias };
  Kind kind = Kind::scalar;
  kms::SecureBytes text;  // scalar
  bool plain = false;     // a plain scalar without a tag: resolved
  std::vector<std::size_t> children;
  std::size_t alias = kNoNode;
};

kms::Error refused(std::string_view what) {
  return kms::Error{kms::Errc::invalid_argument, "template: fromYaml: refused: " + std::string(what)};
}

// libyaml's parser over the text, its buffers wiped before they are freed
// (scalars are copied into locked memory as they come).
class YamlReader {
 public:
  explicit YamlReader(std::string_view text) {
    yaml_parser_initialize(&parser_);
    static constexpr unsigned char kEmpty[1] = {0};
    yaml_parser_set_input_string(&parser_, text.empty() ? kEmpty : reinterpret_cast<const unsigned char*>(text.data()),
                                 text.size());
  }
  YamlReader(const YamlReader&) = delete;
  YamlReader& operator=(const YamlReader&) = delete;
  ~YamlReader() {
    if (has_event_) drop_event();
    for (auto* t = parser_.tokens.head; t != parser_.tokens.tail; ++t) {
      if (t->type == YAML_SCALAR_TOKEN && t->data.scalar.value != nullptr) {
        kms::secure_zero(t->data.scalar.value, t->data.scalar.length);
      }
    }
    if (parser_.raw_buffer.start != nullptr) {
      kms::secure_zero(parser_.raw_buffer.start,
                       static_cast<std::size_t>(parser_.raw_buffer.end - parser_.raw_buffer.start));
    }
    if (parser_.buffer.start != nullptr) {
      kms::secure_zero(parser_.buffer.start, static_cast<std::size_t>(parser_.buffer.end - parser_.buffer.start));
    }
    yaml_parser_delete(&parser_);
  }

  // The first document's tree; kNoNode for an empty stream.
  Result<std::size_t> document() {
    ROOTSEAL_TRY(next());
    if (event_.type != YAML_STREAM_START_EVENT) return std::unexpected(refused("no stream"));
    ROOTSEAL_TRY(next());
    if (event_.type == YAML_STREAM_END_EVENT) return kNoNode;
    if (event_.type != YAML_DOCUMENT_START_EVENT) return std::unexpected(refused("no document"));
    if (event_.data.document_start.version_directive != nullptr ||
        event_.data.document_start.tag_directives.start != event_.data.document_start.tag_directives.end) {
      return std::unexpected(refused("a %YAML or %TAG directive"));
    }
    ROOTSEAL_TRY(next());
    ROOTSEAL_LET(root, node(0));
    ROOTSEAL_TRY(next());
    if (event_.type != YAML_DOCUMENT_END_EVENT) return std::unexpected(refused("no document end"));
    return root;
  }

  std::deque<YamlNode> nodes;
  std::string go_error;  // set with a parse error: ESO's "Error" text

 private:
  void drop_event() {
    if (event_.type == YAML_SCALAR_EVENT && event_.data.scalar.value != nullptr) {
      kms::secure_zero(event_.data.scalar.value, event_.data.scalar.length);
    }
    yaml_event_delete(&event_);
    has_event_ = false;
  }
  Result<void> next() {
    if (has_event_) drop_event();
    if (yaml_parser_parse(&parser_, &event_) == 0) {
      // go-yaml's text of a scanner or parser error (yaml.go's fail()): the
      // problem, a fixed text that quotes nothing, after a line number.
      if (parser_.error == YAML_SCANNER_ERROR || parser_.error == YAML_PARSER_ERROR) {
        std::size_t line = 0;
        if (parser_.problem_mark.line != 0) {
          line = parser_.problem_mark.line + (parser_.error == YAML_SCANNER_ERROR ? 1 : 0);
        } else if (parser_.context_mark.line != 0) {
          line = parser_.context_mark.line;
        }
        go_error = "error converting YAML to JSON: yaml: " + (line != 0 ? "line " + std::to_string(line) + ": " : "") +
                   (parser_.problem != nullptr ? parser_.problem : "unknown problem parsing YAML content");
      }
      return std::unexpected(refused("text go-yaml's reader refuses (not UTF-8, or control characters)"));
    }
    has_event_ = true;
    return {};
  }
  static bool tagged(const unsigned char* tag) { return tag != nullptr; }
  Result<void> anchor(const unsigned char* a, std::size_t id) {
    if (a != nullptr) anchors_[reinterpret_cast<const char*>(a)] = id;
    return {};
  }

  // The node whose first event is the current one.
  Result<std::size_t> node(int depth) {
    if (depth > kMaxDepth) return std::unexpected(refused("nested too deep"));
    const std::size_t id = nodes.size();
    switch (event_.type) {
      case YAML_ALIAS_EVENT: {
        const auto it = anchors_.find(reinterpret_cast<const char*>(event_.data.alias.anchor));
        if (it == anchors_.end()) return std::unexpected(refused("an alias of an unknown anchor"));
        nodes.push_back(YamlNode{YamlNode::Kind::alias, {}, false, {}, it->second});
        return id;
      }
      case YAML_SCALAR_EVENT: {
        const auto& sc = event_.data.scalar;
        if (tagged(sc.tag)) return std::unexpected(refused("a tag is not supported"));
        nodes.push_back(
            YamlNode{YamlNode::Kind::scalar,
                     kms::SecureBytes::copy_of(std::string_view(reinterpret_cast<const char*>(sc.value), sc.length)),
                     sc.plain_implicit != 0 && sc.style == YAML_PLAIN_SCALAR_STYLE,
                     {},
                     kNoNode});
        ROOTSEAL_TRY(anchor(sc.anchor, id));
        return id;
      }
      case YAML_SEQUENCE_START_EVENT:
      case YAML_MAPPING_START_EVENT: {
        const bool seq = event_.type == YAML_SEQUENCE_START_EVENT;
        if (tagged(seq ? event_.data.sequence_start.tag : event_.data.mapping_start.tag)) {
          return std::unexpected(refused("a tag is not supported"));
        }
        nodes.push_back(YamlNode{seq ? YamlNode::Kind::sequence : YamlNode::Kind::mapping, {}, false, {}, kNoNode});
        // go-yaml names the node before its children (an alias inside it
        // is the node itself).
        ROOTSEAL_TRY(anchor(seq ? event_.data.sequence_start.anchor : event_.data.mapping_start.anchor, id));
        const auto end = seq ? YAML_SEQUENCE_END_EVENT : YAML_MAPPING_END_EVENT;
        for (;;) {
          ROOTSEAL_TRY(next());
          if (event_.type == end) break;
          ROOTSEAL_LET(child, node(depth + 1));
          nodes[id].children.push_back(child);
        }
        return id;
      }
      default:
        return std::unexpected(refused("an unexpected event"));
    }
  }

  yaml_parser_t parser_{};
  yaml_event_t event_{};
  bool has_event_ = false;
  std::map<std::string, std::size_t> anchors_;
};

// go-yaml v2's decoder into interface{} (decode.go), then sigs.k8s.io/yaml's
// keys as strings and encoding/json's round trip.
class YamlDecoder {
 public:
  explicit YamlDecoder(const std::deque<YamlNode>& nodes) : nodes_(nodes) {}

  std::string go_error;  // set with go-yaml's own failures: ESO's "Error" text

  Result<Value> decode(std::size_t id, int depth) {
    if (depth > kMaxDepth) return std::unexpected(refused("nested too deep"));
    ROOTSEAL_TRY(count());
    const YamlNode& n = nodes_[id];
    switch (n.kind) {
      case YamlNode::Kind::alias: {
        if (std::find(active_.begin(), active_.end(), n.alias) != active_.end()) {
          return std::unexpected(refused("an anchor's value contains itself"));
        }
        active_.push_back(n.alias);
        ++alias_depth_;
        auto v = decode(n.alias, depth + 1);
        --alias_depth_;
        active_.pop_back();
        return v;
      }
      case YamlNode::Kind::scalar:
        return scalar(n);
      case YamlNode::Kind::sequence: {
        List l;
        l.reserve(n.children.size());
        for (const auto c : n.children) {
          ROOTSEAL_LET(v, decode(c, depth + 1));
          l.push_back(std::move(v));
        }
        return list_value(std::move(l));
      }
      case YamlNode::Kind::mapping: {
        Map m;
        std::map<kms::SecureBytes, Key, KeyLess> kinds;
        ROOTSEAL_TRY(mapping(id, m, kinds, depth));
        return map_value(std::move(m));
      }
    }
    return nil_value();
  }

 private:
  // The Go type of a key before sigs.k8s.io/yaml made it a string.
  enum class Key : std::uint8_t { string, integer, boolean };

  // A failure go-yaml's decoder states in a fixed text (decode.go failf).
  std::unexpected<kms::Error> go_fail(std::string_view what) {
    go_error = "error converting YAML to JSON: yaml: " + std::string(what);
    return std::unexpected(refused(what));
  }

  // go-yaml's unmarshal() counts each node it decodes, and refuses alias
  // bombs (decode.go allowedAliasRatio).
  Result<void> count() {
    ++decode_count_;
    if (alias_depth_ > 0) ++alias_count_;
    if (alias_count_ > 100 && decode_count_ > 1000 &&
        static_cast<double>(alias_count_) / static_cast<double>(decode_count_) > allowed_alias_ratio()) {
      return go_fail("document contains excessive aliasing");
    }
    if (decode_count_ > kMaxSteps) return std::unexpected(refused("too much work"));
    return {};
  }

  double allowed_alias_ratio() const {
    constexpr double kMin = 400000, kMax = 4000000;
    if (static_cast<double>(decode_count_) <= kMin) return 0.99;
    if (static_cast<double>(decode_count_) >= kMax) return 0.10;
    return 0.99 - 0.89 * ((static_cast<double>(decode_count_) - kMin) / (kMax - kMin));
  }

  static Result<Value> scalar(const YamlNode& n) {
    if (!n.plain) return string_value(kms::SecureBytes::copy_of(as_view(n.text)));
    const YamlPlain r = resolve_yaml_plain(as_view(n.text));
    switch (r.kind) {
      case YamlPlain::Kind::string:
        return string_value(kms::SecureBytes::copy_of(as_view(n.text)));
      case YamlPlain::Kind::null:
        return nil_value();
      case YamlPlain::Kind::boolean:
        return bool_value(r.b);
      // encoding/json writes the integer, json.Unmarshal reads a float64.
      case YamlPlain::Kind::int64:
        return float_value(static_cast<double>(r.i));
      case YamlPlain::Kind::uint64:
        return float_value(static_cast<double>(r.u));
      case YamlPlain::Kind::floating:
        return float_value(r.f);
    }
    return nil_value();
  }

  // strconv.Itoa, written digit by digit into locked memory (the key is text
  // of the document).
  static kms::SecureBytes itoa(std::int64_t i) {
    SecureBuffer out(24);
    if (i < 0) out.push_back('-');
    const std::uint64_t mag = i < 0 ? 0 - static_cast<std::uint64_t>(i) : static_cast<std::uint64_t>(i);
    std::uint64_t p = 1;
    while (mag / p >= 10) p *= 10;
    for (; p != 0; p /= 10) out.push_back(static_cast<char>('0' + mag / p % 10));
    return out.take();
  }

  bool is_merge(std::size_t id) const {
    const YamlNode& k = nodes_[id];
    return k.kind == YamlNode::Kind::scalar && k.plain && as_view(k.text) == "<<";
  }
  const YamlNode& target(std::size_t id) const {
    const YamlNode& n = nodes_[id];
    return n.kind == YamlNode::Kind::alias ? nodes_[n.alias] : n;
  }

  // go-yaml v2's mapping(): pairs in order, a later key replacing an earlier
  // one, a merge key's maps decoded into this map where it stands.
  Result<void> mapping(std::size_t id, Map& m, std::map<kms::SecureBytes, Key, KeyLess>& kinds, int depth) {
    const auto& ch = nodes_[id].children;
    for (std::size_t i = 0; i + 1 < ch.size(); i += 2) {
      if (is_merge(ch[i])) {
        ROOTSEAL_TRY(merge(ch[i + 1], m, kinds, depth));
        continue;
      }
      // Decoded for go-yaml's counts; the key's string is sigs.k8s.io/yaml's.
      if (auto counted = decode(ch[i], depth + 1); !counted) return std::unexpected(counted.error());
      const YamlNode& k = target(ch[i]);
      if (k.kind != YamlNode::Kind::scalar) return std::unexpected(refused("a sequence or a mapping as a key"));
      const YamlPlain r = k.plain ? resolve_yaml_plain(as_view(k.text)) : YamlPlain{};
      Key kind = Key::string;
      kms::SecureBytes name;
      switch (r.kind) {
        case YamlPlain::Kind::string:
          name = kms::SecureBytes::copy_of(as_view(k.text));
          break;
        case YamlPlain::Kind::boolean:
          kind = Key::boolean;
          name = kms::SecureBytes::copy_of(std::string_view(r.b ? "true" : "false"));
          break;
        case YamlPlain::Kind::int64: {  // strconv.Itoa
          kind = Key::integer;
          name = itoa(r.i);
          break;
        }
        default:  // null: Go's error quotes the value; uint64 likewise; float: FormatFloat 'g' 32
          return std::unexpected(refused("a key that reads as null, a float or an integer past int64"));
      }
      ROOTSEAL_LET(value, decode(ch[i + 1], depth + 1));
      ROOTSEAL_TRY(set(m, kinds, std::move(name), kind, std::move(value)));
    }
    return {};
  }

  static Result<void> set(Map& m, std::map<kms::SecureBytes, Key, KeyLess>& kinds, kms::SecureBytes name, Key kind,
                          Value value) {
    const auto k = kinds.find(as_view(name));
    if (k != kinds.end() && k->second != kind) {
      // Two Go keys (1 and "1") made one string: Go's map order picks.
      return std::unexpected(refused("keys of different types that read as the same string"));
    }
    kinds.insert_or_assign(kms::SecureBytes::copy_of(as_view(name)), kind);
    m.insert_or_assign(std::move(name), std::move(value));
    return {};
  }

  Result<void> merge(std::size_t id, Map& m, std::map<kms::SecureBytes, Key, KeyLess>& kinds, int depth) {
    const YamlNode& n = nodes_[id];
    const auto into = [&](std::size_t mid) -> Result<void> {
      if (target(mid).kind != YamlNode::Kind::mapping) {
        return go_fail("map merge requires map or sequence of maps as the value");
      }
      // Decoded as go-yaml does (its counts, an alias's cycle check), into m.
      const std::size_t map_id = nodes_[mid].kind == YamlNode::Kind::alias ? nodes_[mid].alias : mid;
      ROOTSEAL_TRY(count());
      if (nodes_[mid].kind == YamlNode::Kind::alias) {
        if (std::find(active_.begin(), active_.end(), map_id) != active_.end()) {
          return std::unexpected(refused("an anchor's value contains itself"));
        }
        active_.push_back(map_id);
        ++alias_depth_;
        auto r = count();
        if (r) r = mapping(map_id, m, kinds, depth + 1);
        --alias_depth_;
        active_.pop_back();
        return r;
      }
      return mapping(map_id, m, kinds, depth + 1);
    };
    if (n.kind == YamlNode::Kind::sequence) {
      // Backwards: an earlier map takes precedence.
      for (std::size_t i = n.children.size(); i-- > 0;) {
        if (nodes_[n.children[i]].kind != YamlNode::Kind::alias &&
            nodes_[n.children[i]].kind != YamlNode::Kind::mapping) {
          return go_fail("map merge requires map or sequence of maps as the value");
        }
        ROOTSEAL_TRY(into(n.children[i]));
      }
      return {};
    }
    return into(id);
  }

  const std::deque<YamlNode>& nodes_;
  std::size_t decode_count_ = 1;  // go-yaml counts the document node too
  std::size_t alias_count_ = 0;
  int alias_depth_ = 0;
  std::vector<std::size_t> active_;  // the anchors being decoded through aliases
};

// encoding/json's refusal of a NaN or an infinity, the first in its order
// (keys sorted, as the Map holds them).
const Value* non_finite(const Value& v) {
  if (v.kind == Value::Kind::floating) return std::isfinite(v.f) ? nullptr : &v;
  if (v.kind == Value::Kind::list) {
    for (const auto& e : *v.l) {
      if (const auto* r = non_finite(e)) return r;
    }
  }
  if (v.kind == Value::Kind::map) {
    for (const auto& [k, e] : *v.m) {
      if (const auto* r = non_finite(e)) return r;
    }
  }
  return nullptr;
}

Value error_map(std::string_view text) {
  Map m;
  m.emplace(kms::SecureBytes::copy_of(std::string_view("Error")), string_value(text));
  return map_value(std::move(m));
}

}  // namespace

Result<Value> from_yaml(std::string_view text) {
  YamlReader reader(text);
  auto doc = reader.document();
  if (!doc && !reader.go_error.empty()) return error_map(reader.go_error);
  if (!doc) return std::unexpected(doc.error());
  const std::size_t root = *doc;
  if (root == kNoNode) return map_value(Map{});
  YamlDecoder decoder(reader.nodes);
  auto decoded = decoder.decode(root, 0);
  if (!decoded && !decoder.go_error.empty()) return error_map(decoder.go_error);
  if (!decoded) return std::unexpected(decoded.error());
  const Value& v = *decoded;
  if (const auto* bad = non_finite(v)) {
    return error_map(std::isnan(bad->f) ? "error converting YAML to JSON: json: unsupported value: NaN"
                     : bad->f > 0       ? "error converting YAML to JSON: json: unsupported value: +Inf"
                                        : "error converting YAML to JSON: json: unsupported value: -Inf");
  }
  const char* json_type = nullptr;
  switch (v.kind) {
    case Value::Kind::map:
      return v;
    case Value::Kind::nil:
      return map_value(Map{});
    case Value::Kind::string:
      json_type = "string";
      break;
    case Value::Kind::boolean:
      json_type = "bool";
      break;
    case Value::Kind::floating:
      json_type = "number";
      break;
    default:
      json_type = "array";
      break;
  }
  return error_map(std::string("error unmarshaling JSON: while decoding JSON: json: cannot unmarshal ") + json_type +
                   " into Go value of type map[string]interface {}");
}

}  // namespace rootseal::sync::tmpl::yaml
