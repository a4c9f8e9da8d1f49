// rootseal::cli — the `rootseal ceremony ...` subcommands (init, share
// decrypt, restore, reshare, verify, rotate-root, audit): their options and
// how each calls into the ceremony (ceremony.hpp). See docs/ceremony.md.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <optional>

#include "secret_io.hpp"

namespace rootseal::cli {

struct CeremonyCommands;

// Adds `ceremony` and its subcommands to `app`; the returned object holds their options.
std::unique_ptr<CeremonyCommands, void (*)(CeremonyCommands*)> add_ceremony_commands(CLI::App& app);

// Runs the chosen ceremony command after parsing; nullopt if none was
// chosen. Exit status: 0 success, 1 failed, 2 wrong usage.
std::optional<int> run_ceremony_commands(CeremonyCommands& commands, Console& con);

}  // namespace rootseal::cli
