#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>

#include <memory>
#include <optional>
#include <string>

#include "rootseal/daemon/config.hpp"
#include "rootseal/kms/keyring.hpp"
#include "rootseal/kms/root_of_trust.hpp"
#include "rootseal/kms/state_store.hpp"
#include "rootseal/net/http_server.hpp"
#include "auth.hpp"
#include "router.hpp"
#include "transit.hpp"
#include "seal_manager.hpp"

namespace rootseal::daemon {

class Service {
 public:
  Service(Config config, std::optional<kms::SecureBytes> root_token);
  ~Service();

  // Opens the store, creates the root of trust and listens. Fatal start-up
  // problems (bad address, unreadable store) are returned, not thrown.
  kms::Result<void> start();
  // Runs the I/O threads until SIGTERM/SIGINT (or stop()); returns when drained.
  void run();
  void stop();
  [[nodiscard]] std::string bound_address() const;

 private:
  kms::Result<std::string> load_cluster_id();

  Config config_;
  std::optional<kms::SecureBytes> root_token_;
  boost::asio::io_context io_;
  boost::asio::thread_pool blocking_;
  std::unique_ptr<kms::StateStore> store_;
  std::unique_ptr<kms::RootOfTrust> root_;
  std::unique_ptr<kms::Keyring> keyring_;
  std::unique_ptr<SealManager> seal_;
  TokenStore tokens_;
  std::unique_ptr<Authorizer> authorizer_;
  std::unique_ptr<TransitApi> transit_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<net::HttpServer> server_;
  boost::asio::signal_set signals_;
  boost::asio::ip::tcp::endpoint bound_;
};

}  // namespace rootseal::daemon
