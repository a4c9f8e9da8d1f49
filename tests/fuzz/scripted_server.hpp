// A loopback HTTP/1.1 server for the fuzz targets of remote answers: each
// request gets the next answer of a script the fuzz input wrote (status and
// body); when the script is used up, 404 with an empty body. Answers always
// carry Content-Length and keep the connection open. Plain POSIX sockets,
// a fixed pool of worker threads: nothing here is code under test.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace rootseal::fuzz {

struct ScriptedAnswer {
  unsigned status = 200;
  std::string body;
};

// Splits the input into answers: blocks separated by a line "--", each
// "<status>\n<body>". Statuses the clients retry after a pause (429, 5xx)
// become 400 unless `keep_retryable`: a fuzz run must not sleep.
std::vector<ScriptedAnswer> parse_script(std::string_view in, bool keep_retryable = false);

class ScriptedServer {
 public:
  ScriptedServer();
  ~ScriptedServer();
  ScriptedServer(const ScriptedServer&) = delete;
  ScriptedServer& operator=(const ScriptedServer&) = delete;

  // "http://127.0.0.1:<port>"
  [[nodiscard]] std::string url() const;
  // Replaces the script (and resets the request count).
  void set_script(std::vector<ScriptedAnswer> answers);
  // Requests answered since set_script.
  [[nodiscard]] std::size_t requests() const;

  struct Impl;  // shared with the connection threads

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace rootseal::fuzz
