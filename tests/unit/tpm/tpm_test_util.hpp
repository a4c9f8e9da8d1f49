// Helpers for the tpm tests: open a Tpm on a Swtpm, raw ESAPI on its
// connection (PCR extend, handle and lockout counts).
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "rootseal/kms/secure_bytes.hpp"
#include "rootseal/tpm/tpm_root.hpp"
#include "swtpm.hpp"
#include "tpm_internal.hpp"  // last: tss2 headers

namespace rootseal::test {

inline tpm::Tpm open_tpm(const std::string& tcti) {
  auto t = tpm::Tpm::open(tcti);
  INFO((t ? std::string("ok") : t.error().message));
  REQUIRE(t);
  return std::move(*t);
}
inline tpm::Tpm open_tpm(const Swtpm& sw) { return open_tpm(sw.tcti()); }

inline ESYS_CONTEXT* esys(tpm::Tpm& t) { return tpm::detail::TpmAccess::esys(t); }

// Handles of one type present in the TPM (TPM2_TRANSIENT_FIRST,
// TPM2_LOADED_SESSION_FIRST, TPM2_ACTIVE_SESSION_FIRST, TPM2_PERSISTENT_FIRST).
inline std::vector<TPM2_HANDLE> tpm_handles(tpm::Tpm& t, TPM2_HANDLE first) {
  TPMS_CAPABILITY_DATA* data = nullptr;
  TPMI_YES_NO more = TPM2_NO;
  const TSS2_RC rc = Esys_GetCapability(esys(t), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, first,
                                        TPM2_MAX_CAP_HANDLES, &more, &data);
  REQUIRE(rc == TSS2_RC_SUCCESS);
  std::vector<TPM2_HANDLE> out;
  for (UINT32 i = 0; i < data->data.handles.count; ++i) {
    // The range query lists handles from `first` on; keep only this type.
    if ((data->data.handles.handle[i] >> 24) == (first >> 24)) out.push_back(data->data.handles.handle[i]);
  }
  Esys_Free(data);
  return out;
}

// No transient object and no session (loaded or saved) left in the TPM.
inline void require_no_leaked_handles(tpm::Tpm& t) {
  CHECK(tpm_handles(t, TPM2_TRANSIENT_FIRST).empty());
  CHECK(tpm_handles(t, TPM2_LOADED_SESSION_FIRST).empty());
  CHECK(tpm_handles(t, TPM2_ACTIVE_SESSION_FIRST).empty());
}

inline std::uint32_t tpm_property(tpm::Tpm& t, TPM2_PT property) {
  TPMS_CAPABILITY_DATA* data = nullptr;
  TPMI_YES_NO more = TPM2_NO;
  const TSS2_RC rc = Esys_GetCapability(esys(t), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES,
                                        property, 1, &more, &data);
  REQUIRE(rc == TSS2_RC_SUCCESS);
  REQUIRE(data->data.tpmProperties.count == 1);
  REQUIRE(data->data.tpmProperties.tpmProperty[0].property == property);
  const std::uint32_t v = data->data.tpmProperties.tpmProperty[0].value;
  Esys_Free(data);
  return v;
}

// TPM2_PCR_Extend of the sha256 bank of `pcr` with a digest of `seed`.
inline void extend_pcr(tpm::Tpm& t, std::uint32_t pcr, std::uint8_t seed = 0x42) {
  TPML_DIGEST_VALUES digests{};
  digests.count = 1;
  digests.digests[0].hashAlg = TPM2_ALG_SHA256;
  for (auto& b : digests.digests[0].digest.sha256) b = seed;
  const TSS2_RC rc = Esys_PCR_Extend(esys(t), static_cast<ESYS_TR>(ESYS_TR_PCR0 + pcr), ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                     ESYS_TR_NONE, &digests);
  REQUIRE(rc == TSS2_RC_SUCCESS);
}

inline kms::SecureBytes pattern_bytes(std::size_t n, std::uint8_t start = 1) {
  kms::SecureBytes s(n);
  for (std::size_t i = 0; i < n; ++i) s.data()[i] = static_cast<std::uint8_t>(start + i * 7);
  return s;
}

inline std::string message_of(const kms::Error& e) { return e.message; }

}  // namespace rootseal::test
