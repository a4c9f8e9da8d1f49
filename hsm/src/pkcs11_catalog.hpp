// rootseal::hsm — private: names of PKCS#11 mechanisms and flags, and the
// mechanisms that matter for a root key (for `rootseal hsm probe` and for the
// refusals of Pkcs11Root and TokenAdmin when a token offers none that works).
//
// Include this header after all standard headers (it includes pkcs11_api.hpp).
#pragma once

#include <string>
#include <vector>

#include "pkcs11_api.hpp"

namespace rootseal::hsm::detail {

// "CKM_AES_GCM"; unknown types as "CKM_0x1234" or "CKM_VENDOR_DEFINED+0x12".
std::string mechanism_name(CK_MECHANISM_TYPE type);

// "encrypt", "decrypt", ... for the CKF_* bits of a CK_MECHANISM_INFO.
std::vector<std::string> mechanism_flag_names(CK_FLAGS flags);
// The same, joined: "encrypt, decrypt, wrap".
std::string mechanism_flag_list(CK_FLAGS flags);

// The AES, RSA and HMAC mechanisms among those the token in `slot` offers
// that a root key could be built on, with their flags:
// "CKM_AES_CBC_PAD (encrypt, decrypt, wrap, unwrap), CKM_SHA256_HMAC (sign, verify)",
// or "none of the AES, RSA or HMAC mechanisms". Asks C_GetMechanismInfo for
// each; a mechanism it answers with an error for counts as not offered.
std::string relevant_mechanisms(CK_FUNCTION_LIST* api, CK_SLOT_ID slot);

// The sentence that ends a refusal for lack of a usable mechanism: what the
// token offers (relevant_mechanisms) and where to look further.
std::string mechanism_refusal_detail(CK_FUNCTION_LIST* api, CK_SLOT_ID slot, const std::string& module,
                                     const std::string& token_label);

}  // namespace rootseal::hsm::detail
