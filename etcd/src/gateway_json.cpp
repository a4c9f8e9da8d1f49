#include "gateway_json.hpp"

#include <boost/json.hpp>

#include <charconv>
#include <limits>

#include "rootseal/kms/encoding.hpp"

namespace rootseal::etcd::detail {

namespace json = boost::json;
using kms::Errc;
using kms::fail;

namespace {

std::string b64(std::string_view bytes) {
  return kms::base64_encode({reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()});
}

void put_bytes(json::object& o, std::string_view field, std::string_view bytes) {
  if (!bytes.empty()) o[field] = b64(bytes);
}

// An int64 field: a decimal string (as etcd sends them) or a number; absent = 0.
template <class Int>
kms::Result<Int> int_field(const json::object& o, std::string_view field) {
  const auto* v = o.if_contains(field);
  if (v == nullptr || v->is_null()) return Int{0};
  if (const auto* s = v->if_string()) {
    Int out{};
    const auto* end = s->data() + s->size();
    auto [p, ec] = std::from_chars(s->data(), end, out);
    if (ec != std::errc{} || p != end || s->empty()) {
      return fail(Errc::invalid_argument, "etcd: field " + std::string(field) + " is not an integer");
    }
    return out;
  }
  if (const auto* i = v->if_int64()) {
    if (*i < 0 && std::is_unsigned_v<Int>)
      return fail(Errc::invalid_argument, "etcd: field " + std::string(field) + " is negative");
    return static_cast<Int>(*i);
  }
  if (const auto* u = v->if_uint64()) {
    if (*u > static_cast<std::uint64_t>(std::numeric_limits<Int>::max())) {
      return fail(Errc::invalid_argument, "etcd: field " + std::string(field) + " is out of range");
    }
    return static_cast<Int>(*u);
  }
  return fail(Errc::invalid_argument, "etcd: field " + std::string(field) + " is not an integer");
}

kms::Result<bool> bool_field(const json::object& o, std::string_view field) {
  const auto* v = o.if_contains(field);
  if (v == nullptr || v->is_null()) return false;
  if (const auto* b = v->if_bool()) return *b;
  return fail(Errc::invalid_argument, "etcd: field " + std::string(field) + " is not a boolean");
}

kms::Result<std::string> bytes_field(const json::object& o, std::string_view field) {
  const auto* v = o.if_contains(field);
  if (v == nullptr || v->is_null()) return std::string();
  const auto* s = v->if_string();
  if (s == nullptr) return fail(Errc::invalid_argument, "etcd: field " + std::string(field) + " is not a string");
  auto raw = kms::base64_decode(std::string_view(*s));
  if (!raw) return fail(Errc::invalid_argument, "etcd: field " + std::string(field) + " is not base64");
  return std::string(raw->begin(), raw->end());
}

kms::Result<const json::object*> object_field(const json::object& o, std::string_view field) {
  const auto* v = o.if_contains(field);
  if (v == nullptr || v->is_null()) return static_cast<const json::object*>(nullptr);
  const auto* obj = v->if_object();
  if (obj == nullptr) return fail(Errc::invalid_argument, "etcd: field " + std::string(field) + " is not an object");
  return obj;
}

kms::Result<const json::array*> array_field(const json::object& o, std::string_view field) {
  const auto* v = o.if_contains(field);
  if (v == nullptr || v->is_null()) return static_cast<const json::array*>(nullptr);
  const auto* arr = v->if_array();
  if (arr == nullptr) return fail(Errc::invalid_argument, "etcd: field " + std::string(field) + " is not an array");
  return arr;
}

kms::Result<KeyValue> parse_kv(const json::object& o) {
  KeyValue kv;
  ROOTSEAL_TRY_ASSIGN(kv.key, bytes_field(o, "key"));
  ROOTSEAL_TRY_ASSIGN(kv.value, bytes_field(o, "value"));
  ROOTSEAL_TRY_ASSIGN(kv.create_revision, int_field<std::int64_t>(o, "create_revision"));
  ROOTSEAL_TRY_ASSIGN(kv.mod_revision, int_field<std::int64_t>(o, "mod_revision"));
  ROOTSEAL_TRY_ASSIGN(kv.version, int_field<std::int64_t>(o, "version"));
  ROOTSEAL_TRY_ASSIGN(kv.lease, int_field<std::int64_t>(o, "lease"));
  return kv;
}

kms::Result<std::vector<KeyValue>> parse_kvs(const json::object& o, std::string_view field) {
  std::vector<KeyValue> out;
  ROOTSEAL_LET(arr, array_field(o, field));
  if (arr == nullptr) return out;
  out.reserve(arr->size());
  for (const auto& item : *arr) {
    const auto* obj = item.if_object();
    if (obj == nullptr)
      return fail(Errc::invalid_argument, "etcd: an entry of " + std::string(field) + " is not an object");
    ROOTSEAL_LET(kv, parse_kv(*obj));
    out.push_back(std::move(kv));
  }
  return out;
}

// A header inside a txn's responses has only a revision: parsed leniently.
kms::Result<ResponseHeader> header_of(const json::object* h) {
  ResponseHeader out;
  if (h == nullptr) return out;
  ROOTSEAL_TRY_ASSIGN(out.cluster_id, int_field<std::uint64_t>(*h, "cluster_id"));
  ROOTSEAL_TRY_ASSIGN(out.member_id, int_field<std::uint64_t>(*h, "member_id"));
  ROOTSEAL_TRY_ASSIGN(out.revision, int_field<std::int64_t>(*h, "revision"));
  ROOTSEAL_TRY_ASSIGN(out.raft_term, int_field<std::uint64_t>(*h, "raft_term"));
  return out;
}

json::object range_object(const RangeRequest& r) {
  json::object o;
  o["key"] = b64(r.key);
  put_bytes(o, "range_end", r.range_end);
  if (r.revision != 0) o["revision"] = std::to_string(r.revision);
  if (r.limit != 0) o["limit"] = std::to_string(r.limit);
  if (r.keys_only) o["keys_only"] = true;
  if (r.serializable) o["serializable"] = true;
  return o;
}
json::object put_object(const PutRequest& r) {
  json::object o;
  o["key"] = b64(r.key);
  put_bytes(o, "value", r.value);
  if (r.lease != 0) o["lease"] = std::to_string(r.lease);
  if (r.prev_kv) o["prev_kv"] = true;
  return o;
}
json::object delete_object(const DeleteRequest& r) {
  json::object o;
  o["key"] = b64(r.key);
  put_bytes(o, "range_end", r.range_end);
  if (r.prev_kv) o["prev_kv"] = true;
  return o;
}

json::array ops_array(const std::vector<Op>& ops) {
  json::array out;
  for (const auto& op : ops) {
    json::object o;
    if (const auto* r = std::get_if<RangeRequest>(&op)) o["request_range"] = range_object(*r);
    if (const auto* p = std::get_if<PutRequest>(&op)) o["request_put"] = put_object(*p);
    if (const auto* d = std::get_if<DeleteRequest>(&op)) o["request_delete_range"] = delete_object(*d);
    out.push_back(std::move(o));
  }
  return out;
}

std::string_view target_name(Compare::Target t) {
  switch (t) {
    case Compare::Target::version:
      return "VERSION";
    case Compare::Target::create_revision:
      return "CREATE";
    case Compare::Target::mod_revision:
      return "MOD";
    case Compare::Target::value:
      return "VALUE";
    case Compare::Target::lease:
      return "LEASE";
  }
  return "MOD";
}
std::string_view target_field(Compare::Target t) {
  switch (t) {
    case Compare::Target::version:
      return "version";
    case Compare::Target::create_revision:
      return "create_revision";
    case Compare::Target::mod_revision:
      return "mod_revision";
    case Compare::Target::value:
      return "value";
    case Compare::Target::lease:
      return "lease";
  }
  return "mod_revision";
}
std::string_view result_name(Compare::Result r) {
  switch (r) {
    case Compare::Result::equal:
      return "EQUAL";
    case Compare::Result::greater:
      return "GREATER";
    case Compare::Result::less:
      return "LESS";
    case Compare::Result::not_equal:
      return "NOT_EQUAL";
  }
  return "EQUAL";
}

kms::Result<const json::object*> header_object(const json::object& answer) {
  ROOTSEAL_LET(h, object_field(answer, "header"));
  if (h != nullptr) return h;
  ROOTSEAL_LET(result, object_field(answer, "result"));
  if (result != nullptr) return object_field(*result, "header");
  return static_cast<const json::object*>(nullptr);
}

}  // namespace

std::string range_body(const RangeRequest& r) { return json::serialize(range_object(r)); }
std::string put_body(const PutRequest& r) { return json::serialize(put_object(r)); }
std::string delete_body(const DeleteRequest& r) { return json::serialize(delete_object(r)); }

std::string txn_body(const TxnRequest& r) {
  json::object o;
  json::array compares;
  for (const auto& c : r.compare) {
    json::object co;
    co["key"] = b64(c.key);
    if (!c.range_end.empty()) co["range_end"] = b64(c.range_end);
    co["target"] = target_name(c.target);
    co["result"] = result_name(c.result);
    if (c.target == Compare::Target::value) {
      co["value"] = b64(c.value);
    } else {
      co[target_field(c.target)] = std::to_string(c.number);
    }
    compares.push_back(std::move(co));
  }
  o["compare"] = std::move(compares);
  o["success"] = ops_array(r.success);
  o["failure"] = ops_array(r.failure);
  return json::serialize(o);
}

std::string watch_body(const WatchRequest& r) {
  json::object c;
  c["key"] = b64(r.key);
  put_bytes(c, "range_end", r.range_end);
  if (r.start_revision != 0) c["start_revision"] = std::to_string(r.start_revision);
  if (r.prev_kv) c["prev_kv"] = true;
  json::object o;
  o["create_request"] = std::move(c);
  return json::serialize(o);
}

kms::Result<json::object> parse_object(std::string_view text) {
  json::parse_options opts;
  opts.max_depth = 64;
  boost::system::error_code ec;
  json::value v = json::parse(text, ec, {}, opts);
  if (ec) return fail(Errc::invalid_argument, "etcd: the answer is not JSON");
  auto* o = v.if_object();
  if (o == nullptr) return fail(Errc::invalid_argument, "etcd: the answer is not a JSON object");
  return std::move(*o);
}

kms::Result<ResponseHeader> parse_header(const json::object& answer) {
  ROOTSEAL_LET(h, header_object(answer));
  if (h == nullptr) return fail(Errc::invalid_argument, "etcd: the answer has no header");
  return header_of(h);
}

kms::Result<RangeResponse> parse_range(const json::object& answer) {
  RangeResponse out;
  ROOTSEAL_LET(h, object_field(answer, "header"));
  ROOTSEAL_TRY_ASSIGN(out.header, header_of(h));
  ROOTSEAL_TRY_ASSIGN(out.kvs, parse_kvs(answer, "kvs"));
  ROOTSEAL_TRY_ASSIGN(out.count, int_field<std::int64_t>(answer, "count"));
  ROOTSEAL_TRY_ASSIGN(out.more, bool_field(answer, "more"));
  return out;
}

kms::Result<PutResponse> parse_put(const json::object& answer) {
  PutResponse out;
  ROOTSEAL_LET(h, object_field(answer, "header"));
  ROOTSEAL_TRY_ASSIGN(out.header, header_of(h));
  ROOTSEAL_LET(prev, object_field(answer, "prev_kv"));
  if (prev != nullptr) {
    ROOTSEAL_LET(kv, parse_kv(*prev));
    out.prev_kv = std::move(kv);
  }
  return out;
}

kms::Result<DeleteResponse> parse_delete(const json::object& answer) {
  DeleteResponse out;
  ROOTSEAL_LET(h, object_field(answer, "header"));
  ROOTSEAL_TRY_ASSIGN(out.header, header_of(h));
  ROOTSEAL_TRY_ASSIGN(out.deleted, int_field<std::int64_t>(answer, "deleted"));
  ROOTSEAL_TRY_ASSIGN(out.prev_kvs, parse_kvs(answer, "prev_kvs"));
  return out;
}

kms::Result<TxnResponse> parse_txn(const json::object& answer) {
  TxnResponse out;
  ROOTSEAL_LET(h, object_field(answer, "header"));
  ROOTSEAL_TRY_ASSIGN(out.header, header_of(h));
  ROOTSEAL_TRY_ASSIGN(out.succeeded, bool_field(answer, "succeeded"));
  ROOTSEAL_LET(responses, array_field(answer, "responses"));
  if (responses == nullptr) return out;
  for (const auto& item : *responses) {
    const auto* o = item.if_object();
    if (o == nullptr) return fail(Errc::invalid_argument, "etcd: a txn response is not an object");
    ROOTSEAL_LET(range, object_field(*o, "response_range"));
    ROOTSEAL_LET(put, object_field(*o, "response_put"));
    ROOTSEAL_LET(del, object_field(*o, "response_delete_range"));
    if (range != nullptr) {
      ROOTSEAL_LET(r, parse_range(*range));
      out.responses.emplace_back(std::move(r));
    } else if (put != nullptr) {
      ROOTSEAL_LET(p, parse_put(*put));
      out.responses.emplace_back(std::move(p));
    } else if (del != nullptr) {
      ROOTSEAL_LET(d, parse_delete(*del));
      out.responses.emplace_back(std::move(d));
    } else {
      return fail(Errc::invalid_argument, "etcd: a txn response of an unknown kind");
    }
  }
  return out;
}

kms::Result<Lease> parse_lease_grant(const json::object& answer) {
  if (const auto* e = answer.if_contains("error"); e != nullptr && e->is_string()) {
    return fail(Errc::unavailable, "etcd: lease grant failed");
  }
  Lease out;
  ROOTSEAL_TRY_ASSIGN(out.id, int_field<std::int64_t>(answer, "ID"));
  ROOTSEAL_TRY_ASSIGN(out.ttl, int_field<std::int64_t>(answer, "TTL"));
  if (out.id == 0 || out.ttl <= 0) return fail(Errc::invalid_argument, "etcd: the lease grant answer has no ID or TTL");
  return out;
}

kms::Result<EndpointStatus> parse_status(const json::object& answer) {
  EndpointStatus out;
  ROOTSEAL_TRY_ASSIGN(out.header, parse_header(answer));
  const auto* v = answer.if_contains("version");
  if (v != nullptr && v->is_string() && v->get_string().size() <= 64) out.version = std::string(v->get_string());
  ROOTSEAL_TRY_ASSIGN(out.leader, int_field<std::uint64_t>(answer, "leader"));
  ROOTSEAL_TRY_ASSIGN(out.db_size, int_field<std::int64_t>(answer, "dbSize"));
  return out;
}

kms::Result<Lease> parse_keepalive(const json::object& answer) {
  ROOTSEAL_LET(result, object_field(answer, "result"));
  if (result == nullptr) return fail(Errc::invalid_argument, "etcd: the keepalive answer has no result");
  Lease out;
  ROOTSEAL_TRY_ASSIGN(out.id, int_field<std::int64_t>(*result, "ID"));
  ROOTSEAL_TRY_ASSIGN(out.ttl, int_field<std::int64_t>(*result, "TTL"));
  if (out.ttl <= 0) return fail(Errc::not_found, "etcd: the lease has expired");
  return out;
}

kms::Result<WatchLine> parse_watch_line(std::string_view line) {
  ROOTSEAL_LET(o, parse_object(line));
  if (const auto* e = o.if_contains("error"); e != nullptr) {
    if (const auto* eo = e->if_object()) {
      std::int64_t code = 2;
      if (auto c = int_field<std::int64_t>(*eo, "grpc_code"); c) code = *c;
      std::string_view msg;
      if (const auto* m = eo->if_contains("message"); m != nullptr && m->is_string()) msg = m->get_string();
      return std::unexpected(map_grpc(static_cast<int>(code), msg));
    }
    return fail(Errc::unavailable, "etcd: the watch stream reported an error");
  }
  ROOTSEAL_LET(result, object_field(o, "result"));
  if (result == nullptr) return fail(Errc::invalid_argument, "etcd: a watch line has no result");
  WatchLine out;
  ROOTSEAL_LET(h, object_field(*result, "header"));
  ROOTSEAL_TRY_ASSIGN(out.header, header_of(h));
  ROOTSEAL_TRY_ASSIGN(out.created, bool_field(*result, "created"));
  ROOTSEAL_TRY_ASSIGN(out.canceled, bool_field(*result, "canceled"));
  ROOTSEAL_TRY_ASSIGN(out.compact_revision, int_field<std::int64_t>(*result, "compact_revision"));
  if (const auto* r = result->if_contains("cancel_reason"); r != nullptr && r->is_string()) {
    out.cancel_reason = std::string(r->get_string());
  }
  ROOTSEAL_LET(events, array_field(*result, "events"));
  if (events != nullptr) {
    for (const auto& item : *events) {
      const auto* eo = item.if_object();
      if (eo == nullptr) return fail(Errc::invalid_argument, "etcd: a watch event is not an object");
      Event ev;
      if (const auto* t = eo->if_contains("type"); t != nullptr && !t->is_null()) {
        if (!t->is_string()) return fail(Errc::invalid_argument, "etcd: a watch event type is not a string");
        if (t->get_string() == "DELETE") {
          ev.type = Event::Type::del;
        } else if (t->get_string() != "PUT") {
          return fail(Errc::invalid_argument, "etcd: a watch event of an unknown type");
        }
      }
      ROOTSEAL_LET(kv, object_field(*eo, "kv"));
      if (kv == nullptr) return fail(Errc::invalid_argument, "etcd: a watch event has no kv");
      ROOTSEAL_TRY_ASSIGN(ev.kv, parse_kv(*kv));
      ROOTSEAL_LET(prev, object_field(*eo, "prev_kv"));
      if (prev != nullptr) {
        ROOTSEAL_LET(p, parse_kv(*prev));
        ev.prev_kv = std::move(p);
      }
      out.events.push_back(std::move(ev));
    }
  }
  return out;
}

kms::Error map_grpc(int code, std::string_view message) {
  // etcd's messages name no key or value; they are kept, bounded.
  std::string msg(message.substr(0, 200));
  const auto has = [&](std::string_view s) { return message.find(s) != std::string_view::npos; };
  if (msg.empty()) msg = "error code " + std::to_string(code);
  std::string text = "etcd: " + msg;
  switch (code) {
    case 16:  // UNAUTHENTICATED
    case 7:   // PERMISSION_DENIED
      return {Errc::permission_denied, text};
    case 3:  // INVALID_ARGUMENT: also how etcd refuses bad credentials
      if (has("authentication failed") || has("user name is empty") || has("permission denied")) {
        return {Errc::permission_denied, text};
      }
      return {Errc::invalid_argument, text};
    case 11:  // OUT_OF_RANGE
      if (has("compacted")) return {Errc::compacted, text};
      return {Errc::invalid_argument, text};
    case 5:
      return {Errc::not_found, text};
    case 6:
      return {Errc::already_exists, text};
    case 9:
      return {Errc::invalid_argument, text};  // FAILED_PRECONDITION (auth not enabled, ...)
    case 1:                                   // CANCELLED
    case 2:                                   // UNKNOWN ("election: no leader")
    case 4:                                   // DEADLINE_EXCEEDED
    case 8:                                   // RESOURCE_EXHAUSTED ("too many requests")
    case 10:                                  // ABORTED
    case 14:                                  // UNAVAILABLE
      return {Errc::unavailable, text};
    default:
      return {Errc::storage_failure, text};
  }
}

kms::Error watch_cancel_error(std::string_view reason) {
  static constexpr std::pair<std::string_view, int> kCodes[] = {
      {"code = InvalidArgument", 3},    {"code = NotFound", 5},    {"code = PermissionDenied", 7},
      {"code = FailedPrecondition", 9}, {"code = OutOfRange", 11}, {"code = Unauthenticated", 16}};
  const auto desc = reason.find("desc = ");
  const std::string_view message = desc == std::string_view::npos ? reason : reason.substr(desc + 7);
  for (const auto& [name, code] : kCodes) {
    if (reason.find(name) != std::string_view::npos) return map_grpc(code, message);
  }
  return {Errc::unavailable, "etcd: the watch was cancelled by the server: " + std::string(message.substr(0, 200))};
}

kms::Error gateway_error(unsigned http_status, std::string_view body) {
  auto o = parse_object(body);
  if (o) {
    const auto* c = o->if_contains("code");
    const auto* m = o->if_contains("message");
    if (c != nullptr && (c->is_int64() || c->is_uint64())) {
      const auto code = c->is_int64() ? c->get_int64() : static_cast<std::int64_t>(c->get_uint64());
      const std::string_view msg =
          m != nullptr && m->is_string() ? std::string_view(m->get_string()) : std::string_view();
      return map_grpc(code >= 0 && code < 100 ? static_cast<int>(code) : -1, msg);
    }
  }
  const std::string text = "etcd: HTTP " + std::to_string(http_status) + " without an etcd error";
  if (http_status == 401 || http_status == 403) return {Errc::permission_denied, text};
  if (http_status >= 500 || http_status == 429 || http_status == 408) return {Errc::unavailable, text};
  return {Errc::invalid_argument, text};
}

bool surely_not_applied(const kms::Error& e) {
  if (e.code != Errc::unavailable) return false;
  const auto& m = e.message;
  return m.find("no leader") != std::string::npos || m.find("cannot connect") != std::string::npos ||
         m.find("cannot resolve") != std::string::npos || m.find("resolving") != std::string::npos ||
         m.find("handshake") != std::string::npos || m.find("stale member") != std::string::npos ||
         m.find("no free connection") != std::string::npos || m.find("not capable") != std::string::npos;
}

bool is_invalid_token(const kms::Error& e) {
  return e.code == Errc::permission_denied &&
         (e.message.find("invalid auth token") != std::string::npos || e.message.find("token") != std::string::npos);
}

bool TermGuard::accept(std::uint64_t term) noexcept {
  std::uint64_t seen = highest_.load();
  while (true) {
    if (term < seen) return false;
    if (term == seen || highest_.compare_exchange_weak(seen, term)) return true;
  }
}

}  // namespace rootseal::etcd::detail
