// The gateway's JSON on answers captured from etcd 3.4.23 (Debian 12).
#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include "gateway_json.hpp"

using namespace rootseal;
using namespace rootseal::etcd;
using kms::Errc;
namespace json = boost::json;

namespace {

json::object obj(std::string_view text) {
  auto o = detail::parse_object(text);
  REQUIRE(o);
  return *o;
}

constexpr std::string_view kRange =
    R"({"header":{"cluster_id":"4456240529556579511","member_id":"1380867484674273855","revision":"3","raft_term":"2"},)"
    R"("kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2","value":"YmFy"}],"count":"1"})";

}  // namespace

TEST_CASE("gateway: a range answer with its header and key-values") {
  auto r = detail::parse_range(obj(kRange));
  REQUIRE(r);
  CHECK(r->header.cluster_id == 4456240529556579511u);
  CHECK(r->header.member_id == 1380867484674273855u);
  CHECK(r->header.revision == 3);
  CHECK(r->header.raft_term == 2);
  REQUIRE(r->kvs.size() == 1);
  CHECK(r->kvs[0].key == "foo");
  CHECK(r->kvs[0].value == "bar");
  CHECK(r->kvs[0].create_revision == 2);
  CHECK(r->kvs[0].mod_revision == 3);
  CHECK(r->kvs[0].version == 2);
  CHECK(r->count == 1);
  CHECK_FALSE(r->more);
}

TEST_CASE("gateway: omitted defaults read as empty (a range miss, a failed txn, a PUT event)") {
  auto miss = detail::parse_range(obj(R"({"header":{"revision":"3","raft_term":"2"}})"));
  REQUIRE(miss);
  CHECK(miss->kvs.empty());
  CHECK(miss->count == 0);

  auto failed = detail::parse_txn(obj(
      R"({"header":{"revision":"3","raft_term":"2"},"responses":[{"response_range":{"header":{"revision":"3"},)"
      R"("kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2","value":"YmFy"}],"count":"1"}}]})"));
  REQUIRE(failed);
  CHECK_FALSE(failed->succeeded);
  REQUIRE(failed->responses.size() == 1);
  const auto* range = std::get_if<RangeResponse>(&failed->responses[0]);
  REQUIRE(range != nullptr);
  REQUIRE(range->kvs.size() == 1);
  CHECK(range->kvs[0].value == "bar");

  auto ok = detail::parse_txn(obj(
      R"({"header":{"revision":"4","raft_term":"2"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"4"}}},)"
      R"({"response_delete_range":{"header":{"revision":"4"}}}]})"));
  REQUIRE(ok);
  CHECK(ok->succeeded);
  REQUIRE(ok->responses.size() == 2);
  CHECK(std::holds_alternative<PutResponse>(ok->responses[0]));
  CHECK(std::holds_alternative<DeleteResponse>(ok->responses[1]));
}

TEST_CASE("gateway: put with prev_kv, delete with prev_kvs") {
  auto p = detail::parse_put(obj(
      R"({"header":{"revision":"3","raft_term":"2"},"prev_kv":{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}})"));
  REQUIRE(p);
  REQUIRE(p->prev_kv.has_value());
  CHECK(p->prev_kv->mod_revision == 2);
  auto d = detail::parse_delete(obj(
      R"({"header":{"revision":"5","raft_term":"2"},"deleted":"1","prev_kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"4","version":"3","value":"YmFy"}]})"));
  REQUIRE(d);
  CHECK(d->deleted == 1);
  REQUIRE(d->prev_kvs.size() == 1);
  CHECK(d->prev_kvs[0].version == 3);
}

TEST_CASE("gateway: lease grant and keepalive (a keepalive without TTL is an expired lease)") {
  auto g = detail::parse_lease_grant(
      obj(R"({"header":{"revision":"4","raft_term":"2"},"ID":"3620791080152429836","TTL":"5"})"));
  REQUIRE(g);
  CHECK(g->id == 3620791080152429836);
  CHECK(g->ttl == 5);
  auto alive = detail::parse_keepalive(obj(R"({"result":{"header":{"raft_term":"2"},"ID":"7","TTL":"5"}})"));
  REQUIRE(alive);
  CHECK(alive->ttl == 5);
  auto dead = detail::parse_keepalive(obj(R"({"result":{"header":{"revision":"4","raft_term":"2"},"ID":"12345"}})"));
  REQUIRE_FALSE(dead);
  CHECK(dead.error().code == Errc::not_found);
}

