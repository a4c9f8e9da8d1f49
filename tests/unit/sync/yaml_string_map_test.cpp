// parse_yaml_string_map (sync/src/yaml_string_map.cpp): a `templateAs:
// KeysAndValues` rendering read as sigs.k8s.io/yaml reads it into a
// map[string]string. The expected strings are what Go printed for the same
// documents (tests/fuzz/kv_yaml_ref); fuzz.kv_yaml_diff compares thousands more.
#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

#include "yaml_string_map.hpp"

using namespace rootseal;
using namespace rootseal::sync;

namespace {

std::string value_of(std::string_view doc) {
  auto m = parse_yaml_string_map(doc);
  REQUIRE(m);
  REQUIRE(m->size() == 1);
  const auto& v = m->begin()->second;
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

}  // namespace

TEST_CASE("KeysAndValues: scalars resolving to numbers and booleans become Go's strings", "[sync][yaml]") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"1.50", "1.5"},
      {"0x1F", "31"},
      {"1e6", "1e+06"},
      {"0.0001", "0.0001"},
      {"0.00001", "1e-05"},
      {"16777217", "16777217"},
      {"1_000", "1000"},
      {"-0b11", "-3"},
      {"0b-1", "-1"},
      {"18446744073709551615", "18446744073709551615"},
      {"-9223372036854775808", "-9223372036854775808"},
      {"3.14159265358979", "3.1415927"},
      {"100000.0", "100000"},
      {"1e21", "1e+21"},
      {"-.5", "-0.5"},
      {"0o17", "15"},
      {"017", "15"},
      {"1e-46", "0"},
      {"3.5e38", "+Inf"},
      {".inf", "+Inf"},
      {"yes", "true"},
      {"Off", "false"},
      {"'0x1F'", "0x1F"},
      {"plain text", "plain text"},
  };
  for (const auto& [in, want] : cases) {
    INFO("value " << in);
    CHECK(value_of("k: " + in) == want);
  }
}

TEST_CASE("KeysAndValues: refusals name the line, never the value", "[sync][yaml]") {
  auto nested = parse_yaml_string_map("a: 1\nb:\n  c: s3cr3t-value\n");
  REQUIRE_FALSE(nested);
  CHECK(nested.error().message.find("line 3") != std::string::npos);
  CHECK(nested.error().message.find("s3cr3t-value") == std::string::npos);
  auto anchor = parse_yaml_string_map("a: &x s3cr3t-value\n");
  REQUIRE_FALSE(anchor);
  CHECK(anchor.error().message.starts_with("unsupported YAML at line 1"));
  CHECK(anchor.error().message.find("s3cr3t-value") == std::string::npos);
}
