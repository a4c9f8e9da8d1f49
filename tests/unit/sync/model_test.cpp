// rootseal::sync::model — parsing and validation of ESO resources.
#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include "model/duration.hpp"
#include "model/parse.hpp"

using namespace rootseal::sync::model;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {
json::value es_json(std::string_view spec, std::string_view api = "external-secrets.io/v1") {
  return json::parse(
      R"({"apiVersion":")" + std::string(api) +
      R"(","kind":"ExternalSecret","metadata":{"name":"db","namespace":"team-a","uid":"u1","generation":3,
                     "labels":{"app":"x"}},"spec":)" +
      std::string(spec) + "}");
}
std::string es_error(std::string_view spec) {
  auto r = parse_external_secret(es_json(spec));
  REQUIRE_FALSE(r.has_value());
  return r.error().message;
}
}  // namespace

TEST_CASE("Go durations parse like time.ParseDuration") {
  CHECK(*parse_go_duration("1h30m") == 90min);
  CHECK(*parse_go_duration("15m") == 15min);
  CHECK(*parse_go_duration("0") == 0s);
  CHECK(*parse_go_duration("1.5h") == 90min);
  CHECK(*parse_go_duration("300ms") == 300ms);
  CHECK(*parse_go_duration("1h0m0s") == 1h);
  CHECK(*parse_go_duration("2us") == 2us);
  CHECK_FALSE(parse_go_duration("").has_value());
  CHECK_FALSE(parse_go_duration("-1h").has_value());
  CHECK_FALSE(parse_go_duration("10").has_value());
  CHECK_FALSE(parse_go_duration("1d").has_value());
  CHECK_FALSE(parse_go_duration("h").has_value());
  CHECK_FALSE(parse_go_duration("99999999999999h").has_value());
  CHECK(format_go_duration(1h) == "1h0m0s");
  CHECK(format_go_duration(90s) == "1m30s");
  CHECK(format_go_duration(0s) == "0s");
}

TEST_CASE("an ExternalSecret v1 with data, dataFrom, template and policies parses into typed fields") {
  auto r = parse_external_secret(es_json(R"({
    "refreshInterval":"1h30m",
    "secretStoreRef":{"name":"vault","kind":"ClusterSecretStore"},
    "target":{"name":"db-creds","creationPolicy":"Merge","deletionPolicy":"Merge",
              "template":{"type":"kubernetes.io/basic-auth","metadata":{"labels":{"l":"1"},"annotations":{"a":"2"}},
                          "data":{"url":"postgres://{{ .user }}@db"}}},
    "data":[{"secretKey":"user","remoteRef":{"key":"db/creds","property":"username","version":"3","decodingStrategy":"Base64"}}],
    "dataFrom":[{"extract":{"key":"db/extra"}}]})"));
  REQUIRE(r.has_value());
  CHECK(r->meta.name == "db");
  CHECK(r->meta.generation == 3);
  CHECK(r->store_ref.kind == StoreKind::cluster_secret_store);
  CHECK(r->refresh_interval == 90min);
  CHECK(r->target.name == "db-creds");
  CHECK(r->target.creation == CreationPolicy::merge);
  CHECK(r->target.deletion == DeletionPolicy::merge);
  REQUIRE(r->target.template_.has_value());
  CHECK(*r->target.template_->type == "kubernetes.io/basic-auth");
  CHECK(r->target.template_->labels.at("l") == "1");
  CHECK(r->target.template_->data.at("url") == "postgres://{{ .user }}@db");
  REQUIRE(r->data.size() == 1);
  CHECK(r->data[0].remote_ref.key == "db/creds");
  CHECK(r->data[0].remote_ref.property == "username");
  CHECK(r->data[0].remote_ref.version == "3");
  CHECK(r->data[0].remote_ref.decoding == DecodingStrategy::base64);
  REQUIRE(r->data_from.size() == 1);
  CHECK(r->data_from[0].extract.key == "db/extra");
}

TEST_CASE("v1beta1 ExternalSecrets are read the same and defaults follow ESO") {
  auto r = parse_external_secret(
      es_json(R"({"secretStoreRef":{"name":"s"},"data":[{"secretKey":"k","remoteRef":{"key":"a"}}]})",
              "external-secrets.io/v1beta1"));
  REQUIRE(r.has_value());
  CHECK(r->store_ref.kind == StoreKind::secret_store);
  CHECK(r->refresh_interval == 1h);
  CHECK(r->target.name == "db");
  CHECK(r->target.creation == CreationPolicy::owner);
  CHECK(r->target.deletion == DeletionPolicy::retain);
  auto zero = parse_external_secret(es_json(
      R"({"refreshInterval":"0","secretStoreRef":{"name":"s"},"data":[{"secretKey":"k","remoteRef":{"key":"a"}}]})"));
  REQUIRE(zero.has_value());
  CHECK(zero->refresh_interval == 0s);
  CHECK_FALSE(parse_external_secret(es_json(R"({"secretStoreRef":{"name":"s"},"data":[]})", "external-secrets.io/v2"))
                  .has_value());
}

TEST_CASE("refresh intervals longer than 100 years are 100 years (the clock arithmetic cannot overflow)") {
  // Go's largest duration (~292 years) added to the clock's nanoseconds
  // since 1970 overflows int64; the model clamps to kms::kLongestDelay.
  for (const char* longest : {"2562047h47m16.854775807s", "2562047h", "876001h"}) {
    INFO(longest);
    auto r = parse_external_secret(
        es_json(std::string(R"({"refreshInterval":")") + longest +
                R"(","secretStoreRef":{"name":"s"},"data":[{"secretKey":"k","remoteRef":{"key":"a"}}]})"));
    REQUIRE(r.has_value());
    CHECK(r->refresh_interval == rootseal::kms::kLongestDelay);
  }
  auto exact = parse_external_secret(es_json(
      R"({"refreshInterval":"876000h","secretStoreRef":{"name":"s"},"data":[{"secretKey":"k","remoteRef":{"key":"a"}}]})"));
  REQUIRE(exact.has_value());
  CHECK(exact->refresh_interval == std::chrono::hours(876000));
  CHECK(
      es_error(
          R"({"refreshInterval":"2562048h","secretStoreRef":{"name":"s"},"data":[{"secretKey":"k","remoteRef":{"key":"a"}}]})") ==
      "spec.refreshInterval: duration out of range");
}

TEST_CASE("metadata.generation outside int64 is refused, not thrown") {
  auto doc = es_json(R"({"secretStoreRef":{"name":"s"},"data":[{"secretKey":"k","remoteRef":{"key":"a"}}]})");
  doc.as_object()["metadata"].as_object()["generation"] = std::uint64_t{18446744073709551615ULL};
  auto r = parse_external_secret(doc);
  REQUIRE_FALSE(r.has_value());
  CHECK_THAT(r.error().message, Catch::Contains("generation"));
  doc.as_object()["metadata"].as_object()["generation"] = std::uint64_t{9223372036854775807ULL};
  auto ok = parse_external_secret(doc);
  REQUIRE(ok.has_value());
  CHECK(ok->meta.generation == INT64_MAX);
}

