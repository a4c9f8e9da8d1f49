// rootseal::sync — the rendered text of a `templateAs: KeysAndValues`
// template read as ESO reads it: sigs.k8s.io/yaml's Unmarshal into a
// map[string]string (go-yaml v2, YAML 1.1 resolution, and scalars that
// resolve to numbers or booleans turned back into strings the way
// sigs.k8s.io/yaml does it: `yes` → "true", `0x1F` → "31", `1.50` → "1.5").
//
// The text is secret (it holds rendered values), so it is read in place and
// the values are copied only into locked memory. rootseal reads the part of
// YAML such templates produce: one mapping of `key: value` lines (plain,
// single- or double-quoted scalars, comments, blank lines, a leading
// `---`). Anything else — nested mappings, sequences, block or multi-line
// scalars, flow collections, anchors, tags, several documents — is refused
// with a message that starts "unsupported YAML", never read differently.
// fuzz.kv_yaml_diff checks the result against sigs.k8s.io/yaml itself.
#pragma once

#include <cstdint>
#include <string_view>

#include "rootseal/kms/error.hpp"
#include "rootseal/sync/provider.hpp"

namespace rootseal::sync {

// invalid_argument: "line <n>: <what>" (YAML that sigs.k8s.io/yaml refuses
// too), or "unsupported YAML at line <n>: <what>". No value is quoted.
kms::Result<SecretMap> parse_yaml_string_map(std::string_view text);

// Whether go-yaml v2's resolve() leaves this plain scalar a string (not null,
// a bool, an int or a float). Timestamps, `<<` and base 60 floats are not
// judged here (they resolve to strings in map[string]string).
bool yaml_plain_is_string(std::string_view text);

// go-yaml v2's resolve() of a plain scalar as the value it decodes into an
// interface{}: null, a bool, an int (int64, or uint64 past it), a float64,
// or a string (timestamps, base 60 numbers and `<<` stay strings).
struct YamlPlain {
  enum class Kind : std::uint8_t { string, null, boolean, int64, uint64, floating };
  Kind kind = Kind::string;
  bool b = false;
  std::int64_t i = 0;
  std::uint64_t u = 0;
  double f = 0;
};
YamlPlain resolve_yaml_plain(std::string_view text);

}  // namespace rootseal::sync
