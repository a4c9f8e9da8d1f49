// rootseal::tpm (private) — TSS2_RC to kms::Error, once, at the boundary.
#pragma once

#include <tss2/tss2_common.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "rootseal/kms/error.hpp"

namespace rootseal::tpm::detail {

// Which step failed: the same TPM code means different things at different
// steps (an integrity failure while loading is a blob from another TPM).
enum class Step {
  tcti,            // Tss2_TctiLdr_Initialize, Esys_Initialize
  startup,         // Esys_Startup
  create_primary,  // Esys_CreatePrimary on the owner hierarchy
  persistent,      // Esys_TR_FromTPMPublic of a persistent primary
  session,         // Esys_StartAuthSession, policy commands, TRSess_*
  create,          // Esys_Create (sealing)
  load,            // Esys_Load of a sealed blob
  unseal,          // Esys_Unseal
  other,           // anything else (GetRandom, GetName, ...)
};

// The reasons callers and tests match on.
inline constexpr std::string_view kPolicyFailed =
    "TPM policy check failed: PCR values changed since sealing (reseal after an intended change)";
inline constexpr std::string_view kWrongAuth = "wrong TPM auth value";
inline constexpr std::string_view kForeignBlob = "sealed blob does not belong to this TPM";
inline constexpr std::string_view kLockout =
    "TPM is in dictionary-attack lockout (wait for the recovery time, or reset it with the lockout auth)";

// "tpm:session(1):a policy check failed" (Tss2_RC_Decode), or the hex code.
std::string rc_text(TSS2_RC rc);

// The TPM response code without layer and without the handle/session/
// parameter number of format-one codes (TPM2_RC_POLICY_FAIL for 0x99d);
// 0 when rc is not from the TPM (or the resource manager's TPM layer).
std::uint32_t tpm_base_code(TSS2_RC rc) noexcept;

// The error for `rc` returned by `call` (e.g. "Esys_Unseal") during `step`
// on the TPM at `tcti`: "<reason> (<call>: <decoded rc>)".
kms::Error tss_error(TSS2_RC rc, std::string_view call, Step step, std::string_view tcti);

}  // namespace rootseal::tpm::detail
