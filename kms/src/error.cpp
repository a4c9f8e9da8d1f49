#include "rootseal/kms/error.hpp"

#include <string.h>  // strerrordesc_np (glibc 2.32)

namespace rootseal::kms {

std::string_view to_string(Errc code) noexcept {
  switch (code) {
    case Errc::invalid_argument:
      return "invalid_argument";
    case Errc::malformed_ciphertext:
      return "malformed_ciphertext";
    case Errc::bad_base64:
      return "bad_base64";
    case Errc::decryption_failed:
      return "decryption_failed";
    case Errc::version_disallowed:
      return "version_disallowed";
    case Errc::not_found:
      return "not_found";
    case Errc::already_exists:
      return "already_exists";
    case Errc::conflict:
      return "conflict";
    case Errc::deletion_not_allowed:
      return "deletion_not_allowed";
    case Errc::sealed:
      return "sealed";
    case Errc::unavailable:
      return "unavailable";
    case Errc::permission_denied:
      return "permission_denied";
    case Errc::storage_failure:
      return "storage_failure";
    case Errc::compacted:
      return "compacted";
    case Errc::crypto_failure:
      return "crypto_failure";
    case Errc::internal:
      return "internal";
  }
  return "unknown";
}

std::string errno_text(int err) {
  // strerrordesc_np reads glibc's constant table: no shared buffer, no
  // locale, safe from any thread (strerror is neither).
  const char* d = ::strerrordesc_np(err);
  return d != nullptr ? std::string(d) : "error " + std::to_string(err);
}

}  // namespace rootseal::kms
