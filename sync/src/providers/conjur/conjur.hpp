// CyberArk Conjur (pull), as ESO's conjur provider: variables read with
// GET <url>/secrets/<account>/variable/<id> (the id percent-encoded, slashes
// too; ?version=N). Authentication: POST <url>/authn/<account>/<login>/authenticate
// with the API key as the body (authn), or POST
// <url>/authn-jwt/<service-id>/<account>[/<host-id>]/authenticate with the
// form jwt=<token> (authn-jwt); the access token Conjur returns (a JSON
// document, valid 8 minutes) is sent base64-encoded as
// `Authorization: Token token="<base64>"`, kept in locked memory and
// renewed before it expires (or once after a 401). Errors carry Conjur's
// {"error":{"code","message"}}, never a token or a value.
#pragma once

#include <atomic>
#include <memory>

#include "providers/store_health.hpp"
#include "rootseal/sync/provider.hpp"

namespace rootseal::sync::providers {

struct ConjurCounters {
  std::atomic<std::size_t> logins{0};  // authn / authn-jwt calls
  std::atomic<std::size_t> calls{0};   // secret reads (retries included)
};

class ConjurProvider : public Provider {
 public:
  [[nodiscard]] std::string_view kind() const noexcept override { return "conjur"; }
  [[nodiscard]] virtual const ConjurCounters& counters() const noexcept = 0;
};

kms::Result<std::shared_ptr<ConjurProvider>> make_conjur_provider(const boost::asio::any_io_executor& executor,
                                                                  ConjurSpec spec,
                                                                  std::shared_ptr<StoreHealth> health = nullptr);

// The `token="<base64>"` credential of an authenticate answer: a Conjur
// access token is a JSON object with "protected", "payload" and "signature"
// (at most 64 KiB); unavailable otherwise. Locked memory only.
kms::Result<kms::SecureBytes> conjur_token_credential(std::string_view answer);

}  // namespace rootseal::sync::providers
