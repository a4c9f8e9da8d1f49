#include "model/parse.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <initializer_list>
#include <regex>
#include <utility>

#include "rootseal/kms/error.hpp"
#include "kube/service_account_token.hpp"
#include "model/duration.hpp"
#include "rootseal/kms/encoding.hpp"

namespace rootseal::sync::model {

namespace json = boost::json;
using kms::Errc;
using kms::fail;
using kms::Result;

std::string_view to_string(StoreKind k) noexcept {
  return k == StoreKind::cluster_secret_store ? "ClusterSecretStore" : "SecretStore";
}
std::string_view to_string(CreationPolicy p) noexcept {
  switch (p) {
    case CreationPolicy::owner:
      return "Owner";
    case CreationPolicy::orphan:
      return "Orphan";
    case CreationPolicy::merge:
      return "Merge";
    case CreationPolicy::none:
      return "None";
    case CreationPolicy::create_or_merge:
      return "CreateOrMerge";
  }
  return "?";
}
std::string_view to_string(SecretStore::Provider p) noexcept {
  switch (p) {
    case SecretStore::Provider::vault:
      return "vault";
    case SecretStore::Provider::aws:
      return "aws";
    case SecretStore::Provider::azurekv:
      return "azurekv";
    case SecretStore::Provider::gcpsm:
      return "gcpsm";
    case SecretStore::Provider::conjur:
      return "conjur";
  }
  return "?";
}
std::string_view to_string(DeletionPolicy p) noexcept {
  switch (p) {
    case DeletionPolicy::retain:
      return "Retain";
    case DeletionPolicy::delete_:
      return "Delete";
    case DeletionPolicy::merge:
      return "Merge";
  }
  return "?";
}

namespace {

std::unexpected<kms::Error> bad(const std::string& path, std::string_view reason) {
  return fail(Errc::invalid_argument, path + ": " + std::string(reason));
}

std::string join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}
std::string index(const std::string& path, std::size_t i) { return path + "[" + std::to_string(i) + "]"; }

// A JSON object with the path it was found at, for messages.
struct Obj {
  const json::object* o = nullptr;
  std::string path;

  [[nodiscard]] const json::value* get(std::string_view key) const {
    const auto* v = o->if_contains(key);
    return (v == nullptr || v->is_null()) ? nullptr : v;
  }
  [[nodiscard]] bool has(std::string_view key) const { return get(key) != nullptr; }
  [[nodiscard]] std::string at(std::string_view key) const { return join(path, key); }
};

Result<Obj> as_obj(const json::value& v, const std::string& path) {
  if (!v.is_object()) return bad(path, "must be an object");
  return Obj{&v.as_object(), path};
}

Result<std::optional<Obj>> opt_obj(const Obj& parent, std::string_view key) {
  const auto* v = parent.get(key);
  if (v == nullptr) return std::optional<Obj>{};
  ROOTSEAL_LET(o, as_obj(*v, parent.at(key)));
  return std::optional<Obj>(std::move(o));
}

Result<std::optional<std::string>> opt_str(const Obj& parent, std::string_view key) {
  const auto* v = parent.get(key);
  if (v == nullptr) return std::optional<std::string>{};
  if (!v->is_string()) return bad(parent.at(key), "must be a string");
  return std::optional<std::string>(std::string(v->as_string()));
}

Result<std::string> str_or(const Obj& parent, std::string_view key, std::string def) {
  ROOTSEAL_LET(s, opt_str(parent, key));
  return s ? std::move(*s) : std::move(def);
}

Result<std::string> req_str(const Obj& parent, std::string_view key) {
  ROOTSEAL_LET(s, opt_str(parent, key));
  if (!s || s->empty()) return bad(parent.at(key), "required");
  return std::move(*s);
}

Result<bool> bool_or(const Obj& parent, std::string_view key, bool def) {
  const auto* v = parent.get(key);
  if (v == nullptr) return def;
  if (!v->is_bool()) return bad(parent.at(key), "must be true or false");
  return v->as_bool();
}

Result<StringMap> str_map(const Obj& parent, std::string_view key) {
  StringMap out;
  const auto* v = parent.get(key);
  if (v == nullptr) return out;
  if (!v->is_object()) return bad(parent.at(key), "must be a map of strings");
  for (const auto& kv : v->as_object()) {
    if (!kv.value().is_string()) return bad(join(parent.at(key), kv.key()), "must be a string");
    out.emplace(std::string(kv.key()), std::string(kv.value().as_string()));
  }
  return out;
}

Result<std::vector<std::string>> str_list(const Obj& parent, std::string_view key) {
  std::vector<std::string> out;
  const auto* v = parent.get(key);
  if (v == nullptr) return out;
  if (!v->is_array()) return bad(parent.at(key), "must be a list of strings");
  std::size_t i = 0;
  for (const auto& e : v->as_array()) {
    if (!e.is_string()) return bad(index(parent.at(key), i), "must be a string");
    out.emplace_back(e.as_string());
    ++i;
  }
  return out;
}

Result<const json::array*> opt_array(const Obj& parent, std::string_view key) {
  const auto* v = parent.get(key);
  if (v == nullptr) return static_cast<const json::array*>(nullptr);
  if (!v->is_array()) return bad(parent.at(key), "must be a list");
  return &v->as_array();
}

template <class E>
Result<E> enum_field(const Obj& parent, std::string_view key, E def,
                     std::initializer_list<std::pair<std::string_view, E>> values) {
  ROOTSEAL_LET(s, opt_str(parent, key));
  if (!s || s->empty()) return def;
  std::string allowed;
  for (const auto& [name, e] : values) {
    if (*s == name) return e;
    if (!allowed.empty()) allowed += ", ";
    allowed += name;
  }
  return bad(parent.at(key), "unsupported value '" + *s + "' (supported: " + allowed + ")");
}

// Fields rootseal knows but does not serve: present and non-empty -> error.
Result<void> unsupported(const Obj& parent, std::initializer_list<std::string_view> keys) {
  for (auto k : keys) {
    const auto* v = parent.get(k);
    if (v == nullptr) continue;
    if (v->is_array() && v->as_array().empty()) continue;
    if (v->is_object() && v->as_object().empty()) continue;
    if (v->is_string() && v->as_string().empty()) continue;
    return bad(parent.at(k), "not supported by rootseal");
  }
  return {};
}

// A DNS subdomain (RFC 1123), the rule for Secret and most object names.
bool valid_object_name(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) return false;
  }
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  return alnum(s.front()) && alnum(s.back());
}

// A Secret data key: [-._a-zA-Z0-9]+, at most 253 characters.
bool valid_secret_key(std::string_view s) {
  if (s.empty() || s.size() > 253 || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_';
  });
}

Result<std::chrono::nanoseconds> duration_field(const Obj& parent, std::string_view key, std::chrono::nanoseconds def) {
  const auto* v = parent.get(key);
  if (v == nullptr) return def;
  if (!v->is_string()) return bad(parent.at(key), "must be a duration string such as \"1h\" or \"15m\"");
  auto d = parse_go_duration(v->as_string());
  if (!d) return bad(parent.at(key), d.error().message);
  // Go allows up to ~292 years; the reconcilers add the interval to the
  // clock (nanoseconds since 1970), which that would overflow. Longer than
  // kLongestDelay (100 years) means "never" just as well.
  return std::min<std::chrono::nanoseconds>(*d, kms::kLongestDelay);
}

Result<StoreRef> store_ref(const Obj& o) {
  StoreRef r;
  ROOTSEAL_TRY_ASSIGN(r.name, req_str(o, "name"));
  ROOTSEAL_TRY_ASSIGN(r.kind, enum_field(o, "kind", StoreKind::secret_store,
                                         {{"SecretStore", StoreKind::secret_store},
                                          {"ClusterSecretStore", StoreKind::cluster_secret_store}}));
  return r;
}

Result<RemoteRef> remote_ref(const Obj& o) {
  RemoteRef r;
  ROOTSEAL_TRY_ASSIGN(r.key, req_str(o, "key"));
  ROOTSEAL_TRY_ASSIGN(r.property, str_or(o, "property", ""));
  ROOTSEAL_TRY_ASSIGN(r.version, str_or(o, "version", ""));
  ROOTSEAL_TRY_ASSIGN(r.decoding, enum_field(o, "decodingStrategy", DecodingStrategy::none,
                                             {{"None", DecodingStrategy::none},
                                              {"Auto", DecodingStrategy::auto_detect},
                                              {"Base64", DecodingStrategy::base64},
                                              {"Base64URL", DecodingStrategy::base64url}}));
  ROOTSEAL_TRY(enum_field(o, "conversionStrategy", 0, {{"Default", 0}}));
  ROOTSEAL_TRY_ASSIGN(r.fetch_metadata, enum_field(o, "metadataPolicy", false, {{"None", false}, {"Fetch", true}}));
  ROOTSEAL_TRY(enum_field(o, "nullBytePolicy", 0, {{"Ignore", 0}}));
  return r;
}

// sourceRef{storeRef | generatorRef}: a per-item store; generators are not served.
Result<std::optional<StoreRef>> source_ref(const Obj& item) {
  ROOTSEAL_LET(src, opt_obj(item, "sourceRef"));
  if (!src) return std::optional<StoreRef>{};
  ROOTSEAL_TRY(unsupported(*src, {"generatorRef"}));
  ROOTSEAL_LET(sr, opt_obj(*src, "storeRef"));
  if (!sr) return std::optional<StoreRef>{};
  ROOTSEAL_LET(r, store_ref(*sr));
  return std::optional<StoreRef>(std::move(r));
}

