#include "model/duration.hpp"

#include <cstdint>
#include <limits>

namespace rootseal::sync::model {

std::string format_go_duration(std::chrono::nanoseconds d) {
  std::int64_t ns = d.count();
  if (ns == 0) return "0s";
  std::string out;
  if (ns < 0) {
    out.push_back('-');
    ns = -ns;
  }
  const auto u = static_cast<std::uint64_t>(ns);
  if (u < 1'000'000'000ULL) {
    // Sub-second: Go prints ms/us/ns with a fraction; keep it simple and exact.
    if (u % 1'000'000 == 0) return out + std::to_string(u / 1'000'000) + "ms";
    if (u % 1'000 == 0) return out + std::to_string(u / 1'000) + "\xC2\xB5s";
    return out + std::to_string(u) + "ns";
  }
  const std::uint64_t h = u / 3'600'000'000'000ULL;
  const std::uint64_t m = (u / 60'000'000'000ULL) % 60;
  const std::uint64_t sec_ns = u % 60'000'000'000ULL;
  if (h > 0) out += std::to_string(h) + "h";
  if (h > 0 || m > 0) out += std::to_string(m) + "m";
  out += std::to_string(sec_ns / 1'000'000'000ULL);
  std::uint64_t frac = sec_ns % 1'000'000'000ULL;
  if (frac != 0) {
    std::string digits = std::to_string(frac);
    digits.insert(0, 9 - digits.size(), '0');
    while (!digits.empty() && digits.back() == '0') digits.pop_back();
    out += "." + digits;
  }
  out += "s";
  return out;
}

}  // namespace rootseal::sync::model
