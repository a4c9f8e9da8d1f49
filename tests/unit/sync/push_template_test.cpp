// PushSecret spec.template (issue 17): parsed as ESO's ExternalSecretTemplate,
// applied as ESO's PushSecret controller applies it (pushsecret_controller_
// template.go, applyTemplate: engine v2 over the source Secret's data, the
// source keys kept, templateFrom then template.data then the metadata
// templates), through the pure step templated_source (the reconciler's
// part is in reconcile_rollout_push_test.cpp).
// The first case is ESO's docs/snippets/full-pushsecret.yaml's template
// (external-secrets/external-secrets at cc5bfbc); its ConfigMap, which no
// snippet defines, is this test's.
#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <string>

#include "model/parse.hpp"
#include "reconcile/push_secret_reconciler.hpp"

using namespace rootseal;
using namespace rootseal::sync;
using namespace rootseal::sync::reconcile;
namespace json = boost::json;

namespace {

std::string text(const kms::SecureBytes& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

SecretMap map_of(std::initializer_list<std::pair<std::string_view, std::string_view>> kv) {
  SecretMap m;
  for (const auto& [k, v] : kv) m.insert_or_assign(std::string(k), kms::SecureBytes::copy_of(v));
  return m;
}

kms::Result<model::PushSecret> push_with(
    std::string_view tmpl, std::string_view selector = R"({"secret":{"name":"src"}})",
    std::string_view data = R"([{"match":{"secretKey":"v","remoteRef":{"remoteKey":"app/v"}}}])") {
  return model::parse_push_secret(json::parse(
      R"({"apiVersion":"external-secrets.io/v1alpha1","kind":"PushSecret","metadata":{"name":"p","namespace":"ns"},
    "spec":{"refreshInterval":"1m","secretStoreRefs":[{"name":"aws"}],"selector":)" +
      std::string(selector) + R"(,"data":)" + std::string(data) + R"(,"template":)" + std::string(tmpl) + "}}"));
}

model::PushSecret must(kms::Result<model::PushSecret> p) {
  INFO((p ? std::string() : p.error().message));
  REQUIRE(p);
  return std::move(*p);
}

json::value config_map(std::string_view name, std::string_view key, std::string_view value) {
  json::object cm;
  cm["apiVersion"] = "v1";
  cm["kind"] = "ConfigMap";
  cm["metadata"] = json::object{{"name", name}, {"namespace", "ns"}};
  cm["data"] = json::object{{key, value}};
  return cm;
}

TemplateSources sources_with(std::string_view name, json::value cm) {
  TemplateSources s;
  s.emplace(std::string(name), std::make_shared<const json::value>(std::move(cm)));
  return s;
}

// full-pushsecret.yaml's spec.template (its empty metadata maps included).
constexpr std::string_view kSnippetTemplate = R"({"metadata":{"annotations":{},"labels":{}},
  "data":{"best-pokemon":"{{ index . \"best-pokemon-src\" | toString | upper }} is the really best!"},
  "templateFrom":[{"configMap":{"name":"application-config-tmpl","items":[{"key":"config.yml"}]}}]})";
constexpr std::string_view kSnippetData =
    R"([{"conversionStrategy":"None","match":{"secretKey":"best-pokemon","remoteRef":{"remoteKey":"destination-secret","property":"best-pokemon-dst"}}}])";

}  // namespace

