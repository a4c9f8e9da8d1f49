#include "service.hpp"

#include <systemd/sd-daemon.h>
#include <sys/stat.h>

#include <csignal>
#include <cstdlib>
#include <ctime>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "log.hpp"
#include "admin_token_db.hpp"
#include "etcd_token_db.hpp"
#include "daemon_tpm_root.hpp"
#include "pin_source.hpp"
#include "snapshot_scheduler.hpp"
#include "sync_config.hpp"
#include "rootseal/daemon/state.hpp"
#include "rootseal/etcdstore/etcd_store.hpp"
#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/durable_file.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/random.hpp"

#ifndef ROOTSEAL_VERSION
#define ROOTSEAL_VERSION "0.0.0"
#endif

namespace rootseal::daemon {

namespace asio = boost::asio;
using kms::Errc;
using kms::fail;

namespace {

bool uses_tpm(const Config& c) {
  return c.root_of_trust == "tpm" ||
         std::find(c.pin.sources.begin(), c.pin.sources.end(), PinSourceKind::tpm) != c.pin.sources.end();
}

}  // namespace

Service::Service(Config config, std::optional<kms::SecureBytes> root_token, std::filesystem::path config_path)
    : config_(std::move(config)),
      root_token_(std::move(root_token)),
      config_path_(std::move(config_path)),
      io_(static_cast<int>(config_.io_threads == 0 ? std::max(1u, std::thread::hardware_concurrency())
                                                   : config_.io_threads)),
      blocking_(config_.blocking_threads),
      signals_(io_, SIGTERM, SIGINT, SIGHUP),
      watchdog_(io_) {}

Service::~Service() {
  if (sync_) sync_->stop();        // its coordinator before the lease it claims under goes
  if (cluster_) cluster_->stop();  // revokes this host's record: it leaves the member list at once
  if (etcd_store_ != nullptr) etcd_store_->stop_watch();    // its callbacks use the keyring
  if (tokens_.db() != nullptr) tokens_.db()->stop_watch();  // its callbacks post token reloads
  if (keyring_) keyring_->seal();
}

namespace {

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ",") + i;
  return out;
}

// Whole or not at all (a crash or a full disk leaves no empty file), and on
// disk before it is announced in /v1/sys/health.
kms::Result<void> write_cluster_id(const std::filesystem::path& path, const std::string& id) {
  const std::string text = id + "\n";
  return kms::write_file_durably(path, std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), 0600,
                                 /*exclusive=*/false);
}

}  // namespace

// <state_dir>/cluster-id; with storage: etcd the cluster's (<prefix>cluster/id,
// recorded by the first host), the file keeping a copy for a start while
// etcd is unreachable.
kms::Result<std::string> Service::load_cluster_id() {
  const auto path = config_.state_dir / "cluster-id";
  std::ifstream in(path);
  std::string id;
  if (!(in && std::getline(in, id) && id.size() == 36)) {
    id = kms::uuid_v4();  // an identifier, not a secret
    ROOTSEAL_TRY(write_cluster_id(path, id));
  }
  if (etcd_store_ == nullptr) return id;
  auto cluster = etcd_store_->cluster_id(id);
  if (!cluster) {
    log::warn("cluster id: etcd not reached; this host's copy is used",
              {{"cluster_id", id}, {"error", cluster.error().message}});
    return id;
  }
  if (*cluster != id) ROOTSEAL_TRY(write_cluster_id(path, *cluster));
  return *cluster;
}