TEST_CASE("invalid ExternalSecret specs give the field path and the reason") {
  CHECK(es_error(R"({"secretStoreRef":{"name":"s"},"data":[{"secretKey":"k","remoteRef":{}}]})") ==
        "spec.data[0].remoteRef.key: required");
  CHECK(
      es_error(
          R"({"secretStoreRef":{"name":"s"},"data":[{"secretKey":"k","remoteRef":{"key":"a"}},{"secretKey":"bad key!","remoteRef":{"key":"b"}}]})") ==
      "spec.data[1].secretKey: not a valid Secret key ([-._a-zA-Z0-9]+)");
  CHECK(
      es_error(
          R"({"refreshInterval":"1d","secretStoreRef":{"name":"s"},"data":[{"secretKey":"k","remoteRef":{"key":"a"}}]})") ==
      "spec.refreshInterval: unknown unit 'd' in duration (ns, us, ms, s, m, h)");
  CHECK(es_error(R"({"secretStoreRef":{"name":"s","kind":"Vault"},"data":[]})") ==
        "spec.secretStoreRef.kind: unsupported value 'Vault' (supported: SecretStore, ClusterSecretStore)");
  CHECK(
      es_error(
          R"({"secretStoreRef":{"name":"s"},"target":{"creationPolicy":"Merge","deletionPolicy":"Delete"},"data":[{"secretKey":"k","remoteRef":{"key":"a"}}]})") ==
      "spec.target.deletionPolicy: Delete is not allowed with creationPolicy Merge");
  CHECK(es_error(R"({"secretStoreRef":{"name":"s"},"dataFrom":[{"find":{"path":"x"},"extract":{"key":"k"}}]})") ==
        "spec.dataFrom[0]: must hold one of extract and find, not both");
  CHECK(es_error(R"({"secretStoreRef":{"name":"s"},"dataFrom":[{"rewrite":[]}]})") ==
        "spec.dataFrom[0]: extract or find is required (generators are not supported by rootseal)");
  CHECK(es_error(R"({"secretStoreRef":{"name":"s"},"dataFrom":[{"find":{"conversionStrategy":"Unicode"}}]})") ==
        "spec.dataFrom[0].find.conversionStrategy: unsupported value 'Unicode' (supported: Default)");
  CHECK(es_error(R"({"secretStoreRef":{"name":"s"},"dataFrom":[{"find":{"tags":{"a":1}}}]})") ==
        "spec.dataFrom[0].find.tags.a: must be a string");
  CHECK(es_error(R"({"secretStoreRef":{"name":"s"}})") ==
        "spec: one of data, dataFrom, target.template.data or target.template.templateFrom must be set");
  CHECK(es_error(R"({"data":[{"secretKey":"k","remoteRef":{"key":"a"}}]})") ==
        "spec.data[0]: no store: set spec.secretStoreRef or this item's sourceRef.storeRef");
  CHECK(
      es_error(
          R"({"secretStoreRef":{"name":"s"},"target":{"name":"Bad_Name"},"data":[{"secretKey":"k","remoteRef":{"key":"a"}}]})") ==
      "spec.target.name: 'Bad_Name' is not a valid Secret name (RFC 1123 subdomain)");
  CHECK(
      es_error(
          R"({"secretStoreRef":{"name":"s"},"data":[{"secretKey":"k","remoteRef":{"key":"a","decodingStrategy":"Hex"}}]})") ==
      "spec.data[0].remoteRef.decodingStrategy: unsupported value 'Hex' (supported: None, Auto, Base64, Base64URL)");
  // template.metadata values are templates (engine v2), as in ESO: accepted, rendered at reconcile
  CHECK(
      parse_external_secret(
          es_json(
              R"({"secretStoreRef":{"name":"s"},"target":{"template":{"metadata":{"labels":{"x":"{{ .k }}"}}}},"data":[{"secretKey":"k","remoteRef":{"key":"a"}}]})"))
          ->target.template_->labels.at("x") == "{{ .k }}");
  CHECK(
      es_error(
          R"({"secretStoreRef":{"name":"s"},"target":{"template":{"templateFrom":[{"secret":{"name":"t"}}]}},"data":[{"secretKey":"k","remoteRef":{"key":"a"}}]})")
          .starts_with("spec.target.template.templateFrom[0].secret: not supported by rootseal"));
  CHECK(
      es_error(
          R"({"secretStoreRef":{"name":"s"},"target":{"template":{"templateFrom":[{"target":"Spec","literal":"a: b"}]}},"data":[{"secretKey":"k","remoteRef":{"key":"a"}}]})") ==
      "spec.target.template.templateFrom[0].target: must be Data, Annotations or Labels for a Secret target");
  CHECK(
      es_error(
          R"({"secretStoreRef":{"name":"s"},"target":{"template":{"templateFrom":[{"target":"Data"}]}},"data":[{"secretKey":"k","remoteRef":{"key":"a"}}]})") ==
      "spec.target.template.templateFrom[0]: needs a configMap or a literal");
  CHECK(es_error(R"("nope")") == "spec: must be an object");
}

TEST_CASE("SecretStores: vault token and AppRole, aws secretRef, host credentials annotation") {
  auto v = parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"ns1"},
    "spec":{"provider":{"vault":{"server":"https://vault:8200","path":"secret","namespace":"team",
      "auth":{"appRole":{"path":"approle","roleId":"r-1","secretRef":{"name":"approle","key":"secret-id"}}}}}}})"));
  REQUIRE(v.has_value());
  CHECK(v->provider == SecretStore::Provider::vault);
  CHECK(v->vault.namespace_ == "team");
  CHECK(v->vault.auth.kind == VaultAuth::Kind::app_role);
  CHECK(v->vault.auth.role_id == "r-1");
  CHECK(v->vault.auth.secret_id_ref.namespace_ == "ns1");

  auto a = parse_secret_store(json::parse(R"({"kind":"ClusterSecretStore","metadata":{"name":"aws"},
    "spec":{"provider":{"aws":{"service":"SecretsManager","region":"eu-west-1","auth":{"secretRef":{
      "accessKeyIDSecretRef":{"name":"aws","key":"id","namespace":"ops"},
      "secretAccessKeySecretRef":{"name":"aws","key":"secret","namespace":"ops"}}}}},
    "conditions":[{"namespaces":["team-a"]},{"namespaceRegexes":["^prod-"]},{"namespaceSelector":{"matchLabels":{"tier":"gold"}}}]}})"));
  REQUIRE(a.has_value());
  CHECK(a->kind == StoreKind::cluster_secret_store);
  CHECK(a->aws.region == "eu-west-1");
  CHECK(a->aws.access_key_id_ref.namespace_ == "ops");
  CHECK(namespace_allowed(*a, "team-a", {}));
  CHECK(namespace_allowed(*a, "prod-eu", {}));
  CHECK(namespace_allowed(*a, "other", {{"tier", "gold"}}));
  CHECK_FALSE(namespace_allowed(*a, "other", {{"tier", "silver"}}));
  CHECK_FALSE(namespace_allowed(*a, "team-b", {}));

  auto host = parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"ns1",
    "annotations":{"sync.rootseal.io/credentials":"central"}},"spec":{"provider":{"vault":{"server":"https://vault:8200"}}}})"));
  REQUIRE(host.has_value());
  CHECK(host->host_credentials == "central");
  CHECK(host->vault.auth.kind == VaultAuth::Kind::host);
}

