// fuzz_rewrite: dataFrom[].rewrite.regexp and the key conversion/validation
// (sync/src/rewrite.cpp) on tenant-controlled patterns, templates and keys.
// Input: "<pattern>\n<template>\n<key>".
// Properties: compiling never fails other than with Go's message; "$0"
// rewrites every key to itself; a key that does not match is unchanged; a
// key conversionStrategy Default produced always passes validation (when at
// most 253 bytes).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.hpp"
#include "rewrite.hpp"

using namespace rootseal;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::string pattern(fuzz::next_line(in));
  const std::string tmpl(fuzz::next_line(in));
  const std::string key(in);

  auto re = sync::GoRegexp::compile(pattern);
  if (!re) {
    fuzz::require_clean_error(re.error(), {kms::Errc::invalid_argument}, "compile error");
    fuzz::require(re.error().message.starts_with("error parsing regexp: "), "Go's message");
  } else {
    const std::string out = re->replace_all(key, tmpl);
    fuzz::require(re->replace_all(key, "$0") == key, "$0 is the identity");
    fuzz::require(re->replace_all(key, "${0}") == key, "${0} is the identity");
    if (re->replace_all(key, "\x01") == key && key.find('\x01') == std::string::npos) {
      fuzz::require(out == key, "no match, no change");
    }
  }

  sync::SecretMap one;
  one.emplace(key, kms::SecureBytes::copy_of(std::string_view("v")));
  auto converted = sync::convert_keys(std::move(one));
  fuzz::require(converted.has_value(), "one key never collides");
  if (converted->begin()->first.size() <= 253) {
    fuzz::require(sync::validate_keys(*converted).has_value(), "a converted key is valid");
  }
  return 0;
}
