// dataFrom[].rewrite, conversionStrategy Default and ESO's key validation
// (sync/src/rewrite.cpp), and their place in add_data_from. Expected values
// are Go's (regexp.ReplaceAllString, ESO's pkg/utils); the differential test
// fuzz.rewrite_diff checks many more against Go itself.
#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <string>

#include "model/parse.hpp"
#include "reconcile/external_secret_steps.hpp"
#include "rewrite.hpp"

using namespace rootseal;
using namespace rootseal::sync;
namespace json = boost::json;

namespace {

std::string text(const kms::SecureBytes& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

kms::SecureBytes bytes(std::string_view s) { return kms::SecureBytes::copy_of(s); }

std::string replace(std::string_view pattern, std::string_view src, std::string_view tmpl) {
  auto re = GoRegexp::compile(pattern);
  REQUIRE(re);
  return re->replace_all(src, tmpl);
}

model::ExternalSecret es_of(std::string_view spec) {
  auto v = json::parse(R"({"apiVersion":"external-secrets.io/v1","kind":"ExternalSecret",
    "metadata":{"name":"es","namespace":"team","uid":"u1"},"spec":)" +
                       std::string(spec) + "}");
  auto es = model::parse_external_secret(v);
  INFO((es ? std::string() : es.error().message));
  REQUIRE(es);
  return *es;
}

SecretMap keys(std::initializer_list<std::string_view> names) {
  SecretMap m;
  for (auto n : names) m.emplace(std::string(n), bytes("v-" + std::string(n)));
  return m;
}

const model::StoreRef kVault{"vault", model::StoreKind::secret_store};

}  // namespace

TEST_CASE("GoRegexp: ReplaceAllString as Go's regexp") {
  CHECK(replace("^db/", "db/password", "") == "password");
  CHECK(replace("(.*)-(.*)", "user-name", "${2}_$1") == "name_user");
  CHECK(replace("(?P<first>\\w+)\\.(?P<second>\\w+)", "a.b", "$second.$first") == "b.a");
  CHECK(replace("a", "banana", "$$") == "b$n$n$");
  // $1x is the group named "1x" (absent: empty), not $1 then x
  CHECK(replace("(a)", "a", "$1x").empty());
  CHECK(replace("(a)", "a", "${1}x") == "ax");
  // a malformed reference is text
  CHECK(replace("a", "a", "$") == "$");
  CHECK(replace("a", "a", "${1") == "${1");
  CHECK(replace("a", "a", "$!") == "$!");
  // empty matches: not right after a match, and one character at a time (UTF-8 aware)
  CHECK(replace("x*", "abc", "-") == "-a-b-c-");
  CHECK(replace("a*", "baaac", "-") == "-b-c-");
  CHECK(replace("", "héllo", "|") == "|h|é|l|l|o|");
  // ^ anchors at the start of the text only, also after the first match
  CHECK(replace("^a", "aaa", "b") == "baa");
  CHECK(replace("\\ba", "a a", "X") == "X X");
  // an unmatched group and a group number out of range are empty
  CHECK(replace("(a)|(b)", "b", "[$1][$2][$3]") == "[][b][]");
  // a leading zero is not a number: $01 is the group named "01"
  CHECK(replace("(a)", "a", "$01").empty());
  // a repeated name (Go allows it): the first group of that name that took part
  CHECK(replace("(?P<n>a)|(?P<n>b)", "ab", "[$n]") == "[a][b]");
}

