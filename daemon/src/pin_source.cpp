#include "pin_source.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace rootseal::daemon {

using kms::Errc;
using kms::fail;

kms::Result<kms::SecureBytes> read_secret_file(const std::filesystem::path& path, std::size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
  if (fd < 0) {
    return fail(Errc::sealed, path.string() + ": " + (errno == ENOENT ? "missing" : std::strerror(errno)));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return fail(Errc::sealed, path.string() + ": not a regular file");
  if ((st.st_mode & 0077) != 0) {
    return fail(Errc::sealed, path.string() + ": refused, readable or writable by group or others (chmod 0400)");
  }
  if (st.st_uid != ::geteuid()) return fail(Errc::sealed, path.string() + ": refused, not owned by the service user");
  if (static_cast<std::size_t>(st.st_size) > max_bytes) return fail(Errc::sealed, path.string() + ": too large");
  kms::SecureBytes buf(max_bytes);
  std::size_t got = 0;
  while (got < max_bytes) {
    const ssize_t n = ::read(fd, buf.data() + got, max_bytes - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(Errc::sealed, path.string() + ": read failed");
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  while (got > 0 && (buf.data()[got - 1] == '\n' || buf.data()[got - 1] == '\r')) --got;
  if (got == 0) return fail(Errc::sealed, path.string() + ": empty");
  buf.truncate(got);
  return buf;
}

hsm::PinSource make_pin_source(const PinConfig& config) {
  return [config]() -> kms::Result<kms::SecureBytes> {
    std::string tried;
    for (const auto kind : config.sources) {
      if (kind == PinSourceKind::credential) {
        const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
        if (dir == nullptr || *dir == '\0') {
          tried += "credential: $CREDENTIALS_DIRECTORY not set; ";
          continue;
        }
        auto pin = read_secret_file(std::filesystem::path(dir) / config.credential_name);
        if (pin) return pin;
        tried += "credential: " + pin.error().message + "; ";
      } else {
        auto pin = read_secret_file(config.file);
        if (pin) return pin;
        tried += "file: " + pin.error().message + "; ";
      }
    }
    if (tried.size() >= 2) tried.resize(tried.size() - 2);
    return fail(Errc::sealed, "no HSM PIN available (" + tried + ")");
  };
}

}  // namespace rootseal::daemon
