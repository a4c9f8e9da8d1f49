// rootseal::sync — the target.template evaluator.
#include <catch2/catch.hpp>

#include <ctime>
#include <regex>
#include <string>

#include "template.hpp"
#include "template/date_funcs.hpp"

using namespace rootseal;
using namespace rootseal::sync;

namespace {
SecretMap values() {
  SecretMap m;
  m.emplace("user", kms::SecureBytes::copy_of(std::string_view("alice")));
  m.emplace("pass", kms::SecureBytes::copy_of(std::string_view("s3cr\"et")));
  m.emplace("b64", kms::SecureBytes::copy_of(std::string_view("aGVsbG8=")));
  m.emplace("cfg", kms::SecureBytes::copy_of(std::string_view(R"({"db":{"host":"h1","port":5432},"list":["a","b"]})")));
  m.emplace("my-key", kms::SecureBytes::copy_of(std::string_view("  padded  ")));
  return m;
}
std::string render(std::string_view t) {
  auto r = render_template(t, values());
  if (!r) FAIL(r.error().message);
  return std::string(reinterpret_cast<const char*>(r->data()), r->size());
}
std::string error(std::string_view t) {
  auto r = render_template(t, values());
  REQUIRE_FALSE(r.has_value());
  return r.error().message;
}
}  // namespace

TEST_CASE("template substitutions, pipelines and helpers") {
  CHECK(render("postgres://{{ .user }}:{{ .pass }}@db") == "postgres://alice:s3cr\"et@db");
  CHECK(render("{{ .user | b64enc }}") == "YWxpY2U=");
  CHECK(render("{{ b64enc .user }}") == "YWxpY2U=");
  CHECK(render("{{ .b64 | b64dec | upper }}") == "HELLO");
  CHECK(render("{{ .user | upper | lower }}") == "alice");
  CHECK(render("[{{ index . \"my-key\" | trim }}]") == "[padded]");
  CHECK(render("{{ .pass | toJson }}") == "\"s3cr\\\"et\"");
  CHECK(render("{{ .pass | quote }}") == "\"s3cr\\\"et\"");
  CHECK(render("{{ (.cfg | fromJson).db.host }}:{{ ((.cfg | fromJson).db.port) }}") == "h1:5432");
  CHECK(render("{{ index (.cfg | fromJson) \"list\" 1 }}") == "b");
  CHECK(render("{{ get (.cfg | fromJson) \"db\" | toJson }}") == R"({"host":"h1","port":5432})");
  CHECK(render("a {{- \" b \" -}} c") == "a b c");
  CHECK(render("x {{/* a comment */}}y") == "x y");
  CHECK(render("no actions") == "no actions");
  CHECK(render("{{ `raw {{ text` }}") == "raw {{ text");
  CHECK(render(R"({"u":{{ .user | toJson }}})") == R"({"u":"alice"})");
}

