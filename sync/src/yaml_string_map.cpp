#include "yaml_string_map.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "go_json.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "secure_buffer.hpp"

namespace rootseal::sync {

namespace {

using kms::Errc;

std::unexpected<kms::Error> yaml_error(std::size_t line, std::string_view what) {
  return kms::fail(Errc::invalid_argument, "line " + std::to_string(line) + ": " + std::string(what));
}
std::unexpected<kms::Error> unsupported(std::size_t line, std::string_view what) {
  return kms::fail(Errc::invalid_argument, "unsupported YAML at line " + std::to_string(line) + ": " +
                                               std::string(what) +
                                               " (rootseal reads one mapping of `key: value` lines)");
}

bool space(char c) { return c == ' ' || c == '\t'; }

// --- go-yaml v2's resolution of a plain scalar, as a string ------------------

// strconv.ParseInt / ParseUint with base 0 (0x, 0o, 0b prefixes; a leading 0
// is octal). nullopt: not a number of that kind (or out of range).
template <class T>
std::optional<T> go_parse_int(std::string_view s, bool allow_sign) {
  bool neg = false;
  if (allow_sign && !s.empty() && (s.front() == '+' || s.front() == '-')) {
    neg = s.front() == '-';
    s.remove_prefix(1);
  }
  int base = 10;
  if (s.size() >= 2 && s[0] == '0') {
    const char p = static_cast<char>(s[1] | 0x20);
    if (p == 'x') {
      base = 16, s.remove_prefix(2);
    } else if (p == 'b') {
      base = 2, s.remove_prefix(2);
    } else if (p == 'o') {
      base = 8, s.remove_prefix(2);
    } else {
      base = 8, s.remove_prefix(1);
    }
  }
  if (s.empty() || s.front() == '+' || s.front() == '-') return std::nullopt;
  std::uint64_t mag = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), mag, base);
  if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  if constexpr (std::is_signed_v<T>) {
    constexpr std::uint64_t kMax = static_cast<std::uint64_t>(INT64_MAX);
    if (neg) {
      if (mag > kMax + 1) return std::nullopt;
      return mag == kMax + 1 ? INT64_MIN : -static_cast<std::int64_t>(mag);
    }
    if (mag > kMax) return std::nullopt;
    return static_cast<std::int64_t>(mag);
  } else {
    return mag;
  }
}

// go-yaml's yamlStyleFloat: ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$
bool yaml_style_float(std::string_view s) {
  std::size_t i = 0;
  const auto digits = [&] {
    const std::size_t from = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    return i - from;
  };
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (digits() == 0) return false;
  } else {
    if (digits() == 0) return false;
    if (i < s.size() && s[i] == '.') {
      ++i;
      digits();
    }
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (digits() == 0) return false;
  }
  return i == s.size();
}

// strconv.ParseFloat on text yaml_style_float accepted (or ".5"-style): an
// overflow is an error (nullopt), an underflow is zero, as in Go.
std::optional<double> go_parse_float(std::string_view s) {
  const bool neg = !s.empty() && s.front() == '-';
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) s.remove_prefix(1);
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, std::chars_format::general);
  if (end != s.data() + s.size()) return std::nullopt;
  if (ec == std::errc::result_out_of_range) {
    const auto e = s.find_first_of("eE");
    const bool tiny = e != std::string_view::npos && e + 1 < s.size() && s[e + 1] == '-';
    if (!tiny) return std::nullopt;
    v = 0;
  } else if (ec != std::errc{}) {
    return std::nullopt;
  }
  return neg ? -v : v;
}

// Number text is a value's text (a PIN, a port, a key) and so a secret: it is
// built on the stack in one of these, wiped when it goes, and copied only
// into locked memory.
template <std::size_t N>
struct WipedChars {
  std::array<char, N> chars{};
  WipedChars() = default;
  WipedChars(const WipedChars&) = delete;
  WipedChars& operator=(const WipedChars&) = delete;
  ~WipedChars() { kms::secure_zero(chars.data(), chars.size()); }
  [[nodiscard]] char* begin() noexcept { return chars.data(); }
  [[nodiscard]] char* end() noexcept { return chars.data() + chars.size(); }
};

template <class T>
void append_number(SecureBuffer& out, T v) {
  WipedChars<24> buf;
  const auto [end, ec] = std::to_chars(buf.begin(), buf.end(), v);
  out.append(std::string_view(buf.begin(), static_cast<std::size_t>(end - buf.begin())));
}

enum class Kind { string, null, other };
struct Resolved {
  Kind kind = Kind::string;
  SecureBuffer text;  // for Kind::other: the value as sigs.k8s.io/yaml writes it into a string
};

