// Small helpers shared by the fuzz targets (no Catch2 in the fuzz build).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <string_view>

#include "rootseal/kms/error.hpp"

namespace rootseal::fuzz {

// A property failed: say which, then abort (libFuzzer saves the input).
[[noreturn]] inline void fail_property(const char* what) {
  std::fprintf(stderr, "fuzz property violated: %s\n", what);
  std::abort();
}
inline void require(bool ok, const char* what) {
  if (!ok) fail_property(what);
}

// A failure is clean: one of the documented codes and a message.
inline void require_clean_error(const kms::Error& e, std::initializer_list<kms::Errc> allowed, const char* what) {
  bool found = false;
  for (const auto c : allowed) found = found || c == e.code;
  if (!found || e.message.empty()) {
    std::fprintf(stderr, "unexpected error (%s): %s\n", std::string(kms::to_string(e.code)).c_str(), e.message.c_str());
    fail_property(what);
  }
}

// The next '\n'-terminated line of `in` (consumed), without its '\n'.
inline std::string_view next_line(std::string_view& in) {
  const auto nl = in.find('\n');
  const std::string_view line = in.substr(0, nl);
  in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
  return line;
}

// The part of `in` before the next `sep` (consumed with it); the rest when none.
inline std::string_view next_part(std::string_view& in, std::string_view sep) {
  const auto at = in.find(sep);
  const std::string_view part = in.substr(0, at);
  in = at == std::string_view::npos ? std::string_view() : in.substr(at + sep.size());
  return part;
}

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace rootseal::fuzz
