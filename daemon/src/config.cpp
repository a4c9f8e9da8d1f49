#include "rootseal/daemon/config.hpp"

#include "sync_config.hpp"
#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/keyring.hpp"
#include "rootseal/kms/numbers.hpp"

#include <yaml-cpp/yaml.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

namespace rootseal::daemon {
namespace {

using kms::Errc;
using kms::fail;
using kms::Result;

Result<void> check_keys(const YAML::Node& node, const std::string& where, const std::set<std::string>& allowed) {
  if (!node.IsMap()) return fail(Errc::invalid_argument, where + ": must be a mapping");
  for (const auto& kv : node) {
    // A key that is a sequence or mapping (YAML allows them) has no string form.
    if (!kv.first.IsScalar()) return fail(Errc::invalid_argument, where + ": option names must be plain words");
    const auto key = kv.first.as<std::string>();
    if (!allowed.contains(key)) {
      return fail(Errc::invalid_argument, where + ": unknown option '" + key + "'");
    }
  }
  return {};
}

template <class T>
Result<T> scalar(const YAML::Node& node, const std::string& where) {
  if (!node.IsScalar()) return fail(Errc::invalid_argument, where + ": must be a scalar");
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    return fail(Errc::invalid_argument, where + ": invalid value");
  }
}

// A secret is never written in the configuration: the HSM PIN comes from
// pin.sources, tokens are listed by their SHA-256, the TPM auth value and
// provider credentials by the file or credential that holds them. A scalar
// under a secret-looking key is refused wherever it stands (the value is never
// echoed), so a pasted PIN fails loudly instead of being ignored or logged.
bool secret_looking_key(std::string key) {
  for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  static const std::set<std::string, std::less<>> exact{
      "pin",         "user_pin",          "so_pin",        "hsm_pin",    "token",   "root_token",
      "password",    "passphrase",        "secret",        "auth_value", "api_key", "secret_key",
      "private_key", "secret_access_key", "client_secret", "secret_id"};
  if (exact.contains(key)) return true;
  for (std::string_view suffix : {"_pin", "_token", "_password", "_secret", "_passphrase"}) {
    if (key.size() > suffix.size() && key.ends_with(suffix)) return true;
  }
  return false;
}

Result<void> refuse_inline_secrets(const YAML::Node& node, const std::string& where) {
  if (node.IsMap()) {
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) continue;
      const auto key = kv.first.as<std::string>();
      const auto path = where.empty() ? key : where + "." + key;
      if (kv.second.IsScalar() && secret_looking_key(key)) {
        return fail(Errc::invalid_argument,
                    path +
                        ": a secret is never written in the configuration (the HSM PIN comes from "
                        "pin.sources: credential, file, tpm or typed; a token is listed by its sha256; "
                        "a TPM auth value by tpm.auth_value_file; provider credentials by file or credential)");
      }
      ROOTSEAL_TRY(refuse_inline_secrets(kv.second, path));
    }
  } else if (node.IsSequence()) {
    std::size_t i = 0;
    for (const auto& item : node) {
      ROOTSEAL_TRY(refuse_inline_secrets(item, where + "[" + std::to_string(i++) + "]"));
    }
  }
  return {};
}

// A bare integer of seconds or a Go duration ("250ms", "5s", "1h30m"), at
// most kms::kLongestDelay: range-checked before any arithmetic.
Result<std::chrono::milliseconds> duration(const YAML::Node& node, const std::string& where) {
  auto text = scalar<std::string>(node, where);
  if (!text) return std::unexpected(text.error());
  auto d = kms::parse_config_duration(*text);
  if (!d) return fail(Errc::invalid_argument, where + ": invalid duration (" + d.error().message + ")");
  return *d;
}

Result<std::size_t> positive(const YAML::Node& node, const std::string& where, std::size_t max) {
  auto v = scalar<std::int64_t>(node, where);
  if (!v) return std::unexpected(v.error());
  if (*v <= 0 || static_cast<std::uint64_t>(*v) > max) {
    return fail(Errc::invalid_argument, where + ": must be between 1 and " + std::to_string(max));
  }
  return static_cast<std::size_t>(*v);
}

// A list of policy names, each declared in `policies` (or "root").
Result<std::vector<std::string>> policy_names(const YAML::Node& n, const std::string& where,
                                              const std::vector<PolicyConfig>& policies) {
  if (!n.IsSequence()) return fail(Errc::invalid_argument, where + ".policies: must be a list");
  std::vector<std::string> out;
  for (const auto& p : n) {
    std::string name;
    ROOTSEAL_TRY_ASSIGN(name, scalar<std::string>(p, where + ".policies[]"));
    const bool known = name == "root" || std::any_of(policies.begin(), policies.end(),
                                                     [&](const PolicyConfig& pc) { return pc.name == name; });
    if (!known) return fail(Errc::invalid_argument, where + ".policies: unknown policy '" + name + "'");
    out.push_back(std::move(name));
  }
  return out;
}

Result<void> parse_tls(const YAML::Node& n, TlsSection& out) {
  ROOTSEAL_TRY(
      check_keys(n, "listen.tls", {"cert_file", "key_file", "client_ca_file", "require_client_cert", "min_version"}));
  std::string s;
  auto path_field = [&](const char* key, std::filesystem::path& field) -> Result<void> {
    if (!n[key]) return {};
    ROOTSEAL_TRY_ASSIGN(s, scalar<std::string>(n[key], std::string("listen.tls.") + key));
    field = s;
    if (!field.is_absolute())
      return fail(Errc::invalid_argument, std::string("listen.tls.") + key + ": must be an absolute path");
    return {};
  };
  ROOTSEAL_TRY(path_field("cert_file", out.cert_file));
  ROOTSEAL_TRY(path_field("key_file", out.key_file));
  ROOTSEAL_TRY(path_field("client_ca_file", out.client_ca_file));
  if (n["require_client_cert"]) {
    ROOTSEAL_TRY_ASSIGN(out.require_client_cert,
                        scalar<bool>(n["require_client_cert"], "listen.tls.require_client_cert"));
  }
  if (n["min_version"])
    ROOTSEAL_TRY_ASSIGN(out.min_version, scalar<std::string>(n["min_version"], "listen.tls.min_version"));
  if (out.cert_file.empty() != out.key_file.empty()) {
    return fail(Errc::invalid_argument, "listen.tls: cert_file and key_file go together");
  }
  if (!out.enabled()) return fail(Errc::invalid_argument, "listen.tls: cert_file and key_file are required");
  if (out.require_client_cert && out.client_ca_file.empty()) {
    return fail(Errc::invalid_argument, "listen.tls.require_client_cert: needs client_ca_file");
  }
  if (out.min_version != "1.2" && out.min_version != "1.3") {
    return fail(Errc::invalid_argument, "listen.tls.min_version: 1.2 or 1.3");
  }
  return {};
}