TEST_CASE("GoRegexp: compile errors carry Go's messages") {
  auto check = [](const std::string& pattern, const std::string& message) {
    INFO(pattern);
    auto re = GoRegexp::compile(pattern);
    REQUIRE_FALSE(re);
    CHECK(re.error().message == message);
  };
  check("(a", "error parsing regexp: missing closing ): `(a`");
  check("a)", "error parsing regexp: unexpected ): `a)`");
  check("[a", "error parsing regexp: missing closing ]: `[a`");
  check("*", "error parsing regexp: missing argument to repetition operator: `*`");
  check("a**", "error parsing regexp: invalid nested repetition operator: `**`");
  check("a{1001}", "error parsing regexp: invalid repeat count: `{1001}`");
  check("\\8", "error parsing regexp: invalid escape sequence: `\\8`");
  check("\\C", "error parsing regexp: invalid escape sequence: `\\C`");
  check("a\\", "error parsing regexp: trailing backslash at end of expression: ``");
  check("(?<n>a)", "error parsing regexp: invalid or unsupported Perl syntax: `(?<`");
  check("(?P<>a)", "error parsing regexp: invalid named capture: `(?P<>`");
  check("[z-a]", "error parsing regexp: invalid character class range: `z-a`");
  check("x{2}{3}", "error parsing regexp: invalid nested repetition operator: `{2}{3}`");
  CHECK(GoRegexp::compile("\\\\C"));  // an escaped backslash, then C
}

TEST_CASE("rewrite_map: operations in order, ESO's error texts") {
  std::vector<model::Rewrite> ops{model::RewriteRegexp{"^app/", ""}, model::RewriteTransform{"{{ .value | upper }}"},
                                  model::RewriteRegexp{"[/]", "_"}};
  auto out = rewrite_map(ops, keys({"app/db/user", "other"}));
  REQUIRE(out);
  REQUIRE(out->size() == 2);
  CHECK(text(out->at("DB_USER")) == "v-app/db/user");  // values untouched
  CHECK(text(out->at("OTHER")) == "v-other");

  auto bad_re = rewrite_map({model::RewriteRegexp{"ok", "x"}, model::RewriteRegexp{"(", "x"}}, keys({"k"}));
  REQUIRE_FALSE(bad_re);
  CHECK(bad_re.error().message ==
        "failed rewrite operation[1]: regexp failed with failed to compile: error parsing regexp: missing closing ): "
        "`(`");
  auto bad_tpl = rewrite_map({model::RewriteTransform{"{{ .value"}}, keys({"k"}));
  REQUIRE_FALSE(bad_tpl);
  CHECK(bad_tpl.error().message.starts_with(
      "failed rewrite operation[0]: transform failed with failed to transform key: "));
  // two keys rewritten to one: the later (in key order) wins, as a map assignment
  auto merged = rewrite_map({model::RewriteRegexp{"[0-9]", ""}}, keys({"a1", "a2"}));
  REQUIRE(merged);
  CHECK(merged->size() == 1);
}

TEST_CASE("convert_keys and validate_keys: ESO's ConvertKeys(Default) and ValidateKeys") {
  auto c = convert_keys(keys({"db/user", "with space", "ok-._9", "ünï"}));
  REQUIRE(c);
  CHECK(c->contains("db_user"));
  CHECK(c->contains("with_space"));
  CHECK(c->contains("ok-._9"));
  CHECK(c->contains("ünï"));  // letters in Unicode's sense stay
  auto collision = convert_keys(keys({"a/b", "a_b"}));
  REQUIRE_FALSE(collision);
  CHECK(collision.error().message == "secret name collision during conversion: a_b");

  SecretMap m = keys({"", "fine"});
  REQUIRE(validate_keys(m));
  CHECK(m.size() == 1);  // the empty key is dropped
  SecretMap slash = keys({"a/b"});
  auto bad = validate_keys(slash);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message == "key has invalid character /, only alphanumeric, '-', '.' and '_' are allowed: a/b");
  SecretMap longkey = keys({std::string(254, 'k')});
  auto too_long = validate_keys(longkey);
  REQUIRE_FALSE(too_long);
  CHECK(too_long.error().message ==
        "key has length 254 but max is 253: (following is truncated): " + std::string(253, 'k'));
}

