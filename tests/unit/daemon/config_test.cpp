#include <catch2/catch.hpp>

#include "rootseal/daemon/config.hpp"
#include "rootseal/sync/engine.hpp"
#include "sync_config.hpp"

using namespace rootseal;
using namespace rootseal::daemon;

TEST_CASE("an empty config file gives the documented defaults") {
  auto cfg = parse_config("");
  REQUIRE(cfg);
  CHECK(cfg->listen.address == "127.0.0.1:8200");
  CHECK_FALSE(cfg->listen.allow_plaintext);
  CHECK(cfg->api.mount == "transit");
  CHECK(cfg->api.max_body_bytes == 1024 * 1024);
  CHECK(cfg->state_dir == "/var/lib/rootseal");
  CHECK(cfg->pkcs11.module == "/usr/lib/softhsm/libsofthsm2.so");
  CHECK(cfg->pkcs11.token_label == "rootseal");
  CHECK(cfg->pkcs11.key_label == "rootseal-root");
  CHECK_FALSE(cfg->pkcs11.generate_key);
  CHECK(cfg->pkcs11.mechanism == "auto");
  CHECK(cfg->pin.sources == std::vector{PinSourceKind::credential, PinSourceKind::file});
  CHECK(cfg->seal.probe_interval == std::chrono::milliseconds(5000));
  CHECK(cfg->log.level == "info");
  CHECK_FALSE(cfg->dev);
  CHECK(cfg->api.header_timeout == std::chrono::seconds(10));
  CHECK(cfg->api.max_connections_per_client == 256);
  CHECK_FALSE(cfg->audit.fsync);
}

TEST_CASE("a full config is read") {
  auto cfg = parse_config(R"(
listen:
  address: "[::1]:9200"
  allow_plaintext: true
api:
  mount: seal
  max_body_bytes: 65536
  request_timeout: 10s
  idle_timeout: 2m
  header_timeout: 3s
  max_connections_per_client: 0
audit:
  fsync: true
state_dir: /srv/rootseal
pkcs11:
  module: /usr/lib/x86_64-linux-gnu/pkcs11/yubihsm_pkcs11.so
  token_label: prod
  key_label: root-2026
  max_sessions: 8
  mechanism: aes-cbc-pad-hmac
pin:
  sources: [file]
  file: /etc/rootseal/pin
seal:
  probe_interval: 250ms
log:
  level: debug
  format: json
io_threads: 2
blocking_threads: 3
)");
  REQUIRE(cfg);
  CHECK(cfg->listen.address == "[::1]:9200");
  CHECK(cfg->api.mount == "seal");
  CHECK(cfg->api.max_body_bytes == 65536);
  CHECK(cfg->api.request_timeout == std::chrono::seconds(10));
  CHECK(cfg->api.idle_timeout == std::chrono::seconds(120));
  CHECK(cfg->api.header_timeout == std::chrono::seconds(3));
  CHECK(cfg->api.max_connections_per_client == 0);
  CHECK(cfg->audit.fsync);
  CHECK(cfg->pkcs11.token_label == "prod");
  CHECK(cfg->pkcs11.max_sessions == 8);
  CHECK(cfg->pkcs11.mechanism == "aes-cbc-pad-hmac");
  CHECK(cfg->pin.sources == std::vector{PinSourceKind::file});
  CHECK(cfg->seal.probe_interval == std::chrono::milliseconds(250));
  CHECK(cfg->log.format == "json");
  CHECK(cfg->io_threads == 2);
  CHECK(cfg->blocking_threads == 3);
}

TEST_CASE("bad configs are refused with a message naming the option") {
  struct Case {
    const char* yaml;
    const char* message;
  };
  const Case cases[] = {
      {"listen:\n  adress: x\n", "listen: unknown option 'adress'"},
      {"bogus: 1\n", "config: unknown option 'bogus'"},
      {"listen:\n  address: 127.0.0.1\n", "address: expected host:port"},
      {"listen:\n  address: ::1:80\n", "brackets"},
      {"listen:\n  address: 127.0.0.1:99999\n", "invalid host or port"},
      {"api:\n  mount: a/b\n", "api.mount"},
      {"api:\n  max_body_bytes: -1\n", "api.max_body_bytes"},
      {"api:\n  request_timeout: 5 parsecs\n", "api.request_timeout"},
      {"api:\n  header_timeout: 500ms\n", "timeouts must be at least 1s"},
      {"api:\n  max_connections_per_client: -3\n", "api.max_connections_per_client"},
      {"audit:\n  fsync: sometimes\n", "audit.fsync"},
      {"state_dir: relative/path\n", "state_dir: must be an absolute path"},
      {"root_of_trust: floppy\n", "root_of_trust: unsupported"},
      {"pkcs11:\n  mechanism: aes-cbc\n",
       "pkcs11.mechanism: unknown 'aes-cbc' (auto, aes-kwp, aes-gcm, aes-cbc-pad-hmac, rsa-oaep)"},
      {"pkcs11:\n  mechanism: AES-KWP\n", "pkcs11.mechanism: unknown 'AES-KWP'"},
      {"pkcs11:\n  module: libsofthsm2.so\n", "pkcs11.module: must be an absolute path"},
      {"pkcs11:\n  token_label: \"\"\n", "pkcs11.token_label"},
      {"pkcs11:\n  token_label: abcdefghijklmnopqrstuvwxyz0123456789\n", "pkcs11.token_label"},
      {"pin:\n  sources: [typed-on-a-postit]\n", "pin.sources: unknown source"},
      {"pin:\n  credential_name: ../etc/shadow\n", "pin.credential_name"},
      {"seal:\n  probe_interval: 1ms\n", "seal.probe_interval"},
      {"log:\n  level: loud\n", "log.level"},
      {"listen: [1, 2\n", "YAML syntax error"},
      {"api: 7\n", "api: must be a mapping"},
  };
  for (const auto& c : cases) {
    INFO(c.yaml);
    auto cfg = parse_config(c.yaml);
    REQUIRE_FALSE(cfg);
    CHECK(cfg.error().code == kms::Errc::invalid_argument);
    CHECK_THAT(cfg.error().message, Catch::Contains(c.message));
  }
}

