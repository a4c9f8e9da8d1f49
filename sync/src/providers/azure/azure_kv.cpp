#include "providers/azure/azure_kv.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <map>
#include <optional>
#include <vector>

#include "providers/cloud_auth.hpp"
#include "go_json.hpp"
#include "providers/common.hpp"
#include "rootseal/kms/encoding.hpp"
#include "secure_buffer.hpp"
#include "secure_json.hpp"

namespace rootseal::sync::providers {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using kms::Errc;
using kms::fail;

namespace {

constexpr std::string_view kScope = "https://vault.azure.net/.default";

bool valid_version(std::string_view v) {
  return v.size() == 32 &&
         std::all_of(v.begin(), v.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
}

void quote(std::string_view s, SecureBuffer& out) {
  json_quote(std::span(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()), out);
}

// Unix seconds as Go's time.Format(time.RFC3339) of a UTC time.
std::string rfc3339_utc(std::int64_t seconds) {
  const auto t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, n);
}

bool valid_name(std::string_view n) {
  if (n.empty() || n.size() > 127) return false;
  return std::all_of(n.begin(), n.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-'; });
}

// What remoteRef.key names, as ESO's getObjType splits it: "<type>/<name>"
// (a later segment is not read), else a secret.
enum class Object { secret, certificate, key };
struct Named {
  Object object = Object::secret;
  std::string_view name;
};

kms::Result<Named> named(std::string_view key) {
  const auto slash = key.find('/');
  if (slash == std::string_view::npos) return Named{Object::secret, key};
  const std::string_view type = key.substr(0, slash);
  std::string_view name = key.substr(slash + 1);
  name = name.substr(0, name.find('/'));
  if (type == "secret") return Named{Object::secret, name};
  if (type == "cert") return Named{Object::certificate, name};
  if (type == "key") return Named{Object::key, name};
  return fail(Errc::invalid_argument, "azure: unknown Azure Keyvault object Type for " + std::string(name));
}

constexpr std::string_view noun(Object o) {
  return o == Object::certificate ? "certificate" : o == Object::key ? "key" : "secret";
}

// The member Go's json.Unmarshal sets a struct field `name` from: the last
// whose name matches, ASCII case folded.
const json::value* go_member(const json::value& v, std::string_view name) {
  if (!v.is_object()) return nullptr;
  const json::value* out = nullptr;
  for (const auto& m : v.as_object()) {
    if (boost::beast::iequals(m.key(), name)) out = &m.value();
  }
  return out;
}

// json.Marshal of the legacy SDK's keyvault.JSONWebKey (services/keyvault/v7.0)
// that json.Unmarshal made of a Key Vault key's "key": its fields in the
// struct's order, absent and null ones left out (omitempty pointers; kty and
// crv when empty), strings as Go writes them. A JWK may hold a private part:
// the output is in locked memory and no error names a value.
kms::Result<kms::SecureBytes> go_jwk(const json::value* key) {
  SecureBuffer out(1024);
  if (key == nullptr || key->is_null()) {
    out.append("null");
    return out.take();
  }
  if (!key->is_object()) return fail(Errc::unavailable, "azure: the key's \"key\" is not a JSON object");
  static constexpr std::string_view kFields[] = {"kid", "kty", "key_ops", "n", "e",       "d",   "dp", "dq",
                                                 "qi",  "p",   "q",       "k", "key_hsm", "crv", "x",  "y"};
  out.push_back('{');
  bool first = true;
  for (const std::string_view field : kFields) {
    const json::value* v = go_member(*key, field);
    if (v == nullptr || v->is_null()) continue;
    const bool plain = field == "kty" || field == "crv";  // string, not *string: "" is left out
    if (field == "key_ops") {
      if (!v->is_array()) return fail(Errc::unavailable, "azure: the key's key_ops is not an array of strings");
      for (const auto& op : v->as_array()) {
        if (!op.is_string() && !op.is_null())
          return fail(Errc::unavailable, "azure: the key's key_ops is not an array of strings");
      }
    } else if (!v->is_string()) {
      return fail(Errc::unavailable, "azure: the key's " + std::string(field) + " is not a string");
    }
    if (plain && v->as_string().empty()) continue;
    if (!first) out.push_back(',');
    first = false;
    gojson::append_go_string(out, field);
    out.push_back(':');
    if (field != "key_ops") {
      gojson::append_go_string(out, std::string_view(v->as_string()));
      continue;
    }
    out.push_back('[');
    bool first_op = true;
    for (const auto& op : v->as_array()) {
      if (!first_op) out.push_back(',');
      first_op = false;
      gojson::append_go_string(out, op.is_string() ? std::string_view(op.as_string()) : std::string_view());
    }
    out.push_back(']');
  }
  out.push_back('}');
  return out.take();
}

struct Current {
  bool exists = false;
  bool managed = false;
  std::optional<kms::SecureBytes> value;
  std::string content_type;
  std::optional<std::int64_t> expires;  // attributes.exp
  std::map<std::string, std::string, std::less<>> tags;
};

class AzureImpl final : public AzureKeyVault {
 public:
  AzureImpl(AzureSpec spec, std::shared_ptr<net::HttpClient> vault, std::shared_ptr<StoreHealth> health)
      : spec_(std::move(spec)), vault_(std::move(vault)), health_(std::move(health)) {}

  // Set once by make_azure_provider (the auth counts its fetches in counters_).
  void set_auth(std::unique_ptr<MicrosoftClientCredentialsAuth> auth) { auth_ = std::move(auth); }
  std::atomic<std::size_t>& token_requests() { return counters_.token_requests; }

  const AzureCounters& counters() const noexcept override { return counters_; }

  Task<void> validate() override {
    ROOTSEAL_CO_LET(token, co_await auth_->access_token());
    (void)token;
    ROOTSEAL_CO_LET(r, co_await call(http::verb::get, "/secrets?maxresults=1", {}));
    if (r.status != 200)
      co_return fail(errc_for_status(r.status), "azure: listing secrets failed: " + microsoft_error(r));
    co_return kms::Result<void>{};
  }

  // ---- pull ----
  ValueFormat value_format() const noexcept override { return ValueFormat::gjson_path_first; }

  // ESO's GetSecret: remoteRef.key "<name>" or "secret/<name>" is a secret
  // (its value), "cert/<name>" a certificate (its "cer": the DER bytes, read
  // whole whatever the property), "key/<name>" a key (its JWK as Go's
  // json.Marshal of the legacy SDK's JSONWebKey writes it); version a version id.
  Task<kms::SecureBytes> fetch(const RemoteKey& ref) override {
    ROOTSEAL_CO_LET(doc, co_await get_object(ref));
    ROOTSEAL_CO_LET(what, named(ref.key));
    const auto& root = doc->root();
    if (what.object == Object::key) co_return go_jwk(go_member(root, "key"));
    if (what.object == Object::certificate) {
      const json::value* cer = go_member(root, "cer");
      if (cer == nullptr || !cer->is_string()) co_return fail(Errc::unavailable, "azure: the certificate has no cer");
      auto der = kms::base64_decode(std::string_view(cer->as_string()));
      if (!der) co_return fail(Errc::unavailable, "azure: the certificate's cer is not base64");
      co_return kms::SecureBytes::copy_of(std::span<const std::uint8_t>(*der));
    }
    const json::value* v = root.is_object() ? root.as_object().if_contains("value") : nullptr;
    if (v == nullptr || !v->is_string()) co_return fail(Errc::unavailable, "azure: the answer has no value");
    co_return kms::SecureBytes::copy_of(std::string_view(v->as_string()));
  }

  // A certificate's DER is read whole (ESO ignores the property there).
  ValueFormat value_format_of(const RemoteKey& ref) const noexcept override {
    const auto what = named(ref.key);
    return what && what->object == Object::certificate ? ValueFormat::whole : value_format();
  }

  // ESO's GetSecretMap: dataFrom.extract of a certificate or a key is refused
  // before anything is read (with metadataPolicy Fetch too).
  kms::Result<void> extract_refusal(const RemoteKey& ref) const override {
    ROOTSEAL_LET(what, named(ref.key));
    if (what.object == Object::certificate)
      return fail(Errc::invalid_argument, "cannot get use dataFrom to get certificate secret");
    if (what.object == Object::key) return fail(Errc::invalid_argument, "cannot get use dataFrom to get key secret");
    return {};
  }

  ValueFormat metadata_format() const noexcept override { return ValueFormat::azure_tags; }

  // ESO's metadataPolicy Fetch (its legacy SDK's getSecretAllMetadata): the
  // secret's, certificate's or key's tags and its attributes
  // "attribute.expires", "attribute.created", "attribute.updated" and
  // "attribute.notBefore" (RFC 3339, UTC) as the JSON object Go's
  // json.Marshal makes of a map[string]string. A missing object is not_found
  // (ESO: NoSecretErr).
  Task<kms::SecureBytes> fetch_metadata(const RemoteKey& ref) override {
    ROOTSEAL_CO_LET(doc, co_await get_object(ref));
    const auto& root = doc->root();
    std::map<std::string, std::string, std::less<>> meta;
    if (const auto* tags = root.is_object() ? root.as_object().if_contains("tags") : nullptr;
        tags != nullptr && tags->is_object()) {
      for (const auto& t : tags->as_object()) {
        if (t.value().is_string()) meta.insert_or_assign(std::string(t.key()), std::string(t.value().as_string()));
      }
    }
    if (const auto* a = root.is_object() ? root.as_object().if_contains("attributes") : nullptr;
        a != nullptr && a->is_object()) {
      static constexpr std::pair<std::string_view, std::string_view> kAttributes[] = {{"exp", "attribute.expires"},
                                                                                      {"created", "attribute.created"},
                                                                                      {"updated", "attribute.updated"},
                                                                                      {"nbf", "attribute.notBefore"}};
      for (const auto& [field, key] : kAttributes) {
        const auto* t = a->as_object().if_contains(field);
        if (t != nullptr && t->is_int64()) meta.insert_or_assign(std::string(key), rfc3339_utc(t->as_int64()));
      }
    }
    co_return go_string_map_json(meta);
  }

  // GET of the secret, certificate or key `ref` names, parsed; not_found for a 404.
  Task<std::shared_ptr<SecureJson>> get_object(const RemoteKey& ref) {
    ROOTSEAL_CO_LET(what, named(ref.key));
    const std::string_view name = what.name;
    const std::string type(noun(what.object));
    if (!valid_name(name))
      co_return fail(Errc::invalid_argument, "azure: " + type + " names must match ^[0-9a-zA-Z-]{1,127}$");
    if (!ref.version.empty() && !valid_version(ref.version)) {
      co_return fail(Errc::invalid_argument, "azure: a version is 32 hexadecimal characters");
    }
    std::string target = (what.object == Object::certificate ? "/certificates/"
                          : what.object == Object::key       ? "/keys/"
                                                             : "/secrets/") +
                         std::string(name);
    if (!ref.version.empty()) target += "/" + ref.version;
    ROOTSEAL_CO_LET(r, co_await call(http::verb::get, target, {}));
    if (r.status == 404) co_return fail(Errc::not_found, "azure: " + type + " \"" + std::string(name) + "\" not found");
    if (r.status != 200)
      co_return fail(errc_for_status(r.status), "azure: reading the " + type + " failed: " + microsoft_error(r));
    auto doc = SecureJson::parse(r.body.view());
    if (!doc) co_return fail(Errc::unavailable, "azure: the answer is not JSON");
    co_return std::move(*doc);
  }

  // ESO's Azure GetAllSecrets: every page of the secrets list (nextLink),
  // the enabled secrets whose list tags hold every find.tags pair and whose
  // name matches find.name.regexp (neither: every enabled secret), then the
  // latest value of each. find.path is refused (ESO's Azure provider does not
  // read it). A secret gone between the listing and its read is not_found
  // for the whole search (ESO: NoSecretErr).
  Task<SecretMap> find(const FindRequest& request) override {
    if (request.path) {
      co_return fail(Errc::invalid_argument,
                     "azure: find.path is not served by rootseal (ESO's Azure Key Vault provider does not read it)");
    }
    SecretMap out;
    std::string target = "/secrets?maxresults=25";
    for (std::size_t page = 0;; ++page) {
      if (page == kMaxFindPages)
        co_return fail(Errc::unavailable, "azure: the secrets list did not end after 10000 pages");
      ROOTSEAL_CO_LET(r, co_await call(http::verb::get, target, {}));
      if (r.status != 200)
        co_return fail(errc_for_status(r.status), "azure: listing secrets failed: " + microsoft_error(r));
      auto doc = SecureJson::parse(r.body.view());
      if (!doc) co_return fail(Errc::unavailable, "azure: the answer is not JSON");
      const auto& root = (*doc)->root();
      const json::value* list = root.is_object() ? root.as_object().if_contains("value") : nullptr;
      if (list == nullptr || !list->is_array())
        co_return fail(Errc::unavailable, "azure: the secrets list has no value");
      std::vector<std::string> names;
      for (const auto& item : list->as_array()) {
        ROOTSEAL_CO_LET(name, listed_match(item, request));
        if (name) names.push_back(std::move(*name));
      }
      for (const auto& name : names) {
        const RemoteKey ref{name, ""};
        auto value = co_await fetch(ref);
        if (!value) co_return std::unexpected(value.error());
        out.insert_or_assign(name, std::move(*value));
      }
      const std::string_view next = json_string(root, "nextLink");
      if (next.empty()) break;
      ROOTSEAL_CO_LET(next_target, in_vault(next));
      target = std::move(next_target);
    }
    co_return out;
  }

  // ---- push ----
  Task<RemoteState> describe(std::string_view name) override {
    ROOTSEAL_CO_LET(c, co_await current(name));
    co_return RemoteState{c.exists, c.managed};
  }

  Task<RemoteState> ensure_managed(std::string_view name) override {
    // Key Vault has no secret without a value: nothing to create before the first write.
    ROOTSEAL_CO_LET(c, co_await current(name));
    if (c.exists && !c.managed) co_return refuse(name);
    co_return RemoteState{c.exists, c.managed};
  }

  Task<PushOutcome> put_if_changed(const PushRef& ref, const kms::SecureBytes& value, bool if_not_exists) override {
    ROOTSEAL_CO_LET(c, co_await current(ref.remote_key));
    if (c.exists && !c.managed) co_return refuse(ref.remote_key);
    if (c.exists && if_not_exists && c.value) co_return PushOutcome{false, false, {}};
    // Sharded: the latest version written by a newer owner of this bucket
    // (its tag rootseal-epoch) means this host is a stale owner: no write.
    if (const auto mark = c.tags.find(kEpochMark); mark != c.tags.end()) {
      if (const std::int64_t newer = newer_owner_epoch(ref, mark->second); newer != 0)
        co_return PushOutcome{false, false, {}, newer};
    }
    if (!is_utf8(value.span()))
      co_return fail(Errc::invalid_argument, "azure: Key Vault secret values are text; the value is not UTF-8");
    ROOTSEAL_CO_LET(desired, with_property("azure", c.value ? &*c.value : nullptr, ref.property, value));
    const PushMetadata* md = ref.metadata;
    // ESO's Azure provider: the tags are managed-by and the metadata's; contentType the metadata's, else
    // the secret's own (rootseal: text/plain for a new one); attributes.exp the metadata's expirationDate.
    std::map<std::string, std::string, std::less<>> tags{{"managed-by", "rootseal"}};
    if (md != nullptr) tags.insert(md->tags.begin(), md->tags.end());
    // Which owner wrote the version (sharded); not compared: a new owner alone writes no version.
    auto current_tags = c.tags;
    if (const auto own = current_tags.find(kEpochMark); own != current_tags.end()) current_tags.erase(own);
    const auto compared_tags = tags;
    if (const std::string mark = epoch_mark(ref); !mark.empty()) tags.insert_or_assign(std::string(kEpochMark), mark);
    const std::optional<std::int64_t> expires = md != nullptr ? md->expires : std::nullopt;
    std::string content_type = md != nullptr ? md->content_type : std::string();
    // Unchanged as ESO decides (value, expiry, a contentType asked for), and rootseal also writes when the
    // metadata's tags are not those of the secret (ESO would leave them until the value changes).
    const bool same = c.value && *c.value == desired && c.expires == expires &&
                      (content_type.empty() || content_type == c.content_type) &&
                      (md == nullptr || md->tags.empty() || current_tags == compared_tags);
    if (same) co_return PushOutcome{false, false, {}};
    if (content_type.empty()) content_type = c.content_type.empty() ? "text/plain" : c.content_type;
    SecureBuffer body(256 + desired.size() * 2);
    body.append(R"({"value":)");
    json_quote(desired.span(), body);
    body.append(R"(,"contentType":)");
    quote(content_type, body);
    body.append(R"(,"attributes":{"enabled":true)");
    if (expires) body.append(R"(,"exp":)" + std::to_string(*expires));
    body.append(R"(},"tags":{)");
    bool first = true;
    for (const auto& [k, v] : tags) {
      if (!first) body.push_back(',');
      first = false;
      quote(k, body);
      body.push_back(':');
      quote(v, body);
    }
    body.append("}}");
    ++counters_.writes;
    ROOTSEAL_CO_LET(r, co_await call(http::verb::put, "/secrets/" + std::string(ref.remote_key), body.view()));
    if (r.status != 200)
      co_return fail(errc_for_status(r.status), "azure: setting the secret failed: " + microsoft_error(r));
    std::string version;
    if (auto doc = SecureJson::parse(r.body.view())) {
      const std::string_view id = json_string((*doc)->root(), "id");
      if (auto slash = id.rfind('/'); slash != std::string_view::npos) version = std::string(id.substr(slash + 1));
    }
    co_return PushOutcome{true, !c.exists, std::move(version)};
  }

  Task<void> remove(const PushRef& ref) override {
    ROOTSEAL_CO_LET(c, co_await current(ref.remote_key));
    if (!c.exists) co_return kms::Result<void>{};
    if (!c.managed) co_return refuse(ref.remote_key);
    if (!ref.property.empty() && c.value) {
      if (auto rest = without_property(*c.value, ref.property)) {
        if (*rest == *c.value) co_return kms::Result<void>{};
        PushRef whole{ref.remote_key, ""};
        whole.bucket = ref.bucket;
        whole.epoch = ref.epoch;
        ROOTSEAL_CO_LET(w, co_await put_if_changed(whole, *rest, false));
        (void)w;
        co_return kms::Result<void>{};
      }
    }
    ++counters_.writes;
    ROOTSEAL_CO_LET(r, co_await call(http::verb::delete_, "/secrets/" + std::string(ref.remote_key), {}));
    if (r.status != 200 && r.status != 404)
      co_return fail(errc_for_status(r.status), "azure: deleting the secret failed: " + microsoft_error(r));
    co_return kms::Result<void>{};
  }

 private:
  static std::unexpected<kms::Error> refuse(std::string_view name) { return not_managed("azure", name, "tag"); }

  static constexpr std::size_t kMaxFindPages = 10000;

  // A secrets-list item's name when find takes it (enabled, every tag, the
  // name regexp); nullopt when not.
  static kms::Result<std::optional<std::string>> listed_match(const json::value& item, const FindRequest& request) {
    const std::string_view id = json_string(item, "id");
    const auto slash = id.rfind('/');
    if (id.empty() || slash == std::string_view::npos || slash + 1 == id.size())
      return fail(Errc::unavailable, "azure: a secret without an id in the secrets list");
    std::string name(id.substr(slash + 1));
    const json::value* attributes = item.as_object().if_contains("attributes");
    const json::value* enabled =
        attributes != nullptr && attributes->is_object() ? attributes->as_object().if_contains("enabled") : nullptr;
    if (enabled == nullptr || !enabled->is_bool() || !enabled->as_bool()) return std::optional<std::string>{};
    if (!request.tags.empty()) {
      const json::value* tags = item.as_object().if_contains("tags");
      if (tags == nullptr || !tags->is_object()) return std::optional<std::string>{};
      for (const auto& [k, v] : request.tags) {
        const json::value* t = tags->as_object().if_contains(k);
        if (t == nullptr || !t->is_string() || t->as_string() != v) return std::optional<std::string>{};
      }
    }
    if (request.name_matches && !request.name_matches(name)) return std::optional<std::string>{};
    if (!valid_name(name)) return fail(Errc::unavailable, "azure: the secrets list names a secret that is not valid");
    return std::optional<std::string>(std::move(name));
  }

  // A nextLink as a target on this vault (the token goes nowhere else).
  kms::Result<std::string> in_vault(std::string_view link) const {
    std::string_view base = spec_.vault_url;
    while (base.ends_with('/')) base.remove_suffix(1);
    if (!link.starts_with(base) || link.size() <= base.size() || link[base.size()] != '/')
      return fail(Errc::unavailable, "azure: the secrets list's nextLink points outside the vault");
    return std::string(link.substr(base.size()));
  }

  Task<Current> current(std::string_view name) {
    if (!valid_name(name))
      co_return fail(Errc::invalid_argument, "azure: secret names must match ^[0-9a-zA-Z-]{1,127}$");
    ROOTSEAL_CO_LET(r, co_await call(http::verb::get, "/secrets/" + std::string(name), {}));
    Current c;
    if (r.status == 404) co_return c;
    if (r.status != 200)
      co_return fail(errc_for_status(r.status), "azure: reading the secret failed: " + microsoft_error(r));
    auto doc = SecureJson::parse(r.body.view());
    if (!doc) co_return fail(Errc::unavailable, "azure: the answer is not JSON");
    const auto& root = (*doc)->root();
    c.exists = true;
    if (root.is_object()) {
      if (const auto* tags = root.as_object().if_contains("tags"); tags && tags->is_object()) {
        c.managed = json_string(*tags, "managed-by") == "rootseal";
        for (const auto& t : tags->as_object()) {
          if (t.value().is_string()) c.tags.insert_or_assign(std::string(t.key()), std::string(t.value().as_string()));
        }
      }
      if (const auto* v = root.as_object().if_contains("value"); v && v->is_string()) {
        c.value = kms::SecureBytes::copy_of(std::string_view(v->as_string()));
      }
      c.content_type = std::string(json_string(root, "contentType"));
      if (const auto* a = root.as_object().if_contains("attributes"); a && a->is_object()) {
        if (const auto* exp = a->as_object().if_contains("exp"); exp && exp->is_int64()) c.expires = exp->as_int64();
      }
    }
    co_return c;
  }

  // One call to the vault (bearer_request: token, 401 renewal, the store's health).
  asio::awaitable<kms::Result<net::ClientResponse>> call(http::verb verb, std::string target, std::string_view body) {
    if (target.find("api-version=") == std::string::npos) {  // a nextLink carries it
      target += (target.find('?') == std::string::npos ? "?" : "&");
      target += "api-version=" + spec_.api_version;
    }
    const CallCounters counted{&counters_.calls, &counters_.throttled};
    co_return co_await bearer_request(*auth_, *health_, *vault_, verb, target, body, "azure", counted);
  }

  AzureSpec spec_;
  std::unique_ptr<MicrosoftClientCredentialsAuth> auth_;
  std::shared_ptr<net::HttpClient> vault_;
  std::shared_ptr<StoreHealth> health_;
  AzureCounters counters_;
};

}  // namespace

kms::Result<std::shared_ptr<AzureKeyVault>> make_azure_provider(const asio::any_io_executor& executor, AzureSpec spec,
                                                                std::shared_ptr<StoreHealth> health) {
  if (spec.vault_url.empty()) return fail(Errc::invalid_argument, "azure: vaultUrl is required");
  if (spec.tenant_id.empty() || spec.client_id.empty() || (spec.client_secret.empty() && !spec.client_assertion)) {
    return fail(Errc::invalid_argument,
                "azure: tenantId, clientId and clientSecret (or workload identity) are required");
  }
  if (spec.api_version.empty()) return fail(Errc::invalid_argument, "azure: api_version is required");
  ROOTSEAL_LET(vault, make_client(executor, spec.vault_url, spec.tls));
  if (!health) health = std::make_shared<StoreHealth>("azure " + spec.vault_url);
  std::string authority = spec.authority_host;
  const TlsSpec authority_tls = spec.authority_tls;
  std::string tenant = spec.tenant_id;
  std::string client = spec.client_id;
  kms::SecureBytes secret = std::move(spec.client_secret);
  JwtSource assertion = spec.client_assertion;
  auto impl = std::make_shared<AzureImpl>(std::move(spec), std::move(vault), std::move(health));
  ROOTSEAL_LET(auth, MicrosoftClientCredentialsAuth::make(executor, authority, authority_tls, std::move(tenant),
                                                          std::move(client), std::move(secret), std::string(kScope),
                                                          "azure", &impl->token_requests(), std::move(assertion)));
  impl->set_auth(std::move(auth));
  return std::shared_ptr<AzureKeyVault>(std::move(impl));
}

}  // namespace rootseal::sync::providers
