#include "softhsm.hpp"

#include <cstdlib>
#include <fstream>
#include <stdexcept>

#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::test {

SoftHsm::SoftHsm(std::string label, std::string user_pin, std::string so_pin)
    : dir_("rootseal-softhsm"), label_(std::move(label)), user_pin_(std::move(user_pin)), so_pin_(std::move(so_pin)) {
  std::filesystem::create_directories(token_dir());
  {
    std::ofstream conf_file(conf());
    conf_file << "directories.tokendir = " << token_dir().string() << "\n"
              << "objectstore.backend = file\n"
              << "log.level = ERROR\n"
              << "slots.removable = false\n";
  }
  if (::setenv("SOFTHSM2_CONF", conf().c_str(), 1) != 0) throw std::runtime_error("setenv failed");
  add_token(label_, user_pin_);
}

void SoftHsm::add_token(const std::string& label, const std::string& user_pin) {
  auto r = hsm::provision_token(kSoftHsmModule, label, kms::SecureBytes::copy_of(so_pin_),
                                kms::SecureBytes::copy_of(user_pin));
  if (!r) throw std::runtime_error("provision_token(" + label + "): " + r.error().message);
}

hsm::Pkcs11Config SoftHsm::config(bool generate_if_missing) const {
  hsm::Pkcs11Config c;
  c.module = kSoftHsmModule;
  c.token_label = label_;
  c.generate_if_missing = generate_if_missing;
  return c;
}

hsm::PinSource SoftHsm::pin_source() const {
  std::string pin = user_pin_;
  return [pin]() -> kms::Result<kms::SecureBytes> { return kms::SecureBytes::copy_of(pin); };
}

}  // namespace rootseal::test