TEST_CASE("SecretStores: vault kubernetes and jwt auth with a serviceAccountRef (ESO's namespace rules)") {
  auto err = [](std::string_view text) {
    auto r = parse_secret_store(json::parse(text));
    REQUIRE_FALSE(r.has_value());
    return r.error().message;
  };
  auto k = parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"team-a"},
    "spec":{"provider":{"vault":{"server":"https://vault:8200","path":"secret",
      "auth":{"kubernetes":{"role":"reader","serviceAccountRef":{"name":"app","audiences":["vault"]}}}}}}})"));
  REQUIRE(k.has_value());
  CHECK(k->vault.auth.kind == VaultAuth::Kind::kubernetes);
  CHECK(k->vault.auth.login_path == "kubernetes");
  CHECK(k->vault.auth.role == "reader");
  CHECK(k->vault.auth.has_service_account);
  CHECK(k->vault.auth.service_account == ServiceAccountRef{"app", "team-a", {"vault"}});
  CHECK(k->vault.auth.token_expiration_seconds == 600);
  // Its own namespace, named: fine; another: ESO's refusal.
  CHECK(parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"team-a"},
    "spec":{"provider":{"vault":{"server":"https://v","auth":{"kubernetes":{"role":"r",
      "serviceAccountRef":{"name":"app","namespace":"team-a"}}}}}}})"))
            .has_value());
  CHECK(err(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"team-b"},
    "spec":{"provider":{"vault":{"server":"https://v","auth":{"kubernetes":{"role":"r",
      "serviceAccountRef":{"name":"app","namespace":"team-a"}}}}}}})") ==
        "spec.provider.vault.auth.kubernetes.serviceAccountRef.namespace: namespace should either be empty or match "
        "the namespace of the SecretStore for a namespaced SecretStore");
  CHECK(err(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"team-b"},
    "spec":{"provider":{"vault":{"server":"https://v","auth":{"jwt":{"role":"r","kubernetesServiceAccountToken":{
      "serviceAccountRef":{"name":"app","namespace":"team-a"}}}}}}}})") ==
        "spec.provider.vault.auth.jwt.kubernetesServiceAccountToken.serviceAccountRef.namespace: namespace should "
        "either be empty or match the namespace of the SecretStore for a namespaced SecretStore");
  // A ClusterSecretStore may name a namespace, or leave it to the ExternalSecret's.
  auto c = parse_secret_store(json::parse(R"({"kind":"ClusterSecretStore","metadata":{"name":"v"},
    "spec":{"provider":{"vault":{"server":"https://v","auth":{"jwt":{"path":"k8s-jwt","role":" r ",
      "kubernetesServiceAccountToken":{"serviceAccountRef":{"name":"app"},"audiences":["a1"],"expirationSeconds":900}}}}}}})"));
  REQUIRE(c.has_value());
  CHECK(c->vault.auth.kind == VaultAuth::Kind::jwt);
  CHECK(c->vault.auth.login_path == "k8s-jwt");
  CHECK(c->vault.auth.role == "r");
  CHECK(c->vault.auth.service_account.namespace_.empty());
  CHECK(c->vault.auth.token_audiences == std::vector<std::string>{"a1"});
  CHECK(c->vault.auth.token_expiration_seconds == 900);
  auto j = parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"a"},
    "spec":{"provider":{"vault":{"server":"https://v","auth":{"jwt":{"role":"r",
      "kubernetesServiceAccountToken":{"serviceAccountRef":{"name":"app"}}}}}}}})"));
  REQUIRE(j.has_value());
  CHECK(j->vault.auth.login_path == "jwt");
  CHECK(j->vault.auth.token_audiences == std::vector<std::string>{"vault"});  // ESO's default
  auto s = parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"a"},
    "spec":{"provider":{"vault":{"server":"https://v","auth":{"kubernetes":{"mountPath":"k","role":"r",
      "secretRef":{"name":"jwt"}}}}}}})"));
  REQUIRE(s.has_value());
  CHECK(s->vault.auth.jwt_secret_ref == SecretKeyRef{"jwt", "token", "a"});  // ESO's default key
  CHECK(!s->vault.auth.has_service_account);
  CHECK(err(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"a"},"spec":{"provider":{"vault":{
    "server":"https://v","auth":{"kubernetes":{"role":"r"}}}}}})") ==
        "spec.provider.vault.auth.kubernetes: serviceAccountRef or secretRef is required (rootseald has no pod token "
        "of its own)");
  CHECK(err(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"a"},"spec":{"provider":{"vault":{
    "server":"https://v","auth":{"kubernetes":{"serviceAccountRef":{"name":"x"}}}}}}})") ==
        "spec.provider.vault.auth.kubernetes.role: required");
  CHECK(err(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"a"},"spec":{"provider":{"vault":{
    "server":"https://v","auth":{"jwt":{"role":"r"}}}}}})") ==
        "spec.provider.vault.auth.jwt: neither `secretRef` nor `kubernetesServiceAccountToken` was supplied as token "
        "source for jwt authentication");
  CHECK(err(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"a"},"spec":{"provider":{"vault":{
    "server":"https://v","auth":{"jwt":{"kubernetesServiceAccountToken":{"serviceAccountRef":{"name":"x"},
    "expirationSeconds":60}}}}}}})") ==
        "spec.provider.vault.auth.jwt.kubernetesServiceAccountToken.expirationSeconds: must be between 600 "
        "(Kubernetes' minimum) and 2^32");
  CHECK(err(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"a"},"spec":{"provider":{"vault":{
    "server":"https://v","auth":{"kubernetes":{"role":"r","serviceAccountRef":{"name":"x"}},
    "tokenSecretRef":{"name":"t","key":"k"}}}}}})") ==
        "spec.provider.vault.auth: exactly one of tokenSecretRef, appRole, kubernetes, jwt or cert");
  auto cert = parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"a"},
    "spec":{"provider":{"vault":{"server":"https://v","auth":{"cert":{"vaultRole":"web",
      "clientCert":{"name":"tls","key":"tls.crt"},"secretRef":{"name":"tls","key":"tls.key"}}}}}}})"));
  REQUIRE(cert.has_value());
  CHECK(cert->vault.auth.kind == VaultAuth::Kind::cert);
  CHECK(cert->vault.auth.login_path == "cert");
  CHECK(cert->vault.auth.role == "web");
  CHECK(cert->vault.auth.client_cert_ref == SecretKeyRef{"tls", "tls.crt", "a"});
  CHECK(cert->vault.auth.client_key_ref == SecretKeyRef{"tls", "tls.key", "a"});
  CHECK(err(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"a"},"spec":{"provider":{"vault":{
    "server":"https://v","auth":{"cert":{"clientCert":{"name":"tls","key":"tls.crt"}}}}}}})") ==
        "spec.provider.vault.auth.cert.secretRef: required");
  // AWS auth.jwt.serviceAccountRef (web identity): the same rules.
  auto aws = parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":{"name":"a","namespace":"team-a"},
    "spec":{"provider":{"aws":{"region":"eu-west-1","auth":{"jwt":{"serviceAccountRef":{"name":"app","audiences":["x"]}}}}}}})"));
  REQUIRE(aws.has_value());
  CHECK(aws->aws.has_jwt);
  CHECK(!aws->aws.has_secret_ref);
  CHECK(aws->aws.jwt_service_account == ServiceAccountRef{"app", "team-a", {"x"}});
  CHECK(err(R"({"kind":"SecretStore","metadata":{"name":"a","namespace":"team-b"},"spec":{"provider":{"aws":{
    "region":"eu-west-1","auth":{"jwt":{"serviceAccountRef":{"name":"app","namespace":"team-a"}}}}}}})") ==
        "spec.provider.aws.auth.jwt.serviceAccountRef.namespace: namespace should either be empty or match the "
        "namespace of the SecretStore for a namespaced SecretStore");
  CHECK(err(R"({"kind":"SecretStore","metadata":{"name":"a","namespace":"a"},"spec":{"provider":{"aws":{
    "region":"eu-west-1","auth":{"jwt":{}}}}}})") == "spec.provider.aws.auth.jwt.serviceAccountRef: required");
}

