#include "vault_http.hpp"

#include <boost/json.hpp>

#include "rootseal/kms/numbers.hpp"

namespace rootseal::daemon {

namespace http = boost::beast::http;
namespace json = boost::json;
using kms::Errc;

unsigned http_status(Errc code) noexcept {
  switch (code) {
    case Errc::invalid_argument:
    case Errc::malformed_ciphertext:
    case Errc::bad_base64:
    case Errc::decryption_failed:
    case Errc::version_disallowed:
    case Errc::already_exists:
    case Errc::deletion_not_allowed:
      return 400;
    case Errc::permission_denied:
      return 403;
    case Errc::not_found:
      return 404;
    case Errc::conflict:
      return 409;
    case Errc::sealed:
    case Errc::unavailable:
      return 503;
    case Errc::storage_failure:
    case Errc::compacted:
    case Errc::crypto_failure:
    case Errc::internal:
      return 500;
  }
  return 500;
}

namespace {

// {"errors":[message]}, or {"errors":[]} for an empty message.
net::Response errors_body(unsigned status, std::string_view message, unsigned version) {
  json::array list;
  if (!message.empty()) list.emplace_back(message);
  json::object body;
  body["errors"] = std::move(list);
  return net::json_response(status, json::serialize(body), version);
}

}  // namespace

net::Response error_response(const kms::Error& error, unsigned http_version) {
  return errors_body(http_status(error.code), error.message, http_version);
}

net::Response error_response(VaultError error, unsigned http_version) {
  switch (error) {
    case VaultError::not_found:
      return errors_body(404, "", http_version);
    case VaultError::unsupported_path:
      return errors_body(404, "unsupported path", http_version);
    case VaultError::unsupported_operation:
      return errors_body(405, "unsupported operation", http_version);
    case VaultError::method_not_allowed:
      return errors_body(405, "", http_version);
    case VaultError::permission_denied:
      return errors_body(403, "permission denied", http_version);
    case VaultError::sealed:
      return errors_body(503, "rootseal is sealed", http_version);
    case VaultError::too_large:
      return errors_body(413, "request too large to process", http_version);
    case VaultError::key_not_found:
      return errors_body(400, "encryption key not found", http_version);
  }
  return errors_body(500, "internal error", http_version);
}

bool is_read_method(const net::Request& request) noexcept {
  return request.method() == http::verb::get || request.method() == http::verb::head;
}

kms::Result<std::optional<Verb>> verb_of(const net::Request& request, boost::urls::params_view params) {
  using Out = std::optional<Verb>;
  if (is_read_method(request)) {
    const auto list = params.find("list");
    if (list == params.end() || (*list).value.empty()) return Out(Verb::read);
    const auto value = kms::parse_go_bool((*list).value);
    if (!value) return kms::fail(Errc::invalid_argument, "bad value for list parameter: a boolean is required");
    return Out(*value ? Verb::list : Verb::read);
  }
  switch (request.method()) {
    case http::verb::post:
    case http::verb::put:
      return Out(Verb::write);
    case http::verb::delete_:
      return Out(Verb::remove);
    default:
      break;
  }
  if (request.method_string() == "LIST") return Out(Verb::list);
  return Out();
}

void strip_for_head(net::Response& response) {
  const unsigned status = response.result_int();
  const bool bodyless = status < 200 || status == 204 || status == 304;
  if (!bodyless && response.find(http::field::content_length) == response.end()) {
    response.content_length(response.body().size());
  }
  response.body().clear();
}

}  // namespace rootseal::daemon