Result<void> parse_client_certs(const YAML::Node& n, const std::vector<PolicyConfig>& policies,
                                std::vector<ClientCertIdentity>& out) {
  if (!n.IsSequence()) return fail(Errc::invalid_argument, "client_certs: must be a list");
  for (const auto& item : n) {
    ClientCertIdentity c;
    const std::string where = "client_certs[" + std::to_string(out.size()) + "]";
    ROOTSEAL_TRY(check_keys(item, where, {"name", "sha256", "policies"}));
    if (!item["name"] || !item["sha256"] || !item["policies"] || !item["policies"].IsSequence()) {
      return fail(Errc::invalid_argument, where + ": name, sha256 and a policies list are required");
    }
    ROOTSEAL_TRY_ASSIGN(c.name, scalar<std::string>(item["name"], where + ".name"));
    ROOTSEAL_TRY_ASSIGN(c.sha256, scalar<std::string>(item["sha256"], where + ".sha256"));
    if (c.sha256.size() != 64 || c.sha256.find_first_not_of("0123456789abcdef") != std::string::npos) {
      return fail(Errc::invalid_argument,
                  where + ".sha256: the certificate's SHA-256 fingerprint, 64 lower-case hex digits");
    }
    ROOTSEAL_TRY_ASSIGN(c.policies, policy_names(item["policies"], where, policies));
    out.push_back(std::move(c));
  }
  return {};
}

Result<void> parse_listen(const YAML::Node& n, ListenConfig& out) {
  ROOTSEAL_TRY(check_keys(n, "listen", {"address", "allow_plaintext", "tls"}));
  if (n["tls"]) ROOTSEAL_TRY(parse_tls(n["tls"], out.tls));
  if (n["address"]) ROOTSEAL_TRY_ASSIGN(out.address, scalar<std::string>(n["address"], "listen.address"));
  if (n["allow_plaintext"])
    ROOTSEAL_TRY_ASSIGN(out.allow_plaintext, scalar<bool>(n["allow_plaintext"], "listen.allow_plaintext"));
  ROOTSEAL_TRY(parse_host_port(out.address));
  return {};
}

Result<void> parse_api(const YAML::Node& n, ApiConfig& out) {
  ROOTSEAL_TRY(check_keys(n, "api",
                          {"mount", "max_body_bytes", "max_header_bytes", "request_timeout", "idle_timeout",
                           "header_timeout", "max_connections", "max_connections_per_client"}));
  if (n["mount"]) ROOTSEAL_TRY_ASSIGN(out.mount, scalar<std::string>(n["mount"], "api.mount"));
  if (out.mount.empty() || out.mount.find_first_of("/ ?#") != std::string::npos) {
    return fail(Errc::invalid_argument, "api.mount: must be one non-empty path segment");
  }
  if (n["max_body_bytes"])
    ROOTSEAL_TRY_ASSIGN(out.max_body_bytes, positive(n["max_body_bytes"], "api.max_body_bytes", 64u << 20));
  if (n["max_header_bytes"])
    ROOTSEAL_TRY_ASSIGN(out.max_header_bytes, positive(n["max_header_bytes"], "api.max_header_bytes", 1u << 20));
  if (n["max_connections"])
    ROOTSEAL_TRY_ASSIGN(out.max_connections, positive(n["max_connections"], "api.max_connections", 1u << 20));
  if (n["max_connections_per_client"]) {
    auto v = scalar<std::int64_t>(n["max_connections_per_client"], "api.max_connections_per_client");
    if (!v) return std::unexpected(v.error());
    if (*v < 0 || *v > (1 << 20)) {
      return fail(Errc::invalid_argument, "api.max_connections_per_client: must be 0 (no limit) to 1048576");
    }
    out.max_connections_per_client = static_cast<std::size_t>(*v);
  }
  std::chrono::milliseconds d{};
  if (n["header_timeout"]) {
    ROOTSEAL_TRY_ASSIGN(d, duration(n["header_timeout"], "api.header_timeout"));
    out.header_timeout = std::chrono::duration_cast<std::chrono::seconds>(d);
  }
  if (n["request_timeout"]) {
    ROOTSEAL_TRY_ASSIGN(d, duration(n["request_timeout"], "api.request_timeout"));
    out.request_timeout = std::chrono::duration_cast<std::chrono::seconds>(d);
  }
  if (n["idle_timeout"]) {
    ROOTSEAL_TRY_ASSIGN(d, duration(n["idle_timeout"], "api.idle_timeout"));
    out.idle_timeout = std::chrono::duration_cast<std::chrono::seconds>(d);
  }
  if (out.request_timeout.count() < 1 || out.idle_timeout.count() < 1 || out.header_timeout.count() < 1) {
    return fail(Errc::invalid_argument, "api: timeouts must be at least 1s");
  }
  return {};
}

