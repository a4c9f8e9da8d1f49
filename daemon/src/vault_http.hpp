// Vault's HTTP conventions, in one place for the router and the Transit API:
// the mapping from an error to its status and body, Vault's fixed error
// answers, how a method (and ?list=) selects an operation, and HEAD.
#pragma once

#include <boost/url/params_view.hpp>

#include <optional>

#include "rootseal/kms/error.hpp"
#include "rootseal/net/http_server.hpp"

namespace rootseal::daemon {

// The one mapping from an error code to an HTTP status.
unsigned http_status(kms::Errc code) noexcept;

// {"errors":[message]} with the status of `error.code`.
net::Response error_response(const kms::Error& error, unsigned http_version);

// Vault's fixed error answers (status and words as Vault sends them).
enum class VaultError {
  not_found,              // 404 {"errors":[]}: a missing object, an empty list, a path outside the API
  unsupported_path,       // 404 "unsupported path": a path under a mount that no endpoint has
  unsupported_operation,  // 405 "unsupported operation": an endpoint without that method
  method_not_allowed,     // 405 {"errors":[]}: the sys/ endpoints' answer
  permission_denied,      // 403 "permission denied"
  sealed,                 // 503 "rootseal is sealed"
  too_large,              // 413 "request too large to process"
  key_not_found,          // 400 "encryption key not found"
};
net::Response error_response(VaultError error, unsigned http_version);

// GET or HEAD.
[[nodiscard]] bool is_read_method(const net::Request& request) noexcept;

// What a request asks for, as Vault reads its method: GET and HEAD read
// (GET ?list=<true> lists), LIST lists, PUT and POST write, DELETE deletes.
enum class Verb { read, list, write, remove };
// nullopt for any other method (405); an error (400) for a ?list= value that
// is not one of Go's booleans (strconv.ParseBool, as Vault parses it).
kms::Result<std::optional<Verb>> verb_of(const net::Request& request, boost::urls::params_view params);

// HEAD is GET without the body: the same status and headers, Content-Length
// included. The router applies this once to every answer to a HEAD.
void strip_for_head(net::Response& response);

}  // namespace rootseal::daemon