// Calls each_item(item, path) for every object of the list parent.key (absent: none).
template <class F>
Result<void> for_each_item(const Obj& parent, std::string_view key, F each_item) {
  ROOTSEAL_LET(items, opt_array(parent, key));
  if (items == nullptr) return {};
  std::size_t i = 0;
  for (const auto& e : *items) {
    const std::string path = index(parent.at(key), i++);
    ROOTSEAL_LET(item, as_obj(e, path));
    ROOTSEAL_TRY(each_item(item, path));
  }
  return {};
}

// template.templateFrom[]: configMap and literal sources. A Secret source is
// refused: its text would be handled as template text, outside locked memory.
Result<std::vector<TemplateFrom>> parse_template_from(const Obj& t) {
  std::vector<TemplateFrom> out;
  auto each = [&out](const Obj& item, const std::string& path) -> Result<void> {
    TemplateFrom tf;
    if (item.has("secret")) {
      return bad(item.at("secret"),
                 "not supported by rootseal (the template text of a Secret would leave locked memory); "
                 "use a configMap or a literal");
    }
    ROOTSEAL_LET(target, str_or(item, "target", "Data"));
    std::string lower;
    for (char c : target) lower.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
    if (lower == "data" || lower.empty()) {
      tf.target = TemplateTarget::data;
    } else if (lower == "annotations") {
      tf.target = TemplateTarget::annotations;
    } else if (lower == "labels") {
      tf.target = TemplateTarget::labels;
    } else {
      return bad(item.at("target"), "must be Data, Annotations or Labels for a Secret target");
    }
    ROOTSEAL_TRY_ASSIGN(tf.values_decoding, enum_field(item, "valuesDecodingStrategy", DecodingStrategy::none,
                                                       {{"None", DecodingStrategy::none},
                                                        {"Auto", DecodingStrategy::auto_detect},
                                                        {"Base64", DecodingStrategy::base64},
                                                        {"Base64URL", DecodingStrategy::base64url}}));
    ROOTSEAL_LET(cm, opt_obj(item, "configMap"));
    if (cm) {
      ROOTSEAL_LET(name, req_str(*cm, "name"));
      tf.config_map = std::move(name);
      auto each_item = [&tf](const Obj& ref, const std::string&) -> Result<void> {
        TemplateFromItem it;
        ROOTSEAL_TRY_ASSIGN(it.key, req_str(ref, "key"));
        ROOTSEAL_TRY_ASSIGN(it.scope, enum_field(ref, "templateAs", TemplateScope::values,
                                                 {{"Values", TemplateScope::values},
                                                  {"KeysAndValues", TemplateScope::keys_and_values}}));
        tf.items.push_back(std::move(it));
        return {};
      };
      ROOTSEAL_TRY(for_each_item(*cm, "items", each_item));
    }
    if (item.has("literal")) {
      ROOTSEAL_LET(lit, str_or(item, "literal", ""));
      tf.literal = std::move(lit);
    }
    if (!tf.config_map && !tf.literal) return bad(path, "needs a configMap or a literal");
    out.push_back(std::move(tf));
    return {};
  };
  ROOTSEAL_TRY(for_each_item(t, "templateFrom", each));
  return out;
}

// Whose template: an ExternalSecret's target.template, or a PushSecret's
// spec.template, which ESO's PushSecret controller always renders with
// engine v2 (engineVersion v1 too) and whose data keys are keys of the
// source Secret in memory, never written to Kubernetes (not checked as
// Secret keys, as ESO does not).
enum class TemplateOf { external_secret, push_secret };

Result<SecretTemplate> parse_template(const Obj& t, TemplateOf of) {
  SecretTemplate out;
  const bool push = of == TemplateOf::push_secret;
  if (push) {
    ROOTSEAL_TRY(enum_field(t, "engineVersion", 2, {{"v2", 2}, {"v1", 1}}));
  } else {
    ROOTSEAL_TRY(enum_field(t, "engineVersion", 2, {{"v2", 2}}));
  }
  ROOTSEAL_LET(type, opt_str(t, "type"));
  if (type && !type->empty()) out.type = std::move(*type);
  ROOTSEAL_TRY_ASSIGN(out.merge_policy, enum_field(t, "mergePolicy", MergePolicy::replace,
                                                   {{"Replace", MergePolicy::replace}, {"Merge", MergePolicy::merge}}));
  ROOTSEAL_LET(md, opt_obj(t, "metadata"));
  if (md) {
    ROOTSEAL_TRY(unsupported(*md, {"finalizers"}));
    ROOTSEAL_TRY_ASSIGN(out.labels, str_map(*md, "labels"));
    ROOTSEAL_TRY_ASSIGN(out.annotations, str_map(*md, "annotations"));
  }
  ROOTSEAL_TRY_ASSIGN(out.template_from, parse_template_from(t));
  ROOTSEAL_LET(data, str_map(t, "data"));
  for (auto& [k, v] : data) {
    if (!push && !valid_secret_key(k)) return bad(t.at("data") + "." + k, "not a valid Secret key ([-._a-zA-Z0-9]+)");
    out.data.emplace(k, std::move(v));
  }
  return out;
}

}  // namespace

Result<ObjectMeta> parse_meta(const json::value& object) {
  ROOTSEAL_LET(root, as_obj(object, "object"));
  root.path.clear();
  ROOTSEAL_LET(md, opt_obj(root, "metadata"));
  if (!md) return bad("metadata", "required");
  md->path = "metadata";
  ObjectMeta m;
  ROOTSEAL_TRY_ASSIGN(m.name, req_str(*md, "name"));
  ROOTSEAL_TRY_ASSIGN(m.namespace_, str_or(*md, "namespace", ""));
  ROOTSEAL_TRY_ASSIGN(m.uid, str_or(*md, "uid", ""));
  ROOTSEAL_TRY_ASSIGN(m.resource_version, str_or(*md, "resourceVersion", ""));
  if (const auto* g = md->get("generation"); g != nullptr) {
    // Kubernetes' generation is an int64; a larger number threw out of
    // to_number (found by fuzz_eso_manifest): refused here.
    if (!g->is_int64() && !(g->is_uint64() && g->as_uint64() <= static_cast<std::uint64_t>(INT64_MAX))) {
      return bad(md->at("generation"), "must be an integer of at most 2^63-1");
    }
    m.generation = g->to_number<std::int64_t>();
  }
  ROOTSEAL_TRY_ASSIGN(m.labels, str_map(*md, "labels"));
  ROOTSEAL_TRY_ASSIGN(m.annotations, str_map(*md, "annotations"));
  ROOTSEAL_TRY_ASSIGN(m.finalizers, str_list(*md, "finalizers"));
  m.being_deleted = md->has("deletionTimestamp");
  return m;
}

