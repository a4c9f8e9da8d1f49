// AWS Secrets Manager: SigV4 against AWS's published test-suite vectors, and
// the pull provider against moto_server (the real emulator), seeded with the aws CLI.
#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <fstream>

#include "process_util.hpp"
#include "provider_test_util.hpp"
#include "providers/aws/aws_sigv4.hpp"
#include "providers/aws/aws_sm.hpp"
#include "providers/aws/aws_sts.hpp"
#include "rootseal/kms/encoding.hpp"
#include "temp_dir.hpp"

using namespace rootseal;
using namespace rootseal::test;
using namespace rootseal::test::aws_moto;
namespace sigv4 = rootseal::sync::providers::sigv4;
namespace json = boost::json;

namespace {

// The credentials and clock of AWS's SigV4 test suite (aws-sig-v4-test-suite).
const kms::SecureBytes kSuiteKeyId = kms::SecureBytes::copy_of(std::string_view("AKIDEXAMPLE"));
const kms::SecureBytes kSuiteSecret =
    kms::SecureBytes::copy_of(std::string_view("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"));

sigv4::Request suite_request(std::string method, std::string path,
                             std::vector<std::pair<std::string, std::string>> query = {}) {
  sigv4::Request r;
  r.method = std::move(method);
  r.path = std::move(path);
  r.query = std::move(query);
  r.headers = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", "20150830T123600Z"}};
  return r;
}

std::string suite_signature(const sigv4::Request& r) {
  return sigv4::signature(r, kSuiteSecret, "us-east-1", "service", "20150830T123600Z");
}

sync::RemoteRef ref(std::string key, std::string property = "", std::string version = "") {
  return {std::move(key), std::move(property), std::move(version), sync::DecodingStrategy::none};
}

}  // namespace

TEST_CASE("sigv4: a repeated header keeps its values in request order (test suite get-header-key-duplicate)") {
  auto r = suite_request("GET", "/");
  r.headers = {{"Host", "example.amazonaws.com"},
               {"My-Header1", "value2"},
               {"My-Header1", "value2"},
               {"My-Header1", "value1"},
               {"X-Amz-Date", "20150830T123600Z"}};
  std::string signed_headers;
  const auto creq = sigv4::canonical_request(r, signed_headers);
  CHECK(signed_headers == "host;my-header1;x-amz-date");
  CHECK(creq.find("\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\nx-amz-date:20150830T123600Z\n") !=
        std::string::npos);
  // Names sort case-insensitively; the values of one name are not sorted.
  r.headers = {{"x-amz-date", "20150830T123600Z"}, {"b", "2"}, {"A", "z"}, {"a", "y"}, {"host", "h"}};
  const auto mixed = sigv4::canonical_request(r, signed_headers);
  CHECK(signed_headers == "a;b;host;x-amz-date");
  CHECK(mixed.find("\na:z,y\nb:2\nhost:h\nx-amz-date:20150830T123600Z\n") != std::string::npos);
}

