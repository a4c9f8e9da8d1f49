#include <openssl/crypto.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "dev_mode.hpp"
#include "hardening.hpp"
#include "log.hpp"
#include "rootseal/daemon/service.hpp"
#include "service.hpp"

#ifndef ROOTSEAL_VERSION
#define ROOTSEAL_VERSION "0.0.0"
#endif

namespace rootseal::daemon {
namespace {

// Dev mode's root token may come from the environment (like Vault's
// VAULT_DEV_ROOT_TOKEN_ID) instead of the command line; it is scrubbed.
constexpr const char* kDevRootTokenEnv = "ROOTSEAL_DEV_ROOT_TOKEN_ID";

}  // namespace

namespace {

struct CommandLine {
  std::string config_path = "/etc/rootseal/rootseald.yaml";
  bool dev = false;
  DevOptions dev_options;
  std::string dev_state_dir = "rootseal-dev";
  std::string log_level;
  bool allow_root = false;
};

void add_options(CLI::App& app, CommandLine& cl) {
  app.set_version_flag("--version", ROOTSEAL_VERSION);
  app.add_option("--config", cl.config_path, "configuration file (YAML)")->capture_default_str();
  app.add_flag("--dev", cl.dev,
               "development mode: SoftHSM2 token in a local folder, loopback HTTP, printed root token");
  app.add_option("--dev-root-token-id", cl.dev_options.root_token_id,
                 "dev mode: use this root token instead of a random one");
  app.add_option("--dev-listen-address", cl.dev_options.listen_address, "dev mode: loopback address to listen on")
      ->capture_default_str();
  app.add_option("--dev-state-dir", cl.dev_state_dir, "dev mode: state folder (token, PIN file, SQLite)")
      ->capture_default_str();
  app.add_option("--log-level", cl.log_level, "override log.level (trace, debug, info, warn, error)");
  app.add_flag("--allow-root", cl.allow_root,
               "run even as root (refused otherwise, except in dev mode): for containers whose root is an "
               "unprivileged user namespace");
}

// What the service starts with: the dev setup (which wipes the dev root token
// from the command line's copy) or the configuration file.
struct Startup {
  Config config;
  std::optional<kms::SecureBytes> root_token;
  std::optional<DevSetup> setup;
};

kms::Result<Startup> load_startup(CommandLine& cl) {
  Startup s;
  if (!cl.dev) {
    ROOTSEAL_TRY_ASSIGN(s.config, load_config(cl.config_path));
    return s;
  }
  cl.dev_options.state_dir = cl.dev_state_dir;
  auto prepared = prepare_dev(cl.dev_options);
  OPENSSL_cleanse(cl.dev_options.root_token_id.data(), cl.dev_options.root_token_id.size());
  cl.dev_options.root_token_id.clear();
  if (!prepared) return std::unexpected(prepared.error());
  s.setup = std::move(*prepared);
  s.config = s.setup->config;
  s.root_token = s.setup->root_token.clone();
  return s;
}

}  // namespace

int daemon_main(int argc, char** argv) {
  // First, before anything can be read from this process: not dumpable, no
  // core, private files. Then the secrets out of the environment.
  if (auto hardened = hardening::harden_process(); !hardened) {
    std::fprintf(stderr, "rootseald: %s\n", hardened.error().message.c_str());
    return 1;
  }
  auto env_root_token = hardening::take_secret_env(kDevRootTokenEnv);
  const std::string scrubbed_env = hardening::scrub_secret_environment();

  CLI::App app{"rootseald — HSM-rooted seal, envelope-encryption and secrets-sync daemon"};
  CommandLine cl;
  add_options(app, cl);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  // /proc/<pid>/cmdline is world-readable: the token must not stay there.
  hardening::scrub_argv_value(argc, argv, "--dev-root-token-id");
  if (cl.dev_options.root_token_id.empty() && env_root_token) {
    cl.dev_options.root_token_id.assign(reinterpret_cast<const char*>(env_root_token->data()), env_root_token->size());
  }
  env_root_token.reset();

  auto startup = load_startup(cl);
  if (!startup) {
    std::fprintf(stderr, "rootseald: %s\n", startup.error().message.c_str());
    return 1;
  }
  Config& config = startup->config;
  // After the configuration (whose errors are worth seeing first), before
  // anything is created or opened under state_dir.
  auto user = hardening::check_user(cl.allow_root, cl.dev);
  if (!user) {
    std::fprintf(stderr, "rootseald: %s\n", user.error().message.c_str());
    return 1;
  }
  if (!cl.log_level.empty()) config.log.level = cl.log_level;
  log::init(config.log.format, config.log.level);
  if (*user == hardening::UserCheck::root_allowed) {
    log::warn("running as root (--allow-root): files created under state_dir belong to root");
  } else if (*user == hardening::UserCheck::root_dev) {
    log::warn("running as root in dev mode; outside dev mode rootseald refuses root without --allow-root");
  }
  if (!scrubbed_env.empty()) {
    log::info("removed secret-looking variables from the environment", {{"names", scrubbed_env}});
  }

  Service service(config, std::move(startup->root_token),
                  cl.dev ? std::filesystem::path() : std::filesystem::path(cl.config_path));
  if (auto started = service.start(); !started) {
    log::error("start-up failed", {{"reason", started.error().message}});
    return 1;
  }
  if (startup->setup) print_dev_banner(*startup->setup, service.bound_address());
  service.run();
  return 0;
}

}  // namespace rootseal::daemon