Result<void> parse_pkcs11(const YAML::Node& n, Pkcs11Section& out) {
  ROOTSEAL_TRY(check_keys(
      n, "pkcs11",
      {"module", "token_label", "key_label", "generate_key", "max_sessions", "unwrap_parallelism", "mechanism"}));
  std::string s;
  if (n["module"]) {
    ROOTSEAL_TRY_ASSIGN(s, scalar<std::string>(n["module"], "pkcs11.module"));
    out.module = s;
  }
  if (n["token_label"])
    ROOTSEAL_TRY_ASSIGN(out.token_label, scalar<std::string>(n["token_label"], "pkcs11.token_label"));
  if (n["key_label"]) ROOTSEAL_TRY_ASSIGN(out.key_label, scalar<std::string>(n["key_label"], "pkcs11.key_label"));
  if (n["generate_key"]) ROOTSEAL_TRY_ASSIGN(out.generate_key, scalar<bool>(n["generate_key"], "pkcs11.generate_key"));
  if (n["max_sessions"]) ROOTSEAL_TRY_ASSIGN(out.max_sessions, positive(n["max_sessions"], "pkcs11.max_sessions", 256));
  if (n["unwrap_parallelism"]) {
    ROOTSEAL_TRY_ASSIGN(out.unwrap_parallelism, positive(n["unwrap_parallelism"], "pkcs11.unwrap_parallelism", 64));
  }
  if (n["mechanism"]) {
    ROOTSEAL_TRY_ASSIGN(s, scalar<std::string>(n["mechanism"], "pkcs11.mechanism"));
    if (!hsm::parse_root_mechanism(s)) {
      return fail(Errc::invalid_argument,
                  "pkcs11.mechanism: unknown '" + s + "' (auto, aes-kwp, aes-gcm, aes-cbc-pad-hmac, rsa-oaep)");
    }
    out.mechanism = s;
  }
  if (out.token_label.empty() || out.token_label.size() > 32) {
    return fail(Errc::invalid_argument, "pkcs11.token_label: 1 to 32 characters");
  }
  if (out.key_label.empty()) return fail(Errc::invalid_argument, "pkcs11.key_label: must not be empty");
  if (!out.module.is_absolute()) return fail(Errc::invalid_argument, "pkcs11.module: must be an absolute path");
  return {};
}

Result<void> parse_pin(const YAML::Node& n, PinConfig& out) {
  ROOTSEAL_TRY(check_keys(n, "pin", {"sources", "credential_name", "file", "tpm_sealed_file"}));
  if (n["sources"]) {
    if (!n["sources"].IsSequence()) return fail(Errc::invalid_argument, "pin.sources: must be a list");
    out.sources.clear();
    for (const auto& item : n["sources"]) {
      std::string name;
      ROOTSEAL_TRY_ASSIGN(name, scalar<std::string>(item, "pin.sources[]"));
      PinSourceKind kind{};
      if (name == "tpm")
        kind = PinSourceKind::tpm;
      else if (name == "credential")
        kind = PinSourceKind::credential;
      else if (name == "file")
        kind = PinSourceKind::file;
      else if (name == "typed")
        kind = PinSourceKind::typed;
      else
        return fail(Errc::invalid_argument,
                    "pin.sources: unknown source '" + name + "' (tpm, credential, file), or typed (rootseal unseal)");
      if (std::find(out.sources.begin(), out.sources.end(), kind) != out.sources.end()) {
        return fail(Errc::invalid_argument, "pin.sources: '" + name + "' is listed twice");
      }
      out.sources.push_back(kind);
    }
  }
  if (n["credential_name"])
    ROOTSEAL_TRY_ASSIGN(out.credential_name, scalar<std::string>(n["credential_name"], "pin.credential_name"));
  if (out.credential_name.empty() || out.credential_name.find('/') != std::string::npos) {
    return fail(Errc::invalid_argument, "pin.credential_name: a plain file name");
  }
  if (n["file"]) {
    std::string s;
    ROOTSEAL_TRY_ASSIGN(s, scalar<std::string>(n["file"], "pin.file"));
    out.file = s;
  }
  if (n["tpm_sealed_file"]) {
    std::string s;
    ROOTSEAL_TRY_ASSIGN(s, scalar<std::string>(n["tpm_sealed_file"], "pin.tpm_sealed_file"));
    if (s.empty() || !std::filesystem::path(s).is_absolute()) {
      return fail(Errc::invalid_argument, "pin.tpm_sealed_file: must be an absolute path");
    }
    out.tpm_sealed_file = s;
  }
  return {};
}

// A persistent TPM handle: 0x81000000..0x81FFFFFF, written in hex (0x...) or decimal.
Result<std::uint32_t> persistent_handle(const YAML::Node& node, const std::string& where) {
  auto text = scalar<std::string>(node, where);
  if (!text) return std::unexpected(text.error());
  std::string_view s = *text;
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
    base = 16;
  }
  std::uint32_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value, base);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size() || value < 0x81000000u || value > 0x81FFFFFFu) {
    return fail(Errc::invalid_argument, where + ": a persistent handle 0x81000000..0x81FFFFFF (e.g. 0x81000001)");
  }
  return value;
}

