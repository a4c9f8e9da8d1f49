// The Vault KV v2 provider against tests/doubles/vault_kv (checked against hvac
// by its own tests): token and AppRole auth, one login reused and renewed,
// re-login on 403 or failed renewal, namespaces, versions, properties, decoding.
#include <catch2/catch.hpp>

#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include "process_util.hpp"
#include "provider_test_util.hpp"
#include "providers/vault/vault_kv2.hpp"

using namespace rootseal;
using namespace rootseal::test;
namespace json = boost::json;

namespace {

void vault_put(const PyDouble& v, const std::string& path, const std::string& data_json, const std::string& ns = "") {
  const auto r = run_command("curl -sf -X POST -H 'X-Vault-Token: root' " +
                             (ns.empty() ? std::string() : "-H 'X-Vault-Namespace: " + ns + "' ") +
                             "-d '{\"data\":" + data_json + "}' " + v.url() + "/v1/secret/data/" + path);
  REQUIRE(r.status == 0);
}

json::value admin(const PyDouble& v, const std::string& method, const std::string& path,
                  const std::string& body = "{}") {
  const auto r = run_command("curl -sf -X " + method + " -d '" + body + "' " + v.url() + "/_double/" + path);
  REQUIRE(r.status == 0);
  return json::parse(r.out);
}

sync::VaultSpec token_spec(const PyDouble& v, std::string token = "root") {
  sync::VaultSpec s;
  s.server = v.url();
  s.token = secure(token);
  return s;
}

std::shared_ptr<sync::providers::VaultKv2Provider> make(Loop& loop, sync::VaultSpec spec) {
  auto p = sync::providers::make_vault_provider(loop.io.get_executor(), std::move(spec));
  REQUIRE(p);
  return *p;
}

sync::RemoteRef ref(std::string key, std::string property = "", std::string version = "",
                    sync::DecodingStrategy d = sync::DecodingStrategy::none) {
  return {std::move(key), std::move(property), std::move(version), d};
}

}  // namespace

TEST_CASE("vault provider: token auth reads whole values, properties, nested properties, versions") {
  PyDouble vault("vault_kv");
  vault_put(
      vault, "team/app",
      R"({"user":"alice","pass":"s3cret","cfg":{"db":{"host":"db1"}},"a.b":"literal","b64":"aGVsbG8gd29ybGQ=","url":"aGk_Pz4-"})");
  vault_put(
      vault, "team/app",
      R"({"user":"bob","pass":"rotated","cfg":{"db":{"host":"db2"}},"a.b":"literal","b64":"aGVsbG8gd29ybGQ=","url":"aGk_Pz4-"})");
  Loop loop;
  auto p = make(loop, token_spec(vault));

  auto whole = loop.run(selected(p, ref("team/app")));
  REQUIRE(whole);
  auto doc = json::parse(text(*whole));
  CHECK(doc.at("user") == "bob");
  CHECK(doc.at("cfg").at("db").at("host") == "db2");

  auto user = loop.run(selected(p, ref("team/app", "user")));
  REQUIRE(user);
  CHECK(text(*user) == "bob");
  auto v1 = loop.run(selected(p, ref("team/app", "pass", "1")));
  REQUIRE(v1);
  CHECK(text(*v1) == "s3cret");
  auto nested = loop.run(selected(p, ref("team/app", "cfg.db.host")));
  REQUIRE(nested);
  CHECK(text(*nested) == "db2");
  auto object = loop.run(selected(p, ref("team/app", "cfg")));
  REQUIRE(object);
  CHECK(json::parse(text(*object)) == json::parse(R"({"db":{"host":"db2"}})"));
  auto literal = loop.run(selected(p, ref("/team/app", "a.b")));
  REQUIRE(literal);
  CHECK(text(*literal) == "literal");
  auto b64 = loop.run(selected(p, ref("team/app", "b64", "", sync::DecodingStrategy::base64)));
  REQUIRE(b64);
  CHECK(text(*b64) == "hello world");
  auto b64url = loop.run(selected(p, ref("team/app", "url", "", sync::DecodingStrategy::base64url)));
  REQUIRE(b64url);
  CHECK(text(*b64url) == "hi?\?>>");
  auto autod = loop.run(selected(p, ref("team/app", "user", "", sync::DecodingStrategy::auto_detect)));
  REQUIRE(autod);
  CHECK(text(*autod) == "bob");  // "bob" is not base64 (length 3): left as is
  auto bad = loop.run(selected(p, ref("team/app", "user", "", sync::DecodingStrategy::base64)));
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == kms::Errc::bad_base64);

  auto all = loop.run(selected_map(p, ref("team/app")));
  REQUIRE(all);
  CHECK(all->size() == 6);
  CHECK(text(all->at("pass")) == "rotated");
  CHECK(json::parse(text(all->at("cfg"))) == json::parse(R"({"db":{"host":"db2"}})"));
  auto sub = loop.run(selected_map(p, ref("team/app", "cfg.db")));
  REQUIRE(sub);
  CHECK(sub->size() == 1);
  CHECK(text(sub->at("host")) == "db2");

  // One token lookup for all of the above: the token is reused, not re-checked per fetch.
  CHECK(p->counters().lookups == 1);
  CHECK(p->counters().logins == 0);
}