TEST_CASE("sigv4: AWS test-suite vectors (get-vanilla, query order, post-vanilla, post query, utf8 path)") {
  // get-vanilla
  auto get = suite_request("GET", "/");
  std::string signed_headers;
  const auto creq = sigv4::canonical_request(get, signed_headers);
  CHECK(signed_headers == "host;x-amz-date");
  CHECK(creq ==
        "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(suite_signature(get) == "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
  const auto auth = sigv4::authorization(get, {kSuiteKeyId, kSuiteSecret}, "us-east-1", "service", "20150830T123600Z");
  CHECK(text(auth) ==
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
  // get-vanilla-query-order-key-case: parameters sorted before signing.
  CHECK(suite_signature(suite_request("GET", "/", {{"Param2", "value2"}, {"Param1", "value1"}})) ==
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
  // post-vanilla and post-vanilla-query.
  CHECK(suite_signature(suite_request("POST", "/")) ==
        "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
  CHECK(suite_signature(suite_request("POST", "/", {{"Param1", "value1"}})) ==
        "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11");
  // get-utf8: the path as sent (percent-encoded UTF-8).
  CHECK(suite_signature(suite_request("GET", "/%E1%88%B4")) ==
        "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85");
  // Header names are case-insensitive and values trimmed (post-header-key-case).
  auto mixed = suite_request("POST", "/");
  mixed.headers = {{"X-AMZ-DATE", "  20150830T123600Z "}, {"HOST", "example.amazonaws.com"}};
  CHECK(suite_signature(mixed) == "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
}

TEST_CASE("sigv4: the signing key matches AWS's documented derivation example") {
  const auto key = sigv4::signing_key(kSuiteSecret, "20120215", "us-east-1", "iam");
  CHECK(kms::hex_encode(key.span()) == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
  CHECK(sigv4::amz_date(std::chrono::system_clock::time_point(std::chrono::seconds(1440938160))) == "20150830T123600Z");
}

TEST_CASE("sts: AssumeRoleWithWebIdentity body and answer (credentials into locked memory, refusals without them)") {
  namespace sts = rootseal::sync::providers::sts;
  const auto body = sts::assume_role_with_web_identity_body("arn:aws:iam::1:role/a b", "external-secrets-provider-aws",
                                                            kms::SecureBytes::copy_of(std::string_view("eyJ.x+y.z")));
  CHECK(std::string(reinterpret_cast<const char*>(body.data()), body.size()) ==
        "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa%20b"
        "&RoleSessionName=external-secrets-provider-aws&WebIdentityToken=eyJ.x%2By.z");
  const std::string ok =
      "<AssumeRoleWithWebIdentityResponse "
      "xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleWithWebIdentityResult>"
      "<SubjectFromWebIdentityToken>system:serviceaccount:a:app</SubjectFromWebIdentityToken><Credentials>"
      "<AccessKeyId>ASIAEXAMPLE</AccessKeyId><SecretAccessKey>wJalr/K7MDENG</SecretAccessKey>"
      "<SessionToken>FQoGZXIvYXdz+tok=</SessionToken><Expiration>2026-12-07T07:05:38.224450Z</Expiration>"
      "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
  auto c = sts::parse_assume_role_with_web_identity(ok);
  REQUIRE(c);
  CHECK(std::string(reinterpret_cast<const char*>(c->access_key_id.data()), c->access_key_id.size()) == "ASIAEXAMPLE");
  CHECK(std::string(reinterpret_cast<const char*>(c->session_token.data()), c->session_token.size()) ==
        "FQoGZXIvYXdz+tok=");
  CHECK(c->expiration == std::chrono::sys_days(std::chrono::year{2026} / 12 / 7) + std::chrono::hours(7) +
                             std::chrono::minutes(5) + std::chrono::seconds(38));
  for (const std::string& bad :
       {std::string(""), std::string("<x/>"), std::string(ok).replace(ok.find("<SecretAccessKey>"), 17, "<Secret>"),
        std::string(ok).replace(ok.find("2026-12-07T07"), 13, "tomorrow-morn"),
        std::string(ok).replace(ok.find("ASIAEXAMPLE"), 11, "ASIA EXAMPL")}) {
    auto r = sts::parse_assume_role_with_web_identity(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == kms::Errc::unavailable);
    CHECK(r.error().message.find("wJalr") == std::string::npos);
    CHECK(r.error().message.find("FQoG") == std::string::npos);
  }
  CHECK(sts::error_text(400,
                        "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>"
                        "<Message>secret eyJ.x.y</Message></Error></ErrorResponse>") ==
        "sts: HTTP 400 InvalidIdentityToken");
  CHECK(sts::error_text(403, "<Error><Code>not a code!</Code></Error>") == "sts: HTTP 403");
}

TEST_CASE("sts: AssumeRole body (external id, session tags, transitive keys) and answer") {
  namespace sts = rootseal::sync::providers::sts;
  sync::AwsAssumeRole role{
      "arn:aws:iam::111122223333:role/team a", "ext/1", {{"team", "a b"}, {"cost-center", "42"}}, {"team"}};
  CHECK(sts::assume_role_body(role, "aws-go-sdk-1", 900) ==
        "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fteam%20a"
        "&RoleSessionName=aws-go-sdk-1&DurationSeconds=900&ExternalId=ext%2F1"
        "&Tags.member.1.Key=team&Tags.member.1.Value=a%20b&Tags.member.2.Key=cost-center&Tags.member.2.Value=42"
        "&TransitiveTagKeys.member.1=team");
  // A bare role: no optional parameter at all.
  CHECK(sts::assume_role_body({"arn:aws:iam::1:role/r", {}, {}, {}}, "s", 900) ==
        "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr&RoleSessionName=s"
        "&DurationSeconds=900");
  // AWS's documented answer (sts AssumeRole, Examples).
  const std::string ok =
      "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>"
      "<SourceIdentity>Alice</SourceIdentity><AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/demo/TestAR</"
      "Arn>"
      "<AssumedRoleId>ARO123EXAMPLE123:TestAR</AssumedRoleId></AssumedRoleUser><Credentials>"
      "<AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId><SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</"
      "SecretAccessKey>"
      "<SessionToken>AQoDYXdzEPT//////////wEXAMPLEtc764</SessionToken><Expiration>2019-11-09T13:34:41Z</Expiration>"
      "</Credentials><PackedPolicySize>6</PackedPolicySize></AssumeRoleResult></AssumeRoleResponse>";
  auto c = sts::parse_assume_role(ok);
  REQUIRE(c);
  CHECK(std::string(reinterpret_cast<const char*>(c->access_key_id.data()), c->access_key_id.size()) ==
        "ASIAIOSFODNN7EXAMPLE");
  // The web identity result is not an AssumeRole result, and the reverse.
  auto other = sts::parse_assume_role_with_web_identity(ok);
  REQUIRE_FALSE(other);
  CHECK(other.error().message.find("wJalr") == std::string::npos);
}

TEST_CASE("aws provider: SecretString, properties, SecretBinary, VersionStage and VersionId on moto") {
  Moto moto;
  TempDir dir("rootseal-aws");
  aws_json(
      moto,
      R"(secretsmanager create-secret --name app/db --secret-string '{"user":"alice","pass":"one","cfg":{"port":"5432"}}')");
  const auto v2 = aws_json(
      moto,
      R"(secretsmanager put-secret-value --secret-id app/db --secret-string '{"user":"alice","pass":"two","cfg":{"port":"5432"}}')");
  {
    std::ofstream out(dir / "blob.bin", std::ios::binary);
    out << std::string("\x00\xff\x10secret", 9);
  }
  aws_json(moto, "secretsmanager create-secret --name app/blob --secret-binary fileb://" + (dir / "blob.bin").string());

  Loop loop;
  auto p = make(loop, moto_spec(moto));
  REQUIRE(loop.run(p->validate()));

  auto whole = loop.run(selected(p, ref("app/db")));
  REQUIRE(whole);
  CHECK(json::parse(text(*whole)).at("pass") == "two");
  auto pass = loop.run(selected(p, ref("app/db", "pass")));
  REQUIRE(pass);
  CHECK(text(*pass) == "two");
  auto port = loop.run(selected(p, ref("app/db", "cfg.port")));
  REQUIRE(port);
  CHECK(text(*port) == "5432");
  auto previous = loop.run(selected(p, ref("app/db", "pass", "AWSPREVIOUS")));
  REQUIRE(previous);
  CHECK(text(*previous) == "one");
  auto by_id = loop.run(selected(p, ref("app/db", "pass", "uuid/" + std::string(v2.at("VersionId").as_string()))));
  REQUIRE(by_id);
  CHECK(text(*by_id) == "two");
  auto blob = loop.run(selected(p, ref("app/blob")));
  REQUIRE(blob);
  CHECK(text(*blob) == std::string("\x00\xff\x10secret", 9));
  auto all = loop.run(selected_map(p, ref("app/db")));
  REQUIRE(all);
  CHECK(all->size() == 3);
  CHECK(text(all->at("user")) == "alice");

  auto missing = loop.run(selected(p, ref("app/none")));
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == kms::Errc::not_found);
  auto no_prop = loop.run(selected(p, ref("app/db", "nope")));
  REQUIRE_FALSE(no_prop);
  CHECK(no_prop.error().code == kms::Errc::not_found);
  auto no_stage = loop.run(selected(p, ref("app/db", "", "AWSPENDING")));
  REQUIRE_FALSE(no_stage);
  CHECK(no_stage.error().code == kms::Errc::not_found);
  auto not_json = loop.run(selected(p, ref("app/blob", "x")));
  REQUIRE_FALSE(not_json);
  CHECK(not_json.error().code == kms::Errc::invalid_argument);
}

TEST_CASE("aws provider: an unreachable endpoint is unavailable, bad specs are refused") {
  Loop loop;
  sync::AwsSpec s;
  s.region = "us-east-1";
  s.endpoint = "http://127.0.0.1:" + std::to_string(free_port());
  s.access_key_id = secure("a");
  s.secret_access_key = secure("b");
  auto p = make(loop, std::move(s));
  auto r = loop.run(selected(p, ref("x")));
  REQUIRE_FALSE(r);
  CHECK(r.error().code == kms::Errc::unavailable);
  // Two attempts at most (the second after the store's first backoff), and
  // then the store is backed off: the next fetch is refused locally, no call.
  CHECK(p->counters().calls == 2);
  auto refused = loop.run(selected(p, ref("y")));
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == kms::Errc::unavailable);
  CHECK(refused.error().message.find("backing off") != std::string::npos);
  CHECK(p->counters().calls == 2);

  sync::AwsSpec no_region;
  no_region.access_key_id = secure("a");
  no_region.secret_access_key = secure("b");
  CHECK_FALSE(sync::providers::make_aws_provider(loop.io.get_executor(), std::move(no_region)));
  sync::AwsSpec no_keys;
  no_keys.region = "us-east-1";
  CHECK_FALSE(sync::providers::make_aws_provider(loop.io.get_executor(), std::move(no_keys)));
  sync::AwsSpec window;
  window.region = "us-east-1";
  window.access_key_id = secure("a");
  window.secret_access_key = secure("b");
  window.recovery_window_days = 3;
  CHECK_FALSE(sync::providers::make_aws_provider(loop.io.get_executor(), std::move(window)));
}

TEST_CASE("aws provider: dataFrom.find by name (ListSecrets), by tags and by path (BatchGetSecretValue) on moto") {
  Moto moto;
  TempDir dir("rootseal-aws-find");
  aws_json(
      moto,
      R"(secretsmanager create-secret --name app/db --secret-string '{"user":"alice"}' --tags Key=team,Value=a Key=env,Value=prod)");
  aws_json(
      moto,
      R"(secretsmanager create-secret --name app/cache --secret-string 'plain' --tags Key=team,Value=a Key=env,Value=dev)");
  aws_json(moto, R"(secretsmanager create-secret --name other/db --secret-string 'x' --tags Key=team,Value=b)");
  {
    std::ofstream out(dir / "blob.bin", std::ios::binary);
    out << std::string("\x00\xff", 2);
  }
  aws_json(moto, "secretsmanager create-secret --name app/blob --secret-binary fileb://" + (dir / "blob.bin").string() +
                     " --tags Key=team,Value=a Key=env,Value=prod");
  Loop loop;
  auto p = make(loop, moto_spec(moto));
  const auto names = [](const sync::SecretMap& m) {
    std::vector<std::string> out;
    for (const auto& [k, v] : m) out.push_back(k);
    return out;
  };

  sync::FindRequest by_name;
  by_name.name_matches = [](std::string_view n) { return n.find("db") != std::string_view::npos; };
  auto r = loop.run(p->find(by_name));
  REQUIRE(r);
  CHECK(names(*r) == std::vector<std::string>{"app/db", "other/db"});
  CHECK(text(r->at("app/db")) == R"({"user":"alice"})");

  sync::FindRequest by_tags;
  by_tags.tags = {{"team", "a"}, {"env", "prod"}};
  r = loop.run(p->find(by_tags));
  REQUIRE(r);
  CHECK(names(*r) == std::vector<std::string>{"app/blob", "app/db"});
  CHECK(text(r->at("app/blob")) == std::string("\x00\xff", 2));

  sync::FindRequest by_path;
  by_path.path = "app/";
  by_path.name_matches = [](std::string_view n) { return n.ends_with("cache") || n.ends_with("db"); };
  r = loop.run(p->find(by_path));
  REQUIRE(r);
  CHECK(names(*r) == std::vector<std::string>{"app/cache", "app/db"});
  CHECK(text(r->at("app/cache")) == "plain");

  auto neither = loop.run(p->find(sync::FindRequest{}));
  REQUIRE_FALSE(neither);
  CHECK(neither.error().code == kms::Errc::invalid_argument);
  CHECK(neither.error().message == "aws: unexpected find operator (find needs name or tags)");
}
