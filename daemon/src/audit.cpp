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
#include <iterator>
#include <algorithm>
#include "rootseal/kms/durable_file.hpp"
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
  if (c >= 0xc2 && c <= 0xdf)
    len = 2, cp = c & 0x1fu;
  else if (c >= 0xe0 && c <= 0xef)
    len = 3, cp = c & 0x0fu;
  else if (c >= 0xf0 && c <= 0xf4)
    len = 4, cp = c & 0x07u;
  else
    return 0;
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
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
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

std::string errno_text(int e) { return std::strerror(e); }

kms::Error io_fail(const std::filesystem::path& path, std::string_view what, int e) {
  return {Errc::storage_failure, "audit log " + path.string() + ": " + std::string(what) + ": " + errno_text(e)};
}

bool pread_all(int fd, char* out, std::size_t n, off_t at) {
  for (std::size_t done = 0; done < n;) {
    const ssize_t r = ::pread(fd, out + done, n - done, at + static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    done += static_cast<std::size_t>(r);
  }
  return true;
}

// pwrite(2) all of `data` at `at`; false with errno set on failure.
bool pwrite_all(int fd, std::string_view data, off_t at) {
  for (std::size_t done = 0; done < data.size();) {
    const ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, at + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) {
      errno = EIO;
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

// Where the intact part of a log ends: the end of its last line L that is
// complete (newline-terminated, its own sha256 right), before any NUL byte,
// and linked — the line before L is complete too and its sha256 is L's
// prev_sha256, or L is the first line of the file and chains to 64 zeros.
// Everything after it is a damaged tail (a torn line, a run of NUL bytes and
// whatever lines follow it).
struct IntactEnd {
  off_t end = 0;
  std::string last_hash = kGenesis;
};

// A tail this long without an intact line is not the result of a crash.
constexpr off_t kMaxDamagedTail = 64 << 20;

kms::Result<IntactEnd> find_intact_end(int fd, off_t size, const std::filesystem::path& path) {
  off_t window = std::min<off_t>(size, 64 << 10);
  while (true) {
    const off_t base = size - window;
    std::string buf(static_cast<std::size_t>(window), '\0');
    if (!pread_all(fd, buf.data(), buf.size(), base))
      return std::unexpected(io_fail(path, "read", errno ? errno : EIO));
    // [start, end) of the line ending at buf[nl] ('\n'); nullopt if its start
    // is not inside the window (a larger window is needed).
    const auto line_at = [&](std::size_t nl) -> std::optional<std::pair<std::size_t, std::size_t>> {
      const std::size_t prev_nl = nl == 0 ? std::string::npos : buf.rfind('\n', nl - 1);
      if (prev_nl == std::string::npos && base != 0) return std::nullopt;
      return std::pair{prev_nl == std::string::npos ? 0 : prev_nl + 1, nl};
    };
    const auto valid = [&](std::size_t from, std::size_t to) -> std::optional<ParsedLine> {
      auto p = parse_line(std::string_view(buf).substr(from, to - from));
      if (!p || sha256_hex(p->covered) != p->self) return std::nullopt;
      return p;
    };
    // NUL bytes are never in a line (JSON escapes them): they are a hole
    // (the file grown past data never written: a power cut, or a writer
    // before this one that placed lines out of order). The damage starts at
    // the last run of them at the latest, whatever complete lines follow.
    std::size_t limit = buf.size();
    if (const std::size_t z = buf.rfind('\0'); z != std::string::npos) {
      limit = z;
      while (limit > 0 && buf[limit - 1] == '\0') --limit;
    }
    bool need_more = false;
    std::size_t nl = limit == 0 ? std::string::npos : buf.rfind('\n', limit - 1);
    while (nl != std::string::npos) {
      const auto line = line_at(nl);
      if (!line) {
        need_more = true;
        break;
      }
      if (const auto l = valid(line->first, line->second)) {
        bool linked = false;
        if (base + static_cast<off_t>(line->first) == 0) {
          linked = l->prev == kGenesis;
        } else if (line->first == 0) {
          need_more = true;  // the line before starts outside the window
          break;
        } else if (const auto before = line_at(line->first - 1); !before) {
          need_more = true;
          break;
        } else if (const auto b = valid(before->first, before->second)) {
          linked = b->self == l->prev;
        }
        if (linked) return IntactEnd{base + static_cast<off_t>(nl) + 1, std::string(l->self)};
      }
      nl = line->first == 0 ? std::string::npos : line->first - 1;
    }
    if (!need_more && base == 0) return IntactEnd{};  // nothing intact: all of it is damage
    if (window >= size || window >= kMaxDamagedTail) {
      return fail(Errc::storage_failure,
                  "audit log " + path.string() + ": no intact line in its last " + std::to_string(window) +
                      " bytes; this is not the end of a crash; move the file aside and investigate");
    }
    window = std::min<off_t>({size, window * 8, kMaxDamagedTail});
  }
}

// "20261206T141700Z"
std::string compact_utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return {buf, n};
}

// The damaged tail [from, size) copied byte for byte to a new file beside
// the log (durably: temporary file, fsync, link, fsync of the folder).
kms::Result<AuditRecovery> set_aside(int fd, off_t from, off_t size, const std::filesystem::path& path,
                                     const std::string& last_intact) {
  std::string bytes(static_cast<std::size_t>(size - from), '\0');
  if (!pread_all(fd, bytes.data(), bytes.size(), from))
    return std::unexpected(io_fail(path, "read", errno ? errno : EIO));
  AuditRecovery r;
  r.damaged_bytes = bytes.size();
  r.damaged_sha256 = sha256_hex(bytes);
  r.last_intact_sha256 = last_intact;
  const std::string stem = path.filename().string() + ".damaged-" + compact_utc_now();
  const auto data = std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  for (int k = 0;; ++k) {
    r.damaged_file = path.parent_path() / (k == 0 ? stem : stem + "." + std::to_string(k));
    auto written = kms::write_file_durably(r.damaged_file, data, 0600, /*exclusive=*/true);
    if (written) return r;
    if (written.error().code != Errc::already_exists || k >= 1000) {
      return fail(Errc::storage_failure,
                  "audit log " + path.string() + ": cannot set its damaged end aside: " + written.error().message);
    }
  }
}

AuditRecord local_record(std::string request_id, std::string method, std::string path, std::string operation) {
  AuditRecord r;
  r.request_id = std::move(request_id);
  r.remote = "local";
  r.method = std::move(method);
  r.path = std::move(path);
  r.operation = std::move(operation);
  r.status = 200;
  r.outcome = "ok";
  return r;
}

// Fills in the previous hash and the line's own; returns the latter.
std::string chain_line(std::string& line, std::string_view prev) {
  constexpr std::size_t kTail = 64 + 3;  // <hash>"}\n
  const std::size_t self_at = line.size() - kTail;
  const std::size_t prev_at = self_at - kSelfField.size() - 1 - 64;
  std::memcpy(line.data() + prev_at, prev.data(), 64);
  char self[64];
  sha256_hex_into(self, std::string_view(line.data(), self_at - kSelfField.size()), std::string_view("}"));
  std::memcpy(line.data() + self_at, self, sizeof self);
  return {self, sizeof self};
}

struct OpenedFile {
  int fd = -1;
  off_t end = 0;
  std::string last_hash;
  std::optional<AuditRecovery> recovery;
};

std::string format_audit_line(const AuditRecord& r, const AuditRecovery* recovery, std::string_view host);

// Opens (creating 0600) the log at `path`, finds where its intact part ends
// and, if a damaged tail follows, sets it aside and replaces it with a
// recovery line: written over the start of the damaged tail first, then the
// file cut just after it, so that a crash during recovery leaves either the
// damaged tail (recovered again at the next start) or the recovery line.
kms::Result<OpenedFile> open_log_file(const std::filesystem::path& path, std::string_view host) {
  OpenedFile f;
  f.fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (f.fd < 0) return std::unexpected(io_fail(path, "open", errno));
  const auto close_with = [&](kms::Error e) -> kms::Result<OpenedFile> {
    ::close(f.fd);
    return std::unexpected(std::move(e));
  };
  struct stat st{};
  if (::fstat(f.fd, &st) != 0) return close_with(io_fail(path, "fstat", errno));
  if (!S_ISREG(st.st_mode))
    return close_with({Errc::storage_failure, "audit log " + path.string() + ": not a regular file"});
  auto intact = find_intact_end(f.fd, st.st_size, path);
  if (!intact) return close_with(intact.error());
  f.end = intact->end;
  f.last_hash = intact->last_hash;
  if (intact->end == st.st_size) return f;

  auto recovery = set_aside(f.fd, intact->end, st.st_size, path, intact->last_hash);
  if (!recovery) return close_with(recovery.error());
  std::string line =
      format_audit_line(local_record("audit-recovery", "START", path.string(), "audit_recovery"), &*recovery, host);
  const std::string self = chain_line(line, f.last_hash);
  if (!pwrite_all(f.fd, line, f.end)) return close_with(io_fail(path, "write the recovery line", errno));
  const off_t end = f.end + static_cast<off_t>(line.size());
  if (::ftruncate(f.fd, end) != 0) return close_with(io_fail(path, "cut the damaged end", errno));
  if (::fdatasync(f.fd) != 0) return close_with(io_fail(path, "fdatasync", errno));
  f.end = end;
  f.last_hash = self;
  f.recovery = std::move(*recovery);
  return f;
}

}  // namespace

// One line waiting for the write that will hold it (on its caller's stack).
struct AuditLog::Pending {
  std::string line;  // hashes filled in by the writer
  bool done = false;
  kms::Result<void> result;
};

// The writer role: while held, this thread alone touches fd_, prev_, end_.
struct AuditLog::Writer {
  AuditLog* log;
  explicit Writer(AuditLog* l) : log(l) {}
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;
  ~Writer() {
    std::lock_guard lock(log->mu_);
    log->writing_ = false;
    log->cv_.notify_all();
  }
};

AuditLog::Writer AuditLog::become_writer() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return !writing_; });
  writing_ = true;
  return Writer(this);
}