TEST_CASE("add_data_from: rewrite, then key checks, then decoding") {
  auto es = es_of(R"j({"secretStoreRef":{"name":"vault"},"dataFrom":[
    {"extract":{"key":"app","decodingStrategy":"Base64"},
     "rewrite":[{"regexp":{"source":"^db/(.*)","target":"DB_$1"}},{"transform":{"template":"{{ .value | lower }}"}}]},
    {"extract":{"key":"plain"}},
    {"extract":{"key":"app"},"rewrite":[{"regexp":{"source":"(","target":""}}]},
    {"extract":{"key":"app"},"rewrite":[{"regexp":{"source":"^db_","target":"db/"}}]}]})j");
  REQUIRE(es.data_from[0].rewrite.size() == 2);
  reconcile::ProviderData out;
  REQUIRE(add_data_from(out, es, 0, kVault, ValueFormat::go_map, bytes(R"({"db/user":"Ym9i","db/pass":"aGk="})")));
  CHECK(text(out.data.at("db_user")) == "bob");
  CHECK(text(out.data.at("db_pass")) == "hi");
  // without rewrite: conversionStrategy Default turns '/' into '_'
  REQUIRE(add_data_from(out, es, 1, kVault, ValueFormat::go_map, bytes(R"({"a/b":"1"})")));
  CHECK(text(out.data.at("a_b")) == "1");

  auto bad_re = add_data_from(out, es, 2, kVault, ValueFormat::go_map, bytes(R"({"k":"v"})"));
  REQUIRE_FALSE(bad_re);
  CHECK_FALSE(bad_re.error().retry);
  CHECK(bad_re.error().event ==
        "error processing spec.dataFrom[2].extract, err: error applying rewrite to keys: failed rewrite operation[0]: "
        "regexp failed with failed to compile: error parsing regexp: missing closing ): `(`");
  auto invalid = add_data_from(out, es, 3, kVault, ValueFormat::go_map, bytes(R"({"db_x":"secret-value"})"));
  REQUIRE_FALSE(invalid);
  CHECK(invalid.error().retry);
  CHECK(
      invalid.error().event ==
      "error processing spec.dataFrom[3].extract, err: invalid secret keys (TIP: use rewrite or conversionStrategy to "
      "change keys): key has invalid character /, only alphanumeric, '-', '.' and '_' are allowed: db/x");
  CHECK(invalid.error().event.find("secret-value") == std::string::npos);
  auto collide = add_data_from(out, es, 1, kVault, ValueFormat::go_map, bytes(R"({"a/b":"1","a_b":"2"})"));
  REQUIRE_FALSE(collide);
  CHECK(
      collide.error().event ==
      "error processing spec.dataFrom[1].extract, err: error applying conversion strategy Default to keys: secret name "
      "collision during conversion: a_b");
}

TEST_CASE("dataFrom[].rewrite: the manifest's shape is checked") {
  auto refused = [](std::string_view rewrite) {
    auto v = json::parse(R"({"apiVersion":"external-secrets.io/v1","kind":"ExternalSecret",
      "metadata":{"name":"es","namespace":"team"},"spec":{"secretStoreRef":{"name":"vault"},
      "dataFrom":[{"extract":{"key":"k"},"rewrite":)" +
                         std::string(rewrite) + "}]}}");
    auto es = model::parse_external_secret(v);
    REQUIRE_FALSE(es);
    return es.error().message;
  };
  CHECK(refused(R"([{}])").find("spec.dataFrom[0].rewrite[0]: must hold exactly one of regexp, transform, merge") !=
        std::string::npos);
  CHECK(refused(R"([{"regexp":{"source":"a","target":"b"},"transform":{"template":"x"}}])")
            .find("must hold exactly one") != std::string::npos);
  CHECK(refused(R"([{"regexp":{"source":"a"}}])").find("spec.dataFrom[0].rewrite[0].regexp.target: required") !=
        std::string::npos);
  CHECK(refused(R"([{"regexp":{"target":"a"}}])").find("regexp.source: required") != std::string::npos);
  CHECK(refused(R"([{"transform":{}}])").find("transform.template: required") != std::string::npos);
  CHECK(refused(R"([{"merge":{"strategy":"YAML"}}])")
            .find("rewrite[0].merge.strategy: unsupported value 'YAML' (supported: Extract, JSON)") !=
        std::string::npos);
  auto merge = es_of(R"({"secretStoreRef":{"name":"vault"},"dataFrom":[{"extract":{"key":"k"},
    "rewrite":[{"merge":{"into":"all","priority":["b","a"],"priorityPolicy":"IgnoreNotFound","conflictPolicy":"Ignore","strategy":"JSON"}}]}]})");
  model::RewriteMerge want;
  want.into = "all";
  want.priority = {"b", "a"};
  want.ignore_not_found = want.ignore_conflicts = want.json = true;
  CHECK(std::get<model::RewriteMerge>(merge.data_from[0].rewrite[0]) == want);
  // an empty target is allowed (strip a prefix)
  auto es = es_of(R"({"secretStoreRef":{"name":"vault"},"dataFrom":[{"extract":{"key":"k"},
    "rewrite":[{"regexp":{"source":"^p-","target":""}}]}]})");
  REQUIRE(es.data_from[0].rewrite.size() == 1);
  CHECK(std::get<model::RewriteRegexp>(es.data_from[0].rewrite[0]) == model::RewriteRegexp{"^p-", ""});
}

