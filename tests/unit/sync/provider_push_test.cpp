// Push providers. AWS Secrets Manager against moto_server, every result read
// back with the aws CLI (an independent client).
#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include "process_util.hpp"
#include "provider_test_util.hpp"
#include "providers/aws/aws_sm.hpp"
#include "rootseal/kms/encoding.hpp"

#include <ctime>
#include <fstream>

using namespace rootseal;
using namespace rootseal::test;
namespace json = boost::json;

using namespace rootseal::test::aws_moto;

namespace {

// The current value as the aws CLI reads it: SecretString, or SecretBinary decoded.
std::string cli_value(const Moto& moto, const std::string& name) {
  const auto got = aws_json(moto, "secretsmanager get-secret-value --secret-id " + name);
  if (const auto* s = got.as_object().if_contains("SecretString")) return std::string(s->as_string());
  const auto raw = kms::base64_decode(std::string_view(got.at("SecretBinary").as_string()));
  REQUIRE(raw);
  return std::string(raw->begin(), raw->end());
}

// Which of SecretString and SecretBinary holds the current value.
std::string cli_field(const Moto& moto, const std::string& name) {
  const auto got = aws_json(moto, "secretsmanager get-secret-value --secret-id " + name);
  return got.as_object().contains("SecretBinary") ? "SecretBinary" : "SecretString";
}

std::size_t cli_versions(const Moto& moto, const std::string& name) {
  return aws_json(moto, "secretsmanager list-secret-version-ids --secret-id " + name).at("Versions").as_array().size();
}

bool cli_managed(const json::value& describe) {
  for (const auto& t : describe.at("Tags").as_array()) {
    if (t.at("Key") == "managed-by" && t.at("Value") == "rootseal") return true;
  }
  return false;
}

}  // namespace

TEST_CASE("aws push: creates tagged, writes only on change, one version per change") {
  Moto moto;
  Loop loop;
  auto p = make(loop, moto_spec(moto));

  auto first = loop.run(p->put_if_changed({"prod/api-key", ""}, secure("v1-secret")));
  REQUIRE(first);
  CHECK(first->written);
  CHECK(first->created);
  CHECK_FALSE(first->version.empty());
  CHECK(cli_value(moto, "prod/api-key") == "v1-secret");
  CHECK(cli_field(moto, "prod/api-key") == "SecretBinary");  // ESO's default secretPushFormat: binary
  CHECK(cli_managed(aws_json(moto, "secretsmanager describe-secret --secret-id prod/api-key")));

  const auto writes_before = p->counters().writes.load();
  for (int i = 0; i < 10; ++i) {
    auto same = loop.run(p->put_if_changed({"prod/api-key", ""}, secure("v1-secret")));
    REQUIRE(same);
    CHECK_FALSE(same->written);
  }
  CHECK(p->counters().writes == writes_before);  // ten idle refreshes: zero writes
  CHECK(cli_versions(moto, "prod/api-key") == 1);

  auto changed = loop.run(p->put_if_changed({"prod/api-key", ""}, secure("v2-secret")));
  REQUIRE(changed);
  CHECK(changed->written);
  CHECK_FALSE(changed->created);
  CHECK(cli_value(moto, "prod/api-key") == "v2-secret");
  CHECK(cli_versions(moto, "prod/api-key") == 2);

  auto state = loop.run(p->describe("prod/api-key"));
  REQUIRE(state);
  CHECK(state->exists);
  CHECK(state->managed);
}

namespace {

// The VersionIds of a secret, oldest first (moto lists them in creation order), and the current one's.
std::vector<std::string> cli_version_ids(const Moto& moto, const std::string& name) {
  const auto listed = aws_json(moto, "secretsmanager list-secret-version-ids --secret-id " + name);
  std::vector<std::string> out;
  for (const auto& v : listed.at("Versions").as_array()) out.emplace_back(v.at("VersionId").as_string());
  return out;
}
std::string cli_current_id(const Moto& moto, const std::string& name) {
  return std::string(aws_json(moto, "secretsmanager get-secret-value --secret-id " + name).at("VersionId").as_string());
}

sync::PushRef sharded(std::string key, std::uint32_t bucket, std::int64_t epoch) {
  sync::PushRef r{std::move(key), ""};
  r.bucket = bucket;
  r.epoch = epoch;
  return r;
}

}  // namespace

TEST_CASE("aws push: sharded each version records its owner's epoch and a newer owner's value is not overwritten") {
  Moto moto;
  Loop loop;
  auto p = make(loop, moto_spec(moto));
  const auto old_owner = sharded("ha/db", 17, 100);
  const auto new_owner = sharded("ha/db", 17, 250);

  auto first = loop.run(p->put_if_changed(old_owner, secure("v1")));
  REQUIRE(first);
  CHECK(first->created);
  CHECK(first->version.starts_with("rs-17-100-"));  // CreateSecret's ClientRequestToken became the VersionId
  CHECK(cli_current_id(moto, "ha/db") == first->version);
  const auto id_len = first->version.size();
  CHECK((id_len >= 32 && id_len <= 64));

  // A re-push of the same content (a retry, a refresh, the handover) writes nothing.
  auto again = loop.run(p->put_if_changed(old_owner, secure("v1")));
  REQUIRE(again);
  CHECK_FALSE(again->written);
  CHECK(cli_versions(moto, "ha/db") == 1);

  // The bucket's next owner writes a changed value under its epoch.
  auto taken = loop.run(p->put_if_changed(new_owner, secure("v2")));
  REQUIRE(taken);
  CHECK(taken->written);
  CHECK(taken->newer_epoch == 0);
  CHECK(taken->version.starts_with("rs-17-250-"));
  CHECK(cli_current_id(moto, "ha/db") == taken->version);
  auto same = loop.run(p->put_if_changed(new_owner, secure("v2")));
  REQUIRE(same);
  CHECK_FALSE(same->written);

  // The old owner's late push (a stale owner): refused, the newer value kept, no version, no write call.
  const auto writes_before = p->counters().writes.load();
  auto late = loop.run(p->put_if_changed(old_owner, secure("v1-late")));
  REQUIRE(late);
  CHECK_FALSE(late->written);
  CHECK(late->newer_epoch == 250);
  CHECK(p->counters().writes == writes_before);
  CHECK(cli_value(moto, "ha/db") == "v2");
  CHECK(cli_versions(moto, "ha/db") == 2);
  // Its same value is no write either way; IfNotExists leaves the value alone.
  auto late_same = loop.run(p->put_if_changed(old_owner, secure("v2")));
  REQUIRE(late_same);
  CHECK_FALSE(late_same->written);
  auto late_ine = loop.run(p->put_if_changed(old_owner, secure("v3"), true));
  REQUIRE(late_ine);
  CHECK_FALSE(late_ine->written);
  CHECK(cli_versions(moto, "ha/db") == 2);

  // Another bucket's epoch is not compared (two PushSecrets of different
  // namespaces on one key fight as on one host); one host (epoch 0) records
  // and compares nothing: a plain UUID VersionId.
  auto other = loop.run(p->put_if_changed(sharded("ha/db", 18, 100), secure("v3")));
  REQUIRE(other);
  CHECK(other->written);
  CHECK(other->version.starts_with("rs-18-100-"));
  auto single = loop.run(p->put_if_changed({"ha/db", ""}, secure("v4")));
  REQUIRE(single);
  CHECK(single->written);
  CHECK_FALSE(single->version.starts_with("rs-"));
  CHECK(single->version.size() == 36);
  const auto ids = cli_version_ids(moto, "ha/db");
  REQUIRE(ids.size() == 4);
  CHECK(ids[0].starts_with("rs-17-100-"));
  CHECK(ids[1].starts_with("rs-17-250-"));
  CHECK(cli_value(moto, "ha/db") == "v4");
}

TEST_CASE("aws push: a secret without the managed-by tag is never overwritten or deleted") {
  Moto moto;
  aws_json(moto, "secretsmanager create-secret --name theirs --secret-string original");
  aws_json(moto,
           "secretsmanager create-secret --name tagged-other --secret-string x --tags "
           "Key=managed-by,Value=external-secrets");
  Loop loop;
  auto p = make(loop, moto_spec(moto));
  for (const std::string name : {"theirs", "tagged-other"}) {
    auto r = loop.run(p->put_if_changed({name, ""}, secure("mine")));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == kms::Errc::permission_denied);
    CHECK(r.error().message.find("not managed by rootseal") != std::string::npos);
    CHECK(r.error().message.find("mine") == std::string::npos);
    auto del = loop.run(p->remove({name, ""}));
    REQUIRE_FALSE(del);
    CHECK(del.error().code == kms::Errc::permission_denied);
    auto ens = loop.run(p->ensure_managed(name));
    REQUIRE_FALSE(ens);
  }
  CHECK(cli_value(moto, "theirs") == "original");
  CHECK(cli_versions(moto, "theirs") == 1);
  auto state = loop.run(p->describe("theirs"));
  REQUIRE(state);
  CHECK(state->exists);
  CHECK_FALSE(state->managed);
}

