// Sprig's date functions with Go's time package semantics (date_funcs.hpp):
// Format/Parse follow Go 1.19's time/format.go (nextStdChunk, appendFormat,
// parse), ParseDuration and Duration.String its format.go and time.go, zone
// lookups its zoneinfo.go and zoneinfo_read.go.
#include "date_funcs.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <fstream>
#include <iterator>
#include <mutex>
#include <unordered_map>

namespace rootseal::sync::tmpl {

using kms::Result;

// One zone period as Go's Location keeps it.
struct ZoneType {
  std::int32_t offset = 0;
  bool dst = false;
  std::string abbr;
};

struct Zone {
  std::vector<ZoneType> types;
  std::vector<std::int64_t> when;  // transitions (Go adds one at alpha when there are none)
  std::vector<std::uint8_t> index;
  std::string extend;  // the TZif footer: a POSIX TZ rule for times past the last transition
};

struct Time {
  std::int64_t sec = 0;  // Unix seconds
  std::int32_t nsec = 0;
  std::shared_ptr<const Zone> zone;
  bool mono = false;  // a reading of now: Go's monotonic clock
  std::int64_t mono_ns = 0;
};

namespace date {
namespace {

constexpr std::int64_t kAlpha = INT64_MIN;
constexpr std::int64_t kOmega = INT64_MAX;
constexpr std::int64_t kSecPerDay = 86400;
// The years 1 to 9999: Go's time has a wider range, but its arithmetic
// wraps beyond it; rootseal refuses times outside this range.
constexpr std::int64_t kMinSec = -62135596800;
constexpr std::int64_t kMaxSec = 253402300799;

std::unexpected<kms::Error> fail(std::string_view what) {
  return kms::fail(kms::Errc::invalid_argument, "template: " + std::string(what));
}

// --- Calendar (proleptic Gregorian, as Go's) -------------------------------

std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

struct Civil {
  std::int64_t year, month, day, yday, weekday, hour, minute, second;
};

std::int64_t floor_div(std::int64_t a, std::int64_t b) { return a / b - ((a % b != 0 && (a < 0) != (b < 0)) ? 1 : 0); }

Civil civil(std::int64_t local_sec) {
  const std::int64_t days = floor_div(local_sec, kSecPerDay);
  const std::int64_t rem = local_sec - days * kSecPerDay;
  std::int64_t z = days + 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  Civil c{};
  c.day = doy - (153 * mp + 2) / 5 + 1;
  c.month = mp < 10 ? mp + 3 : mp - 9;
  c.year = static_cast<std::int64_t>(yoe) + era * 400 + (c.month <= 2 ? 1 : 0);
  c.yday = days - days_from_civil(c.year, 1, 1) + 1;
  c.weekday = ((days + 4) % 7 + 7) % 7;
  c.hour = rem / 3600;
  c.minute = rem / 60 % 60;
  c.second = rem % 60;
  return c;
}

bool is_leap(std::int64_t y) { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }
int days_in(int month, std::int64_t year) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && is_leap(year) ? 29 : kDays[month - 1];
}

// --- Zones ------------------------------------------------------------------

struct Period {
  std::string_view abbr;
  std::int32_t offset;
  std::int64_t start, end;
  bool dst;
};

std::shared_ptr<const Zone> fixed_zone(std::string abbr, std::int32_t offset) {
  auto z = std::make_shared<Zone>();
  z->types.push_back({offset, false, std::move(abbr)});
  z->when.push_back(kAlpha);
  z->index.push_back(0);
  return z;
}

const std::shared_ptr<const Zone>& utc_zone() {
  static const auto z = fixed_zone("UTC", 0);
  return z;
}

// Go's tzset and its helpers (zoneinfo.go): the zone a POSIX TZ rule
// gives at sec; nullopt when the rule is malformed (the last transition's
// zone holds then).
struct TzRule {
  enum class Kind : std::uint8_t { julian, doy, month_week_day } kind = Kind::doy;
  int day = 0, week = 0, mon = 0, time = 0;
};

std::optional<std::pair<std::string_view, std::string_view>> tzset_name(std::string_view s) {
  if (s.empty()) return std::nullopt;
  if (s[0] != '<') {
    for (std::size_t i = 0; i < s.size(); ++i) {
      const char r = s[i];
      if ((r >= '0' && r <= '9') || r == ',' || r == '-' || r == '+') {
        if (i < 3) return std::nullopt;
        return std::make_pair(s.substr(0, i), s.substr(i));
      }
    }
    if (s.size() < 3) return std::nullopt;
    return std::make_pair(s, std::string_view());
  }
  const auto close = s.find('>');
  if (close == std::string_view::npos) return std::nullopt;
  return std::make_pair(s.substr(1, close - 1), s.substr(close + 1));
}

std::optional<int> tzset_num(std::string_view& s, int min, int max) {
  if (s.empty()) return std::nullopt;
  int num = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char r = s[i];
    if (r < '0' || r > '9') {
      if (i == 0 || num < min) return std::nullopt;
      s.remove_prefix(i);
      return num;
    }
    num = num * 10 + (r - '0');
    if (num > max) return std::nullopt;
  }
  if (num < min) return std::nullopt;
  s = {};
  return num;
}

std::optional<int> tzset_offset(std::string_view& s) {
  if (s.empty()) return std::nullopt;
  bool neg = false;
  if (s[0] == '+') {
    s.remove_prefix(1);
  } else if (s[0] == '-') {
    s.remove_prefix(1);
    neg = true;
  }
  const auto hours = tzset_num(s, 0, 24 * 7);
  if (!hours) return std::nullopt;
  int off = *hours * 3600;
  for (const int unit : {60, 1}) {
    if (s.empty() || s[0] != ':') break;
    s.remove_prefix(1);
    const auto n = tzset_num(s, 0, 59);
    if (!n) return std::nullopt;
    off += *n * unit;
  }
  return neg ? -off : off;
}

std::optional<TzRule> tzset_rule(std::string_view& s) {
  TzRule r;
  if (s.empty()) return std::nullopt;
  if (s[0] == 'J') {
    s.remove_prefix(1);
    const auto jday = tzset_num(s, 1, 365);
    if (!jday) return std::nullopt;
    r.kind = TzRule::Kind::julian;
    r.day = *jday;
  } else if (s[0] == 'M') {
    s.remove_prefix(1);
    const auto mon = tzset_num(s, 1, 12);
    if (!mon || s.empty() || s[0] != '.') return std::nullopt;
    s.remove_prefix(1);
    const auto week = tzset_num(s, 1, 5);
    if (!week || s.empty() || s[0] != '.') return std::nullopt;
    s.remove_prefix(1);
    const auto day = tzset_num(s, 0, 6);
    if (!day) return std::nullopt;
    r.kind = TzRule::Kind::month_week_day;
    r.day = *day;
    r.week = *week;
    r.mon = *mon;
  } else {
    const auto day = tzset_num(s, 0, 365);
    if (!day) return std::nullopt;
    r.kind = TzRule::Kind::doy;
    r.day = *day;
  }
  if (s.empty() || s[0] != '/') {
    r.time = 2 * 3600;
    return r;
  }
  s.remove_prefix(1);
  const auto off = tzset_offset(s);
  if (!off) return std::nullopt;
  r.time = *off;
  return r;
}

int tzrule_time(std::int64_t year, const TzRule& r, int off) {
  static constexpr int kBefore[] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365};
  std::int64_t s = 0;
  switch (r.kind) {
    case TzRule::Kind::julian:
      s = std::int64_t{r.day - 1} * kSecPerDay;
      if (is_leap(year) && r.day >= 60) s += kSecPerDay;
      break;
    case TzRule::Kind::doy:
      s = std::int64_t{r.day} * kSecPerDay;
      break;
    case TzRule::Kind::month_week_day: {
      const int m1 = (r.mon + 9) % 12 + 1;
      std::int64_t yy0 = year;
      if (r.mon <= 2) --yy0;
      const std::int64_t yy1 = yy0 / 100, yy2 = yy0 % 100;
      std::int64_t dow = ((26 * m1 - 2) / 10 + 1 + yy2 + yy2 / 4 + yy1 / 4 - 2 * yy1) % 7;
      if (dow < 0) dow += 7;
      std::int64_t d = r.day - dow;
      if (d < 0) d += 7;
      for (int i = 1; i < r.week; ++i) {
        if (d + 7 >= days_in(r.mon, year)) break;
        d += 7;
      }
      d += kBefore[r.mon - 1];
      if (is_leap(year) && r.mon > 2) ++d;
      s = d * kSecPerDay;
      break;
    }
  }
  return static_cast<int>(s + r.time - off);
}