namespace {

// spec.target, then the rules that tie deletionPolicy to creationPolicy.
Result<void> parse_target(const Obj& spec, ExternalSecret& es) {
  es.target.name = es.meta.name;
  ROOTSEAL_LET(target, opt_obj(spec, "target"));
  if (target) {
    ROOTSEAL_TRY(unsupported(*target, {"manifest"}));
    ROOTSEAL_LET(name, opt_str(*target, "name"));
    if (name && !name->empty()) es.target.name = std::move(*name);
    ROOTSEAL_TRY_ASSIGN(es.target.creation, enum_field(*target, "creationPolicy", CreationPolicy::owner,
                                                       {{"Owner", CreationPolicy::owner},
                                                        {"Orphan", CreationPolicy::orphan},
                                                        {"Merge", CreationPolicy::merge},
                                                        {"None", CreationPolicy::none},
                                                        {"CreateOrMerge", CreationPolicy::create_or_merge}}));
    ROOTSEAL_TRY_ASSIGN(es.target.deletion, enum_field(*target, "deletionPolicy", DeletionPolicy::retain,
                                                       {{"Retain", DeletionPolicy::retain},
                                                        {"Delete", DeletionPolicy::delete_},
                                                        {"Merge", DeletionPolicy::merge}}));
    ROOTSEAL_TRY_ASSIGN(es.target.immutable, bool_or(*target, "immutable", false));
    ROOTSEAL_LET(tmpl, opt_obj(*target, "template"));
    if (tmpl) {
      ROOTSEAL_LET(t, parse_template(*tmpl, TemplateOf::external_secret));
      es.target.template_ = std::move(t);
    }
  }
  if (!valid_object_name(es.target.name)) {
    return bad("spec.target.name", "'" + es.target.name + "' is not a valid Secret name (RFC 1123 subdomain)");
  }
  const auto cp = es.target.creation;
  if (es.target.deletion == DeletionPolicy::delete_ &&
      (cp == CreationPolicy::merge || cp == CreationPolicy::none || cp == CreationPolicy::create_or_merge)) {
    return bad("spec.target.deletionPolicy", "Delete is not allowed with creationPolicy " + std::string(to_string(cp)));
  }
  if (es.target.deletion == DeletionPolicy::merge && cp == CreationPolicy::none) {
    return bad("spec.target.deletionPolicy", "Merge is not allowed with creationPolicy None");
  }
  return {};
}

// An item's sourceRef.storeRef, or the ExternalSecret's own store: one of them must be there.
Result<std::optional<StoreRef>> item_store(const Obj& item, const std::string& path, const ExternalSecret& es) {
  ROOTSEAL_LET(store, source_ref(item));
  if (!store && !es.has_store_ref) {
    return bad(path, "no store: set spec.secretStoreRef or this item's sourceRef.storeRef");
  }
  return store;
}

// spec.data[]: one Secret key per remote reference.
Result<void> parse_data(const Obj& spec, ExternalSecret& es) {
  return for_each_item(spec, "data", [&es](const Obj& item, const std::string& path) -> Result<void> {
    DataItem d;
    ROOTSEAL_TRY_ASSIGN(d.secret_key, req_str(item, "secretKey"));
    if (!valid_secret_key(d.secret_key)) return bad(item.at("secretKey"), "not a valid Secret key ([-._a-zA-Z0-9]+)");
    ROOTSEAL_LET(rr, opt_obj(item, "remoteRef"));
    if (!rr) return bad(item.at("remoteRef"), "required");
    ROOTSEAL_TRY_ASSIGN(d.remote_ref, remote_ref(*rr));
    ROOTSEAL_TRY_ASSIGN(d.store_override, item_store(item, path, es));
    es.data.push_back(std::move(d));
    return {};
  });
}

// dataFrom[].rewrite[]: each item holds exactly one operation (the CRD's
// MinProperties/MaxProperties = 1). The regexp is compiled when it is used,
// as ESO does: a bad one fails the reconcile with Go's message, not the parse.
Result<std::vector<Rewrite>> parse_rewrites(const Obj& item) {
  std::vector<Rewrite> out;
  auto each = [&out](const Obj& op, const std::string& path) -> Result<void> {
    if (op.o->size() != 1) return bad(path, "must hold exactly one of regexp, transform, merge");
    ROOTSEAL_LET(mg, opt_obj(op, "merge"));
    if (mg) {
      RewriteMerge m;
      ROOTSEAL_TRY_ASSIGN(m.into, str_or(*mg, "into", ""));
      ROOTSEAL_TRY_ASSIGN(m.priority, str_list(*mg, "priority"));
      ROOTSEAL_TRY_ASSIGN(m.ignore_not_found,
                          enum_field(*mg, "priorityPolicy", false, {{"Strict", false}, {"IgnoreNotFound", true}}));
      ROOTSEAL_TRY_ASSIGN(m.ignore_conflicts,
                          enum_field(*mg, "conflictPolicy", false, {{"Error", false}, {"Ignore", true}}));
      ROOTSEAL_TRY_ASSIGN(m.json, enum_field(*mg, "strategy", false, {{"Extract", false}, {"JSON", true}}));
      out.emplace_back(std::move(m));
      return {};
    }
    ROOTSEAL_LET(re, opt_obj(op, "regexp"));
    if (re) {
      RewriteRegexp r;
      ROOTSEAL_TRY_ASSIGN(r.source, req_str(*re, "source"));
      if (re->get("target") == nullptr) return bad(re->at("target"), "required");
      ROOTSEAL_TRY_ASSIGN(r.target, str_or(*re, "target", ""));
      out.emplace_back(std::move(r));
      return {};
    }
    ROOTSEAL_LET(tr, opt_obj(op, "transform"));
    if (tr) {
      RewriteTransform t;
      ROOTSEAL_TRY_ASSIGN(t.template_text, req_str(*tr, "template"));
      out.emplace_back(std::move(t));
      return {};
    }
    return bad(path, "must hold exactly one of regexp, transform, merge");
  };
  ROOTSEAL_TRY(for_each_item(item, "rewrite", each));
  return out;
}

// dataFrom[].find{path, name.regexp, tags, conversionStrategy, decodingStrategy}.
Result<FindRef> find_ref(const Obj& o) {
  FindRef f;
  ROOTSEAL_TRY_ASSIGN(f.path, opt_str(o, "path"));
  if (f.path && f.path->empty()) f.path.reset();
  ROOTSEAL_LET(name, opt_obj(o, "name"));
  if (name) ROOTSEAL_TRY_ASSIGN(f.name_regexp, str_or(*name, "regexp", ""));
  ROOTSEAL_TRY_ASSIGN(f.tags, str_map(o, "tags"));
  ROOTSEAL_TRY_ASSIGN(f.decoding, enum_field(o, "decodingStrategy", DecodingStrategy::none,
                                             {{"None", DecodingStrategy::none},
                                              {"Auto", DecodingStrategy::auto_detect},
                                              {"Base64", DecodingStrategy::base64},
                                              {"Base64URL", DecodingStrategy::base64url}}));
  ROOTSEAL_TRY(enum_field(o, "conversionStrategy", 0, {{"Default", 0}}));
  ROOTSEAL_TRY(enum_field(o, "nullBytePolicy", 0, {{"Ignore", 0}}));
  return f;
}

// spec.dataFrom[]: extract or find, with rewrite (generators are refused).
Result<void> parse_data_from(const Obj& spec, ExternalSecret& es) {
  return for_each_item(spec, "dataFrom", [&es](const Obj& item, const std::string& path) -> Result<void> {
    ROOTSEAL_LET(ex, opt_obj(item, "extract"));
    ROOTSEAL_LET(fi, opt_obj(item, "find"));
    if (ex && fi) return bad(path, "must hold one of extract and find, not both");
    if (!ex && !fi) return bad(path, "extract or find is required (generators are not supported by rootseal)");
    DataFromItem d;
    if (ex) {
      ROOTSEAL_TRY_ASSIGN(d.extract, remote_ref(*ex));
    } else {
      ROOTSEAL_TRY_ASSIGN(d.find, find_ref(*fi));
    }
    ROOTSEAL_TRY_ASSIGN(d.rewrite, parse_rewrites(item));
    ROOTSEAL_TRY_ASSIGN(d.store_override, item_store(item, path, es));
    es.data_from.push_back(std::move(d));
    return {};
  });
}

// status (what rootseal needs from a previous run, possibly ESO's): read
// leniently, a malformed field is treated as absent.
void read_status(const Obj& root, ExternalSecret& es) {
  const auto* st = root.get("status");
  if (st == nullptr || !st->is_object()) return;
  const Obj s{&st->as_object(), "status"};
  es.status.refresh_time = str_or(s, "refreshTime", "").value_or("");
  es.status.synced_resource_version = str_or(s, "syncedResourceVersion", "").value_or("");
  if (const auto* b = s.get("binding"); b != nullptr && b->is_object()) {
    es.status.binding_name = str_or(Obj{&b->as_object(), "status.binding"}, "name", "").value_or("");
  }
  const auto* conds = s.get("conditions");
  if (conds == nullptr || !conds->is_array()) return;
  for (const auto& c : conds->as_array()) {
    if (!c.is_object()) continue;
    const Obj co{&c.as_object(), "status.conditions"};
    if (str_or(co, "type", "").value_or("") != "Ready") continue;
    es.status.ready_status = str_or(co, "status", "").value_or("");
    es.status.ready_reason = str_or(co, "reason", "").value_or("");
    es.status.ready_message = str_or(co, "message", "").value_or("");
    es.status.ready_transition = str_or(co, "lastTransitionTime", "").value_or("");
  }
}

}  // namespace

// Reads the ExternalSecret schema top to bottom; the first error found wins,
// so the order of the steps below is the order of the messages.
Result<ExternalSecret> parse_external_secret(const json::value& object) {
  ExternalSecret es;
  ROOTSEAL_LET(root, as_obj(object, "object"));
  root.path.clear();
  ROOTSEAL_TRY_ASSIGN(es.api_version, str_or(root, "apiVersion", "external-secrets.io/v1"));
  if (es.api_version != "external-secrets.io/v1" && es.api_version != "external-secrets.io/v1beta1") {
    return bad("apiVersion", "unsupported '" + es.api_version + "' (external-secrets.io/v1 or v1beta1)");
  }
  ROOTSEAL_TRY_ASSIGN(es.meta, parse_meta(object));
  ROOTSEAL_LET(spec, opt_obj(root, "spec"));
  if (!spec) return bad("spec", "required");
  spec->path = "spec";

  ROOTSEAL_LET(ref, opt_obj(*spec, "secretStoreRef"));
  if (ref) {
    ROOTSEAL_TRY_ASSIGN(es.store_ref, store_ref(*ref));
    es.has_store_ref = true;
  }
  ROOTSEAL_TRY_ASSIGN(es.refresh_interval, duration_field(*spec, "refreshInterval", std::chrono::hours(1)));
  ROOTSEAL_TRY_ASSIGN(es.refresh_policy, enum_field(*spec, "refreshPolicy", RefreshPolicy::periodic,
                                                    {{"Periodic", RefreshPolicy::periodic},
                                                     {"OnChange", RefreshPolicy::on_change},
                                                     {"CreatedOnce", RefreshPolicy::created_once}}));
  ROOTSEAL_TRY(unsupported(*spec, {"syncWindows"}));
  ROOTSEAL_TRY(parse_target(*spec, es));
  ROOTSEAL_TRY(parse_data(*spec, es));
  ROOTSEAL_TRY(parse_data_from(*spec, es));
  const auto& tmpl = es.target.template_;
  if (es.data.empty() && es.data_from.empty() && !(tmpl && (!tmpl->data.empty() || !tmpl->template_from.empty()))) {
    return bad("spec", "one of data, dataFrom, target.template.data or target.template.templateFrom must be set");
  }
  if (!es.has_store_ref && es.data.empty() && es.data_from.empty()) {
    return bad("spec.secretStoreRef", "required");
  }
  read_status(root, es);
  return es;
}

