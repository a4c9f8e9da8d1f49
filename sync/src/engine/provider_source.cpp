#include "engine/provider_source.hpp"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "rootseal/kms/error.hpp"
#include "reconcile/eso_meta.hpp"
#include "reconcile/store_resolver.hpp"
#include "rootseal/kms/encoding.hpp"
#include "secure_buffer.hpp"

namespace rootseal::sync::engine {

using kms::Errc;
using kms::fail;

namespace {

std::string store_id(const model::SecretStore& s) {
  return std::string(model::to_string(s.kind)) + "/" + s.meta.namespace_ + "/" + s.meta.name;
}

std::string fingerprint(const StoreSpec& spec) {
  SecureBuffer buf(256);
  auto add = [&](const kms::SecureBytes& b) {
    buf.append(std::to_string(b.size()));
    buf.push_back(':');
    buf.append(b.span());
  };
  std::visit(
      [&](const auto& s) {
        using T = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<T, VaultSpec>) {
          add(s.token);
          add(s.secret_id);
          buf.append(s.role_id);
          add(s.jwt);
          buf.push_back('|');
          buf.append(s.jwt_source_id);
          buf.push_back('|');
          buf.append(s.jwt_role);
          buf.push_back('|');
          buf.append(s.jwt_auth_path);
          buf.push_back('|');
          buf.append(s.client_cert_pem);
          add(s.client_key_pem);
        } else if constexpr (std::is_same_v<T, AwsSpec>) {
          add(s.access_key_id);
          add(s.secret_access_key);
          add(s.session_token);
          buf.append(s.web_identity_id);
          for (const auto& r : s.assume_roles) {  // another role chain: other credentials
            buf.push_back('|');
            buf.append(r.role_arn);
            buf.push_back('|');
            buf.append(r.external_id);
            for (const auto& [k, v] : r.session_tags) {
              buf.push_back('|');
              buf.append(k);
              buf.push_back('=');
              buf.append(v);
            }
            for (const auto& k : r.transitive_tag_keys) {
              buf.push_back('|');
              buf.append(k);
            }
          }
        } else if constexpr (std::is_same_v<T, AzureSpec>) {
          add(s.client_secret);
          buf.append(s.client_id);  // from a Secret too: a new application id needs a new token
          buf.push_back('|');
          buf.append(s.tenant_id);
          buf.push_back('|');
          buf.append(s.client_assertion_id);
        } else if constexpr (std::is_same_v<T, GcpSpec>) {
          add(s.service_account_json);
          buf.append(s.subject_token_id);
        } else {
          add(s.api_key);
          add(s.jwt);
          buf.append(s.login);
          buf.push_back('|');
          buf.append(s.jwt_source_id);
        }
      },
      spec);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(buf.span().data(), buf.size(), md, &len, EVP_sha256(), nullptr);
  return kms::hex_encode(std::span<const std::uint8_t>(md, len));
}

// The settings of host store `host` as kind H (the store's provider), or why not.
template <class H>
kms::Result<const H*> host_settings(const HostStoreConfig& host) {
  const H* h = std::get_if<H>(&host.settings);
  if (h == nullptr)
    return fail(Errc::invalid_argument, "host credentials '" + host.name + "' are not for " + std::string(H::kind));
  return h;
}

}  // namespace

EngineProviders::EngineProviders(reconcile::KubeApi& api, ProviderFactory factory,
                                 std::map<std::string, HostStoreConfig> host,
                                 std::filesystem::path credentials_directory, std::chrono::seconds recheck,
                                 StoreHealthOptions health)
    : api_(api),
      factory_(std::move(factory)),
      host_(std::move(host)),
      cred_dir_(std::move(credentials_directory)),
      recheck_(recheck),
      health_options_(health),
      sa_tokens_(std::make_shared<ServiceAccountTokens>(api)) {}

