// Snapshot object stores on Google Cloud Storage (JSON API v1) and Azure Blob
// Storage (REST) (rootseal/sync/object_store.hpp). Both authenticate with the
// push providers' OAuth code (providers/cloud_auth.hpp) and send through
// bearer_request (one token renewal on a 401, the store's backoff).
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <ctime>
#include <functional>
#include <iterator>
#include <optional>

#include "providers/cloud_auth.hpp"
#include "providers/common.hpp"
#include "providers/gcp/gcp_sm.hpp"
#include "object_store/object_listing.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/sync/object_store.hpp"

namespace rootseal::sync {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using kms::Errc;
using kms::fail;
using providers::check_object_name;

namespace {

constexpr std::size_t kMaxPages = 10000;

// The value of response header `name` (case-insensitive), or "".
std::string header_value(const net::ClientResponse& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (boost::beast::iequals(k, name)) return v;
  }
  return {};
}

// What both stores share: an API client, the store's health, an OAuth token.
class BearerStore : public ObjectStore {
 protected:
  BearerStore(std::string who, std::shared_ptr<net::HttpClient> api, std::unique_ptr<providers::BearerAuth> auth,
              const ObjectStoreBackoff& backoff)
      : who_(std::move(who)),
        api_(std::move(api)),
        auth_(std::move(auth)),
        health_(std::make_shared<StoreHealth>(who_, StoreHealthOptions{backoff.base, backoff.max, backoff.wait})) {}

  // The arguments are the caller's named locals (they outlive the call).
  asio::awaitable<kms::Result<net::ClientResponse>> call(http::verb verb, const std::string& target,
                                                         std::string_view body, std::span<const net::Header> extra) {
    co_return co_await providers::bearer_request(*auth_, *health_, *api_, verb, target, body, who_,
                                                 providers::CallCounters{}, extra);
  }

  // Every page of a listing, sorted by name: `target(token)` is the request
  // for the page after `token` ("" first), `parse` reads one answer (its
  // status included). The arguments are the caller's named locals.
  using PageTarget = std::function<std::string(const std::string& token)>;
  using PageParser = std::function<kms::Result<providers::ListingPage>(const net::ClientResponse&)>;
  asio::awaitable<kms::Result<std::vector<ObjectInfo>>> list_pages(const PageTarget& target, const PageParser& parse,
                                                                   std::span<const net::Header> extra) {
    std::vector<ObjectInfo> out;
    std::string token;
    for (std::size_t page = 0; page < kMaxPages; ++page) {
      const std::string request = target(token);
      ROOTSEAL_CO_LET(res, co_await call(http::verb::get, request, {}, extra));
      ROOTSEAL_CO_LET(listed, parse(res));
      std::move(listed.objects.begin(), listed.objects.end(), std::back_inserter(out));
      if (listed.next.empty() || listed.next == token) break;  // the last page (or a service repeating itself)
      token = std::move(listed.next);
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    co_return out;
  }

  std::string who_;

 private:
  std::shared_ptr<net::HttpClient> api_;
  std::unique_ptr<providers::BearerAuth> auth_;
  std::shared_ptr<StoreHealth> health_;
};

net::ClientOptions store_client_options() {
  net::ClientOptions options;
  options.max_connections = 2;
  options.request_timeout = std::chrono::minutes(10);
  options.max_response_bytes = 64u << 20;  // a snapshot read back (lands in locked memory), or a long listing
  return options;
}

// "http(s)://host[:port]" with no path.
bool plain_origin(std::string_view url) {
  auto u = boost::urls::parse_uri(url);
  return u && (u->scheme() == "http" || u->scheme() == "https") && !u->encoded_host().empty() &&
         (u->encoded_path().empty() || u->encoded_path() == "/") && !u->has_query() && !u->has_userinfo();
}

// ---- Google Cloud Storage -------------------------------------------------------

std::string crc32c_base64(std::span<const std::uint8_t> data) {
  const std::uint32_t c = providers::crc32c(data);
  const std::uint8_t be[4] = {static_cast<std::uint8_t>(c >> 24), static_cast<std::uint8_t>(c >> 16),
                              static_cast<std::uint8_t>(c >> 8), static_cast<std::uint8_t>(c)};
  return kms::base64_encode(be);
}

// The crc32c= value of a download's x-goog-hash headers, if there is one.
std::optional<std::string> goog_hash_crc32c(const net::ClientResponse& r) {
  for (const auto& [k, v] : r.headers) {
    if (!boost::beast::iequals(k, "x-goog-hash")) continue;
    for (std::string_view rest = v; !rest.empty();) {
      const auto comma = rest.find(',');
      std::string_view item = rest.substr(0, comma);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      if (item.starts_with("crc32c=")) return std::string(item.substr(7));
    }
  }
  return std::nullopt;
}

class GcsStore final : public BearerStore {
 public:
  GcsStore(GcsSpec spec, std::shared_ptr<net::HttpClient> api, std::unique_ptr<providers::BearerAuth> auth)
      : BearerStore("gcs", std::move(api), std::move(auth), spec.backoff), spec_(std::move(spec)) {}

