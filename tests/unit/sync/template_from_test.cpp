// target.template.templateFrom (configMap items as Values or KeysAndValues,
// literals; into Data, Annotations or Labels; valuesDecodingStrategy) and
// target.template.metadata templates: the pure step secret_content_of and
// the reconciler reading the ConfigMaps. The first case is ESO's own
// documentation snippet template-v2-from-secret.yaml (docs/snippets,
// external-secrets/external-secrets at cc5bfbc), edited: its `{{ now }}`
// annotation is a fixed text so the result can be asserted exactly, and its
// `{{- if hasPrefix }}` block is its outcome (the unedited example, `now`
// and `hasPrefix` included, runs in integration_eso_upstream).
#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <string>

#include "model/parse.hpp"
#include "reconcile/external_secret_reconciler.hpp"
#include "reconcile/external_secret_steps.hpp"
#include "reconcile_fakes.hpp"

using namespace rootseal;
using namespace rootseal::sync;
using namespace rootseal::sync::reconcile;
using namespace rootseal::sync::testing;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

std::string text(const kms::SecureBytes& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

model::ExternalSecret es_of(std::string_view target) {
  auto es = model::parse_external_secret(json::parse(
      R"({"apiVersion":"external-secrets.io/v1","kind":"ExternalSecret","metadata":{"name":"my-template-example","namespace":"ns","uid":"u"},
      "spec":{"secretStoreRef":{"name":"vault"},"data":[{"secretKey":"user","remoteRef":{"key":"/grafana/user"}}],"target":)" +
      std::string(target) + "}}"));
  INFO((es ? std::string() : es.error().message));
  REQUIRE(es);
  return std::move(*es);
}

SecretMap grafana() {
  SecretMap m;
  m.emplace("user", kms::SecureBytes::copy_of(std::string_view("alice")));
  m.emplace("password", kms::SecureBytes::copy_of(std::string_view("s3cret")));
  m.emplace("uri", kms::SecureBytes::copy_of(std::string_view("oci://registry")));
  return m;
}

// ESO's snippet's ConfigMap grafana-config-tpl.
json::value grafana_config_map() {
  json::object data;
  data["config.yaml"] =
      "datasources:\n  - name: Graphite\n    type: graphite\n    access: proxy\n    url: \"{{ .uri }}\"\n"
      "    password: \"{{ .password }}\"\n    user: \"{{ .user }}\"\n";
  // The snippet's conditional keys ({{- if hasPrefix ... }}) are reduced to
  // their outcome.
  data["templated"] =
      "# key and value templated\nmy-application-{{ .user}}: {{ .password | b64enc }}\n# conditional keys\n"
      "enableOCI: true\n"
      "# Fixed values\napplication-type: grafana\n";
  data["annotations"] = "#dynamic timestamp generation\nlast-synced-for-user/{{ .user }}: synced\n";
  json::object cm;
  cm["apiVersion"] = "v1";
  cm["kind"] = "ConfigMap";
  cm["metadata"] = json::object{{"name", "grafana-config-tpl"}, {"namespace", "ns"}};
  cm["data"] = std::move(data);
  return cm;
}

const char* kSnippetTarget = R"({"name":"secret-to-be-created","template":{"engineVersion":"v2","templateFrom":[
  {"target":"Data","configMap":{"name":"grafana-config-tpl","items":[{"key":"config.yaml","templateAs":"Values"},
                                                                    {"key":"templated","templateAs":"KeysAndValues"}]}},
  {"target":"Annotations","configMap":{"name":"grafana-config-tpl","items":[{"key":"annotations","templateAs":"KeysAndValues"}]}}]}})";

TemplateSources sources_with(json::value cm) {
  TemplateSources s;
  s.emplace("grafana-config-tpl", std::make_shared<const json::value>(std::move(cm)));
  return s;
}

}  // namespace

