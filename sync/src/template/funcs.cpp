// The functions: text/template's builtins and the Sprig functions of
// docs/sync.md, each with Go's parameter types (a string parameter wants a
// string, an int one an int or an integral number literal) and Sprig's
// behaviour. Where Go would differ on text rootseal cannot treat the same
// way (Unicode case mapping, for one), the function refuses the input.
#include <crypt.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <cstdio>
#include <functional>
#include <unordered_map>

#include "../rewrite.hpp"
#include "ast.hpp"
#include "date_funcs.hpp"
#include "eso_funcs.hpp"
#include "yaml_funcs.hpp"
#include "rootseal/kms/encoding.hpp"

namespace rootseal::sync::tmpl {

using kms::Result;

namespace {

std::unexpected<kms::Error> fn_fail(std::string_view what) {
  return kms::fail(kms::Errc::invalid_argument, "template: " + std::string(what));
}

using Args = std::vector<Value>;
using Impl = std::function<Result<Value>(Args&)>;

struct Fn {
  // One letter a parameter: s string, i int, b bool, a any, m
  // map[string]interface{}, t time.Time; a trailing '.' makes the last one
  // variadic.
  std::string_view params;
  Impl impl;
};

Result<void> check_args(std::string_view name, std::string_view params, Args& args) {
  const bool variadic = params.ends_with('.');
  if (variadic) params.remove_suffix(1);
  const std::size_t fixed = variadic ? params.size() - 1 : params.size();
  if ((!variadic && args.size() != fixed) || (variadic && args.size() < fixed)) {
    return fn_fail("wrong number of args for " + std::string(name) + ": want " + (variadic ? "at least " : "") +
                   std::to_string(fixed) + " got " + std::to_string(args.size()));
  }
  for (std::size_t k = 0; k < args.size(); ++k) {
    const char p = params[std::min(k, params.size() - 1)];
    Value& v = args[k];
    const auto wrong = [&](std::string_view want) {
      if (v.kind == Value::Kind::nil)
        return fn_fail("error calling " + std::string(name) + ": invalid value; expected " + std::string(want));
      return fn_fail("error calling " + std::string(name) + ": wrong type for value; expected " + std::string(want) +
                     "; got " + v.type_name());
    };
    switch (p) {
      case 's':
        if (v.kind != Value::Kind::string) return wrong("string");
        break;
      case 'i':
        if (v.kind == Value::Kind::floating && v.literal &&
            v.f == static_cast<double>(static_cast<std::int64_t>(v.f))) {
          v = int_value(static_cast<std::int64_t>(v.f));
        }
        if (v.kind != Value::Kind::integer || v.int64) return wrong("int");
        break;
      case 'b':
        if (v.kind != Value::Kind::boolean) return wrong("bool");
        break;
      case 'm':
        if (v.kind != Value::Kind::map || v.strings) return wrong("map[string]interface {}");
        break;
      case 't':
        if (v.kind != Value::Kind::time) return wrong("time.Time");
        break;
      default:
        break;
    }
  }
  return {};
}

bool ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}
Result<void> need_ascii(std::string_view fn, std::string_view s) {
  if (!ascii(s)) return fn_fail(std::string(fn) + ": text other than ASCII is not supported");
  return {};
}
Result<void> cap(std::size_t n) {
  if (n > kMaxBytes) return fn_fail("a value would exceed 8 MiB: refused");
  return {};
}

Value str_out(SecureBuffer& b) { return string_value(b.take()); }

// Go's unicode.IsSpace.
bool go_space(char32_t c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

std::string_view trim_space(std::string_view s) {
  for (;;) {
    if (s.empty()) return s;
    const auto [cp, n] = decode_utf8(s, 0);
    if (n == 0 || !go_space(cp)) break;
    s.remove_prefix(n);
  }
  for (;;) {
    if (s.empty()) return s;
    // The last sequence: back up over continuation bytes (at most 3).
    std::size_t start = s.size() - 1;
    while (start > 0 && s.size() - start < 4 && (static_cast<unsigned char>(s[start]) & 0xc0) == 0x80) --start;
    const auto [cp, n] = decode_utf8(s, start);
    if (n == 0 || start + n != s.size() || !go_space(cp)) break;
    s.remove_suffix(n);
  }
  return s;
}

Result<kms::SecureBytes> replace_all(std::string_view s, std::string_view from, std::string_view to) {
  SecureBuffer out(s.size());
  if (from.empty()) {
    ROOTSEAL_TRY(need_ascii("replace", s));
    ROOTSEAL_TRY(cap(s.size() + (s.size() + 1) * to.size()));
    for (char c : s) {
      out.append(to);
      out.append(std::string_view(&c, 1));
    }
    out.append(to);
    return out.take();
  }
  std::size_t pos = 0;
  for (;;) {
    const auto hit = s.find(from, pos);
    out.append(s.substr(pos, hit == std::string_view::npos ? std::string_view::npos : hit - pos));
    if (hit == std::string_view::npos) break;
    out.append(to);
    ROOTSEAL_TRY(cap(out.size()));
    pos = hit + from.size();
  }
  return out.take();
}

// strings.Split (an empty separator splits ASCII text into its bytes).
Result<std::vector<std::string_view>> split_all(std::string_view s, std::string_view sep) {
  std::vector<std::string_view> parts;
  if (sep.empty()) {
    ROOTSEAL_TRY(need_ascii("split", s));
    for (std::size_t i = 0; i < s.size(); ++i) parts.push_back(s.substr(i, 1));
    return parts;
  }
  std::size_t pos = 0;
  for (;;) {
    const auto hit = s.find(sep, pos);
    if (hit == std::string_view::npos) {
      parts.push_back(s.substr(pos));
      return parts;
    }
    parts.push_back(s.substr(pos, hit - pos));
    pos = hit + sep.size();
  }
}

// Sprig's strslice: a list's non-nil elements as text; nil: none; else the value.
Result<std::vector<kms::SecureBytes>> strslice(const Value& v) {
  std::vector<kms::SecureBytes> out;
  if (v.kind == Value::Kind::list) {
    for (const auto& e : *v.l) {
      if (e.kind == Value::Kind::nil) continue;
      ROOTSEAL_LET(s, strval(e));
      out.push_back(std::move(s));
    }
  } else if (v.kind != Value::Kind::nil) {
    ROOTSEAL_LET(s, strval(v));
    out.push_back(std::move(s));
  }
  return out;
}

bool empty(const Value& v) { return !truth(v); }

// ---- comparison (text/template's eq, lt) -------------------------------------

enum class Basic : std::uint8_t { invalid, boolean, integer, floating, string };
Basic basic(const Value& v) {
  switch (v.kind) {
    case Value::Kind::boolean:
      return Basic::boolean;
    case Value::Kind::integer:
      return Basic::integer;
    case Value::Kind::floating:
      return Basic::floating;
    case Value::Kind::string:
      return Basic::string;
    default:
      return Basic::invalid;
  }
}

Result<bool> eq2(const Value& a, const Value& b) {
  const Basic ka = basic(a), kb = basic(b);
  if (ka != kb) {
    if (a.kind != Value::Kind::nil && b.kind != Value::Kind::nil)
      return fn_fail("error calling eq: incompatible types for comparison");
    return false;
  }
  switch (ka) {
    case Basic::boolean:
      return a.b == b.b;
    case Basic::integer:
      return a.i == b.i;
    case Basic::floating:
      return a.f == b.f;
    case Basic::string:
      return a.str() == b.str();
    case Basic::invalid:
      break;
  }
  if (a.kind == Value::Kind::nil || b.kind == Value::Kind::nil) return a.kind == b.kind;
  if (a.kind == Value::Kind::time && b.kind == Value::Kind::time)
    return fn_fail("error calling eq: comparing two time.Time values is not supported");
  if (a.kind != b.kind) return fn_fail("error calling eq: non-comparable types");
  return fn_fail("error calling eq: non-comparable type " + a.type_name());
}

Result<bool> lt2(std::string_view fn, const Value& a, const Value& b) {
  const Basic ka = basic(a), kb = basic(b);
  if (ka == Basic::invalid || kb == Basic::invalid)
    return fn_fail("error calling " + std::string(fn) + ": invalid type for comparison");
  if (ka != kb) return fn_fail("error calling " + std::string(fn) + ": incompatible types for comparison");
  switch (ka) {
    case Basic::integer:
      return a.i < b.i;
    case Basic::floating:
      return a.f < b.f;
    case Basic::string:
      return a.str() < b.str();
    default:
      return fn_fail("error calling " + std::string(fn) + ": invalid type for comparison");
  }
}

// ---- fmt -----------------------------------------------------------------------

std::size_t runes(std::string_view s) {
  return static_cast<std::size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xc0) != 0x80; }));
}

