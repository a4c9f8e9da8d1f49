// template_diff: rootseal's template engine against the reference, Go's
// text/template + Sprig as ESO's engine v2 runs it (template_ref/main.go).
//
//   template_diff <template_ref binary> <case folder> <generated cases>
//
// Cases: every file of the folder (the fuzz corpus, format in
// template_cases.hpp) and a fixed-seed generated set built from the
// supported constructs and functions, refused constructs and near-misses,
// over data of printable ASCII, generated date templates (Go layouts,
// zones, toDate, durations), generated toYaml values (add_yaml_cases) and
// fromYaml documents (add_fromyaml_cases). Both sides take the same fixed instant for the
// present of Sprig's date functions (kNowSec below; the reference's
// clock.go). Each case is rendered by both; the rules:
//   1. both render: the outputs are identical (bcrypt hashes, whose salt is
//      random, by their shape);
//   2. Go refuses: rootseal refuses too (rendering what ESO cannot would
//      make a Secret ESO would not);
//   3. rootseal refuses, Go renders: only for the documented refusals
//      (docs/sync.md): a function or form rootseal does not implement
//      ("not supported"), b64dec/b32dec/fromJson of bad input (Sprig renders
//      its error text / nothing), fromYaml of YAML rootseal does not read
//      as go-yaml does or that go-yaml refuses ("fromYaml: refused": ESO
//      renders go-yaml's error text), regexMatch of a bad expression (Sprig
//      answers false), a pipeline ending in '|' (Go 1.19 accepts it, later
//      Go refuses it), and the caps on work, depth and size.
// Any other outcome is a failure; the cases are printed (no data values:
// the data here is test data), long outputs cut.
#include <boost/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iostream>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>
#include <unistd.h>
#include <vector>

#include "reference_process.hpp"
#include "rootseal/kms/encoding.hpp"
#include "template.hpp"
#include "template/date_funcs.hpp"
#include "template_cases.hpp"

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace rootseal;