TEST_CASE("templateFrom: ESO's template-v2-from-secret snippet") {
  auto es = es_of(kSnippetTarget);
  REQUIRE(es.target.template_.has_value());
  REQUIRE(es.target.template_->template_from.size() == 2);
  auto c = secret_content_of(es, grafana(), sources_with(grafana_config_map()));
  INFO((c ? std::string() : c.error().event));
  REQUIRE(c);
  // No data template and no mergePolicy Merge: the provider keys are not in the Secret (ESO).
  CHECK(c->data.size() == 4);
  CHECK(text(c->data.at("config.yaml")) ==
        "datasources:\n  - name: Graphite\n    type: graphite\n    access: proxy\n    url: \"oci://registry\"\n"
        "    password: \"s3cret\"\n    user: \"alice\"\n");
  CHECK(text(c->data.at("my-application-alice")) == "czNjcmV0");
  CHECK(text(c->data.at("enableOCI")) == "true");  // a YAML boolean, written back as ESO's yaml does
  CHECK(text(c->data.at("application-type")) == "grafana");
  REQUIRE(c->annotations.size() == 1);
  CHECK(text(c->annotations.at("last-synced-for-user/alice")) == "synced");
  CHECK(c->labels.empty());

  // The rendered annotation lands on the Secret, and a second pass is up to date.
  auto a = desired_secret(es, std::move(*c), false, nullptr);
  REQUIRE(a);
  REQUIRE(std::holds_alternative<Write>(*a));
  const json::value body = std::get<Write>(*a).body;
  CHECK(body.at("metadata").at("annotations").at("last-synced-for-user/alice") == "synced");
  CHECK(body.at("data").as_object().size() == 4);
  auto again = desired_secret(es, *secret_content_of(es, grafana(), sources_with(grafana_config_map())), false, &body);
  REQUIRE(again);
  CHECK(std::holds_alternative<Keep>(*again));
}

TEST_CASE("templateFrom: literals, Labels, valuesDecodingStrategy, mergePolicy Merge, metadata templates") {
  auto es = es_of(
      R"({"template":{"mergePolicy":"Merge","metadata":{"labels":{"owner":"{{ .user }}"},"annotations":{"fixed":"x"}},
    "templateFrom":[{"target":"Labels","literal":"user: {{ .user }}"},
                    {"literal":"decoded: {{ .password | b64enc }}","valuesDecodingStrategy":"Base64"},
                    {"target":"annotations","literal":"'quoted key': \"{{ .uri }}\""}]}})");
  auto c = secret_content_of(es, grafana(), {});
  INFO((c ? std::string() : c.error().event));
  REQUIRE(c);
  CHECK(text(c->data.at("decoded")) == "s3cret");
  CHECK(text(c->data.at("user")) == "alice");  // mergePolicy Merge keeps the provider keys
  CHECK(c->data.size() == 4);
  CHECK(text(c->labels.at("user")) == "alice");
  CHECK(text(c->labels.at("owner")) == "alice");  // template.metadata is rendered too
  CHECK(text(c->annotations.at("quoted key")) == "oci://registry");
  CHECK(text(c->annotations.at("fixed")) == "x");
}

