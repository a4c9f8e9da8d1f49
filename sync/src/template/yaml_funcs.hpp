// rootseal::sync — internal: ESO's `toYaml` (runtime/template/v2/yaml.go):
// sigs.k8s.io/yaml's Marshal — encoding/json, that JSON read by go-yaml v2
// and written again by go-yaml v2's emitter — with the trailing newline
// trimmed, "" when encoding/json refuses the value (NaN, an infinity). What
// it reads and writes stays in locked memory.
#pragma once

#include "value.hpp"

namespace rootseal::sync::tmpl::yaml {

kms::Result<Value> to_yaml(const Value& v);

// ESO's `fromYaml`: sigs.k8s.io/yaml's Unmarshal into a map[string]interface{}
// (go-yaml v2's YAML 1.1 reading, keys as strings, numbers float64 after
// encoding/json's round trip); a parse error or a failure of the JSON
// steps is the map {"Error": Go's text}, as in ESO. YAML rootseal does not
// read as go-yaml does (tags, directives, float or null keys, text that is
// not UTF-8) is an error "template: fromYaml: refused: ..." that quotes
// none of the text.
kms::Result<Value> from_yaml(std::string_view text);

}  // namespace rootseal::sync::tmpl::yaml
