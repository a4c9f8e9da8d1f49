#include "rootseal/kms/numbers.hpp"

#include <charconv>
#include <limits>
#include <string>

namespace rootseal::kms {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

constexpr std::uint64_t kMaxNs = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
constexpr std::int64_t kMaxSeconds = std::numeric_limits<std::int64_t>::max() / 1'000'000'000;
constexpr std::int64_t kSecondsPerDay = 86'400;

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

Error out_of_range() { return {Errc::invalid_argument, "duration out of range"}; }

}  // namespace

Result<std::int64_t> parse_int(std::string_view text, std::int64_t min, std::int64_t max) {
  std::string_view digits = text;
  if (digits.starts_with('+')) {
    digits.remove_prefix(1);  // from_chars takes '-' only
    if (digits.starts_with('-')) return fail(Errc::invalid_argument, "not an integer");
  }
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec == std::errc::result_out_of_range) return fail(Errc::invalid_argument, "integer out of range");
  if (ec != std::errc{} || end != digits.data() + digits.size()) return fail(Errc::invalid_argument, "not an integer");
  if (value < min || value > max) {
    return fail(Errc::invalid_argument, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  }
  return value;
}

Result<nanoseconds> parse_go_duration(std::string_view s) {
  if (s.empty()) return fail(Errc::invalid_argument, "empty duration");
  if (s.front() == '-') return fail(Errc::invalid_argument, "negative duration");
  if (s.front() == '+') s.remove_prefix(1);
  if (s == "0") return nanoseconds(0);
  if (s.empty()) return fail(Errc::invalid_argument, "invalid duration");
  std::uint64_t total = 0;
  while (!s.empty()) {
    // Integer part: checked before each step, so `whole` stays <= kMaxNs.
    std::uint64_t whole = 0;
    std::size_t i = 0;
    bool any_digit = false;
    for (; i < s.size() && is_digit(s[i]); ++i) {
      any_digit = true;
      const auto digit = static_cast<std::uint64_t>(s[i] - '0');
      if (whole > (kMaxNs - digit) / 10) return std::unexpected(out_of_range());
      whole = whole * 10 + digit;
    }
    // Fraction: digits past 18 cannot change the result.
    std::uint64_t frac = 0;
    std::uint64_t scale = 1;
    if (i < s.size() && s[i] == '.') {
      ++i;
      for (; i < s.size() && is_digit(s[i]); ++i) {
        any_digit = true;
        if (scale < 1'000'000'000'000'000'000ULL) {
          frac = frac * 10 + static_cast<std::uint64_t>(s[i] - '0');
          scale *= 10;
        }
      }
    }
    if (!any_digit) return fail(Errc::invalid_argument, "invalid duration");
    std::size_t j = i;
    while (j < s.size() && !is_digit(s[j]) && s[j] != '.') ++j;
    const std::string_view unit = s.substr(i, j - i);
    if (unit.empty()) return fail(Errc::invalid_argument, "missing unit in duration (ns, us, ms, s, m, h)");
    const std::uint64_t per = unit_ns(unit);
    if (per == 0 && unit.size() <= 8) {
      return fail(Errc::invalid_argument, "unknown unit '" + std::string(unit) + "' in duration (ns, us, ms, s, m, h)");
    }
    if (per == 0) return fail(Errc::invalid_argument, "unknown unit in duration (ns, us, ms, s, m, h)");
    if (whole > kMaxNs / per) return std::unexpected(out_of_range());
    std::uint64_t v = whole * per;
    if (frac != 0) {
      // frac/scale of a unit: < per <= 3.6e12, computed without overflow.
      const long double f =
          static_cast<long double>(frac) * static_cast<long double>(per) / static_cast<long double>(scale);
      v += static_cast<std::uint64_t>(f);  // v <= kMaxNs + 3.6e12: no unsigned wrap
    }
    if (v > kMaxNs - total) return std::unexpected(out_of_range());
    total += v;
    s.remove_prefix(j);
  }
  return nanoseconds(static_cast<std::int64_t>(total));
}

Result<seconds> parse_vault_duration(std::string_view text) {
  if (text.empty()) return seconds(0);
  constexpr auto kAny = std::numeric_limits<std::int64_t>::max();
  if (auto n = parse_int(text, -kAny, kAny)) {
    if (*n < 0) return fail(Errc::invalid_argument, "negative duration");
    if (*n > kMaxSeconds) return std::unexpected(out_of_range());
    return seconds(*n);
  }
  if (text.ends_with('d')) {
    auto days = parse_int(text.substr(0, text.size() - 1), -kAny, kAny);
    if (!days) return fail(Errc::invalid_argument, "invalid duration");
    if (*days < 0) return fail(Errc::invalid_argument, "negative duration");
    if (*days > kMaxSeconds / kSecondsPerDay) return std::unexpected(out_of_range());
    return seconds(*days * kSecondsPerDay);
  }
  nanoseconds d{};
  ROOTSEAL_TRY_ASSIGN(d, parse_go_duration(text));
  return duration_cast<seconds>(d);
}

Result<milliseconds> parse_config_duration(std::string_view text, milliseconds max) {
  max = std::min(max, kLongestDelay);
  nanoseconds d{};
  if (!text.empty() && (is_digit(text.front()) || text.front() == '-' || text.front() == '+') &&
      text.find_first_not_of("+-0123456789") == std::string_view::npos) {
    std::int64_t n = 0;
    ROOTSEAL_TRY_ASSIGN(n, parse_int(text, 0, duration_cast<seconds>(max).count()));
    d = seconds(n);
  } else {
    ROOTSEAL_TRY_ASSIGN(d, parse_go_duration(text));
  }
  if (d > max) return std::unexpected(out_of_range());
  return duration_cast<milliseconds>(d);
}

std::optional<bool> parse_go_bool(std::string_view text) noexcept {
  for (std::string_view t : {"1", "t", "T", "TRUE", "true", "True"}) {
    if (text == t) return true;
  }
  for (std::string_view f : {"0", "f", "F", "FALSE", "false", "False"}) {
    if (text == f) return false;
  }
  return std::nullopt;
}

}  // namespace rootseal::kms