TEST_CASE("durations from the config are range-checked before any arithmetic") {
  // These used to be multiplied (value * 3'600'000 ms) past int64: UB, and
  // a wrapped (possibly negative) timeout. Each is now a clear refusal.
  const std::pair<const char*, const char*> over[] = {
      {"api:\n  request_timeout: 9999999999999999h\n", "api.request_timeout: invalid duration (duration out of range)"},
      {"api:\n  idle_timeout: 9223372036854775807\n", "api.idle_timeout: invalid duration"},
      {"seal:\n  probe_interval: 2562048h\n", "seal.probe_interval: invalid duration"},
      {"admin:\n  unseal_delay: 9223372036854775807s\n", "admin.unseal_delay: invalid duration"},
      {"sync:\n  retry_max: 9999999999999999h\n", "sync.retry_max: invalid duration (duration out of range)"},
      {"api:\n  request_timeout: -5\n", "api.request_timeout: invalid duration"},
  };
  for (const auto& [yaml, message] : over) {
    INFO(yaml);
    auto cfg = parse_config(yaml);
    REQUIRE_FALSE(cfg);
    CHECK_THAT(cfg.error().message, Catch::Contains(message));
  }
  // The boundaries themselves are accepted: 100 years, as a Go duration or seconds.
  auto longest = parse_config("api:\n  idle_timeout: 876000h\n  request_timeout: 3153600000\n");
  REQUIRE(longest);
  CHECK(longest->api.idle_timeout == std::chrono::hours(876000));
  CHECK(longest->api.request_timeout == std::chrono::seconds(3153600000));
  auto go = parse_config("api:\n  request_timeout: 1m30s\n");
  REQUIRE(go);
  CHECK(go->api.request_timeout == std::chrono::seconds(90));
}

TEST_CASE("host:port parsing and loopback detection") {
  auto hp = parse_host_port("[::1]:8200");
  REQUIRE(hp);
  CHECK(hp->host == "::1");
  CHECK(hp->port == 8200);
  CHECK(is_loopback_host("127.0.0.1"));
  CHECK(is_loopback_host("127.8.9.10"));
  CHECK(is_loopback_host("::1"));
  CHECK(is_loopback_host("localhost"));
  CHECK_FALSE(is_loopback_host("0.0.0.0"));
  CHECK_FALSE(is_loopback_host("::"));
  CHECK_FALSE(is_loopback_host("10.0.0.1"));
  CHECK_FALSE(is_loopback_host("localhost.example.com"));
  CHECK_FALSE(is_loopback_host("128.0.0.1"));
}

TEST_CASE("policies and static tokens are read and checked") {
  auto cfg = parse_config(R"(
policies:
  seal:
    keys: [autounseal]
    operations: [encrypt, decrypt]
  apps:
    keys: ["app-*", exact]
    operations: [read, list, create, config, rotate, delete, encrypt, decrypt, rewrap, datakey]
tokens:
  - name: vault
    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    policies: [seal]
    ttl: 2h
    renewable: true
)");
  REQUIRE(cfg);
  REQUIRE(cfg->policies.size() == 2);
  const auto& seal = cfg->policies[0].name == "seal" ? cfg->policies[0] : cfg->policies[1];
  CHECK(seal.keys == std::vector<std::string>{"autounseal"});
  CHECK(seal.operations == std::set<Operation>{Operation::encrypt, Operation::decrypt});
  REQUIRE(cfg->tokens.size() == 1);
  CHECK(cfg->tokens[0].ttl_s == 7200);
  CHECK(cfg->tokens[0].renewable);

  const char* bad[] = {
      "policies:\n  root:\n    keys: [a]\n    operations: [read]\n",
      "policies:\n  p:\n    keys: [a]\n    operations: [fly]\n",
      "policies:\n  p:\n    keys: []\n    operations: [read]\n",
      "policies:\n  p:\n    keys: ['a*b']\n    operations: [read]\n",
      "tokens:\n  - name: t\n    sha256: abc\n    policies: [root]\n",
      "tokens:\n  - name: t\n    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n    "
      "policies: [nope]\n",
      "tokens:\n  - name: t\n    policies: [root]\n",
      "tokens:\n  - name: t\n    token: plaintext-secret\n    sha256: "
      "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n    policies: [root]\n",
  };
  for (const char* yaml : bad) {
    INFO(yaml);
    auto r = parse_config(yaml);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == kms::Errc::invalid_argument);
    // A refused config never echoes a token-looking value back.
    CHECK(r.error().message.find("plaintext-secret") == std::string::npos);
  }
}

// --- TPM root of trust and TPM-sealed HSM PIN --------------------------------