TEST_CASE("templateFrom: refusals name the place and never a value") {
  auto es = es_of(kSnippetTarget);
  auto none = secret_content_of(es, grafana(), {});
  REQUIRE_FALSE(none);
  CHECK(none.error().retry);
  // ESO: "could not update secret", the event as ApplyTemplate wraps MergeTemplateFrom's error.
  CHECK(none.error().condition == "could not update secret");
  CHECK(none.error().event ==
        "could not apply template: error fetching templateFrom data: configmaps \"grafana-config-tpl\" not found");

  json::value cm = grafana_config_map();
  cm.at("data").as_object().erase("templated");
  auto missing = secret_content_of(es, grafana(), sources_with(cm));
  REQUIRE_FALSE(missing);
  CHECK(
      missing.error().event ==
      "could not apply template: error fetching templateFrom data: error in configmap grafana-config-tpl: missing key "
      "templated");

  cm = grafana_config_map();
  cm.at("data").as_object()["templated"] = "nested:\n  key: {{ .password }}\n";
  auto nested = secret_content_of(es, grafana(), sources_with(cm));
  REQUIRE_FALSE(nested);
  CHECK_FALSE(nested.error().retry);
  CHECK(nested.error().event.starts_with(
      "could not apply template: error fetching templateFrom data: "
      "spec.target.template.templateFrom[0].configMap.items[1] (key templated): could not unmarshal template to "
      "'map[string][]byte': unsupported YAML at line 2"));
  CHECK(nested.error().event.find("s3cret") == std::string::npos);

  cm = grafana_config_map();
  cm.at("data").as_object()["templated"] =
      "{{- if hasPrefix \"oci://\" .uri }}\nenableOCI: true\n{{- else }}\nenableOCI: false\n{{- end }}\n";
  // ESO's own templateFrom example (if/else with hasPrefix) renders since
  // the engine is Go's text/template + Sprig.
  auto control = secret_content_of(es, grafana(), sources_with(cm));
  INFO((control ? std::string() : control.error().event));
  REQUIRE(control);
  CHECK(text(control->data.at("enableOCI")) == "true");
  cm.at("data").as_object()["templated"] = "k: {{ uuidv4 }}\n";
  auto refused = secret_content_of(es, grafana(), sources_with(cm));
  REQUIRE_FALSE(refused);
  CHECK(refused.error().event ==
        "could not apply template: error fetching templateFrom data: "
        "spec.target.template.templateFrom[0].configMap.items[1] (key templated): template: line 1: function "
        "\"uuidv4\" is not supported (see docs/sync.md)");

  auto bad_b64 =
      es_of(R"({"template":{"templateFrom":[{"literal":"k: {{ .password }}","valuesDecodingStrategy":"Base64"}]}})");
  auto b = secret_content_of(bad_b64, grafana(), {});
  REQUIRE_FALSE(b);
  CHECK(b.error().event.starts_with(
      "could not apply template: error fetching templateFrom data: spec.target.template.templateFrom[0].literal: "
      "failed to decode rendered template value for key k: "));
  CHECK(b.error().event.find("s3cret") == std::string::npos);
}

TEST_CASE("templateFrom: the reconciler reads the ConfigMap from the ExternalSecret's namespace") {
  FakeKube kube;
  FakeProviders providers;
  auto now = std::chrono::system_clock::time_point(std::chrono::hours(500000));
  FetchCache cache{10s, [] { return std::chrono::steady_clock::time_point(std::chrono::hours(1)); }};
  ExternalSecretReconciler rec{kube, providers, cache, ReconcilerOptions{10s, [&] { return now; }}};
  kube.put(kube.stores, vault_store("ns", "vault"));
  providers.fake->set("/grafana/user", "alice");
  kube.put(
      kube.external_secrets,
      json::parse(
          R"({"apiVersion":"external-secrets.io/v1","kind":"ExternalSecret","metadata":{"name":"t","namespace":"ns","generation":1},
    "spec":{"refreshInterval":"1h","secretStoreRef":{"name":"vault"},"data":[{"secretKey":"user","remoteRef":{"key":"/grafana/user"}}],
    "target":{"name":"out","template":{"templateFrom":[{"configMap":{"name":"tpl","items":[{"key":"dsn"}]}}]}}}})"));

  run_sync(rec.reconcile("ns", "t"));
  CHECK(kube.creates == 0);
  CHECK(kube.es_condition("ns", "t", "status") == "False");
  CHECK(kube.es_condition("ns", "t", "message") == "could not update secret");
  CHECK(kube.last_event("ns", "t", "UpdateFailed") ==
        "could not apply template: error fetching templateFrom data: configmaps \"tpl\" not found");

  kube.put(kube.config_maps,
           json::parse(R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"tpl","namespace":"other"},
    "data":{"dsn":"wrong namespace {{ .user }}"}})"));
  run_sync(rec.reconcile("ns", "t"));
  CHECK(kube.creates == 0);  // a ConfigMap of another namespace is never read
  kube.put(kube.config_maps,
           json::parse(R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"tpl","namespace":"ns"},
    "data":{"dsn":"pg://{{ .user }}@db"}})"));
  run_sync(rec.reconcile("ns", "t"));
  CHECK(kube.creates == 1);
  CHECK(kube.secret_value("ns", "out", "dsn") == "pg://alice@db");
  CHECK(kube.es_condition("ns", "t", "status") == "True");
}