// fmt.Sprint / Sprintln of the values.
Result<Value> sprint(const Args& args, bool ln) {
  SecureBuffer out(64);
  for (std::size_t k = 0; k < args.size(); ++k) {
    const bool is_str = args[k].kind == Value::Kind::string;
    if (k > 0 && (ln || (!is_str && args[k - 1].kind != Value::Kind::string))) out.append(" ");
    ROOTSEAL_LET(s, strval(args[k]));
    out.append(s.span());
    ROOTSEAL_TRY(cap(out.size()));
  }
  if (ln) out.append("\n");
  return str_out(out);
}

void bad_verb(SecureBuffer& out, char verb, const Value& v) {
  out.append("%!");
  out.append(std::string_view(&verb, 1));
  out.append("(");
  if (v.kind == Value::Kind::nil) {
    out.append("<nil>");
  } else {
    out.append(v.type_name());
    out.append("=");
    auto s = strval(v);
    if (s) out.append(s->span());
  }
  out.append(")");
}

// fmt.Sprintf for the verbs %v %s %d %q %x %X %t %f %% with the flags '-'
// and '0', a width and a precision; anything else is refused.
// NOLINTNEXTLINE(readability-function-size): Go's fmt verbs and flags in one loop, read against fmt's doPrintf
Result<Value> sprintf(std::string_view f, const Args& args) {
  SecureBuffer out(f.size() + 32);
  std::size_t next = 0;
  for (std::size_t i = 0; i < f.size(); ++i) {
    if (f[i] != '%') {
      out.append(std::string_view(&f[i], 1));
      continue;
    }
    if (++i >= f.size()) {
      out.append("%!(NOVERB)");
      break;
    }
    bool minus = false, zero = false;
    for (; i < f.size() && (f[i] == '-' || f[i] == '0' || f[i] == '+' || f[i] == ' ' || f[i] == '#'); ++i) {
      if (f[i] == '-')
        minus = true;
      else if (f[i] == '0')
        zero = true;
      else
        return fn_fail("printf: the flag '" + std::string(1, f[i]) + "' is not supported");
    }
    std::size_t width = 0;
    int prec = -1;
    for (; i < f.size() && f[i] >= '0' && f[i] <= '9'; ++i)
      width = std::min<std::size_t>(width * 10 + static_cast<std::size_t>(f[i] - '0'), 1u << 20);
    if (i < f.size() && f[i] == '.') {
      prec = 0;
      for (++i; i < f.size() && f[i] >= '0' && f[i] <= '9'; ++i) prec = std::min(prec * 10 + (f[i] - '0'), 1 << 10);
    }
    if (i < f.size() && (f[i] == '*' || f[i] == '['))
      return fn_fail("printf: '*' and argument indexes are not supported");
    if (i >= f.size()) {
      out.append("%!(NOVERB)");
      break;
    }
    const char verb = f[i];
    if (verb == '%') {
      out.append("%");
      continue;
    }
    if (next >= args.size()) {
      out.append("%!");
      out.append(std::string_view(&verb, 1));
      out.append("(MISSING)");
      continue;
    }
    const Value& v = args[next++];
    if ((v.kind == Value::Kind::list || v.kind == Value::Kind::map || v.kind == Value::Kind::time) && verb != 'v' &&
        verb != 's') {
      return fn_fail("printf: %" + std::string(1, verb) + " of a list, map or time is not supported");
    }
    SecureBuffer field(32);
    bool numeric = false;
    switch (verb) {
      case 'v':
      case 's':
        if (verb == 's' && v.kind != Value::Kind::string && v.kind != Value::Kind::list && v.kind != Value::Kind::map &&
            v.kind != Value::Kind::time) {
          bad_verb(field, verb, v);
          break;
        }
        if (v.kind == Value::Kind::list || v.kind == Value::Kind::map) {
          if (prec >= 0 || width > 0)
            return fn_fail("printf: a width or precision with a list or map is not supported");
          if (verb == 's' && v.kind == Value::Kind::list &&
              !std::all_of(v.l->begin(), v.l->end(), [](const Value& e) { return e.kind == Value::Kind::string; })) {
            return fn_fail("printf: %s of a list of other than strings is not supported");
          }
          if (verb == 's' && v.kind == Value::Kind::map && !v.strings)
            return fn_fail("printf: %s of a map of other than strings is not supported");
        }
        if (v.kind == Value::Kind::nil) {
          if (verb == 's')
            bad_verb(field, verb, v);
          else
            field.append("<nil>");
          break;
        }
        {
          ROOTSEAL_LET(s, strval(v));
          std::string_view t = as_view(s);
          if (prec >= 0 && v.kind == Value::Kind::string) {
            std::size_t n = 0, cut = 0;
            while (cut < t.size() && n < static_cast<std::size_t>(prec)) {
              ++cut;
              while (cut < t.size() && (static_cast<unsigned char>(t[cut]) & 0xc0) == 0x80) ++cut;
              ++n;
            }
            t = t.substr(0, cut);
          } else if (prec >= 0 && v.kind != Value::Kind::string) {
            return fn_fail("printf: a precision with %v of a number is not supported");
          }
          field.append(t);
          numeric = v.kind == Value::Kind::integer || v.kind == Value::Kind::floating;
        }
        break;
      case 'd':
        if (v.kind != Value::Kind::integer) {
          bad_verb(field, verb, v);
          break;
        }
        if (prec >= 0) return fn_fail("printf: a precision with %d is not supported");
        field.append(std::to_string(v.i));
        numeric = true;
        break;
      case 't':
        if (v.kind != Value::Kind::boolean) {
          bad_verb(field, verb, v);
          break;
        }
        field.append(v.b ? "true" : "false");
        break;
      case 'q':
        if (v.kind != Value::Kind::string) {
          if (v.kind == Value::Kind::integer) return fn_fail("printf: %q of a number is not supported");
          bad_verb(field, verb, v);
          break;
        }
        if (prec >= 0) return fn_fail("printf: a precision with %q is not supported");
        go_quote(v.str(), field);
        break;
      case 'x':
      case 'X': {
        const char* digits = verb == 'x' ? "0123456789abcdef" : "0123456789ABCDEF";
        if (prec >= 0) return fn_fail("printf: a precision with %x is not supported");
        if (v.kind == Value::Kind::string) {
          for (char c : v.str()) {
            const auto b = static_cast<unsigned char>(c);
            const char h[2] = {digits[b >> 4], digits[b & 15]};
            field.append(std::string_view(h, 2));
          }
        } else if (v.kind == Value::Kind::integer) {
          std::uint64_t u = v.i < 0 ? 0 - static_cast<std::uint64_t>(v.i) : static_cast<std::uint64_t>(v.i);
          std::string h;
          do {
            h.insert(h.begin(), digits[u & 15]);
            u >>= 4;
          } while (u != 0);
          if (v.i < 0) h.insert(h.begin(), '-');
          field.append(h);
          numeric = true;
        } else if (v.kind == Value::Kind::boolean || v.kind == Value::Kind::nil) {
          bad_verb(field, verb, v);
        } else {
          return fn_fail("printf: %x of a " + v.type_name() + " is not supported");
        }
        break;
      }
      case 'f':
        if (v.kind != Value::Kind::floating) {
          bad_verb(field, verb, v);
          break;
        }
        {
          char buf[400];
          const int n = std::snprintf(buf, sizeof buf, "%.*f", prec < 0 ? 6 : std::min(prec, 60), v.f);
          if (n < 0 || static_cast<std::size_t>(n) >= sizeof buf)
            return fn_fail("printf: %f of this number is not supported");
          field.append(std::string_view(buf, static_cast<std::size_t>(n)));
          numeric = true;
        }
        break;
      default:
        return fn_fail("printf: the verb %" + std::string(1, verb) + " is not supported");
    }
    const kms::SecureBytes text = field.take();
    const std::size_t len = runes(as_view(text));
    const std::size_t pad = width > len ? width - len : 0;
    ROOTSEAL_TRY(cap(out.size() + pad + text.size()));
    if (!minus && pad > 0) {
      if (zero && numeric) {
        std::string_view t = as_view(text);
        if (!t.empty() && t.front() == '-') {
          out.append("-");
          t.remove_prefix(1);
        }
        out.append(std::string(pad, '0'));
        out.append(t);
        continue;
      }
      out.append(std::string(pad, zero && verb != 'v' ? '0' : ' '));
    }
    out.append(text.span());
    if (minus && pad > 0) out.append(std::string(pad, ' '));
  }
  if (next < args.size()) {
    out.append("%!(EXTRA ");
    for (std::size_t k = next; k < args.size(); ++k) {
      if (k > next) out.append(", ");
      if (args[k].kind == Value::Kind::nil) {
        out.append("<nil>");
        continue;
      }
      out.append(args[k].type_name());
      out.append("=");
      ROOTSEAL_LET(s, strval(args[k]));
      out.append(s.span());
    }
    out.append(")");
  }
  return str_out(out);
}

