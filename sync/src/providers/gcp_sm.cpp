#include "providers/gcp_sm.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <array>
#include <chrono>
#include <optional>

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

std::string b64url(std::span<const std::uint8_t> in) {
  std::string s = kms::base64_encode(in);
  for (auto& c : s) {
    if (c == '+') c = '-';
    else if (c == '/') c = '_';
  }
  while (!s.empty() && s.back() == '=') s.pop_back();
  return s;
}
std::string b64url(std::string_view in) {
  return b64url(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(in.data()), in.size()));
}

bool valid_id(std::string_view n) {
  if (n.empty() || n.size() > 255) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_';
  });
}

std::string g_error(const net::ClientResponse& r) {
  auto doc = SecureJson::parse(r.body.view());
  std::string status;
  std::string msg;
  if (doc && (*doc)->root().is_object()) {
    if (const auto* e = (*doc)->root().as_object().if_contains("error"); e && e->is_object()) {
      status = std::string(json_string(*e, "status"));
      msg = std::string(json_string(*e, "message"));
    } else {
      status = std::string(json_string((*doc)->root(), "error"));
      msg = std::string(json_string((*doc)->root(), "error_description"));
    }
  }
  if (msg.size() > 300) msg.resize(300);
  return std::to_string(r.status) + (status.empty() ? "" : " " + status) + (msg.empty() ? "" : ": " + msg);
}

// RS256 over `input` with a PEM private key held in locked memory.
kms::Result<std::vector<std::uint8_t>> rs256(std::string_view pem, std::string_view input) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return fail(Errc::crypto_failure, "gcp: out of memory");
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (key == nullptr) return fail(Errc::invalid_argument, "gcp: the service-account private_key is not a PEM private key");
  std::vector<std::uint8_t> sig;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::size_t len = 0;
  bool ok = ctx != nullptr && EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA &&
            EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  if (ok) {
    sig.resize(len);
    ok = EVP_DigestSign(ctx, sig.data(), &len, reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
    sig.resize(len);
  }
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(key);
  if (!ok) return fail(Errc::crypto_failure, "gcp: RS256 signing failed (is the key RSA?)");
  return sig;
}

struct Current {
  bool exists = false;
  bool managed = false;
};

class GcpImpl final : public GcpSecretManager, private BearerAuth {
 public:
  GcpImpl(const asio::any_io_executor& ex, GcpSpec spec, std::string email, std::string key_id, kms::SecureBytes key_pem,
          std::string token_uri, std::string token_path, std::shared_ptr<net::HttpClient> api,
          std::shared_ptr<net::HttpClient> oauth, std::shared_ptr<StoreHealth> health)
      : BearerAuth(ex), spec_(std::move(spec)), email_(std::move(email)), key_id_(std::move(key_id)),
        key_pem_(std::move(key_pem)), token_uri_(std::move(token_uri)), token_path_(std::move(token_path)),
        api_(std::move(api)), oauth_(std::move(oauth)), health_(std::move(health)) {}

  std::string_view kind() const noexcept override { return "gcp"; }
  const GcpCounters& counters() const noexcept override { return counters_; }

  Task<void> validate() override {
    ROOTSEAL_CO_LET(r, co_await call(http::verb::get, base() + "?pageSize=1", {}));
    if (r.status != 200) co_return fail(errc_for_status(r.status), "gcp: listing secrets failed: " + g_error(r));
    co_return kms::Result<void>{};
  }

  Task<RemoteState> describe(std::string_view id) override {
    ROOTSEAL_CO_LET(c, co_await secret(id));
    co_return RemoteState{c.exists, c.managed};
  }

  Task<RemoteState> ensure_managed(std::string_view id) override {
    ROOTSEAL_CO_LET(c, co_await secret(id));
    if (c.exists && !c.managed) co_return refuse(id);
    if (!c.exists) ROOTSEAL_CO_TRY(co_await create(id));
    co_return RemoteState{true, true};
  }

