// rootseal::daemon — configuration of rootseald (one YAML file).
//
// Every option has a default (docs/configuration.md lists them). No secret
// value is ever read from this file: the HSM PIN comes from a TPM-sealed
// file, a systemd credential or a file readable only by the service user; a
// TPM auth value comes from a file readable only by the service user.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "rootseal/kms/error.hpp"

namespace rootseal::daemon {

struct TlsSection {
  std::filesystem::path cert_file;       // PEM chain; TLS is on when cert_file is set
  std::filesystem::path key_file;        // PEM key, mode 0600/0400
  std::filesystem::path client_ca_file;  // CA bundle for client certificates (mutual TLS)
  bool require_client_cert = false;
  std::string min_version = "1.2";
  [[nodiscard]] bool enabled() const noexcept { return !cert_file.empty(); }
};

struct ListenConfig {
  std::string address = "127.0.0.1:8200";  // host:port; IPv6 as [::1]:8200
  bool allow_plaintext = false;            // plain HTTP without tls; refused unless loopback (or dev)
  TlsSection tls;
};

// A verified client certificate (mutual TLS) that acts as a token: requests
// over TLS with this certificate and no token get these policies.
struct ClientCertIdentity {
  std::string name;
  std::string sha256;  // certificate fingerprint, 64 lower-case hex digits
  std::vector<std::string> policies;
};

struct AuditConfig {
  bool enabled = true;
  std::filesystem::path file;  // empty: <state_dir>/audit.log
  bool fsync = false;          // fdatasync each write before answering (survives power loss; costs latency)
};

struct ApiConfig {
  std::string mount = "transit";
  std::size_t max_body_bytes = std::size_t{1024} * 1024;
  std::size_t max_header_bytes = std::size_t{16} * 1024;
  std::chrono::seconds request_timeout{30};
  std::chrono::seconds idle_timeout{75};
  std::chrono::seconds header_timeout{10};  // to receive a request's header (TLS handshake included)
  std::size_t max_connections = 4096;
  std::size_t max_connections_per_client = 256;  // per client IP address; 0: no limit
};

// typed: the PIN an operator types into `rootseal unseal` (admin socket),
// used once for one login attempt and wiped; see docs/admin.md.
enum class PinSourceKind { tpm, credential, file, typed };

struct PinConfig {
  std::vector<PinSourceKind> sources = {PinSourceKind::credential, PinSourceKind::file};
  std::string credential_name = "hsm-pin";  // $CREDENTIALS_DIRECTORY/<name>
  std::filesystem::path file = "/etc/rootseal/hsm-pin";
  // The HSM PIN sealed to the TPM (source `tpm`; tcti and auth value from the
  // tpm section). parse_config fills in <state_dir>/hsm-pin.tpm when absent.
  std::filesystem::path tpm_sealed_file;
};

// The TPM: the root of trust when root_of_trust is "tpm", and what the `tpm`
// PIN source unseals the HSM PIN with. Plain types only (no tpm2-tss here).
struct TpmSection {
  std::string tcti = "device:/dev/tpmrm0";  // any tpm2-tss TCTI string
  // The TPM-sealed root key; parse_config fills in <state_dir>/tpm-root.seal.
  std::filesystem::path sealed_file;
  std::vector<std::uint32_t> pcrs = {7};  // sha256 bank, ascending, no 16/23
  std::uint32_t persistent_handle = 0;    // 0 = transient primary (SRK template)
  bool primary_rsa = false;               // transient primary: ECC P-256 (false) or RSA 2048
  // A file holding the TPM auth value (PolicyAuthValue); empty = none. The
  // value itself is never written in the configuration.
  std::filesystem::path auth_value_file;
  bool initialize = false;      // create the sealed root key on first start if absent
  bool verify_on_probe = true;  // unseal again at every probe (a PCR change seals at once)
};

struct Pkcs11Section {
  std::filesystem::path module = "/usr/lib/softhsm/libsofthsm2.so";
  std::string token_label = "rootseal";
  std::string key_label = "rootseal-root";
  bool generate_key = false;
  std::size_t max_sessions = 4;
  std::size_t unwrap_parallelism = 1;
  std::string mechanism = "auto";  // auto, aes-kwp, aes-gcm, aes-cbc-pad-hmac, rsa-oaep (docs/hsm.md)
};

struct SealConfig {
  std::chrono::milliseconds probe_interval{5000};  // root-of-trust liveness check and unseal retry
};

// Automatic key rotation (a key's auto_rotate_period): how often the keys are
// checked. Vault checks once an hour; the check reads memory only, so every
// minute costs nothing and rotates within a minute of the period's end.
struct AutoRotateConfig {
  std::chrono::milliseconds check_interval{60000};
};

// What a token may do to a key (Transit endpoints map onto these).
enum class Operation { read, list, create, config, rotate, delete_, encrypt, decrypt, rewrap, datakey };
std::string_view to_string(Operation op) noexcept;

// A named policy: key name patterns (exact, or a prefix ending in '*', or
// "*") and the operations allowed on those keys.
struct PolicyConfig {
  std::string name;
  std::vector<std::string> keys;
  std::set<Operation> operations;
};

// A token declared in the configuration by its SHA-256 (hex): the token
// itself is never written anywhere rootseald reads it from.
struct StaticTokenConfig {
  std::string name;    // display name, for logs and audit
  std::string sha256;  // 64 lower-case hex digits
  std::vector<std::string> policies;
  std::int64_t ttl_s = 0;  // 0 = does not expire
  bool renewable = false;
};

// The local admin socket (docs/admin.md): `rootseal token|unseal|status|tpm
// reseal` talk to rootseald over it. Only uid 0 and the daemon's own uid are
// served (SO_PEERCRED, checked on every connection).
struct AdminConfig {
  bool enabled = true;
  // parse_config keeps the default; dev mode puts it in its state folder.
  std::filesystem::path socket = "/run/rootseal/admin.sock";
  unsigned mode = 0600;                      // 0600 or 0660
  std::chrono::milliseconds timeout{10000};  // to read a request / write an answer
  // `rootseal unseal` after a wrong PIN: the next attempt is refused for
  // unseal_delay, doubling with every further wrong PIN up to max_unseal_delay.
  std::chrono::milliseconds unseal_delay{1000};
  std::chrono::milliseconds max_unseal_delay{300000};
};

// The Kubernetes KMS v2 plugin (docs/kms-plugin.md): gRPC on a unix socket,
// served to the peer uids listed (SO_PEERCRED, checked on every connection).
struct KmsPluginConfig {
  bool enabled = false;
  // parse_config keeps the default; dev mode puts it in its state folder.
  std::filesystem::path socket = "/run/rootseal/kms.sock";
  unsigned mode = 0600;  // 0600 or 0660
  std::string group;     // the socket's group (with 0660: kube-apiserver's); empty: the daemon's
  std::vector<std::uint32_t> allowed_uids = {0};
  std::string key = "kubernetes";  // the transit key that wraps the seeds; created if missing
};

// The shared state store of a cluster of hosts (storage: etcd; docs/ha.md):
// etcd 3.4+ through its v3 JSON gateway. The password is read from
// password_file at start (never written in the configuration).
struct EtcdSection {
  std::vector<std::string> endpoints;   // "https://etcd-1:2379", ...; all http or all https
  std::string prefix = "/rootseal/";    // every key of this cluster starts with it
  std::string username;                 // empty: etcd without authentication
  std::filesystem::path password_file;  // with username: a file readable only by the service user
  std::filesystem::path ca_file;        // https: CA bundle of the members' certificates (empty: system store)
  std::filesystem::path cert_file;      // https: client certificate (mutual TLS), with key_file
  std::filesystem::path key_file;
  std::string server_name;       // https: name to verify instead of the endpoint's host
  bool allow_plaintext = false;  // http:// to a host that is not loopback
  std::chrono::milliseconds connect_timeout{500};
  std::chrono::milliseconds request_timeout{1000};
  std::chrono::milliseconds watch_idle_timeout{300000};
  std::chrono::seconds member_ttl{10};  // the lease of this host's record under <prefix>members/
};

struct LogConfig {
  std::string level = "info";     // trace, debug, info, warn, error
  std::string format = "logfmt";  // logfmt or json
};

}  // namespace rootseal::daemon
namespace rootseal::sync {
struct EngineConfig;  // rootseal/sync/engine.hpp; the `sync:` section (daemon/src/sync_config.hpp)
}  // namespace rootseal::sync
namespace rootseal::daemon {

struct SnapshotsConfig;  // rootseal/daemon/snapshots.hpp; the `snapshots:` section

struct Config {
  ListenConfig listen;
  ApiConfig api;
  std::filesystem::path state_dir = "/var/lib/rootseal";
  std::string host_id;             // names this host in a cluster ([A-Za-z0-9._-], 1..64); empty: its host name
  std::string storage = "sqlite";  // "sqlite" (<state_dir>/rootseal.db) or "etcd" (the etcd section)
  EtcdSection etcd;
  std::string root_of_trust = "pkcs11";  // "pkcs11" or "tpm"
  Pkcs11Section pkcs11;
  TpmSection tpm;
  PinConfig pin;
  SealConfig seal;
  AutoRotateConfig auto_rotate;
  LogConfig log;
  std::vector<PolicyConfig> policies;
  std::vector<StaticTokenConfig> tokens;
  std::vector<ClientCertIdentity> client_certs;
  AuditConfig audit;
  AdminConfig admin;
  KmsPluginConfig kms_plugin;
  std::size_t io_threads = 0;        // 0 = one per core
  std::size_t blocking_threads = 2;  // PKCS#11, SQLite commits
  bool dev = false;
  std::shared_ptr<const sync::EngineConfig> sync;    // null: no `sync:` section (engine off)
  std::shared_ptr<const SnapshotsConfig> snapshots;  // null: no `snapshots:` section (no scheduled snapshots)
};

// Parses YAML text; unknown keys and bad values are errors naming the key.
kms::Result<Config> parse_config(std::string_view yaml_text);
kms::Result<Config> load_config(const std::filesystem::path& path);

// host:port -> (host, port); IPv6 in brackets. invalid_argument on bad syntax.
struct HostPort {
  std::string host;
  std::uint16_t port;
};
kms::Result<HostPort> parse_host_port(std::string_view text);
// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_host(std::string_view host);

}  // namespace rootseal::daemon