namespace {

Result<SecretKeyRef> key_ref(const Obj& o, StoreKind kind, const std::string& own_ns) {
  SecretKeyRef r;
  ROOTSEAL_TRY_ASSIGN(r.name, req_str(o, "name"));
  ROOTSEAL_TRY_ASSIGN(r.key, req_str(o, "key"));
  ROOTSEAL_TRY_ASSIGN(r.namespace_, str_or(o, "namespace", ""));
  if (kind == StoreKind::secret_store) {
    if (!r.namespace_.empty() && r.namespace_ != own_ns) {
      return bad(o.at("namespace"), "a SecretStore may only reference Secrets in its own namespace");
    }
    r.namespace_ = own_ns;
  } else if (r.namespace_.empty()) {
    return bad(o.at("namespace"), "required in a ClusterSecretStore");
  }
  return r;
}

// ESO's ServiceAccountSelector {name, namespace, audiences}; a namespaced
// SecretStore may name its own namespace only (ESO's message otherwise).
Result<ServiceAccountRef> service_account_ref(const Obj& o, StoreKind kind, const std::string& own_ns) {
  ServiceAccountRef r;
  ROOTSEAL_TRY_ASSIGN(r.name, req_str(o, "name"));
  ROOTSEAL_TRY_ASSIGN(r.namespace_, str_or(o, "namespace", ""));
  ROOTSEAL_TRY_ASSIGN(r.audiences, str_list(o, "audiences"));
  if (kind == StoreKind::secret_store) {
    if (!r.namespace_.empty() && r.namespace_ != own_ns)
      return bad(o.at("namespace"), std::string(kMsgServiceAccountNamespace));
    r.namespace_ = own_ns;
  }
  return r;
}

// A secretRef holding a JWT: ESO's key defaults to "token".
Result<SecretKeyRef> token_key_ref(const Obj& o, StoreKind kind, const std::string& own_ns) {
  Obj ref = o;
  json::object with_key;
  if (!ref.has("key")) {
    with_key = *ref.o;
    with_key["key"] = "token";
    ref.o = &with_key;
  }
  return key_ref(ref, kind, own_ns);
}

// The secret key selector `name` of `parent`, which must be there.
Result<SecretKeyRef> required_key_ref(const Obj& parent, std::string_view name, const SecretStore& s) {
  ROOTSEAL_LET(o, opt_obj(parent, name));
  if (!o) return bad(parent.at(name), "required");
  return key_ref(*o, s.kind, s.meta.namespace_);
}

// auth.kubernetes {mountPath, role, serviceAccountRef | secretRef} and
// auth.jwt {path, role, kubernetesServiceAccountToken | secretRef}.
Result<void> parse_vault_jwt_auth(const Obj& auth, SecretStore& s) {
  auto& a = s.vault.auth;
  const auto& ns = s.meta.namespace_;
  ROOTSEAL_LET(k8s, opt_obj(auth, "kubernetes"));
  ROOTSEAL_LET(jwt, opt_obj(auth, "jwt"));
  if (k8s) {
    a.kind = VaultAuth::Kind::kubernetes;
    ROOTSEAL_TRY_ASSIGN(a.login_path, str_or(*k8s, "mountPath", "kubernetes"));
    ROOTSEAL_TRY_ASSIGN(a.role, req_str(*k8s, "role"));
    ROOTSEAL_LET(sa, opt_obj(*k8s, "serviceAccountRef"));
    ROOTSEAL_LET(sr, opt_obj(*k8s, "secretRef"));
    if (sa) {
      ROOTSEAL_TRY_ASSIGN(a.service_account, service_account_ref(*sa, s.kind, ns));
      a.has_service_account = true;
    } else if (sr) {
      ROOTSEAL_TRY_ASSIGN(a.jwt_secret_ref, token_key_ref(*sr, s.kind, ns));
    } else {
      // ESO falls back to the token mounted in its own pod; rootseald runs outside the cluster.
      return bad(k8s->path, "serviceAccountRef or secretRef is required (rootseald has no pod token of its own)");
    }
  } else {
    a.kind = VaultAuth::Kind::jwt;
    ROOTSEAL_TRY_ASSIGN(a.login_path, str_or(*jwt, "path", "jwt"));
    ROOTSEAL_TRY_ASSIGN(a.role, str_or(*jwt, "role", ""));
    while (!a.role.empty() && (a.role.front() == ' ' || a.role.front() == '\t')) a.role.erase(0, 1);  // ESO: TrimSpace
    while (!a.role.empty() && (a.role.back() == ' ' || a.role.back() == '\t')) a.role.pop_back();
    ROOTSEAL_LET(sr, opt_obj(*jwt, "secretRef"));
    ROOTSEAL_LET(kt, opt_obj(*jwt, "kubernetesServiceAccountToken"));
    if (sr) {
      ROOTSEAL_TRY_ASSIGN(a.jwt_secret_ref, key_ref(*sr, s.kind, ns));
    } else if (kt) {
      ROOTSEAL_LET(sa, opt_obj(*kt, "serviceAccountRef"));
      if (!sa) return bad(kt->at("serviceAccountRef"), "required");
      ROOTSEAL_TRY_ASSIGN(a.service_account, service_account_ref(*sa, s.kind, ns));
      a.has_service_account = true;
      if (kt->has("audiences")) {
        ROOTSEAL_TRY_ASSIGN(a.token_audiences, str_list(*kt, "audiences"));
      } else {
        a.token_audiences = {"vault"};
      }
      if (const auto* e = kt->get("expirationSeconds"); e != nullptr) {
        if (!e->is_int64() && !e->is_uint64()) return bad(kt->at("expirationSeconds"), "must be an integer");
        const auto v = e->is_int64() ? e->as_int64()
                                     : static_cast<std::int64_t>(std::min<std::uint64_t>(e->as_uint64(), 1ull << 40));
        if (v < 600 || v > (std::int64_t{1} << 32)) {
          return bad(kt->at("expirationSeconds"), "must be between 600 (Kubernetes' minimum) and 2^32");
        }
        a.token_expiration_seconds = v;
      }
    } else {
      return bad(jwt->path,
                 "neither `secretRef` nor `kubernetesServiceAccountToken` was supplied as token source for jwt "
                 "authentication");
    }
  }
  return {};
}

Result<void> parse_vault(const Obj& v, SecretStore& s) {
  auto& out = s.vault;
  ROOTSEAL_TRY_ASSIGN(out.server, req_str(v, "server"));
  if (!out.server.starts_with("https://") && !out.server.starts_with("http://")) {
    return bad(v.at("server"), "must be an http:// or https:// URL");
  }
  ROOTSEAL_TRY_ASSIGN(out.path, str_or(v, "path", ""));
  ROOTSEAL_TRY_ASSIGN(
      out.version, enum_field(v, "version", std::string("v2"), {{"v2", std::string("v2")}, {"v1", std::string("v1")}}));
  ROOTSEAL_TRY_ASSIGN(out.namespace_, str_or(v, "namespace", ""));
  ROOTSEAL_TRY(
      unsupported(v, {"caProvider", "tls", "headers", "checkAndSet", "forwardInconsistent", "readYourWrites"}));
  ROOTSEAL_LET(ca, opt_str(v, "caBundle"));
  if (ca && !ca->empty()) {
    auto pem = kms::base64_decode(*ca);
    if (!pem) return bad(v.at("caBundle"), "must be base64 of a PEM bundle");
    out.ca_bundle.assign(pem->begin(), pem->end());
  }
  ROOTSEAL_LET(auth, opt_obj(v, "auth"));
  if (!auth) {
    if (s.host_credentials.empty()) {
      return bad(v.at("auth"), "required (or annotate the store " + std::string(kHostCredentialsAnnotation) +
                                   " to use credentials from rootseald's configuration)");
    }
    out.auth.kind = VaultAuth::Kind::host;
    return {};
  }
  ROOTSEAL_TRY(unsupported(*auth, {"ldap", "iam", "userPass", "gcp"}));
  const auto ns = s.meta.namespace_;
  ROOTSEAL_LET(tok, opt_obj(*auth, "tokenSecretRef"));
  ROOTSEAL_LET(ar, opt_obj(*auth, "appRole"));
  ROOTSEAL_LET(cert, opt_obj(*auth, "cert"));
  const int methods = int(tok.has_value()) + int(ar.has_value()) + int(auth->has("kubernetes")) +
                      int(auth->has("jwt")) + int(cert.has_value());
  if (methods > 1) return bad(auth->path, "exactly one of tokenSecretRef, appRole, kubernetes, jwt or cert");
  if (auth->has("kubernetes") || auth->has("jwt")) {
    ROOTSEAL_TRY(parse_vault_jwt_auth(*auth, s));
  } else if (cert) {
    // ESO auth.cert: clientCert (the certificate) and secretRef (its key), path (default "cert"), vaultRole.
    out.auth.kind = VaultAuth::Kind::cert;
    ROOTSEAL_TRY_ASSIGN(out.auth.login_path, str_or(*cert, "path", "cert"));
    if (out.auth.login_path.empty()) out.auth.login_path = "cert";
    ROOTSEAL_TRY_ASSIGN(out.auth.role, str_or(*cert, "vaultRole", ""));
    ROOTSEAL_LET(cc, opt_obj(*cert, "clientCert"));
    ROOTSEAL_LET(ck, opt_obj(*cert, "secretRef"));
    if (!cc) return bad(cert->at("clientCert"), "required");
    if (!ck) return bad(cert->at("secretRef"), "required");
    ROOTSEAL_TRY_ASSIGN(out.auth.client_cert_ref, key_ref(*cc, s.kind, ns));
    ROOTSEAL_TRY_ASSIGN(out.auth.client_key_ref, key_ref(*ck, s.kind, ns));
  } else if (tok) {
    out.auth.kind = VaultAuth::Kind::token;
    ROOTSEAL_TRY_ASSIGN(out.auth.token_secret_ref, key_ref(*tok, s.kind, ns));
  } else if (ar) {
    out.auth.kind = VaultAuth::Kind::app_role;
    ROOTSEAL_TRY_ASSIGN(out.auth.approle_path, str_or(*ar, "path", "approle"));
    ROOTSEAL_TRY_ASSIGN(out.auth.role_id, str_or(*ar, "roleId", ""));
    ROOTSEAL_LET(rr, opt_obj(*ar, "roleRef"));
    if (rr) ROOTSEAL_TRY_ASSIGN(out.auth.role_id_ref, key_ref(*rr, s.kind, ns));
    if (out.auth.role_id.empty() && !rr) return bad(ar->at("roleId"), "required (or roleRef)");
    ROOTSEAL_LET(sr, opt_obj(*ar, "secretRef"));
    if (!sr) return bad(ar->at("secretRef"), "required");
    ROOTSEAL_TRY_ASSIGN(out.auth.secret_id_ref, key_ref(*sr, s.kind, ns));
  } else if (!s.host_credentials.empty()) {
    out.auth.kind = VaultAuth::Kind::host;
  } else {
    return bad(auth->path, "one of tokenSecretRef, appRole, kubernetes, jwt or cert is required");
  }
  return {};
}

Result<void> parse_aws(const Obj& a, SecretStore& s) {
  auto& out = s.aws;
  ROOTSEAL_TRY_ASSIGN(out.service, enum_field(a, "service", std::string("SecretsManager"),
                                              {{"SecretsManager", std::string("SecretsManager")}}));
  ROOTSEAL_TRY_ASSIGN(out.region, req_str(a, "region"));
  ROOTSEAL_TRY(unsupported(a, {"prefix", "customSessionTags"}));
  // The role chain (ESO's createConfiguration): additionalRoles in order,
  // then role with externalID and the session tags.
  ROOTSEAL_TRY_ASSIGN(out.additional_roles, str_list(a, "additionalRoles"));
  for (std::size_t i = 0; i < out.additional_roles.size(); ++i) {
    if (!out.additional_roles[i].starts_with("arn:"))
      return bad(index(a.at("additionalRoles"), i), "must be a role ARN");
  }
  ROOTSEAL_TRY_ASSIGN(out.role, str_or(a, "role", ""));
  if (!out.role.empty() && !out.role.starts_with("arn:")) return bad(a.at("role"), "must be a role ARN");
  ROOTSEAL_TRY_ASSIGN(out.external_id, str_or(a, "externalID", ""));
  ROOTSEAL_TRY(for_each_item(a, "sessionTags", [&out](const Obj& tag, const std::string&) -> Result<void> {
    ROOTSEAL_LET(key, req_str(tag, "key"));
    ROOTSEAL_LET(value, str_or(tag, "value", ""));
    out.session_tags.emplace_back(std::move(key), std::move(value));
    return {};
  }));
  ROOTSEAL_TRY_ASSIGN(out.transitive_tag_keys, str_list(a, "transitiveTagKeys"));
  ROOTSEAL_TRY(enum_field(a, "sessionTagsPolicy", 0, {{"None", 0}}));
  if (out.role.empty() && (!out.external_id.empty() || !out.session_tags.empty() || !out.transitive_tag_keys.empty())) {
    return bad(a.at("role"), "required with externalID, sessionTags or transitiveTagKeys (they apply to it)");
  }
  if (out.session_tags.size() > 50) return bad(a.at("sessionTags"), "at most 50 session tags (an STS limit)");
  ROOTSEAL_LET(auth, opt_obj(a, "auth"));
  if (auth) {
    ROOTSEAL_LET(jwt, opt_obj(*auth, "jwt"));
    if (jwt) {
      ROOTSEAL_LET(sa, opt_obj(*jwt, "serviceAccountRef"));
      if (!sa) return bad(jwt->at("serviceAccountRef"), "required");
      ROOTSEAL_TRY_ASSIGN(out.jwt_service_account, service_account_ref(*sa, s.kind, s.meta.namespace_));
      out.has_jwt = true;
      if (auth->has("secretRef")) return bad(auth->path, "exactly one of secretRef or jwt");
    }
    ROOTSEAL_LET(sr, opt_obj(*auth, "secretRef"));
    if (sr) {
      ROOTSEAL_LET(ak, opt_obj(*sr, "accessKeyIDSecretRef"));
      ROOTSEAL_LET(sk, opt_obj(*sr, "secretAccessKeySecretRef"));
      if (!ak) return bad(sr->at("accessKeyIDSecretRef"), "required");
      if (!sk) return bad(sr->at("secretAccessKeySecretRef"), "required");
      ROOTSEAL_TRY_ASSIGN(out.access_key_id_ref, key_ref(*ak, s.kind, s.meta.namespace_));
      ROOTSEAL_TRY_ASSIGN(out.secret_access_key_ref, key_ref(*sk, s.kind, s.meta.namespace_));
      ROOTSEAL_LET(st, opt_obj(*sr, "sessionTokenSecretRef"));
      if (st) ROOTSEAL_TRY_ASSIGN(out.session_token_ref, key_ref(*st, s.kind, s.meta.namespace_));
      out.has_secret_ref = true;
    }
  }
  ROOTSEAL_LET(sm, opt_obj(a, "secretsManager"));
  if (sm) {
    ROOTSEAL_TRY_ASSIGN(out.force_delete_without_recovery, bool_or(*sm, "forceDeleteWithoutRecovery", false));
    const auto* w = sm->get("recoveryWindowInDays");
    if (w != nullptr) {
      if (!w->is_int64() && !w->is_uint64()) return bad(sm->at("recoveryWindowInDays"), "must be an integer");
      const auto days =
          w->is_int64() ? w->as_int64() : static_cast<std::int64_t>(std::min<std::uint64_t>(w->as_uint64(), 1000));
      if (days != 0) {
        if (days < 7 || days > 30) return bad(sm->at("recoveryWindowInDays"), "must be between 7 and 30");
        if (out.force_delete_without_recovery) {
          return bad(sm->at("recoveryWindowInDays"), "cannot be combined with forceDeleteWithoutRecovery");
        }
        out.recovery_window_days = static_cast<int>(days);
      }
    }
  }
  if (!out.has_secret_ref && !out.has_jwt && s.host_credentials.empty()) {
    return bad(a.at("auth.secretRef"), "required (or auth.jwt, or annotate the store " +
                                           std::string(kHostCredentialsAnnotation) +
                                           " to use credentials from rootseald's configuration)");
  }
  return {};
}

std::string host_hint() {
  return "required (or annotate the store " + std::string(kHostCredentialsAnnotation) +
         " to use credentials from rootseald's configuration)";
}

// ESO azurekv: vaultUrl, tenantId, authType, authSecretRef{clientId, clientSecret}, environmentType.
Result<void> parse_azurekv(const Obj& a, SecretStore& s) {
  auto& out = s.azurekv;
  ROOTSEAL_TRY_ASSIGN(out.vault_url, req_str(a, "vaultUrl"));
  if (!out.vault_url.starts_with("https://") && !out.vault_url.starts_with("http://")) {
    return bad(a.at("vaultUrl"), "must be an https:// URL");
  }
  while (out.vault_url.ends_with('/')) out.vault_url.pop_back();
  ROOTSEAL_TRY_ASSIGN(out.tenant_id, str_or(a, "tenantId", ""));
  ROOTSEAL_LET(auth_type, enum_field(a, "authType", 0, {{"ServicePrincipal", 0}, {"WorkloadIdentity", 1}}));
  out.workload_identity = auth_type == 1;
  ROOTSEAL_TRY(unsupported(a, {"identityId", "customCloudConfig"}));
  ROOTSEAL_TRY_ASSIGN(out.environment_type, enum_field(a, "environmentType", std::string("PublicCloud"),
                                                       {{"PublicCloud", std::string("PublicCloud")},
                                                        {"USGovernmentCloud", std::string("USGovernmentCloud")},
                                                        {"ChinaCloud", std::string("ChinaCloud")}}));
  if (out.environment_type == "USGovernmentCloud")
    out.authority_host = "https://login.microsoftonline.us";
  else if (out.environment_type == "ChinaCloud")
    out.authority_host = "https://login.chinacloudapi.cn";
  ROOTSEAL_LET(sa, opt_obj(a, "serviceAccountRef"));
  ROOTSEAL_LET(ref, opt_obj(a, "authSecretRef"));
  if (out.workload_identity) {
    if (!s.host_credentials.empty())
      return bad(a.at("authType"), "WorkloadIdentity is the store's own identity (no host credentials)");
    // ESO falls back to the token the workload identity webhook mounts in its own pod; rootseald has none.
    if (!sa)
      return bad(a.at("serviceAccountRef"),
                 "required with authType WorkloadIdentity (rootseald has no pod token of its own)");
    ROOTSEAL_TRY_ASSIGN(out.service_account, service_account_ref(*sa, s.kind, s.meta.namespace_));
    if (ref) {
      ROOTSEAL_TRY(unsupported(*ref, {"clientCertificate", "tenantId"}));
      if (ref->has("clientSecret"))
        return bad(ref->at("clientSecret"), "not used with authType WorkloadIdentity (remove it)");
      ROOTSEAL_LET(id, opt_obj(*ref, "clientId"));
      if (!id) return bad(ref->at("clientId"), "required");  // ESO: missing accessKeyID/secretAccessKey in store config
      ROOTSEAL_TRY_ASSIGN(out.client_id_ref, key_ref(*id, s.kind, s.meta.namespace_));
      out.has_client_id_ref = true;
    }
    return {};
  }
  if (sa) return bad(a.at("serviceAccountRef"), "only used with authType WorkloadIdentity");
  if (ref) {
    ROOTSEAL_TRY(unsupported(*ref, {"clientCertificate", "tenantId"}));
    ROOTSEAL_LET(id, opt_obj(*ref, "clientId"));
    ROOTSEAL_LET(secret, opt_obj(*ref, "clientSecret"));
    if (!id) return bad(ref->at("clientId"), "required");
    if (!secret) return bad(ref->at("clientSecret"), "required");
    ROOTSEAL_TRY_ASSIGN(out.client_id_ref, key_ref(*id, s.kind, s.meta.namespace_));
    ROOTSEAL_TRY_ASSIGN(out.client_secret_ref, key_ref(*secret, s.kind, s.meta.namespace_));
    out.has_secret_ref = true;
    out.has_client_id_ref = true;
    if (out.tenant_id.empty()) return bad(a.at("tenantId"), "required with authSecretRef");
  } else if (s.host_credentials.empty()) {
    return bad(a.at("authSecretRef"), host_hint());
  }
  return {};
}

// ESO gcpsm: projectID, auth.secretRef.secretAccessKeySecretRef (the service-account key JSON),
// auth.workloadIdentity or auth.workloadIdentityFederation (serviceAccountRef).
Result<void> parse_gcpsm(const Obj& g, SecretStore& s) {
  auto& out = s.gcpsm;
  ROOTSEAL_TRY_ASSIGN(out.project_id, str_or(g, "projectID", ""));
  ROOTSEAL_TRY(unsupported(g, {"location", "secretVersionSelectionPolicy"}));
  ROOTSEAL_LET(auth, opt_obj(g, "auth"));
  if (auth) {
    ROOTSEAL_LET(wi, opt_obj(*auth, "workloadIdentity"));
    ROOTSEAL_LET(wif, opt_obj(*auth, "workloadIdentityFederation"));
    if (static_cast<int>(auth->has("secretRef")) + static_cast<int>(wi.has_value()) +
            static_cast<int>(wif.has_value()) >
        1) {
      return bad(auth->path, "exactly one of secretRef, workloadIdentity or workloadIdentityFederation");
    }
    if (wi) {
      ROOTSEAL_LET(sa, opt_obj(*wi, "serviceAccountRef"));
      if (!sa) return bad(wi->at("serviceAccountRef"), "required");
      ROOTSEAL_TRY_ASSIGN(out.service_account, service_account_ref(*sa, s.kind, s.meta.namespace_));
      // ESO asks GKE's metadata server for what is left out; rootseald runs outside GKE's nodes.
      for (auto [key, into] :
           {std::pair{"clusterProjectID", &out.cluster_project_id}, std::pair{"clusterLocation", &out.cluster_location},
            std::pair{"clusterName", &out.cluster_name}}) {
        ROOTSEAL_TRY_ASSIGN(*into, str_or(*wi, key, ""));
        if (into->empty()) return bad(wi->at(key), "required (rootseald cannot ask GKE's metadata server)");
      }
      out.federation = GcpProviderSpec::Federation::gke;
    }
    if (wif) {
      ROOTSEAL_TRY(unsupported(*wif, {"credConfig", "awsSecurityCredentials", "externalTokenEndpoint"}));
      ROOTSEAL_LET(sa, opt_obj(*wif, "serviceAccountRef"));
      if (!sa) return bad(wif->at("serviceAccountRef"), "required");
      ROOTSEAL_TRY_ASSIGN(out.service_account, service_account_ref(*sa, s.kind, s.meta.namespace_));
      ROOTSEAL_TRY_ASSIGN(out.audience, str_or(*wif, "audience", ""));
      if (out.audience.empty()) {
        return bad(wif->at("audience"),
                   "invalid workloadIdentityFederation config: audience must be provided, when "
                   "serviceAccountRef or awsSecurityCredentials is provided");
      }
      ROOTSEAL_TRY_ASSIGN(out.service_account_email, str_or(*wif, "gcpServiceAccountEmail", ""));
      out.federation = GcpProviderSpec::Federation::pool;
    }
    if (out.federation != GcpProviderSpec::Federation::none) {
      if (!s.host_credentials.empty())
        return bad(auth->path, "workload identity is the store's own identity (no host credentials)");
      if (out.project_id.empty()) return bad(g.at("projectID"), "required");
      return {};
    }
    ROOTSEAL_LET(sr, opt_obj(*auth, "secretRef"));
    if (sr) {
      ROOTSEAL_LET(key, opt_obj(*sr, "secretAccessKeySecretRef"));
      if (!key) return bad(sr->at("secretAccessKeySecretRef"), "required");
      ROOTSEAL_TRY_ASSIGN(out.service_account_ref, key_ref(*key, s.kind, s.meta.namespace_));
      out.has_secret_ref = true;
    }
  }
  if (!out.has_secret_ref) {
    if (s.host_credentials.empty()) return bad(g.at("auth.secretRef"), host_hint());
  } else if (out.project_id.empty()) {
    return bad(g.at("projectID"), "required");
  }
  return {};
}

// ESO conjur: url, caBundle (base64 of a PEM bundle, or the PEM itself),
// auth.apikey {account, userRef, apiKeyRef} or auth.jwt {account, serviceID,
// hostId, serviceAccountRef | secretRef}.
Result<void> parse_conjur(const Obj& c, SecretStore& s) {
  auto& out = s.conjur;
  if (!s.host_credentials.empty()) return bad(c.path, "conjur stores carry their own identity (no host credentials)");
  ROOTSEAL_TRY_ASSIGN(out.url, req_str(c, "url"));
  if (!out.url.starts_with("https://") && !out.url.starts_with("http://"))
    return bad(c.at("url"), "must be an https:// URL");
  while (out.url.ends_with('/')) out.url.pop_back();
  ROOTSEAL_TRY(unsupported(c, {"caProvider"}));
  ROOTSEAL_LET(ca, opt_str(c, "caBundle"));
  if (ca && !ca->empty()) {
    if (ca->starts_with("-----BEGIN")) {
      out.ca_bundle = std::string(*ca);
    } else {
      auto pem = kms::base64_decode(*ca);
      if (!pem) return bad(c.at("caBundle"), "must be a PEM bundle or its base64");
      out.ca_bundle.assign(pem->begin(), pem->end());
    }
  }
  ROOTSEAL_LET(auth, opt_obj(c, "auth"));
  if (!auth) return bad(c.at("auth"), "required");
  ROOTSEAL_TRY(unsupported(*auth, {"cert"}));
  ROOTSEAL_LET(apikey, opt_obj(*auth, "apikey"));
  ROOTSEAL_LET(jwt, opt_obj(*auth, "jwt"));
  if (apikey.has_value() == jwt.has_value()) return bad(auth->path, "exactly one of apikey or jwt");
  if (apikey) {
    ROOTSEAL_TRY_ASSIGN(out.account, req_str(*apikey, "account"));
    ROOTSEAL_TRY_ASSIGN(out.user_ref, required_key_ref(*apikey, "userRef", s));
    ROOTSEAL_TRY_ASSIGN(out.api_key_ref, required_key_ref(*apikey, "apiKeyRef", s));
    return {};
  }
  out.jwt = true;
  ROOTSEAL_TRY_ASSIGN(out.account, req_str(*jwt, "account"));
  ROOTSEAL_TRY_ASSIGN(out.service_id, req_str(*jwt, "serviceID"));
  ROOTSEAL_TRY_ASSIGN(out.host_id, str_or(*jwt, "hostId", ""));
  ROOTSEAL_LET(sa, opt_obj(*jwt, "serviceAccountRef"));
  ROOTSEAL_LET(sr, opt_obj(*jwt, "secretRef"));
  if (sa.has_value() == sr.has_value()) return bad(jwt->path, "exactly one of serviceAccountRef or secretRef");
  if (sa) {
    ROOTSEAL_TRY_ASSIGN(out.service_account, service_account_ref(*sa, s.kind, s.meta.namespace_));
    out.has_service_account = true;
  } else {
    ROOTSEAL_TRY_ASSIGN(out.jwt_secret_ref, token_key_ref(*sr, s.kind, s.meta.namespace_));
  }
  return {};
}

Result<LabelSelector> label_selector(const Obj& o) {
  LabelSelector sel;
  ROOTSEAL_TRY_ASSIGN(sel.match_labels, str_map(o, "matchLabels"));
  ROOTSEAL_LET(exprs, opt_array(o, "matchExpressions"));
  if (exprs != nullptr) {
    std::size_t i = 0;
    for (const auto& e : *exprs) {
      ROOTSEAL_LET(eo, as_obj(e, index(o.at("matchExpressions"), i++)));
      LabelSelectorRequirement r;
      ROOTSEAL_TRY_ASSIGN(r.key, req_str(eo, "key"));
      ROOTSEAL_TRY_ASSIGN(r.op, enum_field(eo, "operator", std::string(),
                                           {{"In", std::string("In")},
                                            {"NotIn", std::string("NotIn")},
                                            {"Exists", std::string("Exists")},
                                            {"DoesNotExist", std::string("DoesNotExist")}}));
      if (r.op.empty()) return bad(eo.at("operator"), "required");
      ROOTSEAL_TRY_ASSIGN(r.values, str_list(eo, "values"));
      if ((r.op == "In" || r.op == "NotIn") && r.values.empty())
        return bad(eo.at("values"), "required for In and NotIn");
      sel.match_expressions.push_back(std::move(r));
    }
  }
  return sel;
}

// spec.conditions of a ClusterSecretStore: which namespaces may use it.
Result<void> parse_store_conditions(const Obj& spec, SecretStore& s) {
  ROOTSEAL_LET(conds, opt_array(spec, "conditions"));
  if (conds != nullptr && !conds->empty()) {
    if (s.kind != StoreKind::cluster_secret_store)
      return bad("spec.conditions", "only allowed on a ClusterSecretStore");
    std::size_t i = 0;
    for (const auto& c : *conds) {
      ROOTSEAL_LET(co, as_obj(c, index("spec.conditions", i++)));
      ClusterStoreCondition cond;
      ROOTSEAL_LET(sel, opt_obj(co, "namespaceSelector"));
      if (sel) {
        ROOTSEAL_LET(ls, label_selector(*sel));
        cond.namespace_selector = std::move(ls);
      }
      ROOTSEAL_TRY_ASSIGN(cond.namespaces, str_list(co, "namespaces"));
      ROOTSEAL_TRY_ASSIGN(cond.namespace_regexes, str_list(co, "namespaceRegexes"));
      std::size_t j = 0;
      for (const auto& re : cond.namespace_regexes) {
        const std::string path = index(co.at("namespaceRegexes"), j++);
        if (re.size() > 256) return bad(path, "longer than 256 characters");
        try {
          std::regex compiled(re, std::regex::ECMAScript);
          (void)compiled;
        } catch (const std::regex_error&) {
          return bad(path, "not a valid regular expression");
        }
      }
      s.conditions.push_back(std::move(cond));
    }
  }
  return {};
}

}  // namespace