TEST_CASE("invalid SecretStores are refused with the field path") {
  auto err = [](std::string_view text) {
    auto r = parse_secret_store(json::parse(text));
    REQUIRE_FALSE(r.has_value());
    return r.error().message;
  };
  CHECK(err(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"a"},"spec":{"provider":{"akeyless":{}}}})") ==
        "spec.provider.akeyless: provider not served by rootseal (vault, aws, azurekv, gcpsm, conjur; push targets: "
        "aws, azurekv, gcpsm)");
  CHECK(
      err(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"a"},"spec":{"provider":{"vault":{"server":"vault:8200","auth":{}}}}})") ==
      "spec.provider.vault.server: must be an http:// or https:// URL");
  CHECK(
      err(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"a"},"spec":{"provider":{"vault":{"server":"http://v","version":"v3","auth":{}}}}})") ==
      "spec.provider.vault.version: unsupported value 'v3' (supported: v2, v1)");
  CHECK(
      err(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"a"},"spec":{"provider":{"vault":{"server":"http://v",
     "auth":{"tokenSecretRef":{"name":"t","key":"k","namespace":"other"}}}}}})") ==
      "spec.provider.vault.auth.tokenSecretRef.namespace: a SecretStore may only reference Secrets in its own "
      "namespace");
  CHECK(err(R"({"kind":"ClusterSecretStore","metadata":{"name":"v"},"spec":{"provider":{"vault":{"server":"http://v",
     "auth":{"tokenSecretRef":{"name":"t","key":"k"}}}}}})") ==
        "spec.provider.vault.auth.tokenSecretRef.namespace: required in a ClusterSecretStore");
  CHECK(
      err(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"a"},"spec":{"provider":{"aws":{"region":"x"}}}})")
          .starts_with("spec.provider.aws.auth.secretRef: required"));
  CHECK(err(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"a"},"spec":{"provider":{"aws":{"region":"x",
     "auth":{"secretRef":{"accessKeyIDSecretRef":{"name":"a","key":"b"},"secretAccessKeySecretRef":{"name":"a","key":"c"}}}}},
     "conditions":[{"namespaces":["a"]}]}})") == "spec.conditions: only allowed on a ClusterSecretStore");
  CHECK(err(R"({"kind":"ClusterSecretStore","metadata":{"name":"v"},"spec":{"provider":{"vault":{"server":"http://v",
     "auth":{"tokenSecretRef":{"name":"t","key":"k","namespace":"n"}}}},"conditions":[{"namespaceRegexes":["(["]}]}})") ==
        "spec.conditions[0].namespaceRegexes[0]: not a valid regular expression");
}

TEST_CASE("SecretStores: azurekv WorkloadIdentity (serviceAccountRef, ESO's namespace rules, refusals)") {
  auto z = parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":{"name":"kv","namespace":"team-a"},
    "spec":{"provider":{"azurekv":{"vaultUrl":"https://kv.vault.azure.net","authType":"WorkloadIdentity",
      "serviceAccountRef":{"name":"app","audiences":["extra"]}}}}})"));
  REQUIRE(z.has_value());
  CHECK(z->azurekv.workload_identity);
  CHECK_FALSE(z->azurekv.has_secret_ref);
  CHECK_FALSE(z->azurekv.has_client_id_ref);
  CHECK(z->azurekv.service_account.name == "app");
  CHECK(z->azurekv.service_account.namespace_ == "team-a");
  CHECK(z->azurekv.service_account.audiences == std::vector<std::string>{"extra"});
  // The client id from a Secret (ESO's authSecretRef.clientId) with the ServiceAccount's token.
  auto zc = parse_secret_store(json::parse(R"({"kind":"ClusterSecretStore","metadata":{"name":"kv"},
    "spec":{"provider":{"azurekv":{"vaultUrl":"https://kv.vault.azure.net","authType":"WorkloadIdentity",
      "tenantId":"t","serviceAccountRef":{"name":"app","namespace":"ops"},
      "authSecretRef":{"clientId":{"name":"ids","key":"client","namespace":"ops"}}}}}})"));
  REQUIRE(zc.has_value());
  CHECK(zc->azurekv.has_client_id_ref);
  CHECK(zc->azurekv.client_id_ref == SecretKeyRef{"ids", "client", "ops"});
  CHECK(zc->azurekv.service_account.namespace_ == "ops");
  const auto err = [](std::string_view text) {
    auto r = parse_secret_store(json::parse(text));
    REQUIRE_FALSE(r.has_value());
    return r.error().message;
  };
  CHECK(err(R"({"kind":"SecretStore","metadata":{"name":"kv","namespace":"a"},"spec":{"provider":{"azurekv":{
    "vaultUrl":"https://kv.vault.azure.net","authType":"WorkloadIdentity",
    "serviceAccountRef":{"name":"app","namespace":"b"}}}}})") ==
        "spec.provider.azurekv.serviceAccountRef.namespace: " + std::string(kMsgServiceAccountNamespace));
  CHECK(err(R"({"kind":"SecretStore","metadata":{"name":"kv","namespace":"a"},"spec":{"provider":{"azurekv":{
    "vaultUrl":"https://kv.vault.azure.net","authType":"WorkloadIdentity"}}}})") ==
        "spec.provider.azurekv.serviceAccountRef: required with authType WorkloadIdentity (rootseald has no pod token "
        "of its own)");
  CHECK(err(R"({"kind":"SecretStore","metadata":{"name":"kv","namespace":"a"},"spec":{"provider":{"azurekv":{
    "vaultUrl":"https://kv.vault.azure.net","authType":"WorkloadIdentity","serviceAccountRef":{"name":"app"},
    "authSecretRef":{"clientId":{"name":"s","key":"id"},"clientSecret":{"name":"s","key":"secret"}}}}}})") ==
        "spec.provider.azurekv.authSecretRef.clientSecret: not used with authType WorkloadIdentity (remove it)");
  CHECK(err(R"({"kind":"SecretStore","metadata":{"name":"kv","namespace":"a"},"spec":{"provider":{"azurekv":{
    "vaultUrl":"https://kv.vault.azure.net","serviceAccountRef":{"name":"app"},
    "authSecretRef":{"clientId":{"name":"s","key":"id"},"clientSecret":{"name":"s","key":"secret"}},"tenantId":"t"}}}})") ==
        "spec.provider.azurekv.serviceAccountRef: only used with authType WorkloadIdentity");
  CHECK(err(R"({"kind":"SecretStore","metadata":{"name":"kv","namespace":"a"},"spec":{"provider":{"azurekv":{
    "vaultUrl":"https://kv.vault.azure.net","authType":"ManagedIdentity"}}}})")
            .find("authType") != std::string::npos);
  CHECK(
      err(R"({"kind":"SecretStore","metadata":{"name":"kv","namespace":"a","annotations":{"sync.rootseal.io/credentials":"h"}},
    "spec":{"provider":{"azurekv":{"vaultUrl":"https://kv.vault.azure.net","authType":"WorkloadIdentity",
    "serviceAccountRef":{"name":"app"}}}}})") ==
      "spec.provider.azurekv.authType: WorkloadIdentity is the store's own identity (no host credentials)");
}