// ESO's guide docs/guides/datafrom-rewrite.md, its snippets
// datafrom-rewrite-conflict.yaml and datafrom-rewrite-invalid-characters.yaml
// (the guide prints "dev_password" for target "dev-$1"; Go gives "dev-password").
TEST_CASE("add_data_from: ESO's rewrite guide examples") {
  auto es =
      es_of(R"j({"secretStoreRef":{"kind":"SecretStore","name":"backend"},"target":{"name":"secret-to-be-created"},
    "dataFrom":[{"extract":{"key":"my-secrets-dev"},"rewrite":[{"regexp":{"source":"(.*)","target":"dev-$1"}}]},
                {"extract":{"key":"my-secrets-prod"},"rewrite":[{"regexp":{"source":"(.*)","target":"prod-$1"}}]},
                {"extract":{"key":"development"},"rewrite":[{"regexp":{"source":"[^a-zA-Z0-9 -]","target":"_"}}]}]})j");
  const model::StoreRef backend{"backend", model::StoreKind::secret_store};
  reconcile::ProviderData out;
  REQUIRE(add_data_from(out, es, 0, backend, ValueFormat::go_map, bytes(R"({"password":"bar"})")));
  REQUIRE(add_data_from(out, es, 1, backend, ValueFormat::go_map, bytes(R"({"password":"safebar"})")));
  REQUIRE(add_data_from(out, es, 2, backend, ValueFormat::go_map, bytes(R"({"foo/bar":"1111","foo$baz":"2222"})")));
  REQUIRE(out.data.size() == 4);
  CHECK(text(out.data.at("dev-password")) == "bar");
  CHECK(text(out.data.at("prod-password")) == "safebar");
  CHECK(text(out.data.at("foo_bar")) == "1111");
  CHECK(text(out.data.at("foo_baz")) == "2222");
}

namespace {

SecretMap creds(std::initializer_list<std::pair<const char*, const char*>> kv) {
  SecretMap m;
  for (const auto& [k, v] : kv) m.emplace(k, kms::SecureBytes::copy_of(std::string_view(v)));
  return m;
}

std::map<std::string, std::string> texts(const SecretMap& m) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : m) out.emplace(k, text(v));
  return out;
}

}  // namespace

