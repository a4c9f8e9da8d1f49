// rootseal::daemon — the audit log: one JSON line per request, hash-chained.
//
// Each line is a JSON object ending in two fields: "prev_sha256", the previous
// line's "sha256" (64 zeros for the first line of a file), and "sha256", the
// SHA-256 of the line itself up to and including "prev_sha256" (closed by
// "}"). An edited line no longer matches its own hash; a removed, inserted or
// reordered line breaks the chain; verify_audit_log() names the first bad line.
// The chain has no secret key: it catches edits, not a writer who recomputes
// every hash after an edit, and cutting lines off the end leaves a valid
// chain. Against such an attacker, ship each line off the host as it is
// written (journald forwarding, a log shipper) and compare line counts with
// the rootseal_audit_lines_written metric.
//
// Every request to the Transit API and the token endpoints gets a line,
// refused ones too: an unauthenticated request has an empty accessor, one
// denied by policy names the token's accessor; both have outcome "denied".
// Lines carry identities (token accessor, client address, certificate
// subject), key names, versions, outcomes and latency — never a token,
// plaintext, ciphertext or key material.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <string>
#include <sys/types.h>
#include <vector>

#include "rootseal/kms/error.hpp"

namespace rootseal::daemon {

struct AuditRecord {
  std::string request_id;
  std::string remote;       // client address:port
  std::string client_cert;  // verified mTLS subject, if any
  std::string accessor;     // token accessor (never the token)
  std::string method;
  std::string path;       // request path (key names are not secret)
  std::string operation;  // encrypt, decrypt, rotate, ... or empty
  std::string key;
  std::uint32_t key_version = 0;
  std::size_t batch_items = 0;
  unsigned status = 0;
  // ok (2xx), denied (403: no valid token, or a token whose policies do not
  // allow it), sealed (503), invalid (other 4xx), error (5xx).
  std::string outcome;
  std::string error;  // the error message sent, if any (never echoes request data)
  double latency_ms = 0;
  std::string continues;  // first line after a reopen: the previous file's last sha256
};

// Crash consistency: lines reach the file in chain order, whole, and with no
// gap. One caller at a time is the writer: it takes every line queued while
// the previous write ran, chains them (prev_sha256, sha256) and appends them
// with one pwrite(2) at the end of the file; the other callers wait for the
// write that holds their line. write() returns only after that write
// completed, so a request is audited before it is answered (and an answer
// never goes out for a line that is not in the file). A write that fails
// (ENOSPC, EIO, EFBIG) is cut back off the file (ftruncate), so no partial
// line stays; the chain is not advanced and every request of that write fails.
//
// Durability: with sync off (the default) a written line is in the kernel's
// page cache: it survives the process being killed (SIGKILL, OOM, abort),
// not a power cut or kernel crash before writeback. With sync on, each write
// is followed by fdatasync(2) before the requests it holds are answered.
struct AuditOptions {
  bool sync = false;
  // Names the writing host in every line ("host", after "time"), so that the
  // logs of several hosts sharing a keyring (storage: etcd) can be merged and
  // each line traced to its host. Empty: no field (the tests' logs).
  std::string host;
  // While the file cannot be written, requests fail at once (without a
  // write) until the next retry, which is backed off from `retry_min` to
  // `retry_max`; the first write after it that succeeds makes the log healthy.
  std::chrono::milliseconds retry_min{10};
  std::chrono::milliseconds retry_max{1000};
};

// What open() did with a damaged end of the file (a crash during a write,
// or a line torn by a full disk): the bytes after the last intact line,
// moved byte for byte to `damaged_file`, the file cut back to that line and a
// recovery line appended that names it (see verify_audit_log()).
struct AuditRecovery {
  std::filesystem::path damaged_file;
  std::uint64_t damaged_bytes = 0;
  std::string damaged_sha256;
  std::string last_intact_sha256;  // 64 zeros: no intact line was left
};

class AuditLog {
 public:
  // Opens (creating 0600) and continues the chain from the file's last intact
  // line. A damaged end (see AuditRecovery) is set aside and recorded; only
  // failing to do that (I/O error, no space for the damaged copy) is an error.
  static kms::Result<std::unique_ptr<AuditLog>> open(const std::filesystem::path& path, AuditOptions options = {});
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends one line and returns once the write holding it completed. An
  // error (Errc::unavailable) means the line is not in the file and the
  // request must fail; later writes retry by themselves (see AuditOptions).
  kms::Result<void> write(const AuditRecord& record);
  // fdatasync; called at shutdown and on reload.
  kms::Result<void> flush();
  // After a rotation (the path moved away, SIGHUP): opens the path again. If
  // it names a new, empty file, the first line written there is a reopen
  // line whose "continues" field is the old file's last sha256, so
  // `verify_audit_log(new, old_last)` links the files; a non-empty file is
  // continued from its last intact line, as at start. false if the path still
  // names the open file (nothing to do). An error (the new file cannot be
  // opened, or its reopen line written) leaves the old file in use.
  kms::Result<bool> reopen();