// text/template's evalArgs: one string as it is, else fmt.Sprint of the
// printable values.
Result<kms::SecureBytes> eval_args(const Args& args) {
  if (args.size() == 1 && args[0].kind == Value::Kind::string) return args[0].s->clone();
  // printableValue: nil is "<no value>" (a string for Sprint's spacing).
  Args printable = args;
  for (auto& a : printable) {
    if (a.kind == Value::Kind::nil) a = string_value(std::string_view("<no value>"));
  }
  ROOTSEAL_LET(v, sprint(printable, false));
  return v.s->clone();
}

// ---- encodings -----------------------------------------------------------------

constexpr char kB32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

Value b32enc(std::string_view s) {
  SecureBuffer out((s.size() + 4) / 5 * 8);
  for (std::size_t i = 0; i < s.size(); i += 5) {
    std::uint64_t block = 0;
    const std::size_t n = std::min<std::size_t>(5, s.size() - i);
    for (std::size_t k = 0; k < 5; ++k) block = (block << 8) | (k < n ? static_cast<unsigned char>(s[i + k]) : 0u);
    static constexpr std::size_t kChars[] = {0, 2, 4, 5, 7, 8};
    for (std::size_t k = 0; k < 8; ++k) {
      const char c = k < kChars[n] ? kB32[(block >> (35 - 5 * k)) & 31] : '=';
      out.append(std::string_view(&c, 1));
    }
  }
  return str_out(out);
}

Result<Value> b32dec(std::string_view s) {
  SecureBuffer clean(s.size());
  for (char c : s) {
    if (c != '\r' && c != '\n') clean.append(std::string_view(&c, 1));
  }
  const kms::SecureBytes text = clean.take();
  const std::string_view t = as_view(text);
  const auto bad = [] { return fn_fail("b32dec: the value is not valid base32"); };
  if (t.size() % 8 != 0) return bad();
  SecureBuffer out(t.size() / 8 * 5);
  for (std::size_t i = 0; i < t.size(); i += 8) {
    std::uint64_t block = 0;
    std::size_t chars = 0;
    bool padding = false;
    for (std::size_t k = 0; k < 8; ++k) {
      const char c = t[i + k];
      std::uint64_t d = 0;
      if (c == '=') {
        padding = true;
      } else {
        if (padding) return bad();
        const char* p = std::strchr(kB32, c);
        if (c == 0 || p == nullptr) return bad();
        d = static_cast<std::uint64_t>(p - kB32);
        ++chars;
      }
      block = (block << 5) | d;
    }
    if (padding && i + 8 != t.size()) return bad();
    static constexpr int kBytes[] = {0, -1, 1, -1, 2, 3, -1, 4, 5};
    const int n = kBytes[chars];
    if (n < 0) return bad();
    for (int k = 0; k < n; ++k) {
      const char b = static_cast<char>((block >> (32 - 8 * k)) & 0xff);
      out.append(std::string_view(&b, 1));
    }
  }
  return str_out(out);
}

Value digest_hex(std::string_view s, bool sha1) {
  kms::SecureBytes digest(sha1 ? SHA_DIGEST_LENGTH : SHA256_DIGEST_LENGTH);
  if (sha1) {
    SHA1(reinterpret_cast<const unsigned char*>(s.data()), s.size(), digest.data());
  } else {
    SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), digest.data());
  }
  static constexpr char kHex[] = "0123456789abcdef";
  SecureBuffer out(2 * digest.size());
  for (auto b : digest.span()) {
    const char h[2] = {kHex[b >> 4], kHex[b & 15]};
    out.append(std::string_view(h, 2));
  }
  return str_out(out);
}

Value html_escape(std::string_view s) {
  SecureBuffer out(s.size());
  for (char c : s) {
    switch (c) {
      case '"':
        out.append("&#34;");
        break;
      case '\'':
        out.append("&#39;");
        break;
      case '&':
        out.append("&amp;");
        break;
      case '<':
        out.append("&lt;");
        break;
      case '>':
        out.append("&gt;");
        break;
      case '\0':
        out.append("\xef\xbf\xbd");
        break;
      default:
        out.append(std::string_view(&c, 1));
    }
  }
  return str_out(out);
}

Value query_escape(std::string_view s) {
  SecureBuffer out(s.size());
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (char c : s) {
    const auto b = static_cast<unsigned char>(c);
    if (std::isalnum(b) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
      out.append(std::string_view(&c, 1));
    } else if (c == ' ') {
      out.append("+");
    } else {
      const char h[3] = {'%', kHex[b >> 4], kHex[b & 15]};
      out.append(std::string_view(h, 3));
    }
  }
  return str_out(out);
}

// reflect.DeepEqual of two values (types included: int is not float64,
// []string is not []interface{}).
bool deep_equal(const Value& a, const Value& b, int depth = 0) {
  if (a.kind != b.kind || depth > kMaxDepth) return false;
  switch (a.kind) {
    case Value::Kind::nil:
      return true;
    case Value::Kind::boolean:
      return a.b == b.b;
    case Value::Kind::integer:
      return a.int64 == b.int64 && a.i == b.i;
    case Value::Kind::floating:
      return a.f == b.f;
    case Value::Kind::string:
      return a.str() == b.str();
    case Value::Kind::list:
      if (a.strings != b.strings || a.l->size() != b.l->size()) return false;
      for (std::size_t k = 0; k < a.l->size(); ++k) {
        if (!deep_equal((*a.l)[k], (*b.l)[k], depth + 1)) return false;
      }
      return true;
    case Value::Kind::map: {
      if (a.strings != b.strings || a.m->size() != b.m->size()) return false;
      for (auto ia = a.m->begin(), ib = b.m->begin(); ia != a.m->end(); ++ia, ++ib) {
        if (as_view(ia->first) != as_view(ib->first) || !deep_equal(ia->second, ib->second, depth + 1)) return false;
      }
      return true;
    }
    case Value::Kind::time:
      return a.t == b.t;  // the same reading (Go compares the fields and the zone)
  }
  return false;
}

// Sprig's toInt64 (spf13/cast) for the values rootseal has, text excepted
// (cast's parsing of text differs between its versions: refused).
Result<std::int64_t> to_int64(std::string_view fn, const Value& v) {
  switch (v.kind) {
    case Value::Kind::nil:
      return std::int64_t{0};
    case Value::Kind::boolean:
      return std::int64_t{v.b ? 1 : 0};
    case Value::Kind::integer:
      return v.i;
    case Value::Kind::floating:
      if (!(v.f > -9.2e18 && v.f < 9.2e18))
        return fn_fail(std::string(fn) + ": a number out of int64 range is not supported");
      return static_cast<std::int64_t>(v.f);
    case Value::Kind::string:
      return fn_fail(std::string(fn) + ": text as a number is not supported");
    default:
      return std::int64_t{0};  // cast gives 0 for what it cannot convert
  }
}
Value int64_value(std::int64_t i) {
  Value v = int_value(i);
  v.int64 = true;
  return v;
}
std::int64_t wrap_add(std::int64_t a, std::int64_t b) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) + static_cast<std::uint64_t>(b));
}
std::int64_t wrap_mul(std::int64_t a, std::int64_t b) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) * static_cast<std::uint64_t>(b));
}