TEST_CASE("tpm section and the tpm PIN source have documented defaults that follow state_dir") {
  auto cfg = parse_config("");
  REQUIRE(cfg);
  CHECK(cfg->root_of_trust == "pkcs11");
  CHECK(cfg->tpm.tcti == "device:/dev/tpmrm0");
  CHECK(cfg->tpm.sealed_file == "/var/lib/rootseal/tpm-root.seal");
  CHECK(cfg->tpm.pcrs == std::vector<std::uint32_t>{7});
  CHECK(cfg->tpm.persistent_handle == 0);
  CHECK_FALSE(cfg->tpm.primary_rsa);
  CHECK(cfg->tpm.auth_value_file.empty());
  CHECK_FALSE(cfg->tpm.initialize);
  CHECK(cfg->tpm.verify_on_probe);
  CHECK(cfg->pin.tpm_sealed_file == "/var/lib/rootseal/hsm-pin.tpm");

  auto moved = parse_config("state_dir: /srv/rs\nroot_of_trust: tpm\n");
  REQUIRE(moved);
  CHECK(moved->root_of_trust == "tpm");
  CHECK(moved->tpm.sealed_file == "/srv/rs/tpm-root.seal");
  CHECK(moved->pin.tpm_sealed_file == "/srv/rs/hsm-pin.tpm");
}

TEST_CASE("a full tpm config is read") {
  auto cfg = parse_config(R"(
state_dir: /srv/rootseal
root_of_trust: tpm
tpm:
  tcti: "swtpm:host=127.0.0.1,port=2321"
  sealed_file: /srv/tpm/root.seal
  pcrs: [7, 0, 2]
  persistent_handle: 0x81000001
  primary_alg: rsa2048
  auth_value_file: /etc/rootseal/tpm-auth
  initialize: true
  verify_on_probe: false
pin:
  sources: [tpm, credential, file]
  tpm_sealed_file: /srv/tpm/pin.seal
)");
  REQUIRE(cfg);
  CHECK(cfg->root_of_trust == "tpm");
  CHECK(cfg->tpm.tcti == "swtpm:host=127.0.0.1,port=2321");
  CHECK(cfg->tpm.sealed_file == "/srv/tpm/root.seal");
  CHECK(cfg->tpm.pcrs == std::vector<std::uint32_t>{0, 2, 7});
  CHECK(cfg->tpm.persistent_handle == 0x81000001u);
  CHECK(cfg->tpm.primary_rsa);
  CHECK(cfg->tpm.auth_value_file == "/etc/rootseal/tpm-auth");
  CHECK(cfg->tpm.initialize);
  CHECK_FALSE(cfg->tpm.verify_on_probe);
  CHECK(cfg->pin.sources == std::vector{PinSourceKind::tpm, PinSourceKind::credential, PinSourceKind::file});
  CHECK(cfg->pin.tpm_sealed_file == "/srv/tpm/pin.seal");
}

TEST_CASE("tpm: an empty PCR list, a decimal handle, and the tpm PIN source with an HSM root") {
  auto cfg = parse_config("tpm:\n  pcrs: []\n  persistent_handle: 2164260865\npin:\n  sources: [tpm]\n");
  REQUIRE(cfg);
  CHECK(cfg->root_of_trust == "pkcs11");
  CHECK(cfg->tpm.pcrs.empty());
  CHECK(cfg->tpm.persistent_handle == 0x81000001u);
  CHECK(cfg->pin.sources == std::vector{PinSourceKind::tpm});
}

TEST_CASE("bad tpm configs are refused with a message naming the option") {
  struct Case {
    const char* yaml;
    const char* message;
  };
  const Case cases[] = {
      {"root_of_trust: tmp\n", "root_of_trust: unsupported 'tmp' (pkcs11, tpm)"},
      {"tpm:\n  tcit: device:/dev/tpm0\n", "tpm: unknown option 'tcit'"},
      {"tpm: device:/dev/tpmrm0\n", "tpm: must be a mapping"},
      {"tpm:\n  tcti: \"\"\n", "tpm.tcti"},
      {"tpm:\n  sealed_file: tpm-root.seal\n", "tpm.sealed_file: must be an absolute path"},
      {"tpm:\n  pcrs: 7\n", "tpm.pcrs: must be a list"},
      {"tpm:\n  pcrs: [24]\n", "tpm.pcrs: PCR indices are 0..23"},
      {"tpm:\n  pcrs: [-1]\n", "tpm.pcrs: PCR indices are 0..23"},
      {"tpm:\n  pcrs: [seven]\n", "tpm.pcrs"},
      {"tpm:\n  pcrs: [7, 7]\n", "tpm.pcrs: PCR 7 is listed twice"},
      {"tpm:\n  pcrs: [7, 16]\n", "tpm.pcrs: PCR 16 is resettable"},
      {"tpm:\n  pcrs: [23]\n", "tpm.pcrs: PCR 23 is resettable"},
      {"tpm:\n  persistent_handle: 0x80000001\n", "tpm.persistent_handle: a persistent handle"},
      {"tpm:\n  persistent_handle: 0x82000000\n", "tpm.persistent_handle"},
      {"tpm:\n  persistent_handle: 0xzz\n", "tpm.persistent_handle"},
      {"tpm:\n  primary_alg: dsa\n", "tpm.primary_alg: ecc_p256 or rsa2048"},
      {"tpm:\n  auth_value_file: tpm-auth\n", "tpm.auth_value_file: must be an absolute path"},
      {"tpm:\n  initialize: maybe\n", "tpm.initialize"},
      {"tpm:\n  initialize: true\n", "tpm.initialize: only with root_of_trust: tpm"},
      {"tpm:\n  verify_on_probe: often\n", "tpm.verify_on_probe"},
      {"pin:\n  sources: [tpm, file, tpm]\n", "pin.sources: 'tpm' is listed twice"},
      {"pin:\n  sources: [tmp]\n", "pin.sources: unknown source 'tmp' (tpm, credential, file)"},
      {"pin:\n  tpm_sealed_file: hsm-pin.tpm\n", "pin.tpm_sealed_file: must be an absolute path"},
      {"root_of_trust: tpm\ntpm:\n  sealed_file: /x/s.seal\npin:\n  sources: [tpm]\n  tpm_sealed_file: /x/s.seal\n",
       "pin.tpm_sealed_file: must differ from tpm.sealed_file"},
  };
  for (const auto& c : cases) {
    INFO(c.yaml);
    auto cfg = parse_config(c.yaml);
    REQUIRE_FALSE(cfg);
    CHECK(cfg.error().code == kms::Errc::invalid_argument);
    CHECK_THAT(cfg.error().message, Catch::Contains(c.message));
  }
}