  asio::awaitable<kms::Result<void>> put(std::string_view name, std::span<const std::uint8_t> data) override {
    ROOTSEAL_CO_TRY(check_object_name(name));
    const std::string full = spec_.prefix + std::string(name);
    const std::string crc = crc32c_base64(data);
    const std::string_view content(reinterpret_cast<const char*>(data.data()), data.size());
    // multipart/related: the metadata (name, CRC32C: Cloud Storage refuses
    // the upload if the bytes it got do not match), then the bytes, under a
    // random boundary that does not occur in them.
    std::string boundary;
    do {
      std::uint8_t r[16];
      if (RAND_bytes(r, sizeof r) != 1) co_return fail(Errc::crypto_failure, "gcs: no random boundary");
      boundary = "rootseal-" + kms::hex_encode(r);
    } while (content.find(boundary) != std::string_view::npos);
    const std::string metadata =
        json::serialize(json::object{{"name", full}, {"crc32c", crc}, {"contentType", "application/octet-stream"}});
    std::string body;
    body.reserve(data.size() + metadata.size() + 256);
    body += "--" + boundary + "\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n" + metadata + "\r\n";
    body += "--" + boundary + "\r\nContent-Type: application/octet-stream\r\n\r\n";
    body += content;
    body += "\r\n--" + boundary + "--\r\n";
    const std::string type = "multipart/related; boundary=" + boundary;
    const net::Header extra[] = {{"Content-Type", type}};
    // ifGenerationMatch=0: only if no object has the name (never a replacement).
    const std::string target = "/upload/storage/v1/b/" + spec_.bucket + "/o?uploadType=multipart&ifGenerationMatch=0";
    ROOTSEAL_CO_LET(res, co_await call(http::verb::post, target, body, extra));
    if (res.status != 200) {
      co_return fail(providers::errc_for_status(res.status),
                     "gcs: uploading " + std::string(name) + " failed: " + providers::google_error(res));
    }
    // The object resource: what Cloud Storage says it stored.
    boost::system::error_code ec;
    const json::value stored = json::parse(res.body.view(), ec);
    if (ec || !stored.is_object()) co_return fail(Errc::unavailable, "gcs: the upload's answer is not JSON");
    const auto str = [&](std::string_view k) { return providers::json_string(stored, k); };
    if (str("name") != full || str("size") != std::to_string(data.size()) ||
        (!str("crc32c").empty() && str("crc32c") != crc)) {
      co_return fail(Errc::unavailable, "gcs: the stored object " + std::string(name) +
                                            " does not match what was sent (name, size or CRC32C)");
    }
    co_return kms::Result<void>{};
  }

  asio::awaitable<kms::Result<std::vector<std::uint8_t>>> get(std::string_view name) override {
    ROOTSEAL_CO_TRY(check_object_name(name));
    const std::string target = object_path(name) + "?alt=media";
    ROOTSEAL_CO_LET(res, co_await call(http::verb::get, target, {}, {}));
    if (res.status != 200) {
      co_return fail(providers::errc_for_status(res.status),
                     "gcs: reading " + std::string(name) + " failed: " + providers::google_error(res));
    }
    const auto s = res.body.span();
    // x-goog-hash: crc32c=<base64>[,md5=<base64>], one header or one per
    // hash: the CRC32C of what came.
    if (const auto want = goog_hash_crc32c(res); want && *want != crc32c_base64(s)) {
      co_return fail(Errc::unavailable, "gcs: " + std::string(name) + " does not match its CRC32C (x-goog-hash)");
    }
    co_return std::vector<std::uint8_t>(s.begin(), s.end());
  }