Resolved other(std::string_view text) { return {Kind::other, SecureBuffer(text)}; }
// strconv.FormatFloat(v, 'g', -1, 32), as sigs.k8s.io/yaml turns a YAML
// float into a string.
Resolved other_float(double v) {
  Resolved r{Kind::other, {}};
  gojson::append_format_float(r.text, v, 'g', 32);
  return r;
}
template <class T>
Resolved other_number(T v, bool minus = false) {
  Resolved r{Kind::other, {}};
  if (minus) r.text.push_back('-');
  append_number(r.text, v);
  return r;
}

}  // namespace

// go-yaml v2's resolve() for a plain scalar (yaml_string_map.hpp).
YamlPlain resolve_yaml_plain(std::string_view in) {
  using K = YamlPlain::Kind;
  if (in.empty() || in == "~" || in == "null" || in == "Null" || in == "NULL") return {K::null};
  for (std::string_view t : {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"}) {
    if (in == t) return {K::boolean, true};
  }
  for (std::string_view f : {"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"}) {
    if (in == f) return {K::boolean, false};
  }
  if (in == ".nan" || in == ".NaN" || in == ".NAN") return {K::floating, false, 0, 0, std::nan("")};
  for (std::string_view inf : {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"}) {
    if (in == inf) return {K::floating, false, 0, 0, HUGE_VAL};
  }
  for (std::string_view inf : {"-.inf", "-.Inf", "-.INF"}) {
    if (in == inf) return {K::floating, false, 0, 0, -HUGE_VAL};
  }
  const char h = in.front();
  if (h == '.') {
    // strconv.ParseFloat: an underscore only between two digits.
    SecureBuffer digits(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
      if (in[i] != '_') {
        digits.push_back(in[i]);
      } else if (i == 0 || i + 1 == in.size() || in[i - 1] < '0' || in[i - 1] > '9' || in[i + 1] < '0' ||
                 in[i + 1] > '9') {
        return {};
      }
    }
    const std::string_view d = digits.view();
    if (yaml_style_float(d) && d.substr(1).find('.') == std::string_view::npos) {
      if (auto f = go_parse_float(d)) return {K::floating, false, 0, 0, *f};
    }
    return {};
  }
  if (h != '+' && h != '-' && (h < '0' || h > '9')) return {};
  SecureBuffer without_underscores(in.size());
  for (char c : in) {
    if (c != '_') without_underscores.push_back(c);
  }
  const std::string_view plain = without_underscores.view();
  if (auto i = go_parse_int<std::int64_t>(plain, true)) return {K::int64, false, *i};
  if (auto u = go_parse_int<std::uint64_t>(plain, false)) return {K::uint64, false, 0, *u};
  if (yaml_style_float(plain)) {
    if (auto f = go_parse_float(plain)) return {K::floating, false, 0, 0, *f};
  }
  // go-yaml: "0b…" is ParseInt(rest, 2) then ParseUint(rest, 2); "-0b…" is
  // ParseInt("-" + rest, 2). ParseInt takes one sign of its own.
  std::string_view sd = plain;
  bool minus = false;
  if (sd.starts_with("-0b")) {
    minus = true, sd.remove_prefix(3);
  } else if (sd.starts_with("0b")) {
    sd.remove_prefix(2);
    if (sd.starts_with('-') || sd.starts_with('+')) {
      minus = sd.front() == '-';
      sd.remove_prefix(1);
    }
  } else {
    return {};
  }
  if (!sd.empty() && sd.front() != '+' && sd.front() != '-') {
    std::uint64_t mag = 0;
    auto [end, ec] = std::from_chars(sd.data(), sd.data() + sd.size(), mag, 2);
    if (ec == std::errc{} && end == sd.data() + sd.size()) {
      constexpr auto kMax = static_cast<std::uint64_t>(INT64_MAX);
      if (!minus) {  // ParseInt, or ParseUint beyond int64
        if (mag <= kMax) return {K::int64, false, static_cast<std::int64_t>(mag)};
        return {K::uint64, false, 0, mag};
      }
      if (mag <= kMax + 1) {
        return {K::int64, false, mag == kMax + 1 ? INT64_MIN : -static_cast<std::int64_t>(mag)};
      }
    }
  }
  return {};
}

namespace {

// go-yaml v2's resolve() for a plain scalar, then sigs.k8s.io/yaml's
// conversion of a bool/int/float to a string. Kind::string: the text stays.
Resolved resolve_plain(std::string_view in, bool key) {
  const YamlPlain r = resolve_yaml_plain(in);
  switch (r.kind) {
    case YamlPlain::Kind::string:
      return {Kind::string, {}};
    case YamlPlain::Kind::null:
      return {Kind::null, {}};
    case YamlPlain::Kind::boolean:
      return other(r.b ? "true" : "false");
    case YamlPlain::Kind::int64:
      return other_number(r.i);
    case YamlPlain::Kind::uint64:
      return other_number(r.u);
    case YamlPlain::Kind::floating:
      if (std::isnan(r.f)) return other(key ? ".nan" : "NaN");
      if (std::isinf(r.f)) return other(r.f > 0 ? (key ? ".inf" : "+Inf") : (key ? "-.inf" : "-Inf"));
      return other_float(r.f);
  }
  return {Kind::string, {}};
}

// --- scalars ----------------------------------------------------------------

struct Scalar {
  SecureBuffer text;
  bool plain = false;
};

// The character a one-character escape of a double-quoted scalar stands for
// (YAML 1.2's list, as go-yaml reads it), or nullopt.
std::optional<char32_t> escaped_character(char e) {
  switch (e) {
    case '0':
      return U'\0';
    case 'a':
      return U'\a';
    case 'b':
      return U'\b';
    case 't':
    case '\t':
      return U'\t';
    case 'n':
      return U'\n';
    case 'v':
      return U'\v';
    case 'f':
      return U'\f';
    case 'r':
      return U'\r';
    case 'e':
      return U'\x1b';
    case ' ':
      return U' ';
    case '"':
      return U'"';
    case '\\':
      return U'\\';
    case 'N':
      return U'\x85';
    case '_':
      return U'\xA0';
    case 'L':
      return U'\x2028';
    case 'P':
      return U'\x2029';
    default:
      return std::nullopt;
  }
}

// The escape sequence of a double-quoted scalar at line[i] (the character
// after the backslash), appended to `out`; i is moved past it.
kms::Result<void> unescape(std::string_view line, std::size_t& i, std::size_t n, SecureBuffer& out) {
  if (i >= line.size()) return unsupported(n, "an escaped line break in a double-quoted scalar");
  const char e = line[i++];
  if (const auto c = escaped_character(e)) {
    gojson::append_utf8(out, *c);
    return {};
  }
  const std::size_t hex = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
  if (hex == 0) return yaml_error(n, "found unknown escape character while parsing a quoted scalar");
  if (i + hex > line.size()) return yaml_error(n, "a short escape sequence");
  std::uint32_t cp = 0;
  auto [end, ec] = std::from_chars(line.data() + i, line.data() + i + hex, cp, 16);
  if (ec != std::errc{} || end != line.data() + i + hex)
    return yaml_error(n, "did not find expected hexdecimal number");
  if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
    return yaml_error(n, "found invalid Unicode character escape code");
  gojson::append_utf8(out, cp);
  i += hex;
  return {};
}

// A quoted scalar starting at line[i] (the quote); on success i is past the
// closing quote. A scalar that goes on to the next line is unsupported.
kms::Result<Scalar> quoted(std::string_view line, std::size_t& i, std::size_t n) {
  const char q = line[i++];
  Scalar s;
  while (true) {
    if (i >= line.size()) return unsupported(n, "a quoted scalar that continues on the next line");
    const char c = line[i];
    if (q == '\'') {
      if (c == '\'') {
        if (i + 1 < line.size() && line[i + 1] == '\'') {
          s.text.push_back('\'');
          i += 2;
          continue;
        }
        ++i;
        return s;
      }
      s.text.push_back(c);
      ++i;
      continue;
    }
    if (c == '"') {
      ++i;
      return s;
    }
    if (c != '\\') {
      s.text.push_back(c);
      ++i;
      continue;
    }
    ++i;
    ROOTSEAL_TRY(unescape(line, i, n, s.text));
  }
}

// After a quoted scalar or a value: only blanks and a comment may follow.
bool rest_is_comment(std::string_view line, std::size_t i) {
  bool blank = i == 0 || space(line[i - 1]);
  for (; i < line.size(); ++i) {
    if (space(line[i])) {
      blank = true;
      continue;
    }
    return line[i] == '#' && blank;
  }
  return true;
}

// Characters a plain scalar cannot start with (the flow and node indicators).
bool bad_plain_start(std::string_view s) {
  const char c = s.front();
  if (std::string_view("[]{},#&*!|>%@`").find(c) != std::string_view::npos) return true;
  if ((c == '-' || c == '?' || c == ':') && (s.size() == 1 || space(s[1]))) return true;
  return false;
}

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    if (b < 0x80) {
      n = 1;
    } else if (b >= 0xC2 && b <= 0xDF) {
      n = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      n = 3;
    } else if (b >= 0xF0 && b <= 0xF4) {
      n = 4;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

// One `key: value` line (already without its indentation).
kms::Result<void> entry(std::string_view line, std::size_t n, SecretMap& out) {
  std::size_t i = 0;
  std::string key;
  if (line.front() == '"' || line.front() == '\'') {
    ROOTSEAL_LET(k, quoted(line, i, n));
    key.assign(k.text.view());
    while (i < line.size() && space(line[i])) ++i;
    if (i >= line.size() || line[i] != ':' || (i + 1 < line.size() && !space(line[i + 1]))) {
      return unsupported(n, "a quoted scalar that is not a mapping key");
    }
    ++i;
  } else {
    if (bad_plain_start(line)) return unsupported(n, "a line that does not start with a plain or quoted key");
    std::size_t colon = std::string_view::npos;
    for (std::size_t j = 0; j < line.size(); ++j) {
      if (line[j] == '#' && j > 0 && space(line[j - 1])) break;
      if (line[j] == ':' && (j + 1 == line.size() || space(line[j + 1]))) {
        colon = j;
        break;
      }
    }
    if (colon == std::string_view::npos) return yaml_error(n, "could not find expected ':'");
    std::string_view k = line.substr(0, colon);
    while (!k.empty() && space(k.back())) k.remove_suffix(1);
    const Resolved r = resolve_plain(k, true);
    if (r.kind == Kind::null) return yaml_error(n, "a null mapping key");
    if (k == "<<") return unsupported(n, "a merge key (<<)");
    if (r.kind == Kind::other && r.text.view() == ".nan") return unsupported(n, "a NaN mapping key");
    key = r.kind == Kind::other ? std::string(r.text.view()) : std::string(k);
    i = colon + 1;
  }
  while (i < line.size() && space(line[i])) ++i;
  std::string_view v = line.substr(i);
  if (v.empty() || (v.front() == '#')) {
    out.insert_or_assign(std::move(key), kms::SecureBytes());  // null: ""
    return {};
  }
  if (v.front() == '"' || v.front() == '\'') {
    std::size_t j = 0;
    ROOTSEAL_LET(s, quoted(v, j, n));
    if (!rest_is_comment(v, j)) return yaml_error(n, "did not find expected key");
    out.insert_or_assign(std::move(key), kms::SecureBytes::copy_of(s.text.span()));
    return {};
  }
  if (bad_plain_start(v)) return unsupported(n, "a value that is not a plain or quoted scalar");
  std::size_t end = v.size();
  for (std::size_t j = 1; j < v.size(); ++j) {
    if (v[j] == '#' && space(v[j - 1])) {
      end = j;
      break;
    }
  }
  std::string_view plain = v.substr(0, end);
  while (!plain.empty() && space(plain.back())) plain.remove_suffix(1);
  for (std::size_t j = 0; j < plain.size(); ++j) {
    if (plain[j] == ':' && (j + 1 == plain.size() || space(plain[j + 1]))) {
      return yaml_error(n, "mapping values are not allowed in this context");
    }
  }
  const Resolved r = resolve_plain(plain, false);
  if (r.kind == Kind::null) {
    out.insert_or_assign(std::move(key), kms::SecureBytes());
  } else if (r.kind == Kind::other) {
    out.insert_or_assign(std::move(key), kms::SecureBytes::copy_of(r.text.span()));
  } else {
    out.insert_or_assign(std::move(key), kms::SecureBytes::copy_of(plain));
  }
  return {};
}

}  // namespace

kms::Result<SecretMap> parse_yaml_string_map(std::string_view text) {
  if (!valid_utf8(text)) return yaml_error(1, "invalid UTF-8");
  SecretMap out;
  std::optional<std::size_t> indent;
  bool started = false;
  std::size_t n = 0;
  while (!text.empty() || n == 0) {
    ++n;
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    for (char c : line) {
      const auto u = static_cast<unsigned char>(c);
      if ((u < 0x20 && c != '\t') || u == 0x7F) return yaml_error(n, "control characters are not allowed");
    }
    std::size_t lead = 0;
    while (lead < line.size() && line[lead] == ' ') ++lead;
    const std::string_view body = line.substr(lead);
    if (body.empty() || body.front() == '#') {
      if (text.empty() && nl == std::string_view::npos) break;
      continue;
    }
    if (body.front() == '\t') return unsupported(n, "a tab in the indentation");
    if (!started && lead == 0 && body == "---") {
      started = true;
      continue;
    }
    started = true;
    if (lead == 0 && (body.starts_with("---") || body.starts_with("..."))) {
      return unsupported(n, "more than one document");
    }
    if (!indent) indent = lead;
    if (lead != *indent) return unsupported(n, "a nested or continued line");
    ROOTSEAL_TRY(entry(body, n, out));
    if (text.empty() && nl == std::string_view::npos) break;
  }
  return out;
}

bool yaml_plain_is_string(std::string_view text) { return resolve_plain(text, false).kind == Kind::string; }

}  // namespace rootseal::sync