TEST_CASE("PushSecret template: parsed as ESO's ExternalSecretTemplate") {
  auto p = must(push_with(R"({"engineVersion":"v2","type":"kubernetes.io/tls","mergePolicy":"Merge",
    "metadata":{"labels":{"l":"{{ .v }}"},"annotations":{"a":"x"}},"data":{"k":"{{ .v }}","not/a/secret-key":"y"},
    "templateFrom":[{"configMap":{"name":"tpl","items":[{"key":"c","templateAs":"KeysAndValues"}]}},{"literal":"z: 1","target":"Labels"}]})"));
  REQUIRE(p.template_);
  CHECK(p.template_->data.at("k") == "{{ .v }}");
  // The keys are the source Secret's in memory, never written to Kubernetes: not checked as Secret keys (ESO).
  CHECK(p.template_->data.contains("not/a/secret-key"));
  CHECK(p.template_->labels.at("l") == "{{ .v }}");
  CHECK(p.template_->type == "kubernetes.io/tls");
  REQUIRE(p.template_->template_from.size() == 2);
  CHECK(p.template_->template_from[0].config_map == "tpl");
  CHECK(p.template_->template_from[0].items.at(0).scope == model::TemplateScope::keys_and_values);
  CHECK(p.template_->template_from[1].target == model::TemplateTarget::labels);
  // ESO's PushSecret controller renders with engine v2 whatever engineVersion says.
  CHECK(push_with(R"({"engineVersion":"v1","data":{"k":"x"}})"));
  CHECK_FALSE(push_with("{}")->template_->data.size());

  auto v3 = push_with(R"({"engineVersion":"v3"})");
  REQUIRE_FALSE(v3);
  CHECK(v3.error().message == "spec.template.engineVersion: unsupported value 'v3' (supported: v2, v1)");
  auto secret_source = push_with(R"({"templateFrom":[{"secret":{"name":"s","items":[{"key":"k"}]}}]})");
  REQUIRE_FALSE(secret_source);
  CHECK(secret_source.error().message.starts_with("spec.template.templateFrom[0].secret: not supported by rootseal"));
  auto remote = push_with(R"({"data":{"k":"x"}})", R"({"remoteRef":{"storeRef":{"name":"vault"},"key":"db"}})");
  REQUIRE_FALSE(remote);
  CHECK(remote.error().message.starts_with("spec.template: not supported with selector.remoteRef"));
  auto no_map = push_with(R"("text")");
  REQUIRE_FALSE(no_map);
  CHECK(no_map.error().message == "spec.template: must be an object");
  // dataTo stays refused.
  CHECK(
      model::parse_push_secret(
          json::parse(
              R"({"apiVersion":"external-secrets.io/v1alpha1","kind":"PushSecret","metadata":{"name":"p","namespace":"ns"},
    "spec":{"secretStoreRefs":[{"name":"aws"}],"selector":{"secret":{"name":"src"}},"dataTo":[{"storeRef":{"name":"aws"}}],
    "data":[{"match":{"secretKey":"v","remoteRef":{"remoteKey":"app/v"}}}]}})"))
          .error()
          .message == "spec.dataTo: not supported by rootseal");
}

TEST_CASE("PushSecret template: ESO's full-pushsecret snippet keeps the source keys and adds the rendered ones") {
  auto ps = must(push_with(kSnippetTemplate, R"({"secret":{"name":"pokedex-credentials"}})", kSnippetData));
  auto out = templated_source(
      ps, map_of({{"best-pokemon-src", "Pikachu"}}),
      sources_with("application-config-tmpl", config_map("application-config-tmpl", "config.yml",
                                                         "pokemon: {{ index . \"best-pokemon-src\" | lower }}\n")));
  INFO((out ? std::string() : out.error().message));
  REQUIRE(out);
  CHECK(out->size() == 3);
  CHECK(text(out->at("best-pokemon")) == "PIKACHU is the really best!");
  CHECK(text(out->at("best-pokemon-src")) == "Pikachu");  // not templated: kept, as ESO
  CHECK(text(out->at("config.yml")) == "pokemon: pikachu\n");
  auto pushed = values_to_push(ps, *out, nullptr);
  REQUIRE(pushed);
  CHECK(text(pushed->at(0)) == "PIKACHU is the really best!");
}

