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

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <string>
#include <sys/types.h>

#include "rootseal/kms/error.hpp"

namespace rootseal::daemon {

struct AuditRecord {
  std::string request_id;
  std::string remote;          // client address:port
  std::string client_cert;     // verified mTLS subject, if any
  std::string accessor;        // token accessor (never the token)
  std::string method;
  std::string path;            // request path (key names are not secret)
  std::string operation;       // encrypt, decrypt, rotate, ... or empty
  std::string key;
  std::uint32_t key_version = 0;
  std::size_t batch_items = 0;
  unsigned status = 0;
  // ok (2xx), denied (403: no valid token, or a token whose policies do not
  // allow it), sealed (503), invalid (other 4xx), error (5xx).
  std::string outcome;
  std::string error;           // the error message sent, if any (never echoes request data)
  double latency_ms = 0;
  std::string continues;       // first line after a reopen: the previous file's last sha256
};

class AuditLog {
 public:
  // Opens (creating 0600) for appending and continues the chain from the
  // file's last line. A file whose last line is not a complete JSON line is
  // refused (tampering or a torn write: rotate the file and investigate).
  static kms::Result<std::unique_ptr<AuditLog>> open(const std::filesystem::path& path);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends one line (one pwrite(2) at a place reserved in chain order, so
  // concurrent callers do not wait for each other's I/O). An error means the
  // request must fail; after a failed write every later write fails too (the
  // file would have a gap), until the daemon is restarted.
  kms::Result<void> write(const AuditRecord& record);
  // fdatasync; called at shutdown and on reload.
  kms::Result<void> flush();
  // After a rotation (the path moved away, SIGHUP): opens the path again. If
  // it names a new, empty file, the first line written there is a reopen
  // line whose "continues" field is the old file's last sha256, so
  // `verify_audit_log(new, old_last)` links the files; a non-empty file is
  // continued from its last line, as at start. Lines whose place was reserved
  // in the old file still land there. false if the path still names the open
  // file (nothing to do). An error leaves the old file in use.
  kms::Result<bool> reopen();
  [[nodiscard]] std::uint64_t lines_written() const;

 private:
  struct File {
    explicit File(int f) : fd(f) {}
    ~File();
    File(const File&) = delete;
    File& operator=(const File&) = delete;
    int fd;
  };
  struct Reserved {
    std::shared_ptr<const File> file;  // the file the place is in, even if a reopen follows
    off_t offset = 0;
    std::string line;
  };
  AuditLog(std::filesystem::path path, std::shared_ptr<const File> file, std::string last_hash, off_t end);
  static std::string format_line(const AuditRecord& record);
  Reserved reserve_locked(std::string line);
  kms::Result<void> put(const Reserved& reserved);
  mutable std::mutex mu_;
  const std::filesystem::path path_;
  std::shared_ptr<const File> file_;
  std::string prev_;  // hex SHA-256 of the last line
  off_t end_;         // where the next line goes
  bool failed_ = false;
  std::uint64_t lines_ = 0;
};

struct AuditVerification {
  std::uint64_t lines = 0;
  std::string last_sha256;  // where the next file's chain must continue
  std::string continues;    // the first line's "continues" field (written by a reopen), or empty
};
// Checks the whole chain; the error names the first bad line (1-based). With
// `previous_last` (the previous file's last_sha256), the file must begin with
// a reopen line that continues it: rotated files verify as one chain.
kms::Result<AuditVerification> verify_audit_log(const std::filesystem::path& path,
                                                 std::optional<std::string_view> previous_last = std::nullopt);

}  // namespace rootseal::daemon