std::optional<Period> tzset(std::string_view s, std::int64_t last_tx, std::int64_t sec) {
  auto std_name = tzset_name(s);
  if (!std_name) return std::nullopt;
  s = std_name->second;
  auto std_off = tzset_offset(s);
  if (!std_off) return std::nullopt;
  int std_offset = -*std_off;
  std::string_view stdn = std_name->first;
  if (s.empty() || s[0] == ',') return Period{stdn, std_offset, last_tx, kOmega, false};
  auto dst_name = tzset_name(s);
  if (!dst_name) return std::nullopt;
  s = dst_name->second;
  std::string_view dstn = dst_name->first;
  int dst_offset = 0;
  if (s.empty() || s[0] == ',') {
    dst_offset = std_offset + 3600;
  } else {
    const auto off = tzset_offset(s);
    if (!off) return std::nullopt;
    dst_offset = -*off;
  }
  if (s.empty()) s = ",M3.2.0,M11.1.0";
  if (s[0] != ',' && s[0] != ';') return std::nullopt;
  s.remove_prefix(1);
  const auto start_rule = tzset_rule(s);
  if (!start_rule || s.empty() || s[0] != ',') return std::nullopt;
  s.remove_prefix(1);
  const auto end_rule = tzset_rule(s);
  if (!end_rule || !s.empty()) return std::nullopt;
  const Civil c = civil(sec);
  const std::int64_t ysec = std::int64_t{c.yday - 1} * kSecPerDay + sec % kSecPerDay;
  const std::int64_t abs = days_from_civil(c.year, 1, 1) * kSecPerDay;
  std::int64_t start_sec = tzrule_time(c.year, *start_rule, std_offset);
  std::int64_t end_sec = tzrule_time(c.year, *end_rule, dst_offset);
  // Southern hemisphere: the names, offsets and DST flags change places.
  bool std_is_dst = false;
  if (end_sec < start_sec) {
    std::swap(start_sec, end_sec);
    std::swap(stdn, dstn);
    std::swap(std_offset, dst_offset);
    std_is_dst = true;
  }
  if (ysec < start_sec) return Period{stdn, std_offset, abs, start_sec + abs, std_is_dst};
  if (ysec >= end_sec) return Period{stdn, std_offset, end_sec + abs, abs + 365 * kSecPerDay, std_is_dst};
  return Period{dstn, dst_offset, start_sec + abs, end_sec + abs, !std_is_dst};
}

// Go's Location.lookup.
Result<Period> lookup(const Zone& z, std::int64_t sec) {
  if (z.types.empty()) return Period{"UTC", 0, kAlpha, kOmega, false};
  if (z.when.empty() || sec < z.when.front()) {
    // lookupFirstZone
    std::size_t first = 0;
    const bool used = std::find(z.index.begin(), z.index.end(), 0) != z.index.end();
    if (used) {
      bool found = false;
      if (!z.index.empty() && z.types[z.index.front()].dst) {
        for (int zi = static_cast<int>(z.index.front()) - 1; zi >= 0 && !found; --zi) {
          if (!z.types[static_cast<std::size_t>(zi)].dst) {
            first = static_cast<std::size_t>(zi);
            found = true;
          }
        }
      }
      for (std::size_t zi = 0; zi < z.types.size() && !found; ++zi) {
        if (!z.types[zi].dst) {
          first = zi;
          found = true;
        }
      }
      if (!found) first = 0;
    }
    const auto& t = z.types[first];
    return Period{t.abbr, t.offset, kAlpha, z.when.empty() ? kOmega : z.when.front(), t.dst};
  }
  std::int64_t end = kOmega;
  std::size_t lo = 0, hi = z.when.size();
  while (hi - lo > 1) {
    const std::size_t m = lo + (hi - lo) / 2;
    if (sec < z.when[m]) {
      end = z.when[m];
      hi = m;
    } else {
      lo = m;
    }
  }
  const auto& t = z.types[z.index[lo]];
  if (lo == z.when.size() - 1 && !z.extend.empty()) {
    if (auto p = tzset(z.extend, z.when[lo], sec)) return *p;
  }
  return Period{t.abbr, t.offset, z.when[lo], end, t.dst};
}

std::uint32_t be32(std::string_view d, std::size_t at) {
  return (static_cast<std::uint32_t>(static_cast<unsigned char>(d[at])) << 24) |
         (static_cast<std::uint32_t>(static_cast<unsigned char>(d[at + 1])) << 16) |
         (static_cast<std::uint32_t>(static_cast<unsigned char>(d[at + 2])) << 8) |
         static_cast<std::uint32_t>(static_cast<unsigned char>(d[at + 3]));
}

// Go's LoadLocationFromTZData for TZif data: version 1, or 2 and 3 with
// 64-bit times and a footer. As Go: other versions are refused and the
// second header's magic is not checked. Unlike Go: transition times must
// ascend strictly (RFC 8536 section 3.2), else the data is refused; Go
// takes them as they come, and its binary search (lookup) then answers for
// an order the file does not have.
std::shared_ptr<const Zone> read_tzif(std::string_view d) {
  std::array<std::uint32_t, 6> n{};  // isutcnt isstdcnt leapcnt timecnt typecnt charcnt
  const auto counts = [&](std::size_t at) {
    if (d.size() < at + 24) return false;
    for (std::size_t k = 0; k < 6; ++k) n[k] = be32(d, at + 4 * k);
    return true;
  };
  if (d.size() < 20 || d.substr(0, 4) != "TZif") return nullptr;
  const char version = d[4];
  if (version != '\0' && version != '2' && version != '3') return nullptr;
  if (!counts(20)) return nullptr;
  std::size_t at = 44;
  std::size_t tsize = 4;
  const auto block = [&](std::size_t ts) {
    return std::size_t{n[3]} * ts + n[3] + std::size_t{n[4]} * 6 + n[5] + std::size_t{n[2]} * (ts + 4) + n[1] + n[0];
  };
  if (version != '\0') {
    at += block(4) + 20;  // the version 1 data, then the second header's magic and version
    if (!counts(at)) return nullptr;
    at += 24;
    tsize = 8;
  }
  if (d.size() < at + block(tsize) || n[4] == 0) return nullptr;
  auto z = std::make_shared<Zone>();
  const std::size_t tx = at, idx = tx + std::size_t{n[3]} * tsize, types = idx + n[3],
                    chars = types + std::size_t{n[4]} * 6;
  for (std::uint32_t k = 0; k < n[4]; ++k) {
    const std::size_t p = types + std::size_t{k} * 6;
    ZoneType t;
    t.offset = static_cast<std::int32_t>(be32(d, p));
    t.dst = d[p + 4] != 0;
    const auto ai = static_cast<unsigned char>(d[p + 5]);
    if (ai >= n[5]) return nullptr;
    const auto abbr = d.substr(chars + ai, n[5] - ai);
    t.abbr = std::string(abbr.substr(0, abbr.find('\0')));
    z->types.push_back(std::move(t));
  }
  for (std::uint32_t k = 0; k < n[3]; ++k) {
    std::int64_t w = 0;
    if (tsize == 8) {
      const std::size_t p = tx + std::size_t{8} * k;
      w = static_cast<std::int64_t>((std::uint64_t{be32(d, p)} << 32) | be32(d, p + 4));
    } else {
      w = static_cast<std::int32_t>(be32(d, tx + std::size_t{4} * k));
    }
    const auto i = static_cast<std::uint8_t>(d[idx + k]);
    if (i >= n[4] || (!z->when.empty() && w <= z->when.back())) return nullptr;
    z->when.push_back(w);
    z->index.push_back(i);
  }
  if (z->when.empty()) {
    z->when.push_back(kAlpha);
    z->index.push_back(0);
  }
  // The footer, as Go reads it: whatever follows the data between two
  // newlines, in version 1 data too.
  const auto rest = d.substr(at + block(tsize));
  if (rest.size() > 2 && rest.front() == '\n' && rest.back() == '\n')
    z->extend = std::string(rest.substr(1, rest.size() - 2));
  return z;
}