TEST_CASE("rewrite merge: ESO's TestRewriteMerge cases (runtime/esutils/utils_test.go)") {
  const auto in = [] {
    return creds({{"mongo-credentials", R"({"username": "foz", "password": "baz"})"},
                  {"redis-credentials", R"({"host": "redis.example.com", "port": "6379"})"}});
  };
  // using empty merge
  auto empty = rewrite_map({model::RewriteMerge{}}, in());
  REQUIRE(empty);
  CHECK(texts(*empty) ==
        std::map<std::string, std::string>{
            {"username", "foz"}, {"password", "baz"}, {"host", "redis.example.com"}, {"port", "6379"}});
  // using priority (conflicts ignored; the priority keys last, in their order)
  model::RewriteMerge prio;
  prio.ignore_conflicts = true;
  prio.priority = {"mongo-credentials", "redis-credentials"};
  auto with_other = in();
  with_other.emplace("other-credentials",
                     kms::SecureBytes::copy_of(std::string_view(R"({"key": "value", "host": "other.example.com"})")));
  auto p = rewrite_map({prio}, std::move(with_other));
  REQUIRE(p);
  CHECK(
      texts(*p) ==
      std::map<std::string, std::string>{
          {"username", "foz"}, {"password", "baz"}, {"host", "redis.example.com"}, {"port", "6379"}, {"key", "value"}});
  // priority keys not in the input: Strict fails, IgnoreNotFound skips them
  prio.priority = {"non-existent-key", "another-missing-key", "mongo-credentials"};
  auto strict = rewrite_map({prio}, in());
  REQUIRE_FALSE(strict);
  CHECK(strict.error().message ==
        R"(failed rewrite operation[0]: merge failed with key "non-existent-key" not found in input map)");
  prio.ignore_not_found = true;
  auto ignored = rewrite_map({prio}, in());
  REQUIRE(ignored);
  CHECK(ignored->size() == 4);
  // conflict policy Error (the default)
  auto conflicting =
      rewrite_map({model::RewriteMerge{}}, creds({{"mongo-credentials", R"({"username": "foz", "password": "baz"})"},
                                                  {"redis-credentials", R"({"username": "redis", "port": "6379"})"}}));
  REQUIRE_FALSE(conflicting);
  CHECK(conflicting.error().message == "failed rewrite operation[0]: merge failed with conflicts: username");
  CHECK(conflicting.error().code == kms::Errc::conflict);
  // JSON strategy: the inputs stay, the merged object is added under `into` (Go's Marshal, keys sorted)
  model::RewriteMerge js;
  js.json = true;
  js.into = "credentials";
  auto j = rewrite_map({js}, in());
  REQUIRE(j);
  CHECK(text(j->at("credentials")) ==
        R"({"host":"redis.example.com","password":"baz","port":"6379","username":"foz"})");
  CHECK(text(j->at("mongo-credentials")) == R"({"username": "foz", "password": "baz"})");
  js.into.clear();
  auto no_into = rewrite_map({js}, in());
  REQUIRE_FALSE(no_into);
  CHECK(no_into.error().message == "failed rewrite operation[0]: merge failed with missing 'into' field");
  CHECK(no_into.error().code == kms::Errc::invalid_argument);
  // invalid JSON
  auto invalid =
      rewrite_map({model::RewriteMerge{}}, creds({{"invalid-json", R"({"username": "foz", "password": "baz")"}}));
  REQUIRE_FALSE(invalid);
  CHECK(
      invalid.error().message.starts_with("failed rewrite operation[0]: merge failed with failed to unmarshal JSON: "));
  CHECK(invalid.error().message.find("foz") == std::string::npos);  // never the value
}

TEST_CASE("rewrite merge: values as Go's Unmarshal into any gives them (float64, no HTML escaping under JSON)") {
  auto numbers =
      rewrite_map({model::RewriteMerge{}}, creds({{"a", R"({"ratio": 1.50, "n": {"x": 1e3}, "t": true, "z": null})"}}));
  REQUIRE(numbers);
  CHECK(texts(*numbers) ==
        std::map<std::string, std::string>{{"ratio", "1.5"}, {"n", R"({"x":1000})"}, {"t", "true"}, {"z", ""}});
  model::RewriteMerge js;
  js.json = true;
  js.into = "all";
  auto j = rewrite_map({js}, creds({{"a", R"({"html": "<&>", "n": 1.50})"}, {"b", "null"}}));
  REQUIRE(j);
  CHECK(text(j->at("all")) == R"({"html":"<&>","n":1.5})");
  auto not_object = rewrite_map({model::RewriteMerge{}}, creds({{"a", R"(["x"])"}}));
  REQUIRE_FALSE(not_object);
  CHECK(not_object.error().message ==
        "failed rewrite operation[0]: merge failed with failed to unmarshal JSON: json: cannot "
        "unmarshal array into Go value of type map[string]interface {}");
}
