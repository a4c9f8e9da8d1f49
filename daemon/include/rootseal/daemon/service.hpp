// rootseal::daemon — the rootseald process: wires the root of trust, the
// state store, the keyring, the seal state machine and the HTTP API together.
#pragma once

#include <memory>
#include <optional>

#include "rootseal/daemon/config.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::daemon {

// Runs rootseald's command line (rootseald --help). Returns the exit status.
int daemon_main(int argc, char** argv);

}  // namespace rootseal::daemon
