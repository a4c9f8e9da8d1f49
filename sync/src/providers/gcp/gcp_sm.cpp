#include "providers/gcp/gcp_sm.hpp"

#include <boost/json.hpp>

#include <array>
#include <chrono>
#include <map>
#include <optional>
#include <vector>

#include "providers/cloud_auth.hpp"
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

std::uint32_t crc32c(std::span<const std::uint8_t> data) noexcept {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) != 0 ? 0x82F63B78u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  std::uint32_t crc = 0xFFFFFFFFu;
  for (std::uint8_t b : data) crc = table[(crc ^ b) & 0xFFu] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

namespace {

constexpr std::string_view kScope = "https://www.googleapis.com/auth/cloud-platform";

bool valid_id(std::string_view n) {
  if (n.empty() || n.size() > 255) return false;
  return std::all_of(n.begin(), n.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_'; });
}

using StringMap = std::map<std::string, std::string, std::less<>>;

struct Current {
  bool exists = false;
  bool managed = false;
  StringMap labels;
  StringMap annotations;
  std::string etag;
};

// A map of strings as a JSON object (labels and annotations are not secret).
std::string json_of(const StringMap& m) {
  json::object o;
  for (const auto& [k, v] : m) o[k] = v;
  return json::serialize(o);
}

// The labels a push with `md` gives the secret whose labels are `current`:
// the metadata's (mergePolicy Merge: over the secret's own), and managed-by.
StringMap desired_labels(const PushMetadata* md, const StringMap& current) {
  StringMap out;
  if (md != nullptr && md->merge_labels) out = current;
  if (md != nullptr) {
    for (const auto& [k, v] : md->labels) out.insert_or_assign(k, v);
  }
  out.insert_or_assign("managed-by", "rootseal");
  return out;
}

class GcpImpl final : public GcpSecretManager {
 public:
  GcpImpl(GcpSpec spec, std::shared_ptr<net::HttpClient> api, std::shared_ptr<StoreHealth> health)
      : spec_(std::move(spec)), api_(std::move(api)), health_(std::move(health)) {}

  // Set once by make_gcp_provider (the auth counts its fetches in counters_).
  void set_auth(std::unique_ptr<BearerAuth> auth) { auth_ = std::move(auth); }
  std::atomic<std::size_t>& token_requests() { return counters_.token_requests; }

  const GcpCounters& counters() const noexcept override { return counters_; }

  Task<void> validate() override {
    ROOTSEAL_CO_LET(r, co_await call(http::verb::get, base() + "?pageSize=1", {}));
    if (r.status != 200) co_return fail(errc_for_status(r.status), "gcp: listing secrets failed: " + google_error(r));
    co_return kms::Result<void>{};
  }

  // ---- pull ----
  // ESO's GetSecret: AccessSecretVersion of remoteRef.version (default
  // "latest"), the payload CRC32C-checked.
  Task<kms::SecureBytes> fetch(const RemoteKey& ref) override {
    if (!valid_id(ref.key)) co_return fail(Errc::invalid_argument, "gcp: secret ids must match ^[a-zA-Z0-9_-]{1,255}$");
    const std::string version = ref.version.empty() ? "latest" : ref.version;
    if (version != "latest" && (version.size() > 18 || version.find_first_not_of("0123456789") != std::string::npos)) {
      co_return fail(Errc::invalid_argument, "gcp: a version is \"latest\" or a version number");
    }
    ROOTSEAL_CO_LET(value, co_await access(ref.key, version));
    if (!value) {
      co_return fail(Errc::not_found,
                     "gcp: secret \"" + ref.key + "\" version " + version + " not found or not enabled");
    }
    co_return std::move(*value);
  }

  // ESO's metadataPolicy Fetch (getSecretMetadata): the secret's annotations
  // and labels as Go marshals a map[string]map[string]string
  // ({"annotations":{...},"labels":{...}}, keys sorted, none as null);
  // `property` ("labels", "labels.<k>", "annotations.<k>") selects from it.
  // A missing secret is not_found (ESO: NoSecretErr). A version is refused:
  // metadata has none (ESO ignores it).
  Task<kms::SecureBytes> fetch_metadata(const RemoteKey& ref) override {
    if (!valid_id(ref.key)) co_return fail(Errc::invalid_argument, "gcp: secret ids must match ^[a-zA-Z0-9_-]{1,255}$");
    if (!ref.version.empty()) {
      co_return fail(Errc::invalid_argument,
                     "gcp: metadataPolicy Fetch reads the secret's labels and annotations, which have no versions; "
                     "remove remoteRef.version");
    }
    ROOTSEAL_CO_LET(r, co_await call(http::verb::get, base() + "/" + ref.key, {}));
    if (r.status == 404) co_return fail(Errc::not_found, "gcp: secret \"" + ref.key + "\" not found");
    if (r.status != 200)
      co_return fail(errc_for_status(r.status), "gcp: reading the secret failed: " + google_error(r));
    auto doc = SecureJson::parse(r.body.view());
    if (!doc || !(*doc)->root().is_object()) co_return fail(Errc::unavailable, "gcp: the answer is not a JSON object");
    const auto& root = (*doc)->root().as_object();
    std::string out = "{";
    for (const std::string_view field : {"annotations", "labels"}) {
      if (out.size() > 1) out += ',';
      out += "\"" + std::string(field) + "\":";
      std::map<std::string, std::string, std::less<>> m;
      if (const auto* v = root.if_contains(field); v != nullptr && !v->is_null()) {
        if (!v->is_object())
          co_return fail(Errc::unavailable, "gcp: the secret's " + std::string(field) + " is not an object");
        for (const auto& kv : v->as_object()) {
          if (!kv.value().is_string())
            co_return fail(Errc::unavailable,
                           "gcp: the secret's " + std::string(field) + " holds a value that is not a string");
          m.emplace(std::string(kv.key()), std::string(kv.value().as_string()));
        }
      }
      if (m.empty()) {
        out += "null";  // Go: a nil map
      } else {
        const auto json_map = go_string_map_json(m);
        out.append(reinterpret_cast<const char*>(json_map.data()), json_map.size());
      }
    }
    out += '}';
    co_return kms::SecureBytes::copy_of(std::string_view(out));
  }

  // ESO's GCP GetAllSecrets: with find.name, ListSecrets (filter
  // "name:<path>" with a path) and the ids that match the regexp; else with
  // find.tags, ListSecrets filtered by "labels.<k>=<v>" (and "name:<path>");
  // neither is ESO's "unexpected find operator". find.path is also a prefix
  // of the id. Every page (nextPageToken) is read, then the latest version
  // of each match; one without an accessible latest version fails the
  // search as not_found (ESO: NoSecretErr).
  Task<SecretMap> find(const FindRequest& request) override {
    const bool by_name = static_cast<bool>(request.name_matches);
    if (!by_name && request.tags.empty()) co_return fail(Errc::invalid_argument, "gcp: unexpected find operator");
    if (by_name && !request.tags.empty()) {  // ESO's GCP provider would drop the tags: refused, never ignored
      co_return fail(Errc::invalid_argument,
                     "gcp: find.name and find.tags together are not served by rootseal (ESO's GCP provider reads only "
                     "find.name then); use one of them");
    }
    std::string filter;
    for (const auto& [k, v] : request.tags) {
      if (!filter.empty()) filter += ' ';
      filter += "labels." + k + "=" + v;
    }
    if (request.path) {
      if (!filter.empty()) filter += ' ';
      filter += "name:" + *request.path;
    }
    SecretMap out;
    std::string token;
    for (std::size_t page = 0;; ++page) {
      if (page == kMaxFindPages) co_return fail(Errc::unavailable, "gcp: ListSecrets did not end after 10000 pages");
      std::string target = base();
      char sep = '?';
      if (!filter.empty()) {
        target += sep + std::string("filter=") + net::url_encode(filter);
        sep = '&';
      }
      if (!token.empty()) target += sep + std::string("pageToken=") + net::url_encode(token);
      ROOTSEAL_CO_LET(r, co_await call(http::verb::get, target, {}));
      if (r.status != 200) co_return fail(errc_for_status(r.status), "gcp: listing secrets failed: " + google_error(r));
      auto doc = SecureJson::parse(r.body.view());
      if (!doc) co_return fail(Errc::unavailable, "gcp: the answer is not JSON");
      const auto& root = (*doc)->root();
      if (!root.is_object()) co_return fail(Errc::unavailable, "gcp: the ListSecrets answer is not an object");
      const json::value* list = root.as_object().if_contains("secrets");
      if (list != nullptr && !list->is_array())
        co_return fail(Errc::unavailable, "gcp: the ListSecrets answer has no list");
      std::vector<std::string> ids;
      static const json::array kNone;
      for (const auto& item : list != nullptr ? list->as_array() : kNone) {
        const std::string_view name = json_string(item, "name");  // projects/<number>/secrets/<id>
        const auto at = name.find("/secrets/");
        if (!name.starts_with("projects/") || at == std::string_view::npos)
          co_return fail(Errc::unavailable, "gcp: a secret without a name in the ListSecrets answer");
        std::string id(name.substr(at + 9));
        if (request.path && !id.starts_with(*request.path)) continue;
        if (by_name && !request.name_matches(id)) continue;
        if (!valid_id(id))
          co_return fail(Errc::unavailable, "gcp: the ListSecrets answer names a secret that is not valid");
        ids.push_back(std::move(id));
      }
      for (const auto& id : ids) {
        ROOTSEAL_CO_LET(value, co_await access_latest(id));
        if (!value) co_return fail(Errc::not_found, "gcp: secret \"" + id + "\" has no accessible latest version");
        out.insert_or_assign(id, std::move(*value));
      }
      const std::string_view next = json_string(root, "nextPageToken");
      if (next.empty()) break;
      token = std::string(next);
    }
    co_return out;
  }

  // ---- push ----
  Task<RemoteState> describe(std::string_view id) override {
    ROOTSEAL_CO_LET(c, co_await secret(id));
    co_return RemoteState{c.exists, c.managed};
  }

  Task<RemoteState> ensure_managed(std::string_view id) override {
    ROOTSEAL_CO_LET(c, co_await secret(id));
    if (c.exists && !c.managed) co_return refuse(id);
    if (!c.exists) ROOTSEAL_CO_TRY(co_await create(id, nullptr));
    co_return RemoteState{true, true};
  }

  // With PushSecretMetadata (ESO's GCP provider): a new secret is created
  // with its labels and annotations; an existing one gets them by a PATCH
  // (updateMask labels,annotations) when they differ. Not with a property
  // (ESO: "cannot specify metadata and property at the same time").
  Task<PushOutcome> put_if_changed(const PushRef& ref, const kms::SecureBytes& value, bool if_not_exists) override {
    const PushMetadata* md = ref.metadata;
    if (md != nullptr && !ref.property.empty())
      co_return fail(Errc::invalid_argument, "gcp: cannot specify metadata and property at the same time");
    ROOTSEAL_CO_LET(c, co_await secret(ref.remote_key));
    if (c.exists && !c.managed) co_return refuse(ref.remote_key);
    const std::string mark = epoch_mark(ref);
    bool created = false;
    if (!c.exists) {
      ROOTSEAL_CO_TRY(co_await create(ref.remote_key, md, mark));
      created = true;
    }
    std::optional<kms::SecureBytes> cur;
    if (!created) {
      ROOTSEAL_CO_LET(latest, co_await access_latest(ref.remote_key));
      cur = std::move(latest);
    }
    if (if_not_exists && cur) co_return PushOutcome{false, false, {}};  // its metadata too (ESO skips the push)
    // Sharded: the secret's label rootseal-epoch is a newer owner's of this
    // bucket: this host is a stale owner, nothing is written.
    if (const auto own = c.labels.find(kEpochMark); own != c.labels.end()) {
      if (const std::int64_t newer = newer_owner_epoch(ref, own->second); newer != 0)
        co_return PushOutcome{false, false, {}, newer};
    }
    ROOTSEAL_CO_LET(desired, with_property("gcp", cur ? &*cur : nullptr, ref.property, value));
    const bool same = cur && *cur == desired;
    bool changed = false;
    // This owner's mark goes on only with a value it writes.
    const std::string label_mark = same ? std::string() : mark;
    if (!created) {
      ROOTSEAL_CO_LET(patched, co_await update_labels(ref.remote_key, c, md, label_mark));
      changed = patched;
    }
    if (same) co_return PushOutcome{changed, false, {}};
    SecureBuffer body(128 + desired.size() * 2);
    body.append(R"({"payload":{"data":")");
    body.append(kms::base64_encode_secure(desired.span()).span());
    body.append(R"(","dataCrc32c":")" + std::to_string(crc32c(desired.span())) + "\"}}");
    ++counters_.writes;
    ROOTSEAL_CO_LET(
        r, co_await call(http::verb::post, base() + "/" + std::string(ref.remote_key) + ":addVersion", body.view()));
    if (r.status != 200) co_return fail(errc_for_status(r.status), "gcp: adding a version failed: " + google_error(r));
    std::string version;
    if (auto doc = SecureJson::parse(r.body.view())) {
      const std::string_view name = json_string((*doc)->root(), "name");
      if (auto slash = name.rfind('/'); slash != std::string_view::npos) version = std::string(name.substr(slash + 1));
    }
    co_return PushOutcome{true, created, std::move(version)};
  }

  Task<void> remove(const PushRef& ref) override {
    ROOTSEAL_CO_LET(c, co_await secret(ref.remote_key));
    if (!c.exists) co_return kms::Result<void>{};
    if (!c.managed) co_return refuse(ref.remote_key);
    if (!ref.property.empty()) {
      ROOTSEAL_CO_LET(cur, co_await access_latest(ref.remote_key));
      if (cur) {
        if (auto rest = without_property(*cur, ref.property)) {
          if (*rest == *cur) co_return kms::Result<void>{};
          PushRef whole{ref.remote_key, ""};
          whole.bucket = ref.bucket;
          whole.epoch = ref.epoch;
          ROOTSEAL_CO_LET(w, co_await put_if_changed(whole, *rest, false));
          (void)w;
          co_return kms::Result<void>{};
        }
      }
    }
    ++counters_.writes;
    ROOTSEAL_CO_LET(r, co_await call(http::verb::delete_, base() + "/" + std::string(ref.remote_key), {}));
    if (r.status != 200 && r.status != 404)
      co_return fail(errc_for_status(r.status), "gcp: deleting the secret failed: " + google_error(r));
    co_return kms::Result<void>{};
  }

 private:
  std::string base() const { return "/v1/projects/" + net::url_encode(spec_.project_id) + "/secrets"; }

  static std::unexpected<kms::Error> refuse(std::string_view id) { return not_managed("gcp", id, "label"); }

  static constexpr std::size_t kMaxFindPages = 10000;

  Task<Current> secret(std::string_view id) {
    if (!valid_id(id)) co_return fail(Errc::invalid_argument, "gcp: secret IDs are 1-255 characters of A-Za-z0-9_-");
    ROOTSEAL_CO_LET(r, co_await call(http::verb::get, base() + "/" + std::string(id), {}));
    Current c;
    if (r.status == 404) co_return c;
    if (r.status != 200)
      co_return fail(errc_for_status(r.status), "gcp: reading the secret failed: " + google_error(r));
    auto doc = SecureJson::parse(r.body.view());
    if (!doc) co_return fail(Errc::unavailable, "gcp: the answer is not JSON");
    c.exists = true;
    const auto& root = (*doc)->root();
    c.etag = std::string(json_string(root, "etag"));
    if (root.is_object()) {
      if (const auto* labels = root.as_object().if_contains("labels"); labels && labels->is_object()) {
        c.managed = json_string(*labels, "managed-by") == "rootseal";
      }
      for (const auto& [field, into] : {std::pair{"labels", &c.labels}, std::pair{"annotations", &c.annotations}}) {
        const auto* m = root.as_object().if_contains(field);
        if (m == nullptr || !m->is_object()) continue;
        for (const auto& kv : m->as_object()) {
          if (kv.value().is_string())
            into->insert_or_assign(std::string(kv.key()), std::string(kv.value().as_string()));
        }
      }
    }
    co_return c;
  }

  // Creates the secret, labelled managed-by=rootseal (and with the
  // metadata's labels and annotations, and rootseal-epoch `mark` if any).
  Task<void> create(std::string_view id, const PushMetadata* md, const std::string& mark = {}) {
    ++counters_.writes;
    StringMap labels = desired_labels(md, {});
    if (!mark.empty()) labels.insert_or_assign(std::string(kEpochMark), mark);
    std::string body = R"({"replication":{"automatic":{}},"labels":)" + json_of(labels);
    if (md != nullptr && !md->annotations.empty()) body += R"(,"annotations":)" + json_of(md->annotations);
    body += "}";
    ROOTSEAL_CO_LET(r, co_await call(http::verb::post, base() + "?secretId=" + std::string(id), body));
    if (r.status == 409) {  // created meanwhile by someone: only fine if it is ours
      ROOTSEAL_CO_LET(c, co_await secret(id));
      if (!c.managed) co_return refuse(id);
      co_return kms::Result<void>{};
    }
    if (r.status != 200)
      co_return fail(errc_for_status(r.status), "gcp: creating the secret failed: " + google_error(r));
    co_return kms::Result<void>{};
  }

  // The labels (and with metadata the annotations) a push leaves on an
  // existing secret: the metadata's (as ESO; annotations replaced), and
  // rootseal-epoch: `mark` (this owner's, when it writes a value) or else the
  // secret's own. One PATCH when anything differs, guarded by the etag read
  // (a change meanwhile: conflict, tried again); true when patched.
  Task<bool> update_labels(std::string_view id, const Current& c, const PushMetadata* md, const std::string& mark) {
    StringMap labels = md != nullptr ? desired_labels(md, c.labels) : c.labels;
    if (const auto old = labels.find(kEpochMark); old != labels.end()) labels.erase(old);
    const auto own = c.labels.find(kEpochMark);
    if (!mark.empty()) {
      labels.insert_or_assign(std::string(kEpochMark), mark);
    } else if (own != c.labels.end()) {
      labels.insert_or_assign(own->first, own->second);
    }
    if (labels == c.labels && (md == nullptr || md->annotations == c.annotations)) co_return false;
    ++counters_.writes;
    std::string body = R"({"labels":)" + json_of(labels);
    if (md != nullptr) body += R"(,"annotations":)" + json_of(md->annotations);
    if (!c.etag.empty()) body += R"(,"etag":)" + json::serialize(json::value(c.etag));
    body += "}";
    const std::string mask = md != nullptr ? "labels,annotations" : "labels";
    ROOTSEAL_CO_LET(r, co_await call(http::verb::patch, base() + "/" + std::string(id) + "?updateMask=" + mask, body));
    if (r.status == 409) {
      co_return fail(Errc::conflict, "gcp: the secret changed while its labels were updated (etag): tried again");
    }
    if (r.status != 200)
      co_return fail(errc_for_status(r.status), "gcp: updating the secret's labels failed: " + google_error(r));
    co_return true;
  }

  // The latest enabled version's payload (CRC32C checked); nullopt if none.
  Task<std::optional<kms::SecureBytes>> access_latest(std::string_view id) { co_return co_await access(id, "latest"); }

  // A version's payload (CRC32C checked); nullopt if it does not exist or is
  // not enabled.
  Task<std::optional<kms::SecureBytes>> access(std::string_view id, std::string_view version) {
    ROOTSEAL_CO_LET(
        r, co_await call(http::verb::get,
                         base() + "/" + std::string(id) + "/versions/" + std::string(version) + ":access", {}));
    if (r.status == 404 || r.status == 400) co_return std::optional<kms::SecureBytes>{};  // no such version / disabled
    if (r.status != 200)
      co_return fail(errc_for_status(r.status), "gcp: accessing the version failed: " + google_error(r));
    auto doc = SecureJson::parse(r.body.view());
    if (!doc) co_return fail(Errc::unavailable, "gcp: the answer is not JSON");
    const auto& root = (*doc)->root();
    const json::value* payload = root.is_object() ? root.as_object().if_contains("payload") : nullptr;
    if (payload == nullptr) co_return fail(Errc::unavailable, "gcp: the answer has no payload");
    auto data = kms::base64_decode_secure(json_string(*payload, "data"));
    if (!data) co_return fail(Errc::unavailable, "gcp: payload.data is not base64");
    const std::string_view crc = json_string(*payload, "dataCrc32c");
    if (!crc.empty() && crc != std::to_string(crc32c(data->span()))) {
      co_return fail(Errc::unavailable, "gcp: the payload does not match its CRC32C (corrupted in transit)");
    }
    co_return std::optional<kms::SecureBytes>(std::move(*data));
  }

  // One API call (bearer_request: token, 401 renewal, the store's health;
  // RESOURCE_EXHAUSTED comes as 429).
  asio::awaitable<kms::Result<net::ClientResponse>> call(http::verb verb, const std::string& target,
                                                         std::string_view body) {
    const CallCounters counted{&counters_.calls, nullptr};
    co_return co_await bearer_request(*auth_, *health_, *api_, verb, target, body, "gcp", counted);
  }

  GcpSpec spec_;
  std::unique_ptr<BearerAuth> auth_;
  std::shared_ptr<net::HttpClient> api_;
  std::shared_ptr<StoreHealth> health_;
  GcpCounters counters_;
};

}  // namespace

kms::Result<std::shared_ptr<GcpSecretManager>> make_gcp_provider(const asio::any_io_executor& executor, GcpSpec spec,
                                                                 std::shared_ptr<StoreHealth> health) {
  if (spec.project_id.empty()) return fail(Errc::invalid_argument, "gcp: projectID is required");
  ROOTSEAL_LET(api, make_client(executor, spec.endpoint, spec.tls));
  if (!health) health = std::make_shared<StoreHealth>("gcp " + spec.project_id);
  if (!spec.sts_audience.empty()) {
    std::string sts = spec.sts_endpoint, iam = spec.iam_endpoint, audience = spec.sts_audience,
                impersonate = spec.impersonate;
    const TlsSpec tls = spec.token_tls;
    JwtSource subject = spec.subject_token;
    auto impl = std::make_shared<GcpImpl>(std::move(spec), std::move(api), std::move(health));
    ROOTSEAL_LET(auth, GoogleFederatedAuth::make(executor, sts, iam, tls, std::move(audience), std::move(impersonate),
                                                 std::move(subject), "gcp", &impl->token_requests()));
    impl->set_auth(std::move(auth));
    return std::shared_ptr<GcpSecretManager>(std::move(impl));
  }
  const kms::SecureBytes key_json = std::move(spec.service_account_json);
  const std::string token_uri = spec.token_uri;
  const TlsSpec token_tls = spec.token_tls;
  auto impl = std::make_shared<GcpImpl>(std::move(spec), std::move(api), std::move(health));
  ROOTSEAL_LET(auth, GoogleServiceAccountAuth::make(executor, key_json, token_uri, token_tls, std::string(kScope),
                                                    "gcp", &impl->token_requests()));
  impl->set_auth(std::move(auth));
  return std::shared_ptr<GcpSecretManager>(std::move(impl));
}

}  // namespace rootseal::sync::providers
