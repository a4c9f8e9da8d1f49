// rootseal::sync — object storage for keyring snapshots: a local folder,
// Amazon S3 (or an S3-compatible endpoint), Google Cloud Storage and Azure
// Blob Storage, behind one small interface.
//
// S3 requests are signed with the AWS provider's SigV4 (service "s3",
// x-amz-content-sha256 of the payload); credentials are read the way the
// sync engine's host-credential stores read them ({file: …} or
// {credential: …}) and kept in SecureBytes. With an endpoint override the
// bucket is addressed path-style (http://host:port/bucket/key), otherwise
// virtual-hosted (https://bucket.s3.region.amazonaws.com/key).
//
// Objects are whole: put() either stores every byte or fails (S3, GCS, Azure:
// one request with Content-Length; the folder: a durable temporary file
// renamed into place), so no partial object is ever listed under its final
// name.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "rootseal/sync/engine.hpp"

namespace rootseal::sync {

struct ObjectInfo {
  std::string name;  // relative to the store's prefix
  std::uint64_t size = 0;
};

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;
  virtual boost::asio::awaitable<kms::Result<void>> put(std::string_view name, std::span<const std::uint8_t> data) = 0;
  // not_found when absent.
  virtual boost::asio::awaitable<kms::Result<std::vector<std::uint8_t>>> get(std::string_view name) = 0;
  // Every object under the prefix, sorted by name.
  virtual boost::asio::awaitable<kms::Result<std::vector<ObjectInfo>>> list() = 0;
  // Absent: Ok.
  virtual boost::asio::awaitable<kms::Result<void>> remove(std::string_view name) = 0;
  // "folder:/path", "s3://bucket/prefix", "gs://bucket/prefix",
  // "azure://account/container/prefix": for logs and the CLI.
  [[nodiscard]] virtual std::string describe() const = 0;
};

// Objects are files directly in `folder` (created 0700), written 0600.
std::unique_ptr<ObjectStore> make_folder_store(std::filesystem::path folder);

struct S3Spec {
  std::string bucket;          // required
  std::string prefix;          // "" or ending in "/" ("rootseal/prod/")
  std::string region;          // required
  std::string endpoint;        // override ("http://127.0.0.1:5000"); path-style addressing
  std::string sse;             // "" | "AES256" | "aws:kms": x-amz-server-side-encryption
  std::string sse_kms_key_id;  // with aws:kms: x-amz-server-side-encryption-aws-kms-key-id
  std::filesystem::path ca_file;
  kms::SecureBytes access_key_id;
  kms::SecureBytes secret_access_key;
  kms::SecureBytes session_token;  // optional
};

kms::Result<std::unique_ptr<ObjectStore>> make_s3_store(const boost::asio::any_io_executor& executor, S3Spec spec);

// How a GCS or Azure store backs off after a transient failure (a 5xx, 429
// or dropped connection): the calls of a store share one backoff, a call
// makes at most two attempts, the second only if the store reopens within
// `wait` (providers/store_health.hpp). Tests and fuzzers shorten it.
struct ObjectStoreBackoff {
  std::chrono::milliseconds base{500};
  std::chrono::milliseconds max{5000};
  std::chrono::milliseconds wait{2000};
};

// Google Cloud Storage (JSON API v1): objects are uploaded with
// uploadType=multipart (the CRC32C in the metadata, so Cloud Storage refuses
// a corrupted upload; ifGenerationMatch=0, so an object is never replaced),
// listed with prefix and pageToken, read with alt=media (the x-goog-hash
// CRC32C checked), deleted. Access tokens from a service-account key (RS256
// JWT exchanged at the token endpoint), as the GCP Secret Manager provider.
struct GcsSpec {
  std::string bucket;     // required: 3-63 of [a-z0-9._-]
  std::string prefix;     // "" or ending in "/"
  std::string endpoint;   // override ("http://127.0.0.1:4443"); empty: https://storage.googleapis.com
  std::string token_uri;  // override of the key file's token_uri
  std::filesystem::path ca_file;
  kms::SecureBytes service_account_json;  // the key file
  ObjectStoreBackoff backoff;
};
kms::Result<std::unique_ptr<ObjectStore>> make_gcs_store(const boost::asio::any_io_executor& executor, GcsSpec spec);

// Azure Blob Storage (REST, x-ms-version 2021-08-06): Put Blob (BlockBlob,
// Content-MD5 so the service refuses a corrupted upload, If-None-Match: *
// so a blob is never replaced), List Blobs with prefix and marker, Get Blob,
// Delete Blob. Bearer tokens from the Microsoft identity platform (client
// credentials, scope https://storage.azure.com/.default), as the Azure Key
// Vault provider. With an endpoint override the account is the first path
// segment (http://host:port/account/container/blob, as Azurite); otherwise
// https://account.blob.core.windows.net/container/blob.
struct AzureBlobSpec {
  std::string account;    // required: 3-24 of [a-z0-9]
  std::string container;  // required: 3-63 of [a-z0-9-]
  std::string prefix;     // "" or ending in "/"
  std::string endpoint;   // override; empty: https://<account>.blob.core.windows.net
  std::string tenant_id;
  std::string client_id;
  std::string authority_host;  // empty: https://login.microsoftonline.com
  std::filesystem::path ca_file;
  kms::SecureBytes client_secret;
  ObjectStoreBackoff backoff;
};
kms::Result<std::unique_ptr<ObjectStore>> make_azure_blob_store(const boost::asio::any_io_executor& executor,
                                                                AzureBlobSpec spec);

// Reads a host credential ({file: …}: refused if group or others can read
// it; {credential: …}: $CREDENTIALS_DIRECTORY/<name>, or `credentials_dir`
// when given) into locked memory, as the sync engine's host stores do.
// `what` names the option in errors.
kms::Result<kms::SecureBytes> read_host_credential(const CredentialRef& ref, std::string_view what,
                                                   const std::filesystem::path& credentials_dir = {});

}  // namespace rootseal::sync