TEST_CASE("aws push: properties merge into a JSON object, IfNotExists leaves values alone, binary values") {
  Moto moto;
  Loop loop;
  auto p = make(loop, moto_spec(moto));
  REQUIRE(loop.run(p->put_if_changed({"app/cfg", "user"}, secure("alice"))));
  REQUIRE(loop.run(p->put_if_changed({"app/cfg", "pass"}, secure("pw1"))));
  CHECK(json::parse(cli_value(moto, "app/cfg")) == json::parse(R"({"user":"alice","pass":"pw1"})"));
  auto same = loop.run(p->put_if_changed({"app/cfg", "pass"}, secure("pw1")));
  REQUIRE(same);
  CHECK_FALSE(same->written);
  REQUIRE(loop.run(p->remove({"app/cfg", "pass"})));
  CHECK(json::parse(cli_value(moto, "app/cfg")) == json::parse(R"({"user":"alice"})"));

  auto keep = loop.run(p->put_if_changed({"app/cfg", ""}, secure("other"), /*if_not_exists=*/true));
  REQUIRE(keep);
  CHECK_FALSE(keep->written);
  CHECK(json::parse(cli_value(moto, "app/cfg")) == json::parse(R"({"user":"alice"})"));

  const std::string binary("\x00\x01\xfe\xff", 4);
  auto bin = loop.run(p->put_if_changed({"app/bin", ""}, secure(binary)));
  REQUIRE(bin);
  CHECK(bin->written);
  const auto got = aws_json(moto, "secretsmanager get-secret-value --secret-id app/bin");
  CHECK(got.at("SecretBinary") == "AAH+/w==");
  auto again = loop.run(p->put_if_changed({"app/bin", ""}, secure(binary)));
  REQUIRE(again);
  CHECK_FALSE(again->written);

  auto bad_name = loop.run(p->put_if_changed({"bad name!", ""}, secure("x")));
  REQUIRE_FALSE(bad_name);
  CHECK(bad_name.error().code == kms::Errc::invalid_argument);
}

TEST_CASE("aws push: remove deletes with the configured recovery window, only managed secrets") {
  Moto moto;
  Loop loop;
  auto spec = moto_spec(moto);
  spec.recovery_window_days = 7;
  auto p = make(loop, std::move(spec));
  REQUIRE(loop.run(p->put_if_changed({"gone-soon", ""}, secure("x"))));
  REQUIRE(loop.run(p->remove({"gone-soon", ""})));
  const auto d = aws_json(moto, "secretsmanager describe-secret --secret-id gone-soon");
  REQUIRE(d.as_object().contains("DeletedDate"));
  REQUIRE(loop.run(p->remove({"gone-soon", ""})));  // already scheduled: fine
  REQUIRE(loop.run(p->remove({"never-existed", ""})));

  // Pushing again restores the secret scheduled for deletion.
  auto back = loop.run(p->put_if_changed({"gone-soon", ""}, secure("y")));
  REQUIRE(back);
  CHECK(cli_value(moto, "gone-soon") == "y");

  auto force_spec = moto_spec(moto);
  force_spec.force_delete_without_recovery = true;
  auto f = make(loop, std::move(force_spec));
  REQUIRE(loop.run(f->remove({"gone-soon", ""})));
  const auto r = moto.aws("secretsmanager describe-secret --secret-id gone-soon");
  CHECK(r.status != 0);
  CHECK(r.out.find("ResourceNotFoundException") != std::string::npos);
}

TEST_CASE("aws push: ensure_managed creates an empty tagged secret, then the first value is written") {
  Moto moto;
  Loop loop;
  auto p = make(loop, moto_spec(moto));
  auto e = loop.run(p->ensure_managed("empty/one"));
  REQUIRE(e);
  CHECK(e->exists);
  CHECK(e->managed);
  CHECK(cli_managed(aws_json(moto, "secretsmanager describe-secret --secret-id empty/one")));
  auto w = loop.run(p->put_if_changed({"empty/one", ""}, secure("first")));
  REQUIRE(w);
  CHECK(w->written);
  CHECK(cli_value(moto, "empty/one") == "first");
}

TEST_CASE("aws push: the write limiter holds writes to the configured rate") {
  Moto moto;
  Loop loop;
  auto spec = moto_spec(moto);
  spec.writes_per_second = 5;
  auto p = make(loop, std::move(spec));
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) {
    auto r = loop.run(p->put_if_changed({"rate/" + std::to_string(i), ""}, secure("v")));
    REQUIRE(r);
    CHECK(r->written);
  }
  // A burst of 5, then 5 more at 5/s: at least ~1 s.
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(900));
  CHECK(p->counters().writes == 10);
}

// ---- Azure Key Vault (tests/doubles/azure_keyvault) ------------------------------------

#include "providers/azure/azure_kv.hpp"
#include "providers/gcp/gcp_sm.hpp"
#include "temp_dir.hpp"

namespace {

struct Azure {
  PyDouble d{"azure_keyvault",
             {"--tenant", "tenant-1", "--client", "client-1:client-secret-1", "--token", "reader-token"}};
  // Reads through the vault REST API with a static token (an independent client: curl).
  json::value get(const std::string& path) const {
    const auto r = run_command("curl -s -H 'Authorization: Bearer reader-token' '" + d.url() + path +
                               (path.find('?') == std::string::npos ? "?" : "&") + "api-version=7.4'");
    REQUIRE(r.status == 0);
    return json::parse(r.out);
  }
  void put_unmanaged(const std::string& name, const std::string& value) const {
    const auto r = run_command(
        "curl -sf -X PUT -H 'Authorization: Bearer reader-token' -H 'Content-Type: application/json' -d "
        "'{\"value\":\"" +
        value + "\"}' '" + d.url() + "/secrets/" + name + "?api-version=7.4'");
    REQUIRE(r.status == 0);
  }
  void admin(const std::string& path, const std::string& body = "{}") const {
    REQUIRE(run_command("curl -sf -X POST -d '" + body + "' " + d.url() + "/_double/" + path).status == 0);
  }
  sync::AzureSpec spec() const {
    sync::AzureSpec s;
    s.vault_url = d.url();
    s.authority_host = d.url();
    s.tenant_id = "tenant-1";
    s.client_id = "client-1";
    s.client_secret = secure("client-secret-1");
    return s;
  }
};

std::shared_ptr<sync::providers::AzureKeyVault> make_azure(Loop& loop, sync::AzureSpec spec) {
  auto p = sync::providers::make_azure_provider(loop.io.get_executor(), std::move(spec));
  REQUIRE(p);
  return *p;
}

}  // namespace

TEST_CASE("azure push: PUT only on change, tagged, one token for many calls") {
  Azure az;
  Loop loop;
  auto p = make_azure(loop, az.spec());
  REQUIRE(loop.run(p->validate()));
  auto first = loop.run(p->put_if_changed({"db-password", ""}, secure("pw-1")));
  REQUIRE(first);
  CHECK(first->written);
  CHECK(first->created);
  CHECK_FALSE(first->version.empty());
  const auto got = az.get("/secrets/db-password");
  CHECK(got.at("value") == "pw-1");
  CHECK(got.at("tags").at("managed-by") == "rootseal");

  for (int i = 0; i < 10; ++i) {
    auto same = loop.run(p->put_if_changed({"db-password", ""}, secure("pw-1")));
    REQUIRE(same);
    CHECK_FALSE(same->written);
  }
  CHECK(p->counters().writes == 1);
  auto changed = loop.run(p->put_if_changed({"db-password", ""}, secure("pw-2")));
  REQUIRE(changed);
  CHECK(changed->written);
  CHECK(az.get("/secrets/db-password").at("value") == "pw-2");
  CHECK(az.get("/secrets/db-password/versions").at("value").as_array().size() == 2);
  CHECK(p->counters().token_requests == 1);

  // Property pushes merge into a JSON object.
  REQUIRE(loop.run(p->put_if_changed({"app-cfg", "user"}, secure("alice"))));
  REQUIRE(loop.run(p->put_if_changed({"app-cfg", "pass"}, secure("pw"))));
  CHECK(json::parse(std::string(az.get("/secrets/app-cfg").at("value").as_string())) ==
        json::parse(R"({"user":"alice","pass":"pw"})"));
}

