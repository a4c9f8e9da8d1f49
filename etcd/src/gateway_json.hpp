// The JSON of etcd's v3 gateway: request bodies and the parsing of answers
// (pure functions, no I/O: unit-tested on canned answers and fuzzed).
#pragma once

#include <boost/json/object.hpp>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/etcd/client.hpp"

namespace rootseal::etcd::detail {

std::string range_body(const RangeRequest& r);
std::string put_body(const PutRequest& r);
std::string delete_body(const DeleteRequest& r);
std::string txn_body(const TxnRequest& r);
std::string watch_body(const WatchRequest& r);

// A parsed answer object (bounded depth); invalid_argument if not a JSON object.
kms::Result<boost::json::object> parse_object(std::string_view text);

// The answer's header: "header", or "result.header" (keepalive, watch).
kms::Result<ResponseHeader> parse_header(const boost::json::object& answer);

kms::Result<RangeResponse> parse_range(const boost::json::object& answer);
kms::Result<PutResponse> parse_put(const boost::json::object& answer);
kms::Result<DeleteResponse> parse_delete(const boost::json::object& answer);
kms::Result<TxnResponse> parse_txn(const boost::json::object& answer);
kms::Result<Lease> parse_lease_grant(const boost::json::object& answer);
// The answer of /v3/maintenance/status (endpoint left empty).
kms::Result<EndpointStatus> parse_status(const boost::json::object& answer);
// not_found when the answer has no TTL (the lease expired).
kms::Result<Lease> parse_keepalive(const boost::json::object& answer);

struct WatchLine {
  ResponseHeader header;
  bool created = false;
  bool canceled = false;
  std::int64_t compact_revision = 0;
  std::string cancel_reason;
  std::vector<Event> events;
};
// One line of the watch stream; an {"error":{...}} line is its mapped error.
kms::Result<WatchLine> parse_watch_line(std::string_view line);

// etcd's error answer {"error","message","code"} (or the gateway's stream
// form {"error":{"grpc_code","message"}}) to a kms::Error; any other body
// gets a generic message with the HTTP status.
kms::Error gateway_error(unsigned http_status, std::string_view body);
kms::Error map_grpc(int code, std::string_view message);
// A watch cancelled by the server without a compaction: its cancel_reason
// ("rpc error: code = InvalidArgument desc = etcdserver: user name is empty")
// mapped like an error answer; unavailable when it names no code.
kms::Error watch_cancel_error(std::string_view reason);

// Whether an error means the member never applied the request (safe to send
// elsewhere whatever it was): no leader, not reachable at all.
bool surely_not_applied(const kms::Error& e);
// Whether an error is an expired or invalid authentication token.
bool is_invalid_token(const kms::Error& e);

// The stale-member guard: remembers the highest raft term and refuses older.
class TermGuard {
 public:
  // false: `term` is older than one already seen.
  bool accept(std::uint64_t term) noexcept;
  [[nodiscard]] std::uint64_t highest() const noexcept { return highest_.load(); }

 private:
  std::atomic<std::uint64_t> highest_{0};
};

}  // namespace rootseal::etcd::detail
