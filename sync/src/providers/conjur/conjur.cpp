// CyberArk Conjur (providers/conjur/conjur.hpp).
#include "providers/conjur/conjur.hpp"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <chrono>

#include "providers/cloud_auth.hpp"
#include "providers/common.hpp"
#include "rootseal/kms/encoding.hpp"
#include "secure_buffer.hpp"
#include "secure_json.hpp"

namespace rootseal::sync::providers {

namespace http = boost::beast::http;
namespace json = boost::json;
using kms::Errc;
using kms::fail;

namespace {

// "403 Forbidden: message" from Conjur's JSON error answer: Conjur writes
// {"error":{"code","message"}}, the shape Microsoft's APIs use, so the reader
// is the one the Azure provider uses.
std::string conjur_error(const net::ClientResponse& r) { return microsoft_error(r); }

// Conjur's access tokens live 8 minutes (BearerAuth renews them with a tenth
// of that left, and once after a 401).
constexpr std::chrono::seconds kConjurTokenLifetime{8 * 60};

class ConjurAuth final : public BearerAuth {
 public:
  ConjurAuth(const boost::asio::any_io_executor& executor, std::shared_ptr<net::HttpClient> client, std::string base,
             const ConjurSpec& spec, std::atomic<std::size_t>* logins)
      : BearerAuth(executor),
        client_(std::move(client)),
        base_(std::move(base)),
        account_(spec.account),
        login_(spec.login),
        api_key_(spec.api_key.clone()),
        service_id_(spec.service_id),
        host_id_(spec.host_id),
        jwt_(spec.jwt.clone()),
        jwt_source_(spec.jwt_source),
        logins_(logins) {}

  [[nodiscard]] std::string_view authorization_scheme() const noexcept override { return "Token "; }

 protected:
  Task<Token> fetch_token() override {
    std::string target;
    std::string who;
    kms::SecureBytes body;
    const char* type = "text/plain";
    if (service_id_.empty()) {
      target = base_ + "/authn/" + net::url_encode(account_) + "/" + net::url_encode(login_) + "/authenticate";
      who = "authn as " + login_;
      body = api_key_.clone();
    } else {
      target = base_ + "/authn-jwt/" + net::url_encode(service_id_) + "/" + net::url_encode(account_) +
               (host_id_.empty() ? "" : "/" + net::url_encode(host_id_)) + "/authenticate";
      who = "authn-jwt " + service_id_ + (host_id_.empty() ? "" : " as " + host_id_);
      kms::SecureBytes jwt;
      if (jwt_source_) {
        // A fresh ServiceAccount token for every authentication (see MicrosoftClientCredentialsAuth).
        ROOTSEAL_CO_LET(fresh, co_await jwt_source_(true));
        jwt = std::move(fresh);
      } else {
        jwt = jwt_.clone();
      }
      SecureBuffer form(jwt.size() + 8);
      form.append("jwt=");
      form_encode_into(jwt.span(), form);
      body = form.take();
      type = "application/x-www-form-urlencoded";
    }
    if (logins_ != nullptr) ++*logins_;
    const net::Header headers[] = {{"Content-Type", type}};
    auto r = co_await client_->request(http::verb::post, target, headers, as_view(body));
    if (!r) co_return fail(r.error().code, "conjur: " + who + " failed: " + r.error().message);
    if (r->status == 401) co_return fail(Errc::permission_denied, "conjur: " + who + " refused (401 Unauthorized)");
    if (r->status != 200) {
      co_return fail(errc_for_status(r->status), "conjur: " + who + " refused: " + conjur_error(*r));
    }
    ROOTSEAL_CO_LET(cred, conjur_token_credential(r->body.view()));
    co_return Token{std::move(cred), kConjurTokenLifetime};
  }

 private:
  std::shared_ptr<net::HttpClient> client_;
  std::string base_;
  std::string account_;
  std::string login_;
  kms::SecureBytes api_key_;
  std::string service_id_;
  std::string host_id_;
  kms::SecureBytes jwt_;
  JwtSource jwt_source_;
  std::atomic<std::size_t>* logins_;
};

class ConjurImpl final : public ConjurProvider {
 public:
  ConjurImpl(const boost::asio::any_io_executor& executor, ConjurSpec spec, std::shared_ptr<net::HttpClient> client,
             std::string base, std::shared_ptr<StoreHealth> health)
      : spec_(std::move(spec)),
        client_(std::move(client)),
        base_(std::move(base)),
        health_(std::move(health)),
        auth_(executor, client_, base_, spec_, &counters_.logins) {
    // The credentials live in the auth now; the spec's copies are wiped.
    spec_.api_key = {};
    spec_.jwt = {};
  }

  const ConjurCounters& counters() const noexcept override { return counters_; }