TEST_CASE("Go text/template control flow, variables and templates") {
  CHECK(render("{{ $u := .user }}{{ $u = upper $u }}{{ $u }}") == "ALICE");
  CHECK(render("{{ if eq .user \"bob\" }}b{{ else if eq .user \"alice\" }}a{{ else }}c{{ end }}") == "a");
  CHECK(render("{{ if \"\" }}t{{ else }}f{{ end }}{{ if 0 }}t{{ else }}f{{ end }}{{ if list }}t{{ else }}f{{ end }}") ==
        "fff");
  CHECK(render("{{ range $k, $v := (.cfg | fromJson).db }}{{ $k }}={{ $v }};{{ end }}") == "host=h1;port=5432;");
  CHECK(render("{{ range $i, $e := (.cfg | fromJson).list }}{{ $i }}{{ $e }}{{ end }}") == "0a1b");
  CHECK(render("{{ range list }}x{{ else }}none{{ end }}") == "none");
  CHECK(render("{{ range $i, $e := list 1 2 3 4 }}{{ if eq $i 2 }}{{ break }}{{ end }}{{ if eq $e 1 }}{{ continue }}{{ "
               "end }}{{ $e }}{{ end }}") == "2");
  CHECK(render("{{ range splitList \",\" \"a,b\" }}<{{ . }}|{{ $.user }}>{{ end }}") == "<a|alice><b|alice>");
  CHECK(render("{{ with .user }}[{{ . }}]{{ end }}{{ with \"\" }}x{{ else }}empty{{ end }}") == "[alice]empty");
  CHECK(render("{{ define \"u\" }}<{{ . }}>{{ end }}{{ template \"u\" .user }}{{ block \"b\" 1 }}({{ . }}){{ end }}") ==
        "<alice>(1)");
  CHECK(render("{{ 42 }} {{ -7 }} {{ 1.5 }} {{ 0x1F }} {{ 1e3 }} {{ true }} {{ 'a' }}") == "42 -7 1.5 31 1000 true 97");
  CHECK(render("{{ and 1 \"x\" }} {{ and 0 \"x\" }} {{ or \"\" \"y\" }} {{ not .user }}") == "x 0 y false");
  CHECK(render("{{ eq .user \"bob\" \"alice\" }} {{ ne 1 2 }} {{ lt 1 2 }} {{ le 2 2 }} {{ gt \"b\" \"a\" }} {{ ge 1.5 "
               "2.5 }}") == "true true true true true false");
  CHECK(render("{{ len .user }} {{ len . }} {{ len (list 1 2) }}") == "5 5 2");
  CHECK(render("[{{ index . \"nope\" }}][{{ index (.cfg | fromJson) \"nope\" }}]") == "[][<no value>]");
  // and/or stop at the first deciding argument, as Go 1.18+.
  CHECK(render("{{ and false (index . \"nope\" | fromJson) }}") == "false");
  // Printing follows fmt: maps in key order, float64 as %v.
  CHECK(render("{{ (.cfg | fromJson).db }} {{ (.cfg | fromJson).list }}") == "map[host:h1 port:5432] [a b]");
  CHECK(render("{{ \"{\\\"a\\\":1234567,\\\"b\\\":null}\" | fromJson }}") == "map[a:1.234567e+06 b:<nil>]");
}