ServiceAccountTokens::Key EngineProviders::token_key(const model::SecretStore& store,
                                                     const model::ServiceAccountRef& ref, std::string_view ns,
                                                     std::vector<std::string> extra_audiences,
                                                     std::int64_t expiration_seconds) {
  ServiceAccountTokens::Key k;
  k.name = ref.name;
  // A SecretStore's ref carries the store's namespace (model parse); a
  // ClusterSecretStore's its own, or else the ExternalSecret's.
  k.ns = !ref.namespace_.empty() ? ref.namespace_ : std::string(ns);
  k.audiences = ref.audiences;
  k.audiences.insert(k.audiences.end(), extra_audiences.begin(), extra_audiences.end());
  k.expiration_seconds = expiration_seconds;
  if (store.kind == model::StoreKind::secret_store) k.ns = store.meta.namespace_;
  return k;
}

std::shared_ptr<StoreHealth> EngineProviders::health(const std::string& store_id) {
  std::lock_guard lock(mu_);
  auto& h = health_[store_id];
  if (!h) {
    h = std::make_shared<StoreHealth>(store_id, health_options_);
    if (recovered_) h->on_recovered([cb = recovered_, store_id] { cb(store_id); });
    if (backing_off_) h->on_backing_off([cb = backing_off_, store_id](const std::string& why) { cb(store_id, why); });
  }
  return h;
}

std::shared_ptr<StoreHealth> EngineProviders::find_health(const std::string& store_id) const {
  std::lock_guard lock(mu_);
  auto it = health_.find(store_id);
  return it == health_.end() ? nullptr : it->second;
}

void EngineProviders::forget_health(const std::string& store_id) {
  std::lock_guard lock(mu_);
  health_.erase(store_id);
}

std::vector<std::pair<std::string, StoreHealth::Snapshot>> EngineProviders::health_snapshots() const {
  std::vector<std::shared_ptr<StoreHealth>> all;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, h] : health_) all.push_back(h);
  }
  std::vector<std::pair<std::string, StoreHealth::Snapshot>> out;
  out.reserve(all.size());
  for (const auto& h : all) out.emplace_back(h->name(), h->snapshot());
  return out;
}

