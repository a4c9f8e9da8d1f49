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
using kms::Errc;
using kms::fail;

namespace {

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
      co_return fail(errc_for_status(r->status), "conjur: " + who + " refused: " + microsoft_error(*r));
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

  // ESO's GetSecret: RetrieveSecret(remoteRef.key) (a variable id; the
  // property is read from the value as gjson, dataFrom.extract as a JSON object).
  Task<kms::SecureBytes> fetch(const RemoteKey& ref) override {
    if (ref.key.empty() || ref.key.size() > 1024) {
      co_return fail(Errc::invalid_argument, "conjur: a variable id is 1 to 1024 characters");
    }
    if (!ref.version.empty() && (ref.version.size() > 9 || ref.version.find_first_not_of("0123456789") != std::string::npos)) {
      co_return fail(Errc::invalid_argument, "conjur: a version is a number");
    }
    const std::string target = base_ + "/secrets/" + net::url_encode(spec_.account) + "/variable/" +
                               net::url_encode(ref.key) + (ref.version.empty() ? "" : "?version=" + ref.version);
    ROOTSEAL_CO_LET(r, co_await bearer_request(auth_, *health_, *client_, http::verb::get, target, {}, "conjur",
                                               {&counters_.calls, nullptr}));
    if (r.status == 200) co_return kms::SecureBytes::copy_of(r.body.view());
    if (r.status == 404) {
      co_return fail(Errc::not_found, "conjur: variable \"" + ref.key + "\" not found or empty: " + microsoft_error(r));
    }
    if (r.status == 401 || r.status == 403) {
      co_return fail(Errc::permission_denied, "conjur: reading variable \"" + ref.key + "\" refused: " + microsoft_error(r));
    }
    co_return fail(errc_for_status(r.status), "conjur: reading variable \"" + ref.key + "\" failed: " + microsoft_error(r));
  }

 private:
  ConjurSpec spec_;
  std::shared_ptr<net::HttpClient> client_;
  std::string base_;  // the URL's path ("" or "/api"), prefixed to every request
  std::shared_ptr<StoreHealth> health_;
  ConjurCounters counters_;
  ConjurAuth auth_;
};

}  // namespace

kms::Result<kms::SecureBytes> conjur_token_credential(std::string_view answer) {
  if (answer.empty() || answer.size() > 64 * 1024) return fail(Errc::unavailable, "conjur: the access token is empty or too large");
  {
    auto doc = SecureJson::parse(answer);
    if (!doc || !(*doc)->root().is_object()) return fail(Errc::unavailable, "conjur: the access token is not a JSON object");
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
                                                                  ConjurSpec spec, std::shared_ptr<StoreHealth> health) {
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