TEST_CASE("a TPM auth value written in the config is refused and never echoed") {
  const char* bad[] = {
      "root_of_trust: tpm\ntpm:\n  auth_value: hunter2-tpm-secret\n",
      "root_of_trust: tpm\ntpm:\n  auth: hunter2-tpm-secret\n",
      "root_of_trust: tpm\ntpm:\n  password: hunter2-tpm-secret\n",
  };
  for (const char* yaml : bad) {
    INFO(yaml);
    auto r = parse_config(yaml);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == kms::Errc::invalid_argument);
    CHECK_THAT(r.error().message, Catch::Contains("tpm.auth_value_file"));
    CHECK(r.error().message.find("hunter2") == std::string::npos);
  }
}

TEST_CASE("a secret written inline in the config is refused without echoing it") {
  struct Case {
    const char* yaml;
    const char* path;
  };
  const Case cases[] = {
      {"pin: \"493817\"\n", "pin:"},
      {"pin:\n  sources: [file]\n  user_pin: \"493817\"\n", "pin.user_pin:"},
      {"tokens:\n  - token: \"rs.493817\"\n    policies: [root]\n", "tokens[0].token:"},
      {"tpm:\n  auth_value: \"493817\"\n", "tpm.auth_value"},
      {"sync:\n  stores:\n    v:\n      kind: vault\n      token: \"hvs.493817\"\n", "sync.stores.v.token:"},
      {"pkcs11:\n  so_password: \"493817\"\n", "pkcs11.so_password:"},
  };
  for (const auto& c : cases) {
    INFO(c.yaml);
    auto cfg = parse_config(c.yaml);
    REQUIRE_FALSE(cfg);
    CHECK(cfg.error().message.find(c.path) != std::string::npos);
    CHECK(cfg.error().message.find("493817") == std::string::npos);
  }
  // Keys that only name where a secret lives are not secrets.
  auto ok = parse_config("pkcs11:\n  token_label: rootseal\ntpm:\n  auth_value_file: /etc/rootseal/tpm-auth\n");
  CHECK(ok);
}