TEST_CASE("print, printf and the Sprig functions") {
  CHECK(render("{{ printf \"%s:%d:%v:%q:%x:%5s|%-3s|%05d|%.2f\" .user 42 1.5 .user \"hi\" \"ab\" \"c\" 7 3.14159 }}") ==
        "alice:42:1.5:\"alice\":6869:   ab|c  |00007|3.14");
  CHECK(render("{{ printf \"%d %s\" \"x\" }}|{{ printf \"%s\" \"a\" 1 }}") ==
        "%!d(string=x) %!s(MISSING)|a%!(EXTRA int=1)");
  CHECK(render("{{ print .user 1 2 \"x\" }}|{{ println 1 \"a\" }}") == "alice1 2x|1 a\n");
  CHECK(render("{{ .user | replace \"a\" \"A\" }} {{ trimPrefix \"al\" .user }} {{ trimSuffix \"ce\" .user }} {{ "
               "trimAll \"xa\" \"xaxbxa\" }}") == "Alice ice ali b");
  CHECK(render("{{ title \"hello wORLD x-y\" }} {{ contains \"lic\" .user }} {{ hasPrefix \"al\" .user }} {{ hasSuffix "
               "\"x\" .user }}") == "Hello WORLD X-Y true true false");
  CHECK(render("{{ $p := split \".\" \"a.b\" }}{{ $p._1 }} {{ splitList \",\" \"a,b\" | join \"+\" }} {{ list 1 nil "
               "\"x\" | join \",\" }}") == "b a+b 1,x");
  CHECK(render("{{ \"a\\nb\" | indent 2 }}|{{ \"a\" | nindent 1 }}") == "  a\n  b|\n a");
  CHECK(render("{{ \"\" | default \"d\" }} {{ .user | default \"d\" }} {{ empty 0 }} {{ coalesce \"\" 0 .user }} {{ "
               "ternary 1 2 false }}") == "d alice true alice 2");
  CHECK(render("{{ $d := dict \"b\" 1 \"a\" .user }}{{ $_ := set $d \"c\" true }}{{ toJson $d }} {{ hasKey $d \"c\" }} "
               "{{ keys $d | sortAlpha }} {{ pluck \"a\" $d }} {{ get $d \"zz\" }}.") ==
        R"({"a":"alice","b":1,"c":true} true [a b c] [alice] .)");
  CHECK(render("{{ first (list 1 2) }} {{ last (list 1 2) }} {{ sortAlpha (list \"b\" \"a\") }}") == "1 2 [a b]");
  CHECK(render("{{ quote .user 1 nil }} {{ squote .user }} {{ cat \"a\" nil 1 }}") == "\"alice\" \"1\" 'alice' a 1");
  CHECK(render("{{ repeat 3 \"ab\" }} {{ substr 1 3 .user }} {{ trunc 2 .user }} {{ trunc -2 .user }}") ==
        "ababab li al ce");
  CHECK(render("{{ .user | b32enc }} {{ \"MFWGSY3F\" | b32dec }} {{ .user | sha256sum }}") ==
        "MFWGSY3F alice 2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90");
  CHECK(render("{{ toPrettyJson (dict \"a\" (list 1) \"b\" (dict)) }}") ==
        "{\n  \"a\": [\n    1\n  ],\n  \"b\": {}\n}");
  CHECK(render("{{ toJson (dict \"a\" \"<&>\") }} {{ toRawJson (dict \"a\" \"<&>\") }}") ==
        R"({"a":"\u003c\u0026\u003e"} {"a":"<&>"})");
  CHECK(render("{{ html \"<a>&\" }} {{ urlquery \"a b&c\" }}") == "&lt;a&gt;&amp; a+b%26c");
  CHECK(render("{{ regexMatch \"^a.*e$\" .user }} {{ regexMatch \"[0-9]\" .user }}") == "true false");
  CHECK(render("{{ rest (list 1 2 3) }} {{ initial (list 1 2) }} {{ reverse (list 1 \"a\") }} {{ compact (list 0 \"x\" "
               "nil) }} "
               "{{ uniq (list 1 1 \"1\") }} {{ has 1 (list 1) }} {{ has 1.0 (list 1) }} {{ rest list | toJson }}") ==
        "[2 3] [1] [a 1] [x] [1 1] true false null");
  CHECK(render("{{ add 1 2 3 }} {{ sub 1 3 }} {{ mul 2 3 }} {{ div -7 2 }} {{ mod -7 3 }} {{ max 1 5 }} {{ min 1 5 }} "
               "{{ add1 1.9 }} "
               "{{ add 1 2 | typeOf }} {{ typeOf 1 }} {{ kindOf (dict) }} {{ mul 9223372036854775807 2 }}") ==
        "6 -2 6 -3 -1 5 1 2 int64 int map -2");
  CHECK(render("{{ nospace \" a b\\tc \" }} {{ .user | sha1sum }}") == "abc 522b276a356bdf39013dfabea2cd43e141ecc9e8");
}

