// Fuzz target: every provider's handling of what its remote service answers
// (sync/src/providers/): Vault KV v2 (reads, AppRole login, Kubernetes/JWT
// login with a ServiceAccount token source and its retry with a fresh token,
// token lookup),
// AWS Secrets Manager (GetSecretValue, DescribeSecret, writes), Azure Key
// Vault and GCP Secret Manager (OAuth token answers, secret and version
// reads, list pages with tags / labels for find, writes), the snapshot object stores on S3, Google Cloud Storage
// and Azure Blob Storage (listings, objects, uploads), success and error
// bodies. The real providers and their HttpClients read the answers through
// their own HTTP/1.1 code from an in-process transport instead of a socket
// (scripted_transport.hpp).
//
// Input: line 1 "<provider> <op> <key> [<property>]", provider one of vault,
// vault-approle, vault-kubernetes, aws, aws-web-identity (STS
// AssumeRoleWithWebIdentity's XML answer first), aws-role (static keys, then
// a role chain of two: two STS AssumeRole XML answers first), azure,
// azure-workload-identity (the token answer to a client assertion first),
// gcp, gcp-federation (STS's token-exchange answer, then IAM Credentials'
// generateAccessToken answer), conjur (authn's access token first),
// conjur-jwt (authn-jwt's), or s3, gcs, azblob (the snapshot object
// stores: list, get, put, remove; object_store.hpp; a <property> puts them
// under the prefix "p/"); op one of fetch, fetch_all, validate,
// fetch_metadata (metadataPolicy Fetch), describe, ensure, put, put_new,
// put_md, put_md_string (with PushSecretMetadata), remove (pull ops for
// vault/aws/azure/gcp/conjur, push ops for vault/aws/azure/gcp; a Vault push
// without a property pushes a JSON object, as a whole Secret is); then the
// answers, in the order the provider asks:
// blocks separated by a line "--", each "<status>\n<body>" or a whole raw
// HTTP answer ("HTTP/1.1 200 OK\r\n...": header fields, chunked bodies).
//
// The providers' pauses between retries (providers::sleep_for, called from
// vault_kv2.cpp and aws_sm.cpp) are linked to a no-op here (-Wl,--wrap):
// a retry is immediate, so the fuzzer is not slowed by backoff; what a
// retry reads is unchanged. 429/5xx are not scripted (parse_script). The
// store's health (store_health.hpp) backs off for at most 2 ms and waits at
// most 3 ms: a throttling answer still exercises the backoff, the probe and
// the refusal, without a real second of waiting per input.
//
// Properties beyond "no crash, no sanitizer report, no leak":
//  - a failure is one of the documented provider errors (provider.hpp:
//    not_found, permission_denied, unavailable, invalid_argument,
//    bad_base64) with a message;
//  - agreement with a second JSON reader for Vault: a fetch_all that
//    succeeded on a script of the token lookup and one read answer (not
//    raw) gives exactly the string members of
//    the answer's data.data (boost::json on the plain heap), non-strings as
//    their JSON text.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "fuzz_util.hpp"
#include "providers/aws/aws_sm.hpp"
#include "providers/azure/azure_kv.hpp"
#include "providers/conjur/conjur.hpp"
#include "providers/gcp/gcp_sm.hpp"
#include "object_store/object_listing.hpp"
#include "providers/vault/vault_kv2.hpp"
#include "rootseal/sync/object_store.hpp"
#include "remote_loop.hpp"
#include "scripted_transport.hpp"
#include "providers/store_health.hpp"
#include "secure_json.hpp"

namespace json = boost::json;
namespace providers = rootseal::sync::providers;
using namespace rootseal;

// The no-op pause (see above). The name is providers::sleep_for's, wrapped.
boost::asio::awaitable<void> fuzz_no_sleep(std::chrono::milliseconds) asm(
    "__wrap__ZN8rootseal4sync9providers9sleep_forENSt6chrono8durationIlSt5ratioILl1ELl1000EEEE");
