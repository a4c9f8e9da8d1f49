#include "rootseal/daemon/audit.hpp"

#include <fcntl.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>

namespace rootseal::daemon {

namespace json = boost::json;
using kms::Errc;
using kms::fail;

namespace {

const std::string kGenesis(64, '0');
constexpr std::string_view kPrevField = R"(,"prev_sha256":")";
constexpr std::string_view kSelfField = R"(,"sha256":")";

std::string sha256_hex(std::string_view line) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> d{};
  ::SHA256(reinterpret_cast<const unsigned char*>(line.data()), line.size(), d.data());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (const auto b : d) {
    out += kHex[b >> 4];
    out += kHex[b & 0xf];
  }
  return out;
}

std::string now_rfc3339() {
  const auto now = std::chrono::system_clock::now();
  const auto secs = std::chrono::system_clock::to_time_t(now);
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(us));
  return buf;
}

// A line is `{...,"prev_sha256":"<64 hex>","sha256":"<64 hex>"}` where sha256
// covers the line up to and including the prev_sha256 field, closed by "}".
struct ParsedLine {
  std::string_view prev;
  std::string_view self;
  std::string covered;  // the text sha256 covers
};

std::optional<ParsedLine> parse_line(std::string_view line) {
  constexpr std::size_t kTail = kSelfField.size() + 64 + 2;  // ,"sha256":"<hex>"}
  if (line.size() < kPrevField.size() + 64 + 1 + kTail || !line.ends_with("\"}")) return std::nullopt;
  const std::string_view self_part = line.substr(line.size() - kTail);
  if (!self_part.starts_with(kSelfField)) return std::nullopt;
  const std::string_view head = line.substr(0, line.size() - kTail);  // ends with the prev hash's closing quote
  if (head.size() < kPrevField.size() + 65) return std::nullopt;
  const std::string_view prev_part = head.substr(head.size() - kPrevField.size() - 65);
  if (!prev_part.starts_with(kPrevField)) return std::nullopt;
  ParsedLine p;
  p.prev = prev_part.substr(kPrevField.size(), 64);
  p.self = self_part.substr(kSelfField.size(), 64);
  p.covered = std::string(head) + "}";
  return p;
}

}  // namespace

kms::Result<std::unique_ptr<AuditLog>> AuditLog::open(const std::filesystem::path& path) {
  std::string last_hash = kGenesis;
  {
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::string line, last;
      while (std::getline(in, line)) last = std::move(line);
      in.clear();
      in.seekg(0, std::ios::end);
      const auto size = in.tellg();
      if (size > 0) {
        in.seekg(size - std::streamoff(1));
        char c = 0;
        in.get(c);
        const auto parsed = parse_line(last);
        if (c != '\n' || !parsed || sha256_hex(parsed->covered) != parsed->self) {
          return fail(Errc::storage_failure, "audit log " + path.string() +
                                                 ": the last line is incomplete or not an audit line; "
                                                 "move the file aside and investigate");
        }
        last_hash = std::string(parsed->self);
      }
    }
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fail(Errc::storage_failure, "audit log " + path.string() + ": " + std::strerror(errno));
  return std::unique_ptr<AuditLog>(new AuditLog(fd, std::move(last_hash)));
}

AuditLog::AuditLog(int fd, std::string last_hash) : fd_(fd), prev_(std::move(last_hash)) {}

AuditLog::~AuditLog() {
  (void)flush();
  ::close(fd_);
}

kms::Result<void> AuditLog::write(const AuditRecord& r) {
  json::object o;
  o["time"] = now_rfc3339();
  o["request_id"] = r.request_id;
  o["remote"] = r.remote;
  if (!r.client_cert.empty()) o["client_cert"] = r.client_cert;
  o["accessor"] = r.accessor;
  o["method"] = r.method;
  o["path"] = r.path;
  if (!r.operation.empty()) o["operation"] = r.operation;
  if (!r.key.empty()) o["key"] = r.key;
  if (r.key_version != 0) o["key_version"] = r.key_version;
  if (r.batch_items != 0) o["batch_items"] = r.batch_items;
  o["status"] = r.status;
  if (!r.outcome.empty()) o["outcome"] = r.outcome;
  if (!r.error.empty()) o["error"] = r.error;
  o["latency_ms"] = r.latency_ms;
  std::string body = json::serialize(o);
  body.pop_back();  // reopen the object to append the chain field last

  std::lock_guard lock(mu_);
  std::string line = body;
  line += kPrevField;
  line += prev_;
  line += '"';
  const std::string hash = sha256_hex(line + "}");
  line += kSelfField;
  line += hash;
  line += "\"}\n";
  const ssize_t n = ::write(fd_, line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size())) {
    return fail(Errc::storage_failure, "audit log write failed");
  }
  prev_ = hash;
  ++lines_;
  return {};
}

kms::Result<void> AuditLog::flush() {
  std::lock_guard lock(mu_);
  if (::fdatasync(fd_) != 0) return fail(Errc::storage_failure, "audit log fdatasync failed");
  return {};
}

std::uint64_t AuditLog::lines_written() const {
  std::lock_guard lock(mu_);
  return lines_;
}

kms::Result<AuditVerification> verify_audit_log(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(Errc::not_found, "cannot read " + path.string());
  std::string prev = kGenesis;
  std::string line;
  AuditVerification v;
  while (std::getline(in, line)) {
    ++v.lines;
    const std::string where = "line " + std::to_string(v.lines);
    const auto parsed = parse_line(line);
    if (!parsed) return fail(Errc::decryption_failed, where + ": not an audit line");
    if (sha256_hex(parsed->covered) != parsed->self) {
      return fail(Errc::decryption_failed, where + ": edited (its content does not match its sha256)");
    }
    if (parsed->prev != prev) {
      return fail(Errc::decryption_failed,
                  where + ": chain broken (a line before it was removed, inserted or moved here)");
    }
    json::error_code ec;
    const auto value = json::parse(line, ec);
    if (ec || !value.is_object()) return fail(Errc::decryption_failed, where + ": not valid JSON");
    prev = std::string(parsed->self);
  }
  return v;
}

}  // namespace rootseal::daemon