TEST_CASE("vault provider: missing secrets, versions and properties are not_found, bad refs invalid_argument") {
  PyDouble vault("vault_kv");
  vault_put(vault, "app", R"({"k":"v"})");
  Loop loop;
  auto p = make(loop, token_spec(vault));
  auto missing = loop.run(selected(p, ref("nope")));
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == kms::Errc::not_found);
  auto no_version = loop.run(selected(p, ref("app", "", "7")));
  REQUIRE_FALSE(no_version);
  CHECK(no_version.error().code == kms::Errc::not_found);
  auto no_prop = loop.run(selected(p, ref("app", "other")));
  REQUIRE_FALSE(no_prop);
  CHECK(no_prop.error().code == kms::Errc::not_found);
  auto bad_version = loop.run(selected(p, ref("app", "", "latest")));
  REQUIRE_FALSE(bad_version);
  CHECK(bad_version.error().code == kms::Errc::invalid_argument);
  auto traversal = loop.run(selected(p, ref("../sys/seal")));
  REQUIRE_FALSE(traversal);
  CHECK(traversal.error().code == kms::Errc::invalid_argument);
}

TEST_CASE("vault provider: a bad token is permission_denied and the message carries no token") {
  PyDouble vault("vault_kv");
  Loop loop;
  auto p = make(loop, token_spec(vault, "s.not-a-real-token"));
  auto r = loop.run(selected(p, ref("app")));
  REQUIRE_FALSE(r);
  CHECK(r.error().code == kms::Errc::permission_denied);
  CHECK(r.error().message.find("s.not-a-real-token") == std::string::npos);
  auto v = loop.run(p->validate());
  CHECK_FALSE(v);
}