TEST_CASE("SecretStores: gcpsm workloadIdentity and workloadIdentityFederation (serviceAccountRef, refusals)") {
  auto gke = parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":{"name":"g","namespace":"team-a"},
    "spec":{"provider":{"gcpsm":{"projectID":"p","auth":{"workloadIdentity":{"serviceAccountRef":{"name":"app"},
      "clusterProjectID":"cp","clusterLocation":"europe-west1","clusterName":"c1"}}}}}})"));
  REQUIRE(gke.has_value());
  CHECK(gke->gcpsm.federation == GcpProviderSpec::Federation::gke);
  CHECK(gke->gcpsm.service_account.namespace_ == "team-a");
  CHECK(gke->gcpsm.cluster_project_id == "cp");
  CHECK(gke->gcpsm.cluster_location == "europe-west1");
  CHECK(gke->gcpsm.cluster_name == "c1");
  auto wif = parse_secret_store(json::parse(R"({"kind":"ClusterSecretStore","metadata":{"name":"g"},
    "spec":{"provider":{"gcpsm":{"projectID":"p","auth":{"workloadIdentityFederation":{
      "serviceAccountRef":{"name":"app"},"audience":"//iam.googleapis.com/x","gcpServiceAccountEmail":"r@p.iam.gserviceaccount.com"}}}}}})"));
  REQUIRE(wif.has_value());
  CHECK(wif->gcpsm.federation == GcpProviderSpec::Federation::pool);
  CHECK(wif->gcpsm.service_account.namespace_.empty());  // the ExternalSecret's namespace
  CHECK(wif->gcpsm.audience == "//iam.googleapis.com/x");
  CHECK(wif->gcpsm.service_account_email == "r@p.iam.gserviceaccount.com");
  const auto err = [](std::string_view auth) {
    auto r = parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":{"name":"g","namespace":"a"},
      "spec":{"provider":{"gcpsm":{"projectID":"p","auth":)" +
                                            std::string(auth) + "}}}}"));
    REQUIRE_FALSE(r.has_value());
    return r.error().message;
  };
  CHECK(err(R"({"workloadIdentityFederation":{"serviceAccountRef":{"name":"app","namespace":"b"},"audience":"x"}})") ==
        "spec.provider.gcpsm.auth.workloadIdentityFederation.serviceAccountRef.namespace: " +
            std::string(kMsgServiceAccountNamespace));
  CHECK(err(R"({"workloadIdentityFederation":{"serviceAccountRef":{"name":"app"}}})") ==
        "spec.provider.gcpsm.auth.workloadIdentityFederation.audience: invalid workloadIdentityFederation config: "
        "audience must be provided, when serviceAccountRef or awsSecurityCredentials is provided");
  CHECK(err(R"({"workloadIdentityFederation":{"credConfig":{"name":"c","key":"k"},"audience":"x"}})")
            .find("credConfig") != std::string::npos);
  CHECK(err(R"({"workloadIdentity":{"serviceAccountRef":{"name":"app"},"clusterProjectID":"cp","clusterName":"c"}})") ==
        "spec.provider.gcpsm.auth.workloadIdentity.clusterLocation: required (rootseald cannot ask GKE's metadata "
        "server)");
  CHECK(err(R"({"workloadIdentity":{"clusterProjectID":"cp","clusterLocation":"l","clusterName":"c"}})") ==
        "spec.provider.gcpsm.auth.workloadIdentity.serviceAccountRef: required");
  CHECK(err(R"({"secretRef":{"secretAccessKeySecretRef":{"name":"s","key":"k"}},
    "workloadIdentityFederation":{"serviceAccountRef":{"name":"app"},"audience":"x"}})") ==
        "spec.provider.gcpsm.auth: exactly one of secretRef, workloadIdentity or workloadIdentityFederation");
  auto hosted = parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":{"name":"g","namespace":"a",
    "annotations":{"sync.rootseal.io/credentials":"h"}},"spec":{"provider":{"gcpsm":{"projectID":"p","auth":{
    "workloadIdentityFederation":{"serviceAccountRef":{"name":"app"},"audience":"x"}}}}}})"));
  REQUIRE_FALSE(hosted.has_value());
  CHECK(hosted.error().message ==
        "spec.provider.gcpsm.auth: workload identity is the store's own identity (no host credentials)");
}

TEST_CASE("SecretStores: conjur (apikey, jwt with serviceAccountRef or secretRef, caBundle, refusals)") {
  auto k = parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":{"name":"c","namespace":"a"},
    "spec":{"provider":{"conjur":{"url":"https://conjur.example.com/","caBundle":"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==",
      "auth":{"apikey":{"account":"myorg","userRef":{"name":"c","key":"user"},"apiKeyRef":{"name":"c","key":"key"}}}}}}})"));
  REQUIRE(k.has_value());
  CHECK(k->provider == SecretStore::Provider::conjur);
  CHECK(to_string(k->provider) == "conjur");
  CHECK(k->conjur.url == "https://conjur.example.com");
  CHECK(k->conjur.ca_bundle == "-----BEGIN CERTIFICATE-----\n");
  CHECK(k->conjur.account == "myorg");
  CHECK_FALSE(k->conjur.jwt);
  CHECK(k->conjur.api_key_ref == SecretKeyRef{"c", "key", "a"});
  auto j = parse_secret_store(json::parse(R"({"kind":"ClusterSecretStore","metadata":{"name":"c"},
    "spec":{"provider":{"conjur":{"url":"https://conjur","caBundle":"-----BEGIN CERTIFICATE-----x",
      "auth":{"jwt":{"account":"myorg","serviceID":"k8s","hostId":"k8s/app","serviceAccountRef":{"name":"app"}}}}}}})"));
  REQUIRE(j.has_value());
  CHECK(j->conjur.jwt);
  CHECK(j->conjur.ca_bundle == "-----BEGIN CERTIFICATE-----x");
  CHECK(j->conjur.service_id == "k8s");
  CHECK(j->conjur.host_id == "k8s/app");
  CHECK(j->conjur.has_service_account);
  auto js = parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":{"name":"c","namespace":"a"},
    "spec":{"provider":{"conjur":{"url":"https://conjur","auth":{"jwt":{"account":"o","serviceID":"s",
      "secretRef":{"name":"jwt"}}}}}}})"));
  REQUIRE(js.has_value());
  CHECK(js->conjur.jwt_secret_ref == SecretKeyRef{"jwt", "token", "a"});  // ESO: the key defaults to "token"
  const auto err = [](std::string_view conjur, std::string_view md = R"({"name":"c","namespace":"a"})") {
    auto r = parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":)" + std::string(md) +
                                            R"(,"spec":{"provider":{"conjur":)" + std::string(conjur) + "}}}"));
    REQUIRE_FALSE(r.has_value());
    return r.error().message;
  };
  CHECK(
      err(R"({"url":"https://c","auth":{"jwt":{"account":"o","serviceID":"s","serviceAccountRef":{"name":"x","namespace":"b"}}}})") ==
      "spec.provider.conjur.auth.jwt.serviceAccountRef.namespace: " + std::string(kMsgServiceAccountNamespace));
  CHECK(err(R"({"url":"https://c","auth":{"jwt":{"account":"o","serviceID":"s"}}})") ==
        "spec.provider.conjur.auth.jwt: exactly one of serviceAccountRef or secretRef");
  CHECK(err(R"({"url":"https://c","auth":{}})") == "spec.provider.conjur.auth: exactly one of apikey or jwt");
  CHECK(err(R"({"url":"https://c","auth":{"apikey":{"account":"o","userRef":{"name":"u","key":"k"}}}})") ==
        "spec.provider.conjur.auth.apikey.apiKeyRef: required");
  CHECK(err(R"({"url":"ftp://c","auth":{"apikey":{"account":"o"}}})") ==
        "spec.provider.conjur.url: must be an https:// URL");
  CHECK(err(R"({"url":"https://c","caBundle":"not base64!","auth":{"apikey":{"account":"o"}}})") ==
        "spec.provider.conjur.caBundle: must be a PEM bundle or its base64");
  CHECK(err(R"({"url":"https://c","auth":{"cert":{"account":"o"}}})") ==
        "spec.provider.conjur.auth.cert: not supported by rootseal");
  CHECK(err(R"({"url":"https://c","auth":{"apikey":{"account":"o"}}})",
            R"({"name":"c","namespace":"a","annotations":{"sync.rootseal.io/credentials":"x"}})") ==
        "spec.provider.conjur: conjur stores carry their own identity (no host credentials)");
}

TEST_CASE("SecretStores: azurekv and gcpsm (push targets) with ESO's field names") {
  auto z = parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":{"name":"kv","namespace":"team-a"},
    "spec":{"provider":{"azurekv":{"vaultUrl":"https://team-a-kv.vault.azure.net/","tenantId":"t-1",
      "authType":"ServicePrincipal","environmentType":"ChinaCloud",
      "authSecretRef":{"clientId":{"name":"azure","key":"client-id"},"clientSecret":{"name":"azure","key":"client-secret"}}}}}})"));
  REQUIRE(z.has_value());
  CHECK(z->provider == SecretStore::Provider::azurekv);
  CHECK(to_string(z->provider) == "azurekv");
  CHECK(z->azurekv.vault_url == "https://team-a-kv.vault.azure.net");
  CHECK(z->azurekv.tenant_id == "t-1");
  CHECK(z->azurekv.authority_host == "https://login.chinacloudapi.cn");
  CHECK(z->azurekv.has_secret_ref);
  CHECK(z->azurekv.client_id_ref == SecretKeyRef{"azure", "client-id", "team-a"});
  CHECK(z->azurekv.client_secret_ref == SecretKeyRef{"azure", "client-secret", "team-a"});

  auto zd = parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":{"name":"kv","namespace":"team-a",
    "annotations":{"sync.rootseal.io/credentials":"azure-prod"}},
    "spec":{"provider":{"azurekv":{"vaultUrl":"https://kv.vault.azure.net"}}}})"));
  REQUIRE(zd.has_value());
  CHECK(zd->azurekv.authority_host == "https://login.microsoftonline.com");
  CHECK(zd->azurekv.environment_type == "PublicCloud");
  CHECK_FALSE(zd->azurekv.has_secret_ref);
  CHECK(zd->host_credentials == "azure-prod");

  auto g = parse_secret_store(json::parse(R"({"kind":"ClusterSecretStore","metadata":{"name":"gcp"},
    "spec":{"provider":{"gcpsm":{"projectID":"my-project","auth":{"secretRef":{
      "secretAccessKeySecretRef":{"name":"gcp","key":"sa.json","namespace":"ops"}}}}}}})"));
  REQUIRE(g.has_value());
  CHECK(g->provider == SecretStore::Provider::gcpsm);
  CHECK(g->gcpsm.project_id == "my-project");
  CHECK(g->gcpsm.service_account_ref == SecretKeyRef{"gcp", "sa.json", "ops"});

  auto gh = parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":{"name":"gcp","namespace":"a",
    "annotations":{"sync.rootseal.io/credentials":"gcp-prod"}},"spec":{"provider":{"gcpsm":{}}}})"));
  REQUIRE(gh.has_value());
  CHECK(gh->gcpsm.project_id.empty());
  CHECK_FALSE(gh->gcpsm.has_secret_ref);

  auto aws = parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":{"name":"aws","namespace":"a",
    "annotations":{"sync.rootseal.io/credentials":"moto"}},"spec":{"provider":{"aws":{"region":"eu-west-1",
    "secretsManager":{"recoveryWindowInDays":7}}}}})"));
  REQUIRE(aws.has_value());
  CHECK(aws->aws.recovery_window_days == 7);
  CHECK_FALSE(aws->aws.force_delete_without_recovery);
}

