// CyberArk Conjur (pull), as ESO's conjur provider: variables read with
// GET <url>/secrets/<account>/variable/<id> (the id percent-encoded, slashes
// too; ?version=N). Authentication: POST <url>/authn/<account>/<login>/authenticate
// with the API key as the body (authn), or POST
// <url>/authn-jwt/<service-id>/<account>[/<host-id>]/authenticate with the
// form jwt=<token> (authn-jwt); the access token Conjur returns (a JSON
// document, valid 8 minutes) is sent base64-encoded as
// `Authorization: Token token="<base64>"`, kept in locked memory and
// renewed before it expires (or once after a 401). Errors carry Conjur's
// {"error":{"code","message"}}, never a token or a value. dataFrom.find (name
// or tags) lists the variables the identity can see and reads them with the
// batch retrieval.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

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

// One page of GET /resources/<account>?kind=variable: how many resources it
// held (a page shorter than the limit is the last) and the variables among
// them ("<prefix><name>" ids; a name with a comma, which the batch call
// cannot carry, is left out) with their annotations. Names and annotations
// are not secret. unavailable when the answer is not a JSON array.
struct ConjurListing {
  struct Variable {
    std::string name;
    std::map<std::string, std::string> annotations;
  };
  std::size_t count = 0;
  std::vector<Variable> variables;
};
kms::Result<ConjurListing> conjur_variable_listing(std::string_view answer, std::string_view prefix);

// The `token="<base64>"` credential of an authenticate answer: a Conjur
// access token is a JSON object with "protected", "payload" and "signature"
// (at most 64 KiB); unavailable otherwise. Locked memory only.
kms::Result<kms::SecureBytes> conjur_token_credential(std::string_view answer);

}  // namespace rootseal::sync::providers