kms::Result<std::unique_ptr<AuditLog>> AuditLog::open(const std::filesystem::path& path, AuditOptions options) {
  OpenedFile f;
  ROOTSEAL_TRY_ASSIGN(f, open_log_file(path, options.host));
  std::unique_ptr<AuditLog> log(new AuditLog(path, options, f.fd, std::move(f.last_hash), f.end));
  log->recovery_ = std::move(f.recovery);
  return log;
}

AuditLog::AuditLog(std::filesystem::path path, AuditOptions options, int fd, std::string last_hash, off_t end)
    : path_(std::move(path)), options_(options), fd_(fd), prev_(std::move(last_hash)), end_(end) {}

AuditLog::~AuditLog() {
  (void)flush();
  ::close(fd_);
}

void AuditLog::on_health_change(std::function<void(bool, const std::string&)> listener) {
  std::lock_guard lock(mu_);
  listener_ = std::move(listener);
}

kms::Result<bool> AuditLog::reopen() {
  Writer role = become_writer();
  struct stat now{}, open_now{};
  if (::stat(path_.c_str(), &now) == 0 && ::fstat(fd_, &open_now) == 0 && now.st_dev == open_now.st_dev &&
      now.st_ino == open_now.st_ino) {
    return false;  // not rotated
  }
  // Another file at the path: continue its chain if it has lines (as at
  // start), else begin it with a reopen line that names the old file's last line.
  OpenedFile f;
  ROOTSEAL_TRY_ASSIGN(f, open_log_file(path_, options_.host));
  const bool fresh = f.end == 0;
  if (fresh) {
    // The reopen line goes in before the switch: if it cannot be written
    // (a full disk), the old file stays in use and nothing is lost.
    AuditRecord r = local_record("audit-reopen", "SIGHUP", path_.string(), "audit_reopen");
    r.continues = prev_;
    std::string line = format_audit_line(r, nullptr, options_.host);
    std::string self = chain_line(line, f.last_hash);
    if (!pwrite_all(f.fd, line, 0)) {
      const int e = errno;
      const bool cut = ::ftruncate(f.fd, 0) == 0;  // a partial line would be damage at its next open
      ::close(f.fd);
      if (!cut) return std::unexpected(io_fail(path_, "write the reopen line, then cut it back", e));
      return std::unexpected(io_fail(path_, "write the reopen line (the old file stays in use)", e));
    }
    f.end = static_cast<off_t>(line.size());
    f.last_hash = std::move(self);
  }
  (void)::fdatasync(fd_);
  ::close(fd_);
  fd_ = f.fd;
  prev_ = std::move(f.last_hash);
  end_ = f.end;
  tail_dirty_ = false;
  std::lock_guard lock(mu_);
  if (f.recovery) recovery_ = std::move(f.recovery);
  if (fresh) ++lines_;
  return true;
}

