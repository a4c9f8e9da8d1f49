#include "providers/aws/aws_sm.hpp"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <chrono>
#include <optional>

#include "providers/aws/aws_sigv4.hpp"
#include "providers/aws/aws_sts.hpp"
#include "providers/common.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/random.hpp"
#include "secure_buffer.hpp"
#include "secure_json.hpp"

namespace rootseal::sync::providers {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using kms::Errc;
using kms::fail;

namespace {

std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

void quote(std::string_view s, SecureBuffer& out) { json_quote(bytes_of(s), out); }

// The ClientRequestToken of a value write, which AWS makes the version's
// VersionId: a fresh UUID on one host; sharded (docs/ha.md), it also records
// the writer's bucket and epoch, "rs-<bucket>-<epoch>-<32 hex>" (39 to 59
// characters of AWS's 32-64), so every version says which owner wrote it.
std::string request_token(const PushRef& ref) {
  std::string uuid = kms::uuid_v4();
  const std::string mark = epoch_mark(ref);
  if (mark.empty()) return uuid;
  std::erase(uuid, '-');
  return "rs-" + mark + "-" + uuid;
}

// An AWS answer: status and parsed body (in locked memory).
struct Answer {
  unsigned status = 0;
  std::shared_ptr<SecureJson> doc;
  std::string type;     // __type without its namespace prefix, on errors
  std::string message;  // message of an error, bounded
  std::optional<std::chrono::milliseconds> retry_after;
  [[nodiscard]] const json::value& root() const { return doc->root(); }
};

bool valid_secret_name(std::string_view n) {
  if (n.empty() || n.size() > 512) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '/' || c == '_' || c == '+' || c == '=' ||
           c == '.' || c == '@' || c == '-';
  });
}

class AwsImpl final : public AwsSecretsManager, public std::enable_shared_from_this<AwsImpl> {
 public:
  AwsImpl(const asio::any_io_executor& executor, AwsSpec spec, std::shared_ptr<net::HttpClient> client,
          std::shared_ptr<net::HttpClient> sts, std::shared_ptr<StoreHealth> health)
      : spec_(std::move(spec)),
        client_(std::move(client)),
        sts_(std::move(sts)),
        health_(std::move(health)),
        writes_(spec_.writes_per_second, std::max(1.0, spec_.writes_per_second)),
        cred_mu_(executor) {}

  const AwsCounters& counters() const noexcept override { return counters_; }

  // ---- pull ----
  Task<kms::SecureBytes> fetch(const RemoteKey& ref) override {
    ROOTSEAL_CO_LET(whole, co_await get_value(ref.key, ref.version));
    if (!whole) co_return fail(Errc::not_found, "aws: secret \"" + ref.key + "\" has no value");
    co_return std::move(*whole);
  }

  // ESO's metadataPolicy Fetch: the secret's tags (DescribeSecret) as the
  // JSON object Go's json.Marshal makes of a map[string]string (keys sorted,
  // HTML characters escaped). Any failure is an error, never not_found (ESO
  // passes DescribeSecret's error on, not NoSecretErr).
  Task<kms::SecureBytes> fetch_metadata(const RemoteKey& ref) override {
    if (ref.key.empty()) co_return fail(Errc::invalid_argument, "aws: remoteRef.key is empty");
    ROOTSEAL_CO_LET(d, co_await describe_full(ref.key));
    if (!d.exists) {
      co_return fail(Errc::unavailable, "aws: DescribeSecret failed (400 ResourceNotFoundException): secret \"" +
                                            ref.key + "\" not found");
    }
    co_return go_string_map_json(d.tags);
  }

