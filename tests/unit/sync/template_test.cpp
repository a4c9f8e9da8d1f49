// rootseal::sync — the target.template evaluator.
#include <catch2/catch.hpp>

#include <string>

#include "template.hpp"

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
  CHECK(render("{{ index (.cfg | fromJson) \"list\" \"1\" }}") == "b");
  CHECK(render("{{ get (.cfg | fromJson) \"db\" | toJson }}") == R"({"host":"h1","port":5432})");
  CHECK(render("a {{- \" b \" -}} c") == "a b c");
  CHECK(render("x {{/* a comment */}}y") == "x y");
  CHECK(render("no actions") == "no actions");
  CHECK(render("{{ `raw {{ text` }}") == "raw {{ text");
  CHECK(render(R"({"u":{{ .user | toJson }}})") == R"({"u":"alice"})");
}

TEST_CASE("unsupported template constructs and missing keys are clear errors") {
  CHECK(error("{{ .nope }}") == "template: map has no entry for key \"nope\"");
  CHECK(error("{{ if .user }}x{{ end }}") == "template: 'if' is not supported (no control flow; see docs/sync.md)");
  CHECK(error("{{ range .cfg }}{{ end }}") == "template: 'range' is not supported (no control flow; see docs/sync.md)");
  CHECK(error("{{ exec \"ls\" }}") == "template: function 'exec' is not supported (see docs/sync.md)");
  CHECK(error("{{ $x := .user }}") == "template: variables are not supported");
  CHECK(error("{{ .user ") == "template: unclosed action (missing '}}')");
  CHECK(error("{{ .user.first }}") == "template: can't evaluate field \"first\" on a string value (use fromJson first)");
  CHECK(error("{{ .user | fromJson }}") == "template: fromJson: the value is not valid JSON");
  CHECK(error("{{ .user | b64dec }}") == "template: b64dec: the value is not valid base64");
  CHECK(error("{{ }}") == "template: empty action");
  CHECK(error("{{ 42 }}") == "template: number literals are not supported");
  CHECK(error("{{ upper .user .pass }}") == "template: upper: wants 1 argument(s), got 2");
  // No secret value appears in any message.
  CHECK(error("{{ .pass | fromJson }}").find("s3cr") == std::string::npos);
  // A key computed from data is never quoted (found by fuzz_template: the
  // trimmed value of my-key used as an index into a string).
  CHECK(error("{{ index .user (index . \"my-key\" | trim) }}") ==
        "template: can't evaluate index (a key computed from data) on a string value (use fromJson first)");
  CHECK(error("{{ index . (.my-key | trim) }}").find("padded") == std::string::npos);
  CHECK(error("{{ index . .user }}") == "template: map has no entry for key (a key computed from data)");
  CHECK(error("{{ index (.cfg | fromJson) .pass }}") == "template: map has no entry for key (a key computed from data)");
  CHECK(error("{{ index . \"nope\" }}") == "template: map has no entry for key \"nope\"");
  CHECK(check_template("{{ .a | b64enc }}").has_value());
  CHECK_FALSE(check_template("{{ with .a }}").has_value());
}

// Found by tests/fuzz/template_diff against Go's text/template + Sprig (ESO engine v2).
TEST_CASE("templates follow Go where ESO's engine would differ") {
  // Comments: "/*" right after "{{" (or "{{- "), "*/" right before "}}" (or " -}}").
  CHECK(render("a {{- /* c */ -}} b") == "ab");
  CHECK(error("{{ /* c */ }}") == "template: unexpected '/' in action");
  CHECK(error("{{/* c */ }}") == "template: a comment must end with \"*/\" right before the closing \"}}\"");
  CHECK(error("{{/* a */ b */}}") == "template: a comment must end with \"*/\" right before the closing \"}}\"");
  // toJson writes object members sorted by key, as Go's encoding/json does.
  CHECK(render(R"({{ "{\"b\":1,\"a\":{\"d\":[2],\"c\":null}}" | fromJson | toJson }})") ==
        R"({"a":{"c":null,"d":[2]},"b":1})");
  // A JSON object or array is not text (Go prints map[...]); get wants a JSON object.
  CHECK(error("{{ .cfg | fromJson }}") == "template: output: a JSON object or array is not text (use toJson)");
  CHECK(error("{{ (.cfg | fromJson).list | toString }}") ==
        "template: toString: a JSON object or array is not text (use toJson)");
  CHECK(error("{{ get . \"user\" }}") ==
        "template: get: wants a JSON object (the data map is not one: use index . \"key\")");
  CHECK(render("{{ (.cfg | fromJson).db.host }}") == "h1");
}