namespace {

// The present of both sides (2026-03-29 00:59:59.987654321 UTC: the second
// before Europe/Berlin's change to summer time).
constexpr std::int64_t kNowSec = 1774745999;
constexpr std::int32_t kNowNsec = 987654321;

struct Case {
  std::string name;
  std::string text;
  sync::SecretMap data;
};

std::string b64(std::string_view s) {
  return kms::base64_encode({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()});
}
std::string str(const kms::SecureBytes& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// A generated template: pieces of literal text and actions over the data's keys.
std::string generate(std::mt19937& rng, const std::vector<std::string>& keys) {
  auto pick = [&](const auto& v) -> const auto& {
    return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng)];
  };
  auto chance = [&](int pct) { return std::uniform_int_distribution<int>(0, 99)(rng) < pct; };
  static const std::vector<std::string> unary = {"b64enc",
                                                 "upper",
                                                 "lower",
                                                 "trim",
                                                 "toString",
                                                 "quote",
                                                 "toJson",
                                                 "squote",
                                                 "title",
                                                 "sha256sum",
                                                 "b32enc",
                                                 "len",
                                                 "not",
                                                 "empty",
                                                 "print",
                                                 "println",
                                                 "html",
                                                 "urlquery",
                                                 "nindent 2",
                                                 "indent 1",
                                                 "trunc 3",
                                                 "trunc -2",
                                                 "substr 1 3",
                                                 "replace \"a\" \"_\"",
                                                 "trimPrefix \"a\"",
                                                 "trimSuffix \"e\"",
                                                 "trimAll \"a\"",
                                                 "contains \"li\"",
                                                 "hasPrefix \"a\"",
                                                 "default \"dflt\"",
                                                 "splitList \"a\"",
                                                 "repeat 2",
                                                 "printf \"%s|%5s|%q|%v|%x\"",
                                                 "eq \"alice\"",
                                                 "ne \"x\"",
                                                 "lt \"b\"",
                                                 "ge \"a\"",
                                                 "list",
                                                 "join \",\"",
                                                 "coalesce \"\"",
                                                 "cat \"c\"",
                                                 "ternary 1 2",
                                                 "printf \"%d\"",
                                                 "index . \"user\"",
                                                 "b64dec",
                                                 "fromJson",
                                                 "regexMatch \"^a.*[ce]$\"",
                                                 "regexMatch \"(\"",
                                                 "rest",
                                                 "reverse",
                                                 "uniq",
                                                 "compact",
                                                 "add1",
                                                 "add 2",
                                                 "mul 3",
                                                 "div 2",
                                                 "max 3",
                                                 "typeOf",
                                                 "kindOf",
                                                 "nospace",
                                                 "sha1sum",
                                                 "has \"a\"",
                                                 "append (list 1)",
                                                 "filterPEM \"CERTIFICATE\"",
                                                 "certSANs",
                                                 "filterCertChain \"leaf\"",
                                                 "rsaDecrypt \"None\" \"SHA1\" \"ct\"",
                                                 "regexFind \"[a-z]+\"",
                                                 "regexFindAll \"[aeiou]\" -1",
                                                 "regexFindAll \"x*\" 2",
                                                 "regexSplit \"[, ]\" -1",
                                                 "regexSplit \"\" 3",
                                                 "regexReplaceAll \"(l+)\" \"<${1}>\"",
                                                 "regexReplaceAllLiteral \"a|e\" \"$1\"",
                                                 "regexReplaceAll \"\\\\b\" \"|\"",
                                                 "regexQuoteMeta",
                                                 "mustRegexFind \"(\"",
                                                 "merge (dict \"k\" .user)",
                                                 "mergeOverwrite (dict \"user\" 1) (dict \"b64\" 2)",
                                                 "date \"2006-01-02 15:04:05.000 MST\"",
                                                 "htmlDate",
                                                 "htmlDateInZone \"Asia/Kolkata\"",
                                                 "dateInZone \"Jan _2 3:04PM -07:00\" now",
                                                 "ago",
                                                 "duration",
                                                 "durationRound",
                                                 "unixEpoch",
                                                 "dateModify \"-1h30m\"",
                                                 "mustDateModify \"90s\"",
                                                 "toDate \"2006\"",
                                                 "mustToDate \"2006-01-02\""};
  static const std::vector<std::string> literals = {"\"lit\"",
                                                    "`raw`",
                                                    "\"a b\"",
                                                    "\"\"",
                                                    "\"x\\ty\"",
                                                    "\"q\\\"\"",
                                                    "42",
                                                    "-1",
                                                    "0",
                                                    "1.5",
                                                    "true",
                                                    "false",
                                                    "nil",
                                                    "0x10",
                                                    "(list 1 \"a\")",
                                                    "(dict \"k\" .user)",
                                                    "$",
                                                    "$v",
                                                    "$.user",
                                                    "now",
                                                    "(now)",
                                                    "1700000000",
                                                    "(add 1700000000 1)",
                                                    "\"90m\"",
                                                    "\"3600\"",
                                                    "(toDate \"2006-01-02 15:04\" \"2024-02-29 13:45\")"};
  static const std::vector<std::string> odd = {
      "{{ if .user }}y{{ end }}",
      "{{ range . }}x{{ end }}",
      "{{ $x := 1 }}{{ $x }}",
      "{{ 42 }}",
      "{{ .user | sha256sum }}",
      "{{ }}",
      "{{ .user",
      "{{ .user.x }}",
      "{{ . }}",
      "{{ .nope }}",
      "{{ \"\\x41\" }}",
      "{{ print .user }}",
      "{{/* c */}}",
      "{{- /* c */ -}}",
      "{{ /* c */ }}",
      "{{ .user | }}",
      "{{ (.user) }}",
      "{{ ( .user | upper ).x }}",
      "{{ index . \"user\" }}",
      "{{ index . }}",
      "{{ get . \"user\" }}",
      "{{ \"YQ==\" | b64dec }}",
      "{{ \"!\" | b64dec }}",
      "{{ .json | fromJson | toString }}",
      "{{ (.json | fromJson).host }}",
      "{{ (.json | fromJson).port }}",
      "{{ index (.json | fromJson) \"list\" 0 }}",
      "{{ \"{}\" | fromJson }}",
      "{{ range $k, $v := . }}{{ $k }}={{ $v | len }};{{ end }}",
      "{{ range $i, $e := (.json | fromJson).list }}{{ $i }}{{ $e }}{{ else }}none{{ end }}",
      "{{ with .empty }}w{{ else }}nw{{ end }}",
      "{{ with .user }}{{ . | upper }}{{ end }}",
      "{{ if and .user .empty }}a{{ else if or .empty .user }}o{{ else }}n{{ end }}",
      "{{ define \"d\" }}<{{ . }}>{{ end }}{{ template \"d\" .user }}",
      "{{ block \"b\" .password }}[{{ . }}]{{ end }}",
      "{{ range splitList \",\" \"a,b,c\" }}{{ if eq . \"b\" }}{{ continue }}{{ end }}{{ . }}{{ end }}",
      "{{ range $i, $e := list 1 2 3 }}{{ if gt $i 0 }}{{ break }}{{ end }}{{ $e }}{{ end }}",
      "{{ $d := dict \"a\" .user }}{{ $_ := set $d \"b\" 2 }}{{ toJson $d }}",
      "{{ keys (.json | fromJson) | sortAlpha }}",
      "{{ printf \"%s=%d\" .user (len .password) }}",
      "{{ eq 1 \"1\" }}",
      "{{ lt 1 2.0 }}",
      "{{ $y }}",
      "{{ break }}",
      "{{ else }}",
      "{{ end }}",
      "{{ if }}{{ end }}",
      "{{ range 5 }}{{ end }}",
      "{{ template \"nope\" }}",
      "{{ nil }}",
      "{{ .user 1 }}",
      "{{ \"x\" | \"y\" }}",
      "{{ upper 1 }}",
      "{{ repeat -1 \"x\" }}",
      "{{ toPrettyJson (.json | fromJson) }}",
      "{{ pluck \"host\" (.json | fromJson) }}",
      "{{ hasKey (.json | fromJson) \"host\" }}",
      "{{ split \":\" .password }}",
      "{{ .json | fromJson }}",
      "{{ filterPEM \"CERTIFICATE\" \"\" }}",
      "{{ filterPEM \"X\" \"-----BEGIN X-----\\nQUJD\\n-----END X-----\\n\" }}",
      "{{ filterPEM \"x\" \"j\\n-----BEGIN X-----\\nK: v\\n\\nQUJD\\n-----END X-----\\n-----BEGIN Y-----\\n-----END "
      "Y-----\" }}",
      "{{ certSANs \"-----BEGIN X-----\\nQUJD\\n-----END X-----\" }}",
      "{{ rsaDecrypt \"RSA-OAEP\" \"SHA1\" .user .user }}",
      "{{ regexSplit \"a\" \"\" -1 | toJson }}",
      "{{ regexSplit \"x*\" \"axbc\" -1 | toJson }}",
      "{{ regexSplit \"b\" \"abcbd\" 0 | toJson }}",
      "{{ regexFindAll \"\" \"h\\u00e9llo\" -1 | toJson }}",
      "{{ regexFindAll \"a\" \"bbb\" -1 | toJson }}",
      "{{ regexReplaceAll \"a*\" \"baaac\" \"-\" }}",
      "{{ regexReplaceAll \"(?P<first>\\\\w+) (\\\\w+)\" \"ab cd\" \"$2 ${first}$$\" }}",
      "{{ regexFind \"(\" .user }}",
      "{{ htpasswd .user .password \"sha\" }}|{{ htpasswd \"a:b\" \"x\" \"sha\" }}|{{ htpasswd .user .password "
      "\"bcrypt\" | len }}",
      "{{ htpasswd .user .password \"bcrypt\" }}",
      "{{ htpasswd .user .password }}",
      "{{ $a := dict \"x\" 1 \"y\" \"\" \"n\" (dict \"p\" 1) }}{{ $b := dict \"x\" 2 \"y\" \"b\" \"z\" 3 \"n\" (dict "
      "\"p\" 2 \"q\" 3) }}{{ merge $a $b | toJson }}{{ $a.n | toJson }}",
      "{{ $a := dict \"x\" 1 \"y\" \"\" \"n\" (dict \"p\" 1) }}{{ $b := dict \"x\" 2 \"y\" \"b\" \"z\" 3 \"n\" (dict "
      "\"p\" 2 \"q\" 3) }}{{ mergeOverwrite $a $b | toJson }}",
      "{{ merge (dict \"l\" (list 1) \"e\" list \"s\" \"x\") (dict \"l\" (list 2) \"e\" (list 3) \"m\" list \"s\" "
      "(list 4)) | toJson }}",
      "{{ mergeOverwrite (dict \"l\" (list 1) \"e\" list \"s\" \"x\") (dict \"l\" (list 2) \"e\" (list 3) \"m\" list "
      "\"s\" (list 4)) | toJson }}",
      "{{ mergeOverwrite (dict \"a\" 1 \"b\" 2) (dict \"a\" nil \"c\" nil) | toJson }}{{ merge (dict \"a\" 1) (dict "
      "\"a\" nil \"c\" nil) | toJson }}",
      "{{ mergeOverwrite (dict \"a\" \"x\" \"b\" \"\" \"c\" (dict)) (dict \"a\" (dict \"k\" 1) \"b\" (dict \"k\" 2) "
      "\"c\" (dict)) | toJson }}",
      "{{ merge (.json | fromJson) (dict \"host\" \"h2\" \"new\" 1 \"list\" (list \"z\")) | toJson }}",
      "{{ mergeOverwrite (.json | fromJson) (dict \"host\" \"\" \"port\" 0 \"n\" (dict \"x\" 1)) | toJson }}",
      "{{ $d := dict \"a\" 1 \"b\" (dict \"c\" 2) }}{{ merge $d $d | toJson }}{{ mergeOverwrite $d $d | toJson }}",
      "{{ merge (dict) (dict \"a\" 1) (dict \"a\" 2 \"b\" 2) | toJson }}{{ mergeOverwrite (dict) (dict \"a\" 1) (dict "
      "\"a\" 2 \"b\" \"\") | toJson }}",
      "{{ merge (dict \"a\" 0 \"b\" false \"c\" 0.0 \"d\" \"\") (dict \"a\" 5 \"b\" true \"c\" 1.5 \"d\" \"x\") | "
      "toJson }}",
      "{{ merge (dict \"a\" 1) (split \",\" \"x,y\") }}",
      "{{ merge (dict \"a\" (split \",\" \"x,y\")) (dict \"a\" (dict \"_0\" 1)) | toJson }}",
      "{{ merge (dict \"a\" 1) .user }}",
      "{{ now }}",
      "{{ now | toJson }}|{{ list now 1 | toJson }}|{{ dict \"t\" now | toPrettyJson }}",
      "{{ now | unixEpoch }}|{{ now | kindOf }}|{{ now | typeOf }}|{{ empty now }}|{{ if now }}t{{ end }}",
      "{{ printf \"%v|%s|%20v|%-40s|\" now now now now }}|{{ print now }}|{{ now | toString }}|{{ list now }}",
      "{{ printf \"%d\" now }}",
      "{{ now | dateModify \"-24h\" | date \"Mon Jan _2 15:04:05 MST 2006\" }}",
      "{{ now | dateModify \"bad\" | date \"2006\" }}|{{ now | date_modify \"1h\" }}",
      "{{ now | mustDateModify \"bad\" }}",
      "{{ now | must_date_modify \"2s\" }}",
      "{{ dateInZone \"2006-01-02 15:04:05 MST -0700\" now \"Europe/Berlin\" }}",
      "{{ date_in_zone \"3:04PM Jan 2 .999 ,000\" now \"America/New_York\" }}",
      "{{ dateInZone \"2006 MST\" now \"../etc/passwd\" }}|{{ dateInZone \"2006 MST\" now \"Nowhere/City\" }}",
      "{{ htmlDate 0 }}|{{ htmlDateInZone 1700000000 \"Asia/Kolkata\" }}|{{ htmlDate \"x\" }}|{{ htmlDate 1.5 }}",
      "{{ date \"_2 __2 002 Monday Jan January 01 1 02 2 03 3 04 4 05 5 06 PM pm -07 -07:00:00 Z07 Z070000\" "
      "(toDate \"2006-01-02\" \"2024-03-05\") }}",
      "{{ toDate \"2006-01-02\" \"2024-02-30\" }}|{{ toDate \"2006-01-02\" \"x\" | unixEpoch }}",
      "{{ mustToDate \"2006-01-02\" \"x\" }}",
      "{{ toDate \"02 Jan 06 15:04 -0700\" \"29 Feb 24 13:45 +0530\" }}",
      "{{ toDate \"2006-01-02T15:04:05Z07:00\" \"2024-02-29T13:45:00Z\" }}",
      "{{ toDate \"Monday, January 2 2006 3:04:05.000 pm\" \"thursday, FEBRUARY 29 2024 1:45:00.123 pm\" }}",
      "{{ toDate \"2006 002\" \"2024 060\" }}|{{ toDate \"2006 __2\" \"2023  60\" }}|{{ toDate \"2006 002\" \"2023 "
      "366\" }}",
      "{{ toDate \"2006-01-02 15:04:05\" \"2024-02-29 13:45:00.123456\" }}",
      "{{ toDate \"2006 002\" \"2023 031\" }}|{{ toDate \"2006 002\" \"2023 365\" }}|{{ toDate \"2006 __2 Jan\" \"2024 "
      "61 Mar\" }}|{{ toDate \"2006 002 _2\" \"2023 059 27\" }}",
      "{{ toDate \"MST 2006\" \"UTC 2020\" }}",
      "{{ toDate \"2006-01-02\" \"1999-12-31\" | ago }}|{{ 1700000000 | ago }}|{{ ago now }}|{{ ago \"x\" }}",
      "{{ duration \"3725\" }}|{{ duration 90 }}|{{ duration (add 90 0) }}|{{ duration \"x\" }}|{{ duration "
      "\"99999999999999999999\" }}",
      "{{ durationRound \"2h45m\" }}|{{ durationRound \"400h\" }}|{{ durationRound (toDate \"2006\" \"2001\") }}|{{ "
      "durationRound \"bad\" }}|{{ durationRound (mul 3 1000000000) }}",
      "{{ dateModify \"1.5h\" (toDate \"2006-01-02\" \"2024-01-01\") }}",
      "{{ dateModify \"1h\" \"x\" }}",
      "{{ eq now 1 }}",
      "{{ now | upper }}",
      "{{ date \"2006\" .user }}|{{ date \"2006-01-02\" 1.5 }}|{{ date \"15:04:05.000000\" nil }}",
      "{{ toDate \"2006-01-02\" \"2024-01-01\" | dateInZone \"15:04 MST\" }}",
      "{{ unixEpoch 5 }}",
      "{{ now.Year }}",
      "{{ (now).Year }}|{{ (toDate \"2006\" \"2020\").Unix }}"};
  std::string out;
  const int pieces = std::uniform_int_distribution<int>(1, 4)(rng);
  const bool ranged = chance(20);
  if (ranged) out += chance(50) ? "{{ range $k, $v := . }}" : "{{ with $v := .user }}";
  for (int i = 0; i < pieces; ++i) {
    if (chance(30)) out += pick(std::vector<std::string>{"text ", " - ", "\n", "a:", "  ", "{ ", "}", "x}y"});
    if (chance(12)) {
      out += pick(odd);
      continue;
    }
    // Inside range/with the dot is no longer the data: $ is.
    const std::string& key = pick(keys);
    const std::string root = ranged ? "$" : ".";
    std::string value = chance(70)
                            ? (chance(85) && key.find('-') == std::string::npos ? (ranged ? "$." : ".") + key
                                                                                : "index " + root + " \"" + key + "\"")
                            : pick(literals);
    if (!ranged && value.starts_with("$v")) value = ".user";
    const int fns = std::uniform_int_distribution<int>(0, 3)(rng);
    std::string action = value;
    for (int f = 0; f < fns; ++f) {
      const std::string fn = pick(unary);
      if (chance(50)) {
        action += " | " + fn;
      } else {
        action = fn + " (" + action + ")";
      }
    }
    if (chance(10)) action = "$x := " + action + " }}{{ $x";
    const std::string open = chance(20) ? "{{- " : "{{ ";
    const std::string close = chance(20) ? " -}}" : " }}";
    out += open + action + close;
  }
  if (ranged) out += "{{ end }}";
  return out;
}

