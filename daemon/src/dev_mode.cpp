#include "dev_mode.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/encoding.hpp"
#include "pin_source.hpp"

namespace rootseal::daemon {

using kms::Errc;
using kms::fail;

namespace {

constexpr const char* kDevTokenLabel = "rootseal-dev";

kms::Result<void> ensure_private_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return fail(Errc::invalid_argument, "cannot create " + dir.string() + ": " + ec.message());
  if (::chmod(dir.c_str(), 0700) != 0) return fail(Errc::invalid_argument, "cannot chmod 0700 " + dir.string());
  return {};
}

// Writes a secret to a new file with mode 0600 (O_EXCL: never over an existing one).
kms::Result<void> write_secret_file(const std::filesystem::path& path, const kms::SecureBytes& secret) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fail(Errc::invalid_argument, "cannot create " + path.string());
  const auto n = ::write(fd, secret.data(), secret.size());
  const bool ok = n == static_cast<ssize_t>(secret.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return fail(Errc::invalid_argument, "cannot write " + path.string());
  return {};
}

// A printable random secret: hex of n random bytes, built in locked memory.
kms::SecureBytes random_hex(std::size_t n) {
  auto raw = kms::SecureBytes::random(n);
  kms::SecureBytes out(2 * n);
  kms::hex_encode_into(raw.span(), reinterpret_cast<char*>(out.data()));
  return out;
}

}  // namespace

kms::Result<DevSetup> prepare_dev(const DevOptions& options) {
  ROOTSEAL_TRY(ensure_private_dir(options.state_dir));
  const auto dir = std::filesystem::absolute(options.state_dir);
  const auto token_dir = dir / "softhsm" / "tokens";
  ROOTSEAL_TRY(ensure_private_dir(token_dir));
  const auto conf = dir / "softhsm" / "softhsm2.conf";
  {
    std::ofstream out(conf, std::ios::trunc);
    out << "# written by rootseald --dev\n"
        << "directories.tokendir = " << token_dir.string() << "\n"
        << "objectstore.backend = file\n"
        << "log.level = ERROR\n"
        << "slots.removable = false\n";
    if (!out) return fail(Errc::invalid_argument, "cannot write " + conf.string());
  }
  // SoftHSM2 reads this at C_Initialize, which has not happened yet.
  if (::setenv("SOFTHSM2_CONF", conf.c_str(), 1) != 0) return fail(Errc::internal, "setenv failed");

  const auto pin_file = dir / "hsm-pin";
  if (!std::filesystem::exists(pin_file)) {
    auto user_pin = random_hex(16);
    auto so_pin = random_hex(16);
    auto provisioned = hsm::provision_token(options.softhsm_module, kDevTokenLabel, so_pin, user_pin);
    if (!provisioned && provisioned.error().code != Errc::already_exists) return std::unexpected(provisioned.error());
    if (!provisioned) {
      return fail(Errc::invalid_argument, "dev token exists but its PIN file " + pin_file.string() +
                                              " is missing; remove " + dir.string() + " to start afresh");
    }
    ROOTSEAL_TRY(write_secret_file(pin_file, user_pin));
  }

  Config cfg;
  cfg.dev = true;
  cfg.state_dir = dir;
  cfg.listen.address = options.listen_address;
  cfg.listen.allow_plaintext = true;
  cfg.pkcs11.module = options.softhsm_module;
  cfg.pkcs11.token_label = kDevTokenLabel;
  cfg.pkcs11.generate_key = true;
  cfg.pin.sources = {PinSourceKind::file, PinSourceKind::typed};
  cfg.pin.file = pin_file;
  cfg.admin.socket = dir / "admin.sock";
  cfg.seal.probe_interval = std::chrono::milliseconds(2000);

  auto hp = parse_host_port(cfg.listen.address);
  if (!hp) return std::unexpected(hp.error());
  if (!is_loopback_host(hp->host)) {
    return fail(Errc::invalid_argument,
                "dev mode listens on loopback only (127.0.0.0/8, [::1], localhost); refused: " + hp->host);
  }

  DevSetup setup{std::move(cfg), {}};
  if (options.root_token_id.empty()) {
    auto hex = random_hex(16);
    setup.root_token = kms::SecureBytes(3 + hex.size());
    std::memcpy(setup.root_token.data(), "rs.", 3);
    std::memcpy(setup.root_token.data() + 3, hex.data(), hex.size());
  } else {
    setup.root_token = kms::SecureBytes::copy_of(options.root_token_id);
  }
  return setup;
}

void print_dev_banner(const DevSetup& setup, const std::string& bound_address) {
  // The token goes from locked memory straight to stdout (dev mode only).
  const int tlen = static_cast<int>(setup.root_token.size());
  const char* tok = reinterpret_cast<const char*>(setup.root_token.data());
  std::printf(
      "\n"
      "WARNING: rootseald is running in development mode. Do not use it for real secrets:\n"
      "the SoftHSM2 token and its PIN file live in %s.\n"
      "\n"
      "  Address:     http://%s\n"
      "  Root token:  %.*s\n"
      "\n"
      "Try:\n"
      "  curl -s http://%s/v1/sys/health\n"
      "  curl -s -H 'X-Vault-Token: %.*s' -X POST http://%s/v1/transit/keys/demo\n"
      "  curl -s -H 'X-Vault-Token: %.*s' -d '{\"plaintext\":\"aGVsbG8=\"}' http://%s/v1/transit/encrypt/demo\n"
      "  export VAULT_ADDR=http://%s VAULT_TOKEN=%.*s\n"
      "\n",
      setup.config.state_dir.c_str(), bound_address.c_str(), tlen, tok, bound_address.c_str(), tlen, tok,
      bound_address.c_str(), tlen, tok, bound_address.c_str(), bound_address.c_str(), tlen, tok);
  std::fflush(stdout);
}

}  // namespace rootseal::daemon
