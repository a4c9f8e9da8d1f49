// OAuth 2 tokens for Google and Microsoft APIs (providers/cloud_auth.hpp).
#include "providers/cloud_auth.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <chrono>
#include <utility>

#include "kube/service_account_token.hpp"
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

std::string b64url(std::span<const std::uint8_t> in) {
  std::string s = kms::base64_encode(in);
  for (auto& c : s) {
    if (c == '+')
      c = '-';
    else if (c == '/')
      c = '_';
  }
  while (!s.empty() && s.back() == '=') s.pop_back();
  return s;
}
std::string b64url(std::string_view in) {
  return b64url(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(in.data()), in.size()));
}

// RS256 over `input` with a PEM private key held in locked memory.
kms::Result<std::vector<std::uint8_t>> rs256(const std::string& who, std::string_view pem, std::string_view input) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return fail(Errc::crypto_failure, who + ": out of memory");
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (key == nullptr)
    return fail(Errc::invalid_argument, who + ": the service-account private_key is not a PEM private key");
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
  if (!ok) return fail(Errc::crypto_failure, who + ": RS256 signing failed (is the key RSA?)");
  return sig;
}

// {"error":{code-ish, "message"}} or {"error": "...", "error_description": "..."}.
std::string json_error(const net::ClientResponse& r, bool google) {
  auto doc = SecureJson::parse(r.body.view());
  std::string code;
  std::string msg;
  if (doc && (*doc)->root().is_object()) {
    if (const auto* e = (*doc)->root().as_object().if_contains("error"); e && e->is_object()) {
      code = std::string(json_string(*e, google ? "status" : "code"));
      if (google && code.empty()) {
        // Cloud Storage's JSON API: errors[0].reason ("notFound", "conditionNotMet").
        if (const auto* errs = e->as_object().if_contains("errors");
            errs && errs->is_array() && !errs->as_array().empty()) {
          code = std::string(json_string(errs->as_array().front(), "reason"));
        }
      }
      msg = std::string(json_string(*e, "message"));
    } else {
      code = std::string(json_string((*doc)->root(), "error"));
      msg = std::string(json_string((*doc)->root(), "error_description"));
    }
  }
  if (code.size() > 64) code.resize(64);
  if (msg.size() > 300) msg.resize(300);
  return std::to_string(r.status) + (code.empty() ? "" : " " + code) + (msg.empty() ? "" : ": " + msg);
}

// POSTs `form` to a token endpoint; the access token and lifetime of its
// answer. The arguments are the caller's named locals (they outlive the call).
asio::awaitable<kms::Result<std::pair<kms::SecureBytes, std::chrono::seconds>>> token_exchange(
    net::HttpClient& client, const std::string& target, std::string_view form, const std::string& who, bool google) {
  const net::Header headers[] = {{"Content-Type", "application/x-www-form-urlencoded"}};
  auto r = co_await client.request(http::verb::post, target, headers, form);
  if (!r) co_return fail(r.error().code, who + ": token request failed: " + r.error().message);
  if (r->status != 200) {
    co_return fail(errc_for_status(r->status), who + ": token request refused: " + json_error(*r, google));
  }
  auto doc = SecureJson::parse(r->body.view());
  if (!doc) co_return fail(Errc::unavailable, who + ": the token answer is not JSON");
  const std::string_view tok = json_string((*doc)->root(), "access_token");
  if (tok.empty()) co_return fail(Errc::unavailable, who + ": the token answer has no access_token");
  co_return std::pair{kms::SecureBytes::copy_of(tok), expires_in((*doc)->root())};
}

}  // namespace

// Percent-encodes `in` (all but RFC 3986 unreserved characters) straight into locked memory.
void form_encode_into(std::span<const std::uint8_t> in, SecureBuffer& out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (const std::uint8_t c : in) {
    if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      const char esc[3] = {'%', kHex[c >> 4], kHex[c & 0xF]};
      out.append(std::string_view(esc, 3));
    }
  }
}

std::string google_error(const net::ClientResponse& r) { return json_error(r, true); }
std::string microsoft_error(const net::ClientResponse& r) { return json_error(r, false); }

// ---- Google ------------------------------------------------------------------

