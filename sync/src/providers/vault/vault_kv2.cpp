#include "providers/vault/vault_kv2.hpp"

#include <boost/json.hpp>

#include <chrono>
#include <map>
#include <optional>

#include "go_json.hpp"
#include "providers/common.hpp"
#include "secure_buffer.hpp"
#include "secure_json.hpp"

namespace rootseal::sync::providers {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using kms::Errc;
using kms::fail;
using Clock = std::chrono::steady_clock;

namespace {

std::string trim_slashes(std::string_view s) {
  while (!s.empty() && s.front() == '/') s.remove_prefix(1);
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  return std::string(s);
}

// The first message of a Vault error body {"errors":[...]}, bounded; never a secret.
std::string vault_error(const net::ClientResponse& r) {
  auto doc = SecureJson::parse(r.body.view());
  std::string msg;
  if (doc && (*doc)->root().is_object()) {
    if (const auto* e = (*doc)->root().as_object().if_contains("errors");
        e && e->is_array() && !e->as_array().empty() && e->as_array()[0].is_string()) {
      msg = std::string(e->as_array()[0].as_string());
    }
  }
  if (msg.size() > 200) msg.resize(200);
  return "vault answered " + std::to_string(r.status) + (msg.empty() ? "" : ": " + msg);
}

std::optional<std::int64_t> json_int(const json::value& obj, std::string_view key) {
  if (!obj.is_object()) return std::nullopt;
  const auto* v = obj.as_object().if_contains(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<std::int64_t>(v->as_uint64());
  return std::nullopt;
}

bool json_bool(const json::value& obj, std::string_view key) {
  if (!obj.is_object()) return false;
  const auto* v = obj.as_object().if_contains(key);
  return v != nullptr && v->is_bool() && v->as_bool();
}

class VaultImpl final : public VaultKv2Provider, public std::enable_shared_from_this<VaultImpl> {
 public:
  // A data answer and its data.data object.
  struct DataAnswer {
    gojson::Document doc;
    gojson::Document::Id data;
  };

  // Key -> the value's JSON text, as Go marshals the map (keys sorted bytewise).
  using FieldMap = std::map<std::string, kms::SecureBytes, std::less<>>;

  using MetadataMap = std::map<std::string, std::string, std::less<>>;

  VaultImpl(asio::any_io_executor executor, VaultSpec spec, std::shared_ptr<net::HttpClient> client,
            std::shared_ptr<StoreHealth> health)
      : spec_(std::move(spec)), client_(std::move(client)), health_(std::move(health)), mu_(executor) {
    mount_ = trim_slashes(spec_.path);
    kv1_ = spec_.version == "v1";
  }

  ValueFormat value_format() const noexcept override { return ValueFormat::go_map; }
  const VaultCounters& counters() const noexcept override { return counters_; }

  Task<kms::SecureBytes> fetch(const RemoteKey& ref) override { co_return co_await read(ref); }

  // ESO's metadataPolicy Fetch on KV v2 (readSecretMetadata): the system
  // fields created_time, current_version and delete_version_after, then
  // custom_metadata (a custom key wins), each as fmt's %v of what Vault's
  // client decoded (strings as they are, numbers and booleans as written,
  // null "<nil>"), as Go marshals a map[string]string. A missing secret is
  // ESO's plain "secret not found" error, not NoSecretErr.
  Task<kms::SecureBytes> fetch_metadata(const RemoteKey& ref) override {
    auto r = co_await read_metadata(ref);
    // Never not_found (that would run the deletion policy): ESO's provider errors plainly here.
    if (!r && r.error().code == Errc::not_found) co_return fail(Errc::unavailable, r.error().message);
    co_return r;
  }

 private:
  Task<kms::SecureBytes> read_metadata(const RemoteKey& ref) {
    const std::string key = trim_slashes(ref.key);
    const kms::Error missing(Errc::unavailable, "vault: secret \"" + key + "\" not found (metadata)");
    ROOTSEAL_CO_LET(fields, co_await metadata_fields(ref.key, missing));
    co_return go_string_map_json(fields);
  }

  // ESO's readSecretMetadata: the system fields created_time,
  // current_version and delete_version_after, then custom_metadata (a custom
  // key wins), each as fmt's %v of what Vault's client decoded (strings as
  // they are, numbers and booleans as written, null "<nil>"). `missing`: 404.
  Task<MetadataMap> metadata_fields(std::string_view ref_key, const kms::Error& missing) {
    ROOTSEAL_CO_LET(target, data_target(ref_key, "metadata"));
    ROOTSEAL_CO_LET(doc, co_await get_answer(target, missing, " metadata"));
    using gojson::Kind;
    const auto data = data_of(doc);
    if (!data) co_return fail(Errc::unavailable, "vault: the metadata answer has no data");
    MetadataMap fields;
    const auto text = [&doc](gojson::Document::Id v) -> kms::Result<std::string> {
      switch (doc.kind(v)) {
        case Kind::string:
          return std::string(doc.string(v));
        case Kind::null:
          return std::string("<nil>");
        case Kind::object:
        case Kind::array:
          return fail(Errc::unavailable, "vault: a metadata value is not a string");
        default:
          return std::string(doc.raw(v));
      }
    };
    for (const std::string_view system : {"created_time", "current_version", "delete_version_after"}) {
      if (kv1_) break;  // KV v1 has none: custom_metadata of the map only (ESO)
      const auto v = doc.last_member(*data, system);
      if (!v || doc.kind(*v) == Kind::null) continue;
      ROOTSEAL_CO_LET(t, text(*v));
      fields.insert_or_assign(std::string(system), std::move(t));
    }
    if (const auto custom = doc.last_member(*data, "custom_metadata"); custom && doc.kind(*custom) == Kind::object) {
      for (const auto& m : doc.members(*custom)) {  // in order: the last of a repeated key wins, as in Go
        ROOTSEAL_CO_LET(t, text(m.value));
        fields.insert_or_assign(std::string(doc.string(m.key)), std::move(t));
      }
    }
    co_return fields;
  }

 public:
  // ESO's Vault GetAllSecrets: every secret below find.path (LIST on the
  // metadata, recursively), those whose full name matches find.name.regexp
  // or else whose custom metadata carries every find.tags pair; a secret
  // whose current version is deleted is skipped.
  Task<SecretMap> find(const FindRequest& request) override {
    if (mount_.empty())
      co_return fail(Errc::invalid_argument, "vault: dataFrom.find needs the store's path (the KV mount)");
    if (kv1_ && !request.tags.empty())
      co_return fail(Errc::invalid_argument, "cannot perform find by tag operations with kv version v1");
    std::string search;
    if (request.path) {
      search = trim_slashes(*request.path);
      if (search.find("..") != std::string::npos)
        co_return fail(Errc::invalid_argument, "vault: find.path must not contain '..'");
      if (!search.empty()) search += "/";
    }
    std::vector<std::string> names;
    ROOTSEAL_CO_TRY(co_await list_below(search, names, 0));
    SecretMap out;
    for (const auto& name : names) {
      if (request.name_matches) {
        if (!request.name_matches(name)) continue;
      } else if (!request.tags.empty()) {
        ROOTSEAL_CO_LET(tagged, co_await has_tags(name, request.tags));
        if (!tagged) continue;
      }
      const RemoteKey key{name, ""};
      auto value = co_await read(key);
      if (!value && value.error().code == Errc::not_found) continue;
      if (!value) co_return std::unexpected(std::move(value).error());
      out.insert_or_assign(name, std::move(*value));
    }
    co_return out;
  }

  Task<void> validate() override {
    ROOTSEAL_CO_LET(token, co_await current_token());
    (void)token;
    co_return kms::Result<void>{};
  }

  // ---- push: ESO's Vault PushSecret and DeleteSecret (KV v2) ----

  Task<RemoteState> describe(std::string_view remote_key) override {
    ROOTSEAL_CO_LET(current, co_await current_data(remote_key));
    if (!current) co_return RemoteState{};
    ROOTSEAL_CO_LET(managed, co_await managed_by_eso(remote_key));
    co_return RemoteState{true, managed};
  }

  // A missing secret gets its metadata (the marker, no version yet).
  Task<RemoteState> ensure_managed(std::string_view remote_key) override {
    ROOTSEAL_CO_LET(state, co_await describe(remote_key));
    if (state.exists && !state.managed) co_return fail(Errc::permission_denied, std::string(kNotManaged));
    if (!state.exists) {
      ROOTSEAL_CO_TRY(co_await write_marker(remote_key));
    }
    co_return RemoteState{true, true};
  }

  // ESO's PushSecret: read the secret; an existing one must carry
  // custom_metadata managed-by=external-secrets; unchanged (the whole data
  // map equal, or the property's string equal): nothing written. Else the
  // marker is written to metadata/ and the new data map to data/ (the
  // secret's other keys kept when a property is pushed). The value of a
  // push without property must be a JSON object (the Secret's JSON or a
  // key holding one). Not recorded: the HA epoch (the marker is ESO's).
  Task<PushOutcome> put_if_changed(const PushRef& ref, const kms::SecureBytes& value, bool if_not_exists) override {
    ROOTSEAL_CO_LET(current, co_await current_data(ref.remote_key));
    if (if_not_exists && current &&
        (ref.property.empty() || current->doc.last_member(current->data, ref.property).has_value())) {
      co_return PushOutcome{};  // ESO's SecretExists: the secret (or its property) is there
    }
    FieldMap fields;
    if (current) {
      ROOTSEAL_CO_LET(managed, co_await managed_by_eso(ref.remote_key));
      if (!managed) co_return fail(Errc::permission_denied, std::string(kNotManaged));
      ROOTSEAL_CO_LET(kept, fields_of(current->doc, current->data, gojson::Numbers::as_written));
      fields = std::move(kept);
      if (kv1_) fields.erase(std::string(kCustomMetadata));  // ESO compares and merges the map without its marker
    }
    if (!ref.property.empty()) {
      if (current) {
        if (const auto have = stored_member(*current, ref.property)) {
          if (current->doc.kind(*have) != gojson::Kind::string)
            co_return fail(Errc::invalid_argument, "error converting " + ref.property + " to string");
          if (kms::constant_time_equal(current->doc.string(*have), as_view(value))) co_return PushOutcome{};
        }
      }
      SecureBuffer quoted(value.size() + 2);
      gojson::append_go_string(quoted, as_view(value));
      fields.insert_or_assign(ref.property, quoted.take());
    } else {
      // Go's json.Unmarshal into a map: numbers as float64, errors never quoting the value.
      auto incoming = gojson::Document::parse(value.span());
      const bool object = incoming && incoming->kind(gojson::Document::root()) == gojson::Kind::object &&
                          incoming->numbers_fit_float64();
      if (!object) {
        co_return fail(Errc::invalid_argument, current
                                                   ? "error unmarshalling incoming secret value: invalid JSON format"
                                                   : "error unmarshalling vault secret: invalid JSON format");
      }
      if (current && same_map(current->doc, current->data, *incoming, gojson::Document::root(), kv1_)) {
        co_return PushOutcome{};
      }
      ROOTSEAL_CO_LET(pushed, fields_of(*incoming, gojson::Document::root(), gojson::Numbers::float64));
      fields = std::move(pushed);
    }
    if (kv1_) {
      fields.insert_or_assign(std::string(kCustomMetadata), marker_json());  // KV v1: the marker is in the map
    } else {
      ROOTSEAL_CO_TRY(co_await write_marker(ref.remote_key));
    }
    const kms::SecureBytes body = data_body(fields);
    ROOTSEAL_CO_TRY(co_await write_data(ref.remote_key, body));
    PushOutcome out;
    out.written = true;
    out.created = !current;
    co_return out;
  }

  // ESO's DeleteSecret: a missing secret or one not managed by ESO is left
  // alone (no error); with a property, that key is removed and the rest
  // written back; without one, or when nothing is left, the secret is
  // deleted (data/, then metadata/: every version).
  Task<void> remove(const PushRef& ref) override {
    ROOTSEAL_CO_LET(current, co_await current_data(ref.remote_key));
    if (!current) co_return kms::Result<void>{};
    ROOTSEAL_CO_LET(managed, co_await managed_by_eso(ref.remote_key));
    if (!managed) co_return kms::Result<void>{};
    if (!ref.property.empty()) {
      ROOTSEAL_CO_LET(fields, fields_of(current->doc, current->data, gojson::Numbers::as_written));
      fields.erase(ref.property);
      // KV v1: the marker alone left is nothing left (ESO's DeleteSecret).
      if (kv1_ && fields.size() == 1) fields.erase(std::string(kCustomMetadata));
      if (!fields.empty()) {
        const kms::SecureBytes body = data_body(fields);
        co_return co_await write_data(ref.remote_key, body);
      }
    }
    const std::string key = trim_slashes(ref.remote_key);
    for (const std::string_view kind : {"data", "metadata"}) {
      if (kv1_ && kind == "metadata") break;  // KV v1: the secret is all there is
      ROOTSEAL_CO_LET(target, data_target(ref.remote_key, kind));
      const std::string_view no_body;
      ROOTSEAL_CO_LET(res, co_await authed(http::verb::delete_, target, no_body));
      if (res.status / 100 != 2) {
        co_return fail(errc_for_status(res.status), std::string("could not delete secret ") +
                                                        (kind == "data" ? "" : "metadata ") + key + ": " +
                                                        vault_error(res));
      }
    }
    co_return kms::Result<void>{};
  }

 private:
  static constexpr std::string_view kNotManaged = "secret not managed by external-secrets";
  static constexpr std::string_view kCustomMetadata = "custom_metadata";

  // {"managed-by":"external-secrets"}: ESO's marker as JSON.
  static kms::SecureBytes marker_json() {
    return kms::SecureBytes::copy_of(R"({")" + std::string(kVaultManagedByKey) + R"(":")" +
                                     std::string(kVaultManagedByValue) + R"("})");
  }

