// KubeConfig: kubeconfig files (inline data, files, tokenFile,
// current-context, context override) and in-cluster service-account files;
// bad files get errors that name the file and field and never a secret.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <string>

#include "kube/kube_client.hpp"
#include "rootseal/kms/encoding.hpp"
#include "temp_dir.hpp"

using namespace rootseal::sync::kube;
using rootseal::test::TempDir;
namespace kms = rootseal::kms;

namespace {

const std::string kCa = "-----BEGIN CERTIFICATE-----\nMIIBfake-ca\n-----END CERTIFICATE-----\n";
const std::string kCert = "-----BEGIN CERTIFICATE-----\nMIIBfake-client\n-----END CERTIFICATE-----\n";
const std::string kKey = "-----BEGIN PRIVATE KEY-----\nMIIBfake-key-SECRETVALUE\n-----END PRIVATE KEY-----\n";
const std::string kToken = "eyJhbGciOiJSUzI1NiJ9.TOKEN-SECRET-VALUE.sig";

std::string b64(const std::string& s) {
  return kms::base64_encode({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()});
}

void write(const std::filesystem::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

std::string as_string(const kms::SecureBytes& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

std::string two_contexts(const std::string& user_a, const std::string& cluster_a_extra = {}) {
  return "apiVersion: v1\nkind: Config\ncurrent-context: alpha\n"
         "clusters:\n"
         "- name: c-alpha\n  cluster:\n    server: https://alpha.example:6443/\n" +
         cluster_a_extra +
         "- name: c-beta\n  cluster:\n    server: http://127.0.0.1:8080\n    insecure-skip-tls-verify: true\n"
         "contexts:\n"
         "- name: alpha\n  context:\n    cluster: c-alpha\n    user: u-alpha\n    namespace: team-a\n"
         "- name: beta\n  context:\n    cluster: c-beta\n    user: u-beta\n"
         "users:\n"
         "- name: u-alpha\n  user:\n" +
         user_a + "- name: u-beta\n  user:\n    token: beta-token\n";
}

// The error message of a failed load; fails the test if it loaded.
std::string error_of(const kms::Result<KubeConfig>& r) {
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == kms::Errc::invalid_argument);
  return r.error().message;
}

}  // namespace

TEST_CASE("kubeconfig: inline data, current-context, token") {
  TempDir dir;
  const auto file = dir / "config";
  write(file, two_contexts("    token: " + kToken + "\n    client-certificate-data: " + b64(kCert) +
                               "\n    client-key-data: " + b64(kKey) + "\n",
                           "    certificate-authority-data: " + b64(kCa) + "\n    tls-server-name: api.internal\n"));
  auto cfg = KubeConfig::from_file(file);
  REQUIRE(cfg);
  CHECK(cfg->context_name == "alpha");
  CHECK(cfg->server == "https://alpha.example:6443");  // trailing slash dropped
  CHECK(cfg->ca_pem == kCa);
  CHECK(cfg->tls_server_name == "api.internal");
  CHECK_FALSE(cfg->insecure_skip_tls_verify);
  CHECK(as_string(cfg->bearer_token) == kToken);
  CHECK(cfg->client_cert_pem == kCert);
  CHECK(as_string(cfg->client_key_pem) == kKey);
  CHECK(cfg->default_namespace == "team-a");
  auto copy = cfg->clone();
  CHECK(copy.bearer_token == cfg->bearer_token);
}

TEST_CASE("kubeconfig: a context given by name overrides current-context") {
  TempDir dir;
  write(dir / "config", two_contexts("    token: x\n"));
  auto cfg = KubeConfig::from_file(dir / "config", "beta");
  REQUIRE(cfg);
  CHECK(cfg->context_name == "beta");
  CHECK(cfg->server == "http://127.0.0.1:8080");
  CHECK(cfg->insecure_skip_tls_verify);
  CHECK(as_string(cfg->bearer_token) == "beta-token");
  CHECK(cfg->default_namespace == "default");
}

TEST_CASE("kubeconfig: files relative to the kubeconfig's folder, and tokenFile") {
  TempDir dir;
  std::filesystem::create_directory(dir / "pki");
  write(dir / "pki" / "ca.crt", kCa);
  write(dir / "pki" / "client.crt", kCert);
  write(dir / "pki" / "client.key", kKey);
  write(dir / "token", kToken + "\n");
  write(dir / "config", two_contexts("    tokenFile: token\n    client-certificate: pki/client.crt\n"
                                     "    client-key: " +
                                         (dir / "pki" / "client.key").string() + "\n",
                                     "    certificate-authority: pki/ca.crt\n"));
  auto cfg = KubeConfig::from_file(dir / "config");
  REQUIRE(cfg);
  CHECK(cfg->ca_pem == kCa);
  CHECK(cfg->client_cert_pem == kCert);
  CHECK(as_string(cfg->client_key_pem) == kKey);
  CHECK(cfg->bearer_token.empty());  // read (and re-read) from the file by the client
  CHECK(cfg->token_file == dir / "token");
}

TEST_CASE("kubeconfig: bad files get clear errors without secrets") {
  TempDir dir;
  SECTION("missing file") {
    const auto m = error_of(KubeConfig::from_file(dir / "nope"));
    CHECK_THAT(m, Catch::Contains("nope") && Catch::Contains("cannot be read"));
  }
  SECTION("not YAML") {
    write(dir / "config", "clusters: [\n  - {name: x, cluster: {server: \"" + kToken + "\"\n");
    const auto m = error_of(KubeConfig::from_file(dir / "config"));
    CHECK_THAT(m, Catch::Contains("not valid YAML") && Catch::Contains("line"));
    CHECK_THAT(m, !Catch::Contains("TOKEN-SECRET-VALUE"));
  }
  SECTION("no current-context") {
    write(dir / "config", "apiVersion: v1\nkind: Config\nclusters: []\n");
    CHECK_THAT(error_of(KubeConfig::from_file(dir / "config")), Catch::Contains("current-context is not set"));
  }
  SECTION("unknown context") {
    write(dir / "config", two_contexts("    token: x\n"));
    CHECK_THAT(error_of(KubeConfig::from_file(dir / "config", "gamma")),
               Catch::Contains("context 'gamma' is not defined"));
  }
  SECTION("context names a missing cluster") {
    write(dir / "config",
          "current-context: a\ncontexts:\n- name: a\n  context:\n    cluster: nowhere\n    user: u\n"
          "clusters:\n- name: other\n  cluster:\n    server: https://x\nusers: []\n");
    CHECK_THAT(error_of(KubeConfig::from_file(dir / "config")), Catch::Contains("cluster 'nowhere' is not defined"));
  }
  SECTION("server without scheme") {
    write(dir / "config",
          "current-context: a\ncontexts:\n- name: a\n  context:\n    cluster: c\n"
          "clusters:\n- name: c\n  cluster:\n    server: example.com:6443\n");
    CHECK_THAT(error_of(KubeConfig::from_file(dir / "config")), Catch::Contains("server must start with https://"));
  }
  SECTION("bad base64 in client-key-data") {
    write(dir / "config", two_contexts("    client-certificate-data: " + b64(kCert) +
                                       "\n    client-key-data: '!!notbase64" + kToken + "'\n"));
    const auto m = error_of(KubeConfig::from_file(dir / "config"));
    CHECK_THAT(m, Catch::Contains("u-alpha") && Catch::Contains("client-key-data: not valid base64"));
    CHECK_THAT(m, !Catch::Contains("TOKEN-SECRET-VALUE"));
  }
  SECTION("certificate without key") {
    write(dir / "config", two_contexts("    client-certificate-data: " + b64(kCert) + "\n"));
    CHECK_THAT(error_of(KubeConfig::from_file(dir / "config")),
               Catch::Contains("client certificate without client key"));
  }
  SECTION("CA that is not PEM") {
    write(dir / "config", two_contexts("    token: x\n", "    certificate-authority-data: " + b64("garbage") + "\n"));
    CHECK_THAT(error_of(KubeConfig::from_file(dir / "config")), Catch::Contains("not a PEM certificate"));
  }
  SECTION("missing tokenFile") {
    write(dir / "config", two_contexts("    tokenFile: gone.token\n"));
    CHECK_THAT(error_of(KubeConfig::from_file(dir / "config")),
               Catch::Contains("tokenFile") && Catch::Contains("gone.token"));
  }
  SECTION("exec plugins are refused by name") {
    write(dir / "config", two_contexts("    exec:\n      command: aws\n"));
    CHECK_THAT(error_of(KubeConfig::from_file(dir / "config")),
               Catch::Contains("exec credential plugins are not supported"));
  }
  SECTION("a field of the wrong type") {
    write(dir / "config", two_contexts("    token:\n      nested: map\n"));
    CHECK_THAT(error_of(KubeConfig::from_file(dir / "config")), Catch::Contains("token: must be a string"));
  }
}

TEST_CASE("kubeconfig: in-cluster service-account files") {
  TempDir dir;
  write(dir / "token", kToken + "\n");
  write(dir / "ca.crt", kCa);
  write(dir / "namespace", "rootseal-system\n");
  ::setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  ::setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  auto cfg = KubeConfig::in_cluster(dir.path());
  REQUIRE(cfg);
  CHECK(cfg->server == "https://10.96.0.1:443");
  CHECK(cfg->ca_pem == kCa);
  CHECK(cfg->token_file == dir / "token");
  CHECK(cfg->default_namespace == "rootseal-system");

  ::setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
  auto v6 = KubeConfig::in_cluster(dir.path());
  REQUIRE(v6);
  CHECK(v6->server == "https://[fd00::1]:443");

  ::unsetenv("KUBERNETES_SERVICE_HOST");
  const auto m = error_of(KubeConfig::in_cluster(dir.path()));
  CHECK_THAT(m, Catch::Contains("KUBERNETES_SERVICE_HOST"));
  ::setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  std::filesystem::remove(dir / "token");
  CHECK_THAT(error_of(KubeConfig::in_cluster(dir.path())), Catch::Contains("token"));
}