TEST_CASE("vault provider: AppRole logs in once for many concurrent fetches and renews before expiry") {
  PyDouble vault("vault_kv");
  vault_put(vault, "app", R"({"k":"v"})");
  const auto role = admin(vault, "POST", "approle", R"({"name":"sync","token_ttl":2,"token_max_ttl":3600})");
  sync::VaultSpec spec;
  spec.server = vault.url();
  spec.role_id = std::string(role.at("role_id").as_string());
  spec.secret_id = secure(std::string(role.at("secret_id").as_string()));
  Loop loop;
  auto p = make(loop, std::move(spec));

  // The coroutines hold the RemoteRef by reference: it must outlive them.
  const auto shared_ref = ref("app", "k");
  std::vector<std::future<kms::Result<kms::SecureBytes>>> futures;
  for (int i = 0; i < 20; ++i)
    futures.push_back(boost::asio::co_spawn(loop.io, selected(p, shared_ref), boost::asio::use_future));
  for (auto& f : futures) {
    auto r = f.get();
    REQUIRE(r);
    CHECK(text(*r) == "v");
  }
  CHECK(p->counters().logins == 1);
  CHECK(admin(vault, "GET", "state").at("logins") == 1);

  // The token lives 2 s; fetches past half of it renew (renew-self), never log in again.
  REQUIRE(wait_until(
      [&] {
        auto r = loop.run(selected(p, ref("app", "k")));
        return r && p->counters().renewals >= 2;
      },
      std::chrono::seconds(10)));
  CHECK(p->counters().logins == 1);
  CHECK(admin(vault, "GET", "state").at("renewals").as_int64() >= 2);
  CHECK(admin(vault, "GET", "state").at("logins") == 1);
}

TEST_CASE("vault provider: AppRole logs in again after a 403 or a failed renewal, not otherwise") {
  PyDouble vault("vault_kv");
  vault_put(vault, "app", R"({"k":"v"})");
  const auto role = admin(vault, "POST", "approle", R"({"name":"sync","token_ttl":2,"token_max_ttl":3600})");
  sync::VaultSpec spec;
  spec.server = vault.url();
  spec.role_id = std::string(role.at("role_id").as_string());
  spec.secret_id = secure(std::string(role.at("secret_id").as_string()));
  Loop loop;
  auto p = make(loop, std::move(spec));
  REQUIRE(loop.run(selected(p, ref("app", "k"))));
  CHECK(p->counters().logins == 1);

  // A 403 on the read (token revoked behind our back): one fresh login, then success.
  admin(vault, "POST", "faults", R"({"status":403,"count":1,"method":"GET","path":"/v1/secret/data/app"})");
  auto r = loop.run(selected(p, ref("app", "k")));
  REQUIRE(r);
  CHECK(text(*r) == "v");
  CHECK(p->counters().logins == 2);

  // Renewal refused: the provider logs in afresh instead of failing.
  admin(vault, "POST", "faults", R"({"status":403,"count":10,"path":"renew-self"})");
  REQUIRE(wait_until(
      [&] {
        auto x = loop.run(selected(p, ref("app", "k")));
        return x && p->counters().logins >= 3;
      },
      std::chrono::seconds(10)));
  CHECK(p->counters().renewals >= 1);
}

TEST_CASE("vault provider: X-Vault-Namespace selects the namespace") {
  PyDouble vault("vault_kv");
  vault_put(vault, "app", R"({"k":"in-ns"})", "team-a");
  vault_put(vault, "app", R"({"k":"root-ns"})");
  Loop loop;
  auto spec = token_spec(vault);
  spec.namespace_ = "team-a";
  auto ns = make(loop, std::move(spec));
  auto root = make(loop, token_spec(vault));
  auto a = loop.run(selected(ns, ref("app", "k")));
  REQUIRE(a);
  CHECK(text(*a) == "in-ns");
  auto b = loop.run(selected(root, ref("app", "k")));
  REQUIRE(b);
  CHECK(text(*b) == "root-ns");
}

TEST_CASE("vault provider: Vault down is unavailable, and it recovers when Vault is back") {
  PyDouble vault("vault_kv");
  vault_put(vault, "app", R"({"k":"v"})");
  Loop loop;
  auto p = make(loop, token_spec(vault));
  REQUIRE(loop.run(selected(p, ref("app", "k"))));
  admin(vault, "POST", "down", R"({"mode":"503"})");
  auto down = loop.run(selected(p, ref("app", "k")));
  REQUIRE_FALSE(down);
  CHECK(down.error().code == kms::Errc::unavailable);
  // The store is backed off now: calls are refused locally until its next
  // probe (at most store_backoff max, 10 s), which finds Vault back.
  admin(vault, "POST", "up");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  auto up = loop.run(selected(p, ref("app", "k")));
  while (!up && std::chrono::steady_clock::now() < deadline) {
    CHECK(up.error().message.find("backing off") != std::string::npos);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // poll interval
    up = loop.run(selected(p, ref("app", "k")));
  }
  REQUIRE(up);
  CHECK(text(*up) == "v");
}