  // A key of the stored map as ESO sees it (KV v1: custom_metadata is not the secret's).
  std::optional<gojson::Document::Id> stored_member(const DataAnswer& a, std::string_view key) const {
    if (kv1_ && key == kCustomMetadata) return std::nullopt;
    return a.doc.last_member(a.data, key);
  }

  // The secret's current data, or nullopt when missing or its current
  // version deleted (ESO: NoSecretError).
  Task<std::optional<DataAnswer>> current_data(std::string_view remote_key) {
    ROOTSEAL_CO_LET(target, data_target(remote_key, "data"));
    const std::string key = trim_slashes(remote_key);
    auto answer = co_await read_data(target, key);
    if (!answer && answer.error().code == Errc::not_found) co_return std::optional<DataAnswer>();
    if (!answer) co_return std::unexpected(std::move(answer).error());
    co_return std::optional<DataAnswer>(std::move(*answer));
  }

  // ESO's readSecretMetadata then metadata["managed-by"] == "external-secrets".
  Task<bool> managed_by_eso(std::string_view remote_key) {
    const kms::Error missing(Errc::unavailable, "secret not found");
    ROOTSEAL_CO_LET(fields, co_await metadata_fields(remote_key, missing));
    const auto it = fields.find(kVaultManagedByKey);
    co_return it != fields.end() && it->second == kVaultManagedByValue;
  }