TEST_CASE("invalid azurekv and gcpsm stores are refused with the field path") {
  auto err = [](std::string_view provider) {
    auto r = parse_secret_store(
        json::parse(R"({"kind":"SecretStore","metadata":{"name":"v","namespace":"a"},"spec":{"provider":)" +
                    std::string(provider) + "}}"));
    REQUIRE_FALSE(r.has_value());
    return r.error().message;
  };
  const std::string refs =
      R"("authSecretRef":{"clientId":{"name":"z","key":"id"},"clientSecret":{"name":"z","key":"s"}})";
  CHECK(err(R"({"azurekv":{"tenantId":"t"}})") == "spec.provider.azurekv.vaultUrl: required");
  CHECK(err(R"({"azurekv":{"vaultUrl":"kv.vault.azure.net"}})") ==
        "spec.provider.azurekv.vaultUrl: must be an https:// URL");
  CHECK(err(R"({"azurekv":{"vaultUrl":"https://kv","tenantId":"t","authType":"ManagedIdentity",)" + refs + "}}") ==
        "spec.provider.azurekv.authType: unsupported value 'ManagedIdentity' (supported: ServicePrincipal, "
        "WorkloadIdentity)");
  CHECK(err(R"({"azurekv":{"vaultUrl":"https://kv","tenantId":"t","environmentType":"GermanCloud",)" + refs + "}}") ==
        "spec.provider.azurekv.environmentType: unsupported value 'GermanCloud' (supported: PublicCloud, "
        "USGovernmentCloud, ChinaCloud)");
  CHECK(err(R"({"azurekv":{"vaultUrl":"https://kv",)" + refs + "}}") ==
        "spec.provider.azurekv.tenantId: required with authSecretRef");
  CHECK(
      err(R"({"azurekv":{"vaultUrl":"https://kv","tenantId":"t","authSecretRef":{"clientId":{"name":"z","key":"id"}}}})") ==
      "spec.provider.azurekv.authSecretRef.clientSecret: required");
  CHECK(err(R"({"azurekv":{"vaultUrl":"https://kv","tenantId":"t","authSecretRef":{"clientId":{"name":"z","key":"id"},
       "clientCertificate":{"name":"z","key":"c"}}}})") ==
        "spec.provider.azurekv.authSecretRef.clientCertificate: not supported by rootseal");
  CHECK(err(R"({"azurekv":{"vaultUrl":"https://kv","tenantId":"t"}})")
            .starts_with("spec.provider.azurekv.authSecretRef: required (or annotate"));
  CHECK(
      err(R"({"azurekv":{"vaultUrl":"https://kv","tenantId":"t","authSecretRef":{"clientId":{"name":"z","key":"id","namespace":"b"},
       "clientSecret":{"name":"z","key":"s"}}}})") ==
      "spec.provider.azurekv.authSecretRef.clientId.namespace: a SecretStore may only reference Secrets in its own "
      "namespace");
  CHECK(err(R"({"gcpsm":{"projectID":"p"}})").starts_with("spec.provider.gcpsm.auth.secretRef: required (or annotate"));
  CHECK(err(R"({"gcpsm":{"auth":{"secretRef":{"secretAccessKeySecretRef":{"name":"g","key":"k"}}}}})") ==
        "spec.provider.gcpsm.projectID: required");
  CHECK(err(R"({"gcpsm":{"projectID":"p","auth":{"secretRef":{}}}})") ==
        "spec.provider.gcpsm.auth.secretRef.secretAccessKeySecretRef: required");
  CHECK(err(R"({"gcpsm":{"projectID":"p","auth":{"workloadIdentity":{"clusterLocation":"x"}}}})") ==
        "spec.provider.gcpsm.auth.workloadIdentity.serviceAccountRef: required");
  CHECK(
      err(R"({"gcpsm":{"projectID":"p","location":"europe-west1","auth":{"secretRef":{"secretAccessKeySecretRef":{"name":"g","key":"k"}}}}})") ==
      "spec.provider.gcpsm.location: not supported by rootseal");
  const std::string aws_auth =
      R"("auth":{"secretRef":{"accessKeyIDSecretRef":{"name":"a","key":"b"},"secretAccessKeySecretRef":{"name":"a","key":"c"}}})";
  CHECK(err(R"({"aws":{"region":"x","secretsManager":{"recoveryWindowInDays":3},)" + aws_auth + "}}") ==
        "spec.provider.aws.secretsManager.recoveryWindowInDays: must be between 7 and 30");
  CHECK(err(R"({"aws":{"region":"x","secretsManager":{"recoveryWindowInDays":7,"forceDeleteWithoutRecovery":true},)" +
            aws_auth + "}}") ==
        "spec.provider.aws.secretsManager.recoveryWindowInDays: cannot be combined with forceDeleteWithoutRecovery");
}

