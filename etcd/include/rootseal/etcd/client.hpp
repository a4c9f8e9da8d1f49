// rootseal::etcd — an etcd v3 client over etcd's JSON gateway (grpc-gateway:
// POST /v3/kv/range, /v3/kv/txn, /v3/lease/..., a streamed /v3/watch), on
// net::HttpClient. No gRPC: keys and values are base64 on the wire, int64
// fields decimal strings, defaults omitted (see shared/reference/ha-etcd.md).
//
// Keys and values are byte strings (std::string holding any bytes). Values
// are never put into an error message.
//
// Failover: every call goes to the preferred endpoint first and, when that
// one cannot answer, to the next ones (one round, each with
// ClientConfig::request_timeout); the endpoint that answered stays preferred.
// A request that may have reached a member and got no answer (a timeout, a
// reset connection, etcd's "request timed out") has an unknown outcome: reads,
// lease keepalives/revokes and txns are sent again to the next endpoint, a
// put, a delete or a lease grant is not (Errc::unavailable, "outcome unknown").
// A txn sent again may find its own first attempt applied and fail its
// compares: TxnResponse::attempts > 1 tells the caller to re-read.
//
// Stale-member guard: the highest raft_term seen in any answer header is
// kept; a read (range, watch line) answered from an older term (a
// partitioned member) is refused and the next endpoint asked. A write's
// answer is never refused (it was committed); its term is noted.
//
// Errors (kms::Error): unavailable for transport failures, timeouts, no
// leader, stale members; permission_denied for authentication and RBAC
// failures; compacted for a revision that was compacted away; not_found for
// an unknown or expired lease; invalid_argument for a refused request.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "rootseal/net/http_client.hpp"

namespace rootseal::etcd {

struct ResponseHeader {
  std::uint64_t cluster_id = 0;
  std::uint64_t member_id = 0;
  std::int64_t revision = 0;
  std::uint64_t raft_term = 0;
};

struct KeyValue {
  std::string key;
  std::string value;  // empty with keys_only
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t version = 0;
  std::int64_t lease = 0;
};

// The range_end that makes a range cover every key starting with `prefix`
// ("\0" — every key — for an empty prefix).
std::string prefix_end(std::string_view prefix);

struct RangeRequest {
  std::string key;
  std::string range_end;      // empty: the single key
  std::int64_t revision = 0;  // 0: the latest
  std::int64_t limit = 0;     // 0: no limit
  bool keys_only = false;
  bool serializable = false;  // false: linearizable (the default)
};
struct RangeResponse {
  ResponseHeader header;
  std::vector<KeyValue> kvs;
  std::int64_t count = 0;  // keys in the range (can exceed kvs.size() with a limit)
  bool more = false;
};

struct PutRequest {
  std::string key;
  std::string value;
  std::int64_t lease = 0;
  bool prev_kv = false;
};
struct PutResponse {
  ResponseHeader header;
  std::optional<KeyValue> prev_kv;
};

struct DeleteRequest {
  std::string key;
  std::string range_end;
  bool prev_kv = false;
};
struct DeleteResponse {
  ResponseHeader header;
  std::int64_t deleted = 0;
  std::vector<KeyValue> prev_kvs;
};

struct Compare {
  enum class Target { version, create_revision, mod_revision, value, lease };
  enum class Result { equal, greater, less, not_equal };
  std::string key;
  Target target = Target::mod_revision;
  Result result = Result::equal;
  std::int64_t number = 0;  // for every target but value
  std::string value;        // for Target::value
  // Non-empty: the comparison holds for every key in [key, range_end) (etcd
  // 3.3+; "\0" for every key from `key` on).
  std::string range_end;