std::shared_ptr<const Zone> load_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return nullptr;
  std::string data;
  char buf[4096];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    data.append(buf, static_cast<std::size_t>(in.gcount()));
    if (data.size() > (10u << 20)) return nullptr;  // Go's readFile cap
  }
  return read_tzif(data);
}

std::shared_ptr<const Zone> load_named(const std::string& name) {
  static constexpr const char* kDirs[] = {"/usr/share/zoneinfo/", "/usr/share/lib/zoneinfo/", "/usr/lib/locale/TZ/"};
  for (const char* dir : kDirs) {
    if (auto z = load_file(dir + name)) return z;
  }
  return nullptr;
}

// Go's initLocal.
const std::shared_ptr<const Zone>& local_zone() {
  static const std::shared_ptr<const Zone> z = []() -> std::shared_ptr<const Zone> {
    const char* env = std::getenv("TZ");  // NOLINT(concurrency-mt-unsafe): read once
    if (env == nullptr) {
      if (auto l = load_file("/etc/localtime")) return l;
    } else {
      std::string tz = env;
      if (!tz.empty() && tz[0] == ':') tz.erase(0, 1);
      if (!tz.empty() && tz[0] == '/') {
        if (auto l = load_file(tz)) return l;
      } else if (!tz.empty() && tz != "UTC") {
        if (auto l = load_named(tz)) return l;
      }
    }
    return utc_zone();
  }();
  return z;
}

// Go's LoadLocation; nullptr where Go fails (Sprig then uses UTC).
std::shared_ptr<const Zone> load_location(std::string_view name) {
  if (name.empty() || name == "UTC") return utc_zone();
  if (name == "Local") return local_zone();
  if (name.find("..") != std::string_view::npos || name[0] == '/' || name[0] == '\\' ||
      name.find('\0') != std::string_view::npos || name.size() > 255)
    return nullptr;
  static std::mutex mu;
  static std::unordered_map<std::string, std::shared_ptr<const Zone>> cache;
  const std::lock_guard lock(mu);
  if (auto it = cache.find(std::string(name)); it != cache.end()) return it->second;
  auto z = load_named(std::string(name));
  if (cache.size() < 1024) cache.emplace(std::string(name), z);
  return z;
}

// --- Clock --------------------------------------------------------------------

const auto kProcessStart = std::chrono::steady_clock::now();
std::mutex g_clock_mu;
std::optional<std::pair<std::int64_t, std::int32_t>> g_clock;

Time now_time() {
  Time t;
  t.zone = local_zone();
  {
    const std::lock_guard lock(g_clock_mu);
    if (g_clock) {
      t.sec = g_clock->first;
      t.nsec = g_clock->second;
      return t;
    }
  }
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  t.sec = ts.tv_sec;
  t.nsec = static_cast<std::int32_t>(ts.tv_nsec);
  t.mono = true;
  // Go's startNano is one nanosecond before the first reading.
  t.mono_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - kProcessStart).count() +
      1;
  return t;
}

Value time_value(Time t) {
  Value v;
  v.kind = Value::Kind::time;
  v.t = std::make_shared<const Time>(std::move(t));
  return v;
}

Result<Value> checked(Time t) {
  if (t.sec < kMinSec || t.sec > kMaxSec) return fail("times outside the years 1 to 9999 are not supported");
  return time_value(std::move(t));
}

// --- Format -------------------------------------------------------------------

enum Std : int {
  kNone = 0,
  kLongMonth,
  kMonth,
  kNumMonth,
  kZeroMonth,
  kLongWeekDay,
  kWeekDay,
  kDay,
  kUnderDay,
  kZeroDay,
  kUnderYearDay,
  kZeroYearDay,
  kHour,
  kHour12,
  kZeroHour12,
  kMinute,
  kZeroMinute,
  kSecond,
  kZeroSecond,
  kLongYear,
  kYear,
  kPM,
  kpm,
  kTZ,
  kISO8601TZ,
  kISO8601SecondsTZ,
  kISO8601ShortTZ,
  kISO8601ColonTZ,
  kISO8601ColonSecondsTZ,
  kNumTZ,
  kNumSecondsTz,
  kNumShortTZ,
  kNumColonTZ,
  kNumColonSecondsTZ,
  kFracSecond0,
  kFracSecond9,
};

struct Chunk {
  std::size_t prefix = 0;  // literal text before the element
  Std std = kNone;
  std::size_t len = 0;  // the element's length in the layout
  int digits = 0;       // fractional seconds: digits
  char sep = '.';       // and separator
};

bool lower_start(std::string_view s) { return !s.empty() && s[0] >= 'a' && s[0] <= 'z'; }
bool digit_at(std::string_view s, std::size_t i) { return i < s.size() && s[i] >= '0' && s[i] <= '9'; }