// start() runs these steps in order; each one fails start-up with its reason.
kms::Result<void> Service::start() {
  // A peer that closes a socket (an HTTP client, a TPM simulator or
  // resource manager going away mid-command) must give EPIPE, not kill us.
  ::signal(SIGPIPE, SIG_IGN);

  HostPort hp;
  ROOTSEAL_TRY_ASSIGN(hp, parse_host_port(config_.listen.address));
  std::shared_ptr<boost::asio::ssl::context> tls;
  ROOTSEAL_TRY_ASSIGN(tls, listen_tls(hp));
  std::string cluster_id;
  ROOTSEAL_TRY_ASSIGN(cluster_id, open_state());
  ResealRoot reseal_root = make_root_of_trust();
  make_seal_manager();
  start_store_watch();
  cluster_ = std::make_unique<ClusterMember>(
      etcd_store_, [this] { return seal_->status(); }, effective_host_id(config_), cluster_id, ROOTSEAL_VERSION,
      config_.etcd.member_ttl);
  add_startup_tokens();
  ROOTSEAL_TRY(make_api(cluster_id));
  ROOTSEAL_TRY(start_snapshots());  // before the admin socket, which can ask for one
  ROOTSEAL_TRY(start_kms_plugin(cluster_id));
  const bool admin_listening = make_admin(std::move(reseal_root));
  ROOTSEAL_TRY(listen_http(hp, tls));

  server_->start();
  admin_->start();
  seal_->start();
  auto_rotate_ =
      std::make_unique<AutoRotator>(io_, blocking_, *keyring_, config_.auto_rotate.check_interval, audit_.get());
  auto_rotate_->register_metrics(metrics_);
  auto_rotate_->start();
  metrics_.add_gauge("rootseal_config_reloads_total", "SIGHUP reloads applied since start.", [this] {
    std::lock_guard lock(reload_mu_);
    return static_cast<double>(reloads_ok_);
  });
  metrics_.add_gauge("rootseal_config_reload_failures_total",
                     "SIGHUP reloads refused since start (the running configuration kept serving).", [this] {
                       std::lock_guard lock(reload_mu_);
                       return static_cast<double>(reloads_failed_);
                     });
  metrics_.add_gauge("rootseal_config_last_reload_successful", "0 when the last SIGHUP reload was refused, else 1.",
                     [this] {
                       std::lock_guard lock(reload_mu_);
                       return last_reload_ok_ ? 1.0 : 0.0;
                     });
  // Before the member record is first written: it says whether this host
  // takes sync buckets, and its configuration's fingerprint.
  sync_ = std::make_unique<SyncRunner>(io_, blocking_, metrics_, etcd_store_, *cluster_, config_.etcd.member_ttl);
  ROOTSEAL_TRY(sync_->start(config_.sync));
  cluster_->start();
  log::info("listening", {{"address", bound_address()},
                          {"tls", tls != nullptr},
                          {"mtls", !config_.listen.tls.client_ca_file.empty()},
                          {"dev", config_.dev},
                          {"root", root_->kind()}});
  if (admin_listening) {
    log::info("admin socket",
              {{"path", admin_->path().string()}, {"mode", config_.admin.mode == 0660 ? "0660" : "0600"}});
  }
  arm_watchdog();
  sd_notify(0, "READY=1\nSTATUS=listening, sealed");
  return {};
}

kms::Result<void> Service::start_snapshots() {
  if (!config_.snapshots || !config_.snapshots->enabled) return {};
  snapshots_ = std::make_unique<SnapshotScheduler>(io_, blocking_, *root_, config_.state_dir, config_.snapshots);
  if (etcd_store_ != nullptr) {
    snapshots_->use_etcd(etcd_store_, effective_host_id(config_));
  }
  ROOTSEAL_TRY(snapshots_->open());
  snapshots_->register_metrics(metrics_);
  snapshots_->start();
  std::string names;
  for (const auto& d : config_.snapshots->destinations) names += (names.empty() ? "" : ",") + d.name;
  log::info("snapshots scheduled", {{"interval_ms", config_.snapshots->interval.count()},
                                    {"retain_count", config_.snapshots->retain_count},
                                    {"destinations", names}});
  return {};
}

kms::Result<void> Service::start_kms_plugin(const std::string& cluster_id) {
  const auto& c = config_.kms_plugin;
  if (!c.enabled) return {};
  kms_plugin_ = std::make_unique<KmsPlugin>(c, *keyring_, *root_, cluster_id, audit_.get(), metrics_);
  // Status answers from the self-test the seal probe runs, never from a call to the root.
  seal_->set_after_check([p = kms_plugin_.get()] { p->self_test(); });
  ROOTSEAL_TRY(kms_plugin_->start());
  std::string uids;
  for (const auto u : c.allowed_uids) uids += (uids.empty() ? "" : ",") + std::to_string(u);
  log::info("kms plugin socket", {{"path", c.socket.string()},
                                  {"mode", c.mode == 0660 ? "0660" : "0600"},
                                  {"group", c.group},
                                  {"allowed_uids", uids},
                                  {"key", c.key}});
  return {};
}