kms::Result<std::unique_ptr<GoogleServiceAccountAuth>> GoogleServiceAccountAuth::make(
    const asio::any_io_executor& executor, const kms::SecureBytes& key_json, std::string_view token_uri_override,
    const TlsSpec& token_tls, std::string scope, std::string who, std::atomic<std::size_t>* token_requests) {
  if (key_json.empty()) return fail(Errc::invalid_argument, who + ": the service-account key is required");
  auto doc = SecureJson::parse(key_json.span());
  if (!doc || !(*doc)->root().is_object())
    return fail(Errc::invalid_argument, who + ": the service-account key is not JSON");
  const auto& root = (*doc)->root();
  std::string email(json_string(root, "client_email"));
  const std::string_view pem = json_string(root, "private_key");
  if (email.empty() || pem.empty()) {
    return fail(Errc::invalid_argument, who + ": the service-account key needs client_email and private_key");
  }
  std::string token_uri =
      token_uri_override.empty() ? std::string(json_string(root, "token_uri")) : std::string(token_uri_override);
  if (token_uri.empty()) token_uri = kGoogleTokenUri;
  auto u = boost::urls::parse_uri(token_uri);
  if (!u || (u->scheme() != "http" && u->scheme() != "https"))
    return fail(Errc::invalid_argument, who + ": bad token_uri");
  const std::string origin = std::string(u->scheme()) + "://" + std::string(u->encoded_authority());
  std::string path = u->encoded_path().empty() ? "/" : std::string(u->encoded_path());
  ROOTSEAL_LET(oauth, make_client(executor, origin, token_tls));
  return std::make_unique<GoogleServiceAccountAuth>(
      executor, std::move(email), std::string(json_string(root, "private_key_id")), kms::SecureBytes::copy_of(pem),
      std::move(token_uri), std::move(path), std::move(oauth), std::move(scope), std::move(who), token_requests);
}

GoogleServiceAccountAuth::GoogleServiceAccountAuth(const asio::any_io_executor& executor, std::string email,
                                                   std::string key_id, kms::SecureBytes key_pem, std::string token_uri,
                                                   std::string token_path, std::shared_ptr<net::HttpClient> oauth,
                                                   std::string scope, std::string who,
                                                   std::atomic<std::size_t>* token_requests)
    : BearerAuth(executor),
      email_(std::move(email)),
      key_id_(std::move(key_id)),
      key_pem_(std::move(key_pem)),
      token_uri_(std::move(token_uri)),
      token_path_(std::move(token_path)),
      oauth_(std::move(oauth)),
      scope_(std::move(scope)),
      who_(std::move(who)),
      token_requests_(token_requests) {}

Task<BearerAuth::Token> GoogleServiceAccountAuth::fetch_token() {
  if (token_requests_ != nullptr) ++*token_requests_;
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::string header = R"({"alg":"RS256","typ":"JWT")";
  if (!key_id_.empty()) header += R"(,"kid":)" + json::serialize(json::value(key_id_));
  header += "}";
  json::object claims;
  claims["iss"] = email_;
  claims["scope"] = scope_;
  claims["aud"] = token_uri_;
  claims["iat"] = now;
  claims["exp"] = now + 3600;
  const std::string signing_input = b64url(header) + "." + b64url(json::serialize(claims));
  ROOTSEAL_CO_LET(sig, rs256(who_, as_view(key_pem_), signing_input));
  const std::string assertion = signing_input + "." + b64url(sig);
  const std::string form =
      "grant_type=" + net::url_encode("urn:ietf:params:oauth:grant-type:jwt-bearer") + "&assertion=" + assertion;
  ROOTSEAL_CO_LET(tok, co_await token_exchange(*oauth_, token_path_, form, who_, /*google=*/true));
  co_return Token{std::move(tok.first), tok.second};
}

// ---- Google workload identity federation ------------------------------------

kms::SecureBytes google_sts_form(std::string_view audience, const kms::SecureBytes& subject_token) {
  SecureBuffer form(512 + subject_token.size());
  form.append("grant_type=" + net::url_encode("urn:ietf:params:oauth:grant-type:token-exchange") +
              "&audience=" + net::url_encode(audience) + "&scope=" + net::url_encode(kGoogleCloudPlatformScope) +
              "&requested_token_type=" + net::url_encode("urn:ietf:params:oauth:token-type:access_token") +
              "&subject_token_type=" + net::url_encode("urn:ietf:params:oauth:token-type:jwt") + "&subject_token=");
  form_encode_into(subject_token.span(), form);
  return form.take();
}