  asio::awaitable<kms::Result<std::vector<ObjectInfo>>> list() override {
    const PageTarget target = [this](const std::string& token) {
      return "/storage/v1/b/" + spec_.bucket + "/o?maxResults=1000&prefix=" + net::url_encode(spec_.prefix) +
             (token.empty() ? "" : "&pageToken=" + net::url_encode(token));
    };
    const PageParser parse = [this](const net::ClientResponse& res) -> kms::Result<providers::ListingPage> {
      if (res.status != 200) {
        return fail(providers::errc_for_status(res.status), "gcs: listing failed: " + providers::google_error(res));
      }
      return providers::parse_gcs_listing(res.body.view(), spec_.prefix);
    };
    co_return co_await list_pages(target, parse, {});
  }

  asio::awaitable<kms::Result<void>> remove(std::string_view name) override {
    ROOTSEAL_CO_TRY(check_object_name(name));
    const std::string target = object_path(name);
    ROOTSEAL_CO_LET(res, co_await call(http::verb::delete_, target, {}, {}));
    if (res.status != 204 && res.status != 200 && res.status != 404) {
      co_return fail(providers::errc_for_status(res.status),
                     "gcs: deleting " + std::string(name) + " failed: " + providers::google_error(res));
    }
    co_return kms::Result<void>{};
  }

  [[nodiscard]] std::string describe() const override { return "gs://" + spec_.bucket + "/" + spec_.prefix; }

 private:
  std::string object_path(std::string_view name) const {
    return "/storage/v1/b/" + spec_.bucket + "/o/" + net::url_encode(spec_.prefix + std::string(name));
  }

  GcsSpec spec_;
};

bool valid_gcs_bucket(std::string_view b) {
  if (b.size() < 3 || b.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(b.front()) || !alnum(b.back())) return false;
  return std::all_of(b.begin(), b.end(), [&](char c) { return alnum(c) || c == '.' || c == '-' || c == '_'; });
}

// ---- Azure Blob Storage ----------------------------------------------------------

constexpr std::string_view kAzureStorageVersion = "2021-08-06";
constexpr std::string_view kAzureStorageScope = "https://storage.azure.com/.default";

std::string http_date(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[64];
  const auto n = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return {buf, n};
}

std::string md5_base64(std::span<const std::uint8_t> data) {
  std::uint8_t md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_md5(), nullptr) != 1) return {};
  return kms::base64_encode(std::span<const std::uint8_t>(md, len));
}

class AzureBlobStore final : public BearerStore {
 public:
  AzureBlobStore(AzureBlobSpec spec, std::string base_path, std::shared_ptr<net::HttpClient> api,
                 std::unique_ptr<providers::BearerAuth> auth)
      : BearerStore("azure-blob", std::move(api), std::move(auth), spec.backoff),
        spec_(std::move(spec)),
        base_path_(std::move(base_path)) {}

  asio::awaitable<kms::Result<void>> put(std::string_view name, std::span<const std::uint8_t> data) override {
    ROOTSEAL_CO_TRY(check_object_name(name));
    const std::string target = blob_path(name);
    const std::string date = http_date(std::chrono::system_clock::now());
    // Content-MD5: the service refuses the upload (400 Md5Mismatch) if the
    // bytes it got differ; If-None-Match: * never replaces a blob.
    const std::string md5 = md5_base64(data);
    if (md5.empty()) co_return fail(Errc::crypto_failure, "azure-blob: MD5 failed");
    const net::Header extra[] = {
        {"x-ms-version", kAzureStorageVersion},       {"x-ms-date", date},  {"x-ms-blob-type", "BlockBlob"},
        {"Content-Type", "application/octet-stream"}, {"Content-MD5", md5}, {"If-None-Match", "*"}};
    const std::string_view body(reinterpret_cast<const char*>(data.data()), data.size());
    ROOTSEAL_CO_LET(res, co_await call(http::verb::put, target, body, extra));
    if (res.status != 201) {
      co_return fail(providers::errc_for_status(res.status), error_text("Put Blob " + std::string(name), res));
    }
    const std::string echoed = header_value(res, "Content-MD5");
    if (!echoed.empty() && echoed != md5) {
      co_return fail(Errc::unavailable, "azure-blob: the stored blob " + std::string(name) + " does not match its MD5");
    }
    co_return kms::Result<void>{};
  }

