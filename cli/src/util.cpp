#include "util.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <stdexcept>

namespace rootseal::cli {

using kms::Errc;
using kms::fail;

std::vector<std::uint8_t> sha256(std::span<const std::uint8_t> data) {
  std::vector<std::uint8_t> out(32);
  unsigned int n = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &n, EVP_sha256(), nullptr) != 1 || n != 32) {
    throw std::runtime_error("SHA-256 failed");  // only on a broken OpenSSL
  }
  return out;
}

std::vector<std::uint8_t> sha256(std::string_view data) { return sha256(bytes_of(data)); }

std::string sha256_hex(std::string_view data) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (std::uint8_t b : sha256(data)) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

std::vector<std::uint8_t> hmac_sha256(std::span<const std::uint8_t> key,
                                      std::initializer_list<std::span<const std::uint8_t>> parts) {
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  EVP_MAC_CTX* ctx = mac != nullptr ? EVP_MAC_CTX_new(mac) : nullptr;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0), OSSL_PARAM_construct_end()};
  std::vector<std::uint8_t> out(32);
  std::size_t n = 0;
  bool ok = ctx != nullptr && EVP_MAC_init(ctx, key.data(), key.size(), params) == 1;
  for (auto p : parts) ok = ok && EVP_MAC_update(ctx, p.data(), p.size()) == 1;
  ok = ok && EVP_MAC_final(ctx, out.data(), &n, out.size()) == 1 && n == 32;
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  if (!ok) throw std::runtime_error("HMAC-SHA256 failed");
  return out;
}

std::vector<std::uint8_t> random_public(std::size_t n) {
  std::vector<std::uint8_t> out(n);
  if (RAND_bytes(out.data(), static_cast<int>(n)) != 1) throw std::runtime_error("RAND_bytes failed");
  return out;
}

std::string utc_text(std::time_t t) {
  std::tm tm{};
  char buf[32];
  if (::gmtime_r(&t, &tm) == nullptr || std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
    return "(time " + std::to_string(t) + ")";  // beyond the years gmtime can show
  }
  return buf;
}

std::string utc_now() { return utc_text(std::time(nullptr)); }

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

namespace {

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string errno_text() { return kms::errno_text(errno); }

}  // namespace

kms::Result<std::string> read_small_file(const std::filesystem::path& path, std::size_t max_bytes) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0)
    return fail(errno == ENOENT ? Errc::not_found : Errc::storage_failure, path.string() + ": " + errno_text());
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(f.fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(Errc::storage_failure, path.string() + ": " + errno_text());
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > max_bytes) return fail(Errc::invalid_argument, path.string() + ": too large");
  }
  return out;
}

kms::Result<void> make_private_dir(const std::filesystem::path& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return fail(Errc::storage_failure, dir.string() + ": " + errno_text());
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return fail(Errc::storage_failure, dir.string() + ": not a folder");
  return {};
}

kms::Result<void> validate_name(std::string_view what, std::string_view name) {
  if (name.empty() || name.size() > 64)
    return fail(Errc::invalid_argument, std::string(what) + " must be 1..64 characters");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' ' ||
                    c == '.' || c == '_' || c == '-' || c == '@';
    if (!ok) {
      return fail(Errc::invalid_argument, std::string(what) + " '" + std::string(name) +
                                              "' may contain only letters, digits, space and . _ - @");
    }
  }
  return {};
}

namespace {
std::atomic<StageObserver> g_observer{nullptr};
}

void set_stage_observer(StageObserver observer) noexcept { g_observer.store(observer); }

void crash_point(std::string_view point) {
  if (StageObserver o = g_observer.load(); o != nullptr) o(point);
  // The environment is read, never written, by this single-threaded CLI.
  const char* at = std::getenv("ROOTSEAL_TEST_CRASH_AT");  // NOLINT(concurrency-mt-unsafe)
  if (at != nullptr && point == at) (void)::raise(SIGKILL);
}

}  // namespace rootseal::cli
