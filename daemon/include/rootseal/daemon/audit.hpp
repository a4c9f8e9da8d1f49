// rootseal::daemon — the audit log: one JSON line per request, hash-chained.
//
// Each line is a JSON object whose last field, "prev_sha256", is the SHA-256
// (hex) of the previous line's bytes (without its newline); the first line of
// a file chains to 64 zeros. An edited, removed, inserted or reordered line
// breaks the chain at that point, which verify_audit_log() reports. (Cutting
// lines off the end cannot be seen from the file alone: ship the log off the
// host, or compare the line count with the daemon's metrics.)
//
// Lines carry identities (token accessor, client address, certificate
// subject), key names, versions, outcomes and latency — never a token,
// plaintext, ciphertext or key material.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

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
  std::string error;           // the error message sent, if any
  double latency_ms = 0;
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

  // Appends one line (one write(2) call). An error means the request must fail.
  kms::Result<void> write(const AuditRecord& record);
  // fdatasync; called at shutdown and on reload.
  kms::Result<void> flush();
  [[nodiscard]] std::uint64_t lines_written() const;

 private:
  AuditLog(int fd, std::string last_hash);
  mutable std::mutex mu_;
  int fd_;
  std::string prev_;  // hex SHA-256 of the last line
  std::uint64_t lines_ = 0;
};

struct AuditVerification {
  std::uint64_t lines = 0;
};
// Checks the whole chain; the error names the first bad line (1-based).
kms::Result<AuditVerification> verify_audit_log(const std::filesystem::path& path);

}  // namespace rootseal::daemon
