// rootseal::kmsplugin — the gRPC server of the Kubernetes KMS v2 plugin
// (v2.KeyManagementService) on a unix socket.
//
// The socket is a file-system socket (never an abstract one), created with
// its mode (and group) already set. Each connection's peer uid is read with
// SO_PEERCRED when it is accepted; a uid not allowed is closed before gRPC
// sees a byte. Accepted connections are handed to a gRPC server that has no
// listening port of its own.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "rootseal/kms/error.hpp"
#include "rootseal/kmsplugin/handler.hpp"

namespace rootseal::kmsplugin {

struct ServerOptions {
  std::filesystem::path socket;  // absolute, <= 80 characters
  unsigned mode = 0600;          // 0600 or 0660
  std::string group;             // with 0660: the socket's group (empty: the daemon's)
  std::set<uid_t> allowed_uids;  // peers served
};

// One answered call, for the audit log and metrics: identities and outcome,
// never the plaintext or ciphertext.
struct CallRecord {
  std::string_view method;  // "Status", "Encrypt", "Decrypt"
  std::string uid;          // the request's uid (the apiserver's UUID), cut to kMaxUidBytes
  long peer_uid = -1;       // SO_PEERCRED uid of the connection, -1 if unknown
  std::string key_id;
  std::uint32_t key_version = 0;
  Code code = Code::ok;
  std::string message;  // the error sent, if any
  std::chrono::nanoseconds elapsed{0};
};

struct ServerHooks {
  // Called before the answer leaves, on a gRPC thread; an error fails the
  // call with UNAVAILABLE (an answer never goes out unaudited).
  std::function<kms::Result<void>(const CallRecord&)> on_call;
  // A connection refused for its peer uid (-1: unknown).
  std::function<void(long peer_uid)> on_refused;
};

class Server {
 public:
  Server(Handler& handler, ServerOptions options, ServerHooks hooks);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Creates the socket and starts serving. Errors: invalid_argument (path,
  // group, another process serving it), internal.
  kms::Result<void> start();
  // Stops accepting, ends the calls in flight, removes the socket.
  void stop();
  [[nodiscard]] const std::filesystem::path& path() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rootseal::kmsplugin
