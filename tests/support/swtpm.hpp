// A software TPM 2.0 of the test's own: `swtpm socket --tpm2` on a free
// loopback port pair (server P, control P+1) with its own state folder,
// started by the constructor (which returns once the server port accepts
// connections, or throws) and stopped by the destructor.
//
// swtpm serves one client connection at a time: close a tpm::Tpm before
// another one (or a TpmRoot operation) connects, or the second one waits.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "temp_dir.hpp"

namespace rootseal::test {

class Swtpm {
 public:
  Swtpm();
  ~Swtpm();
  Swtpm(const Swtpm&) = delete;
  Swtpm& operator=(const Swtpm&) = delete;

  // "swtpm:host=127.0.0.1,port=P"
  [[nodiscard]] std::string tcti() const;
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] const std::filesystem::path& state_dir() const noexcept { return state_dir_; }

  // Stops swtpm and starts it again on the same ports and state: a reboot
  // (PCRs back to their reset values; seeds, NV and DA state kept).
  void restart();
  void stop() noexcept;

  // A loopback TCP port nothing listens on (for "no TPM" tests).
  static std::uint16_t unused_port();

 private:
  void start();

  TempDir dir_;
  std::filesystem::path state_dir_;
  std::filesystem::path log_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace rootseal::test
