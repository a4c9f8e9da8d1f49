// net::HttpServer on its own thread, for the HTTP client tests.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace rootseal::test {

class TestHttpServer {
 public:
  enum class Mode {
    echo,  // "METHOD target token=<X-Vault-Token> body=<body>", header X-Test: yes
    slow,  // waits 50 ms, then {}; records the peak of concurrent requests
  };
  // With cert_file/key_file: TLS.
  explicit TestHttpServer(Mode mode, const std::string& cert_file = "", const std::string& key_file = "",
                          std::chrono::seconds idle_timeout = std::chrono::seconds(75));
  ~TestHttpServer();
  [[nodiscard]] std::string url(const std::string& scheme = "http", const std::string& host = "127.0.0.1") const;
  [[nodiscard]] std::size_t active_connections() const;
  [[nodiscard]] int handled() const;
  [[nodiscard]] int peak() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rootseal::test
