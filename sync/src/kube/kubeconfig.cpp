// KubeConfig: kubeconfig files and in-cluster service-account files.
//
// yaml-cpp keeps its own copies of scalars in ordinary heap memory while the
// document is parsed; the values we keep (token, client key) are copied into
// SecureBytes at once and our temporary std::string copies are wiped. The
// file itself is read into locked memory.
#include <yaml-cpp/yaml.h>

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "kube/kube_client.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/net/secure_body.hpp"

namespace rootseal::sync::kube {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t kMaxConfigBytes = 4u << 20;

kms::Result<net::SecureBuffer> read_secure(const fs::path& file, std::string_view what) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return kms::fail(kms::Errc::invalid_argument, std::string(what) + " " + file.string() + ": cannot be read");
  net::SecureBuffer buf;
  char chunk[4096];
  while (in) {
    in.read(chunk, sizeof chunk);
    const auto n = static_cast<std::size_t>(in.gcount());
    if (buf.size() + n > kMaxConfigBytes) {
      kms::secure_zero(chunk, sizeof chunk);
      return kms::fail(kms::Errc::invalid_argument, std::string(what) + " " + file.string() + ": larger than 4 MiB");
    }
    buf.append(chunk, n);
  }
  kms::secure_zero(chunk, sizeof chunk);
  if (in.bad()) return kms::fail(kms::Errc::invalid_argument, std::string(what) + " " + file.string() + ": read error");
  return buf;
}

kms::Result<std::string> read_public(const fs::path& file, std::string_view what) {
  net::SecureBuffer buf;
  ROOTSEAL_TRY_ASSIGN(buf, read_secure(file, what));
  return std::string(buf.view());
}

// Trims trailing whitespace/newlines (token files end with "\n").
std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n' || s.front() == '\r'))
    s.remove_prefix(1);
  return s;
}

// A scalar field of a map node, or "" when absent. Non-scalars are an error.
kms::Result<std::string> scalar(const YAML::Node& map, const char* key, const std::string& where) {
  const YAML::Node n = map[key];
  if (!n || n.IsNull()) return std::string{};
  if (!n.IsScalar()) return kms::fail(kms::Errc::invalid_argument, where + "." + key + ": must be a string");
  return n.Scalar();
}

// A secret scalar, copied into locked memory; our temporary copy is wiped.
kms::Result<kms::SecureBytes> secret_scalar(const YAML::Node& map, const char* key, const std::string& where) {
  const YAML::Node n = map[key];
  if (!n || n.IsNull()) return kms::SecureBytes{};
  if (!n.IsScalar()) return kms::fail(kms::Errc::invalid_argument, where + "." + key + ": must be a string");
  const std::string& s = n.Scalar();  // yaml-cpp's own copy (see the note at the top)
  return kms::SecureBytes::copy_of(trim(s));
}

fs::path resolve(const fs::path& base_dir, const std::string& p) {
  const fs::path path(p);
  if (path.is_absolute() || base_dir.empty()) return path;
  return base_dir / path;
}

// Finds `name` in a list of {name, <inner>: {...}} entries.
kms::Result<YAML::Node> named_entry(const YAML::Node& root, const char* list, const char* inner,
                                    const std::string& name, const std::string& origin) {
  const YAML::Node l = root[list];
  if (!l || !l.IsSequence()) return kms::fail(kms::Errc::invalid_argument, origin + ": no '" + list + "' list");
  for (const auto& e : l) {
    if (!e.IsMap()) continue;
    const YAML::Node n = e["name"];
    if (n && n.IsScalar() && n.Scalar() == name) {
      const YAML::Node body = e[inner];
      if (!body || !body.IsMap())
        return kms::fail(kms::Errc::invalid_argument,
                         origin + ": " + list + " entry '" + name + "' has no '" + inner + "' map");
      return body;
    }
  }
  return kms::fail(
      kms::Errc::invalid_argument,
      origin + ": " + std::string(list).substr(0, std::string(list).size() - 1) + " '" + name + "' is not defined");
}