  // ESO's AWS GetAllSecrets: find.name (a regexp on the names), find.tags
  // (tag-key and tag-value filters), find.path (the `name` filter: a name
  // prefix). With a path, or with tags and no name: BatchGetSecretValue over
  // the filters; else ListSecrets over the tag filters, then GetSecretValue
  // for each name that matches.
  Task<SecretMap> find(const FindRequest& request) override {
    const bool has_name = static_cast<bool>(request.name_matches);
    if (!has_name && request.tags.empty()) {
      co_return fail(Errc::invalid_argument, "aws: unexpected find operator (find needs name or tags)");
    }
    SecureBuffer filters(128);
    filters.push_back('[');
    const auto filter = [&filters](std::string_view key, std::string_view value) {
      if (filters.size() > 1) filters.push_back(',');
      filters.append(R"({"Key":")");
      filters.append(key);
      filters.append(R"(","Values":[)");
      quote(value, filters);
      filters.append("]}");
    };
    for (const auto& [k, v] : request.tags) {
      filter("tag-key", k);
      filter("tag-value", v);
    }
    if (request.path) filter("name", *request.path);
    filters.push_back(']');
    const bool batch = request.path.has_value() || !has_name;
    const std::string_view op = batch ? "BatchGetSecretValue" : "ListSecrets";
    SecretMap out;
    std::string next;
    for (std::size_t page = 0;; ++page) {
      if (page == kMaxFindPages)
        co_return fail(Errc::unavailable, "aws: " + std::string(op) + " did not end after 10000 pages");
      SecureBuffer body(filters.size() + 64);
      body.append(R"({"Filters":)");
      body.append(filters.view());
      if (!next.empty()) {
        body.append(R"(,"NextToken":)");
        quote(next, body);
      }
      body.append("}");
      ROOTSEAL_CO_LET(a, co_await call(op, body.view()));
      if (a.status != 200) co_return fail(error_code(a), error_text(op, a));
      const auto& root = a.root();
      const json::value* list =
          root.is_object() ? root.as_object().if_contains(batch ? "SecretValues" : "SecretList") : nullptr;
      if (list != nullptr && !list->is_array())
        co_return fail(Errc::unavailable, "aws: the " + std::string(op) + " answer has no list");
      static const json::array kNone;
      for (const auto& entry : list != nullptr ? list->as_array() : kNone) {  // by reference: no copy of a value
        const json::value* name = entry.is_object() ? entry.as_object().if_contains("Name") : nullptr;
        if (name == nullptr || !name->is_string())
          co_return fail(Errc::unavailable, "aws: a secret without a Name in the answer");
        const std::string n(name->as_string());
        if (has_name && !request.name_matches(n)) continue;
        if (batch) {
          ROOTSEAL_CO_LET(value, value_of(entry));
          if (value) out.insert_or_assign(n, std::move(*value));
        } else {
          ROOTSEAL_CO_LET(value, co_await get_value(n, ""));
          if (value) out.insert_or_assign(n, std::move(*value));
        }
      }
      const json::value* token = root.is_object() ? root.as_object().if_contains("NextToken") : nullptr;
      if (token == nullptr || !token->is_string() || token->as_string().empty()) break;
      next = std::string(token->as_string());
    }
    co_return out;
  }

  Task<void> validate() override {
    // ListSecrets with one result: proves the endpoint, region and credentials.
    SecureBuffer body(32);
    body.append(R"({"MaxResults":1})");
    ROOTSEAL_CO_LET(a, co_await call("ListSecrets", body.view()));
    if (a.status != 200) co_return fail(error_code(a), error_text("ListSecrets", a));
    co_return kms::Result<void>{};
  }

  // ---- push ----
  Task<RemoteState> describe(std::string_view remote_key) override {
    ROOTSEAL_CO_LET(d, co_await describe_full(remote_key));
    co_return RemoteState{d.exists, d.managed};
  }

  Task<RemoteState> ensure_managed(std::string_view remote_key) override {
    ROOTSEAL_CO_LET(d, co_await describe_full(remote_key));
    if (d.exists && !d.managed) co_return refuse(remote_key);
    if (d.exists) {
      if (d.deleted) ROOTSEAL_CO_TRY(co_await restore(remote_key));
      co_return RemoteState{true, true};
    }
    ROOTSEAL_CO_LET(created, co_await create(remote_key, nullptr, nullptr));
    (void)created;
    co_return RemoteState{true, true};
  }

  // ESO's PushSecret: a new secret is created with the value, the metadata's
  // tags, description and KMS key (then its resource policy); an existing
  // one gets its tags patched (only when the metadata has tags), its
  // description and KMS key updated when they differ, its resource policy
  // put or removed (only with metadata), then the value written when it
  // differs (SecretBinary unless secretPushFormat is "string").
  Task<PushOutcome> put_if_changed(const PushRef& ref, const kms::SecureBytes& value, bool if_not_exists) override {
    const PushMetadata* md = ref.metadata;
    const bool as_string = md != nullptr && md->push_as_string;
    if (as_string && !is_utf8(value.span())) {
      co_return fail(Errc::invalid_argument,
                     "aws: secretPushFormat string needs a UTF-8 value (this one is binary: push it as binary)");
    }
    ROOTSEAL_CO_LET(d, co_await describe_full(ref.remote_key));
    if (d.exists && !d.managed) co_return refuse(ref.remote_key);
    if (!d.exists) {
      ROOTSEAL_CO_LET(desired, with_property("aws", nullptr, ref.property, value));
      const std::string create_token = request_token(ref);
      auto created = co_await create(ref.remote_key, &desired, md, create_token);
      if (created) {
        if (md != nullptr && md->resource_policy && !md->resource_policy->policy.empty()) {
          ROOTSEAL_CO_TRY(co_await put_policy(ref.remote_key, *md->resource_policy));
        }
        co_return PushOutcome{true, true, std::move(*created)};
      }
      if (created.error().code != Errc::already_exists) co_return std::unexpected(std::move(created).error());
      // Lost a race with another writer: carry on as for an existing secret.
      ROOTSEAL_CO_LET(again, co_await describe_full(ref.remote_key));
      if (!again.managed) co_return refuse(ref.remote_key);
      d = std::move(again);
    }
    if (d.deleted) ROOTSEAL_CO_TRY(co_await restore(ref.remote_key));
    std::string current_version;
    ROOTSEAL_CO_LET(current, co_await get_value(ref.remote_key, "", true, &current_version));
    // IfNotExists: an existing value is left alone, its metadata too (ESO skips the push).
    if (if_not_exists && current) co_return PushOutcome{false, false, {}};
    // Sharded: the current version written by a newer owner of this bucket
    // (a larger epoch) means this host is a stale owner: nothing is written.
    if (current_version.starts_with("rs-")) {
      const std::int64_t newer = newer_owner_epoch(ref, std::string_view(current_version).substr(3));
      if (newer != 0) co_return PushOutcome{false, false, {}, newer};
    }
    bool changed = false;
    if (md != nullptr) {
      ROOTSEAL_CO_LET(patched, co_await apply_metadata(ref.remote_key, d, *md));
      changed = patched;
    }
    ROOTSEAL_CO_LET(desired, with_property("aws", current ? &*current : nullptr, ref.property, value));
    // As ESO: equal bytes are not written again, whichever of SecretString
    // and SecretBinary holds them.
    if (current && *current == desired) co_return PushOutcome{changed, false, {}};
    const std::string token = request_token(ref);
    ROOTSEAL_CO_LET(version, co_await put_value(ref.remote_key, desired, as_string, token));
    co_return PushOutcome{true, false, std::move(version)};
  }

  Task<void> remove(const PushRef& ref) override {
    ROOTSEAL_CO_LET(d, co_await describe_full(ref.remote_key));
    if (!d.exists) co_return kms::Result<void>{};
    if (!d.managed) co_return refuse(ref.remote_key);
    if (d.deleted) co_return kms::Result<void>{};  // already scheduled for deletion
    if (!ref.property.empty()) {
      ROOTSEAL_CO_LET(current, co_await get_value(ref.remote_key, "", true));
      if (current) {
        const auto rest = without_property(*current, ref.property);
        if (rest) {
          const bool as_string = ref.metadata != nullptr && ref.metadata->push_as_string;
          const std::string token = request_token(ref);
          if (!(*rest == *current)) ROOTSEAL_CO_TRY(co_await put_value(ref.remote_key, *rest, as_string, token));
          co_return kms::Result<void>{};
        }
      }
    }
    SecureBuffer body(128);
    body.append(R"({"SecretId":)");
    quote(ref.remote_key, body);
    if (spec_.force_delete_without_recovery) {
      body.append(R"(,"ForceDeleteWithoutRecovery":true})");
    } else {
      body.append(R"(,"RecoveryWindowInDays":)" + std::to_string(spec_.recovery_window_days) + "}");
    }
    ROOTSEAL_CO_LET(a, co_await write("DeleteSecret", body.view()));
    if (a.status == 200 || a.type == "ResourceNotFoundException") co_return kms::Result<void>{};
    co_return fail(error_code(a), error_text("DeleteSecret", a));
  }

 private:
  struct Description {
    bool exists = false;
    bool managed = false;
    bool deleted = false;                                  // scheduled for deletion (DeletedDate set)
    std::map<std::string, std::string, std::less<>> tags;  // the last of a repeated key
    std::string description;
    std::string kms_key_id;
  };

  static kms::Error refuse_error(std::string_view key) { return not_managed("aws", key, "tag").error(); }
  static std::unexpected<kms::Error> refuse(std::string_view key) { return std::unexpected(refuse_error(key)); }

  static Errc error_code(const Answer& a) {
    const std::string& t = a.type;
    if (t == "ResourceNotFoundException") return Errc::not_found;
    if (t == "ResourceExistsException") return Errc::already_exists;
    if (t == "AccessDeniedException" || t == "UnrecognizedClientException" || t == "InvalidSignatureException" ||
        t == "ExpiredTokenException" || t == "IncompleteSignature" || t == "MissingAuthenticationToken") {
      return Errc::permission_denied;
    }
    if (t == "ThrottlingException" || t == "InternalServiceError" || t == "ServiceUnavailable" ||
        t == "DecryptionFailure" || t == "RequestTimeout") {
      return Errc::unavailable;
    }
    if (a.status >= 500 || a.status == 429) return Errc::unavailable;
    if (a.status == 401 || a.status == 403) return Errc::permission_denied;
    return Errc::invalid_argument;
  }

  static std::string error_text(std::string_view op, const Answer& a) {
    std::string s = "aws: " + std::string(op) + " failed (" + std::to_string(a.status);
    if (!a.type.empty()) s += " " + a.type;
    s += ")";
    if (!a.message.empty()) s += ": " + a.message;
    return s;
  }

  static bool retryable(const Answer& a) {
    return a.type == "ThrottlingException" || a.type == "InternalServiceError" || a.type == "ServiceUnavailable" ||
           a.status == 429 || (a.status >= 500 && a.status != 501);
  }

  // One signed call under the store's health: throttling, 5xx and connection
  // errors back the store off (guarded_call: at most two attempts, spaced).
  asio::awaitable<kms::Result<Answer>> call(std::string_view op, std::string_view body) {
    const auto send = [&] { return call_once(op, body); };
    const auto verdict = [](const kms::Result<Answer>& r) {
      AttemptVerdict v;
      if (!r) {
        v.transient = r.error().code == Errc::unavailable;
        v.reason = r.error().message;
      } else if (retryable(*r)) {
        v.transient = true;
        v.retry_after = r->retry_after;
        v.reason = error_text("call", *r);
      }
      return v;
    };
    co_return co_await guarded_call<Answer>(*health_, send, verdict);
  }

  // The credentials to sign with: the spec's, or (web identity) the ones STS
  // sold for the ServiceAccount's token, bought again when a fifth of their
  // lifetime is left or when `renew` (the service refused them).
  // Static credentials as they are; with web identity or a role chain, the
  // credentials bought from STS, cached until a fifth of their lifetime is left.
  Task<sts::Credentials> credentials(bool renew) {
    if (!buys_credentials()) {
      co_return sts::Credentials{
          spec_.access_key_id.clone(), spec_.secret_access_key.clone(), spec_.session_token.clone(), {}};
    }
    co_await cred_mu_.lock();
    auto r = co_await credentials_locked(renew);
    cred_mu_.unlock();
    co_return r;
  }

  [[nodiscard]] bool buys_credentials() const noexcept {
    return !spec_.web_identity_role_arn.empty() || !spec_.assume_roles.empty();
  }

  Task<sts::Credentials> credentials_locked(bool renew) {
    const auto now = std::chrono::system_clock::now();
    if (!renew && !bought_.access_key_id.empty() && now < refresh_at_) {
      co_return sts::Credentials{bought_.access_key_id.clone(), bought_.secret_access_key.clone(),
                                 bought_.session_token.clone(), bought_.expiration};
    }
    bought_ = {};
    sts::Credentials creds;
    if (!spec_.web_identity_role_arn.empty()) {
      ROOTSEAL_CO_LET(c, co_await web_identity_credentials());
      creds = std::move(c);
    } else {
      creds = sts::Credentials{
          spec_.access_key_id.clone(), spec_.secret_access_key.clone(), spec_.session_token.clone(), {}};
    }
    // ESO's role chain: each role assumed with the credentials so far.
    for (const auto& role : spec_.assume_roles) {
      ROOTSEAL_CO_LET(c, co_await assume_role(creds, role));
      creds = std::move(c);
    }
    const auto lifetime = creds.expiration - std::chrono::system_clock::now();
    refresh_at_ = std::chrono::system_clock::now() + (lifetime - lifetime / 5);  // no overflow
    bought_ = std::move(creds);
    co_return sts::Credentials{bought_.access_key_id.clone(), bought_.secret_access_key.clone(),
                               bought_.session_token.clone(), bought_.expiration};
  }

  Task<sts::Credentials> web_identity_credentials() {
    for (int attempt = 0;; ++attempt) {
      ROOTSEAL_CO_LET(jwt, co_await spec_.web_identity_token(attempt > 0));
      const auto body =
          sts::assume_role_with_web_identity_body(spec_.web_identity_role_arn, spec_.web_identity_session_name, jwt);
      ++counters_.sts_calls;
      const net::Header headers[] = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
                                     {"Accept", "application/xml"}};
      auto res = co_await sts_->request(http::verb::post, "/", headers, as_view(body));
      if (!res) co_return fail(res.error().code, "aws: sts: " + res.error().message);
      if (res->status == 200) co_return sts::parse_assume_role_with_web_identity(res->body.view());
      // A cached ServiceAccount token STS refuses (expired, the ServiceAccount recreated): once more with a fresh one.
      if (attempt == 0 && res->status == 400) continue;
      const Errc code =
          res->status == 400 || res->status == 403 ? Errc::permission_denied : errc_for_status(res->status);
      co_return fail(code, "aws: AssumeRoleWithWebIdentity for " + spec_.web_identity_role_arn +
                               " failed: " + sts::error_text(static_cast<int>(res->status), res->body.view()));
    }
  }