TEST_CASE("gateway: watch lines: created, events in order with DELETE and prev_kv, compaction") {
  auto created = detail::parse_watch_line(
      R"({"result":{"header":{"cluster_id":"1","member_id":"2","revision":"5","raft_term":"2"},"created":true}})");
  REQUIRE(created);
  CHECK(created->created);
  CHECK(created->header.revision == 5);
  auto events = detail::parse_watch_line(
      R"({"result":{"header":{"revision":"5","raft_term":"2"},"events":[{"kv":{"key":"Zm9v","create_revision":"2","mod_revision":"4","version":"3","value":"YmFy"},)"
      R"("prev_kv":{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2","value":"YmFy"}},{"type":"DELETE","kv":{"key":"Zm9v","mod_revision":"5"}}]}})");
  REQUIRE(events);
  REQUIRE(events->events.size() == 2);
  CHECK(events->events[0].type == Event::Type::put);
  CHECK(events->events[0].kv.mod_revision == 4);
  REQUIRE(events->events[0].prev_kv.has_value());
  CHECK(events->events[0].prev_kv->mod_revision == 3);
  CHECK(events->events[1].type == Event::Type::del);
  CHECK(events->events[1].kv.mod_revision == 5);
  auto compacted = detail::parse_watch_line(
      R"({"result":{"header":{"cluster_id":"1","member_id":"2","raft_term":"2"},"canceled":true,"compact_revision":"3"}})");
  REQUIRE(compacted);
  CHECK(compacted->canceled);
  CHECK(compacted->compact_revision == 3);
  const auto refused =
      detail::watch_cancel_error("rpc error: code = InvalidArgument desc = etcdserver: user name is empty");
  CHECK(refused.code == Errc::permission_denied);
  CHECK(refused.message == "etcd: etcdserver: user name is empty");
  CHECK(detail::watch_cancel_error("etcdserver: something else").code == Errc::unavailable);
  auto err =
      detail::parse_watch_line(R"({"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader"}})");
  REQUIRE_FALSE(err);
  CHECK(err.error().code == Errc::unavailable);
}

TEST_CASE("gateway: malformed answers are invalid_argument, never a crash") {
  CHECK(detail::parse_object("[1]").error().code == Errc::invalid_argument);
  CHECK(detail::parse_object("{").error().code == Errc::invalid_argument);
  CHECK(detail::parse_range(obj(R"({"kvs":[{"key":"not base64!"}]})")).error().code == Errc::invalid_argument);
  CHECK(detail::parse_range(obj(R"({"count":"12x"})")).error().code == Errc::invalid_argument);
  CHECK(detail::parse_range(obj(R"({"kvs":{}})")).error().code == Errc::invalid_argument);
  CHECK(detail::parse_txn(obj(R"({"responses":[{"response_other":{}}]})")).error().code == Errc::invalid_argument);
  CHECK(detail::parse_watch_line(R"({"result":{"events":[{"type":"MOVE","kv":{}}]}})").error().code ==
        Errc::invalid_argument);
  CHECK(detail::parse_header(obj(R"({"header":{"raft_term":"-1"}})")).error().code == Errc::invalid_argument);
}

TEST_CASE("gateway: etcd's error answers map to kms codes") {
  const auto code = [](unsigned status, std::string_view body) { return detail::gateway_error(status, body).code; };
  CHECK(
      code(401, R"({"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16})") ==
      Errc::permission_denied);
  CHECK(code(400,
             R"({"error":"x","message":"etcdserver: authentication failed, invalid user ID or password","code":3})") ==
        Errc::permission_denied);
  CHECK(code(403, R"({"error":"x","message":"etcdserver: permission denied","code":7})") == Errc::permission_denied);
  CHECK(code(500, R"({"error":"x","message":"election: no leader","code":2})") == Errc::unavailable);
  CHECK(code(503, R"({"error":"x","message":"etcdserver: request timed out","code":14})") == Errc::unavailable);
  CHECK(code(400, R"({"error":"x","message":"etcdserver: mvcc: required revision has been compacted","code":11})") ==
        Errc::compacted);
  CHECK(code(400, R"({"error":"x","message":"etcdserver: mvcc: required revision is a future revision","code":11})") ==
        Errc::invalid_argument);
  CHECK(code(404, R"({"error":"x","message":"etcdserver: requested lease not found","code":5})") == Errc::not_found);
  CHECK(code(502, "<html>bad gateway</html>") == Errc::unavailable);
  CHECK(code(404, "") == Errc::invalid_argument);
  const auto e = detail::gateway_error(401, R"({"error":"x","message":"etcdserver: invalid auth token","code":16})");
  CHECK(detail::is_invalid_token(e));
  CHECK(e.message == "etcd: etcdserver: invalid auth token");
}