  asio::awaitable<kms::Result<std::vector<std::uint8_t>>> get(std::string_view name) override {
    ROOTSEAL_CO_TRY(check_object_name(name));
    const std::string target = blob_path(name);
    const std::string date = http_date(std::chrono::system_clock::now());
    const net::Header extra[] = {{"x-ms-version", kAzureStorageVersion}, {"x-ms-date", date}};
    ROOTSEAL_CO_LET(res, co_await call(http::verb::get, target, {}, extra));
    if (res.status != 200) {
      co_return fail(providers::errc_for_status(res.status), error_text("Get Blob " + std::string(name), res));
    }
    const auto s = res.body.span();
    // Content-MD5 of a whole blob stored with one: the MD5 of what came.
    const std::string md5 = header_value(res, "Content-MD5");
    if (!md5.empty() && md5 != md5_base64(s)) {
      co_return fail(Errc::unavailable, "azure-blob: " + std::string(name) + " does not match its Content-MD5");
    }
    co_return std::vector<std::uint8_t>(s.begin(), s.end());
  }

  asio::awaitable<kms::Result<std::vector<ObjectInfo>>> list() override {
    const PageTarget target = [this](const std::string& marker) {
      return base_path_ + "/" + spec_.container + "?restype=container&comp=list&maxresults=5000" +
             (spec_.prefix.empty() ? "" : "&prefix=" + net::url_encode(spec_.prefix)) +
             (marker.empty() ? "" : "&marker=" + net::url_encode(marker));
    };
    const PageParser parse = [this](const net::ClientResponse& res) -> kms::Result<providers::ListingPage> {
      if (res.status != 200) return fail(providers::errc_for_status(res.status), error_text("List Blobs", res));
      return providers::parse_azure_listing(res.body.view(), spec_.prefix);
    };
    // One x-ms-date for the listing (the service allows 15 minutes of skew).
    const std::string date = http_date(std::chrono::system_clock::now());
    const net::Header extra[] = {{"x-ms-version", kAzureStorageVersion}, {"x-ms-date", date}};
    co_return co_await list_pages(target, parse, extra);
  }

  asio::awaitable<kms::Result<void>> remove(std::string_view name) override {
    ROOTSEAL_CO_TRY(check_object_name(name));
    const std::string target = blob_path(name);
    const std::string date = http_date(std::chrono::system_clock::now());
    const net::Header extra[] = {{"x-ms-version", kAzureStorageVersion}, {"x-ms-date", date}};
    ROOTSEAL_CO_LET(res, co_await call(http::verb::delete_, target, {}, extra));
    if (res.status != 202 && res.status != 200 && res.status != 404) {
      co_return fail(providers::errc_for_status(res.status), error_text("Delete Blob " + std::string(name), res));
    }
    co_return kms::Result<void>{};
  }

  [[nodiscard]] std::string describe() const override {
    return "azure://" + spec_.account + "/" + spec_.container + "/" + spec_.prefix;
  }

 private:
  // "azure-blob: Put Blob x: HTTP 409 BlobAlreadyExists" (<Error><Code> or x-ms-error-code).
  static std::string error_text(const std::string& op, const net::ClientResponse& res) {
    return providers::xml_error_text("azure-blob", op, res, "x-ms-error-code");
  }

  std::string blob_path(std::string_view name) const {
    return base_path_ + "/" + spec_.container + "/" +
           net::url_encode(spec_.prefix + std::string(name), /*encode_slash=*/false);
  }