kms::Result<std::shared_ptr<boost::asio::ssl::context>> Service::listen_tls(const HostPort& hp) const {
  const bool loopback = is_loopback_host(hp.host);
  if (config_.dev && !loopback) {
    return fail(Errc::invalid_argument, "dev mode listens on loopback only; refused " + hp.host);
  }
  std::shared_ptr<boost::asio::ssl::context> tls;
  if (config_.listen.tls.enabled()) {
    net::TlsConfig t{config_.listen.tls.cert_file, config_.listen.tls.key_file, config_.listen.tls.client_ca_file,
                     config_.listen.tls.require_client_cert, config_.listen.tls.min_version};
    ROOTSEAL_TRY_ASSIGN(tls, net::make_server_tls(t));
  } else if (!config_.dev && (!loopback || !config_.listen.allow_plaintext)) {
    return fail(Errc::invalid_argument,
                "plain HTTP is refused: configure listen.tls, or listen on loopback with listen.allow_plaintext: true");
  }
  return tls;
}

kms::Result<std::string> Service::open_state() {
  std::error_code ec;
  std::filesystem::create_directories(config_.state_dir, ec);
  if (ec) return fail(Errc::storage_failure, "cannot create state_dir " + config_.state_dir.string());
  ::chmod(config_.state_dir.c_str(), 0700);
  // One rootseald per state folder, and none while `rootseal storage migrate` rewrites it.
  auto lock = StateDirLock::acquire(config_.state_dir, "rootseald");
  if (!lock) return std::unexpected(lock.error());
  state_lock_.emplace(std::move(*lock));

  if (config_.storage == "etcd") {
    auto store = open_etcd_store(config_.etcd);
    if (!store) return std::unexpected(store.error());
    etcd_store_ = store->get();
    store_ = std::move(*store);
    log::info("state store", {{"storage", "etcd"},
                              {"endpoints", joined(config_.etcd.endpoints)},
                              {"prefix", config_.etcd.prefix},
                              {"username", config_.etcd.username}});
  } else {
    auto store = kms::open_sqlite_store(config_.state_dir / "rootseal.db");
    if (!store) return std::unexpected(store.error());
    store_ = std::move(*store);
  }

  std::string cluster_id;
  ROOTSEAL_TRY_ASSIGN(cluster_id, load_cluster_id());

  if (uses_tpm(config_)) {
    // tpm2-tss logs its own errors on stderr (unstructured; at trace level
    // with command buffers): silent unless the operator set TSS2_LOG. Set
    // before the first TCTI is loaded (tpm2-tss reads it once); the blocking
    // pool's threads are idle until the seal loop starts.
    ::setenv("TSS2_LOG", "all+none", /*overwrite=*/0);
  }
  ROOTSEAL_TRY(open_tokens());
  return cluster_id;
}

// Created tokens (rootseal token create) live in their own SQLite file, or
// with storage: etcd in etcd, shared by every host and watched. A host that
// starts while etcd is down serves the tokens of its configuration and loads
// the created ones when etcd answers.
kms::Result<void> Service::open_tokens() {
  std::unique_ptr<TokenDb> db;
  if (config_.storage == "etcd") {
    import_token_file();
    etcd::ClientConfig client;
    ROOTSEAL_TRY_ASSIGN(client, etcd_client_config(config_.etcd));
    auto etcd_db = EtcdTokenDb::open(std::move(client), config_.etcd.prefix);
    if (!etcd_db) return fail(etcd_db.error().code, "tokens on etcd: " + etcd_db.error().message);
    db = std::move(*etcd_db);
  } else {
    ROOTSEAL_TRY_ASSIGN(db, TokenDb::open(config_.state_dir / "tokens.db"));
  }
  const bool shared = db->shared();
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto attached =
      tokens_.attach(std::move(db), now, [this](std::function<void()> job) { asio::post(blocking_, std::move(job)); });
  if (!attached) {
    if (!shared || attached.error().code != Errc::unavailable) return attached;
    log::warn("created tokens not loaded yet: etcd does not answer; retried until it does",
              {{"reason", attached.error().message}});
    schedule_token_reload(std::chrono::seconds(2));
  }
  if (shared) {
    // Another host created, renewed or revoked a token: re-read them all
    // (off the store's thread, which the reload itself needs).
    tokens_.db()->start_watch([this] { asio::post(blocking_, [this] { reload_tokens(); }); });
  }
  return {};
}