  // The members of an object as Go's decoded map, each value re-marshalled.
  static kms::Result<FieldMap> fields_of(const gojson::Document& doc, gojson::Document::Id object,
                                         gojson::Numbers numbers) {
    FieldMap out;
    for (const auto& m : doc.members(object)) {  // the last of a repeated key wins, as in Go
      SecureBuffer v(doc.raw(m.value).size());
      ROOTSEAL_TRY(gojson::marshal(doc, m.value, numbers, v));
      out.insert_or_assign(std::string(doc.string(m.key)), v.take());
    }
    return out;
  }

  // Go's maps.Equal of the stored map (Vault's client: numbers json.Number)
  // and the pushed one (numbers float64): strings, booleans and nulls
  // compare; numbers never (different types), objects and arrays never.
  // KV v1 (`without_marker`): the stored map's custom_metadata left out, as ESO deletes it first.
  static bool same_map(const gojson::Document& a, gojson::Document::Id ao, const gojson::Document& b,
                       gojson::Document::Id bo, bool without_marker) {
    std::map<std::string_view, gojson::Document::Id, std::less<>> am;
    std::map<std::string_view, gojson::Document::Id, std::less<>> bm;
    for (const auto& m : a.members(ao)) am.insert_or_assign(a.string(m.key), m.value);
    if (without_marker) am.erase(kCustomMetadata);
    for (const auto& m : b.members(bo)) bm.insert_or_assign(b.string(m.key), m.value);
    if (am.size() != bm.size()) return false;
    for (const auto& [k, av] : am) {
      const auto it = bm.find(k);
      if (it == bm.end()) return false;
      const auto bv = it->second;
      const auto kind = a.kind(av);
      if (kind != b.kind(bv)) return false;
      switch (kind) {
        case gojson::Kind::string:
          if (!kms::constant_time_equal(a.string(av), b.string(bv))) return false;
          break;
        case gojson::Kind::boolean:
          if (a.raw(av) != b.raw(bv)) return false;
          break;
        case gojson::Kind::null:
          break;
        default:
          return false;
      }
    }
    return true;
  }