namespace {

// The line up to its two hashes (zeros here), which the writer fills in.
std::string format_audit_line(const AuditRecord& r, const AuditRecovery* recovery, std::string_view host) {
  std::string line;
  line.reserve(512);
  line += R"({"time":")";
  append_now_rfc3339(line);
  line += '"';
  if (!host.empty()) append_field(line, "host", host);
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
  if (recovery != nullptr) {
    append_field(line, "damaged_file", recovery->damaged_file.filename().string());
    append_number(line, "damaged_bytes", recovery->damaged_bytes);
    append_field(line, "damaged_sha256", recovery->damaged_sha256);
    append_field(line, "last_intact_sha256", recovery->last_intact_sha256);
  }
  line += kPrevField;
  line.append(64, '0');  // the previous hash
  line += '"';
  line += kSelfField;
  line.append(64, '0');  // this line's hash
  line += "\"}\n";
  return line;
}

}  // namespace

// The writer: chains the batch onto the file's last line and appends it with
// one pwrite(2) (and fdatasync with options_.sync). On failure the file is
// cut back to where it was and the chain does not move.
kms::Result<void> AuditLog::commit(std::vector<Pending*>& batch) {
  std::string buf;
  std::size_t total = 0;
  for (const auto* p : batch) total += p->line.size();
  buf.reserve(total);
  std::string prev = prev_;
  for (auto* p : batch) {
    prev = chain_line(p->line, prev);
    buf += p->line;
  }
  const auto failed = [&](std::string_view what, int e) -> kms::Result<void> {
    if (::ftruncate(fd_, end_) != 0) tail_dirty_ = true;  // cut at the next attempt, before writing
    return fail(Errc::unavailable, "audit log unavailable: " + std::string(what) + ": " + errno_text(e));
  };
  if (tail_dirty_) {
    if (::ftruncate(fd_, end_) != 0)
      return fail(Errc::unavailable, "audit log unavailable: cut back: " + errno_text(errno));
    tail_dirty_ = false;
  }
  if (!pwrite_all(fd_, buf, end_)) return failed("write", errno);
  if (options_.sync && ::fdatasync(fd_) != 0) return failed("fdatasync", errno);
  end_ += static_cast<off_t>(buf.size());
  prev_ = std::move(prev);
  return {};
}

