// The Transit-compatible API (/v1/<mount>/...) and the token self-service
// endpoints (/v1/auth/token/lookup-self, renew-self), on top of kms::Keyring.
//
// Request handling is a function from request to response: authenticate,
// parse the body into locked memory, find the endpoint in a route table
// ({verb, pattern} -> one small handler each), authorize, call the keyring
// (blocking calls on the blocking pool), answer with Vault's envelope; errors
// and their statuses come from vault_http.hpp. HEAD is the router's (it
// arrives here as a read and leaves with its body stripped there).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/url/params_view.hpp>

#include <functional>
#include <string>
#include <string_view>

#include "auth.hpp"
#include "rootseal/kms/keyring.hpp"
#include "rootseal/net/http_server.hpp"
#include "seal_manager.hpp"

namespace rootseal::daemon {

struct TransitDeps {
  kms::Keyring* keyring = nullptr;
  // Other hosts write the store too (storage: etcd): a key or version not
  // held is re-read (Keyring::refresh) before "not found" is answered.
  bool shared_store = false;
  TokenStore* tokens = nullptr;
  const Authorizer* authorizer = nullptr;
  boost::asio::thread_pool* blocking = nullptr;
  std::function<SealStatus()> seal_status;
  std::function<void()> report_root_failure;  // an operation saw the root of trust fail
  std::string mount = "transit";
};

// What a request did, for the audit log (filled while it is handled).
struct RequestNote {
  std::string request_id;  // also the envelope's request_id
  std::string accessor;    // of the token or certificate identity; never the token
  std::string operation;   // create, read, encrypt, ...
  std::string key;
  std::uint32_t key_version = 0;
  std::size_t batch_items = 0;
};

class TransitApi {
 public:
  explicit TransitApi(TransitDeps deps);

  // True for paths (after "/v1/") this API answers: "<mount>/..." and "auth/token/...".
  [[nodiscard]] bool owns(std::string_view path) const noexcept;
  boost::asio::awaitable<net::Response> handle(net::Request& request, std::string_view path,
                                               boost::urls::params_view params, const net::PeerInfo& peer,
                                               RequestNote& note);

 private:
  TransitDeps deps_;
};

}  // namespace rootseal::daemon