TEST_CASE("gateway: request bodies are base64 and decimal strings") {
  RangeRequest r{"foo", prefix_end("foo"), 7, 2, true, false};
  auto o = obj(detail::range_body(r));
  CHECK(o.at("key").as_string() == "Zm9v");
  CHECK(o.at("range_end").as_string() == "Zm9w");  // "fop"
  CHECK(o.at("revision").as_string() == "7");
  CHECK(o.at("limit").as_string() == "2");
  CHECK(o.at("keys_only").as_bool());
  CHECK_FALSE(o.contains("serializable"));

  TxnRequest t;
  t.compare.push_back(Compare::mod_revision("k", 12));
  t.compare.push_back(Compare::create_revision("k", 0));
  t.compare.push_back(Compare::version("k", 3, Compare::Result::greater));
  t.compare.push_back(Compare::value_is("k", "v", Compare::Result::not_equal));
  t.success.push_back(PutRequest{"k", "v", 9, true});
  t.failure.push_back(DeleteRequest{"k", "", true});
  auto txn = obj(detail::txn_body(t));
  const auto& c = txn.at("compare").as_array();
  REQUIRE(c.size() == 4);
  CHECK(c[0].at("target").as_string() == "MOD");
  CHECK(c[0].at("mod_revision").as_string() == "12");
  CHECK(c[1].at("target").as_string() == "CREATE");
  CHECK(c[1].at("create_revision").as_string() == "0");
  CHECK(c[2].at("result").as_string() == "GREATER");
  CHECK(c[2].at("version").as_string() == "3");
  CHECK(c[3].at("value").as_string() == "dg==");
  CHECK(c[3].at("result").as_string() == "NOT_EQUAL");
  CHECK(txn.at("success").as_array()[0].at("request_put").at("lease").as_string() == "9");
  CHECK(txn.at("failure").as_array()[0].at("request_delete_range").at("prev_kv").as_bool());
}

TEST_CASE("gateway: prefix_end") {
  CHECK(prefix_end("a") == "b");
  CHECK(prefix_end("a\xff") == "b");
  CHECK(prefix_end(std::string("\xff\xff", 2)) == std::string(1, '\0'));
  CHECK(prefix_end("") == std::string(1, '\0'));
}

TEST_CASE("gateway: the stale-member guard refuses an answer from an older raft term") {
  detail::TermGuard guard;
  auto h5 = detail::parse_header(obj(R"({"header":{"revision":"9","raft_term":"5"}})"));
  auto h4 = detail::parse_header(obj(R"({"result":{"header":{"revision":"12","raft_term":"4"}}})"));
  REQUIRE(h5);
  REQUIRE(h4);
  CHECK(guard.accept(h5->raft_term));
  CHECK(guard.accept(h5->raft_term));
  CHECK_FALSE(guard.accept(h4->raft_term));  // a member partitioned since term 4
  CHECK(guard.highest() == 5);
  CHECK(guard.accept(6));
  CHECK_FALSE(guard.accept(5));
}

TEST_CASE("gateway: a member's status (member ids above int64, as etcd 3.4 sends them)") {
  const auto s = detail::parse_status(
      obj(R"({"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"5",)"
          R"("raft_term":"2"},"version":"3.4.23","dbSize":"20480","leader":"10276657743932975437",)"
          R"("raftIndex":"9","raftTerm":"2","raftAppliedIndex":"9","dbSizeInUse":"20480"})"));
  REQUIRE(s);
  CHECK(s->header.member_id == 10276657743932975437ULL);
  CHECK(s->leader == 10276657743932975437ULL);
  CHECK(s->header.raft_term == 2);
  CHECK(s->header.revision == 5);
  CHECK(s->version == "3.4.23");
  CHECK(s->db_size == 20480);
  // A member that knows no leader omits it (a default).
  const auto lost = detail::parse_status(obj(R"({"header":{"member_id":"7","raft_term":"3"},"version":"3.4.23"})"));
  REQUIRE(lost);
  CHECK(lost->leader == 0);
  CHECK_FALSE(detail::parse_status(obj(R"({"header":{"member_id":"7"},"leader":"x"})")));
}