Result<void> parse_tpm(const YAML::Node& n, TpmSection& out) {
  if (n.IsMap() && (n["auth_value"] || n["auth"] || n["password"])) {
    // Never echo the value back: it is a secret written where it must not be.
    return fail(Errc::invalid_argument,
                "tpm: the auth value is never written in the configuration; put it in a file readable only by "
                "the service user and set tpm.auth_value_file");
  }
  ROOTSEAL_TRY(check_keys(n, "tpm",
                          {"tcti", "sealed_file", "pcrs", "persistent_handle", "primary_alg", "auth_value_file",
                           "initialize", "verify_on_probe"}));
  if (n["tcti"]) ROOTSEAL_TRY_ASSIGN(out.tcti, scalar<std::string>(n["tcti"], "tpm.tcti"));
  if (out.tcti.empty() || out.tcti.size() > 512 ||
      std::any_of(out.tcti.begin(), out.tcti.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
    return fail(Errc::invalid_argument,
                "tpm.tcti: a tpm2-tss TCTI string, e.g. device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321");
  }
  if (n["sealed_file"]) {
    std::string s;
    ROOTSEAL_TRY_ASSIGN(s, scalar<std::string>(n["sealed_file"], "tpm.sealed_file"));
    if (s.empty() || !std::filesystem::path(s).is_absolute()) {
      return fail(Errc::invalid_argument, "tpm.sealed_file: must be an absolute path");
    }
    out.sealed_file = s;
  }
  if (n["pcrs"]) {
    if (!n["pcrs"].IsSequence())
      return fail(Errc::invalid_argument, "tpm.pcrs: must be a list of PCR indices, e.g. [7]");
    out.pcrs.clear();
    for (const auto& item : n["pcrs"]) {
      auto v = scalar<std::int64_t>(item, "tpm.pcrs[]");
      if (!v || *v < 0 || *v > 23) return fail(Errc::invalid_argument, "tpm.pcrs: PCR indices are 0..23");
      if (*v == 16 || *v == 23) {
        return fail(Errc::invalid_argument, "tpm.pcrs: PCR " + std::to_string(*v) +
                                                " is resettable by any process (debug/application); sealing to it "
                                                "protects nothing");
      }
      const auto pcr = static_cast<std::uint32_t>(*v);
      if (std::find(out.pcrs.begin(), out.pcrs.end(), pcr) != out.pcrs.end()) {
        return fail(Errc::invalid_argument, "tpm.pcrs: PCR " + std::to_string(pcr) + " is listed twice");
      }
      out.pcrs.push_back(pcr);
    }
    std::sort(out.pcrs.begin(), out.pcrs.end());
  }
  if (n["persistent_handle"]) {
    ROOTSEAL_TRY_ASSIGN(out.persistent_handle, persistent_handle(n["persistent_handle"], "tpm.persistent_handle"));
  }
  if (n["primary_alg"]) {
    std::string alg;
    ROOTSEAL_TRY_ASSIGN(alg, scalar<std::string>(n["primary_alg"], "tpm.primary_alg"));
    if (alg == "ecc_p256")
      out.primary_rsa = false;
    else if (alg == "rsa2048")
      out.primary_rsa = true;
    else
      return fail(Errc::invalid_argument, "tpm.primary_alg: ecc_p256 or rsa2048");
  }
  if (n["auth_value_file"]) {
    std::string s;
    ROOTSEAL_TRY_ASSIGN(s, scalar<std::string>(n["auth_value_file"], "tpm.auth_value_file"));
    if (s.empty() || !std::filesystem::path(s).is_absolute()) {
      return fail(Errc::invalid_argument, "tpm.auth_value_file: must be an absolute path");
    }
    out.auth_value_file = s;
  }
  if (n["initialize"]) ROOTSEAL_TRY_ASSIGN(out.initialize, scalar<bool>(n["initialize"], "tpm.initialize"));
  if (n["verify_on_probe"])
    ROOTSEAL_TRY_ASSIGN(out.verify_on_probe, scalar<bool>(n["verify_on_probe"], "tpm.verify_on_probe"));
  return {};
}

// `socket` and `mode` of a section serving a unix socket (admin, kms_plugin).
Result<void> parse_unix_socket(const YAML::Node& n, const std::string& section, std::filesystem::path& socket,
                               unsigned& mode) {
  if (n["socket"]) {
    std::string s;
    ROOTSEAL_TRY_ASSIGN(s, scalar<std::string>(n["socket"], section + ".socket"));
    socket = s;
  }
  // sun_path holds 108 bytes; the temporary name used to create it atomically adds up to 24.
  // A relative path is refused, and with it an abstract socket ("@name": no access control).
  if (!socket.is_absolute() || socket.filename().empty() || socket.native().size() > 80) {
    return fail(Errc::invalid_argument, section + ".socket: an absolute path of at most 80 characters");
  }
  if (n["mode"]) {
    std::string m;
    ROOTSEAL_TRY_ASSIGN(m, scalar<std::string>(n["mode"], section + ".mode"));
    if (m == "0600" || m == "600")
      mode = 0600;
    else if (m == "0660" || m == "660")
      mode = 0660;
    else
      return fail(Errc::invalid_argument, section + ".mode: \"0600\" or \"0660\"");
  }
  return {};
}

// An absolute path option.
Result<void> absolute_path(const YAML::Node& n, const std::string& where, std::filesystem::path& out) {
  std::string s;
  ROOTSEAL_TRY_ASSIGN(s, scalar<std::string>(n, where));
  out = s;
  if (!out.is_absolute()) return fail(Errc::invalid_argument, where + ": must be an absolute path");
  return {};
}

Result<std::chrono::milliseconds> bounded_duration(const YAML::Node& n, const std::string& where,
                                                   std::chrono::milliseconds lo, std::chrono::milliseconds hi,
                                                   const std::string& range) {
  std::chrono::milliseconds d{};
  ROOTSEAL_TRY_ASSIGN(d, duration(n, where));
  if (d < lo || d > hi) return fail(Errc::invalid_argument, where + ": " + range);
  return d;
}

Result<void> parse_etcd_endpoints(const YAML::Node& n, EtcdSection& out) {
  if (!n.IsSequence() || n.size() == 0) {
    return fail(Errc::invalid_argument, "etcd.endpoints: a non-empty list of URLs, e.g. [\"https://etcd-1:2379\"]");
  }
  std::optional<bool> tls;
  for (const auto& e : n) {
    std::string url;
    ROOTSEAL_TRY_ASSIGN(url, scalar<std::string>(e, "etcd.endpoints[]"));
    const bool https = url.starts_with("https://");
    if (!https && !url.starts_with("http://")) {
      return fail(Errc::invalid_argument, "etcd.endpoints: '" + url + "' must start with https:// or http://");
    }
    if (tls && *tls != https) return fail(Errc::invalid_argument, "etcd.endpoints: all https:// or all http://");
    tls = https;
    std::string_view rest = std::string_view(url).substr(https ? 8 : 7);
    if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
    auto hp = parse_host_port(rest);
    if (!hp || hp->port == 0) {
      return fail(Errc::invalid_argument, "etcd.endpoints: '" + url + "' must be scheme://host:port (no path)");
    }
    if (!https && !out.allow_plaintext && !is_loopback_host(hp->host)) {
      return fail(Errc::invalid_argument, "etcd.endpoints: '" + url +
                                              "' is plain http to another host; use https (etcd.ca_file, "
                                              "etcd.cert_file), or set etcd.allow_plaintext: true");
    }
    out.endpoints.push_back(std::string(url.substr(0, (https ? 8 : 7) + rest.size())));
  }
  return {};
}

Result<void> parse_etcd(const YAML::Node& n, EtcdSection& out) {
  ROOTSEAL_TRY(
      check_keys(n, "etcd",
                 {"endpoints", "prefix", "username", "password_file", "ca_file", "cert_file", "key_file", "server_name",
                  "allow_plaintext", "connect_timeout", "request_timeout", "watch_idle_timeout", "member_ttl"}));
  if (n["allow_plaintext"])
    ROOTSEAL_TRY_ASSIGN(out.allow_plaintext, scalar<bool>(n["allow_plaintext"], "etcd.allow_plaintext"));
  if (!n["endpoints"]) return fail(Errc::invalid_argument, "etcd.endpoints: required with storage: etcd");
  ROOTSEAL_TRY(parse_etcd_endpoints(n["endpoints"], out));
  if (n["prefix"]) ROOTSEAL_TRY_ASSIGN(out.prefix, scalar<std::string>(n["prefix"], "etcd.prefix"));
  const bool printable = std::all_of(out.prefix.begin(), out.prefix.end(), [](char c) { return c > 0x20 && c < 0x7f; });
  if (out.prefix.size() < 2 || out.prefix.front() != '/' || out.prefix.back() != '/' || !printable ||
      out.prefix.size() > 128) {
    return fail(Errc::invalid_argument,
                "etcd.prefix: starts and ends with '/', e.g. /rootseal/ (printable, no spaces)");
  }
  if (n["username"]) ROOTSEAL_TRY_ASSIGN(out.username, scalar<std::string>(n["username"], "etcd.username"));
  if (n["password_file"]) ROOTSEAL_TRY(absolute_path(n["password_file"], "etcd.password_file", out.password_file));
  if (out.username.empty() != out.password_file.empty()) {
    return fail(Errc::invalid_argument, "etcd.username and etcd.password_file: both or neither");
  }
  const bool https = out.endpoints.front().starts_with("https://");
  for (const char* key : {"ca_file", "cert_file", "key_file", "server_name"}) {
    if (n[key] && !https) {
      return fail(Errc::invalid_argument, std::string("etcd.") + key + ": only with https:// endpoints");
    }
  }
  if (n["ca_file"]) ROOTSEAL_TRY(absolute_path(n["ca_file"], "etcd.ca_file", out.ca_file));
  if (n["cert_file"]) ROOTSEAL_TRY(absolute_path(n["cert_file"], "etcd.cert_file", out.cert_file));
  if (n["key_file"]) ROOTSEAL_TRY(absolute_path(n["key_file"], "etcd.key_file", out.key_file));
  if (out.cert_file.empty() != out.key_file.empty()) {
    return fail(Errc::invalid_argument, "etcd.cert_file and etcd.key_file: both or neither");
  }
  if (n["server_name"]) ROOTSEAL_TRY_ASSIGN(out.server_name, scalar<std::string>(n["server_name"], "etcd.server_name"));
  using std::chrono::milliseconds;
  if (n["connect_timeout"]) {
    ROOTSEAL_TRY_ASSIGN(out.connect_timeout, bounded_duration(n["connect_timeout"], "etcd.connect_timeout",
                                                              milliseconds(50), milliseconds(60000), "50ms to 1m"));
  }
  if (n["request_timeout"]) {
    ROOTSEAL_TRY_ASSIGN(out.request_timeout, bounded_duration(n["request_timeout"], "etcd.request_timeout",
                                                              milliseconds(50), milliseconds(60000), "50ms to 1m"));
  }
  if (n["watch_idle_timeout"]) {
    ROOTSEAL_TRY_ASSIGN(out.watch_idle_timeout,
                        bounded_duration(n["watch_idle_timeout"], "etcd.watch_idle_timeout", milliseconds(1000),
                                         milliseconds(86400000), "1s to 24h"));
  }
  if (n["member_ttl"]) {
    milliseconds ttl{};
    ROOTSEAL_TRY_ASSIGN(ttl, bounded_duration(n["member_ttl"], "etcd.member_ttl", milliseconds(2000),
                                              milliseconds(300000), "2s to 5m"));
    if (ttl.count() % 1000 != 0) return fail(Errc::invalid_argument, "etcd.member_ttl: whole seconds (an etcd lease)");
    out.member_ttl = std::chrono::duration_cast<std::chrono::seconds>(ttl);
  }
  return {};
}

Result<void> parse_admin(const YAML::Node& n, AdminConfig& out) {
  ROOTSEAL_TRY(check_keys(n, "admin", {"enabled", "socket", "mode", "timeout", "unseal_delay", "max_unseal_delay"}));
  if (n["enabled"]) ROOTSEAL_TRY_ASSIGN(out.enabled, scalar<bool>(n["enabled"], "admin.enabled"));
  ROOTSEAL_TRY(parse_unix_socket(n, "admin", out.socket, out.mode));
  if (n["timeout"]) ROOTSEAL_TRY_ASSIGN(out.timeout, duration(n["timeout"], "admin.timeout"));
  if (n["unseal_delay"]) ROOTSEAL_TRY_ASSIGN(out.unseal_delay, duration(n["unseal_delay"], "admin.unseal_delay"));
  if (n["max_unseal_delay"]) {
    ROOTSEAL_TRY_ASSIGN(out.max_unseal_delay, duration(n["max_unseal_delay"], "admin.max_unseal_delay"));
  }
  if (out.timeout < std::chrono::milliseconds(100))
    return fail(Errc::invalid_argument, "admin.timeout: at least 100ms");
  if (out.unseal_delay < std::chrono::milliseconds(100)) {
    return fail(Errc::invalid_argument, "admin.unseal_delay: at least 100ms (wrong PINs must be rate-limited)");
  }
  if (out.max_unseal_delay < out.unseal_delay) {
    return fail(Errc::invalid_argument, "admin.max_unseal_delay: at least admin.unseal_delay");
  }
  return {};
}

// Defaults that depend on state_dir, and checks across sections.
Result<void> finish(Config& cfg) {
  if (cfg.tpm.sealed_file.empty()) cfg.tpm.sealed_file = cfg.state_dir / "tpm-root.seal";
  if (cfg.pin.tpm_sealed_file.empty()) cfg.pin.tpm_sealed_file = cfg.state_dir / "hsm-pin.tpm";
  if (cfg.tpm.initialize && cfg.root_of_trust != "tpm") {
    return fail(Errc::invalid_argument,
                "tpm.initialize: only with root_of_trust: tpm (it creates the TPM-sealed root key)");
  }
  const bool pin_from_tpm =
      std::find(cfg.pin.sources.begin(), cfg.pin.sources.end(), PinSourceKind::tpm) != cfg.pin.sources.end();
  if (pin_from_tpm && cfg.pin.tpm_sealed_file.lexically_normal() == cfg.tpm.sealed_file.lexically_normal()) {
    return fail(Errc::invalid_argument, "pin.tpm_sealed_file: must differ from tpm.sealed_file (the root key)");
  }
  return {};
}

Result<Operation> parse_operation(std::string_view name) {
  static constexpr Operation kAll[] = {Operation::read,   Operation::list,    Operation::create,  Operation::config,
                                       Operation::rotate, Operation::delete_, Operation::encrypt, Operation::decrypt,
                                       Operation::rewrap, Operation::datakey};
  for (const auto op : kAll) {
    if (to_string(op) == name) return op;
  }
  return fail(Errc::invalid_argument,
              "unknown operation '" + std::string(name) +
                  "' (read, list, create, config, rotate, delete, encrypt, decrypt, rewrap, datakey)");
}

Result<void> parse_policies(const YAML::Node& n, std::vector<PolicyConfig>& out) {
  if (!n.IsMap()) return fail(Errc::invalid_argument, "policies: must be a mapping of name to policy");
  for (const auto& kv : n) {
    PolicyConfig policy;
    if (!kv.first.IsScalar()) return fail(Errc::invalid_argument, "policies: policy names must be plain words");
    policy.name = kv.first.as<std::string>();
    const std::string where = "policies." + policy.name;
    if (policy.name.empty() || policy.name == "root" || policy.name.size() > 128) {
      return fail(Errc::invalid_argument, where + ": invalid or reserved policy name");
    }
    ROOTSEAL_TRY(check_keys(kv.second, where, {"keys", "operations"}));
    const auto keys = kv.second["keys"];
    const auto ops = kv.second["operations"];
    if (!keys || !keys.IsSequence() || keys.size() == 0)
      return fail(Errc::invalid_argument, where + ".keys: a non-empty list");
    if (!ops || !ops.IsSequence() || ops.size() == 0)
      return fail(Errc::invalid_argument, where + ".operations: a non-empty list");
    for (const auto& k : keys) {
      std::string pattern;
      ROOTSEAL_TRY_ASSIGN(pattern, scalar<std::string>(k, where + ".keys[]"));
      if (pattern.empty() || pattern.find('*') < pattern.size() - 1) {
        return fail(Errc::invalid_argument, where + ".keys: '*' may only end a pattern");
      }
      policy.keys.push_back(std::move(pattern));
    }
    for (const auto& o : ops) {
      std::string name;
      ROOTSEAL_TRY_ASSIGN(name, scalar<std::string>(o, where + ".operations[]"));
      auto op = parse_operation(name);
      if (!op) return fail(Errc::invalid_argument, where + ".operations: " + op.error().message);
      policy.operations.insert(*op);
    }
    out.push_back(std::move(policy));
  }
  return {};
}

Result<void> parse_tokens(const YAML::Node& n, const std::vector<PolicyConfig>& policies,
                          std::vector<StaticTokenConfig>& out) {
  if (!n.IsSequence()) return fail(Errc::invalid_argument, "tokens: must be a list");
  for (const auto& item : n) {
    StaticTokenConfig t;
    const std::string where = "tokens[" + std::to_string(out.size()) + "]";
    ROOTSEAL_TRY(check_keys(item, where, {"name", "sha256", "policies", "ttl", "renewable"}));
    if (!item["name"] || !item["sha256"] || !item["policies"]) {
      return fail(Errc::invalid_argument, where + ": name, sha256 and policies are required");
    }
    ROOTSEAL_TRY_ASSIGN(t.name, scalar<std::string>(item["name"], where + ".name"));
    ROOTSEAL_TRY_ASSIGN(t.sha256, scalar<std::string>(item["sha256"], where + ".sha256"));
    if (t.sha256.size() != 64 || t.sha256.find_first_not_of("0123456789abcdef") != std::string::npos) {
      return fail(Errc::invalid_argument, where + ".sha256: 64 lower-case hex digits (sha256sum of the token)");
    }
    ROOTSEAL_TRY_ASSIGN(t.policies, policy_names(item["policies"], where, policies));
    if (item["ttl"]) {
      std::chrono::milliseconds d{};
      ROOTSEAL_TRY_ASSIGN(d, duration(item["ttl"], where + ".ttl"));
      t.ttl_s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
    }
    if (item["renewable"]) ROOTSEAL_TRY_ASSIGN(t.renewable, scalar<bool>(item["renewable"], where + ".renewable"));
    out.push_back(std::move(t));
  }
  return {};
}

}  // namespace