TEST_CASE("azure push: sharded each version tagged with its owner's epoch and a newer owner's never overwritten") {
  Azure az;
  Loop loop;
  auto p = make_azure(loop, az.spec());
  const auto old_owner = sharded("ha-db", 17, 100);
  const auto new_owner = sharded("ha-db", 17, 250);
  const auto versions = [&az] { return az.get("/secrets/ha-db/versions").at("value").as_array().size(); };
  sync::PushMetadata md;
  md.fields = {"tags"};
  md.tags = {{"team", "a"}};
  auto old_md = old_owner;
  old_md.metadata = &md;
  auto new_md = new_owner;
  new_md.metadata = &md;

  auto first = loop.run(p->put_if_changed(old_md, secure("v1")));
  REQUIRE(first);
  CHECK(first->written);
  CHECK(az.get("/secrets/ha-db").at("tags").at("rootseal-epoch") == "17-100");
  CHECK(az.get("/secrets/ha-db").at("tags").at("team") == "a");
  // The next owner re-pushing the same value and tags writes no version (the epoch tag alone is not a change).
  auto same = loop.run(p->put_if_changed(new_md, secure("v1")));
  REQUIRE(same);
  CHECK_FALSE(same->written);
  CHECK(versions() == 1);
  auto taken = loop.run(p->put_if_changed(new_owner, secure("v2")));
  REQUIRE(taken);
  CHECK(taken->written);
  CHECK(az.get("/secrets/ha-db").at("tags").at("rootseal-epoch") == "17-250");
  CHECK(versions() == 2);

  // The old owner's late push: refused, nothing written.
  const auto writes = p->counters().writes.load();
  auto late = loop.run(p->put_if_changed(old_owner, secure("v1-late")));
  REQUIRE(late);
  CHECK_FALSE(late->written);
  CHECK(late->newer_epoch == 250);
  CHECK(p->counters().writes == writes);
  CHECK(az.get("/secrets/ha-db").at("value") == "v2");
  CHECK(versions() == 2);

  // One host: no epoch tag, nothing compared.
  auto single = loop.run(p->put_if_changed({"ha-db", ""}, secure("v3")));
  REQUIRE(single);
  CHECK(single->written);
  CHECK_FALSE(az.get("/secrets/ha-db").at("tags").as_object().contains("rootseal-epoch"));
}

TEST_CASE("azure push: unmanaged secrets are refused, names validated, deletes only managed") {
  Azure az;
  az.put_unmanaged("theirs", "original");
  Loop loop;
  auto p = make_azure(loop, az.spec());
  auto r = loop.run(p->put_if_changed({"theirs", ""}, secure("mine")));
  REQUIRE_FALSE(r);
  CHECK(r.error().code == kms::Errc::permission_denied);
  CHECK(az.get("/secrets/theirs").at("value") == "original");
  auto del = loop.run(p->remove({"theirs", ""}));
  REQUIRE_FALSE(del);
  CHECK(del.error().code == kms::Errc::permission_denied);
  auto bad = loop.run(p->put_if_changed({"under_score", ""}, secure("x")));
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == kms::Errc::invalid_argument);

  REQUIRE(loop.run(p->put_if_changed({"mine", ""}, secure("x"))));
  REQUIRE(loop.run(p->remove({"mine", ""})));
  CHECK(az.get("/secrets/mine").at("error").at("code") == "SecretNotFound");
  REQUIRE(loop.run(p->remove({"mine", ""})));  // already gone: fine
}

TEST_CASE("azure push: an expired token is replaced once, 429 waits for Retry-After, bad credentials are clear") {
  Azure az;
  Loop loop;
  auto p = make_azure(loop, az.spec());
  REQUIRE(loop.run(p->put_if_changed({"s1", ""}, secure("a"))));
  CHECK(p->counters().token_requests == 1);
  az.admin("expire-tokens");
  auto again = loop.run(p->put_if_changed({"s1", ""}, secure("b")));
  REQUIRE(again);
  CHECK(again->written);
  CHECK(p->counters().token_requests == 2);

  // One 429: the call waits for Retry-After (within its budget) and retries once.
  az.admin("faults", R"({"status":429,"count":1,"retry_after":1,"path":"/secrets/s1"})");
  const auto t0 = std::chrono::steady_clock::now();
  auto throttled = loop.run(p->put_if_changed({"s1", ""}, secure("c")));
  REQUIRE(throttled);
  CHECK(throttled->written);
  CHECK(p->counters().throttled == 1);
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(950));
  CHECK(az.get("/secrets/s1").at("value") == "c");
  // A 429 to the retry too: the call gives up (bounded), and the store is
  // backed off: the next call is refused locally, without a request.
  az.admin("faults", R"({"status":429,"count":2,"retry_after":30,"path":"/secrets/s1"})");
  auto refused_first = loop.run(p->put_if_changed({"s1", ""}, secure("d")));
  REQUIRE_FALSE(refused_first);
  CHECK(refused_first.error().code == kms::Errc::unavailable);
  const auto calls = p->counters().calls.load();
  auto refused = loop.run(p->put_if_changed({"s1", ""}, secure("d")));
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == kms::Errc::unavailable);
  CHECK(refused.error().message.find("backing off") != std::string::npos);
  CHECK(p->counters().calls == calls);

  auto wrong = az.spec();
  wrong.client_secret = secure("nope");
  auto bad = make_azure(loop, std::move(wrong));  // its own store health
  auto denied = loop.run(bad->put_if_changed({"s1", ""}, secure("d")));
  REQUIRE_FALSE(denied);
  CHECK(denied.error().code == kms::Errc::permission_denied);
  CHECK(denied.error().message.find("nope") == std::string::npos);
}

// ---- GCP Secret Manager (tests/doubles/gcp_secretmanager) ------------------------------

namespace {

struct Gcp {
  TempDir dir{"rootseal-gcp"};
  std::string key_json;
  std::unique_ptr<PyDouble> d;
  explicit Gcp(std::vector<std::string> extra = {}) {
    REQUIRE(run_command("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " +
                        (dir / "sa.pem").string() + " 2>/dev/null")
                .status == 0);
    std::ifstream in(dir / "sa.pem");
    const std::string pem((std::istreambuf_iterator<char>(in)), {});
    // The token_uri is filled in once the port is known: written twice.
    const auto write = [&](const std::string& token_uri) {
      json::object o;
      o["type"] = "service_account";
      o["project_id"] = "proj-1";
      o["private_key_id"] = "key-1";
      o["private_key"] = pem;
      o["client_email"] = "sync@proj-1.iam.gserviceaccount.com";
      o["token_uri"] = token_uri;
      key_json = json::serialize(o);
      std::ofstream(dir / "sa.json") << key_json;
    };
    write("https://oauth2.googleapis.com/token");
    std::vector<std::string> args{
        "--service-account", (dir / "sa.json").string(), "--project", "proj-1:123456", "--token", "reader-token"};
    args.insert(args.end(), extra.begin(), extra.end());
    d = std::make_unique<PyDouble>("gcp_secretmanager", std::move(args));
    write(d->url() + "/token");
  }
  json::value get(const std::string& path) const {
    const auto r = run_command("curl -s -H 'Authorization: Bearer reader-token' '" + d->url() + path + "'");
    REQUIRE(r.status == 0);
    return json::parse(r.out);
  }
  sync::GcpSpec spec() const {
    sync::GcpSpec s;
    s.project_id = "proj-1";
    s.endpoint = d->url();
    s.service_account_json = secure(key_json);
    return s;
  }
};

std::shared_ptr<sync::providers::GcpSecretManager> make_gcp(Loop& loop, sync::GcpSpec spec) {
  auto p = sync::providers::make_gcp_provider(loop.io.get_executor(), std::move(spec));
  REQUIRE(p);
  return *p;
}

std::string gcp_latest(const Gcp& g, const std::string& id) {
  const auto a = g.get("/v1/projects/proj-1/secrets/" + id + "/versions/latest:access");
  auto raw = kms::base64_decode(std::string_view(a.at("payload").at("data").as_string()));
  REQUIRE(raw);
  return std::string(raw->begin(), raw->end());
}

}  // namespace

TEST_CASE("gcp: CRC32C matches the Castagnoli check value") {
  const std::string_view check = "123456789";
  CHECK(sync::providers::crc32c({reinterpret_cast<const std::uint8_t*>(check.data()), check.size()}) == 0xE3069283u);
  CHECK(sync::providers::crc32c({}) == 0u);
}

