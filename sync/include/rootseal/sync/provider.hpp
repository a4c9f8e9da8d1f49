// rootseal::sync — the secret-store provider interfaces.
//
// A Provider reads from a store (pull: ExternalSecret data / dataFrom.extract),
// a PushProvider writes to one (PushSecret). Instances are long-lived: build
// one per store (ProviderFactory) and keep it across reconciles, so that the
// HTTP connection pool, the Vault login token (renewed before expiry, not one
// login per fetch) and the cloud access tokens are reused. All methods are
// coroutines on the executor the factory was given; they never block it and
// are safe to call concurrently. Reference parameters (RemoteKey, PushRef,
// values) must outlive the returned awaitable: fine with `co_await p->fetch(ref)`,
// not with a temporary passed to a co_spawn that runs later.
//
// Errors (kms::Error, messages safe to show, never with secret values):
//   not_found          the remote secret, its version or the property does not exist
//                      (ESO's NoSecretErr: drives deletion policy)
//   permission_denied  the store refused the credentials or the call (401/403), or
//                      PushProvider: the remote secret exists and is not managed by rootseal
//   unavailable        network, timeout, 5xx, throttled beyond the retry budget, or
//                      refused locally while the store backs off (StoreHealth)
//   invalid_argument   a bad reference (key, property, name syntax) or a bad store spec
//   bad_base64         decodingStrategy could not decode the value
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "rootseal/sync/providers/aws.hpp"
#include "rootseal/sync/providers/azure.hpp"
#include "rootseal/sync/providers/gcp.hpp"
#include "rootseal/sync/providers/vault.hpp"

