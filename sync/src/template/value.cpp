#include "value.hpp"

#include <charconv>
#include <cstdio>

#include "../go_json.hpp"
#include "date_funcs.hpp"

namespace rootseal::sync::tmpl {

using kms::Result;

std::unexpected<kms::Error> fail_at(int line, std::string_view what) {
  return kms::fail(kms::Errc::invalid_argument, "template: line " + std::to_string(line) + ": " + std::string(what));
}

namespace {
std::unexpected<kms::Error> too_big() {
  return kms::fail(kms::Errc::invalid_argument, "template: a value or the output exceeds 8 MiB");
}
}  // namespace

Value nil_value() { return {}; }
Value bool_value(bool b) {
  Value v;
  v.kind = Value::Kind::boolean;
  v.b = b;
  return v;
}
Value int_value(std::int64_t i) {
  Value v;
  v.kind = Value::Kind::integer;
  v.i = i;
  return v;
}
Value float_value(double f) {
  Value v;
  v.kind = Value::Kind::floating;
  v.f = f;
  return v;
}
Value string_value(kms::SecureBytes b) {
  Value v;
  v.kind = Value::Kind::string;
  v.s = std::make_shared<const kms::SecureBytes>(std::move(b));
  return v;
}
Value string_value(std::string_view s) { return string_value(kms::SecureBytes::copy_of(s)); }
Value list_value(List l, bool strings) {
  Value v;
  v.kind = Value::Kind::list;
  v.l = std::make_shared<List>(std::move(l));
  v.strings = strings;
  return v;
}
Value map_value(Map m, bool strings) {
  Value v;
  v.kind = Value::Kind::map;
  v.m = std::make_shared<Map>(std::move(m));
  v.strings = strings;
  return v;
}

std::string Value::type_name() const {
  switch (kind) {
    case Kind::nil:
      return "<nil>";
    case Kind::boolean:
      return "bool";
    case Kind::integer:
      return int64 ? "int64" : "int";
    case Kind::floating:
      return "float64";
    case Kind::string:
      return "string";
    case Kind::list:
      return strings ? "[]string" : "[]interface {}";
    case Kind::map:
      return strings ? "map[string]string" : "map[string]interface {}";
    case Kind::time:
      return "time.Time";
  }
  return "?";
}

bool truth(const Value& v) {
  switch (v.kind) {
    case Value::Kind::nil:
      return false;
    case Value::Kind::boolean:
      return v.b;
    case Value::Kind::integer:
      return v.i != 0;
    case Value::Kind::floating:
      return v.f != 0;
    case Value::Kind::string:
      return !v.str().empty();
    case Value::Kind::list:
      return !v.l->empty();
    case Value::Kind::map:
      return !v.m->empty();
    case Value::Kind::time:
      return true;  // a struct
  }
  return false;
}

namespace {

Result<void> print_inner(const Value& v, SecureBuffer& out, int depth) {
  if (depth > kMaxDepth) return kms::fail(kms::Errc::invalid_argument, "template: value nested too deep");
  if (out.size() > kMaxBytes) return too_big();
  switch (v.kind) {
    case Value::Kind::nil:
      out.append("<nil>");
      break;
    case Value::Kind::boolean:
      out.append(v.b ? "true" : "false");
      break;
    case Value::Kind::integer:
      out.append(std::to_string(v.i));
      break;
    case Value::Kind::floating:
      gojson::append_format_float(out, v.f, 'g', 64);
      break;
    case Value::Kind::string:
      out.append(v.str());
      break;
    case Value::Kind::list: {
      out.append("[");
      bool first = true;
      for (const auto& e : *v.l) {
        if (!first) out.append(" ");
        first = false;
        ROOTSEAL_TRY(print_inner(e, out, depth + 1));
      }
      out.append("]");
      break;
    }
    case Value::Kind::map: {
      out.append("map[");
      bool first = true;
      for (const auto& [k, e] : *v.m) {
        if (!first) out.append(" ");
        first = false;
        out.append(k.span());
        out.append(":");
        ROOTSEAL_TRY(print_inner(e, out, depth + 1));
      }
      out.append("]");
      break;
    }
    case Value::Kind::time:
      ROOTSEAL_TRY(date::print_time(v, out));  // its String method
      break;
  }
  return {};
}

// Code points strconv.Quote escapes although they are valid UTF-8 (not
// unicode.IsPrint): controls, spaces other than ' ', format characters,
// private use, non-characters. Unassigned code points are printed as they are.
bool go_unprintable(char32_t c) {
  return c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0xa0) || c == 0xad || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200f) || (c >= 0x2028 && c <= 0x202f) || (c >= 0x205f && c <= 0x206f) || c == 0x3000 ||
         c == 0xfeff || (c >= 0xfff9 && c <= 0xfffb) || c == 0xfffe || c == 0xffff || (c >= 0xe000 && c <= 0xf8ff) ||
         c >= 0xf0000 || c == 0x61c || c == 0x180e || (c >= 0x600 && c <= 0x605) || c == 0x6dd || c == 0x70f ||
         c == 0x110bd || (c >= 0x1bca0 && c <= 0x1bca3) || (c >= 0x1d173 && c <= 0x1d17a) || c == 0xe0001 ||
         (c >= 0xe0020 && c <= 0xe007f);
}

}  // namespace