TEST_CASE("gcp push: service-account JWT token cached, labelled secret, addVersion only on change") {
  Gcp g;
  Loop loop;
  auto p = make_gcp(loop, g.spec());
  REQUIRE(loop.run(p->validate()));
  auto first = loop.run(p->put_if_changed({"api-key", ""}, secure("k1")));
  REQUIRE(first);
  CHECK(first->written);
  CHECK(first->created);
  CHECK(first->version == "1");
  const auto s = g.get("/v1/projects/proj-1/secrets/api-key");
  CHECK(s.at("labels").at("managed-by") == "rootseal");
  CHECK(s.at("replication").as_object().contains("automatic"));
  CHECK(gcp_latest(g, "api-key") == "k1");

  for (int i = 0; i < 10; ++i) {
    auto same = loop.run(p->put_if_changed({"api-key", ""}, secure("k1")));
    REQUIRE(same);
    CHECK_FALSE(same->written);
  }
  CHECK(p->counters().writes == 2);  // create + first addVersion
  auto changed = loop.run(p->put_if_changed({"api-key", ""}, secure("k2")));
  REQUIRE(changed);
  CHECK(changed->version == "2");
  CHECK(gcp_latest(g, "api-key") == "k2");
  CHECK(g.get("/v1/projects/proj-1/secrets/api-key/versions").at("versions").as_array().size() == 2);
  CHECK(p->counters().token_requests == 1);

  const std::string binary("\x00\xff\x01", 3);
  REQUIRE(loop.run(p->put_if_changed({"bin", ""}, secure(binary))));
  CHECK(gcp_latest(g, "bin") == binary);
}

TEST_CASE("gcp push: sharded the secret labelled with the writing owner's epoch and a newer one not overwritten") {
  Gcp g;
  Loop loop;
  auto p = make_gcp(loop, g.spec());
  const auto old_owner = sharded("ha-db", 17, 100);
  const auto new_owner = sharded("ha-db", 17, 250);
  const auto label = [&g] {
    return std::string(g.get("/v1/projects/proj-1/secrets/ha-db").at("labels").at("rootseal-epoch").as_string());
  };
  const auto versions = [&g] {
    return g.get("/v1/projects/proj-1/secrets/ha-db/versions").at("versions").as_array().size();
  };

  auto first = loop.run(p->put_if_changed(old_owner, secure("v1")));
  REQUIRE(first);
  CHECK(first->created);
  CHECK(label() == "17-100");  // set at creation
  // The next owner's re-push of the same value: no version, no label write.
  const auto writes_idle = p->counters().writes.load();
  auto same = loop.run(p->put_if_changed(new_owner, secure("v1")));
  REQUIRE(same);
  CHECK_FALSE(same->written);
  CHECK(p->counters().writes == writes_idle);
  CHECK(label() == "17-100");
  auto taken = loop.run(p->put_if_changed(new_owner, secure("v2")));
  REQUIRE(taken);
  CHECK(taken->written);
  CHECK(label() == "17-250");  // labelled before its version is added
  CHECK(versions() == 2);

  const auto writes = p->counters().writes.load();
  auto late = loop.run(p->put_if_changed(old_owner, secure("v1-late")));
  REQUIRE(late);
  CHECK_FALSE(late->written);
  CHECK(late->newer_epoch == 250);
  CHECK(p->counters().writes == writes);
  CHECK(gcp_latest(g, "ha-db") == "v2");
  CHECK(versions() == 2);
  CHECK(label() == "17-250");

  // One host (epoch 0): nothing compared, the label left as it is.
  auto single = loop.run(p->put_if_changed({"ha-db", ""}, secure("v3")));
  REQUIRE(single);
  CHECK(single->written);
  CHECK(label() == "17-250");
}

TEST_CASE("gcp push: unmanaged secrets refused, remove deletes managed ones, bad keys refused") {
  Gcp g;
  REQUIRE(run_command(
              "curl -sf -X POST -H 'Authorization: Bearer reader-token' -d '{\"replication\":{\"automatic\":{}}}' '" +
              g.d->url() + "/v1/projects/proj-1/secrets?secretId=theirs'")
              .status == 0);
  Loop loop;
  auto p = make_gcp(loop, g.spec());
  auto r = loop.run(p->put_if_changed({"theirs", ""}, secure("x")));
  REQUIRE_FALSE(r);
  CHECK(r.error().code == kms::Errc::permission_denied);
  CHECK_FALSE(loop.run(p->remove({"theirs", ""})));
  CHECK(g.get("/v1/projects/proj-1/secrets/theirs/versions").as_object().empty());

  auto e = loop.run(p->ensure_managed("mine"));
  REQUIRE(e);
  CHECK(e->managed);
  REQUIRE(loop.run(p->put_if_changed({"mine", ""}, secure("v"))));
  REQUIRE(loop.run(p->remove({"mine", ""})));
  CHECK(g.get("/v1/projects/proj-1/secrets/mine").at("error").at("code") == 404);

  auto bad_id = loop.run(p->put_if_changed({"has/slash", ""}, secure("x")));
  REQUIRE_FALSE(bad_id);
  CHECK(bad_id.error().code == kms::Errc::invalid_argument);

  Loop loop2;
  auto spec = g.spec();
  spec.service_account_json = secure(R"({"client_email":"x@y","private_key":"not a key"})");
  auto broken = make_gcp(loop2, std::move(spec));
  auto denied = loop2.run(broken->put_if_changed({"mine", ""}, secure("v")));
  REQUIRE_FALSE(denied);
  CHECK(denied.error().code == kms::Errc::invalid_argument);
}

TEST_CASE("azure pull: latest and by version, properties as ESO's Azure provider reads them, refusals") {
  Azure az;
  az.put_unmanaged("db", R"({\"user\":\"alice\",\"a\":{\"b\":\"path\"},\"a.b\":\"literal\"})");
  az.put_unmanaged("db", "second");
  Loop loop;
  auto p = make_azure(loop, az.spec());
  std::shared_ptr<sync::Provider> pull = p;
  CHECK(pull->value_format() == sync::ValueFormat::gjson_path_first);
  auto latest = loop.run(selected(pull, {"db", "", "", sync::DecodingStrategy::none}));
  REQUIRE(latest);
  CHECK(text(*latest) == "second");
  std::string first_version;
  const auto versions = az.get("/secrets/db/versions");  // named: the loop below holds references into it
  for (const auto& v : versions.at("value").as_array()) {
    const std::string id(v.at("id").as_string());
    const std::string version = id.substr(id.rfind('/') + 1);
    const auto got = az.get("/secrets/db/" + version);
    if (got.at("value") != "second") first_version = version;
  }
  REQUIRE_FALSE(first_version.empty());
  auto user = loop.run(selected(pull, {"secret/db", "user", first_version, sync::DecodingStrategy::none}));
  REQUIRE(user);
  CHECK(text(*user) == "alice");
  auto ab = loop.run(selected(pull, {"db", "a.b", first_version, sync::DecodingStrategy::none}));
  REQUIRE(ab);
  CHECK(text(*ab) == "path");  // Azure: the path before the key with dots (AWS and GCP: the key)

  auto missing = loop.run(selected(pull, {"nope", "", "", sync::DecodingStrategy::none}));
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == kms::Errc::not_found);
  auto cert = loop.run(selected(pull, {"cert/tls", "", "", sync::DecodingStrategy::none}));
  REQUIRE_FALSE(cert);
  CHECK(cert.error().code == kms::Errc::not_found);
  auto unknown = loop.run(selected(pull, {"blob/tls", "", "", sync::DecodingStrategy::none}));
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().message == "azure: unknown Azure Keyvault object Type for tls");
  auto bad_version = loop.run(selected(pull, {"db", "", "v1", sync::DecodingStrategy::none}));
  REQUIRE_FALSE(bad_version);
  CHECK(bad_version.error().code == kms::Errc::invalid_argument);
}

