// The HTTP API without sockets, shared by router_test and the router fuzz
// target: Router::handle over a real Keyring (SoftwareRoot + SQLite store in
// the caller's folder), a TokenStore, an Authorizer, Metrics, the audit log
// and the Transit API, wired as rootseald wires them.
//
// No Catch2 here (the fuzz build has none): a set-up failure is an Error for
// the caller to REQUIRE or abort on. Tokens and keys are the caller's to add
// (tokens(), ring()).
#pragma once

#include <boost/asio/thread_pool.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "auth.hpp"
#include "metrics.hpp"
#include "rootseal/daemon/audit.hpp"
#include "rootseal/daemon/config.hpp"
#include "rootseal/kms/error.hpp"
#include "rootseal/kms/keyring.hpp"
#include "rootseal/kms/root_of_trust.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "rootseal/kms/state_store.hpp"
#include "router.hpp"
#include "transit.hpp"

namespace rootseal::test {

struct RouterRigOptions {
  std::filesystem::path dir;  // the state store is dir/state.db
  kms::SecureBytes root_key;  // the SoftwareRoot's 32-byte key
  std::vector<daemon::PolicyConfig> policies;
  std::vector<daemon::ClientCertIdentity> cert_identities;
  std::filesystem::path audit_path;
  std::string mount = "transit";                    // Config::api.mount and the Transit API's mount
  std::function<daemon::SealStatus()> seal_status;  // for both the Transit API and the router
  std::function<void()> report_root_failure = [] {};
  std::string cluster_id;
  std::string version;
  // The store reports shared() (as etcd does): other rigs on the same
  // dir/state.db stand for other hosts writing the same keyring.
  bool shared_store = false;
};

class RouterRig {
 public:
  // The keyring comes back unsealed.
  static kms::Result<std::unique_ptr<RouterRig>> create(RouterRigOptions options);
  ~RouterRig();  // waits for the blocking pool's work
  RouterRig(const RouterRig&) = delete;
  RouterRig& operator=(const RouterRig&) = delete;

  // A request as the HTTP parser would hand it over: HTTP/1.1, an unknown
  // method kept as its string, the body with its Content-Length. Headers
  // (token, host ...) are the caller's to set.
  static net::Request request(std::string_view method, std::string_view target, std::string_view body);
  // Router::handle run to completion on a local io_context.
  net::Response handle(net::Request& request, const net::PeerInfo& peer);

  kms::Keyring& ring() { return *ring_; }
  daemon::TokenStore& tokens() { return tokens_; }
  [[nodiscard]] const daemon::Metrics& metrics() const { return metrics_; }

 private:
  RouterRig() = default;

  std::unique_ptr<kms::StateStore> store_;
  std::unique_ptr<kms::SoftwareRoot> root_;
  std::unique_ptr<kms::Keyring> ring_;
  daemon::TokenStore tokens_;
  std::unique_ptr<daemon::Authorizer> authorizer_;
  boost::asio::thread_pool pool_{1};
  daemon::Config config_;
  daemon::Metrics metrics_;
  std::unique_ptr<daemon::AuditLog> audit_;
  std::unique_ptr<daemon::TransitApi> transit_;
  std::unique_ptr<daemon::Router> router_;
};

}  // namespace rootseal::test