TEST_CASE("sync.queue and sync.store_backoff: defaults, values, and out-of-range values refused") {
  auto def = parse_config("sync:\n  enabled: false\n");
  REQUIRE(def);
  REQUIRE(def->sync);
  CHECK(def->sync->queue_qps == 500);
  CHECK(def->sync->queue_burst == 1000);
  CHECK(def->sync->store_backoff_base == std::chrono::milliseconds(1000));
  CHECK(def->sync->store_backoff_max == std::chrono::milliseconds(10'000));
  auto set = parse_config("sync:\n  queue: {qps: 2000, burst: 5000}\n  store_backoff: {base: 250ms, max: 30s}\n");
  REQUIRE(set);
  CHECK(set->sync->queue_qps == 2000);
  CHECK(set->sync->queue_burst == 5000);
  CHECK(set->sync->store_backoff_base == std::chrono::milliseconds(250));
  CHECK(set->sync->store_backoff_max == std::chrono::milliseconds(30'000));
  const std::pair<const char*, const char*> bad[] = {
      {"sync:\n  queue: {qps: 0}\n", "sync.queue.qps"},
      {"sync:\n  queue: {burst: 0}\n", "sync.queue.burst"},
      {"sync:\n  queue: {rate: 5}\n", "sync.queue: unknown option 'rate'"},
      {"sync:\n  store_backoff: {base: 5s, max: 1s}\n", "sync.store_backoff"},
      {"sync:\n  store_backoff: {base: 1ms}\n", "sync.store_backoff"},
      {"sync:\n  store_backoff: {max: 2h}\n", "sync.store_backoff"},
  };
  for (const auto& [yaml, what] : bad) {
    INFO(yaml);
    auto r = parse_config(yaml);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == kms::Errc::invalid_argument);
    CHECK_THAT(r.error().message, Catch::Contains(what));
  }
}

// Found by tests/fuzz (fuzz_config_yaml): YAML allows a sequence or a mapping
// as a key, which has no string form; yaml-cpp threw out of parse_config.
TEST_CASE("a key that is not a plain word is refused, never thrown") {
  struct Case {
    const char* yaml;
    const char* message;
  };
  const Case cases[] = {
      {"? [a, b]\n: 1\n", "config: option names must be plain words"},
      {"listen:\n  ? {x: 1}\n  : 2\n", "listen: option names must be plain words"},
      {"policies:\n  ? [p]\n  : {keys: [a], operations: [read]}\n", "policies: policy names must be plain words"},
      {"sync:\n  ? [enabled]\n  : true\n", "sync: option names must be plain words"},
      {"sync:\n  stores:\n    ? [central]\n    : {kind: vault}\n", "sync.stores: store names must be plain words"},
  };
  for (const auto& c : cases) {
    INFO(c.yaml);
    kms::Result<Config> cfg = kms::fail(kms::Errc::internal, "not run");
    REQUIRE_NOTHROW(cfg = parse_config(c.yaml));
    REQUIRE_FALSE(cfg);
    CHECK(cfg.error().code == kms::Errc::invalid_argument);
    CHECK_THAT(cfg.error().message, Catch::Contains(c.message));
  }
}

TEST_CASE("sync.aws_endpoint: the Secrets Manager endpoint of stores on their own credentials") {
  auto def = parse_config("sync:\n  enabled: false\n");
  REQUIRE(def);
  CHECK(def->sync->aws_endpoint.empty());
  auto set = parse_config("sync:\n  aws_endpoint: http://127.0.0.1:5000\n");
  REQUIRE(set);
  CHECK(set->sync->aws_endpoint == "http://127.0.0.1:5000");
  // Not a URL: refused without echoing it (a URL may carry a password).
  auto bad = parse_config("sync:\n  aws_endpoint: ftp://user:hunter2@host\n");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == kms::Errc::invalid_argument);
  CHECK(bad.error().message == "sync.aws_endpoint: not an http:// or https:// URL");
  CHECK(bad.error().message.find("hunter2") == std::string::npos);
}

TEST_CASE("sync.azure_authority_host and sync.gcp_*_endpoint: identity endpoints of stores on their own credentials") {
  auto def = parse_config("sync:\n  enabled: false\n");
  REQUIRE(def);
  CHECK(def->sync->azure_authority_host.empty());
  CHECK(def->sync->gcp_sts_endpoint.empty());
  auto set = parse_config(
      "sync:\n  azure_authority_host: http://127.0.0.1:1\n  gcp_endpoint: http://127.0.0.1:2\n"
      "  gcp_sts_endpoint: https://sts.example\n  gcp_iam_endpoint: http://127.0.0.1:3\n");
  REQUIRE(set);
  CHECK(set->sync->azure_authority_host == "http://127.0.0.1:1");
  CHECK(set->sync->gcp_endpoint == "http://127.0.0.1:2");
  CHECK(set->sync->gcp_sts_endpoint == "https://sts.example");
  CHECK(set->sync->gcp_iam_endpoint == "http://127.0.0.1:3");
  for (const char* key : {"azure_authority_host", "gcp_endpoint", "gcp_sts_endpoint", "gcp_iam_endpoint"}) {
    auto bad = parse_config(std::string("sync:\n  ") + key + ": ftp://user:hunter2@host\n");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().message == std::string("sync.") + key + ": not an http:// or https:// URL");
  }
}

TEST_CASE("sync.stores: each kind is read into its provider's host settings") {
  auto cfg = parse_config(R"(sync:
  stores:
    central:
      kind: vault
      server: https://vault.internal:8200
      vault_namespace: team
      role_id: r-1
      secret_id: {credential: vault-secret-id}
      ca_file: /etc/rootseal/vault-ca.pem
      namespaces: [payments, web]
    aws-prod:
      kind: aws
      region: eu-west-1
      endpoint: http://127.0.0.1:5000
      access_key_id: {file: /etc/rootseal/aws-id}
      secret_access_key: {credential: aws-secret}
      namespaces: ["*"]
    az:
      kind: azure
      vault_url: https://kv.vault.azure.net
      tenant_id: t-1
      client_id: app-1
      client_secret: {credential: az-secret}
      namespaces: [team-a]
    g:
      kind: gcp
      project_id: p-1
      token_uri: https://oauth2.example/token
      service_account_json: {file: /etc/rootseal/sa.json}
      namespaces: ["*"]
)");
  REQUIRE(cfg);
  const auto& stores = cfg->sync->stores;
  REQUIRE(stores.size() == 4);
  const auto& central = stores.at("central");
  CHECK(central.name == "central");
  CHECK(central.namespaces == std::vector<std::string>{"payments", "web"});
  CHECK(central.ca_file == "/etc/rootseal/vault-ca.pem");
  const auto* v = std::get_if<sync::VaultHost>(&central.settings);
  REQUIRE(v != nullptr);
  CHECK(v->server == "https://vault.internal:8200");
  CHECK(v->path == "secret");  // the default
  CHECK(v->vault_namespace == "team");
  CHECK(v->role_id == "r-1");
  CHECK(v->secret_id.credential == "vault-secret-id");
  CHECK_FALSE(v->token.set());
  const auto* a = std::get_if<sync::AwsHost>(&stores.at("aws-prod").settings);
  REQUIRE(a != nullptr);
  CHECK(a->region == "eu-west-1");
  CHECK(a->endpoint == "http://127.0.0.1:5000");
  CHECK(a->access_key_id.file == "/etc/rootseal/aws-id");
  CHECK(a->secret_access_key.credential == "aws-secret");
  CHECK_FALSE(a->session_token.set());
  const auto* z = std::get_if<sync::AzureHost>(&stores.at("az").settings);
  REQUIRE(z != nullptr);
  CHECK(z->vault_url == "https://kv.vault.azure.net");
  CHECK(z->tenant_id == "t-1");
  CHECK(z->client_id == "app-1");
  CHECK(z->authority_host.empty());
  CHECK(z->client_secret.credential == "az-secret");
  const auto* g = std::get_if<sync::GcpHost>(&stores.at("g").settings);
  REQUIRE(g != nullptr);
  CHECK(g->project_id == "p-1");
  CHECK(g->token_uri == "https://oauth2.example/token");
  CHECK(g->service_account_json.file == "/etc/rootseal/sa.json");
}

TEST_CASE("sync.stores: unknown, misplaced, missing and malformed options are refused by name") {
  const std::string head = "sync:\n  stores:\n    s:\n      namespaces: [x]\n";
  const std::pair<std::string, const char*> bad[] = {
      {head + "      kind: vault\n      servr: https://v\n", "sync.stores.s: unknown option 'servr'"},
      {head + "      server: https://v\n", "sync.stores.s.kind: required (vault, aws, azure, gcp)"},
      {head + "      kind: consul\n", "sync.stores.s.kind: vault, aws, azure or gcp"},
      // An option of another kind: refused, not silently ignored.
      {head + "      kind: vault\n      server: https://v\n      token: {file: /t}\n      region: eu-west-1\n",
       "sync.stores.s.region: not an option of a vault store"},
      {head + "      kind: gcp\n      project_id: p\n      service_account_json: {file: /k}\n"
              "      vault_url: https://kv\n",
       "sync.stores.s.vault_url: not an option of a gcp store"},
      {head + "      kind: vault\n      token: {file: /t}\n", "sync.stores.s.server: required for vault"},
      {head + "      kind: vault\n      server: https://v\n      role_id: r\n",
       "sync.stores.s: vault needs token, or role_id and secret_id"},
      {head + "      kind: aws\n      region: eu-west-1\n      access_key_id: {file: /a}\n",
       "sync.stores.s: aws needs access_key_id and secret_access_key"},
      {head + "      kind: azure\n      vault_url: https://kv\n      tenant_id: t\n      client_id: c\n",
       "sync.stores.s.client_secret: required for azure"},
      {head + "      kind: gcp\n      service_account_json: {file: /k}\n",
       "sync.stores.s.project_id: required for gcp"},
      {head + "      kind: aws\n      region: [eu]\n", "sync.stores.s.region: must be a scalar"},
      {head + "      kind: aws\n      region: eu-west-1\n      access_key_id: {file: a}\n"
              "      secret_access_key: {file: /s}\n",
       "sync.stores.s.access_key_id.file: must be an absolute path"},
      {head + "      kind: azure\n      vault_url: https://kv\n      tenant_id: t\n      client_id: c\n"
              "      client_secret: {file: /s}\n      authority_host: login.example\n",
       "sync.stores.s.authority_host: not an http:// or https:// URL"},
      {"sync:\n  stores:\n    s:\n      kind: vault\n      server: https://v\n      token: {file: /t}\n",
       "sync.stores.s.namespaces: required"},
  };
  for (const auto& [yaml, message] : bad) {
    INFO(yaml);
    auto r = parse_config(yaml);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == kms::Errc::invalid_argument);
    CHECK_THAT(r.error().message, Catch::Contains(message));
  }
}

