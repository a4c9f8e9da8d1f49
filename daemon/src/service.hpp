#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <optional>
#include <string>
#include <vector>

#include "rootseal/daemon/config.hpp"
#include "rootseal/daemon/state.hpp"
#include "rootseal/kms/keyring.hpp"
#include "rootseal/kms/root_of_trust.hpp"
#include "rootseal/kms/state_store.hpp"
#include "rootseal/net/http_server.hpp"
#include "rootseal/net/tls.hpp"
#include "rootseal/sync/engine.hpp"
#include "admin_server.hpp"
#include "cluster.hpp"
#include "kms_plugin.hpp"
#include "auth.hpp"
#include "router.hpp"
#include "transit.hpp"
#include "seal_manager.hpp"
#include "snapshot_scheduler.hpp"
#include "sync_runner.hpp"
#include "auto_rotate.hpp"

namespace rootseal::etcdstore {
class EtcdStore;
}  // namespace rootseal::etcdstore

namespace rootseal::daemon {

class Service {
 public:
  // config_path: the file to re-read on SIGHUP (empty in dev mode).
  Service(Config config, std::optional<kms::SecureBytes> root_token, std::filesystem::path config_path = {});
  ~Service();

  // Opens the store, creates the root of trust and listens. Fatal start-up
  // problems (bad address, unreadable store) are returned, not thrown.
  kms::Result<void> start();
  // Runs the I/O threads until SIGTERM/SIGINT (or stop()); returns when drained.
  void run();
  void stop();
  [[nodiscard]] std::string bound_address() const;

 private:
  // The steps of start(), in the order it runs them.
  using ResealRoot = std::function<kms::Result<void>(const std::optional<std::vector<std::uint32_t>>&)>;
  kms::Result<std::shared_ptr<boost::asio::ssl::context>> listen_tls(const HostPort& hp) const;
  kms::Result<std::string> open_state();  // state_dir, store, cluster id, token db; returns the cluster id
  ResealRoot make_root_of_trust();        // `rootseal tpm reseal`'s action for a TPM root, else empty
  void make_seal_manager();
  kms::Result<void> open_tokens();  // the created tokens' db (SQLite, or etcd: shared and watched)
  void import_token_file();         // storage: etcd: a tokens.db left from before joins etcd's tokens
  void reload_tokens();             // blocking pool: re-read them (retried while it fails)
  void schedule_token_reload(std::chrono::milliseconds after);
  void start_store_watch();  // storage: etcd: keeps the keyring current with the other hosts' changes
  // A key the watch could not refresh (etcd without quorum at that moment):
  // tried again after `after`, doubling up to 30 s, until it is refreshed or
  // the keyring seals (the next unseal reads everything).
  void retry_refresh(std::string name, std::chrono::milliseconds after);
  void catch_up_after_unseal();
  void add_startup_tokens();  // the root token (dev mode) and the tokens of the configuration
  kms::Result<void> make_api(const std::string& cluster_id);
  kms::Result<void> start_snapshots();                                // the snapshot scheduler, when configured
  kms::Result<void> start_kms_plugin(const std::string& cluster_id);  // when kms_plugin.enabled
  bool make_admin(ResealRoot reseal_root);                            // true: the admin socket is listening
  kms::Result<void> listen_http(const HostPort& hp, std::shared_ptr<boost::asio::ssl::context> tls);

  kms::Result<std::string> load_cluster_id();
  // SIGHUP: re-read the config; apply TLS material, policies and static tokens
  // all together, or nothing (the old ones keep serving) if anything is wrong.
  void reload();
  // A reload's outcome: logged, counted (rootseal_config_reload*), and kept
  // for the admin status ("last_reload").
  void reload_done(bool ok, const std::string& reason);
  [[nodiscard]] boost::json::object reload_status() const;
  void reopen_audit();
  void
  log_audit_recovery();  // a warning for the recovery the audit log's last open did  // SIGHUP: a rotated audit log is reopened, its chain carried over
  void arm_watchdog();
  void wait_for_signals();

  Config config_;
  std::optional<kms::SecureBytes> root_token_;
  std::filesystem::path config_path_;
  std::optional<StateDirLock> state_lock_;  // <state_dir>/rootseald.lock, from open_state to exit
  boost::asio::io_context io_;
  boost::asio::thread_pool blocking_;
  std::unique_ptr<kms::StateStore> store_;
  etcdstore::EtcdStore* etcd_store_ = nullptr;  // store_, when storage: etcd
  std::unique_ptr<ClusterMember> cluster_;      // this host's record in etcd; cluster.status
  std::unique_ptr<kms::RootOfTrust> root_;
  std::unique_ptr<kms::Keyring> keyring_;
  std::unique_ptr<SealManager> seal_;
  TokenStore tokens_;
  std::unique_ptr<Authorizer> authorizer_;
  std::unique_ptr<TransitApi> transit_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<net::HttpServer> server_;
  Metrics metrics_;
  std::unique_ptr<SyncRunner> sync_;              // the sync engine (when sync.enabled) across reloads
  std::unique_ptr<SnapshotScheduler> snapshots_;  // when snapshots: is configured and enabled
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<AutoRotator> auto_rotate_;  // keys' auto_rotate_period (after audit_: destroyed before it)
  std::shared_ptr<PinBroker> pins_;
  std::unique_ptr<AdminServer> admin_;
  std::unique_ptr<KmsPlugin> kms_plugin_;  // when kms_plugin.enabled
  mutable std::mutex reload_mu_;
  std::uint64_t reloads_ok_ = 0, reloads_failed_ = 0;  // under reload_mu_
  std::int64_t last_reload_unix_ = 0;                  // 0: none since start
  bool last_reload_ok_ = true;
  std::string last_reload_error_;
  boost::asio::signal_set signals_;
  boost::asio::steady_timer watchdog_;
  std::jthread drain_guard_;
  std::chrono::microseconds watchdog_interval_{0};
  boost::asio::ip::tcp::endpoint bound_;
};

}  // namespace rootseal::daemon