kms::Result<std::pair<kms::SecureBytes, std::chrono::seconds>> parse_generate_access_token(
    std::string_view body, std::chrono::system_clock::time_point now) {
  auto doc = SecureJson::parse(body);
  if (!doc || !(*doc)->root().is_object())
    return fail(Errc::unavailable, "iamcredentials: the answer is not a JSON object");
  const std::string_view tok = json_string((*doc)->root(), "accessToken");
  if (tok.empty() || tok.size() > 8192) return fail(Errc::unavailable, "iamcredentials: the answer has no accessToken");
  const auto when = kube::parse_rfc3339(json_string((*doc)->root(), "expireTime"));
  if (!when) return fail(Errc::unavailable, "iamcredentials: expireTime is not an RFC 3339 time");
  // Outside input meets the clock: bounded to 0..24 h first (parse_rfc3339 keeps years 1970-2199).
  const auto left = std::chrono::duration_cast<std::chrono::seconds>(*when - now).count();
  return std::pair{kms::SecureBytes::copy_of(tok), std::chrono::seconds(std::clamp<std::int64_t>(left, 0, 24 * 3600))};
}

kms::Result<std::unique_ptr<GoogleFederatedAuth>> GoogleFederatedAuth::make(
    const asio::any_io_executor& executor, std::string_view sts_endpoint, std::string_view iam_endpoint,
    const TlsSpec& tls, std::string audience, std::string impersonate, JwtSource subject_token, std::string who,
    std::atomic<std::size_t>* token_requests) {
  if (audience.empty() || !subject_token) {
    return fail(Errc::invalid_argument, who + ": workload identity federation needs an audience and a token source");
  }
  ROOTSEAL_LET(sts, make_client(executor, sts_endpoint, tls));
  std::shared_ptr<net::HttpClient> iam;
  if (!impersonate.empty()) {
    ROOTSEAL_LET(c, make_client(executor, iam_endpoint, tls));
    iam = std::move(c);
  }
  return std::make_unique<GoogleFederatedAuth>(executor, std::move(sts), std::move(iam), std::move(audience),
                                               std::move(impersonate), std::move(subject_token), std::move(who),
                                               token_requests);
}

GoogleFederatedAuth::GoogleFederatedAuth(const asio::any_io_executor& executor, std::shared_ptr<net::HttpClient> sts,
                                         std::shared_ptr<net::HttpClient> iam, std::string audience,
                                         std::string impersonate, JwtSource subject_token, std::string who,
                                         std::atomic<std::size_t>* token_requests)
    : BearerAuth(executor),
      sts_(std::move(sts)),
      iam_(std::move(iam)),
      audience_(std::move(audience)),
      impersonate_(std::move(impersonate)),
      subject_token_(std::move(subject_token)),
      who_(std::move(who)),
      token_requests_(token_requests) {}

Task<BearerAuth::Token> GoogleFederatedAuth::fetch_token() {
  // A fresh ServiceAccount token for every exchange (see MicrosoftClientCredentialsAuth).
  ROOTSEAL_CO_LET(jwt, co_await subject_token_(true));
  if (token_requests_ != nullptr) ++*token_requests_;
  const auto form = google_sts_form(audience_, jwt);
  ROOTSEAL_CO_LET(federated,
                  co_await token_exchange(*sts_, "/v1/token", as_view(form), who_ + ": sts", /*google=*/true));
  if (impersonate_.empty()) co_return Token{std::move(federated.first), federated.second};
  SecureBuffer bearer(federated.first.size() + 8);
  bearer.append("Bearer ");
  bearer.append(federated.first.span());
  const net::Header headers[] = {{"Authorization", bearer.view()}, {"Content-Type", "application/json"}};
  const std::string target = "/v1/projects/-/serviceAccounts/" + net::url_encode(impersonate_) + ":generateAccessToken";
  const std::string body = R"({"scope":[")" + std::string(kGoogleCloudPlatformScope) + R"("]})";
  auto r = co_await iam_->request(http::verb::post, target, headers, body);
  if (!r) co_return fail(r.error().code, who_ + ": iamcredentials: generateAccessToken failed: " + r.error().message);
  if (r->status != 200) {
    co_return fail(errc_for_status(r->status), who_ + ": iamcredentials: generateAccessToken for " + impersonate_ +
                                                   " refused: " + google_error(*r));
  }
  ROOTSEAL_CO_LET(tok, parse_generate_access_token(r->body.view(), std::chrono::system_clock::now()));
  co_return Token{std::move(tok.first), tok.second};
}

