#include "go_json.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <system_error>
#include <utility>

namespace rootseal::sync::gojson {

using kms::Errc;

void append_utf8(SecureBuffer& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::optional<char> simple_escape(char e, Escapes set) {
  // One table: the letter, the byte, and which quoted texts accept it.
  struct Escape {
    char letter, byte;
    bool json, go_string, go_char;
  };
  static constexpr Escape kEscapes[] = {
      {'b', '\b', true, true, true},  {'f', '\f', true, true, true},    {'n', '\n', true, true, true},
      {'r', '\r', true, true, true},  {'t', '\t', true, true, true},    {'\\', '\\', true, true, true},
      {'"', '"', true, true, false},  {'/', '/', true, false, false},   {'a', '\a', false, true, true},
      {'v', '\v', false, true, true}, {'\'', '\'', false, false, true},
  };
  for (const auto& x : kEscapes) {
    if (x.letter != e) continue;
    const bool ok = set == Escapes::json ? x.json : set == Escapes::go_string ? x.go_string : x.go_char;
    return ok ? std::optional<char>(x.byte) : std::nullopt;
  }
  return std::nullopt;
}

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Stack text of a number that may be a secret value: wiped when it goes.
struct WipedChars {
  std::array<char, 400> chars{};
  WipedChars() = default;
  WipedChars(const WipedChars&) = delete;
  WipedChars& operator=(const WipedChars&) = delete;
  ~WipedChars() { kms::secure_zero(chars.data(), chars.size()); }
  char* begin() noexcept { return chars.data(); }
  char* end() noexcept { return chars.data() + chars.size(); }
};

// The length of the valid UTF-8 sequence at s[i] (Go's utf8.DecodeRune:
// shortest form, no surrogates, at most U+10FFFF), or 0 if it is not one.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  const auto cont = [&](std::size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(1) >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(1) >= 0x90) return 0;  // beyond U+10FFFF
    return 4;
  }
  return 0;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// strconv.ParseFloat(s, 64) on JSON number text: nullopt when it overflows
// (Go: ErrRange, ±Inf); an underflow is a denormal or ±0 without error, as in Go.
std::optional<double> parse_float64(std::string_view s) {
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, std::chars_format::general);
  if (ec == std::errc{} && end == s.data() + s.size()) return v;
  if (ec != std::errc::result_out_of_range) return std::nullopt;
  // from_chars does not say which end: strtod does (HUGE_VAL on overflow).
  SecureBuffer z(s.size() + 1);
  z.append(s);
  z.push_back('\0');
  errno = 0;
  const double d = std::strtod(z.view().data(), nullptr);
  if (errno == ERANGE && std::isinf(d)) return std::nullopt;
  return d;
}

}  // namespace

void append_format_float(SecureBuffer& out, double v, char fmt, int bits) {
  if (bits == 32) v = static_cast<double>(static_cast<float>(v));  // beyond float32's range: ±Inf, as Go
  if (std::isnan(v)) return out.append("NaN");
  if (std::isinf(v)) return out.append(v > 0 ? "+Inf" : "-Inf");
  // The shortest digits that read back as v (at its size), from to_chars'
  // scientific form [-]d[.ddd]e±XX; C++'s to_chars(fixed) would write the
  // exact value of a large integer instead of Go's digits and zeros.
  WipedChars buf;
  const auto [end, ec] =
      bits == 32 ? std::to_chars(buf.begin(), buf.end(), static_cast<float>(v), std::chars_format::scientific)
                 : std::to_chars(buf.begin(), buf.end(), v, std::chars_format::scientific);
  if (ec != std::errc{}) return;
  const std::string_view sci(buf.begin(), static_cast<std::size_t>(end - buf.begin()));
  const auto e = sci.find('e');
  int exp = 0;
  std::from_chars(sci.data() + e + 2, sci.data() + sci.size(), exp);
  if (sci[e + 1] == '-') exp = -exp;
  if (fmt == 'g' && (exp < -4 || exp >= 6)) return out.append(sci);  // Go's %e: the same shape
  const bool neg = sci.front() == '-';
  WipedChars digit_buf;
  std::size_t n = 0;
  for (const char c : sci.substr(neg ? 1 : 0, e - (neg ? 1 : 0))) {
    if (c != '.') digit_buf.chars[n++] = c;
  }
  const std::string_view digits(digit_buf.begin(), n);
  if (neg) out.push_back('-');
  if (exp < 0) {
    out.append("0.");
    for (int z = 0; z < -exp - 1; ++z) out.push_back('0');
    out.append(digits);
    return;
  }
  const auto point = static_cast<std::size_t>(exp) + 1;
  if (digits.size() <= point) {
    out.append(digits);
    for (std::size_t z = digits.size(); z < point; ++z) out.push_back('0');
  } else {
    out.append(digits.substr(0, point));
    out.push_back('.');
    out.append(digits.substr(point));
  }
}

