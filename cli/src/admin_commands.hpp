// rootseal::cli — the commands that talk to a running rootseald over its
// admin socket (status, unseal, token ..., tpm reseal) and `tpm seal-pin`,
// which works on the TPM directly. See docs/admin.md.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <optional>

#include "secret_io.hpp"

namespace rootseal::cli {

struct AdminCommands;

// Adds the subcommands to `app`; the returned object holds their options.
std::unique_ptr<AdminCommands, void (*)(AdminCommands*)> add_admin_commands(CLI::App& app);

// Runs the chosen admin command after parsing; nullopt if none was chosen.
// Exit status: 0 success, 1 refused or failed, 2 (status) sealed.
std::optional<int> run_admin_commands(AdminCommands& commands, Console& con);

}  // namespace rootseal::cli
