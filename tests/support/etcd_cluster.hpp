// Throwaway etcd clusters for tests: members of Debian's /usr/bin/etcd on
// free loopback ports, each with its own data folder under a TempDir, started
// with --initial-cluster, waited for by polling /health (with a deadline),
// killed and removed by the destructor.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "temp_dir.hpp"

namespace rootseal::test {

class EtcdCluster {
 public:
  struct Options {
    int members = 1;
    std::chrono::seconds start_deadline{60};
    std::string extra_flags;  // appended to every member's command line (space separated)
    // TLS with client certificates: the members serve https on their client
    // port (the certificate needs 127.0.0.1 and both server and client auth:
    // 3.4's gateway presents it to the member's own gRPC server) and plain
    // http on a second loopback port, used only for the health polls.
    std::string tls_cert_file, tls_key_file, tls_ca_file;
  };
  // Starts the members and waits until every one reports healthy; throws
  // std::runtime_error (with the members' log tails) otherwise.
  explicit EtcdCluster(Options options);
  explicit EtcdCluster(int members) : EtcdCluster(Options{members, std::chrono::seconds{60}, {}, {}, {}, {}}) {}
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  [[nodiscard]] int size() const noexcept { return static_cast<int>(members_.size()); }
  [[nodiscard]] std::string endpoint(int i) const;  // "http://127.0.0.1:<client port>" (https with TLS)
  [[nodiscard]] std::vector<std::string> endpoints() const;
  [[nodiscard]] bool running(int i) const;

  void kill(int i);    // SIGKILL, reaped
  void stop(int i);    // SIGSTOP: the member stays, silent
  void resume(int i);  // SIGCONT
  void start(int i);   // starts a killed member again on its data folder
  // Polls /health of member i until {"health":"true"} or the deadline; false at the deadline.
  bool wait_healthy(int i, std::chrono::milliseconds deadline) const;
  // The member's /health answer ("" when it does not answer in time).
  [[nodiscard]] std::string health(int i) const;
  // Runs etcdctl (v3 API) against member i with `input` on its standard
  // input; its exit status (output discarded).
  int etcdctl(int i, const std::string& args, const std::string& input = "") const;

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    int plain_port = 0;  // the port of /health (the client port without TLS)
    pid_t pid = -1;
    std::string data_dir;
    std::string log;
  };
  void spawn(int i, bool existing);
  [[nodiscard]] std::string log_tails() const;

  Options options_;
  TempDir dir_;
  std::vector<Member> members_;
  std::string initial_cluster_;
};

// A free TCP port on 127.0.0.1 (bound to port 0 and released).
int free_loopback_port();

// One blocking HTTP/1.0 request to 127.0.0.1:port; the body of the answer, or
// "" when nothing answered within `timeout`.
std::string loopback_http(int port, const std::string& method, const std::string& target, const std::string& body,
                          std::chrono::milliseconds timeout);

}  // namespace rootseal::test
