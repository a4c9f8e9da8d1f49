// Fuzz target: zone files (TZif, RFC 8536: versions 1, 2 and 3, with the
// footer's POSIX TZ rule) as the template engine's date functions read them
// from /usr/share/zoneinfo (sync/src/template/date_funcs.cpp: ports of Go's
// LoadLocationFromTZData, Location.lookup and tzset). The same corpus is
// compared with Go's time package by tzif_diff.
//
// Input: the bytes of a zone file.
// Properties beyond "no crash, no sanitizer report":
//  - a refusal, or a zone whose transition times ascend strictly;
//  - reading the bytes again gives the same transitions and footer;
//  - lookups are deterministic: the answers at the probed instants are the
//    same asked forwards, backwards and of the second reading;
//  - they agree with the table: before the first transition the period runs
//    from -2^63 to it; between two transitions it is exactly [t(i), t(i+1))
//    and the answer is the same at its first and last second; past the last
//    one, either the last transition's period [t(last), 2^63-1) or a period
//    of the footer's rule, whose name is part of the footer and whose offset
//    is within the rule's +-(167:59:59 + 1 hour) range;
//  - Go's Format of such an instant in the zone succeeds, writes the name
//    for "MST" (when it has one) and the offset for "-07:00:00".
// The instants probed are those the date functions can ask: the years 1 to
// 9999 and a zone offset (up to 2^31 s) either side.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.hpp"
#include "template/date_funcs.hpp"

using namespace rootseal;
using sync::tmpl::date::TzifForTests;
using sync::tmpl::date::ZoneAt;

namespace {

constexpr std::int64_t kMinSec = -62135596800;  // 0001-01-01T00:00:00Z
constexpr std::int64_t kMaxSec = 253402300799;  // 9999-12-31T23:59:59Z
constexpr std::int64_t kLo = kMinSec - (std::int64_t{1} << 31);
constexpr std::int64_t kHi = kMaxSec + (std::int64_t{1} << 31);
constexpr std::int64_t kAlpha = INT64_MIN;
constexpr std::int64_t kOmega = INT64_MAX;
// tzset accepts hours up to 24*7 and minutes and seconds up to 59; a DST
// offset defaults to the standard one plus an hour.
constexpr std::int64_t kRuleOffsetMax = 24 * 7 * 3600 + 59 * 60 + 59 + 3600;

std::vector<std::int64_t> probes(const std::vector<std::int64_t>& tx) {
  std::vector<std::int64_t> out = {kLo,        kMinSec,    -2208988800, -1,         0,       1,
                                   1000000000, 2147483647, 2147483648,  4102444800, kMaxSec, kHi};
  // Around the transitions in range (at most 64 of them, spread over the table).
  const std::size_t stride = std::max<std::size_t>(1, tx.size() / 64);
  for (std::size_t i = 0; i < tx.size(); i += stride) {
    for (const std::int64_t d : {-1, 0, 1}) {
      if (tx[i] >= kLo - d && tx[i] <= kHi - d) out.push_back(tx[i] + d);
    }
  }
  // Past the last transition: the footer's rule over some years.
  std::int64_t from = std::clamp(tx.back(), kLo, kHi);
  for (int k = 0; k < 40 && from <= kHi - 86400 * 91; ++k) {
    from += 86400 * 91 + 3601;
    out.push_back(from);
  }
  return out;
}

// The name Go's Format writes for "-07:00:00" (appendFormat's stdNumColonSecondsTZ).
std::string offset_text(std::int64_t offset) {
  std::int64_t zone = offset / 60;
  std::int64_t abs = offset;
  std::string s;
  if (zone < 0) {
    s = "-";
    zone = -zone;
    abs = -abs;
  } else {
    s = "+";
  }
  auto two = [](std::int64_t v) {
    std::string t = std::to_string(v < 0 ? -v : v);
    if (t.size() < 2) t.insert(0, 2 - t.size(), '0');
    return (v < 0 ? "-" : "") + t;
  };
  return s + two(zone / 60) + ":" + two(zone % 60) + ":" + two(abs % 60);
}

void check_answer(const TzifForTests& z, const std::vector<std::int64_t>& tx, std::int64_t sec, const ZoneAt& a) {
  if (sec < tx.front()) {
    fuzz::require(a.start == kAlpha && a.end == tx.front(), "before the first transition: [-2^63, t(0))");
  } else if (sec < tx.back()) {
    const auto it = std::upper_bound(tx.begin(), tx.end(), sec);
    fuzz::require(a.start == *(it - 1) && a.end == *it, "between transitions: [t(i), t(i+1))");
    fuzz::require(z.at(a.start) == a && z.at(a.end - 1) == a, "one answer over a period");
  } else {
    const bool table = a.start == tx.back() && a.end == kOmega;
    const bool rule = !z.footer().empty() && z.footer().find(a.abbr) != std::string_view::npos &&
                      a.offset >= -kRuleOffsetMax && a.offset <= kRuleOffsetMax;
    fuzz::require(table || rule, "past the table: the last period or the footer's rule");
  }
  if (sec < kMinSec || sec > kMaxSec) return;
  const auto mst = z.format(sec, "MST");
  fuzz::require(mst.has_value(), "Format in the zone succeeds");
  if (!a.abbr.empty()) fuzz::require(*mst == a.abbr, "Format writes the zone's name");
  const auto num = z.format(sec, "-07:00:00");
  fuzz::require(num.has_value() && *num == offset_text(a.offset), "Format writes the zone's offset");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const auto z = TzifForTests::read(bytes);
  if (!z) {
    fuzz::require(!TzifForTests::read(bytes), "a refusal is deterministic");
    return 0;
  }
  const auto tx = z->transitions();
  fuzz::require(!tx.empty(), "a zone has a transition (Go's one at -2^63 when there are none)");
  fuzz::require(std::adjacent_find(tx.begin(), tx.end(), [](auto a, auto b) { return a >= b; }) == tx.end(),
                "transitions ascend strictly");
  const auto again = TzifForTests::read(bytes);
  fuzz::require(again && again->transitions() == tx && again->footer() == z->footer(), "a second reading is the same");

  const auto at = probes(tx);
  std::vector<ZoneAt> forwards;
  forwards.reserve(at.size());
  for (const auto sec : at) forwards.push_back(z->at(sec));
  for (std::size_t i = at.size(); i-- > 0;) {
    fuzz::require(z->at(at[i]) == forwards[i] && again->at(at[i]) == forwards[i], "lookups are deterministic");
  }
  for (std::size_t i = 0; i < at.size(); ++i) check_answer(*z, tx, at[i], forwards[i]);
  return 0;
}
