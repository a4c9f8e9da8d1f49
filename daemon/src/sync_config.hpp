// rootseal::daemon — the `sync:` section of rootseald.yaml and the start of
// the sync engine (docs/sync.md "Configuration").
//
//   sync:
//     enabled: true
//     kubeconfig: /etc/rootseal/kubeconfig      # empty: in-cluster service account
//     context: ""                               # kubeconfig context (default: current-context)
//     concurrency: 0                            # reconcile workers; 0 = 4 x cores
//     refresh_window: 10s                       # fetch dedup window / refresh quantum
//     namespaces: []                            # watched namespaces; empty = all
//     rollout_restart: true
//     kube_qps: 50
//     kube_burst: 100
//     retry_base: 500ms
//     retry_max: 5m
//     sharded: true                             # storage: etcd: split the namespaces between the hosts
//     stores:                                   # host-model credentials (never inline)
//       central:
//         kind: vault                           # vault | aws | azure | gcp
//         server: https://vault.example:8200
//         namespaces: [team-a]                  # who may use it ("*" = any)
//         token: {credential: vault-token}      # or {file: /etc/rootseal/vault-token}
//
// No secret value is ever accepted in this section: a `token`, `secret_id`,
// `access_key_id`, ... is a reference {file: PATH} or {credential: NAME}.
#pragma once

#include <yaml-cpp/yaml.h>

#include <boost/asio/any_io_executor.hpp>

#include <memory>

#include "rootseal/daemon/config.hpp"
#include "rootseal/daemon/snapshots.hpp"
#include "rootseal/kms/error.hpp"
#include "rootseal/sync/engine.hpp"

namespace rootseal::daemon {

class Metrics;

kms::Result<std::shared_ptr<const sync::EngineConfig>> parse_sync_config(const YAML::Node& node);

// The `snapshots:` section (docs/configuration.md): interval, retention,
// destinations (folder, s3) with credentials as {file: …} / {credential: …},
// parsed here with the same rules as the sync engine's host stores.
kms::Result<std::shared_ptr<const SnapshotsConfig>> parse_snapshots_config(const YAML::Node& node);

// Starts the engine when cfg.sync is set and enabled (nullptr otherwise) and
// registers its gauges with `metrics`. Errors (bad kubeconfig ...) are fatal
// start-up problems. `shards`: the gate of a host sharing the work with
// others (null: every namespace).
kms::Result<std::unique_ptr<sync::Engine>> start_sync_engine(const Config& cfg, boost::asio::any_io_executor ex,
                                                             Metrics& metrics,
                                                             std::shared_ptr<sync::ShardGate> shards = nullptr);

}  // namespace rootseal::daemon