TEST_CASE("azure pull: cert/ answers the certificate's DER and key/ the key's JWK as ESO's Azure provider") {
  Azure az;
  // A certificate imported as PEM (with its key) and an RSA key imported as a JWK, through the REST API.
  TempDir dir{"rootseal-azure-cert"};
  const std::string tmp = dir.path().string();
  REQUIRE(run_command("cd " + tmp +
                      " && openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=db-client -keyout k.pem "
                      "-out c.pem 2>/dev/null && openssl x509 -in c.pem -outform DER -out c.der && cat c.pem k.pem "
                      "| python3 -c 'import json,sys; print(json.dumps({\"value\": sys.stdin.read(), "
                      "\"tags\": {\"env\": \"prod\"}}))' > import.json")
              .status == 0);
  REQUIRE(run_command("curl -sf -X POST -H 'Authorization: Bearer reader-token' -H 'Content-Type: application/json' "
                      "-d @" +
                      tmp + "/import.json '" + az.d.url() + "/certificates/db-cert/import?api-version=7.4' > /dev/null")
              .status == 0);
  REQUIRE(run_command("curl -sf -X PUT -H 'Authorization: Bearer reader-token' -H 'Content-Type: application/json' "
                      "-d '{\"key\":{\"kty\":\"RSA\",\"n\":\"uQ\",\"e\":\"AQAB\",\"d\":\"AQ\","
                      "\"key_ops\":[\"sign\",\"verify\"]},\"tags\":{\"team\":\"a<b>\"}}' '" +
                      az.d.url() + "/keys/enc-key?api-version=7.4' > /dev/null")
              .status == 0);
  const auto der = run_command("base64 -w0 " + tmp + "/c.der");
  REQUIRE(der.status == 0);
  const auto key = az.get("/keys/enc-key");
  const std::string kid(key.at("key").at("kid").as_string());
  const std::string version = kid.substr(kid.rfind('/') + 1);
  Loop loop;
  auto p = make_azure(loop, az.spec());
  std::shared_ptr<sync::Provider> pull = p;

  // cert/: the "cer" bytes, whatever the property (ESO returns *certResp.Cer); by version too.
  auto cert = loop.run(selected(pull, {"cert/db-cert", "", "", sync::DecodingStrategy::none}));
  REQUIRE(cert);
  CHECK(kms::base64_encode(cert->span()) == der.out);
  auto cert_property = loop.run(selected(pull, {"cert/db-cert", "anything", "", sync::DecodingStrategy::none}));
  REQUIRE(cert_property);
  CHECK(*cert_property == *cert);
  // key/: the JWK in JSONWebKey's field order, the private part not served by Key Vault; property by gjson.
  const std::string jwk = R"({"kid":")" + kid + R"(","kty":"RSA","key_ops":["sign","verify"],"n":"uQ","e":"AQAB"})";
  auto whole_key = loop.run(selected(pull, {"key/enc-key", "", version, sync::DecodingStrategy::none}));
  REQUIRE(whole_key);
  CHECK(text(*whole_key) == jwk);
  auto e = loop.run(selected(pull, {"key/enc-key", "e", "", sync::DecodingStrategy::none}));
  REQUIRE(e);
  CHECK(text(*e) == "AQAB");
  auto no_property = loop.run(selected(pull, {"key/enc-key", "nope", "", sync::DecodingStrategy::none}));
  REQUIRE_FALSE(no_property);
  CHECK(no_property.error().code == kms::Errc::not_found);
  // metadataPolicy Fetch: the tags and attributes of the certificate or key.
  auto key_meta = loop.run(pull->fetch_metadata({"key/enc-key", ""}));
  REQUIRE(key_meta);
  CHECK(text(*key_meta).find(R"("team":"a\u003cb\u003e")") != std::string::npos);
  auto cert_meta = loop.run(pull->fetch_metadata({"cert/db-cert", ""}));
  REQUIRE(cert_meta);
  CHECK(text(*sync::select_value(cert_meta->clone(), "env", sync::DecodingStrategy::none, pull->metadata_format())) ==
        "prod");
  // dataFrom.extract: refused before any call, with ESO's texts.
  const auto calls = p->counters().calls.load();
  auto extract_cert = loop.run(selected_map(pull, {"cert/db-cert", "", "", sync::DecodingStrategy::none}));
  REQUIRE_FALSE(extract_cert);
  CHECK(extract_cert.error().message == "cannot get use dataFrom to get certificate secret");
  auto extract_key = loop.run(selected_map(pull, {"key/missing", "", "", sync::DecodingStrategy::none}));
  REQUIRE_FALSE(extract_key);
  CHECK(extract_key.error().message == "cannot get use dataFrom to get key secret");
  CHECK(p->counters().calls.load() == calls);
  // Missing objects and versions: not_found (ESO: NoSecretErr).
  auto missing = loop.run(selected(pull, {"key/nope", "", "", sync::DecodingStrategy::none}));
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == kms::Errc::not_found);
  CHECK(missing.error().message == "azure: key \"nope\" not found");
  auto old = loop.run(selected(pull, {"cert/db-cert", "", std::string(32, 'a'), sync::DecodingStrategy::none}));
  REQUIRE_FALSE(old);
  CHECK(old.error().code == kms::Errc::not_found);
}

namespace {

std::vector<std::string> keys_of(const sync::SecretMap& m) {
  std::vector<std::string> out;
  for (const auto& [k, v] : m) out.push_back(k);
  return out;
}

// Go's time.Format(time.RFC3339) of Unix seconds in UTC.
std::string utc(std::int64_t seconds) {
  const auto t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  return std::string(buf, std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm));
}

}  // namespace

TEST_CASE("azure metadataPolicy Fetch: tags and attributes as ESO's, data[] by tag, extract as ESO's GetSecretMap") {
  Azure az;
  // Written through the REST API (curl): tags, one a JSON object of strings, and the expiry and not-before.
  REQUIRE(run_command("curl -sf -X PUT -H 'Authorization: Bearer reader-token' -H 'Content-Type: application/json' "
                      "-d '{\"value\":\"{\\\"user\\\":\\\"alice\\\"}\",\"tags\":{\"env\":\"prod\",\"html\":\"<b>\","
                      "\"owner\":\"{\\\"team\\\":\\\"payments\\\",\\\"oncall\\\":\\\"bob\\\"}\"},"
                      "\"attributes\":{\"exp\":1735689599,\"nbf\":1700000000}}' '" +
                      az.d.url() + "/secrets/db?api-version=7.4'")
              .status == 0);
  const auto attrs = az.get("/secrets/db").at("attributes");
  const std::string created = utc(attrs.at("created").as_int64());
  const std::string updated = utc(attrs.at("updated").as_int64());
  Loop loop;
  auto p = make_azure(loop, az.spec());
  std::shared_ptr<sync::Provider> pull = p;
  CHECK(pull->metadata_format() == sync::ValueFormat::azure_tags);
  auto whole = loop.run(pull->fetch_metadata({"secret/db", ""}));
  REQUIRE(whole);
  // ESO's getSecretAllMetadata through json.Marshal of a map[string]string: keys sorted, HTML escaped.
  CHECK(text(*whole) ==
        R"({"attribute.created":")" + created +
            R"(","attribute.expires":"2024-12-31T23:59:59Z","attribute.notBefore":"2023-11-14T22:13:20Z",)"
            R"("attribute.updated":")" +
            updated +
            R"(","env":"prod","html":"\u003cb\u003e",)"
            R"("owner":"{\"team\":\"payments\",\"oncall\":\"bob\"}"})");
  const auto fmt = pull->metadata_format();
  // data[]: a tag by name, "<tag>.<path>" inside a tag's value, else "tag ... does not exist".
  CHECK(text(*sync::select_value(whole->clone(), "env", sync::DecodingStrategy::none, fmt)) == "prod");
  CHECK(text(*sync::select_value(whole->clone(), "owner.team", sync::DecodingStrategy::none, fmt)) == "payments");
  CHECK(text(*sync::select_value(whole->clone(), "attribute.expires", sync::DecodingStrategy::none, fmt)) ==
        "2024-12-31T23:59:59Z");
  auto nope = sync::select_value(whole->clone(), "nope", sync::DecodingStrategy::none, fmt);
  REQUIRE_FALSE(nope);
  CHECK(nope.error().code == kms::Errc::not_found);
  CHECK(nope.error().message == "tag nope does not exist");
  // dataFrom.extract: every tag as "<name>_<tag>", a JSON object of strings spread, the attributes.
  auto all = sync::metadata_map(whole->clone(), "secret/db", "", fmt);
  REQUIRE(all);
  CHECK(keys_of(*all) == std::vector<std::string>{"db_attribute.created", "db_attribute.expires",
                                                  "db_attribute.notBefore", "db_attribute.updated", "db_env", "db_html",
                                                  "db_owner_oncall", "db_owner_team"});
  CHECK(text(all->at("db_owner_team")) == "payments");
  CHECK(text(all->at("db_html")) == "<b>");
  // With a property: only "<key>_<property>"; a tag that was spread is not found there: empty, as ESO.
  auto env = sync::metadata_map(whole->clone(), "db", "env", fmt);
  REQUIRE(env);
  CHECK(keys_of(*env) == std::vector<std::string>{"db_env"});
  CHECK(text(env->at("db_env")) == "prod");
  auto owner = sync::metadata_map(whole->clone(), "db", "owner", fmt);
  REQUIRE(owner);
  CHECK(text(owner->at("db_owner")).empty());
  // The property must be a tag (ESO's GetSecretMap reads it with GetSecret first).
  auto missing_tag = sync::metadata_map(whole->clone(), "db", "nope", fmt);
  REQUIRE_FALSE(missing_tag);
  CHECK(missing_tag.error().code == kms::Errc::not_found);
  // A missing secret is missing (ESO's Azure provider answers NoSecretErr).
  auto missing = loop.run(pull->fetch_metadata({"nope", ""}));
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == kms::Errc::not_found);
  // Other formats: extract as select_map.
  auto plain = sync::metadata_map(secure(R"({"a":"1"})"), "db", "", sync::ValueFormat::text);
  REQUIRE(plain);
  CHECK(keys_of(*plain) == std::vector<std::string>{"a"});
}