Result<SecretStore> parse_secret_store(const json::value& object) {
  SecretStore s;
  ROOTSEAL_LET(root, as_obj(object, "object"));
  root.path.clear();
  ROOTSEAL_LET(kind, str_or(root, "kind", "SecretStore"));
  if (kind == "ClusterSecretStore")
    s.kind = StoreKind::cluster_secret_store;
  else if (kind != "SecretStore")
    return bad("kind", "expected SecretStore or ClusterSecretStore");
  ROOTSEAL_TRY_ASSIGN(s.meta, parse_meta(object));
  if (auto it = s.meta.annotations.find(std::string(kHostCredentialsAnnotation)); it != s.meta.annotations.end()) {
    s.host_credentials = it->second;
  }
  ROOTSEAL_LET(spec, opt_obj(root, "spec"));
  if (!spec) return bad("spec", "required");
  spec->path = "spec";
  ROOTSEAL_LET(provider, opt_obj(*spec, "provider"));
  if (!provider) return bad("spec.provider", "required");
  std::size_t n = 0;
  for (const auto& kv : *provider->o) {
    if (kv.value().is_null()) continue;
    ++n;
    if (kv.key() != "vault" && kv.key() != "aws" && kv.key() != "azurekv" && kv.key() != "gcpsm" &&
        kv.key() != "conjur") {
      return bad(
          provider->at(kv.key()),
          "provider not served by rootseal (vault, aws, azurekv, gcpsm, conjur; push targets: aws, azurekv, gcpsm)");
    }
  }
  if (n != 1) return bad("spec.provider", "exactly one provider must be set");
  if (provider->has("vault")) {
    s.provider = SecretStore::Provider::vault;
    ROOTSEAL_LET(v, opt_obj(*provider, "vault"));
    ROOTSEAL_TRY(parse_vault(*v, s));
  } else if (provider->has("aws")) {
    s.provider = SecretStore::Provider::aws;
    ROOTSEAL_LET(a, opt_obj(*provider, "aws"));
    ROOTSEAL_TRY(parse_aws(*a, s));
  } else if (provider->has("azurekv")) {
    s.provider = SecretStore::Provider::azurekv;
    ROOTSEAL_LET(a, opt_obj(*provider, "azurekv"));
    ROOTSEAL_TRY(parse_azurekv(*a, s));
  } else if (provider->has("conjur")) {
    s.provider = SecretStore::Provider::conjur;
    ROOTSEAL_LET(c, opt_obj(*provider, "conjur"));
    ROOTSEAL_TRY(parse_conjur(*c, s));
  } else {
    s.provider = SecretStore::Provider::gcpsm;
    ROOTSEAL_LET(g, opt_obj(*provider, "gcpsm"));
    ROOTSEAL_TRY(parse_gcpsm(*g, s));
  }
  ROOTSEAL_TRY(parse_store_conditions(*spec, s));
  return s;
}