TEST_CASE("vault provider: bad specs are refused") {
  Loop loop;
  sync::VaultSpec none;
  none.server = "http://127.0.0.1:1";
  CHECK_FALSE(sync::providers::make_vault_provider(loop.io.get_executor(), std::move(none)));
  sync::VaultSpec v1;
  v1.server = "http://127.0.0.1:1";
  v1.version = "v3";
  v1.token = secure("t");
  auto r = sync::providers::make_vault_provider(loop.io.get_executor(), std::move(v1));
  REQUIRE_FALSE(r);
  CHECK(r.error().message == "vault: KV version must be v2 or v1");
}

TEST_CASE(
    "vault provider: dataFrom.find lists below the path, matches names or custom metadata, skips deleted versions") {
  PyDouble vault("vault_kv");
  vault_put(vault, "team/app/db", R"({"user":"alice","port":5432})");
  vault_put(vault, "team/app/cache", R"({"pw":"c"})");
  vault_put(vault, "team/web", R"({"pw":"w"})");
  vault_put(vault, "other/db", R"({"pw":"o"})");
  vault_put(vault, "team/gone", R"({"pw":"g"})");
  REQUIRE(
      run_command("curl -sf -X DELETE -H 'X-Vault-Token: root' " + vault.url() + "/v1/secret/data/team/gone").status ==
      0);
  REQUIRE(run_command("curl -sf -X POST -H 'X-Vault-Token: root' -d '{\"custom_metadata\":{\"owner\":\"a\"}}' " +
                      vault.url() + "/v1/secret/metadata/team/web")
              .status == 0);
  REQUIRE(run_command("curl -sf -X POST -H 'X-Vault-Token: root' -d '{\"custom_metadata\":{\"owner\":\"a\"}}' " +
                      vault.url() + "/v1/secret/metadata/team/app/db")
              .status == 0);
  Loop loop;
  auto p = make(loop, token_spec(vault));
  const auto names = [](const sync::SecretMap& m) {
    std::vector<std::string> out;
    for (const auto& [k, v] : m) out.push_back(k);
    return out;
  };

  sync::FindRequest all_team;
  all_team.path = "team";
  auto r = loop.run(p->find(all_team));  // no name, no tags: everything below the path
  REQUIRE(r);
  CHECK(names(*r) == std::vector<std::string>{"team/app/cache", "team/app/db", "team/web"});
  CHECK(text(r->at("team/app/db")) == R"({"port":5432,"user":"alice"})");

  sync::FindRequest by_name;
  by_name.name_matches = [](std::string_view n) { return n.find("db") != std::string_view::npos; };
  r = loop.run(p->find(by_name));
  REQUIRE(r);
  CHECK(names(*r) == std::vector<std::string>{"other/db", "team/app/db"});

  sync::FindRequest by_tags;
  by_tags.tags = {{"owner", "a"}};
  r = loop.run(p->find(by_tags));
  REQUIRE(r);
  CHECK(names(*r) == std::vector<std::string>{"team/app/db", "team/web"});

  sync::FindRequest nowhere;
  nowhere.path = "nothing/here";
  auto none = loop.run(p->find(nowhere));
  REQUIRE_FALSE(none);
  CHECK(none.error().code == kms::Errc::not_found);
}