  // {"data":{...}}: the body of a KV v2 write; KV v1: the map itself (Go's json.Marshal of ESO's map).
  kms::SecureBytes data_body(const FieldMap& fields) const {
    SecureBuffer out(64);
    out.append(kv1_ ? "{" : R"({"data":{)");
    bool first = true;
    for (const auto& [k, v] : fields) {
      if (!first) out.push_back(',');
      first = false;
      gojson::append_go_string(out, k);
      out.push_back(':');
      out.append(v.span());
    }
    out.append(kv1_ ? "}" : "}}");
    return out.take();
  }

  // POST metadata/ {"custom_metadata":{"managed-by":"external-secrets"}}
  // (Vault replaces the secret's custom_metadata with it, as under ESO).
  // KV v1: a map holding only the marker.
  Task<void> write_marker(std::string_view remote_key) {
    ROOTSEAL_CO_LET(target, data_target(remote_key, "metadata"));
    const std::string body = R"({"custom_metadata":)" + std::string(as_view(marker_json())) + "}";
    ROOTSEAL_CO_LET(res, co_await authed(http::verb::post, target, body));
    if (res.status / 100 != 2) co_return fail(errc_for_status(res.status), vault_error(res));
    co_return kms::Result<void>{};
  }

  Task<void> write_data(std::string_view remote_key, const kms::SecureBytes& body) {
    ROOTSEAL_CO_LET(target, data_target(remote_key, "data"));
    const std::string_view text = as_view(body);
    ROOTSEAL_CO_LET(res, co_await authed(http::verb::post, target, text));
    if (res.status / 100 != 2) co_return fail(errc_for_status(res.status), vault_error(res));
    co_return kms::Result<void>{};
  }

 public:
 private:
  // "<kind>/" on KV v2; nothing on KV v1 (data and metadata are the secret itself).
  std::string kind_segment(std::string_view kind) const { return kv1_ ? std::string() : std::string(kind) + "/"; }