bool matches(const LabelSelector& sel, const StringMap& labels) {
  for (const auto& [k, v] : sel.match_labels) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  for (const auto& r : sel.match_expressions) {
    auto it = labels.find(r.key);
    const bool has = it != labels.end();
    const bool in = has && std::find(r.values.begin(), r.values.end(), it->second) != r.values.end();
    bool ok = false;  // an operator not known here matches nothing (fail closed)
    if (r.op == "In")
      ok = in;
    else if (r.op == "NotIn")
      ok = !in;
    else if (r.op == "Exists")
      ok = has;
    else if (r.op == "DoesNotExist")
      ok = !has;
    if (!ok) return false;
  }
  return true;
}

bool namespace_allowed(const SecretStore& store, const std::string& ns, const StringMap& ns_labels) {
  if (store.kind != StoreKind::cluster_secret_store) return store.meta.namespace_ == ns;
  if (store.conditions.empty()) return true;
  for (const auto& c : store.conditions) {
    // ESO: each set field of one condition must match; an entry with no
    // field set matches nothing.
    bool any_field = false;
    bool ok = true;
    if (c.namespace_selector) {
      any_field = true;
      ok = ok && matches(*c.namespace_selector, ns_labels);
    }
    if (!c.namespaces.empty()) {
      any_field = true;
      ok = ok && std::find(c.namespaces.begin(), c.namespaces.end(), ns) != c.namespaces.end();
    }
    if (!c.namespace_regexes.empty()) {
      any_field = true;
      bool re_ok = false;
      for (const auto& re : c.namespace_regexes) {
        try {
          if (std::regex_search(ns, std::regex(re, std::regex::ECMAScript))) {
            re_ok = true;
            break;
          }
        } catch (const std::regex_error&) {
        }
      }
      ok = ok && re_ok;
    }
    if (any_field && ok) return true;
  }
  return false;
}