  // The recovery open() or the last reopen() performed, if any.
  [[nodiscard]] std::optional<AuditRecovery> recovery() const;
  [[nodiscard]] std::uint64_t lines_written() const;
  [[nodiscard]] std::uint64_t write_failures() const;  // lines that could not be written
  [[nodiscard]] bool healthy() const;                  // false from a failed write to the next good one
  // Called (by the thread that saw it, outside the log's locks) when the log
  // becomes unhealthy, with the reason, and when it is healthy again.
  void on_health_change(std::function<void(bool healthy, const std::string& reason)> listener);

 private:
  struct Pending;
  struct Writer;
  AuditLog(std::filesystem::path path, AuditOptions options, int fd, std::string last_hash, off_t end);
  kms::Result<void> commit(std::vector<Pending*>& batch);
  Writer become_writer();
  const std::filesystem::path path_;
  const AuditOptions options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Pending*> queue_;  // lines waiting for the next write, in chain order
  bool writing_ = false;         // a writer holds fd_, prev_, end_
  bool healthy_ = true;
  std::chrono::steady_clock::time_point retry_at_;
  std::chrono::milliseconds backoff_{0};
  std::uint64_t lines_ = 0;
  std::uint64_t failures_ = 0;
  std::optional<AuditRecovery> recovery_;
  std::function<void(bool, const std::string&)> listener_;

  // Owned by the writer (writing_), no lock needed.
  int fd_;
  std::string prev_;         // hex SHA-256 of the last line in the file
  off_t end_;                // where the next line goes
  bool tail_dirty_ = false;  // a failed write could not be cut back yet
};

struct AuditRecoveryLine {
  std::uint64_t line = 0;             // 1-based
  AuditRecovery recovery;             // damaged_file as the line names it (a file name beside the log)
  bool damaged_file_checked = false;  // found beside the log with that size and sha256
};
struct AuditVerification {
  std::uint64_t lines = 0;
  std::string last_sha256;  // where the next file's chain must continue
  std::string continues;    // the first line's "continues" field (written by a reopen), or empty
  std::vector<AuditRecoveryLine> recoveries;
};
// Checks the whole chain; the error names the first bad line (1-based). With
// `previous_last` (the previous file's last_sha256), the file must begin with
// a reopen line that continues it: rotated files verify as one chain.
// A recovery line (operation "audit_recovery", written by open() after a
// crash or a full disk) is a link of the chain like any other; it must name
// the line before it as its last intact line, and if its damaged file is
// beside the log, that file's size and sha256 must be the ones recorded.
// Lines edited, removed or inserted anywhere still fail.
kms::Result<AuditVerification> verify_audit_log(const std::filesystem::path& path,
                                                std::optional<std::string_view> previous_last = std::nullopt);

}  // namespace rootseal::daemon