// A nil []interface{}: printed "[]", empty, toJson "null".
Value nil_list() {
  Value v = list_value({});
  v.null_list = true;
  return v;
}

// A list argument of Sprig's list functions (Go panics on anything else).
Result<const List*> list_arg(std::string_view fn, const Value& v) {
  if (v.kind != Value::Kind::list)
    return fn_fail("error calling " + std::string(fn) + ": Cannot " + std::string(fn) + " on type " + v.type_name());
  return v.l.get();
}

// quote, squote, cat: the non-nil values as text, each written by `each`,
// separated by spaces.
template <typename Each>
Result<Value> join_non_nil(const Args& args, Each each) {
  SecureBuffer out(32);
  bool first = true;
  for (const auto& v : args) {
    if (v.kind == Value::Kind::nil) continue;
    if (!first) out.append(" ");
    first = false;
    ROOTSEAL_LET(s, strval(v));
    each(as_view(s), out);
    ROOTSEAL_TRY(cap(out.size()));
  }
  return str_out(out);
}

// mergo's deepMerge of one map into another (v0.3.12, as Sprig's merge and
// mergeOverwrite call it): a key dst lacks, or whose value is empty, takes
// src's value; maps in both are merged in place; with overwrite, src's value
// wins but over a non-empty dst value a map is only merged into a map; a nil
// src value is skipped (overwrite: copied).
Result<void> mergo(Map& dst, bool dst_strings, const Map& src, bool src_strings, bool overwrite, int depth) {
  if (depth > kMaxDepth) return fn_fail("merge: maps nested more than 64 deep are not supported");
  // Go would panic putting an interface{} value into a map[string]string.
  if (dst_strings && !src_strings && !src.empty())
    return fn_fail("merge: merging a map of values into a map of strings is not supported");
  // A snapshot: src may be dst itself.
  std::vector<std::pair<std::string_view, Value>> entries;
  for (const auto& [k, v] : src) entries.emplace_back(as_view(k), v);
  for (const auto& [k, se] : entries) {
    auto it = dst.find(k);
    const bool has = it != dst.end();
    if (se.kind == Value::Kind::nil) {
      if (overwrite) dst.insert_or_assign(kms::SecureBytes::copy_of(k), se);
      continue;
    }
    if (se.kind == Value::Kind::map && has && it->second.kind == Value::Kind::map) {
      const Value nested = it->second;
      ROOTSEAL_TRY(mergo(*nested.m, nested.strings, *se.m, se.strings, overwrite, depth + 1));
    }
    if (se.kind == Value::Kind::list && overwrite) {
      dst.insert_or_assign(kms::SecureBytes::copy_of(k), se);
      continue;
    }
    if (has && !empty(it->second) && (se.kind == Value::Kind::map || se.kind == Value::Kind::list)) continue;
    if (overwrite || !has || empty(it->second)) dst.insert_or_assign(kms::SecureBytes::copy_of(k), se);
  }
  return {};
}

// Go's bcrypt.GenerateFromPassword at DefaultCost ($2a$, cost 10) on
// libxcrypt, the salt from OpenSSL's RAND_bytes, the work area and the
// password in locked memory. Passwords of more than 72 bytes get the text
// ESO's Sprig returns for Go's error.
Result<kms::SecureBytes> bcrypt_hash(std::string_view password) {
  if (password.size() > 72)
    return kms::SecureBytes::copy_of(
        std::string_view("failed to encrypt string with bcrypt: bcrypt: password length exceeds 72 bytes"));
  if (password.find('\0') != std::string_view::npos)
    return fn_fail("htpasswd: a password with a NUL character is not supported");
  unsigned char random[16];
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  if (RAND_bytes(random, sizeof random) != 1 || crypt_gensalt_rn("$2a$", 10, reinterpret_cast<const char*>(random),
                                                                 sizeof random, setting, sizeof setting) == nullptr)
    return fn_fail("htpasswd: bcrypt is not available");
  kms::SecureBytes phrase(password.size() + 1);
  std::memcpy(phrase.data(), password.data(), password.size());
  phrase.data()[password.size()] = 0;
  kms::SecureBytes work(sizeof(struct crypt_data));
  std::memset(work.data(), 0, work.size());
  const char* hash =
      crypt_rn(reinterpret_cast<const char*>(phrase.data()), setting, work.data(), static_cast<int>(work.size()));
  if (hash == nullptr || hash[0] == '*') return fn_fail("htpasswd: bcrypt is not available");
  return kms::SecureBytes::copy_of(std::string_view(hash));
}

// ---- the table -----------------------------------------------------------------

Value sv(std::string_view s) { return string_value(s); }