// Go's nextStdChunk.
// NOLINTNEXTLINE(readability-function-size): Go's nextStdChunk case by case, in one piece to be read against Go's source
Chunk next_chunk(std::string_view l) {
  const auto at = [&](std::size_t i, std::string_view w) { return l.substr(i, w.size()) == w; };
  for (std::size_t i = 0; i < l.size(); ++i) {
    const auto hit = [&](Std s, std::size_t n) { return Chunk{i, s, n, 0, '.'}; };
    switch (l[i]) {
      case 'J':
        if (at(i, "Jan")) {
          if (at(i, "January")) return hit(kLongMonth, 7);
          if (!lower_start(l.substr(i + 3))) return hit(kMonth, 3);
        }
        break;
      case 'M':
        if (l.size() >= i + 3) {
          if (at(i, "Mon")) {
            if (at(i, "Monday")) return hit(kLongWeekDay, 6);
            if (!lower_start(l.substr(i + 3))) return hit(kWeekDay, 3);
          }
          if (at(i, "MST")) return hit(kTZ, 3);
        }
        break;
      case '0':
        if (l.size() >= i + 2 && l[i + 1] >= '1' && l[i + 1] <= '6') {
          static constexpr Std k0x[] = {kZeroMonth, kZeroDay, kZeroHour12, kZeroMinute, kZeroSecond, kYear};
          return hit(k0x[l[i + 1] - '1'], 2);
        }
        if (at(i, "002")) return hit(kZeroYearDay, 3);
        break;
      case '1':
        if (at(i, "15")) return hit(kHour, 2);
        return hit(kNumMonth, 1);
      case '2':
        if (at(i, "2006")) return hit(kLongYear, 4);
        return hit(kDay, 1);
      case '_':
        if (l.size() >= i + 2 && l[i + 1] == '2') {
          if (at(i + 1, "2006")) return Chunk{i + 1, kLongYear, 4, 0, '.'};
          return hit(kUnderDay, 2);
        }
        if (at(i, "__2")) return hit(kUnderYearDay, 3);
        break;
      case '3':
        return hit(kHour12, 1);
      case '4':
        return hit(kMinute, 1);
      case '5':
        return hit(kSecond, 1);
      case 'P':
        if (at(i, "PM")) return hit(kPM, 2);
        break;
      case 'p':
        if (at(i, "pm")) return hit(kpm, 2);
        break;
      case '-':
      case 'Z': {
        // -070000 -07:00:00 -0700 -07:00 -07 and their Z (ISO 8601) forms.
        struct Offset {
          std::string_view text;
          Std num, iso;
        };
        static constexpr Offset kOffsets[] = {{"070000", kNumSecondsTz, kISO8601SecondsTZ},
                                              {"07:00:00", kNumColonSecondsTZ, kISO8601ColonSecondsTZ},
                                              {"0700", kNumTZ, kISO8601TZ},
                                              {"07:00", kNumColonTZ, kISO8601ColonTZ},
                                              {"07", kNumShortTZ, kISO8601ShortTZ}};
        for (const auto& o : kOffsets) {
          if (at(i + 1, o.text)) return hit(l[i] == '-' ? o.num : o.iso, o.text.size() + 1);
        }
        break;
      }
      case '.':
      case ',':
        if (i + 1 < l.size() && (l[i + 1] == '0' || l[i + 1] == '9')) {
          const char ch = l[i + 1];
          std::size_t j = i + 1;
          while (j < l.size() && l[j] == ch) ++j;
          if (!digit_at(l, j)) {
            return Chunk{i, ch == '0' ? kFracSecond0 : kFracSecond9, j - i, static_cast<int>(j - (i + 1)), l[i]};
          }
        }
        break;
      default:
        break;
    }
  }
  return Chunk{l.size(), kNone, 0, 0, '.'};
}

void append_int(SecureBuffer& out, std::int64_t x, int width) {
  std::uint64_t u = static_cast<std::uint64_t>(x);
  if (x < 0) {
    out.append("-");
    u = -u;
  }
  char buf[24];
  int n = 0;
  do {
    buf[n++] = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u > 0);
  for (int k = n; k < width; ++k) out.append("0");
  while (n > 0) out.append(std::string_view(&buf[--n], 1));
}

constexpr std::string_view kLongMonths[] = {"January", "February", "March",     "April",   "May",      "June",
                                            "July",    "August",   "September", "October", "November", "December"};
constexpr std::string_view kShortMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr std::string_view kLongDays[] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};
constexpr std::string_view kShortDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};

// Go's Time.AppendFormat with the time in zone z.
// NOLINTNEXTLINE(readability-function-size): Go's appendFormat, one case per layout chunk, read against Go's source
Result<void> format(const Time& t, const Zone& z, std::string_view layout, SecureBuffer& out) {
  ROOTSEAL_LET(p, lookup(z, t.sec));
  const Civil c = civil(t.sec + p.offset);
  while (!layout.empty()) {
    const Chunk ch = next_chunk(layout);
    out.append(layout.substr(0, ch.prefix));
    if (ch.std == kNone) break;
    layout.remove_prefix(ch.prefix + ch.len);
    switch (ch.std) {
      case kYear:
        append_int(out, (c.year < 0 ? -c.year : c.year) % 100, 2);
        break;
      case kLongYear:
        append_int(out, c.year, 4);
        break;
      case kMonth:
      case kLongMonth:
        out.append(ch.std == kMonth ? kShortMonths[c.month - 1] : kLongMonths[c.month - 1]);
        break;
      case kWeekDay:
      case kLongWeekDay:
        out.append(ch.std == kWeekDay ? kShortDays[c.weekday] : kLongDays[c.weekday]);
        break;
      case kDay:
      case kUnderDay:
      case kZeroDay:
        if (ch.std == kUnderDay && c.day < 10) out.append(" ");
        append_int(out, c.day, ch.std == kZeroDay ? 2 : 0);
        break;
      case kUnderYearDay:
        if (c.yday < 100) out.append(c.yday < 10 ? "  " : " ");
        append_int(out, c.yday, 0);
        break;
      case kHour12:
      case kZeroHour12:
        append_int(out, c.hour % 12 == 0 ? 12 : c.hour % 12, ch.std == kZeroHour12 ? 2 : 0);
        break;
      case kNumMonth:
      case kZeroMonth:
      case kZeroYearDay:
      case kHour:
      case kMinute:
      case kZeroMinute:
      case kSecond:
      case kZeroSecond: {
        // The other numbers: the field, padded with zeros to Go's width.
        struct Numeric {
          Std std;
          std::int64_t Civil::* field;
          int width;
        };
        static constexpr Numeric kNumeric[] = {{kNumMonth, &Civil::month, 0},   {kZeroMonth, &Civil::month, 2},
                                               {kZeroYearDay, &Civil::yday, 3}, {kHour, &Civil::hour, 2},
                                               {kMinute, &Civil::minute, 0},    {kZeroMinute, &Civil::minute, 2},
                                               {kSecond, &Civil::second, 0},    {kZeroSecond, &Civil::second, 2}};
        for (const auto& n : kNumeric) {
          if (n.std == ch.std) append_int(out, c.*n.field, n.width);
        }
        break;
      }
      case kPM:
        out.append(c.hour >= 12 ? "PM" : "AM");
        break;
      case kpm:
        out.append(c.hour >= 12 ? "pm" : "am");
        break;
      case kTZ:
        if (!p.abbr.empty()) {
          out.append(p.abbr);
          break;
        }
        {
          std::int32_t zone = p.offset / 60;
          if (zone < 0) {
            out.append("-");
            zone = -zone;
          } else {
            out.append("+");
          }
          append_int(out, zone / 60, 2);
          append_int(out, zone % 60, 2);
        }
        break;
      case kFracSecond0:
      case kFracSecond9: {
        if (ch.digits > 9) return fail("a layout with more than 9 fractional-second digits is not supported");
        const bool trim = ch.std == kFracSecond9;
        if (trim && (ch.digits == 0 || t.nsec == 0)) break;
        SecureBuffer frac(16);
        append_int(frac, t.nsec, 9);
        std::string_view digits(reinterpret_cast<const char*>(frac.data()), static_cast<std::size_t>(ch.digits));
        if (trim) {
          while (!digits.empty() && digits.back() == '0') digits.remove_suffix(1);
          if (digits.empty()) break;
        }
        out.append(std::string_view(&ch.sep, 1));
        out.append(digits);
        break;
      }
      case kNone:
        break;
      default: {  // the numeric zone offsets; Z for UTC in the ISO 8601 forms
        const bool iso = ch.std == kISO8601TZ || ch.std == kISO8601ColonTZ || ch.std == kISO8601SecondsTZ ||
                         ch.std == kISO8601ShortTZ || ch.std == kISO8601ColonSecondsTZ;
        if (p.offset == 0 && iso) {
          out.append("Z");
          break;
        }
        std::int32_t zone = p.offset / 60;
        std::int64_t abs = p.offset;  // Go's int: -(-2^31) fits
        if (zone < 0) {
          out.append("-");
          zone = -zone;
          abs = -abs;
        } else {
          out.append("+");
        }
        append_int(out, zone / 60, 2);
        if (ch.std == kISO8601ColonTZ || ch.std == kNumColonTZ || ch.std == kISO8601ColonSecondsTZ ||
            ch.std == kNumColonSecondsTZ)
          out.append(":");
        if (ch.std != kNumShortTZ && ch.std != kISO8601ShortTZ) append_int(out, zone % 60, 2);
        if (ch.std == kISO8601SecondsTZ || ch.std == kNumSecondsTz || ch.std == kNumColonSecondsTZ ||
            ch.std == kISO8601ColonSecondsTZ) {
          if (ch.std == kNumColonSecondsTZ || ch.std == kISO8601ColonSecondsTZ) out.append(":");
          append_int(out, abs % 60, 2);
        }
        break;
      }
    }
  }
  return {};
}