namespace {

// Go's encoding of a float64 in JSON (encoding/json floatEncoder, 64 bits).
void append_json_float(SecureBuffer& out, double f) {
  const double a = std::fabs(f);
  if (a == 0 || (a >= 1e-6 && a < 1e21)) return append_format_float(out, f, 'f', 64);
  WipedChars buf;
  const auto [end, ec] = std::to_chars(buf.begin(), buf.end(), f, std::chars_format::scientific);
  std::size_t n = ec == std::errc{} ? static_cast<std::size_t>(end - buf.begin()) : 0;
  char* b = buf.begin();
  if (n >= 4 && b[n - 4] == 'e' && b[n - 3] == '-' && b[n - 2] == '0') {  // e-07 -> e-7
    b[n - 2] = b[n - 1];
    --n;
  }
  out.append(std::string_view(b, n));
}

// A number as Go's Unmarshal into float64 and then GetByteValue / Marshal
// writes it; invalid_argument when it does not fit.
kms::Result<double> float64_of(std::string_view raw) {
  auto v = parse_float64(raw);
  if (!v) return kms::fail(Errc::invalid_argument, "a number of the remote value does not fit a float64");
  return *v;
}

constexpr char kHex[] = "0123456789abcdef";

}  // namespace

// Go's encodeState.string (Go 1.22 and later: \b and \f).
void append_json_string(SecureBuffer& out, std::string_view s, JsonStringStyle style) {
  out.push_back('"');
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out.append("\\\"");
          break;
        case '\\':
          out.append("\\\\");
          break;
        case '\n':
          out.append("\\n");
          break;
        case '\r':
          out.append("\\r");
          break;
        case '\t':
          out.append("\\t");
          break;
        case '\b':
          out.append("\\b");
          break;
        case '\f':
          out.append("\\f");
          break;
        default:
          if (c < 0x20 || (style.escape_html && (c == '<' || c == '>' || c == '&'))) {
            const char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
            out.append(std::string_view(esc, 6));
          } else {
            out.push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    if (!style.go_utf8) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    const std::size_t n = utf8_length(s, i);
    if (n == 0) {
      out.append("\\ufffd");
      ++i;
      continue;
    }
    const std::string_view seq = s.substr(i, n);
    if (seq == "\xE2\x80\xA8") {
      out.append("\\u2028");
    } else if (seq == "\xE2\x80\xA9") {
      out.append("\\u2029");
    } else {
      out.append(seq);
    }
    i += n;
  }
  out.push_back('"');
}

// ---- parsing ----------------------------------------------------------------

class Document::Parser {
 public:
  Parser(Document& doc, std::string_view text) : doc_(doc), s_(text) {}

  kms::Result<void> run() {
    skip_space();
    if (!value(0)) return error();
    skip_space();
    if (i_ != s_.size()) return error();
    return {};
  }