  // STS AssumeRole, signed (SigV4, service sts) with `with`. The session
  // name is the AWS SDK's default, as ESO leaves it; 15 minutes, the SDK's.
  Task<sts::Credentials> assume_role(const sts::Credentials& with, const AwsAssumeRole& role) {
    const auto now = std::chrono::system_clock::now();
    const std::string session =
        "aws-go-sdk-" +
        std::to_string(std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count());
    const std::string body = sts::assume_role_body(role, session, 900);
    const std::string date = sigv4::amz_date(now);
    sigv4::Request req;
    req.method = "POST";
    req.path = "/";
    req.headers = {{"content-type", "application/x-www-form-urlencoded; charset=utf-8"},
                   {"host", sts_->host_header()},
                   {"x-amz-date", date}};
    if (!with.session_token.empty())
      req.headers.emplace_back("x-amz-security-token", std::string(as_view(with.session_token)));
    req.payload = body;
    const auto auth =
        sigv4::authorization(req, {with.access_key_id, with.secret_access_key}, spec_.region, "sts", date);
    std::vector<net::Header> headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
                                        {"Accept", "application/xml"},
                                        {"X-Amz-Date", date},
                                        {"Authorization", as_view(auth)}};
    if (!with.session_token.empty()) headers.push_back({"X-Amz-Security-Token", as_view(with.session_token)});
    if (!req.headers.empty() && req.headers.back().first == "x-amz-security-token") {
      auto& v = req.headers.back().second;
      kms::secure_zero(v.data(), v.size());
    }
    ++counters_.sts_calls;
    auto res = co_await sts_->request(http::verb::post, "/", headers, body);
    if (!res) co_return fail(res.error().code, "aws: sts: " + res.error().message);
    if (res->status == 200) co_return sts::parse_assume_role(res->body.view());
    const Errc code = res->status == 400 || res->status == 403 ? Errc::permission_denied : errc_for_status(res->status);
    co_return fail(code, "aws: AssumeRole for " + role.role_arn +
                             " failed: " + sts::error_text(static_cast<int>(res->status), res->body.view()));
  }

  asio::awaitable<kms::Result<Answer>> call_once(std::string_view op, std::string_view body) {
    auto first = co_await call_signed(op, body, false);
    // Web identity: credentials the service no longer accepts are bought again, once.
    if (first && buys_credentials() && (first->status == 400 || first->status == 403) &&
        (first->type == "ExpiredTokenException" || first->type == "UnrecognizedClientException" ||
         first->type == "InvalidSignatureException")) {
      co_return co_await call_signed(op, body, true);
    }
    co_return first;
  }

  asio::awaitable<kms::Result<Answer>> call_signed(std::string_view op, std::string_view body, bool renew) {
    auto creds = co_await credentials(renew);
    if (!creds) co_return std::unexpected(std::move(creds).error());
    ++counters_.calls;
    const std::string target = "secretsmanager." + std::string(op);
    const std::string date = sigv4::amz_date(std::chrono::system_clock::now());
    sigv4::Request req;
    req.method = "POST";
    req.path = "/";
    req.headers = {{"content-type", "application/x-amz-json-1.1"},
                   {"host", client_->host_header()},
                   {"x-amz-date", date},
                   {"x-amz-target", target}};
    if (!creds->session_token.empty())
      req.headers.emplace_back("x-amz-security-token", std::string(as_view(creds->session_token)));
    req.payload = body;
    const auto auth = sigv4::authorization(req, {creds->access_key_id, creds->secret_access_key}, spec_.region,
                                           "secretsmanager", date);
    // The headers sent refer to the locked copies; the signing copy of the session token is wiped.
    std::vector<net::Header> headers = {{"Content-Type", "application/x-amz-json-1.1"},
                                        {"X-Amz-Date", date},
                                        {"X-Amz-Target", target},
                                        {"Authorization", as_view(auth)}};
    if (!creds->session_token.empty()) headers.push_back({"X-Amz-Security-Token", as_view(creds->session_token)});
    if (!req.headers.empty() && req.headers.back().first == "x-amz-security-token") {
      auto& v = req.headers.back().second;
      kms::secure_zero(v.data(), v.size());
    }
    auto res = co_await client_->request(http::verb::post, "/", headers, body);
    if (!res) co_return fail(res.error().code, "aws: " + res.error().message);
    Answer a;
    a.status = res->status;
    a.retry_after = retry_after(*res);
    if (!res->body.empty()) {
      auto doc = SecureJson::parse(res->body.view());
      if (doc) a.doc = std::move(*doc);
    }
    if (!a.doc) {
      auto empty = SecureJson::parse(std::string_view("{}"));
      a.doc = std::move(*empty);
      if (a.status == 200) co_return fail(Errc::unavailable, "aws: " + std::string(op) + ": the answer is not JSON");
    }
    if (a.status != 200) {
      std::string t(json_string(a.root(), "__type"));
      if (auto hash = t.rfind('#'); hash != std::string::npos) t.erase(0, hash + 1);
      a.type = t;
      std::string m(json_string(a.root(), "message"));
      if (m.empty()) m = std::string(json_string(a.root(), "Message"));
      if (m.size() > 300) m.resize(300);
      a.message = std::move(m);
    }
    co_return a;
  }

  asio::awaitable<kms::Result<Answer>> write(std::string_view op, std::string_view body) {
    co_await writes_.acquire();
    ++counters_.writes;
    co_return co_await call(op, body);
  }

  Task<Description> describe_full(std::string_view key) {
    if (!valid_secret_name(key)) {
      co_return fail(Errc::invalid_argument, "aws: secret name must be 1-512 characters of A-Za-z0-9/_+=.@-");
    }
    SecureBuffer body(64);
    body.append(R"({"SecretId":)");
    quote(key, body);
    body.append("}");
    ROOTSEAL_CO_LET(a, co_await call("DescribeSecret", body.view()));
    Description d;
    if (a.type == "ResourceNotFoundException") co_return d;
    if (a.status != 200) co_return fail(error_code(a), error_text("DescribeSecret", a));
    d.exists = true;
    const auto& root = a.root();
    if (root.is_object()) {
      if (const auto* tags = root.as_object().if_contains("Tags"); tags && tags->is_array()) {
        for (const auto& t : tags->as_array()) {
          if (json_string(t, "Key") == kManagedByKey && json_string(t, "Value") == kManagedByValue) d.managed = true;
          d.tags.insert_or_assign(std::string(json_string(t, "Key")), std::string(json_string(t, "Value")));
        }
      }
      if (const auto* del = root.as_object().if_contains("DeletedDate"); del && !del->is_null()) d.deleted = true;
      d.description = std::string(json_string(root, "Description"));
      d.kms_key_id = std::string(json_string(root, "KmsKeyId"));
    }
    co_return d;
  }

  // The current value (SecretString or decoded SecretBinary); nullopt when the
  // secret exists without a value in that version/stage. `version_id`: set
  // to the VersionId read, when given.
  Task<std::optional<kms::SecureBytes>> get_value(std::string_view key, std::string_view version,
                                                  bool known_to_exist = false, std::string* version_id = nullptr) {
    if (key.empty()) co_return fail(Errc::invalid_argument, "aws: remoteRef.key is empty");
    SecureBuffer body(96);
    body.append(R"({"SecretId":)");
    quote(key, body);
    if (version.starts_with("uuid/")) {
      body.append(R"(,"VersionId":)");
      quote(version.substr(5), body);
    } else if (!version.empty()) {
      body.append(R"(,"VersionStage":)");
      quote(version, body);
    }
    body.append("}");
    ROOTSEAL_CO_LET(a, co_await call("GetSecretValue", body.view()));
    if (a.type == "ResourceNotFoundException") {
      // The secret, or a version in that stage: for a secret known to exist, "no value yet".
      if (known_to_exist) co_return std::optional<kms::SecureBytes>{};
      co_return fail(Errc::not_found,
                     "aws: secret \"" + std::string(key) + "\"" +
                         (version.empty() ? std::string() : " version \"" + std::string(version) + "\"") +
                         " not found");
    }
    if (a.status != 200) co_return fail(error_code(a), error_text("GetSecretValue", a));
    if (version_id != nullptr) *version_id = std::string(json_string(a.root(), "VersionId"));
    co_return value_of(a.root());
  }

  static constexpr std::size_t kMaxFindPages = 10000;

  // SecretString, or SecretBinary decoded, of a GetSecretValue answer or a
  // BatchGetSecretValue entry; nullopt when it has neither.
  static kms::Result<std::optional<kms::SecureBytes>> value_of(const json::value& v) {
    if (v.is_object()) {
      if (const auto* s = v.as_object().if_contains("SecretString"); s && s->is_string()) {
        return std::optional<kms::SecureBytes>(kms::SecureBytes::copy_of(std::string_view(s->as_string())));
      }
      if (const auto* b = v.as_object().if_contains("SecretBinary"); b && b->is_string()) {
        auto raw = kms::base64_decode_secure(std::string_view(b->as_string()));
        if (!raw) return fail(Errc::unavailable, "aws: SecretBinary is not base64");
        return std::optional<kms::SecureBytes>(std::move(*raw));
      }
    }
    return std::optional<kms::SecureBytes>{};
  }

  // "SecretBinary":"<base64>" (ESO's default secretPushFormat, binary), or
  // with `as_string` "SecretString":"..." (the caller checked it is UTF-8).
  static void append_value(const kms::SecureBytes& v, SecureBuffer& body, bool as_string) {
    if (as_string) {
      body.append(R"("SecretString":)");
      json_quote(v.span(), body);
    } else {
      body.append(R"("SecretBinary":")");
      const auto b64 = kms::base64_encode_secure(v.span());
      body.append(b64.span());
      body.append("\"");
    }
  }

  // Creates the secret, tagged managed-by=rootseal and with the metadata's
  // tags, description (else rootseal's) and KMS key, with the value if
  // given; its VersionId.
  Task<std::string> create(std::string_view key, const kms::SecureBytes* value, const PushMetadata* md,
                           std::string token = {}) {
    if (!valid_secret_name(key)) {
      co_return fail(Errc::invalid_argument, "aws: secret name must be 1-512 characters of A-Za-z0-9/_+=.@-");
    }
    SecureBuffer body(256 + (value ? value->size() * 2 : 0));
    body.append(R"({"Name":)");
    quote(key, body);
    body.append(R"(,"Description":)");
    quote(md != nullptr && !md->description.empty() ? std::string_view(md->description) : "managed by rootseal", body);
    if (md != nullptr && !md->kms_key_id.empty()) {
      body.append(R"(,"KmsKeyId":)");
      quote(md->kms_key_id, body);
    }
    body.append(R"(,"Tags":)");
    append_tags(md != nullptr ? &md->tags : nullptr, body);
    if (value != nullptr) {
      body.append(R"(,"ClientRequestToken":")" + (token.empty() ? kms::uuid_v4() : token) + "\",");
      append_value(*value, body, md != nullptr && md->push_as_string);
    }
    body.append("}");
    ROOTSEAL_CO_LET(a, co_await write("CreateSecret", body.view()));
    if (a.status != 200) {
      if (a.type == "ResourceExistsException") co_return fail(Errc::already_exists, "aws: secret already exists");
      co_return fail(error_code(a), error_text("CreateSecret", a));
    }
    co_return std::string(json_string(a.root(), "VersionId"));
  }

  // [{"Key":"managed-by","Value":"rootseal"}, then the user's tags].
  static void append_tags(const std::map<std::string, std::string, std::less<>>* tags, SecureBuffer& body) {
    body.append(R"([{"Key":")" + std::string(kManagedByKey) + R"(","Value":")" + std::string(kManagedByValue) +
                R"("})");
    if (tags != nullptr) {
      for (const auto& [k, v] : *tags) {
        body.append(R"(,{"Key":)");
        quote(k, body);
        body.append(R"(,"Value":)");
        quote(v, body);
        body.append("}");
      }
    }
    body.append("]");
  }

  // The metadata on an existing secret; true when anything was changed.
  // Tags (only when the metadata has some, as ESO): every tag not among
  // them (and not managed-by) is removed, TagResource sets them all when one
  // is missing or differs. Description and KMS key: UpdateSecret when given
  // and different (ESO sets them at creation only). Resource policy: put
  // when it differs from the current one (compared as JSON), removed when
  // the metadata has none or its source is empty.
  Task<bool> apply_metadata(std::string_view key, const Description& d, const PushMetadata& md) {
    bool changed = false;
    if (!md.tags.empty()) {
      SecureBuffer untag(128);
      for (const auto& [k, v] : d.tags) {
        if (k == kManagedByKey || md.tags.contains(k)) continue;
        untag.append(untag.size() == 0 ? "[" : ",");
        quote(k, untag);
      }
      if (untag.size() != 0) {
        untag.append("]");
        SecureBuffer body(untag.size() + 64);
        body.append(R"({"SecretId":)");
        quote(key, body);
        body.append(R"(,"TagKeys":)");
        body.append(untag.view());
        body.append("}");
        ROOTSEAL_CO_LET(a, co_await write("UntagResource", body.view()));
        if (a.status != 200) co_return fail(error_code(a), error_text("UntagResource", a));
        changed = true;
      }
      const bool differs = std::any_of(md.tags.begin(), md.tags.end(), [&d](const auto& kv) {
        const auto it = d.tags.find(kv.first);
        return it == d.tags.end() || it->second != kv.second;
      });
      if (differs) {
        SecureBuffer body(256);
        body.append(R"({"SecretId":)");
        quote(key, body);
        body.append(R"(,"Tags":)");
        append_tags(&md.tags, body);
        body.append("}");
        ROOTSEAL_CO_LET(a, co_await write("TagResource", body.view()));
        if (a.status != 200) co_return fail(error_code(a), error_text("TagResource", a));
        changed = true;
      }
    }
    const bool new_description = !md.description.empty() && md.description != d.description;
    const bool new_key = !md.kms_key_id.empty() && !same_kms_key(d.kms_key_id, md.kms_key_id);
    if (new_description || new_key) {
      SecureBuffer body(256);
      body.append(R"({"SecretId":)");
      quote(key, body);
      // The idempotency token the AWS SDKs always send (no value: no new version).
      body.append(R"(,"ClientRequestToken":")" + kms::uuid_v4() + "\"");
      if (new_description) {
        body.append(R"(,"Description":)");
        quote(md.description, body);
      }
      if (new_key) {
        body.append(R"(,"KmsKeyId":)");
        quote(md.kms_key_id, body);
      }
      body.append("}");
      ROOTSEAL_CO_LET(a, co_await write("UpdateSecret", body.view()));
      if (a.status != 200) co_return fail(error_code(a), error_text("UpdateSecret", a));
      changed = true;
    }
    ROOTSEAL_CO_LET(current_policy, co_await get_policy(key));
    const bool want_policy = md.resource_policy && !md.resource_policy->policy.empty();
    if (!want_policy) {
      if (!current_policy.empty()) {
        SecureBuffer body(64);
        body.append(R"({"SecretId":)");
        quote(key, body);
        body.append("}");
        ROOTSEAL_CO_LET(a, co_await write("DeleteResourcePolicy", body.view()));
        if (a.status != 200 && a.type != "ResourceNotFoundException")
          co_return fail(error_code(a), error_text("DeleteResourcePolicy", a));
        changed = true;
      }
    } else if (!same_policy(current_policy, md.resource_policy->policy)) {
      ROOTSEAL_CO_TRY(co_await put_policy(key, *md.resource_policy));
      changed = true;
    }
    co_return changed;
  }

  // A KMS key as DescribeSecret reports it (an ARN, or as given) against the
  // one asked for (a key id, an alias name, or an ARN): the same when equal,
  // or when the ARN ends in "/<id>" or ":<alias/name>".
  static bool same_kms_key(std::string_view have, std::string_view want) {
    if (have == want) return true;
    if (have.size() <= want.size()) return false;
    const char before = have[have.size() - want.size() - 1];
    return have.ends_with(want) && (before == '/' || (before == ':' && want.starts_with("alias/")));
  }

  // Two policy documents are the same when they parse to equal JSON (ESO:
  // reflect.DeepEqual of the decoded maps); the empty current policy is none.
  static bool same_policy(std::string_view current, std::string_view wanted) {
    if (current.empty()) return false;
    boost::system::error_code ec1, ec2;
    const auto a = json::parse(current, ec1);
    const auto b = json::parse(wanted, ec2);
    return !ec1 && !ec2 && a == b;
  }

  // The secret's resource policy (GetResourcePolicy); empty: none.
  Task<std::string> get_policy(std::string_view key) {
    SecureBuffer body(64);
    body.append(R"({"SecretId":)");
    quote(key, body);
    body.append("}");
    ROOTSEAL_CO_LET(a, co_await call("GetResourcePolicy", body.view()));
    if (a.type == "ResourceNotFoundException") co_return std::string();
    if (a.status != 200) co_return fail(error_code(a), error_text("GetResourcePolicy", a));
    co_return std::string(json_string(a.root(), "ResourcePolicy"));
  }

  Task<void> put_policy(std::string_view key, const PushMetadata::ResourcePolicy& policy) {
    SecureBuffer body(policy.policy.size() * 2 + 96);
    body.append(R"({"SecretId":)");
    quote(key, body);
    body.append(R"(,"ResourcePolicy":)");
    quote(policy.policy, body);
    if (policy.block_public_policy)
      body.append(*policy.block_public_policy ? R"(,"BlockPublicPolicy":true)" : R"(,"BlockPublicPolicy":false)");
    body.append("}");
    ROOTSEAL_CO_LET(a, co_await write("PutResourcePolicy", body.view()));
    if (a.status != 200) co_return fail(error_code(a), error_text("PutResourcePolicy", a));
    co_return kms::Result<void>{};
  }

  Task<std::string> put_value(std::string_view key, const kms::SecureBytes& value, bool as_string, std::string token) {
    SecureBuffer body(128 + value.size() * 2);
    body.append(R"({"SecretId":)");
    quote(key, body);
    // One token per logical write, reused by every retry of it: AWS treats a
    // repeat with the same token and data as a no-op, never a second version.
    body.append(R"(,"ClientRequestToken":")" + token + "\",");
    append_value(value, body, as_string);
    body.append("}");
    ROOTSEAL_CO_LET(a, co_await write("PutSecretValue", body.view()));
    if (a.status != 200) co_return fail(error_code(a), error_text("PutSecretValue", a));
    co_return std::string(json_string(a.root(), "VersionId"));
  }

  Task<void> restore(std::string_view key) {
    SecureBuffer body(64);
    body.append(R"({"SecretId":)");
    quote(key, body);
    body.append("}");
    ROOTSEAL_CO_LET(a, co_await write("RestoreSecret", body.view()));
    if (a.status != 200) co_return fail(error_code(a), error_text("RestoreSecret", a));
    co_return kms::Result<void>{};
  }

  AwsSpec spec_;
  std::shared_ptr<net::HttpClient> client_;
  std::shared_ptr<net::HttpClient> sts_;  // web identity or a role chain only
  std::shared_ptr<StoreHealth> health_;
  RateLimiter writes_;
  AwsCounters counters_;
  AsyncMutex cred_mu_;
  // Guarded by cred_mu_ (web identity, a role chain):
  sts::Credentials bought_;
  std::chrono::system_clock::time_point refresh_at_{};
};

}  // namespace

