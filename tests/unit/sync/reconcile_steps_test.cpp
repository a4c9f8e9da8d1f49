// rootseal::sync::reconcile — the pure steps of the ExternalSecret and
// PushSecret reconciles (external_secret_steps.hpp, push_secret_reconciler.hpp),
// without fakes: inputs in, decision out.
#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include "model/parse.hpp"
#include "reconcile/eso_meta.hpp"
#include "reconcile/external_secret_steps.hpp"
#include "reconcile/push_secret_reconciler.hpp"
#include "rootseal/kms/encoding.hpp"

using namespace rootseal;
using namespace rootseal::sync;
using namespace rootseal::sync::reconcile;
namespace json = boost::json;

namespace {

model::ExternalSecret es_of(std::string_view spec) {
  auto es = model::parse_external_secret(json::parse(
      R"({"apiVersion":"external-secrets.io/v1","kind":"ExternalSecret","metadata":{"name":"app","namespace":"ns","uid":"es-uid","generation":1},
      "spec":)" +
      std::string(spec) + "}"));
  REQUIRE(es.has_value());
  return std::move(*es);
}

const std::string kOneItem =
    R"("secretStoreRef":{"name":"vault"},"data":[{"secretKey":"u","remoteRef":{"key":"db","property":"user"}}])";

model::ExternalSecret es_with(std::string_view extra = "") { return es_of("{" + kOneItem + std::string(extra) + "}"); }

kms::SecureBytes bytes(std::string_view s) { return kms::SecureBytes::copy_of(s); }
std::string text(const kms::SecureBytes& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

SecretMap map_of(std::initializer_list<std::pair<std::string, std::string>> kv) {
  SecretMap m;
  for (const auto& [k, v] : kv) m.emplace(k, bytes(v));
  return m;
}

std::string b64(std::string_view s) {
  return kms::base64_encode(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
}

// What secret_content_of makes of `data` for `es` (no templateFrom sources).
Step<SecretMap> data_of(const model::ExternalSecret& es, SecretMap data) {
  auto c = secret_content_of(es, std::move(data), {});
  if (!c) return std::unexpected(c.error());
  return std::move(c->data);
}
SecretContent content_of(const model::ExternalSecret& es, SecretMap data) {
  auto c = secret_content_of(es, std::move(data), {});
  REQUIRE(c);
  return std::move(*c);
}

// A Secret as desired_secret would write it for `es` and `data`.
json::value written(const model::ExternalSecret& es, const SecretMap& data, const json::value* existing = nullptr) {
  SecretMap copy;
  for (const auto& [k, v] : data) copy.emplace(k, v.clone());
  auto a = desired_secret(es, content_of(es, std::move(copy)), false, existing);
  REQUIRE(a.has_value());
  REQUIRE(std::holds_alternative<Write>(*a));
  return json::value(std::get<Write>(*a).body);  // a copy on the ordinary heap: test only
}

const model::StoreRef kVault{"vault", model::StoreKind::secret_store};

}  // namespace

TEST_CASE("must_fetch: due (spec change, periodic interval) or the Secret is not valid") {
  auto periodic = es_with(R"(,"refreshInterval":"1h")");
  const json::value valid = written(periodic, map_of({{"u", "alice"}}));
  json::value edited = valid;
  edited.as_object()["data"].as_object()["u"] = b64("mallory");
  json::value unlabelled = valid;
  unlabelled.as_object()["metadata"].as_object()["labels"].as_object().erase(kManagedLabel);

  CHECK(secret_valid(valid));
  CHECK_FALSE(secret_valid(edited));
  CHECK_FALSE(secret_valid(unlabelled));

  CHECK_FALSE(must_fetch(periodic, false, false, &valid));
  CHECK(must_fetch(periodic, true, false, &valid));    // spec changed
  CHECK(must_fetch(periodic, false, true, &valid));    // interval elapsed
  CHECK(must_fetch(periodic, false, false, &edited));  // hand edit restored
  CHECK(must_fetch(periodic, false, false, &unlabelled));
  CHECK(must_fetch(periodic, false, false, nullptr));  // Secret gone

  auto never = es_with(R"(,"refreshInterval":"0s")");
  CHECK_FALSE(must_fetch(never, false, true, &valid));
  CHECK(must_fetch(never, true, false, &valid));
  for (const char* policy : {"OnChange", "CreatedOnce"}) {
    INFO(policy);
    auto p = es_with(std::string(R"(,"refreshPolicy":")") + policy + "\"");
    CHECK_FALSE(must_fetch(p, false, true, &valid));
    CHECK(must_fetch(p, true, false, &valid));
    CHECK(must_fetch(p, false, false, nullptr));
  }
  // Orphan and None: the Secret always counts as valid.
  for (const char* cp : {"Orphan", "None"}) {
    INFO(cp);
    auto p = es_with(std::string(R"(,"target":{"creationPolicy":")") + cp + "\"}");
    CHECK_FALSE(must_fetch(p, false, false, nullptr));
    CHECK_FALSE(must_fetch(p, false, false, &edited));
    CHECK(must_fetch(p, false, true, nullptr));
  }
}

TEST_CASE("add_data: property and decoding applied once, missing keys by deletionPolicy, precise refusals") {
  auto es = es_of(R"({"secretStoreRef":{"name":"vault"},"data":[
    {"secretKey":"u","remoteRef":{"key":"db","property":"user"}},
    {"secretKey":"c","remoteRef":{"key":"db","property":"cert","decodingStrategy":"Base64"}},
    {"secretKey":"w","remoteRef":{"key":"db"}}]})");
  const std::string whole = R"({"user":"alice","cert":"aGk=","bad":"***"})";
  ProviderData out;
  REQUIRE(add_data(out, es, 0, kVault, ValueFormat::go_map, bytes(whole)));
  REQUIRE(add_data(out, es, 1, kVault, ValueFormat::go_map, bytes(whole)));
  REQUIRE(add_data(out, es, 2, kVault, ValueFormat::go_map, bytes(whole)));
  CHECK(text(out.data.at("u")) == "alice");
  CHECK(text(out.data.at("c")) == "hi");
  CHECK(text(out.data.at("w")) == whole);
  CHECK(out.missing.empty());

  // Retain (default): a missing key or property is an error, retried.
  auto gone = add_data(out, es, 0, kVault, ValueFormat::go_map, kms::fail(kms::Errc::not_found, "secret not found"));
  REQUIRE_FALSE(gone);
  CHECK(gone.error().reason == kReasonError);
  CHECK(gone.error().retry);
  // ESO's markAsFailed: the condition's fixed text, the error (as GetProviderSecretData wraps it) in the event.
  CHECK(gone.error().condition == "could not get secret data from provider");
  CHECK(gone.error().event ==
        "error processing spec.data[0] (key: db), err: SecretStore \"vault\" key \"db\" property \"user\": secret "
        "not found");
  auto no_prop = add_data(out, es, 0, kVault, ValueFormat::go_map, bytes(R"({"other":1})"));
  REQUIRE_FALSE(no_prop);
  CHECK(no_prop.error().condition == "could not get secret data from provider");
  CHECK(no_prop.error().event.ends_with("property 'user' not found"));
  auto down =
      add_data(out, es, 2, kVault, ValueFormat::go_map, kms::fail(kms::Errc::unavailable, "vault: connection refused"));
  CHECK(down.error().event ==
        "error processing spec.data[2] (key: db), err: SecretStore \"vault\" key \"db\": vault: connection refused");
  // A bad encoding is the spec's fault: no retry.
  auto bad = add_data(out, es, 1, kVault, ValueFormat::go_map, bytes(R"({"cert":"***"})"));
  REQUIRE_FALSE(bad);
  CHECK_FALSE(bad.error().retry);
  CHECK(bad.error().condition == "could not get secret data from provider");
  CHECK(bad.error().event ==
        "error processing spec.data[1] (key: db), err: decodingStrategy Base64: the value is not valid base64");

  // Delete / Merge: a remote secret that is gone is skipped and listed; a
  // missing property stays an error (ESO's providers answer NoSecretErr only
  // for the first), so the Secret is not deleted for it.
  for (const char* policy : {"Delete", "Merge"}) {
    INFO(policy);
    auto del = es_of(
        std::string(R"({"secretStoreRef":{"name":"vault"},"target":{"creationPolicy":"Orphan","deletionPolicy":")") +
        policy + R"("},"data":[{"secretKey":"u","remoteRef":{"key":"db","property":"user"}}]})");
    ProviderData skipped;
    REQUIRE(add_data(skipped, del, 0, kVault, ValueFormat::go_map, kms::fail(kms::Errc::not_found, "gone")));
    auto no_property = add_data(skipped, del, 0, kVault, ValueFormat::go_map, bytes("{}"));
    REQUIRE_FALSE(no_property);
    CHECK(no_property.error().retry);
    CHECK(no_property.error().event.ends_with("property 'user' not found"));
    CHECK(skipped.data.empty());
    CHECK(skipped.missing ==
          std::vector<std::string>{"secret does not exist at provider using spec.dataFrom[0] (key=db)"});
  }
}

