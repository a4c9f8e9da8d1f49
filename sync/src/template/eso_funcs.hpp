// rootseal::sync — internal: ESO's own template functions (its engine v2:
// runtime/template/v2 pem.go, pem_chain.go, pkcs12.go, jwk.go, decrypt.go)
// on OpenSSL 3, with ESO's semantics. Every value read or built from data
// (PEM text, DER, keys, PKCS#12 files, decrypted text) lives in locked memory
// (kms::SecureBytes); errors never carry data.
#pragma once

#include <string_view>

#include "value.hpp"

namespace rootseal::sync::tmpl::eso {

// filterPEM TYPE INPUT: the PEM blocks of INPUT whose type is TYPE (case
// folded), re-encoded as Go's encoding/pem writes them.
kms::Result<Value> filter_pem(std::string_view type, std::string_view input);
// filterCertChain leaf|intermediate|root INPUT: the chain of INPUT's
// certificates ordered by key identifiers, and the part asked for.
kms::Result<Value> filter_cert_chain(std::string_view cert_type, std::string_view input);
// certSANs INPUT: the subject alternative names of the first PEM block's
// certificate: DNS names, IP addresses, e-mail addresses, URIs ([]string).
kms::Result<Value> cert_sans(std::string_view input);
// pkcs12key[Pass] / pkcs12cert[Pass]: the private key (PKCS#8 PEM) or the
// certificates (PEM, chain ordered when it can be) of a PKCS#12 file.
kms::Result<Value> pkcs12_key(std::string_view fn, std::string_view pass, std::string_view input);
kms::Result<Value> pkcs12_cert(std::string_view fn, std::string_view pass, std::string_view input);
// pemToPkcs12[Pass] / fullPemToPkcs12[Pass]: a PKCS#12 file (base64) of a
// PEM certificate (full: and the CA certificates after it) and a PEM key.
kms::Result<Value> pem_to_pkcs12(std::string_view fn, std::string_view cert, std::string_view key,
                                 std::string_view pass, bool full);
// pemTruststoreToPKCS12[Pass]: a PKCS#12 trust store (base64) of the PEM
// certificates, each marked for Java as trusted for any extended key usage.
kms::Result<Value> pem_truststore_to_pkcs12(std::string_view fn, std::string_view certs, std::string_view pass);
// jwkPublicKeyPem / jwkPrivateKeyPem: a JWK (RSA, EC P-256/384/521,
// Ed25519) as a PKIX public key or a PKCS#8 private key in PEM.
kms::Result<Value> jwk_pem(std::string_view fn, std::string_view jwk, bool private_key);
// rsaDecrypt SCHEME HASH CIPHERTEXT KEY: "None" gives the ciphertext back,
// "RSA-OAEP" decrypts with OAEP (SHA1, SHA256, SHA512; anything else SHA256).
kms::Result<Value> rsa_decrypt(std::string_view scheme, std::string_view hash, std::string_view in,
                               std::string_view key);

}  // namespace rootseal::sync::tmpl::eso
