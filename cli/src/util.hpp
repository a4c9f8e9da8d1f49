// rootseal::cli — small helpers: hashes, ids, time, durable file writes.
#pragma once

#include <cstdint>
#include <ctime>
#include <filesystem>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rootseal/kms/durable_file.hpp"
#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::cli {

std::vector<std::uint8_t> sha256(std::span<const std::uint8_t> data);
std::vector<std::uint8_t> sha256(std::string_view data);
std::string sha256_hex(std::string_view data);
// HMAC-SHA256 over the concatenation of `parts`.
std::vector<std::uint8_t> hmac_sha256(std::span<const std::uint8_t> key,
                                      std::initializer_list<std::span<const std::uint8_t>> parts);

inline std::span<const std::uint8_t> bytes_of(std::string_view s) noexcept {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// n random bytes from the OS source (RAND_bytes; for public values).
std::vector<std::uint8_t> random_public(std::size_t n);

// "2025-01-31T12:34:56Z"
std::string utc_now();
// `t` as 2026-12-06T20:00:00Z.
std::string utc_text(std::time_t t);
std::string host_name();

// Writing a file durably: kms::write_file_durably (rootseal/kms/durable_file.hpp).
using kms::write_file_durably;
kms::Result<std::string> read_small_file(const std::filesystem::path& path, std::size_t max_bytes = 1 << 20);
kms::Result<void> make_private_dir(const std::filesystem::path& dir);

// Names of people and custodians: 1..64 of [A-Za-z0-9 ._@-].
kms::Result<void> validate_name(std::string_view what, std::string_view name);

// Test hook for crash tests: when the environment variable
// ROOTSEAL_TEST_CRASH_AT names `point`, the process kills itself (SIGKILL)
// right there. Also reports the point to an in-process observer (tests).
void crash_point(std::string_view point);
using StageObserver = void (*)(std::string_view point);
void set_stage_observer(StageObserver observer) noexcept;

}  // namespace rootseal::cli
