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
#include <optional>
#include <string>
#include <vector>

#include "../secure_buffer.hpp"
#include "value.hpp"

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

}  // namespace rootseal::sync::tmpl::date