// A tokens.db from before (a host that ran on SQLite, or a release that kept
// tokens per host with storage: etcd): its tokens join the cluster's, and the
// file is renamed so that it is not imported again. Tried again with the
// next reload if etcd does not answer now.
void Service::import_token_file() {
  const auto file = config_.state_dir / "tokens.db";
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return;
  auto copied = copy_created_tokens(file, config_.etcd, true);
  if (!copied) {
    log::warn("tokens.db not imported into etcd yet; tried again",
              {{"file", file.string()}, {"reason", copied.error().message}});
    return;
  }
  const auto kept = config_.state_dir / "tokens.db.imported";
  std::filesystem::rename(file, kept, ec);
  log::info(
      "tokens.db imported into etcd: its tokens are the cluster's",
      {{"copied", copied->copied}, {"already_there", copied->present}, {"file_now", kept.string()}, {"renamed", !ec}});
}

void Service::reload_tokens() {
  if (config_.storage == "etcd") import_token_file();  // one left because etcd did not answer at start
  auto r = tokens_.reload();
  if (r) return;
  log::warn("created tokens not reloaded; retried", {{"reason", r.error().message}});
  schedule_token_reload(std::chrono::seconds(2));
}

void Service::schedule_token_reload(std::chrono::milliseconds after) {
  auto timer = std::make_shared<asio::steady_timer>(io_, after);
  timer->async_wait([this, timer](const boost::system::error_code& ec) {
    if (!ec) asio::post(blocking_, [this] { reload_tokens(); });
  });
}

Service::ResealRoot Service::make_root_of_trust() {
  if (config_.root_of_trust == "tpm") {
    auto tpm_root = std::make_unique<DaemonTpmRoot>(config_.tpm, *store_);
    ResealRoot reseal_root = [r = tpm_root.get()](const std::optional<std::vector<std::uint32_t>>& pcrs) {
      return r->reseal(pcrs);
    };
    root_ = std::move(tpm_root);
    log::info("root of trust", {{"root", "tpm"},
                                {"tcti", config_.tpm.tcti},
                                {"sealed_file", config_.tpm.sealed_file.string()},
                                {"pcrs", pcr_list(config_.tpm.pcrs)},
                                {"initialize", config_.tpm.initialize},
                                {"verify_on_probe", config_.tpm.verify_on_probe}});
    return reseal_root;
  }
  hsm::Pkcs11Config p11;
  p11.module = config_.pkcs11.module;
  p11.token_label = config_.pkcs11.token_label;
  p11.key_label = config_.pkcs11.key_label;
  p11.generate_if_missing = config_.pkcs11.generate_key;
  p11.max_sessions = config_.pkcs11.max_sessions;
  p11.unwrap_parallelism = config_.pkcs11.unwrap_parallelism;
  p11.mechanism = hsm::parse_root_mechanism(config_.pkcs11.mechanism).value_or(hsm::RootMechanism::automatic);
  // The broker keeps the PIN of the last good login only when it can be
  // resealed to the TPM (`rootseal tpm reseal`).
  pins_ = std::make_shared<PinBroker>(std::find(config_.pin.sources.begin(), config_.pin.sources.end(),
                                                PinSourceKind::tpm) != config_.pin.sources.end());
  log::info("root of trust", {{"root", "pkcs11"},
                              {"module", config_.pkcs11.module.string()},
                              {"token_label", config_.pkcs11.token_label},
                              {"key_label", config_.pkcs11.key_label},
                              {"mechanism", config_.pkcs11.mechanism}});  // the one in use: "unsealed"
  root_ = hsm::Pkcs11Root::create(p11, make_pin_source(config_.pin, config_.tpm, pins_));
  return {};
}

void Service::make_seal_manager() {
  keyring_ = std::make_unique<kms::Keyring>(*store_, *root_);
  // Crash tests (tests/integration/test_keyring_key.py): SIGKILL right after
  // the named durable step of a keyring-key change. Read once, here, before
  // any thread of ours reads the environment.
  if (const char* at = std::getenv("ROOTSEAL_TEST_CRASH_AT");
      at != nullptr && *at != '\0') {  // NOLINT(concurrency-mt-unsafe)
    keyring_->set_step_observer([point = std::string(at)](std::string_view step) {
      if (step == point) (void)::raise(SIGKILL);
    });
  }
  seal_ = std::make_unique<SealManager>(io_, blocking_, *root_, *keyring_, config_.seal.probe_interval,
                                        [this](const SealStatus& s) {
                                          sd_notifyf(0, "STATUS=%s", s.sealed ? "sealed" : "unsealed");
                                          if (!s.sealed) catch_up_after_unseal();
                                        });
  if (pins_) seal_->set_probe_hooks([p = pins_] { p->confirm(); }, [p = pins_] { p->forget(); });
}