// --- Durations ------------------------------------------------------------------

// time.ParseDuration; nullopt where Go fails.
std::optional<std::int64_t> parse_duration(std::string_view s) {
  std::uint64_t d = 0;
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return 0;
  if (s.empty()) return std::nullopt;
  constexpr std::uint64_t kLimit = std::uint64_t{1} << 63;
  while (!s.empty()) {
    if (!(s[0] == '.' || (s[0] >= '0' && s[0] <= '9'))) return std::nullopt;
    std::uint64_t v = 0;
    std::size_t i = 0;
    for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
      if (v > kLimit / 10) return std::nullopt;
      v = v * 10 + static_cast<std::uint64_t>(s[i] - '0');
      if (v > kLimit) return std::nullopt;
    }
    const bool pre = i > 0;
    s.remove_prefix(i);
    std::uint64_t f = 0;
    double scale = 1;
    bool post = false;
    if (!s.empty() && s[0] == '.') {
      s.remove_prefix(1);
      std::size_t k = 0;
      bool overflow = false;
      for (; k < s.size() && s[k] >= '0' && s[k] <= '9'; ++k) {
        if (overflow) continue;
        if (f > (kLimit - 1) / 10) {
          overflow = true;
          continue;
        }
        const std::uint64_t y = f * 10 + static_cast<std::uint64_t>(s[k] - '0');
        if (y > kLimit) {
          overflow = true;
          continue;
        }
        f = y;
        scale *= 10;
      }
      post = k > 0;
      s.remove_prefix(k);
    }
    if (!pre && !post) return std::nullopt;
    std::size_t u = 0;
    while (u < s.size() && s[u] != '.' && !(s[u] >= '0' && s[u] <= '9')) ++u;
    if (u == 0) return std::nullopt;
    const auto unit_name = s.substr(0, u);
    s.remove_prefix(u);
    std::uint64_t unit = 0;
    if (unit_name == "ns") {
      unit = 1;
    } else if (unit_name == "us" || unit_name == "\xc2\xb5s" || unit_name == "\xce\xbcs") {
      unit = 1000;
    } else if (unit_name == "ms") {
      unit = 1000000;
    } else if (unit_name == "s") {
      unit = 1000000000;
    } else if (unit_name == "m") {
      unit = 60000000000;
    } else if (unit_name == "h") {
      unit = 3600000000000;
    } else {
      return std::nullopt;
    }
    if (v > kLimit / unit) return std::nullopt;
    v *= unit;
    if (f > 0) {
      v += static_cast<std::uint64_t>(static_cast<double>(f) * (static_cast<double>(unit) / scale));
      if (v > kLimit) return std::nullopt;
    }
    d += v;
    if (d > kLimit) return std::nullopt;
  }
  if (neg) return static_cast<std::int64_t>(-d);
  if (d > kLimit - 1) return std::nullopt;
  return static_cast<std::int64_t>(d);
}

// Duration.String.
std::string duration_string(std::int64_t d) {
  char buf[32];
  std::size_t w = sizeof buf;
  std::uint64_t u = static_cast<std::uint64_t>(d);
  const bool neg = d < 0;
  if (neg) u = -u;
  const auto frac = [&](std::uint64_t v, int prec) {
    bool print = false;
    for (int i = 0; i < prec; ++i) {
      const auto digit = v % 10;
      print = print || digit != 0;
      if (print) buf[--w] = static_cast<char>('0' + digit);
      v /= 10;
    }
    if (print) buf[--w] = '.';
    return v;
  };
  const auto integer = [&](std::uint64_t v) {
    if (v == 0) {
      buf[--w] = '0';
    } else {
      for (; v > 0; v /= 10) buf[--w] = static_cast<char>('0' + v % 10);
    }
  };
  if (u < 1000000000) {
    int prec = 0;
    buf[--w] = 's';
    if (u == 0) return "0s";
    if (u < 1000) {
      buf[--w] = 'n';
    } else if (u < 1000000) {
      prec = 3;
      buf[--w] = '\xb5';
      buf[--w] = '\xc2';
    } else {
      prec = 6;
      buf[--w] = 'm';
    }
    u = frac(u, prec);
    integer(u);
  } else {
    buf[--w] = 's';
    u = frac(u, 9);
    integer(u % 60);
    u /= 60;
    if (u > 0) {
      buf[--w] = 'm';
      integer(u % 60);
      u /= 60;
      if (u > 0) {
        buf[--w] = 'h';
        integer(u);
      }
    }
  }
  if (neg) buf[--w] = '-';
  return std::string(buf + w, sizeof buf - w);
}

// t.Sub(u) for the times here (well within Duration's range: ~292 years
// would overflow; Go saturates, as here).
std::int64_t sub(const Time& t, const Time& u) {
  if (t.mono && u.mono) return t.mono_ns - u.mono_ns;
  const std::int64_t secs = t.sec - u.sec;  // both within the years 1 to 9999: no overflow
  std::int64_t d = 0;
  if (__builtin_mul_overflow(secs, std::int64_t{1000000000}, &d) || __builtin_add_overflow(d, t.nsec - u.nsec, &d))
    return secs < 0 ? INT64_MIN : INT64_MAX;
  return d;
}

// Go's int64 addition (wraps).
std::int64_t wrap_add(std::int64_t a, std::int64_t b) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) + static_cast<std::uint64_t>(b));
}

// Duration.Round(time.Second).
std::int64_t round_second(std::int64_t d) {
  constexpr std::int64_t m = 1000000000;
  std::int64_t r = d % m;
  const auto less_than_half = [](std::int64_t x, std::int64_t y) {
    return static_cast<std::uint64_t>(x) + static_cast<std::uint64_t>(x) < static_cast<std::uint64_t>(y);
  };
  if (d < 0) {
    r = -r;
    if (less_than_half(r, m)) return d + r;
    if (const std::int64_t d1 = wrap_add(d, r - m); d1 < d) return d1;
    return INT64_MIN;
  }
  if (less_than_half(r, m)) return d - r;
  if (const std::int64_t d1 = wrap_add(d, m - r); d1 > d) return d1;
  return INT64_MAX;
}

