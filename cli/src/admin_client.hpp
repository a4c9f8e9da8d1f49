// rootseal::cli — the client side of rootseald's admin socket (docs/admin.md).
//
// One request line out, one answer line back, both in locked memory: a
// request may carry a PIN, an answer a new token. The answer is parsed into
// an arena of locked memory (no heap fallback).
#pragma once

#include <boost/json.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "rootseal/kms/secure_json.hpp"

namespace rootseal::cli {

// Where the socket is: --socket, else $ROOTSEAL_ADMIN_SOCKET, else admin.socket
// of --config (or of /etc/rootseal/rootseald.yaml if it can be read), else
// /run/rootseal/admin.sock.
kms::Result<std::filesystem::path> admin_socket_path(const std::string& socket_option,
                                                     const std::string& config_option);

// A parsed answer whose strings live in locked memory.
class AdminAnswer {
 public:
  explicit AdminAnswer(kms::SecureBytes line);
  AdminAnswer(const AdminAnswer&) = delete;
  AdminAnswer& operator=(const AdminAnswer&) = delete;
  // The answer's "data" when "ok" is true; otherwise the daemon's error
  // (its code name is kept in error_code(), e.g. "rate_limited").
  kms::Result<const boost::json::object*> data() const;
  [[nodiscard]] const std::string& error_code() const noexcept { return error_code_; }
  [[nodiscard]] std::int64_t retry_after_ms() const noexcept { return retry_after_ms_; }

 private:
  kms::SecureBytes line_;
  kms::SecureJsonResource arena_;
  boost::json::value value_;  // in arena_ from the start (an assigned value keeps its own storage)
  std::string parse_error_;
  std::string error_code_;
  std::int64_t retry_after_ms_ = -1;
};

// Sends `request` (one JSON object, no newline) and reads the answer line.
// unavailable if nothing listens; permission_denied if the socket's mode
// keeps us out.
kms::Result<std::unique_ptr<AdminAnswer>> admin_call(const std::filesystem::path& socket,
                                                     const kms::SecureBytes& request,
                                                     std::chrono::milliseconds timeout);

// Writes a JSON value to fd without an intermediate heap string (it may
// hold a token); pretty=false: one line.
void write_json(int fd, const boost::json::value& value);

}  // namespace rootseal::cli
