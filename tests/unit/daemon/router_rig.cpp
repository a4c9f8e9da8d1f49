#include "router_rig.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <utility>

namespace rootseal::test {

namespace http = boost::beast::http;

namespace {

// The SQLite store reporting shared(): what a store other hosts also write
// (etcd) looks like to the keyring and the Transit API.
class SharedStore final : public kms::StateStore {
 public:
  explicit SharedStore(std::unique_ptr<kms::StateStore> inner) : inner_(std::move(inner)) {}
  kms::Result<std::vector<kms::KeyRecord>> load_all() override { return inner_->load_all(); }
  kms::Result<std::optional<kms::KeyRecord>> find(std::string_view name) override { return inner_->find(name); }
  kms::Result<std::vector<std::string>> list_names() override { return inner_->list_names(); }
  kms::Result<void> create_key(const kms::KeyRecord& key) override { return inner_->create_key(key); }
  kms::Result<void> add_version(std::string_view name, const kms::KeyVersionRecord& v) override {
    return inner_->add_version(name, v);
  }
  kms::Result<void> update_config(std::string_view name, const kms::KeyConfig& c) override {
    return inner_->update_config(name, c);
  }
  kms::Result<void> delete_key(std::string_view name) override { return inner_->delete_key(name); }
  kms::Result<void> replace_wrapped(const std::vector<Rewrapped>& entries,
                                    const std::vector<kms::KeyringKeyRecord>& keyring_keys) override {
    return inner_->replace_wrapped(entries, keyring_keys);
  }
  kms::Result<std::vector<kms::KeyringKeyRecord>> keyring_keys() override { return inner_->keyring_keys(); }
  kms::Result<void> add_keyring_key(const kms::KeyringKeyRecord& k) override { return inner_->add_keyring_key(k); }
  kms::Result<void> retire_keyring_key(std::uint32_t id) override { return inner_->retire_keyring_key(id); }
  [[nodiscard]] int schema_version() const noexcept override { return inner_->schema_version(); }
  [[nodiscard]] bool shared() const noexcept override { return true; }

 private:
  std::unique_ptr<kms::StateStore> inner_;
};

}  // namespace

kms::Result<std::unique_ptr<RouterRig>> RouterRig::create(RouterRigOptions options) {
  std::unique_ptr<RouterRig> rig(new RouterRig());
  ROOTSEAL_TRY_ASSIGN(rig->store_, kms::open_sqlite_store(options.dir / "state.db"));
  if (options.shared_store) rig->store_ = std::make_unique<SharedStore>(std::move(rig->store_));
  ROOTSEAL_TRY_ASSIGN(rig->root_, kms::SoftwareRoot::create(std::move(options.root_key)));
  rig->ring_ = std::make_unique<kms::Keyring>(*rig->store_, *rig->root_);
  ROOTSEAL_TRY(rig->ring_->unseal());
  rig->authorizer_ =
      std::make_unique<daemon::Authorizer>(std::move(options.policies), std::move(options.cert_identities));
  rig->config_.api.mount = options.mount;
  ROOTSEAL_TRY_ASSIGN(rig->audit_, daemon::AuditLog::open(options.audit_path));

  daemon::TransitDeps deps;
  deps.keyring = rig->ring_.get();
  deps.shared_store = rig->store_->shared();
  deps.tokens = &rig->tokens_;
  deps.authorizer = rig->authorizer_.get();
  deps.blocking = &rig->pool_;
  deps.seal_status = options.seal_status;
  deps.report_root_failure = std::move(options.report_root_failure);
  deps.mount = options.mount;
  rig->transit_ = std::make_unique<daemon::TransitApi>(std::move(deps));

  daemon::ApiContext ctx;
  ctx.config = &rig->config_;
  ctx.seal_status = std::move(options.seal_status);
  ctx.root_kind = "software";
  ctx.cluster_id = std::move(options.cluster_id);
  ctx.version = std::move(options.version);
  ctx.transit = rig->transit_.get();
  ctx.metrics = &rig->metrics_;
  ctx.audit = rig->audit_.get();
  rig->router_ = std::make_unique<daemon::Router>(std::move(ctx));
  return rig;
}

RouterRig::~RouterRig() { pool_.join(); }

net::Request RouterRig::request(std::string_view method, std::string_view target, std::string_view body) {
  net::Request req;
  const auto verb = http::string_to_verb(method);
  if (verb == http::verb::unknown) {
    req.method_string(method);
  } else {
    req.method(verb);
  }
  req.target(target);
  req.version(11);
  req.body() = net::SecureBuffer(body);
  req.prepare_payload();
  return req;
}

net::Response RouterRig::handle(net::Request& request, const net::PeerInfo& peer) {
  boost::asio::io_context io;
  auto future = boost::asio::co_spawn(io, router_->handle(request, peer), boost::asio::use_future);
  io.run();
  return future.get();
}

}  // namespace rootseal::test