TEST_CASE("vault provider: metadataPolicy Fetch reads system metadata and custom_metadata as Go's JSON map") {
  PyDouble vault("vault_kv");
  vault_put(vault, "team/app", R"({"pw":"x"})");
  vault_put(vault, "team/app", R"({"pw":"y"})");
  REQUIRE(run_command("curl -sf -X POST -H 'X-Vault-Token: root' -d "
                      "'{\"custom_metadata\":{\"owner\":\"a<b>&c\",\"created_time\":\"custom\"}}' " +
                      vault.url() + "/v1/secret/metadata/team/app")
              .status == 0);
  // What Vault holds, read with curl: the expected map is built from it.
  const auto md = run_command("curl -sf -H 'X-Vault-Token: root' " + vault.url() + "/v1/secret/metadata/team/app");
  REQUIRE(md.status == 0);
  const auto data = json::parse(md.out).at("data");
  const std::string current = json::serialize(data.at("current_version"));
  CHECK(current == "2");
  std::string expected = R"({"created_time":"custom","current_version":")" + current + "\"";
  if (const auto* d = data.as_object().if_contains("delete_version_after"); d && !d->is_null()) {
    expected += R"(,"delete_version_after":)" + json::serialize(*d);
  }
  expected += R"(,"owner":"a\u003cb\u003e\u0026c"})";
  Loop loop;
  auto p = make(loop, token_spec(vault));
  auto got = loop.run(p->fetch_metadata({"team/app", ""}));
  REQUIRE(got);
  CHECK(text(*got) == expected);
  // The value itself is untouched by it.
  auto value = loop.run(p->fetch({"team/app", ""}));
  REQUIRE(value);
  CHECK(text(*value) == R"({"pw":"y"})");
  // A missing secret is ESO's plain error, never not_found (no deletion policy is run on it).
  auto missing = loop.run(p->fetch_metadata({"team/none", ""}));
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == kms::Errc::unavailable);
  CHECK(missing.error().message == "vault: secret \"team/none\" not found (metadata)");
}

namespace {

// GET /v1/secret/<what>/<path> with the root token: the answer's data (null when Vault answers 404).
json::value vault_get(const PyDouble& v, const std::string& what, const std::string& path) {
  const auto r = run_command("curl -s -w '\\n%{http_code}' -H 'X-Vault-Token: root' " + v.url() + "/v1/secret/" + what +
                             "/" + path);
  REQUIRE(r.status == 0);
  const auto nl = r.out.rfind('\n');
  if (r.out.substr(nl + 1) == "404") return nullptr;
  REQUIRE(r.out.substr(nl + 1) == "200");
  return json::parse(r.out.substr(0, nl)).at("data");
}

sync::PushRef push_ref(std::string key, std::string property = "") {
  return sync::PushRef{std::move(key), std::move(property)};
}

}  // namespace

