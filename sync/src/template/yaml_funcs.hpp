// rootseal::sync — internal: ESO's `toYaml` (runtime/template/v2/yaml.go):
// sigs.k8s.io/yaml's Marshal — encoding/json, that JSON read by go-yaml v2
// and written again by go-yaml v2's emitter — with the trailing newline
// trimmed, "" when encoding/json refuses the value (NaN, an infinity). What
// it reads and writes stays in locked memory.
#pragma once

#include "value.hpp"

namespace rootseal::sync::tmpl::yaml {

kms::Result<Value> to_yaml(const Value& v);

}  // namespace rootseal::sync::tmpl::yaml