std::pair<char32_t, std::size_t> decode_utf8(std::string_view s, std::size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return {b0, 1};
  std::size_t n = 0;
  char32_t cp = 0;
  if ((b0 & 0xe0) == 0xc0) {
    n = 2;
    cp = b0 & 0x1f;
  } else if ((b0 & 0xf0) == 0xe0) {
    n = 3;
    cp = b0 & 0x0f;
  } else if ((b0 & 0xf8) == 0xf0) {
    n = 4;
    cp = b0 & 0x07;
  } else {
    return {0, 0};
  }
  if (i + n > s.size()) return {0, 0};
  for (std::size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xc0) != 0x80) return {0, 0};
    cp = (cp << 6) | (b & 0x3f);
  }
  static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return {0, 0};
  return {cp, n};
}

Result<void> print_value(const Value& v, SecureBuffer& out) {
  if (v.kind == Value::Kind::nil) {
    out.append("<no value>");
    return {};
  }
  ROOTSEAL_TRY(print_inner(v, out, 0));
  if (out.size() > kMaxBytes) return too_big();
  return {};
}

Result<kms::SecureBytes> strval(const Value& v) {
  if (v.kind == Value::Kind::string) return v.s->clone();
  SecureBuffer out(32);
  ROOTSEAL_TRY(print_inner(v, out, 0));
  return out.take();
}

void go_quote(std::string_view s, SecureBuffer& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.append("\"");
  for (std::size_t i = 0; i < s.size();) {
    const auto [cp, n] = decode_utf8(s, i);
    if (n == 0) {
      const auto b = static_cast<unsigned char>(s[i]);
      const char esc[4] = {'\\', 'x', kHex[b >> 4], kHex[b & 15]};
      out.append(std::string_view(esc, 4));
      ++i;
      continue;
    }
    switch (cp) {
      case '\a':
        out.append("\\a");
        break;
      case '\b':
        out.append("\\b");
        break;
      case '\f':
        out.append("\\f");
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
      case '\v':
        out.append("\\v");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '"':
        out.append("\\\"");
        break;
      default:
        if (!go_unprintable(cp)) {
          out.append(s.substr(i, n));
        } else if (cp < 0x80) {
          const char esc[4] = {'\\', 'x', kHex[cp >> 4], kHex[cp & 15]};
          out.append(std::string_view(esc, 4));
        } else {
          char buf[16];
          const int len = cp > 0xffff ? std::snprintf(buf, sizeof buf, "\\U%08x", static_cast<unsigned>(cp))
                                      : std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
          out.append(std::string_view(buf, static_cast<std::size_t>(len)));
        }
    }
    i += n;
  }
  out.append("\"");
}

namespace {
// encoding/json's float64: 'f' between 1e-6 and 1e21, else 'e' with a
// two-digit exponent shortened ("1e-07" -> "1e-7").
void json_float(double f, SecureBuffer& out) {
  const double a = f < 0 ? -f : f;
  if (a == 0 || (a >= 1e-6 && a < 1e21)) {
    gojson::append_format_float(out, f, 'f', 64);
    return;
  }
  SecureBuffer tmp(32);
  gojson::append_format_float(tmp, f, 'g', 64);  // shortest: always with an exponent here
  const kms::SecureBytes text = tmp.take();
  const std::string_view t = as_view(text);
  const auto e = t.find("e-0");
  if (e == std::string_view::npos) {
    out.append(t);
  } else {
    out.append(t.substr(0, e + 2));
    out.append(t.substr(e + 3));
  }
}

void newline(SecureBuffer& out, std::string_view indent, int depth) {
  out.append("\n");
  for (int k = 0; k < depth; ++k) out.append(indent);
}
}  // namespace