TEST_CASE("vault push: a new secret gets ESO's marker and its data map and an unchanged value writes nothing") {
  PyDouble vault("vault_kv");
  Loop loop;
  auto p = make(loop, token_spec(vault));
  const json::value marker = json::parse(R"({"managed-by":"external-secrets"})");

  // A key holding a JSON object, no property (ESO's vault-pushsecret.yaml source-key1).
  auto out = loop.run(p->put_if_changed(push_ref("vault/secret1"), secure(R"({"foo":"bar"})")));
  REQUIRE(out);
  CHECK(out->written);
  CHECK(out->created);
  CHECK(vault_get(vault, "data", "vault/secret1").at("data") == json::parse(R"({"foo":"bar"})"));
  CHECK(vault_get(vault, "metadata", "vault/secret1").at("custom_metadata") == marker);
  CHECK(p->counters().writes == 2);  // metadata/ then data/
  out = loop.run(p->put_if_changed(push_ref("vault/secret1"), secure(R"({ "foo" : "bar" })")));
  REQUIRE(out);
  CHECK_FALSE(out->written);  // the same map: nothing written
  CHECK(p->counters().writes == 2);
  CHECK(vault_get(vault, "metadata", "vault/secret1").at("current_version") == 1);

  // A plain string into a property (source-key2 -> property foo), then the same again, then a change.
  out = loop.run(p->put_if_changed(push_ref("vault/secret2", "foo"), secure("bar")));
  REQUIRE(out);
  CHECK(out->created);
  CHECK(vault_get(vault, "data", "vault/secret2").at("data") == json::parse(R"({"foo":"bar"})"));
  CHECK(vault_get(vault, "metadata", "vault/secret2").at("custom_metadata") == marker);
  out = loop.run(p->put_if_changed(push_ref("vault/secret2", "foo"), secure("bar")));
  REQUIRE(out);
  CHECK_FALSE(out->written);
  CHECK(p->counters().writes == 4);
  out = loop.run(p->put_if_changed(push_ref("vault/secret2", "other"), secure("x<y")));
  REQUIRE(out);
  CHECK(out->written);
  CHECK_FALSE(out->created);
  CHECK(vault_get(vault, "data", "vault/secret2").at("data") == json::parse(R"({"foo":"bar","other":"x<y"})"));
  CHECK(vault_get(vault, "metadata", "vault/secret2").at("current_version") == 2);

  // The whole value replaces the map; its numbers as Go's float64 (json.Unmarshal into a map).
  out = loop.run(p->put_if_changed(push_ref("vault/secret2"), secure(R"({"n":12345678901234567890,"s":"t"})")));
  REQUIRE(out);
  CHECK(out->written);
  const auto raw = run_command("curl -s -H 'X-Vault-Token: root' " + vault.url() + "/v1/secret/data/vault/secret2");
  CHECK(raw.out.find("12345678901234567000") != std::string::npos);
  // A number stored is never equal to a pushed one (json.Number against float64): written again.
  out = loop.run(p->put_if_changed(push_ref("vault/secret2"), secure(R"({"n":12345678901234567000,"s":"t"})")));
  REQUIRE(out);
  CHECK(out->written);

  // updatePolicy IfNotExists: an existing secret (or property) is left alone, a missing property is pushed.
  out = loop.run(p->put_if_changed(push_ref("vault/secret1"), secure(R"({"foo":"new"})"), true));
  REQUIRE(out);
  CHECK_FALSE(out->written);
  out = loop.run(p->put_if_changed(push_ref("vault/secret1", "foo"), secure("new"), true));
  REQUIRE(out);
  CHECK_FALSE(out->written);
  out = loop.run(p->put_if_changed(push_ref("vault/secret1", "added"), secure("v"), true));
  REQUIRE(out);
  CHECK(out->written);
  CHECK(vault_get(vault, "data", "vault/secret1").at("data") == json::parse(R"({"foo":"bar","added":"v"})"));
}

TEST_CASE("vault push: a secret ESO does not manage is refused and bad values are refused without their text") {
  PyDouble vault("vault_kv");
  vault_put(vault, "app", R"({"k":"v"})");
  Loop loop;
  auto p = make(loop, token_spec(vault));
  auto out = loop.run(p->put_if_changed(push_ref("app"), secure(R"({"k":"w"})")));
  REQUIRE_FALSE(out);
  CHECK(out.error().code == kms::Errc::permission_denied);
  CHECK(out.error().message == "secret not managed by external-secrets");
  out = loop.run(p->put_if_changed(push_ref("app", "k"), secure("v")));  // even an equal value
  REQUIRE_FALSE(out);
  CHECK(out.error().message == "secret not managed by external-secrets");
  CHECK(p->counters().writes == 0);
  CHECK(vault_get(vault, "data", "app").at("data") == json::parse(R"({"k":"v"})"));
  CHECK(vault_get(vault, "metadata", "app").at("custom_metadata").is_null());

  // Another owner's marker is not ESO's.
  REQUIRE(run_command("curl -sf -X POST -H 'X-Vault-Token: root' -d '{\"custom_metadata\":{\"managed-by\":\"me\"}}' " +
                      vault.url() + "/v1/secret/metadata/app")
              .status == 0);
  out = loop.run(p->put_if_changed(push_ref("app", "k"), secure("w")));
  REQUIRE_FALSE(out);
  CHECK(out.error().message == "secret not managed by external-secrets");

  // Without a property the value must be a JSON object; the message never carries it.
  out = loop.run(p->put_if_changed(push_ref("new"), secure("s3cr3t-plain")));
  REQUIRE_FALSE(out);
  CHECK(out.error().code == kms::Errc::invalid_argument);
  CHECK(out.error().message == "error unmarshalling vault secret: invalid JSON format");
  CHECK(vault_get(vault, "metadata", "new").is_null());  // nothing written, not even the marker
  REQUIRE(loop.run(p->put_if_changed(push_ref("mine"), secure(R"({"n":7,"s":"x"})"))));
  out = loop.run(p->put_if_changed(push_ref("mine"), secure(R"(["s3cr3t-list"])")));
  REQUIRE_FALSE(out);
  CHECK(out.error().message == "error unmarshalling incoming secret value: invalid JSON format");
  // A property holding a number is not a string: ESO's error.
  out = loop.run(p->put_if_changed(push_ref("mine", "n"), secure("8")));
  REQUIRE_FALSE(out);
  CHECK(out.error().message == "error converting n to string");
  CHECK(vault_get(vault, "metadata", "mine").at("current_version") == 1);
}