TEST_CASE("unsupported template constructs and missing keys are clear errors") {
  CHECK(error("{{ .nope }}") == "template: line 1: map has no entry for key \"nope\"");
  CHECK(error("a\nb\n{{ .nope }}") == "template: line 3: map has no entry for key \"nope\"");
  CHECK(error("{{ exec \"ls\" }}") == "template: line 1: function \"exec\" is not supported (see docs/sync.md)");
  CHECK(error("{{ $x }}") == "template: line 1: undefined variable \"$x\"");
  CHECK(error("{{ if true }}{{ $x := 1 }}{{ end }}{{ $x }}") == "template: line 1: undefined variable \"$x\"");
  CHECK(error("{{ .user ") == "template: line 1: unclosed action");
  CHECK(error("{{ if .user }}x") == "template: line 1: unexpected EOF (missing {{end}} of if)");
  CHECK(error("x{{ end }}") == "template: line 1: unexpected {{end}}");
  CHECK(error("{{ break }}") == "template: line 1: {{break}} outside {{range}}");
  CHECK(error("{{ .user.first }}") == "template: line 1: can't evaluate field first in type string");
  CHECK(error("{{ .user | fromJson }}") == "template: line 1: fromJson: the value is not valid JSON");
  CHECK(error("{{ .user | b64dec }}") == "template: line 1: b64dec: the value is not valid base64");
  CHECK(error("{{ }}") == "template: line 1: missing value for command");
  CHECK(error("{{ nil }}") == "template: line 1: nil is not a command");
  CHECK(error("{{ .user | }}") == "template: line 1: missing command");
  CHECK(error("{{ upper .user .pass }}") == "template: line 1: wrong number of args for upper: want 1 got 2");
  CHECK(error("{{ upper 1 }}") ==
        "template: line 1: error calling upper: wrong type for value; expected string; got int");
  CHECK(error("{{ eq 1 \"1\" }}") == "template: line 1: error calling eq: incompatible types for comparison");
  CHECK(error("{{ get . \"user\" }}") ==
        "template: line 1: error calling get: wrong type for value; expected map[string]interface {}; got "
        "map[string]string");
  CHECK(error("{{ template \"nope\" }}") == "template: line 1: no template \"nope\" associated with template");
  CHECK(error("{{ upper \"\xc3\xa9\" }}") == "template: line 1: upper: text other than ASCII is not supported");
  CHECK(error("{{ printf \"%+d\" 1 }}") == "template: line 1: printf: the flag '+' is not supported");
  CHECK(error("{{ div 1 0 }}") == "template: line 1: error calling div: integer divide by zero");
  CHECK(error("{{ add \"1\" 2 }}") == "template: line 1: add: text as a number is not supported");
  CHECK(error("{{ repeat (add 1 1) \"x\" }}") ==
        "template: line 1: error calling repeat: wrong type for value; expected int; got int64");
  CHECK(error("{{ regexMatch \"(\" .user }}").starts_with("template: line 1: regexMatch: error parsing regexp"));
  CHECK(error("{{ regexMatch (print \"(\" .pass) \"x\" }}") ==
        "template: line 1: regexMatch: the expression (computed from data) is not valid");
  // No secret value appears in any message.
  CHECK(error("{{ .pass | fromJson }}").find("s3cr") == std::string::npos);
  CHECK(error("{{ range .pass }}{{ end }}") == "template: line 1: range can't iterate over a value of type string");
  CHECK(error("{{ .pass | b64dec }}").find("s3cr") == std::string::npos);
  CHECK(error("{{ printf \"%+d\" .pass }}").find("s3cr") == std::string::npos);
  CHECK(check_template("{{ .a | b64enc }}").has_value());
  CHECK(check_template("{{ with .a }}{{ . }}{{ end }}").has_value());
  CHECK_FALSE(check_template("{{ with .a }}").has_value());
}

TEST_CASE("a template cannot exhaust memory or CPU") {
  // Range iterations x nesting: a million steps at most.
  CHECK(error("{{ range $a := splitList \"\" (repeat 1000 \"x\") }}{{ range $b := splitList \"\" (repeat 1001 \"y\") }}"
              "{{ end }}{{ end }}") == "template: line 1: too much work (more than 1000000 steps): refused");
  // Building a value in a loop is charged by its size: append in a range is quadratic.
  CHECK(error("{{ $l := list }}{{ range $i := splitList \"\" (repeat 5000 \"x\") }}{{ $l = append $l $i }}{{ end }}") ==
        "template: line 1: too much work (more than 1000000 steps): refused");
  CHECK(render("{{ $l := list }}{{ range $i := splitList \"\" (repeat 500 \"x\") }}{{ $l = append $l $i }}{{ end }}{{ "
               "len $l }}") == "500");
  // Scanning a big value in a loop is charged too (has reads the whole list each time).
  CHECK(error("{{ $l := splitList \"\" (repeat 5000 \"x\") }}{{ range $i := $l }}{{ if has \"y\" $l }}{{ end }}{{ end "
              "}}") == "template: line 1: too much work (more than 1000000 steps): refused");
  // Output and values: 8 MiB at most.
  CHECK(error("{{ repeat 2000000 \"abcdefgh\" }}") == "template: line 1: a value would exceed 8 MiB: refused");
  CHECK(error("{{ $s := repeat 1000000 \"abcdefgh\" }}{{ range $i := list 1 2 }}{{ $s }}{{ end }}") ==
        "template: line 1: a value or the output exceeds 8 MiB");
  // Recursion through templates and nesting of parentheses.
  CHECK(error("{{ define \"r\" }}{{ template \"r\" . }}{{ end }}{{ template \"r\" . }}") ==
        "template: line 1: exceeded maximum template depth (64)");
  CHECK(error("{{" + std::string(100, '(') + ".user" + std::string(100, ')') + "}}") ==
        "template: line 1: parentheses nested too deep");
}

