// Checked parsing of outside numbers: boundary values on both sides of every
// limit, and the overflow cases that used to be undefined behaviour (run
// under UBSan in the sanitizer build).
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>

#include "rootseal/kms/numbers.hpp"

using namespace rootseal::kms;
using namespace std::chrono_literals;

namespace {
constexpr std::int64_t kI64Max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kI64Min = std::numeric_limits<std::int64_t>::min();
}  // namespace

TEST_CASE("parse_int: whole decimal integers within the given range") {
  CHECK(*parse_int("0", 0, 10) == 0);
  CHECK(*parse_int("10", 0, 10) == 10);
  CHECK(*parse_int("+3", 0, 10) == 3);
  CHECK(*parse_int("-7", -10, 10) == -7);
  CHECK(*parse_int("9223372036854775807", kI64Min, kI64Max) == kI64Max);
  CHECK(*parse_int("-9223372036854775808", kI64Min, kI64Max) == kI64Min);
  for (const char* bad : {"", "+", "-", "+-1", "--1", " 1", "1 ", "1.0", "0x10", "1e3", "abc", "١"}) {
    INFO(bad);
    CHECK_FALSE(parse_int(bad, kI64Min, kI64Max).has_value());
  }
  // One past each end of the type and of the range.
  CHECK_THAT(parse_int("9223372036854775808", kI64Min, kI64Max).error().message, Catch::Contains("out of range"));
  CHECK_THAT(parse_int("-9223372036854775809", kI64Min, kI64Max).error().message, Catch::Contains("out of range"));
  CHECK_THAT(parse_int("11", 0, 10).error().message, Catch::Contains("between 0 and 10"));
  CHECK_FALSE(parse_int("-1", 0, 10).has_value());
}

TEST_CASE("parse_go_duration: Go's grammar, range-checked before every multiplication") {
  CHECK(*parse_go_duration("1h30m") == 90min);
  CHECK(*parse_go_duration("1.5h") == 90min);
  CHECK(*parse_go_duration("300ms") == 300ms);
  CHECK(*parse_go_duration("2us") == 2us);
  CHECK(*parse_go_duration("2\xC2\xB5s") == 2us);
  CHECK(*parse_go_duration("0") == 0ns);
  CHECK(*parse_go_duration("+5s") == 5s);
  CHECK(*parse_go_duration(".5s") == 500ms);
  CHECK(*parse_go_duration("1.s") == 1s);
  // The largest duration Go has, exactly, in ns and in hours-and-change.
  CHECK(*parse_go_duration("9223372036854775807ns") == std::chrono::nanoseconds::max());
  CHECK(*parse_go_duration("2562047h47m16.854775807s") == std::chrono::nanoseconds::max());
  CHECK(*parse_go_duration("2562047h") == std::chrono::hours(2562047));
  for (const char* over : {"9223372036854775808ns", "2562048h", "2562047h47m16.854775808s", "9999999999999999h",
                           "99999999999999999999999s", "2562047h2562047h", "153722867m1h"}) {
    INFO(over);
    auto d = parse_go_duration(over);
    REQUIRE_FALSE(d.has_value());
    CHECK_THAT(d.error().message, Catch::Contains("out of range"));
  }
  for (const char* bad : {"", "-1h", "10", "1d", "h", ".s", "1h-1m", "1 h", "1hh"}) {
    INFO(bad);
    CHECK_FALSE(parse_go_duration(bad).has_value());
  }
}

TEST_CASE("parse_vault_duration: Vault's ParseDurationSecond rules, without Go's silent wrap") {
  CHECK(*parse_vault_duration("") == 0s);
  CHECK(*parse_vault_duration("0") == 0s);
  CHECK(*parse_vault_duration("3600") == 1h);
  CHECK(*parse_vault_duration("+3600") == 1h);
  CHECK(*parse_vault_duration("2d") == 48h);
  CHECK(*parse_vault_duration("1h30m") == 90min);
  CHECK(*parse_vault_duration("1500ms") == 1s);  // truncated to seconds, as int(d.Seconds())
  CHECK(*parse_vault_duration("9223372036") == 9223372036s);
  CHECK(*parse_vault_duration("106751d") == std::chrono::seconds(106751LL * 86400));
  // The reported bug: "9999999999999999h" multiplied past int64.
  for (const char* over : {"9999999999999999h", "9223372037", "9223372036854775807", "106752d", "9223372036854775807d",
                           "99999999999999999999"}) {
    INFO(over);
    auto d = parse_vault_duration(over);
    REQUIRE_FALSE(d.has_value());
    CHECK_THAT(d.error().message, Catch::Contains("out of range"));
  }
  for (const char* negative : {"-1", "-1d", "-1h"}) {
    INFO(negative);
    CHECK_THAT(parse_vault_duration(negative).error().message, Catch::Contains("negative"));
  }
  for (const char* bad : {"d", "1.5d", "1x", "soon", "1 h"}) {
    INFO(bad);
    CHECK_FALSE(parse_vault_duration(bad).has_value());
  }
}

TEST_CASE("parse_config_duration: bare seconds or a Go duration, at most the field's maximum") {
  CHECK(*parse_config_duration("30") == 30s);
  CHECK(*parse_config_duration("250ms") == 250ms);
  CHECK(*parse_config_duration("1h30m") == 90min);
  CHECK(*parse_config_duration("0") == 0ms);
  CHECK(*parse_config_duration("876000h") == kLongestDelay);
  CHECK(*parse_config_duration(
            std::to_string(std::chrono::duration_cast<std::chrono::seconds>(kLongestDelay).count())) == kLongestDelay);
  CHECK_FALSE(parse_config_duration("876000h1ns").has_value());
  CHECK_FALSE(
      parse_config_duration(std::to_string(std::chrono::duration_cast<std::chrono::seconds>(kLongestDelay).count() + 1))
          .has_value());
  // Values that used to overflow value * 3'600'000 (ms) or value * 1000.
  for (const char* over : {"9999999999999999h", "9223372036854775807", "9223372036854775807s", "2562048h"}) {
    INFO(over);
    CHECK_FALSE(parse_config_duration(over).has_value());
  }
  CHECK(*parse_config_duration("60s", 1min) == 1min);
  CHECK_FALSE(parse_config_duration("61s", 1min).has_value());
  CHECK_FALSE(parse_config_duration("61", 1min).has_value());
  for (const char* bad : {"", "-1", "-1s", "1d", "ms", "1 s", "+", "1x"}) {
    INFO(bad);
    CHECK_FALSE(parse_config_duration(bad).has_value());
  }
}

TEST_CASE("parse_go_bool: exactly strconv.ParseBool's twelve spellings") {
  for (const char* t : {"1", "t", "T", "TRUE", "true", "True"}) CHECK(parse_go_bool(t) == std::optional<bool>(true));
  for (const char* f : {"0", "f", "F", "FALSE", "false", "False"})
    CHECK(parse_go_bool(f) == std::optional<bool>(false));
  for (const char* bad : {"", "yes", "no", "tRUE", "TrUe", "2", "on", " true", "true "}) {
    INFO(bad);
    CHECK_FALSE(parse_go_bool(bad).has_value());
  }
}
