// rootseal::sync::model — typed, validated forms of the external-secrets.io
// resources rootseal serves: ExternalSecret (v1; v1beta1 read the same),
// SecretStore and ClusterSecretStore (v1/v1beta1), PushSecret (v1alpha1).
//
// Only declarations live here: no secret values ever do (a store's
// credentials are *references* to a Kubernetes Secret or to the daemon's own
// configuration). Parsing is in parse.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "rootseal/sync/provider.hpp"

namespace rootseal::sync::model {

// The remote reference is the provider interface's own type.
using sync::DecodingStrategy;
using sync::RemoteRef;

using StringMap = std::map<std::string, std::string>;

// The metadata rootseal needs from any object.
struct ObjectMeta {
  std::string name;
  std::string namespace_;  // empty for cluster-scoped objects
  std::string uid;
  std::string resource_version;
  std::int64_t generation = 0;
  StringMap labels;
  StringMap annotations;
  std::vector<std::string> finalizers;
  bool being_deleted = false;  // metadata.deletionTimestamp is set
};

enum class StoreKind { secret_store, cluster_secret_store };
std::string_view to_string(StoreKind k) noexcept;  // "SecretStore" / "ClusterSecretStore"

struct StoreRef {
  std::string name;
  StoreKind kind = StoreKind::secret_store;
  friend bool operator==(const StoreRef&, const StoreRef&) = default;
};

// --- ExternalSecret -------------------------------------------------------

enum class CreationPolicy { owner, orphan, merge, none, create_or_merge };
enum class DeletionPolicy { retain, delete_, merge };
enum class RefreshPolicy { periodic, on_change, created_once };
enum class MergePolicy { replace, merge };
std::string_view to_string(CreationPolicy p) noexcept;
std::string_view to_string(DeletionPolicy p) noexcept;

struct DataItem {
  std::string secret_key;
  RemoteRef remote_ref;
  std::optional<StoreRef> store_override;  // sourceRef.storeRef
};

// dataFrom[].rewrite[]: one operation on the keys of the extracted map (ESO's
// ExternalSecretRewrite), applied in order. Both texts come from the
// manifest; neither is secret.
struct RewriteRegexp {  // every key: Go's regexp.ReplaceAllString(key, target)
  std::string source;
  std::string target;
  friend bool operator==(const RewriteRegexp&, const RewriteRegexp&) = default;
};
struct RewriteTransform {  // every key: the template rendered over {"value": key}
  std::string template_text;
  friend bool operator==(const RewriteTransform&, const RewriteTransform&) = default;
};
struct RewriteMerge {                 // the JSON object values merged (ESO's RewriteMerge)
  std::string into;                   // strategy JSON: the key of the merged object
  std::vector<std::string> priority;  // merged last, in this order (win conflicts)
  bool ignore_not_found = false;      // priorityPolicy IgnoreNotFound (else Strict)
  bool ignore_conflicts = false;      // conflictPolicy Ignore (else Error)
  bool json = false;                  // strategy JSON (else Extract)
  friend bool operator==(const RewriteMerge&, const RewriteMerge&) = default;
};
using Rewrite = std::variant<RewriteRegexp, RewriteTransform, RewriteMerge>;

// dataFrom[].find (ESO's ExternalSecretFind): which remote secrets to read,
// each whole value under its name.
struct FindRef {
  std::optional<std::string> path;         // absent (or empty): everywhere
  std::optional<std::string> name_regexp;  // find.name.regexp (Go regexp, unanchored); absent: no find.name
  StringMap tags;
  DecodingStrategy decoding = DecodingStrategy::none;
};

struct DataFromItem {
  RemoteRef extract;  // unless find: the remote value must be a JSON object; each key becomes a Secret key
  std::optional<FindRef> find;
  std::vector<Rewrite> rewrite;
  std::optional<StoreRef> store_override;
};

// template.templateFrom[]: where each rendered template goes, and how its
// text is read (ESO's TemplateFrom, for a Secret target).
enum class TemplateTarget { data, annotations, labels };
enum class TemplateScope { values, keys_and_values };
struct TemplateFromItem {  // configMap.items[]
  std::string key;
  TemplateScope scope = TemplateScope::values;
};
struct TemplateFrom {
  TemplateTarget target = TemplateTarget::data;
  std::optional<std::string> config_map;  // configMap.name, read from the ExternalSecret's namespace
  std::vector<TemplateFromItem> items;    // configMap.items
  std::optional<std::string> literal;     // rendered as KeysAndValues
  DecodingStrategy values_decoding = DecodingStrategy::none;
};

struct SecretTemplate {
  std::optional<std::string> type;  // Secret type (Opaque, kubernetes.io/tls ...)
  // metadata.labels / annotations: templates (engine v2), rendered over the
  // provider data like data templates.
  StringMap labels;
  StringMap annotations;
  MergePolicy merge_policy = MergePolicy::replace;
  // Template text per Secret key (template.data); the text itself is not
  // secret, the values substituted into it are.
  std::map<std::string, std::string> data;
  std::vector<TemplateFrom> template_from;
};

struct Target {
  std::string name;  // defaults to the ExternalSecret's name
  CreationPolicy creation = CreationPolicy::owner;
  DeletionPolicy deletion = DeletionPolicy::retain;
  std::optional<SecretTemplate> template_;
  bool immutable = false;
};

struct ExternalSecretStatus {
  std::string refresh_time;  // RFC 3339, as last written
  std::string synced_resource_version;
  std::string ready_status;  // "True"/"False"/"" of the Ready condition
  std::string ready_reason;
  std::string ready_message;
  std::string ready_transition;
  std::string binding_name;
};

struct ExternalSecret {
  std::string api_version;  // as read (v1 or v1beta1)
  ObjectMeta meta;
  StoreRef store_ref;
  bool has_store_ref = false;  // every item may carry its own sourceRef instead
  Target target;
  RefreshPolicy refresh_policy = RefreshPolicy::periodic;
  std::chrono::nanoseconds refresh_interval = std::chrono::hours(1);  // 0 = sync once
  std::vector<DataItem> data;
  std::vector<DataFromItem> data_from;
  ExternalSecretStatus status;
};

// --- SecretStore / ClusterSecretStore -------------------------------------

// A key of a Kubernetes Secret (ESO's SecretKeySelector). namespace_ is only
// honoured for ClusterSecretStores; a SecretStore reads its own namespace.
struct SecretKeyRef {
  std::string name;
  std::string key;
  std::string namespace_;
  friend bool operator==(const SecretKeyRef&, const SecretKeyRef&) = default;
};

// ESO's ServiceAccountSelector: a ServiceAccount whose token (TokenRequest
// API) is the store's identity. namespace_: only a ClusterSecretStore may
// name another namespace; empty = the namespace of the ExternalSecret (a
// ClusterSecretStore, "referent" auth) or of the SecretStore.
struct ServiceAccountRef {
  std::string name;
  std::string namespace_;
  std::vector<std::string> audiences;  // added to the token's audiences
  friend bool operator==(const ServiceAccountRef&, const ServiceAccountRef&) = default;
};

// ESO's namespace rule for a serviceAccountRef (ValidateReferentServiceAccountSelector).
inline constexpr std::string_view kMsgServiceAccountNamespace =
    "namespace should either be empty or match the namespace of the SecretStore for a namespaced SecretStore";

struct VaultAuth {
  enum class Kind { token, app_role, host, kubernetes, jwt, cert } kind = Kind::token;
  // kind kubernetes (ESO auth.kubernetes: mountPath, role) and jwt (ESO
  // auth.jwt: path, role): the JWT is a ServiceAccount token (has_service_account)
  // or a key of a Secret (jwt_secret_ref).
  std::string login_path;  // the auth mount: "kubernetes" / "jwt" by default
  std::string role;
  bool has_service_account = false;
  ServiceAccountRef service_account;
  std::vector<std::string> token_audiences;     // jwt: kubernetesServiceAccountToken.audiences (default ["vault"])
  std::int64_t token_expiration_seconds = 600;  // ESO's 600 unless jwt's expirationSeconds says otherwise
  SecretKeyRef jwt_secret_ref;
  // kind cert (ESO auth.cert: path, vaultRole): a TLS client certificate and its key from Secrets.
  SecretKeyRef client_cert_ref;          // clientCert
  SecretKeyRef client_key_ref;           // secretRef
  SecretKeyRef token_secret_ref;         // kind token
  std::string approle_path = "approle";  // kind app_role: the auth mount
  std::string role_id;
  SecretKeyRef role_id_ref;    // roleRef (alternative to role_id)
  SecretKeyRef secret_id_ref;  // secretRef
};

struct VaultProviderSpec {
  std::string server;
  std::string path;            // the KV mount ("secret"); may be empty when keys carry it
  std::string version = "v2";  // only v2 is served
  std::string namespace_;      // X-Vault-Namespace
  std::string ca_bundle;       // PEM (base64-decoded caBundle), not secret
  VaultAuth auth;
};

struct AwsProviderSpec {
  std::string service = "SecretsManager";
  std::string region;
  // ESO's role chain: each of additional_roles assumed in order (STS
  // AssumeRole with the credentials so far), then role with external_id and
  // the session tags.
  std::vector<std::string> additional_roles;
  std::string role;
  std::string external_id;
  std::vector<std::pair<std::string, std::string>> session_tags;  // key, value
  std::vector<std::string> transitive_tag_keys;
  SecretKeyRef access_key_id_ref;
  SecretKeyRef secret_access_key_ref;
  SecretKeyRef session_token_ref;  // optional
  bool has_secret_ref = false;     // false: host credentials (annotation) or auth.jwt are required
  // auth.jwt.serviceAccountRef: web identity (STS AssumeRoleWithWebIdentity
  // with the ServiceAccount's token, the role from its eks.amazonaws.com/role-arn annotation).
  bool has_jwt = false;
  ServiceAccountRef jwt_service_account;
  // secretsManager{recoveryWindowInDays, forceDeleteWithoutRecovery} (push: deletionPolicy Delete)
  int recovery_window_days = 30;  // 7..30
  bool force_delete_without_recovery = false;
};

// ESO azurekv. authType ServicePrincipal with
// authSecretRef{clientId, clientSecret}; the authority follows environmentType.
struct AzureProviderSpec {
  std::string vault_url;  // https://<name>.vault.azure.net
  std::string tenant_id;
  std::string environment_type = "PublicCloud";                      // PublicCloud | USGovernmentCloud | ChinaCloud
  std::string authority_host = "https://login.microsoftonline.com";  // from environment_type
  SecretKeyRef client_id_ref;
  SecretKeyRef client_secret_ref;
  bool has_secret_ref = false;  // false: host credentials (annotation) or workload identity are required
  // authType WorkloadIdentity: serviceAccountRef's token is the client
  // assertion; the client id from authSecretRef.clientId (has_client_id_ref)
  // or the ServiceAccount's azure.workload.identity/client-id annotation,
  // the tenant from tenantId or its azure.workload.identity/tenant-id (ESO's rules).
  bool workload_identity = false;
  bool has_client_id_ref = false;
  ServiceAccountRef service_account;
};

// ESO gcpsm: the service-account key JSON in
// auth.secretRef.secretAccessKeySecretRef.
struct GcpProviderSpec {
  std::string project_id;  // may be empty with host credentials (the configured project is used)
  SecretKeyRef service_account_ref;
  bool has_secret_ref = false;
  // auth.workloadIdentity (GKE's identity pool: clusterProjectID, clusterLocation,
  // clusterName) or auth.workloadIdentityFederation (serviceAccountRef +
  // audience of a workload identity pool provider, gcpServiceAccountEmail):
  // the ServiceAccount's token exchanged at STS, then impersonating the
  // Google service account (gcpServiceAccountEmail, else the ServiceAccount's
  // iam.gke.io/gcp-service-account annotation) if any.
  enum class Federation { none, gke, pool };
  Federation federation = Federation::none;
  ServiceAccountRef service_account;
  std::string cluster_project_id, cluster_location, cluster_name;  // gke
  std::string audience;                                            // pool
  std::string service_account_email;                               // pool: gcpServiceAccountEmail
};

// ESO conjur: url, caBundle, auth.apikey {account, userRef, apiKeyRef} or
// auth.jwt {account, serviceID, hostId, serviceAccountRef | secretRef}.
struct ConjurProviderSpec {
  std::string url;
  std::string ca_bundle;  // PEM
  std::string account;
  bool jwt = false;
  SecretKeyRef user_ref, api_key_ref;  // apikey
  std::string service_id, host_id;     // jwt
  bool has_service_account = false;
  ServiceAccountRef service_account;
  SecretKeyRef jwt_secret_ref;
};

// Namespace conditions of a ClusterSecretStore (all entries are ORed; within
// one entry, the fields that are set are ANDed — ESO's semantics).
struct LabelSelectorRequirement {
  std::string key;
  std::string op;  // In, NotIn, Exists, DoesNotExist
  std::vector<std::string> values;
};
struct LabelSelector {
  StringMap match_labels;
  std::vector<LabelSelectorRequirement> match_expressions;
  [[nodiscard]] bool empty() const { return match_labels.empty() && match_expressions.empty(); }
};
bool matches(const LabelSelector& sel, const StringMap& labels);

struct ClusterStoreCondition {
  std::optional<LabelSelector> namespace_selector;
  std::vector<std::string> namespaces;
  std::vector<std::string> namespace_regexes;  // unanchored search (Go regexp.MatchString)
};

// The annotation of rootseal's host-model extension: the store's credentials
// (and endpoint defaults) come from the daemon's own configuration
// (`sync.stores.<name>`), not from a Kubernetes Secret.
inline constexpr std::string_view kHostCredentialsAnnotation = "sync.rootseal.io/credentials";

struct SecretStore {
  ObjectMeta meta;
  StoreKind kind = StoreKind::secret_store;
  enum class Provider { vault, aws, azurekv, gcpsm, conjur } provider = Provider::vault;
  VaultProviderSpec vault;
  AwsProviderSpec aws;
  AzureProviderSpec azurekv;
  ConjurProviderSpec conjur;
  GcpProviderSpec gcpsm;
  std::string host_credentials;                   // kHostCredentialsAnnotation's value; empty = none
  std::vector<ClusterStoreCondition> conditions;  // ClusterSecretStore only
};
std::string_view to_string(SecretStore::Provider p) noexcept;  // ESO's provider key: "vault", "aws", "azurekv", "gcpsm"

// --- PushSecret (v1alpha1) -------------------------------------------------

enum class UpdatePolicy { replace, if_not_exists };
enum class PushDeletionPolicy { none, delete_ };

struct PushStoreRef {
  std::string name;
  StoreKind kind = StoreKind::secret_store;
};

// data[].metadata's apiVersion (kind PushSecretMetadata), and the tag key
// rootseal's own marker takes (never one of the user's tags).
inline constexpr std::string_view kPushSecretMetadataApiVersion = "kubernetes.external-secrets.io/v1alpha1";
inline constexpr std::string_view kManagedByTag = "managed-by";

// PushSecretMetadata spec.resourcePolicy.policySourceRef (AWS): where the
// policy document is, in the PushSecret's namespace.
struct PolicySourceRef {
  bool secret = false;  // kind Secret; else ConfigMap
  std::string name;
  std::string key;
};

struct PushMatch {
  std::string secret_key;  // empty: the whole source Secret as a JSON object
  std::string remote_key;
  std::string property;  // empty: the value itself; else a JSON object key in the remote secret
  // data[].metadata (PushSecretMetadata, AWS's fields); resource_policy's
  // policy is read from policy_source by the reconciler at each push.
  std::optional<sync::PushMetadata> metadata;
  std::optional<PolicySourceRef> policy_source;
};

// The rootseal extension `selector.remoteRef`: the source is a remote key of
// a SecretStore (store-to-cloud push, no Kubernetes Secret in between).
struct PushRemoteSource {
  StoreRef store;
  RemoteRef ref;
};

struct PushSecret {
  ObjectMeta meta;
  std::vector<PushStoreRef> store_refs;
  std::string source_secret;                      // selector.secret.name
  std::optional<PushRemoteSource> source_remote;  // selector.remoteRef (extension)
  std::vector<PushMatch> data;
  UpdatePolicy update_policy = UpdatePolicy::replace;
  PushDeletionPolicy deletion_policy = PushDeletionPolicy::none;
  std::chrono::nanoseconds refresh_interval = std::chrono::hours(1);
  // spec.template (ESO's ExternalSecretTemplate): applied to the source
  // Secret's data in memory before the push, always by engine v2 and over
  // every source key (ESO ignores engineVersion and mergePolicy here).
  std::optional<SecretTemplate> template_;
};

inline constexpr std::string_view kPushSecretFinalizer = "pushsecret.externalsecrets.io/finalizer";

}  // namespace rootseal::sync::model
