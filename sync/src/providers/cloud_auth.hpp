// OAuth 2 access tokens for Google and Microsoft APIs, shared by the push
// providers (GCP Secret Manager, Azure Key Vault) and the snapshot object
// stores (Google Cloud Storage, Azure Blob Storage); and the error texts of
// those services' JSON answers.
//
// Google: a service-account key file (client_email, private_key,
// private_key_id, token_uri) signs an RS256 JWT that is exchanged at the
// token endpoint (grant type jwt-bearer) for an access token.
// Microsoft: the client-credentials grant at
// <authority>/<tenant>/oauth2/v2.0/token with a client secret, or with a
// client assertion (workload identity federation: a ServiceAccount token
// whose issuer, subject and audience the application trusts).
// Both are BearerAuth (common.hpp): cached, one fetch for many waiters,
// dropped after a 401. Key and secret stay in locked memory.
#pragma once

#include <atomic>
#include <chrono>
#include <utility>
#include <memory>
#include <string>
#include <string_view>

#include "providers/common.hpp"
#include "secure_buffer.hpp"

namespace rootseal::sync::providers {

inline constexpr std::string_view kGoogleTokenUri = "https://oauth2.googleapis.com/token";
inline constexpr std::string_view kGoogleCloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform";

class GoogleServiceAccountAuth final : public BearerAuth {
 public:
  // `key_json`: the key file. `token_uri`: override of its token_uri (empty:
  // the file's, else Google's). `who` prefixes errors ("gcp", "gcs").
  // `token_requests` (may be null) counts token fetches.
  static kms::Result<std::unique_ptr<GoogleServiceAccountAuth>> make(
      const boost::asio::any_io_executor& executor, const kms::SecureBytes& key_json, std::string_view token_uri,
      const TlsSpec& token_tls, std::string scope, std::string who, std::atomic<std::size_t>* token_requests = nullptr);
  GoogleServiceAccountAuth(const boost::asio::any_io_executor& executor, std::string email, std::string key_id,
                           kms::SecureBytes key_pem, std::string token_uri, std::string token_path,
                           std::shared_ptr<net::HttpClient> oauth, std::string scope, std::string who,
                           std::atomic<std::size_t>* token_requests);

 protected:
  Task<Token> fetch_token() override;

 private:
  std::string email_;
  std::string key_id_;
  kms::SecureBytes key_pem_;
  std::string token_uri_;
  std::string token_path_;
  std::shared_ptr<net::HttpClient> oauth_;
  std::string scope_;
  std::string who_;
  std::atomic<std::size_t>* token_requests_;
};

// Google workload identity federation: a fresh subject token (a ServiceAccount
// JWT) exchanged at STS (POST <sts>/v1/token, RFC 8693 token exchange, scope
// cloud-platform) for a federated access token; with `impersonate`, that
// token buys the service account's own access token at IAM Credentials
// (POST <iam>/v1/projects/-/serviceAccounts/<email>:generateAccessToken).
class GoogleFederatedAuth final : public BearerAuth {
 public:
  static kms::Result<std::unique_ptr<GoogleFederatedAuth>> make(const boost::asio::any_io_executor& executor,
                                                                std::string_view sts_endpoint,
                                                                std::string_view iam_endpoint, const TlsSpec& tls,
                                                                std::string audience, std::string impersonate,
                                                                JwtSource subject_token, std::string who,
                                                                std::atomic<std::size_t>* token_requests = nullptr);
  GoogleFederatedAuth(const boost::asio::any_io_executor& executor, std::shared_ptr<net::HttpClient> sts,
                      std::shared_ptr<net::HttpClient> iam, std::string audience, std::string impersonate,
                      JwtSource subject_token, std::string who, std::atomic<std::size_t>* token_requests);

 protected:
  Task<Token> fetch_token() override;

 private:
  std::shared_ptr<net::HttpClient> sts_;
  std::shared_ptr<net::HttpClient> iam_;  // null without impersonation
  std::string audience_;
  std::string impersonate_;
  JwtSource subject_token_;
  std::string who_;
  std::atomic<std::size_t>* token_requests_;
};

// The STS token-exchange form (grant_type token-exchange, subject_token_type
// jwt, requested_token_type access_token, scope cloud-platform), the subject
// token percent-encoded into locked memory.
kms::SecureBytes google_sts_form(std::string_view audience, const kms::SecureBytes& subject_token);

// An IAM Credentials generateAccessToken answer {"accessToken", "expireTime"
// (RFC 3339)}: the token in locked memory and its lifetime from `now`
// (0..24 h). unavailable when either is missing or malformed.
kms::Result<std::pair<kms::SecureBytes, std::chrono::seconds>> parse_generate_access_token(
    std::string_view body, std::chrono::system_clock::time_point now);

class MicrosoftClientCredentialsAuth final : public BearerAuth {
 public:
  // `authority_host`: "https://login.microsoftonline.com" (or a test double);
  // `scope`: "https://vault.azure.net/.default", "https://storage.azure.com/.default".
  // `client_assertion` set: a fresh one (asked for at every exchange) is sent
  // as client_assertion (jwt-bearer) instead of a secret.
  static kms::Result<std::unique_ptr<MicrosoftClientCredentialsAuth>> make(
      const boost::asio::any_io_executor& executor, std::string_view authority_host, const TlsSpec& authority_tls,
      std::string tenant_id, std::string client_id, kms::SecureBytes client_secret, std::string scope, std::string who,
      std::atomic<std::size_t>* token_requests = nullptr, JwtSource client_assertion = {});
  MicrosoftClientCredentialsAuth(const boost::asio::any_io_executor& executor, std::shared_ptr<net::HttpClient> login,
                                 std::string tenant_id, std::string client_id, kms::SecureBytes client_secret,
                                 JwtSource client_assertion, std::string scope, std::string who,
                                 std::atomic<std::size_t>* token_requests);

 protected:
  Task<Token> fetch_token() override;

 private:
  std::shared_ptr<net::HttpClient> login_;
  std::string tenant_id_;
  std::string client_id_;
  kms::SecureBytes client_secret_;
  JwtSource client_assertion_;
  std::string scope_;
  std::string who_;
  std::atomic<std::size_t>* token_requests_;
};

// Percent-encodes `in` (all but RFC 3986 unreserved characters) straight into locked memory.
void form_encode_into(std::span<const std::uint8_t> in, SecureBuffer& out);

// "404 NOT_FOUND: message" from a Google error answer: {"error":{"code",
// "status" or errors[0].reason, "message"}} or OAuth's {"error",
// "error_description"}; the message cut to 300 bytes.
std::string google_error(const net::ClientResponse& r);
// The client-credentials form with a client assertion (jwt-bearer), the
// assertion percent-encoded into locked memory.
kms::SecureBytes microsoft_assertion_form(std::string_view client_id, std::string_view scope,
                                          const kms::SecureBytes& assertion);

// "403 Forbidden: message" from a Microsoft JSON error answer ({"error":{"code",
// "message"}} or the identity platform's {"error","error_description"}).
std::string microsoft_error(const net::ClientResponse& r);

}  // namespace rootseal::sync::providers