  Task<void> validate() override {
    ROOTSEAL_CO_LET(token, co_await auth_.access_token());
    (void)token;
    co_return kms::Result<void>{};
  }

  // ESO's GetAllSecrets: the variables the identity can see (GET
  // /resources/<account>?kind=variable, pages of 100) whose name (the id
  // without "<account>:variable:") matches find.name, or whose annotations
  // carry every find.tags entry; their values by the batch retrieval
  // (GET /secrets?variable_ids=..., 50 ids a request), keyed by name.
  Task<SecretMap> find(const FindRequest& request) override {
    if (!request.name_matches && request.tags.empty()) {
      co_return fail(Errc::invalid_argument, "conjur: dataFrom.find needs name or tags");
    }
    if (request.path)
      co_return fail(Errc::invalid_argument, "conjur: dataFrom.find.path is not supported (name or tags)");
    std::vector<std::string> names;
    const std::string prefix = spec_.account + ":variable:";
    for (std::size_t offset = 0;; offset += kPage) {
      if (offset >= kPage * kMaxPages) co_return fail(Errc::unavailable, "conjur: the resource listing did not end");
      const std::string target = base_ + "/resources/" + net::url_encode(spec_.account) +
                                 "?kind=variable&limit=" + std::to_string(kPage) + "&offset=" + std::to_string(offset);
      ROOTSEAL_CO_LET(r, co_await get(target, "listing variables"));
      ROOTSEAL_CO_LET(page, conjur_variable_listing(r.body.view(), prefix));
      for (auto& v : page.variables) {
        const bool named = !request.name_matches || request.name_matches(v.name);
        bool tagged = true;
        for (const auto& [k, want] : request.tags) {
          const auto it = v.annotations.find(k);
          tagged = tagged && it != v.annotations.end() && it->second == want;
        }
        if (named && tagged) names.push_back(std::move(v.name));
      }
      if (page.count < kPage) break;
    }
    SecretMap out;
    for (std::size_t i = 0; i < names.size(); i += kBatch) {
      std::string ids;
      for (std::size_t j = i; j < std::min(names.size(), i + kBatch); ++j) {
        if (!ids.empty()) ids += ",";
        ids += net::url_encode(prefix + names[j]);
      }
      ROOTSEAL_CO_LET(r, co_await get(base_ + "/secrets?variable_ids=" + ids, "the batch retrieval"));
      auto doc = SecureJson::parse(r.body.view());
      if (!doc || !(*doc)->root().is_object())
        co_return fail(Errc::unavailable, "conjur: the batch answer is not a JSON object");
      for (std::size_t j = i; j < std::min(names.size(), i + kBatch); ++j) {
        const auto* v = (*doc)->root().as_object().if_contains(prefix + names[j]);
        if (v == nullptr || !v->is_string()) {
          co_return fail(Errc::unavailable, "conjur: the batch answer has no value for " + names[j]);
        }
        out.insert_or_assign(names[j], kms::SecureBytes::copy_of(std::string_view(v->as_string())));
      }
    }
    co_return out;
  }

  // ESO's GetSecret: RetrieveSecret(remoteRef.key) (a variable id; the
  // property is read from the value as gjson, dataFrom.extract as a JSON object).
  Task<kms::SecureBytes> fetch(const RemoteKey& ref) override {
    if (ref.key.empty() || ref.key.size() > 1024) {
      co_return fail(Errc::invalid_argument, "conjur: a variable id is 1 to 1024 characters");
    }
    if (!ref.version.empty() &&
        (ref.version.size() > 9 || ref.version.find_first_not_of("0123456789") != std::string::npos)) {
      co_return fail(Errc::invalid_argument, "conjur: a version is a number");
    }
    const std::string target = base_ + "/secrets/" + net::url_encode(spec_.account) + "/variable/" +
                               net::url_encode(ref.key) + (ref.version.empty() ? "" : "?version=" + ref.version);
    ROOTSEAL_CO_LET(r, co_await bearer_request(auth_, *health_, *client_, http::verb::get, target, {}, "conjur",
                                               {&counters_.calls, nullptr}));
    if (r.status == 200) co_return kms::SecureBytes::copy_of(r.body.view());
    if (r.status == 404) {
      co_return fail(Errc::not_found, "conjur: variable \"" + ref.key + "\" not found or empty: " + conjur_error(r));
    }
    if (r.status == 401 || r.status == 403) {
      co_return fail(Errc::permission_denied,
                     "conjur: reading variable \"" + ref.key + "\" refused: " + conjur_error(r));
    }
    co_return fail(errc_for_status(r.status),
                   "conjur: reading variable \"" + ref.key + "\" failed: " + conjur_error(r));
  }

