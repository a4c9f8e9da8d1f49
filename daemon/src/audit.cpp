#include "rootseal/daemon/audit.hpp"
#include "rootseal/kms/encoding.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <utility>

namespace rootseal::daemon {

namespace json = boost::json;
using kms::Errc;
using kms::fail;

namespace {

const std::string kGenesis(64, '0');
constexpr std::string_view kPrevField = R"(,"prev_sha256":")";
constexpr std::string_view kSelfField = R"(,"sha256":")";

const EVP_MD* sha256_md() {
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);  // fetched once, not per line
  return md;
}

// Hex SHA-256 of the concatenation of `parts`.
template <class... Parts>
void sha256_hex_into(char (&out)[64], const Parts&... parts) {
  struct CtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  thread_local const std::unique_ptr<EVP_MD_CTX, CtxFree> ctx(EVP_MD_CTX_new());
  std::array<unsigned char, EVP_MAX_MD_SIZE> d{};
  unsigned int n = 0;
  bool ok = ctx && sha256_md() != nullptr && EVP_DigestInit_ex2(ctx.get(), sha256_md(), nullptr) == 1;
  ((ok = ok && EVP_DigestUpdate(ctx.get(), parts.data(), parts.size()) == 1), ...);
  ok = ok && EVP_DigestFinal_ex(ctx.get(), d.data(), &n) == 1 && n == 32;
  if (!ok) std::abort();  // SHA-256 is always available; a failing digest is a broken library
  kms::hex_encode_into(std::span(d.data(), 32), out);
}

std::string sha256_hex(std::string_view line) {
  char hex[64];
  sha256_hex_into(hex, line);
  return {hex, sizeof hex};
}

// RFC 3339 UTC with microseconds; the part up to the seconds is formatted
// once per second per thread.
void append_now_rfc3339(std::string& out) {
  const auto now = std::chrono::system_clock::now();
  const auto secs = std::chrono::system_clock::to_time_t(now);
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
  thread_local std::time_t cached = -1;
  thread_local std::array<char, 32> prefix{};  // "YYYY-MM-DDTHH:MM:SS."
  thread_local std::size_t prefix_len = 0;
  if (secs != cached) {
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    const int n = std::snprintf(prefix.data(), prefix.size(), "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
                                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    prefix_len = n > 0 ? static_cast<std::size_t>(n) : 0;
    cached = secs;
  }
  out.append(prefix.data(), prefix_len);
  char digits[6];
  auto v = static_cast<unsigned>(us);
  for (int i = 5; i >= 0; --i) {
    digits[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
  out.append(digits, sizeof digits);
  out += 'Z';
}

// Length of the valid UTF-8 sequence at s[i], or 0 if it is not one.
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  std::size_t len = 0;
  unsigned cp = 0;
  if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1fu;
  else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0fu;
  else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07u;
  else return 0;
  if (i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3fu);
  }
  const bool overlong = (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
  if (overlong || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

// A JSON string: quotes, backslashes and control characters escaped; bytes
// that are not valid UTF-8 become U+FFFD, so every line parses as JSON.
void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  std::size_t run = 0;  // start of the pending run of bytes copied as they are
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      if (const std::size_t len = utf8_sequence(s, i); len != 0) {
        i += len;
        continue;
      }
    }
    out.append(s.data() + run, i - run);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
        } else {
          out += "\\ufffd";
        }
    }
    run = ++i;
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out += ',';
  append_json_string(out, name);
  out += ':';
  append_json_string(out, value);
}

template <class N>
void append_number(std::string& out, std::string_view name, N value) {
  out += ',';
  append_json_string(out, name);
  out += ':';
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, r.ec == std::errc() ? static_cast<std::size_t>(r.ptr - buf) : 0);
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

