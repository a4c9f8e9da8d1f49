// Fuzz target: the etcd client's parsing of what etcd's JSON gateway answers
// (etcd/src/gateway_json.cpp): range, put, delete, txn, lease grant and
// keepalive answers, watch-stream lines, and error bodies.
//
// Input: line 1 the kind: range | put | delete | txn | grant | keepalive |
// watch | error <http status>; the rest is the body (for watch: one JSON
// object per line, as the stream sends them).
// Properties beyond "no crash, no sanitizer report, no leak":
//  - a failure is a documented code with a message starting "etcd: ";
//  - a parsed range/txn answer re-encodes: each key-value put back into a
//    range answer parses to the same key, value and revisions;
//  - the revision the watch would resume from only moves forward over the
//    events of the stream's lines (the client's dedupe rule).
#include <boost/json.hpp>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.hpp"
#include "gateway_json.hpp"
#include "rootseal/kms/encoding.hpp"

using namespace rootseal;
namespace detail = rootseal::etcd::detail;
namespace json = boost::json;
using kms::Errc;

namespace {

void clean(const kms::Error& e, const char* what) {
  fuzz::require_clean_error(e,
                            {Errc::invalid_argument, Errc::not_found, Errc::already_exists, Errc::permission_denied,
                             Errc::unavailable, Errc::compacted, Errc::storage_failure},
                            what);
  fuzz::require(e.message.starts_with("etcd: "), "error messages start with etcd:");
}

std::string b64(const std::string& s) {
  return kms::base64_encode({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()});
}

// Every key-value re-encoded as a range answer parses back to itself.
void round_trip(const std::vector<etcd::KeyValue>& kvs) {
  json::array arr;
  for (const auto& kv : kvs) {
    json::object o;
    o["key"] = b64(kv.key);
    o["value"] = b64(kv.value);
    o["create_revision"] = std::to_string(kv.create_revision);
    o["mod_revision"] = std::to_string(kv.mod_revision);
    o["version"] = std::to_string(kv.version);
    o["lease"] = std::to_string(kv.lease);
    arr.push_back(std::move(o));
  }
  json::object answer;
  answer["kvs"] = std::move(arr);
  auto back = detail::parse_range(answer);
  fuzz::require(back.has_value(), "a re-encoded range parses");
  fuzz::require(back->kvs.size() == kvs.size(), "same number of key-values");
  for (std::size_t i = 0; i < kvs.size(); ++i) {
    const auto& a = kvs[i];
    const auto& b = back->kvs[i];
    fuzz::require(a.key == b.key && a.value == b.value && a.create_revision == b.create_revision &&
                      a.mod_revision == b.mod_revision && a.version == b.version && a.lease == b.lease,
                  "key-value round trip");
  }
}

template <class T, class F>
void parse_with(std::string_view body, F parse, const char* what) {
  auto o = detail::parse_object(body);
  if (!o) {
    clean(o.error(), "parse_object error");
    return;
  }
  (void)detail::parse_header(*o);
  auto r = parse(*o);
  if (!r) {
    clean(r.error(), what);
    return;
  }
  if constexpr (std::is_same_v<T, etcd::RangeResponse>) {
    round_trip(r->kvs);
  } else if constexpr (std::is_same_v<T, etcd::TxnResponse>) {
    for (const auto& resp : r->responses) {
      if (const auto* range = std::get_if<etcd::RangeResponse>(&resp)) round_trip(range->kvs);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in = fuzz::as_text(data, size);
  const std::string_view kind = fuzz::next_line(in);
  if (kind == "range") {
    parse_with<etcd::RangeResponse>(in, detail::parse_range, "range");
  } else if (kind == "put") {
    parse_with<etcd::PutResponse>(in, detail::parse_put, "put");
  } else if (kind == "delete") {
    parse_with<etcd::DeleteResponse>(in, detail::parse_delete, "delete");
  } else if (kind == "txn") {
    parse_with<etcd::TxnResponse>(in, detail::parse_txn, "txn");
  } else if (kind == "grant") {
    parse_with<etcd::Lease>(in, detail::parse_lease_grant, "grant");
  } else if (kind == "keepalive") {
    parse_with<etcd::Lease>(in, detail::parse_keepalive, "keepalive");
  } else if (kind == "status") {
    parse_with<etcd::EndpointStatus>(in, detail::parse_status, "status");
  } else if (kind == "watch") {
    std::int64_t next = 0;
    while (!in.empty()) {
      const std::string_view line = fuzz::next_line(in);
      auto w = detail::parse_watch_line(line);
      if (!w) {
        clean(w.error(), "watch line");
        continue;
      }
      if (w->canceled && w->compact_revision == 0) clean(detail::watch_cancel_error(w->cancel_reason), "watch cancel");
      for (const auto& ev : w->events) {
        if (ev.kv.mod_revision < next) continue;  // the client's dedupe
        fuzz::require(ev.kv.mod_revision >= next, "resume revision only moves forward");
        next = ev.kv.mod_revision;
      }
    }
  } else if (kind.starts_with("error ")) {
    unsigned status = 0;
    const auto digits = kind.substr(6);
    std::from_chars(digits.data(), digits.data() + digits.size(), status);
    const auto e = detail::gateway_error(status, in);
    clean(e, "gateway_error");
    (void)detail::is_invalid_token(e);
    (void)detail::surely_not_applied(e);
  }
  return 0;
}