// Found by tests/fuzz/template_diff against Go's text/template + Sprig (ESO engine v2).
TEST_CASE("templates follow Go where ESO's engine would differ") {
  // Comments: "/*" right after "{{" (or "{{- "), "*/" right before "}}" (or " -}}").
  CHECK(render("a {{- /* c */ -}} b") == "ab");
  CHECK(error("{{ /* c */ }}") == "template: line 1: unexpected \"/\" in command");
  CHECK(error("{{/* c */ }}") == "template: line 1: comment ends before closing delimiter");
  CHECK(error("{{/* a */ b */}}") == "template: line 1: comment ends before closing delimiter");
  // toJson writes object members sorted by key, as Go's encoding/json does.
  CHECK(render(R"({{ "{\"b\":1,\"a\":{\"d\":[2],\"c\":null}}" | fromJson | toJson }})") ==
        R"({"a":{"c":null,"d":[2]},"b":1})");
  // A float64 from fromJson is not an int: Go refuses the comparison.
  CHECK(error("{{ eq (.cfg | fromJson).db.port 5432 }}") ==
        "template: line 1: error calling eq: incompatible types for comparison");
  CHECK(render("{{ eq (.cfg | fromJson).db.port 5432.0 }}") == "true");
  // Two definitions of one template are an error (Go's parse package).
  CHECK(error("{{ define \"b\" }}x{{ end }}{{ block \"b\" . }}y{{ end }}") ==
        "template: line 1: template: multiple definition of template \"b\"");
  // encoding/json's float64: 'e' form below 1e-6 and from 1e21, a one-digit exponent kept short.
  CHECK(render("{{ toJson (list 0.0000001 1e21 1.5 100) }}") == "[1e-7,1e+21,1.5,100]");
  // %q and quote escape as strconv.Quote.
  CHECK(render("{{ \"t\\tx\\x01\\u00a0\xc3\xa9\\xff\" | quote }}") == "\"t\\tx\\x01\\u00a0\xc3\xa9\\xff\"");
}

TEST_CASE("Sprig regular expression functions follow Go's regexp") {
  CHECK(render("{{ regexFind \"[a-z]+\" \"12abc34de\" }}") == "abc");
  CHECK(render("[{{ regexFind \"x\" .user }}]") == "[]");
  CHECK(render("{{ regexFindAll \"[a-z]\" .user 2 | toJson }}") == R"(["a","l"])");
  // No match, or n = 0: Go's nil slice (toJson null).
  CHECK(render("{{ regexFindAll \"q\" .user -1 | toJson }}") == "null");
  // Empty matches: not right after a match, one per character (é is one).
  CHECK(render("{{ regexFindAll \"a*\" \"baac\" -1 | toJson }}") == R"(["","aa",""])");
  CHECK(render("{{ regexReplaceAll \"x*\" \"h\xc3\xa9\" \"-\" }}") == "-h-\xc3\xa9-");
  CHECK(render("{{ regexReplaceAll \"(?P<u>[a-z]+)@(\\\\w+)\" \"bob@ex\" \"${2}:$u$$\" }}") == "ex:bob$");
  CHECK(render("{{ regexReplaceAllLiteral \"[0-9]\" \"a1b2\" \"$1\" }}") == "a$1b$1");
  CHECK(render("{{ regexSplit \"[,;] *\" \"a, b;c\" -1 | toJson }}") == R"(["a","b","c"])");
  CHECK(render("{{ regexSplit \",\" \"a,b,c\" 2 | toJson }}") == R"(["a","b,c"])");
  CHECK(render("{{ regexSplit \"z*\" \"abc\" -1 | toJson }}") == R"(["a","b","c"])");
  CHECK(render("{{ regexSplit \"a\" \"\" -1 | toJson }}") == R"([""])");
  CHECK(render("{{ regexQuoteMeta \"1.5+[x]\" }}") == "1\\.5\\+\\[x\\]");
  CHECK(error("{{ regexFind \"(\" .user }}") ==
        "template: line 1: regexFind: error parsing regexp: missing closing ): `(`");
  // A replacement's result is capped as any value.
  CHECK(error("{{ regexReplaceAll \"\" (repeat 5000 \"ab\") (repeat 1000 \"x\") }}").find("exceed 8 MiB") !=
        std::string::npos);
}