// ---- Microsoft ---------------------------------------------------------------

kms::Result<std::unique_ptr<MicrosoftClientCredentialsAuth>> MicrosoftClientCredentialsAuth::make(
    const asio::any_io_executor& executor, std::string_view authority_host, const TlsSpec& authority_tls,
    std::string tenant_id, std::string client_id, kms::SecureBytes client_secret, std::string scope, std::string who,
    std::atomic<std::size_t>* token_requests, JwtSource client_assertion) {
  if (tenant_id.empty() || client_id.empty() || (client_secret.empty() && !client_assertion)) {
    return fail(Errc::invalid_argument, who + ": tenantId, clientId and clientSecret are required");
  }
  ROOTSEAL_LET(login, make_client(executor, authority_host, authority_tls));
  return std::make_unique<MicrosoftClientCredentialsAuth>(
      executor, std::move(login), std::move(tenant_id), std::move(client_id), std::move(client_secret),
      std::move(client_assertion), std::move(scope), std::move(who), token_requests);
}

MicrosoftClientCredentialsAuth::MicrosoftClientCredentialsAuth(
    const asio::any_io_executor& executor, std::shared_ptr<net::HttpClient> login, std::string tenant_id,
    std::string client_id, kms::SecureBytes client_secret, JwtSource client_assertion, std::string scope,
    std::string who, std::atomic<std::size_t>* token_requests)
    : BearerAuth(executor),
      login_(std::move(login)),
      tenant_id_(std::move(tenant_id)),
      client_id_(std::move(client_id)),
      client_secret_(std::move(client_secret)),
      client_assertion_(std::move(client_assertion)),
      scope_(std::move(scope)),
      who_(std::move(who)),
      token_requests_(token_requests) {}

Task<BearerAuth::Token> MicrosoftClientCredentialsAuth::fetch_token() {
  const std::string target = "/" + net::url_encode(tenant_id_) + "/oauth2/v2.0/token";
  if (client_assertion_) {
    // A fresh ServiceAccount token for every exchange (one per access-token
    // lifetime): a deleted or recreated ServiceAccount stops the store at the
    // next exchange instead of when a cached token would have been renewed.
    ROOTSEAL_CO_LET(jwt, co_await client_assertion_(true));
    if (token_requests_ != nullptr) ++*token_requests_;
    const auto form = microsoft_assertion_form(client_id_, scope_, jwt);
    ROOTSEAL_CO_LET(tok, co_await token_exchange(*login_, target, as_view(form), who_, /*google=*/false));
    co_return Token{std::move(tok.first), tok.second};
  }
  if (token_requests_ != nullptr) ++*token_requests_;
  SecureBuffer form(256);
  form.append("grant_type=client_credentials&client_id=" + net::url_encode(client_id_) +
              "&scope=" + net::url_encode(scope_) + "&client_secret=");
  form_encode_into(client_secret_.span(), form);
  ROOTSEAL_CO_LET(tok, co_await token_exchange(*login_, target, form.view(), who_, /*google=*/false));
  co_return Token{std::move(tok.first), tok.second};
}

kms::SecureBytes microsoft_assertion_form(std::string_view client_id, std::string_view scope,
                                          const kms::SecureBytes& assertion) {
  SecureBuffer form(320 + assertion.size());
  form.append("grant_type=client_credentials&client_id=" + net::url_encode(client_id) +
              "&scope=" + net::url_encode(scope) + "&client_assertion_type=" +
              net::url_encode("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") + "&client_assertion=");
  form_encode_into(assertion.span(), form);
  return form.take();
}

}  // namespace rootseal::sync::providers
