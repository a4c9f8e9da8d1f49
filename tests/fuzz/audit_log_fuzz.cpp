// The audit log's readers of a file on disk (daemon/src/audit.cpp):
// verify_audit_log (`rootseal audit verify`, the auditor's check of a file
// that may have been tampered with) and the recovery AuditLog::open performs
// on a damaged end (a crash or a full disk, or whatever else the file holds).
//
// The first byte selects how the rest becomes the file:
//   even: the bytes as they are;
//   odd:  each line of the rest is the content of a chained line: the harness
//         appends "prev_sha256" and "sha256" as the writer does, so the hash
//         checks pass and the JSON, recovery-line and continuation checks
//         behind them are reached (a recovery line naming a damaged file
//         beside the log, a first line that continues a previous file).
//
// Properties, beyond no crash and no sanitizer report:
//   - open() of any small file succeeds (only I/O errors may fail it) and,
//     when it recovered, the file before it equals the log's intact part
//     followed byte for byte by the damaged copy it set aside;
//   - a file that verified before still verifies after open() and one more
//     line, with at least that one more line; so does a file of which
//     nothing was intact;
//   - verification is deterministic.
// The files live in a private folder under /dev/shm (tmpfs: fsync is cheap),
// made for each input and removed after it.
#include <openssl/sha.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

#include "rootseal/daemon/audit.hpp"

namespace {

namespace fs = std::filesystem;
using rootseal::daemon::AuditLog;
using rootseal::daemon::verify_audit_log;

const std::string kZeros(64, '0');

// A fresh private folder for one input, removed after it (a crash leaves it
// beside the crash's input, for the post-mortem).
struct Folder {
  fs::path path;
  Folder() {
    char templ[] = "/dev/shm/rootseal-fuzz-audit-XXXXXX";
    const char* made = ::mkdtemp(templ);
    if (made == nullptr) std::abort();
    path = made;
  }
  ~Folder() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  Folder(const Folder&) = delete;
  Folder& operator=(const Folder&) = delete;
};

std::string sha256_hex(std::string_view s) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const unsigned char b : d) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

// Each line of `rest` as the content of a line chained to the one before.
std::string chained(std::string_view rest) {
  std::string out;
  std::string prev = kZeros;
  while (!rest.empty()) {
    const std::size_t nl = rest.find('\n');
    const std::string_view content = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    std::string head = std::string(content) + R"(,"prev_sha256":")" + prev + "\"";
    prev = sha256_hex(head + "}");
    out += head + R"(,"sha256":")" + prev + "\"}\n";
  }
  return out;
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_all(const fs::path& p, std::string_view bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::string original = (data[0] & 1) != 0 ? chained(rest) : std::string(rest);

  const Folder dir;
  const fs::path log_path = dir.path / "audit.log";
  write_all(log_path, original);

  const auto before = verify_audit_log(log_path);
  const auto again = verify_audit_log(log_path, kZeros);  // as if it continued a file ending in zeros
  if (verify_audit_log(log_path).has_value() != before.has_value()) std::abort();  // deterministic
  (void)again;

  auto log = AuditLog::open(log_path);
  if (!log) std::abort();  // a small file in a writable folder: only I/O may fail open()
  const auto recovery = (*log)->recovery();
  if (recovery) {
    // The log now holds its intact part and one recovery line; the damaged
    // copy holds the rest of the original, byte for byte.
    const std::string now = read_all(log_path);
    if (now.empty() || now.back() != '\n') std::abort();
    const std::size_t last = now.rfind('\n', now.size() - 2);
    const std::string intact = last == std::string::npos ? std::string() : now.substr(0, last + 1);
    const std::string damaged = read_all(recovery->damaged_file);
    if (damaged.size() != recovery->damaged_bytes || intact + damaged != original) std::abort();
    if (sha256_hex(damaged) != recovery->damaged_sha256) std::abort();
  }
  rootseal::daemon::AuditRecord r;
  r.request_id = "fuzz";
  r.method = "POST";
  r.path = "transit/encrypt/k";
  r.status = 200;
  r.outcome = "ok";
  if (!(*log)->write(r)) std::abort();
  log->reset();

  const auto after = verify_audit_log(log_path);
  const bool nothing_intact = recovery && recovery->last_intact_sha256 == kZeros;
  if ((before || nothing_intact) && !after) std::abort();
  if (before && after && after->lines < before->lines + 1) std::abort();
  return 0;
}
