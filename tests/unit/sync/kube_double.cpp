#include "kube_double.hpp"
#include "paths.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <chrono>
#include <stdexcept>

namespace rootseal::test {

namespace {
using Clock = std::chrono::steady_clock;
}

K8sDouble::K8sDouble(std::vector<std::string> extra_args) {
  std::vector<std::string> args = {"/usr/bin/python3", "-u",
                                   (rootseal::test::source_dir() / "tests/doubles/k8s_apiserver/server.py").string(),
                                   "--port", "0"};
  for (auto& a : extra_args) args.push_back(std::move(a));
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  // fork + exec rather than posix_spawn: the child asks to be killed when
  // the test process dies (a crashed test must not leave the double running,
  // holding ctest's output pipe open).
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(out[0]);
    ::close(out[1]);
    throw std::runtime_error("fork failed");
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    const int devnull = ::open("/dev/null", O_RDWR);
    ::dup2(devnull, STDIN_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(devnull, STDERR_FILENO);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  pid_ = pid;
  // Read "READY <port>\n" within 20 s.
  std::string line;
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (line.find('\n') == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{out[0], POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) break;
    char buf[256];
    const ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    line.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out[0]);  // the double prints nothing else on stdout (a closed pipe is fine: SIGPIPE only on write)
  if (!line.starts_with("READY ")) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    throw std::runtime_error("the Kubernetes double did not start: " + line);
  }
  port_ = static_cast<std::uint16_t>(std::stoi(line.substr(6)));
}

K8sDouble::~K8sDouble() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  for (;;) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
    if (Clock::now() >= deadline) break;
    ::poll(nullptr, 0, 10);  // polling interval of a bounded wait
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

boost::json::value K8sDouble::admin(const std::string& method, const std::string& path, const std::string& body) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port_);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot connect to the Kubernetes double");
  }
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const std::string req = method + " /_double/" + path +
                          " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                          "Content-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  std::size_t sent = 0;
  while (sent < req.size()) {
    const ssize_t n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  std::string resp;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    resp.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  const auto sp = resp.find(' ');
  const auto hdr_end = resp.find("\r\n\r\n");
  if (sp == std::string::npos || hdr_end == std::string::npos || resp.compare(sp + 1, 3, "200") != 0)
    throw std::runtime_error("double admin " + method + " " + path + " failed: " + resp.substr(0, 200));
  std::string payload = resp.substr(hdr_end + 4);
  if (resp.find("Transfer-Encoding: chunked") != std::string::npos) {
    std::string out;  // de-chunk
    std::size_t pos = 0;
    for (;;) {
      const auto eol = payload.find("\r\n", pos);
      if (eol == std::string::npos) break;
      const auto len = std::stoul(payload.substr(pos, eol - pos), nullptr, 16);
      if (len == 0) break;
      out += payload.substr(eol + 2, len);
      pos = eol + 2 + len + 2;
    }
    payload = out;
  }
  return boost::json::parse(payload);
}

std::int64_t K8sDouble::count(const std::string& resource, const std::string& verb) {
  const auto s = stats();
  const auto* r = s.at("by_resource").as_object().if_contains(resource);
  if (r == nullptr) return 0;
  const auto* v = r->as_object().if_contains(verb);
  return v == nullptr ? 0 : v->as_int64();
}

}  // namespace rootseal::test
