// rootseal::cli — `rootseal storage migrate --to etcd|sqlite`: copies a
// host's state store between SQLite (<state_dir>/rootseal.db) and etcd
// (storage: etcd), offline, idempotent and resumable, and checks that every
// key version copied unwraps with the root. See docs/ha.md (Migration).
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <optional>

#include "secret_io.hpp"

namespace rootseal::cli {

struct StorageCommands;

std::unique_ptr<StorageCommands, void (*)(StorageCommands*)> add_storage_commands(CLI::App& app);

// Runs the chosen storage command; nullopt if none was chosen. Exit status:
// 0 success, 1 refused or failed.
std::optional<int> run_storage_commands(StorageCommands& commands, Console& con);

}  // namespace rootseal::cli
