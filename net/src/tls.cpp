#include "rootseal/net/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/stat.h>

namespace rootseal::net {

namespace ssl = boost::asio::ssl;
using kms::Errc;
using kms::fail;

namespace {

// Mozilla's "intermediate" TLS 1.2 list: ECDHE key exchange, AEAD ciphers.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

kms::Result<void> check_key_file(const std::filesystem::path& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return fail(Errc::invalid_argument, "tls: cannot read key file " + path.string());
  if ((st.st_mode & 0077) != 0) {
    return fail(Errc::invalid_argument,
                "tls: key file " + path.string() + " is readable by group or others (chmod 0600)");
  }
  return {};
}

}  // namespace

kms::Result<std::shared_ptr<ssl::context>> make_server_tls(const TlsConfig& config) {
  if (config.cert_file.empty() || config.key_file.empty()) {
    return fail(Errc::invalid_argument, "tls: cert_file and key_file are required");
  }
  ROOTSEAL_TRY(check_key_file(config.key_file));
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  const int min = config.min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION;
  if (config.min_version != "1.2" && config.min_version != "1.3") {
    return fail(Errc::invalid_argument, "tls: min_version must be 1.2 or 1.3");
  }
  if (SSL_CTX_set_min_proto_version(native, min) != 1 || SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1) {
    return fail(Errc::crypto_failure, "tls: cannot set protocol versions or ciphers");
  }
  SSL_CTX_set_options(
      native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);

  boost::system::error_code ec;
  ctx->use_certificate_chain_file(config.cert_file.string(), ec);
  if (ec) return fail(Errc::invalid_argument, "tls: cannot load certificate chain " + config.cert_file.string());
  ctx->use_private_key_file(config.key_file.string(), ssl::context::pem, ec);
  if (ec) {
    return fail(Errc::invalid_argument,
                "tls: cannot load private key " + config.key_file.string() + ", or it does not match the certificate");
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    return fail(Errc::invalid_argument, "tls: the private key does not match the certificate");
  }
  if (!config.client_ca_file.empty()) {
    ctx->load_verify_file(config.client_ca_file.string(), ec);
    if (ec) return fail(Errc::invalid_argument, "tls: cannot load client CA bundle " + config.client_ca_file.string());
    auto mode = ssl::verify_peer;
    if (config.require_client_cert) mode |= ssl::verify_fail_if_no_peer_cert;
    ctx->set_verify_mode(mode);
  } else if (config.require_client_cert) {
    return fail(Errc::invalid_argument, "tls: require_client_cert needs client_ca_file");
  }
  ERR_clear_error();
  return ctx;
}

}  // namespace rootseal::net
