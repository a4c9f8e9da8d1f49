#include "secret_io.hpp"

#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

namespace rootseal::cli {

using kms::Errc;
using kms::fail;

namespace {

constexpr std::size_t kMaxSecret = 256;
constexpr std::size_t kMaxLine = 1024;

void write_all(int fd, const void* p, std::size_t n) {
  const auto* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    c += w;
    n -= static_cast<std::size_t>(w);
  }
}

}  // namespace

void StdConsole::out(std::string_view text) { write_all(STDOUT_FILENO, text.data(), text.size()); }
void StdConsole::err(std::string_view text) { write_all(STDERR_FILENO, text.data(), text.size()); }
void StdConsole::secret_out(std::span<const std::uint8_t> text) { write_all(STDOUT_FILENO, text.data(), text.size()); }

FdLineSource::FdLineSource(int fd) : fd_(fd), tty_(::isatty(fd) == 1) {}

kms::Result<std::optional<kms::SecureBytes>> FdLineSource::next_line(std::string_view prompt) {
  if (tty_ && !prompt.empty()) {
    const int t = ::open("/dev/tty", O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (t >= 0) {
      write_all(t, prompt.data(), prompt.size());
      ::close(t);
    }
  }
  kms::SecureBytes line(kMaxLine);
  std::size_t n = 0;
  for (;;) {
    while (begin_ < end_) {
      const std::uint8_t c = buf_.data()[begin_++];
      if (c == '\n') {
        line.truncate(n);
        return std::optional<kms::SecureBytes>(std::move(line));
      }
      if (n == kMaxLine) return fail(Errc::invalid_argument, "input line too long");
      line.data()[n++] = c;
    }
    if (eof_) {
      if (n == 0) return std::optional<kms::SecureBytes>();
      line.truncate(n);
      return std::optional<kms::SecureBytes>(std::move(line));
    }
    const ssize_t r = ::read(fd_, buf_.data(), buf_.size());
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return fail(Errc::invalid_argument, std::string("reading shares: ") + kms::errno_text(errno));
    begin_ = 0;
    end_ = static_cast<std::size_t>(r);
    if (r == 0) eof_ = true;
  }
}

kms::Result<std::optional<kms::SecureBytes>> BufferLineSource::next_line(std::string_view) {
  if (pos_ >= text_.size()) return std::optional<kms::SecureBytes>();
  std::size_t e = pos_;
  while (e < text_.size() && text_.data()[e] != '\n') ++e;
  auto line = kms::SecureBytes::copy_of(std::span<const std::uint8_t>(text_.data() + pos_, e - pos_));
  pos_ = e + 1;
  return std::optional<kms::SecureBytes>(std::move(line));
}

kms::Result<kms::SecureBytes> read_secret_fd(int fd) {
  kms::SecureBytes out(kMaxSecret + 1);
  std::size_t n = 0;
  for (;;) {
    std::uint8_t c = 0;
    const ssize_t r = ::read(fd, &c, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0)
      return fail(Errc::invalid_argument,
                  "reading the PIN from fd " + std::to_string(fd) + ": " + kms::errno_text(errno));
    if (r == 0 || c == '\n') break;
    if (n == kMaxSecret) return fail(Errc::invalid_argument, "the PIN is longer than 256 bytes");
    out.data()[n++] = c;
  }
  if (n > 0 && out.data()[n - 1] == '\r') --n;
  if (n == 0) return fail(Errc::invalid_argument, "empty PIN on fd " + std::to_string(fd));
  out.truncate(n);
  return out;
}

kms::Result<kms::SecureBytes> prompt_secret_tty(std::string_view prompt) {
  const int fd = ::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return fail(Errc::invalid_argument,
                "no terminal to prompt for the PIN on; pass it on a file descriptor (--pin-fd)");
  }
  struct Restore {
    int fd;
    termios saved{};
    bool active = false;
    ~Restore() {
      if (active) ::tcsetattr(fd, TCSAFLUSH, &saved);
      ::close(fd);
    }
  } restore{fd};
  if (::tcgetattr(fd, &restore.saved) == 0) {
    termios quiet = restore.saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHONL);
    quiet.c_lflag |= ICANON;
    if (::tcsetattr(fd, TCSAFLUSH, &quiet) == 0) restore.active = true;
  }
  write_all(fd, prompt.data(), prompt.size());
  auto pin = read_secret_fd(fd);
  write_all(fd, "\n", 1);
  return pin;
}

}  // namespace rootseal::cli
