#include "reconcile/external_secret_steps.hpp"

#include <boost/json.hpp>

#include <algorithm>

#include "model/parse.hpp"
#include "reconcile/eso_meta.hpp"
#include "reconcile/store_resolver.hpp"
#include "rewrite.hpp"
#include "yaml_string_map.hpp"
#include "rootseal/kms/encoding.hpp"
#include "secure_json.hpp"
#include "template.hpp"

namespace rootseal::sync::reconcile {

// Returns the Refusal of a failed Step<void>.
#define ROOTSEAL_STEP_TRY(expr)                                  \
  do {                                                           \
    if (auto rootseal_step_ = (expr); !rootseal_step_) {         \
      return std::unexpected(std::move(rootseal_step_).error()); \
    }                                                            \
  } while (false)

namespace json = boost::json;
using kms::Errc;

namespace {

// A string field (one or two levels deep); empty when absent.
std::string_view str_at(const json::value& v, std::string_view a, std::string_view b = {}) {
  if (!v.is_object()) return {};
  const json::value* cur = v.as_object().if_contains(a);
  if (cur != nullptr && !b.empty()) cur = cur->is_object() ? cur->as_object().if_contains(b) : nullptr;
  return (cur != nullptr && cur->is_string()) ? std::string_view(cur->as_string()) : std::string_view{};
}

std::string_view obj_str(const json::object* o, std::string_view k) {
  const auto* v = o == nullptr ? nullptr : o->if_contains(k);
  return (v != nullptr && v->is_string()) ? std::string_view(v->as_string()) : std::string_view{};
}

bool is_controller(const json::value& ref) {
  if (!ref.is_object()) return false;
  const auto* c = ref.as_object().if_contains("controller");
  return c != nullptr && c->is_bool() && c->as_bool();
}

// The controller ownerReference of an object, if any.
const json::object* controller_of(const json::value& obj) {
  const auto* md = obj.is_object() ? obj.as_object().if_contains("metadata") : nullptr;
  if (md == nullptr || !md->is_object()) return nullptr;
  const auto* refs = md->as_object().if_contains("ownerReferences");
  if (refs == nullptr || !refs->is_array()) return nullptr;
  for (const auto& r : refs->as_array()) {
    if (is_controller(r)) return &r.as_object();
  }
  return nullptr;
}

// The API group of an ownerReference's apiVersion ("" for the core group).
std::string_view api_group(std::string_view api_version) {
  const auto slash = api_version.find('/');
  return slash == std::string_view::npos ? std::string_view{} : api_version.substr(0, slash);
}

// An ownerReference to an ExternalSecret (any version), and to this one
// (by name: controller-runtime compares group, kind and name).
bool es_kind(const json::object& ref) {
  return obj_str(&ref, "kind") == "ExternalSecret" && api_group(obj_str(&ref, "apiVersion")) == "external-secrets.io";
}
bool this_es(const json::object& ref, const model::ExternalSecret& es) {
  return es_kind(ref) && obj_str(&ref, "name") == es.meta.name;
}

const json::object* object_at(const json::value& v, std::string_view a, std::string_view b) {
  if (!v.is_object()) return nullptr;
  const auto* x = v.as_object().if_contains(a);
  if (x == nullptr || !x->is_object()) return nullptr;
  const auto* y = x->as_object().if_contains(b);
  return (y != nullptr && y->is_object()) ? &y->as_object() : nullptr;
}

bool has_entry(const json::object* m, std::string_view k, std::string_view v) {
  if (m == nullptr) return false;
  const auto* x = m->if_contains(k);
  return x != nullptr && x->is_string() && x->as_string() == v;
}

// What a provider answered for `key` (and `property`): the store, the
// property when one is read, the provider's error.
std::string provider_error(const model::StoreRef& store, const std::string& key, const std::string& property,
                           const kms::Error& e) {
  std::string m = store_label(store) + " key \"" + key + "\"";
  if (!property.empty()) m += " property \"" + property + "\"";
  return m + ": " + e.message;
}

Refusal data_refused(std::string event, bool retry) { return refusal(kMsgErrorGetSecretData, std::move(event), retry); }

// The metadata rootseal wants on the Secret (template metadata + ESO's).
struct WantedMeta {
  // Rendered from templates, so possibly holding values: locked memory.
  SecretMap labels;
  SecretMap annotations;
  std::string type;  // empty: keep / Opaque
};

WantedMeta wanted_meta(const model::ExternalSecret& es, const std::string& hash, SecretContent& content) {
  WantedMeta w;
  w.labels = std::move(content.labels);
  w.annotations = std::move(content.annotations);
  if (const auto& tmpl = es.target.template_) {
    if (tmpl->type) w.type = *tmpl->type;
  }
  w.labels.insert_or_assign(std::string(kManagedLabel), kms::SecureBytes::copy_of(std::string_view("true")));
  if (es.target.creation == model::CreationPolicy::owner) {
    w.labels.insert_or_assign(
        std::string(kCreatedByLabel),
        kms::SecureBytes::copy_of(std::string_view(created_by(es.meta.namespace_, es.meta.name))));
  }
  w.annotations.insert_or_assign(std::string(kDataHashAnnotation), kms::SecureBytes::copy_of(std::string_view(hash)));
  return w;
}

bool up_to_date(const model::ExternalSecret& es, const json::value& existing, const std::string& hash,
                const WantedMeta& want) {
  auto cur = secret_data(existing);
  bool ok = cur && data_hash(*cur) == hash;
  const auto* labels = object_at(existing, "metadata", "labels");
  const auto* anns = object_at(existing, "metadata", "annotations");
  for (const auto& [k, v] : want.labels) ok = ok && has_entry(labels, k, as_view(v));
  for (const auto& [k, v] : want.annotations) ok = ok && has_entry(anns, k, as_view(v));
  if (!want.type.empty()) ok = ok && str_at(existing, "type") == want.type;
  const auto* ctl = controller_of(existing);
  if (es.target.creation == model::CreationPolicy::owner) {
    // this ExternalSecret, not a former one of its name
    ok = ok && ctl != nullptr && obj_str(ctl, "uid") == es.meta.uid;
  } else {
    // ESO's applyOwnership: no controller reference of this ExternalSecret
    // (a former creationPolicy Owner) and no created-by label.
    ok = ok && (ctl == nullptr || !this_es(*ctl, es)) && (labels == nullptr || !labels->contains(kCreatedByLabel));
  }
  return ok;
}

json::object& child_object(json::object& o, std::string_view key, const json::storage_ptr& sp) {
  if (!o.contains(key) || !o[key].is_object()) o[key] = json::object(sp);
  return o[key].as_object();
}

// The controller ownerReference to this ExternalSecret, replacing any other controller.
json::array owner_refs(const model::ExternalSecret& es, const json::object& md, const json::storage_ptr& sp) {
  json::array refs(sp);
  if (const auto* cur = md.if_contains("ownerReferences"); cur != nullptr && cur->is_array()) {
    for (const auto& r : cur->as_array()) {
      if (!is_controller(r)) refs.push_back(r);
    }
  }
  json::object ref(sp);
  ref["apiVersion"] = "external-secrets.io/v1";
  ref["kind"] = "ExternalSecret";
  ref["name"] = es.meta.name;
  ref["uid"] = es.meta.uid;
  ref["controller"] = true;
  ref["blockOwnerDeletion"] = true;
  refs.push_back(std::move(ref));
  return refs;
}

// The Secret body: the existing object (if any) with the wanted metadata and
// data, built in locked memory.
json::value secret_body(const model::ExternalSecret& es, const json::value* existing, const SecretMap& data,
                        const WantedMeta& want) {
  json::storage_ptr sp = make_secure_storage();
  json::value body(json::object_kind, sp);
  if (existing != nullptr) body = json::value(*existing, sp);
  json::object& o = body.as_object();
  o["apiVersion"] = "v1";
  o["kind"] = "Secret";
  json::object& md = child_object(o, "metadata", sp);
  md["name"] = es.target.name;
  md["namespace"] = es.meta.namespace_;
  md.erase("managedFields");
  json::object& labels = child_object(md, "labels", sp);
  for (const auto& [k, v] : want.labels) labels[k] = json::string(as_view(v), sp);
  json::object& anns = child_object(md, "annotations", sp);
  for (const auto& [k, v] : want.annotations) anns[k] = json::string(as_view(v), sp);
  if (es.target.creation == model::CreationPolicy::owner) {
    md["ownerReferences"] = owner_refs(es, md, sp);
  } else {
    // ESO's applyOwnership for any other policy (creationPolicy changed
    // from Owner): controller-runtime's RemoveControllerReference when this
    // ExternalSecret is the controller (the first reference of its group,
    // kind and name goes), and the created-by label goes in any case.
    labels.erase(kCreatedByLabel);
    const auto* ctl = existing != nullptr ? controller_of(*existing) : nullptr;
    auto* refs = md.if_contains("ownerReferences");
    if (ctl != nullptr && this_es(*ctl, es) && refs != nullptr && refs->is_array()) {
      auto& arr = refs->as_array();
      const auto it = std::find_if(arr.begin(), arr.end(),
                                   [&](const json::value& r) { return r.is_object() && this_es(r.as_object(), es); });
      if (it != arr.end()) arr.erase(it);
    }
  }
  if (!want.type.empty()) {
    o["type"] = want.type;
  } else if (!o.contains("type")) {
    o["type"] = "Opaque";
  }
  if (es.target.immutable) o["immutable"] = true;
  o.erase("stringData");
  json::object data_obj(sp);
  for (const auto& [k, v] : data) {
    kms::SecureBytes b64 = kms::base64_encode_secure(v.span());
    data_obj[k] = json::string(as_view(b64), sp);
  }
  o["data"] = std::move(data_obj);
  return body;
}

bool immutable(const json::value& secret) {
  const auto* v = secret.as_object().if_contains("immutable");
  return v != nullptr && v->is_bool() && v->as_bool();
}

// The refusals that do not depend on the data, as ESO's applyOwnership: a
// Secret controlled by another ExternalSecret (any creationPolicy), or, with
// creationPolicy Owner, by another controller. Owners are compared by group,
// kind and name (a recreated ExternalSecret takes its Secret over), as
// controller-runtime's SetControllerReference.
Step<void> check_existing(const model::ExternalSecret& es, const json::value* existing) {
  if (existing == nullptr) return {};
  const auto* ctl = controller_of(*existing);
  if (ctl == nullptr) return {};
  const bool ours = this_es(*ctl, es);
  const std::string mutate = "unable to mutate secret " + es.target.name + ": ";
  if (es_kind(*ctl) && !ours) {
    return std::unexpected(
        refusal(kMsgErrorIsOwned,
                mutate + "secret is owned by another ExternalSecret: " + std::string(obj_str(ctl, "name")), true));
  }
  if (es.target.creation == model::CreationPolicy::owner && !ours) {
    return std::unexpected(refusal(kMsgErrorBecomeOwner,
                                   mutate + "could not set controller reference on secret: Object " +
                                       es.meta.namespace_ + "/" + es.target.name + " is already owned by another " +
                                       std::string(obj_str(ctl, "kind")) + " controller " +
                                       std::string(obj_str(ctl, "name")),
                                   true));
  }
  return {};
}

}  // namespace

Refusal refusal(std::string_view condition, std::string event, bool retry) {
  return Refusal{kReasonError, std::string(condition), std::move(event), retry, false};
}

Refusal own_refusal(std::string message, bool retry) {
  std::string condition = message;
  return Refusal{kReasonError, std::move(condition), std::move(message), retry, false};
}

std::string data_from_where(const model::ExternalSecret& es, std::size_t i) {
  const bool find = es.data_from.at(i).find.has_value();
  return "error processing spec.dataFrom[" + std::to_string(i) + "]." + (find ? "find" : "extract") + ", err: ";
}

std::string data_where(const model::ExternalSecret& es, std::size_t i) {
  return "error processing spec.data[" + std::to_string(i) + "] (key: " + es.data.at(i).remote_ref.key + "), err: ";
}

Refusal provider_refusal(const std::string& where, Refusal why) {
  why.condition = std::string(kMsgErrorGetSecretData);
  why.event.insert(0, where);
  return why;
}

Refusal mutate_refusal(const model::ExternalSecret& es, bool existing, Refusal why) {
  if (existing) why.event.insert(0, "unable to mutate secret " + es.target.name + ": ");
  return why;
}

std::optional<model::ExternalSecret> invalid_shell(const json::value& object) {
  auto meta = model::parse_meta(object);
  if (!meta) return std::nullopt;
  model::ExternalSecret shell;
  shell.meta = std::move(*meta);
  shell.target.name = shell.meta.name;
  // The status fields, for change detection.
  const auto* st = object.as_object().if_contains("status");
  if (st == nullptr || !st->is_object()) return shell;
  shell.status.synced_resource_version = std::string(str_at(*st, "syncedResourceVersion"));
  shell.status.binding_name = std::string(str_at(*st, "binding", "name"));
  const auto* conds = st->as_object().if_contains("conditions");
  if (conds == nullptr || !conds->is_array()) return shell;
  for (const auto& c : conds->as_array()) {
    if (str_at(c, "type") != "Ready") continue;
    shell.status.ready_status = std::string(str_at(c, "status"));
    shell.status.ready_reason = std::string(str_at(c, "reason"));
    shell.status.ready_message = std::string(str_at(c, "message"));
    shell.status.ready_transition = std::string(str_at(c, "lastTransitionTime"));
  }
  return shell;
}

Step<void> check_templates(const model::ExternalSecret& es) {
  // As ESO: creationPolicy None never applies (so never parses) the template.
  if (!es.target.template_ || es.target.creation == model::CreationPolicy::none) return {};
  for (const auto& [k, text] : es.target.template_->data) {
    if (auto ok = check_template(text); !ok) {
      return std::unexpected(
          own_refusal("invalid ExternalSecret: spec.target.template.data." + k + ": " + ok.error().message, false));
    }
  }
  return {};
}

bool secret_valid(const json::value& secret) {
  if (!has_entry(object_at(secret, "metadata", "labels"), kManagedLabel, "true")) return false;
  const auto* ann = object_at(secret, "metadata", "annotations");
  if (ann == nullptr) return false;
  const auto* h = ann->if_contains(kDataHashAnnotation);
  if (h == nullptr || !h->is_string()) return false;
  auto data = secret_data(secret);
  return data && data_hash(*data) == h->as_string();
}

bool must_fetch(const model::ExternalSecret& es, bool spec_changed, bool interval_elapsed,
                const json::value* existing) {
  const bool periodic_due =
      es.refresh_policy == model::RefreshPolicy::periodic && es.refresh_interval.count() > 0 && interval_elapsed;
  const bool due = spec_changed || periodic_due;
  const auto cp = es.target.creation;
  bool valid = true;  // Orphan and None: the Secret always counts as valid (ESO)
  if (cp != model::CreationPolicy::orphan && cp != model::CreationPolicy::none) {
    valid = existing != nullptr && secret_valid(*existing);
  }
  return due || !valid;
}

namespace {

// ESO's handleExtractSecrets between the provider and the decoding: the
// rewrite operations, or (without any) conversionStrategy Default, then the
// key validation. Messages as ESO's events. A bad rewrite is the manifest's
// fault (no retry); a collision or an invalid key comes from the remote
// value, which may change (retry).
Step<SecretMap> keys_of(const model::ExternalSecret& es, std::size_t i, SecretMap map) {
  const auto& item = es.data_from.at(i);
  const std::string where = data_from_where(es, i);
  if (!item.rewrite.empty()) {
    auto rewritten = rewrite_map(item.rewrite, std::move(map));
    if (!rewritten) {
      // A bad regexp or template is the manifest's fault (no retry); a merge
      // the remote values do not allow may pass later.
      const bool retry = rewritten.error().code != Errc::invalid_argument;
      return std::unexpected(
          data_refused(where + "error applying rewrite to keys: " + rewritten.error().message, retry));
    }
    map = std::move(*rewritten);
  } else {
    auto converted = convert_keys(std::move(map));
    if (!converted) {
      return std::unexpected(data_refused(
          where + "error applying conversion strategy Default to keys: " + converted.error().message, true));
    }
    map = std::move(*converted);
  }
  if (auto valid = validate_keys(map); !valid) {
    return std::unexpected(data_refused(
        where + "invalid secret keys (TIP: use rewrite or conversionStrategy to change keys): " + valid.error().message,
        true));
  }
  return map;
}

// ESO's eventMissingProviderSecret / eventMissingProviderSecretKey, word for
// word: ESO says "spec.dataFrom[i] (key=k)" for the i-th item of spec.data too.
std::string missing_event(std::size_t i, std::string_view key = {}) {
  std::string m = "secret does not exist at provider using spec.dataFrom[" + std::to_string(i) + "]";
  if (!key.empty()) m += " (key=" + std::string(key) + ")";
  return m;
}

}  // namespace

Step<void> add_data_from(ProviderData& out, const model::ExternalSecret& es, std::size_t i,
                         const model::StoreRef& store, ValueFormat format, kms::Result<kms::SecureBytes> whole) {
  const auto& ref = es.data_from.at(i).extract;
  const std::string where = data_from_where(es, i);
  if (!whole && whole.error().code == Errc::not_found && es.target.deletion != model::DeletionPolicy::retain) {
    out.missing.push_back(missing_event(i));
    return {};
  }
  if (!whole) return std::unexpected(data_refused(where + provider_error(store, ref.key, "", whole.error()), true));
  // With metadataPolicy Fetch the metadata is read as ESO's provider of the kind reads it for extract
  // (Azure: its own map of the tags, unlike its data[] reading).
  auto map = ref.fetch_metadata ? metadata_map(std::move(*whole), ref.key, ref.property, format)
                                : select_map(std::move(*whole), ref.property, DecodingStrategy::none, format);
  if (!map && map.error().code == Errc::not_found) {  // the property is missing: an error, as ESO's providers
    return std::unexpected(data_refused(where + provider_error(store, ref.key, ref.property, map.error()), true));
  }
  if (!map) {
    return std::unexpected(data_refused(where + "key \"" + ref.key + "\": " + map.error().message, true));
  }
  auto keyed = keys_of(es, i, std::move(*map));
  if (!keyed) return std::unexpected(keyed.error());
  for (auto& [k, v] : *keyed) {  // decodingStrategy last, on the final keys (ESO)
    auto decoded = apply_decoding(ref.decoding, std::move(v));
    if (!decoded) {
      return std::unexpected(data_refused(where + "key \"" + k + "\": " + decoded.error().message, false));
    }
    out.data.insert_or_assign(k, std::move(*decoded));
  }
  return {};
}

Step<void> add_data_found(ProviderData& out, const model::ExternalSecret& es, std::size_t i,
                          kms::Result<SecretMap> found) {
  const auto& item = es.data_from.at(i);
  const std::string where = data_from_where(es, i);
  if (!found && found.error().code == Errc::not_found && es.target.deletion != model::DeletionPolicy::retain) {
    out.missing.push_back(missing_event(i));
    return {};
  }
  if (!found) {
    // A bad request (the regexp, a find the provider does not serve) is the
    // manifest's fault: no retry; anything else may pass.
    const bool retry = found.error().code != Errc::invalid_argument;
    return std::unexpected(data_refused(where + "error getting all secrets: " + found.error().message, retry));
  }
  auto keyed = keys_of(es, i, std::move(*found));
  if (!keyed) return std::unexpected(keyed.error());
  for (auto& [k, v] : *keyed) {  // decodingStrategy last, on the final keys (ESO)
    auto decoded = apply_decoding(item.find->decoding, std::move(v));
    if (!decoded) {
      return std::unexpected(data_refused(where + "key \"" + k + "\": " + decoded.error().message, false));
    }
    out.data.insert_or_assign(k, std::move(*decoded));
  }
  return {};
}

Step<void> add_data(ProviderData& out, const model::ExternalSecret& es, std::size_t i, const model::StoreRef& store,
                    ValueFormat format, kms::Result<kms::SecureBytes> whole) {
  const auto& item = es.data.at(i);
  const auto& ref = item.remote_ref;
  // Only the remote secret being gone counts as missing under Delete/Merge; a
  // missing property is an error (ESO's providers answer NoSecretErr for the
  // first only).
  if (!whole && whole.error().code == Errc::not_found && es.target.deletion != model::DeletionPolicy::retain) {
    out.missing.push_back(missing_event(i, ref.key));
    return {};
  }
  kms::Result<kms::SecureBytes> value = std::move(whole);
  if (value) value = select_value(std::move(*value), ref.property, ref.decoding, format);
  const std::string where = data_where(es, i);
  if (!value && value.error().code == Errc::bad_base64) {
    return std::unexpected(data_refused(where + value.error().message, false));
  }
  if (!value) {
    return std::unexpected(data_refused(where + provider_error(store, ref.key, ref.property, value.error()), true));
  }
  out.data.insert_or_assign(item.secret_key, std::move(*value));
  return {};
}

namespace {

// A stage of ESO's templating that fails: `stage` (ESO's wrapping of the
// templateFrom or the data/metadata stage) before the error, in the
// condition and the event (the caller words it for its controller).
Refusal stage_refused(std::string_view stage, Refusal why) {
  why.event.insert(0, stage);
  why.condition = why.event;
  return why;
}

// One template of templateFrom: rendered over the provider data, then put
// under its key (Values) or read as a YAML map of keys and values
// (KeysAndValues), each value decoded with valuesDecodingStrategy.
Step<void> apply_template(SecretMap& target, const std::string& key, std::string_view text, model::TemplateScope scope,
                          const SecretMap& values, DecodingStrategy decoding, const std::string& where) {
  auto rendered = render_template(text, values);
  if (!rendered) return std::unexpected(own_refusal(where + ": " + rendered.error().message, false));
  SecretMap entries;
  if (scope == model::TemplateScope::values) {
    entries.emplace(key, std::move(*rendered));
  } else {
    auto map = parse_yaml_string_map(as_view(*rendered));
    if (!map) {
      return std::unexpected(
          own_refusal(where + ": could not unmarshal template to 'map[string][]byte': " + map.error().message, false));
    }
    entries = std::move(*map);
  }
  for (auto& [k, v] : entries) {
    auto decoded = apply_decoding(decoding, std::move(v));
    if (!decoded) {
      std::string m = where;
      m += ": failed to decode rendered template value for key ";
      m += k;
      m += ": ";
      m += decoded.error().message;
      return std::unexpected(own_refusal(std::move(m), false));
    }
    target.insert_or_assign(k, std::move(*decoded));
  }
  return {};
}

// A ConfigMap's data[key] as text; nullptr when absent.
const json::string* config_map_value(const json::value& cm, std::string_view key) {
  if (!cm.is_object()) return nullptr;
  const auto* data = cm.as_object().if_contains("data");
  if (data == nullptr || !data->is_object()) return nullptr;
  const auto* v = data->as_object().if_contains(key);
  return v != nullptr && v->is_string() ? &v->as_string() : nullptr;
}

Step<void> apply_template_from(SecretContent& out, const model::SecretTemplate& tmpl, std::string_view at,
                               const SecretMap& values, const TemplateSources& config_maps) {
  const auto& from = tmpl.template_from;
  for (std::size_t i = 0; i < from.size(); ++i) {
    const auto& tf = from[i];
    SecretMap& target = tf.target == model::TemplateTarget::data          ? out.data
                        : tf.target == model::TemplateTarget::annotations ? out.annotations
                                                                          : out.labels;
    const std::string where = std::string(at) + ".templateFrom[" + std::to_string(i) + "]";
    if (tf.config_map) {
      const auto it = config_maps.find(*tf.config_map);
      if (it == config_maps.end() || it->second == nullptr) {
        return std::unexpected(own_refusal("configmaps \"" + *tf.config_map + "\" not found", true));
      }
      for (std::size_t j = 0; j < tf.items.size(); ++j) {
        const auto& item = tf.items[j];
        const auto* text = config_map_value(*it->second, item.key);
        if (text == nullptr) {
          return std::unexpected(
              own_refusal("error in configmap " + *tf.config_map + ": missing key " + item.key, true));
        }
        ROOTSEAL_STEP_TRY(apply_template(target, item.key, *text, item.scope, values, tf.values_decoding,
                                         where + ".configMap.items[" + std::to_string(j) + "] (key " + item.key + ")"));
      }
    }
    if (tf.literal) {
      ROOTSEAL_STEP_TRY(apply_template(target, *tf.literal, *tf.literal, model::TemplateScope::keys_and_values, values,
                                       tf.values_decoding, where + ".literal"));
    }
  }
  return {};
}

// template.metadata labels and annotations, rendered over `values`.
Step<void> render_metadata(SecretContent& out, const model::SecretTemplate& tmpl, std::string_view at,
                           const SecretMap& values) {
  const std::string where = std::string(at) + ".metadata.";
  for (const auto& [k, text] : tmpl.labels) {
    ROOTSEAL_STEP_TRY(apply_template(out.labels, k, text, model::TemplateScope::values, values, DecodingStrategy::none,
                                     where + "labels." + k));
  }
  for (const auto& [k, text] : tmpl.annotations) {
    ROOTSEAL_STEP_TRY(apply_template(out.annotations, k, text, model::TemplateScope::values, values,
                                     DecodingStrategy::none, where + "annotations." + k));
  }
  return {};
}

}  // namespace

Step<void> apply_secret_template(SecretContent& out, const model::SecretTemplate& tmpl, std::string_view at,
                                 const SecretMap& values, const TemplateSources& config_maps) {
  if (auto from = apply_template_from(out, tmpl, at, values, config_maps); !from) {
    return std::unexpected(stage_refused("error fetching templateFrom data: ", std::move(from).error()));
  }
  for (const auto& [k, text] : tmpl.data) {
    auto r = render_template(text, values);
    if (!r) {
      return std::unexpected(
          stage_refused("could not execute template: ",
                        own_refusal(std::string(at) + ".data." + k + ": " + r.error().message, false)));
    }
    out.data.insert_or_assign(k, std::move(*r));
  }
  if (auto md = render_metadata(out, tmpl, at, values); !md) {
    return std::unexpected(stage_refused("could not execute template: ", std::move(md).error()));
  }
  return {};
}

Step<SecretContent> secret_content_of(const model::ExternalSecret& es, SecretMap provider_data,
                                      const TemplateSources& config_maps) {
  SecretContent out;
  const auto& tmpl = es.target.template_;
  // As ESO: creationPolicy None never applies the template (nothing is written).
  if (!tmpl || es.target.creation == model::CreationPolicy::none) {
    out.data = std::move(provider_data);
    return out;
  }
  // ESO's ApplyTemplate: the provider data only with mergePolicy Merge or
  // when there is no data template at all; then templateFrom, then
  // template.data, then the metadata templates.
  if (tmpl->merge_policy == model::MergePolicy::merge || (tmpl->data.empty() && tmpl->template_from.empty())) {
    for (const auto& [k, v] : provider_data) out.data.insert_or_assign(k, v.clone());
  }
  if (auto applied = apply_secret_template(out, *tmpl, "spec.target.template", provider_data, config_maps); !applied) {
    // ESO's ApplyTemplate failing: "could not update secret", the event
    // "could not apply template: " before the stage's error.
    Refusal why = std::move(applied).error();
    why.condition = std::string(kMsgErrorUpdateSecret);
    why.event.insert(0, "could not apply template: ");
    return std::unexpected(std::move(why));
  }
  return out;
}

std::optional<Delete> owned_secret(const model::ExternalSecret& es, const json::value& existing) {
  const auto* ctl = controller_of(existing);
  if (ctl == nullptr || es.meta.uid.empty() || obj_str(ctl, "uid") != es.meta.uid) return std::nullopt;
  return Delete{std::string(str_at(existing, "metadata", "uid"))};
}

Step<Action> desired_secret(const model::ExternalSecret& es, SecretContent content, bool any_missing,
                            const json::value* existing) {
  SecretMap& data = content.data;
  const auto cp = es.target.creation;
  if (cp == model::CreationPolicy::none) return Keep{};
  const bool nothing = data.empty() && any_missing;
  if (nothing && es.target.deletion == model::DeletionPolicy::delete_) {
    if (existing != nullptr && cp == model::CreationPolicy::owner) {
      if (auto d = owned_secret(es, *existing)) return *d;
    }
    return Keep{kReasonDeleted, std::string(kMsgDeleted), true};
  }
  if (nothing && es.target.deletion == model::DeletionPolicy::retain) {
    return Keep{kReasonSynced, std::string(kMsgRetained), true};
  }
  // As ESO: Merge does not create the Secret; Ready=True, and it is looked
  // for again at the next refresh (an unmanaged Secret's creation wakes
  // nothing, in ESO as here).
  if (existing == nullptr && cp == model::CreationPolicy::merge)
    return Keep{kReasonMissing, std::string(kMsgMissing), true};
  if (auto ok = check_existing(es, existing); !ok) return std::unexpected(ok.error());
  SecretMap final_data;
  if (existing != nullptr && (cp == model::CreationPolicy::merge || cp == model::CreationPolicy::create_or_merge)) {
    auto cur = secret_data(*existing);
    if (!cur)
      return std::unexpected(refusal(kMsgErrorUpdateSecret,
                                     "unable to mutate secret " + es.target.name + ": " + cur.error().message, false));
    final_data = std::move(*cur);
  }
  for (auto& [k, v] : data) final_data.insert_or_assign(k, std::move(v));
  const std::string hash = data_hash(final_data);
  const WantedMeta want = wanted_meta(es, hash, content);
  if (existing != nullptr && up_to_date(es, *existing, hash, want)) return Keep{};
  if (existing != nullptr && immutable(*existing)) {
    return std::unexpected(refusal(kMsgErrorUpdateImmutable,
                                   "unable to update secret " + es.target.name + ": secret is immutable", false));
  }
  return Write{secret_body(es, existing, final_data, want), existing == nullptr};
}

}  // namespace rootseal::sync::reconcile