kms::Result<void> AuditLog::write(const AuditRecord& record) {
  Pending me{format_audit_line(record, nullptr, options_.host), false, {}};  // built before any lock
  std::unique_lock lock(mu_);
  if (!healthy_ && std::chrono::steady_clock::now() < retry_at_) {
    ++failures_;
    return fail(Errc::unavailable, "audit log unavailable (retrying)");
  }
  queue_.push_back(&me);
  std::optional<bool> changed;  // the health this call switched to
  std::string reason;
  while (!me.done) {
    if (writing_) {
      cv_.wait(lock);
      continue;
    }
    // The writer for every line queued so far, in queue (chain) order.
    writing_ = true;
    std::vector<Pending*> batch;
    batch.swap(queue_);
    lock.unlock();
    auto result = commit(batch);
    lock.lock();
    writing_ = false;
    for (auto* p : batch) {
      p->result = result;
      p->done = true;
    }
    if (result) {
      lines_ += batch.size();
      if (!healthy_) {
        healthy_ = true;
        backoff_ = std::chrono::milliseconds(0);
        changed = true;
      }
    } else {
      failures_ += batch.size();
      backoff_ = std::clamp(backoff_ * 2, options_.retry_min, options_.retry_max);
      retry_at_ = std::chrono::steady_clock::now() + backoff_;
      if (healthy_) {
        healthy_ = false;
        changed = false;
        reason = result.error().message;
      }
    }
    cv_.notify_all();
  }
  auto listener = changed ? listener_ : nullptr;
  lock.unlock();
  if (listener) listener(*changed, reason);
  return me.result;
}

