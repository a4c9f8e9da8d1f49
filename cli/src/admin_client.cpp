#include "admin_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "rootseal/daemon/config.hpp"

namespace rootseal::cli {

namespace json = boost::json;
using kms::Errc;
using kms::fail;

namespace {

constexpr std::size_t kMaxAnswer = std::size_t{4} * 1024 * 1024;
constexpr const char* kDefaultConfig = "/etc/rootseal/rootseald.yaml";

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::int64_t remaining_ms(std::chrono::steady_clock::time_point deadline) {
  return std::max<std::int64_t>(
      0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
}

}  // namespace

kms::Result<std::filesystem::path> admin_socket_path(const std::string& socket_option,
                                                     const std::string& config_option) {
  if (!socket_option.empty()) return std::filesystem::path(socket_option);
  // The single-threaded CLI reads its environment and never writes it.
  if (const char* env = std::getenv("ROOTSEAL_ADMIN_SOCKET");
      env != nullptr && *env != '\0') {  // NOLINT(concurrency-mt-unsafe)
    return std::filesystem::path(env);
  }
  const std::string config = config_option.empty() ? kDefaultConfig : config_option;
  std::error_code ec;
  if (!config_option.empty() || std::filesystem::exists(config, ec)) {
    auto cfg = daemon::load_config(config);
    if (!cfg) {
      if (!config_option.empty()) return std::unexpected(cfg.error());
      return daemon::AdminConfig{}.socket;
    }
    return cfg->admin.socket;
  }
  return daemon::AdminConfig{}.socket;
}

AdminAnswer::AdminAnswer(kms::SecureBytes line)
    : line_(std::move(line)),
      arena_(4 * line_.size() + std::size_t{16} * 1024, 16 * line_.size() + std::size_t{64} * 1024),
      value_(arena_.storage()) {
  json::error_code ec;
  try {
    value_ = kms::parse_into(kms::as_view(line_), arena_.storage(), ec);
  } catch (const std::bad_alloc&) {
    parse_error_ = "the answer of rootseald is too large";
    return;
  }
  if (ec || !value_.is_object()) {
    parse_error_ = "rootseald's answer is not a JSON object";
    return;
  }
  const auto& obj = value_.as_object();
  const auto* err = obj.if_contains("error");
  if (err != nullptr && err->is_object()) {
    if (const auto* c = err->as_object().if_contains("code"); c != nullptr && c->is_string()) {
      error_code_ = std::string(c->as_string());
    }
    if (const auto* r = err->as_object().if_contains("retry_after_ms"); r != nullptr && r->is_int64()) {
      retry_after_ms_ = r->as_int64();
    }
  }
}

kms::Result<const json::object*> AdminAnswer::data() const {
  if (!parse_error_.empty()) return fail(Errc::internal, parse_error_);
  const auto& obj = value_.as_object();
  const auto* ok = obj.if_contains("ok");
  if (ok != nullptr && ok->is_bool() && ok->as_bool()) {
    const auto* d = obj.if_contains("data");
    if (d == nullptr || !d->is_object()) return fail(Errc::internal, "rootseald's answer has no data");
    return &d->as_object();
  }
  std::string message = "rootseald refused the request";
  Errc code = Errc::internal;
  if (const auto* err = obj.if_contains("error"); err != nullptr && err->is_object()) {
    if (const auto* m = err->as_object().if_contains("message"); m != nullptr && m->is_string()) {
      message = std::string(m->as_string());
    }
    if (error_code_ == "permission_denied" || error_code_ == "rate_limited")
      code = Errc::permission_denied;
    else if (error_code_ == "invalid_argument")
      code = Errc::invalid_argument;
    else if (error_code_ == "not_found")
      code = Errc::not_found;
    else if (error_code_ == "sealed")
      code = Errc::sealed;
  }
  return fail(code, message);
}

kms::Result<std::unique_ptr<AdminAnswer>> admin_call(const std::filesystem::path& socket,
                                                     const kms::SecureBytes& request,
                                                     std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const std::string where = "admin socket " + socket.string();
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (socket.native().size() >= sizeof(sa.sun_path)) return fail(Errc::invalid_argument, where + ": path too long");
  std::memcpy(sa.sun_path, socket.c_str(), socket.native().size());
  Fd s;
  s.fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s.fd < 0) return fail(Errc::internal, where + ": socket(): " + kms::errno_text(errno));
  if (::connect(s.fd, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) != 0) {
    const int e = errno;
    if (e == EACCES || e == EPERM) {
      return fail(Errc::permission_denied, where + ": " + kms::errno_text(e) + " (run as root or the service user)");
    }
    return fail(Errc::unavailable, where + ": " + kms::errno_text(e) + " (is rootseald running? --socket PATH)");
  }
  // The request line, written with write(2) straight from locked memory.
  kms::SecureBytes line(request.size() + 1);
  std::memcpy(line.data(), request.data(), request.size());
  line.data()[request.size()] = '\n';
  std::size_t off = 0;
  while (off < line.size()) {
    const ssize_t w = ::send(s.fd, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;  // closed early (e.g. refused by peer credentials): its answer may be waiting
    off += static_cast<std::size_t>(w);
  }
  line.clear();

  kms::SecureBytes buf(std::size_t{64} * 1024);
  std::size_t have = 0;
  for (;;) {
    pollfd p{s.fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(remaining_ms(deadline), 1 << 30)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return fail(Errc::unavailable, where + ": no answer in " + std::to_string(timeout.count()) + " ms");
    if (have == buf.size()) {
      if (buf.size() >= kMaxAnswer) return fail(Errc::internal, where + ": answer too large");
      kms::SecureBytes bigger(buf.size() * 2);
      std::memcpy(bigger.data(), buf.data(), have);
      buf = std::move(bigger);
    }
    const ssize_t n = ::read(s.fd, buf.data() + have, buf.size() - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(Errc::unavailable, where + ": " + kms::errno_text(errno));
    if (n == 0) break;
    have += static_cast<std::size_t>(n);
    if (std::memchr(buf.data(), '\n', have) != nullptr) break;
  }
  const void* nl = std::memchr(buf.data(), '\n', have);
  if (nl == nullptr) return fail(Errc::unavailable, where + ": the daemon closed the connection without an answer");
  buf.truncate(static_cast<std::size_t>(static_cast<const std::uint8_t*>(nl) - buf.data()));
  return std::make_unique<AdminAnswer>(std::move(buf));
}

void write_json(int fd, const json::value& value) {
  json::serializer sr;
  sr.reset(&value);
  char chunk[1024];
  while (!sr.done()) {
    const auto out = sr.read(chunk, sizeof(chunk));
    std::size_t off = 0;
    while (off < out.size()) {
      const ssize_t w = ::write(fd, out.data() + off, out.size() - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      off += static_cast<std::size_t>(w);
    }
  }
  kms::secure_zero(chunk, sizeof(chunk));
  while (::write(fd, "\n", 1) < 0 && errno == EINTR) {
  }
}

}  // namespace rootseal::cli