TEST_CASE("kms_plugin: defaults, a full section, and bad values refused with the option named") {
  auto defaults = parse_config("");
  REQUIRE(defaults);
  CHECK_FALSE(defaults->kms_plugin.enabled);
  CHECK(defaults->kms_plugin.socket == "/run/rootseal/kms.sock");
  CHECK(defaults->kms_plugin.mode == 0600);
  CHECK(defaults->kms_plugin.allowed_uids == std::vector<std::uint32_t>{0});
  CHECK(defaults->kms_plugin.key == "kubernetes");

  auto full = parse_config(
      "kms_plugin:\n  enabled: true\n  socket: /run/rootseal/k.sock\n  mode: \"0660\"\n"
      "  group: kube\n  allowed_uids: [0, 998]\n  key: k8s-etcd\n");
  REQUIRE(full);
  CHECK(full->kms_plugin.enabled);
  CHECK(full->kms_plugin.socket == "/run/rootseal/k.sock");
  CHECK(full->kms_plugin.mode == 0660);
  CHECK(full->kms_plugin.group == "kube");
  CHECK(full->kms_plugin.allowed_uids == std::vector<std::uint32_t>{0, 998});
  CHECK(full->kms_plugin.key == "k8s-etcd");

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"kms_plugin:\n  socket: \"@kms\"\n", "kms_plugin.socket: an absolute path"},  // abstract: no ACL
      {"kms_plugin:\n  socket: run/kms.sock\n", "kms_plugin.socket: an absolute path"},
      {"kms_plugin:\n  socket: /" + std::string(90, 'a') + "\n", "kms_plugin.socket: an absolute path"},
      {"kms_plugin:\n  mode: \"0666\"\n", "kms_plugin.mode"},
      {"kms_plugin:\n  group: kube\n", "kms_plugin.group: only with kms_plugin.mode \"0660\""},
      {"kms_plugin:\n  allowed_uids: []\n", "kms_plugin.allowed_uids"},
      {"kms_plugin:\n  allowed_uids: [-1]\n", "kms_plugin.allowed_uids"},
      {"kms_plugin:\n  allowed_uids: [4294967295]\n", "kms_plugin.allowed_uids"},
      {"kms_plugin:\n  key: \"bad/name\"\n", "kms_plugin.key"},
      {"kms_plugin:\n  sockets: /x\n", "kms_plugin"},
  };
  for (const auto& [yaml, message] : bad) {
    INFO(yaml);
    auto cfg = parse_config(yaml);
    REQUIRE_FALSE(cfg);
    CHECK_THAT(cfg.error().message, Catch::Contains(message));
  }
}