 private:
  kms::Result<void> error() const {
    return kms::fail(Errc::invalid_argument, "not valid JSON (at byte " + std::to_string(err_ == 0 ? i_ : err_) + ")");
  }
  bool fail_here() {
    if (err_ == 0) err_ = i_;
    return false;
  }
  std::optional<Id> string_failed() {
    fail_here();
    return std::nullopt;
  }

  void skip_space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }

  Id add(Kind kind, std::size_t from) {
    const auto id = static_cast<Id>(doc_.nodes_.size());
    doc_.nodes_.push_back(Node{kind, static_cast<std::uint32_t>(from), 0, 0, 0});
    return id;
  }
  void close(Id id) { doc_.nodes_[id].raw_size = static_cast<std::uint32_t>(i_ - doc_.nodes_[id].raw_offset); }

  bool literal(std::string_view word, Kind kind) {
    if (s_.substr(i_, word.size()) != word) return fail_here();
    const Id id = add(kind, i_);
    i_ += word.size();
    close(id);
    return true;
  }

  bool value(std::size_t depth) {
    if (i_ >= s_.size()) return fail_here();
    switch (s_[i_]) {
      case '{':
        return object(depth + 1);
      case '[':
        return array(depth + 1);
      case '"':
        return string().has_value();
      case 't':
        return literal("true", Kind::boolean);
      case 'f':
        return literal("false", Kind::boolean);
      case 'n':
        return literal("null", Kind::null);
      default:
        return number();
    }
  }

  bool digits() {
    const std::size_t from = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    return i_ > from;
  }

  bool number() {
    const Id id = add(Kind::number, i_);
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    if (i_ < s_.size() && s_[i_] == '0') {
      ++i_;
    } else if (i_ >= s_.size() || s_[i_] < '1' || s_[i_] > '9' || !digits()) {
      return fail_here();
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (!digits()) return fail_here();
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (!digits()) return fail_here();
    }
    close(id);
    return true;
  }

  // \uXXXX at s_[i_] (after the backslash and 'u'); -1 if malformed.
  long hex4() {
    if (i_ + 4 > s_.size()) return -1;
    long v = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      const int d = hex_digit(s_[i_ + k]);
      if (d < 0) return -1;
      v = v * 16 + d;
    }
    i_ += 4;
    return v;
  }

  std::optional<Id> string() {
    const Id id = add(Kind::string, i_);
    ++i_;  // the quote
    auto& out = doc_.strings_;
    const std::size_t start = out.size();
    while (true) {
      if (i_ >= s_.size()) return string_failed();
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        break;
      }
      if (c < 0x20) return string_failed();
      if (c == '\\') {
        if (i_ + 1 >= s_.size()) return string_failed();
        const char e = s_[i_ + 1];
        i_ += 2;
        if (const auto byte = simple_escape(e, Escapes::json)) {
          out.push_back(*byte);
          continue;
        }
        switch (e) {
          case 'u': {
            const long u = hex4();
            if (u < 0) return string_failed();
            if (u >= 0xD800 && u < 0xDC00) {  // a high surrogate: a low one must follow, else U+FFFD
              if (i_ + 1 < s_.size() && s_[i_] == '\\' && s_[i_ + 1] == 'u') {
                const std::size_t back = i_;
                i_ += 2;
                const long lo = hex4();
                if (lo < 0) return string_failed();
                if (lo >= 0xDC00 && lo < 0xE000) {
                  append_utf8(out, static_cast<char32_t>(0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)));
                  break;
                }
                i_ = back;  // not a pair: the second escape is read on its own
              }
              out.append(kReplacement);
            } else if (u >= 0xDC00 && u < 0xE000) {
              out.append(kReplacement);
            } else {
              append_utf8(out, static_cast<char32_t>(u));
            }
            break;
          }
          default:
            i_ -= 1;
            return string_failed();
        }
        continue;
      }
      if (c < 0x80) {
        out.push_back(static_cast<char>(c));
        ++i_;
        continue;
      }
      const std::size_t n = utf8_length(s_, i_);
      if (n == 0) {
        out.append(kReplacement);
        ++i_;
      } else {
        out.append(s_.substr(i_, n));
        i_ += n;
      }
    }
    auto& node = doc_.nodes_[id];
    node.data_offset = static_cast<std::uint32_t>(start);
    node.data_size = static_cast<std::uint32_t>(out.size() - start);
    close(id);
    return id;
  }

  // An array or object: items read by `read_item` between `[`/`{` and
  // `closer`, separated by commas, stored contiguously in `store`.
  template <class Item, class ReadItem>
  bool container(Kind kind, char closer, std::size_t depth, std::vector<Item>& store, ReadItem read_item) {
    if (depth > kMaxDepth) return fail_here();
    const Id id = add(kind, i_);
    ++i_;
    std::vector<Item> items;
    skip_space();
    if (i_ < s_.size() && s_[i_] == closer) {
      ++i_;
    } else {
      while (true) {
        skip_space();
        const std::optional<Item> item = read_item(depth);
        if (!item) return false;
        items.push_back(*item);
        skip_space();
        if (i_ < s_.size() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == closer) {
          ++i_;
          break;
        }
        return fail_here();
      }
    }
    auto& node = doc_.nodes_[id];
    node.data_offset = static_cast<std::uint32_t>(store.size());
    node.data_size = static_cast<std::uint32_t>(items.size());
    store.insert(store.end(), items.begin(), items.end());
    close(id);
    return true;
  }

  bool array(std::size_t depth) {
    return container(Kind::array, ']', depth, doc_.children_, [this](std::size_t d) -> std::optional<Id> {
      const auto v = static_cast<Id>(doc_.nodes_.size());
      if (!value(d)) return std::nullopt;
      return v;
    });
  }

  bool object(std::size_t depth) {
    return container(Kind::object, '}', depth, doc_.members_, [this](std::size_t d) -> std::optional<Member> {
      if (i_ >= s_.size() || s_[i_] != '"') return member_failed();
      const auto key = string();
      if (!key) return std::nullopt;
      skip_space();
      if (i_ >= s_.size() || s_[i_] != ':') return member_failed();
      ++i_;
      skip_space();
      const auto v = static_cast<Id>(doc_.nodes_.size());
      if (!value(d)) return std::nullopt;
      return Member{*key, v};
    });
  }
  std::optional<Member> member_failed() {
    fail_here();
    return std::nullopt;
  }

  Document& doc_;
  std::string_view s_;
  std::size_t i_ = 0;
  std::size_t err_ = 0;
};

