// Fuzz target: the template engine (sync/src/template/: Go text/template + Sprig), templates and
// the data they are rendered with.
//
// Input: <template text> NUL <data: a JSON object of string values>. Without
// a NUL the data is a fixed map. The same files are the cases of the
// differential test against Go's text/template + Sprig (template_diff).
//
// Properties beyond "no crash, no sanitizer report":
//  - a failure is invalid_argument with a "template: " message;
//  - check_template refuses exactly the texts render_template refuses before
//    evaluating (same message), so a Ready=False message given before
//    anything is fetched is the one rendering would give;
//  - a text without "{{" renders to itself;
//  - rendering is deterministic (but for the random salts of the
//    pemToPkcs12 family, pemTruststoreToPKCS12 and htpasswd's bcrypt);
//  - no error message depends on a data value (values are secrets): a
//    value of 6+ characters that the template does not contain is in the
//    message only if it still is with every value replaced.
#include <boost/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.hpp"
#include "template_cases.hpp"
#include "template.hpp"
#include "template/date_funcs.hpp"

namespace json = boost::json;
using namespace rootseal;

namespace {

std::string_view view(const kms::SecureBytes& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The present of the date functions (now, ago, ...) fixed: rendering is
  // deterministic (template_diff uses another instant).
  static const bool clock_fixed = [] {
    sync::tmpl::date::set_clock_for_tests(std::make_pair(std::int64_t{1700000000}, std::int32_t{123456789}));
    return true;
  }();
  (void)clock_fixed;
  auto parsed = fuzz::parse_template_case(fuzz::as_text(data, size));
  if (!parsed) return 0;
  const std::string_view text = parsed->text;
  const sync::SecretMap& values = parsed->data;

  const auto checked = sync::check_template(text);
  const auto r = sync::render_template(text, values);
  if (!checked) {
    fuzz::require_clean_error(checked.error(), {kms::Errc::invalid_argument}, "check_template error code");
    fuzz::require(!r && r.error().message == checked.error().message, "check_template and render agree on syntax");
  }
  if (text.find("{{") == std::string_view::npos) {
    fuzz::require(r && view(*r) == text, "a text without actions renders to itself");
  }
  const auto again = sync::render_template(text, values);
  fuzz::require(r.has_value() == again.has_value(), "deterministic outcome");
  if (!r) {
    fuzz::require_clean_error(r.error(), {kms::Errc::invalid_argument}, "render error code");
    fuzz::require(r.error().message.starts_with("template: "), "render error prefix");
    fuzz::require(again.error().message == r.error().message, "deterministic message");
    for (const auto& [k, v] : values) {
      if (v.size() < 6 || text.find(view(v)) != std::string_view::npos ||
          r.error().message.find(view(v)) == std::string::npos) {
        continue;
      }
      // The value's text is in the message: only allowed when it is there
      // for another reason (words of the message: "has no entry for" holds
      // "s no entry f"), i.e. also with this value replaced ('!' is neither
      // JSON nor base64) and every other value as it was.
      sync::SecretMap other;
      for (const auto& [k2, v2] : values) {
        other.emplace(k2, k2 == k
                              ? kms::SecureBytes::copy_of(std::string(v2.size(), view(v2).starts_with("!") ? '?' : '!'))
                              : v2.clone());
      }
      const auto r2 = sync::render_template(text, other);
      fuzz::require(!r2 && r2.error().message.find(view(v)) != std::string::npos, "no data value in an error message");
    }
  } else if (text.find("Pkcs12") == std::string_view::npos && text.find("PKCS12") == std::string_view::npos &&
             text.find("htpasswd") == std::string_view::npos) {
    // (ESO's pemToPkcs12 family, pemTruststoreToPKCS12 and htpasswd's bcrypt use random salts:
    // their output differs on each call.)
    fuzz::require(*r == *again, "deterministic output");
  }
  return 0;
}
