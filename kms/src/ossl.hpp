// The OpenSSL boundary of the kms module: every libcrypto result is checked
// through ossl() once. A failure empties OpenSSL's per-thread error queue (so
// a stale entry never surfaces in an unrelated later call) and becomes
// crypto_failure with a fixed message; OpenSSL's own text is not passed on.
#pragma once

#include <openssl/err.h>
#include <openssl/evp.h>

#include <memory>
#include <string>

#include "rootseal/kms/error.hpp"

namespace rootseal::kms::detail {

inline Result<void> ossl(int rc, const char* what) {
  if (rc == 1) return {};
  ERR_clear_error();
  return fail(Errc::crypto_failure, std::string("OpenSSL ") + what + " failed");
}

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const noexcept { EVP_CIPHER_CTX_free(ctx); }  // cleanses key state
};
using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

}  // namespace rootseal::kms::detail