TEST_CASE("dataFrom.find: parsed as ESO's ExternalSecretFind, found names converted, validated, decoded") {
  auto es = es_of(R"j({"secretStoreRef":{"name":"vault"},"dataFrom":[
    {"find":{"path":"team","name":{"regexp":"^team/.*db$"},"tags":{"owner":"a"},"decodingStrategy":"Base64"}},
    {"find":{"tags":{"env":"prod"}},"rewrite":[{"regexp":{"source":"^app/(.*)","target":"$1"}}]},
    {"find":{"name":{}}}]})j");
  REQUIRE(es.data_from.size() == 3);
  const auto& f = *es.data_from[0].find;
  CHECK(f.path == std::optional<std::string>("team"));
  CHECK(f.name_regexp == std::optional<std::string>("^team/.*db$"));
  CHECK(f.tags == model::StringMap{{"owner", "a"}});
  CHECK(f.decoding == DecodingStrategy::base64);
  CHECK_FALSE(es.data_from[1].find->name_regexp.has_value());
  CHECK(es.data_from[2].find->name_regexp == std::optional<std::string>(""));  // name: {} matches every name

  // Names become keys through conversionStrategy Default ("/" -> "_"), then decoding.
  ProviderData out;
  SecretMap found;
  found.emplace("team/app/db", bytes("aGk="));
  REQUIRE(add_data_found(out, es, 0, std::move(found)));
  CHECK(text(out.data.at("team_app_db")) == "hi");
  // With a rewrite, no conversion.
  SecretMap rewritten;
  rewritten.emplace("app/db", bytes("v"));
  REQUIRE(add_data_found(out, es, 1, std::move(rewritten)));
  CHECK(text(out.data.at("db")) == "v");

  SecretMap bad_b64;
  bad_b64.emplace("team/x", bytes("***"));
  auto undecodable = add_data_found(out, es, 0, std::move(bad_b64));
  REQUIRE_FALSE(undecodable);
  CHECK_FALSE(undecodable.error().retry);
  CHECK(undecodable.error().condition == "could not get secret data from provider");
  CHECK(undecodable.error().event ==
        "error processing spec.dataFrom[0].find, err: key \"team_x\": decodingStrategy Base64: the value is not valid "
        "base64");
  auto regexp =
      add_data_found(out, es, 0, kms::fail(kms::Errc::invalid_argument, "could not compile find.name.regexp [(]: x"));
  REQUIRE_FALSE(regexp);
  CHECK_FALSE(regexp.error().retry);
  CHECK(regexp.error().event ==
        "error processing spec.dataFrom[0].find, err: error getting all secrets: could not compile find.name.regexp "
        "[(]: x");
  auto down = add_data_found(out, es, 0, kms::fail(kms::Errc::unavailable, "vault: connection refused"));
  REQUIRE_FALSE(down);
  CHECK(down.error().retry);

  // Nothing to search (Vault: nothing at the path): an error under Retain, skipped under Delete.
  auto nowhere = add_data_found(out, es, 2, kms::fail(kms::Errc::not_found, "vault: nothing to list at \"/\""));
  REQUIRE_FALSE(nowhere);
  auto del = es_of(
      R"({"secretStoreRef":{"name":"vault"},"target":{"deletionPolicy":"Delete"},"dataFrom":[{"find":{"path":"x"}}]})");
  ProviderData skipped;
  REQUIRE(add_data_found(skipped, del, 0, kms::fail(kms::Errc::not_found, "vault: nothing to list at \"x/\"")));
  CHECK(skipped.missing == std::vector<std::string>{"secret does not exist at provider using spec.dataFrom[0]"});
}