kms::Result<Document> Document::parse(std::span<const std::uint8_t> text) {
  if (text.size() >= std::numeric_limits<std::uint32_t>::max()) {
    return kms::fail(Errc::invalid_argument, "not valid JSON (too large)");
  }
  Document doc;
  doc.text_ = kms::SecureBytes::copy_of(text);
  doc.strings_.reserve(text.size());
  const std::string_view view(reinterpret_cast<const char*>(doc.text_.data()), doc.text_.size());
  Parser parser(doc, view);
  ROOTSEAL_TRY(parser.run());
  return doc;
}

kms::Result<Document> Document::parse(std::string_view text) {
  return parse(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

std::string_view Document::raw(Id id) const noexcept {
  const auto& n = nodes_[id];
  return std::string_view(reinterpret_cast<const char*>(text_.data()), text_.size()).substr(n.raw_offset, n.raw_size);
}

std::string_view Document::string(Id id) const noexcept {
  const auto& n = nodes_[id];
  return strings_.view().substr(n.data_offset, n.data_size);
}

std::span<const Document::Id> Document::elements(Id array) const noexcept {
  const auto& n = nodes_[array];
  return std::span<const Id>(children_).subspan(n.data_offset, n.data_size);
}

std::span<const Document::Member> Document::members(Id object) const noexcept {
  const auto& n = nodes_[object];
  return std::span<const Member>(members_).subspan(n.data_offset, n.data_size);
}

std::optional<Document::Id> Document::last_member(Id object, std::string_view key) const noexcept {
  std::optional<Id> found;
  for (const auto& m : members(object)) {
    if (string(m.key) == key) found = m.value;
  }
  return found;
}

bool Document::numbers_fit_float64() const noexcept {
  for (Id id = 0; id < nodes_.size(); ++id) {
    if (nodes_[id].kind == Kind::number && !parse_float64(raw(id))) return false;
  }
  return true;
}

std::optional<Document::Id> Document::first_member(Id object, std::string_view key) const noexcept {
  for (const auto& m : members(object)) {
    if (string(m.key) == key) return m.value;
  }
  return std::nullopt;
}

// ---- writing ----------------------------------------------------------------

kms::Result<void> marshal(const Document& doc, Document::Id id, Numbers numbers, SecureBuffer& out, bool escape_html) {
  switch (doc.kind(id)) {
    case Kind::null:
    case Kind::boolean:
      out.append(doc.raw(id));
      return {};
    case Kind::string:
      append_go_string(out, doc.string(id), escape_html);
      return {};
    case Kind::number:
      if (numbers == Numbers::as_written) {
        out.append(doc.raw(id));
        return {};
      } else {
        ROOTSEAL_LET(f, float64_of(doc.raw(id)));
        append_json_float(out, f);
        return {};
      }
    case Kind::array: {
      out.push_back('[');
      bool first = true;
      for (const auto e : doc.elements(id)) {
        if (!first) out.push_back(',');
        first = false;
        ROOTSEAL_TRY(marshal(doc, e, numbers, out, escape_html));
      }
      out.push_back(']');
      return {};
    }
    case Kind::object: {
      // A map: sorted keys, the last of duplicates.
      // Member key ids grow in document order, so they break ties stably.
      std::vector<Document::Member> sorted(doc.members(id).begin(), doc.members(id).end());
      std::sort(sorted.begin(), sorted.end(), [&](const auto& a, const auto& b) {
        const auto ka = doc.string(a.key);
        const auto kb = doc.string(b.key);
        return ka != kb ? ka < kb : a.key < b.key;
      });
      out.push_back('{');
      bool first = true;
      for (std::size_t k = 0; k < sorted.size(); ++k) {
        if (k + 1 < sorted.size() && doc.string(sorted[k].key) == doc.string(sorted[k + 1].key)) continue;
        if (!first) out.push_back(',');
        first = false;
        append_go_string(out, doc.string(sorted[k].key), escape_html);
        out.push_back(':');
        ROOTSEAL_TRY(marshal(doc, sorted[k].value, numbers, out, escape_html));
      }
      out.push_back('}');
      return {};
    }
  }
  return {};
}

kms::Result<void> byte_value(const Document& doc, Document::Id id, Numbers numbers, SecureBuffer& out) {
  switch (doc.kind(id)) {
    case Kind::null:
      return {};
    case Kind::boolean:
      out.append(doc.raw(id));
      return {};
    case Kind::string:
      out.append(doc.string(id));
      return {};
    case Kind::number:
      if (numbers == Numbers::as_written) {
        out.append(doc.raw(id));
      } else {
        ROOTSEAL_LET(f, float64_of(doc.raw(id)));
        append_format_float(out, f, 'f', 64);
      }
      return {};
    case Kind::array:
    case Kind::object:
      return marshal(doc, id, numbers, out);
  }
  return {};
}

namespace {

// gjson's unescape of a string's text (quotes included): bytes as they are
// (no UTF-8 check), and a high surrogate escape takes the next escape with it
// whatever it is (an invalid pair is U+FFFD).
void append_gjson_unescaped(SecureBuffer& out, std::string_view raw) {
  const std::string_view s = raw.substr(1, raw.size() - 2);
  const auto rune_at = [&](std::size_t at) {
    long r = 0;
    for (std::size_t k = 0; k < 4; ++k) r = r * 16 + hex_digit(s[at + k]);
    return r;
  };
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out.push_back(s[i]);
      continue;
    }
    const char e = s[++i];
    if (const auto c = simple_escape(e, Escapes::json)) {
      out.push_back(*c);
      continue;
    }
    switch (e) {
      case 'u': {
        long r = rune_at(i + 1);
        i += 4;
        if (r >= 0xD800 && r < 0xE000 && i + 7 <= s.size() && s[i + 1] == '\\' && s[i + 2] == 'u') {
          const long lo = rune_at(i + 3);
          r = r < 0xDC00 && lo >= 0xDC00 && lo < 0xE000 ? 0x10000 + ((r - 0xD800) << 10) + (lo - 0xDC00) : 0xFFFD;
          i += 6;
        } else if (r >= 0xD800 && r < 0xE000) {
          r = 0xFFFD;
        }
        append_utf8(out, static_cast<char32_t>(r));
        break;
      }
      default:  // not reached: the document is valid JSON
        out.push_back(e);
        break;
    }
  }
}

}  // namespace

