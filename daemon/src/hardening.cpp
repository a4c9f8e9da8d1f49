#include "hardening.hpp"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

extern char** environ;

namespace rootseal::daemon::hardening {

using kms::Errc;
using kms::fail;

kms::Result<void> harden_process() {
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return fail(Errc::internal, std::string("prctl(PR_SET_DUMPABLE, 0) failed: ") + std::strerror(errno));
  }
  const rlimit no_core{0, 0};
  if (::setrlimit(RLIMIT_CORE, &no_core) != 0) {
    return fail(Errc::internal, std::string("setrlimit(RLIMIT_CORE, 0) failed: ") + std::strerror(errno));
  }
  ::umask(0077);
  return {};
}

kms::Result<UserCheck> check_user(bool allow_root, bool dev) {
  if (::getuid() != 0 && ::geteuid() != 0) return UserCheck::not_root;
  if (allow_root) return UserCheck::root_allowed;
  if (dev) return UserCheck::root_dev;
  return fail(Errc::permission_denied,
              "refusing to run as root: run rootseald as its service user (the packaged unit has "
              "User=_rootseal; by hand: runuser -u _rootseal -- rootseald ...); --allow-root overrides this "
              "(containers whose root is an unprivileged user namespace), see docs/operations.md");
}

bool is_secret_env_name(std::string_view name) noexcept {
  static constexpr std::array<std::string_view, 7> kWords{"PIN",    "TOKEN",      "SECRET", "PASSWORD",
                                                          "PASSWD", "PASSPHRASE", "APIKEY"};
  std::size_t start = 0;
  while (start <= name.size()) {
    const std::size_t end = std::min(name.find('_', start), name.size());
    const std::string_view word = name.substr(start, end - start);
    for (const auto w : kWords) {
      if (word.size() != w.size()) continue;
      bool same = true;
      for (std::size_t i = 0; i < w.size() && same; ++i) {
        const auto c = static_cast<unsigned char>(word[i]);
        same = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c) == w[i];
      }
      if (same) return true;
    }
    start = end + 1;
  }
  return false;
}

std::optional<kms::SecureBytes> take_secret_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return kms::SecureBytes::copy_of(std::string_view(value));
}

std::string scrub_secret_environment() {
  struct Entry {
    std::string name;
    char* text;  // "NAME=value", in the original block or on the heap
  };
  std::vector<Entry> found;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const auto eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view name = entry.substr(0, eq);
    if (is_secret_env_name(name)) found.push_back({std::string(name), *e});
  }
  std::string removed;
  for (auto& f : found) {
    // unsetenv drops every pointer to this name from environ but never frees
    // or touches the bytes: wipe them, so /proc/<pid>/environ (the original
    // block) and a core dump have nothing either.
    const std::size_t len = std::strlen(f.text);
    (void)::unsetenv(f.name.c_str());
    OPENSSL_cleanse(f.text, len);
    if (!removed.empty()) removed += ',';
    removed += f.name;
  }
  return removed;
}

void scrub_argv_value(int argc, char** argv, std::string_view option) noexcept {
  for (int i = 1; i < argc; ++i) {
    char* arg = argv[i];
    const std::string_view a(arg);
    if (a == option && i + 1 < argc) {
      std::memset(argv[i + 1], 'x', std::strlen(argv[i + 1]));
      ++i;
    } else if (a.size() > option.size() && a.starts_with(option) && a[option.size()] == '=') {
      std::memset(arg + option.size() + 1, 'x', a.size() - option.size() - 1);
    }
  }
}

}  // namespace rootseal::daemon::hardening