kms::Result<void> AuditLog::flush() {
  Writer role = become_writer();
  if (::fdatasync(fd_) != 0) return fail(Errc::storage_failure, "audit log fdatasync failed: " + errno_text(errno));
  return {};
}

std::optional<AuditRecovery> AuditLog::recovery() const {
  std::lock_guard lock(mu_);
  return recovery_;
}

std::uint64_t AuditLog::lines_written() const {
  std::lock_guard lock(mu_);
  return lines_;
}

std::uint64_t AuditLog::write_failures() const {
  std::lock_guard lock(mu_);
  return failures_;
}

bool AuditLog::healthy() const {
  std::lock_guard lock(mu_);
  return healthy_;
}

namespace {

// A recovery line's fields; its damaged file, if it is beside the log, must
// have the recorded size and sha256.
kms::Result<AuditRecoveryLine> recovery_line(const json::object& obj, const std::filesystem::path& log,
                                             const std::string& where) {
  const auto text = [&](std::string_view name) -> std::string {
    const auto* v = obj.if_contains(name);
    return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
  };
  AuditRecoveryLine rec;
  rec.recovery.damaged_file = text("damaged_file");
  rec.recovery.damaged_sha256 = text("damaged_sha256");
  rec.recovery.last_intact_sha256 = text("last_intact_sha256");
  const auto* bytes = obj.if_contains("damaged_bytes");
  if (rec.recovery.damaged_file.empty() || rec.recovery.damaged_file.has_parent_path() ||
      rec.recovery.damaged_sha256.size() != 64 || rec.recovery.last_intact_sha256.size() != 64 || bytes == nullptr ||
      !bytes->is_number()) {
    return fail(Errc::decryption_failed, where +
                                             ": a recovery line without its damaged_file, damaged_bytes, "
                                             "damaged_sha256 and last_intact_sha256");
  }
  json::error_code ec;
  rec.recovery.damaged_bytes = bytes->to_number<std::uint64_t>(ec);
  if (ec) return fail(Errc::decryption_failed, where + ": damaged_bytes is not a size");
  const auto damaged = log.parent_path() / rec.recovery.damaged_file;
  std::ifstream in(damaged, std::ios::binary);
  if (!in) return rec;  // not beside the log (archived elsewhere): the auditor checks it there
  const std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (content.size() != rec.recovery.damaged_bytes || sha256_hex(content) != rec.recovery.damaged_sha256) {
    return fail(Errc::decryption_failed,
                where + ": recovery line names " + damaged.string() + ", whose size or sha256 is not the one recorded");
  }
  rec.damaged_file_checked = true;
  return rec;
}

}  // namespace

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
    const auto& obj = value.as_object();
    if (const auto* op = obj.if_contains("operation");
        op != nullptr && op->is_string() && op->as_string() == "audit_recovery") {
      AuditRecoveryLine rec;
      ROOTSEAL_TRY_ASSIGN(rec, recovery_line(obj, path, where));
      if (rec.recovery.last_intact_sha256 != parsed->prev) {
        return fail(Errc::decryption_failed,
                    where + ": recovery line does not name the line before it as the last intact one");
      }
      rec.line = v.lines;
      v.recoveries.push_back(std::move(rec));
    }
    if (v.lines == 1) {
      const auto* c = obj.if_contains("continues");
      if (c != nullptr && c->is_string()) v.continues = std::string(c->as_string());
      if (previous_last && v.continues != *previous_last) {
        return fail(Errc::decryption_failed,
                    v.continues.empty()
                        ? where +
                              ": does not continue the previous file (this file was started without a "
                              "reopen: a file is missing between them, or the daemon was restarted)"
                        : where +
                              ": does not continue the previous file (its last line is not the one this "
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
