// Object storage for snapshots (rootseal/sync/object_store.hpp): a local
// folder, and S3 over the AWS provider's SigV4 and the pooled HTTP client.
#include "rootseal/sync/object_store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/url/parse.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <system_error>

#include "engine/provider_source.hpp"
#include "providers/aws/aws_sigv4.hpp"
#include "providers/common.hpp"
#include "object_store/object_listing.hpp"
#include "rootseal/kms/durable_file.hpp"

namespace rootseal::sync {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using kms::Errc;
using kms::fail;

namespace {

using providers::valid_object_name;
kms::Result<void> check_name(std::string_view n) { return providers::check_object_name(n); }

// ---- folder -----------------------------------------------------------------

class FolderStore final : public ObjectStore {
 public:
  explicit FolderStore(std::filesystem::path folder) : folder_(std::move(folder)) {}

  asio::awaitable<kms::Result<void>> put(std::string_view name, std::span<const std::uint8_t> data) override {
    ROOTSEAL_CO_TRY(check_name(name));
    std::error_code ec;
    std::filesystem::create_directories(folder_, ec);
    if (ec) co_return fail(Errc::storage_failure, "snapshot folder " + folder_.string() + ": cannot create it");
    ::chmod(folder_.c_str(), 0700);
    co_return kms::write_file_durably(folder_ / std::string(name), data, 0600, /*exclusive=*/true);
  }

  asio::awaitable<kms::Result<std::vector<std::uint8_t>>> get(std::string_view name) override {
    ROOTSEAL_CO_TRY(check_name(name));
    const auto path = folder_ / std::string(name);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      const int err = errno;
      co_return fail(err == ENOENT ? Errc::not_found : Errc::storage_failure,
                     "snapshot folder: cannot open " + std::string(name) + ": " + std::generic_category().message(err));
    }
    std::vector<std::uint8_t> out;
    std::uint8_t buf[65536];
    for (;;) {
      const auto n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        ::close(fd);
        co_return fail(Errc::storage_failure, "snapshot folder: cannot read " + std::string(name));
      }
      if (n == 0) break;
      out.insert(out.end(), buf, buf + n);
    }
    ::close(fd);
    co_return out;
  }

  asio::awaitable<kms::Result<std::vector<ObjectInfo>>> list() override {
    std::vector<ObjectInfo> out;
    std::error_code ec;
    if (!std::filesystem::exists(folder_, ec)) co_return out;
    for (const auto& e : std::filesystem::directory_iterator(folder_, ec)) {
      const auto name = e.path().filename().string();
      if (!valid_object_name(name) || !e.is_regular_file(ec)) continue;  // skips .tmp siblings
      out.push_back({name, static_cast<std::uint64_t>(e.file_size(ec))});
    }
    if (ec) co_return fail(Errc::storage_failure, "snapshot folder " + folder_.string() + ": cannot list it");
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    co_return out;
  }

  asio::awaitable<kms::Result<void>> remove(std::string_view name) override {
    ROOTSEAL_CO_TRY(check_name(name));
    if (::unlink((folder_ / std::string(name)).c_str()) != 0 && errno != ENOENT) {
      co_return fail(Errc::storage_failure, "snapshot folder: cannot remove " + std::string(name));
    }
    co_return kms::Result<void>{};
  }

  [[nodiscard]] std::string describe() const override { return "folder:" + folder_.string(); }

 private:
  std::filesystem::path folder_;
};

// ---- S3 ---------------------------------------------------------------------

class S3Store final : public ObjectStore {
 public:
  S3Store(S3Spec spec, std::shared_ptr<net::HttpClient> client, std::string base_path)
      : spec_(std::move(spec)), client_(std::move(client)), base_path_(std::move(base_path)) {}

  asio::awaitable<kms::Result<void>> put(std::string_view name, std::span<const std::uint8_t> data) override {
    ROOTSEAL_CO_TRY(check_name(name));
    const std::string_view body(reinterpret_cast<const char*>(data.data()), data.size());
    std::vector<std::pair<std::string, std::string>> extra;
    if (!spec_.sse.empty()) extra.emplace_back("x-amz-server-side-encryption", spec_.sse);
    if (!spec_.sse_kms_key_id.empty())
      extra.emplace_back("x-amz-server-side-encryption-aws-kms-key-id", spec_.sse_kms_key_id);
    const std::string path = object_path(name);
    const std::vector<std::pair<std::string, std::string>> no_query;
    ROOTSEAL_CO_LET(res, co_await call(http::verb::put, path, no_query, extra, body));
    if (res.status != 200) co_return fail(errc_of(res.status), error_text("PutObject", res));
    co_return kms::Result<void>{};
  }