kms::Result<bool> parse_bool(const YAML::Node& map, const char* key, const std::string& where) {
  const YAML::Node n = map[key];
  if (!n || n.IsNull()) return false;
  if (!n.IsScalar()) return kms::fail(kms::Errc::invalid_argument, where + "." + key + ": must be true or false");
  const std::string& s = n.Scalar();
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return kms::fail(kms::Errc::invalid_argument, where + "." + key + ": must be true or false");
}

kms::Result<std::string> decode_data(const std::string& b64, const std::string& where) {
  auto bytes = kms::base64_decode(trim(b64));
  if (!bytes) return kms::fail(kms::Errc::invalid_argument, where + ": not valid base64");
  return std::string(bytes->begin(), bytes->end());
}

// The document as a YAML tree; the string copy yaml-cpp needs is wiped.
kms::Result<YAML::Node> load_yaml(std::string_view yaml, const std::string& origin) {
  YAML::Node root;
  std::string text(yaml);  // yaml-cpp wants a string; wiped below (it may hold a token)
  try {
    root = YAML::Load(text);
    kms::secure_zero(text.data(), text.size());
  } catch (const YAML::Exception& e) {
    kms::secure_zero(text.data(), text.size());
    // e.mark is a position; e.msg describes the syntax problem without quoting values.
    return kms::fail(kms::Errc::invalid_argument, origin + ": not valid YAML (line " + std::to_string(e.mark.line + 1) +
                                                      ", column " + std::to_string(e.mark.column + 1) + ")");
  }
  if (!root || !root.IsMap())
    return kms::fail(kms::Errc::invalid_argument, origin + ": not a kubeconfig (expected a map)");
  return root;
}

// What a context names: its cluster (required), user and namespace.
struct ContextRefs {
  std::string name;
  std::string cluster;
  std::string user;
  std::string namespace_;
};

// The context `context` (or current-context when empty).
kms::Result<ContextRefs> read_context(const YAML::Node& root, std::string_view context, const std::string& origin) {
  ContextRefs refs;
  refs.name = std::string(context);
  if (refs.name.empty()) {
    ROOTSEAL_TRY_ASSIGN(refs.name, scalar(root, "current-context", origin));
    if (refs.name.empty())
      return kms::fail(kms::Errc::invalid_argument, origin + ": current-context is not set and no context was given");
  }
  YAML::Node ctx;
  ROOTSEAL_TRY_ASSIGN(ctx, named_entry(root, "contexts", "context", refs.name, origin));
  const std::string cwhere = origin + ": context '" + refs.name + "'";
  ROOTSEAL_TRY_ASSIGN(refs.cluster, scalar(ctx, "cluster", cwhere));
  ROOTSEAL_TRY_ASSIGN(refs.user, scalar(ctx, "user", cwhere));
  ROOTSEAL_TRY_ASSIGN(refs.namespace_, scalar(ctx, "namespace", cwhere));
  if (refs.cluster.empty()) return kms::fail(kms::Errc::invalid_argument, cwhere + " names no cluster");
  return refs;
}

// A public PEM given inline (`<key>-data`, base64; it wins) or as a file
// (`<key>`, relative to the kubeconfig's folder); "" when neither is set.
kms::Result<std::string> pem_field(const YAML::Node& map, const std::string& key, const std::string& where,
                                   const fs::path& base_dir) {
  const std::string data_key = key + "-data";
  std::string data;
  ROOTSEAL_TRY_ASSIGN(data, scalar(map, data_key.c_str(), where));
  std::string file;
  ROOTSEAL_TRY_ASSIGN(file, scalar(map, key.c_str(), where));
  if (!data.empty()) return decode_data(data, where + "." + data_key);
  if (!file.empty()) return read_public(resolve(base_dir, file), where + "." + key);
  return std::string{};
}

