// rootseal::sync — target.template data rendering: Go's text/template with
// the Sprig functions ESO's engine v2 gives templates, evaluated by rootseal
// (no code execution, no I/O), with hard caps on work and output.
//
// Supported (docs/sync.md "Templates" has the full table): text and actions
// with {{- -}} trimming and comments; fields .a.b, $variables (:= and =),
// string/raw/number/bool/nil literals, pipelines and parentheses;
// if/else if/else, range (maps in key order, lists; $i, $v; else; break,
// continue), with/else, define/template/block; Go's builtins and, or, not,
// len, index, eq, ne, lt, le, gt, ge, print, printf, println; and the Sprig
// functions of docs/sync.md. Any other function is refused by name at parse
// time ("function "x" is not supported"). missingkey=error as ESO sets it.
// Errors name the line ("template: line 3: ..."); they never contain a data
// value. Rendered output and every intermediate value derived from data are
// in locked memory.
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