  // "/v1/<mount>/<kind>/<key>" (kind "data" or "metadata"; KV v1:
  // "/v1/<mount>/<key>") of a remoteRef.key.
  kms::Result<std::string> data_target(std::string_view ref_key, std::string_view kind) const {
    const std::string key = trim_slashes(ref_key);
    if (key.empty()) return fail(Errc::invalid_argument, "vault: remoteRef.key is empty");
    if (key.find("..") != std::string::npos)
      return fail(Errc::invalid_argument, "vault: remoteRef.key must not contain '..'");
    std::string target = "/v1/";
    if (mount_.empty()) {
      // No mount in the store: the key's first segment is the mount (ESO's behaviour).
      const auto slash = key.find('/');
      if (slash == std::string::npos) return fail(Errc::invalid_argument, "vault: key needs a mount (path is empty)");
      target += net::url_encode(key.substr(0, slash), false) + "/" + kind_segment(kind) +
                net::url_encode(key.substr(slash + 1), false);
    } else {
      target += net::url_encode(mount_, false) + "/" + kind_segment(kind) + net::url_encode(key, false);
    }
    return target;
  }

  // The data map of the secret (KV v2 data.data) as JSON text.
  Task<kms::SecureBytes> read(const RemoteKey& ref) {
    ROOTSEAL_CO_LET(target, data_target(ref.key, "data"));
    if (!ref.version.empty()) {
      if (kv1_) co_return fail(Errc::invalid_argument, "vault: remoteRef.version needs KV v2 (the store is v1)");
      if (ref.version.find_first_not_of("0123456789") != std::string::npos || ref.version.size() > 18) {
        co_return fail(Errc::invalid_argument, "vault: version must be a KV version number");
      }
      target += "?version=" + ref.version;
    }
    // The secret's data as ESO hands it on: Go's json.Marshal of the map
    // Vault's client decoded with UseNumber (numbers as written).
    // (Arguments of a coroutine call named first: GCC 12 mishandles temporaries there.)
    const std::string key = trim_slashes(ref.key);
    ROOTSEAL_CO_LET(answer, co_await read_data(target, key));
    SecureBuffer out(answer.doc.raw(gojson::Document::root()).size());
    ROOTSEAL_CO_TRY(gojson::marshal(answer.doc, answer.data, gojson::Numbers::as_written, out));
    co_return out.take();
  }

  // GET of a data/ target: not_found when the secret is missing or its
  // version deleted or destroyed (ESO's NoSecretError).
  Task<DataAnswer> read_data(const std::string& target, const std::string& key) {
    const kms::Error missing(Errc::not_found, "vault: secret \"" + key + "\" not found");
    ROOTSEAL_CO_LET(doc, co_await get_answer(target, missing, ""));
    using gojson::Kind;
    const auto data = data_of(doc);
    if (kv1_) {  // the answer's data is the secret's map
      if (!data) co_return fail(Errc::unavailable, "vault: the answer has no data object");
      const auto id = *data;
      co_return DataAnswer{std::move(doc), id};
    }
    const auto inner = data ? doc.last_member(*data, "data") : std::nullopt;
    if (!inner || doc.kind(*inner) == Kind::null) {
      co_return fail(Errc::not_found, "vault: secret \"" + key + "\" has no data (deleted or destroyed version)");
    }
    if (doc.kind(*inner) != Kind::object) co_return fail(Errc::unavailable, "vault: data.data is not an object");
    const auto id = *inner;
    co_return DataAnswer{std::move(doc), id};
  }

  static constexpr int kMaxListDepth = 64;

  // The names below `prefix` ("" or ending in '/'), recursively. not_found
  // when Vault has nothing at `prefix` (ESO: NoSecretError).
  Task<void> list_below(const std::string& prefix, std::vector<std::string>& names, int depth) {
    if (depth > kMaxListDepth) co_return fail(Errc::invalid_argument, "vault: find.path nests deeper than 64 folders");
    std::string target = "/v1/" + net::url_encode(mount_, false) + "/" + kind_segment("metadata");
    if (!prefix.empty()) target += net::url_encode(prefix, false);
    target += "?list=true";
    const std::string where = prefix.empty() ? "/" : prefix;
    const kms::Error missing(Errc::not_found, "vault: nothing to list at \"" + where + "\"");
    ROOTSEAL_CO_LET(doc, co_await get_answer(target, missing, " list"));
    using gojson::Kind;
    const auto data = data_of(doc);
    const auto keys = data ? doc.last_member(*data, "keys") : std::nullopt;
    if (!keys) co_return kms::Result<void>{};  // ESO: no "keys", nothing found
    if (doc.kind(*keys) != Kind::array)
      co_return fail(Errc::unavailable, "vault: data.keys of the list answer is not a list");
    for (const auto k : doc.elements(*keys)) {
      if (doc.kind(k) != Kind::string || doc.string(k).empty()) {
        co_return fail(Errc::unavailable, "vault: a listed key is not a name");
      }
      const std::string full = prefix + std::string(doc.string(k));
      if (full.find("..") != std::string::npos) co_return fail(Errc::unavailable, "vault: a listed key contains '..'");
      if (!full.ends_with('/')) {
        names.push_back(full);
      } else {
        ROOTSEAL_CO_TRY(co_await list_below(full, names, depth + 1));
      }
    }
    co_return kms::Result<void>{};
  }