// bcrypt hashes (htpasswd) have a random salt: compared by their shape.
std::string bcrypt_shape(const std::string& s) {
  static const std::regex hash(R"(\$2[aby]\$10\$[./A-Za-z0-9]{53})");
  return std::regex_replace(s, hash, "<bcrypt>");
}

std::string cut(const std::string& s) {
  const std::string j = json::serialize(json::value(s));
  return j.size() > (std::getenv("TEMPLATE_DIFF_FULL") != nullptr ? 100000 : 300)
             ? j.substr(0, 300) + "... (" + std::to_string(s.size()) + " bytes)"
             : j;
}

// ESO's toYaml (sigs.k8s.io/yaml over go-yaml v2's emitter): values and keys
// put together from pieces that need a style of their own (text that would
// read as another type, indicators, leading and trailing spaces, line
// breaks, Unicode, escapes, long lines that fold), in nested dicts and
// lists, numbers as encoding/json writes them. A generator of its own, so
// that the other generated sets stay as they were.
void add_yaml_cases(std::vector<Case>& cases, int count, std::uint32_t seed) {
  std::mt19937 rng(seed);
  const auto any = [&](const std::vector<std::string>& v) -> const std::string& {
    return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng)];
  };
  const auto upto = [&](int n) { return std::uniform_int_distribution<int>(0, n)(rng); };
  static const std::vector<std::string> pieces = {
      "yes",
      "No",
      "on",
      "OFF",
      "y",
      "null",
      "~",
      "",
      "1e3",
      "0x1F",
      "017",
      "08",
      "1_000",
      "+12",
      "-0",
      ".5",
      ".inf",
      "-.INF",
      ".nan",
      "1:20",
      "1:2:3.5",
      "190:20:30",
      "2006-01-02",
      "2001-12-14t21:59:43.10-05:00",
      "2002-12-14 21:59:43",
      "2024-02-30",
      "2024-2-9",
      "2001-12-14T21:59:43Z",
      "<<",
      "-",
      "- x",
      "a: b",
      "a:b",
      "#c",
      "a #c",
      "x#",
      "'q'",
      "\"d\"",
      "it's",
      " lead",
      "trail ",
      "\ttab",
      "a\nb",
      "a\n",
      "\n",
      "a\n\n",
      "\n\n",
      "x\r\ny",
      " \n",
      "\n ",
      "é",
      "日本語",
      "\u00a0",
      "\u2028",
      "\u0085",
      "\ufeff",
      "\x01",
      "\x7f",
      "\x1b",
      "\\",
      "---",
      "...",
      "? x",
      "?x",
      "@a",
      "`b",
      "%p",
      "!t",
      "&a",
      "*a",
      "[",
      "]",
      "{x}",
      "|",
      ">",
      "true",
      "True",
      "FALSE",
      "a,b",
      ":",
      "::",
      "word",
      "two words",
      "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore",
      "a-very-long-token-without-any-space-in-it-that-goes-on-and-on-past-the-eighty-column-limit-of-go-yaml",
      "x  y",
      "end.",
      "   ",
      "\t"};
  static const std::vector<std::string> key_pieces = {
      "a",    "b",  "B",  "Z",   "a1",  "a10",  "a2",   "a01",
      "a001", "x0", "00", "0",   "1",   "10",   "2",    "é",
      "_x",   "-",  "",   "yes", "x y", "a\nb", "aé",   "é1",
      "a.b",  "日", "٣",  "k:",  "#k",  " k",   "null", std::string(130, 'k')};
  static const std::vector<std::string> numbers = {"0",
                                                   "-0",
                                                   "1.5",
                                                   "1e21",
                                                   "1e20",
                                                   "1e-7",
                                                   "0.000001",
                                                   "3.0",
                                                   "0.1",
                                                   "100",
                                                   "-2.5e-300",
                                                   "123456789012345678",
                                                   "18446744073709551615",
                                                   "18446744073709551616",
                                                   "1e300",
                                                   "9007199254740993"};
  for (int i = 0; i < count; ++i) {
    Case c{"generated-yaml-" + std::to_string(i), {}, {}};
    for (int k = 0; k < 8; ++k) {
      std::string v;
      for (int n = upto(3); n >= 0; --n) v += any(pieces);
      c.data.emplace("v" + std::to_string(k), kms::SecureBytes::copy_of(std::string_view(v)));
      // One piece: go-yaml's key order is no order for keys such as "10",
      // "1é1", "2" (10 < 1é1 < 2 < 10), and Go's map order then decides.
      const std::string& key = any(key_pieces);
      c.data.emplace("k" + std::to_string(k), kms::SecureBytes::copy_of(std::string_view(key)));
    }
    std::string nums = "[";
    for (std::size_t k = 0; k < numbers.size(); ++k) nums += (k != 0 ? "," : "") + numbers[k];
    c.data.emplace("nums", kms::SecureBytes::copy_of(std::string_view(nums + "]")));
    // An expression: a data value, a number, a literal, or a dict / list of them.
    std::function<std::string(int)> expr = [&](int depth) -> std::string {
      const int kind = depth > 3 ? upto(4) : upto(8);
      switch (kind) {
        case 0:
        case 1:
        case 2:
          return ".v" + std::to_string(upto(7));
        case 3:
          return "(index (.nums | fromJson) " + std::to_string(upto(static_cast<int>(numbers.size()) - 1)) + ")";
        case 4:
          return any({"true", "nil", "42", "-7", "\"lit\"", "(list)", "(dict)", "\"\""});
        case 5:
        case 6: {
          std::string d = "(dict";
          for (int n = upto(4); n >= 0; --n) d += " .k" + std::to_string(upto(7)) + " " + expr(depth + 1);
          return d + ")";
        }
        default: {
          std::string l = "(list";
          for (int n = upto(3); n >= 0; --n) l += " " + expr(depth + 1);
          return l + ")";
        }
      }
    };
    switch (upto(5)) {
      case 0:
        c.text = "{{ toYaml " + expr(4) + " }}";
        break;
      case 1:
        c.text = "{{ . | toYaml }}";
        break;
      case 2:
        c.text = "v:\n  {{- toYaml " + expr(0) + " | nindent 2 }}";
        break;
      default:
        c.text = "{{ toYaml " + expr(0) + " }}";
        break;
    }
    cases.push_back(std::move(c));
  }
}