TEST_CASE("PushSecrets v1alpha1 parse, with the selector.remoteRef extension") {
  auto p = parse_push_secret(json::parse(R"({"apiVersion":"external-secrets.io/v1alpha1","kind":"PushSecret",
    "metadata":{"name":"p","namespace":"n"},"spec":{"refreshInterval":"10m","updatePolicy":"IfNotExists","deletionPolicy":"Delete",
    "secretStoreRefs":[{"name":"aws","kind":"ClusterSecretStore"}],"selector":{"secret":{"name":"src"}},
    "data":[{"match":{"secretKey":"pw","remoteRef":{"remoteKey":"app/pw","property":"password"}}}]}})"));
  REQUIRE(p.has_value());
  CHECK(p->source_secret == "src");
  CHECK(p->update_policy == UpdatePolicy::if_not_exists);
  CHECK(p->deletion_policy == PushDeletionPolicy::delete_);
  CHECK(p->refresh_interval == 10min);
  CHECK(p->data.at(0).remote_key == "app/pw");
  CHECK(p->data.at(0).property == "password");

  auto r = parse_push_secret(json::parse(R"({"apiVersion":"external-secrets.io/v1alpha1","kind":"PushSecret",
    "metadata":{"name":"p","namespace":"n"},"spec":{"secretStoreRefs":[{"name":"aws"}],
    "selector":{"remoteRef":{"storeRef":{"name":"vault"},"key":"db/creds","version":"2"}},
    "data":[{"match":{"remoteRef":{"remoteKey":"db-creds"}}}]}})"));
  REQUIRE(r.has_value());
  REQUIRE(r->source_remote.has_value());
  CHECK(r->source_remote->store.name == "vault");
  CHECK(r->source_remote->ref.key == "db/creds");
  CHECK(r->source_remote->ref.version == "2");

  auto bad = parse_push_secret(json::parse(R"({"apiVersion":"external-secrets.io/v1alpha1","kind":"PushSecret",
    "metadata":{"name":"p","namespace":"n"},"spec":{"secretStoreRefs":[{"name":"aws"}],"selector":{"secret":{"name":"s"}},
    "data":[{"match":{"secretKey":"k","remoteRef":{}}}]}})"));
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message == "spec.data[0].match.remoteRef.remoteKey: required");
}

// Found by tests/fuzz (fuzz_eso_manifest): a generation beyond int64 threw out of the parser.
TEST_CASE("a metadata.generation beyond int64 is a clear error, never thrown") {
  const auto v = json::parse(R"({"apiVersion":"external-secrets.io/v1","kind":"ExternalSecret",
      "metadata":{"name":"db","namespace":"team-a","generation":11111111111111111111},"spec":{}})");
  rootseal::kms::Result<ObjectMeta> r = rootseal::kms::fail(rootseal::kms::Errc::internal, "not run");
  REQUIRE_NOTHROW(r = parse_meta(v));
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message == "metadata.generation: must be an integer of at most 2^63-1");
  CHECK_NOTHROW(parse_external_secret(v));
  CHECK_FALSE(parse_external_secret(v).has_value());
}

// Issue 17 item 3: data[].metadata was ignored while the status said Synced.
TEST_CASE("PushSecret data[].metadata: ESO's PushSecretMetadata for AWS, every other key refused by name") {
  auto with = [](std::string_view metadata) {
    return parse_push_secret(json::parse(R"({"apiVersion":"external-secrets.io/v1alpha1","kind":"PushSecret",
      "metadata":{"name":"p","namespace":"n"},"spec":{"secretStoreRefs":[{"name":"aws"}],"selector":{"secret":{"name":"s"}},
      "data":[{"match":{"secretKey":"k","remoteRef":{"remoteKey":"r"}}},
              {"match":{"secretKey":"k","remoteRef":{"remoteKey":"r2"}},"metadata":)" +
                                         std::string(metadata) + "}]}}"));
  };
  const std::string head = R"({"apiVersion":"kubernetes.external-secrets.io/v1alpha1","kind":"PushSecretMetadata",)";
  // ESO's own snippet (docs/snippets/aws-sm-push-secret-with-metadata.yaml) spells kmsKeyID: Go's
  // encoding/json matches field names ignoring case.
  auto ok = with(head + R"("spec":{"kmsKeyID":"bb123123-b2b0-4f60-ac3a-44a13f0e6b6c","secretPushFormat":"string",
      "description":"secret 'managed-by:secret-manager'","tags":{"secret-store":"teamb","refresh-interval":"1h"},
      "resourcePolicy":{"blockPublicPolicy":true,"policySourceRef":{"kind":"ConfigMap","name":"pol","key":"policy.json"}}}})");
  REQUIRE(ok.has_value());
  CHECK_FALSE(ok->data[0].metadata.has_value());
  REQUIRE(ok->data[1].metadata.has_value());
  const auto& md = *ok->data[1].metadata;
  CHECK(md.kms_key_id == "bb123123-b2b0-4f60-ac3a-44a13f0e6b6c");
  CHECK(md.push_as_string);
  CHECK(md.description == "secret 'managed-by:secret-manager'");
  CHECK(md.tags ==
        std::map<std::string, std::string, std::less<>>{{"refresh-interval", "1h"}, {"secret-store", "teamb"}});
  REQUIRE(md.resource_policy.has_value());
  CHECK(md.resource_policy->block_public_policy == std::optional<bool>(true));
  REQUIRE(ok->data[1].policy_source.has_value());
  CHECK_FALSE(ok->data[1].policy_source->secret);
  CHECK(ok->data[1].policy_source->name == "pol");
  CHECK(ok->data[1].policy_source->key == "policy.json");
  // The defaults: binary, nothing else; "binary" spelled out is the same.
  for (const std::string spec : {R"("spec":{}})", R"("spec":{"secretPushFormat":"binary"}})", R"("spec":null})"}) {
    INFO(spec);
    auto d = with(head + spec);
    REQUIRE(d.has_value());
    REQUIRE(d->data[1].metadata.has_value());
    CHECK_FALSE(d->data[1].metadata->push_as_string);
    CHECK(d->data[1].metadata->tags.empty());
    CHECK_FALSE(d->data[1].metadata->resource_policy.has_value());
  }
  CHECK(with("null")->data[1].metadata == std::nullopt);

  auto err = [&](std::string_view md_text) {
    auto r = with(md_text);
    REQUIRE_FALSE(r.has_value());
    return r.error().message;
  };
  const std::string p = "spec.data[1].metadata";
  CHECK(err(head + R"("spec":{"kmsKeyName":"k"}})") ==
        p + ".spec.kmsKeyName: unknown field (rootseal applies PushSecretMetadata to AWS "
            "Secrets Manager, Azure Key Vault and GCP Secret Manager, whose fields are: tags, description, "
            "secretPushFormat, kmsKeyId, resourcePolicy, replicationLocations, contentType, expirationDate, labels, "
            "annotations, mergePolicy, topics, cmekKeyName, replicationLocation)");
  {  // GCP's fields: labels, annotations, mergePolicy
    auto gcp =
        with(head + R"("spec":{"labels":{"team":"a"},"annotations":{"n":"x"},"mergePolicy":"Merge","topics":["t"]}})");
    REQUIRE(gcp.has_value());
    const auto& gcp_md = *gcp->data[1].metadata;
    CHECK(gcp_md.labels == std::map<std::string, std::string, std::less<>>{{"team", "a"}});
    CHECK(gcp_md.annotations == std::map<std::string, std::string, std::less<>>{{"n", "x"}});
    CHECK(gcp_md.merge_labels);
    CHECK(gcp_md.fields == std::vector<std::string>{"labels", "annotations", "mergePolicy", "topics"});
  }
  CHECK(err(head + R"("spec":{"labels":{"managed-by":"x"}}})") ==
        p + ".spec.labels.managed-by: cannot be set: rootseal's own label");
  // Azure's fields: contentType, expirationDate (RFC 3339, as Unix seconds); the fields given are recorded.
  {
    auto az = with(
        head +
        R"("spec":{"contentType":"application/json","expirationDate":"2030-01-02T03:04:05+01:00","tags":{"t":"1"}}})");
    REQUIRE(az.has_value());
    const auto& azure_md = *az->data[1].metadata;
    CHECK(azure_md.content_type == "application/json");
    CHECK(azure_md.expires == std::optional<std::int64_t>(1893549845));  // 2030-01-02T02:04:05Z
    CHECK(azure_md.fields == std::vector<std::string>{"contentType", "expirationDate", "tags"});
  }
  CHECK(err(head + R"("spec":{"expirationDate":"2030-01-02"}})") ==
        p + ".spec.expirationDate: error parsing expiration date in metadata: \"2030-01-02\". Expected format: "
            "YYYY-MM-DDTHH:MM:SSZ (RFC3339). Example: 2024-12-31T20:00:00Z");
  CHECK(err(head + R"("spec":{},"extra":1})") == p + ".extra: unknown field (known: kind, apiVersion, spec)");
  CHECK(err(head + R"("spec":{"tags":{"a":"1"},"Tags":{"b":"2"}}})") == p + ".spec.Tags: given twice (field tags)");
  CHECK(err(head + R"("spec":{"tags":{"managed-by":"me"}}})") ==
        p + ".spec.tags.managed-by: cannot be set: rootseal's own tag (ESO: Cannot specify a 'managed-by' tag)");
  CHECK(err(head + R"("spec":{"tags":{"a":1}}})") == p + ".spec.tags.a: must be a string");
  CHECK(err(head + R"("spec":{"secretPushFormat":"text"}})") ==
        p + ".spec.secretPushFormat: invalid secret push format: text (binary or string)");
  CHECK(err(head + R"("spec":{"replicationLocations":["us-east-1"]}})") ==
        p + ".spec.replicationLocations: not supported by rootseal (replica regions are not managed); remove it");
  CHECK(err(head + R"("spec":{"resourcePolicy":{}}})") == p + ".spec.resourcePolicy.policySourceRef: required");
  CHECK(err(head + R"("spec":{"resourcePolicy":{"policySourceRef":{"kind":"Vault","name":"a","key":"b"}}}})") ==
        p + ".spec.resourcePolicy.policySourceRef.kind: unsupported PolicySourceRef kind: Vault (must be ConfigMap or "
            "Secret)");
  CHECK(err(head + R"("spec":{"resourcePolicy":{"policySourceRef":{"kind":"Secret","name":"a"}}}})") ==
        p + ".spec.resourcePolicy.policySourceRef.key: required");
  CHECK(
      err(head +
          R"("spec":{"resourcePolicy":{"blockPublicPolicy":"yes","policySourceRef":{"kind":"Secret","name":"a","key":"b"}}}})") ==
      p + ".spec.resourcePolicy.blockPublicPolicy: must be true or false");
  CHECK(err(R"({"apiVersion":"v1","kind":"PushSecretMetadata"})") ==
        p + ".apiVersion: unexpected apiVersion \"v1\", expected \"kubernetes.external-secrets.io/v1alpha1\"");
  CHECK(err(R"({"apiVersion":"kubernetes.external-secrets.io/v1alpha1","kind":"Other"})") ==
        p + ".kind: unexpected kind \"Other\", expected \"PushSecretMetadata\"");
  CHECK(err("{}") ==
        p + ".apiVersion: unexpected apiVersion \"\", expected \"kubernetes.external-secrets.io/v1alpha1\"");
  CHECK(err(R"("text")") == p + ": must be an object");
  CHECK(err("[1]") == p + ": must be an object");
}