  Task<PushOutcome> put_if_changed(const PushRef& ref, const kms::SecureBytes& value, bool if_not_exists) override {
    ROOTSEAL_CO_LET(c, co_await secret(ref.remote_key));
    if (c.exists && !c.managed) co_return refuse(ref.remote_key);
    bool created = false;
    if (!c.exists) {
      ROOTSEAL_CO_TRY(co_await create(ref.remote_key));
      created = true;
    }
    std::optional<kms::SecureBytes> cur;
    if (!created) {
      ROOTSEAL_CO_LET(latest, co_await access_latest(ref.remote_key));
      cur = std::move(latest);
    }
    if (if_not_exists && cur) co_return PushOutcome{false, false, {}};
    ROOTSEAL_CO_LET(desired, with_property("gcp", cur ? &*cur : nullptr, ref.property, value));
    if (cur && *cur == desired) co_return PushOutcome{false, false, {}};
    SecureBuffer body(128 + desired.size() * 2);
    body.append(R"({"payload":{"data":")");
    body.append(kms::base64_encode_secure(desired.span()).span());
    body.append(R"(","dataCrc32c":")" + std::to_string(crc32c(desired.span())) + "\"}}");
    ++counters_.writes;
    ROOTSEAL_CO_LET(r, co_await call(http::verb::post, base() + "/" + std::string(ref.remote_key) + ":addVersion", body.view()));
    if (r.status != 200) co_return fail(errc_for_status(r.status), "gcp: adding a version failed: " + g_error(r));
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
          const PushRef whole{ref.remote_key, ""};
          ROOTSEAL_CO_LET(w, co_await put_if_changed(whole, *rest, false));
          (void)w;
          co_return kms::Result<void>{};
        }
      }
    }
    ++counters_.writes;
    ROOTSEAL_CO_LET(r, co_await call(http::verb::delete_, base() + "/" + std::string(ref.remote_key), {}));
    if (r.status != 200 && r.status != 404) co_return fail(errc_for_status(r.status), "gcp: deleting the secret failed: " + g_error(r));
    co_return kms::Result<void>{};
  }

 private:
  std::string base() const { return "/v1/projects/" + net::url_encode(spec_.project_id) + "/secrets"; }

  static std::unexpected<kms::Error> refuse(std::string_view id) { return not_managed("gcp", id, "label"); }

  Task<Current> secret(std::string_view id) {
    if (!valid_id(id)) co_return fail(Errc::invalid_argument, "gcp: secret IDs are 1-255 characters of A-Za-z0-9_-");
    ROOTSEAL_CO_LET(r, co_await call(http::verb::get, base() + "/" + std::string(id), {}));
    Current c;
    if (r.status == 404) co_return c;
    if (r.status != 200) co_return fail(errc_for_status(r.status), "gcp: reading the secret failed: " + g_error(r));
    auto doc = SecureJson::parse(r.body.view());
    if (!doc) co_return fail(Errc::unavailable, "gcp: the answer is not JSON");
    c.exists = true;
    const auto& root = (*doc)->root();
    if (root.is_object()) {
      if (const auto* labels = root.as_object().if_contains("labels"); labels && labels->is_object()) {
        c.managed = json_string(*labels, "managed-by") == "rootseal";
      }
    }
    co_return c;
  }

  Task<void> create(std::string_view id) {
    ++counters_.writes;
    ROOTSEAL_CO_LET(r, co_await call(http::verb::post, base() + "?secretId=" + std::string(id),
                                     R"({"replication":{"automatic":{}},"labels":{"managed-by":"rootseal"}})"));
    if (r.status == 409) {  // created meanwhile by someone: only fine if it is ours
      ROOTSEAL_CO_LET(c, co_await secret(id));
      if (!c.managed) co_return refuse(id);
      co_return kms::Result<void>{};
    }
    if (r.status != 200) co_return fail(errc_for_status(r.status), "gcp: creating the secret failed: " + g_error(r));
    co_return kms::Result<void>{};
  }

  // The latest enabled version's payload (CRC32C checked); nullopt if none.
  Task<std::optional<kms::SecureBytes>> access_latest(std::string_view id) {
    ROOTSEAL_CO_LET(r, co_await call(http::verb::get, base() + "/" + std::string(id) + "/versions/latest:access", {}));
    if (r.status == 404 || r.status == 400) co_return std::optional<kms::SecureBytes>{};  // no versions / latest disabled
    if (r.status != 200) co_return fail(errc_for_status(r.status), "gcp: accessing the latest version failed: " + g_error(r));
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
  asio::awaitable<kms::Result<net::ClientResponse>> call(http::verb verb, const std::string& target, std::string_view body) {
    const CallCounters counted{&counters_.calls, nullptr};
    co_return co_await bearer_request(*this, *health_, *api_, verb, target, body, "gcp", counted);
  }

  // A service-account JWT (RS256) exchanged at token_uri for an access token.
  Task<Token> fetch_token() override {
    ++counters_.token_requests;
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    std::string header = R"({"alg":"RS256","typ":"JWT")";
    if (!key_id_.empty()) header += R"(,"kid":")" + key_id_ + "\"";
    header += "}";
    json::object claims;
    claims["iss"] = email_;
    claims["scope"] = kScope;
    claims["aud"] = token_uri_;
    claims["iat"] = now;
    claims["exp"] = now + 3600;
    const std::string signing_input = b64url(header) + "." + b64url(json::serialize(claims));
    ROOTSEAL_CO_LET(sig, rs256(as_view(key_pem_), signing_input));
    const std::string assertion = signing_input + "." + b64url(sig);
    const std::string form = "grant_type=" + net::url_encode("urn:ietf:params:oauth:grant-type:jwt-bearer") +
                             "&assertion=" + assertion;
    const net::Header headers[] = {{"Content-Type", "application/x-www-form-urlencoded"}};
    auto r = co_await oauth_->request(http::verb::post, token_path_, headers, form);
    if (!r) co_return fail(r.error().code, "gcp: token request failed: " + r.error().message);
    if (r->status != 200) co_return fail(errc_for_status(r->status), "gcp: token request refused: " + g_error(*r));
    auto doc = SecureJson::parse(r->body.view());
    if (!doc) co_return fail(Errc::unavailable, "gcp: the token answer is not JSON");
    const auto& root = (*doc)->root();
    const std::string_view tok = json_string(root, "access_token");
    if (tok.empty()) co_return fail(Errc::unavailable, "gcp: the token answer has no access_token");
    co_return Token{kms::SecureBytes::copy_of(tok), expires_in(root)};
  }

  GcpSpec spec_;
  std::string email_;
  std::string key_id_;
  kms::SecureBytes key_pem_;
  std::string token_uri_;
  std::string token_path_;
  std::shared_ptr<net::HttpClient> api_;
  std::shared_ptr<net::HttpClient> oauth_;
  std::shared_ptr<StoreHealth> health_;
  GcpCounters counters_;
};

}  // namespace