TEST_CASE("vault push: remove takes a managed property or secret away and leaves the unmanaged alone") {
  PyDouble vault("vault_kv");
  vault_put(vault, "theirs", R"({"k":"v"})");
  Loop loop;
  auto p = make(loop, token_spec(vault));
  REQUIRE(loop.run(p->put_if_changed(push_ref("ours"), secure(R"({"a":"1","b":"2"})"))));

  REQUIRE(loop.run(p->remove(push_ref("ours", "a"))));
  CHECK(vault_get(vault, "data", "ours").at("data") == json::parse(R"({"b":"2"})"));
  REQUIRE(loop.run(p->remove(push_ref("ours", "b"))));  // nothing left: the secret goes, every version
  CHECK(vault_get(vault, "data", "ours").is_null());
  CHECK(vault_get(vault, "metadata", "ours").is_null());

  REQUIRE(loop.run(p->put_if_changed(push_ref("whole"), secure(R"({"a":"1"})"))));
  REQUIRE(loop.run(p->remove(push_ref("whole"))));
  CHECK(vault_get(vault, "metadata", "whole").is_null());
  REQUIRE(loop.run(p->remove(push_ref("whole"))));  // missing: nothing to do

  const auto before = p->counters().writes.load();
  REQUIRE(loop.run(p->remove(push_ref("theirs"))));  // not ESO's: left as it is, no error (ESO's DeleteSecret)
  REQUIRE(loop.run(p->remove(push_ref("theirs", "k"))));
  CHECK(p->counters().writes == before);
  CHECK(vault_get(vault, "data", "theirs").at("data") == json::parse(R"({"k":"v"})"));

  auto state = loop.run(p->describe("theirs"));
  REQUIRE(state);
  CHECK(state->exists);
  CHECK_FALSE(state->managed);
  auto ensured = loop.run(p->ensure_managed("fresh"));
  REQUIRE(ensured);
  CHECK(vault_get(vault, "metadata", "fresh").at("custom_metadata") ==
        json::parse(R"({"managed-by":"external-secrets"})"));
  auto refused = loop.run(p->ensure_managed("theirs"));
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == kms::Errc::permission_denied);
}

namespace {

sync::VaultSpec kv1_spec(const PyDouble& v) {
  auto s = token_spec(v);
  s.path = "kv";  // the double's KV v1 mount
  s.version = "v1";
  return s;
}

// GET /v1/kv/<path>: the secret's map (null when Vault answers 404).
json::value kv1_get(const PyDouble& v, const std::string& path) {
  const auto r = run_command("curl -s -w '\\n%{http_code}' -H 'X-Vault-Token: root' " + v.url() + "/v1/kv/" + path);
  REQUIRE(r.status == 0);
  const auto nl = r.out.rfind('\n');
  if (r.out.substr(nl + 1) == "404") return nullptr;
  REQUIRE(r.out.substr(nl + 1) == "200");
  return json::parse(r.out.substr(0, nl)).at("data");
}

}  // namespace