boost::asio::awaitable<void> fuzz_no_sleep(std::chrono::milliseconds) { co_return; }

namespace {

// One io_context for the run, with the scripted transport installed.
boost::asio::io_context& io_context() {
  static boost::asio::io_context io;
  return io;
}

fuzz::ScriptedTransport& server() {
  static fuzz::ScriptedTransport& t = fuzz::install_scripted_transport(io_context());
  return t;
}

// A GCP service-account key file with a fresh RSA key, made once. 1024
// bits: the answers' handling does not depend on the key's size, and each
// GCP and GCS input signs a JWT with it (RSA-2048 signing was most of those
// inputs' time).
const std::string& gcp_key_json() {
  static const std::string key = [] {
    EVP_PKEY* pkey = EVP_RSA_gen(1024);
    if (pkey == nullptr) fuzz::fail_property("RSA key");
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, pkey, nullptr, nullptr, 0, nullptr, nullptr);
    char* p = nullptr;
    const long n = BIO_get_mem_data(bio, &p);
    std::string pem(p, static_cast<std::size_t>(n));
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    return json::serialize(json::object{{"type", "service_account"},
                                        {"client_email", "fuzz@fuzz-project.iam.gserviceaccount.com"},
                                        {"private_key_id", "k1"},
                                        {"private_key", pem}});
  }();
  return key;
}

template <class T>
void check(const kms::Result<T>& r) {
  if (r) return;
  fuzz::require_clean_error(r.error(),
                            {kms::Errc::not_found, kms::Errc::permission_denied, kms::Errc::unavailable,
                             kms::Errc::invalid_argument, kms::Errc::bad_base64},
                            "provider error code");
}