// Every change another host makes reaches this host's keyring through the
// watch: a changed key is re-read (new versions unwrapped), a deleted one
// dropped, and after a compaction every key is reloaded. While sealed, the
// changes are skipped: the next unseal loads everything.
void Service::start_store_watch() {
  if (etcd_store_ == nullptr) return;
  etcd_store_->start_watch(
      {[this](const std::string& name) {
         auto r = keyring_->refresh(name);
         if (!r && r.error().code != Errc::sealed) {
           log::warn("etcd watch: key not refreshed; tried again", {{"key", name}, {"error", r.error().message}});
           retry_refresh(name, std::chrono::milliseconds(500));
         }
       },
       [this] {
         auto r = keyring_->reload();
         if (r) {
           log::info("etcd watch: changes were compacted away; every key reloaded");
         } else if (r.error().code != Errc::sealed) {
           log::warn("etcd watch: changes were compacted away; reload failed", {{"error", r.error().message}});
         }
       }});
}

// The watch skips changes while the keyring is sealed (the unseal reads
// everything), but a change between the unseal's read and its end would be
// skipped and never read: with etcd, every key is re-read once after each
// unseal (versions already held are kept, nothing is unwrapped again).
void Service::catch_up_after_unseal() {
  if (etcd_store_ == nullptr) return;
  asio::post(blocking_, [this] {
    auto r = keyring_->reload();
    if (!r && r.error().code != Errc::sealed) {
      log::warn("etcd: keys not re-read after the unseal; the watch keeps them current from now on",
                {{"error", r.error().message}});
    }
  });
}

void Service::retry_refresh(std::string name, std::chrono::milliseconds after) {
  auto timer = std::make_shared<asio::steady_timer>(io_, after);
  timer->async_wait([this, timer, name = std::move(name), after](const boost::system::error_code& ec) mutable {
    if (ec) return;  // shutting down
    asio::post(blocking_, [this, name = std::move(name), after]() mutable {
      auto r = keyring_->refresh(name);
      if (r || r.error().code == Errc::sealed) {
        if (r) log::info("etcd watch: key refreshed after a retry", {{"key", name}});
        return;
      }
      retry_refresh(std::move(name), std::min<std::chrono::milliseconds>(after * 2, std::chrono::seconds(30)));
    });
  });
}

void Service::add_startup_tokens() {
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  if (root_token_) {
    TokenInfo root;
    root.display_name = "root";
    root.root = true;
    root.creation_time = now;
    tokens_.add(*root_token_, std::move(root));
  }
  for (const auto& t : config_.tokens) {
    TokenInfo info;
    info.display_name = t.name;
    info.policies = t.policies;
    info.creation_time = now;
    info.ttl_s = t.ttl_s;
    info.expire_time = t.ttl_s > 0 ? now + t.ttl_s : 0;
    info.renewable = t.renewable;
    info.root = std::find(t.policies.begin(), t.policies.end(), "root") != t.policies.end();
    info.from_config = true;
    tokens_.add_hashed(t.sha256, std::move(info));
  }
}

