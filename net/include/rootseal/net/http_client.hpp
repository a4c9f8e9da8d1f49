// rootseal::net — the pooled HTTP/1.1 client (Boost.Beast over Asio coroutines).
//
// One HttpClient talks to one origin (scheme://host:port, from its base URL):
// a Vault server, a cloud endpoint, a Kubernetes API server. It keeps a pool
// of keep-alive connections (at most ClientOptions::max_connections; callers
// beyond that wait for a free one) and puts a deadline on every step: connect,
// TLS handshake, the whole request/response exchange, and, for streams, the
// wait for the next bytes.
//
// TLS: certificate verification against ca_file / ca_pem (or the system store
// when both are empty), SNI and host-name verification (RFC 6125, via OpenSSL's
// X509_VERIFY_PARAM_set1_host) on the URL's host or server_name, optional
// client certificate. "http://" is plain HTTP (tests, loopback).
//
// Secrets: header values and request bodies are borrowed for the call only
// (string_view: keep tokens in kms::SecureBytes and pass a view); the request
// is serialized from locked memory; response bodies land in a SecureBuffer and
// streamed lines are assembled in locked memory. Errors are values whose
// messages never contain header values or bodies.
//
// Error codes: kms::Errc::unavailable for connect/TLS/I-O failures and
// timeouts (message says which), invalid_argument for a bad URL/target or a
// response beyond the size limits. HTTP status codes are NOT errors: the
// caller inspects ClientResponse::status. (net::Response, in http_server.hpp,
// is the server's answer; the two headers can meet in one translation unit.)
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/verb.hpp>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "rootseal/net/secure_body.hpp"

namespace rootseal::net {

struct ClientTls {
  std::filesystem::path ca_file;  // PEM bundle of trusted CAs
  std::string ca_pem;             // or the bundle itself (e.g. kubeconfig certificate-authority-data, decoded)
  // Neither set: the system's default trust store.
  std::filesystem::path cert_file;    // client certificate chain (PEM), for mutual TLS
  std::filesystem::path key_file;     // its key (PEM, must be mode 0600)
  std::string cert_pem;               // or in memory (kubeconfig client-certificate-data, decoded)
  kms::SecureBytes key_pem;           //   and its key, in locked memory
  std::string server_name;            // SNI + name to verify instead of the URL's host; empty = the URL's host
  bool insecure_skip_verify = false;  // kubeconfig insecure-skip-tls-verify; never the default
  std::string min_version = "1.2";    // "1.2" or "1.3"
};

struct ClientOptions {
  std::chrono::milliseconds connect_timeout{30'000};
  std::chrono::milliseconds handshake_timeout{30'000};
  std::chrono::milliseconds request_timeout{30'000};       // write request + read whole response
  std::chrono::milliseconds stream_idle_timeout{300'000};  // stream(): max silence between bytes
  std::chrono::milliseconds pool_idle_timeout{60'000};     // pooled connections idle longer are dropped
  std::size_t max_connections = 16;                        // per client (in use + idle); callers beyond wait
  std::size_t max_response_bytes = 16u << 20;              // body limit for request()
  std::size_t max_header_bytes = 64u << 10;
  std::size_t max_line_bytes = 16u << 20;  // stream(): longest line
  std::string user_agent = "rootseal";
};

// A header for one request; both views must stay valid until the call completes.
struct Header {
  std::string_view name;
  std::string_view value;
};

struct ClientResponse {
  unsigned status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // as received (non-secret use only)
  SecureBuffer body;

  // First header with this name (case-insensitive), or nullopt.
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const;
};

// Cancels a running stream() from any thread; the stream then ends with
// Errc::unavailable "cancelled" (or cleanly if it already ended). The close is
// posted to the executor the stream() coroutine runs on: with an io_context
// run by several threads, spawn the stream on a strand.
class StreamControl {
 public:
  StreamControl();
  void cancel();
  [[nodiscard]] bool cancelled() const noexcept;

  struct State;
  std::shared_ptr<State> state_;
};

// Called with each line (without the trailing "\n" or "\r\n") of a 2xx
// streamed body; the view points into locked memory and is valid only during
// the call. Returning an error stops the stream with that error; returning
// false stops it cleanly.
using LineHandler = std::function<kms::Result<bool>(std::string_view line)>;

struct ClientStats {
  std::size_t connections_opened = 0;  // TCP connects (a reused keep-alive connection does not count)
  std::size_t requests = 0;
  std::size_t idle = 0;    // pooled idle connections now
  std::size_t in_use = 0;  // connections serving a request or stream now
};

class HttpClient {
 public:
  // base_url: "https://host[:port][/prefix]" or "http://…". The prefix (no
  // trailing slash) is prepended to every target.
  static kms::Result<std::shared_ptr<HttpClient>> create(boost::asio::any_io_executor executor,
                                                         std::string_view base_url, ClientTls tls = {},
                                                         ClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // One request/response. target: path with query, starting with '/'. A
  // non-empty body gets Content-Length (set Content-Type through headers).
  // Retries once on a fresh connection when a reused keep-alive connection
  // turns out to be closed by the server before any response byte.
  boost::asio::awaitable<kms::Result<ClientResponse>> request(boost::beast::http::verb method, std::string_view target,
                                                              std::span<const Header> headers = {},
                                                              std::string_view body = {});

  // A long-lived streamed GET-style request (Kubernetes watch, chunked or
  // not). On a 2xx answer each line is handed to on_line as it arrives and
  // the returned ClientResponse has the status and headers and an empty body; on
  // any other status the whole (bounded) body is read and returned. Ends when
  // the server ends the body (Ok), on_line returns false (Ok) or an error,
  // control.cancel() is called, or nothing arrives for stream_idle_timeout.
  // The connection is not returned to the pool.
  boost::asio::awaitable<kms::Result<ClientResponse>> stream(boost::beast::http::verb method, std::string_view target,
                                                             std::span<const Header> headers, std::string_view body,
                                                             LineHandler on_line, StreamControl control = {});

  // Closes idle pooled connections.
  void close_idle();
  [[nodiscard]] ClientStats stats() const;
  [[nodiscard]] const std::string& host() const noexcept;         // host of the base URL (for SigV4 etc.)
  [[nodiscard]] const std::string& host_header() const noexcept;  // "host" or "host:port" as sent

  struct Impl;

 private:
  explicit HttpClient(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// Percent-encodes per RFC 3986 (unreserved kept); encode_slash=false keeps '/'.
std::string url_encode(std::string_view s, bool encode_slash = true);

}  // namespace rootseal::net
