// Typed access to Transit request fields, with the rules of Vault's field
// parser (sdk/framework/field_data.go: mapstructure's weak decoding and
// parseutil.ParseDurationSecond), every number range-checked before use:
//
//   integer   a JSON integer, a decimal string ("3", "-1"), "" (0), or a
//             JSON boolean (1/0)
//   boolean   a JSON boolean, one of Go's ParseBool strings ("true", "1",
//             "t", "T", "TRUE", "True" and the false forms), "" (false), or
//             the JSON numbers 1 and 0
//   duration  seconds as a JSON integer or a string ("3600"), "<n>d", a Go
//             duration ("1h30m"), or "" (0); never negative, never more than
//             Go's time.Duration holds
//   string    a JSON string
//
// An absent or null field is nullopt. A wrong value is invalid_argument
// naming the field ("'<field>' must be ...") and never echoing the value.
#pragma once

#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "rootseal/kms/error.hpp"

namespace rootseal::daemon {

kms::Result<std::optional<std::string_view>> string_field(const boost::json::object& o, std::string_view key);
kms::Result<std::optional<std::int64_t>> int_field(const boost::json::object& o, std::string_view key);
kms::Result<std::optional<bool>> bool_field(const boost::json::object& o, std::string_view key);
// Whole seconds.
kms::Result<std::optional<std::int64_t>> duration_field(const boost::json::object& o, std::string_view key);
// A standard-base64 field that is not secret (context, associated_data); empty if absent.
kms::Result<std::vector<std::uint8_t>> base64_field(const boost::json::object& o, std::string_view key);

}  // namespace rootseal::daemon