namespace {

// The hash the next line written to `path` chains to: its last line's, or 64
// zeros for a missing or empty file. A torn or foreign last line is refused.
// Only the end of the file is read (a log can be gigabytes by its rotation).
kms::Result<std::string> last_hash_of(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return kGenesis;
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size <= 0) return kGenesis;
  const auto refuse = [&] {
    return fail(Errc::storage_failure, "audit log " + path.string() +
                                           ": the last line is incomplete or not an audit line; "
                                           "move the file aside and investigate");
  };
  // Back from the end in steps until the newline before the last line (an
  // audit line is a few hundred bytes; more than 1 MiB without one is not a log).
  constexpr std::streamoff kStep = 4096;
  constexpr std::size_t kMaxTail = 1 << 20;
  std::string tail;
  std::streamoff pos = size;
  std::size_t start = std::string::npos;  // where the last line begins in `tail`
  while (true) {
    const std::streamoff n = std::min(kStep, pos);
    pos -= n;
    std::string chunk(static_cast<std::size_t>(n), '\0');
    in.seekg(pos);
    if (!in.read(chunk.data(), n)) return refuse();
    tail.insert(0, chunk);
    if (tail.size() >= 2) {
      if (const auto nl = tail.rfind('\n', tail.size() - 2); nl != std::string::npos) {
        start = nl + 1;
        break;
      }
    }
    if (pos == 0) {
      start = 0;
      break;
    }
    if (tail.size() >= kMaxTail) return refuse();
  }
  if (tail.back() != '\n') return refuse();
  const auto parsed = parse_line(std::string_view(tail).substr(start, tail.size() - 1 - start));
  if (!parsed || sha256_hex(parsed->covered) != parsed->self) return refuse();
  return std::string(parsed->self);
}

// Opens (creating 0600) for pwrite(2) at offsets the writer reserves; no O_APPEND.
kms::Result<std::pair<int, off_t>> open_for_lines(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fail(Errc::storage_failure, "audit log " + path.string() + ": " + std::strerror(errno));
  struct stat st{};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return fail(Errc::storage_failure, "audit log " + path.string() + ": " + std::strerror(e));
  }
  return std::pair{fd, st.st_size};
}

}  // namespace

// A file is let go (after a reopen, or at exit) when the last writer that
// reserved a place in it is done: its lines are synced to disk then.
AuditLog::File::~File() {
  (void)::fdatasync(fd);
  ::close(fd);
}

kms::Result<std::unique_ptr<AuditLog>> AuditLog::open(const std::filesystem::path& path) {
  std::string last_hash;
  ROOTSEAL_TRY_ASSIGN(last_hash, last_hash_of(path));
  std::pair<int, off_t> opened;
  ROOTSEAL_TRY_ASSIGN(opened, open_for_lines(path));
  auto file = std::make_shared<const File>(opened.first);
  return std::unique_ptr<AuditLog>(new AuditLog(path, std::move(file), std::move(last_hash), opened.second));
}

AuditLog::AuditLog(std::filesystem::path path, std::shared_ptr<const File> file, std::string last_hash, off_t end)
    : path_(std::move(path)), file_(std::move(file)), prev_(std::move(last_hash)), end_(end) {}

AuditLog::~AuditLog() { (void)flush(); }

kms::Result<bool> AuditLog::reopen() {
  std::pair<int, off_t> opened;
  ROOTSEAL_TRY_ASSIGN(opened, open_for_lines(path_));
  auto file = std::make_shared<const File>(opened.first);
  struct stat now{}, open_now{};
  if (::fstat(file->fd, &now) != 0) return fail(Errc::storage_failure, "audit log " + path_.string() + ": fstat failed");
  {
    std::lock_guard lock(mu_);
    if (::fstat(file_->fd, &open_now) != 0) return fail(Errc::storage_failure, "audit log: fstat failed");
  }
  if (now.st_dev == open_now.st_dev && now.st_ino == open_now.st_ino) return false;  // not rotated
  // Another file at the path: continue its chain if it has lines (as at
  // start), else begin it with a reopen line that names the old file's last line.
  std::string last_hash;
  ROOTSEAL_TRY_ASSIGN(last_hash, last_hash_of(path_));
  AuditRecord r;
  r.request_id = "audit-reopen";
  r.remote = "local";
  r.method = "SIGHUP";
  r.path = path_.string();
  r.operation = "audit_reopen";
  r.status = 200;
  r.outcome = "ok";
  Reserved first;
  {
    std::lock_guard lock(mu_);
    r.continues = prev_;
    file_ = std::move(file);  // writers that reserved a place in the old file still hold it
    prev_ = std::move(last_hash);
    end_ = opened.second;
    failed_ = false;  // a new file has no gap
    // Reserved under the same lock: no other line can come first in the new file.
    if (opened.second == 0) first = reserve_locked(format_line(r));
  }
  if (first.file) ROOTSEAL_TRY(put(first));
  return true;
}

