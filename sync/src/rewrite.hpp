// rootseal::sync — what ESO does to the keys of a dataFrom map before they
// become Secret keys (pkg/utils: RewriteMap, ConvertKeys, ValidateKeys), with
// ESO's error texts. Keys are names from the remote value, never secret; the
// values are moved, not read.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/types.hpp"
#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_buffer.hpp"
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
  // ReplaceAllString (literal: ReplaceAllLiteralString) into locked memory;
  // nullopt when the result would pass `max` bytes.
  [[nodiscard]] std::optional<kms::SecureBytes> replace_all_secure(std::string_view src, std::string_view repl,
                                                                   bool literal, std::size_t max) const;
  // Go's allMatches (FindAllString, FindAllStringIndex, Split): the [begin,
  // end) of the first `n` successive matches (n < 0: all).
  [[nodiscard]] std::vector<std::pair<std::size_t, std::size_t>> find_all(std::string_view s, long n) const;

  GoRegexp(GoRegexp&&) noexcept;
  GoRegexp& operator=(GoRegexp&&) noexcept;
  ~GoRegexp();

 private:
  GoRegexp();
  template <typename Out>
  void expand(Out& out, std::string_view tmpl, const std::vector<std::string_view>& groups) const;
  template <typename Out>
  bool replace_into(Out& out, std::string_view src, std::string_view tmpl, bool literal, std::size_t max) const;
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