TEST_CASE("add_data_from: each entry a key, decoding per entry, data overrides") {
  auto es = es_of(R"({"secretStoreRef":{"name":"vault"},
    "dataFrom":[{"extract":{"key":"all"}},{"extract":{"key":"nested","decodingStrategy":"Base64"}}],
    "data":[{"secretKey":"a","remoteRef":{"key":"x"}}]})");
  ProviderData out;
  REQUIRE(add_data_from(out, es, 0, kVault, ValueFormat::go_map, bytes(R"({"a":"1","n":{"x":2}})")));
  CHECK(text(out.data.at("a")) == "1");
  CHECK(json::parse(text(out.data.at("n"))) == json::parse(R"({"x":2})"));
  REQUIRE(add_data_from(out, es, 1, kVault, ValueFormat::go_map, bytes(R"({"h":"aGk="})")));
  CHECK(text(out.data.at("h")) == "hi");
  REQUIRE(add_data(out, es, 0, kVault, ValueFormat::go_map, bytes("override")));
  CHECK(text(out.data.at("a")) == "override");

  auto not_object = add_data_from(out, es, 0, kVault, ValueFormat::go_map, bytes("plain"));
  REQUIRE_FALSE(not_object);
  CHECK(not_object.error().retry);
  CHECK(not_object.error().condition == "could not get secret data from provider");
  CHECK(not_object.error().event ==
        "error processing spec.dataFrom[0].extract, err: key \"all\": extract: the remote value is not a JSON object");
  auto bad = add_data_from(out, es, 1, kVault, ValueFormat::go_map, bytes(R"({"h":"***"})"));
  REQUIRE_FALSE(bad);
  CHECK_FALSE(bad.error().retry);
  CHECK(bad.error().event ==
        "error processing spec.dataFrom[1].extract, err: key \"h\": decodingStrategy Base64: the value is not valid "
        "base64");
  auto gone =
      add_data_from(out, es, 0, kVault, ValueFormat::go_map, kms::fail(kms::Errc::not_found, "secret not found"));
  CHECK(gone.error().condition == "could not get secret data from provider");
  CHECK(gone.error().event ==
        "error processing spec.dataFrom[0].extract, err: SecretStore \"vault\" key \"all\": secret not found");
}

