// The HTTP server side of the fuzz targets of remote answers, in process: a
// net::Transport (rootseal/net/transport.hpp) installed on the target's
// io_context, so the real HttpClient (and the Kubernetes client and the
// providers over it) reads every answer through its own HTTP/1.1 code, Beast's
// response parser included, without a socket. Each complete request on a
// connection gets the next answer of a script the fuzz input wrote; when the
// script is used up, 404 with an empty body.
//
// An answer "<status>\n<body>" is sent with Content-Length and
// Content-Type: application/json, on a connection that stays open. An answer
// whose first line starts with "HTTP/" is sent as it is written: status line,
// header fields, and a body framed by the fuzz input (chunked,
// Content-Length, to the end of the connection, or wrong); after it the
// connection ends (the client reads end of stream where it expects more).
#pragma once

#include <boost/asio/execution_context.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/net/transport.hpp"

namespace rootseal::fuzz {

struct ScriptedAnswer {
  unsigned status = 200;
  std::string body;  // the body; for a raw answer, every byte sent
  bool raw = false;  // written in full by the input ("HTTP/..." first line)
};

// Splits the input into answers: blocks separated by a line "--", each
// "<status>\n<body>" or a raw answer. Statuses the clients retry after a
// pause (429, 5xx) become 400 (in a raw status line too) unless
// `keep_retryable`: a fuzz run must not sleep.
std::vector<ScriptedAnswer> parse_script(std::string_view in, bool keep_retryable = false);

// True when an answer of the script is raw: its body is not the payload the
// client reads, so the targets' comparisons with a second reader skip it.
bool any_raw(const std::vector<ScriptedAnswer>& answers);

// Not thread-safe: for an io_context run by one thread (the fuzz targets',
// the unit test's).
class ScriptedTransport final : public net::Transport {
 public:
  // Replaces the script (and resets the request count).
  void set_script(std::vector<ScriptedAnswer> answers);
  // Requests answered since set_script.
  [[nodiscard]] std::size_t requests() const noexcept { return served_; }

  boost::asio::awaitable<kms::Result<std::unique_ptr<net::ByteStream>>> connect(
      boost::asio::any_io_executor executor, std::string_view host, std::string_view port,
      std::chrono::steady_clock::time_point deadline) override;

  // The bytes of the next answer (404 when the script is used up); `end`
  // is set when the connection ends after them (a raw answer).
  std::string next_answer(bool& end);

 private:
  std::deque<ScriptedAnswer> script_;
  std::size_t served_ = 0;
};

// The transport of the process (made once), installed on `context`.
ScriptedTransport& install_scripted_transport(boost::asio::execution_context& context);

// The base URL the clients of a target are given: loopback, as the providers
// expect of a plain-HTTP endpoint; nothing is resolved or connected.
inline constexpr std::string_view kScriptedUrl = "http://127.0.0.1:8080";

}  // namespace rootseal::fuzz