  asio::awaitable<kms::Result<std::vector<std::uint8_t>>> get(std::string_view name) override {
    ROOTSEAL_CO_TRY(check_name(name));
    const std::string path = object_path(name);
    const std::vector<std::pair<std::string, std::string>> none;
    ROOTSEAL_CO_LET(res, co_await call(http::verb::get, path, none, none, {}));
    if (res.status != 200) co_return fail(errc_of(res.status), error_text("GetObject " + std::string(name), res));
    const auto s = res.body.span();
    co_return std::vector<std::uint8_t>(s.begin(), s.end());
  }

  asio::awaitable<kms::Result<std::vector<ObjectInfo>>> list() override {
    std::vector<ObjectInfo> out;
    std::string token;
    for (int page = 0; page < 10000; ++page) {
      std::vector<std::pair<std::string, std::string>> query = {{"list-type", "2"}, {"prefix", spec_.prefix}};
      if (!token.empty()) query.emplace_back("continuation-token", token);
      // Named arguments: GCC 12 mishandles temporaries (a ?: string) in a co_await operand.
      const std::string bucket_path = base_path_.empty() ? std::string("/") : base_path_;
      const std::vector<std::pair<std::string, std::string>> no_headers;
      ROOTSEAL_CO_LET(res, co_await call(http::verb::get, bucket_path, query, no_headers, {}));
      if (res.status != 200) co_return fail(errc_of(res.status), error_text("ListObjectsV2", res));
      auto listed = providers::parse_s3_listing(res.body.view(), spec_.prefix);
      std::move(listed.objects.begin(), listed.objects.end(), std::back_inserter(out));
      if (listed.next.empty()) break;
      token = std::move(listed.next);
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    co_return out;
  }

  asio::awaitable<kms::Result<void>> remove(std::string_view name) override {
    ROOTSEAL_CO_TRY(check_name(name));
    const std::string path = object_path(name);
    const std::vector<std::pair<std::string, std::string>> none;
    ROOTSEAL_CO_LET(res, co_await call(http::verb::delete_, path, none, none, {}));
    if (res.status != 204 && res.status != 200 && res.status != 404) {
      co_return fail(errc_of(res.status), error_text("DeleteObject", res));
    }
    co_return kms::Result<void>{};
  }

  [[nodiscard]] std::string describe() const override { return "s3://" + spec_.bucket + "/" + spec_.prefix; }

 private:
  static Errc errc_of(unsigned status) { return providers::errc_for_status(status); }

  // "s3: PutObject: 403 AccessDenied": S3's error code only (never the message, which may echo input).
  static std::string error_text(const std::string& op, const net::ClientResponse& res) {
    return providers::xml_error_text("s3", op, res);
  }

  std::string object_path(std::string_view name) const {
    return base_path_ + "/" + net::url_encode(spec_.prefix + std::string(name), /*encode_slash=*/false);
  }

  // The arguments are the caller's named locals (they outlive the call).
  asio::awaitable<kms::Result<net::ClientResponse>> call(http::verb method, const std::string& path,
                                                         const std::vector<std::pair<std::string, std::string>>& query,
                                                         const std::vector<std::pair<std::string, std::string>>& extra,
                                                         std::string_view body) {
    const std::string date = providers::sigv4::amz_date(std::chrono::system_clock::now());
    const std::string payload_hash = providers::sigv4::sha256_hex(body);
    providers::sigv4::Request req;
    req.method = std::string(http::to_string(method));
    req.path = path;
    req.query = query;
    req.headers = {{"host", client_->host_header()}, {"x-amz-date", date}, {"x-amz-content-sha256", payload_hash}};
    for (const auto& h : extra) req.headers.push_back(h);
    if (!spec_.session_token.empty())
      req.headers.emplace_back("x-amz-security-token", std::string(kms::as_view(spec_.session_token)));
    req.payload = body;
    const auto auth =
        providers::sigv4::authorization(req, {spec_.access_key_id, spec_.secret_access_key}, spec_.region, "s3", date);
    if (!spec_.session_token.empty()) {
      auto& v = req.headers.back().second;
      kms::secure_zero(v.data(), v.size());
    }
    std::vector<net::Header> headers = {
        {"X-Amz-Date", date}, {"X-Amz-Content-Sha256", payload_hash}, {"Authorization", kms::as_view(auth)}};
    for (const auto& [k, v] : extra) headers.push_back({k, v});
    if (!body.empty()) headers.push_back({"Content-Type", "application/octet-stream"});
    if (!spec_.session_token.empty()) headers.push_back({"X-Amz-Security-Token", kms::as_view(spec_.session_token)});
    std::string target = path;
    std::vector<std::pair<std::string, std::string>> encoded;
    encoded.reserve(query.size());
    for (const auto& [k, v] : query) encoded.emplace_back(net::url_encode(k), net::url_encode(v));
    std::sort(encoded.begin(), encoded.end());
    for (std::size_t i = 0; i < encoded.size(); ++i) {
      target += (i == 0 ? "?" : "&") + encoded[i].first + "=" + encoded[i].second;
    }
    auto res = co_await client_->request(method, target, headers, body);
    if (!res) co_return fail(res.error().code, "s3: " + res.error().message);
    co_return std::move(*res);
  }

  S3Spec spec_;
  std::shared_ptr<net::HttpClient> client_;
  std::string base_path_;  // "/bucket" (path-style) or "" (virtual-hosted)
};

bool valid_bucket(std::string_view b) {
  // S3 bucket naming rules: 3..63 of [a-z0-9.-], starting and ending with a letter or digit.
  if (b.size() < 3 || b.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(b.front()) || !alnum(b.back())) return false;
  return std::all_of(b.begin(), b.end(), [&](char c) { return alnum(c) || c == '.' || c == '-'; });
}

}  // namespace