// NOLINTNEXTLINE(readability-function-size): the function table, one entry per name
const std::unordered_map<std::string_view, Fn>& table() {
  static const std::unordered_map<std::string_view, Fn> t = [] {
    std::unordered_map<std::string_view, Fn> m;
    // text/template's builtins (and/or are evaluated by the executor).
    m["and"] = {"a.", nullptr};
    m["or"] = {"a.", nullptr};
    m["not"] = {"a", [](Args& a) -> Result<Value> { return bool_value(!truth(a[0])); }};
    m["len"] = {"a", [](Args& a) -> Result<Value> {
                  const Value& v = a[0];
                  if (v.kind == Value::Kind::string) return int_value(static_cast<std::int64_t>(v.str().size()));
                  if (v.kind == Value::Kind::list) return int_value(static_cast<std::int64_t>(v.l->size()));
                  if (v.kind == Value::Kind::map) return int_value(static_cast<std::int64_t>(v.m->size()));
                  if (v.kind == Value::Kind::nil) return fn_fail("error calling len: len of nil pointer");
                  return fn_fail("error calling len: len of type " + v.type_name());
                }};
    m["index"] = {
        "aa.", [](Args& a) -> Result<Value> {
          Value cur = a[0];
          for (std::size_t k = 1; k < a.size(); ++k) {
            const Value& key = a[k];
            if (cur.kind == Value::Kind::map) {
              if (key.kind != Value::Kind::string)
                return fn_fail("error calling index: value has type " + key.type_name() + "; should be string");
              auto it = cur.m->find(key.str());
              if (it == cur.m->end()) {
                cur = cur.strings ? string_value(std::string_view()) : Value{};
              } else {
                Value next = it->second;
                cur = std::move(next);
              }
            } else if (cur.kind == Value::Kind::string) {
              // Go gives a byte (uint8), a type rootseal does not have.
              return fn_fail("index of a string is not supported");
            } else if (cur.kind == Value::Kind::list) {
              if (key.kind != Value::Kind::integer)
                return fn_fail("error calling index: cannot index slice/array with type " + key.type_name());
              const std::size_t n = cur.l->size();
              if (key.i < 0 || static_cast<std::size_t>(key.i) >= n) {
                return fn_fail("error calling index: index out of range: " + std::to_string(key.i));
              }
              Value next = (*cur.l)[static_cast<std::size_t>(key.i)];
              cur = std::move(next);
            } else if (cur.kind == Value::Kind::nil) {
              return fn_fail("error calling index: index of untyped nil");
            } else {
              return fn_fail("error calling index: can't index item of type " + cur.type_name());
            }
          }
          return cur;
        }};
    m["print"] = {"a.", [](Args& a) { return sprint(a, false); }};
    m["println"] = {"a.", [](Args& a) { return sprint(a, true); }};
    m["printf"] = {"sa.", [](Args& a) -> Result<Value> {
                     const Args rest(a.begin() + 1, a.end());
                     return sprintf(a[0].str(), rest);
                   }};
    m["html"] = {"a.", [](Args& a) -> Result<Value> {
                   ROOTSEAL_LET(s, eval_args(a));
                   return html_escape(as_view(s));
                 }};
    m["urlquery"] = {"a.", [](Args& a) -> Result<Value> {
                       ROOTSEAL_LET(s, eval_args(a));
                       return query_escape(as_view(s));
                     }};
    m["eq"] = {"aa.", [](Args& a) -> Result<Value> {
                 for (std::size_t k = 1; k < a.size(); ++k) {
                   ROOTSEAL_LET(same, eq2(a[0], a[k]));
                   if (same) return bool_value(true);
                 }
                 return bool_value(false);
               }};
    m["ne"] = {"aa", [](Args& a) -> Result<Value> {
                 ROOTSEAL_LET(same, eq2(a[0], a[1]));
                 return bool_value(!same);
               }};
    m["lt"] = {"aa", [](Args& a) -> Result<Value> {
                 ROOTSEAL_LET(r, lt2("lt", a[0], a[1]));
                 return bool_value(r);
               }};
    m["le"] = {"aa", [](Args& a) -> Result<Value> {
                 ROOTSEAL_LET(r, lt2("le", a[0], a[1]));
                 if (r) return bool_value(true);
                 ROOTSEAL_LET(same, eq2(a[0], a[1]));
                 return bool_value(same);
               }};
    m["gt"] = {"aa", [](Args& a) -> Result<Value> {
                 ROOTSEAL_LET(r, lt2("gt", a[0], a[1]));
                 if (r) return bool_value(false);
                 ROOTSEAL_LET(same, eq2(a[0], a[1]));
                 return bool_value(!same);
               }};
    m["ge"] = {"aa", [](Args& a) -> Result<Value> {
                 ROOTSEAL_LET(r, lt2("ge", a[0], a[1]));
                 return bool_value(!r);
               }};

    // Sprig: strings.
    m["upper"] = {"s", [](Args& a) -> Result<Value> {
                    ROOTSEAL_TRY(need_ascii("upper", a[0].str()));
                    auto b = a[0].s->clone();
                    for (auto& c : b.span()) c = static_cast<std::uint8_t>(std::toupper(c));
                    return string_value(std::move(b));
                  }};
    m["lower"] = {"s", [](Args& a) -> Result<Value> {
                    ROOTSEAL_TRY(need_ascii("lower", a[0].str()));
                    auto b = a[0].s->clone();
                    for (auto& c : b.span()) c = static_cast<std::uint8_t>(std::tolower(c));
                    return string_value(std::move(b));
                  }};
    m["title"] = {"s", [](Args& a) -> Result<Value> {
                    ROOTSEAL_TRY(need_ascii("title", a[0].str()));
                    auto b = a[0].s->clone();
                    bool sep = true;
                    for (auto& c : b.span()) {
                      if (sep) c = static_cast<std::uint8_t>(std::toupper(c));
                      sep = std::isalnum(c) == 0 && c != '_';
                    }
                    return string_value(std::move(b));
                  }};
    m["trim"] = {"s", [](Args& a) -> Result<Value> { return sv(trim_space(a[0].str())); }};
    m["trimAll"] = {"ss", [](Args& a) -> Result<Value> {
                      const auto set = a[0].str();
                      ROOTSEAL_TRY(need_ascii("trimAll", set));
                      auto s = a[1].str();
                      while (!s.empty() && set.find(s.front()) != std::string_view::npos) s.remove_prefix(1);
                      while (!s.empty() && set.find(s.back()) != std::string_view::npos) s.remove_suffix(1);
                      return sv(s);
                    }};
    m["trimPrefix"] = {"ss", [](Args& a) -> Result<Value> {
                         auto s = a[1].str();
                         if (s.starts_with(a[0].str())) s.remove_prefix(a[0].str().size());
                         return sv(s);
                       }};
    m["trimSuffix"] = {"ss", [](Args& a) -> Result<Value> {
                         auto s = a[1].str();
                         if (s.ends_with(a[0].str())) s.remove_suffix(a[0].str().size());
                         return sv(s);
                       }};
    m["contains"] = {"ss", [](Args& a) -> Result<Value> {
                       return bool_value(a[1].str().find(a[0].str()) != std::string_view::npos);
                     }};
    m["hasPrefix"] = {"ss", [](Args& a) -> Result<Value> { return bool_value(a[1].str().starts_with(a[0].str())); }};
    m["hasSuffix"] = {"ss", [](Args& a) -> Result<Value> { return bool_value(a[1].str().ends_with(a[0].str())); }};
    m["replace"] = {"sss", [](Args& a) -> Result<Value> {
                      ROOTSEAL_LET(r, replace_all(a[2].str(), a[0].str(), a[1].str()));
                      return string_value(std::move(r));
                    }};
    m["repeat"] = {"is", [](Args& a) -> Result<Value> {
                     if (a[0].i < 0) return fn_fail("error calling repeat: negative Repeat count");
                     const auto s = a[1].str();
                     if (!s.empty() && static_cast<std::uint64_t>(a[0].i) > kMaxBytes / s.size())
                       return fn_fail("a value would exceed 8 MiB: refused");
                     SecureBuffer out(s.size() * static_cast<std::size_t>(a[0].i));
                     for (std::int64_t k = 0; k < a[0].i && !s.empty(); ++k) out.append(s);
                     return str_out(out);
                   }};
    m["substr"] = {"iis", [](Args& a) -> Result<Value> {
                     const auto s = a[2].str();
                     const auto n = static_cast<std::int64_t>(s.size());
                     std::int64_t from = a[0].i, to = a[1].i;
                     if (from < 0) {
                       from = 0;
                     } else if (to < 0 || to > n) {
                       to = n;
                     }
                     if (from > to || to > n || to < 0)
                       return fn_fail("error calling substr: slice bounds out of range");
                     return sv(s.substr(static_cast<std::size_t>(from), static_cast<std::size_t>(to - from)));
                   }};
    m["trunc"] = {"is", [](Args& a) -> Result<Value> {
                    const auto s = a[1].str();
                    const auto n = static_cast<std::int64_t>(s.size());
                    const std::int64_t c = a[0].i;
                    if (c < 0 && n + c > 0) return sv(s.substr(static_cast<std::size_t>(n + c)));
                    if (c >= 0 && n > c) return sv(s.substr(0, static_cast<std::size_t>(c)));
                    return sv(s);
                  }};
    m["quote"] = {
        "a.", [](Args& a) { return join_non_nil(a, [](std::string_view s, SecureBuffer& out) { go_quote(s, out); }); }};
    m["squote"] = {"a.", [](Args& a) {
                     return join_non_nil(a, [](std::string_view s, SecureBuffer& out) {
                       out.append("'");
                       out.append(s);
                       out.append("'");
                     });
                   }};
    m["cat"] = {"a.",
                [](Args& a) { return join_non_nil(a, [](std::string_view s, SecureBuffer& out) { out.append(s); }); }};
    const auto indent = [](Args& a, bool nl) -> Result<Value> {
      if (a[0].i < 0) return fn_fail("error calling indent: negative Repeat count");
      ROOTSEAL_TRY(cap(static_cast<std::uint64_t>(a[0].i)));
      const std::string pad(static_cast<std::size_t>(a[0].i), ' ');
      ROOTSEAL_LET(body, replace_all(a[1].str(), "\n", "\n" + pad));
      SecureBuffer out(body.size() + pad.size() + 1);
      if (nl) out.append("\n");
      out.append(pad);
      out.append(body.span());
      return str_out(out);
    };
    m["indent"] = {"is", [indent](Args& a) { return indent(a, false); }};
    m["nindent"] = {"is", [indent](Args& a) { return indent(a, true); }};
    m["split"] = {"ss", [](Args& a) -> Result<Value> {
                    ROOTSEAL_LET(parts, split_all(a[1].str(), a[0].str()));
                    Map out;
                    for (std::size_t k = 0; k < parts.size(); ++k)
                      out.insert_or_assign(kms::SecureBytes::copy_of("_" + std::to_string(k)), sv(parts[k]));
                    return map_value(std::move(out), true);
                  }};
    m["splitList"] = {"ss", [](Args& a) -> Result<Value> {
                        ROOTSEAL_LET(parts, split_all(a[1].str(), a[0].str()));
                        List out;
                        for (const auto p : parts) out.push_back(sv(p));
                        return list_value(std::move(out), true);
                      }};
    m["join"] = {"sa", [](Args& a) -> Result<Value> {
                   ROOTSEAL_LET(parts, strslice(a[1]));
                   SecureBuffer out(64);
                   for (std::size_t k = 0; k < parts.size(); ++k) {
                     if (k > 0) out.append(a[0].str());
                     out.append(parts[k].span());
                     ROOTSEAL_TRY(cap(out.size()));
                   }
                   return str_out(out);
                 }};
    m["toString"] = {"a", [](Args& a) -> Result<Value> {
                       ROOTSEAL_LET(s, strval(a[0]));
                       return string_value(std::move(s));
                     }};
    m["b64enc"] = {"s",
                   [](Args& a) -> Result<Value> { return string_value(kms::base64_encode_secure(a[0].s->span())); }};
    m["b64dec"] = {"s", [](Args& a) -> Result<Value> {
                     auto d = kms::base64_decode_secure(a[0].str());
                     if (!d) return fn_fail("b64dec: the value is not valid base64");
                     return string_value(std::move(*d));
                   }};
    m["b32enc"] = {"s", [](Args& a) -> Result<Value> { return b32enc(a[0].str()); }};
    m["b32dec"] = {"s", [](Args& a) { return b32dec(a[0].str()); }};
    m["sha256sum"] = {"s", [](Args& a) -> Result<Value> { return digest_hex(a[0].str(), false); }};
    m["sha1sum"] = {"s", [](Args& a) -> Result<Value> { return digest_hex(a[0].str(), true); }};
    m["nospace"] = {
        "s", [](Args& a) -> Result<Value> {
          const auto s = a[0].str();
          SecureBuffer out(s.size());
          // goutils' DeleteWhiteSpace: byte by byte, each byte taken as
          // a rune and written back as UTF-8 (Latin-1), unless none is removed.
          if (std::none_of(s.begin(), s.end(), [](char c) { return go_space(static_cast<unsigned char>(c)); })) {
            return a[0];
          }
          for (char c : s) {
            const auto b = static_cast<unsigned char>(c);
            if (go_space(b)) continue;
            if (b < 0x80) {
              out.append(std::string_view(&c, 1));
            } else {
              const char u[2] = {static_cast<char>(0xc0 | (b >> 6)), static_cast<char>(0x80 | (b & 0x3f))};
              out.append(std::string_view(u, 2));
            }
          }
          return str_out(out);
        }};

    // Sprig: regular expressions (Go's regexp: RE2); what they find or build
    // is in locked memory. A bad expression is an error (Sprig's regexMatch
    // answers false; its other functions fail, as here).
    const auto compile = [](std::string_view fn, const Value& re) -> Result<GoRegexp> {
      auto r = GoRegexp::compile(re.str());
      // Go's message quotes the expression: only one from the template text.
      if (!r)
        return fn_fail(re.literal ? std::string(fn) + ": " + r.error().message
                                  : std::string(fn) + ": the expression (computed from data) is not valid");
      return r;
    };
    const auto regex_match = [compile](Args& a) -> Result<Value> {
      ROOTSEAL_LET(re, compile("regexMatch", a[0]));
      return bool_value(re.matches(a[1].str()));
    };
    m["regexMatch"] = {"ss", regex_match};
    m["mustRegexMatch"] = {"ss", regex_match};
    const auto regex_find = [compile](Args& a) -> Result<Value> {
      ROOTSEAL_LET(re, compile("regexFind", a[0]));
      const auto s = a[1].str();
      const auto hits = re.find_all(s, 1);
      return sv(hits.empty() ? std::string_view() : s.substr(hits[0].first, hits[0].second - hits[0].first));
    };
    m["regexFind"] = {"ss", regex_find};
    m["mustRegexFind"] = {"ss", regex_find};
    // A []string, nil (printed "[]", toJson "null") when Go's is.
    const auto string_list = [](List l, bool nil) {
      Value v = list_value(std::move(l), true);
      v.null_list = nil;
      return v;
    };
    const auto regex_find_all = [compile, string_list](Args& a) -> Result<Value> {
      ROOTSEAL_LET(re, compile("regexFindAll", a[0]));
      const auto s = a[1].str();
      List out;
      for (const auto& [b, e] : re.find_all(s, static_cast<long>(a[2].i))) out.push_back(sv(s.substr(b, e - b)));
      const bool nil = out.empty();
      return string_list(std::move(out), nil);
    };
    m["regexFindAll"] = {"ssi", regex_find_all};
    m["mustRegexFindAll"] = {"ssi", regex_find_all};
    const auto regex_replace = [compile](bool literal) {
      return [compile, literal](Args& a) -> Result<Value> {
        ROOTSEAL_LET(re, compile(literal ? "regexReplaceAllLiteral" : "regexReplaceAll", a[0]));
        auto out = re.replace_all_secure(a[1].str(), a[2].str(), literal, kMaxBytes);
        if (!out) return fn_fail("a value would exceed 8 MiB: refused");
        return string_value(std::move(*out));
      };
    };
    m["regexReplaceAll"] = {"sss", regex_replace(false)};
    m["mustRegexReplaceAll"] = {"sss", regex_replace(false)};
    m["regexReplaceAllLiteral"] = {"sss", regex_replace(true)};
    m["mustRegexReplaceAllLiteral"] = {"sss", regex_replace(true)};
    // Go's Regexp.Split.
    const auto regex_split = [compile, string_list](Args& a) -> Result<Value> {
      ROOTSEAL_LET(re, compile("regexSplit", a[0]));
      const auto s = a[1].str();
      const std::int64_t n = a[2].i;
      if (n == 0) return string_list({}, true);
      if (!a[0].str().empty() && s.empty()) return string_list({sv("")}, false);
      List out;
      std::size_t beg = 0, end = 0;
      for (const auto& [b, e] : re.find_all(s, static_cast<long>(n))) {
        if (n > 0 && static_cast<std::int64_t>(out.size()) == n - 1) break;
        end = b;
        if (e != 0) out.push_back(sv(s.substr(beg, end - beg)));
        beg = e;
      }
      if (end != s.size()) out.push_back(sv(s.substr(beg)));
      return string_list(std::move(out), false);
    };
    m["regexSplit"] = {"ssi", regex_split};
    m["mustRegexSplit"] = {"ssi", regex_split};
    m["regexQuoteMeta"] = {"s", [](Args& a) -> Result<Value> {
                             SecureBuffer out(a[0].str().size() * 2);
                             for (char c : a[0].str()) {
                               if (std::string_view("\\.+*?()|[]{}^$").find(c) != std::string_view::npos)
                                 out.append("\\");
                               out.push_back(c);
                             }
                             return str_out(out);
                           }};

    // Sprig: more lists, types, integer arithmetic.
    m["rest"] = {"a", [](Args& a) -> Result<Value> {
                   ROOTSEAL_LET(l, list_arg("rest", a[0]));
                   if (l->empty()) return nil_list();
                   return list_value(List(l->begin() + 1, l->end()));
                 }};
    m["initial"] = {"a", [](Args& a) -> Result<Value> {
                      ROOTSEAL_LET(l, list_arg("initial", a[0]));
                      if (l->empty()) return nil_list();
                      return list_value(List(l->begin(), l->end() - 1));
                    }};
    m["reverse"] = {"a", [](Args& a) -> Result<Value> {
                      ROOTSEAL_LET(l, list_arg("reverse", a[0]));
                      return list_value(List(l->rbegin(), l->rend()));
                    }};
    m["compact"] = {"a", [](Args& a) -> Result<Value> {
                      ROOTSEAL_LET(l, list_arg("compact", a[0]));
                      List out;
                      for (const auto& e : *l) {
                        if (!empty(e)) out.push_back(e);
                      }
                      return list_value(std::move(out));
                    }};
    m["uniq"] = {"a", [](Args& a) -> Result<Value> {
                   ROOTSEAL_LET(l, list_arg("uniq", a[0]));
                   // Quadratic: a bounded input.
                   if (l->size() > 4096) return fn_fail("uniq: a list of more than 4096 elements is not supported");
                   List out;
                   for (const auto& e : *l) {
                     if (std::none_of(out.begin(), out.end(), [&](const Value& x) { return deep_equal(x, e); }))
                       out.push_back(e);
                   }
                   return list_value(std::move(out));
                 }};
    m["has"] = {
        "aa", [](Args& a) -> Result<Value> {
          if (a[1].kind == Value::Kind::nil) return bool_value(false);
          ROOTSEAL_LET(l, list_arg("has", a[1]));
          return bool_value(std::any_of(l->begin(), l->end(), [&](const Value& x) { return deep_equal(x, a[0]); }));
        }};
    m["typeOf"] = {"a", [](Args& a) -> Result<Value> { return sv(a[0].type_name()); }};
    m["typeIs"] = {"sa", [](Args& a) -> Result<Value> { return bool_value(a[0].str() == a[1].type_name()); }};
    const auto kind_of = [](const Value& v) -> std::string_view {
      switch (v.kind) {
        case Value::Kind::nil:
          return "invalid";
        case Value::Kind::boolean:
          return "bool";
        case Value::Kind::integer:
          return v.int64 ? "int64" : "int";
        case Value::Kind::floating:
          return "float64";
        case Value::Kind::string:
          return "string";
        case Value::Kind::list:
          return "slice";
        case Value::Kind::map:
          return "map";
        case Value::Kind::time:
          return "struct";
      }
      return "invalid";
    };
    m["kindOf"] = {"a", [kind_of](Args& a) -> Result<Value> {
                     if (a[0].kind == Value::Kind::nil)
                       return fn_fail("error calling kindOf: kindOf of nil is not supported");
                     return sv(kind_of(a[0]));
                   }};
    m["kindIs"] = {"sa", [kind_of](Args& a) -> Result<Value> {
                     if (a[1].kind == Value::Kind::nil)
                       return fn_fail("error calling kindIs: kindIs of nil is not supported");
                     return bool_value(a[0].str() == kind_of(a[1]));
                   }};
    m["add"] = {"a.", [](Args& a) -> Result<Value> {
                  std::int64_t r = 0;
                  for (const auto& v : a) {
                    ROOTSEAL_LET(x, to_int64("add", v));
                    r = wrap_add(r, x);
                  }
                  return int64_value(r);
                }};
    m["add1"] = {"a", [](Args& a) -> Result<Value> {
                   ROOTSEAL_LET(x, to_int64("add1", a[0]));
                   return int64_value(wrap_add(x, 1));
                 }};
    m["sub"] = {"aa", [](Args& a) -> Result<Value> {
                  ROOTSEAL_LET(x, to_int64("sub", a[0]));
                  ROOTSEAL_LET(y, to_int64("sub", a[1]));
                  return int64_value(wrap_add(x, wrap_mul(y, -1)));
                }};
    m["mul"] = {"aa.", [](Args& a) -> Result<Value> {
                  ROOTSEAL_LET(r, to_int64("mul", a[0]));
                  for (std::size_t k = 1; k < a.size(); ++k) {
                    ROOTSEAL_LET(x, to_int64("mul", a[k]));
                    r = wrap_mul(r, x);
                  }
                  return int64_value(r);
                }};
    const auto divmod = [](Args& a, bool mod) -> Result<Value> {
      const std::string_view fn = mod ? "mod" : "div";
      ROOTSEAL_LET(x, to_int64(fn, a[0]));
      ROOTSEAL_LET(y, to_int64(fn, a[1]));
      if (y == 0) return fn_fail("error calling " + std::string(fn) + ": integer divide by zero");
      if (y == -1) return int64_value(mod ? 0 : wrap_mul(x, -1));  // Go: no trap on INT64_MIN / -1
      return int64_value(mod ? x % y : x / y);
    };
    m["div"] = {"aa", [divmod](Args& a) { return divmod(a, false); }};
    m["mod"] = {"aa", [divmod](Args& a) { return divmod(a, true); }};
    const auto extreme = [](Args& a, bool max) -> Result<Value> {
      ROOTSEAL_LET(r, to_int64(max ? "max" : "min", a[0]));
      for (std::size_t k = 1; k < a.size(); ++k) {
        ROOTSEAL_LET(x, to_int64(max ? "max" : "min", a[k]));
        if (max ? x > r : x < r) r = x;
      }
      return int64_value(r);
    };
    m["max"] = {"aa.", [extreme](Args& a) { return extreme(a, true); }};
    m["min"] = {"aa.", [extreme](Args& a) { return extreme(a, false); }};

    // Sprig: defaults and flow.
    m["default"] = {"aa.", [](Args& a) -> Result<Value> {
                      if (a.size() < 2 || empty(a[1])) return a[0];
                      return a[1];
                    }};
    m["empty"] = {"a", [](Args& a) -> Result<Value> { return bool_value(empty(a[0])); }};
    m["coalesce"] = {"a.", [](Args& a) -> Result<Value> {
                       for (const auto& v : a) {
                         if (!empty(v)) return v;
                       }
                       return Value{};
                     }};
    m["ternary"] = {"aab", [](Args& a) -> Result<Value> { return a[2].b ? a[0] : a[1]; }};

    // Sprig: lists and dicts.
    m["list"] = {"a.", [](Args& a) -> Result<Value> { return list_value(List(a.begin(), a.end())); }};
    m["dict"] = {"a.", [](Args& a) -> Result<Value> {
                   Map out;
                   for (std::size_t k = 0; k < a.size(); k += 2) {
                     ROOTSEAL_LET(key, strval(a[k]));
                     out.insert_or_assign(std::move(key), k + 1 < a.size() ? a[k + 1] : sv(""));
                   }
                   return map_value(std::move(out));
                 }};
    m["get"] = {"ms", [](Args& a) -> Result<Value> {
                  auto it = a[0].m->find(a[1].str());
                  if (it == a[0].m->end()) return sv("");
                  return it->second;
                }};
    m["set"] = {"msa", [](Args& a) -> Result<Value> {
                  a[0].m->insert_or_assign(a[1].s->clone(), a[2]);
                  return a[0];
                }};
    m["unset"] = {"ms", [](Args& a) -> Result<Value> {
                    auto it = a[0].m->find(a[1].str());
                    if (it != a[0].m->end()) a[0].m->erase(it);
                    return a[0];
                  }};
    m["hasKey"] = {"ms",
                   [](Args& a) -> Result<Value> { return bool_value(a[0].m->find(a[1].str()) != a[0].m->end()); }};
    m["keys"] = {"m.", [](Args& a) -> Result<Value> {
                   List out;
                   for (const auto& d : a) {
                     for (const auto& kv : *d.m) out.push_back(string_value(kv.first.clone()));
                   }
                   return list_value(std::move(out), true);
                 }};
    m["values"] = {"m", [](Args& a) -> Result<Value> {
                     List out;
                     for (const auto& kv : *a[0].m) out.push_back(kv.second);
                     return list_value(std::move(out));
                   }};
    // Go passes nil as a nil map: a nil source merges nothing; a nil
    // destination (which mergo replaces by a new map) is refused.
    const auto merge = [](std::string_view fn, bool overwrite) {
      return [fn, overwrite](Args& a) -> Result<Value> {
        for (const auto& v : a) {
          if (v.kind != Value::Kind::nil && (v.kind != Value::Kind::map || v.strings))
            return fn_fail("error calling " + std::string(fn) +
                           ": wrong type for value; expected map[string]interface {}; got " + v.type_name());
        }
        if (a[0].kind == Value::Kind::nil) return fn_fail(std::string(fn) + ": a nil destination is not supported");
        for (std::size_t k = 1; k < a.size(); ++k) {
          if (a[k].kind == Value::Kind::nil) continue;
          ROOTSEAL_TRY(mergo(*a[0].m, a[0].strings, *a[k].m, a[k].strings, overwrite, 0));
        }
        return a[0];
      };
    };
    m["merge"] = {"aa.", merge("merge", false)};
    m["mustMerge"] = {"aa.", merge("mustMerge", false)};
    m["mergeOverwrite"] = {"aa.", merge("mergeOverwrite", true)};
    m["mustMergeOverwrite"] = {"aa.", merge("mustMergeOverwrite", true)};
    // ESO's Sprig htpasswd USER PASSWORD ALGORITHM: "sha" gives {SHA} and
    // the base64 of the password's SHA-1, anything else bcrypt (random salt).
    m["htpasswd"] = {"sss", [](Args& a) -> Result<Value> {
                       const auto user = a[0].str();
                       SecureBuffer out(96);
                       if (user.find(':') != std::string_view::npos) {
                         out.append("invalid username: ");
                         out.append(user);
                         return str_out(out);
                       }
                       out.append(user);
                       out.append(":");
                       if (a[2].str() == "sha") {
                         kms::SecureBytes digest(SHA_DIGEST_LENGTH);
                         SHA1(reinterpret_cast<const unsigned char*>(a[1].str().data()), a[1].str().size(),
                              digest.data());
                         out.append("{SHA}");
                         out.append(kms::base64_encode_secure(digest.span()).span());
                       } else {
                         ROOTSEAL_LET(hash, bcrypt_hash(a[1].str()));
                         out.append(hash.span());
                       }
                       return str_out(out);
                     }};
    m["pluck"] = {"sm.", [](Args& a) -> Result<Value> {
                    List out;
                    for (std::size_t k = 1; k < a.size(); ++k) {
                      auto it = a[k].m->find(a[0].str());
                      if (it != a[k].m->end()) out.push_back(it->second);
                    }
                    return list_value(std::move(out));
                  }};
    const auto push = [](Args& a) -> Result<Value> {
      if (a[0].kind != Value::Kind::list)
        return fn_fail("error calling append: Cannot push on type " + a[0].type_name());
      List out(*a[0].l);
      out.push_back(a[1]);
      return list_value(std::move(out));
    };
    m["append"] = {"aa", push};
    m["push"] = {"aa", push};
    m["first"] = {"a", [](Args& a) -> Result<Value> {
                    if (a[0].kind != Value::Kind::list)
                      return fn_fail("error calling first: Cannot find first on type " + a[0].type_name());
                    if (a[0].l->empty()) return Value{};
                    return a[0].l->front();
                  }};
    m["last"] = {"a", [](Args& a) -> Result<Value> {
                   if (a[0].kind != Value::Kind::list)
                     return fn_fail("error calling last: Cannot find last on type " + a[0].type_name());
                   if (a[0].l->empty()) return Value{};
                   return a[0].l->back();
                 }};
    m["sortAlpha"] = {"a", [](Args& a) -> Result<Value> {
                        std::vector<kms::SecureBytes> parts;
                        if (a[0].kind == Value::Kind::list) {
                          ROOTSEAL_TRY_ASSIGN(parts, strslice(a[0]));
                        } else {
                          ROOTSEAL_LET(s, strval(a[0]));
                          parts.push_back(std::move(s));
                        }
                        std::sort(parts.begin(), parts.end(),
                                  [](const auto& x, const auto& y) { return as_view(x) < as_view(y); });
                        List out;
                        for (auto& p : parts) out.push_back(string_value(std::move(p)));
                        return list_value(std::move(out), true);
                      }};

    // Sprig: JSON.
    const auto json_fn = [](std::string_view pad, bool html) {
      return [pad, html](Args& a) -> Result<Value> {
        SecureBuffer out(64);
        ROOTSEAL_TRY(to_json(a[0], out, pad, html));
        ROOTSEAL_TRY(cap(out.size()));
        return str_out(out);
      };
    };
    m["toJson"] = {"a", json_fn("", true)};
    m["toPrettyJson"] = {"a", json_fn("  ", true)};
    m["toRawJson"] = {"a", json_fn("", false)};
    m["fromJson"] = {"s", [](Args& a) { return from_json(a[0].str()); }};
    m["mustFromJson"] = {"s", [](Args& a) { return from_json(a[0].str()); }};
    // ESO's YAML (runtime/template/v2/yaml.go), in yaml_funcs.cpp.
    m["toYaml"] = {"a", [](Args& a) { return yaml::to_yaml(a[0]); }};
    m["fromYaml"] = {"s", [](Args& a) { return yaml::from_yaml(a[0].str()); }};

    // ESO's own helpers (runtime/template/v2: pem.go, pkcs12.go, jwk.go,
    // decrypt.go), in eso_funcs.cpp.
    m["filterPEM"] = {"ss", [](Args& a) { return eso::filter_pem(a[0].str(), a[1].str()); }};
    m["filterCertChain"] = {"ss", [](Args& a) { return eso::filter_cert_chain(a[0].str(), a[1].str()); }};
    m["certSANs"] = {"s", [](Args& a) { return eso::cert_sans(a[0].str()); }};
    m["pkcs12key"] = {"s", [](Args& a) { return eso::pkcs12_key("pkcs12key", "", a[0].str()); }};
    m["pkcs12keyPass"] = {"ss", [](Args& a) { return eso::pkcs12_key("pkcs12keyPass", a[0].str(), a[1].str()); }};
    m["pkcs12cert"] = {"s", [](Args& a) { return eso::pkcs12_cert("pkcs12cert", "", a[0].str()); }};
    m["pkcs12certPass"] = {"ss", [](Args& a) { return eso::pkcs12_cert("pkcs12certPass", a[0].str(), a[1].str()); }};
    m["pemToPkcs12"] = {"ss",
                        [](Args& a) { return eso::pem_to_pkcs12("pemToPkcs12", a[0].str(), a[1].str(), "", false); }};
    m["pemToPkcs12Pass"] = {"sss", [](Args& a) {
                              return eso::pem_to_pkcs12("pemToPkcs12Pass", a[0].str(), a[1].str(), a[2].str(), false);
                            }};
    m["fullPemToPkcs12"] = {
        "ss", [](Args& a) { return eso::pem_to_pkcs12("fullPemToPkcs12", a[0].str(), a[1].str(), "", true); }};
    m["fullPemToPkcs12Pass"] = {
        "sss",
        [](Args& a) { return eso::pem_to_pkcs12("fullPemToPkcs12Pass", a[0].str(), a[1].str(), a[2].str(), true); }};
    m["pemTruststoreToPKCS12"] = {
        "s", [](Args& a) { return eso::pem_truststore_to_pkcs12("pemTruststoreToPKCS12", a[0].str(), ""); }};
    m["pemTruststoreToPKCS12Pass"] = {
        "ss",
        [](Args& a) { return eso::pem_truststore_to_pkcs12("pemTruststoreToPKCS12Pass", a[0].str(), a[1].str()); }};
    m["jwkPublicKeyPem"] = {"s", [](Args& a) { return eso::jwk_pem("jwkPublicKeyPem", a[0].str(), false); }};
    m["jwkPrivateKeyPem"] = {"s", [](Args& a) { return eso::jwk_pem("jwkPrivateKeyPem", a[0].str(), true); }};
    // Sprig's date functions (date_funcs.cpp).
    m["now"] = {"", date::now};
    m["date"] = {"sa", date::date};
    m["dateInZone"] = {"sas", date::date_in_zone};
    m["date_in_zone"] = {"sas", date::date_in_zone};
    m["htmlDate"] = {"a", date::html_date};
    m["htmlDateInZone"] = {"as", date::html_date_in_zone};
    m["dateModify"] = {"st", date::date_modify};
    m["date_modify"] = {"st", date::date_modify};
    m["mustDateModify"] = {"st", date::must_date_modify};
    m["must_date_modify"] = {"st", date::must_date_modify};
    m["toDate"] = {"ss", date::to_date};
    m["mustToDate"] = {"ss", date::must_to_date};
    m["unixEpoch"] = {"t", date::unix_epoch};
    m["ago"] = {"a", date::ago};
    m["duration"] = {"a", date::duration};
    m["durationRound"] = {"a", date::duration_round};
    m["rsaDecrypt"] = {"ssss",
                       [](Args& a) { return eso::rsa_decrypt(a[0].str(), a[1].str(), a[2].str(), a[3].str()); }};
    return m;
  }();
  return t;
}

}  // namespace

bool has_function(std::string_view name) { return table().contains(name); }

Result<Value> call_function(std::string_view name, std::vector<Value>& args) {
  const auto it = table().find(name);
  if (it == table().end() || !it->second.impl)
    return fn_fail("function \"" + std::string(name) + "\" is not supported");
  ROOTSEAL_TRY(check_args(name, it->second.params, args));
  return it->second.impl(args);
}

}  // namespace rootseal::sync::tmpl