std::string_view to_string(Operation op) noexcept {
  switch (op) {
    case Operation::read:
      return "read";
    case Operation::list:
      return "list";
    case Operation::create:
      return "create";
    case Operation::config:
      return "config";
    case Operation::rotate:
      return "rotate";
    case Operation::delete_:
      return "delete";
    case Operation::encrypt:
      return "encrypt";
    case Operation::decrypt:
      return "decrypt";
    case Operation::rewrap:
      return "rewrap";
    case Operation::datakey:
      return "datakey";
  }
  return "unknown";
}

Result<HostPort> parse_host_port(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return fail(Errc::invalid_argument, "address: expected [ipv6]:port");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return fail(Errc::invalid_argument, "address: expected host:port");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return fail(Errc::invalid_argument, "address: put IPv6 addresses in brackets, e.g. [::1]:8200");
    }
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (host.empty() || port.empty() || ec != std::errc{} || end != port.data() + port.size() || value > 65535) {
    return fail(Errc::invalid_argument, "address: invalid host or port");
  }
  return HostPort{std::string(host), static_cast<std::uint16_t>(value)};
}

bool is_loopback_host(std::string_view host) {
  if (host == "localhost") return true;
  const std::string h(host);
  in_addr v4{};
  if (::inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, h.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

static Result<void> parse_kms_plugin(const YAML::Node& n, KmsPluginConfig& out) {
  ROOTSEAL_TRY(check_keys(n, "kms_plugin", {"enabled", "socket", "mode", "group", "allowed_uids", "key"}));
  if (n["enabled"]) ROOTSEAL_TRY_ASSIGN(out.enabled, scalar<bool>(n["enabled"], "kms_plugin.enabled"));
  ROOTSEAL_TRY(parse_unix_socket(n, "kms_plugin", out.socket, out.mode));
  if (n["group"]) ROOTSEAL_TRY_ASSIGN(out.group, scalar<std::string>(n["group"], "kms_plugin.group"));
  if (!out.group.empty() && out.mode != 0660) {
    return fail(Errc::invalid_argument, "kms_plugin.group: only with kms_plugin.mode \"0660\"");
  }
  if (n["allowed_uids"]) {
    if (!n["allowed_uids"].IsSequence() || n["allowed_uids"].size() == 0) {
      return fail(Errc::invalid_argument, "kms_plugin.allowed_uids: a non-empty list of uids");
    }
    out.allowed_uids.clear();
    for (const auto& u : n["allowed_uids"]) {
      auto v = scalar<std::int64_t>(u, "kms_plugin.allowed_uids");
      if (!v || *v < 0 || *v > 0xfffffffe) {
        return fail(Errc::invalid_argument, "kms_plugin.allowed_uids: uids are 0 to 4294967294");
      }
      out.allowed_uids.push_back(static_cast<std::uint32_t>(*v));
    }
  }
  if (n["key"]) ROOTSEAL_TRY_ASSIGN(out.key, scalar<std::string>(n["key"], "kms_plugin.key"));
  if (auto valid = kms::validate_key_name(out.key); !valid) {
    return fail(Errc::invalid_argument, "kms_plugin.key: " + valid.error().message);
  }
  return {};
}

namespace {

// state_dir, host_id and where the keyring lives (storage, etcd).
Result<void> parse_placement(const YAML::Node& root, Config& cfg) {
  if (root["state_dir"]) {
    std::string s;
    ROOTSEAL_TRY_ASSIGN(s, scalar<std::string>(root["state_dir"], "state_dir"));
    cfg.state_dir = s;
  }
  if (!cfg.state_dir.is_absolute()) return fail(Errc::invalid_argument, "state_dir: must be an absolute path");
  if (root["host_id"]) {
    ROOTSEAL_TRY_ASSIGN(cfg.host_id, scalar<std::string>(root["host_id"], "host_id"));
    const bool valid = !cfg.host_id.empty() && cfg.host_id.size() <= 64 &&
                       std::all_of(cfg.host_id.begin(), cfg.host_id.end(), [](char c) {
                         return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                c == '.' || c == '_' || c == '-';
                       });
    if (!valid) return fail(Errc::invalid_argument, "host_id: 1 to 64 of A-Z a-z 0-9 . _ -");
  }
  if (root["storage"]) ROOTSEAL_TRY_ASSIGN(cfg.storage, scalar<std::string>(root["storage"], "storage"));
  if (cfg.storage != "sqlite" && cfg.storage != "etcd") {
    return fail(Errc::invalid_argument, "storage: sqlite (one host) or etcd (hosts sharing one keyring)");
  }
  if (cfg.storage == "etcd" && !root["etcd"]) {
    return fail(Errc::invalid_argument, "storage: etcd needs an etcd section (etcd.endpoints)");
  }
  if (root["etcd"] && cfg.storage != "etcd") return fail(Errc::invalid_argument, "etcd: only with storage: etcd");
  if (root["etcd"]) ROOTSEAL_TRY(parse_etcd(root["etcd"], cfg.etcd));
  return {};
}

// The root of trust and how it is opened (pkcs11, tpm, pin).
Result<void> parse_root_of_trust(const YAML::Node& root, Config& cfg) {
  if (root["root_of_trust"])
    ROOTSEAL_TRY_ASSIGN(cfg.root_of_trust, scalar<std::string>(root["root_of_trust"], "root_of_trust"));
  if (cfg.root_of_trust != "pkcs11" && cfg.root_of_trust != "tpm") {
    return fail(Errc::invalid_argument, "root_of_trust: unsupported '" + cfg.root_of_trust + "' (pkcs11, tpm)");
  }
  if (root["pkcs11"]) ROOTSEAL_TRY(parse_pkcs11(root["pkcs11"], cfg.pkcs11));
  if (root["tpm"]) ROOTSEAL_TRY(parse_tpm(root["tpm"], cfg.tpm));
  if (root["pin"]) ROOTSEAL_TRY(parse_pin(root["pin"], cfg.pin));
  return {};
}

// seal.probe_interval and auto_rotate.check_interval.
Result<void> parse_timers(const YAML::Node& root, Config& cfg) {
  if (root["seal"]) {
    ROOTSEAL_TRY(check_keys(root["seal"], "seal", {"probe_interval"}));
    if (root["seal"]["probe_interval"])
      ROOTSEAL_TRY_ASSIGN(cfg.seal.probe_interval, duration(root["seal"]["probe_interval"], "seal.probe_interval"));
    if (cfg.seal.probe_interval < std::chrono::milliseconds(100)) {
      return fail(Errc::invalid_argument, "seal.probe_interval: at least 100ms");
    }
  }
  if (root["auto_rotate"]) {
    ROOTSEAL_TRY(check_keys(root["auto_rotate"], "auto_rotate", {"check_interval"}));
    if (root["auto_rotate"]["check_interval"]) {
      ROOTSEAL_TRY_ASSIGN(cfg.auto_rotate.check_interval,
                          duration(root["auto_rotate"]["check_interval"], "auto_rotate.check_interval"));
    }
    if (cfg.auto_rotate.check_interval < std::chrono::seconds(1) ||
        cfg.auto_rotate.check_interval > std::chrono::hours(1)) {
      return fail(Errc::invalid_argument, "auto_rotate.check_interval: 1s to 1h");
    }
  }
  return {};
}

// log.level and log.format.
Result<void> parse_log(const YAML::Node& root, Config& cfg) {
  if (root["log"]) {
    ROOTSEAL_TRY(check_keys(root["log"], "log", {"level", "format"}));
    if (root["log"]["level"])
      ROOTSEAL_TRY_ASSIGN(cfg.log.level, scalar<std::string>(root["log"]["level"], "log.level"));
    if (root["log"]["format"])
      ROOTSEAL_TRY_ASSIGN(cfg.log.format, scalar<std::string>(root["log"]["format"], "log.format"));
    static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error"};
    if (!levels.contains(cfg.log.level))
      return fail(Errc::invalid_argument, "log.level: trace, debug, info, warn or error");
    if (cfg.log.format != "logfmt" && cfg.log.format != "json") {
      return fail(Errc::invalid_argument, "log.format: logfmt or json");
    }
  }
  return {};
}

// audit.enabled, audit.fsync and audit.file.
Result<void> parse_audit(const YAML::Node& root, Config& cfg) {
  if (root["audit"]) {
    ROOTSEAL_TRY(check_keys(root["audit"], "audit", {"enabled", "file", "fsync"}));
    if (root["audit"]["enabled"])
      ROOTSEAL_TRY_ASSIGN(cfg.audit.enabled, scalar<bool>(root["audit"]["enabled"], "audit.enabled"));
    if (root["audit"]["fsync"])
      ROOTSEAL_TRY_ASSIGN(cfg.audit.fsync, scalar<bool>(root["audit"]["fsync"], "audit.fsync"));
    if (root["audit"]["file"]) {
      std::string f;
      ROOTSEAL_TRY_ASSIGN(f, scalar<std::string>(root["audit"]["file"], "audit.file"));
      cfg.audit.file = f;
      if (!cfg.audit.file.is_absolute()) return fail(Errc::invalid_argument, "audit.file: must be an absolute path");
    }
  }
  return {};
}

// io_threads and blocking_threads.
Result<void> parse_threads(const YAML::Node& root, Config& cfg) {
  if (root["io_threads"]) {
    auto v = scalar<std::int64_t>(root["io_threads"], "io_threads");
    if (!v || *v < 0 || *v > 256) return fail(Errc::invalid_argument, "io_threads: 0 (one per core) to 256");
    cfg.io_threads = static_cast<std::size_t>(*v);
  }
  if (root["blocking_threads"])
    ROOTSEAL_TRY_ASSIGN(cfg.blocking_threads, positive(root["blocking_threads"], "blocking_threads", 64));
  return {};
}

}  // namespace

Result<Config> parse_config(std::string_view yaml_text) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return fail(Errc::invalid_argument, "config: YAML syntax error at line " + std::to_string(e.mark.line + 1));
  }
  Config cfg;
  if (root.IsNull()) {  // an empty file: all defaults
    ROOTSEAL_TRY(finish(cfg));
    return cfg;
  }
  ROOTSEAL_TRY(refuse_inline_secrets(root, ""));
  ROOTSEAL_TRY(check_keys(root, "config", {"listen", "api",          "state_dir",  "root_of_trust", "pkcs11",
                                           "tpm",    "pin",          "seal",       "log",           "policies",
                                           "tokens", "client_certs", "audit",      "io_threads",    "blocking_threads",
                                           "admin",  "kms_plugin",   "sync",       "snapshots",     "storage",
                                           "etcd",   "host_id",      "auto_rotate"}));
  if (root["sync"]) ROOTSEAL_TRY_ASSIGN(cfg.sync, parse_sync_config(root["sync"]));
  if (root["snapshots"]) ROOTSEAL_TRY_ASSIGN(cfg.snapshots, parse_snapshots_config(root["snapshots"]));
  if (root["listen"]) ROOTSEAL_TRY(parse_listen(root["listen"], cfg.listen));
  if (root["api"]) ROOTSEAL_TRY(parse_api(root["api"], cfg.api));
  ROOTSEAL_TRY(parse_placement(root, cfg));
  ROOTSEAL_TRY(parse_root_of_trust(root, cfg));
  ROOTSEAL_TRY(parse_timers(root, cfg));
  ROOTSEAL_TRY(parse_log(root, cfg));
  if (root["policies"]) ROOTSEAL_TRY(parse_policies(root["policies"], cfg.policies));
  if (root["tokens"]) ROOTSEAL_TRY(parse_tokens(root["tokens"], cfg.policies, cfg.tokens));
  if (root["client_certs"]) ROOTSEAL_TRY(parse_client_certs(root["client_certs"], cfg.policies, cfg.client_certs));
  ROOTSEAL_TRY(parse_audit(root, cfg));
  if (root["admin"]) ROOTSEAL_TRY(parse_admin(root["admin"], cfg.admin));
  if (root["kms_plugin"]) ROOTSEAL_TRY(parse_kms_plugin(root["kms_plugin"], cfg.kms_plugin));
  ROOTSEAL_TRY(parse_threads(root, cfg));
  ROOTSEAL_TRY(finish(cfg));
  return cfg;
}

Result<Config> load_config(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return fail(Errc::invalid_argument, "config: cannot read " + path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().size() > (1u << 20)) return fail(Errc::invalid_argument, "config: file larger than 1 MiB");
  return parse_config(ss.str());
}

}  // namespace rootseal::daemon
