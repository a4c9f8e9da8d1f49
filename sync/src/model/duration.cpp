#include "model/duration.hpp"

#include <cstdint>
#include <limits>

namespace rootseal::sync::model {

using kms::Errc;
using kms::fail;

namespace {

constexpr std::uint64_t kMaxNs = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());

// Nanoseconds per unit, or 0 if the unit is unknown.
std::uint64_t unit_ns(std::string_view u) {
  if (u == "ns") return 1;
  if (u == "us" || u == "\xC2\xB5s" || u == "\xCE\xBCs") return 1'000;  // us, µs (micro sign), μs (Greek mu)
  if (u == "ms") return 1'000'000;
  if (u == "s") return 1'000'000'000;
  if (u == "m") return 60'000'000'000;
  if (u == "h") return 3'600'000'000'000;
  return 0;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

kms::Result<std::chrono::nanoseconds> parse_go_duration(std::string_view s) {
  if (s.empty()) return fail(Errc::invalid_argument, "empty duration");
  if (s.front() == '-') return fail(Errc::invalid_argument, "negative duration");
  if (s.front() == '+') s.remove_prefix(1);
  if (s == "0") return std::chrono::nanoseconds(0);
  if (s.empty()) return fail(Errc::invalid_argument, "invalid duration");
  std::uint64_t total = 0;
  while (!s.empty()) {
    // Integer part.
    std::uint64_t whole = 0;
    std::size_t i = 0;
    bool any_digit = false;
    for (; i < s.size() && is_digit(s[i]); ++i) {
      any_digit = true;
      if (whole > (kMaxNs - 9) / 10) return fail(Errc::invalid_argument, "duration out of range");
      whole = whole * 10 + static_cast<std::uint64_t>(s[i] - '0');
    }
    // Fraction.
    std::uint64_t frac = 0;
    std::uint64_t scale = 1;
    if (i < s.size() && s[i] == '.') {
      ++i;
      for (; i < s.size() && is_digit(s[i]); ++i) {
        any_digit = true;
        if (scale < 1'000'000'000'000'000ULL) {  // more digits than that cannot matter
          frac = frac * 10 + static_cast<std::uint64_t>(s[i] - '0');
          scale *= 10;
        }
      }
    }
    if (!any_digit) return fail(Errc::invalid_argument, "invalid duration '" + std::string(s) + "'");
    std::size_t j = i;
    while (j < s.size() && !is_digit(s[j]) && s[j] != '.') ++j;
    const std::string_view unit = s.substr(i, j - i);
    if (unit.empty()) return fail(Errc::invalid_argument, "missing unit in duration (ns, us, ms, s, m, h)");
    const std::uint64_t per = unit_ns(unit);
    if (per == 0) return fail(Errc::invalid_argument, "unknown unit '" + std::string(unit) + "' in duration (ns, us, ms, s, m, h)");
    if (whole > kMaxNs / per) return fail(Errc::invalid_argument, "duration out of range");
    std::uint64_t v = whole * per;
    if (frac != 0) {
      // frac/scale * per, without overflow: per <= 3.6e12 and frac < scale <= 1e18.
      const long double f = static_cast<long double>(frac) * static_cast<long double>(per) / static_cast<long double>(scale);
      v += static_cast<std::uint64_t>(f);
    }
    if (v > kMaxNs - total) return fail(Errc::invalid_argument, "duration out of range");
    total += v;
    s.remove_prefix(j);
  }
  return std::chrono::nanoseconds(static_cast<std::int64_t>(total));
}

std::string format_go_duration(std::chrono::nanoseconds d) {
  std::int64_t ns = d.count();
  if (ns == 0) return "0s";
  std::string out;
  if (ns < 0) {
    out.push_back('-');
    ns = -ns;
  }
  const auto u = static_cast<std::uint64_t>(ns);
  if (u < 1'000'000'000ULL) {
    // Sub-second: Go prints ms/us/ns with a fraction; keep it simple and exact.
    if (u % 1'000'000 == 0) return out + std::to_string(u / 1'000'000) + "ms";
    if (u % 1'000 == 0) return out + std::to_string(u / 1'000) + "\xC2\xB5s";
    return out + std::to_string(u) + "ns";
  }
  const std::uint64_t h = u / 3'600'000'000'000ULL;
  const std::uint64_t m = (u / 60'000'000'000ULL) % 60;
  const std::uint64_t sec_ns = u % 60'000'000'000ULL;
  if (h > 0) out += std::to_string(h) + "h";
  if (h > 0 || m > 0) out += std::to_string(m) + "m";
  out += std::to_string(sec_ns / 1'000'000'000ULL);
  std::uint64_t frac = sec_ns % 1'000'000'000ULL;
  if (frac != 0) {
    std::string digits = std::to_string(frac);
    digits.insert(0, 9 - digits.size(), '0');
    while (!digits.empty() && digits.back() == '0') digits.pop_back();
    out += "." + digits;
  }
  out += "s";
  return out;
}

}  // namespace rootseal::sync::model
