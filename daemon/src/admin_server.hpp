// The local admin socket of rootseald (docs/admin.md).
//
// A unix stream socket (admin.socket, default /run/rootseal/admin.sock; in
// --dev mode <state dir>/admin.sock), created atomically (bound under a
// temporary name, chmod'ed to admin.mode, renamed into place; an existing
// socket is replaced only if nobody accepts on it). Every connection's peer
// credentials (SO_PEERCRED) are checked first: only uid 0 and the daemon's
// own uid are served; anyone else gets one refusal line, and a log and audit
// line records the uid and pid.
//
// Protocol: one request line, one answer line, then the connection closes.
//   request  {"op": "<name>", ...arguments}\n        at most 64 KiB
//   answer   {"ok": true, "data": {...}}\n
//            {"ok": false, "error": {"code": "<errc>", "message": "...", "retry_after_ms": N?}}\n
// Both are read and written in locked memory (a request may carry a PIN, an
// answer a new token). Reading the request and writing the answer are each
// bounded by admin.timeout. Operations: status, token.create, token.list,
// token.lookup, token.revoke, unseal, tpm.reseal (see admin_server.cpp).
//
// Sessions are coroutines on the daemon's io_context, one strand each; the
// blocking parts (SQLite, PKCS#11 login and unseal, TPM) run on the blocking
// pool.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/json/fwd.hpp>
#include <boost/json/object.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth.hpp"
#include "pin_source.hpp"
#include "rootseal/daemon/audit.hpp"
#include "rootseal/daemon/config.hpp"
#include "seal_manager.hpp"

namespace rootseal::daemon {

// One request line, parsed and checked as far as it can be without the
// daemon's state (policy names are checked against the configuration by the
// server): the op and its arguments. Errors are invalid_argument and never
// quote the PIN. `op_out` gets the op name as soon as it is known (for the
// audit line of a refused request). Pure: tests/fuzz calls it directly.
struct AdminRequest {
  std::string op;  // status, token.create, token.list, token.lookup, token.revoke, unseal, tpm.reseal
  std::vector<std::string> policies;  // token.create: distinct, in order
  std::int64_t ttl_s = 0;
  bool renewable = false;
  std::string display_name;                        // token.create ("token" when absent)
  std::string accessor;                            // token.lookup, token.revoke
  kms::SecureBytes pin;                            // unseal: 1..128 bytes
  std::optional<std::vector<std::uint32_t>> pcrs;  // tpm.reseal: sorted
  std::string target;                              // tpm.reseal
};
kms::Result<AdminRequest> parse_admin_request(std::string_view line, std::string* op_out = nullptr);

class SnapshotScheduler;

struct AdminDeps {
  const Config* config = nullptr;
  TokenStore* tokens = nullptr;
  const Authorizer* authorizer = nullptr;
  SealManager* seal = nullptr;
  std::shared_ptr<PinBroker> pins;
  AuditLog* audit = nullptr;  // may be null (audit.enabled: false)
  boost::asio::thread_pool* blocking = nullptr;
  std::string root_kind;  // "pkcs11" or "tpm"
  // Re-seals the held TPM root key under the configured policy, with these
  // PCRs instead of tpm.pcrs if given. Blocking. Empty unless root is tpm.
  std::function<kms::Result<void>(const std::optional<std::vector<std::uint32_t>>& pcrs)> reseal_root;
  SnapshotScheduler* snapshots = nullptr;  // snapshot.now; null without an enabled snapshots: section
  // kms.rotate: rotates the KMS plugin's key and answers {key, version,
  // key_id}. Blocking. Empty unless kms_plugin.enabled.
  struct KmsRotation {
    std::string key;
    std::uint32_t version = 0;
    std::string key_id;
  };
  std::function<kms::Result<KmsRotation>()> kms_rotate;
  // keyring.rotate-key and the status's keyring_key. Never null once wired.
  kms::Keyring* keyring = nullptr;
  // cluster.status: members, etcd endpoints, this host's view. Blocking.
  std::function<boost::json::object()> cluster_status;
  // The status's last_reload: {ok, unix (0: none since start), applied,
  // refused, error (when the last one was refused)}. May be empty.
  std::function<boost::json::object()> reload_status;
};

class AdminServer {
 public:
  AdminServer(boost::asio::io_context& io, AdminDeps deps);
  ~AdminServer();

  // Creates the socket (see above). Fatal start-up problems are returned.
  kms::Result<void> listen();
  // Accepts connections; also purges expired tokens every minute.
  void start();
  // Closes the listener and removes the socket file.
  void stop();
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

 private:
  struct Peer {
    std::int64_t uid = -1;
    std::int64_t gid = -1;
    std::int64_t pid = -1;
  };
  struct Answer;
  using Socket = boost::asio::local::stream_protocol::socket;

  boost::asio::awaitable<void> accept_loop();
  boost::asio::awaitable<void> purge_loop();
  boost::asio::awaitable<void> session(Socket socket);
  static std::optional<Peer> peer_of(Socket& socket);
  Answer status();
  boost::asio::awaitable<Answer> dispatch(const Peer& peer, std::string_view line, std::string& op,
                                          std::string& accessor);
  boost::asio::awaitable<Answer> unseal(const kms::SecureBytes& pin);
  boost::asio::awaitable<Answer> reseal(std::string_view target, std::optional<std::vector<std::uint32_t>> pcrs);
  boost::asio::awaitable<Answer> snapshot_now();
  boost::asio::awaitable<Answer> kms_rotate();
  boost::asio::awaitable<Answer> rotate_keyring_key();
  boost::asio::awaitable<Answer> cluster_status();
  void audit(const Peer& peer, std::string_view op, std::string_view accessor, unsigned status, std::string_view error);

  boost::asio::io_context& io_;
  AdminDeps deps_;
  std::filesystem::path path_;
  std::unique_ptr<boost::asio::local::stream_protocol::acceptor> acceptor_;
  boost::asio::steady_timer purge_timer_;
  std::atomic<bool> running_{false};
  std::atomic<int> sessions_{0};

  // Rate limit of `rootseal unseal` (wrong PINs), and one unseal at a time.
  std::mutex unseal_mu_;
  bool unseal_busy_ = false;
  unsigned wrong_pins_ = 0;
  std::chrono::steady_clock::time_point next_unseal_{};
};

}  // namespace rootseal::daemon