  AzureBlobSpec spec_;
  std::string base_path_;  // "/account" (endpoint override) or ""
};

bool valid_azure_account(std::string_view a) {
  return a.size() >= 3 && a.size() <= 24 &&
         std::all_of(a.begin(), a.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); });
}

bool valid_azure_container(std::string_view c) {
  if (c.size() < 3 || c.size() > 63 || c.front() == '-' || c.back() == '-' || c.find("--") != std::string_view::npos)
    return false;
  return std::all_of(c.begin(), c.end(),
                     [](char x) { return (x >= 'a' && x <= 'z') || (x >= '0' && x <= '9') || x == '-'; });
}

}  // namespace

kms::Result<std::unique_ptr<ObjectStore>> make_gcs_store(const asio::any_io_executor& executor, GcsSpec spec) {
  if (!valid_gcs_bucket(spec.bucket)) return fail(Errc::invalid_argument, "gcs: bucket must be 3-63 of [a-z0-9._-]");
  if (!providers::valid_object_prefix(spec.prefix)) {
    return fail(Errc::invalid_argument, "gcs: prefix must be [A-Za-z0-9._~/-], end with '/' and not start with one");
  }
  if (spec.endpoint.empty()) spec.endpoint = "https://storage.googleapis.com";
  if (!plain_origin(spec.endpoint)) return fail(Errc::invalid_argument, "gcs: endpoint must be http(s)://host[:port]");
  TlsSpec tls;
  tls.ca_file = spec.ca_file.string();
  ROOTSEAL_LET(
      auth, providers::GoogleServiceAccountAuth::make(executor, spec.service_account_json, spec.token_uri, tls,
                                                      "https://www.googleapis.com/auth/devstorage.read_write", "gcs"));
  spec.service_account_json = kms::SecureBytes();  // the key is in the auth now
  ROOTSEAL_LET(api, providers::make_client(executor, spec.endpoint, tls, store_client_options()));
  return std::unique_ptr<ObjectStore>(std::make_unique<GcsStore>(std::move(spec), std::move(api), std::move(auth)));
}

kms::Result<std::unique_ptr<ObjectStore>> make_azure_blob_store(const asio::any_io_executor& executor,
                                                                AzureBlobSpec spec) {
  if (!valid_azure_account(spec.account))
    return fail(Errc::invalid_argument, "azure-blob: account must be 3-24 of [a-z0-9]");
  if (!valid_azure_container(spec.container)) {
    return fail(Errc::invalid_argument,
                "azure-blob: container must be 3-63 of [a-z0-9-] (no leading, trailing or double '-')");
  }
  if (!providers::valid_object_prefix(spec.prefix)) {
    return fail(Errc::invalid_argument,
                "azure-blob: prefix must be [A-Za-z0-9._~/-], end with '/' and not start with one");
  }
  std::string base_path;
  if (spec.endpoint.empty()) {
    spec.endpoint = "https://" + spec.account + ".blob.core.windows.net";
  } else {
    base_path = "/" + spec.account;
  }
  if (!plain_origin(spec.endpoint))
    return fail(Errc::invalid_argument, "azure-blob: endpoint must be http(s)://host[:port]");
  if (spec.authority_host.empty()) spec.authority_host = "https://login.microsoftonline.com";
  if (!plain_origin(spec.authority_host)) {
    return fail(Errc::invalid_argument, "azure-blob: authority_host must be http(s)://host[:port]");
  }
  TlsSpec tls;
  tls.ca_file = spec.ca_file.string();
  ROOTSEAL_LET(auth, providers::MicrosoftClientCredentialsAuth::make(executor, spec.authority_host, tls, spec.tenant_id,
                                                                     spec.client_id, std::move(spec.client_secret),
                                                                     std::string(kAzureStorageScope), "azure-blob"));
  ROOTSEAL_LET(api, providers::make_client(executor, spec.endpoint, tls, store_client_options()));
  return std::unique_ptr<ObjectStore>(
      std::make_unique<AzureBlobStore>(std::move(spec), std::move(base_path), std::move(api), std::move(auth)));
}

}  // namespace rootseal::sync