  // ESO's readSecretMetadata + tag check: custom_metadata (and the system
  // fields created_time, current_version, delete_version_after) must hold
  // every pair. A secret without metadata is an error, as in ESO.
  Task<bool> has_tags(const std::string& name, const std::map<std::string, std::string, std::less<>>& tags) {
    const std::string target = "/v1/" + net::url_encode(mount_, false) + "/metadata/" + net::url_encode(name, false);
    const kms::Error missing(Errc::unavailable, "vault: secret \"" + name + "\" has no metadata");
    ROOTSEAL_CO_LET(doc, co_await get_answer(target, missing, " metadata"));
    using gojson::Kind;
    const auto data = data_of(doc);
    if (!data) co_return fail(Errc::unavailable, "vault: the metadata answer has no data");
    const auto custom = doc.last_member(*data, "custom_metadata");
    for (const auto& [k, want] : tags) {
      std::optional<gojson::Document::Id> v;
      if (custom && doc.kind(*custom) == Kind::object) v = doc.last_member(*custom, k);
      if (!v && (k == "created_time" || k == "current_version" || k == "delete_version_after")) {
        v = doc.last_member(*data, k);
      }
      if (!v || doc.kind(*v) == Kind::null) co_return false;
      // fmt.Sprintf("%v") of what Vault's client decoded: strings as they are, numbers as written.
      const std::string_view have = doc.kind(*v) == Kind::string ? doc.string(*v) : doc.raw(*v);
      if (have != want) co_return false;
    }
    co_return true;
  }

  // A GET with the current token and its answer as JSON (Go's reading):
  // `missing` for a 404, Vault's error for another status, unavailable when
  // the answer ("the<what> answer") is not JSON.
  Task<gojson::Document> get_answer(const std::string& target, const kms::Error& missing, std::string_view what) {
    const std::string_view no_body;
    ROOTSEAL_CO_LET(res, co_await authed(http::verb::get, target, no_body));
    if (res.status == 404) co_return std::unexpected(missing);
    if (res.status != 200) co_return fail(errc_for_status(res.status), vault_error(res));
    auto doc = gojson::Document::parse(res.body.view());
    if (!doc) co_return fail(Errc::unavailable, "vault: the" + std::string(what) + " answer is not JSON");
    co_return std::move(*doc);
  }

  // The answer's `data` object (Vault's envelope), if it has one.
  static std::optional<gojson::Document::Id> data_of(const gojson::Document& doc) {
    const auto root = gojson::Document::root();
    if (doc.kind(root) != gojson::Kind::object) return std::nullopt;
    const auto data = doc.last_member(root, "data");
    if (!data || doc.kind(*data) != gojson::Kind::object) return std::nullopt;
    return data;
  }

  // A request with the current token (a body: JSON); an AppRole token
  // refused with 403 is replaced by a fresh login once.
  Task<net::ClientResponse> authed(http::verb verb, const std::string& target, std::string_view body) {
    for (int attempt = 0;; ++attempt) {
      ROOTSEAL_CO_LET(token, co_await current_token());
      ++(verb == http::verb::get ? counters_.reads : counters_.writes);
      auto res = co_await call(verb, target, &token, body);
      if (!res) co_return std::unexpected(std::move(res).error());
      if (res->status == 403 && attempt == 0 && logs_in()) {
        co_await invalidate(token);  // revoked or expired behind our back: log in again, once
        continue;
      }
      co_return res;
    }
  }

  asio::awaitable<kms::Result<net::ClientResponse>> call(http::verb verb, const std::string& target,
                                                         const kms::SecureBytes* token, std::string_view body) {
    std::vector<net::Header> headers;
    headers.push_back({"X-Vault-Request", "true"});
    if (token != nullptr) headers.push_back({"X-Vault-Token", as_view(*token)});
    if (!spec_.namespace_.empty()) headers.push_back({"X-Vault-Namespace", spec_.namespace_});
    if (!body.empty()) headers.push_back({"Content-Type", "application/json"});
    // Under the store's health: transient failures back the whole store off.
    const auto send = [&] { return client_->request(verb, target, headers, body); };
    const auto verdict = [](const kms::Result<net::ClientResponse>& r) { return http_verdict(r, "vault"); };
    auto res = co_await guarded_call<net::ClientResponse>(*health_, send, verdict);
    if (!res) co_return fail(res.error().code, "vault: " + res.error().message);
    co_return res;
  }

  bool approle() const noexcept { return !spec_.role_id.empty(); }
  bool jwt_login() const noexcept { return !spec_.jwt_auth_path.empty(); }
  // Logs in by itself (AppRole, Kubernetes or JWT), so a refused token is replaced by a fresh login.
  bool cert_login() const noexcept { return !spec_.cert_auth_path.empty(); }
  bool logs_in() const noexcept { return approle() || jwt_login() || cert_login(); }

  // A valid token (logging in or renewing as needed); a copy for the caller.
  Task<kms::SecureBytes> current_token() {
    co_await mu_.lock();
    auto r = co_await refresh_locked();
    mu_.unlock();
    co_return r;
  }