TEST_CASE("gcp pull: latest and numbered versions, CRC32C-checked payloads, missing versions not_found") {
  Gcp g;
  Loop loop;
  auto p = make_gcp(loop, g.spec());
  REQUIRE(loop.run(p->put_if_changed({"api", ""}, secure(R"({"key":"k1","n":1.50})"))));
  REQUIRE(loop.run(p->put_if_changed({"api", ""}, secure("k2"))));
  std::shared_ptr<sync::Provider> pull = p;
  CHECK(pull->value_format() == sync::ValueFormat::text);
  auto latest = loop.run(selected(pull, {"api", "", "", sync::DecodingStrategy::none}));
  REQUIRE(latest);
  CHECK(text(*latest) == "k2");
  auto v1 = loop.run(selected(pull, {"api", "n", "1", sync::DecodingStrategy::none}));
  REQUIRE(v1);
  CHECK(text(*v1) == "1.5");  // gjson: a number that is not an integer through float64
  auto map = loop.run(selected_map(pull, {"api", "", "1", sync::DecodingStrategy::none}));
  REQUIRE(map);
  CHECK(text(map->at("n")) == "1.50");  // extract: RawMessage
  auto nine = loop.run(selected(pull, {"api", "", "9", sync::DecodingStrategy::none}));
  REQUIRE_FALSE(nine);
  CHECK(nine.error().code == kms::Errc::not_found);
  auto bad = loop.run(selected(pull, {"api", "", "newest", sync::DecodingStrategy::none}));
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == kms::Errc::invalid_argument);
}

namespace {

// A GCP secret written through the REST API with curl (an independent client):
// labels, and one version with `value` unless it is empty.
void gcp_put(const Gcp& g, const std::string& id, const std::string& labels, const std::string& value) {
  const std::string base = g.d->url() + "/v1/projects/proj-1/secrets";
  REQUIRE(
      run_command("curl -sf -X POST -H 'Authorization: Bearer reader-token' -d '{\"replication\":{\"automatic\":{}},"
                  "\"labels\":" +
                  labels + "}' '" + base + "?secretId=" + id + "'")
          .status == 0);
  if (value.empty()) return;
  const auto b64 = kms::base64_encode(std::span(reinterpret_cast<const std::uint8_t*>(value.data()), value.size()));
  REQUIRE(run_command("curl -sf -X POST -H 'Authorization: Bearer reader-token' -d '{\"payload\":{\"data\":\"" + b64 +
                      "\"}}' '" + base + "/" + id + ":addVersion'")
              .status == 0);
}

}  // namespace

TEST_CASE("azure find: every page of the list, by name regexp and by tags, disabled secrets skipped, path refused") {
  Azure az;
  // 27 tagged secrets (two pages of 25), a disabled one and one of another team, written with curl.
  const std::string put =
      "curl -sf -o /dev/null -X PUT -H 'Authorization: Bearer reader-token' -H 'Content-Type: application/json' ";
  for (const auto& [first, team] : {std::pair{"0", "a"}, std::pair{"1", "b"}}) {
    REQUIRE(run_command(std::string("for i in $(seq -w ") + first + " 2 26); do " + put +
                        "-d \"{\\\"value\\\":\\\"v-$i\\\",\\\"tags\\\":{\\\"team\\\":\\\"" + team + "\\\"}}\" \"" +
                        az.d.url() + "/secrets/app-$i?api-version=7.4\" || exit 1; done")
                .status == 0);
  }
  REQUIRE(run_command(put + "-d '{\"value\":\"off\",\"attributes\":{\"enabled\":false},\"tags\":{\"team\":\"a\"}}' '" +
                      az.d.url() + "/secrets/app-off?api-version=7.4'")
              .status == 0);
  REQUIRE(run_command(put + "-d '{\"value\":\"o\",\"tags\":{\"team\":\"a\",\"x\":\"y\"}}' '" + az.d.url() +
                      "/secrets/other?api-version=7.4'")
              .status == 0);
  Loop loop;
  auto p = make_azure(loop, az.spec());
  std::shared_ptr<sync::Provider> pull = p;

  sync::FindRequest by_name;
  by_name.name_matches = [](std::string_view n) { return n.starts_with("app-"); };
  auto named = loop.run(pull->find(by_name));
  REQUIRE(named);
  CHECK(named->size() == 27);  // both pages; app-off (disabled) skipped
  CHECK_FALSE(named->contains("app-off"));
  CHECK(text(named->at("app-00")) == "v-00");
  CHECK(text(named->at("app-26")) == "v-26");  // on the second page

  sync::FindRequest by_tags;
  by_tags.tags = {{"team", "a"}};
  auto tagged = loop.run(pull->find(by_tags));
  REQUIRE(tagged);
  CHECK(tagged->size() == 15);  // app-00, 02, ..., 26 and other
  CHECK(tagged->contains("other"));
  CHECK_FALSE(tagged->contains("app-01"));
  by_tags.tags = {{"team", "a"}, {"x", "y"}};
  auto both_tags = loop.run(pull->find(by_tags));
  REQUIRE(both_tags);
  CHECK(keys_of(*both_tags) == std::vector<std::string>{"other"});
  by_tags.name_matches = [](std::string_view n) { return n.starts_with("app-"); };
  auto none = loop.run(pull->find(by_tags));
  REQUIRE(none);
  CHECK(none->empty());

  auto all = loop.run(pull->find(sync::FindRequest{}));  // neither: every enabled secret (ESO's Azure provider)
  REQUIRE(all);
  CHECK(all->size() == 28);

  sync::FindRequest with_path;
  with_path.path = "app";
  auto refused = loop.run(pull->find(with_path));
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == kms::Errc::invalid_argument);
  CHECK(refused.error().message.find("find.path") != std::string::npos);
}

TEST_CASE(
    "gcp metadataPolicy Fetch: annotations and labels as Go marshals them, property selects, missing is not_found") {
  Gcp g;
  gcp_put(g, "meta", R"({"team":"a","env":"prod"})", "v");
  REQUIRE(run_command("curl -sf -o /dev/null -X PATCH -H 'Authorization: Bearer reader-token' -d "
                      "'{\"annotations\":{\"note\":\"<x>\"}}' '" +
                      g.d->url() + "/v1/projects/proj-1/secrets/meta?updateMask=annotations'")
              .status == 0);
  gcp_put(g, "bare", "{}", "v");
  Loop loop;
  auto p = make_gcp(loop, g.spec());
  auto got = loop.run(p->fetch_metadata({"meta", ""}));
  REQUIRE(got);
  CHECK(text(*got) == R"({"annotations":{"note":"\u003cx\u003e"},"labels":{"env":"prod","team":"a"}})");
  auto team = sync::select_value(std::move(*got), "labels.team", sync::DecodingStrategy::none, p->value_format());
  REQUIRE(team);
  CHECK(text(*team) == "a");
  auto bare = loop.run(p->fetch_metadata({"bare", ""}));
  REQUIRE(bare);
  CHECK(text(*bare) == R"({"annotations":null,"labels":null})");  // Go: nil maps
  auto missing = loop.run(p->fetch_metadata({"nope", ""}));
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == kms::Errc::not_found);  // ESO's GCP provider: NoSecretErr
  auto versioned = loop.run(p->fetch_metadata({"meta", "1"}));
  REQUIRE_FALSE(versioned);
  CHECK(versioned.error().code == kms::Errc::invalid_argument);
}