Result<void> to_json(const Value& v, SecureBuffer& out, std::string_view indent, bool escape_html, int depth) {
  if (depth > kMaxDepth) return kms::fail(kms::Errc::invalid_argument, "template: value nested too deep");
  if (out.size() > kMaxBytes) return too_big();
  switch (v.kind) {
    case Value::Kind::nil:
      out.append("null");
      break;
    case Value::Kind::boolean:
      out.append(v.b ? "true" : "false");
      break;
    case Value::Kind::integer:
      out.append(std::to_string(v.i));
      break;
    case Value::Kind::floating:
      if (v.f != v.f || v.f - v.f != 0)
        return kms::fail(kms::Errc::invalid_argument, "template: toJson: unsupported value (NaN or infinity)");
      json_float(v.f, out);
      break;
    case Value::Kind::string:
      gojson::append_go_string(out, v.str(), escape_html);
      break;
    case Value::Kind::list: {
      if (v.l->empty()) {
        out.append(v.null_list ? "null" : "[]");
        break;
      }
      out.append("[");
      bool first = true;
      for (const auto& e : *v.l) {
        if (!first) out.append(",");
        first = false;
        if (!indent.empty()) newline(out, indent, depth + 1);
        ROOTSEAL_TRY(to_json(e, out, indent, escape_html, depth + 1));
      }
      if (!indent.empty()) newline(out, indent, depth);
      out.append("]");
      break;
    }
    case Value::Kind::map: {
      if (v.m->empty()) {
        out.append("{}");
        break;
      }
      out.append("{");
      bool first = true;
      for (const auto& [k, e] : *v.m) {
        if (!first) out.append(",");
        first = false;
        if (!indent.empty()) newline(out, indent, depth + 1);
        gojson::append_go_string(out, as_view(k), escape_html);
        out.append(indent.empty() ? ":" : ": ");
        ROOTSEAL_TRY(to_json(e, out, indent, escape_html, depth + 1));
      }
      if (!indent.empty()) newline(out, indent, depth);
      out.append("}");
      break;
    }
    case Value::Kind::time:  // its MarshalJSON: RFC 3339 with nanoseconds
      out.append("\"");
      ROOTSEAL_TRY(date::rfc3339_nano(v, out));
      out.append("\"");
      break;
  }
  return {};
}

namespace {
Result<Value> convert(const gojson::Document& doc, gojson::Document::Id id, int depth) {
  if (depth > kMaxDepth) return kms::fail(kms::Errc::invalid_argument, "template: fromJson: nested too deep");
  switch (doc.kind(id)) {
    case gojson::Kind::null:
      return nil_value();
    case gojson::Kind::boolean:
      return bool_value(doc.raw(id) == "true");
    case gojson::Kind::number: {
      const auto raw = doc.raw(id);
      double f = 0;
      auto [end, ec] = std::from_chars(raw.data(), raw.data() + raw.size(), f);
      if (ec != std::errc{} || end != raw.data() + raw.size()) {
        return kms::fail(kms::Errc::invalid_argument, "template: fromJson: a number does not fit a float64");
      }
      return float_value(f);
    }
    case gojson::Kind::string:
      return string_value(doc.string(id));
    case gojson::Kind::array: {
      List l;
      for (const auto e : doc.elements(id)) {
        ROOTSEAL_LET(x, convert(doc, e, depth + 1));
        l.push_back(std::move(x));
      }
      return list_value(std::move(l));
    }
    case gojson::Kind::object: {
      Map m;
      for (const auto& mem : doc.members(id)) {
        ROOTSEAL_LET(x, convert(doc, mem.value, depth + 1));
        m.insert_or_assign(kms::SecureBytes::copy_of(doc.string(mem.key)), std::move(x));
      }
      return map_value(std::move(m));
    }
  }
  return nil_value();
}
}  // namespace

Result<Value> from_json(std::string_view text) {
  auto doc = gojson::Document::parse(text);
  if (!doc || !doc->numbers_fit_float64()) {
    return kms::fail(kms::Errc::invalid_argument, "template: fromJson: the value is not valid JSON");
  }
  return convert(*doc, gojson::Document::root(), 0);
}

}  // namespace rootseal::sync::tmpl