// ESO's Azure provider reads its metadata (metadataPolicy Fetch) one way for
// data[] (a tag by property) and another for dataFrom.extract (its own map of
// "<name>_<tag>" keys): the reconciler tells them apart.
TEST_CASE("metadataPolicy Fetch on Azure: data[] by tag, dataFrom.extract as ESO's GetSecretMap") {
  auto es = es_of(R"({"secretStoreRef":{"name":"azure"},
    "data":[{"secretKey":"env","remoteRef":{"key":"db","metadataPolicy":"Fetch","property":"env"}},
            {"secretKey":"all","remoteRef":{"key":"db","metadataPolicy":"Fetch"}}],
    "dataFrom":[{"extract":{"key":"db","metadataPolicy":"Fetch"}},
                {"extract":{"key":"db","metadataPolicy":"Fetch","property":"env"}},
                {"extract":{"key":"db","metadataPolicy":"Fetch","property":"nope"}}]})");
  const std::string meta = R"({"attribute.created":"2026-01-02T03:04:05Z","env":"prod","owner":"{\"team\":\"a\"}"})";
  ProviderData out;
  REQUIRE(add_data_from(out, es, 0, kVault, ValueFormat::azure_tags, bytes(meta)));
  CHECK(text(out.data.at("db_env")) == "prod");
  CHECK(text(out.data.at("db_owner_team")) == "a");
  CHECK(text(out.data.at("db_attribute.created")) == "2026-01-02T03:04:05Z");
  CHECK(out.data.size() == 3);
  ProviderData one;
  REQUIRE(add_data_from(one, es, 1, kVault, ValueFormat::azure_tags, bytes(meta)));
  CHECK(one.data.size() == 1);
  CHECK(text(one.data.at("db_env")) == "prod");
  auto nope = add_data_from(one, es, 2, kVault, ValueFormat::azure_tags, bytes(meta));
  REQUIRE_FALSE(nope);
  CHECK(nope.error().event ==
        "error processing spec.dataFrom[2].extract, err: SecretStore \"vault\" key \"db\" property \"nope\": tag nope "
        "does not exist");
  ProviderData data;
  REQUIRE(add_data(data, es, 0, kVault, ValueFormat::azure_tags, bytes(meta)));
  REQUIRE(add_data(data, es, 1, kVault, ValueFormat::azure_tags, bytes(meta)));
  CHECK(text(data.data.at("env")) == "prod");
  CHECK(text(data.data.at("all")) == meta);
  // Without Fetch an extract reads the value itself, even in that format.
  auto plain = es_of(R"({"secretStoreRef":{"name":"azure"},"dataFrom":[{"extract":{"key":"db"}}]})");
  ProviderData value;
  REQUIRE(add_data_from(value, plain, 0, kVault, ValueFormat::azure_tags, bytes(meta)));
  CHECK(text(value.data.at("env")) == "prod");
  CHECK(value.data.count("db_env") == 0);
}

// ESO's AWS guide's "friendslist" value: dataFrom.extract.property selects a
// (nested) property, whose object is spread into keys as extract does.
TEST_CASE("add_data_from: extract.property selects a nested JSON object and spreads it") {
  auto es = es_of(R"({"secretStoreRef":{"name":"vault"},
    "dataFrom":[{"extract":{"key":"friendslist","property":"name"}},
                {"extract":{"key":"nested","property":"a.b","decodingStrategy":"Base64"}},
                {"extract":{"key":"friendslist","property":"nickname"}},
                {"extract":{"key":"friendslist","property":"friends"}},
                {"extract":{"key":"friendslist","property":"name.first"}}]})");
  REQUIRE(es.data_from[0].extract.property == "name");
  const std::string friends =
      R"({"name":{"first":"Tom","last":"Anderson"},"friends":[{"first":"Dale","last":"Murphy"},{"first":"Roger","last":"Craig"}]})";
  ProviderData out;
  REQUIRE(add_data_from(out, es, 0, kVault, ValueFormat::go_map, bytes(friends)));
  CHECK(out.data.size() == 2);
  CHECK(text(out.data.at("first")) == "Tom");
  CHECK(text(out.data.at("last")) == "Anderson");
  REQUIRE(add_data_from(out, es, 1, kVault, ValueFormat::go_map,
                        bytes(R"({"a":{"b":{"pw":"aGk=","user":"Ym9i"},"c":"no"}})")));
  CHECK(text(out.data.at("pw")) == "hi");
  CHECK(text(out.data.at("user")) == "bob");
  CHECK(out.data.count("c") == 0);

  auto missing = add_data_from(out, es, 2, kVault, ValueFormat::go_map, bytes(friends));
  REQUIRE_FALSE(missing);
  CHECK(missing.error().retry);
  CHECK(missing.error().event ==
        "error processing spec.dataFrom[2].extract, err: SecretStore \"vault\" key \"friendslist\" property "
        "\"nickname\": property 'nickname' not found");
  for (const std::size_t i : {std::size_t{3}, std::size_t{4}}) {  // an array, a string: not objects
    auto not_object = add_data_from(out, es, i, kVault, ValueFormat::go_map, bytes(friends));
    REQUIRE_FALSE(not_object);
    CHECK(not_object.error().retry);
    CHECK(not_object.error().event == "error processing spec.dataFrom[" + std::to_string(i) +
                                          "].extract, err: key \"friendslist\": extract: property '" +
                                          es.data_from[i].extract.property + "' is not a JSON object");
    CHECK(not_object.error().event.find("Tom") == std::string::npos);  // no value in the message
  }
  // a missing remote key with deletionPolicy Delete is still "missing", not an error
  auto del = es_of(R"({"secretStoreRef":{"name":"vault"},"target":{"deletionPolicy":"Delete"},
    "dataFrom":[{"extract":{"key":"friendslist","property":"name"}}]})");
  ProviderData skipped;
  REQUIRE(add_data_from(skipped, del, 0, kVault, ValueFormat::go_map, kms::fail(kms::Errc::not_found, "gone")));
  CHECK(skipped.missing == std::vector<std::string>{"secret does not exist at provider using spec.dataFrom[0]"});
}