// ESO's fromYaml (sigs.k8s.io/yaml's Unmarshal over go-yaml v2): YAML
// documents put together from block and flow mappings and sequences,
// plain scalars of every YAML 1.1 type, quoted and block scalars, anchors,
// aliases and merge keys, keys that read as other types; and round trips
// fromYaml (toYaml x) over values that need quoting. Printed as toJson and
// as %v (numbers are float64 after encoding/json). A generator of its own.
void add_fromyaml_cases(std::vector<Case>& cases, int count, std::uint32_t seed) {
  std::mt19937 rng(seed);
  const auto any = [&](const std::vector<std::string>& v) -> const std::string& {
    return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng)];
  };
  const auto upto = [&](int n) { return std::uniform_int_distribution<int>(0, n)(rng); };
  static const std::vector<std::string> plain = {"yes",
                                                 "No",
                                                 "on",
                                                 "OFF",
                                                 "y",
                                                 "n",
                                                 "true",
                                                 "False",
                                                 "null",
                                                 "~",
                                                 "Null",
                                                 "0",
                                                 "-0",
                                                 "017",
                                                 "08",
                                                 "0o17",
                                                 "0x1F",
                                                 "-0x10",
                                                 "0b101",
                                                 "-0b11",
                                                 "1_000",
                                                 "+12",
                                                 "1e3",
                                                 "1E-7",
                                                 "1.5",
                                                 "-2.50",
                                                 ".5",
                                                 "._5",
                                                 "3.",
                                                 "1_0.5",
                                                 ".inf",
                                                 "-.Inf",
                                                 "1:20",
                                                 "190:20:30",
                                                 "2006-01-02",
                                                 "2001-12-14t21:59:43.10-05:00",
                                                 "2002-12-14 21:59:43",
                                                 "123456789012345678901",
                                                 "9223372036854775808",
                                                 "18446744073709551615",
                                                 "-9223372036854775808",
                                                 "9007199254740993",
                                                 "<<",
                                                 "=",
                                                 "word",
                                                 "two words",
                                                 "a:b",
                                                 "x#y",
                                                 "é",
                                                 "日本",
                                                 "a.b",
                                                 "-x",
                                                 "?x",
                                                 "1.2.3",
                                                 "0x",
                                                 "+",
                                                 "."};
  static const std::vector<std::string> quoted = {
      "'yes'", "'1'",      "''",          "'it''s'",  "\"0x1F\"", "\"a\\tb\"", "\"\\u00e9\\x41\"",
      "\"\"",  "'a\n  b'", "\"l1\\nl2\"", "\"null\"", "'~'"};
  static const std::vector<std::string> keys = {"a",    "b",  "port", "x y", "1",     "0x1F", "yes", "no",
                                                "True", "-3", "1_0",  "'q'", "\"d\"", "é",    "a.b", "<<x",
                                                "k1",   "k2", "00",   "010", "'1'",   "on"};
  for (int i = 0; i < count; ++i) {
    Case c{"generated-fromyaml-" + std::to_string(i), {}, {}};
    std::vector<std::string> map_anchors, anchors;
    int next_anchor = 0;
    const auto scalar = [&]() -> std::string {
      switch (upto(5)) {
        case 0:
          return any(quoted);
        case 1:
          if (!anchors.empty() && upto(1) == 0) return "*" + any(anchors);
          return any(plain);
        default:
          return any(plain);
      }
    };
    // A flow collection on one line.
    std::function<std::string(int)> flow = [&](int depth) -> std::string {
      const bool seq = upto(1) == 0;
      std::string f = seq ? "[" : "{";
      for (int n = upto(3); n >= 0; --n) {
        if (f.size() > 1) f += ", ";
        if (!seq) f += any(keys) + ": ";
        f += depth < 2 && upto(4) == 0 ? flow(depth + 1) : scalar();
      }
      return f + (seq ? "]" : "}");
    };
    std::function<void(std::string&, int, int)> block_map;
    std::function<void(std::string&, int, int)> block_seq;
    // The value after "key:" or "- ".
    const auto value = [&](std::string& out, int indent, int depth) {
      const int kind = depth > 2 ? upto(3) : upto(9);
      std::string anchor;
      if (upto(6) == 0) anchor = "&a" + std::to_string(next_anchor++);
      const std::string pad(static_cast<std::size_t>(indent + 2), ' ');
      switch (kind) {
        case 0:
        case 1:
        case 2:
          out += " " + (anchor.empty() ? "" : anchor + " ") + scalar() + "\n";
          if (!anchor.empty()) anchors.push_back(anchor.substr(1));
          break;
        case 3:
          out += " " + (anchor.empty() ? "" : anchor + " ") + flow(0) + "\n";
          if (!anchor.empty()) anchors.push_back(anchor.substr(1));
          break;
        case 4:
          out += std::string(" ") + any({"|", "|-", "|+", ">", ">-"}) + "\n" + pad + any(plain) + "\n" + pad +
                 any(plain) + " " + any(plain) + "\n";
          if (upto(1) == 0) out += "\n" + pad + "more\n";
          break;
        case 5:
        case 6:
        case 7:
          out += (anchor.empty() ? "" : " " + anchor) + "\n";
          block_map(out, indent + 2, depth + 1);
          if (!anchor.empty()) map_anchors.push_back(anchor.substr(1)), anchors.push_back(anchor.substr(1));
          break;
        default:
          out += (anchor.empty() ? "" : " " + anchor) + "\n";
          block_seq(out, indent + (upto(1) == 0 ? 0 : 2), depth + 1);
          if (!anchor.empty()) anchors.push_back(anchor.substr(1));
          break;
      }
    };
    block_map = [&](std::string& out, int indent, int depth) {
      const std::string pad(static_cast<std::size_t>(indent), ' ');
      for (int n = upto(4); n >= 0; --n) {
        if (!map_anchors.empty() && upto(5) == 0) {
          out += pad + "<<: " +
                 (upto(2) == 0 ? "[*" + any(map_anchors) + ", *" + any(map_anchors) + "]" : "*" + any(map_anchors)) +
                 "\n";
          continue;
        }
        out += pad + any(keys) + ":";
        value(out, indent, depth);
      }
    };
    block_seq = [&](std::string& out, int indent, int depth) {
      const std::string pad(static_cast<std::size_t>(indent), ' ');
      for (int n = upto(3); n >= 0; --n) {
        out += pad + "-";
        value(out, indent, depth);
      }
    };
    std::string doc = upto(5) == 0 ? "---\n" : "";
    if (upto(9) == 0) {
      doc += flow(0) + "\n";
    } else {
      block_map(doc, 0, 0);
    }
    c.data.emplace("y", kms::SecureBytes::copy_of(std::string_view(doc)));
    // Round trips: toYaml of values, read back.
    for (int k = 0; k < 4; ++k) {
      c.data.emplace("v" + std::to_string(k), kms::SecureBytes::copy_of(std::string_view(any(plain) + any(quoted))));
      c.data.emplace("k" + std::to_string(k), kms::SecureBytes::copy_of(std::string_view(any(keys))));
    }
    switch (upto(4)) {
      case 0:
        c.text = "{{ fromYaml .y }}";
        break;
      case 1:
        c.text = "{{ range $k, $v := fromYaml .y }}{{ $k }}={{ $v }};{{ end }}";
        break;
      case 2:
        c.text =
            "{{ toJson (fromYaml (toYaml (dict .k0 .v0 .k1 (list .v1 1.5 true nil) .k2 (dict .k3 .v2 \"n\" "
            "-7)))) }}";
        break;
      default:
        c.text = "{{ toJson (fromYaml .y) }}";
        break;
    }
    cases.push_back(std::move(c));
  }
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: template_diff <template_ref> <case folder> <generated cases>\n";
    return 2;
  }
  const std::string ref = argv[1];
  const fs::path folder = argv[2];
  const int generated = std::atoi(argv[3]);
  if (!fs::is_regular_file(ref) || !fs::is_directory(folder)) {
    std::cerr << "template_diff: missing " << (fs::is_regular_file(ref) ? folder.string() : ref) << "\n";
    return 2;
  }

  std::vector<Case> cases;
  for (const auto& e : fs::directory_iterator(folder)) {
    std::ifstream f(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string in = ss.str();
    auto c = fuzz::parse_template_case(in);
    if (!c) continue;
    cases.push_back({e.path().filename().string(), std::string(c->text), std::move(c->data)});
  }
  const std::size_t from_folder = cases.size();
  // A fixed seed (TEMPLATE_DIFF_SEED for another set when exploring).
  const char* seed_env = std::getenv("TEMPLATE_DIFF_SEED");
  std::mt19937 rng(seed_env != nullptr ? static_cast<std::uint32_t>(std::strtoul(seed_env, nullptr, 10)) : 20261206u);
  sync::SecretMap gen_data;
  gen_data.emplace("user", kms::SecureBytes::copy_of(std::string_view("alice")));
  gen_data.emplace("password", kms::SecureBytes::copy_of(std::string_view("s3cr\"et pw\\x")));
  gen_data.emplace("b64", kms::SecureBytes::copy_of(std::string_view("aGVsbG8gd29ybGQ=")));
  gen_data.emplace("json",
                   kms::SecureBytes::copy_of(std::string_view(R"({"host":"db","port":5432,"list":["a","b"]})")));
  gen_data.emplace("my-key", kms::SecureBytes::copy_of(std::string_view("  padded\tvalue  ")));
  gen_data.emplace("empty", kms::SecureBytes());
  const std::vector<std::string> keys = {"user", "password", "b64", "json", "my-key", "empty"};
  for (int i = 0; i < generated; ++i) {
    Case c{"generated-" + std::to_string(i), generate(rng, keys), {}};
    for (const auto& [k, v] : gen_data) c.data.emplace(k, v.clone());
    cases.push_back(std::move(c));
  }

  // PEM text for filterPEM / certSANs / filterCertChain (ESO's helpers on
  // Go's encoding/pem): pieces of PEM put together at random, near-misses
  // included, so that both parsers meet the same odd input.
  static const std::vector<std::string> pem_pieces = {"-----BEGIN A-----",
                                                      "-----BEGIN B-----",
                                                      "-----END A-----",
                                                      "-----END B-----",
                                                      "-----BEGIN A-----  ",
                                                      "-----BEGIN ",
                                                      "-----END ",
                                                      "\n",
                                                      "\r\n",
                                                      "\n",
                                                      "QUJD",
                                                      "QQ==",
                                                      "QUI=",
                                                      "Q===",
                                                      "QUJ",
                                                      " ",
                                                      "\t",
                                                      "K: v",
                                                      "Proc-Type: 4,X",
                                                      "a:b",
                                                      "junk",
                                                      "=",
                                                      "-----",
                                                      "A-----",
                                                      "!"};
  const auto any = [&](const std::vector<std::string>& v) -> const std::string& {
    return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng)];
  };
  for (int i = 0; i < generated / 6; ++i) {
    std::string pem;
    if (i % 2 == 0) {
      // Pieces put together at random.
      const int n = std::uniform_int_distribution<int>(1, 14)(rng);
      for (int k = 0; k < n; ++k) pem += any(pem_pieces);
    } else {
      // Blocks, each part of it right or slightly wrong.
      const int blocks = std::uniform_int_distribution<int>(1, 3)(rng);
      for (int b = 0; b < blocks; ++b) {
        pem += any({"", "", "x\n", "junk ", "\n\n"});
        pem += any(
            {"-----BEGIN A-----", "-----BEGIN B-----", "-----BEGIN a-----", "-----BEGIN A----", "-----BEGIN A-----x"});
        pem += any({"\n", "\n", "\r\n", " \n", "\t\n", ""});
        pem += any({"", "", "K: v\n\n", "Proc-Type: 4,X\nB: c\n\n", "K:v\n", "K: v\n"});
        pem += any({"QUJD", "QUJDRA==", "QUJD\nRA==", "QU JD", "QUJDR", "QUJD=", "", "QUJD\r\nREVG", "!!!!"});
        pem += any({"\n", "\n", "\r\n", ""});
        pem += any({"-----END A-----", "-----END B-----", "-----END a-----", "-----END A----", "-----END A-----x"});
        pem += any({"", "\n", "\n", " \n", "junk\n", "\t", "\r\n", " x\n"});
      }
    }
    static const std::vector<std::string> uses = {"{{ filterPEM \"A\" .pem }}", "{{ filterPEM \"a\" .pem }}",
                                                  "{{ .pem | filterPEM \"B\" | len }}", "{{ certSANs .pem }}",
                                                  "{{ filterCertChain \"root\" .pem }}"};
    Case c{"generated-pem-" + std::to_string(i),
           uses[std::uniform_int_distribution<std::size_t>(0, uses.size() - 1)(rng)],
           {}};
    c.data.emplace("pem", kms::SecureBytes::copy_of(std::string_view(pem)));
    cases.push_back(std::move(c));
  }

  // Sprig's date functions (Go's time.Format, Parse, zones, durations):
  // layouts put together from Go's layout elements, near-misses and
  // literal text, over instants of the years 1 to 9999 in zones of the
  // system's tzdata (half-hour, 45-minute and DST zones, unknown names that
  // fall back to UTC), and toDate over values put together the same way.
  static const std::vector<std::string> layout_pieces = {
      "2006", "06",      "01",        "1",     "Jan",    "January", "02",      "2",          "_2",         "002",
      "__2",  "15",      "03",        "3",     "04",     "4",       "05",      "5",          "PM",         "pm",
      "Mon",  "Monday",  "MST",       "-0700", "-07:00", "-07",     "-070000", "-07:00:00",  "Z0700",      "Z07:00",
      "Z07",  "Z070000", "Z07:00:00", ".000",  ".999",   ",000",    ",9",      ".0",         ".999999999", ".000000000",
      "-",    " ",       ":",         "T",     "x",      "Ja",      "Janu",    "Mond",       "_",          "0",
      "J",    "M",       "Z",         "Jan1",  "Monx",   ".",       "_2006",   "2006-01-02", "15:04:05"};
  static const std::vector<std::string> zones = {"UTC",
                                                 "Local",
                                                 "",
                                                 "Europe/Berlin",
                                                 "America/New_York",
                                                 "Asia/Kolkata",
                                                 "Australia/Lord_Howe",
                                                 "Pacific/Chatham",
                                                 "America/St_Johns",
                                                 "Africa/Monrovia",
                                                 "Europe/Dublin",
                                                 "Nowhere/City",
                                                 "../zoneinfo/UTC",
                                                 "Etc/GMT+5",
                                                 "Asia/Kathmandu",
                                                 "/etc/localtime",
                                                 "europe/berlin",
                                                 "America/Sao_Paulo"};
  static const std::vector<std::string> value_pieces = {
      "2024", "24", "1",  "01",    "Feb",    "february", "29",  "_",         "002",  "060", "13",  "1",
      "45",   "PM", "am", "+0530", "-07:00", "Z",        "UTC", "CET",       ".123", ",5",  "Thu", "thursday",
      " ",    ":",  "-",  "T",     "9999",   "0000",     "00",  "+01:00:30", "366",  " 1",  "  7", "12"};
  const auto two = [](int v) { return (v < 10 ? "0" : "") + std::to_string(v); };
  for (int i = 0; i < generated / 3; ++i) {
    std::string layout;
    const int n = std::uniform_int_distribution<int>(1, 6)(rng);
    for (int k = 0; k < n; ++k) layout += any(layout_pieces);
    // An instant as RFC 3339 text: years 1 to 9999 (day up to 28: always valid).
    const bool recent = std::uniform_int_distribution<int>(0, 1)(rng) == 0;
    const int year =
        recent ? std::uniform_int_distribution<int>(1960, 2040)(rng) : std::uniform_int_distribution<int>(1, 9999)(rng);
    std::string y = std::to_string(year);
    y.insert(0, 4 - y.size(), '0');
    const int nsec =
        std::uniform_int_distribution<int>(0, 2)(rng) == 0 ? 0 : std::uniform_int_distribution<int>(0, 999999999)(rng);
    std::string frac = std::to_string(nsec);
    frac.insert(0, 9 - frac.size(), '0');
    const std::string rfc = y + "-" + two(std::uniform_int_distribution<int>(1, 12)(rng)) + "-" +
                            two(std::uniform_int_distribution<int>(1, 28)(rng)) + "T" +
                            two(std::uniform_int_distribution<int>(0, 23)(rng)) + ":" +
                            two(std::uniform_int_distribution<int>(0, 59)(rng)) + ":" +
                            two(std::uniform_int_distribution<int>(0, 59)(rng)) + "." + frac +
                            any({"Z", "+05:30", "-03:00", "+14:00", "+01:00"});
    const std::string t = "(toDate \"2006-01-02T15:04:05.999999999Z07:00\" \"" + rfc + "\")";
    const std::string zone = any(zones);
    std::string text;
    switch (std::uniform_int_distribution<int>(0, 5)(rng)) {
      case 0:
        text = "{{ dateInZone `" + layout + "` " + t + " \"" + zone + "\" }}";
        break;
      case 1:  // formatted, then read back with the same layout (in Local)
        text = "{{ $s := dateInZone `" + layout + "` " + t + " \"" + zone + "\" }}{{ $s }}|{{ toDate `" + layout +
               "` $s }}|{{ toDate `" + layout + "` $s | unixEpoch }}";
        break;
      case 2: {
        std::string value;
        const int m = std::uniform_int_distribution<int>(1, 6)(rng);
        for (int k = 0; k < m; ++k) value += any(value_pieces);
        text = "{{ toDate `" + layout + "` `" + value + "` }}";
        break;
      }
      case 3:  // Unix seconds (a Go int) in a zone, and the time's own String
        text = "{{ dateInZone `" + layout + "` " +
               std::to_string(std::uniform_int_distribution<std::int64_t>(-62135596800, 253402300799)(rng)) + " \"" +
               zone + "\" }}|{{ " + t + " }}";
        break;
      case 4:  // durations
        text = "{{ " + t + " | dateModify \"" +
               any({"1h", "-90m", "1.5h", "2h45m30.5s", "-0.000001s", "1us", "1\xc2\xb5s", "100ns", "0", "+5m", "x", "",
                    "1d", ".5s", "-.s", "9223372036854775807ns", "2562047h"}) +
               "\" | date `" + layout + "` }}|{{ durationRound \"" +
               any({"1h", "400h", "800000h", "59s", "61s", "-3h", "bad", "", "90m", "721h", "8761h"}) +
               "\" }}|{{ duration \"" + any({"0", "59", "3600", "86399", "-61", "x", "99999999999999999999", "+7"}) +
               "\" }}";
        break;
      default:  // the present (the test's fixed instant)
        text = "{{ now | date `" + layout + "` }}|{{ " + t + " | ago }}|{{ durationRound " + t +
               " }}|{{ htmlDateInZone " + t + " \"" + zone + "\" }}";
        break;
    }
    cases.push_back(Case{"generated-date-" + std::to_string(i), std::move(text), {}});
  }

  add_yaml_cases(cases, generated,
                 seed_env != nullptr ? static_cast<std::uint32_t>(std::strtoul(seed_env, nullptr, 10)) + 1 : 20261207u);
  add_fromyaml_cases(
      cases, generated,
      seed_env != nullptr ? static_cast<std::uint32_t>(std::strtoul(seed_env, nullptr, 10)) + 2 : 20261208u);

  // The requests, one JSON line each, through the reference in one run.
  std::vector<std::string> requests;
  requests.reserve(cases.size());
  for (const auto& c : cases) {
    json::object d;
    for (const auto& [k, v] : c.data) d[k] = b64(str(v));
    requests.push_back(json::serialize(
        json::object{{"t", b64(c.text)}, {"d", std::move(d)}, {"now", json::array{kNowSec, kNowNsec}}}));
  }
  // Both sides take the same instant for the present (the date functions).
  sync::tmpl::date::set_clock_for_tests(std::make_pair(kNowSec, kNowNsec));
  const auto replies = fuzz::run_reference(ref, requests);
  if (!replies) return 2;
  std::vector<json::value> answers;
  answers.reserve(replies->size());
  for (const auto& line : *replies) answers.push_back(json::parse(line));

  int agree = 0, both_refuse = 0, stricter = 0, failures = 0;
  const bool verbose = std::getenv("TEMPLATE_DIFF_VERBOSE") != nullptr;  // the refusals too
  static constexpr std::string_view kDocumentedRefusals[] = {
      "not supported",
      "b64dec: the value is not valid base64",
      "b32dec: the value is not valid base32",
      "fromJson: the value is not valid JSON",
      "fromYaml: refused",
      "missing command",
      "too much work",
      "exceeds 8 MiB",
      "would exceed 8 MiB",
      "nested too deep",
      "exceeded maximum template depth",
      "regexMatch: error parsing regexp",
      "regexMatch: the expression (computed from data) is not valid"};
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const auto& a = answers[i].as_object();
    const bool go_ok = a.at("ok").as_bool();
    std::string go_out;
    if (go_ok && a.contains("out")) {
      auto d = kms::base64_decode(std::string_view(a.at("out").as_string()));
      go_out.assign(d->begin(), d->end());
    }
    const auto r = sync::render_template(c.text, c.data);
    std::string verdict;
    if (r && go_ok) {
      if (bcrypt_shape(str(*r)) == bcrypt_shape(go_out)) {
        ++agree;
        continue;
      }
      verdict = "different output: rootseal " + cut(str(*r)) + ", Go " + cut(go_out);
    } else if (!r && !go_ok) {
      ++both_refuse;
      if (verbose) std::cout << "BOTH-REFUSE " << r.error().message << " | " << a.at("err").as_string() << "\n";
      continue;
    } else if (r && !go_ok) {
      const std::string err(a.at("err").as_string());
      verdict = "rootseal renders what Go refuses (" + err + "): " + cut(str(*r));
    } else {
      bool documented = false;
      for (const auto m : kDocumentedRefusals)
        documented = documented || r.error().message.find(m) != std::string::npos;
      if (documented) {
        ++stricter;
        if (verbose) std::cout << "STRICTER " << c.name << " " << r.error().message << "\n";
        continue;
      }
      verdict = "rootseal refuses (" + r.error().message + ") what Go renders: " + cut(go_out);
    }
    ++failures;
    std::cout << "MISMATCH " << c.name << " template " << cut(c.text) << "\n  " << verdict << "\n";
  }
  std::cout << "template_diff: " << cases.size() << " cases (" << from_folder << " from " << folder.string() << ", "
            << generated << " generated): " << agree << " same output, " << both_refuse << " refused by both, "
            << stricter << " refused by rootseal only (documented), " << failures << " mismatches\n";
  return failures == 0 ? 0 : 1;
}
