// The Kubernetes API server double (tests/doubles/k8s_apiserver/server.py)
// as a child process of the test: started by the constructor (returns once it
// printed "READY <port>", or throws), stopped by the destructor. admin()
// speaks to its /_double/ endpoints with a blocking HTTP/1.1 request.
#pragma once

#include <sys/types.h>

#include <boost/json/value.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace rootseal::test {

class K8sDouble {
 public:
  explicit K8sDouble(std::vector<std::string> extra_args = {});
  ~K8sDouble();
  K8sDouble(const K8sDouble&) = delete;
  K8sDouble& operator=(const K8sDouble&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // METHOD /_double/<path> with a JSON body; returns the parsed answer (throws on non-200).
  boost::json::value admin(const std::string& method, const std::string& path, const std::string& body = "{}");
  boost::json::value stats() { return admin("GET", "stats", ""); }
  // by_resource[resource][verb], 0 when absent.
  std::int64_t count(const std::string& resource, const std::string& verb);

 private:
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

}  // namespace rootseal::test