// The cluster entry: server URL, TLS settings and certificate authority.
kms::Result<void> read_cluster(const YAML::Node& root, const std::string& cluster_name, const std::string& origin,
                               const fs::path& base_dir, KubeConfig& cfg) {
  YAML::Node cluster;
  ROOTSEAL_TRY_ASSIGN(cluster, named_entry(root, "clusters", "cluster", cluster_name, origin));
  const std::string where = origin + ": cluster '" + cluster_name + "'";
  ROOTSEAL_TRY_ASSIGN(cfg.server, scalar(cluster, "server", where));
  if (cfg.server.empty()) return kms::fail(kms::Errc::invalid_argument, where + ".server is empty");
  if (!cfg.server.starts_with("https://") && !cfg.server.starts_with("http://"))
    return kms::fail(kms::Errc::invalid_argument, where + ".server must start with https:// or http://");
  while (cfg.server.ends_with('/')) cfg.server.pop_back();
  ROOTSEAL_TRY_ASSIGN(cfg.insecure_skip_tls_verify, parse_bool(cluster, "insecure-skip-tls-verify", where));
  ROOTSEAL_TRY_ASSIGN(cfg.tls_server_name, scalar(cluster, "tls-server-name", where));
  ROOTSEAL_TRY_ASSIGN(cfg.ca_pem, pem_field(cluster, "certificate-authority", where, base_dir));
  if (!cfg.ca_pem.empty() && cfg.ca_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos)
    return kms::fail(kms::Errc::invalid_argument, where + ": certificate authority is not a PEM certificate");
  return {};
}

// A user's bearer token: inline `token` and/or `tokenFile` (read once now, so
// a missing or empty file fails at start rather than at the first request).
kms::Result<void> read_user_token(const YAML::Node& user, const std::string& uwhere, const fs::path& base_dir,
                                  KubeConfig& cfg) {
  ROOTSEAL_TRY_ASSIGN(cfg.bearer_token, secret_scalar(user, "token", uwhere));
  std::string token_file;
  ROOTSEAL_TRY_ASSIGN(token_file, scalar(user, "tokenFile", uwhere));
  if (!token_file.empty()) {
    cfg.token_file = resolve(base_dir, token_file);
    // Fail now rather than at the first request.
    net::SecureBuffer t;
    ROOTSEAL_TRY_ASSIGN(t, read_secure(cfg.token_file, uwhere + ".tokenFile"));
    if (trim(t.view()).empty())
      return kms::fail(kms::Errc::invalid_argument, uwhere + ".tokenFile " + cfg.token_file.string() + " is empty");
  }
  return {};
}

// A user's client certificate and key (inline data or files); both or neither.
kms::Result<void> read_user_client_cert(const YAML::Node& user, const std::string& uwhere, const fs::path& base_dir,
                                        KubeConfig& cfg) {
  ROOTSEAL_TRY_ASSIGN(cfg.client_cert_pem, pem_field(user, "client-certificate", uwhere, base_dir));
  const YAML::Node key_data = user["client-key-data"];
  std::string key_file;
  ROOTSEAL_TRY_ASSIGN(key_file, scalar(user, "client-key", uwhere));
  if (key_data && key_data.IsScalar() && !key_data.Scalar().empty()) {
    auto key = kms::base64_decode_secure(trim(key_data.Scalar()));
    if (!key) return kms::fail(kms::Errc::invalid_argument, uwhere + ".client-key-data: not valid base64");
    cfg.client_key_pem = std::move(*key);
  } else if (!key_file.empty()) {
    net::SecureBuffer k;
    ROOTSEAL_TRY_ASSIGN(k, read_secure(resolve(base_dir, key_file), uwhere + ".client-key"));
    cfg.client_key_pem = kms::SecureBytes::copy_of(k.view());
  }
  if (!cfg.client_cert_pem.empty() && cfg.client_key_pem.empty())
    return kms::fail(kms::Errc::invalid_argument, uwhere + ": client certificate without client key");
  if (cfg.client_cert_pem.empty() && !cfg.client_key_pem.empty())
    return kms::fail(kms::Errc::invalid_argument, uwhere + ": client key without client certificate");
  if (!cfg.client_cert_pem.empty() && cfg.client_cert_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos)
    return kms::fail(kms::Errc::invalid_argument, uwhere + ": client certificate is not a PEM certificate");
  return {};
}

