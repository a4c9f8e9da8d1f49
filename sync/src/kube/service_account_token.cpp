#include "kube/service_account_token.hpp"

#include <boost/json.hpp>

#include <optional>

namespace rootseal::sync::kube {

namespace json = boost::json;
using kms::Errc;
using kms::fail;

json::value token_request_body(std::span<const std::string> audiences, std::int64_t expiration_seconds) {
  json::object spec;
  if (!audiences.empty()) {
    json::array a;
    for (const auto& x : audiences) a.emplace_back(x);
    spec["audiences"] = std::move(a);
  }
  if (expiration_seconds > 0) spec["expirationSeconds"] = expiration_seconds;
  return json::object{{"apiVersion", "authentication.k8s.io/v1"}, {"kind", "TokenRequest"}, {"spec", std::move(spec)}};
}

namespace {

bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  out = v;
  return true;
}

bool base64url_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

}  // namespace

std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view s) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (s.size() < 20 || !digits(s, 0, 4, y) || s[4] != '-' || !digits(s, 5, 2, mo) || s[7] != '-' ||
      !digits(s, 8, 2, d) || (s[10] != 'T' && s[10] != 't') || !digits(s, 11, 2, h) || s[13] != ':' ||
      !digits(s, 14, 2, mi) || s[16] != ':' || !digits(s, 17, 2, sec)) {
    return std::nullopt;
  }
  std::size_t i = 19;
  if (i < s.size() && s[i] == '.') {  // a fraction: whole seconds are enough for an expiry
    ++i;
    const std::size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (i == start || i - start > 9) return std::nullopt;
  }
  int offset_min = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    int oh = 0, om = 0;
    if (!digits(s, i + 1, 2, oh) || i + 3 >= s.size() || s[i + 3] != ':' || !digits(s, i + 4, 2, om) || oh > 23 ||
        om > 59) {
      return std::nullopt;
    }
    offset_min = (oh * 60 + om) * (s[i] == '-' ? -1 : 1);
    i += 6;
  } else {
    return std::nullopt;
  }
  if (i != s.size() || mo < 1 || mo > 12 || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  // A time system_clock holds (nanoseconds since 1970 in 64 bits: 1678-2262)
  // with room for arithmetic on it: an expiry outside 1970-2199 is not one.
  if (y < 1970 || y > 2199) return std::nullopt;
  const std::chrono::year_month_day ymd{std::chrono::year{y}, std::chrono::month{static_cast<unsigned>(mo)},
                                        std::chrono::day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return std::nullopt;
  const auto t = std::chrono::sys_days(ymd) + std::chrono::hours(h) + std::chrono::minutes(mi) +
                 std::chrono::seconds(sec) - std::chrono::minutes(offset_min);
  return std::chrono::time_point_cast<std::chrono::system_clock::duration>(t);
}

kms::Result<ServiceAccountToken> parse_token_request_answer(const json::value& answer) {
  const auto* o = answer.if_object();
  const auto* status = o != nullptr ? o->if_contains("status") : nullptr;
  if (status == nullptr || !status->is_object()) {
    return fail(Errc::unavailable, "kubernetes: the TokenRequest answer has no status");
  }
  const auto* tok = status->as_object().if_contains("token");
  if (tok == nullptr || !tok->is_string() || tok->as_string().empty()) {
    return fail(Errc::unavailable, "kubernetes: the TokenRequest answer has no status.token");
  }
  const std::string_view t(tok->as_string().data(), tok->as_string().size());
  if (t.size() > 64 * 1024) return fail(Errc::unavailable, "kubernetes: status.token is larger than 64 KiB");
  // A JWS in compact form: header.payload.signature, each non-empty base64url.
  std::size_t dots = 0;
  bool ok = t.front() != '.' && t.back() != '.';
  for (std::size_t i = 0; ok && i < t.size(); ++i) {
    if (t[i] == '.') {
      ok = t[i - 1] != '.';
      ++dots;
    } else {
      ok = base64url_char(t[i]);
    }
  }
  if (!ok || dots != 2) return fail(Errc::unavailable, "kubernetes: status.token is not a JWT");
  const auto* exp = status->as_object().if_contains("expirationTimestamp");
  if (exp == nullptr || !exp->is_string()) {
    return fail(Errc::unavailable, "kubernetes: the TokenRequest answer has no status.expirationTimestamp");
  }
  const auto when = parse_rfc3339(std::string_view(exp->as_string().data(), exp->as_string().size()));
  if (!when) return fail(Errc::unavailable, "kubernetes: status.expirationTimestamp is not an RFC 3339 time");
  return ServiceAccountToken{kms::SecureBytes::copy_of(t), *when};
}

}  // namespace rootseal::sync::kube
