// rootseal::sync — Go duration strings ("1h30m", "15m", "0", "1.5h", "300ms"),
// as ESO's refreshInterval uses them (Go's time.ParseDuration grammar).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "rootseal/kms/error.hpp"

namespace rootseal::sync::model {

// Parses a non-negative Go duration. Units ns, us, µs, ms, s, m, h; numbers
// may have a fraction; "0" alone is zero. Negative durations, empty text,
// a missing unit, unknown units and overflow (> ~292 years) are errors; the
// message names the reason, not the field (the caller prefixes it).
kms::Result<std::chrono::nanoseconds> parse_go_duration(std::string_view text);

// Formats like Go's Duration.String() ("1h0m0s", "15m0s", "1.5s", "0s").
std::string format_go_duration(std::chrono::nanoseconds d);

}  // namespace rootseal::sync::model