TEST_CASE("merge and mergeOverwrite follow Sprig and mergo") {
  // merge: only keys dst lacks or holds empty; dicts merged in place (the first argument is changed).
  CHECK(render("{{ $a := dict \"x\" 1 \"y\" \"\" \"n\" (dict \"p\" 1) }}"
               "{{ $_ := merge $a (dict \"x\" 2 \"y\" \"b\" \"n\" (dict \"p\" 2 \"q\" 3)) }}{{ toJson $a }}") ==
        R"({"n":{"p":1,"q":3},"x":1,"y":"b"})");
  // mergeOverwrite: the source wins, but a dict does not replace a non-empty scalar; nil is copied.
  CHECK(render("{{ mergeOverwrite (dict \"a\" \"x\" \"b\" \"\" \"l\" (list 1) \"z\" 1) "
               "(dict \"a\" (dict \"k\" 1) \"b\" (dict \"k\" 2) \"l\" (list 2) \"z\" nil) | toJson }}") ==
        R"({"a":"x","b":{"k":2},"l":[2],"z":null})");
  CHECK(render("{{ merge (dict \"z\" 1) (dict \"z\" nil \"w\" nil) | toJson }}") == R"({"z":1})");
  // nil is Go's nil map: as a source it merges nothing.
  CHECK(render("{{ mergeOverwrite (dict \"z\" 1) nil | toJson }}") == R"({"z":1})");
  CHECK(error("{{ merge (dict) \"x\" }}") ==
        "template: line 1: error calling merge: wrong type for value; expected map[string]interface {}; got string");
  CHECK(error("{{ merge (dict \"a\" (split \",\" \"x\")) (dict \"a\" (dict \"_0\" 1)) }}")
            .find("merging a map of values into a map of strings is not supported") != std::string::npos);
}

// Sprig's date functions (sync/src/template/date_funcs.cpp): the real clock
// (which template_diff replaces by a fixed instant on both sides), Go's
// monotonic reading in `now`'s String, zones from the system's tzdata
// (transitions and the POSIX rule past them), and errors without data. Go's
// formatting itself is compared with Go by template_diff.

// Restores the real clock however a test ends.
namespace {
struct FixedClock {
  FixedClock(std::int64_t sec, std::int32_t nsec) { tmpl::date::set_clock_for_tests(std::make_pair(sec, nsec)); }
  ~FixedClock() { tmpl::date::set_clock_for_tests(std::nullopt); }
  FixedClock(const FixedClock&) = delete;
  FixedClock& operator=(const FixedClock&) = delete;
};
}  // namespace

TEST_CASE("now reads the real clock") {
  const std::time_t before = std::time(nullptr);
  const std::string got = render("{{ dateInZone \"2006-01-02T15:04:05Z07:00\" now \"UTC\" }}|{{ now | unixEpoch }}");
  const std::time_t after = std::time(nullptr);
  std::tm tm{};
  REQUIRE(strptime(got.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm) != nullptr);
  const std::time_t stamp = timegm(&tm);
  CHECK(before <= stamp);
  CHECK(stamp <= after);
  const std::time_t epoch = std::stoll(got.substr(got.find('|') + 1));
  CHECK(before <= epoch);
  CHECK(epoch <= after);
}

TEST_CASE("now prints as Go's time.Time String with the monotonic reading") {
  // "2006-01-02 15:04:05.999999999 -0700 MST m=+s.nnnnnnnnn" (seconds since the process started).
  static const std::regex shape(R"((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,9})? [+-]\d{4} \S+) m=\+(\d+\.\d{9}))");
  const std::string a = render("{{ now }}");
  const std::string b = render("{{ now }}");
  std::smatch ma, mb;
  REQUIRE(std::regex_match(a, ma, shape));
  REQUIRE(std::regex_match(b, mb, shape));
  CHECK(std::stod(ma[3].str()) <= std::stod(mb[3].str()));
  // dateModify moves the monotonic reading with the wall clock; formatting drops it.
  std::smatch mc;
  const std::string c = render("{{ now | dateModify \"1000h\" }}");
  REQUIRE(std::regex_match(c, mc, shape));
  CHECK(std::stod(mc[3].str()) >= 3600000.0);
  CHECK(render("{{ now | date \"2006\" }}").size() == 4);
  // A parsed time has no reading.
  CHECK(render("{{ toDate \"2006-01-02T15:04:05Z07:00\" \"2024-02-29T13:45:00+01:00\" }}") ==
        "2024-02-29 13:45:00 +0100 +0100");
}