// t.Add(d): keeps the zone and the monotonic reading (Go drops the reading
// when it would overflow).
Result<Value> add(const Time& t, std::int64_t d) {
  Time r = t;
  std::int64_t dsec = d / 1000000000;
  std::int64_t nsec = t.nsec + d % 1000000000;
  if (nsec >= 1000000000) {
    ++dsec;
    nsec -= 1000000000;
  } else if (nsec < 0) {
    --dsec;
    nsec += 1000000000;
  }
  r.sec = t.sec + dsec;
  r.nsec = static_cast<std::int32_t>(nsec);
  if (r.mono) {
    const std::int64_t te = wrap_add(t.mono_ns, d);
    if ((d < 0 && te > t.mono_ns) || (d > 0 && te < t.mono_ns)) {
      r.mono = false;
    } else {
      r.mono_ns = te;
    }
  }
  return checked(std::move(r));
}

// --- Parse ----------------------------------------------------------------------

struct ParseFail {};

bool match_fold(std::string_view a, std::string_view b) {
  for (std::size_t i = 0; i < a.size(); ++i) {
    char c1 = a[i], c2 = b[i];
    if (c1 != c2) {
      c1 = static_cast<char>(c1 | 0x20);
      c2 = static_cast<char>(c2 | 0x20);
      if (c1 != c2 || c1 < 'a' || c1 > 'z') return false;
    }
  }
  return true;
}

template <std::size_t N>
std::optional<int> lookup_name(const std::string_view (&tab)[N], std::string_view& v) {
  for (std::size_t i = 0; i < N; ++i) {
    if (v.size() >= tab[i].size() && match_fold(v.substr(0, tab[i].size()), tab[i])) {
      v.remove_prefix(tab[i].size());
      return static_cast<int>(i);
    }
  }
  return std::nullopt;
}

// Go's atoi (a sign, then digits, all of s).
std::optional<std::int64_t> go_atoi(std::string_view s) {
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  std::uint64_t x = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    if (x > (std::uint64_t{1} << 63) / 10) return std::nullopt;
    x = x * 10 + static_cast<std::uint64_t>(c - '0');
    if (x > (std::uint64_t{1} << 63)) return std::nullopt;
  }
  const auto r = static_cast<std::int64_t>(x);
  return neg ? -r : r;
}

std::optional<int> getnum(std::string_view& s, bool fixed) {
  if (!digit_at(s, 0)) return std::nullopt;
  if (!digit_at(s, 1)) {
    if (fixed) return std::nullopt;
    const int n = s[0] - '0';
    s.remove_prefix(1);
    return n;
  }
  const int n = (s[0] - '0') * 10 + (s[1] - '0');
  s.remove_prefix(2);
  return n;
}

std::optional<int> getnum3(std::string_view& s, bool fixed) {
  int n = 0;
  std::size_t i = 0;
  for (; i < 3 && digit_at(s, i); ++i) n = n * 10 + (s[i] - '0');
  if (i == 0 || (fixed && i != 3)) return std::nullopt;
  s.remove_prefix(i);
  return n;
}

// parseNanoseconds: nullopt on a bad value, -1 out of range.
std::optional<std::int64_t> parse_nanos(std::string_view v, std::size_t nbytes) {
  if (v[0] != '.' && v[0] != ',') return std::nullopt;
  if (nbytes > 10) nbytes = 10;
  auto ns = go_atoi(v.substr(1, nbytes - 1));
  if (!ns) return std::nullopt;
  if (*ns < 0) return -1;
  for (std::size_t i = 0; i < 10 - nbytes; ++i) *ns *= 10;
  return *ns;
}

std::string_view cut_space(std::string_view s) {
  while (!s.empty() && s[0] == ' ') s.remove_prefix(1);
  return s;
}

bool skip(std::string_view& value, std::string_view prefix) {
  while (!prefix.empty()) {
    if (prefix[0] == ' ') {
      if (!value.empty() && value[0] != ' ') return false;
      prefix = cut_space(prefix);
      value = cut_space(value);
      continue;
    }
    if (value.empty() || value[0] != prefix[0]) return false;
    prefix.remove_prefix(1);
    value.remove_prefix(1);
  }
  return true;
}

// A numeric zone offset of the layout element s at the start of value
// (Go's parse, its stdNumTZ/stdISO8601TZ cases); nullopt: a parse error.
std::optional<std::int32_t> read_offset(Std s, std::string_view& value) {
  std::string_view sign, hh, mm, ss = "00";
  std::size_t n = 5;
  if (s == kISO8601ColonTZ || s == kNumColonTZ) {
    if (value.size() < 6 || value[3] != ':') return std::nullopt;
    sign = value.substr(0, 1), hh = value.substr(1, 2), mm = value.substr(4, 2), n = 6;
  } else if (s == kNumShortTZ || s == kISO8601ShortTZ) {
    if (value.size() < 3) return std::nullopt;
    sign = value.substr(0, 1), hh = value.substr(1, 2), mm = "00", n = 3;
  } else if (s == kISO8601ColonSecondsTZ || s == kNumColonSecondsTZ) {
    if (value.size() < 9 || value[3] != ':' || value[6] != ':') return std::nullopt;
    sign = value.substr(0, 1), hh = value.substr(1, 2), mm = value.substr(4, 2), ss = value.substr(7, 2), n = 9;
  } else if (s == kISO8601SecondsTZ || s == kNumSecondsTz) {
    if (value.size() < 7) return std::nullopt;
    sign = value.substr(0, 1), hh = value.substr(1, 2), mm = value.substr(3, 2), ss = value.substr(5, 2), n = 7;
  } else {
    if (value.size() < 5) return std::nullopt;
    sign = value.substr(0, 1), hh = value.substr(1, 2), mm = value.substr(3, 2);
  }
  value.remove_prefix(n);
  const auto h = go_atoi(hh), m = go_atoi(mm), se = go_atoi(ss);
  if (!h || !m || !se || (sign[0] != '-' && sign[0] != '+')) return std::nullopt;
  const auto off = static_cast<std::int32_t>((*h * 60 + *m) * 60 + *se);
  return sign[0] == '-' ? -off : off;
}

// time.Date in zone z (values already in range).
Result<Time> make_date(std::int64_t year, int month, int day, int hour, int min, int sec, std::int64_t nsec,
                       std::shared_ptr<const Zone> z) {
  if (year < 0 || year > 10000) return fail("times outside the years 1 to 9999 are not supported");
  std::int64_t unix = days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day)) * kSecPerDay +
                      hour * 3600 + min * 60 + sec;
  ROOTSEAL_LET(p, lookup(*z, unix));
  std::int32_t offset = p.offset;
  if (offset != 0) {
    const std::int64_t utc = unix - offset;
    if (utc < p.start || utc >= p.end) {
      ROOTSEAL_LET(q, lookup(*z, utc));
      offset = q.offset;
    }
    unix -= offset;
  }
  Time t;
  t.sec = unix + nsec / 1000000000;
  t.nsec = static_cast<std::int32_t>(nsec % 1000000000);
  t.zone = std::move(z);
  return t;
}

