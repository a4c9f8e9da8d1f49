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

#include <functional>
#include <memory>
#include <string>

#include "rootseal/daemon/config.hpp"
#include "rootseal/daemon/snapshots.hpp"
#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_buffer.hpp"
#include "rootseal/sync/engine.hpp"

namespace rootseal::daemon {

class Metrics;

kms::Result<std::shared_ptr<const sync::EngineConfig>> parse_sync_config(const YAML::Node& node);

// The `snapshots:` section (docs/configuration.md): interval, retention,
// destinations (folder, s3) with credentials as {file: …} / {credential: …},
// parsed here with the same rules as the sync engine's host stores.
kms::Result<std::shared_ptr<const SnapshotsConfig>> parse_snapshots_config(const YAML::Node& node);

// Builds the engine of an enabled `sync:` section on `ex` (not started),
// logging through the daemon's log. Errors (bad kubeconfig ...) refuse the
// configuration. `shards`: the gate of a host sharing the work with others
// (null: every namespace).
kms::Result<std::unique_ptr<sync::Engine>> make_sync_engine(const sync::EngineConfig& sync,
                                                            boost::asio::any_io_executor ex,
                                                            std::shared_ptr<sync::ShardGate> shards);

// Registers the engine's gauges with `metrics`, read at every scrape from
// the engine `current` returns (null: zeros, no per-store series).
void add_sync_metrics(Metrics& metrics, std::function<std::shared_ptr<sync::Engine>()> current);

// The effective `sync:` section as text, every option (defaults included)
// in a fixed order, one "name=<length>:value" line each, so that two
// spellings of one configuration ("10s", "10000ms") give the same text.
// Credentials appear as their references ({file}/{credential}), never as
// values (the section holds none). `local` true: everything, for this
// host's own comparison (a reload); false: what the hosts of a cluster must
// share, for the published fingerprint: without the kubeconfig path and
// context (each host's own way to the API) and with a URL's user information
// (user:password@) replaced by "<userinfo>@". The text is built in locked
// memory, wiped when the buffer goes: with `local` it holds that user
// information, which may be a password.
kms::SecureBuffer canonical_sync_config(const sync::EngineConfig& sync, bool local);

// Whether two `sync:` sections are one configuration for this host (a
// reload changes nothing): their canonical_sync_config(.., true) texts are
// equal, compared in locked memory, so a changed password in a URL is a
// change.
bool same_sync_config(const sync::EngineConfig& a, const sync::EngineConfig& b);

// The configuration's fingerprint published in this host's member record
// (docs/ha.md "Configuration changes"): SHA-256, hex, of a domain tag and
// canonical_sync_config(sync, false). Nothing secret goes in: no credential
// value, no URL user information.
std::string sync_config_fingerprint(const sync::EngineConfig& sync);

}  // namespace rootseal::daemon