kms::Result<std::shared_ptr<AwsSecretsManager>> make_aws_provider(const asio::any_io_executor& executor, AwsSpec spec,
                                                                  std::shared_ptr<StoreHealth> health) {
  if (spec.region.empty()) return fail(Errc::invalid_argument, "aws: region is required");
  for (char c : spec.region) {
    if (std::isalnum(static_cast<unsigned char>(c)) == 0 && c != '-')
      return fail(Errc::invalid_argument, "aws: bad region");
  }
  if (!spec.web_identity_role_arn.empty()) {
    if (!spec.web_identity_token) return fail(Errc::invalid_argument, "aws: web identity needs a token source");
  } else if (spec.access_key_id.empty() || spec.secret_access_key.empty()) {
    return fail(Errc::invalid_argument, "aws: access key id and secret access key are required");
  }
  if (!spec.force_delete_without_recovery && (spec.recovery_window_days < 7 || spec.recovery_window_days > 30)) {
    return fail(Errc::invalid_argument, "aws: recoveryWindowInDays must be between 7 and 30");
  }
  if (!(spec.writes_per_second > 0)) return fail(Errc::invalid_argument, "aws: writes_per_second must be positive");
  std::string endpoint =
      spec.endpoint.empty() ? "https://secretsmanager." + spec.region + ".amazonaws.com" : spec.endpoint;
  auto u = boost::urls::parse_uri(endpoint);
  if (!u || !(u->encoded_path().empty() || u->encoded_path() == "/")) {
    return fail(Errc::invalid_argument, "aws: endpoint must be scheme://host[:port]");
  }
  ROOTSEAL_LET(client, make_client(executor, endpoint, spec.tls));
  std::shared_ptr<net::HttpClient> sts;
  for (const auto& r : spec.assume_roles) {
    if (!r.role_arn.starts_with("arn:")) return fail(Errc::invalid_argument, "aws: a role to assume must be an ARN");
    if (r.session_tags.size() > 50) return fail(Errc::invalid_argument, "aws: at most 50 session tags");
  }
  if (!spec.web_identity_role_arn.empty() || !spec.assume_roles.empty()) {
    const std::string sts_endpoint =
        spec.sts_endpoint.empty() ? "https://sts." + spec.region + ".amazonaws.com" : spec.sts_endpoint;
    ROOTSEAL_LET(c, make_client(executor, sts_endpoint, spec.tls));
    sts = std::move(c);
  }
  if (!health) health = std::make_shared<StoreHealth>("aws " + spec.region);
  return std::shared_ptr<AwsSecretsManager>(
      std::make_shared<AwsImpl>(executor, std::move(spec), std::move(client), std::move(sts), std::move(health)));
}

}  // namespace rootseal::sync::providers