kms::Result<void> Service::make_api(const std::string& cluster_id) {
  authorizer_ = std::make_unique<Authorizer>(config_.policies, config_.client_certs);
  TransitDeps deps;
  deps.keyring = keyring_.get();
  deps.shared_store = store_->shared();
  deps.tokens = &tokens_;
  deps.authorizer = authorizer_.get();
  deps.blocking = &blocking_;
  deps.seal_status = [this] { return seal_->status(); };
  deps.report_root_failure = [this] { seal_->report_failure(); };
  deps.mount = config_.api.mount;
  transit_ = std::make_unique<TransitApi>(std::move(deps));

  ApiContext ctx;
  ctx.config = &config_;
  ctx.seal_status = [this] { return seal_->status(); };
  ctx.root_kind = std::string(root_->kind());
  ctx.cluster_id = cluster_id;
  ctx.ha_enabled = etcd_store_ != nullptr;
  ctx.version = ROOTSEAL_VERSION;
  ctx.transit = transit_.get();
  ctx.metrics = &metrics_;
  if (config_.audit.enabled) {
    const auto path = config_.audit.file.empty() ? config_.state_dir / "audit.log" : config_.audit.file;
    AuditOptions options;
    options.sync = config_.audit.fsync;
    options.host = effective_host_id(config_);
    auto audit = AuditLog::open(path, options);
    if (!audit) return std::unexpected(audit.error());
    audit_ = std::move(*audit);
    log_audit_recovery();
    audit_->on_health_change([](bool healthy, const std::string& reason) {
      if (healthy) {
        log::info("audit log writable again; requests are served");
      } else {
        log::error("audit log cannot be written; requests fail with 503 until it can (retried by itself)",
                   {{"reason", reason}});
      }
    });
    ctx.audit = audit_.get();
  }
  metrics_.add_gauge("rootseal_keys", "Named keys in the keyring (0 while sealed).",
                     [this] { return static_cast<double>(keyring_->key_count()); });
  metrics_.add_gauge("rootseal_key_versions", "Key versions held unwrapped (0 while sealed).",
                     [this] { return static_cast<double>(keyring_->version_count()); });
  metrics_.add_gauge("rootseal_audit_lines_written", "Audit lines written since start.",
                     [this] { return audit_ ? static_cast<double>(audit_->lines_written()) : 0.0; });
  metrics_.add_gauge("rootseal_audit_write_failures_total",
                     "Audit lines that could not be written since start (each one a request answered 503).",
                     [this] { return audit_ ? static_cast<double>(audit_->write_failures()) : 0.0; });
  metrics_.add_gauge("rootseal_audit_healthy", "1 while the audit log can be written (or is disabled), else 0.",
                     [this] { return !audit_ || audit_->healthy() ? 1.0 : 0.0; });
  metrics_.add_gauge("rootseal_http_connections_rejected_per_client_total",
                     "Connections closed at accept: their client address had api.max_connections_per_client open.",
                     [this] { return server_ ? static_cast<double>(server_->rejected_per_client()) : 0.0; });
  router_ = std::make_unique<Router>(std::move(ctx));
  return {};
}

bool Service::make_admin(ResealRoot reseal_root) {
  AdminDeps admin;
  admin.config = &config_;
  admin.tokens = &tokens_;
  admin.authorizer = authorizer_.get();
  admin.seal = seal_.get();
  admin.pins = pins_;
  admin.audit = audit_.get();
  admin.blocking = &blocking_;
  admin.root_kind = std::string(root_->kind());
  admin.reseal_root = std::move(reseal_root);
  admin.snapshots = snapshots_.get();
  admin.cluster_status = [c = cluster_.get()] { return c->status(); };
  admin.reload_status = [this] { return reload_status(); };
  admin.keyring = keyring_.get();
  if (kms_plugin_) {
    admin.kms_rotate = [p = kms_plugin_.get()]() -> kms::Result<AdminDeps::KmsRotation> {
      auto r = p->rotate();
      if (!r) return std::unexpected(r.error());
      return AdminDeps::KmsRotation{r->key, r->version, r->key_id};
    };
  }
  admin_ = std::make_unique<AdminServer>(io_, std::move(admin));
  // Without its admin socket the daemon still serves its HTTP API (the
  // unseal endpoint of a whole cluster): the failure is logged loudly and
  // start-up goes on; `rootseal` then cannot reach this daemon.
  if (!config_.admin.enabled) return false;
  if (auto listening = admin_->listen(); !listening) {
    log::error("admin socket unavailable; rootseal status/unseal/token cannot reach this daemon",
               {{"reason", listening.error().message}});
    return false;
  }
  return true;
}

kms::Result<void> Service::listen_http(const HostPort& hp, std::shared_ptr<boost::asio::ssl::context> tls) {
  net::ServerLimits limits;
  limits.max_body_bytes = config_.api.max_body_bytes;
  limits.max_header_bytes = config_.api.max_header_bytes;
  limits.body_timeout = config_.api.request_timeout;
  limits.idle_timeout = config_.api.idle_timeout;
  limits.header_timeout = config_.api.header_timeout;
  limits.max_connections = config_.api.max_connections;
  limits.max_connections_per_client = config_.api.max_connections_per_client;
  server_ = std::make_unique<net::HttpServer>(
      io_, limits, [this](net::Request& req, const net::PeerInfo& peer) { return router_->handle(req, peer); });
  server_->set_tls(std::move(tls));

  boost::system::error_code bec;
  asio::ip::address address =
      hp.host == "localhost" ? asio::ip::make_address("127.0.0.1", bec) : asio::ip::make_address(hp.host, bec);
  if (bec) return fail(Errc::invalid_argument, "listen.address: not an IP address: " + hp.host);
  if (auto lec = server_->listen({address, hp.port}, bound_)) {
    return fail(Errc::invalid_argument, "cannot listen on " + config_.listen.address + ": " + lec.message());
  }
  return {};
}