  Task<kms::SecureBytes> refresh_locked() {
    const auto now = Clock::now();
    if (!token_.empty() && (!expires_at_ || now < *expires_at_)) {
      if (renew_at_ && now >= *renew_at_) {
        if (auto ok = co_await renew(); !ok) {
          if (logs_in()) {
            token_.clear();  // renewal refused or failed: log in afresh
          } else if (expires_at_ && now >= *expires_at_) {
            co_return std::unexpected(std::move(ok).error());
          }
        }
      }
      if (!token_.empty()) co_return token_.clone();
    }
    token_.clear();
    if (logs_in()) {
      ROOTSEAL_CO_TRY(co_await login());
    } else {
      if (spec_.token.empty()) co_return fail(Errc::invalid_argument, "vault: no token and no AppRole credentials");
      token_ = spec_.token.clone();
      if (auto ok = co_await lookup_self(); !ok) {
        token_.clear();
        co_return std::unexpected(std::move(ok).error());
      }
    }
    co_return token_.clone();
  }

  void set_lease(std::int64_t ttl_seconds, bool renewable) {
    const auto now = Clock::now();
    if (ttl_seconds <= 0) {  // root / non-expiring token
      renew_at_.reset();
      expires_at_.reset();
      return;
    }
    const auto ttl = std::chrono::seconds(ttl_seconds);
    expires_at_ = now + ttl;
    if (renewable || logs_in()) {
      renew_at_ = now + std::chrono::duration_cast<Clock::duration>(ttl * spec_.renew_fraction);
    } else {
      renew_at_.reset();
    }
    renewable_ = renewable;
  }

  static std::span<const std::uint8_t> bytes_of(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
  }

  // AppRole: {"role_id","secret_id"}; Kubernetes and JWT auth: {"role","jwt"}
  // with a ServiceAccount token (cached, or requested now) or a Secret's JWT.
  // A cached ServiceAccount token the store refuses (400/401/403: the
  // ServiceAccount deleted or recreated since) is replaced by a fresh one, once.
  Task<void> login() {
    for (int attempt = 0;; ++attempt) {
      auto res = co_await login_once(attempt > 0);
      if (!res) co_return std::unexpected(std::move(res).error());
      const auto status = res->status;
      if (status == 200) co_return read_login_answer(*res);
      if (attempt == 0 && spec_.jwt_source && (status == 400 || status == 401 || status == 403)) continue;
      const std::string_view what = cert_login()   ? std::string_view("certificate")
                                    : !jwt_login() ? std::string_view("AppRole")
                                    : trim_slashes(spec_.jwt_auth_path) == "kubernetes" ? std::string_view("Kubernetes")
                                                                                        : std::string_view("JWT");
      co_return fail(errc_for_status(status), "vault: " + std::string(what) + " login failed: " + vault_error(*res));
    }
  }

  asio::awaitable<kms::Result<net::ClientResponse>> login_once(bool fresh_jwt) {
    ++counters_.logins;
    SecureBuffer body(128);
    std::string target;
    if (cert_login()) {  // the certificate is the credential: the body only names the role, if any
      body.append("{");
      if (!spec_.cert_role.empty()) {
        body.append(R"("name":)");
        json_quote(bytes_of(spec_.cert_role), body);
      }
      body.append("}");
      target = "/v1/auth/" + net::url_encode(trim_slashes(spec_.cert_auth_path), false) + "/login";
    } else if (jwt_login()) {
      kms::SecureBytes jwt;
      if (spec_.jwt_source) {
        auto t = co_await spec_.jwt_source(fresh_jwt);
        if (!t) co_return std::unexpected(std::move(t).error());
        jwt = std::move(*t);
      } else {
        jwt = spec_.jwt.clone();
      }
      body.append(R"({"jwt":)");
      json_quote(jwt.span(), body);
      body.append(R"(,"role":)");
      json_quote(bytes_of(spec_.jwt_role), body);
      body.append("}");
      target = "/v1/auth/" + net::url_encode(trim_slashes(spec_.jwt_auth_path), false) + "/login";
    } else {
      body.append(R"({"role_id":)");
      json_quote(bytes_of(spec_.role_id), body);
      body.append(R"(,"secret_id":)");
      json_quote(spec_.secret_id.span(), body);
      body.append("}");
      target = "/v1/auth/" + net::url_encode(trim_slashes(spec_.approle_path), false) + "/login";
    }
    co_return co_await call(http::verb::post, target, nullptr, body.view());
  }

  // The token and lease of a login answer (auth.client_token, lease_duration, renewable).
  kms::Result<void> read_login_answer(const net::ClientResponse& res) {
    auto doc = SecureJson::parse(res.body.view());
    if (!doc) return fail(Errc::unavailable, "vault: the login answer is not JSON");
    const auto& root = (*doc)->root();
    const json::value* auth = root.is_object() ? root.as_object().if_contains("auth") : nullptr;
    if (auth == nullptr || json_string(*auth, "client_token").empty()) {
      return fail(Errc::unavailable, "vault: the login answer has no auth.client_token");
    }
    token_ = kms::SecureBytes::copy_of(json_string(*auth, "client_token"));
    set_lease(json_int(*auth, "lease_duration").value_or(0), json_bool(*auth, "renewable"));
    return {};
  }