TEST_CASE("storage: sqlite by default, etcd with a full section, and bad values refused with the option named") {
  auto defaults = parse_config("");
  REQUIRE(defaults);
  CHECK(defaults->storage == "sqlite");
  CHECK(defaults->etcd.endpoints.empty());

  auto full = parse_config(
      "storage: etcd\n"
      "etcd:\n"
      "  endpoints: [\"https://etcd-1:2379\", \"https://etcd-2:2379/\", \"https://[fd00::3]:2379\"]\n"
      "  prefix: /rootseal/prod/\n"
      "  username: rootseal\n"
      "  password_file: /etc/rootseal/etcd-password\n"
      "  ca_file: /etc/rootseal/etcd-ca.pem\n"
      "  cert_file: /etc/rootseal/etcd-client.pem\n"
      "  key_file: /etc/rootseal/etcd-client.key\n"
      "  server_name: etcd.internal\n"
      "  connect_timeout: 250ms\n"
      "  request_timeout: 2s\n"
      "  watch_idle_timeout: 15m\n"
      "  member_ttl: 30s\n"
      "host_id: rs-1.eu_west\n");
  REQUIRE(full);
  CHECK(full->storage == "etcd");
  const auto& e = full->etcd;
  CHECK(e.endpoints ==
        std::vector<std::string>{"https://etcd-1:2379", "https://etcd-2:2379", "https://[fd00::3]:2379"});
  CHECK(e.prefix == "/rootseal/prod/");
  CHECK(e.username == "rootseal");
  CHECK(e.password_file == "/etc/rootseal/etcd-password");
  CHECK(e.ca_file == "/etc/rootseal/etcd-ca.pem");
  CHECK(e.cert_file == "/etc/rootseal/etcd-client.pem");
  CHECK(e.key_file == "/etc/rootseal/etcd-client.key");
  CHECK(e.server_name == "etcd.internal");
  CHECK(e.connect_timeout == std::chrono::milliseconds(250));
  CHECK(e.request_timeout == std::chrono::milliseconds(2000));
  CHECK(e.watch_idle_timeout == std::chrono::minutes(15));
  CHECK(e.member_ttl == std::chrono::seconds(30));
  CHECK(full->host_id == "rs-1.eu_west");

  auto loopback = parse_config("storage: etcd\netcd:\n  endpoints: [\"http://127.0.0.1:2379\"]\n");
  REQUIRE(loopback);
  CHECK(loopback->etcd.prefix == "/rootseal/");
  CHECK(loopback->etcd.request_timeout == std::chrono::milliseconds(1000));
  CHECK(loopback->etcd.member_ttl == std::chrono::seconds(10));
  CHECK(loopback->host_id.empty());  // the machine's host name
  CHECK(parse_config("storage: etcd\netcd:\n  allow_plaintext: true\n  endpoints: [\"http://etcd-1:2379\"]\n"));

  const std::string ok = "storage: etcd\netcd:\n  endpoints: [\"https://etcd-1:2379\"]\n";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"storage: mysql\n", "storage: sqlite (one host) or etcd"},
      {"storage: etcd\n", "storage: etcd needs an etcd section"},
      {"etcd:\n  endpoints: [\"https://e:2379\"]\n", "etcd: only with storage: etcd"},
      {"storage: etcd\netcd:\n  prefix: /x/\n", "etcd.endpoints: required"},
      {"storage: etcd\netcd:\n  endpoints: []\n", "etcd.endpoints: a non-empty list"},
      {"storage: etcd\netcd:\n  endpoints: [\"etcd-1:2379\"]\n", "must start with https:// or http://"},
      {"storage: etcd\netcd:\n  endpoints: [\"https://etcd-1\"]\n", "must be scheme://host:port"},
      {"storage: etcd\netcd:\n  endpoints: [\"https://etcd-1:2379/v3\"]\n", "must be scheme://host:port"},
      {"storage: etcd\netcd:\n  endpoints: [\"https://a:2379\", \"http://127.0.0.1:2379\"]\n",
       "all https:// or all http://"},
      {"storage: etcd\netcd:\n  endpoints: [\"http://etcd-1:2379\"]\n", "plain http to another host"},
      {ok + "  prefix: rootseal\n", "etcd.prefix: starts and ends with '/'"},
      {ok + "  prefix: \"/root seal/\"\n", "etcd.prefix"},
      {ok + "  username: rs\n", "etcd.username and etcd.password_file: both or neither"},
      {ok + "  password_file: /etc/pw\n", "etcd.username and etcd.password_file: both or neither"},
      {ok + "  username: rs\n  password_file: pw\n", "etcd.password_file: must be an absolute path"},
      {ok + "  password: hunter2\n", "a secret is never written in the configuration"},
      {ok + "  cert_file: /c.pem\n", "etcd.cert_file and etcd.key_file: both or neither"},
      {ok + "  ca_file: ca.pem\n", "etcd.ca_file: must be an absolute path"},
      {"storage: etcd\netcd:\n  endpoints: [\"http://127.0.0.1:2379\"]\n  ca_file: /ca.pem\n",
       "etcd.ca_file: only with https:// endpoints"},
      {ok + "  request_timeout: 10ms\n", "etcd.request_timeout: 50ms to 1m"},
      {ok + "  connect_timeout: 2m\n", "etcd.connect_timeout: 50ms to 1m"},
      {ok + "  watch_idle_timeout: 100ms\n", "etcd.watch_idle_timeout: 1s to 24h"},
      {ok + "  endpoint: x\n", "etcd: unknown option 'endpoint'"},
      {ok + "  member_ttl: 1s\n", "etcd.member_ttl: 2s to 5m"},
      {ok + "  member_ttl: 2500ms\n", "etcd.member_ttl: whole seconds"},
      {ok + "host_id: \"a b\"\n", "host_id: 1 to 64 of"},
      {ok + "host_id: \"\"\n", "host_id: 1 to 64 of"},
  };
  for (const auto& [yaml, message] : bad) {
    INFO(yaml);
    auto cfg = parse_config(yaml);
    REQUIRE_FALSE(cfg);
    CHECK_THAT(cfg.error().message, Catch::Contains(message));
  }
}

