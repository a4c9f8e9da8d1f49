// Fuzz target: request lines of the local admin socket
// (daemon::parse_admin_request, which AdminServer::dispatch runs on every
// line before acting on it).
// Properties beyond "no crash, no sanitizer report, no leak":
//  - a failure is invalid_argument with a message that does not depend on
//    the request's "pin" (its text, 4+ characters, is in the message only
//    if it still is with another PIN of the same length);
//  - the op reported for the audit line is the request's op whenever the
//    line got that far;
//  - what is accepted is in range: a known op; policies distinct and
//    non-empty; ttl 0..10 years, renewable only with a ttl; display name
//    1..128 characters; unseal PIN 1..128 bytes; PCRs sorted, distinct,
//    0..23 without 16 and 23;
//  - the answer depends on the line only (parsed twice: same outcome).
#include <boost/json.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "admin_server.hpp"
#include "fuzz_util.hpp"

namespace json = boost::json;
using namespace rootseal;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view line = fuzz::as_text(data, size);
  std::string op;
  const auto r = daemon::parse_admin_request(line, &op);
  std::string op2;
  const auto again = daemon::parse_admin_request(line, &op2);
  fuzz::require(r.has_value() == again.has_value() && op == op2, "deterministic");

  // What a second parser (boost::json, plain heap) sees in the line.
  json::error_code ec;
  const json::value v = json::parse(line, ec);
  const json::object* o = !ec ? v.if_object() : nullptr;
  std::string pin_text;
  if (o != nullptr) {
    if (const auto* p = o->if_contains("pin"); p != nullptr && p->is_string()) pin_text = std::string(p->as_string());
    if (const auto* p = o->if_contains("op"); p != nullptr && p->is_string() && p->as_string().size() <= 64) {
      fuzz::require(op == std::string_view(p->as_string()), "the audited op is the request's");
    }
  }
  if (!r) {
    fuzz::require_clean_error(r.error(), {kms::Errc::invalid_argument}, "admin request error code");
    fuzz::require(again.error().message == r.error().message, "deterministic message");
    if (pin_text.size() >= 4 && r.error().message.find(pin_text) != std::string::npos) {
      // The text may be in the message for another reason (the op's name, a
      // word of the message): then it stays there with another PIN. That PIN
      // shifts every letter and digit and keeps every other character, so it
      // is refused for the same reason (base64 or not, same length).
      json::object other = *o;
      std::string shifted = pin_text;
      for (char& ch : shifted) {
        if (ch >= 'a' && ch <= 'z')
          ch = static_cast<char>('a' + (ch - 'a' + 1) % 26);
        else if (ch >= 'A' && ch <= 'Z')
          ch = static_cast<char>('A' + (ch - 'A' + 1) % 26);
        else if (ch >= '0' && ch <= '9')
          ch = static_cast<char>('0' + (ch - '0' + 1) % 10);
      }
      other["pin"] = shifted;
      const auto r2 = daemon::parse_admin_request(json::serialize(other));
      fuzz::require(!r2 && r2.error().message.find(pin_text) != std::string::npos, "no PIN in an error");
    }
    return 0;
  }
  fuzz::require(o != nullptr, "accepted lines are JSON objects");
  const auto& q = *r;
  static constexpr std::string_view kOps[] = {"status",       "token.create",   "token.list",        "token.lookup",
                                              "token.revoke", "unseal",         "tpm.reseal",        "snapshot.now",
                                              "kms.rotate",   "cluster.status", "keyring.rotate-key"};
  fuzz::require(std::find(std::begin(kOps), std::end(kOps), q.op) != std::end(kOps), "known op");
  if (q.op == "token.create") {
    fuzz::require(!q.policies.empty(), "a token has a policy");
    for (std::size_t i = 0; i < q.policies.size(); ++i) {
      fuzz::require(!q.policies[i].empty() && q.policies[i].size() <= 128, "policy name length");
      for (std::size_t j = 0; j < i; ++j) fuzz::require(q.policies[i] != q.policies[j], "distinct policies");
    }
    fuzz::require(q.ttl_s >= 0 && q.ttl_s <= 10LL * 365 * 24 * 3600, "ttl range");
    fuzz::require(!q.renewable || q.ttl_s > 0, "renewable only with a ttl");
    fuzz::require(!q.display_name.empty() && q.display_name.size() <= 128, "display name length");
  }
  if (q.op == "token.lookup" || q.op == "token.revoke") fuzz::require(!q.accessor.empty(), "an accessor");
  if (q.op == "unseal") fuzz::require(!q.pin.empty() && q.pin.size() <= 128, "PIN length");
  if (q.op == "tpm.reseal" && q.pcrs) {
    for (std::size_t i = 0; i < q.pcrs->size(); ++i) {
      const auto p = (*q.pcrs)[i];
      fuzz::require(p <= 23 && p != 16 && p != 23, "PCR range");
      if (i > 0) fuzz::require((*q.pcrs)[i - 1] < p, "PCRs sorted and distinct");
    }
  }
  return 0;
}