  Task<void> lookup_self() {
    ++counters_.lookups;
    ROOTSEAL_CO_LET(res, co_await call(http::verb::get, "/v1/auth/token/lookup-self", &token_, {}));
    if (res.status != 200)
      co_return fail(errc_for_status(res.status), "vault: token lookup failed: " + vault_error(res));
    auto doc = SecureJson::parse(res.body.view());
    if (!doc) co_return fail(Errc::unavailable, "vault: the lookup answer is not JSON");
    const auto& root = (*doc)->root();
    const json::value* data = root.is_object() ? root.as_object().if_contains("data") : nullptr;
    if (data == nullptr) co_return fail(Errc::unavailable, "vault: the lookup answer has no data");
    set_lease(json_int(*data, "ttl").value_or(0), json_bool(*data, "renewable"));
    co_return kms::Result<void>{};
  }

  Task<void> renew() {
    ++counters_.renewals;
    ROOTSEAL_CO_LET(res, co_await call(http::verb::post, "/v1/auth/token/renew-self", &token_, "{}"));
    if (res.status != 200)
      co_return fail(errc_for_status(res.status), "vault: token renewal failed: " + vault_error(res));
    auto doc = SecureJson::parse(res.body.view());
    if (!doc) co_return fail(Errc::unavailable, "vault: the renewal answer is not JSON");
    const auto& root = (*doc)->root();
    const json::value* auth = root.is_object() ? root.as_object().if_contains("auth") : nullptr;
    if (auth == nullptr) co_return fail(Errc::unavailable, "vault: the renewal answer has no auth");
    const auto ttl = json_int(*auth, "lease_duration").value_or(0);
    // A renewal that no longer extends (max TTL reached) leaves little time: log in at the next use.
    set_lease(ttl, json_bool(*auth, "renewable"));
    if (logs_in() && ttl > 0 && ttl < 2) token_.clear();
    co_return kms::Result<void>{};
  }

  asio::awaitable<void> invalidate(const kms::SecureBytes& used) {
    co_await mu_.lock();
    if (!token_.empty() && token_ == used) token_.clear();
    mu_.unlock();
  }

  VaultSpec spec_;
  std::string mount_;
  bool kv1_ = false;  // KV version 1: <mount>/<key>, no versions, custom_metadata inside the map (ESO)
  std::shared_ptr<net::HttpClient> client_;
  std::shared_ptr<StoreHealth> health_;
  AsyncMutex mu_;
  // Guarded by mu_:
  kms::SecureBytes token_;
  std::optional<Clock::time_point> renew_at_;
  std::optional<Clock::time_point> expires_at_;
  bool renewable_ = false;
  VaultCounters counters_;
};

}  // namespace

kms::Result<std::shared_ptr<VaultKv2Provider>> make_vault_provider(const asio::any_io_executor& executor,
                                                                   VaultSpec spec,
                                                                   std::shared_ptr<StoreHealth> health) {
  if (spec.server.empty()) return fail(Errc::invalid_argument, "vault: server is required");
  if (spec.version != "v2" && spec.version != "v1")
    return fail(Errc::invalid_argument, "vault: KV version must be v2 or v1");
  if (!spec.cert_auth_path.empty()) {
    if (spec.client_cert_pem.empty() || spec.client_key_pem.empty()) {
      return fail(Errc::invalid_argument, "vault: certificate auth needs a client certificate and its key");
    }
  } else if (!spec.jwt_auth_path.empty()) {
    if (!spec.jwt_source && spec.jwt.empty()) {
      return fail(Errc::invalid_argument, "vault: Kubernetes/JWT auth needs a serviceAccountRef or a JWT");
    }
  } else if (spec.role_id.empty() && spec.token.empty()) {
    return fail(Errc::invalid_argument,
                "vault: auth needs a token, AppRole role_id + secret_id, or a Kubernetes/JWT role");
  }
  if (!spec.role_id.empty() && spec.secret_id.empty())
    return fail(Errc::invalid_argument, "vault: AppRole needs a secret_id");
  if (!(spec.renew_fraction > 0.0 && spec.renew_fraction < 1.0)) {
    return fail(Errc::invalid_argument, "vault: renew_fraction must be between 0 and 1");
  }
  std::shared_ptr<net::HttpClient> client;
  if (!spec.cert_auth_path.empty()) {
    ROOTSEAL_LET(
        c, make_client_with_certificate(executor, spec.server, spec.tls, spec.client_cert_pem, spec.client_key_pem));
    client = std::move(c);
  } else {
    ROOTSEAL_LET(c, make_client(executor, spec.server, spec.tls));
    client = std::move(c);
  }
  if (!health) health = std::make_shared<StoreHealth>("vault " + spec.server);
  return std::shared_ptr<VaultKv2Provider>(
      std::make_shared<VaultImpl>(executor, std::move(spec), std::move(client), std::move(health)));
}

}  // namespace rootseal::sync::providers
