// The case format shared by the template fuzz target and the differential
// test against Go (template_diff): <template> NUL <JSON object of string
// values>; without a NUL, the fixed data below.
#pragma once

#include <boost/json.hpp>

#include <optional>
#include <string>
#include <string_view>

#include "rootseal/sync/provider.hpp"

namespace rootseal::fuzz {

inline sync::SecretMap default_template_data() {
  sync::SecretMap m;
  m.emplace("user", kms::SecureBytes::copy_of(std::string_view("alice")));
  m.emplace("password", kms::SecureBytes::copy_of(std::string_view("s3cr\"et-VALUE")));
  m.emplace("b64", kms::SecureBytes::copy_of(std::string_view("aGVsbG8gd29ybGQ=")));
  m.emplace("json", kms::SecureBytes::copy_of(
                        std::string_view(R"({"host":"db","port":5432,"list":["a","b"],"n":{"x":null}})")));
  m.emplace("my-key", kms::SecureBytes::copy_of(std::string_view("  padded  ")));
  return m;
}

struct TemplateCase {
  std::string_view text;
  sync::SecretMap data;
};

// nullopt when the data part is not a JSON object of strings.
inline std::optional<TemplateCase> parse_template_case(std::string_view in) {
  const auto nul = in.find('\0');
  TemplateCase c{in.substr(0, nul), {}};
  if (nul == std::string_view::npos) {
    c.data = default_template_data();
    return c;
  }
  boost::json::error_code ec;
  const boost::json::value d = boost::json::parse(in.substr(nul + 1), ec);
  if (ec || !d.is_object()) return std::nullopt;
  for (const auto& kv : d.as_object()) {
    if (!kv.value().is_string()) return std::nullopt;
    c.data.insert_or_assign(std::string(kv.key()), kms::SecureBytes::copy_of(std::string_view(kv.value().as_string())));
  }
  return c;
}

}  // namespace rootseal::fuzz