std::string text(const kms::SecureBytes& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// The provider on a static token asks Vault about the token first
// (auth/token/lookup-self), then reads: the read answer is the second.
void vault_agreement(const sync::SecretMap& got, const std::vector<fuzz::ScriptedAnswer>& answers) {
  if (answers.size() != 2 || answers[1].raw || server().requests() != 2) return;
  // A second reading of the answer (Boost.JSON; it refuses what Go reads with
  // U+FFFD, such as invalid UTF-8: then there is nothing to compare). String
  // members must come out as they are; numbers are Go's float64 text and are
  // checked against Go itself by fuzz.go_json_diff.
  json::error_code ec;
  const json::value v = json::parse(answers[1].body, ec);
  if (ec) return;
  fuzz::require(v.is_object(), "vault: a read answer the provider took is an object");
  const json::value& inner = v.at("data").at("data");
  fuzz::require(inner.is_object() && inner.as_object().size() == got.size(), "vault: one entry per member");
  for (const auto& kv : inner.as_object()) {
    const auto it = got.find(std::string_view(kv.key()));
    fuzz::require(it != got.end(), "vault: every member is an entry");
    if (kv.value().is_string()) {
      fuzz::require(text(it->second) == std::string_view(kv.value().as_string()),
                    "vault: a string entry is the member's value");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in = fuzz::as_text(data, size);
  std::string_view head = fuzz::next_line(in);
  const std::string provider(fuzz::next_part(head, " "));
  const std::string op(fuzz::next_part(head, " "));
  const std::string key(fuzz::next_part(head, " "));
  const std::string property(head);
  auto script = fuzz::parse_script(in);
  const auto answers = script;
  server().set_script(std::move(script));
  const std::string url(fuzz::kScriptedUrl);

  // Providers are made per input (they cache tokens, which would make an
  // input's answers depend on earlier inputs).
  boost::asio::io_context& io = io_context();
  const auto ex = io.get_executor();
  auto health = std::make_shared<sync::StoreHealth>(
      "fuzz store", sync::StoreHealthOptions{std::chrono::milliseconds(1), std::chrono::milliseconds(2),
                                             std::chrono::milliseconds(3)});
  std::shared_ptr<sync::Provider> pull;
  std::shared_ptr<sync::PushProvider> push;
  // At the end of the input the providers go, and the io_context runs what
  // their destruction posted (socket closes, cancelled timers): every
  // allocation of an input is freed within it, so libFuzzer's malloc/free
  // balance holds and it does not run a full LeakSanitizer scan per input
  // (which made this target ~100 inputs/s). A real leak still unbalances it.
  struct Drain {
    boost::asio::io_context& io;
    std::shared_ptr<sync::Provider>& pull;
    std::shared_ptr<sync::PushProvider>& push;
    std::shared_ptr<sync::StoreHealth>& health;
    ~Drain() {
      pull.reset();
      push.reset();
      health.reset();
      server().set_script({});  // the answers not asked for
      io.restart();
      io.run();
      io.restart();
    }
  } drain{io, pull, push, health};
  if (provider == "vault" || provider == "vault-approle" || provider == "vault-kubernetes") {
    sync::VaultSpec s;
    s.server = url;
    if (provider == "vault") {
      s.token = kms::SecureBytes::copy_of(std::string_view("fuzz-vault-token"));
    } else if (provider == "vault-kubernetes") {
      s.jwt_auth_path = "kubernetes";
      s.jwt_role = "fuzz-role";
      s.jwt_source = [](bool fresh) -> boost::asio::awaitable<kms::Result<kms::SecureBytes>> {
        co_return kms::SecureBytes::copy_of(std::string_view(fresh ? "eyJ.fresh.sig" : "eyJ.cached.sig"));
      };
    } else {
      s.role_id = "fuzz-role";
      s.secret_id = kms::SecureBytes::copy_of(std::string_view("fuzz-secret-id"));
    }
    auto p = providers::make_vault_provider(ex, std::move(s), health);
    fuzz::require(p.has_value(), "vault provider");
    pull = *p;
    push = *p;
  } else if (provider == "aws" || provider == "aws-web-identity" || provider == "aws-role") {
    sync::AwsSpec s;
    s.region = "us-east-1";
    s.endpoint = url;
    if (provider == "aws" || provider == "aws-role") {
      s.access_key_id = kms::SecureBytes::copy_of(std::string_view("AKIDFUZZ"));
      s.secret_access_key = kms::SecureBytes::copy_of(std::string_view("fuzz-secret-key"));
      if (provider == "aws-role") {
        s.sts_endpoint = url;
        s.assume_roles.push_back({"arn:aws:iam::123456789012:role/hop", {}, {}, {}});
        s.assume_roles.push_back({"arn:aws:iam::123456789012:role/fuzz", "ext-1", {{"team", "a"}}, {"team"}});
      }
    } else {
      s.web_identity_role_arn = "arn:aws:iam::123456789012:role/fuzz";
      s.sts_endpoint = url;
      s.web_identity_token = [](bool fresh) -> boost::asio::awaitable<kms::Result<kms::SecureBytes>> {
        co_return kms::SecureBytes::copy_of(std::string_view(fresh ? "eyJ.fresh.sig" : "eyJ.cached.sig"));
      };
    }
    s.writes_per_second = 1e9;
    auto p = providers::make_aws_provider(ex, std::move(s), health);
    fuzz::require(p.has_value(), "aws provider");
    pull = *p;
    push = *p;
  } else if (provider == "azure" || provider == "azure-workload-identity") {
    sync::AzureSpec s;
    s.vault_url = url;
    s.authority_host = url;
    s.tenant_id = "fuzz-tenant";
    s.client_id = "fuzz-client";
    if (provider == "azure") {
      s.client_secret = kms::SecureBytes::copy_of(std::string_view("fuzz-client-secret"));
    } else {
      s.client_assertion = [](bool fresh) -> boost::asio::awaitable<kms::Result<kms::SecureBytes>> {
        co_return kms::SecureBytes::copy_of(std::string_view(fresh ? "eyJ.fresh.sig" : "eyJ.cached.sig"));
      };
    }
    auto p = providers::make_azure_provider(ex, std::move(s), health);
    fuzz::require(p.has_value(), "azure provider");
    pull = *p;
    push = *p;
  } else if (provider == "gcp" || provider == "gcp-federation") {
    sync::GcpSpec s;
    s.project_id = "fuzz-project";
    s.endpoint = url;
    if (provider == "gcp") {
      s.token_uri = url + "/token";
      s.service_account_json = kms::SecureBytes::copy_of(std::string_view(gcp_key_json()));
    } else {
      s.sts_endpoint = url;
      s.iam_endpoint = url;
      s.sts_audience = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x";
      s.impersonate = "reader@fuzz-project.iam.gserviceaccount.com";
      s.subject_token = [](bool fresh) -> boost::asio::awaitable<kms::Result<kms::SecureBytes>> {
        co_return kms::SecureBytes::copy_of(std::string_view(fresh ? "eyJ.fresh.sig" : "eyJ.cached.sig"));
      };
    }
    auto p = providers::make_gcp_provider(ex, std::move(s), health);
    fuzz::require(p.has_value(), "gcp provider");
    pull = *p;
    push = *p;
  } else if (provider == "conjur" || provider == "conjur-jwt") {
    sync::ConjurSpec s;
    s.url = url + "/api";
    s.account = "fuzz";
    if (provider == "conjur") {
      s.login = "host/fuzz";
      s.api_key = kms::SecureBytes::copy_of(std::string_view("fuzz-api-key"));
    } else {
      s.service_id = "k8s";
      s.jwt_source = [](bool fresh) -> boost::asio::awaitable<kms::Result<kms::SecureBytes>> {
        co_return kms::SecureBytes::copy_of(std::string_view(fresh ? "eyJ.fresh.sig" : "eyJ.cached.sig"));
      };
    }
    auto p = providers::make_conjur_provider(ex, std::move(s), health);
    fuzz::require(p.has_value(), "conjur provider");
    pull = *p;
  } else if (provider == "s3" || provider == "gcs" || provider == "azblob") {
    // The snapshot object stores: S3 (ListObjectsV2 XML pages and
    // continuation tokens), GCS (a token answer, then objects.list JSON
    // pages, uploads' object resources, alt=media with x-goog-hash) and
    // Azure Blob (a token answer, then List Blobs XML with NextMarker,
    // Content-MD5); objects and error bodies. A listing holds only valid
    // snapshot-store names, sorted.
    kms::Result<std::unique_ptr<sync::ObjectStore>> made = kms::fail(kms::Errc::internal, "none");
    const std::string prefix = property.empty() ? "" : "p/";
    // As the providers' health above: a transient answer backs off for milliseconds.
    const sync::ObjectStoreBackoff backoff{std::chrono::milliseconds(1), std::chrono::milliseconds(2),
                                           std::chrono::milliseconds(3)};
    if (provider == "s3") {
      sync::S3Spec s;
      s.bucket = "fuzz-bucket";
      s.prefix = prefix;
      s.region = "us-east-1";
      s.endpoint = url;
      s.access_key_id = kms::SecureBytes::copy_of(std::string_view("AKIDFUZZ"));
      s.secret_access_key = kms::SecureBytes::copy_of(std::string_view("fuzz-secret-key"));
      made = sync::make_s3_store(ex, std::move(s));
    } else if (provider == "gcs") {
      sync::GcsSpec s;
      s.bucket = "fuzz-bucket";
      s.prefix = prefix;
      s.endpoint = url;
      s.token_uri = url + "/token";
      s.service_account_json = kms::SecureBytes::copy_of(std::string_view(gcp_key_json()));
      s.backoff = backoff;
      made = sync::make_gcs_store(ex, std::move(s));
    } else {
      sync::AzureBlobSpec s;
      s.account = "fuzzaccount";
      s.container = "fuzz-container";
      s.prefix = prefix;
      s.endpoint = url;
      s.authority_host = url;
      s.tenant_id = "fuzz-tenant";
      s.client_id = "fuzz-client";
      s.client_secret = kms::SecureBytes::copy_of(std::string_view("fuzz-client-secret"));
      s.backoff = backoff;
      made = sync::make_azure_blob_store(ex, std::move(s));
    }
    fuzz::require(made.has_value(), "object store");
    std::unique_ptr<sync::ObjectStore> store = std::move(*made);
    if (op == "list") {
      auto r = fuzz::run_to_completion(io, [&] { return store->list(); });
      check(r);
      if (r) {
        fuzz::require(
            std::is_sorted(r->begin(), r->end(), [](const auto& a, const auto& b) { return a.name < b.name; }),
            "object store: a listing is sorted");
        for (const auto& o : *r) {
          fuzz::require(providers::valid_object_name(o.name), "object store: only valid names are listed");
        }
      }
    } else if (op == "get") {
      check(fuzz::run_to_completion(io, [&] { return store->get(key); }));
    } else if (op == "put") {
      const std::uint8_t bytes[] = {1, 2, 3};
      check(fuzz::run_to_completion(io, [&] { return store->put(key, bytes); }));
    } else if (op == "remove") {
      check(fuzz::run_to_completion(io, [&] { return store->remove(key); }));
    }
    store.reset();  // before the io_context is drained (Drain)
    return 0;
  } else {
    return 0;
  }

  // Providers return the whole value; property selection is the caller's
  // (select_value / select_map, as the reconcilers do).
  const sync::RemoteKey ref{std::string(key), ""};
  sync::PushRef pref;
  pref.remote_key = key;
  pref.property = property;
  // Vault stores a whole-secret push as its map: the pushed value is a JSON
  // object then (ESO: the Secret's data as JSON), numbers beyond float64's
  // precision included; a property push is a string everywhere.
  const bool vault_object = provider.starts_with("vault") && property.empty();
  const auto value = kms::SecureBytes::copy_of(
      std::string_view(vault_object ? R"({"token":"fuzz-value","n":12345678901234567890})" : "fuzz-value"));
  if (pull && op == "fetch") {
    auto whole = fuzz::run_to_completion(io, [&] { return pull->fetch(ref); });
    check(whole);
    if (whole)
      check(sync::select_value(std::move(*whole), property, sync::DecodingStrategy::none, pull->value_format_of(ref)));
  } else if (pull && op == "fetch_all") {
    if (auto refused = pull->extract_refusal(ref); !refused) {
      check(refused);
      return 0;
    }
    auto whole = fuzz::run_to_completion(io, [&] { return pull->fetch(ref); });
    check(whole);
    if (!whole) return 0;
    const auto r =
        sync::select_map(std::move(*whole), property, sync::DecodingStrategy::none, pull->value_format_of(ref));
    check(r);
    if (r && provider == "vault" && property.empty()) vault_agreement(*r, answers);
  } else if (pull && op == "find") {
    // key: find.path ("-": none); property: "tag:k=v" (find.tags) or a name
    // substring standing for find.name.regexp (empty: neither).
    sync::FindRequest request;
    if (key != "-") request.path = key;
    if (property.starts_with("tag:")) {
      const std::string_view kv = std::string_view(property).substr(4);
      const auto eq = kv.find('=');
      request.tags.emplace(std::string(kv.substr(0, eq)),
                           eq == std::string_view::npos ? "" : std::string(kv.substr(eq + 1)));
    } else if (!property.empty()) {
      request.name_matches = [&property](std::string_view n) { return n.find(property) != std::string_view::npos; };
    }
    const auto r = fuzz::run_to_completion(io, [&] { return pull->find(request); });
    check(r);
    if (r && request.name_matches) {
      for (const auto& [found_name, found_value] : *r)
        fuzz::require(request.name_matches(found_name), "find: every name found matches");
    }
  } else if (pull && op == "validate") {
    check(fuzz::run_to_completion(io, [&] { return pull->validate(); }));
  } else if (push && op == "validate") {
    check(fuzz::run_to_completion(io, [&] { return push->validate(); }));
  } else if (push && op == "describe") {
    check(fuzz::run_to_completion(io, [&] { return push->describe(key); }));
  } else if (push && op == "ensure") {
    check(fuzz::run_to_completion(io, [&] { return push->ensure_managed(key); }));
  } else if (pull && op == "fetch_metadata") {
    // metadataPolicy Fetch: the metadata as a JSON object of strings (GCP:
    // {"annotations","labels"}, each null or an object of strings), read by
    // property as fetch()'s values.
    auto whole = fuzz::run_to_completion(io, [&] { return pull->fetch_metadata(ref); });
    check(whole);
    // AWS and Vault never answer not_found here (ESO's providers pass the
    // error on); GCP and Azure do for a missing secret, certificate or key
    // (ESO: NoSecretError, Azure's parseError of a 404).
    if (!whole && !provider.starts_with("gcp") && !provider.starts_with("azure"))
      fuzz::require(whole.error().code != kms::Errc::not_found, "fetch_metadata: never not_found");
    if (whole) {
      boost::system::error_code ec;
      const auto doc = boost::json::parse(kms::as_view(*whole), ec);
      fuzz::require(!ec && doc.is_object(), "fetch_metadata: a JSON object");
      const auto strings = [](const boost::json::object& o) {
        return std::all_of(o.begin(), o.end(), [](const auto& kv) { return kv.value().is_string(); });
      };
      if (provider.starts_with("gcp")) {
        const auto& o = doc.as_object();
        fuzz::require(o.size() == 2 && o.contains("annotations") && o.contains("labels"),
                      "fetch_metadata: gcp answers annotations and labels");
        for (const auto& kv : o) {
          fuzz::require(kv.value().is_null() || (kv.value().is_object() && strings(kv.value().as_object())),
                        "fetch_metadata: gcp maps of strings or null");
        }
      } else {
        fuzz::require(strings(doc.as_object()), "fetch_metadata: string values");
      }
      check(sync::select_value(std::move(*whole), property, sync::DecodingStrategy::none, pull->value_format()));
    }
  } else if (push && (op == "put" || op == "put_new")) {
    check(fuzz::run_to_completion(io, [&] { return push->put_if_changed(pref, value, op == "put_new"); }));
  } else if (push && (op == "put_md" || op == "put_md_string")) {
    // With PushSecretMetadata: AWS tags patched, description / KMS key
    // updated, the resource policy read, put or removed (its JSON compared);
    // Azure tags, contentType and expiry compared and written; GCP labels
    // (merged over the secret's) and annotations compared and patched.
    sync::PushMetadata md;
    md.tags = {{"team", "a"}, {"env", "prod"}};
    md.content_type = "application/json";
    md.expires = 1893549845;
    md.labels = {{"team", "a"}};
    md.annotations = {{"owner", "fuzz"}};
    md.merge_labels = op == "put_md_string";
    md.description = "fuzz description";
    md.kms_key_id = "alias/fuzz";
    md.push_as_string = op == "put_md_string";
    if (!md.push_as_string)
      md.resource_policy = sync::PushMetadata::ResourcePolicy{true, R"({"Version":"2012-10-17"})"};
    pref.metadata = &md;
    check(fuzz::run_to_completion(io, [&] { return push->put_if_changed(pref, value, false); }));
  } else if (push && op == "remove") {
    check(fuzz::run_to_completion(io, [&] { return push->remove(pref); }));
  }
  return 0;
}