// Go's parse(layout, value, Local, Local); an error value of "" means a
// parse error, others are refusals.
// NOLINTNEXTLINE(readability-function-size): Go's time.parse, one case per layout chunk, read against Go's source
Result<std::optional<Time>> parse(std::string_view layout, std::string_view value) {
  const auto local = local_zone();
  bool am = false, pm = false;
  std::int64_t year = 0;
  int month = -1, day = -1, yday = -1, hour = 0, min = 0, sec = 0;
  std::int64_t nsec = 0;
  std::shared_ptr<const Zone> z;
  std::int32_t zone_offset = -1;
  const std::optional<Time> bad;
  for (;;) {
    const Chunk ch = next_chunk(layout);
    if (!skip(value, layout.substr(0, ch.prefix))) return bad;
    if (ch.std == kNone) {
      if (!value.empty()) return bad;
      break;
    }
    layout.remove_prefix(ch.prefix + ch.len);
    bool range_err = false;
    bool err = false;
    // A number read into `into`; false (and a parse error) when there is none.
    const auto take = [&err](std::optional<int> got, int& into) {
      if (!got) err = true;
      if (got) into = *got;
      return got.has_value();
    };
    // Fractional seconds: the separator and n-1 digits (parseNanoseconds).
    const auto nanos = [&](std::size_t n) {
      const auto ns = parse_nanos(value, n);
      err = !ns;
      range_err = ns && *ns < 0;
      if (ns) nsec = *ns;
      value.remove_prefix(n);
    };
    switch (ch.std) {
      case kYear: {
        if (value.size() < 2) {
          err = true;
          break;
        }
        const auto y = go_atoi(value.substr(0, 2));
        if (!y) {
          err = true;
          break;
        }
        value.remove_prefix(2);
        year = *y >= 69 ? *y + 1900 : *y + 2000;
        break;
      }
      case kLongYear: {
        if (value.size() < 4 || !digit_at(value, 0)) {
          err = true;
          break;
        }
        const auto y = go_atoi(value.substr(0, 4));
        value.remove_prefix(4);
        if (!y) {
          err = true;
          break;
        }
        year = *y;
        break;
      }
      case kMonth:
      case kLongMonth: {
        const auto m = ch.std == kMonth ? lookup_name(kShortMonths, value) : lookup_name(kLongMonths, value);
        if (!m) {
          err = true;
          break;
        }
        month = *m + 1;
        break;
      }
      case kNumMonth:
      case kZeroMonth: {
        if (take(getnum(value, ch.std == kZeroMonth), month)) range_err = month <= 0 || month > 12;
        break;
      }
      case kWeekDay:
      case kLongWeekDay:
        err = !(ch.std == kWeekDay ? lookup_name(kShortDays, value) : lookup_name(kLongDays, value));
        break;
      case kDay:
      case kUnderDay:
      case kZeroDay: {
        if (ch.std == kUnderDay && !value.empty() && value[0] == ' ') value.remove_prefix(1);
        take(getnum(value, ch.std == kZeroDay), day);
        break;
      }
      case kUnderYearDay:
      case kZeroYearDay: {
        for (int i = 0; i < 2; ++i) {
          if (ch.std == kUnderYearDay && !value.empty() && value[0] == ' ') value.remove_prefix(1);
        }
        take(getnum3(value, ch.std == kZeroYearDay), yday);
        break;
      }
      case kHour: {
        if (take(getnum(value, false), hour)) range_err = hour >= 24;
        break;
      }
      case kHour12:
      case kZeroHour12: {
        if (take(getnum(value, ch.std == kZeroHour12), hour)) range_err = hour > 12;
        break;
      }
      case kMinute:
      case kZeroMinute: {
        if (take(getnum(value, ch.std == kZeroMinute), min)) range_err = min >= 60;
        break;
      }
      case kSecond:
      case kZeroSecond: {
        if (!take(getnum(value, ch.std == kZeroSecond), sec)) break;
        if (sec >= 60) {
          range_err = true;
          break;
        }
        if (value.size() >= 2 && (value[0] == '.' || value[0] == ',') && digit_at(value, 1)) {
          const Chunk next = next_chunk(layout);
          if (next.std == kFracSecond0 || next.std == kFracSecond9) break;
          std::size_t n = 2;
          while (n < value.size() && digit_at(value, n)) ++n;
          nanos(n);
        }
        break;
      }
      case kPM:
      case kpm: {
        if (value.size() < 2) {
          err = true;
          break;
        }
        const auto p = value.substr(0, 2);
        value.remove_prefix(2);
        const bool upper = ch.std == kPM;
        if (p == (upper ? "PM" : "pm")) {
          pm = true;
        } else if (p == (upper ? "AM" : "am")) {
          am = true;
        } else {
          err = true;
        }
        break;
      }
      case kTZ:
        return fail("toDate: a zone abbreviation (MST) in the layout is not supported");
      case kFracSecond0: {
        if (ch.digits > 9) return fail("a layout with more than 9 fractional-second digits is not supported");
        const std::size_t nd = 1 + static_cast<std::size_t>(ch.digits);
        if (value.size() < nd) {
          err = true;
          break;
        }
        nanos(nd);
        break;
      }
      case kFracSecond9: {
        if (ch.digits > 9) return fail("a layout with more than 9 fractional-second digits is not supported");
        if (value.size() < 2 || (value[0] != '.' && value[0] != ',') || value[1] < '0' || value[1] > '9') break;
        std::size_t i = 0;
        while (i < 9 && i + 1 < value.size() && value[i + 1] >= '0' && value[i + 1] <= '9') ++i;
        nanos(1 + i);
        break;
      }
      case kNone:
        break;
      default:  // the numeric zone offsets; Z (ISO 8601 forms): UTC
        if ((ch.std == kISO8601TZ || ch.std == kISO8601ShortTZ || ch.std == kISO8601ColonTZ) && !value.empty() &&
            value[0] == 'Z') {
          value.remove_prefix(1);
          z = utc_zone();
          break;
        }
        if (const auto off = read_offset(ch.std, value)) {
          zone_offset = *off;
        } else {
          err = true;
        }
        break;
    }
    if (range_err || err) return bad;
  }
  if (pm && hour < 12) {
    hour += 12;
  } else if (am && hour == 12) {
    hour = 0;
  }
  if (yday >= 0) {
    int d = 0, m = 0;
    if (is_leap(year)) {
      if (yday == 31 + 29) {
        m = 2;
        d = 29;
      } else if (yday > 31 + 29) {
        --yday;
      }
    }
    if (yday < 1 || yday > 365) return bad;
    if (m == 0) {
      static constexpr int kBefore[] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365};
      m = (yday - 1) / 31 + 1;
      if (kBefore[m] < yday) ++m;
      d = yday - kBefore[m - 1];
    }
    if (month >= 0 && month != m) return bad;
    month = m;
    if (day >= 0 && day != d) return bad;
    day = d;
  } else {
    if (month < 0) month = 1;
    if (day < 0) day = 1;
  }
  if (day < 1 || day > days_in(month, year)) return bad;
  if (z) {
    ROOTSEAL_LET(t, make_date(year, month, day, hour, min, sec, nsec, z));
    return std::optional<Time>(std::move(t));
  }
  if (zone_offset != -1) {
    ROOTSEAL_LET(t, make_date(year, month, day, hour, min, sec, nsec, utc_zone()));
    t.sec -= zone_offset;
    ROOTSEAL_LET(p, lookup(*local, t.sec));
    t.zone = p.offset == zone_offset ? local : fixed_zone("", zone_offset);
    return std::optional<Time>(std::move(t));
  }
  ROOTSEAL_LET(t, make_date(year, month, day, hour, min, sec, nsec, local));
  return std::optional<Time>(std::move(t));
}

Time zero_time() {
  Time t;
  t.sec = kMinSec;
  t.zone = utc_zone();
  return t;
}

// Sprig's dateInZone over any DATE (time.Time, int, int64; anything else: now).
Result<Value> in_zone(std::string_view layout, const Value& d, std::string_view zone) {
  Time t;
  if (d.kind == Value::Kind::time) {
    t = *d.t;
  } else if (d.kind == Value::Kind::integer) {
    if (d.i < kMinSec || d.i > kMaxSec) return fail("times outside the years 1 to 9999 are not supported");
    t.sec = d.i;
    t.zone = local_zone();
  } else {
    t = now_time();
  }
  auto z = load_location(zone);
  if (!z) z = utc_zone();
  SecureBuffer out(64);
  ROOTSEAL_TRY(format(t, *z, layout, out));
  if (out.size() > kMaxBytes) return fail("a value would exceed 8 MiB: refused");
  return string_value(out.take());
}

}  // namespace

