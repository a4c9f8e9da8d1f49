// The HTTP API as a function from request to response (no sockets here).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/url/url_view.hpp>

#include <functional>
#include <string>

#include "rootseal/daemon/config.hpp"
#include "rootseal/kms/error.hpp"
#include "rootseal/net/http_server.hpp"
#include "metrics.hpp"
#include "rootseal/daemon/audit.hpp"
#include "seal_manager.hpp"
#include "vault_http.hpp"  // http_status, error_response (admin_server uses them too)

namespace rootseal::daemon {

class TransitApi;

struct ApiContext {
  const Config* config = nullptr;
  std::function<SealStatus()> seal_status;
  std::string root_kind;  // "pkcs11"
  std::string cluster_name = "rootseal";
  std::string cluster_id;
  bool ha_enabled = false;  // storage: etcd: every host of the cluster is active
  std::string version;
  TransitApi* transit = nullptr;  // /v1/<mount>/... and /v1/auth/token/...
  Metrics* metrics = nullptr;     // request counters and latency; gauges are registered here
  AuditLog* audit = nullptr;      // every Transit and token request, before its answer is sent
};

class Router {
 public:
  explicit Router(ApiContext context);
  // Answers one request and records it in the metrics. HEAD is answered
  // here, once, for every route: routed as GET, sent without the body.
  boost::asio::awaitable<net::Response> handle(net::Request& request, const net::PeerInfo& peer);

 private:
  boost::asio::awaitable<net::Response> route(net::Request& request, const boost::urls::url_view& url,
                                              const std::string& path, const net::PeerInfo& peer,
                                              std::chrono::steady_clock::time_point started);
  net::Response metrics(const net::Request& request) const;
  net::Response health(const net::Request& request) const;
  net::Response seal_status(const net::Request& request) const;
  net::Response leader(const net::Request& request) const;

  ApiContext ctx_;
};

}  // namespace rootseal::daemon