TEST_CASE("gcp push metadata: labels and annotations at creation, patched when they differ, Merge keeps others") {
  Gcp g;
  Loop loop;
  auto p = make_gcp(loop, g.spec());
  sync::PushMetadata md;
  md.labels = {{"team", "a"}};
  md.annotations = {{"owner", "alice@example.com"}};
  sync::PushRef ref{"labelled", "", &md};
  auto first = loop.run(p->put_if_changed(ref, secure("v1")));
  REQUIRE(first);
  CHECK(first->created);
  auto s = g.get("/v1/projects/proj-1/secrets/labelled");
  CHECK(s.at("labels") == json::parse(R"({"managed-by":"rootseal","team":"a"})"));
  CHECK(s.at("annotations") == json::parse(R"({"owner":"alice@example.com"})"));
  CHECK(p->counters().writes == 2);  // create (with the metadata) + addVersion
  for (int i = 0; i < 3; ++i) {
    auto same = loop.run(p->put_if_changed(ref, secure("v1")));
    REQUIRE(same);
    CHECK_FALSE(same->written);
  }
  CHECK(p->counters().writes == 2);

  // Someone adds a label; Replace (the default) removes it, Merge keeps it.
  REQUIRE(run_command("curl -sf -o /dev/null -X PATCH -H 'Authorization: Bearer reader-token' -d "
                      "'{\"labels\":{\"managed-by\":\"rootseal\",\"team\":\"a\",\"extra\":\"x\"}}' '" +
                      g.d->url() + "/v1/projects/proj-1/secrets/labelled?updateMask=labels'")
              .status == 0);
  md.merge_labels = true;
  md.labels = {{"team", "b"}};
  auto merged = loop.run(p->put_if_changed(ref, secure("v1")));
  REQUIRE(merged);
  CHECK(merged->written);  // the PATCH, no new version
  s = g.get("/v1/projects/proj-1/secrets/labelled");
  CHECK(s.at("labels") == json::parse(R"({"managed-by":"rootseal","team":"b","extra":"x"})"));
  CHECK(g.get("/v1/projects/proj-1/secrets/labelled/versions").at("versions").as_array().size() == 1);
  md.merge_labels = false;
  md.annotations.clear();
  auto replaced = loop.run(p->put_if_changed(ref, secure("v2")));
  REQUIRE(replaced);
  CHECK(replaced->written);
  s = g.get("/v1/projects/proj-1/secrets/labelled");
  CHECK(s.at("labels") == json::parse(R"({"managed-by":"rootseal","team":"b"})"));
  const auto* annotations = s.as_object().if_contains("annotations");
  CHECK((annotations == nullptr || annotations->as_object().empty()));
  CHECK(gcp_latest(g, "labelled") == "v2");

  // Without metadata an existing secret's labels are left alone; with a property, metadata is refused.
  auto plain = loop.run(p->put_if_changed({"labelled", ""}, secure("v3")));
  REQUIRE(plain);
  CHECK(plain->written);
  CHECK(g.get("/v1/projects/proj-1/secrets/labelled").at("labels").at("team") == "b");
  auto with_property = loop.run(p->put_if_changed(sync::PushRef{"labelled", "k", &md}, secure("x")));
  REQUIRE_FALSE(with_property);
  CHECK(with_property.error().message == "gcp: cannot specify metadata and property at the same time");
}

TEST_CASE(
    "azure push metadata: tags, contentType and expirationDate written as ESO's provider, rewritten when they change") {
  Azure az;
  Loop loop;
  auto p = make_azure(loop, az.spec());
  sync::PushMetadata md;
  md.tags = {{"team", "a"}};
  md.content_type = "application/json";
  md.expires = 1893549845;
  sync::PushRef ref{"with-md", "", &md};
  auto first = loop.run(p->put_if_changed(ref, secure("v1")));
  REQUIRE(first);
  CHECK(first->written);
  auto got = az.get("/secrets/with-md");
  CHECK(got.at("tags") == json::parse(R"({"managed-by":"rootseal","team":"a"})"));
  CHECK(got.at("contentType") == "application/json");
  CHECK(got.at("attributes").at("exp") == 1893549845);

  for (int i = 0; i < 3; ++i) {  // idle refreshes: nothing written
    auto same = loop.run(p->put_if_changed(ref, secure("v1")));
    REQUIRE(same);
    CHECK_FALSE(same->written);
  }
  CHECK(p->counters().writes == 1);

  md.tags = {{"team", "b"}};  // a tag change alone is written (a new version)
  auto retagged = loop.run(p->put_if_changed(ref, secure("v1")));
  REQUIRE(retagged);
  CHECK(retagged->written);
  CHECK(az.get("/secrets/with-md").at("tags") == json::parse(R"({"managed-by":"rootseal","team":"b"})"));
  md.expires.reset();  // the expiry removed: written without exp, as ESO
  REQUIRE(loop.run(p->put_if_changed(ref, secure("v1")))->written);
  CHECK_FALSE(az.get("/secrets/with-md").at("attributes").as_object().contains("exp"));
  md.content_type = "text/x";
  REQUIRE(loop.run(p->put_if_changed(ref, secure("v1")))->written);
  CHECK(az.get("/secrets/with-md").at("contentType") == "text/x");

  // Without metadata: a new value keeps the secret's contentType; the user's tags go (ESO's PUT).
  auto plain = loop.run(p->put_if_changed({"with-md", ""}, secure("v2")));
  REQUIRE(plain);
  CHECK(plain->written);
  got = az.get("/secrets/with-md");
  CHECK(got.at("value") == "v2");
  CHECK(got.at("contentType") == "text/x");
  CHECK(got.at("tags") == json::parse(R"({"managed-by":"rootseal"})"));
}

TEST_CASE("gcp find: every page of ListSecrets, by name regexp with path, by labels, refusals") {
  Gcp g({"--page-limit", "2"});
  gcp_put(g, "db-a", R"({"env":"prod"})", "va");
  gcp_put(g, "db-b", R"({"env":"prod","tier":"x"})", "vb");
  gcp_put(g, "db-c", R"({"env":"dev"})", "vc");
  gcp_put(g, "team-db", R"({"env":"prod"})", "vt");
  gcp_put(g, "db-empty", R"({"env":"staging"})", "");
  Loop loop;
  auto p = make_gcp(loop, g.spec());
  std::shared_ptr<sync::Provider> pull = p;

  sync::FindRequest by_name;
  by_name.name_matches = [](std::string_view n) { return n.find("db") != std::string_view::npos && n != "db-empty"; };
  auto named = loop.run(pull->find(by_name));
  REQUIRE(named);
  CHECK(keys_of(*named) == std::vector<std::string>{"db-a", "db-b", "db-c", "team-db"});  // three pages of two
  CHECK(text(named->at("db-b")) == "vb");
  by_name.path = "db-";
  auto prefixed = loop.run(pull->find(by_name));
  REQUIRE(prefixed);
  CHECK(keys_of(*prefixed) == std::vector<std::string>{"db-a", "db-b", "db-c"});  // team-db: not a prefix

  sync::FindRequest by_labels;
  by_labels.tags = {{"env", "prod"}};
  auto labelled = loop.run(pull->find(by_labels));
  REQUIRE(labelled);
  CHECK(keys_of(*labelled) == std::vector<std::string>{"db-a", "db-b", "team-db"});
  CHECK(text(labelled->at("team-db")) == "vt");
  by_labels.tags = {{"env", "prod"}, {"tier", "x"}};
  auto two = loop.run(pull->find(by_labels));
  REQUIRE(two);
  CHECK(keys_of(*two) == std::vector<std::string>{"db-b"});
  by_labels.tags = {{"env", "prod"}};
  by_labels.path = "team";
  auto in_path = loop.run(pull->find(by_labels));
  REQUIRE(in_path);
  CHECK(keys_of(*in_path) == std::vector<std::string>{"team-db"});
  by_labels.path = "db";  // the filter name:db also matches team-db; the path is a prefix (ESO)
  auto prefix_only = loop.run(pull->find(by_labels));
  REQUIRE(prefix_only);
  CHECK(keys_of(*prefix_only) == std::vector<std::string>{"db-a", "db-b"});

  sync::FindRequest staging;
  staging.tags = {{"env", "staging"}};
  auto no_version = loop.run(pull->find(staging));
  REQUIRE_FALSE(no_version);
  CHECK(no_version.error().code == kms::Errc::not_found);

  auto neither = loop.run(pull->find(sync::FindRequest{}));
  REQUIRE_FALSE(neither);
  CHECK(neither.error().code == kms::Errc::invalid_argument);
  CHECK(neither.error().message == "gcp: unexpected find operator");
  sync::FindRequest both;
  both.name_matches = [](std::string_view) { return true; };
  both.tags = {{"env", "prod"}};
  auto refused = loop.run(pull->find(both));
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == kms::Errc::invalid_argument);
}