  static Compare mod_revision(std::string key, std::int64_t rev, Result r = Result::equal);
  static Compare create_revision(std::string key, std::int64_t rev, Result r = Result::equal);
  static Compare version(std::string key, std::int64_t version, Result r = Result::equal);
  static Compare value_is(std::string key, std::string value, Result r = Result::equal);
};

using Op = std::variant<RangeRequest, PutRequest, DeleteRequest>;
using OpResponse = std::variant<RangeResponse, PutResponse, DeleteResponse>;

struct TxnRequest {
  std::vector<Compare> compare;
  std::vector<Op> success;
  std::vector<Op> failure;
};
struct TxnResponse {
  ResponseHeader header;
  bool succeeded = false;
  std::vector<OpResponse> responses;  // of the branch that ran, in order
  int attempts = 1;                   // > 1: sent again after an unknown outcome (see the top)
};

struct Lease {
  std::int64_t id = 0;
  std::int64_t ttl = 0;  // seconds
};

struct Event {
  enum class Type { put, del };
  Type type = Type::put;
  KeyValue kv;  // for a delete: key and mod_revision only
  std::optional<KeyValue> prev_kv;
};

struct WatchRequest {
  std::string key;
  std::string range_end;
  std::int64_t start_revision = 0;  // 0: changes after the current revision
  bool prev_kv = false;
};
// How a watch ended (errors aside).
struct WatchEnd {
  enum class Reason { cancelled, compacted };
  Reason reason = Reason::cancelled;
  std::int64_t compact_revision = 0;  // compacted: the oldest revision still there; reload in full
  std::int64_t next_revision = 0;     // the revision the watch would have resumed from
};
// Each batch of events, in revision order, never one revision twice.
using EventHandler = std::function<void(std::span<const Event> events, const ResponseHeader& header)>;

// One member's own view (POST /v3/maintenance/status).
struct EndpointStatus {
  std::string endpoint;
  ResponseHeader header;     // its member_id, raft_term, revision
  std::string version;       // etcd's, e.g. "3.4.23"
  std::uint64_t leader = 0;  // the raft leader's member id (0: it knows none)
  std::int64_t db_size = 0;  // bytes
};

struct ClientConfig {
  std::vector<std::string> endpoints;  // "http://127.0.0.1:2379", "https://etcd-1:2379", ...
  net::ClientTls tls;                  // CA, client certificate (mutual TLS) for https endpoints
  std::string username;                // empty: no authentication
  kms::SecureBytes password;
  std::chrono::milliseconds connect_timeout{500};
  std::chrono::milliseconds request_timeout{1'000};
  std::chrono::milliseconds watch_idle_timeout{300'000};  // a watch silent this long is reopened elsewhere
  std::chrono::milliseconds watch_retry_max{1'000};       // longest pause between watch reconnects
};

class KeepAlive;

class Client {
 public:
  static kms::Result<std::shared_ptr<Client>> create(boost::asio::any_io_executor executor, ClientConfig config);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  boost::asio::awaitable<kms::Result<RangeResponse>> range(RangeRequest request);
  boost::asio::awaitable<kms::Result<PutResponse>> put(PutRequest request);
  boost::asio::awaitable<kms::Result<DeleteResponse>> delete_range(DeleteRequest request);
  boost::asio::awaitable<kms::Result<TxnResponse>> txn(TxnRequest request);

  boost::asio::awaitable<kms::Result<Lease>> lease_grant(std::chrono::seconds ttl);
  boost::asio::awaitable<kms::Result<void>> lease_revoke(std::int64_t id);
  // One keepalive; not_found when the lease has expired or never existed.
  boost::asio::awaitable<kms::Result<Lease>> lease_keepalive(std::int64_t id);
  // Keeps a lease alive in the background (a loop on the client's executor,
  // one keepalive every third of the TTL, retried sooner after a failure)
  // until stop() or the handle is destroyed. on_lost is called once, on the
  // executor, if the lease turns out expired.
  std::shared_ptr<KeepAlive> keep_alive(std::int64_t id, std::function<void(const kms::Error&)> on_lost = {});

  // Streams changes until control.cancel() (WatchEnd cancelled), a
  // compaction past the revision to resume from (WatchEnd compacted), or an
  // error that retrying cannot cure (permission_denied, invalid_argument).
  // A dropped or silent stream is reopened on the next endpoint from the
  // revision after the last one delivered. With an io_context run by several
  // threads, run it on a strand (net::HttpClient::stream's rule).
  boost::asio::awaitable<kms::Result<WatchEnd>> watch(WatchRequest request, EventHandler on_events,
                                                      net::StreamControl control = {});

  // The status of the member at endpoints()[index], asked of that member
  // only (no failover, no stale-member guard: its own view is the point).
  boost::asio::awaitable<kms::Result<EndpointStatus>> status(std::size_t index);
  [[nodiscard]] std::vector<std::string> endpoints() const;

  [[nodiscard]] std::uint64_t highest_raft_term() const noexcept;
  [[nodiscard]] std::string preferred_endpoint() const;

  struct Impl;

 private:
  explicit Client(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

class KeepAlive {
 public:
  void stop();
  [[nodiscard]] bool lost() const noexcept;
  [[nodiscard]] std::size_t sent() const noexcept;  // keepalives answered so far
  ~KeepAlive();

  struct State;
  explicit KeepAlive(std::shared_ptr<State> state);

 private:
  std::shared_ptr<State> state_;
};

}  // namespace rootseal::etcd
