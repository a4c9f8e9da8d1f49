// Helpers shared by the benchmark drivers: a failed step ends the run with
// the program's name and the step's error.
#pragma once

#include <errno.h>  // program_invocation_short_name (glibc)

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "rootseal/kms/error.hpp"

namespace rootseal::bench {

// Ends the program at once: other threads may still run, so no static
// destructors (std::exit would run them under those threads' feet).
[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, what.c_str());
  (void)std::fflush(nullptr);  // on the way out: nothing to do about a failure
  std::_Exit(1);
}

// A whole-number or decimal command-line argument, or die naming `what`
// (atoi would read "12x" as 12 and "x" as 0).
template <class T>
T parse_arg(const char* text, const char* what) {
  T value{};
  const char* end = text + std::strlen(text);
  const auto [ptr, ec] = std::from_chars(text, end, value);
  if (ec != std::errc() || ptr != end || ptr == text) die(std::string(what) + ": not a number: " + text);
  return value;
}

// The value of `r`, or die naming `what`.
template <class T>
T must(kms::Result<T> r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().message);
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}

}  // namespace rootseal::bench
