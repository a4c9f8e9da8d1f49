#include "etcd_cluster.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace rootseal::test {

namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

// fork + exec with stdout/stderr to `log` (appended); the child's pid.
pid_t spawn_process(const std::vector<std::string>& argv, const std::string& log,
                    const std::string& input = "/dev/null") {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    const int null = ::open(input.c_str(), O_RDONLY | O_CLOEXEC);
    if (null >= 0) ::dup2(null, 0);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

}  // namespace

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot bind a loopback port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string loopback_http(int port, const std::string& method, const std::string& target, const std::string& body,
                          std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return {};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  const auto wait_for = [&](short events) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    return ::poll(&p, 1, static_cast<int>(left)) == 1 && (p.revents & (events | POLLHUP)) != 0;
  };
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS) {
    ::close(fd);
    return {};
  }
  int err = 0;
  socklen_t elen = sizeof err;
  if (!wait_for(POLLOUT) || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0) {
    ::close(fd);
    return {};
  }
  const std::string req = method + " " + target +
                          " HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: " + std::to_string(body.size()) +
                          "\r\n\r\n" + body;
  std::size_t sent = 0;
  while (sent < req.size()) {
    if (!wait_for(POLLOUT)) break;
    const auto n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  char buf[4096];
  while (sent == req.size() && wait_for(POLLIN)) {
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  const auto at = out.find("\r\n\r\n");
  return at == std::string::npos ? std::string() : out.substr(at + 4);
}

EtcdCluster::EtcdCluster(Options options) : options_(std::move(options)), dir_("rootseal-etcd") {
  if (options_.members < 1) throw std::invalid_argument("an etcd cluster needs a member");
  for (int i = 0; i < options_.members; ++i) {
    Member m;
    m.name = "m" + std::to_string(i);
    m.client_port = free_loopback_port();
    m.peer_port = free_loopback_port();
    m.plain_port = options_.tls_cert_file.empty() ? m.client_port : free_loopback_port();
    m.data_dir = (dir_ / m.name).string();
    m.log = (dir_ / (m.name + ".log")).string();
    if (!initial_cluster_.empty()) initial_cluster_ += ",";
    initial_cluster_ += m.name + "=http://127.0.0.1:" + std::to_string(m.peer_port);
    members_.push_back(std::move(m));
  }
  for (int i = 0; i < size(); ++i) spawn(i, false);
  const auto deadline = Clock::now() + options_.start_deadline;
  for (int i = 0; i < size(); ++i) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (!wait_healthy(i, left)) {
      const std::string tails = log_tails();
      for (auto& m : members_) {
        if (m.pid > 0) {
          ::kill(m.pid, SIGKILL);
          ::waitpid(m.pid, nullptr, 0);
          m.pid = -1;
        }
      }
      throw std::runtime_error("etcd member " + members_[static_cast<std::size_t>(i)].name +
                               " did not become healthy:\n" + tails);
    }
  }
}

EtcdCluster::~EtcdCluster() {
  for (auto& m : members_) {
    if (m.pid > 0) {
      ::kill(m.pid, SIGKILL);
      ::waitpid(m.pid, nullptr, 0);
    }
  }
}

void EtcdCluster::spawn(int i, bool existing) {
  auto& m = members_.at(static_cast<std::size_t>(i));
  const bool tls = !options_.tls_cert_file.empty();
  const std::string client = (tls ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(m.client_port);
  const std::string listen = tls ? client + ",http://127.0.0.1:" + std::to_string(m.plain_port) : client;
  const std::string peer = "http://127.0.0.1:" + std::to_string(m.peer_port);
  std::vector<std::string> argv = {"/usr/bin/etcd", "--name", m.name, "--data-dir", m.data_dir, "--listen-client-urls",
                                   listen, "--advertise-client-urls", client, "--listen-peer-urls", peer,
                                   "--initial-advertise-peer-urls", peer, "--initial-cluster", initial_cluster_,
                                   "--initial-cluster-state", existing ? "existing" : "new", "--initial-cluster-token",
                                   "rootseal-test",
                                   // Two shared cores: a little slack before elections.
                                   "--heartbeat-interval", "100", "--election-timeout", "1000"};
  if (tls) {
    for (const std::string& f : {"--cert-file=" + options_.tls_cert_file, "--key-file=" + options_.tls_key_file,
                                 "--trusted-ca-file=" + options_.tls_ca_file, std::string("--client-cert-auth")}) {
      argv.push_back(f);
    }
  }
  for (auto& f : split(options_.extra_flags)) argv.push_back(f);
  m.pid = spawn_process(argv, m.log);
}

std::string EtcdCluster::endpoint(int i) const {
  return (options_.tls_cert_file.empty() ? "http://127.0.0.1:" : "https://127.0.0.1:") +
         std::to_string(members_.at(static_cast<std::size_t>(i)).client_port);
}

std::vector<std::string> EtcdCluster::endpoints() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(endpoint(i));
  return out;
}

bool EtcdCluster::running(int i) const { return members_.at(static_cast<std::size_t>(i)).pid > 0; }

void EtcdCluster::kill(int i) {
  auto& m = members_.at(static_cast<std::size_t>(i));
  if (m.pid <= 0) return;
  ::kill(m.pid, SIGKILL);
  ::waitpid(m.pid, nullptr, 0);
  m.pid = -1;
}

void EtcdCluster::stop(int i) {
  const auto& m = members_.at(static_cast<std::size_t>(i));
  if (m.pid > 0) ::kill(m.pid, SIGSTOP);
}

void EtcdCluster::resume(int i) {
  const auto& m = members_.at(static_cast<std::size_t>(i));
  if (m.pid > 0) ::kill(m.pid, SIGCONT);
}

void EtcdCluster::start(int i) {
  if (running(i)) return;
  spawn(i, true);
}

std::string EtcdCluster::health(int i) const {
  return loopback_http(members_.at(static_cast<std::size_t>(i)).plain_port, "GET", "/health", "",
                       std::chrono::milliseconds(2000));
}

bool EtcdCluster::wait_healthy(int i, std::chrono::milliseconds deadline) const {
  const auto until = Clock::now() + deadline;
  while (Clock::now() < until) {
    if (health(i).find("\"health\":\"true\"") != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the poll interval
  }
  return false;
}

int EtcdCluster::etcdctl(int i, const std::string& args, const std::string& input) const {
  std::vector<std::string> argv = {"/usr/bin/etcdctl", "--endpoints=" + endpoint(i)};
  for (auto& a : split(args)) argv.push_back(a);
  const std::string log = (dir_ / "etcdctl.log").string();
  const std::string in = (dir_ / "etcdctl.in").string();
  {
    std::ofstream f(in, std::ios::trunc);
    f << input;
  }
  const pid_t pid = spawn_process(argv, log, in);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string EtcdCluster::log_tails() const {
  std::string out;
  for (const auto& m : members_) {
    std::ifstream in(m.log);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    out += "--- " + m.name + ": " + all.substr(all.size() > 2000 ? all.size() - 2000 : 0) + "\n";
  }
  return out;
}

}  // namespace rootseal::test