namespace rootseal::sync {

template <class T>
using Task = boost::asio::awaitable<kms::Result<T>>;

// ESO remoteRef.decodingStrategy.
enum class DecodingStrategy { none, base64, base64url, auto_detect };
// Parses "None" | "Base64" | "Base64URL" | "Auto" (ESO spelling); empty = None.
kms::Result<DecodingStrategy> parse_decoding_strategy(std::string_view s);
// Applies a strategy to a value (Auto: base64 or base64url if it decodes, else unchanged).
kms::Result<kms::SecureBytes> apply_decoding(DecodingStrategy strategy, kms::SecureBytes value);

// Which remote value a Provider reads: ESO remoteRef.key and .version.
struct RemoteKey {
  std::string key;
  std::string version;  // empty = latest
};

// ESO remoteRef (ExternalSecret data[].remoteRef and dataFrom[].extract).
// Providers see only its RemoteKey; property and decodingStrategy are applied
// to the whole value by the caller, in one place for every provider
// (select_value / select_map, sync/src/secure_json.hpp).
struct RemoteRef {
  std::string key;       // Vault: path below the mount ("foo/bar"); AWS: secret name or ARN
  std::string property;  // JSON property; nested with dots ("a.b.c"), a literal key with dots wins; empty = whole value
  std::string
      version;  // Vault: KV version number; AWS: "uuid:<VersionId>" / a VersionId (uuid) / a stage ("AWSCURRENT", default); empty = latest
  DecodingStrategy decoding = DecodingStrategy::none;
  // ESO metadataPolicy Fetch: the secret's metadata (Provider::fetch_metadata)
  // stands for its value; property then names one metadata key.
  bool fetch_metadata = false;
};

// How a provider's whole value is read by `property` and dataFrom.extract:
// as ESO's provider of that kind reads it, so that the Secret bytes are the
// same (sync/src/go_json.hpp has the details).
enum class ValueFormat {
  // The value as stored (AWS SecretString or SecretBinary). property: gjson
  // (a literal key with dots first); extract: a JSON object whose strings
  // are decoded and whose other values stay as written (Go's RawMessage).
  text,
  // A JSON object Go marshalled from a map decoded with UseNumber (Vault KV's
  // data): keys sorted, numbers as written. property: a top-level key (its
  // number as written, an object marshalled) or else a gjson path; extract:
  // Go's Unmarshal into map[string]any (numbers through float64).
  go_map,
  // As text, but a property path is tried before a key with dots in it
  // (ESO's Azure Key Vault provider).
  gjson_path_first,
  // ESO's Azure Key Vault metadata (metadataPolicy Fetch): a JSON object of
  // strings, the tags and attribute.*. property: a tag by name, else
  // "<tag>.<path>", the path (as gjson_path_first) in that tag's value;
  // dataFrom.extract: see metadata_map (secure_json.hpp).
  azure_tags,
  // Bytes read whole: property is not applied (ESO's Azure provider answers a
  // certificate's DER whatever the property); dataFrom.extract is refused by
  // the provider (Provider::extract_refusal).
  whole,
};

// Key -> value (dataFrom.extract, a Secret's data). Values in locked memory.
using SecretMap = std::map<std::string, kms::SecureBytes, std::less<>>;

// ESO dataFrom[].find: which remote secrets to read, each whole value under
// its name. Providers search as ESO's provider of their kind does.
struct FindRequest {
  std::optional<std::string> path;  // Vault: below the mount; AWS: the `name` filter (a name prefix)
  // find.name.regexp compiled by the caller (Go's regexp, unanchored); empty: no find.name
  std::function<bool(std::string_view)> name_matches;
  std::map<std::string, std::string, std::less<>> tags;  // every one must match
};

class Provider {
 public:
  virtual ~Provider() = default;
  // The whole value of a remote secret (Vault: the data map as JSON; AWS:
  // SecretString or SecretBinary), as stored: no property is selected and no
  // decoding applied here.
  virtual Task<kms::SecureBytes> fetch(const RemoteKey& ref) = 0;
  // Checks that the store answers and accepts the credentials (SecretStore Ready).
  virtual Task<void> validate() = 0;
  [[nodiscard]] virtual std::string_view kind() const noexcept = 0;  // "vault", "aws", ...
  // How fetch()'s values are read by property and dataFrom.extract.
  [[nodiscard]] virtual ValueFormat value_format() const noexcept { return ValueFormat::text; }
  // How fetch(ref)'s value is read, when it depends on the key (Azure: a
  // certificate's DER is read whole); default value_format().
  [[nodiscard]] virtual ValueFormat value_format_of(const RemoteKey& /*ref*/) const noexcept { return value_format(); }
  // dataFrom.extract of ref refused before anything is read (ESO's Azure
  // GetSecretMap: certificates and keys), as invalid_argument; default none.
  [[nodiscard]] virtual kms::Result<void> extract_refusal(const RemoteKey& /*ref*/) const { return {}; }
  // dataFrom.find: name -> whole value (as fetch() returns it). not_found
  // when the search itself finds no place to look (ESO's NoSecretErr);
  // invalid_argument from providers without find.
  virtual Task<SecretMap> find(const FindRequest& request);
  // ESO metadataPolicy Fetch: the secret's metadata as the JSON object ESO's
  // provider of this kind makes of it (AWS: its tags; Vault KV v2: the system
  // metadata and custom_metadata, all strings; GCP: {"annotations","labels"}),
  // read by property and dataFrom.extract as fetch()'s values are. Errors as
  // ESO's: for AWS and Vault a missing secret is unavailable/invalid_argument,
  // never not_found (ESO's provider does not answer NoSecretErr there); for
  // GCP it is not_found (ESO's does). Providers without it: invalid_argument.
  virtual Task<kms::SecureBytes> fetch_metadata(const RemoteKey& ref);
  // How fetch_metadata()'s values are read (Azure: ValueFormat::azure_tags).
  [[nodiscard]] virtual ValueFormat metadata_format() const noexcept { return value_format(); }
};

// ESO's PushSecretMetadata (kubernetes.external-secrets.io/v1alpha1) of a
// PushSecret data[] entry: the spec fields of ESO's AWS Secrets Manager,
// Azure Key Vault and GCP Secret Manager providers. The reconciler refuses, by field name, a field
// the store's provider does not apply (`fields`). Not secret.
struct PushMetadata {
  std::vector<std::string> fields;  // the spec fields given, by their ESO names ("tags", "contentType", ...)
  std::map<std::string, std::string, std::less<>> tags;  // AWS, Azure; never "managed-by" (rootseal's own)
  // Azure Key Vault: contentType (empty: not given: the secret's own, else
  // text/plain) and expirationDate (RFC 3339) as Unix seconds (attributes.exp).
  std::string content_type;
  std::optional<std::int64_t> expires;
  // GCP Secret Manager: labels (never "managed-by") and annotations of the
  // secret; merge_labels (mergePolicy Merge): the secret's other labels kept.
  std::map<std::string, std::string, std::less<>> labels;
  std::map<std::string, std::string, std::less<>> annotations;
  bool merge_labels = false;
  std::string description;      // empty: not given (CreateSecret: rootseal's default)
  std::string kms_key_id;       // empty: not given (the account's aws/secretsmanager key)
  bool push_as_string = false;  // secretPushFormat "string"; default "binary" (ESO: SecretBinary)
  // resourcePolicy: the policy document read from its ConfigMap/Secret by the
  // reconciler (policySourceRef); BlockPublicPolicy when set.
  struct ResourcePolicy {
    std::optional<bool> block_public_policy;
    std::string policy;  // JSON; empty: the source key is empty (the policy is removed, as ESO does)
  };
  std::optional<ResourcePolicy> resource_policy;
};

// The remote end of a PushSecret data[] entry.
struct PushRef {
  std::string remote_key;  // AWS secret name, Azure secret name, GCP secret id
  std::string property;    // non-empty: the value goes into this key of a JSON object kept in the remote secret
  // The entry's PushSecretMetadata (AWS, Azure, GCP); null: none (the defaults: AWS SecretBinary, no tags of the user's).
  const PushMetadata* metadata = nullptr;
  // The sync engine sharded across hosts (docs/ha.md): the bucket of the
  // PushSecret's namespace and the epoch under which this host holds it,
  // recorded with every value written (AWS: in the version's
  // ClientRequestToken). epoch 0: one host, nothing recorded or compared.
  std::uint32_t bucket = 0;
  std::int64_t epoch = 0;
};

struct RemoteState {
  bool exists = false;
  bool managed = false;  // carries managed-by=rootseal
};

struct PushOutcome {
  bool written = false;  // false: value already current, nothing written
  bool created = false;  // the remote secret was created by this call
  std::string version;   // remote version id after the call, when the API gives one
  // Nonzero: nothing written, the remote's current value was written by a
  // newer owner of the same bucket (this epoch, larger than PushRef.epoch):
  // this host is a stale owner.
  std::int64_t newer_epoch = 0;
};

class PushProvider {
 public:
  virtual ~PushProvider() = default;
  virtual Task<RemoteState> describe(std::string_view remote_key) = 0;
  // Creates the remote secret (tagged managed-by=rootseal, no value yet where
  // the API allows) if missing; permission_denied if it exists unmanaged.
  virtual Task<RemoteState> ensure_managed(std::string_view remote_key) = 0;
  // Writes value (or merges it into ref.property) only when it differs from
  // the current remote value; creates the secret when missing; refuses
  // (permission_denied) a secret not managed by rootseal. if_not_exists: ESO
  // updatePolicy IfNotExists — an existing value is left alone.
  virtual Task<PushOutcome> put_if_changed(const PushRef& ref, const kms::SecureBytes& value,
                                           bool if_not_exists = false) = 0;
  // Deletes the remote secret if rootseal manages it (AWS: recovery window from
  // the spec). Missing: Ok. Unmanaged: permission_denied. With a property: only
  // that key is removed from the JSON object (the secret is deleted when empty).
  virtual Task<void> remove(const PushRef& ref) = 0;
  virtual Task<void> validate() = 0;
  [[nodiscard]] virtual std::string_view kind() const noexcept = 0;
};

// ---- store specs (resolved: credentials already read into SecureBytes) ----

struct TlsSpec {
  std::string ca_pem;  // PEM bundle (ESO caBundle, decoded); empty = system trust store
  std::string ca_file;
  bool insecure_skip_verify = false;  // tests only
};

// A source of short-lived JWTs: each call answers one valid for a while yet
// (a ServiceAccount token from the TokenRequest API, cached until shortly
// before it expires); `fresh`: not the cached one (the store refused it: the
// ServiceAccount may have been deleted or recreated). Errors:
// permission_denied (the ServiceAccount is missing or the request refused),
// unavailable; messages never carry a token.
using JwtSource = std::function<boost::asio::awaitable<kms::Result<kms::SecureBytes>>(bool fresh)>;

struct VaultSpec {
  std::string server;           // "https://vault:8200"
  std::string path = "secret";  // KV v2 mount
  std::string version = "v2";   // KV "v2" or "v1" (ESO's version)
  std::string namespace_;       // X-Vault-Namespace, empty = none
  TlsSpec tls;
  // Auth: token, or AppRole when role_id is set.
  kms::SecureBytes token;
  std::string approle_path = "approle";
  std::string role_id;
  kms::SecureBytes secret_id;
  // Or Kubernetes / JWT auth when jwt_auth_path is set: POST auth/<jwt_auth_path>/login
  // {"role","jwt"} with jwt_source's token, else the fixed `jwt` (a Secret's).
  std::string jwt_auth_path;  // "kubernetes", "jwt" or another mount
  std::string jwt_role;
  kms::SecureBytes jwt;
  JwtSource jwt_source;
  std::string jwt_source_id;  // who jwt_source speaks for ("ns/name aud... exp"): part of the credential fingerprint
  // Or TLS certificate auth when cert_auth_path is set: POST auth/<cert_auth_path>/login
  // {"name": cert_role} over a connection presenting this certificate (every
  // request of the store presents it, as ESO's client does).
  std::string cert_auth_path;
  std::string cert_role;
  std::string client_cert_pem;
  kms::SecureBytes client_key_pem;
  // Renew the login token when less than this fraction of its TTL is left.
  double renew_fraction = 0.5;
};

// One STS AssumeRole of a store's role chain (ESO: additionalRoles, role).
struct AwsAssumeRole {
  std::string role_arn;
  std::string external_id;                                        // "" = none
  std::vector<std::pair<std::string, std::string>> session_tags;  // key, value
  std::vector<std::string> transitive_tag_keys;
};

struct AwsSpec {
  std::string region;    // required
  std::string endpoint;  // override ("http://127.0.0.1:5000"); empty = https://secretsmanager.<region>.amazonaws.com
  kms::SecureBytes access_key_id;
  kms::SecureBytes secret_access_key;
  kms::SecureBytes session_token;  // optional
  // Or web identity (ESO auth.jwt) when web_identity_role_arn is set: STS
  // AssumeRoleWithWebIdentity with web_identity_token's JWT (a ServiceAccount
  // token), the bought credentials cached until a fifth of their lifetime is left.
  std::string web_identity_role_arn;
  std::string web_identity_session_name = "external-secrets-provider-aws";  // ESO's RoleSessionName
  JwtSource web_identity_token;
  std::string web_identity_id;  // who the token speaks for: part of the credential fingerprint
  // Then the role chain, in order: STS AssumeRole signed with the
  // credentials so far (the base ones above, or web identity's); the last
  // credentials are cached until a fifth of their lifetime is left.
  std::vector<AwsAssumeRole> assume_roles;
  std::string sts_endpoint;  // empty: https://sts.<region>.amazonaws.com
  TlsSpec tls;
  // Push:
  int recovery_window_days = 30;  // 7..30
  bool force_delete_without_recovery = false;
  double writes_per_second = 50;  // own limiter for PutSecretValue/CreateSecret/TagResource/DeleteSecret
};

struct AzureSpec {
  std::string vault_url;  // "https://myvault.vault.azure.net"
  std::string tenant_id;
  std::string client_id;
  kms::SecureBytes client_secret;
  // Or workload identity (ESO authType WorkloadIdentity) when client_assertion
  // is set: a ServiceAccount token for api://AzureADTokenExchange is the client
  // assertion of the client-credentials grant (no secret at all).
  JwtSource client_assertion;
  std::string client_assertion_id;  // who the token speaks for: part of the credential fingerprint
  std::string authority_host = "https://login.microsoftonline.com";
  std::string api_version = "7.4";
  TlsSpec tls;
  TlsSpec authority_tls;
};

struct GcpSpec {
  std::string project_id;
  kms::SecureBytes service_account_json;  // the key file: client_email, private_key, token_uri
  std::string endpoint = "https://secretmanager.googleapis.com";
  std::string token_uri;  // override of the key file's token_uri; empty = from the key file
  TlsSpec tls;
  TlsSpec token_tls;
  // Or workload identity federation when sts_audience is set: a ServiceAccount
  // token (subject_token) exchanged at STS for a federated access token, then
  // (impersonate set) IAM Credentials generateAccessToken for that Google
  // service account; both in locked memory, bought again before expiry.
  std::string sts_audience;  // "//iam.googleapis.com/projects/../providers/.." or "identitynamespace:<pool>:<provider>"
  std::string impersonate;   // service account email; empty: the STS token is used directly
  JwtSource subject_token;
  std::string subject_token_id;  // who the token speaks for: part of the credential fingerprint
  std::string sts_endpoint = "https://sts.googleapis.com";
  std::string iam_endpoint = "https://iamcredentials.googleapis.com";
};

// CyberArk Conjur (pull): REST API at `url`, authenticated with an API key
// (authn) or a JWT (authn-jwt: a ServiceAccount token or one from a Secret).
struct ConjurSpec {
  std::string url;  // "https://conjur.example.com" (an appliance URL may carry a path)
  std::string account;
  TlsSpec tls;
  // authn: login (a user or host id) and its API key.
  std::string login;
  kms::SecureBytes api_key;
  // Or authn-jwt when service_id is set: the JWT from jwt_source (fresh at
  // every authentication) or jwt; host_id optional (else Conjur maps a claim).
  std::string service_id;
  std::string host_id;
  kms::SecureBytes jwt;
  JwtSource jwt_source;
  std::string jwt_source_id;  // who jwt_source speaks for: part of the credential fingerprint
};

// The providers rootseal has: one alternative each, in the same order, for
// what a store resolves to (StoreSpec) and for the settings of a store on
// the daemon's own credentials (HostSettings, declared beside each provider
// in rootseal/sync/providers/<kind>.hpp; sync.stores.<name> in rootseald.yaml).
// Conjur, the last, has no host model (its stores carry their own identity).
using StoreSpec = std::variant<VaultSpec, AwsSpec, AzureSpec, GcpSpec, ConjurSpec>;
using HostSettings = std::variant<VaultHost, AwsHost, AzureHost, GcpHost>;

// The shared backoff of one store (sync/src/providers/store_health.hpp).
class StoreHealth;

// Builds providers on an executor. Stateless apart from the executor; cache
// the providers it returns (per store and store generation). `health`: the
// store's shared backoff (every provider of one store should get the same);
// null: the provider gets its own.
class ProviderFactory {
 public:
  explicit ProviderFactory(boost::asio::any_io_executor executor);
  // Vault or AWS; Azure/GCP as pull sources are not supported (invalid_argument).
  [[nodiscard]] kms::Result<std::shared_ptr<Provider>> make_provider(
      StoreSpec spec, std::shared_ptr<StoreHealth> health = nullptr) const;
  // AWS, Azure, GCP or Vault (KV v2 or v1); Conjur as a push target is not supported (invalid_argument).
  [[nodiscard]] kms::Result<std::shared_ptr<PushProvider>> make_push_provider(
      StoreSpec spec, std::shared_ptr<StoreHealth> health = nullptr) const;

 private:
  boost::asio::any_io_executor executor_;
};

}  // namespace rootseal::sync
