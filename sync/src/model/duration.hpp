// rootseal::sync — Go duration strings ("1h30m", "15m", "0", "1.5h", "300ms"),
// as ESO's refreshInterval uses them (Go's time.ParseDuration grammar).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/numbers.hpp"

namespace rootseal::sync::model {

// Go duration strings are parsed by kms::parse_go_duration (one checked
// parser for every duration rootseal reads).
using kms::parse_go_duration;

// Formats like Go's Duration.String() ("1h0m0s", "15m0s", "1.5s", "0s").
std::string format_go_duration(std::chrono::nanoseconds d);

}  // namespace rootseal::sync::model