TEST_CASE("secret_content_of: provider data as is, template Replace and Merge, render errors") {
  CHECK(text(data_of(es_with(), map_of({{"u", "alice"}}))->at("u")) == "alice");
  auto replace = es_with(R"(,"target":{"template":{"data":{"dsn":"pg://{{ .u }}@db"}}})");
  auto r = data_of(replace, map_of({{"u", "alice"}}));
  REQUIRE(r);
  CHECK(r->size() == 1);
  CHECK(text(r->at("dsn")) == "pg://alice@db");
  auto merge = es_with(R"(,"target":{"template":{"mergePolicy":"Merge","data":{"dsn":"{{ .u }}"}}})");
  auto m = data_of(merge, map_of({{"u", "alice"}}));
  REQUIRE(m);
  CHECK(m->size() == 2);
  CHECK(text(m->at("u")) == "alice");
  auto missing = data_of(replace, SecretMap{});
  REQUIRE_FALSE(missing);
  CHECK_FALSE(missing.error().retry);
  // ESO: "could not update secret", the event as ApplyTemplate wraps the error (for a Secret to create).
  CHECK(missing.error().condition == "could not update secret");
  CHECK(
      missing.error().event.starts_with("could not apply template: could not execute template: "
                                        "spec.target.template.data.dsn: "));
  // For an existing Secret, as ESO's updateSecret.
  CHECK(mutate_refusal(replace, true, missing.error())
            .event.starts_with("unable to mutate secret app: could not apply template: could not execute template: "));
}

TEST_CASE("desired_secret: a new Secret carries ESO's metadata, owner reference and data") {
  auto es = es_with(R"(,"target":{"name":"db-creds","immutable":true,"template":{"type":"kubernetes.io/basic-auth",
    "metadata":{"labels":{"team":"a"},"annotations":{"owner":"ops"}}}})");
  const auto data = map_of({{"u", "alice"}});
  auto a = desired_secret(es, content_of(es, map_of({{"u", "alice"}})), false, nullptr);
  REQUIRE(a);
  REQUIRE(std::holds_alternative<Write>(*a));
  CHECK(std::get<Write>(*a).create);
  const json::value s = written(es, data);
  const auto& md = s.at("metadata");
  CHECK(md.at("name") == "db-creds");
  CHECK(md.at("namespace") == "ns");
  CHECK(md.at("labels").at("team") == "a");
  CHECK(md.at("labels").at(kManagedLabel) == "true");
  CHECK(md.at("labels").at(kCreatedByLabel).as_string() == created_by("ns", "app"));
  CHECK(md.at("annotations").at("owner") == "ops");
  CHECK(md.at("annotations").at(kDataHashAnnotation).as_string() == data_hash(data));
  const auto& ref = md.at("ownerReferences").at(0);
  CHECK(ref.at("kind") == "ExternalSecret");
  CHECK(ref.at("uid") == "es-uid");
  CHECK(ref.at("controller") == true);
  CHECK(s.at("type") == "kubernetes.io/basic-auth");
  CHECK(s.at("immutable") == true);
  CHECK(s.at("data").at("u").as_string() == b64("alice"));
  CHECK(secret_valid(s));

  // Orphan: no owner reference, no created-by label; default type Opaque.
  const json::value o = written(es_with(R"(,"target":{"creationPolicy":"Orphan"})"), data);
  CHECK_FALSE(o.at("metadata").as_object().contains("ownerReferences"));
  CHECK_FALSE(o.at("metadata").at("labels").as_object().contains(kCreatedByLabel));
  CHECK(o.at("type") == "Opaque");
}

TEST_CASE("desired_secret: up to date is no write, a change updates and keeps foreign metadata") {
  auto es = es_with();
  json::value cur = written(es, map_of({{"u", "alice"}}));
  cur.as_object()["metadata"].as_object()["resourceVersion"] = "7";
  cur.as_object()["metadata"].as_object()["uid"] = "secret-uid";
  auto same = desired_secret(es, content_of(es, map_of({{"u", "alice"}})), false, &cur);
  REQUIRE(same);
  REQUIRE(std::holds_alternative<Keep>(*same));
  CHECK(std::get<Keep>(*same).reason == kReasonSynced);
  CHECK(std::get<Keep>(*same).message == "secret synced");

  json::value foreign = cur;
  auto& fmd = foreign.as_object()["metadata"].as_object();
  fmd["labels"].as_object()["app"] = "web";
  fmd["ownerReferences"].as_array().push_back(json::parse(R"({"kind":"Thing","name":"t","uid":"t-uid"})"));
  fmd["managedFields"] = json::array();
  foreign.as_object()["stringData"] = json::parse(R"({"x":"y"})");
  auto upd = desired_secret(es, content_of(es, map_of({{"u", "bob"}})), false, &foreign);
  REQUIRE(upd);
  REQUIRE(std::holds_alternative<Write>(*upd));
  const auto& w = std::get<Write>(*upd);
  CHECK_FALSE(w.create);
  const json::value body(w.body);
  CHECK(body.at("metadata").at("resourceVersion") == "7");  // optimistic concurrency
  CHECK(body.at("metadata").at("labels").at("app") == "web");
  CHECK(body.at("metadata").at("ownerReferences").as_array().size() == 2);
  CHECK_FALSE(body.at("metadata").as_object().contains("managedFields"));
  CHECK_FALSE(body.as_object().contains("stringData"));
  CHECK(body.at("data").at("u").as_string() == b64("bob"));

  // An immutable Secret whose data differs cannot be changed.
  json::value frozen = cur;
  frozen.as_object()["immutable"] = true;
  auto imm = desired_secret(es, content_of(es, map_of({{"u", "bob"}})), false, &frozen);
  REQUIRE_FALSE(imm);
  CHECK_FALSE(imm.error().retry);
  CHECK(imm.error().condition == "could not update secret, target is immutable");
  CHECK(imm.error().event == "unable to update secret app: secret is immutable");
  CHECK(desired_secret(es, content_of(es, map_of({{"u", "alice"}})), false, &frozen));  // unchanged: fine
}

