// rootseal::tpm — TSS2_RC to kms::Error (see tss_error.hpp).
#include "tss_error.hpp"

#include <tss2/tss2_rc.h>
#include <tss2/tss2_tpm2_types.h>

#include <cstdio>

namespace rootseal::tpm::detail {

using kms::Errc;

namespace {

constexpr TSS2_RC kLayerMask = TSS2_RC_LAYER_MASK;

TSS2_RC layer_of(TSS2_RC rc) noexcept { return rc & kLayerMask; }
TSS2_RC base_of(TSS2_RC rc) noexcept { return rc & ~kLayerMask; }

bool is_warning(std::uint32_t code) noexcept {
  return (code & TPM2_RC_FMT1) == 0 && (code & TPM2_RC_WARN) == TPM2_RC_WARN;
}

std::string with_detail(std::string_view reason, std::string_view call, TSS2_RC rc) {
  std::string m(reason);
  m += " (";
  m += call;
  m += ": ";
  m += rc_text(rc);
  m += ')';
  return m;
}

}  // namespace

std::string rc_text(TSS2_RC rc) {
  const char* text = Tss2_RC_Decode(rc);  // a thread-local buffer; copy at once
  if (text != nullptr && *text != '\0') return text;
  char buf[16];
  (void)std::snprintf(buf, sizeof buf, "0x%08x", static_cast<unsigned>(rc));
  return buf;
}

std::uint32_t tpm_base_code(TSS2_RC rc) noexcept {
  const TSS2_RC layer = layer_of(rc);
  if (layer != TSS2_TPM_RC_LAYER && layer != TSS2_RESMGR_TPM_RC_LAYER) return 0;
  const std::uint32_t code = base_of(rc) & 0xFFFFu;
  if ((code & TPM2_RC_FMT1) != 0) return code & (TPM2_RC_FMT1 | 0x3Fu);
  return code & 0xFFFu;  // format zero: no number field
}

kms::Error tss_error(TSS2_RC rc, std::string_view call, Step step, std::string_view tcti) {
  const TSS2_RC layer = layer_of(rc);
  const std::string at = std::string(tcti);

  // The TCTI: nothing at the other end, or it went away.
  if (layer == TSS2_TCTI_RC_LAYER || step == Step::tcti) {
    if (step == Step::tcti || step == Step::startup) {
      return {Errc::unavailable, with_detail("no TPM at " + at, call, rc)};
    }
    return {Errc::unavailable, with_detail("TPM at " + at + " stopped answering", call, rc)};
  }

  if (const std::uint32_t code = tpm_base_code(rc); code != 0) {
    switch (code) {
      case TPM2_RC_POLICY_FAIL:
      case TPM2_RC_PCR_CHANGED:
        return {Errc::sealed, with_detail(kPolicyFailed, call, rc)};
      case TPM2_RC_LOCKOUT:
        return {Errc::sealed, with_detail(kLockout, call, rc)};
      case TPM2_RC_AUTH_FAIL:
      case TPM2_RC_BAD_AUTH:
      case TPM2_RC_AUTH_MISSING:
        if (step == Step::create_primary) {
          return {Errc::sealed,
                  with_detail("the TPM owner hierarchy has an auth value, so a transient primary key cannot be "
                              "created (configure a persistent primary key handle)",
                              call, rc)};
        }
        return {Errc::sealed, with_detail(kWrongAuth, call, rc)};
      case TPM2_RC_INITIALIZE:
        return {Errc::unavailable, with_detail("TPM at " + at + " is not started", call, rc)};
      case TPM2_RC_FAILURE:
        return {Errc::unavailable, with_detail("TPM at " + at + " is in failure mode", call, rc)};
      case TPM2_RC_HIERARCHY:
        return {Errc::sealed, with_detail("the TPM owner hierarchy is disabled", call, rc)};
      default:
        break;
    }
    if (step == Step::persistent && (code == TPM2_RC_HANDLE || code == TPM2_RC_VALUE)) {
      return {Errc::sealed, with_detail("no persistent primary key at the configured handle", call, rc)};
    }
    // Loading: the private area is integrity-protected with keys derived from
    // the parent's seed; under another TPM's parent it fails its checks.
    if (step == Step::load && !is_warning(code)) {
      return {Errc::sealed, with_detail(kForeignBlob, call, rc)};
    }
    if (is_warning(code)) {
      // OBJECT_MEMORY, SESSION_MEMORY, RETRY, YIELDED, TESTING, NV_RATE ...
      return {Errc::unavailable, with_detail("TPM at " + at + " is busy or out of resources", call, rc)};
    }
    return {Errc::crypto_failure, with_detail("TPM command failed", call, rc)};
  }

  if (layer == TSS2_ESAPI_RC_LAYER || layer == TSS2_SYS_RC_LAYER) {
    const TSS2_RC base = base_of(rc);
    if (base == TSS2_BASE_RC_RSP_AUTH_FAILED) {
      return {Errc::crypto_failure,
              with_detail("TPM response failed its HMAC check (tampering on the TPM bus, or another TPM)", call, rc)};
    }
    if (base == TSS2_BASE_RC_TRY_AGAIN || base == TSS2_BASE_RC_NO_CONNECTION || base == TSS2_BASE_RC_IO_ERROR) {
      return {Errc::unavailable, with_detail("TPM at " + at + " stopped answering", call, rc)};
    }
    if (base == TSS2_BASE_RC_MALFORMED_RESPONSE || base == TSS2_BASE_RC_INSUFFICIENT_RESPONSE) {
      return {Errc::unavailable, with_detail("TPM at " + at + " sent a malformed response", call, rc)};
    }
    if (base == TSS2_BASE_RC_MEMORY) return {Errc::internal, with_detail("out of memory", call, rc)};
    return {Errc::internal, with_detail("TPM software stack error", call, rc)};
  }
  if (layer == TSS2_MU_RC_LAYER) {
    return {Errc::invalid_argument, with_detail("malformed TPM structure", call, rc)};
  }
  if (layer == TSS2_RESMGR_RC_LAYER) {
    return {Errc::unavailable, with_detail("TPM resource manager at " + at + " refused", call, rc)};
  }
  return {Errc::internal, with_detail("TPM call failed", call, rc)};
}

}  // namespace rootseal::tpm::detail