namespace {

// Go's encoding/json reading a struct (sigs.k8s.io/yaml with
// DisallowUnknownFields, as ESO reads PushSecretMetadata): a member names a
// field when equal to its JSON name ignoring ASCII case ("kmsKeyID" is
// kmsKeyId, as in ESO's own example); any other member is refused by name.
// `canonical` receives the members under their fields' names.
Result<Obj> go_struct(const json::value& v, const std::string& path, std::initializer_list<std::string_view> fields,
                      json::object& canonical, std::string_view known_what = "known") {
  if (!v.is_object()) return bad(path, "must be an object");
  const auto fold_equal = [](std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
             const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
             return lower(x) == lower(y);
           });
  };
  std::string known;
  for (auto f : fields) known += (known.empty() ? "" : ", ") + std::string(f);
  for (const auto& kv : v.as_object()) {
    const auto* f =
        std::find_if(fields.begin(), fields.end(), [&](std::string_view name) { return fold_equal(name, kv.key()); });
    if (f == fields.end())
      return bad(join(path, kv.key()), "unknown field (" + std::string(known_what) + ": " + known + ")");
    if (canonical.contains(*f)) return bad(join(path, kv.key()), "given twice (field " + std::string(*f) + ")");
    canonical[*f] = kv.value();
  }
  return Obj{&canonical, path};
}

// spec.resourcePolicy of AWS's PushSecretMetadataSpec, if given.
Result<void> push_resource_policy(const Obj& spec, PushMetadata& md, PushMatch& m) {
  const auto* rp_v = spec.get("resourcePolicy");
  if (rp_v == nullptr) return {};
  json::object rp_fields;
  ROOTSEAL_LET(rp, go_struct(*rp_v, spec.at("resourcePolicy"), {"blockPublicPolicy", "policySourceRef"}, rp_fields));
  PushMetadata::ResourcePolicy policy;
  if (rp.get("blockPublicPolicy") != nullptr) {
    ROOTSEAL_TRY_ASSIGN(policy.block_public_policy, bool_or(rp, "blockPublicPolicy", false));
  }
  const auto* src_v = rp.get("policySourceRef");
  if (src_v == nullptr) return bad(rp.at("policySourceRef"), "required");
  json::object src_fields;
  ROOTSEAL_LET(src, go_struct(*src_v, rp.at("policySourceRef"), {"kind", "name", "key"}, src_fields));
  PolicySourceRef ref;
  ROOTSEAL_LET(src_kind, req_str(src, "kind"));
  if (src_kind == "Secret") {
    ref.secret = true;
  } else if (src_kind != "ConfigMap") {
    return bad(src.at("kind"), "unsupported PolicySourceRef kind: " + src_kind + " (must be ConfigMap or Secret)");
  }
  ROOTSEAL_TRY_ASSIGN(ref.name, req_str(src, "name"));
  ROOTSEAL_TRY_ASSIGN(ref.key, req_str(src, "key"));
  md.resource_policy = std::move(policy);
  m.policy_source = std::move(ref);
  return {};
}

