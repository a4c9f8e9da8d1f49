// rootseal::kms — checked parsing of numbers, durations and booleans from
// outside input (HTTP requests, configuration files, manifests).
//
// Every number a client, a file or a manifest hands rootseal goes through
// one of these before any arithmetic: each checks the range first, so no
// multiplication or addition on the result can overflow. They never throw.
// Error messages name the reason, never the field (the caller prefixes it),
// and echo no input but a short unknown unit ("unknown unit 'd'").
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

#include "rootseal/kms/error.hpp"

namespace rootseal::kms {

// The longest duration any parser here returns: Go's time.Duration limit
// (2^63-1 ns, about 292 years).
inline constexpr std::chrono::nanoseconds kMaxDuration = std::chrono::nanoseconds::max();

// A whole decimal integer with an optional sign ("+3", "-7", "42"), in
// [min, max]. No spaces, no base prefix, nothing after the digits.
Result<std::int64_t> parse_int(std::string_view text, std::int64_t min, std::int64_t max);

// Go's time.ParseDuration for non-negative durations: a sequence of decimal
// numbers, each with an optional fraction and a unit (ns, us, µs, ms, s, m,
// h), e.g. "1h30m", "1.5h", "300ms"; "0" alone is zero; a leading '+' is
// allowed. Negative, empty, unit-less, unknown-unit and out-of-range
// (> kMaxDuration) text is an error.
Result<std::chrono::nanoseconds> parse_go_duration(std::string_view s);

// Vault's duration fields (parseutil.ParseDurationSecond, as its field parser
// uses them), in whole seconds: "" is 0; an integer is seconds ("3600");
// "<integer>d" is days; anything else a Go duration ("1h30m"), truncated to
// seconds. Negative values and anything over kMaxDuration (where Go would
// silently wrap) are errors.
Result<std::chrono::seconds> parse_vault_duration(std::string_view text);

// The longest delay rootseal schedules anything after, and so the longest
// duration a configuration file may give: 100 years. Any clock's now()
// (nanoseconds since its epoch) plus this still fits in 64 bits, so a
// deadline computed from a configured or manifest duration cannot overflow.
inline constexpr std::chrono::milliseconds kLongestDelay = std::chrono::hours(24 * 365 * 100);

// Configuration-file durations: a bare integer is seconds ("30"), anything
// else a Go duration ("250ms", "5s", "2m", "1h30m"); at most `max`, which
// itself is at most kLongestDelay.
Result<std::chrono::milliseconds> parse_config_duration(std::string_view text,
                                                        std::chrono::milliseconds max = kLongestDelay);

// Go's strconv.ParseBool: 1 t T TRUE true True / 0 f F FALSE false False.
std::optional<bool> parse_go_bool(std::string_view text) noexcept;

}  // namespace rootseal::kms
