// rootseal::sync — internal: the values of the template engine (Go's
// interface{} values as text/template + Sprig see them). Strings and map keys
// derived from data live in locked memory (kms::SecureBytes).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "../secure_buffer.hpp"

namespace rootseal::sync::tmpl {

// Caps on one rendering: a template cannot exhaust memory or CPU.
constexpr std::size_t kMaxTemplate = 1u << 20;  // template text
constexpr int kMaxDepth = 64;                   // nesting: parentheses, control structures, template calls
constexpr std::size_t kMaxSteps = 1'000'000;    // commands evaluated, range iterations
constexpr std::size_t kMaxBytes = 8u << 20;     // the output, and any one value built

struct Value;
struct Time;  // Go's time.Time (date_funcs.cpp)
struct KeyLess {
  using is_transparent = void;
  bool operator()(const kms::SecureBytes& a, const kms::SecureBytes& b) const { return as_view(a) < as_view(b); }
  bool operator()(std::string_view a, const kms::SecureBytes& b) const { return a < as_view(b); }
  bool operator()(const kms::SecureBytes& a, std::string_view b) const { return as_view(a) < b; }
};
using List = std::vector<Value>;
using Map = std::map<kms::SecureBytes, Value, KeyLess>;  // Go's map: iterated in key order (text/template sorts)

struct Value {
  enum class Kind : std::uint8_t { nil, boolean, integer, floating, string, list, map, time };
  Kind kind = Kind::nil;
  bool b = false;
  std::int64_t i = 0;
  double f = 0;
  std::shared_ptr<const kms::SecureBytes> s;
  std::shared_ptr<List> l;  // Go slices and maps are references: shared
  std::shared_ptr<Map> m;
  std::shared_ptr<const Time> t;  // kind time
  bool strings = false;           // map[string]string / []string rather than ...interface{}
  bool int64 = false;             // Go's int64 (Sprig's arithmetic) rather than int
  bool null_list = false;         // a nil slice (Sprig's rest/initial of an empty list): toJson "null"
  bool literal = false;           // from the template text: may be quoted in an error; a number literal converts to int

  [[nodiscard]] std::string_view str() const { return s ? as_view(*s) : std::string_view(); }
  [[nodiscard]] std::string type_name() const;
};

Value nil_value();
Value bool_value(bool b);
Value int_value(std::int64_t i);
Value float_value(double f);
Value string_value(kms::SecureBytes b);
Value string_value(std::string_view s);
Value list_value(List l, bool strings = false);
Value map_value(Map m, bool strings = false);

std::unexpected<kms::Error> fail_at(int line, std::string_view what);

// Go's truth (if/with/and/or/not) and Sprig's empty (its negation, but nil is empty).
bool truth(const Value& v);
// fmt's %v of the value (text/template prints a top-level nil as "<no value>").
kms::Result<void> print_value(const Value& v, SecureBuffer& out);
// Sprig's strval: a string as it is, anything else as %v.
kms::Result<kms::SecureBytes> strval(const Value& v);
// One UTF-8 sequence at s[i]: its code point and length; length 0 when invalid.
std::pair<char32_t, std::size_t> decode_utf8(std::string_view s, std::size_t i);
// Go's %q of a string (strconv.Quote).
void go_quote(std::string_view s, SecureBuffer& out);
// encoding/json of the value (indent empty: compact; escape_html as json.Marshal).
kms::Result<void> to_json(const Value& v, SecureBuffer& out, std::string_view indent, bool escape_html, int depth = 0);
// Sprig's fromJson: Go's json.Unmarshal into interface{} (numbers float64).
kms::Result<Value> from_json(std::string_view text);

}  // namespace rootseal::sync::tmpl