// The line up to its two hashes, which reserve_locked() fills in.
std::string AuditLog::format_line(const AuditRecord& r) {
  std::string line;
  line.reserve(512);
  line += R"({"time":")";
  append_now_rfc3339(line);
  line += '"';
  append_field(line, "request_id", r.request_id);
  append_field(line, "remote", r.remote);
  if (!r.client_cert.empty()) append_field(line, "client_cert", r.client_cert);
  append_field(line, "accessor", r.accessor);
  append_field(line, "method", r.method);
  append_field(line, "path", r.path);
  if (!r.operation.empty()) append_field(line, "operation", r.operation);
  if (!r.key.empty()) append_field(line, "key", r.key);
  if (r.key_version != 0) append_number(line, "key_version", r.key_version);
  if (r.batch_items != 0) append_number(line, "batch_items", r.batch_items);
  append_number(line, "status", r.status);
  if (!r.outcome.empty()) append_field(line, "outcome", r.outcome);
  if (!r.error.empty()) append_field(line, "error", r.error);
  append_number(line, "latency_ms", std::isfinite(r.latency_ms) ? r.latency_ms : 0.0);
  if (!r.continues.empty()) append_field(line, "continues", r.continues);
  line += kPrevField;
  line.append(64, '0');  // the previous hash
  line += '"';
  line += kSelfField;
  line.append(64, '0');  // this line's hash
  line += "\"}\n";
  return line;
}

// Under mu_: chains the line (previous hash in, own hash computed) and
// reserves its place at the end of the current file.
AuditLog::Reserved AuditLog::reserve_locked(std::string line) {
  constexpr std::size_t kTail = 64 + 3;  // <hash>"}\n
  const std::size_t self_at = line.size() - kTail;
  const std::size_t prev_at = self_at - kSelfField.size() - 1 - 64;
  std::memcpy(line.data() + prev_at, prev_.data(), 64);
  char self[64];
  sha256_hex_into(self, std::string_view(line.data(), self_at - kSelfField.size()), std::string_view("}"));
  std::memcpy(line.data() + self_at, self, sizeof self);
  prev_.assign(self, sizeof self);
  Reserved r{file_, end_, std::move(line)};
  end_ += static_cast<off_t>(r.line.size());
  ++lines_;
  return r;
}

// Lines land at the offsets reserved in chain order, whatever the order the
// pwrite(2) calls complete in.
kms::Result<void> AuditLog::put(const Reserved& r) {
  std::size_t done = 0;
  while (done < r.line.size()) {
    const ssize_t n =
        ::pwrite(r.file->fd, r.line.data() + done, r.line.size() - done, r.offset + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::lock_guard lock(mu_);
      if (r.file == file_) failed_ = true;  // a hole in the file: every later request fails too
      return fail(Errc::storage_failure, "audit log write failed");
    }
    done += static_cast<std::size_t>(n);
  }
  return {};
}

kms::Result<void> AuditLog::write(const AuditRecord& record) {
  // The line is built outside the lock; the lock covers only the chain and
  // reserving the line's place in the file, so requests on other threads do
  // not wait for this one's pwrite(2).
  std::string line = format_line(record);
  Reserved reserved;
  {
    std::lock_guard lock(mu_);
    if (failed_) return fail(Errc::storage_failure, "audit log write failed earlier; restart after fixing the cause");
    reserved = reserve_locked(std::move(line));
  }
  return put(reserved);
}

kms::Result<void> AuditLog::flush() {
  std::shared_ptr<const File> file;
  {
    std::lock_guard lock(mu_);
    file = file_;
  }
  if (::fdatasync(file->fd) != 0) return fail(Errc::storage_failure, "audit log fdatasync failed");
  return {};
}

std::uint64_t AuditLog::lines_written() const {
  std::lock_guard lock(mu_);
  return lines_;
}

kms::Result<AuditVerification> verify_audit_log(const std::filesystem::path& path,
                                                 std::optional<std::string_view> previous_last) {
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
    if (v.lines == 1) {
      const auto* c = value.as_object().if_contains("continues");
      if (c != nullptr && c->is_string()) v.continues = std::string(c->as_string());
      if (previous_last && v.continues != *previous_last) {
        return fail(Errc::decryption_failed,
                    v.continues.empty()
                        ? where + ": does not continue the previous file (this file was started without a "
                                  "reopen: a file is missing between them, or the daemon was restarted)"
                        : where + ": does not continue the previous file (its last line is not the one this "
                                  "file names: a file or lines are missing between them)");
      }
    }
    prev = std::string(parsed->self);
  }
  if (previous_last && v.lines == 0) return fail(Errc::decryption_failed, "empty: nothing continues the previous file");
  v.last_sha256 = prev;
  return v;
}

}  // namespace rootseal::daemon