kms::Result<kms::SecureBytes> EngineProviders::read_credential(const CredentialRef& ref,
                                                               const std::filesystem::path& cred_dir,
                                                               std::string_view what) {
  std::filesystem::path path = ref.file;
  if (path.empty()) {
    std::filesystem::path dir = cred_dir;
    if (dir.empty()) {
      const char* env = std::getenv("CREDENTIALS_DIRECTORY");
      if (env == nullptr) {
        return fail(Errc::invalid_argument, std::string(what) + ": systemd credential '" + ref.credential +
                                                "' requested but $CREDENTIALS_DIRECTORY is not set");
      }
      dir = env;
    }
    path = dir / ref.credential;
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return fail(Errc::permission_denied, std::string(what) + ": cannot open " + path.string());
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail(Errc::invalid_argument, std::string(what) + ": " + path.string() + " is not a regular file");
  }
  if (ref.credential.empty() && (st.st_mode & 077) != 0) {
    ::close(fd);
    return fail(Errc::permission_denied,
                std::string(what) + ": " + path.string() + " is readable by group or others (chmod 600)");
  }
  if (st.st_size > (1 << 20)) {
    ::close(fd);
    return fail(Errc::invalid_argument, std::string(what) + ": " + path.string() + " is larger than 1 MiB");
  }
  kms::SecureBytes buf(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < buf.size()) {
    const auto n = ::read(fd, buf.data() + got, buf.size() - got);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  while (got > 0 && (buf.data()[got - 1] == '\n' || buf.data()[got - 1] == '\r')) --got;
  buf.truncate(got);
  if (buf.empty()) return fail(Errc::invalid_argument, std::string(what) + ": " + path.string() + " is empty");
  return buf;
}

Task<kms::SecureBytes> EngineProviders::secret_key(const model::SecretKeyRef& ref, std::string_view store_ns) {
  std::string ns = ref.namespace_;
  if (ns.empty()) ns = std::string(store_ns);
  auto obj = co_await api_.secret(ns, ref.name);
  if (!obj) co_return std::unexpected(obj.error());
  if (!*obj) co_return fail(Errc::not_found, "credential Secret " + ns + "/" + ref.name + " not found");
  auto data = reconcile::secret_data(**obj);
  if (!data) co_return std::unexpected(data.error());
  auto it = data->find(ref.key);
  if (it == data->end())
    co_return fail(Errc::not_found, "credential Secret " + ns + "/" + ref.name + " has no key '" + ref.key + "'");
  co_return std::move(it->second);
}

Task<model::StringMap> EngineProviders::service_account_annotations(const ServiceAccountTokens::Key& key) {
  auto sa = co_await api_.service_account(key.ns, key.name);
  if (!sa) co_return std::unexpected(sa.error());
  if (!*sa) {
    co_return fail(Errc::permission_denied,
                   "serviceaccounts \"" + key.name + "\" not found (namespace " + key.ns + ")");
  }
  model::StringMap out;
  const auto* md = (*sa)->as_object().if_contains("metadata");
  const auto* ann = md != nullptr && md->is_object() ? md->as_object().if_contains("annotations") : nullptr;
  if (ann != nullptr && ann->is_object()) {
    for (const auto& [k, v] : ann->as_object()) {
      if (v.is_string()) out[std::string(k)] = std::string(v.as_string());
    }
  }
  co_return out;
}

// Host credentials: the vault URL, tenant, client id and authority come from
// rootseald's configuration; a store that names another vault is refused (it
// could otherwise send the host's token elsewhere).
Task<StoreSpec> EngineProviders::azure_spec(const model::SecretStore& store, const HostStoreConfig* host,
                                            std::string_view ns) {
  const auto& z = store.azurekv;
  AzureSpec a;
  a.vault_url = z.vault_url;
  a.tenant_id = z.tenant_id;
  a.authority_host = azure_authority_host_.empty() ? z.authority_host : azure_authority_host_;
  if (host != nullptr) {
    ROOTSEAL_CO_LET(settings, host_settings<AzureHost>(*host));
    const AzureHost& h = *settings;
    if (!h.vault_url.empty()) {
      std::string want = h.vault_url;
      while (want.ends_with('/')) want.pop_back();
      if (z.vault_url != want) {
        co_return fail(Errc::permission_denied, "spec.provider.azurekv.vaultUrl must be " + want +
                                                    " to use host credentials '" + host->name + "'");
      }
    }
    if (!z.tenant_id.empty() && z.tenant_id != h.tenant_id) {
      co_return fail(Errc::permission_denied, "spec.provider.azurekv.tenantId must be " + h.tenant_id +
                                                  " (or empty) to use host credentials '" + host->name + "'");
    }
    a.tenant_id = h.tenant_id;
    a.client_id = h.client_id;
    a.authority_host = h.authority_host.empty() ? std::string("https://login.microsoftonline.com") : h.authority_host;
    if (!host->ca_file.empty()) {
      a.tls.ca_file = host->ca_file.string();
      a.authority_tls.ca_file = host->ca_file.string();
    }
    ROOTSEAL_CO_LET(cs, read_credential(h.client_secret, cred_dir_, "sync.stores." + host->name + ".client_secret"));
    a.client_secret = std::move(cs);
    co_return StoreSpec(std::move(a));
  }
  std::string client_id;
  if (z.has_client_id_ref) {
    auto id = co_await secret_key(z.client_id_ref, store.meta.namespace_);
    if (!id) co_return std::unexpected(id.error());
    client_id.assign(reinterpret_cast<const char*>(id->data()), id->size());  // an application id, not a secret
  }
  if (z.workload_identity) {
    // ESO's authorizerForWorkloadIdentity: the client id from authSecretRef or
    // the ServiceAccount's annotation (not both), the tenant from tenantId or
    // the annotation (not both); a token for api://AzureADTokenExchange + the
    // ref's audiences, the server's expiry.
    auto key = token_key(store, z.service_account, ns, {}, 0);
    ROOTSEAL_CO_LET(ann, co_await service_account_annotations(key));
    if (const auto it = ann.find("azure.workload.identity/client-id"); it != ann.end()) {
      if (!client_id.empty())
        co_return fail(Errc::invalid_argument, "multiple clientID found. Check secretRef and serviceAccountRef");
      client_id = it->second;
    }
    if (client_id.empty()) {
      co_return fail(Errc::permission_denied,
                     "missing clientID: either serviceAccountRef or service account "
                     "annotation 'azure.workload.identity/client-id' is missing");
    }
    if (const auto it = ann.find("azure.workload.identity/tenant-id"); it != ann.end()) {
      if (!a.tenant_id.empty()) {
        co_return fail(Errc::invalid_argument,
                       "multiple tenantID found. Check secretRef, "
                       "'spec.provider.azurekv.tenantId', and serviceAccountRef");
      }
      a.tenant_id = it->second;
    }
    if (a.tenant_id.empty()) co_return fail(Errc::invalid_argument, "missing tenantID in store config");
    key.audiences.insert(key.audiences.begin(), "api://AzureADTokenExchange");
    a.client_id = std::move(client_id);
    a.client_assertion_id = key.id() + " " + a.client_id + "@" + a.tenant_id;
    a.client_assertion = sa_tokens_->source(std::move(key));
    co_return StoreSpec(std::move(a));
  }
  a.client_id = std::move(client_id);
  auto cs = co_await secret_key(z.client_secret_ref, store.meta.namespace_);
  if (!cs) co_return std::unexpected(cs.error());
  a.client_secret = std::move(*cs);
  co_return StoreSpec(std::move(a));
}

// Host credentials: project, Secret Manager endpoint and token URI from the
// configuration (the store's projectID, when set, must match).
Task<StoreSpec> EngineProviders::gcp_spec(const model::SecretStore& store, const HostStoreConfig* host,
                                          std::string_view ns) {
  const auto& g = store.gcpsm;
  GcpSpec s;
  s.project_id = g.project_id;
  if (host != nullptr) {
    ROOTSEAL_CO_LET(settings, host_settings<GcpHost>(*host));
    const GcpHost& h = *settings;
    if (!g.project_id.empty() && g.project_id != h.project_id) {
      co_return fail(Errc::permission_denied, "spec.provider.gcpsm.projectID must be " + h.project_id +
                                                  " (or empty) to use host credentials '" + host->name + "'");
    }
    s.project_id = h.project_id;
    if (!h.gcp_endpoint.empty()) s.endpoint = h.gcp_endpoint;
    s.token_uri = h.token_uri;
    if (!host->ca_file.empty()) {
      s.tls.ca_file = host->ca_file.string();
      s.token_tls.ca_file = host->ca_file.string();
    }
    ROOTSEAL_CO_LET(
        key, read_credential(h.service_account_json, cred_dir_, "sync.stores." + host->name + ".service_account_json"));
    s.service_account_json = std::move(key);
    co_return StoreSpec(std::move(s));
  }
  if (!gcp_endpoint_.empty()) s.endpoint = gcp_endpoint_;
  if (g.federation != model::GcpProviderSpec::Federation::none) {
    // ESO: workloadIdentity asks for a 15-minute token for the cluster's
    // identity pool (+ the ref's audiences) and exchanges it for the pool's
    // identity namespace; workloadIdentityFederation asks for the ref's
    // audiences only and exchanges it for `audience`. Either impersonates
    // gcpServiceAccountEmail or the ServiceAccount's iam.gke.io/gcp-service-account.
    const bool gke = g.federation == model::GcpProviderSpec::Federation::gke;
    const std::string pool = g.cluster_project_id + ".svc.id.goog";
    auto key = token_key(store, g.service_account, ns, {}, 900);
    if (gke) key.audiences.insert(key.audiences.begin(), pool);
    ROOTSEAL_CO_LET(ann, co_await service_account_annotations(key));
    s.impersonate = g.service_account_email.empty() ? ann["iam.gke.io/gcp-service-account"] : g.service_account_email;
    s.sts_audience = gke ? "identitynamespace:" + pool + ":https://container.googleapis.com/v1/projects/" +
                               g.cluster_project_id + "/locations/" + g.cluster_location + "/clusters/" + g.cluster_name
                         : g.audience;
    if (!gcp_sts_endpoint_.empty()) s.sts_endpoint = gcp_sts_endpoint_;
    if (!gcp_iam_endpoint_.empty()) s.iam_endpoint = gcp_iam_endpoint_;
    s.subject_token_id = key.id() + " " + s.sts_audience + " " + s.impersonate;
    s.subject_token = sa_tokens_->source(std::move(key));
    co_return StoreSpec(std::move(s));
  }
  auto key = co_await secret_key(g.service_account_ref, store.meta.namespace_);
  if (!key) co_return std::unexpected(key.error());
  s.service_account_json = std::move(*key);
  co_return StoreSpec(std::move(s));
}

// Host credentials: a token, or an AppRole, from the configuration; a store
// that names another Vault server is refused (it could otherwise send the
// host's token elsewhere). Otherwise a token or AppRole from Kubernetes Secrets.
Task<StoreSpec> EngineProviders::vault_spec(const model::SecretStore& store, const HostStoreConfig* host,
                                            std::string_view ns) {
  const std::string store_ns = store.meta.namespace_;
  VaultSpec v;
  v.server = store.vault.server;
  v.path = store.vault.path;
  if (v.path.empty()) v.path = "secret";
  v.version = store.vault.version;
  v.namespace_ = store.vault.namespace_;
  v.tls.ca_pem = store.vault.ca_bundle;
  if (host != nullptr) {
    ROOTSEAL_CO_LET(settings, host_settings<VaultHost>(*host));
    const VaultHost& h = *settings;
    if (!h.server.empty() && store.vault.server != h.server) {
      co_return fail(Errc::permission_denied, "spec.provider.vault.server must be " + h.server +
                                                  " to use host credentials '" + host->name + "'");
    }
    if (!h.vault_namespace.empty()) v.namespace_ = h.vault_namespace;
    if (!host->ca_file.empty()) v.tls.ca_file = host->ca_file.string();
    if (h.token.set()) {
      ROOTSEAL_CO_LET(t, read_credential(h.token, cred_dir_, "sync.stores." + host->name + ".token"));
      v.token = std::move(t);
    } else {
      v.approle_path = h.approle_path;
      v.role_id = h.role_id;
      ROOTSEAL_CO_LET(sid, read_credential(h.secret_id, cred_dir_, "sync.stores." + host->name + ".secret_id"));
      v.secret_id = std::move(sid);
    }
    co_return StoreSpec(std::move(v));
  }
  const auto& a = store.vault.auth;
  if (a.kind == model::VaultAuth::Kind::token) {
    auto t = co_await secret_key(a.token_secret_ref, store_ns);
    if (!t) co_return std::unexpected(t.error());
    v.token = std::move(*t);
  } else if (a.kind == model::VaultAuth::Kind::app_role) {
    v.approle_path = a.approle_path;
    v.role_id = a.role_id;
    if (v.role_id.empty()) {
      auto r = co_await secret_key(a.role_id_ref, store_ns);
      if (!r) co_return std::unexpected(r.error());
      v.role_id.assign(reinterpret_cast<const char*>(r->data()),
                       r->size());  // a role id is an identifier, not a secret
    }
    auto s = co_await secret_key(a.secret_id_ref, store_ns);
    if (!s) co_return std::unexpected(s.error());
    v.secret_id = std::move(*s);
  } else if (a.kind == model::VaultAuth::Kind::cert) {
    v.cert_auth_path = a.login_path;
    v.cert_role = a.role;
    auto c = co_await secret_key(a.client_cert_ref, store_ns);
    if (!c) co_return std::unexpected(c.error());
    v.client_cert_pem.assign(reinterpret_cast<const char*>(c->data()), c->size());  // a certificate is public
    auto k = co_await secret_key(a.client_key_ref, store_ns);
    if (!k) co_return std::unexpected(k.error());
    v.client_key_pem = std::move(*k);
  } else if (a.kind == model::VaultAuth::Kind::kubernetes || a.kind == model::VaultAuth::Kind::jwt) {
    v.jwt_auth_path = a.login_path;
    v.jwt_role = a.role;
    if (a.has_service_account) {
      // ESO: kubernetes asks for the serviceAccountRef's audiences only, jwt
      // adds kubernetesServiceAccountToken.audiences ("vault"); both 600 s unless set.
      auto key = token_key(store, a.service_account, ns,
                           a.kind == model::VaultAuth::Kind::jwt ? a.token_audiences : std::vector<std::string>{},
                           a.token_expiration_seconds);
      v.jwt_source_id = key.id();
      v.jwt_source = sa_tokens_->source(std::move(key));
    } else {
      auto t = co_await secret_key(a.jwt_secret_ref, store_ns);
      if (!t) co_return std::unexpected(t.error());
      v.jwt = std::move(*t);
    }
  } else {
    co_return fail(Errc::invalid_argument, "vault store has no usable auth");
  }
  co_return StoreSpec(std::move(v));
}

// Host credentials: access keys (and a session token) and the endpoint from
// the configuration (the store's region, when the host sets one, must match).
// Otherwise the keys from Kubernetes Secrets, and sync.aws_endpoint (if set).
Task<StoreSpec> EngineProviders::aws_spec(const model::SecretStore& store, const HostStoreConfig* host,
                                          std::string_view ns) {
  const std::string store_ns = store.meta.namespace_;
  AwsSpec a;
  a.region = store.aws.region;
  a.recovery_window_days = store.aws.recovery_window_days;
  a.force_delete_without_recovery = store.aws.force_delete_without_recovery;
  // The role chain, on whichever credentials come first (ESO's createConfiguration).
  for (const auto& r : store.aws.additional_roles) a.assume_roles.push_back(AwsAssumeRole{r, {}, {}, {}});
  if (!store.aws.role.empty()) {
    a.assume_roles.push_back(
        AwsAssumeRole{store.aws.role, store.aws.external_id, store.aws.session_tags, store.aws.transitive_tag_keys});
  }
  if (host != nullptr) {
    ROOTSEAL_CO_LET(settings, host_settings<AwsHost>(*host));
    const AwsHost& h = *settings;
    if (!h.region.empty() && h.region != a.region) {
      co_return fail(Errc::permission_denied,
                     "spec.provider.aws.region must be " + h.region + " to use host credentials '" + host->name + "'");
    }
    a.endpoint = h.endpoint;
    a.sts_endpoint = h.endpoint;  // a test endpoint serves STS too; empty: AWS's regional STS
    if (!host->ca_file.empty()) a.tls.ca_file = host->ca_file.string();
    ROOTSEAL_CO_LET(id, read_credential(h.access_key_id, cred_dir_, "sync.stores." + host->name + ".access_key_id"));
    ROOTSEAL_CO_LET(
        sk, read_credential(h.secret_access_key, cred_dir_, "sync.stores." + host->name + ".secret_access_key"));
    a.access_key_id = std::move(id);
    a.secret_access_key = std::move(sk);
    if (h.session_token.set()) {
      ROOTSEAL_CO_LET(st, read_credential(h.session_token, cred_dir_, "sync.stores." + host->name + ".session_token"));
      a.session_token = std::move(st);
    }
    co_return StoreSpec(std::move(a));
  }
  a.endpoint = aws_endpoint_;
  a.sts_endpoint = aws_endpoint_;  // a test endpoint (moto, LocalStack) serves STS too; else AWS's regional STS
  if (store.aws.has_jwt) {
    // ESO's credsFromServiceAccount: the role from the ServiceAccount's
    // annotation, the token for eks.amazonaws.com/audience (default
    // sts.amazonaws.com) + the serviceAccountRef's audiences, the server's expiry.
    auto key = token_key(store, store.aws.jwt_service_account, ns, {}, 0);
    ROOTSEAL_CO_LET(ann, co_await service_account_annotations(key));
    const std::string role = ann["eks.amazonaws.com/role-arn"];
    const std::string audience = ann["eks.amazonaws.com/audience"];
    if (role.empty()) {
      co_return fail(Errc::permission_denied, "an IAM role must be associated with service account " + key.name +
                                                  " (namespace: " + key.ns + ")");
    }
    key.audiences.insert(key.audiences.begin(), audience.empty() ? std::string("sts.amazonaws.com") : audience);
    a.web_identity_role_arn = role;
    a.web_identity_id = key.id() + " " + role;
    a.web_identity_token = sa_tokens_->source(std::move(key));
    co_return StoreSpec(std::move(a));
  }
  auto id = co_await secret_key(store.aws.access_key_id_ref, store_ns);
  if (!id) co_return std::unexpected(id.error());
  auto sk = co_await secret_key(store.aws.secret_access_key_ref, store_ns);
  if (!sk) co_return std::unexpected(sk.error());
  a.access_key_id = std::move(*id);
  a.secret_access_key = std::move(*sk);
  if (!store.aws.session_token_ref.name.empty()) {
    auto st = co_await secret_key(store.aws.session_token_ref, store_ns);
    if (!st) co_return std::unexpected(st.error());
    a.session_token = std::move(*st);
  }
  co_return StoreSpec(std::move(a));
}

// Conjur: the store's own identity only (no host model): an API key and its
// login from Secrets, or authn-jwt with a ServiceAccount token (ESO: the
// ref's audiences, 10 minutes) or a JWT from a Secret.
Task<StoreSpec> EngineProviders::conjur_spec(const model::SecretStore& store, std::string_view ns) {
  const auto& c = store.conjur;
  const std::string store_ns = store.meta.namespace_;
  ConjurSpec s;
  s.url = c.url;
  s.account = c.account;
  s.tls.ca_pem = c.ca_bundle;
  if (!c.jwt) {
    ROOTSEAL_CO_LET(user, co_await secret_key(c.user_ref, store_ns));
    s.login.assign(reinterpret_cast<const char*>(user.data()), user.size());  // a user or host id, not a secret
    ROOTSEAL_CO_LET(key, co_await secret_key(c.api_key_ref, store_ns));
    s.api_key = std::move(key);
    co_return StoreSpec(std::move(s));
  }
  s.service_id = c.service_id;
  s.host_id = c.host_id;
  if (c.has_service_account) {
    auto key = token_key(store, c.service_account, ns, {}, 600);
    s.jwt_source_id = key.id();
    s.jwt_source = sa_tokens_->source(std::move(key));
  } else {
    ROOTSEAL_CO_LET(jwt, co_await secret_key(c.jwt_secret_ref, store_ns));
    s.jwt = std::move(jwt);
  }
  co_return StoreSpec(std::move(s));
}

Task<StoreSpec> EngineProviders::spec_for(const model::SecretStore& store, std::string_view ns) {
  ROOTSEAL_CO_LET(host, reconcile::host_store_for(host_, store, ns));  // the one lookup of a host store
  switch (store.provider) {
    case model::SecretStore::Provider::vault:
      co_return co_await vault_spec(store, host, ns);
    case model::SecretStore::Provider::azurekv:
      co_return co_await azure_spec(store, host, ns);
    case model::SecretStore::Provider::gcpsm:
      co_return co_await gcp_spec(store, host, ns);
    case model::SecretStore::Provider::conjur:
      if (host != nullptr) co_return fail(Errc::invalid_argument, "conjur stores take no host credentials");
      co_return co_await conjur_spec(store, ns);
    case model::SecretStore::Provider::aws:
      break;
  }
  co_return co_await aws_spec(store, host, ns);
}

template <class P, class Make>
Task<std::shared_ptr<P>> EngineProviders::cached(std::map<std::string, CacheEntry<P>>& cache,
                                                 const model::SecretStore& store, std::string_view ns, Make make) {
  // A ClusterSecretStore's host-credential check depends on the namespace.
  std::string id = store_id(store);
  // So does the ServiceAccount of a ClusterSecretStore whose serviceAccountRef names no namespace.
  const bool referent = (store.provider == model::SecretStore::Provider::vault &&
                         store.vault.auth.has_service_account && store.vault.auth.service_account.namespace_.empty()) ||
                        (store.provider == model::SecretStore::Provider::aws && store.aws.has_jwt &&
                         store.aws.jwt_service_account.namespace_.empty()) ||
                        (store.provider == model::SecretStore::Provider::azurekv && store.azurekv.workload_identity &&
                         store.azurekv.service_account.namespace_.empty()) ||
                        (store.provider == model::SecretStore::Provider::gcpsm &&
                         store.gcpsm.federation != model::GcpProviderSpec::Federation::none &&
                         store.gcpsm.service_account.namespace_.empty()) ||
                        (store.provider == model::SecretStore::Provider::conjur && store.conjur.has_service_account &&
                         store.conjur.service_account.namespace_.empty());
  if (store.kind == model::StoreKind::cluster_secret_store && (!store.host_credentials.empty() || referent)) {
    id += "@" + std::string(ns);
  }
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    auto it = cache.find(id);
    if (it != cache.end() && it->second.resource_version == store.meta.resource_version &&
        now - it->second.checked < recheck_) {
      co_return it->second.provider;
    }
  }
  auto spec = co_await spec_for(store, ns);
  if (!spec) co_return std::unexpected(spec.error());
  const std::string fp = fingerprint(*spec);
  {
    std::lock_guard lock(mu_);
    auto it = cache.find(id);
    if (it != cache.end() && it->second.resource_version == store.meta.resource_version &&
        it->second.fingerprint == fp) {
      it->second.checked = now;  // same store, same credentials: keep the provider (its login, token cache, limiter)
      co_return it->second.provider;
    }
  }
  kms::Result<std::shared_ptr<P>> p = make(std::move(*spec), health(store_id(store)));
  if (!p) {
    co_return fail(p.error().code,
                   std::string(model::to_string(store.kind)) + " \"" + store.meta.name + "\": " + p.error().message);
  }
  std::lock_guard lock(mu_);
  cache[id] = CacheEntry<P>{store.meta.resource_version, fp, now, *p};
  co_return *p;
}

Task<std::shared_ptr<Provider>> EngineProviders::provider(const model::SecretStore& store, std::string_view ns) {
  const auto make = [this](StoreSpec spec, std::shared_ptr<StoreHealth> h) {
    return factory_.make_provider(std::move(spec), std::move(h));
  };
  co_return co_await cached<Provider>(cache_, store, ns, make);
}

Task<std::shared_ptr<PushProvider>> EngineProviders::push_provider(const model::SecretStore& store,
                                                                   std::string_view ns) {
  if (store.provider == model::SecretStore::Provider::conjur) {
    co_return fail(Errc::invalid_argument, std::string(model::to_string(store.kind)) + " \"" + store.meta.name +
                                               "\": " + std::string(model::to_string(store.provider)) +
                                               " is supported as a source only (push to: aws, azurekv, gcpsm, vault)");
  }
  const auto make = [this](StoreSpec spec, std::shared_ptr<StoreHealth> h) {
    return factory_.make_push_provider(std::move(spec), std::move(h));
  };
  co_return co_await cached<PushProvider>(push_cache_, store, ns, make);
}

}  // namespace rootseal::sync::engine
