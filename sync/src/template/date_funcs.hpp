// rootseal::sync — internal: Sprig's date functions as ESO's engine v2 has
// them (runtime/template/v2/sprig/date.go, identical to Sprig 3.2.3's) over
// Go's time package semantics: time.Time values (Unix seconds, nanoseconds,
// a zone, Go's monotonic reading for `now`), Go's reference-time layouts
// ("2006-01-02 15:04:05"), Format and ParseInLocation, time.ParseDuration
// and Duration.String, and zones read from the system's tzdata (TZif files
// under /usr/share/zoneinfo; Local as Go finds it: $TZ, else /etc/localtime).
// Refused ("not supported"): times outside the years 1 to 9999, zone
// abbreviations (MST) in toDate layouts, more than 9 fractional-second
// digits in a layout, and method calls on a time (.Year).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../secure_buffer.hpp"
#include "value.hpp"

namespace rootseal::sync::tmpl {
struct Zone;  // a zone as Go's Location has it (date_funcs.cpp)
}  // namespace rootseal::sync::tmpl

namespace rootseal::sync::tmpl::date {

using Args = std::vector<Value>;

// Sprig's date family; each checks its own arguments beyond the parameter
// letters of funcs.cpp ('t': time.Time).
kms::Result<Value> now(Args& a);
kms::Result<Value> date(Args& a);               // date FMT DATE
kms::Result<Value> date_in_zone(Args& a);       // dateInZone FMT DATE ZONE
kms::Result<Value> html_date(Args& a);          // htmlDate DATE
kms::Result<Value> html_date_in_zone(Args& a);  // htmlDateInZone DATE ZONE
kms::Result<Value> date_modify(Args& a);        // dateModify DURATION TIME (bad duration: the time)
kms::Result<Value> must_date_modify(Args& a);   // mustDateModify DURATION TIME
kms::Result<Value> to_date(Args& a);            // toDate LAYOUT TEXT (bad text: the zero time)
kms::Result<Value> must_to_date(Args& a);       // mustToDate LAYOUT TEXT
kms::Result<Value> unix_epoch(Args& a);         // unixEpoch TIME
kms::Result<Value> ago(Args& a);                // ago DATE
kms::Result<Value> duration(Args& a);           // duration SECONDS
kms::Result<Value> duration_round(Args& a);     // durationRound DURATION

// time.Time's String() (fmt's %v): "2006-01-02 15:04:05.999999999 -0700 MST"
// and, for a reading of `now`, Go's " m=+s.nnnnnnnnn" (seconds since the
// process started).
kms::Result<void> print_time(const Value& v, SecureBuffer& out);
// time.Time's MarshalJSON text (RFC 3339 with nanoseconds), without quotes.
kms::Result<void> rfc3339_nano(const Value& v, SecureBuffer& out);

// Tests only: the instant `now` (and Sprig's defaults to it) gives, Unix
// seconds and nanoseconds, without a monotonic reading; nullopt: the clock.
void set_clock_for_tests(std::optional<std::pair<std::int64_t, std::int32_t>> instant);

// Tests only (tests/fuzz: fuzz_tzif, tzif_diff): zone file data read as the
// date functions read a file of /usr/share/zoneinfo (Go's
// LoadLocationFromTZData), and what the zone says at an instant.
struct ZoneAt {
  std::string abbr;
  std::int32_t offset = 0;  // seconds east of UTC
  bool dst = false;
  std::int64_t start = 0, end = 0;  // the period Go's Location.lookup gives with it
  bool operator==(const ZoneAt&) const = default;
};
class TzifForTests {
 public:
  // nullopt: the data is refused (Go's LoadLocationFromTZData fails, or the
  // transition times do not ascend strictly).
  static std::optional<TzifForTests> read(std::string_view data);
  // The transition times as read (Go's single one at -2^63 when there are none).
  [[nodiscard]] std::vector<std::int64_t> transitions() const;
  // The POSIX TZ rule of the footer ("" when none).
  [[nodiscard]] std::string_view footer() const;
  // Go's Location.lookup at a Unix second.
  [[nodiscard]] ZoneAt at(std::int64_t unix_sec) const;
  // Go's Time.Format of the Unix second in this zone (within the years 1 to 9999).
  [[nodiscard]] kms::Result<std::string> format(std::int64_t unix_sec, std::string_view layout) const;

 private:
  std::shared_ptr<const Zone> zone_;
};

}  // namespace rootseal::sync::tmpl::date