TEST_CASE("remoteRef.metadataPolicy: None and Fetch, anything else refused") {
  auto es = [](std::string_view policy) {
    return parse_external_secret(json::parse(R"({"apiVersion":"external-secrets.io/v1","kind":"ExternalSecret",
      "metadata":{"name":"e","namespace":"n"},"spec":{"secretStoreRef":{"name":"s"},
      "data":[{"secretKey":"k","remoteRef":{"key":"r","property":"team","metadataPolicy":")" +
                                             std::string(policy) + R"("}}],
      "dataFrom":[{"extract":{"key":"r2","metadataPolicy":")" +
                                             std::string(policy) + R"("}}]}})"));
  };
  auto fetch = es("Fetch");
  REQUIRE(fetch.has_value());
  CHECK(fetch->data[0].remote_ref.fetch_metadata);
  CHECK(fetch->data_from[0].extract.fetch_metadata);
  auto none = es("None");
  REQUIRE(none.has_value());
  CHECK_FALSE(none->data[0].remote_ref.fetch_metadata);
  CHECK_FALSE(none->data_from[0].extract.fetch_metadata);
  auto bad = es("Always");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message ==
        "spec.data[0].remoteRef.metadataPolicy: unsupported value 'Always' (supported: None, Fetch)");
}

TEST_CASE("SecretStores: aws role chain (additionalRoles, role, externalID, sessionTags, transitiveTagKeys)") {
  auto err = [](std::string_view text) {
    auto r = parse_secret_store(json::parse(text));
    REQUIRE_FALSE(r.has_value());
    return r.error().message;
  };
  auto s = parse_secret_store(json::parse(R"({"kind":"SecretStore","metadata":{"name":"a","namespace":"team-a"},
    "spec":{"provider":{"aws":{"service":"SecretsManager","region":"eu-west-1",
      "role":"arn:aws:iam::111122223333:role/team-a","externalID":"ext-1",
      "additionalRoles":["arn:aws:iam::111122223333:role/hop"],
      "sessionTags":[{"key":"team","value":"a"},{"key":"env","value":"prod"}],"transitiveTagKeys":["team"],
      "auth":{"secretRef":{"accessKeyIDSecretRef":{"name":"aws","key":"id"},
                           "secretAccessKeySecretRef":{"name":"aws","key":"secret"}}}}}}})"));
  REQUIRE(s.has_value());
  CHECK(s->aws.role == "arn:aws:iam::111122223333:role/team-a");
  CHECK(s->aws.additional_roles == std::vector<std::string>{"arn:aws:iam::111122223333:role/hop"});
  CHECK(s->aws.external_id == "ext-1");
  CHECK(s->aws.session_tags == std::vector<std::pair<std::string, std::string>>{{"team", "a"}, {"env", "prod"}});
  CHECK(s->aws.transitive_tag_keys == std::vector<std::string>{"team"});
  const std::string head = R"({"kind":"SecretStore","metadata":{"name":"a","namespace":"team-a"},
    "spec":{"provider":{"aws":{"region":"eu-west-1","auth":{"secretRef":{"accessKeyIDSecretRef":{"name":"aws","key":"id"},
      "secretAccessKeySecretRef":{"name":"aws","key":"secret"}}},)";
  CHECK(err(head + R"("role":"team-a"}}}})") == "spec.provider.aws.role: must be a role ARN");
  CHECK(err(head + R"("externalID":"x"}}}})") ==
        "spec.provider.aws.role: required with externalID, sessionTags or transitiveTagKeys (they apply to it)");
  CHECK(err(head + R"("role":"arn:aws:iam::1:role/r","sessionTags":[{"value":"v"}]}}}})") ==
        "spec.provider.aws.sessionTags[0].key: required");
  CHECK(err(head + R"("role":"arn:aws:iam::1:role/r","sessionTagsPolicy":"Simple"}}}})") ==
        "spec.provider.aws.sessionTagsPolicy: unsupported value 'Simple' (supported: None)");
  CHECK(err(head + R"("customSessionTags":{"a":"b"}}}}})") ==
        "spec.provider.aws.customSessionTags: not supported by rootseal");
  CHECK(err(head + R"("prefix":"p/"}}}})") == "spec.provider.aws.prefix: not supported by rootseal");
}