kms::Result<std::shared_ptr<GcpSecretManager>> make_gcp_provider(const asio::any_io_executor& executor, GcpSpec spec,
                                                                std::shared_ptr<StoreHealth> health) {
  if (spec.project_id.empty()) return fail(Errc::invalid_argument, "gcp: projectID is required");
  if (spec.service_account_json.empty()) return fail(Errc::invalid_argument, "gcp: the service-account key is required");
  auto doc = SecureJson::parse(spec.service_account_json.span());
  if (!doc || !(*doc)->root().is_object()) return fail(Errc::invalid_argument, "gcp: the service-account key is not JSON");
  const auto& root = (*doc)->root();
  const std::string email(json_string(root, "client_email"));
  const std::string_view pem = json_string(root, "private_key");
  if (email.empty() || pem.empty()) {
    return fail(Errc::invalid_argument, "gcp: the service-account key needs client_email and private_key");
  }
  std::string token_uri = spec.token_uri.empty() ? std::string(json_string(root, "token_uri")) : spec.token_uri;
  if (token_uri.empty()) token_uri = "https://oauth2.googleapis.com/token";
  auto u = boost::urls::parse_uri(token_uri);
  if (!u) return fail(Errc::invalid_argument, "gcp: bad token_uri");
  const std::string origin = std::string(u->scheme()) + "://" + std::string(u->encoded_authority());
  std::string path = u->encoded_path().empty() ? "/" : std::string(u->encoded_path());
  ROOTSEAL_LET(api, make_client(executor, spec.endpoint, spec.tls));
  ROOTSEAL_LET(oauth, make_client(executor, origin, spec.token_tls));
  if (!health) health = std::make_shared<StoreHealth>("gcp " + spec.project_id);
  auto key = kms::SecureBytes::copy_of(pem);
  std::string key_id(json_string(root, "private_key_id"));
  return std::shared_ptr<GcpSecretManager>(std::make_shared<GcpImpl>(executor, std::move(spec), email, std::move(key_id),
                                                                     std::move(key), std::move(token_uri), std::move(path),
                                                                     std::move(api), std::move(oauth), std::move(health)));
}

}  // namespace rootseal::sync::providers
