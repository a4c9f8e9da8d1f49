// A SoftHSM2 token of the test's own, in a temporary folder: writes a
// softhsm2.conf, points SOFTHSM2_CONF at it (process-wide: one fixture per
// test process, which catch_discover_tests gives every test case), and
// initializes a token through the real PKCS#11 API (hsm::provision_token).
#pragma once

#include <filesystem>
#include <string>

#include "rootseal/hsm/pkcs11_root.hpp"
#include "temp_dir.hpp"

namespace rootseal::test {

inline constexpr const char* kSoftHsmModule = ROOTSEAL_SOFTHSM_MODULE;

class SoftHsm {
 public:
  // Creates the folder and config; provisions `label` with the given PINs.
  explicit SoftHsm(std::string label = "rootseal-test", std::string user_pin = "1234", std::string so_pin = "0000");
  SoftHsm(const SoftHsm&) = delete;
  SoftHsm& operator=(const SoftHsm&) = delete;

  // Provisions a further token on the same store.
  void add_token(const std::string& label, const std::string& user_pin = "1234");

  [[nodiscard]] const std::filesystem::path& dir() const noexcept { return dir_.path(); }
  [[nodiscard]] std::filesystem::path token_dir() const { return dir_.path() / "tokens"; }
  [[nodiscard]] std::filesystem::path conf() const { return dir_.path() / "softhsm2.conf"; }
  [[nodiscard]] const std::string& label() const noexcept { return label_; }
  [[nodiscard]] const std::string& user_pin() const noexcept { return user_pin_; }

  // A Pkcs11Config for this token (root key generated if missing).
  [[nodiscard]] hsm::Pkcs11Config config(bool generate_if_missing = true) const;
  // A PinSource that returns the user PIN.
  [[nodiscard]] hsm::PinSource pin_source() const;

 private:
  TempDir dir_;
  std::string label_;
  std::string user_pin_;
  std::string so_pin_;
};

}  // namespace rootseal::test