TEST_CASE("desired_secret: creationPolicy Merge, CreateOrMerge, None and a foreign owner") {
  const json::value other =
      json::parse(R"({"apiVersion":"v1","kind":"Secret","metadata":{"name":"app","namespace":"ns","uid":"s1"},
    "data":{"keep":")" +
                  b64("mine") + R"(","u":")" + b64("old") + R"("}})");
  auto merge = es_with(R"(,"target":{"creationPolicy":"Merge"})");
  // As ESO: not an error; Ready=True with ESO's message until the Secret exists.
  auto none_yet = desired_secret(merge, content_of(merge, map_of({{"u", "alice"}})), false, nullptr);
  REQUIRE(none_yet);
  REQUIRE(std::holds_alternative<Keep>(*none_yet));
  CHECK(std::get<Keep>(*none_yet).reason == kReasonMissing);
  CHECK(std::get<Keep>(*none_yet).message == "secret will not be created due to CreationPolicy=Merge");
  CHECK(std::get<Keep>(*none_yet).ready);
  const json::value merged = written(merge, map_of({{"u", "alice"}}), &other);
  CHECK(merged.at("data").at("keep").as_string() == b64("mine"));
  CHECK(merged.at("data").at("u").as_string() == b64("alice"));
  CHECK_FALSE(merged.at("metadata").as_object().contains("ownerReferences"));

  auto com = es_with(R"(,"target":{"creationPolicy":"CreateOrMerge"})");
  CHECK(std::get<Write>(*desired_secret(com, content_of(com, map_of({{"u", "a"}})), false, nullptr)).create);
  CHECK(written(com, map_of({{"u", "alice"}}), &other).at("data").at("keep").as_string() == b64("mine"));

  auto none = es_with(R"(,"target":{"creationPolicy":"None"})");
  auto n = desired_secret(none, content_of(none, map_of({{"u", "alice"}})), false, &other);
  REQUIRE(n);
  CHECK(std::holds_alternative<Keep>(*n));

  json::value owned = other;
  owned.as_object()["metadata"].as_object()["ownerReferences"] =
      json::parse(R"([{"kind":"Deployment","name":"web","uid":"d1","controller":true}])");
  auto foreign = desired_secret(es_with(), content_of(es_with(), map_of({{"u", "alice"}})), false, &owned);
  REQUIRE_FALSE(foreign);
  // ESO's applyOwnership: SetControllerReference's AlreadyOwnedError under ErrSecretSetCtrlRef.
  CHECK(foreign.error().condition == "failed to take ownership of target secret");
  CHECK(foreign.error().event ==
        "unable to mutate secret app: could not set controller reference on secret: Object ns/app is already owned "
        "by another Deployment controller web");
  // Without Owner another controller is no obstacle (Merge writes into it) ...
  CHECK(desired_secret(merge, content_of(merge, map_of({{"u", "alice"}})), false, &owned));
  // ... but another ExternalSecret is, whatever the creationPolicy (ESO's ErrSecretIsOwned).
  json::value other_es = other;
  other_es.as_object()["metadata"].as_object()["ownerReferences"] = json::parse(
      R"([{"apiVersion":"external-secrets.io/v1","kind":"ExternalSecret","name":"other","uid":"e2","controller":true}])");
  for (const auto* es : {&merge, &com}) {
    auto is_owned = desired_secret(*es, content_of(*es, map_of({{"u", "alice"}})), false, &other_es);
    REQUIRE_FALSE(is_owned);
    CHECK(is_owned.error().condition == "target is owned by another ExternalSecret");
    CHECK(is_owned.error().event == "unable to mutate secret app: secret is owned by another ExternalSecret: other");
  }
  // The same ExternalSecret recreated (another uid) takes its Secret over, as ESO (owners compared by name).
  json::value recreated = other_es;
  recreated.as_object()["metadata"].as_object()["ownerReferences"].as_array()[0].as_object()["name"] = "app";
  auto taken = desired_secret(es_with(), content_of(es_with(), map_of({{"u", "alice"}})), false, &recreated);
  REQUIRE(taken);
  const json::value taken_body(std::get<Write>(*taken).body);
  CHECK(taken_body.at("metadata").at("ownerReferences").at(0).at("uid") == "es-uid");
}

