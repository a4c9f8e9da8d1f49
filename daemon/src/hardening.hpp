// Process hardening that rootseald applies itself, whether or not systemd's
// sandbox is there (docs/operations.md, "Process hardening"):
//
// - harden_process(): not dumpable (PR_SET_DUMPABLE 0: no core, no ptrace or
//   /proc/<pid>/mem, environ, ... by the same uid), RLIMIT_CORE 0, umask 077.
//   Key memory itself is locked and excluded from dumps by kms::SecureBytes.
// - check_user(): refuses uid/euid 0 unless --allow-root (dev mode runs as
//   root with a warning: loopback, throwaway token).
// - take_secret_env() / scrub_secret_environment(): read a secret from the
//   environment into locked memory, then remove every secret-looking variable
//   from the environment *and wipe its bytes in place*, so that neither
//   getenv() nor /proc/<pid>/environ (which shows the original block) has it.
// - scrub_argv_value(): the same for one option's value on the command line
//   (/proc/<pid>/cmdline is readable by every local user).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::daemon::hardening {

// Failing to become non-dumpable or to drop the core limit is an error (the
// caller stops): both are plain syscalls that cannot fail on Linux unless a
// seccomp filter refuses them, and running without them is not acceptable.
kms::Result<void> harden_process();

// What check_user() decided, for the caller to log once logging is set up.
enum class UserCheck { not_root, root_allowed, root_dev };
// uid or euid 0: refused (Errc::permission_denied, the message says what to
// do) unless allow_root or dev.
kms::Result<UserCheck> check_user(bool allow_root, bool dev);

// True for environment variable names that hold credentials by convention:
// a '_'-separated word of the name (case-insensitive) is PIN, TOKEN, SECRET,
// PASSWORD, PASSWD, PASSPHRASE or APIKEY (VAULT_TOKEN, ROOTSEAL_HSM_PIN,
// AWS_SECRET_ACCESS_KEY, ...). CREDENTIALS_DIRECTORY (a path) is not one.
[[nodiscard]] bool is_secret_env_name(std::string_view name) noexcept;

// The variable's value in locked memory, or nullopt when unset or empty. The
// caller scrubs the environment afterwards.
std::optional<kms::SecureBytes> take_secret_env(const char* name);

// Removes every variable for which is_secret_env_name() holds and zeroes its
// "NAME=value" bytes where they lie. Returns the names removed (for a log
// line; never the values). Call before any thread is started.
std::string scrub_secret_environment();

// Overwrites the value of `option` in argv ("--opt VALUE" or "--opt=VALUE")
// with 'x's of the same length, after the command line has been parsed.
void scrub_argv_value(int argc, char** argv, std::string_view option) noexcept;

}  // namespace rootseal::daemon::hardening