TEST_CASE("vault KV v1: pull reads the map and push keeps ESO's marker inside it") {
  PyDouble vault("vault_kv");
  REQUIRE(run_command("curl -sf -X POST -H 'X-Vault-Token: root' -d '{\"k\":\"v\",\"n\":1}' " + vault.url() +
                      "/v1/kv/theirs")
              .status == 0);
  Loop loop;
  auto p = make(loop, kv1_spec(vault));
  // Pull: the whole map (ESO's v1 GetSecret), a property; versions and find by tags are v2's.
  auto whole = loop.run(p->fetch({"theirs", ""}));
  REQUIRE(whole);
  CHECK(text(*whole) == R"({"k":"v","n":1})");
  auto k = loop.run(selected(p, ref("theirs", "k")));
  REQUIRE(k);
  CHECK(text(*k) == "v");
  auto versioned = loop.run(p->fetch({"theirs", "2"}));
  REQUIRE_FALSE(versioned);
  CHECK(versioned.error().message == "vault: remoteRef.version needs KV v2 (the store is v1)");
  sync::FindRequest by_tags;
  by_tags.tags = {{"a", "b"}};
  auto found = loop.run(p->find(by_tags));
  REQUIRE_FALSE(found);
  CHECK(found.error().message == "cannot perform find by tag operations with kv version v1");
  sync::FindRequest by_name;
  by_name.name_matches = [](std::string_view n) { return n == "theirs"; };
  found = loop.run(p->find(by_name));
  REQUIRE(found);
  CHECK(found->size() == 1);

  // Push: the marker is a key of the map; no metadata/ call.
  const json::value marker = json::parse(R"({"managed-by":"external-secrets"})");
  auto out = loop.run(p->put_if_changed(push_ref("team/one"), secure(R"({"foo":"bar"})")));
  REQUIRE(out);
  CHECK(out->written);
  CHECK(kv1_get(vault, "team/one") == json::value{{"foo", "bar"}, {"custom_metadata", marker}});
  out = loop.run(p->put_if_changed(push_ref("team/one"), secure(R"({"foo":"bar"})")));
  REQUIRE(out);
  CHECK_FALSE(out->written);  // the map without its marker equals the value
  CHECK(p->counters().writes == 1);
  out = loop.run(p->put_if_changed(push_ref("team/one", "other"), secure("x")));
  REQUIRE(out);
  CHECK(out->written);
  CHECK(kv1_get(vault, "team/one") == json::value{{"foo", "bar"}, {"other", "x"}, {"custom_metadata", marker}});
  out = loop.run(p->put_if_changed(push_ref("team/one", "other"), secure("x")));
  REQUIRE(out);
  CHECK_FALSE(out->written);
  // Not ESO's: refused, and left alone by a delete.
  out = loop.run(p->put_if_changed(push_ref("theirs", "k"), secure("w")));
  REQUIRE_FALSE(out);
  CHECK(out.error().message == "secret not managed by external-secrets");
  REQUIRE(loop.run(p->remove(push_ref("theirs"))));
  CHECK(kv1_get(vault, "theirs") == json::parse(R"({"k":"v","n":1})"));
  // Delete: a property, then the last one takes the marker and the secret with it.
  REQUIRE(loop.run(p->remove(push_ref("team/one", "foo"))));
  CHECK(kv1_get(vault, "team/one") == json::value{{"other", "x"}, {"custom_metadata", marker}});
  REQUIRE(loop.run(p->remove(push_ref("team/one", "other"))));
  CHECK(kv1_get(vault, "team/one").is_null());
}