 private:
  static constexpr std::size_t kPage = 100;
  static constexpr std::size_t kMaxPages = 10000;
  static constexpr std::size_t kBatch = 50;

  // A GET with the access token: the 200 answer, or Conjur's refusal said for `what`.
  Task<net::ClientResponse> get(const std::string& target, const std::string& what) {
    ROOTSEAL_CO_LET(r, co_await bearer_request(auth_, *health_, *client_, http::verb::get, target, {}, "conjur",
                                               {&counters_.calls, nullptr}));
    if (r.status == 200) co_return std::move(r);
    const Errc code = r.status == 401 || r.status == 403 ? Errc::permission_denied
                      : r.status == 404                  ? Errc::not_found
                                                         : errc_for_status(r.status);
    co_return fail(code, "conjur: " + what + " failed: " + conjur_error(r));
  }

  ConjurSpec spec_;
  std::shared_ptr<net::HttpClient> client_;
  std::string base_;  // the URL's path ("" or "/api"), prefixed to every request
  std::shared_ptr<StoreHealth> health_;
  ConjurCounters counters_;
  ConjurAuth auth_;
};

}  // namespace

kms::Result<ConjurListing> conjur_variable_listing(std::string_view answer, std::string_view prefix) {
  json::value doc;
  try {
    doc = json::parse(answer);
  } catch (const std::exception&) {
    return fail(Errc::unavailable, "conjur: the resource listing is not JSON");
  }
  if (!doc.is_array()) return fail(Errc::unavailable, "conjur: the resource listing is not an array");
  ConjurListing out;
  out.count = doc.as_array().size();
  for (const auto& r : doc.as_array()) {
    const std::string_view id = json_string(r, "id");
    if (!id.starts_with(prefix) || id.size() == prefix.size() || id.find(',') != std::string_view::npos) continue;
    ConjurListing::Variable v;
    v.name = std::string(id.substr(prefix.size()));
    const auto* ann = r.is_object() ? r.as_object().if_contains("annotations") : nullptr;
    if (ann != nullptr && ann->is_array()) {
      for (const auto& a : ann->as_array()) {
        const std::string_view name = json_string(a, "name");
        if (!name.empty()) v.annotations.insert_or_assign(std::string(name), std::string(json_string(a, "value")));
      }
    }
    out.variables.push_back(std::move(v));
  }
  return out;
}

kms::Result<kms::SecureBytes> conjur_token_credential(std::string_view answer) {
  if (answer.empty() || answer.size() > 64 * 1024)
    return fail(Errc::unavailable, "conjur: the access token is empty or too large");
  {
    auto doc = SecureJson::parse(answer);
    if (!doc || !(*doc)->root().is_object())
      return fail(Errc::unavailable, "conjur: the access token is not a JSON object");
    for (const char* member : {"protected", "payload", "signature"}) {
      if (json_string((*doc)->root(), member).empty()) {
        return fail(Errc::unavailable, std::string("conjur: the access token has no ") + member);
      }
    }
  }
  const auto b64 = kms::base64_encode_secure(
      std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(answer.data()), answer.size()));
  SecureBuffer out(b64.size() + 9);
  out.append("token=\"");
  out.append(b64.span());
  out.append("\"");
  return out.take();
}

kms::Result<std::shared_ptr<ConjurProvider>> make_conjur_provider(const boost::asio::any_io_executor& executor,
                                                                  ConjurSpec spec,
                                                                  std::shared_ptr<StoreHealth> health) {
  if (spec.account.empty()) return fail(Errc::invalid_argument, "conjur: account is required");
  if (spec.service_id.empty() && (spec.login.empty() || spec.api_key.empty())) {
    return fail(Errc::invalid_argument, "conjur: a login and its API key, or authn-jwt, are required");
  }
  if (!spec.service_id.empty() && !spec.jwt_source && spec.jwt.empty()) {
    return fail(Errc::invalid_argument, "conjur: authn-jwt needs a JWT");
  }
  auto u = boost::urls::parse_uri(spec.url);
  if (!u || (u->scheme() != "http" && u->scheme() != "https") || u->has_query() || u->has_fragment()) {
    return fail(Errc::invalid_argument, "conjur: url must be http(s)://host[:port][/path]");
  }
  const std::string origin = std::string(u->scheme()) + "://" + std::string(u->encoded_authority());
  std::string base(u->encoded_path());
  while (base.ends_with('/')) base.pop_back();
  ROOTSEAL_LET(client, make_client(executor, origin, spec.tls));
  if (!health) health = std::make_shared<StoreHealth>("conjur " + origin);
  return std::shared_ptr<ConjurProvider>(
      std::make_shared<ConjurImpl>(executor, std::move(spec), std::move(client), std::move(base), std::move(health)));
}

}  // namespace rootseal::sync::providers