TEST_CASE("desired_secret: creationPolicy changed from Owner drops the controller reference and created-by label") {
  // ESO's applyOwnership: RemoveControllerReference when this ExternalSecret
  // controls the Secret, and the created-by label deleted, for any policy but Owner.
  const auto data = map_of({{"u", "alice"}});
  json::value cur = written(es_with(), data);
  auto& md = cur.as_object()["metadata"].as_object();
  md["resourceVersion"] = "7";
  auto& refs = md["ownerReferences"].as_array();
  refs.insert(refs.begin(), json::parse(R"({"apiVersion":"apps/v1","kind":"Deployment","name":"web","uid":"d1"})"));
  REQUIRE(refs.size() == 2);
  for (const char* policy : {"Orphan", "Merge", "CreateOrMerge"}) {
    INFO(policy);
    auto es = es_with(std::string(R"(,"target":{"creationPolicy":")") + policy + R"("})");
    auto a = desired_secret(es, content_of(es, map_of({{"u", "alice"}})), false, &cur);
    REQUIRE(a);
    REQUIRE(std::holds_alternative<Write>(*a));  // the data is unchanged: the ownership alone is written
    const json::value body(std::get<Write>(*a).body);
    const auto& bmd = body.at("metadata");
    REQUIRE(bmd.at("ownerReferences").as_array().size() == 1);
    CHECK(bmd.at("ownerReferences").at(0).at("kind") == "Deployment");  // other owners stay
    CHECK_FALSE(bmd.at("labels").as_object().contains(kCreatedByLabel));
    CHECK(bmd.at("labels").at(kManagedLabel) == "true");
    CHECK(bmd.at("resourceVersion") == "7");
    CHECK(body.at("data").at("u").as_string() == b64("alice"));
    // Written once: the next pass is up to date.
    auto again = desired_secret(es, content_of(es, map_of({{"u", "alice"}})), false, &body);
    REQUIRE(again);
    CHECK(std::holds_alternative<Keep>(*again));
  }
  // The controller reference alone (the label already gone) is written away too.
  json::value ref_only = cur;
  ref_only.as_object()["metadata"].as_object()["labels"].as_object().erase(kCreatedByLabel);
  auto orphan_es = es_with(R"(,"target":{"creationPolicy":"Orphan"})");
  auto unref = desired_secret(orphan_es, content_of(orphan_es, map_of({{"u", "alice"}})), false, &ref_only);
  REQUIRE(unref);
  REQUIRE(std::holds_alternative<Write>(*unref));
  CHECK(std::get<Write>(*unref).body.at("metadata").at("ownerReferences").as_array().size() == 1);
  // A created-by label alone (no controller reference) goes too.
  json::value labelled = written(es_with(R"(,"target":{"creationPolicy":"Orphan"})"), data);
  labelled.as_object()["metadata"].as_object()["labels"].as_object()[kCreatedByLabel] = created_by("ns", "app");
  auto orphan = es_with(R"(,"target":{"creationPolicy":"Orphan"})");
  auto relabel = desired_secret(orphan, content_of(orphan, map_of({{"u", "alice"}})), false, &labelled);
  REQUIRE(relabel);
  REQUIRE(std::holds_alternative<Write>(*relabel));
  CHECK_FALSE(std::get<Write>(*relabel).body.at("metadata").at("labels").as_object().contains(kCreatedByLabel));
  // Owner again: the reference and the label come back.
  const json::value back = written(es_with(), data, &std::get<Write>(*relabel).body);
  CHECK(back.at("metadata").at("ownerReferences").at(0).at("uid") == "es-uid");
  CHECK(back.at("metadata").at("labels").as_object().contains(kCreatedByLabel));
}

TEST_CASE("creationPolicy None never applies the template") {
  // ESO's reconcile: the mutation (ApplyTemplate) never runs for None, so a
  // template that could not parse or render is no error.
  const std::string bad = R"(,"template":{"data":{"x":"{{ .nope }}","y":"{{ .u"}})";
  auto none = es_with(R"(,"target":{"creationPolicy":"None")" + bad + "}");
  auto owner = es_with(R"(,"target":{"creationPolicy":"Owner")" + bad + "}");
  CHECK(check_templates(none));
  CHECK_FALSE(check_templates(owner));
  auto c = secret_content_of(none, map_of({{"u", "alice"}}), {});
  REQUIRE(c);
  CHECK(c->data.size() == 1);
  auto a = desired_secret(none, std::move(*c), false, nullptr);
  REQUIRE(a);
  CHECK(std::holds_alternative<Keep>(*a));
  auto good_owner = es_with(R"(,"target":{"template":{"data":{"x":"{{ .nope }}"}}})");
  CHECK_FALSE(secret_content_of(good_owner, map_of({{"u", "alice"}}), {}));
}

TEST_CASE("desired_secret: every remote key missing — Delete removes an owned Secret, Retain keeps it") {
  auto del = es_with(R"(,"target":{"deletionPolicy":"Delete"})");
  json::value mine = written(del, map_of({{"u", "alice"}}));
  mine.as_object()["metadata"].as_object()["uid"] = "secret-uid";
  auto d = desired_secret(del, content_of(del, SecretMap{}), true, &mine);
  REQUIRE(d);
  REQUIRE(std::holds_alternative<Delete>(*d));
  CHECK(std::get<Delete>(*d).uid == "secret-uid");
  auto absent = desired_secret(del, content_of(del, SecretMap{}), true, nullptr);
  REQUIRE(std::holds_alternative<Keep>(*absent));
  CHECK(std::get<Keep>(*absent).reason == kReasonDeleted);
  CHECK(std::get<Keep>(*absent).message == "secret deleted due to DeletionPolicy=Delete");
  CHECK(std::get<Keep>(*absent).ready);  // as ESO (markAsDone)
  json::value theirs = mine;
  theirs.as_object()["metadata"].as_object()["ownerReferences"].as_array()[0].as_object()["uid"] = "someone";
  CHECK(std::holds_alternative<Keep>(*desired_secret(del, content_of(del, SecretMap{}), true, &theirs)));
  CHECK_FALSE(owned_secret(del, theirs));
  CHECK(owned_secret(del, mine)->uid == "secret-uid");

  auto keep = desired_secret(es_with(), content_of(es_with(), SecretMap{}), true, &mine);
  REQUIRE(std::holds_alternative<Keep>(*keep));
  CHECK(std::get<Keep>(*keep).message == "secret retained due to DeletionPolicy=Retain");
  CHECK(std::get<Keep>(*keep).ready);
  // Some data left: written as usual.
  CHECK(std::holds_alternative<Write>(*desired_secret(del, content_of(del, map_of({{"u", "x"}})), true, &mine)));
}

TEST_CASE("invalid_shell and check_templates: refusals before any read") {
  const json::value bad = json::parse(R"({"apiVersion":"external-secrets.io/v1","kind":"ExternalSecret",
    "metadata":{"name":"x","namespace":"ns"},"spec":{},
    "status":{"syncedResourceVersion":"1-a","binding":{"name":"x"},
      "conditions":[{"type":"Ready","status":"False","reason":"SecretSyncedError","message":"m","lastTransitionTime":"t"}]}})");
  auto shell = invalid_shell(bad);
  REQUIRE(shell);
  CHECK(shell->meta.name == "x");
  CHECK(shell->target.name == "x");
  CHECK(shell->status.ready_message == "m");
  CHECK(shell->status.ready_transition == "t");
  CHECK(shell->status.synced_resource_version == "1-a");
  CHECK_FALSE(invalid_shell(json::parse(R"({"metadata":"nope"})")));

  CHECK(check_templates(es_with(R"(,"target":{"template":{"data":{"k":"{{ .u }}"}}})")));
  auto t = check_templates(es_with(R"(,"target":{"template":{"data":{"k":"{{ .u "}}})"));
  REQUIRE_FALSE(t);
  CHECK_FALSE(t.error().retry);
  // rootseal's own refusal (ESO has no such check): the error in the condition and the event.
  CHECK(t.error().event.starts_with("invalid ExternalSecret: spec.target.template.data.k: "));
  CHECK(t.error().condition == t.error().event);
}

TEST_CASE("values_to_push: a Secret key, the whole Secret, a remote property, and remote_source_value") {
  auto ps = model::parse_push_secret(json::parse(R"({"apiVersion":"external-secrets.io/v1alpha1","kind":"PushSecret",
    "metadata":{"name":"p","namespace":"ns"},"spec":{"secretStoreRefs":[{"name":"aws"}],"selector":{"secret":{"name":"src"}},
    "data":[{"match":{"secretKey":"a","remoteRef":{"remoteKey":"r1"}}},{"match":{"remoteRef":{"remoteKey":"r2"}}}]}})"));
  REQUIRE(ps);
  auto v = values_to_push(*ps, map_of({{"a", "1"}, {"b", "2"}}), nullptr);
  REQUIRE(v);
  REQUIRE(v->size() == 2);
  CHECK(text((*v)[0]) == "1");
  CHECK(json::parse(text((*v)[1])) == json::parse(R"({"a":"1","b":"2"})"));
  auto missing = values_to_push(*ps, map_of({{"b", "2"}}), nullptr);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message == "set secret failed: secret key a does not exist");  // ESO's texts

  auto remote =
      model::parse_push_secret(json::parse(R"({"apiVersion":"external-secrets.io/v1alpha1","kind":"PushSecret",
    "metadata":{"name":"p","namespace":"ns"},"spec":{"secretStoreRefs":[{"name":"aws"}],
    "selector":{"remoteRef":{"storeRef":{"name":"vault"},"key":"db","property":"inner","decodingStrategy":"Base64"}},
    "data":[{"match":{"secretKey":"pw","remoteRef":{"remoteKey":"r1"}}}]}})"));
  REQUIRE(remote);
  auto src =
      remote_source_value(*remote, bytes(R"({"inner":")" + b64(R"({"pw":"s3cret"})") + "\"}"), ValueFormat::go_map);
  REQUIRE(src);
  auto rv = values_to_push(*remote, SecretMap{}, &*src);
  REQUIRE(rv);
  CHECK(text((*rv)[0]) == "s3cret");
  auto down = remote_source_value(*remote, kms::fail(kms::Errc::unavailable, "vault down"), ValueFormat::go_map);
  REQUIRE_FALSE(down);
  CHECK(down.error().code == kms::Errc::unavailable);
  CHECK(down.error().message == "could not read the source remote key \"db\": vault down");
  auto empty_inner = remote_source_value(*remote, bytes(R"({"inner":")" + b64("{}") + "\"}"), ValueFormat::go_map);
  REQUIRE(empty_inner);
  auto no_prop = values_to_push(*remote, SecretMap{}, &*empty_inner);
  REQUIRE_FALSE(no_prop);
  CHECK(no_prop.error().code == kms::Errc::not_found);
}
