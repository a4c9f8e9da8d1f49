// rewrite_diff: dataFrom[].rewrite.regexp, conversionStrategy Default and
// ESO's key validation (sync/src/rewrite.cpp) against the reference, ESO's
// code on Go's regexp and unicode packages (rewrite_ref/main.go).
//
//   rewrite_diff <rewrite_ref binary> <generated patterns>
//
// Cases: a list of patterns covering RE2/Go syntax and its errors (anchors,
// empty matches, classes, Unicode classes, flags, named groups, repeats) ×
// replacement templates with every kind of group reference × keys (ASCII,
// multi-byte UTF-8, separators); then fixed-seed random patterns built from
// regexp tokens, each with a random template and keys; and key conversion /
// validation over single characters of every Unicode category that matters
// and random keys. Outcomes (the rewritten key or Go's exact error text) must
// be identical.
#include <iostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "reference_process.hpp"
#include "rewrite.hpp"
#include "rootseal/kms/encoding.hpp"

using namespace rootseal;

namespace {

std::string hex(std::string_view s) {
  if (s.empty()) return "-";
  return kms::hex_encode({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()});
}

const std::vector<std::string> kPatterns = {
    "a", "^a", "a$", "^$", "", "x*", "a*", "a+", "a?", "a*?", "(a)", "(a)|(b)", "(a)(b)?", "(?P<n>a)",
    "(?P<n>a)|(?P<n>b)", "(?P<first>\\w+)/(?P<rest>.*)", "^db/", "^([^/]+)/(.*)$", "/", "[/.]", "[^a-z]", "\\.", "\\b",
    "\\B", "\\bdb\\b", "\\d+", "\\w+", "\\s", "\\S+", "\\pL", "\\PL", "\\p{Greek}", "\\p{Lu}", "[[:alpha:]]+",
    "[[:^digit:]]", "(?i)DB", "(?i)é", "(?s).", "(?m)^a", "(?U)a+", "(?:ab)+", "a{2}", "a{1,2}", "a{2,}", "a{,5}", ".",
    "..", "é", "[é-ü]", "\\x41", "\\x{e9}", "\\Q.*\\E", "\\A", "\\z", "(|a)", "(a|)", "a|b|", "()", "(?i:a)b",
    "[a-c]{0,3}", "\\\\", "\\\\C",
    // errors
    "(a", "a)", "[a", "*", "+a", "a**", "a{1001}", "a{2,1}", "x{2}{3}", "\\8", "\\C", "\\Z", "a\\", "(?<n>a)",
    "(?P<>a)", "(?P<n", "[z-a]", "\\p{Foo}", "(?z)", "[[:foo:]]", "\\x{110000}", "(?P<a-b>x)"};

const std::vector<std::string> kTemplates = {"",
                                             "x",
                                             "$1",
                                             "${1}",
                                             "$1x",
                                             "${1}x",
                                             "$0",
                                             "[$0]",
                                             "$2-$1",
                                             "${2}_${1}",
                                             "$n",
                                             "${n}",
                                             "$first.$rest",
                                             "$$",
                                             "$",
                                             "${",
                                             "${1",
                                             "$!",
                                             "$01",
                                             "$10",
                                             "é$1",
                                             "${first}${rest}",
                                             "$é"};

const std::vector<std::string> kKeys = {"",
                                        "a",
                                        "abc",
                                        "aaa",
                                        "db/user",
                                        "app-config.json",
                                        "héllo wörld",
                                        "a/b/c",
                                        "ab",
                                        "AbC_1",
                                        "x y",
                                        "ü",
                                        "日本",
                                        "a..b",
                                        "__",
                                        "DB",
                                        "db/db/db",
                                        "b a ",
                                        "é",
                                        "first/rest/more"};

const std::vector<std::string> kTokens = {"a",    "b",      "é",   ".", "*",   "+",   "?",    "|",   "(",    ")",
                                          "[",    "]",      "^",   "$", "\\b", "\\d", "\\w",  "\\s", "{2}",  "{1,3}",
                                          "(?i)", "(?P<n>", "(?:", "-", "/",   "_",   "\\",   "x*",  "\\pL", "[a-z]",
                                          "[^/]", "{",      "}",   ",", "0",   "\\.", "(?s)", "\\Q", "\\E",  "[:"};

// Single characters of the categories ConvertKeys and ValidateKeys look at.
const std::vector<std::string> kChars = {"a",  "Z", "0", "-", ".",  "_",  "/", " ",        ":",  "é",
                                         "ß",  "٣", "Ⅻ", "½", "€",  "😀", "ǅ", "\xcc\x81", "日", "ж",
                                         "\t", "~", "²", "ª", "〇", "‿",  "·", "ـ"};

std::string random_pattern(std::mt19937& rng) {
  std::string p;
  const auto n = 1 + rng() % 6;
  for (std::size_t i = 0; i < n; ++i) p += kTokens[rng() % kTokens.size()];
  return p;
}

struct Case {
  std::string request;  // the reference's request line
  std::string pattern, tmpl, key;
  bool rewrite = true;
};

std::string mine(const Case& c) {
  if (c.rewrite) {
    auto re = sync::GoRegexp::compile(c.pattern);
    if (!re)
      return "E" + kms::hex_encode(
                       {reinterpret_cast<const std::uint8_t*>(re.error().message.data()), re.error().message.size()});
    return hex(re->replace_all(c.key, c.tmpl));
  }
  sync::SecretMap one;
  one.emplace(c.key, kms::SecureBytes::copy_of(std::string_view("v")));
  auto converted = sync::convert_keys(sync::SecretMap(std::move(one)));
  std::string out = converted ? hex(converted->begin()->first) : "?";
  sync::SecretMap check;
  check.emplace(c.key, kms::SecureBytes::copy_of(std::string_view("v")));
  auto valid = sync::validate_keys(check);
  out += valid ? " ok"
               : " E" + kms::hex_encode({reinterpret_cast<const std::uint8_t*>(valid.error().message.data()),
                                         valid.error().message.size()});
  return out;
}

void add_rewrite(std::vector<Case>& cases, const std::string& p, const std::string& t, const std::string& k) {
  cases.push_back({"R " + hex(p) + " " + hex(t) + " " + hex(k), p, t, k, true});
}

void add_key(std::vector<Case>& cases, const std::string& k) { cases.push_back({"K " + hex(k), "", "", k, false}); }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: rewrite_diff <rewrite_ref binary> <generated patterns>\n";
    return 2;
  }
  std::vector<Case> cases;
  for (const auto& p : kPatterns) {
    for (const auto& t : kTemplates) {
      for (const auto& k : kKeys) add_rewrite(cases, p, t, k);
    }
  }
  std::mt19937 rng(20261207);
  const int generated = std::stoi(argv[2]);
  for (int i = 0; i < generated; ++i) {
    const std::string p = random_pattern(rng);
    const std::string& t = kTemplates[rng() % kTemplates.size()];
    for (int k = 0; k < 3; ++k) add_rewrite(cases, p, t, kKeys[rng() % kKeys.size()]);
  }
  for (const auto& k : kKeys) add_key(cases, k);
  for (const auto& c : kChars) {
    add_key(cases, c);
    add_key(cases, "k" + c + "k");
  }
  add_key(cases, std::string(253, 'k'));
  add_key(cases, std::string(254, 'k'));
  add_key(cases, std::string(250, 'k') + "日本");
  for (int i = 0; i < generated; ++i) {
    std::string k;
    const auto n = rng() % 6;
    for (std::size_t j = 0; j < n; ++j) k += kChars[rng() % kChars.size()];
    add_key(cases, k);
  }

  std::vector<std::string> requests;
  requests.reserve(cases.size());
  for (const auto& c : cases) requests.push_back(c.request);
  const auto reference = fuzz::run_reference(argv[1], requests);
  if (!reference) return 2;
  std::size_t failures = 0;
  std::size_t errors = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const std::string ours = mine(cases[i]);
    const std::string& theirs = (*reference)[i];
    if (theirs.starts_with('E')) ++errors;
    if (ours == theirs) continue;
    if (++failures <= 25) {
      std::cerr << "rewrite_diff: " << cases[i].request << ": rootseal " << ours << ", Go " << theirs << "\n";
    }
  }
  std::cout << "rewrite_diff: " << cases.size() << " cases (" << errors << " refused by Go's regexp), " << failures
            << " differences\n";
  return failures == 0 ? 0 : 1;
}