// The user entry: the credential kinds rootseal refuses, then token and client certificate.
kms::Result<void> read_user(const YAML::Node& root, const std::string& user_name, const std::string& origin,
                            const fs::path& base_dir, KubeConfig& cfg) {
  YAML::Node user;
  ROOTSEAL_TRY_ASSIGN(user, named_entry(root, "users", "user", user_name, origin));
  const std::string uwhere = origin + ": user '" + user_name + "'";
  if (user["exec"])
    return kms::fail(
        kms::Errc::invalid_argument,
        uwhere + ": exec credential plugins are not supported; use a token, tokenFile or client certificate");
  if (user["auth-provider"])
    return kms::fail(kms::Errc::invalid_argument,
                     uwhere + ": auth-provider is not supported; use a token, tokenFile or client certificate");
  if (user["username"] || user["password"])
    return kms::fail(kms::Errc::invalid_argument, uwhere + ": basic authentication is not supported");
  ROOTSEAL_TRY(read_user_token(user, uwhere, base_dir, cfg));
  return read_user_client_cert(user, uwhere, base_dir, cfg);
}

}  // namespace

KubeConfig KubeConfig::clone() const {
  KubeConfig c;
  c.server = server;
  c.ca_pem = ca_pem;
  c.insecure_skip_tls_verify = insecure_skip_tls_verify;
  c.tls_server_name = tls_server_name;
  c.bearer_token = bearer_token.clone();
  c.token_file = token_file;
  c.client_cert_pem = client_cert_pem;
  c.client_key_pem = client_key_pem.clone();
  c.default_namespace = default_namespace;
  c.context_name = context_name;
  return c;
}

kms::Result<KubeConfig> KubeConfig::from_file(const fs::path& file, std::string_view context) {
  net::SecureBuffer text;
  ROOTSEAL_TRY_ASSIGN(text, read_secure(file, "kubeconfig"));
  return from_yaml(text.view(), file.parent_path(), context, file.string());
}

// The kubeconfig schema read top to bottom (context, cluster, user), each
// error naming its field. yaml-cpp throws on structures it cannot index; that
// is one message for the whole document.
kms::Result<KubeConfig> KubeConfig::from_yaml(std::string_view yaml, const fs::path& base_dir, std::string_view context,
                                              std::string_view origin_view) {
  const std::string origin(origin_view);
  YAML::Node root;
  ROOTSEAL_TRY_ASSIGN(root, load_yaml(yaml, origin));
  try {
    ContextRefs refs;
    ROOTSEAL_TRY_ASSIGN(refs, read_context(root, context, origin));
    KubeConfig cfg;
    cfg.context_name = refs.name;
    cfg.default_namespace = refs.namespace_.empty() ? "default" : refs.namespace_;
    ROOTSEAL_TRY(read_cluster(root, refs.cluster, origin, base_dir, cfg));
    if (!refs.user.empty()) ROOTSEAL_TRY(read_user(root, refs.user, origin, base_dir, cfg));
    return cfg;
  } catch (const YAML::Exception&) {
    return kms::fail(kms::Errc::invalid_argument, origin + ": unexpected structure");
  }
}

kms::Result<KubeConfig> KubeConfig::in_cluster(const fs::path& sa_dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0')
    return kms::fail(kms::Errc::invalid_argument,
                     "in-cluster configuration: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set");
  KubeConfig cfg;
  const std::string h(host);
  cfg.server = "https://" + (h.find(':') != std::string::npos ? "[" + h + "]" : h) + ":" + port;
  cfg.token_file = sa_dir / "token";
  net::SecureBuffer t;
  ROOTSEAL_TRY_ASSIGN(t, read_secure(cfg.token_file, "in-cluster service-account token"));
  if (trim(t.view()).empty())
    return kms::fail(kms::Errc::invalid_argument,
                     "in-cluster service-account token " + cfg.token_file.string() + " is empty");
  ROOTSEAL_TRY_ASSIGN(cfg.ca_pem, read_public(sa_dir / "ca.crt", "in-cluster CA"));
  std::error_code ec;
  if (fs::exists(sa_dir / "namespace", ec)) {
    std::string ns;
    ROOTSEAL_TRY_ASSIGN(ns, read_public(sa_dir / "namespace", "in-cluster namespace"));
    cfg.default_namespace = std::string(trim(ns));
  }
  if (cfg.default_namespace.empty()) cfg.default_namespace = "default";
  return cfg;
}

}  // namespace rootseal::sync::kube