TEST_CASE("sync: fingerprint: one value for two spellings with user information and the kubeconfig left out") {
  auto parsed = [](const std::string& text) {
    auto cfg = parse_config(text);
    REQUIRE(cfg);
    REQUIRE(cfg->sync);
    return cfg->sync;
  };
  auto fp = [&](const std::string& text) { return sync_config_fingerprint(*parsed(text)); };
  const std::string store =
      "  stores:\n    v:\n      kind: vault\n      server: https://vault.example:8200\n"
      "      token: {file: /etc/rootseal/vault-token}\n      namespaces: [\"*\"]\n";
  const auto base_cfg = parsed("sync:\n  enabled: true\n  refresh_window: 10s\n" + store);
  const auto base = sync_config_fingerprint(*base_cfg);
  CHECK(base.size() == 64);
  // The defaults written out, another spelling of a duration: the same, for
  // the cluster and for this host.
  const auto spelled =
      parsed("sync:\n  enabled: true\n  refresh_window: 10000ms\n  sharded: true\n  kube_qps: 50\n" + store);
  CHECK(sync_config_fingerprint(*spelled) == base);
  CHECK(same_sync_config(*spelled, *base_cfg));
  // Every option counts: a store, its credential reference, an interval, sharding.
  CHECK(fp("sync:\n  enabled: true\n  refresh_window: 11s\n" + store) != base);
  CHECK(fp("sync:\n  enabled: true\n  sharded: false\n" + store) != base);
  CHECK(fp("sync:\n  enabled: true\n  refresh_window: 10s\n" +
           std::string("  stores:\n    v:\n      kind: vault\n      server: https://vault.example:8200\n"
                       "      token: {credential: vault-token}\n      namespaces: [\"*\"]\n")) != base);
  CHECK(fp("sync:\n  enabled: true\n") != base);
  // Each host's own kubeconfig: the same fingerprint, but a change for the host itself.
  const auto kc = parsed("sync:\n  enabled: true\n  kubeconfig: /etc/rootseal/kubeconfig-b\n" + store);
  CHECK(sync_config_fingerprint(*kc) == base);
  CHECK_FALSE(same_sync_config(*kc, *base_cfg));
}

TEST_CASE("sync: URL user information changes the host's configuration but never the shared text") {
  auto parsed = [](const std::string& text) {
    auto cfg = parse_config(text);
    REQUIRE(cfg);
    REQUIRE(cfg->sync);
    return cfg->sync;
  };
  const std::string store_with = "  stores:\n    v:\n      kind: vault\n      server: https://u:store-pw-";
  const std::string store_rest =
      "@vault.example:8200\n      token: {file: /etc/rootseal/vault-token}\n      namespaces: [\"*\"]\n";
  const auto a = parsed("sync:\n  enabled: true\n  aws_endpoint: https://u:secret-one@aws.example/\n" + store_with +
                        "one" + store_rest);
  const auto b = parsed("sync:\n  enabled: true\n  aws_endpoint: https://u:secret-two@aws.example/\n" + store_with +
                        "one" + store_rest);
  const auto c = parsed("sync:\n  enabled: true\n  aws_endpoint: https://u:secret-one@aws.example/\n" + store_with +
                        "two" + store_rest);
  // The published fingerprint is the same, the host itself sees each change
  // (a reload with a new password replaces the engine).
  CHECK(sync_config_fingerprint(*a) == sync_config_fingerprint(*b));
  CHECK(sync_config_fingerprint(*a) == sync_config_fingerprint(*c));
  CHECK(same_sync_config(*a, *a));
  CHECK_FALSE(same_sync_config(*a, *b));
  CHECK_FALSE(same_sync_config(*a, *c));
  // The shared text (the fingerprint's) never carries a password; the
  // host's own does, in locked memory.
  const auto shared = canonical_sync_config(*a, false);
  CHECK(shared.view().find("secret-one") == std::string_view::npos);
  CHECK(shared.view().find("store-pw-one") == std::string_view::npos);
  CHECK(shared.view().find("<userinfo>@aws.example") != std::string_view::npos);
  CHECK(shared.view().find("<userinfo>@vault.example") != std::string_view::npos);
  const auto own = canonical_sync_config(*a, true);
  CHECK(own.view().find("https://u:secret-one@aws.example/") != std::string_view::npos);
  CHECK(own.view().find("https://u:store-pw-one@vault.example:8200") != std::string_view::npos);
}