void gjson_string(const Document& doc, Document::Id id, SecureBuffer& out) {
  switch (doc.kind(id)) {
    case Kind::null:
      return;
    case Kind::boolean:
      out.append(doc.raw(id));
      return;
    case Kind::string:
      return append_gjson_unescaped(out, doc.raw(id));
    case Kind::number: {
      const std::string_view raw = doc.raw(id);
      const std::size_t from = raw.starts_with('-') ? 1 : 0;
      if (raw.find_first_not_of("0123456789", from) == std::string_view::npos) return out.append(raw);
      // gjson's Num: ParseFloat ignoring its error (±Inf on overflow).
      const auto f = parse_float64(raw);
      append_format_float(out, f ? *f : (raw.starts_with('-') ? -HUGE_VAL : HUGE_VAL), 'f', 64);
      return;
    }
    case Kind::array:
    case Kind::object:
      out.append(doc.raw(id));
      return;
  }
}

bool is_plain_gjson_path(std::string_view path) {
  if (path.starts_with("..")) return false;  // JSON Lines
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '\\') {
      ++i;
    } else if (std::string_view("*?#@|!").find(path[i]) != std::string_view::npos) {
      return false;
    }
  }
  return true;
}

namespace {

// The rest of a plain path from `cur`, as gjson walks it: of several members
// with the component's name, the first from which the rest of the path
// exists.
std::optional<Document::Id> walk(const Document& doc, Document::Id cur, std::string_view path) {
  SecureBuffer part(path.size());
  bool digits_only = true;
  std::size_t i = 0;
  for (; i < path.size() && path[i] != '.'; ++i) {
    char c = path[i];
    if (c == '\\' && i + 1 < path.size()) c = path[++i];
    digits_only = digits_only && c >= '0' && c <= '9';
    part.push_back(c);
  }
  const bool last = i >= path.size();
  const std::string_view rest = last ? std::string_view() : path.substr(i + 1);
  if (doc.kind(cur) == Kind::object) {
    for (const auto& m : doc.members(cur)) {
      if (doc.string(m.key) != part.view()) continue;
      if (last) return m.value;
      if (auto found = walk(doc, m.value, rest)) return found;
    }
    return std::nullopt;
  }
  if (doc.kind(cur) == Kind::array && digits_only && !part.empty()) {
    std::size_t index = 0;
    const auto v = part.view();
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), index);
    const auto elements = doc.elements(cur);
    if (ec != std::errc{} || end != v.data() + v.size() || index >= elements.size()) return std::nullopt;
    return last ? std::optional<Document::Id>(elements[index]) : walk(doc, elements[index], rest);
  }
  return std::nullopt;
}

}  // namespace

std::optional<Document::Id> gjson_get(const Document& doc, Document::Id from, std::string_view path) {
  if (!is_plain_gjson_path(path)) return std::nullopt;
  return walk(doc, from, path);
}

}  // namespace rootseal::sync::gojson
