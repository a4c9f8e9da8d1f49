// rootseal::sync — target.template data rendering: a small, safe subset of
// Go's text/template (ESO engineVersion v2), evaluated without any code
// execution, loops or I/O.
//
// Supported (docs/sync.md "Templates" lists the same):
//   literal text; actions {{ ... }} with {{- and -}} whitespace trimming;
//   comments {{/* ... */}};
//   .key              the value of a Secret key gathered from data/dataFrom
//   .a.b              a field of a JSON value (after fromJson)
//   "str", `raw`      string literals
//   (pipeline)        grouping, optionally followed by .field
//   x | f | g         pipelines (the left value is the last argument, as in Go)
//   functions: b64enc, b64dec, upper, lower, trim, toString, toJson, fromJson,
//              quote, index C K..., get C K
// Anything else (if, range, with, define, template, block, variables,
// numbers, unknown functions) is an error naming the construct. A missing key
// is an error (ESO renders with missingkey=error). Rendered output is in
// locked memory; error messages never contain values.
#pragma once

#include <string_view>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "rootseal/sync/provider.hpp"

namespace rootseal::sync {

// Syntax check only (for a Ready=False message before anything is fetched).
kms::Result<void> check_template(std::string_view text);
kms::Result<kms::SecureBytes> render_template(std::string_view text, const SecretMap& values);

}  // namespace rootseal::sync