std::unique_ptr<ObjectStore> make_folder_store(std::filesystem::path folder) {
  return std::make_unique<FolderStore>(std::move(folder));
}

kms::Result<std::unique_ptr<ObjectStore>> make_s3_store(const asio::any_io_executor& executor, S3Spec spec) {
  if (!valid_bucket(spec.bucket)) return fail(Errc::invalid_argument, "s3: bucket must be 3-63 of [a-z0-9.-]");
  if (spec.region.empty() || !std::all_of(spec.region.begin(), spec.region.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-';
      })) {
    return fail(Errc::invalid_argument, "s3: region is required ([a-z0-9-])");
  }
  if (!spec.prefix.empty() && (spec.prefix.back() != '/' || spec.prefix.front() == '/')) {
    return fail(Errc::invalid_argument, "s3: prefix must end with '/' and not start with one");
  }
  if (!spec.sse.empty() && spec.sse != "AES256" && spec.sse != "aws:kms") {
    return fail(Errc::invalid_argument, "s3: server_side_encryption must be AES256 or aws:kms");
  }
  if (!spec.sse_kms_key_id.empty() && spec.sse != "aws:kms") {
    return fail(Errc::invalid_argument, "s3: sse_kms_key_id needs server_side_encryption: aws:kms");
  }
  if (spec.access_key_id.empty() || spec.secret_access_key.empty()) {
    return fail(Errc::invalid_argument, "s3: access_key_id and secret_access_key are required");
  }
  std::string endpoint = spec.endpoint;
  std::string base_path;
  if (endpoint.empty()) {
    endpoint = "https://" + spec.bucket + ".s3." + spec.region + ".amazonaws.com";
  } else {
    base_path = "/" + spec.bucket;
  }
  auto u = boost::urls::parse_uri(endpoint);
  if (!u || (u->scheme() != "http" && u->scheme() != "https") ||
      !(u->encoded_path().empty() || u->encoded_path() == "/")) {
    return fail(Errc::invalid_argument, "s3: endpoint must be http(s)://host[:port]");
  }
  TlsSpec tls;
  tls.ca_file = spec.ca_file.string();
  net::ClientOptions options;
  options.max_connections = 2;
  options.request_timeout = std::chrono::minutes(10);
  options.max_response_bytes = 64u << 20;  // a snapshot read back (lands in locked memory), or a long listing
  ROOTSEAL_LET(client, providers::make_client(executor, endpoint, tls, options));
  return std::unique_ptr<ObjectStore>(
      std::make_unique<S3Store>(std::move(spec), std::move(client), std::move(base_path)));
}

kms::Result<kms::SecureBytes> read_host_credential(const CredentialRef& ref, std::string_view what,
                                                   const std::filesystem::path& credentials_dir) {
  return engine::EngineProviders::read_credential(ref, credentials_dir, what);
}

}  // namespace rootseal::sync
