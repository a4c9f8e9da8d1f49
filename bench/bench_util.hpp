// Helpers shared by the benchmark drivers: a failed step ends the run with
// the program's name and the step's error.
#pragma once

#include <errno.h>  // program_invocation_short_name (glibc)

#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <utility>

#include "rootseal/kms/error.hpp"

namespace rootseal::bench {

[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, what.c_str());
  std::exit(1);
}

// The value of `r`, or die naming `what`.
template <class T>
T must(kms::Result<T> r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().message);
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}

}  // namespace rootseal::bench