namespace {

std::map<std::string, std::string> cli_tags(const json::value& describe) {
  std::map<std::string, std::string> out;
  if (const auto* tags = describe.as_object().if_contains("Tags")) {
    for (const auto& t : tags->as_array())
      out[std::string(t.at("Key").as_string())] = std::string(t.at("Value").as_string());
  }
  return out;
}

std::string cli_string(const json::value& v, std::string_view key) {
  const auto* f = v.as_object().if_contains(key);
  return f != nullptr && f->is_string() ? std::string(f->as_string()) : std::string();
}

}  // namespace

TEST_CASE(
    "aws push metadata: tags, description, KMS key and secretPushFormat string at creation, read with the aws CLI") {
  Moto moto;
  Loop loop;
  auto p = make(loop, moto_spec(moto));
  sync::PushMetadata md;
  md.tags = {{"secret-store", "teamb"}, {"refresh-interval", "1h"}};
  md.description = "secret 'managed-by:secret-manager'";
  md.kms_key_id = "alias/custom";
  md.push_as_string = true;
  sync::PushRef ref{"teamb/param", "", &md};
  auto first = loop.run(p->put_if_changed(ref, secure("s3cret")));
  REQUIRE(first);
  CHECK(first->created);
  const auto d = aws_json(moto, "secretsmanager describe-secret --secret-id teamb/param");
  CHECK(cli_tags(d) == std::map<std::string, std::string>{
                           {"managed-by", "rootseal"}, {"refresh-interval", "1h"}, {"secret-store", "teamb"}});
  CHECK(cli_string(d, "Description") == "secret 'managed-by:secret-manager'");
  CHECK(cli_string(d, "KmsKeyId") == "alias/custom");
  CHECK(cli_field(moto, "teamb/param") == "SecretString");
  CHECK(cli_value(moto, "teamb/param") == "s3cret");

  // Unchanged value and metadata: no write at all.
  const auto writes = p->counters().writes.load();
  auto same = loop.run(p->put_if_changed(ref, secure("s3cret")));
  REQUIRE(same);
  CHECK_FALSE(same->written);
  CHECK(p->counters().writes == writes);

  // A string value with secretPushFormat string that is not UTF-8: refused, nothing written.
  auto bad = loop.run(p->put_if_changed(ref, secure(std::string("\xff\xfe", 2))));
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == kms::Errc::invalid_argument);
  CHECK(cli_value(moto, "teamb/param") == "s3cret");
  CHECK(p->counters().writes == writes);
}

TEST_CASE(
    "aws push metadata: on update tags are patched as ESO does, description and KMS key updated, value format kept") {
  Moto moto;
  Loop loop;
  auto p = make(loop, moto_spec(moto));
  sync::PushMetadata md;
  md.tags = {{"team", "a"}, {"env", "prod"}};
  sync::PushRef ref{"app/db", "", &md};
  REQUIRE(loop.run(p->put_if_changed(ref, secure("v1"))));
  CHECK(cli_field(moto, "app/db") == "SecretBinary");  // no secretPushFormat: binary
  CHECK(cli_string(aws_json(moto, "secretsmanager describe-secret --secret-id app/db"), "Description") ==
        "managed by rootseal");
  // Someone adds a tag of their own: ESO's patch removes every tag the metadata does not name (managed-by stays).
  REQUIRE(moto.aws("secretsmanager tag-resource --secret-id app/db --tags Key=other,Value=x").status == 0);
  md.tags = {{"team", "b"}, {"new", "y"}};
  md.description = "the db";
  md.kms_key_id = "alias/next";
  auto up = loop.run(p->put_if_changed(ref, secure("v1")));
  INFO((up ? std::string() : up.error().message));
  REQUIRE(up);
  CHECK(up->written);  // metadata changed, the value did not
  CHECK_FALSE(up->created);
  CHECK(cli_versions(moto, "app/db") == 1);
  auto d = aws_json(moto, "secretsmanager describe-secret --secret-id app/db");
  CHECK(cli_tags(d) == std::map<std::string, std::string>{{"managed-by", "rootseal"}, {"new", "y"}, {"team", "b"}});
  CHECK(cli_string(d, "Description") == "the db");
  CHECK(cli_string(d, "KmsKeyId") == "alias/next");
  // Again: nothing to do, no write.
  const auto writes = p->counters().writes.load();
  auto same = loop.run(p->put_if_changed(ref, secure("v1")));
  REQUIRE(same);
  CHECK_FALSE(same->written);
  CHECK(p->counters().writes == writes);
  // updatePolicy IfNotExists on an existing secret: neither the value nor the metadata is touched (ESO skips it).
  sync::PushMetadata other;
  other.tags = {{"team", "c"}};
  other.description = "not applied";
  const sync::PushRef skip{"app/db", "", &other};
  const auto before_skip = p->counters().writes.load();
  auto skipped = loop.run(p->put_if_changed(skip, secure("ignored"), /*if_not_exists=*/true));
  REQUIRE(skipped);
  CHECK_FALSE(skipped->written);
  CHECK(p->counters().writes == before_skip);
  CHECK(cli_string(aws_json(moto, "secretsmanager describe-secret --secret-id app/db"), "Description") == "the db");
  // Metadata without tags leaves the tags alone (ESO patches tags only when the metadata has some).
  sync::PushMetadata no_tags;
  sync::PushRef plain{"app/db", "", &no_tags};
  REQUIRE(loop.run(p->put_if_changed(plain, secure("v2"))));
  d = aws_json(moto, "secretsmanager describe-secret --secret-id app/db");
  CHECK(cli_tags(d) == std::map<std::string, std::string>{{"managed-by", "rootseal"}, {"new", "y"}, {"team", "b"}});
  CHECK(cli_value(moto, "app/db") == "v2");
  CHECK(cli_field(moto, "app/db") == "SecretBinary");
  // secretPushFormat string on the next value.
  no_tags.push_as_string = true;
  REQUIRE(loop.run(p->put_if_changed(plain, secure("v3"))));
  CHECK(cli_field(moto, "app/db") == "SecretString");
  CHECK(cli_value(moto, "app/db") == "v3");
}

TEST_CASE("aws push metadata: the resource policy is put, left when equal, removed when the metadata has none") {
  Moto moto;
  Loop loop;
  auto p = make(loop, moto_spec(moto));
  const std::string policy =
      R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]})";
  sync::PushMetadata md;
  md.resource_policy = sync::PushMetadata::ResourcePolicy{true, policy};
  sync::PushRef ref{"app/pol", "", &md};
  REQUIRE(loop.run(p->put_if_changed(ref, secure("v"))));
  auto got = aws_json(moto, "secretsmanager get-resource-policy --secret-id app/pol");
  REQUIRE(got.as_object().contains("ResourcePolicy"));
  CHECK(json::parse(got.at("ResourcePolicy").as_string()) == json::parse(policy));
  const auto writes = p->counters().writes.load();
  auto same = loop.run(p->put_if_changed(ref, secure("v")));
  REQUIRE(same);
  CHECK_FALSE(same->written);
  CHECK(p->counters().writes == writes);
  sync::PushMetadata none;
  sync::PushRef without{"app/pol", "", &none};
  auto removed = loop.run(p->put_if_changed(without, secure("v")));
  REQUIRE(removed);
  CHECK(removed->written);
  got = aws_json(moto, "secretsmanager get-resource-policy --secret-id app/pol");
  CHECK(cli_string(got, "ResourcePolicy").empty());
  // Without any metadata the policy is not looked at (no call beyond the value's).
  const auto calls = p->counters().calls.load();
  REQUIRE(loop.run(p->put_if_changed({"app/pol", ""}, secure("v"))));
  CHECK(p->counters().calls == calls + 2);  // DescribeSecret, GetSecretValue
}

TEST_CASE("aws metadataPolicy Fetch: the tags as Go's JSON map, a missing secret is no not_found") {
  Moto moto;
  aws_json(moto,
           "secretsmanager create-secret --name tagged --secret-string v "
           "--tags Key=team,Value=a Key=html,Value='<b>&' Key=env,Value=prod");
  aws_json(moto, "secretsmanager create-secret --name bare --secret-string v");
  Loop loop;
  auto p = make(loop, moto_spec(moto));
  auto got = loop.run(p->fetch_metadata({"tagged", ""}));
  REQUIRE(got);
  CHECK(text(*got) == R"({"env":"prod","html":"\u003cb\u003e\u0026","team":"a"})");
  auto bare = loop.run(p->fetch_metadata({"bare", ""}));
  REQUIRE(bare);
  CHECK(text(*bare) == "{}");
  auto missing = loop.run(p->fetch_metadata({"nope", ""}));
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == kms::Errc::unavailable);
  CHECK(missing.error().message.find("ResourceNotFoundException") != std::string::npos);
}
