// Child processes for provider tests: the Python doubles (tests/doubles/*)
// and moto_server, started on free ports and killed at the end of the test.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace rootseal::test {

class ChildProcess {
 public:
  // argv[0] is looked up on PATH. stdout is readable line by line; stderr goes to ours.
  explicit ChildProcess(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  // The next stdout line, or nullopt at EOF / after timeout.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string pending_;
};

// A TCP port free on 127.0.0.1 right now.
unsigned short free_port();

// Runs a shell command; returns its exit status and stdout.
struct CommandResult {
  int status;
  std::string out;
};
CommandResult run_command(const std::string& cmd);

// A Python double (tests/doubles/<name>/server.py) on a free port: waits for "READY <port>".
struct PyDouble {
  explicit PyDouble(const std::string& name, std::vector<std::string> extra_args = {});
  std::unique_ptr<ChildProcess> process;
  unsigned short port = 0;
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};

// moto_server on a free port, answering.
struct Moto {
  Moto();
  std::unique_ptr<ChildProcess> process;
  unsigned short port = 0;
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
  // Runs `aws --endpoint-url <url> --region us-east-1 <args>` with test credentials.
  [[nodiscard]] CommandResult aws(const std::string& args) const;
};

// Polls pred every 20 ms until true or the limit passes.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds limit = std::chrono::seconds(15));

}  // namespace rootseal::test
