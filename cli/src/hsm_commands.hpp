// rootseal::cli — `rootseal hsm probe`: what a PKCS#11 token offers and which
// root mechanisms rootseal can use on it, offline and without a PIN. See docs/hsm.md.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <optional>

#include "secret_io.hpp"

namespace rootseal::cli {

struct HsmCommands;

std::unique_ptr<HsmCommands, void (*)(HsmCommands*)> add_hsm_commands(CLI::App& app);

// Runs the chosen hsm command; nullopt if none was chosen. Exit status: 0 the
// token was probed (whatever it offers), 1 it could not be.
std::optional<int> run_hsm_commands(HsmCommands& commands, Console& con);

}  // namespace rootseal::cli
