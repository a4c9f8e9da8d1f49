// rootseal::net — TLS server contexts.
//
// TLS 1.2 and 1.3 only (1.3 preferred by OpenSSL's negotiation), ECDHE with
// AEAD ciphers only for 1.2, no compression, no renegotiation, no session
// tickets (forward secrecy does not depend on a ticket key). Optional mutual
// TLS: client certificates verified against a CA bundle, required or not.
// A context is immutable once built; reloading builds a new one.
#pragma once

#include <boost/asio/ssl/context.hpp>

#include <filesystem>
#include <memory>
#include <string>

#include "rootseal/kms/error.hpp"

namespace rootseal::net {

struct TlsConfig {
  std::filesystem::path cert_file;       // PEM: leaf certificate followed by its chain
  std::filesystem::path key_file;        // PEM private key; refused if group/other can read it
  std::filesystem::path client_ca_file;  // PEM CA bundle for client certificates; empty = no mTLS
  bool require_client_cert = false;      // with client_ca_file: refuse clients without a valid certificate
  std::string min_version = "1.2";       // "1.2" or "1.3"
};

// Loads and checks certificate, key (they must match) and CA bundle.
kms::Result<std::shared_ptr<boost::asio::ssl::context>> make_server_tls(const TlsConfig& config);

}  // namespace rootseal::net
