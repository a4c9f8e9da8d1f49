// rootseal::cli — where secrets come in and go out: the PIN (terminal with
// echo off, or a file descriptor — never argv), typed share lines, the
// console. Everything secret stays in kms::SecureBytes and is written with
// write(2), bypassing stdio buffers.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::cli {

class Console {
 public:
  virtual ~Console() = default;
  virtual void out(std::string_view text) = 0;  // never a secret
  virtual void err(std::string_view text) = 0;  // never a secret
  // The one secret the CLI prints on purpose: a custodian's typed share.
  virtual void secret_out(std::span<const std::uint8_t> text) = 0;
};

// stdout / stderr of the process, unbuffered.
class StdConsole final : public Console {
 public:
  void out(std::string_view text) override;
  void err(std::string_view text) override;
  void secret_out(std::span<const std::uint8_t> text) override;
};

// Lines of typed shares.
class LineSource {
 public:
  virtual ~LineSource() = default;
  // The next line without its end, or nullopt at end of input.
  virtual kms::Result<std::optional<kms::SecureBytes>> next_line(std::string_view prompt) = 0;
  // A person is typing (prompts are shown and a bad line may be re-entered).
  [[nodiscard]] virtual bool interactive() const = 0;
};

// Lines from a file descriptor (stdin). When it is a terminal, prompts go to
// the terminal.
class FdLineSource final : public LineSource {
 public:
  explicit FdLineSource(int fd);
  kms::Result<std::optional<kms::SecureBytes>> next_line(std::string_view prompt) override;
  [[nodiscard]] bool interactive() const override { return tty_; }

 private:
  int fd_;
  bool tty_;
  kms::SecureBytes buf_ = kms::SecureBytes(4096);
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  bool eof_ = false;
};

// Lines from a buffer in locked memory (tests).
class BufferLineSource final : public LineSource {
 public:
  explicit BufferLineSource(kms::SecureBytes text) : text_(std::move(text)) {}
  kms::Result<std::optional<kms::SecureBytes>> next_line(std::string_view prompt) override;
  [[nodiscard]] bool interactive() const override { return false; }

 private:
  kms::SecureBytes text_;
  std::size_t pos_ = 0;
};

// Reads a secret (up to the first newline, at most 256 bytes) from `fd`.
kms::Result<kms::SecureBytes> read_secret_fd(int fd);
// Prompts on /dev/tty with echo off.
kms::Result<kms::SecureBytes> prompt_secret_tty(std::string_view prompt);

}  // namespace rootseal::cli
