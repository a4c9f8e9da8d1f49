// rootseal::cli — `rootseal cluster status`: the hosts of a cluster sharing
// one keyring on etcd, the etcd endpoints' health and this host's view, from
// the running rootseald's admin socket (op cluster.status; docs/ha.md).
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <optional>

#include "secret_io.hpp"

namespace rootseal::cli {

struct ClusterCommands;

std::unique_ptr<ClusterCommands, void (*)(ClusterCommands*)> add_cluster_commands(CLI::App& app);

// Runs the chosen cluster command; nullopt if none was chosen. Exit status:
// 0 answered, 1 rootseald not reached or refused, 2 answered but etcd could
// not be read (the members are then unknown).
std::optional<int> run_cluster_commands(ClusterCommands& commands, Console& con);

}  // namespace rootseal::cli
