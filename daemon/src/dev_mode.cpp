#include "dev_mode.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <span>
#include <string_view>

#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/durable_file.hpp"
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

std::span<const std::uint8_t> bytes_of(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

std::optional<std::string> read_whole(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// SoftHSM2's file backend rewrites each token's token.object in place
// (truncate, then write) at every login: a process killed in between leaves
// it empty, and the token, its PINs and the dev root key with it, is gone. A
// copy of the last good token.object is kept outside the token folder
// (softhsm/good/<token>.token.object) and put back when the file is empty or
// shorter than that copy, before SoftHSM2 reads it.
kms::Result<void> keep_softhsm_tokens(const std::filesystem::path& token_dir, const std::filesystem::path& good_dir) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(token_dir, ec)) {
    if (!entry.is_directory()) continue;
    const auto object = entry.path() / "token.object";
    const auto good = good_dir / (entry.path().filename().string() + ".token.object");
    const auto current = read_whole(object);
    const auto copy = read_whole(good);
    if (copy && !copy->empty() && (!current || current->size() < copy->size())) {
      ROOTSEAL_TRY(kms::write_file_durably(object, bytes_of(*copy), 0600, /*exclusive=*/false));
    } else if (current && !current->empty() && current != copy) {
      // Best effort: on a full disk the older copy stays (it still opens the token).
      (void)kms::write_file_durably(good, bytes_of(*current), 0600, /*exclusive=*/false);
    }
  }
  if (ec) return fail(Errc::invalid_argument, "cannot list " + token_dir.string() + ": " + ec.message());
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
  const auto good_dir = dir / "softhsm" / "good";
  ROOTSEAL_TRY(ensure_private_dir(good_dir));
  ROOTSEAL_TRY(keep_softhsm_tokens(token_dir, good_dir));
  const auto conf = dir / "softhsm" / "softhsm2.conf";
  const std::string conf_text =
      "# written by rootseald --dev\n"
      "directories.tokendir = " +
      token_dir.string() +
      "\n"
      "objectstore.backend = file\n"
      "log.level = ERROR\n"
      "slots.removable = false\n";
  // Written only when it changes, whole or not at all (a full disk or a kill
  // never leaves SoftHSM2 a partial configuration).
  if (read_whole(conf) != conf_text) {
    ROOTSEAL_TRY(kms::write_file_durably(conf, bytes_of(conf_text), 0600, /*exclusive=*/false));
  }
  // SoftHSM2 reads this at C_Initialize, which has not happened yet.
  if (::setenv("SOFTHSM2_CONF", conf.c_str(), 1) != 0) return fail(Errc::internal, "setenv failed");

  // The PIN file is written (whole, durably) before the token is made with
  // that PIN: a start killed in between finds the PIN and makes the token.
  const auto pin_file = dir / "hsm-pin";
  const bool new_pin = !std::filesystem::exists(pin_file);
  if (new_pin) {
    auto user_pin = random_hex(16);
    ROOTSEAL_TRY(kms::write_file_durably(pin_file, user_pin.span(), 0600, /*exclusive=*/true));
  }
  kms::SecureBytes user_pin;
  ROOTSEAL_TRY_ASSIGN(user_pin, read_secret_file(pin_file));
  auto provisioned = hsm::provision_token(options.softhsm_module, kDevTokenLabel, random_hex(16), user_pin);
  if (!provisioned && provisioned.error().code != Errc::already_exists) return std::unexpected(provisioned.error());
  if (!provisioned && new_pin) {
    std::filesystem::remove(pin_file);  // not this token's PIN: stay refused at the next start too
    return fail(Errc::invalid_argument, "dev token exists but its PIN file " + pin_file.string() +
                                            " was missing; remove " + dir.string() + " to start afresh");
  }
  if (provisioned) ROOTSEAL_TRY(keep_softhsm_tokens(token_dir, good_dir));

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
  // The Kubernetes KMS v2 plugin, for the user who started the daemon (and
  // root), when the socket path fits a unix socket address.
  cfg.kms_plugin.socket = dir / "kms.sock";
  cfg.kms_plugin.enabled = cfg.kms_plugin.socket.native().size() <= 80;
  cfg.kms_plugin.allowed_uids = {0};
  if (::getuid() != 0) cfg.kms_plugin.allowed_uids.push_back(::getuid());

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

namespace {

// The banner's KMS v2 plugin lines: the socket and an EncryptionConfiguration.
std::string kms_plugin_text(const Config& c) {
  if (!c.kms_plugin.enabled) {
    return "  KMS plugin:  off (the state folder's path is too long for a unix socket)\n\n";
  }
  const std::string sock = c.kms_plugin.socket.string();
  return "  KMS plugin:  unix://" + sock + "  (Kubernetes KMS v2, key '" + c.kms_plugin.key +
         "')\n"
         "\n"
         "kube-apiserver --encryption-provider-config=<file with>:\n"
         "  apiVersion: apiserver.config.k8s.io/v1\n"
         "  kind: EncryptionConfiguration\n"
         "  resources:\n"
         "    - resources: [secrets]\n"
         "      providers:\n"
         "        - kms:\n"
         "            apiVersion: v2\n"
         "            name: rootseal\n"
         "            endpoint: unix://" +
         sock +
         "\n"
         "            timeout: 3s\n"
         "        - identity: {}\n"
         "\n";
}

}  // namespace

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
      "%s"
      "Try:\n"
      "  curl -s http://%s/v1/sys/health\n"
      "  curl -s -H 'X-Vault-Token: %.*s' -X POST http://%s/v1/transit/keys/demo\n"
      "  curl -s -H 'X-Vault-Token: %.*s' -d '{\"plaintext\":\"aGVsbG8=\"}' http://%s/v1/transit/encrypt/demo\n"
      "  export VAULT_ADDR=http://%s VAULT_TOKEN=%.*s\n"
      "\n",
      setup.config.state_dir.c_str(), bound_address.c_str(), tlen, tok, kms_plugin_text(setup.config).c_str(),
      bound_address.c_str(), tlen, tok, bound_address.c_str(), tlen, tok, bound_address.c_str(), bound_address.c_str(),
      tlen, tok);
  std::fflush(stdout);
}

}  // namespace rootseal::daemon
