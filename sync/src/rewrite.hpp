// rootseal::sync — what ESO does to the keys of a dataFrom map before they
// become Secret keys (pkg/utils: RewriteMap, ConvertKeys, ValidateKeys), with
// ESO's error texts. Keys are names from the remote value, never secret; the
// values are moved, not read.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/types.hpp"
#include "rootseal/kms/error.hpp"
#include "rootseal/sync/provider.hpp"

namespace re2 {
class RE2;
}

namespace rootseal::sync {

// A regular expression with Go's regexp semantics (RE2 syntax, leftmost-first,
// UTF-8), on RE2 — the library Go's regexp was designed after.
class GoRegexp {
 public:
  // invalid_argument with Go's message: "error parsing regexp: <what>: `<part>`".
  static kms::Result<GoRegexp> compile(std::string_view pattern);
  // Go's Regexp.ReplaceAllString: every non-overlapping match replaced by
  // `tmpl` expanded as Regexp.Expand does ($1, ${1}, $name, ${name}, $$).
  [[nodiscard]] std::string replace_all(std::string_view src, std::string_view tmpl) const;
  // Go's Regexp.MatchString: a match anywhere in `s`.
  [[nodiscard]] bool matches(std::string_view s) const;

  GoRegexp(GoRegexp&&) noexcept;
  GoRegexp& operator=(GoRegexp&&) noexcept;
  ~GoRegexp();

 private:
  GoRegexp();
  void expand(std::string& out, std::string_view tmpl, const std::vector<std::string_view>& groups) const;
  std::unique_ptr<re2::RE2> re_;
  std::vector<std::string> names_;  // by group index; "" for unnamed groups and 0
};

// RewriteMap: the operations in order. Errors name the operation as ESO does:
// "failed rewrite operation[<i>]: ...".
kms::Result<SecretMap> rewrite_map(const std::vector<model::Rewrite>& operations, SecretMap in);
// ConvertKeys with conversionStrategy Default: every character that is not a
// letter, a digit, '-', '.' or '_' becomes '_' (letters and digits in
// Unicode's sense). "secret name collision during conversion: <key>".
kms::Result<SecretMap> convert_keys(SecretMap in);
// ValidateKeys: drops empty keys; refuses a key over 253 bytes or with a
// character that is not a letter, a digit, '-', '.' or '_'.
kms::Result<void> validate_keys(SecretMap& in);

}  // namespace rootseal::sync