void Service::arm_watchdog() {
  if (watchdog_interval_.count() == 0) {
    std::uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return;
    watchdog_interval_ = std::chrono::microseconds(usec / 2);
  }
  // Pings come from the I/O loop itself: a loop that stops turning stops them
  // and systemd restarts the service.
  sd_notify(0, "WATCHDOG=1");
  watchdog_.expires_after(watchdog_interval_);
  watchdog_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) arm_watchdog();
  });
}

void Service::log_audit_recovery() {
  const auto r = audit_->recovery();
  if (!r) return;
  log::warn(
      "audit log: a damaged end (a crash or a full disk during a write) was set aside and the chain "
      "continues with a recovery line (docs/operations.md)",
      {{"damaged_file", r->damaged_file.string()},
       {"damaged_bytes", r->damaged_bytes},
       {"damaged_sha256", r->damaged_sha256},
       {"last_intact_sha256", r->last_intact_sha256}});
}

void Service::reopen_audit() {
  if (!audit_) return;
  const auto before = audit_->recovery();
  auto r = audit_->reopen();
  if (r && *r && audit_->recovery() && (!before || before->damaged_file != audit_->recovery()->damaged_file)) {
    log_audit_recovery();
  }
  if (!r) {
    // The old file stays in use: no line is lost, the rotation did not happen.
    log::error("audit log not reopened; still writing to the file open before", {{"reason", r.error().message}});
  } else if (*r) {
    log::info("audit log reopened (rotated); its first line continues the previous file's chain");
  } else {
    (void)audit_->flush();
  }
}

void Service::reload() {
  // systemd >= 253 (Type=notify-reload) wants the reload's start time with
  // RELOADING=1 to tell this reload from an earlier one; older ones ignore it.
  timespec now_mono{};
  ::clock_gettime(CLOCK_MONOTONIC, &now_mono);
  sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
             static_cast<unsigned long long>(now_mono.tv_sec) * 1000000ULL +
                 static_cast<unsigned long long>(now_mono.tv_nsec) / 1000ULL);
  auto finish = [this](bool ok) {
    sd_notifyf(0, "READY=1\nSTATUS=%s%s", seal_->status().sealed ? "sealed" : "unsealed",
               ok ? "" : " (last reload rejected)");
  };
  reopen_audit();  // first, whatever becomes of the configuration: logrotate's postrotate sends SIGHUP
  if (config_path_.empty()) {
    log::info("reload: dev mode has no configuration file; nothing to reload");
    finish(true);
    return;
  }
  auto reject = [&](const std::string& reason) {
    log::error("reload rejected, the running configuration keeps serving", {{"reason", reason}});
    reload_done(false, reason);
    finish(false);
  };
  auto next = load_config(config_path_);
  if (!next) return reject(next.error().message);
  std::shared_ptr<boost::asio::ssl::context> tls;
  if (next->listen.tls.enabled()) {
    net::TlsConfig t{next->listen.tls.cert_file, next->listen.tls.key_file, next->listen.tls.client_ca_file,
                     next->listen.tls.require_client_cert, next->listen.tls.min_version};
    auto ctx = net::make_server_tls(t);
    if (!ctx) return reject(ctx.error().message);
    tls = *ctx;
  } else if (config_.listen.tls.enabled()) {
    return reject("listen.tls cannot be removed by a reload; restart to serve plain HTTP");
  }
  // Last of the checks (nothing after it can refuse): a changed `sync:`
  // section gets its engine built now; refused, the running engine goes on.
  std::optional<SyncRunner::Next> sync_next;
  if (auto n = sync_->prepare(next->sync); !n) {
    return reject(n.error().message);
  } else {
    sync_next = std::move(*n);
  }
  // Everything checked: apply all at once.
  if (tls) server_->set_tls(tls);
  if (sync_next) sync_->apply(std::move(*sync_next));
  config_.sync = next->sync;
  authorizer_->replace(next->policies, next->client_certs);
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  tokens_.replace_static(next->tokens, now);
  std::string restart;
  if (next->listen.address != config_.listen.address) restart += "listen.address ";
  if (next->state_dir != config_.state_dir) restart += "state_dir ";
  if (next->root_of_trust != config_.root_of_trust) restart += "root_of_trust ";
  if (next->api.mount != config_.api.mount) restart += "api.mount ";
  if (next->auto_rotate.check_interval != config_.auto_rotate.check_interval) restart += "auto_rotate ";
  const auto& ka = next->kms_plugin;
  const auto& kb = config_.kms_plugin;
  if (ka.enabled != kb.enabled || ka.socket != kb.socket || ka.mode != kb.mode || ka.group != kb.group ||
      ka.allowed_uids != kb.allowed_uids || ka.key != kb.key) {
    restart += "kms_plugin ";
  }
  if (!restart.empty()) log::warn("reload: these changes take effect at the next restart", {{"options", restart}});
  config_.listen.tls = next->listen.tls;
  config_.policies = next->policies;
  config_.tokens = next->tokens;
  config_.client_certs = next->client_certs;
  log::info("reloaded", {{"tls", tls != nullptr},
                         {"policies", next->policies.size()},
                         {"tokens", next->tokens.size()},
                         {"sync", sync_next ? "replaced" : "unchanged"}});
  reload_done(true, "");
  finish(true);
}