TEST_CASE("PushSecret template: template.data over templateFrom over the source, all rendered over the source") {
  // mergePolicy Replace (the default) keeps the source keys too: ESO's PushSecret ignores it.
  auto ps = must(push_with(R"js({"mergePolicy":"Replace","data":{"k":"data({{ .k }})"},
    "templateFrom":[{"literal":"k: literal\nfrom: '{{ .k }}'"},{"literal":"lab: '{{ .k }}'","target":"Labels"},
                    {"literal":"ann: x","target":"Annotations"}],
    "metadata":{"labels":{"l":"{{ .k }}"},"annotations":{"a":"{{ .other }}"}},"type":"kubernetes.io/tls"})js"));
  auto out = templated_source(ps, map_of({{"k", "src"}, {"other", "o"}}), {});
  INFO((out ? std::string() : out.error().message));
  REQUIRE(out);
  CHECK(text(out->at("k")) == "data(src)");  // rendered over the source, not over the literal's k
  CHECK(text(out->at("from")) == "src");
  CHECK(text(out->at("other")) == "o");
  // Labels, annotations and the type go on the in-memory Secret only (no push provider reads them).
  CHECK(out->size() == 3);
  auto no_template = templated_source(must(push_with("{}")), map_of({{"k", "src"}}), {});
  REQUIRE(no_template);
  CHECK(text(no_template->at("k")) == "src");
  // The whole-Secret push (no secretKey) carries the templated keys.
  auto whole = must(push_with(R"({"data":{"extra":"{{ .k | upper }}"}})", R"({"secret":{"name":"src"}})",
                              R"([{"match":{"remoteRef":{"remoteKey":"all"}}}])"));
  auto all = templated_source(whole, map_of({{"k", "src"}}), {});
  REQUIRE(all);
  auto v = values_to_push(whole, *all, nullptr);
  REQUIRE(v);
  CHECK(json::parse(text(v->at(0))) == json::parse(R"({"extra":"SRC","k":"src"})"));
}

TEST_CASE("PushSecret template: failures are ESO's wrapping and never carry a value") {
  const auto fails = [](std::string_view tmpl, const TemplateSources& cms = {}) {
    auto out = templated_source(must(push_with(tmpl)), map_of({{"v", "s3cr3t-value"}}), cms);
    REQUIRE_FALSE(out);
    CHECK(out.error().message.find("s3cr3t") == std::string::npos);
    return out.error().message;
  };
  CHECK(fails(R"({"data":{"v":"{{ .nope }}"}})") ==
        "could not execute template: spec.template.data.v: template: line 1: map has no entry for key \"nope\"");
  CHECK(
      fails(R"({"data":{"v":"{{ .v | b64dec }}"}})").starts_with("could not execute template: spec.template.data.v: "));
  CHECK(
      fails(R"({"data":{"v":"{{ .v "}})").starts_with("could not execute template: spec.template.data.v: template: "));
  CHECK(fails(R"({"metadata":{"labels":{"l":"{{ .nope }}"}}})") ==
        "could not execute template: spec.template.metadata.labels.l: template: line 1: map has no entry for key "
        "\"nope\"");
  const std::string tpl =
      R"({"templateFrom":[{"configMap":{"name":"tpl","items":[{"key":"c","templateAs":"KeysAndValues"}]}}]})";
  CHECK(fails(tpl) == "error fetching templateFrom data: configmaps \"tpl\" not found");
  CHECK(fails(tpl, sources_with("tpl", config_map("tpl", "other", "x"))) ==
        "error fetching templateFrom data: error in configmap tpl: missing key c");
  CHECK(fails(tpl, sources_with("tpl", config_map("tpl", "c", "k:\n  nested: {{ .v }}\n")))
            .starts_with("error fetching templateFrom data: spec.template.templateFrom[0].configMap.items[0] (key c): "
                         "could not unmarshal template to 'map[string][]byte': "));
  CHECK(fails(R"({"templateFrom":[{"literal":"k: {{ .v }}","valuesDecodingStrategy":"Base64"}]})")
            .starts_with("error fetching templateFrom data: spec.template.templateFrom[0].literal: failed to decode "
                         "rendered template value for key k: "));
}
