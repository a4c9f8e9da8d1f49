#include "swtpm.hpp"

#include <random>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace rootseal::test {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kStartDeadline = std::chrono::seconds(10);
constexpr auto kStopDeadline = std::chrono::seconds(5);
constexpr int kStartAttempts = 5;

// A loopback socket bound to `port` (0: any); -1 if the port is taken.
int bind_loopback(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::uint16_t bound_port(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// A port P with P and P+1 both free right now, below the kernel's ephemeral
// range (32768 and up by default): the kernel never hands such a port to
// another process's outgoing connection, so a TPM restarted on the same port
// (Swtpm::restart) finds it free again. (Ports from bind(0) were ephemeral:
// between a stop and a start, a client connection elsewhere in a parallel
// test could take one, and swtpm failed with "Address already in use".)
std::uint16_t free_port_pair() {
  thread_local std::mt19937 pick(std::random_device{}());
  std::uniform_int_distribution<int> in_range(20000, 32000);
  for (int i = 0; i < 200; ++i) {
    const auto p = static_cast<std::uint16_t>(in_range(pick));
    const int a = bind_loopback(p);
    if (a < 0) continue;
    const int b = bind_loopback(static_cast<std::uint16_t>(p + 1));
    ::close(a);
    if (b >= 0) {
      ::close(b);
      return p;
    }
  }
  throw std::runtime_error("no free loopback port pair for swtpm");
}

bool accepts_connections(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// Waits for `pid` to exit until `deadline`; true if it did (and was reaped).
bool reap_until(pid_t pid, Clock::time_point deadline) {
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    if (Clock::now() >= deadline) return false;
    ::poll(nullptr, 0, 5);  // polling interval of a bounded wait
  }
}

}  // namespace

Swtpm::Swtpm() : dir_("rootseal-swtpm") {
  state_dir_ = dir_.path() / "state";
  log_ = dir_.path() / "swtpm.log";
  std::filesystem::create_directory(state_dir_);
  std::string last_log;
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    port_ = free_port_pair();
    try {
      start();
      return;
    } catch (const std::runtime_error& e) {
      last_log = e.what();  // e.g. the port was taken in between: try another pair
    }
  }
  throw std::runtime_error("swtpm did not start: " + last_log);
}

Swtpm::~Swtpm() { stop(); }

std::string Swtpm::tcti() const { return "swtpm:host=127.0.0.1,port=" + std::to_string(port_); }

void Swtpm::start() {
  const std::string server = "type=tcp,port=" + std::to_string(port_) + ",bindaddr=127.0.0.1";
  const std::string ctrl = "type=tcp,port=" + std::to_string(port_ + 1) + ",bindaddr=127.0.0.1";
  const std::string state = "dir=" + state_dir_.string();
  std::vector<std::string> args = {"swtpm",
                                   "socket",
                                   "--tpm2",
                                   "--server",
                                   server,
                                   "--ctrl",
                                   ctrl,
                                   "--tpmstate",
                                   state,
                                   "--flags",
                                   "not-need-init,startup-clear"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, "swtpm", &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("cannot run swtpm (is it installed?)");
  pid_ = pid;

  const auto deadline = Clock::now() + kStartDeadline;
  for (;;) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("swtpm exited at start: " + read_file(log_));
    }
    if (accepts_connections(port_)) return;
    if (Clock::now() >= deadline) {
      stop();
      throw std::runtime_error("swtpm did not accept connections within 10 s: " + read_file(log_));
    }
    ::poll(nullptr, 0, 5);  // polling interval of a bounded wait
  }
}

void Swtpm::stop() noexcept {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  if (!reap_until(pid_, Clock::now() + kStopDeadline)) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  pid_ = -1;
}

void Swtpm::restart() {
  stop();
  start();
}

std::uint16_t Swtpm::unused_port() {
  const int a = bind_loopback(0);
  if (a < 0) throw std::runtime_error("cannot bind a loopback port");
  const std::uint16_t p = bound_port(a);
  ::close(a);  // bound, never listened on: connections are refused
  return p;
}

}  // namespace rootseal::test