void Service::reload_done(bool ok, const std::string& reason) {
  std::lock_guard lock(reload_mu_);
  ++(ok ? reloads_ok_ : reloads_failed_);
  last_reload_unix_ =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  last_reload_ok_ = ok;
  last_reload_error_ = reason;
}

boost::json::object Service::reload_status() const {
  std::lock_guard lock(reload_mu_);
  boost::json::object o{
      {"ok", last_reload_ok_}, {"unix", last_reload_unix_}, {"applied", reloads_ok_}, {"refused", reloads_failed_}};
  if (!last_reload_ok_) o["error"] = last_reload_error_;
  return o;
}

std::string Service::bound_address() const {
  const auto a = bound_.address();
  return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(bound_.port());
}

void Service::stop() {
  sd_notify(0, "STOPPING=1");
  log::info("stopping");
  if (server_) server_->stop();
  if (etcd_store_ != nullptr) etcd_store_->stop_watch();
  if (tokens_.db() != nullptr) tokens_.db()->stop_watch();
  if (admin_) admin_->stop();
  if (kms_plugin_) kms_plugin_->stop();
  if (auto_rotate_) auto_rotate_->stop();
  if (seal_) seal_->stop();
  // Stops acting on every bucket and releases the idle ones (the other hosts
  // take them over at their next round); one with a reconcile in flight goes
  // with the lease, revoked once the I/O context has finished its work.
  // No waiting here: the work in flight runs on this I/O context.
  if (sync_) sync_->stop();
  if (snapshots_) snapshots_->stop();
  signals_.cancel();
  watchdog_.cancel();
  // Requests in flight finish (each bounded by its own deadlines). A guard
  // thread bounds the whole drain: it waits off the I/O context (a timer on it
  // would itself keep run() from returning) and stops the context only if the
  // drain outlives the deadline.
  const auto deadline = std::chrono::steady_clock::now() + config_.api.request_timeout + std::chrono::seconds(5);
  drain_guard_ = std::jthread([this, deadline](std::stop_token stop) {
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lock(m);
    if (!cv.wait_until(lock, stop, deadline, [] { return false; })) {
      if (stop.stop_requested()) return;
      log::warn("drain deadline passed, stopping with requests still open");
      io_.stop();
    }
  });
}

void Service::wait_for_signals() {
  signals_.async_wait([this](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    if (signo == SIGHUP) {
      log::info("signal received", {{"signal", "SIGHUP"}});
      reload();
      wait_for_signals();
      return;
    }
    log::info("signal received", {{"signal", signo == SIGTERM ? "SIGTERM" : "SIGINT"}});
    stop();
  });
}

void Service::run() {
  wait_for_signals();
  std::vector<std::thread> threads;
  const std::size_t n =
      config_.io_threads == 0 ? std::max(1u, std::thread::hardware_concurrency()) : config_.io_threads;
  for (std::size_t i = 1; i < n; ++i) threads.emplace_back([this] { io_.run(); });
  io_.run();
  for (auto& t : threads) t.join();
  if (drain_guard_.joinable()) {
    drain_guard_.request_stop();
    drain_guard_.join();
  }
  blocking_.join();
  if (keyring_) keyring_->seal();
  if (audit_) (void)audit_->flush();
  log::info("stopped");
}

}  // namespace rootseal::daemon