TEST_CASE("date functions over a fixed present") {
  // 2026-03-29 00:59:59.987654321 UTC: the second before Europe/Berlin's summer time.
  const FixedClock clock(1774745999, 987654321);
  CHECK(render("{{ now | unixEpoch }}") == "1774745999");
  CHECK(render("{{ dateInZone \"2006-01-02 15:04:05.000 MST -07:00\" now \"Europe/Berlin\" }}") ==
        "2026-03-29 01:59:59.987 CET +01:00");
  CHECK(render("{{ dateInZone \"2006-01-02 15:04:05.999999999 MST\" (now | dateModify \"1s\") \"Europe/Berlin\" }}") ==
        "2026-03-29 03:00:00.987654321 CEST");
  // Past the tzdata's last transition (2037): the zone's POSIX rule.
  CHECK(render("{{ dateInZone \"2006-01-02 15:04 MST\" 4102444800 \"Europe/Berlin\" }}") == "2100-01-01 01:00 CET");
  CHECK(render("{{ dateInZone \"2006-01-02 15:04 MST\" 4118083200 \"Europe/Berlin\" }}") == "2100-07-01 02:00 CEST");
  // Half-hour zones; an unknown zone is UTC (Sprig).
  CHECK(render("{{ htmlDateInZone now \"Asia/Kolkata\" }}|{{ dateInZone \"15:04 MST\" now \"Asia/Kolkata\" }}") ==
        "2026-03-29|06:29 IST");
  CHECK(render("{{ dateInZone \"15:04 MST\" now \"No/Such_Zone\" }}|{{ dateInZone \"MST\" now \"../UTC\" }}") ==
        "00:59 UTC|UTC");
  // Sprig's defaults: a DATE that is not a time or an int is the present.
  CHECK(render("{{ date \"2006-01-02\" .pass }}") == render("{{ date \"2006-01-02\" now }}"));
  CHECK(render("{{ toDate \"2006-01-02\" \"2024-02-29\" | ago }}") == "18217h0m0s");
  CHECK(render("{{ durationRound (toDate \"2006\" \"2001\") }}") == "25y");
  CHECK(render("{{ duration \"3725\" }}|{{ duration 90 }}|{{ duration (add 90 0) }}") == "1h2m5s|0s|1m30s");
  CHECK(render("{{ durationRound \"2h45m\" }}|{{ durationRound \"bad\" }}|{{ dateModify \"bad\" now | unixEpoch }}") ==
        "2h|0s|1774745999");
  CHECK(render("{{ toDate \"2006-01-02\" \"2024-02-30\" }}") == "0001-01-01 00:00:00 +0000 UTC");
  CHECK(render("{{ now | toJson }}") == "\"2026-03-29T00:59:59.987654321Z\"");
}

TEST_CASE("date functions fail without data in the message") {
  const std::string e1 = error("{{ mustToDate \"2006-01-02\" .pass }}");
  CHECK(e1 == "template: line 1: error calling mustToDate: parsing time: the value does not match the layout");
  const std::string e2 = error("{{ mustDateModify .pass now }}");
  CHECK(e2.find("s3cr") == std::string::npos);
  CHECK(e2.find("invalid duration") != std::string::npos);
  CHECK(error("{{ dateModify \"1h\" .pass }}") ==
        "template: line 1: error calling dateModify: wrong type for value; expected time.Time; got string");
  // What rootseal does not do, by name.
  CHECK(error("{{ dateInZone \"2006\" 999999999999 \"UTC\" }}").find("not supported") != std::string::npos);
  CHECK(error("{{ toDate \"MST 2006\" \"UTC 2020\" }}").find("not supported") != std::string::npos);
  CHECK(error("{{ (now).Year }}").find("not supported") != std::string::npos);
}
