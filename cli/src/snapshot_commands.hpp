// rootseal::cli — `rootseal snapshot list | verify | restore`: keyring
// snapshots in a destination of rootseald.yaml's `snapshots:` (or a folder,
// or one file), checked against the HSM offline. See docs/operations.md.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <optional>

#include "secret_io.hpp"

namespace rootseal::cli {

struct SnapshotCommands;

std::unique_ptr<SnapshotCommands, void (*)(SnapshotCommands*)> add_snapshot_commands(CLI::App& app);

// Runs the chosen snapshot command; nullopt if none was chosen. Exit status:
// 0 success, 1 refused or failed.
std::optional<int> run_snapshot_commands(SnapshotCommands& commands, Console& con);

}  // namespace rootseal::cli