void set_clock_for_tests(std::optional<std::pair<std::int64_t, std::int32_t>> instant) {
  const std::lock_guard lock(g_clock_mu);
  g_clock = instant;
}

std::optional<TzifForTests> TzifForTests::read(std::string_view data) {
  auto z = read_tzif(data);
  if (!z) return std::nullopt;
  TzifForTests t;
  t.zone_ = std::move(z);
  return t;
}

std::vector<std::int64_t> TzifForTests::transitions() const { return zone_->when; }

std::string_view TzifForTests::footer() const { return zone_->extend; }

ZoneAt TzifForTests::at(std::int64_t unix_sec) const {
  const Period p = *lookup(*zone_, unix_sec);  // lookup never fails
  return {std::string(p.abbr), p.offset, p.dst, p.start, p.end};
}

Result<std::string> TzifForTests::format(std::int64_t unix_sec, std::string_view layout) const {
  if (unix_sec < kMinSec || unix_sec > kMaxSec) return fail("times outside the years 1 to 9999 are not supported");
  Time t;
  t.sec = unix_sec;
  t.zone = zone_;
  SecureBuffer out(64);
  ROOTSEAL_TRY(date::format(t, *zone_, layout, out));
  return std::string(out.view());
}

Result<void> print_time(const Value& v, SecureBuffer& out) {
  const Time& t = *v.t;
  ROOTSEAL_TRY(format(t, *t.zone, "2006-01-02 15:04:05.999999999 -0700 MST", out));
  if (t.mono) {
    std::uint64_t m2 = static_cast<std::uint64_t>(t.mono_ns);
    char sign = '+';
    if (t.mono_ns < 0) {
      sign = '-';
      m2 = -m2;
    }
    std::uint64_t m1 = m2 / 1000000000;
    m2 %= 1000000000;
    const std::uint64_t m0 = m1 / 1000000000;
    m1 %= 1000000000;
    out.append(" m=");
    out.append(std::string_view(&sign, 1));
    int wid = 0;
    if (m0 != 0) {
      append_int(out, static_cast<std::int64_t>(m0), 0);
      wid = 9;
    }
    append_int(out, static_cast<std::int64_t>(m1), wid);
    out.append(".");
    append_int(out, static_cast<std::int64_t>(m2), 9);
  }
  return {};
}

Result<void> rfc3339_nano(const Value& v, SecureBuffer& out) {
  return format(*v.t, *v.t->zone, "2006-01-02T15:04:05.999999999Z07:00", out);
}

Result<Value> now(Args&) { return time_value(now_time()); }

Result<Value> date(Args& a) { return in_zone(a[0].str(), a[1], "Local"); }
Result<Value> date_in_zone(Args& a) { return in_zone(a[0].str(), a[1], a[2].str()); }
Result<Value> html_date(Args& a) { return in_zone("2006-01-02", a[0], "Local"); }
Result<Value> html_date_in_zone(Args& a) { return in_zone("2006-01-02", a[0], a[1].str()); }

Result<Value> date_modify(Args& a) {
  const auto d = parse_duration(a[0].str());
  if (!d) return a[1];
  return add(*a[1].t, *d);
}

Result<Value> must_date_modify(Args& a) {
  const auto d = parse_duration(a[0].str());
  if (!d) return fail("error calling mustDateModify: time: invalid duration (the value is not a Go duration)");
  return add(*a[1].t, *d);
}

Result<Value> to_date(Args& a) {
  ROOTSEAL_LET(t, parse(a[0].str(), a[1].str()));
  if (!t) return time_value(zero_time());
  return checked(std::move(*t));
}

Result<Value> must_to_date(Args& a) {
  ROOTSEAL_LET(t, parse(a[0].str(), a[1].str()));
  if (!t) return fail("error calling mustToDate: parsing time: the value does not match the layout");
  return checked(std::move(*t));
}

Result<Value> unix_epoch(Args& a) { return string_value(std::to_string(a[0].t->sec)); }

Result<Value> ago(Args& a) {
  Time t;
  if (a[0].kind == Value::Kind::time) {
    t = *a[0].t;
  } else if (a[0].kind == Value::Kind::integer) {
    if (a[0].i < kMinSec || a[0].i > kMaxSec) return fail("times outside the years 1 to 9999 are not supported");
    t.sec = a[0].i;
  } else {
    t = now_time();
  }
  return string_value(duration_string(round_second(sub(now_time(), t))));
}

Result<Value> duration(Args& a) {
  std::int64_t n = 0;
  if (a[0].kind == Value::Kind::string) {
    // strconv.ParseInt(s, 10, 64) with its error ignored: 0 on bad syntax,
    // the int64 bound out of range.
    std::string_view s = a[0].str();
    bool neg = false;
    if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
      neg = s[0] == '-';
      s.remove_prefix(1);
    }
    // ParseUint stops at the first overflow (a range error) before it
    // sees a later bad character.
    bool ok = !s.empty();
    bool over = false;
    std::uint64_t u = 0;
    for (const char c : s) {
      if (c < '0' || c > '9') {
        ok = false;
        break;
      }
      if (u > (UINT64_MAX - 9) / 10) {
        over = true;
        break;
      }
      u = u * 10 + static_cast<std::uint64_t>(c - '0');
    }
    const std::uint64_t cut = neg ? std::uint64_t{1} << 63 : (std::uint64_t{1} << 63) - 1;
    if (over || (ok && u > cut)) {
      n = neg ? INT64_MIN : INT64_MAX;
    } else if (ok) {
      n = neg ? static_cast<std::int64_t>(-u) : static_cast<std::int64_t>(u);
    }
  } else if (a[0].kind == Value::Kind::integer && a[0].int64) {
    n = a[0].i;
  }
  // time.Duration(n) * time.Second: Go's int64 multiplication wraps.
  const auto d = static_cast<std::int64_t>(static_cast<std::uint64_t>(n) * 1000000000u);
  return string_value(duration_string(d));
}

Result<Value> duration_round(Args& a) {
  std::int64_t d = 0;
  if (a[0].kind == Value::Kind::string) {
    d = parse_duration(a[0].str()).value_or(0);
  } else if (a[0].kind == Value::Kind::integer && a[0].int64) {
    d = a[0].i;
  } else if (a[0].kind == Value::Kind::time) {
    d = sub(now_time(), *a[0].t);
  }
  std::uint64_t u = static_cast<std::uint64_t>(d);
  if (d < 0) u = -u;
  constexpr std::uint64_t second = 1000000000, minute = 60 * second, hour = 60 * minute, day = 24 * hour,
                          month = 30 * day, year = 365 * day;
  std::string out = "0s";
  if (u > year) {
    out = std::to_string(u / year) + "y";
  } else if (u > month) {
    out = std::to_string(u / month) + "mo";
  } else if (u > day) {
    out = std::to_string(u / day) + "d";
  } else if (u > hour) {
    out = std::to_string(u / hour) + "h";
  } else if (u > minute) {
    out = std::to_string(u / minute) + "m";
  } else if (u > second) {
    out = std::to_string(u / second) + "s";
  }
  return string_value(out);
}

}  // namespace date
}  // namespace rootseal::sync::tmpl
