#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "dev_mode.hpp"
#include "log.hpp"
#include "rootseal/daemon/service.hpp"
#include "service.hpp"

#ifndef ROOTSEAL_VERSION
#define ROOTSEAL_VERSION "0.0.0"
#endif

namespace rootseal::daemon {
namespace {

// Process hardening that does not depend on systemd having applied it:
// no core dumps, not ptrace-attachable by other users' processes, private files.
void harden_process() {
  (void)::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  const rlimit no_core{0, 0};
  (void)::setrlimit(RLIMIT_CORE, &no_core);
  ::umask(0077);
}

}  // namespace

int daemon_main(int argc, char** argv) {
  harden_process();

  CLI::App app{"rootseald — HSM-rooted seal, envelope-encryption and secrets-sync daemon"};
  app.set_version_flag("--version", ROOTSEAL_VERSION);
  std::string config_path = "/etc/rootseal/rootseald.yaml";
  bool dev = false;
  DevOptions dev_options;
  std::string dev_state_dir = "rootseal-dev";
  std::string log_level;
  app.add_option("--config", config_path, "configuration file (YAML)")->capture_default_str();
  app.add_flag("--dev", dev, "development mode: SoftHSM2 token in a local folder, loopback HTTP, printed root token");
  app.add_option("--dev-root-token-id", dev_options.root_token_id, "dev mode: use this root token instead of a random one");
  app.add_option("--dev-listen-address", dev_options.listen_address, "dev mode: loopback address to listen on")
      ->capture_default_str();
  app.add_option("--dev-state-dir", dev_state_dir, "dev mode: state folder (token, PIN file, SQLite)")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "override log.level (trace, debug, info, warn, error)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  std::optional<kms::SecureBytes> root_token;
  Config config;
  std::optional<DevSetup> setup;
  if (dev) {
    dev_options.state_dir = dev_state_dir;
    auto prepared = prepare_dev(dev_options);
    if (!prepared) {
      std::fprintf(stderr, "rootseald: %s\n", prepared.error().message.c_str());
      return 1;
    }
    setup = std::move(*prepared);
    config = setup->config;
    root_token = setup->root_token.clone();
  } else {
    auto loaded = load_config(config_path);
    if (!loaded) {
      std::fprintf(stderr, "rootseald: %s\n", loaded.error().message.c_str());
      return 1;
    }
    config = std::move(*loaded);
  }
  if (!log_level.empty()) config.log.level = log_level;
  log::init(config.log.format, config.log.level);

  Service service(config, std::move(root_token), dev ? std::filesystem::path() : std::filesystem::path(config_path));
  if (auto started = service.start(); !started) {
    log::error("start-up failed", {{"reason", started.error().message}});
    return 1;
  }
  if (setup) print_dev_banner(*setup, service.bound_address());
  service.run();
  return 0;
}

}  // namespace rootseal::daemon