// data[].metadata: ESO's PushSecretMetadata (runtime/esutils/metadata) with the
// spec of its AWS Secrets Manager provider (PushSecretMetadataSpec).
Result<void> push_metadata(const json::value& v, const std::string& path, PushMatch& m) {
  json::object top_fields;
  ROOTSEAL_LET(top, go_struct(v, path, {"kind", "apiVersion", "spec"}, top_fields));
  ROOTSEAL_LET(api_version, str_or(top, "apiVersion", ""));
  if (api_version != kPushSecretMetadataApiVersion) {
    return bad(top.at("apiVersion"), "unexpected apiVersion \"" + api_version + "\", expected \"" +
                                         std::string(kPushSecretMetadataApiVersion) + "\"");
  }
  ROOTSEAL_LET(kind, str_or(top, "kind", ""));
  if (kind != "PushSecretMetadata") {
    return bad(top.at("kind"), "unexpected kind \"" + kind + "\", expected \"PushSecretMetadata\"");
  }
  PushMetadata md;
  const auto* spec_v = top.get("spec");
  if (spec_v == nullptr) {
    m.metadata = std::move(md);
    return {};
  }
  json::object spec_fields;
  ROOTSEAL_LET(spec, go_struct(*spec_v, top.at("spec"),
                               {"tags", "description", "secretPushFormat", "kmsKeyId", "resourcePolicy",
                                "replicationLocations", "contentType", "expirationDate", "labels", "annotations",
                                "mergePolicy", "topics", "cmekKeyName", "replicationLocation"},
                               spec_fields,
                               "rootseal applies PushSecretMetadata to AWS Secrets Manager, Azure Key Vault and GCP "
                               "Secret Manager, whose fields are"));
  for (const auto& kv : spec_fields) md.fields.emplace_back(kv.key());
  ROOTSEAL_LET(tags, str_map(spec, "tags"));
  md.tags.insert(tags.begin(), tags.end());
  if (md.tags.contains(kManagedByTag)) {
    return bad(join(spec.at("tags"), kManagedByTag),
               "cannot be set: rootseal's own tag (ESO: Cannot specify a 'managed-by' tag)");
  }
  ROOTSEAL_TRY_ASSIGN(md.description, str_or(spec, "description", ""));
  ROOTSEAL_TRY_ASSIGN(md.content_type, str_or(spec, "contentType", ""));
  ROOTSEAL_LET(labels, str_map(spec, "labels"));
  md.labels.insert(labels.begin(), labels.end());
  if (md.labels.contains(kManagedByTag)) {
    return bad(join(spec.at("labels"), kManagedByTag), "cannot be set: rootseal's own label");
  }
  ROOTSEAL_LET(annotations, str_map(spec, "annotations"));
  md.annotations.insert(annotations.begin(), annotations.end());
  ROOTSEAL_TRY_ASSIGN(md.merge_labels, enum_field(spec, "mergePolicy", false, {{"Replace", false}, {"Merge", true}}));
  ROOTSEAL_LET(expiration, str_or(spec, "expirationDate", ""));
  if (!expiration.empty()) {
    const auto when = kube::parse_rfc3339(expiration);
    if (!when) {
      return bad(spec.at("expirationDate"), "error parsing expiration date in metadata: \"" + expiration +
                                                "\". Expected format: YYYY-MM-DDTHH:MM:SSZ (RFC3339). Example: "
                                                "2024-12-31T20:00:00Z");
    }
    md.expires = std::chrono::duration_cast<std::chrono::seconds>(when->time_since_epoch()).count();
  }
  ROOTSEAL_TRY_ASSIGN(md.kms_key_id, str_or(spec, "kmsKeyId", ""));
  ROOTSEAL_LET(format, str_or(spec, "secretPushFormat", ""));
  if (format == "string") {
    md.push_as_string = true;
  } else if (!format.empty() && format != "binary") {
    return bad(spec.at("secretPushFormat"), "invalid secret push format: " + format + " (binary or string)");
  }
  ROOTSEAL_LET(regions, str_list(spec, "replicationLocations"));
  if (spec.get("replicationLocations") != nullptr) {
    (void)regions;
    return bad(spec.at("replicationLocations"),
               "not supported by rootseal (replica regions are not managed); remove it");
  }
  ROOTSEAL_TRY(push_resource_policy(spec, md, m));
  m.metadata = std::move(md);
  return {};
}

}  // namespace

Result<PushSecret> parse_push_secret(const json::value& object) {
  PushSecret p;
  ROOTSEAL_LET(root, as_obj(object, "object"));
  root.path.clear();
  ROOTSEAL_LET(api, str_or(root, "apiVersion", "external-secrets.io/v1alpha1"));
  if (api != "external-secrets.io/v1alpha1")
    return bad("apiVersion", "unsupported '" + api + "' (external-secrets.io/v1alpha1)");
  ROOTSEAL_TRY_ASSIGN(p.meta, parse_meta(object));
  ROOTSEAL_LET(spec, opt_obj(root, "spec"));
  if (!spec) return bad("spec", "required");
  spec->path = "spec";
  ROOTSEAL_TRY(unsupported(*spec, {"dataTo"}));
  ROOTSEAL_TRY_ASSIGN(p.refresh_interval, duration_field(*spec, "refreshInterval", std::chrono::hours(1)));
  ROOTSEAL_TRY_ASSIGN(p.update_policy,
                      enum_field(*spec, "updatePolicy", UpdatePolicy::replace,
                                 {{"Replace", UpdatePolicy::replace}, {"IfNotExists", UpdatePolicy::if_not_exists}}));
  ROOTSEAL_TRY_ASSIGN(p.deletion_policy,
                      enum_field(*spec, "deletionPolicy", PushDeletionPolicy::none,
                                 {{"None", PushDeletionPolicy::none}, {"Delete", PushDeletionPolicy::delete_}}));
  ROOTSEAL_LET(refs, opt_array(*spec, "secretStoreRefs"));
  if (refs == nullptr || refs->empty()) return bad("spec.secretStoreRefs", "required");
  std::size_t i = 0;
  for (const auto& r : *refs) {
    ROOTSEAL_LET(ro, as_obj(r, index("spec.secretStoreRefs", i++)));
    ROOTSEAL_TRY(unsupported(ro, {"labelSelector"}));
    PushStoreRef sr;
    ROOTSEAL_TRY_ASSIGN(sr.name, req_str(ro, "name"));
    ROOTSEAL_TRY_ASSIGN(sr.kind, enum_field(ro, "kind", StoreKind::secret_store,
                                            {{"SecretStore", StoreKind::secret_store},
                                             {"ClusterSecretStore", StoreKind::cluster_secret_store}}));
    p.store_refs.push_back(std::move(sr));
  }
  ROOTSEAL_LET(sel, opt_obj(*spec, "selector"));
  if (!sel) return bad("spec.selector", "required");
  ROOTSEAL_TRY(unsupported(*sel, {"generatorRef"}));
  ROOTSEAL_LET(sec, opt_obj(*sel, "secret"));
  ROOTSEAL_LET(rem, opt_obj(*sel, "remoteRef"));
  if (sec && rem) return bad("spec.selector", "exactly one of secret or remoteRef");
  if (sec) {
    ROOTSEAL_TRY(unsupported(*sec, {"selector"}));
    ROOTSEAL_TRY_ASSIGN(p.source_secret, req_str(*sec, "name"));
  } else if (rem) {
    PushRemoteSource src;
    ROOTSEAL_LET(st, opt_obj(*rem, "storeRef"));
    if (!st) return bad(rem->at("storeRef"), "required");
    ROOTSEAL_TRY_ASSIGN(src.store, store_ref(*st));
    ROOTSEAL_TRY_ASSIGN(src.ref, remote_ref(*rem));
    p.source_remote = std::move(src);
  } else {
    return bad("spec.selector", "one of secret or remoteRef is required");
  }
  ROOTSEAL_LET(data, opt_array(*spec, "data"));
  if (data == nullptr || data->empty()) return bad("spec.data", "required");
  i = 0;
  for (const auto& d : *data) {
    const std::string path = index("spec.data", i++);
    ROOTSEAL_LET(dob, as_obj(d, path));
    ROOTSEAL_TRY(enum_field(dob, "conversionStrategy", 0, {{"None", 0}}));
    PushMatch m;
    // ESO's provider metadata: PushSecretMetadata with AWS Secrets Manager's
    // fields (the reconciler refuses it for a store of another kind).
    if (const auto* md = dob.get("metadata"); md != nullptr) {
      ROOTSEAL_TRY(push_metadata(*md, dob.at("metadata"), m));
    }
    ROOTSEAL_LET(match, opt_obj(dob, "match"));
    if (!match) return bad(dob.at("match"), "required");
    ROOTSEAL_TRY_ASSIGN(m.secret_key, str_or(*match, "secretKey", ""));
    ROOTSEAL_LET(rr, opt_obj(*match, "remoteRef"));
    if (!rr) return bad(match->at("remoteRef"), "required");
    ROOTSEAL_TRY_ASSIGN(m.remote_key, req_str(*rr, "remoteKey"));
    ROOTSEAL_TRY_ASSIGN(m.property, str_or(*rr, "property", ""));
    p.data.push_back(std::move(m));
  }
  ROOTSEAL_LET(tmpl, opt_obj(*spec, "template"));
  if (tmpl) {
    // ESO templates the source Secret; rootseal's remoteRef source has no Secret to template.
    if (p.source_remote)
      return bad(spec->at("template"),
                 "not supported with selector.remoteRef (rootseal's store-to-cloud source); template a selector.secret "
                 "source");
    ROOTSEAL_LET(t, parse_template(*tmpl, TemplateOf::push_secret));
    p.template_ = std::move(t);
  }
  return p;
}

}  // namespace rootseal::sync::model
